package syncengine

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"

	"github.com/tidemark/tidemark/apperr"
	"github.com/tidemark/tidemark/collections"
)

// FuzzNormalizePush runs the validation every push goes through (the
// rows' values, ids, references, server-owned fields and byte limits) on
// one row of every registered collection, its values built from the
// fuzzed text as gqlgen hands it over: it never panics, every refusal is
// BAD_USER_INPUT naming a row, and an accepted row holds no NaN, ±Inf,
// year outside 1..9999 in UTC, NUL or invalid UTF-8, survives JSON, and
// is a fixed point of normalization.
func FuzzNormalizePush(f *testing.F) {
	f.Add("wo-1", "NaN", int64(1), false)
	f.Add("wo-1", "Infinity", int64(-1), true)
	f.Add("wo\x00", "9999-12-31T23:59:59-14:00", int64(0), false)
	f.Add("wo-1", "0001-01-01T00:00:00+14:00", int64(0), false)
	f.Add("", "a\x00b", int64(1<<40), true)
	f.Add("wo-1", "\xff", int64(0), false)
	f.Add(strings.Repeat("i", collections.MaxIDLen+1), "OPEN", int64(7), true)
	f.Add("wo-1", "2024-05-01T14:30:00.1234567+02:00", int64(7), false)
	f.Add("wo-1", "51.5", int64(7), true)

	caller := Caller{TenantID: "acme", UserID: "alice"}
	f.Fuzz(func(t *testing.T, id, text string, n int64, withAssumed bool) {
		for _, c := range collections.All() {
			doc := collections.Document{ID: id, Fields: map[string]any{}}
			for _, fl := range c.Fields {
				doc.Fields[fl.Name] = valueFrom(fl, text, n)
			}
			rows := []PushRow{{New: doc}}
			if withAssumed {
				assumed := collections.Document{ID: id, Fields: map[string]any{}}
				for k, v := range doc.Fields {
					assumed.Fields[k] = v
				}
				rows[0].Assumed = &assumed
			}
			err := normalizeRows(c, caller, rows)
			if err == nil {
				err = checkPushBytes(PushLimits{}, rows)
			}
			if err != nil {
				if e, ok := apperr.As(err); !ok || e.Code != apperr.BadUserInput || !strings.HasPrefix(e.Field, "rows") {
					t.Fatalf("%s %q/%q: refused with %v; want BAD_USER_INPUT naming a row", c.Name, id, text, err)
				}
				continue
			}
			checkAccepted(t, c, caller, rows[0].New)
			again := []PushRow{{New: rows[0].New}}
			if err := normalizeRows(c, caller, again); err != nil {
				t.Fatalf("%s: an accepted row is refused when sent back: %v", c.Name, err)
			}
			for _, fl := range c.Fields {
				if !fl.Equal(again[0].New.Fields[fl.Name], rows[0].New.Fields[fl.Name]) {
					t.Fatalf("%s.%s: %#v is not a fixed point (%#v)", c.Name, fl.Name, rows[0].New.Fields[fl.Name], again[0].New.Fields[fl.Name])
				}
			}
		}
	})
}

// valueFrom is the value gqlgen hands a resolver for field f when the
// client sent text (or n, for an Int).
func valueFrom(f collections.Field, text string, n int64) any {
	switch f.Kind {
	case collections.Float:
		if x, err := graphql.UnmarshalFloat(text); err == nil {
			return x
		}
		return float64(n)
	case collections.Time:
		if t, err := graphql.UnmarshalTime(text); err == nil {
			return t
		}
		return time.Unix(n, 0)
	case collections.Int:
		return n
	case collections.Bool:
		return n%2 == 0
	}
	return text
}

func checkAccepted(t *testing.T, c *collections.Collection, caller Caller, d collections.Document) {
	t.Helper()
	if err := collections.CheckID(d.ID); err != nil {
		t.Fatalf("%s: accepted id %q: %v", c.Name, d.ID, err)
	}
	for _, f := range c.Fields {
		v := d.Fields[f.Name]
		if f.ServerOwned && v != caller.UserID {
			t.Fatalf("%s.%s: server-owned field holds %#v", c.Name, f.Name, v)
		}
		switch x := v.(type) {
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				t.Fatalf("%s.%s: accepted %v", c.Name, f.Name, x)
			}
		case string:
			if collections.CheckText(x) != nil {
				t.Fatalf("%s.%s: accepted %q", c.Name, f.Name, x)
			}
			if f.RefersTo != "" && collections.CheckID(x) != nil {
				t.Fatalf("%s.%s: accepted the reference %q", c.Name, f.Name, x)
			}
		case time.Time:
			if x.Location() != time.UTC || x.Year() < 1 || x.Year() > 9999 || x.IsZero() {
				t.Fatalf("%s.%s: accepted %v", c.Name, f.Name, x)
			}
		}
	}
	if _, err := json.Marshal(d.Fields); err != nil {
		t.Fatalf("%s: accepted values cannot be sent back: %v", c.Name, err)
	}
}
