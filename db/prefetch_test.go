package db_test

import (
	"context"
	"testing"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
)

// TestPrefetchedGetSeesThisTransactionsWrites: a Get answered from a
// group's prefetch must still see what earlier pushes of the group wrote:
// documents they stored and bucket rows they set are read again.
func TestPrefetchedGetSeesThisTransactionsWrites(t *testing.T) {
	ctx := context.Background()
	d := dbtest.Open(t, db.PoolConfig{MaxConns: 2})
	put(t, d, "pre", site("a", "A before"), site("b", "B before"))
	err := d.WriteDocuments(ctx, "pre", collections.Site, func(cw collections.Writer) error {
		w := cw.(*db.Writer)
		w.Prefetch([]string{"a", "b", "c"})
		first, err := w.Get(ctx, []string{"a"})
		if err != nil {
			return err
		}
		if first["a"].Fields["name"] != "A before" {
			t.Errorf("first Get: a = %v", first["a"].Fields)
		}
		if _, err := w.Put(ctx, []collections.Document{site("a", "A written"), site("c", "C written")}); err != nil {
			return err
		}
		got, err := w.Get(ctx, []string{"a", "b", "c"})
		if err != nil {
			return err
		}
		for id, want := range map[string]string{"a": "A written", "b": "B before", "c": "C written"} {
			if got[id].Fields["name"] != want {
				t.Errorf("Get after the write: %s = %v; want name %q", id, got[id].Fields, want)
			}
		}
		if err := w.SetMembers(ctx, collections.Site, []collections.MemberChange{{DocID: "b", Bucket: "x", Change: got["c"].Change, Refs: 1, Present: true}}); err != nil {
			return err
		}
		rows, err := w.Members(ctx, collections.Site, []string{"b"})
		if err != nil {
			return err
		}
		if len(rows["b"]) != 1 || rows["b"][0].Bucket != "x" {
			t.Errorf("bucket rows of b after setting one: %+v; want the row in x", rows["b"])
		}
		if _, err := w.Get(ctx, []string{"b"}); err != nil {
			return err
		}
		rows, err = w.Members(ctx, collections.Site, []string{"b"})
		if err != nil {
			return err
		}
		if len(rows["b"]) != 1 {
			t.Errorf("bucket rows of b read with a Get after setting one: %+v; want the row in x", rows["b"])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
