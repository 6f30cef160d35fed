package collections_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/collections"
)

func TestNormalize(t *testing.T) {
	plus2 := time.FixedZone("+02", 2*3600)
	at := time.Date(2024, 5, 1, 14, 30, 0, 123456789, plus2)
	tests := []struct {
		name    string
		field   collections.Field
		in      any
		want    any
		wantErr string // a part of the error; "" for none
	}{
		{"a string is kept", collections.Field{Kind: collections.String}, "hello", "hello", ""},
		{"an empty string is a value, not null", collections.Field{Kind: collections.String}, "", "", ""},
		{"a string at its limit passes", collections.Field{Kind: collections.String, MaxLen: 3}, "abc", "abc", ""},
		{"the limit counts characters, not bytes", collections.Field{Kind: collections.String, MaxLen: 3}, "äöü", "äöü", ""},
		{"a string over its limit is refused", collections.Field{Kind: collections.String, MaxLen: 3}, "abcd", nil, "at most 3 characters (got 4)"},
		{"a string with no limit is bounded by the default", collections.Field{Kind: collections.String}, strings.Repeat("x", collections.DefaultMaxLen+1), nil, "at most 10000"},
		{"a number for a string is refused", collections.Field{Kind: collections.String}, 5, nil, "must be a string"},
		{"an allowed enum value is kept", collections.Field{Kind: collections.Enum, Values: []string{"OPEN", "DONE"}}, "DONE", "DONE", ""},
		{"an enum value not allowed is refused", collections.Field{Kind: collections.Enum, Values: []string{"OPEN", "DONE"}}, "done", nil, "must be one of [OPEN DONE]"},
		{"an int becomes int64", collections.Field{Kind: collections.Int}, 7, int64(7), ""},
		{"an int32 becomes int64", collections.Field{Kind: collections.Int}, int32(-7), int64(-7), ""},
		{"an int64 is kept", collections.Field{Kind: collections.Int}, int64(math.MaxInt64), int64(math.MaxInt64), ""},
		{"a float for an int is refused", collections.Field{Kind: collections.Int}, 1.5, nil, "must be an integer"},
		{"a float64 is kept", collections.Field{Kind: collections.Float}, 51.5, 51.5, ""},
		{"a float32 becomes float64", collections.Field{Kind: collections.Float}, float32(0.5), 0.5, ""},
		{"an int for a float is refused", collections.Field{Kind: collections.Float}, 1, nil, "must be a number"},
		{"a bool is kept", collections.Field{Kind: collections.Bool}, true, true, ""},
		{"a string for a bool is refused", collections.Field{Kind: collections.Bool}, "true", nil, "must be a boolean"},
		{"a time becomes UTC with microsecond precision", collections.Field{Kind: collections.Time}, at, time.Date(2024, 5, 1, 12, 30, 0, 123456000, time.UTC), ""},
		{"the zero time is refused", collections.Field{Kind: collections.Time}, time.Time{}, nil, "send null for no time"},
		{"a time past year 9999 is refused", collections.Field{Kind: collections.Time}, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), nil, "between years 1 and 9999"},
		{"a string for a time is refused", collections.Field{Kind: collections.Time}, "2024-05-01T12:00:00Z", nil, "must be a time"},
		{"null for a nullable field is null", collections.Field{Kind: collections.Time, Nullable: true}, nil, nil, ""},
		{"null for a required field is refused", collections.Field{Kind: collections.String}, nil, nil, "must not be null"},
		{"an unknown kind is refused", collections.Field{Kind: collections.Kind(99)}, "x", nil, "unknown kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.field.Normalize(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Normalize(%v) = %v, %v; want an error with %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Normalize(%v): %v", tt.in, err)
			}
			if want, ok := tt.want.(time.Time); ok {
				g, isTime := got.(time.Time)
				if !isTime || !g.Equal(want) || g.Location() != time.UTC || g.Nanosecond()%1000 != 0 {
					t.Fatalf("Normalize(%v) = %#v, want %v in UTC", tt.in, got, want)
				}
				return
			}
			if got != tt.want {
				t.Fatalf("Normalize(%v) = %#v, want %#v", tt.in, got, tt.want)
			}
		})
	}
}

// A normalized value is a fixed point: normalizing it again changes
// nothing, so a stored value compares equal to itself when sent back.
func TestNormalizeIsIdempotent(t *testing.T) {
	at := time.Date(2024, 5, 1, 14, 30, 0, 123456789, time.FixedZone("-05", -5*3600))
	for _, c := range []struct {
		f collections.Field
		v any
	}{
		{collections.Field{Kind: collections.Time}, at},
		{collections.Field{Kind: collections.Int}, 3},
		{collections.Field{Kind: collections.Float}, float32(2.25)},
		{collections.Field{Kind: collections.String}, "x"},
	} {
		once, err := c.f.Normalize(c.v)
		if err != nil {
			t.Fatal(err)
		}
		twice, err := c.f.Normalize(once)
		if err != nil {
			t.Fatal(err)
		}
		if !c.f.Equal(once, twice) {
			t.Errorf("%v kind: Normalize(Normalize(%v)) = %v, want %v", c.f.Kind, c.v, twice, once)
		}
	}
}

func TestCheckString(t *testing.T) {
	tests := []struct {
		name    string
		s       string
		max     int
		wantErr string
	}{
		{"plain text passes", "hello, world", 100, ""},
		{"the empty string passes", "", 100, ""},
		{"multi-byte characters count once", "日本語", 3, ""},
		{"one character over is refused", "日本語!", 3, "at most 3 characters (got 4)"},
		{"invalid UTF-8 is refused", "a\xffb", 100, "valid UTF-8"},
		{"a NUL byte is refused", "a\x00b", 100, "NUL"},
		{"other control characters pass", "line\nbreak\ttab", 100, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := collections.CheckString(tt.s, tt.max)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("CheckString(%q, %d): %v", tt.s, tt.max, err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("CheckString(%q, %d) = %v, want an error with %q", tt.s, tt.max, err, tt.wantErr)
			}
		})
	}
}

func TestCheckID(t *testing.T) {
	tests := []struct {
		name    string
		id      string
		wantErr string
	}{
		{"a UUID passes", "0b7e2c1e-6a43-4f5e-9d1c-3f2a1b0c9d8e", ""},
		{"an id of spaces and punctuation passes", "site 1/a:b", ""},
		{"non-ASCII letters pass", "baustelle-ü", ""},
		{"an id of the longest length passes", strings.Repeat("a", collections.MaxIDLen), ""},
		{"the empty id is refused", "", "must not be empty"},
		{"an id one byte too long is refused", strings.Repeat("a", collections.MaxIDLen+1), "at most 128 bytes"},
		{"the limit counts bytes, not characters", strings.Repeat("ü", collections.MaxIDLen/2+1), "at most 128 bytes"},
		{"a newline is refused", "a\nb", "printable"},
		{"a NUL is refused", "a\x00b", "printable"},
		{"DEL is refused", "a\x7fb", "printable"},
		{"invalid UTF-8 is refused", "a\xffb", "printable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := collections.CheckID(tt.id)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("CheckID(%q): %v", tt.id, err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("CheckID(%q) = %v, want an error with %q", tt.id, err, tt.wantErr)
			}
		})
	}
}

func TestEqual(t *testing.T) {
	noon := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	str := collections.Field{Kind: collections.String, Nullable: true}
	tm := collections.Field{Kind: collections.Time, Nullable: true}
	num := collections.Field{Kind: collections.Int}
	tests := []struct {
		name string
		f    collections.Field
		a, b any
		want bool
	}{
		{"equal strings are equal", str, "a", "a", true},
		{"different strings differ", str, "a", "b", false},
		{"two nulls are equal", str, nil, nil, true},
		{"null differs from the empty string", str, nil, "", false},
		{"a value differs from null", str, "a", nil, false},
		{"the same instant in two zones is equal", tm, noon, noon.In(time.FixedZone("+09", 9*3600)), true},
		{"different instants differ", tm, noon, noon.Add(time.Microsecond), false},
		{"a time differs from a non-time", tm, noon, "2024-05-01T12:00:00Z", false},
		{"equal int64s are equal", num, int64(3), int64(3), true},
		{"values of different Go types differ (compare normalized values)", num, int64(3), 3, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.Equal(tt.a, tt.b); got != tt.want {
				t.Errorf("Equal(%#v, %#v) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
			if got := tt.f.Equal(tt.b, tt.a); got != tt.want {
				t.Errorf("Equal(%#v, %#v) = %v, want %v", tt.b, tt.a, got, tt.want)
			}
		})
	}
}
