package syncengine_test

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
	"github.com/tidemark/tidemark/syncengine"
)

// gatedStore records the pushes of each transaction (by the ids written)
// and holds the first transaction until release is closed, before it
// applies anything, so that the next pushes of its scope queue behind it.
// A write of id "boom" fails its transaction.
type gatedStore struct {
	*db.DB
	release chan struct{}
	mu      sync.Mutex
	txs     [][]string // ids each committed transaction wrote
	calls   int
}

func (s *gatedStore) WriteDocuments(ctx context.Context, tenant string, c *collections.Collection, fn func(collections.Writer) error) error {
	s.mu.Lock()
	s.calls++
	first := s.calls == 1
	s.mu.Unlock()
	var ids []string
	err := s.DB.WriteDocuments(ctx, tenant, c, func(w collections.Writer) error {
		ids = nil
		if first {
			<-s.release
		}
		return fn(recordingWriter{w, &ids})
	})
	if err == nil {
		s.mu.Lock()
		s.txs = append(s.txs, ids)
		s.mu.Unlock()
	}
	return err
}

type recordingWriter struct {
	collections.Writer
	ids *[]string
}

var errBoom = errors.New("boom")

func (w recordingWriter) Put(ctx context.Context, docs []collections.Document) ([]collections.Document, error) {
	for _, d := range docs {
		if d.ID == "boom" {
			return nil, errBoom
		}
		*w.ids = append(*w.ids, d.ID)
	}
	return w.Writer.Put(ctx, docs)
}

// sameTransactions compares the ids of committed transactions in any
// order: a group's transaction starts before the previous one's COMMIT
// returns, so the order they are recorded in says nothing.
func sameTransactions(got, want [][]string) bool {
	order := func(a, b []string) int { return slices.Compare(a, b) }
	got, want = slices.Clone(got), slices.Clone(want)
	slices.SortFunc(got, order)
	slices.SortFunc(want, order)
	return slices.EqualFunc(got, want, slices.Equal[[]string])
}

type pushOutcome struct {
	adopt []collections.Document
	err   error
}

// queueBehind starts push 0 of pushes, waits until it holds its
// transaction open, starts the others one by one, each once the one before
// is queued behind it, then lets the first commit and returns every
// outcome in push order.
func queueBehind(t *testing.T, engine *syncengine.Engine, store *gatedStore, caller syncengine.Caller, pushes [][]syncengine.PushRow) []pushOutcome {
	t.Helper()
	ctx := context.Background()
	out := make([]pushOutcome, len(pushes))
	var wg sync.WaitGroup
	start := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i].adopt, out[i].err = engine.Push(ctx, caller, collections.WorkOrder, pushes[i])
		}()
	}
	waitFor := func(what string, cond func() bool) { t.Helper(); waitUntil(t, what, cond) }
	start(0)
	waitFor("the first transaction open", func() bool { store.mu.Lock(); defer store.mu.Unlock(); return store.calls == 1 })
	for i := 1; i < len(pushes); i++ {
		start(i)
		waitFor("the push queued", func() bool { return engine.Waiting(caller.TenantID, collections.WorkOrder) == i })
	}
	close(store.release)
	wg.Wait()
	return out
}

// waitUntil waits for cond, a state another goroutine reaches; the bound
// only turns a hang into a failure, it asserts no timing.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never saw %s", what)
		}
		runtime.Gosched()
	}
}

// TestPushesThatMeetShareOneTransaction: pushes of one scope that arrive
// while its transaction runs are applied together, in arrival order, in
// one transaction, each getting exactly its own result: a later push sees
// an earlier one's write as the master (a conflict returns it as stored).
func TestPushesThatMeetShareOneTransaction(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{MaxConns: 4})
	store := &gatedStore{DB: d, release: make(chan struct{})}
	engine := syncengine.New(store)
	caller := syncengine.Caller{TenantID: "group", UserID: "u"}

	out := queueBehind(t, engine, store, caller, [][]syncengine.PushRow{
		{{New: workOrder("a", "first", 1)}},
		{{New: workOrder("b", "from the second push", 2)}},
		{{New: workOrder("b", "from the third push, unaware of the second", 3)}, {New: workOrder("c", "third", 3)}},
	})
	for i, o := range out {
		if o.err != nil {
			t.Fatalf("push %d: %v", i, o.err)
		}
	}
	if want := [][]string{{"a"}, {"b", "c"}}; !sameTransactions(store.txs, want) {
		t.Fatalf("transactions wrote %v; want %v (the first alone, then the two queued pushes together)", store.txs, want)
	}
	if len(out[0].adopt) != 0 || len(out[1].adopt) != 0 {
		t.Fatalf("written pushes returned %v and %v; want nothing", out[0].adopt, out[1].adopt)
	}
	docs, err := d.GetDocuments(context.Background(), caller.TenantID, collections.WorkOrder, []string{"a", "b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	if len(out[2].adopt) != 1 || out[2].adopt[0].ID != "b" || out[2].adopt[0].Change != docs["b"].Change ||
		out[2].adopt[0].Fields["title"] != "from the second push" {
		t.Fatalf("third push returned %+v; want the conflict on b with the second push's write as stored (%+v)", out[2].adopt, docs["b"])
	}
	if !(docs["a"].Change < docs["b"].Change && docs["b"].Change < docs["c"].Change) {
		t.Fatalf("change numbers a=%d b=%d c=%d; want them in arrival order", docs["a"].Change, docs["b"].Change, docs["c"].Change)
	}
}

// TestAFailingPushDoesNotFailItsGroup: when a group's transaction fails,
// each of its pushes runs again alone; only the failing one fails.
func TestAFailingPushDoesNotFailItsGroup(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{MaxConns: 4})
	store := &gatedStore{DB: d, release: make(chan struct{})}
	engine := syncengine.New(store)
	caller := syncengine.Caller{TenantID: "group-fail", UserID: "u"}

	out := queueBehind(t, engine, store, caller, [][]syncengine.PushRow{
		{{New: workOrder("a", "first", 1)}},
		{{New: workOrder("boom", "fails", 2)}},
		{{New: workOrder("c", "third", 3)}},
	})
	if out[0].err != nil || out[2].err != nil {
		t.Fatalf("pushes that do not fail: %v, %v", out[0].err, out[2].err)
	}
	if !errors.Is(out[1].err, errBoom) {
		t.Fatalf("failing push returned %v; want its own error", out[1].err)
	}
	if want := [][]string{{"a"}, {"c"}}; !sameTransactions(store.txs, want) {
		t.Fatalf("committed transactions wrote %v; want %v", store.txs, want)
	}
	docs, err := d.GetDocuments(context.Background(), caller.TenantID, collections.WorkOrder, []string{"a", "boom", "c"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := docs["boom"]; ok || len(docs) != 2 {
		t.Fatalf("stored %v; want a and c only", docs)
	}
}

// TestAQueuedPushWhoseClientLeftIsNotWritten: a push that gives up while
// it waits for its scope leaves the queue, unwritten; the others go on.
func TestAQueuedPushWhoseClientLeftIsNotWritten(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{MaxConns: 4})
	store := &gatedStore{DB: d, release: make(chan struct{})}
	engine := syncengine.New(store)
	caller := syncengine.Caller{TenantID: "group-leave", UserID: "u"}
	ctx := context.Background()

	first := make(chan error, 1)
	go func() {
		_, err := engine.Push(ctx, caller, collections.WorkOrder, []syncengine.PushRow{{New: workOrder("a", "first", 1)}})
		first <- err
	}()
	waitUntil(t, "the first transaction open", func() bool { store.mu.Lock(); defer store.mu.Unlock(); return store.calls == 1 })
	leaving, leave := context.WithCancel(ctx)
	left := make(chan error, 1)
	go func() {
		_, err := engine.Push(leaving, caller, collections.WorkOrder, []syncengine.PushRow{{New: workOrder("b", "given up", 2)}})
		left <- err
	}()
	waitUntil(t, "the push queued", func() bool { return engine.Waiting(caller.TenantID, collections.WorkOrder) == 1 })
	leave()
	if err := <-left; !errors.Is(err, context.Canceled) {
		t.Fatalf("the push given up returned %v; want context.Canceled", err)
	}
	if n := engine.Waiting(caller.TenantID, collections.WorkOrder); n != 0 {
		t.Fatalf("%d pushes still queued; want the one given up gone", n)
	}
	close(store.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if _, err := engine.Push(ctx, caller, collections.WorkOrder, []syncengine.PushRow{{New: workOrder("c", "after", 3)}}); err != nil {
		t.Fatal(err)
	}
	docs, err := d.GetDocuments(ctx, caller.TenantID, collections.WorkOrder, []string{"a", "b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := docs["b"]; ok || len(docs) != 2 {
		t.Fatalf("stored %v; want a and c only", docs)
	}
}
