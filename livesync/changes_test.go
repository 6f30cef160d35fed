package livesync_test

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
	"github.com/tidemark/tidemark/livesync"
	"github.com/tidemark/tidemark/syncengine"
)

// headLog is a HeadListener that records every notification.
type headLog struct {
	mu       sync.Mutex
	tenants  []string
	heads    map[string]int64 // "tenant/collection" → the last head heard
	calls    int
	notified chan struct{} // a wake-up after each notification
}

func newHeadLog(tenants ...string) *headLog {
	return &headLog{tenants: tenants, heads: map[string]int64{}, notified: make(chan struct{}, 1)}
}

func (l *headLog) Tenants() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.tenants...)
}

// HasTenants answers as Hub does, without a list.
func (l *headLog) HasTenants() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.tenants) > 0
}

func (l *headLog) Notify(tenantID string, c *collections.Collection, head int64) {
	l.mu.Lock()
	l.heads[tenantID+"/"+c.Name] = head
	l.calls++
	l.mu.Unlock()
	select {
	case l.notified <- struct{}{}:
	default:
	}
}

// take returns the heads heard and the number of notifications, and
// forgets them.
func (l *headLog) take() (map[string]int64, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	heads, calls := l.heads, l.calls
	l.heads, l.calls = map[string]int64{}, 0
	return heads, calls
}

// waitFor waits until the scope's head is heard at want or later.
func (l *headLog) waitFor(t *testing.T, scope string, want int64) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		l.mu.Lock()
		got := l.heads[scope]
		l.mu.Unlock()
		if got >= want {
			return
		}
		select {
		case <-l.notified:
		case <-deadline:
			t.Fatalf("%s: heard head %d; want %d", scope, got, want)
		}
	}
}

// changedScopesCount passes ChangedScopes through to the database and
// keeps the number of scopes the last call returned.
type changedScopesCount struct {
	*db.DB
	last atomic.Int64
}

func (c *changedScopesCount) ChangedScopes(ctx context.Context, since time.Time) (time.Time, []collections.ScopeHead, error) {
	now, heads, err := c.DB.ChangedScopes(ctx, since)
	c.last.Store(int64(len(heads)))
	return now, heads, err
}

// statementCount is a pool tracer that counts the statements sent.
type statementCount struct{ n atomic.Int64 }

func (s *statementCount) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	s.n.Add(1)
	return ctx
}

func (s *statementCount) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// seedScopes creates n tenants' Note scopes ("s0".."s<n-1>"), last changed
// an hour ago, the way a database with many idle tenants looks.
func seedScopes(tb testing.TB, d *db.DB, n int) {
	tb.Helper()
	_, err := d.Pool.Exec(context.Background(), `INSERT INTO change_counters (tenant_id, collection, seq, changed_at)
SELECT 's' || g, $1, 1, now() - interval '1 hour' FROM generate_series(0, $2 - 1) AS g`, collections.Note.Name, n)
	if err != nil {
		tb.Fatal(err)
	}
}

func TestChangeInOneOf10kScopesIsNoticedInOnePollOfOneStatement(t *testing.T) {
	statements := &statementCount{}
	d := dbtest.Open(t, db.PoolConfig{Tracer: statements, MaxConns: 1})
	const scopes = 10_000
	seedScopes(t, d, scopes)
	tenants := make([]string, scopes)
	for i := range tenants {
		tenants[i] = fmt.Sprint("s", i)
	}
	listener := newHeadLog(tenants...)
	changes := &changedScopesCount{DB: d}
	n := &livesync.ChangesNotifier{Changes: changes, Heads: d, Listeners: []livesync.HeadListener{listener}}
	ctx := context.Background()

	if err := n.Poll(ctx); err != nil { // the catch-up: every tenant's heads, once
		t.Fatal(err)
	}
	if heads, _ := listener.take(); len(heads) != scopes {
		t.Fatalf("the catch-up reported %d scopes; want all %d", len(heads), scopes)
	}

	push(t, syncengine.New(d), "s4242", note("n1", "changed"))
	before := statements.n.Load()
	if err := n.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if sent := statements.n.Load() - before; sent != 1 {
		t.Errorf("the poll sent %d statements; want 1", sent)
	}
	if rows := changes.last.Load(); rows != 1 {
		t.Errorf("the poll read %d scopes; want only the 1 that changed", rows)
	}
	heads, calls := listener.take()
	if calls != 1 || heads["s4242/Note"] != 2 {
		t.Fatalf("the poll reported %v in %d notifications; want s4242/Note at 2, once", heads, calls)
	}

	// The next poll reads it again (it changed within the overlap) but
	// does not report it again.
	if err := n.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if rows := changes.last.Load(); rows != 1 {
		t.Errorf("the poll after read %d scopes; want the 1 in the overlap", rows)
	}
	if heads, calls := listener.take(); calls != 0 {
		t.Errorf("the poll after reported %v again", heads)
	}

	// Control: the per-tenant poll reads every tenant's scope for the
	// same one change.
	all, err := d.ScopeHeads(ctx, tenants)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != scopes {
		t.Fatalf("ScopeHeads read %d scopes; want %d", len(all), scopes)
	}
}

// TestChangesNotifierMissesNothingAcrossARestart stops a running notifier,
// commits while none runs, and starts another for the same listener: the
// new one reports the commit. Its overlap is tiny, so only the catch-up
// can carry the commit; the control shows that without it (a listener
// that names no tenants) the commit is lost.
func TestChangesNotifierMissesNothingAcrossARestart(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{})
	engine := syncengine.New(d)
	push(t, engine, "t1", note("n1", "before the first notifier")) // head 1
	listener := newHeadLog("t1")
	newNotifier := func(l livesync.HeadListener) *livesync.ChangesNotifier {
		return &livesync.ChangesNotifier{Changes: d, Heads: d, Listeners: []livesync.HeadListener{l},
			Interval: 10 * time.Millisecond, Overlap: time.Nanosecond}
	}

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); newNotifier(listener).Run(ctx) }()
	listener.waitFor(t, "t1/Note", 1)
	push(t, engine, "t1", note("n2", "while the first runs")) // head 2
	listener.waitFor(t, "t1/Note", 2)
	stop()
	<-done

	push(t, engine, "t1", note("n3", "while none runs")) // head 3
	control := newHeadLog("another tenant")              // heard of in the catch-up, not t1
	c := newNotifier(control)
	for range 2 { // the catch-up, then one poll of changes
		if err := c.Poll(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if heads, _ := control.take(); len(heads) != 0 {
		t.Fatalf("control: a notifier without the catch-up reported %v; want nothing (the commit is older than its first poll)", heads)
	}

	ctx, stop = context.WithCancel(context.Background())
	defer stop()
	go newNotifier(listener).Run(ctx)
	listener.waitFor(t, "t1/Note", 3)
	push(t, engine, "t1", note("n4", "after the restart")) // head 4
	listener.waitFor(t, "t1/Note", 4)
}

// TestChangesNotifierLeavesTheDatabaseAloneWithoutListenedTenants: an
// instance without subscribers sends nothing, and once a tenant is listened
// to again it catches up on what changed meanwhile.
func TestChangesNotifierLeavesTheDatabaseAloneWithoutListenedTenants(t *testing.T) {
	statements := &statementCount{}
	d := dbtest.Open(t, db.PoolConfig{Tracer: statements})
	listener := newHeadLog()
	n := &livesync.ChangesNotifier{Changes: d, Heads: d, Listeners: []livesync.HeadListener{listener}, Overlap: time.Nanosecond}
	ctx := context.Background()
	before := statements.n.Load()
	for range 3 {
		if err := n.Poll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if sent := statements.n.Load() - before; sent != 0 {
		t.Fatalf("polls without listened tenants sent %d statements; want none", sent)
	}
	push(t, syncengine.New(d), "t1", note("n1", "while no one listens"))
	listener.mu.Lock()
	listener.tenants = []string{"t1"}
	listener.mu.Unlock()
	if err := n.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if heads, _ := listener.take(); heads["t1/Note"] != 1 {
		t.Fatalf("the first poll with a listened tenant reported %v; want t1/Note at 1", heads)
	}
}

// TestChangesNotifierReportsACommitMadeDuringAnOutage: polls fail while the
// database is cut from this instance (not from the instance that pushes);
// the first poll that works again reports the commit.
func TestChangesNotifierReportsACommitMadeDuringAnOutage(t *testing.T) {
	proxied, proxy := dbtest.ProxiedURL(t)
	p, err := url.Parse(proxied)
	if err != nil {
		t.Fatal(err)
	}
	server, err := url.Parse(dbtest.URL(t)) // the same server, reached directly
	if err != nil {
		t.Fatal(err)
	}
	direct := *p
	direct.Host = server.Host
	ctx := context.Background()
	here, err := db.Open(ctx, p.String(), db.PoolConfig{AcquireTimeout: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(here.Close)
	there, err := db.Open(ctx, direct.String(), db.PoolConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(there.Close)

	listener := newHeadLog("t1")
	n := &livesync.ChangesNotifier{Changes: here, Heads: here, Listeners: []livesync.HeadListener{listener}, Overlap: time.Nanosecond}
	if err := n.Poll(ctx); err != nil { // the catch-up
		t.Fatal(err)
	}
	proxy.Cut()
	if err := n.Poll(ctx); err == nil {
		t.Fatal("a poll through the cut proxy worked")
	}
	push(t, syncengine.New(there), "t1", note("n1", "during the outage"))
	proxy.Restore()
	// A pooled connection from before the cut fails once: poll until one
	// works, a few times at most.
	for attempt := 1; ; attempt++ {
		err := n.Poll(ctx)
		if err == nil {
			break
		}
		if attempt == 5 {
			t.Fatalf("polls still fail after the outage: %v", err)
		}
	}
	if heads, _ := listener.take(); heads["t1/Note"] != 1 {
		t.Fatalf("after the outage the notifier reported %v; want t1/Note at 1", heads)
	}
}
