package collections

import (
	"fmt"
	"slices"
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
		switch n := v.(type) {
		case float64:
			return n, nil
		case float32:
			return float64(n), nil
		}
		return nil, fmt.Errorf("must be a number")
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
		if t.IsZero() {
			// GraphQL clients read the zero time as null; storing it would
			// make every later push of the same document look like an edit.
			return nil, fmt.Errorf("must not be 0001-01-01T00:00:00Z; send null for no time")
		}
		if t.Year() < 1 || t.Year() > 9999 {
			return nil, fmt.Errorf("must be between years 1 and 9999")
		}
		return NormalizeTime(t), nil
	}
	return nil, fmt.Errorf("has an unknown kind %v", f.Kind)
}

func (f Field) maxLen() int {
	if f.MaxLen > 0 {
		return f.MaxLen
	}
	return DefaultMaxLen
}

// CheckString rejects strings the database would refuse or mangle: invalid
// UTF-8, NUL bytes, and more than maxLen characters.
func CheckString(s string, maxLen int) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("must be valid UTF-8")
	}
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return fmt.Errorf("must not contain NUL characters")
		}
	}
	if n := utf8.RuneCountInString(s); n > maxLen {
		return fmt.Errorf("must be at most %d characters (got %d)", maxLen, n)
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
