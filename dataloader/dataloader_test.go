package dataloader_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/tidemark/tidemark/apperr"
	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/dataloader"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
	"github.com/tidemark/tidemark/syncengine"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// children loads the checklists of parents the way a page of work orders
// does (every load queued before any is awaited) and returns each
// parent's item ids or error.
func children(l *dataloader.Loaders, parents []string) ([][]string, []error) {
	ctx := context.Background()
	for _, p := range parents {
		l.PrefetchChildren(ctx, collections.ChecklistItem, "workOrderId", "position", p)
	}
	ids, errs := make([][]string, len(parents)), make([]error, len(parents))
	var wg sync.WaitGroup
	for i, p := range parents {
		wg.Go(func() {
			docs, err := l.Children(ctx, collections.ChecklistItem, "workOrderId", "position", p)
			errs[i] = err
			for _, d := range docs {
				ids[i] = append(ids[i], d.ID)
			}
		})
	}
	wg.Wait()
	return ids, errs
}

// A page whose nested lists hold more than the bound together answers a
// BAD_USER_INPUT error that names the bound, never an internal error and
// never a list cut short; at the bound it answers every item.
func TestChildrenOverTheBoundAreBadInputNotInternal(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{})
	engine := syncengine.New(d)
	parents := []string{"wo-1", "wo-2", "wo-3"}
	var rows []syncengine.PushRow
	for _, p := range parents {
		for j := range 4 {
			rows = append(rows, syncengine.PushRow{New: collections.Document{ID: fmt.Sprintf("%s-ci-%d", p, j), Fields: map[string]any{
				"workOrderId": p, "label": "check", "done": false, "position": 4 - j,
			}}})
		}
	}
	if _, err := engine.Push(context.Background(), syncengine.Caller{TenantID: "acme", UserID: "alice"}, collections.ChecklistItem, rows); err != nil {
		t.Fatal(err)
	}
	sources := dataloader.Sources{Documents: d, Lists: d}

	over := dataloader.New(sources, "acme")
	dataloader.SetMaxChildren(over, 11)
	_, errs := children(over, parents)
	for i, err := range errs {
		e, ok := apperr.As(err)
		if !ok || e.Code != apperr.BadUserInput {
			t.Fatalf("%s over the bound: %v (%s), want BAD_USER_INPUT", parents[i], err, apperr.CodeOf(err))
		}
		if want := "more than 11 ChecklistItem"; !strings.Contains(e.Message, want) {
			t.Fatalf("message %q does not name the bound (%q)", e.Message, want)
		}
	}

	at := dataloader.New(sources, "acme")
	dataloader.SetMaxChildren(at, 12)
	ids, errs := children(at, parents)
	for i, p := range parents {
		want := []string{p + "-ci-3", p + "-ci-2", p + "-ci-1", p + "-ci-0"}
		if errs[i] != nil || fmt.Sprint(ids[i]) != fmt.Sprint(want) {
			t.Fatalf("%s at the bound: %v, %v; want %v", p, ids[i], errs[i], want)
		}
	}
}
