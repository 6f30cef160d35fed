package collections

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Normalize checks v against the field and returns it in the field's
// canonical Go type (see Kind). The error message is safe to show a client.
func (f Field) Normalize(v any) (any, error) {
	if v == nil {
		if f.Nullable {
			return nil, nil
		}
		return nil, fmt.Errorf("must not be null")
	}
	switch f.Kind {
	case String:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("must be a string")
		}
		if err := CheckString(s, f.maxLen()); err != nil {
			return nil, err
		}
		return s, nil
	case Enum:
		s, ok := v.(string)
		if !ok || !slices.Contains(f.Values, s) {
			return nil, fmt.Errorf("must be one of %v", f.Values)
		}
		return s, nil
	case Int:
		switch n := v.(type) {
		case int:
			return int64(n), nil
		case int32:
			return int64(n), nil
		case int64:
			return n, nil
		}
		return nil, fmt.Errorf("must be an integer")
	case Float:
		var n float64
		switch x := v.(type) {
		case float64:
			n = x
		case float32:
			n = float64(x)
		default:
			return nil, fmt.Errorf("must be a number")
		}
		// gqlgen's Float reads "NaN" and "Infinity" from a string; the
		// database stores them, but JSON has no way to send them back, so
		// one such value would break every pull that includes it.
		if math.IsNaN(n) || math.IsInf(n, 0) {
			return nil, fmt.Errorf("must be a finite number (got %v)", n)
		}
		return n, nil
	case Bool:
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("must be a boolean")
		}
		return b, nil
	case Time:
		t, ok := v.(time.Time)
		if !ok {
			return nil, fmt.Errorf("must be a time")
		}
		if err := CheckTime(t); err != nil {
			return nil, err
		}
		// Judged as stored: a time a few nanoseconds after the zero time
		// is the zero time once truncated to microseconds.
		if t = NormalizeTime(t); t.IsZero() {
			// GraphQL clients read the zero time as null; storing it would
			// make every later push of the same document look like an edit.
			return nil, fmt.Errorf("must not be 0001-01-01T00:00:00Z; send null for no time")
		}
		return t, nil
	}
	return nil, fmt.Errorf("has an unknown kind %v", f.Kind)
}

func (f Field) maxLen() int {
	if f.MaxLen > 0 {
		return f.MaxLen
	}
	return DefaultMaxLen
}

// CheckTime rejects instants outside the years 1 to 9999 in UTC, the zone
// they are stored and sent back in: an offset must not carry a time across
// (9999-12-31T23:59:59-14:00 is year 10000 in UTC), or the document could
// never be sent back and its page cursor would be refused.
func CheckTime(t time.Time) error {
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return fmt.Errorf("must be between years 1 and 9999 in UTC")
	}
	return nil
}

// CheckString rejects strings the database would refuse or mangle (see
// CheckText) and strings longer than maxLen characters.
func CheckString(s string, maxLen int) error {
	if err := CheckText(s); err != nil {
		return err
	}
	if n := utf8.RuneCountInString(s); n > maxLen {
		return fmt.Errorf("must be at most %d characters (got %d)", maxLen, n)
	}
	return nil
}

// CheckText rejects strings PostgreSQL refuses in a text value (SQLSTATE
// 22021): invalid UTF-8 and NUL bytes. Every string a client sends that
// reaches SQL (values, filters, ids, cursors) passes it first, so that the
// client hears BAD_USER_INPUT instead of an internal error.
func CheckText(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("must be valid UTF-8")
	}
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("must not contain NUL characters")
	}
	return nil
}

// CheckID rejects ids that are empty, too long, or not plain printable text.
func CheckID(id string) error {
	if id == "" {
		return fmt.Errorf("must not be empty")
	}
	if len(id) > MaxIDLen {
		return fmt.Errorf("must be at most %d bytes", MaxIDLen)
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return fmt.Errorf("must be printable text")
		}
	}
	return nil
}

// Equal reports whether two normalized values of the field are the same.
func (f Field) Equal(a, b any) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	if f.Kind == Time {
		ta, okA := a.(time.Time)
		tb, okB := b.(time.Time)
		return okA && okB && ta.Equal(tb)
	}
	return a == b
}

// ClientFields lists the fields a client owns: the ones compared and merged on push.
func (c *Collection) ClientFields() []Field {
	out := make([]Field, 0, len(c.Fields))
	for _, f := range c.Fields {
		if !f.ServerOwned {
			out = append(out, f)
		}
	}
	return out
}

// Byte limits of push input, beside each string's length limit (its
// @length, else DefaultMaxLen characters). Today's fields cannot exceed
// them one row at a time; they keep a collection that grows many fields,
// and a push of many large rows, from costing unbounded memory.
const (
	// DefaultMaxRowBytes bounds one push row: its new and assumed states.
	DefaultMaxRowBytes = 256 << 10
	// DefaultMaxPushBytes bounds all rows of one push together.
	DefaultMaxPushBytes = 8 << 20
)

// DocumentBytes is the size a document's values take in input: the bytes
// of its id and strings, and 8 for every other value.
func DocumentBytes(doc Document) int {
	n := len(doc.ID)
	for _, v := range doc.Fields {
		if s, ok := v.(string); ok {
			n += len(s)
		} else {
			n += 8
		}
	}
	return n
}
