package livesync_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
	"github.com/tidemark/tidemark/livesync"
	"github.com/tidemark/tidemark/syncengine"
	"github.com/tidemark/tidemark/syncrules"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// countingStore counts change reads, to prove they are shared, and the
// reads of a scope's starting position, so a test can wait for them.
type countingStore struct {
	*db.DB
	reads     atomic.Int64
	headReads atomic.Int64
	headRead  chan struct{} // a wake-up after each head read
}

func newCountingStore(d *db.DB) *countingStore {
	return &countingStore{DB: d, headRead: make(chan struct{}, 1)}
}

func (s *countingStore) ChangesSince(ctx context.Context, tenant string, c *collections.Collection, after int64, limit int) ([]collections.Document, error) {
	s.reads.Add(1)
	return s.DB.ChangesSince(ctx, tenant, c, after, limit)
}

func (s *countingStore) ScopeHead(ctx context.Context, tenant string, c *collections.Collection) (int64, error) {
	head, err := s.DB.ScopeHead(ctx, tenant, c)
	if err == nil {
		s.headReads.Add(1)
		select {
		case s.headRead <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
	return head, err
}

// waitScopesStarted waits until n scopes have read their starting position
// (the head when they started). A change committed after that reaches their
// subscribers; one committed before it is behind them, for a pull.
func (s *countingStore) waitScopesStarted(t *testing.T, n int64) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for s.headReads.Load() < n {
		select {
		case <-s.headRead:
		case <-deadline:
			t.Fatalf("%d scopes read their starting position; want %d", s.headReads.Load(), n)
		}
	}
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
	store := newCountingStore(d)
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

func (r *recorder) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for _, ev := range r.events {
		for _, d := range ev.Documents {
			ids = append(ids, d.ID)
		}
	}
	return ids
}

// waitFor returns the ids received, in order, waiting until there are want.
func (r *recorder) waitFor(t *testing.T, want int) []string {
	t.Helper()
	return r.waitUntil(t, fmt.Sprintf("%d documents", want), func(ids []string) bool { return len(ids) >= want })
}

// waitForID returns the ids received, in order, waiting until id is one.
func (r *recorder) waitForID(t *testing.T, id string) []string {
	t.Helper()
	return r.waitUntil(t, id, func(ids []string) bool { return slices.Contains(ids, id) })
}

func (r *recorder) waitUntil(t *testing.T, want string, done func([]string) bool) []string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		ids := r.ids()
		if done(ids) {
			return ids
		}
		select {
		case <-r.notify:
		case <-deadline:
			t.Fatalf("received %d documents (%v); want %s", len(ids), ids, want)
		}
	}
}

// wantSubscribers checks the hub's subscriber count. Subscribe counts a
// subscriber before it returns, and the hub forgets a dropped one before
// calling its Disconnector, so there is nothing to wait for.
func wantSubscribers(t *testing.T, hub *livesync.Hub, n int) {
	t.Helper()
	if got := hub.Stats().Subscribers; got != n {
		t.Fatalf("hub has %d subscribers; want %d", got, n)
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
		if err := in.hub.Subscribe(ctx, "t1", collections.Note, wholeTenant, recs[i].deliver); err != nil {
			t.Fatal(err)
		}
	}
	wantSubscribers(t, in.hub, subscribers)
	in.store.waitScopesStarted(t, 1)
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
	res, err := in.engine.Pull(context.Background(), syncengine.Caller{TenantID: "t1"}, collections.Note, &last.Cursor, 10)
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
	a, b := twoTenantsStreams(t, func(_, b *recorder) livesync.Deliver { return b.deliver })
	if err := onlyOwnChanges(a, b); err != nil {
		t.Fatal(err)
	}
}

// The control: a hub that hands tenant B's events to tenant A's subscriber
// too is caught, by the same check.
func TestTenantCheckCatchesALeak(t *testing.T) {
	a, b := twoTenantsStreams(t, func(a, b *recorder) livesync.Deliver {
		return func(ev *livesync.Event) bool { a.deliver(ev); return b.deliver(ev) }
	})
	if err := onlyOwnChanges(a, b); err == nil {
		t.Fatalf("tenant A's subscriber got %v, tenant B's %v, and the check saw no leak", a, b)
	}
}

// twoTenantsStreams subscribes a recorder to each of two tenants' notes
// (tenant B's through deliverB), pushes a change for each tenant and, once
// both have arrived, a marker for each. It returns what each recorder had
// received by its marker. Anything of the other tenant's would have come
// before it: each scope delivers in change order, and the markers commit
// after the other tenant's change was delivered.
func twoTenantsStreams(t *testing.T, deliverB func(a, b *recorder) livesync.Deliver) (a, b []string) {
	t.Helper()
	d := dbtest.Open(t, db.PoolConfig{})
	in := newInstance(t, d, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ra, rb := newRecorder(), newRecorder()
	if err := in.hub.Subscribe(ctx, "tenant-a", collections.Note, wholeTenant, ra.deliver); err != nil {
		t.Fatal(err)
	}
	if err := in.hub.Subscribe(ctx, "tenant-b", collections.Note, wholeTenant, deliverB(ra, rb)); err != nil {
		t.Fatal(err)
	}
	in.store.waitScopesStarted(t, 2)
	push(t, in.engine, "tenant-a", note("a1", "for a"))
	push(t, in.engine, "tenant-b", note("b1", "for b"))
	ra.waitForID(t, "a1")
	rb.waitForID(t, "b1")
	push(t, in.engine, "tenant-a", note("a2", "marker for a"))
	push(t, in.engine, "tenant-b", note("b2", "marker for b"))
	return ra.waitForID(t, "a2"), rb.waitForID(t, "b2")
}

func onlyOwnChanges(a, b []string) error {
	if fmt.Sprint(a) != "[a1 a2]" || fmt.Sprint(b) != "[b1 b2]" {
		return fmt.Errorf("tenant A's subscriber got %v, tenant B's %v; want [a1 a2] and [b1 b2]", a, b)
	}
	return nil
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
	if err := in.hub.Subscribe(slowCtx, "t", collections.Note, wholeTenant, slow); err != nil {
		t.Fatal(err)
	}
	if err := in.hub.Subscribe(ctx, "t", collections.Note, wholeTenant, fast.deliver); err != nil {
		t.Fatal(err)
	}
	wantSubscribers(t, in.hub, 2)
	in.store.waitScopesStarted(t, 1)
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
	wantSubscribers(t, in.hub, 1)
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
	if err := b.hub.Subscribe(ctx, "t", collections.Note, wholeTenant, rec.deliver); err != nil {
		t.Fatal(err)
	}
	wantSubscribers(t, b.hub, 1)
	b.store.waitScopesStarted(t, 1)
	push(t, a.engine, "t", note("remote-1", "from instance A"))
	if ids := rec.waitFor(t, 1); fmt.Sprint(ids) != "[remote-1]" {
		t.Fatalf("instance B's subscriber got %v", ids)
	}
}

func TestLastSubscriberLeavingStopsTheScope(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{})
	in := newInstance(t, d, 0)
	ctx, cancel := context.WithCancel(context.Background())
	if err := in.hub.Subscribe(ctx, "t", collections.Note, wholeTenant, newRecorder().deliver); err != nil {
		t.Fatal(err)
	}
	wantSubscribers(t, in.hub, 1)
	stopped := livesync.ScopeDone(in.hub, "t", collections.Note)
	if stopped == nil {
		t.Fatal("no scope for the subscriber")
	}
	cancel()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatalf("scope still running after its only subscriber left: %+v", in.hub.Stats())
	}
	// The hub forgets a scope before stopping it.
	if st := in.hub.Stats(); st != (livesync.Stats{}) {
		t.Fatalf("hub stats %+v after the last subscriber left; want none", st)
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
	if err := in.hub.Subscribe(ctx, "t", collections.Note, wholeTenant, early.deliver); err != nil {
		t.Fatal(err)
	}
	wantSubscribers(t, in.hub, 1)
	in.store.waitScopesStarted(t, 1)
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
	if err := in.hub.Subscribe(connCtx, "t", collections.Note, wholeTenant, late.deliver); err != nil {
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

// wholeTenant is the set of a subscriber without sync rules.
var wholeTenant = syncrules.CollectionAccess{Scope: syncrules.All}

func (s *countingStore) BucketChangesSince(ctx context.Context, tenant string, c *collections.Collection, bucket string, after int64, limit int) ([]collections.Document, int64, error) {
	return nil, after, nil
}
