package livesync_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
	"github.com/tidemark/tidemark/livesync"
	"github.com/tidemark/tidemark/syncengine"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// countingStore counts change reads, to prove they are shared.
type countingStore struct {
	*db.DB
	reads atomic.Int64
}

func (s *countingStore) ChangesSince(ctx context.Context, tenant string, c *collections.Collection, after int64, limit int) ([]collections.Document, error) {
	s.reads.Add(1)
	return s.DB.ChangesSince(ctx, tenant, c, after, limit)
}

func note(id, body string) collections.Document {
	return collections.Document{ID: id, Fields: map[string]any{"workOrderId": "wo-1", "body": body}}
}

type instance struct {
	engine *syncengine.Engine
	hub    *livesync.Hub
	store  *countingStore
}

// newInstance wires an engine and a hub the way cmd/tidemark does: local
// commits notify the hub at once, a poller covers other instances.
func newInstance(t *testing.T, d *db.DB, poll time.Duration) *instance {
	t.Helper()
	store := &countingStore{DB: d}
	hub := livesync.New(store, livesync.Options{})
	engine := syncengine.New(d)
	engine.OnCommit(func(tenant string, c *collections.Collection, head int64, _ []collections.Document) {
		hub.Notify(tenant, c, head)
	})
	ctx, cancel := context.WithCancel(context.Background())
	if poll > 0 {
		go livesync.PollingNotifier{Heads: d, Listeners: []livesync.HeadListener{hub}, Interval: poll}.Run(ctx)
	}
	t.Cleanup(func() { cancel(); hub.Close() })
	return &instance{engine: engine, hub: hub, store: store}
}

type recorder struct {
	mu     sync.Mutex
	events []*livesync.Event
	notify chan struct{}
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 1000)} }

func (r *recorder) deliver(ev *livesync.Event) bool {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	r.notify <- struct{}{}
	return true
}

// docs returns the ids received, in order, waiting until there are want.
func (r *recorder) waitFor(t *testing.T, want int) []string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		var ids []string
		for _, ev := range r.events {
			for _, d := range ev.Documents {
				ids = append(ids, d.ID)
			}
		}
		r.mu.Unlock()
		if len(ids) >= want {
			return ids
		}
		select {
		case <-r.notify:
		case <-deadline:
			t.Fatalf("received %d documents (%v); want %d", len(ids), ids, want)
		}
	}
}

func waitSubscribers(t *testing.T, hub *livesync.Hub, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for hub.Stats().Subscribers != n {
		if time.Now().After(deadline) {
			t.Fatalf("hub has %d subscribers; want %d", hub.Stats().Subscribers, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func push(t *testing.T, e *syncengine.Engine, tenant string, docs ...collections.Document) {
	t.Helper()
	rows := make([]syncengine.PushRow, len(docs))
	for i, d := range docs {
		rows[i] = syncengine.PushRow{New: d}
	}
	if _, err := e.Push(context.Background(), syncengine.Caller{TenantID: tenant, UserID: "u"}, collections.Note, rows); err != nil {
		t.Fatal(err)
	}
}

func TestSubscribersReceiveCommittedChangesInOrderWithOneReadPerBatch(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{})
	in := newInstance(t, d, 0)
	push(t, in.engine, "t1", note("before", "committed before subscribing"))

	const subscribers = 50
	recs := make([]*recorder, subscribers)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range recs {
		recs[i] = newRecorder()
		if err := in.hub.Subscribe(ctx, "t1", collections.Note, recs[i].deliver); err != nil {
			t.Fatal(err)
		}
	}
	waitSubscribers(t, in.hub, subscribers)
	time.Sleep(50 * time.Millisecond) // let the scope read its starting position
	readsBefore := in.store.reads.Load()

	push(t, in.engine, "t1", note("n1", "a"), note("n2", "b"))
	push(t, in.engine, "t1", note("n3", "c"))
	for i, r := range recs {
		ids := r.waitFor(t, 3)
		if fmt.Sprint(ids) != "[n1 n2 n3]" {
			t.Fatalf("subscriber %d got %v; want [n1 n2 n3] (nothing from before it subscribed, in change order)", i, ids)
		}
	}
	// Every event's cursor resumes exactly where the next event starts.
	r := recs[0]
	r.mu.Lock()
	last := r.events[len(r.events)-1]
	r.mu.Unlock()
	res, err := in.engine.Pull(context.Background(), "t1", collections.Note, &last.Cursor, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Documents) != 0 {
		t.Fatalf("a pull from the last event's cursor returned %d documents; want 0", len(res.Documents))
	}
	if reads := in.store.reads.Load() - readsBefore; reads > 2 {
		t.Fatalf("%d change reads for 2 commits and %d subscribers; want at most one per commit, shared", reads, subscribers)
	}
}

func TestTenantsOnlySeeTheirOwnChanges(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{})
	in := newInstance(t, d, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b := newRecorder(), newRecorder()
	if err := in.hub.Subscribe(ctx, "tenant-a", collections.Note, a.deliver); err != nil {
		t.Fatal(err)
	}
	if err := in.hub.Subscribe(ctx, "tenant-b", collections.Note, b.deliver); err != nil {
		t.Fatal(err)
	}
	waitSubscribers(t, in.hub, 2)
	time.Sleep(50 * time.Millisecond)
	push(t, in.engine, "tenant-a", note("a1", "for a"))
	push(t, in.engine, "tenant-b", note("b1", "for b"))
	if ids := a.waitFor(t, 1); fmt.Sprint(ids) != "[a1]" {
		t.Fatalf("tenant-a got %v", ids)
	}
	if ids := b.waitFor(t, 1); fmt.Sprint(ids) != "[b1]" {
		t.Fatalf("tenant-b got %v", ids)
	}
	time.Sleep(100 * time.Millisecond)
	if ids := a.waitFor(t, 1); len(ids) != 1 {
		t.Fatalf("tenant-a got another tenant's change: %v", ids)
	}
}

func TestSlowSubscriberIsDisconnectedWithoutStallingOthers(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{})
	in := newInstance(t, d, 0)
	disconnected := make(chan string, 1)
	slowCtx := livesync.WithDisconnector(context.Background(), func(reason string) { disconnected <- reason })
	slowCtx, cancelSlow := context.WithCancel(slowCtx)
	defer cancelSlow()

	var slowAccepted atomic.Int32
	slow := func(*livesync.Event) bool { return slowAccepted.Add(1) <= 1 } // takes one event, then its buffer is full
	fast := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := in.hub.Subscribe(slowCtx, "t", collections.Note, slow); err != nil {
		t.Fatal(err)
	}
	if err := in.hub.Subscribe(ctx, "t", collections.Note, fast.deliver); err != nil {
		t.Fatal(err)
	}
	waitSubscribers(t, in.hub, 2)
	time.Sleep(50 * time.Millisecond)
	for i := 0; i < 5; i++ {
		// One event per push: wait for each to arrive at the fast subscriber.
		push(t, in.engine, "t", note(fmt.Sprintf("n%d", i), "x"))
		fast.waitFor(t, i+1)
	}
	select {
	case reason := <-disconnected:
		if reason == "" {
			t.Fatal("disconnected without a reason")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the slow subscriber was not disconnected")
	}
	if ids := fast.waitFor(t, 5); len(ids) != 5 {
		t.Fatalf("the fast subscriber got %v", ids)
	}
	waitSubscribers(t, in.hub, 1)
}

func TestAnotherInstancesCommitsArriveThroughThePoller(t *testing.T) {
	url := dbtest.URL(t)
	open := func() *db.DB {
		d, err := db.Open(context.Background(), url, db.PoolConfig{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.Close)
		return d
	}
	a := newInstance(t, open(), 0)                   // the writer: no local subscribers
	b := newInstance(t, open(), 20*time.Millisecond) // the subscriber's instance
	rec := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := b.hub.Subscribe(ctx, "t", collections.Note, rec.deliver); err != nil {
		t.Fatal(err)
	}
	waitSubscribers(t, b.hub, 1)
	time.Sleep(50 * time.Millisecond)
	push(t, a.engine, "t", note("remote-1", "from instance A"))
	if ids := rec.waitFor(t, 1); fmt.Sprint(ids) != "[remote-1]" {
		t.Fatalf("instance B's subscriber got %v", ids)
	}
}

func TestLastSubscriberLeavingStopsTheScope(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{})
	in := newInstance(t, d, 0)
	ctx, cancel := context.WithCancel(context.Background())
	if err := in.hub.Subscribe(ctx, "t", collections.Note, newRecorder().deliver); err != nil {
		t.Fatal(err)
	}
	waitSubscribers(t, in.hub, 1)
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for in.hub.Stats().Scopes != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("scope still open after its only subscriber left: %+v", in.hub.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A client pulls once its connection is accepted; its subscription reaches
// the hub a little later. Changes committed in between must come in its
// stream, or a later event's checkpoint would carry the client past them.
func TestSubscriberStartsFromItsConnectionsHeads(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{})
	in := newInstance(t, d, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// An existing subscriber keeps the scope running and ahead.
	early := newRecorder()
	if err := in.hub.Subscribe(ctx, "t", collections.Note, early.deliver); err != nil {
		t.Fatal(err)
	}
	waitSubscribers(t, in.hub, 1)
	time.Sleep(50 * time.Millisecond)
	push(t, in.engine, "t", note("n1", "before the connection"))
	early.waitFor(t, 1)

	heads, err := d.ScopeHeads(context.Background(), []string{"t"})
	if err != nil {
		t.Fatal(err)
	}
	connCtx := livesync.WithStart(ctx, "t", heads) // the connection is accepted here
	push(t, in.engine, "t", note("n2", "between accept and subscribe"), note("n3", "also"))
	early.waitFor(t, 3)

	late := newRecorder()
	if err := in.hub.Subscribe(connCtx, "t", collections.Note, late.deliver); err != nil {
		t.Fatal(err)
	}
	if ids := late.waitFor(t, 2); fmt.Sprint(ids) != "[n2 n3]" {
		t.Fatalf("the late subscriber got %v first; want [n2 n3], the changes since its connection", ids)
	}
	push(t, in.engine, "t", note("n4", "after"))
	if ids := late.waitFor(t, 3); fmt.Sprint(ids) != "[n2 n3 n4]" {
		t.Fatalf("the late subscriber got %v; want [n2 n3 n4]", ids)
	}
}
