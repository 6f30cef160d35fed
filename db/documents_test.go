package db_test

import (
	"context"
	"testing"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
)

func site(id, name string) collections.Document {
	return collections.Document{ID: id, Fields: map[string]any{
		"name": name, "address": "1 Main St", "latitude": nil, "longitude": 4.5,
	}}
}

func put(t *testing.T, d *db.DB, tenant string, docs ...collections.Document) []collections.Document {
	t.Helper()
	var stored []collections.Document
	err := d.WriteDocuments(context.Background(), tenant, collections.Site, func(w collections.Writer) error {
		var err error
		stored, err = w.Put(context.Background(), docs)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return stored
}

func TestTenantsNeverSeeOrOverwriteEachOthersRows(t *testing.T) {
	ctx := context.Background()
	d := dbtest.Open(t, db.PoolConfig{})

	put(t, d, "tenant-a", site("s1", "A's site"))
	put(t, d, "tenant-b", site("s1", "B's site"), site("s2", "B only"))

	a, err := d.GetDocuments(ctx, "tenant-a", collections.Site, []string{"s1", "s2"})
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 1 || a["s1"].Fields["name"] != "A's site" {
		t.Fatalf("tenant-a reads %v; want only its own s1", a)
	}
	changes, err := d.ChangesSince(ctx, "tenant-a", collections.Site, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1 || changes[0].ID != "s1" || changes[0].Fields["name"] != "A's site" {
		t.Fatalf("tenant-a's changes = %+v; want only its own s1", changes)
	}
	// Each tenant's change numbers start at 1 in each collection.
	if changes[0].Change != 1 {
		t.Fatalf("tenant-a's first change number = %d; want 1", changes[0].Change)
	}
	b, err := d.ChangesSince(ctx, "tenant-b", collections.Site, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 2 || b[0].Fields["name"] != "B's site" || b[1].Change != 2 {
		t.Fatalf("tenant-b's changes = %+v", b)
	}
	if head, _ := d.ScopeHead(ctx, "tenant-b", collections.Site); head != 2 {
		t.Fatalf("tenant-b head = %d; want 2", head)
	}
}

func TestPutAssignsChangeNumbersAndRoundTripsValues(t *testing.T) {
	ctx := context.Background()
	d := dbtest.Open(t, db.PoolConfig{})

	first := put(t, d, "t", site("s1", "one"), site("s2", "two"))
	if first[0].Change != 1 || first[1].Change != 2 || first[0].UpdatedAt.IsZero() {
		t.Fatalf("stored = %+v; want change numbers 1, 2 and an update time", first)
	}
	again := put(t, d, "t", site("s1", "one, renamed"))
	if again[0].Change != 3 {
		t.Fatalf("rewrite got change %d; want 3", again[0].Change)
	}
	got, err := d.ChangesSince(ctx, "t", collections.Site, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	// s1 moved to the end of the change order; it appears once, at its latest state.
	if len(got) != 2 || got[0].ID != "s2" || got[1].ID != "s1" || got[1].Fields["name"] != "one, renamed" {
		t.Fatalf("changes = %+v", got)
	}
	if got[1].Fields["latitude"] != nil || got[1].Fields["longitude"] != 4.5 {
		t.Fatalf("nullable floats did not round-trip: %+v", got[1].Fields)
	}
	if !got[1].UpdatedAt.Equal(again[0].UpdatedAt) {
		t.Fatalf("updatedAt read %v; stored %v", got[1].UpdatedAt, again[0].UpdatedAt)
	}
	page, err := d.ChangesSince(ctx, "t", collections.Site, 2, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 1 || page[0].ID != "s1" {
		t.Fatalf("changes after 2 = %+v; want s1 only", page)
	}
}
