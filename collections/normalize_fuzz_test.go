package collections_test

import (
	"encoding/json"
	"math"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/99designs/gqlgen/graphql"

	"github.com/tidemark/tidemark/collections"
)

// Values as they arrive from gqlgen: a Float variable may be the string
// "NaN", a Time any RFC 3339 text with an offset.
func TestNormalizeRefusesWhatCannotRoundTrip(t *testing.T) {
	for _, c := range collections.All() {
		for _, f := range c.ClientFields() {
			var inputs []string
			switch f.Kind {
			case collections.Float:
				inputs = []string{"NaN", "Infinity", "-Infinity", "+Inf", "1e400"}
			case collections.Time:
				inputs = []string{"9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"}
			case collections.String:
				inputs = []string{"a\x00b", "a\xffb"}
			default:
				continue
			}
			for _, in := range inputs {
				v := arrive(f.Kind, in)
				if got, err := f.Normalize(v); err == nil {
					t.Errorf("%s.%s accepted %q as %#v", c.Name, f.Name, in, got)
				}
			}
		}
	}
	// Controls: the last instants in range, whatever their offset, pass.
	f := collections.Field{Kind: collections.Time}
	for _, in := range []string{"9999-12-31T23:59:59+14:00", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00-14:00", "0001-01-01T00:00:01Z"} {
		if _, err := f.Normalize(arrive(collections.Time, in)); err != nil {
			t.Errorf("%s: %v", in, err)
		}
	}
	if _, err := (collections.Field{Kind: collections.Float}).Normalize(arrive(collections.Float, "-1.5e300")); err != nil {
		t.Errorf("a large finite number: %v", err)
	}
}

// arrive turns text into the value gqlgen hands a resolver for kind.
func arrive(kind collections.Kind, s string) any {
	switch kind {
	case collections.Float:
		if x, err := graphql.UnmarshalFloat(s); err == nil {
			return x
		}
	case collections.Time:
		if t, err := graphql.UnmarshalTime(s); err == nil {
			return t
		}
	}
	return s
}

// FuzzNormalize feeds every client field of every registered collection
// values as gqlgen hands them over (text read as a Float or Time, numbers,
// times at any offset): normalizing never panics, never accepts NaN,
// ±Infinity, a year outside 1..9999 in UTC, a NUL or invalid UTF-8, and
// every accepted value is a fixed point that survives JSON and RFC 3339.
func FuzzNormalize(f *testing.F) {
	f.Add(uint8(0), "NaN", 0.0, int64(0), int64(0), int32(0))
	f.Add(uint8(1), "Infinity", 1.5, int64(1), int64(0), int32(3600))
	f.Add(uint8(2), "9999-12-31T23:59:59-14:00", 0.0, int64(253402300799), int64(0), int32(-14*3600))
	f.Add(uint8(3), "0001-01-01T00:00:00+14:00", 0.0, int64(-62135596800), int64(999), int32(14*3600))
	f.Add(uint8(4), "a\x00b", math.Copysign(0, -1), int64(math.MaxInt64), int64(1e9-1), int32(0))
	f.Add(uint8(5), "\xff", math.Inf(1), int64(math.MinInt64), int64(-1), int32(0))
	f.Add(uint8(6), "OPEN", 51.5, int64(7), int64(123456789), int32(19800))
	f.Add(uint8(7), "2024-05-01T14:30:00.1234567+02:00", 0.0, int64(0), int64(0), int32(0))

	var fields []collections.Field
	for _, c := range collections.All() {
		fields = append(fields, c.ClientFields()...)
	}
	f.Fuzz(func(t *testing.T, shape uint8, s string, x float64, n, nsec int64, offset int32) {
		for _, fl := range fields {
			var v any
			switch shape % 8 {
			case 0:
				v = arrive(fl.Kind, s)
			case 1:
				v = s
			case 2:
				v = x
			case 3:
				v = n
			case 4:
				v = time.Unix(n, nsec).In(time.FixedZone("", int(offset%(18*3600))))
			case 5:
				v = nil
			case 6:
				v = float32(x)
			case 7:
				v = n%2 == 0
			}
			got, err := fl.Normalize(v)
			if err != nil {
				if err.Error() == "" {
					t.Fatalf("%s: refused %#v without a reason", fl.Name, v)
				}
				continue
			}
			checkNormalized(t, fl, v, got)
		}
	})
}

func checkNormalized(t *testing.T, f collections.Field, in, got any) {
	t.Helper()
	if got == nil {
		if !f.Nullable || in != nil {
			t.Fatalf("%s: %#v became null", f.Name, in)
		}
		return
	}
	switch v := got.(type) {
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Fatalf("%s: accepted %v", f.Name, v)
		}
	case string:
		limit := f.MaxLen
		if limit == 0 {
			limit = collections.DefaultMaxLen
		}
		if collections.CheckText(v) != nil || (f.Kind == collections.String && utf8.RuneCountInString(v) > limit) {
			t.Fatalf("%s: accepted %q", f.Name, v)
		}
	case time.Time:
		if v.Location() != time.UTC || v.Year() < 1 || v.Year() > 9999 || v.Nanosecond()%1000 != 0 {
			t.Fatalf("%s: accepted %v", f.Name, v)
		}
		back, err := time.Parse(time.RFC3339Nano, v.Format(time.RFC3339Nano))
		if err != nil || !back.Equal(v) {
			t.Fatalf("%s: %v does not survive RFC 3339: %v, %v", f.Name, v, back, err)
		}
	}
	if _, err := json.Marshal(got); err != nil {
		t.Fatalf("%s: %#v cannot be sent back: %v", f.Name, got, err)
	}
	again, err := f.Normalize(got)
	if err != nil || !f.Equal(again, got) {
		t.Fatalf("%s: %#v is not a fixed point: %#v, %v", f.Name, got, again, err)
	}
}
