package doccache_test

import (
	"context"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
	"github.com/tidemark/tidemark/doccache"
	"github.com/tidemark/tidemark/readapi"
	"github.com/tidemark/tidemark/syncengine"
)

// countingLister is the database (by id and lists), counting the list
// reads that reach it.
type countingLister struct {
	*db.DB
	mu    sync.Mutex
	lists int
}

func (l *countingLister) ListDocuments(ctx context.Context, tenantID string, c *collections.Collection, q readapi.ListQuery) ([]collections.Document, error) {
	l.mu.Lock()
	l.lists++
	l.mu.Unlock()
	return l.DB.ListDocuments(ctx, tenantID, c, q)
}

func (l *countingLister) Lists() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lists
}

// putItem writes checklist item id under workOrderID at position, as a
// client that last saw the server's current state.
func putItem(t *testing.T, d *db.DB, engine *syncengine.Engine, tenantID, id, workOrderID string, position int) {
	t.Helper()
	ctx := context.Background()
	current, err := d.GetDocuments(ctx, tenantID, collections.ChecklistItem, []string{id})
	if err != nil {
		t.Fatal(err)
	}
	row := syncengine.PushRow{New: collections.Document{ID: id, Fields: map[string]any{
		"workOrderId": workOrderID, "label": id, "done": false, "position": position,
	}}}
	if m, ok := current[id]; ok {
		row.Assumed = &m
	}
	res, err := engine.Push(ctx, syncengine.Caller{TenantID: tenantID, UserID: "u1"}, collections.ChecklistItem, []syncengine.PushRow{row})
	if err != nil || len(res) != 0 {
		t.Fatalf("push %s: %v, conflicts %+v", id, err, res)
	}
}

// checklists reads the parents' checklists through the cache and returns
// them as "parent: id id …" lines, in the order asked.
func checklists(t *testing.T, c *doccache.Cache, tenantID string, limit int, parents ...string) string {
	t.Helper()
	got, err := c.GetChildren(context.Background(), tenantID, collections.ChecklistItem, "workOrderId", "position", parents, limit)
	if err != nil {
		t.Fatalf("GetChildren: %v", err)
	}
	out := ""
	for _, p := range parents {
		out += p + ":"
		for _, d := range got[p] {
			if d.Fields["workOrderId"] != p {
				t.Fatalf("%s's list holds %s of %v", p, d.ID, d.Fields["workOrderId"])
			}
			out += " " + d.ID
		}
		out += "\n"
	}
	return out
}

func TestChildren(t *testing.T) {
	setup := func(t *testing.T, ttl time.Duration) (*db.DB, *countingLister, *doccache.Cache, *syncengine.Engine) {
		d := dbtest.Open(t, db.PoolConfig{})
		lister := &countingLister{DB: d}
		cache, err := doccache.New(lister, doccache.Options{TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cache.Close)
		engine := syncengine.New(d)
		engine.OnCommit(cache.Committed)
		putItem(t, d, engine, "t1", "a2", "wo-a", 2)
		putItem(t, d, engine, "t1", "a1", "wo-a", 1)
		putItem(t, d, engine, "t1", "b1", "wo-b", 1)
		putItem(t, d, engine, "t2", "x1", "wo-a", 1) // another tenant's, same parent id
		return d, lister, cache, engine
	}
	const limit = 100

	t.Run("lists are read once, in order, by tenant, and then served from memory", func(t *testing.T) {
		_, lister, cache, _ := setup(t, time.Minute)
		want := "wo-a: a1 a2\nwo-b: b1\nwo-none:\n"
		if got := checklists(t, cache, "t1", limit, "wo-a", "wo-b", "wo-none"); got != want {
			t.Fatalf("first read:\n%s\nwant\n%s", got, want)
		}
		if n := lister.Lists(); n != 1 {
			t.Fatalf("%d list reads, want 1", n)
		}
		// Again, and a subset: memory only, empty lists included.
		if got := checklists(t, cache, "t1", limit, "wo-a", "wo-b", "wo-none"); got != want {
			t.Fatalf("second read:\n%s", got)
		}
		if got := checklists(t, cache, "t1", limit, "wo-none", "wo-b"); got != "wo-none:\nwo-b: b1\n" {
			t.Fatalf("subset:\n%s", got)
		}
		if n := lister.Lists(); n != 1 {
			t.Fatalf("%d list reads after cached lookups, want still 1: the lists are not cached", n)
		}
		// A new parent alongside cached ones reads only the new one.
		if got := checklists(t, cache, "t2", limit, "wo-a"); got != "wo-a: x1\n" {
			t.Fatalf("other tenant:\n%s", got)
		}
		if n := lister.Lists(); n != 2 {
			t.Fatalf("%d list reads, want 2 (the other tenant's read once)", n)
		}
	})

	t.Run("this instance's commit is in its next read, even a child that left a parent it does not name", func(t *testing.T) {
		d, _, cache, engine := setup(t, time.Minute)
		checklists(t, cache, "t1", limit, "wo-a", "wo-b")
		putItem(t, d, engine, "t1", "a2", "wo-b", 0) // moves from wo-a to wo-b
		if got, want := checklists(t, cache, "t1", limit, "wo-a", "wo-b"), "wo-a: a1\nwo-b: a2 b1\n"; got != want {
			t.Fatalf("after the move:\n%s\nwant\n%s", got, want)
		}
		// The commit only reached wo-b's list by name; wo-a's must be fresh too.
		if got, want := checklists(t, cache, "t1", limit, "wo-a"), "wo-a: a1\n"; got != want {
			t.Fatalf("wo-a after the move:\n%s", got)
		}
	})

	t.Run("another instance's commit is seen once the notifier reports the head", func(t *testing.T) {
		d, lister, cache, _ := setup(t, time.Minute)
		checklists(t, cache, "t1", limit, "wo-a")
		other := syncengine.New(d) // another instance: its commits do not reach this cache
		putItem(t, d, other, "t1", "a3", "wo-a", 3)
		if got := checklists(t, cache, "t1", limit, "wo-a"); got != "wo-a: a1 a2\n" {
			t.Fatalf("before the notifier:\n%s\nthe test needs the cached (old) list", got)
		}
		reads := lister.Lists()
		h, err := d.ScopeHead(context.Background(), "t1", collections.ChecklistItem)
		if err != nil {
			t.Fatal(err)
		}
		cache.Notify("t1", collections.ChecklistItem, h)
		if got, want := checklists(t, cache, "t1", limit, "wo-a"), "wo-a: a1 a2 a3\n"; got != want {
			t.Fatalf("after Notify:\n%s\nwant\n%s", got, want)
		}
		if lister.Lists() != reads+1 {
			t.Fatalf("Notify did not make the list be read again")
		}
	})

	t.Run("a read cut short at the limit answers what it read and is not cached", func(t *testing.T) {
		_, lister, cache, _ := setup(t, time.Minute)
		for range 2 {
			got, err := cache.GetChildren(context.Background(), "t1", collections.ChecklistItem, "workOrderId", "position", []string{"wo-a", "wo-b"}, 2)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(got["wo-a"]) + len(got["wo-b"]); n != 2 {
				t.Fatalf("%d documents at limit 2", n)
			}
		}
		if n := lister.Lists(); n != 2 {
			t.Fatalf("%d list reads, want 2: a read cut short must not be cached", n)
		}
	})

	t.Run("no list outlives the TTL", func(t *testing.T) {
		const ttl = 50 * time.Millisecond
		_, lister, cache, _ := setup(t, ttl)
		checklists(t, cache, "t1", limit, "wo-a")
		checklists(t, cache, "t1", limit, "wo-a")
		if n := lister.Lists(); n != 1 {
			t.Fatalf("%d list reads within the TTL, want 1", n)
		}
		// The entry expires TTL after its read began, which was before now:
		// once TTL has passed it cannot be served, whatever the timing.
		time.Sleep(ttl)
		checklists(t, cache, "t1", limit, "wo-a")
		if n := lister.Lists(); n != 2 {
			t.Fatalf("%d list reads after the TTL, want 2", n)
		}
	})
}

// A cache around a reader that cannot list says so instead of guessing.
func TestChildrenNeedALister(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{})
	cache, err := doccache.New(&countingReader{next: d}, doccache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cache.Close)
	if _, err := cache.GetChildren(context.Background(), "t1", collections.ChecklistItem, "workOrderId", "position", []string{"wo-a"}, 10); err == nil {
		t.Fatal("GetChildren without a lister answered")
	}
}

// A shared lookup hands out the cached document itself (no copy per hit),
// while GetDocuments still hands out a copy: the control that the check
// below can tell the two apart.
func TestSharedDocumentsAreNotCopied(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{})
	in := newInstance(t, d, doccache.Options{TTL: time.Minute})
	put(t, d, in.engine, "t1", "a", "Alpha")
	fieldsOf := func(shared bool) uintptr {
		t.Helper()
		get := in.cache.GetDocuments
		if shared {
			get = in.cache.GetSharedDocuments
		}
		docs, err := get(context.Background(), "t1", collections.Site, []string{"a"})
		if err != nil || docs["a"].Fields["name"] != "Alpha" {
			t.Fatalf("lookup: %v, %v", docs, err)
		}
		return reflect.ValueOf(docs["a"].Fields).Pointer()
	}
	fieldsOf(true) // cached now
	if a, b := fieldsOf(true), fieldsOf(true); a != b {
		t.Fatal("two shared hits got different Fields maps: the hit was copied")
	}
	if a, b := fieldsOf(false), fieldsOf(true); a == b {
		t.Fatal("GetDocuments handed out the cache's own Fields map")
	}
	if n := len(in.reader.Calls()); n != 1 {
		t.Fatalf("%d database reads, want 1", n)
	}
}
