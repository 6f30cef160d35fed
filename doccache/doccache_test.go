package doccache_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
	"github.com/tidemark/tidemark/doccache"
	"github.com/tidemark/tidemark/livesync"
	"github.com/tidemark/tidemark/syncengine"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// countingReader records every read that reaches the database. before and
// after, when set, run around each read (with its 1-based number).
type countingReader struct {
	next   doccache.Reader
	before func(call int)
	after  func(call int)

	mu    sync.Mutex
	calls [][]string
}

func (r *countingReader) GetDocuments(ctx context.Context, tenantID string, c *collections.Collection, ids []string) (map[string]collections.Document, error) {
	r.mu.Lock()
	r.calls = append(r.calls, slices.Clone(ids))
	n := len(r.calls)
	r.mu.Unlock()
	if r.before != nil {
		r.before(n)
	}
	docs, err := r.next.GetDocuments(ctx, tenantID, c, ids)
	if r.after != nil {
		r.after(n)
	}
	return docs, err
}

func (r *countingReader) Calls() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// instance is one server's view: its cache and its engine, whose commits
// invalidate its cache.
type instance struct {
	reader *countingReader
	cache  *doccache.Cache
	engine *syncengine.Engine
}

func newInstance(t *testing.T, d *db.DB, opts doccache.Options) *instance {
	t.Helper()
	reader := &countingReader{next: d}
	cache, err := doccache.New(reader, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(cache.Close)
	engine := syncengine.New(d)
	engine.OnCommit(cache.Committed)
	return &instance{reader: reader, cache: cache, engine: engine}
}

func site(id, name string) collections.Document {
	return collections.Document{ID: id, Fields: map[string]any{
		"name": name, "address": "1 Harbour Road", "latitude": nil, "longitude": nil,
	}}
}

// put writes a site through engine as a client that last saw the server's
// current state, so the write never conflicts.
func put(t *testing.T, d *db.DB, engine *syncengine.Engine, tenantID, id, name string) {
	t.Helper()
	ctx := context.Background()
	current, err := d.GetDocuments(ctx, tenantID, collections.Site, []string{id})
	if err != nil {
		t.Fatalf("read current: %v", err)
	}
	row := syncengine.PushRow{New: site(id, name)}
	if m, ok := current[id]; ok {
		row.Assumed = &m
	}
	res, err := engine.Push(ctx, syncengine.Caller{TenantID: tenantID, UserID: "u1"}, collections.Site, []syncengine.PushRow{row})
	if err != nil {
		t.Fatalf("push %s: %v", id, err)
	}
	if len(res) != 0 {
		t.Fatalf("push %s: unexpected conflict %+v", id, res)
	}
}

// names looks ids up through the cache and returns id → name ("" for absent).
func names(t *testing.T, c *doccache.Cache, tenantID string, ids ...string) map[string]string {
	t.Helper()
	docs, err := c.GetDocuments(context.Background(), tenantID, collections.Site, ids)
	if err != nil {
		t.Fatalf("GetDocuments: %v", err)
	}
	out := map[string]string{}
	for id, doc := range docs {
		if doc.ID != id {
			t.Fatalf("document under %q has id %q", id, doc.ID)
		}
		out[id] = doc.Fields["name"].(string)
	}
	return out
}

func nameOf(t *testing.T, c *doccache.Cache, tenantID, id string) string {
	t.Helper()
	return names(t, c, tenantID, id)[id]
}

func head(t *testing.T, d *db.DB, tenantID string) int64 {
	t.Helper()
	h, err := d.ScopeHead(context.Background(), tenantID, collections.Site)
	if err != nil {
		t.Fatalf("ScopeHead: %v", err)
	}
	return h
}

func TestLookups(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, d *db.DB, in *instance)
	}{
		{"second lookup of the same ids does not read the database", func(t *testing.T, d *db.DB, in *instance) {
			put(t, d, in.engine, "t1", "a", "Alpha")
			put(t, d, in.engine, "t1", "b", "Bravo")
			want := map[string]string{"a": "Alpha", "b": "Bravo"}
			for range 3 {
				if got := names(t, in.cache, "t1", "a", "b"); !equalMaps(got, want) {
					t.Fatalf("got %v, want %v", got, want)
				}
			}
			if calls := in.reader.Calls(); len(calls) != 1 {
				t.Fatalf("database reads = %v, want one", calls)
			}
			if s := in.cache.Stats(); s.Hits != 4 || s.Misses != 2 || s.Reads != 1 {
				t.Fatalf("stats = %+v, want 4 hits, 2 misses, 1 read", s)
			}
		}},
		{"lookup mixing cached and uncached ids reads only the uncached ones in one call", func(t *testing.T, d *db.DB, in *instance) {
			for _, id := range []string{"a", "b", "c"} {
				put(t, d, in.engine, "t1", id, "site "+id)
			}
			names(t, in.cache, "t1", "a")
			got := names(t, in.cache, "t1", "c", "a", "b", "zz", "c")
			want := map[string]string{"a": "site a", "b": "site b", "c": "site c"}
			if !equalMaps(got, want) {
				t.Fatalf("got %v, want %v", got, want)
			}
			calls := in.reader.Calls()
			if len(calls) != 2 {
				t.Fatalf("database reads = %v, want two", calls)
			}
			second := slices.Sorted(slices.Values(calls[1]))
			if !slices.Equal(second, []string{"b", "c", "zz"}) {
				t.Fatalf("second read asked for %v, want [b c zz]", second)
			}
		}},
		{"absent id is remembered until this instance inserts it", func(t *testing.T, d *db.DB, in *instance) {
			for range 3 {
				if got := names(t, in.cache, "t1", "ghost"); len(got) != 0 {
					t.Fatalf("got %v for a missing id", got)
				}
			}
			if n := len(in.reader.Calls()); n != 1 {
				t.Fatalf("database reads = %d, want 1: absence not cached", n)
			}
			put(t, d, in.engine, "t1", "ghost", "Now here")
			if got := nameOf(t, in.cache, "t1", "ghost"); got != "Now here" {
				t.Fatalf("after insert got %q, want %q", got, "Now here")
			}
		}},
		{"deleted documents are cached as tombstones", func(t *testing.T, d *db.DB, in *instance) {
			put(t, d, in.engine, "t1", "a", "Alpha")
			ctx := context.Background()
			cur, _ := d.GetDocuments(ctx, "t1", collections.Site, []string{"a"})
			m := cur["a"]
			gone := site("a", "Alpha")
			gone.Deleted = true
			if _, err := in.engine.Push(ctx, syncengine.Caller{TenantID: "t1", UserID: "u1"}, collections.Site,
				[]syncengine.PushRow{{Assumed: &m, New: gone}}); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				docs, err := in.cache.GetDocuments(ctx, "t1", collections.Site, []string{"a"})
				if err != nil || !docs["a"].Deleted {
					t.Fatalf("got %+v, %v; want the tombstone", docs, err)
				}
			}
			if n := len(in.reader.Calls()); n != 1 {
				t.Fatalf("database reads = %d, want 1", n)
			}
		}},
		{"read-your-writes: the next lookup after each push returns the new state", func(t *testing.T, d *db.DB, in *instance) {
			put(t, d, in.engine, "t1", "a", "v0")
			for i := range 20 {
				want := "v" + string(rune('a'+i))
				nameOf(t, in.cache, "t1", "a") // make sure the old state is cached
				put(t, d, in.engine, "t1", "a", want)
				if got := nameOf(t, in.cache, "t1", "a"); got != want {
					t.Fatalf("after push %d got %q, want %q", i, got, want)
				}
			}
		}},
		{"a commit invalidates only the ids it wrote", func(t *testing.T, d *db.DB, in *instance) {
			put(t, d, in.engine, "t1", "a", "Alpha")
			put(t, d, in.engine, "t1", "b", "Bravo")
			names(t, in.cache, "t1", "a", "b")
			put(t, d, in.engine, "t1", "a", "Alpha 2")
			before := len(in.reader.Calls())
			if got := nameOf(t, in.cache, "t1", "b"); got != "Bravo" {
				t.Fatalf("b = %q", got)
			}
			if n := len(in.reader.Calls()); n != before {
				t.Fatalf("b was read again after a commit that wrote only a")
			}
		}},
		{"same id in two tenants are separate entries", func(t *testing.T, d *db.DB, in *instance) {
			put(t, d, in.engine, "t1", "shared", "Tenant one")
			put(t, d, in.engine, "t2", "shared", "Tenant two")
			for range 2 {
				if got := nameOf(t, in.cache, "t1", "shared"); got != "Tenant one" {
					t.Fatalf("t1 got %q", got)
				}
				if got := nameOf(t, in.cache, "t2", "shared"); got != "Tenant two" {
					t.Fatalf("t2 got %q", got)
				}
				if got := names(t, in.cache, "t3", "shared"); len(got) != 0 {
					t.Fatalf("t3 got %v, want nothing", got)
				}
			}
			if n := len(in.reader.Calls()); n != 3 {
				t.Fatalf("database reads = %d, want one per tenant", n)
			}
			put(t, d, in.engine, "t1", "shared", "Tenant one v2")
			if got := nameOf(t, in.cache, "t1", "shared"); got != "Tenant one v2" {
				t.Fatalf("t1 got %q after its write", got)
			}
			if got := nameOf(t, in.cache, "t2", "shared"); got != "Tenant two" {
				t.Fatalf("t2 got %q", got)
			}
			if n := len(in.reader.Calls()); n != 4 {
				t.Fatalf("database reads = %d, want 4: t1's write must not invalidate t2", n)
			}
		}},
		{"returned documents can be changed without changing the cache", func(t *testing.T, d *db.DB, in *instance) {
			put(t, d, in.engine, "t1", "a", "Alpha")
			docs, _ := in.cache.GetDocuments(context.Background(), "t1", collections.Site, []string{"a"})
			docs["a"].Fields["name"] = "scribbled"
			if got := nameOf(t, in.cache, "t1", "a"); got != "Alpha" {
				t.Fatalf("got %q: a caller's change leaked into the cache", got)
			}
		}},
		{"notify with a newer head drops the scope, an old head does not", func(t *testing.T, d *db.DB, in *instance) {
			put(t, d, in.engine, "t1", "a", "Alpha")
			names(t, in.cache, "t1", "a")
			h := head(t, d, "t1")
			in.cache.Notify("t1", collections.Site, h) // first news of the scope: drops it
			names(t, in.cache, "t1", "a")
			reads := len(in.reader.Calls())
			if reads != 2 {
				t.Fatalf("database reads = %d, want 2", reads)
			}
			in.cache.Notify("t1", collections.Site, h)
			in.cache.Notify("t1", collections.Site, h-1)
			names(t, in.cache, "t1", "a")
			if n := len(in.reader.Calls()); n != reads {
				t.Fatalf("a head the cache already knew invalidated the scope")
			}
			other := syncengine.New(d) // another instance: no Committed reaches this cache
			put(t, d, other, "t1", "a", "Alpha 2")
			if got := nameOf(t, in.cache, "t1", "a"); got != "Alpha" {
				t.Fatalf("got %q before any news of the other write; the test needs a cached entry", got)
			}
			in.cache.Notify("t1", collections.Site, head(t, d, "t1"))
			if got := nameOf(t, in.cache, "t1", "a"); got != "Alpha 2" {
				t.Fatalf("after notify got %q, want %q", got, "Alpha 2")
			}
		}},
		{"own commit right after the known head does not make the next notify drop the scope", func(t *testing.T, d *db.DB, in *instance) {
			put(t, d, in.engine, "t1", "a", "Alpha")
			put(t, d, in.engine, "t1", "b", "Bravo")
			names(t, in.cache, "t1", "a", "b")
			in.cache.Notify("t1", collections.Site, head(t, d, "t1")) // first news: drops the scope once
			names(t, in.cache, "t1", "a", "b")
			put(t, d, in.engine, "t1", "a", "Alpha 2")
			in.cache.Notify("t1", collections.Site, head(t, d, "t1")) // the poller sees our own commit
			reads := len(in.reader.Calls())
			if got := nameOf(t, in.cache, "t1", "b"); got != "Bravo" {
				t.Fatalf("b = %q", got)
			}
			if n := len(in.reader.Calls()); n != reads {
				t.Fatalf("b was read again: the poller's news of our own commit dropped the scope")
			}
		}},
		{"own commit after an unseen foreign commit leaves the next notify to drop the scope", func(t *testing.T, d *db.DB, in *instance) {
			put(t, d, in.engine, "t1", "a", "Alpha")
			put(t, d, in.engine, "t1", "b", "Bravo")
			names(t, in.cache, "t1", "a", "b")
			in.cache.Notify("t1", collections.Site, head(t, d, "t1")) // first news: drops the scope once
			names(t, in.cache, "t1", "a", "b")
			put(t, d, syncengine.New(d), "t1", "b", "Bravo 2") // another instance
			put(t, d, in.engine, "t1", "a", "Alpha 2")
			in.cache.Notify("t1", collections.Site, head(t, d, "t1"))
			if got := nameOf(t, in.cache, "t1", "b"); got != "Bravo 2" {
				t.Fatalf("b = %q, want %q: our own commit hid the other instance's", got, "Bravo 2")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := dbtest.Open(t, db.PoolConfig{})
			tt.run(t, d, newInstance(t, d, doccache.Options{TTL: time.Minute}))
		})
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestAnotherInstancesWrite(t *testing.T) {
	tests := []struct {
		name     string
		ttl      time.Duration
		notifier bool
		bound    time.Duration // from the write to B seeing it
	}{
		// TTL is long here, so only the notifier can explain a fresh read.
		{"is seen once the polling notifier reports the head", time.Minute, true, time.Second},
		{"is seen after the TTL without any notifier", 300 * time.Millisecond, false, 300*time.Millisecond + 250*time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := dbtest.Open(t, db.PoolConfig{})
			a := newInstance(t, d, doccache.Options{TTL: tt.ttl})
			b := newInstance(t, d, doccache.Options{TTL: tt.ttl})
			put(t, d, a.engine, "t1", "doc", "old")
			if tt.notifier {
				ctx, cancel := context.WithCancel(context.Background())
				t.Cleanup(cancel)
				go livesync.PollingNotifier{Heads: d, Listeners: []livesync.HeadListener{b.cache}, Interval: 20 * time.Millisecond}.Run(ctx)
				nameOf(t, b.cache, "t1", "doc")
				time.Sleep(100 * time.Millisecond) // the notifier's first news of the scope drops it once
			}
			// B caches the document, and it is really served from memory.
			nameOf(t, b.cache, "t1", "doc")
			reads := len(b.reader.Calls())
			if got := nameOf(t, b.cache, "t1", "doc"); got != "old" {
				t.Fatalf("B got %q", got)
			}
			if n := len(b.reader.Calls()); n != reads {
				t.Fatalf("B read the database again; the document is not cached")
			}
			put(t, d, a.engine, "t1", "doc", "new")
			written := time.Now()
			if got := nameOf(t, a.cache, "t1", "doc"); got != "new" {
				t.Fatalf("A got %q right after its own write", got)
			}
			if !tt.notifier {
				if got := nameOf(t, b.cache, "t1", "doc"); got != "old" {
					t.Fatalf("B got %q right after A's write; the test needs B to hold the old state", got)
				}
			}
			for nameOf(t, b.cache, "t1", "doc") != "new" {
				if time.Since(written) > tt.bound {
					t.Fatalf("B still serves the old state %v after A's write", time.Since(written))
				}
				time.Sleep(5 * time.Millisecond)
			}
			t.Logf("B saw the write after %v", time.Since(written))
		})
	}
}

// A database read that began before a commit may return the pre-commit
// state; it must not put that state in the cache after the invalidation.
func TestReadOverlappingACommitIsNotCached(t *testing.T) {
	tests := []struct {
		name string
		// write commits "new" while the first read is held after reading
		// "old"; hold and release give control of that read.
		write func(t *testing.T, d *db.DB, in *instance, release func(), done <-chan struct{})
	}{
		{"own commit whose Committed runs while the read is held", func(t *testing.T, d *db.DB, in *instance, release func(), done <-chan struct{}) {
			put(t, d, in.engine, "t1", "doc", "new")
			release()
			<-done
		}},
		{"read that ends between the commit and Committed", func(t *testing.T, d *db.DB, in *instance, release func(), done <-chan struct{}) {
			// A listener registered before the cache's own: it lets the old
			// read finish and store before Committed runs.
			engine := syncengine.New(d)
			engine.OnCommit(func(string, *collections.Collection, int64, []collections.Document) {
				release()
				<-done
			})
			engine.OnCommit(in.cache.Committed)
			put(t, d, engine, "t1", "doc", "new")
		}},
		{"another instance's commit notified while the read is held", func(t *testing.T, d *db.DB, in *instance, release func(), done <-chan struct{}) {
			put(t, d, syncengine.New(d), "t1", "doc", "new")
			in.cache.Notify("t1", collections.Site, head(t, d, "t1"))
			release()
			<-done
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := dbtest.Open(t, db.PoolConfig{})
			in := newInstance(t, d, doccache.Options{TTL: time.Minute})
			put(t, d, in.engine, "t1", "doc", "old")
			// Let the cache know the current head, so only a newer one counts.
			in.cache.Notify("t1", collections.Site, head(t, d, "t1"))

			readDone, gate := make(chan struct{}), make(chan struct{})
			in.reader.after = func(call int) {
				if call == 1 {
					close(readDone)
					<-gate
				}
			}
			done := make(chan struct{})
			var first string
			go func() {
				defer close(done)
				docs, err := in.cache.GetDocuments(context.Background(), "t1", collections.Site, []string{"doc"})
				if err == nil {
					first, _ = docs["doc"].Fields["name"].(string)
				}
			}()
			<-readDone
			var once sync.Once
			tt.write(t, d, in, func() { once.Do(func() { close(gate) }) }, done)
			<-done
			if first != "old" {
				t.Fatalf("the held read returned %q; the test needs it to have read the old state", first)
			}
			if got := nameOf(t, in.cache, "t1", "doc"); got != "new" {
				t.Fatalf("after the commit got %q: the overlapping read's old state was cached", got)
			}
		})
	}
}

func TestConcurrentMissesShareOneRead(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{})
	in := newInstance(t, d, doccache.Options{})
	in.reader.before = func(int) { time.Sleep(100 * time.Millisecond) }
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			<-start
			docs, err := in.cache.GetDocuments(context.Background(), "t1", collections.Site, []string{"missing"})
			if err == nil && len(docs) != 0 {
				t.Errorf("got %v for a missing id", docs)
			}
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if calls := in.reader.Calls(); len(calls) != 1 {
		t.Fatalf("50 concurrent lookups made %d database reads, want 1", len(calls))
	}
}

func TestCallerGivingUpDoesNotFailOthers(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{})
	in := newInstance(t, d, doccache.Options{})
	put(t, d, in.engine, "t1", "a", "Alpha")
	in.reader.before = func(int) { time.Sleep(150 * time.Millisecond) }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	impatient := make(chan error, 1)
	go func() {
		_, err := in.cache.GetDocuments(ctx, "t1", collections.Site, []string{"a"})
		impatient <- err
	}()
	time.Sleep(5 * time.Millisecond)
	if got := nameOf(t, in.cache, "t1", "a"); got != "Alpha" {
		t.Fatalf("patient caller got %q", got)
	}
	if err := <-impatient; err != context.DeadlineExceeded {
		t.Fatalf("impatient caller got %v, want its own deadline", err)
	}
}

func TestTenants(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{})
	in := newInstance(t, d, doccache.Options{TTL: 200 * time.Millisecond})
	if got := in.cache.Tenants(); len(got) != 0 {
		t.Fatalf("new cache lists %v", got)
	}
	in.cache.Notify("t9", collections.Site, 5)
	names(t, in.cache, "t2", "x")
	names(t, in.cache, "t1", "x")
	if got := in.cache.Tenants(); !slices.Equal(got, []string{"t1", "t2"}) {
		t.Fatalf("Tenants = %v, want [t1 t2]", got)
	}
	time.Sleep(300 * time.Millisecond)
	names(t, in.cache, "t1", "x")
	if got := in.cache.Tenants(); !slices.Equal(got, []string{"t1"}) {
		t.Fatalf("Tenants = %v after t2's entries expired, want [t1]", got)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		next doccache.Reader
		opts doccache.Options
	}{
		{"nil reader", nil, doccache.Options{}},
		{"negative capacity", &countingReader{}, doccache.Options{MaxDocuments: -1}},
		{"negative TTL", &countingReader{}, doccache.Options{TTL: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := doccache.New(tt.next, tt.opts); err == nil {
				c.Close()
				t.Fatal("New accepted it")
			}
		})
	}
}

func TestCapacityBoundsEntries(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{})
	in := newInstance(t, d, doccache.Options{MaxDocuments: 10, TTL: time.Minute})
	ids := make([]string, 100)
	for i := range ids {
		ids[i] = "id-" + string(rune('A'+i%26)) + string(rune('a'+i/26))
	}
	for range 2 {
		names(t, in.cache, "t1", ids...)
	}
	// A cache keeping everything would answer the second pass from memory.
	if s := in.cache.Stats(); s.Hits > 10 {
		t.Fatalf("stats %+v: more than MaxDocuments=10 entries were kept", s)
	}
}

func TestCloseIsSafe(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{})
	in := newInstance(t, d, doccache.Options{})
	put(t, d, in.engine, "t1", "a", "Alpha")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				docs, err := in.cache.GetDocuments(context.Background(), "t1", collections.Site, []string{"a", "b"})
				if err != nil || docs["a"].Fields["name"] != "Alpha" {
					t.Errorf("during close got %v, %v", docs, err)
					return
				}
				in.cache.Notify("t1", collections.Site, 99)
				in.cache.Tenants()
			}
		})
	}
	wg.Go(func() { in.cache.Close() })
	wg.Go(func() { in.cache.Close() })
	wg.Wait()
	in.cache.Close()
	// Closed: lookups read through, invalidations do nothing.
	if got := nameOf(t, in.cache, "t1", "a"); got != "Alpha" {
		t.Fatalf("after close got %q", got)
	}
	put(t, d, in.engine, "t1", "a", "Alpha 2")
	if got := nameOf(t, in.cache, "t1", "a"); got != "Alpha 2" {
		t.Fatalf("after close got %q", got)
	}
	in.cache.Notify("t1", collections.Site, 100)
	if got := in.cache.Tenants(); len(got) != 0 {
		t.Fatalf("closed cache lists tenants %v", got)
	}
	_ = in.cache.Stats()
}
