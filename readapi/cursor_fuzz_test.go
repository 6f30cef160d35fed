package readapi_test

import (
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"github.com/tidemark/tidemark/apperr"
	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/readapi"
)

// listOrders are every (collection, order) a list cursor may be read
// under: the test collection (a sort key of every kind) and every
// registered collection, by id, updatedAt and each of its fields.
func listOrders() []struct {
	c     *collections.Collection
	order string
} {
	var out []struct {
		c     *collections.Collection
		order string
	}
	for _, c := range append([]*collections.Collection{jobs}, collections.All()...) {
		orders := []string{"", "updatedAt"}
		for _, f := range c.Fields {
			orders = append(orders, f.Name)
		}
		for _, o := range orders {
			out = append(out, struct {
				c     *collections.Collection
				order string
			}{c, o})
		}
	}
	return out
}

// A cursor the database would refuse (NUL or invalid UTF-8 in its id or
// sort value), or that names a position no document can have, is bad
// input of the paging argument, never an internal error.
func TestListCursorRefusesWhatTheDatabaseWouldRefuse(t *testing.T) {
	encode := func(json string) string { return base64.RawURLEncoding.EncodeToString([]byte(json)) }
	tests := []struct{ name, order, cursor string }{
		{"a NUL in the id", "", encode(`{"c":"Job","o":"","i":"a\u0000b"}`)},
		{"invalid UTF-8 in the id", "", encode("{\"c\":\"Job\",\"o\":\"\",\"i\":\"a\xffb\"}")},
		{"a NUL in a string sort value", "title", encode(`{"c":"Job","o":"title","v":"\"a\\u0000\"","i":"a"}`)},
		{"a NUL in the sort value's text", "title", encode(`{"c":"Job","o":"title","v":"\"a\u0000\"","i":"a"}`)},
		{"a time in year 10000 in UTC", "dueAt", encode(`{"c":"Job","o":"dueAt","v":"9999-12-31T23:59:59-14:00","i":"a"}`)},
		{"a time in year 0 in UTC", "dueAt", encode(`{"c":"Job","o":"dueAt","v":"0001-01-01T00:00:00+14:00","i":"a"}`)},
		{"a time not in UTC", "dueAt", encode(`{"c":"Job","o":"dueAt","v":"2024-05-01T14:00:00+02:00","i":"a"}`)},
		{"an int written another way", "priority", encode(`{"c":"Job","o":"priority","v":"+3","i":"a"}`)},
		{"a NULL updatedAt", "updatedAt", encode(`{"c":"Job","o":"updatedAt","i":"a"}`)},
		{"a NULL value of a required field", "priority", encode(`{"c":"Job","o":"priority","i":"a"}`)},
		{"a sort value in the id order", "", encode(`{"c":"Job","o":"","v":"\"x\"","i":"a"}`)},
		{"an id no document can have", "", encode(`{"c":"Job","o":"","i":"a\u0007"}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for arg, page := range map[string]readapi.PageArgs{"after": {After: &tt.cursor}, "before": {Before: &tt.cursor}} {
				_, err := readapi.Prepare(readapi.List{Collection: jobs, Query: readapi.ListQuery{OrderBy: tt.order}, Page: page})
				wantInvalid(t, err, arg)
			}
		})
	}
}

func TestFiltersRefuseWhatTheDatabaseWouldRefuse(t *testing.T) {
	for _, f := range []readapi.Filter{
		{Field: "title", Op: readapi.OpEqual, Value: "a\x00b"},
		{Field: "title", Op: readapi.OpEqual, Value: "a\xffb"},
		{Field: "title", Op: readapi.OpIn, Value: []string{"ok", "a\x00"}},
	} {
		_, err := readapi.Prepare(readapi.List{Collection: jobs, Query: readapi.ListQuery{Filters: []readapi.Filter{f}}})
		wantInvalid(t, err, "filter.title")
		_, err = readapi.New(nil).Count(t.Context(), "tenant", readapi.List{Collection: jobs, Query: readapi.ListQuery{Filters: []readapi.Filter{f}}})
		wantInvalid(t, err, "filter.title")
	}
}

// FuzzListCursor feeds arbitrary text as a list cursor under every order
// of every collection: decoding never panics, every refusal is
// BAD_USER_INPUT on the paging argument, and every accepted cursor names a
// position a document can have and re-encodes to itself.
func FuzzListCursor(f *testing.F) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 123456000, time.UTC)
	for _, lo := range listOrders() {
		doc := collections.Document{ID: "wo-1", UpdatedAt: at, Fields: map[string]any{}}
		for _, fl := range lo.c.Fields {
			switch fl.Kind {
			case collections.String, collections.Enum:
				doc.Fields[fl.Name] = "value é"
			case collections.Int:
				doc.Fields[fl.Name] = int64(-42)
			case collections.Float:
				doc.Fields[fl.Name] = 51.5
			case collections.Bool:
				doc.Fields[fl.Name] = true
			case collections.Time:
				doc.Fields[fl.Name] = at.Add(time.Hour)
			}
		}
		f.Add(readapi.Cursors(lo.c, readapi.ListQuery{OrderBy: lo.order}, []collections.Document{doc})[0], lo.order)
	}
	f.Add("", "")
	f.Add(base64.RawURLEncoding.EncodeToString([]byte(`{"c":"Job","o":"title","v":"\"a\\u0000\"","i":"a"}`)), "title")
	f.Add(base64.RawURLEncoding.EncodeToString([]byte(`{"c":"Job","o":"dueAt","v":"9999-12-31T23:59:59-14:00","i":"a"}`)), "dueAt")

	lists := listOrders()
	f.Fuzz(func(t *testing.T, cursor, order string) {
		for _, lo := range lists {
			if lo.order != order {
				continue
			}
			q := readapi.ListQuery{OrderBy: order}
			for arg, page := range map[string]readapi.PageArgs{"after": {After: &cursor}, "before": {Before: &cursor}} {
				plan, err := readapi.Prepare(readapi.List{Collection: lo.c, Query: q, Page: page})
				if err != nil {
					if e, ok := apperr.As(err); !ok || e.Code != apperr.BadUserInput || e.Field != arg {
						t.Fatalf("%s %q (%s): refused with %v; want BAD_USER_INPUT on %s", lo.c.Name, cursor, order, err, arg)
					}
					continue
				}
				key := plan.Query.After
				if key == nil {
					t.Fatalf("%s %q: accepted without a position", lo.c.Name, cursor)
				}
				if err := checkKey(lo.c, order, *key); err != nil {
					t.Fatalf("%s %q (%s): accepted %+v: %v", lo.c.Name, cursor, order, *key, err)
				}
				if again := readapi.Cursors(lo.c, q, []collections.Document{docAt(order, *key)})[0]; again != cursor {
					t.Fatalf("%s %q (%s) re-encodes to %q", lo.c.Name, cursor, order, again)
				}
			}
		}
	})
}

// checkKey says what is wrong with a position no stored document can have.
func checkKey(c *collections.Collection, order string, key readapi.ListKey) error {
	if err := collections.CheckID(key.ID); err != nil {
		return fmt.Errorf("id: %v", err)
	}
	switch v := key.Value.(type) {
	case nil:
		if order == "updatedAt" {
			return fmt.Errorf("a NULL updatedAt")
		}
		if f, ok := c.Field(order); order != "" && (!ok || !f.Nullable) {
			return fmt.Errorf("a NULL value of a required field")
		}
	case string:
		return collections.CheckText(v)
	case time.Time:
		if v.Location() != time.UTC {
			return fmt.Errorf("a time not in UTC")
		}
		return collections.CheckTime(v)
	}
	return nil
}

// docAt is a document at the position key of order.
func docAt(order string, key readapi.ListKey) collections.Document {
	d := collections.Document{ID: key.ID, Fields: map[string]any{}}
	switch order {
	case "":
	case "updatedAt":
		d.UpdatedAt, _ = key.Value.(time.Time)
	default:
		d.Fields[order] = key.Value
	}
	return d
}
