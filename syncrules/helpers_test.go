package syncrules

import (
	"strings"
	"testing"

	"github.com/tidemark/tidemark/collections"
)

// testCols mirror the four real collections, built here so the tests do not
// depend on the registry (which is generated from the GraphQL schema).
type testCols struct {
	Site, WorkOrder, ChecklistItem, Note *collections.Collection
}

func newTestCols() testCols {
	return testCols{
		Site: &collections.Collection{Name: "Site", Table: "sites", Fields: []collections.Field{
			{Name: "name", Kind: collections.String},
			{Name: "address", Kind: collections.String},
			{Name: "latitude", Kind: collections.Float, Nullable: true},
			{Name: "longitude", Kind: collections.Float, Nullable: true},
		}},
		WorkOrder: &collections.Collection{Name: "WorkOrder", Table: "work_orders", Fields: []collections.Field{
			{Name: "siteId", Kind: collections.String, RefersTo: "Site"},
			{Name: "title", Kind: collections.String},
			{Name: "description", Kind: collections.String, Nullable: true},
			{Name: "status", Kind: collections.Enum, Values: []string{"OPEN", "IN_PROGRESS", "DONE", "CANCELLED"}},
			{Name: "priority", Kind: collections.Int},
			{Name: "assigneeId", Kind: collections.String, Nullable: true},
			{Name: "dueAt", Kind: collections.Time, Nullable: true},
		}},
		ChecklistItem: &collections.Collection{Name: "ChecklistItem", Table: "checklist_items", Fields: []collections.Field{
			{Name: "workOrderId", Kind: collections.String, RefersTo: "WorkOrder"},
			{Name: "label", Kind: collections.String},
			{Name: "done", Kind: collections.Bool},
			{Name: "position", Kind: collections.Int},
		}},
		Note: &collections.Collection{Name: "Note", Table: "notes", Fields: []collections.Field{
			{Name: "workOrderId", Kind: collections.String, RefersTo: "WorkOrder"},
			{Name: "body", Kind: collections.String},
			{Name: "authorId", Kind: collections.String, ServerOwned: true},
		}},
	}
}

// all lists the collections in the registry's order.
func (c testCols) all() []*collections.Collection {
	return []*collections.Collection{c.Site, c.WorkOrder, c.ChecklistItem, c.Note}
}

// lines joins a rules file, one argument per line, so that a line's number
// is its argument's position plus one.
func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }

func mustParse(tb testing.TB, src string, cols []*collections.Collection) *Rules {
	tb.Helper()
	r, err := Parse("test.rules", []byte(src), cols)
	if err != nil {
		tb.Fatalf("Parse: %v\nsource:\n%s", err, src)
	}
	return r
}

func mustDefault(tb testing.TB, cols []*collections.Collection) *Rules {
	tb.Helper()
	r, err := Default(cols)
	if err != nil {
		tb.Fatalf("Default: %v", err)
	}
	return r
}

func names(cs []*collections.Collection) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name
	}
	return out
}

func memberLines(ms []*Membership) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.String()
	}
	return out
}

func bucketNamed(tb testing.TB, r *Rules, name string) *BucketDef {
	tb.Helper()
	for _, b := range r.Buckets() {
		if b.Name() == name {
			return b
		}
	}
	tb.Fatalf("no bucket %q", name)
	return nil
}
