package dataloader_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/tidemark/tidemark/apperr"
	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/dataloader"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
	"github.com/tidemark/tidemark/doccache"
	"github.com/tidemark/tidemark/readapi"
	"github.com/tidemark/tidemark/syncengine"
)

// countingLists is the database, counting the list reads that reach it.
type countingLists struct {
	*db.DB
	mu sync.Mutex
	n  int
}

func (c *countingLists) ListDocuments(ctx context.Context, tenantID string, coll *collections.Collection, q readapi.ListQuery) ([]collections.Document, error) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.DB.ListDocuments(ctx, tenantID, coll, q)
}

func seedChecklists(t *testing.T, d *db.DB, parents []string, each int) {
	t.Helper()
	var rows []syncengine.PushRow
	for _, p := range parents {
		for j := range each {
			rows = append(rows, syncengine.PushRow{New: collections.Document{ID: fmt.Sprintf("%s-ci-%d", p, j), Fields: map[string]any{
				"workOrderId": p, "label": "check", "done": false, "position": each - j,
			}}})
		}
	}
	if _, err := syncengine.New(d).Push(context.Background(), syncengine.Caller{TenantID: "acme", UserID: "alice"}, collections.ChecklistItem, rows); err != nil {
		t.Fatal(err)
	}
}

// A primed page answers its items' nested lists without another read,
// parents without children included, in the same order as a plain load.
func TestPrimedChildrenAnswerWithoutARead(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{})
	parents := []string{"wo-1", "wo-2", "wo-3"}
	seedChecklists(t, d, parents[:2], 3)
	lists := &countingLists{DB: d}
	l := dataloader.New(dataloader.Sources{Documents: d, Lists: lists}, "acme")
	if _, err := l.PrimeChildren(context.Background(), collections.ChecklistItem, "workOrderId", "position", append(parents, "wo-1")); err != nil {
		t.Fatal(err)
	}
	ids, errs := children(l, parents)
	for i, p := range parents {
		want := []string{p + "-ci-2", p + "-ci-1", p + "-ci-0"}
		if p == "wo-3" {
			want = nil
		}
		if errs[i] != nil || fmt.Sprint(ids[i]) != fmt.Sprint(want) {
			t.Fatalf("%s: %v, %v; want %v", p, ids[i], errs[i], want)
		}
	}
	if lists.n != 1 {
		t.Fatalf("%d list reads, want 1 (the prime alone)", lists.n)
	}
}

// With the document cache serving the nested lists, a page over the bound
// is still BAD_USER_INPUT, and priming it reports the same error.
func TestChildrenFromTheCacheKeepTheBound(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{})
	parents := []string{"wo-1", "wo-2", "wo-3"}
	seedChecklists(t, d, parents, 4)
	cache, err := doccache.New(d, doccache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cache.Close)
	sources := dataloader.Sources{Documents: cache, Lists: d, Children: cache}
	for _, bound := range []int{11, 12} {
		// Each parent's list cached alone first: the bound holds on the
		// total of cached lists too, not only on one read.
		for _, p := range parents {
			if _, err := dataloader.New(sources, "acme").PrimeChildren(context.Background(), collections.ChecklistItem, "workOrderId", "position", []string{p}); err != nil {
				t.Fatal(err)
			}
		}
		l := dataloader.New(sources, "acme")
		dataloader.SetMaxChildren(l, bound)
		_, primeErr := l.PrimeChildren(context.Background(), collections.ChecklistItem, "workOrderId", "position", parents)
		_, errs := children(l, parents)
		for i, err := range append(errs, primeErr) {
			e, isApp := apperr.As(err)
			switch {
			case bound == 11 && (!isApp || e.Code != apperr.BadUserInput):
				t.Fatalf("bound 11, load %d: %v (%s), want BAD_USER_INPUT", i, err, apperr.CodeOf(err))
			case bound == 12 && err != nil:
				t.Fatalf("bound 12, load %d: %v", i, err)
			}
		}
	}
}
