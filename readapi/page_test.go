package readapi_test

// Tests of paging that need no database: page arguments, the plan Prepare
// makes of them, the page Result shapes, and list cursors.

import (
	"encoding/base64"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/apperr"
	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/readapi"
)

// jobs is a collection with a sort key of every kind a list orders by.
var jobs = &collections.Collection{
	Name:  "Job",
	Table: "jobs",
	Fields: []collections.Field{
		{Name: "title", Kind: collections.String},
		{Name: "priority", Kind: collections.Int},
		{Name: "weight", Kind: collections.Float, Nullable: true},
		{Name: "dueAt", Kind: collections.Time, Nullable: true},
	},
}

var noon = time.Date(2024, 5, 1, 12, 0, 0, 123456000, time.UTC)

func job(id string) collections.Document {
	return collections.Document{ID: id, UpdatedAt: noon, Fields: map[string]any{
		"title": "job " + id, "priority": int64(len(id)), "weight": 1.25, "dueAt": noon.Add(time.Hour),
	}}
}

func docs(ids ...string) []collections.Document {
	out := make([]collections.Document, len(ids))
	for i, id := range ids {
		out[i] = job(id)
	}
	return out
}

func ids(docs []collections.Document) string {
	s := make([]string, len(docs))
	for i, d := range docs {
		s[i] = d.ID
	}
	return strings.Join(s, ",")
}

func intp(n int) *int       { return &n }
func strp(s string) *string { return &s }

// wantInvalid fails unless err is bad input in the named argument.
func wantInvalid(t *testing.T, err error, field string) {
	t.Helper()
	e, ok := apperr.As(err)
	if !ok || e.Code != apperr.BadUserInput || e.Field != field {
		t.Fatalf("err = %v; want BAD_USER_INPUT on %q", err, field)
	}
}

func TestPageArgsSize(t *testing.T) {
	tests := []struct {
		name         string
		args         readapi.PageArgs
		want         int
		wantBackward bool
	}{
		{"no arguments give the default page, forward", readapi.PageArgs{}, readapi.DefaultPageSize, false},
		{"first sets the size", readapi.PageArgs{First: intp(10)}, 10, false},
		{"first 0 is an empty page", readapi.PageArgs{First: intp(0)}, 0, false},
		{"first at the maximum passes", readapi.PageArgs{First: intp(readapi.MaxPageSize)}, readapi.MaxPageSize, false},
		{"after pages forward", readapi.PageArgs{After: strp("c")}, readapi.DefaultPageSize, false},
		{"last pages backward", readapi.PageArgs{Last: intp(3)}, 3, true},
		{"before alone pages backward with the default size", readapi.PageArgs{Before: strp("c")}, readapi.DefaultPageSize, true},
		{"last with before pages backward", readapi.PageArgs{Last: intp(2), Before: strp("c")}, 2, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, backward, err := tt.args.Size()
			if err != nil || n != tt.want || backward != tt.wantBackward {
				t.Fatalf("Size() = %d, %v, %v; want %d, %v", n, backward, err, tt.want, tt.wantBackward)
			}
		})
	}
}

func TestPageArgsSizeRefusesBadArguments(t *testing.T) {
	tests := []struct {
		name  string
		args  readapi.PageArgs
		field string
	}{
		{"first and last together", readapi.PageArgs{First: intp(1), Last: intp(1)}, "first"},
		{"after and before together", readapi.PageArgs{After: strp("a"), Before: strp("b")}, "after"},
		{"a negative first", readapi.PageArgs{First: intp(-1)}, "first"},
		{"first over the maximum", readapi.PageArgs{First: intp(readapi.MaxPageSize + 1)}, "first"},
		{"last over the maximum", readapi.PageArgs{Last: intp(readapi.MaxPageSize + 1)}, "last"},
		{"a negative last", readapi.PageArgs{Last: intp(-5)}, "last"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := tt.args.Size()
			wantInvalid(t, err, tt.field)
		})
	}
}

func TestPrepareReadsOneMoreThanThePage(t *testing.T) {
	plan, err := readapi.Prepare(readapi.List{Collection: jobs, Query: readapi.ListQuery{OrderBy: "priority"}, Page: readapi.PageArgs{First: intp(2)}})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Query.Limit != 3 || plan.Query.Desc || plan.Query.After != nil || plan.Query.OrderBy != "priority" {
		t.Errorf("query = %+v; want priority ascending, limit 3, no position", plan.Query)
	}
}

func TestPrepareKeepsTheFiltersAndTheListsQuery(t *testing.T) {
	filters := []readapi.Filter{{Field: "title", Op: readapi.OpEqual, Value: "x"}}
	l := readapi.List{Collection: jobs, Query: readapi.ListQuery{Filters: filters, IncludeDeleted: true}, Page: readapi.PageArgs{Last: intp(4)}}
	plan, err := readapi.Prepare(l)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(plan.Query.Filters, filters) || !plan.Query.IncludeDeleted {
		t.Errorf("query = %+v; want the list's filters and IncludeDeleted", plan.Query)
	}
	if l.Query.Limit != 0 || l.Query.Desc {
		t.Errorf("Prepare changed the list's own query: %+v", l.Query)
	}
}

func TestPrepareOfABackwardPageReversesTheOrder(t *testing.T) {
	for _, desc := range []bool{false, true} {
		plan, err := readapi.Prepare(readapi.List{Collection: jobs, Query: readapi.ListQuery{OrderBy: "dueAt", Desc: desc}, Page: readapi.PageArgs{Last: intp(5)}})
		if err != nil {
			t.Fatal(err)
		}
		if plan.Query.Desc == desc || plan.Query.Limit != 6 {
			t.Errorf("desc %v: query = %+v; want the order reversed and limit 6", desc, plan.Query)
		}
	}
}

func TestPageResult(t *testing.T) {
	tests := []struct {
		name               string
		page               readapi.PageArgs
		read               []collections.Document // what the store returned for the plan
		wantIDs            string
		wantNext, wantPrev bool
	}{
		{"a short first page has no next page", readapi.PageArgs{First: intp(3)}, docs("a", "b"), "a,b", false, false},
		{"a full first page with one more read has a next page", readapi.PageArgs{First: intp(2)}, docs("a", "b", "c"), "a,b", true, false},
		{"a page after a cursor has a previous page", readapi.PageArgs{First: intp(2), After: cursorOf(t, job("a"))}, docs("b"), "b", false, true},
		{"a backward page is returned in list order", readapi.PageArgs{Last: intp(2)}, docs("c", "b"), "b,c", false, false},
		{"a backward page with one more read has a previous page", readapi.PageArgs{Last: intp(2)}, docs("c", "b", "a"), "b,c", false, true},
		{"a page before a cursor has a next page", readapi.PageArgs{Last: intp(2), Before: cursorOf(t, job("b"))}, docs("a"), "a", true, false},
		{"first 0 returns no documents but tells whether there are any", readapi.PageArgs{First: intp(0)}, docs("a"), "", true, false},
		{"an empty list is an empty page", readapi.PageArgs{}, nil, "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := readapi.Prepare(readapi.List{Collection: jobs, Page: tt.page})
			if err != nil {
				t.Fatal(err)
			}
			res := plan.Result(tt.read)
			if got := ids(res.Documents); got != tt.wantIDs {
				t.Errorf("documents = %s, want %s", got, tt.wantIDs)
			}
			if res.HasNextPage != tt.wantNext || res.HasPreviousPage != tt.wantPrev {
				t.Errorf("hasNextPage %v hasPreviousPage %v, want %v %v", res.HasNextPage, res.HasPreviousPage, tt.wantNext, tt.wantPrev)
			}
			if len(res.Cursors) != len(res.Documents) {
				t.Fatalf("%d cursors for %d documents", len(res.Cursors), len(res.Documents))
			}
			for i, d := range res.Documents {
				if want := readapi.Cursors(jobs, readapi.ListQuery{}, []collections.Document{d})[0]; res.Cursors[i] != want {
					t.Errorf("cursor %d = %q, want %q (the cursor of %s)", i, res.Cursors[i], want, d.ID)
				}
			}
		})
	}
}

// cursorOf is the cursor of doc in jobs ordered by id.
func cursorOf(t *testing.T, doc collections.Document) *string {
	t.Helper()
	return strp(readapi.Cursors(jobs, readapi.ListQuery{}, []collections.Document{doc})[0])
}

// A cursor names a document's position in one order; Prepare turns it
// back into exactly the position KeyOf gives, in either direction.
func TestListCursorRoundTrip(t *testing.T) {
	nulls := job("n")
	nulls.Fields["weight"], nulls.Fields["dueAt"] = nil, nil
	for _, order := range []string{"", "updatedAt", "title", "priority", "weight", "dueAt"} {
		for _, doc := range []collections.Document{job("abc"), nulls} {
			t.Run(fmt.Sprintf("order %q, document %s", order, doc.ID), func(t *testing.T) {
				q := readapi.ListQuery{OrderBy: order}
				cursor := readapi.Cursors(jobs, q, []collections.Document{doc})[0]
				want := readapi.KeyOf(jobs, q, doc)
				for _, page := range []readapi.PageArgs{{After: &cursor}, {Before: &cursor}} {
					plan, err := readapi.Prepare(readapi.List{Collection: jobs, Query: q, Page: page})
					if err != nil {
						t.Fatal(err)
					}
					got := plan.Query.After
					if got == nil || got.ID != want.ID || !sameValue(got.Value, want.Value) {
						t.Fatalf("position = %+v, want %+v", got, want)
					}
				}
			})
		}
	}
}

func sameValue(a, b any) bool {
	if ta, ok := a.(time.Time); ok {
		tb, ok := b.(time.Time)
		return ok && ta.Equal(tb)
	}
	return a == b
}

func TestListCursorIsRefusedForAnotherOrder(t *testing.T) {
	cursor := readapi.Cursors(jobs, readapi.ListQuery{OrderBy: "priority"}, docs("a"))[0]
	for _, order := range []string{"", "updatedAt", "title", "dueAt"} {
		_, err := readapi.Prepare(readapi.List{Collection: jobs, Query: readapi.ListQuery{OrderBy: order}, Page: readapi.PageArgs{After: &cursor}})
		wantInvalid(t, err, "after")
	}
}

func TestMalformedListCursorIsRefused(t *testing.T) {
	// The hand-made cursors are right in all but the named part ("c" is
	// the collection, "o" the order, "v" the sort value, "i" the id).
	encode := func(json string) string { return base64.RawURLEncoding.EncodeToString([]byte(json)) }
	tests := []struct{ name, order, cursor string }{
		{"the empty string", "", ""},
		{"not base64", "", "%%%"},
		{"padded base64", "", base64.URLEncoding.EncodeToString([]byte(`{"c":"Job","o":"","i":"a"}`))},
		{"base64 of something other than JSON", "", encode("hello")},
		{"too long", "", strings.Repeat("A", 1001)},
		{"a cursor without an id", "", encode(`{"c":"Job","o":""}`)},
		{"a time that does not parse", "dueAt", encode(`{"c":"Job","o":"dueAt","v":"x","i":"a"}`)},
		{"an int that is not a number", "priority", encode(`{"c":"Job","o":"priority","v":"x","i":"a"}`)},
		{"a float that is not a number", "weight", encode(`{"c":"Job","o":"weight","v":"\"1.5\"","i":"a"}`)},
		{"a string that is not a JSON string", "title", encode(`{"c":"Job","o":"title","v":"5","i":"a"}`)},
		{"an order the collection does not have", "nope", encode(`{"c":"Job","o":"nope","v":"\"x\"","i":"a"}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for arg, page := range map[string]readapi.PageArgs{"after": {After: &tt.cursor}, "before": {Before: &tt.cursor}} {
				_, err := readapi.Prepare(readapi.List{Collection: jobs, Query: readapi.ListQuery{OrderBy: tt.order}, Page: page})
				wantInvalid(t, err, arg)
			}
		})
	}
	good := encode(`{"c":"Job","o":"priority","v":"3","i":"a"}`)
	plan, err := readapi.Prepare(readapi.List{Collection: jobs, Query: readapi.ListQuery{OrderBy: "priority"}, Page: readapi.PageArgs{After: &good}})
	if err != nil || plan.Query.After == nil || plan.Query.After.Value != int64(3) || plan.Query.After.ID != "a" {
		t.Fatalf("a well-made cursor: %+v, %v", plan.Query.After, err)
	}
}
