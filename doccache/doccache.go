// Package doccache is an in-process cache for by-id document lookups. It is
// a decorator: Cache wraps a Reader (normally *db.DB) and is one itself, so
// callers do not know whether a lookup was served from memory.
//
// Staleness has three bounds:
//   - this instance's own writes are visible to its next read: wire
//     Cache.Committed to syncengine.Engine.OnCommit;
//   - other instances' writes are visible once a livesync.PollingNotifier
//     (with the cache among its Listeners) sees the scope's head move;
//   - whatever happens, no entry is served after Options.TTL, counted from
//     the moment the database read that produced it began.
package doccache

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"golang.org/x/sync/singleflight"

	"github.com/tidemark/tidemark/collections"
)

// Reader is what the cache wraps and itself implements.
type Reader interface {
	// GetDocuments reads the tenant's documents with the given ids, deleted
	// ones included. Missing ids are absent from the map.
	GetDocuments(ctx context.Context, tenantID string, c *collections.Collection, ids []string) (map[string]collections.Document, error)
}

// Options configure a Cache. The zero value is usable.
type Options struct {
	// MaxDocuments is the capacity in documents, absent ids included
	// (default 100_000).
	MaxDocuments int64
	// TTL is the backstop: no entry is served older than this, even if no
	// invalidation ever reaches the cache (default 5s).
	TTL time.Duration
	// ReadTimeout bounds one database read shared by concurrent lookups.
	// Such a read does not end when one of its callers gives up, since the
	// others still wait for it (default 10s).
	ReadTimeout time.Duration
}

// Defaults of Options.
const (
	DefaultMaxDocuments = 100_000
	DefaultTTL          = 5 * time.Second
	DefaultReadTimeout  = 10 * time.Second
)

// Stats are counters since the cache was made.
type Stats struct {
	Hits      uint64 // ids answered from the cache (found or known absent)
	Misses    uint64 // ids that needed a read of the wrapped Reader
	Reads     uint64 // calls made to the wrapped Reader
	Evictions uint64 // entries dropped for room or on expiry
}

// Cache caches by-id lookups of a Reader. It is safe for concurrent use.
type Cache struct {
	next        Reader
	lists       ListReader // next, when it lists documents (GetChildren)
	ttl         time.Duration
	readTimeout time.Duration
	flights     singleflight.Group

	// life guards the ristretto cache against Close: every use holds it
	// shared, Close holds it exclusively (ristretto's own Close is not safe
	// against concurrent Sets).
	life    sync.RWMutex
	closed  bool
	entries *ristretto.Cache[string, *entry]

	// mu guards scopes, lastPrune and lastGen.
	mu        sync.Mutex
	scopes    map[scopeKey]*scope
	lastPrune time.Time
	lastGen   uint64

	hits, misses, reads, evictions atomic.Uint64
}

type scopeKey struct{ tenant, collection string }

// scope is what the cache knows of one tenant's collection.
type scope struct {
	// gen is part of every entry key of the scope. Giving the scope a new
	// gen (unique across the cache) orphans all its entries at once, with no
	// scan, and a late write of a read that began under the old gen lands
	// under a key nobody looks up any more.
	gen uint64
	// writes counts this instance's commits to the scope. A read that
	// overlaps one may hold the pre-commit state and is not stored.
	writes uint64
	// lists is part of every nested list's key (see GetChildren): each
	// commit of this instance to the scope gives it a new value, since a
	// written child may have left a parent the commit does not name.
	lists uint64
	// head is the latest change number the cache knows the scope reached,
	// valid when headKnown. Entries read before the cache knew any head may
	// predate any change, so the first Notify always invalidates.
	head      int64
	headKnown bool
	// lastRead is when the latest read of the scope began. An entry lives
	// at most TTL from its read's start, so once lastRead is older than
	// TTL the scope holds nothing and its state can go.
	lastRead time.Time
}

// entry is one cached id: a document, or the knowledge that there is none.
type entry struct {
	gen     uint64
	id      string
	found   bool
	doc     collections.Document
	list    []collections.Document // a parent's children (GetChildren)
	expires time.Time
}

// New returns a cache in front of next.
func New(next Reader, opts Options) (*Cache, error) {
	if next == nil {
		return nil, errors.New("doccache: nil reader")
	}
	if opts.MaxDocuments < 0 || opts.TTL < 0 || opts.ReadTimeout < 0 {
		return nil, errors.New("doccache: negative MaxDocuments, TTL or ReadTimeout")
	}
	if opts.MaxDocuments == 0 {
		opts.MaxDocuments = DefaultMaxDocuments
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultTTL
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = DefaultReadTimeout
	}
	lists, _ := next.(ListReader)
	c := &Cache{
		next:        next,
		lists:       lists,
		ttl:         opts.TTL,
		readTimeout: opts.ReadTimeout,
		scopes:      map[scopeKey]*scope{},
		lastPrune:   time.Now(),
	}
	entries, err := ristretto.NewCache(&ristretto.Config[string, *entry]{
		NumCounters: 10 * opts.MaxDocuments, // ristretto's advice: 10x the items kept
		MaxCost:     opts.MaxDocuments,      // every entry costs 1
		BufferItems: 64,
		// Costs are counts of documents, not bytes: without this ristretto
		// adds its own per-item size to each cost and keeps almost nothing.
		IgnoreInternalCost: true,
		OnEvict:            func(*ristretto.Item[*entry]) { c.evictions.Add(1) },
	})
	if err != nil {
		return nil, err
	}
	c.entries = entries
	return c, nil
}

// GetDocuments returns the tenant's documents with the given ids, like the
// wrapped Reader: hits come from memory, and all misses are read in one call
// (shared with concurrent lookups of the same ids). The documents returned
// are the caller's own: changing them does not change the cache.
func (c *Cache) GetDocuments(ctx context.Context, tenantID string, coll *collections.Collection, ids []string) (map[string]collections.Document, error) {
	return c.getDocuments(ctx, tenantID, coll, ids, cloneDocument)
}

// GetSharedDocuments is GetDocuments without the copy: the documents'
// Fields are the cache's own, shared with every other caller, and must
// only be read (the read API's loaders only read them into its models).
// A hit then costs a lookup and nothing else.
func (c *Cache) GetSharedDocuments(ctx context.Context, tenantID string, coll *collections.Collection, ids []string) (map[string]collections.Document, error) {
	return c.getDocuments(ctx, tenantID, coll, ids, func(d collections.Document) collections.Document { return d })
}

func (c *Cache) getDocuments(ctx context.Context, tenantID string, coll *collections.Collection, ids []string, give func(collections.Document) collections.Document) (map[string]collections.Document, error) {
	out := make(map[string]collections.Document, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	c.life.RLock()
	if c.closed {
		c.life.RUnlock()
		return c.next.GetDocuments(ctx, tenantID, coll, ids)
	}
	gen, writes := c.observe(tenantID, coll)
	var missing []string
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		e, ok := c.lookup(gen, id)
		if !ok {
			missing = append(missing, id)
			continue
		}
		if e.found {
			out[id] = give(e.doc)
		}
	}
	c.life.RUnlock()
	c.hits.Add(uint64(len(seen) - len(missing)))
	c.misses.Add(uint64(len(missing)))
	if len(missing) == 0 {
		return out, nil
	}

	// Concurrent lookups of the same ids in the same state of the scope
	// share one read. The state (gen, writes) is in the key so that a lookup
	// made after this instance's commit never joins a read that began
	// before it.
	slices.Sort(missing)
	key := flightKey(tenantID, coll.Name, gen, writes, missing)
	ch := c.flights.DoChan(key, func() (any, error) {
		// The read serves every caller of the flight: it must not end
		// because the first one's context does.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.readTimeout)
		defer cancel()
		return c.load(rctx, tenantID, coll, missing)
	})
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		for id, doc := range r.Val.(map[string]collections.Document) {
			out[id] = give(doc)
		}
		return out, nil
	}
}

// load reads ids (sorted, distinct) for a flight and caches what it read.
// The returned map is shared by the flight's callers and must not change.
func (c *Cache) load(ctx context.Context, tenantID string, coll *collections.Collection, ids []string) (map[string]collections.Document, error) {
	c.life.RLock()
	if c.closed {
		c.life.RUnlock()
		return c.next.GetDocuments(ctx, tenantID, coll, ids)
	}
	// The state is taken before the read: whatever invalidates the scope
	// from here on makes the read's result unstorable.
	s, gen, writes, _, start := c.beginRead(tenantID, coll)
	// An earlier flight may have stored some of the ids since our caller
	// looked (it ended after its entries became visible): look again.
	found := make(map[string]collections.Document, len(ids))
	var toRead []string
	for _, id := range ids {
		e, ok := c.lookup(gen, id)
		switch {
		case !ok:
			toRead = append(toRead, id)
		case e.found:
			found[id] = e.doc
		}
	}
	c.life.RUnlock()
	if len(toRead) == 0 {
		return found, nil
	}

	c.reads.Add(1)
	docs, err := c.next.GetDocuments(ctx, tenantID, coll, toRead)
	if err != nil {
		return nil, err
	}
	for _, id := range toRead {
		if doc, ok := docs[id]; ok {
			found[id] = doc
		}
	}
	c.store(tenantID, coll, s, gen, writes, start, toRead, docs)
	return found, nil
}

// store caches the result of a read that began at start in the given state
// of scope s, unless the scope was invalidated since: then the result may
// predate a commit and must not outlive the invalidation.
func (c *Cache) store(tenantID string, coll *collections.Collection, s *scope, gen, writes uint64, start time.Time, ids []string, docs map[string]collections.Document) {
	ttl := c.ttl - time.Since(start)
	if ttl <= 0 {
		return
	}
	c.life.RLock()
	defer c.life.RUnlock()
	if c.closed {
		return
	}
	c.mu.Lock()
	if c.scopes[scopeKey{tenantID, coll.Name}] != s || s.gen != gen || s.writes != writes {
		c.mu.Unlock()
		return
	}
	// The Sets happen under mu, so each is queued in ristretto either before
	// a Committed's bump of writes (and so before its Dels, which then
	// remove it) or after it, when the check above fails.
	expires := start.Add(c.ttl)
	for _, id := range ids {
		doc, ok := docs[id]
		c.entries.SetWithTTL(entryKey(gen, id), &entry{gen: gen, id: id, found: ok, doc: doc, expires: expires}, 1, ttl)
	}
	c.mu.Unlock()
	// Sets are applied asynchronously; the flight ends only once its entries
	// are visible, so a lookup arriving just after it finds them instead of
	// reading again.
	c.entries.Wait()
}

// lookup returns the live entry of id under gen. Callers hold life shared.
func (c *Cache) lookup(gen uint64, id string) (*entry, bool) {
	e, ok := c.entries.Get(entryKey(gen, id))
	if !ok || e.gen != gen || e.id != id || !time.Now().Before(e.expires) {
		return nil, false
	}
	return e, true
}

// observe returns the scope's current state, creating it if needed.
func (c *Cache) observe(tenantID string, coll *collections.Collection) (gen, writes uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.scopeLocked(tenantID, coll, time.Now())
	return s.gen, s.writes
}

// beginRead records that a read of the scope begins now and returns the
// state it begins in.
func (c *Cache) beginRead(tenantID string, coll *collections.Collection) (s *scope, gen, writes, lists uint64, start time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	start = time.Now()
	s = c.scopeLocked(tenantID, coll, start)
	s.lastRead = start
	return s, s.gen, s.writes, s.lists, start
}

func (c *Cache) scopeLocked(tenantID string, coll *collections.Collection, now time.Time) *scope {
	k := scopeKey{tenantID, coll.Name}
	if s, ok := c.scopes[k]; ok {
		return s
	}
	if now.Sub(c.lastPrune) > c.ttl {
		c.pruneLocked(now)
	}
	c.lastGen++
	s := &scope{gen: c.lastGen, lists: c.lastGen, lastRead: now}
	c.scopes[k] = s
	return s
}

// pruneLocked forgets scopes with no read for longer than TTL: all their
// entries have expired. Generations are never reused, so a scope made again
// later cannot see the old entries either.
func (c *Cache) pruneLocked(now time.Time) {
	for k, s := range c.scopes {
		if now.Sub(s.lastRead) > c.ttl {
			delete(c.scopes, k)
		}
	}
	c.lastPrune = now
}

// Committed invalidates the documents this instance just wrote, so its next
// read sees them. It matches syncengine.CommitListener and must be called
// after the commit, never before.
func (c *Cache) Committed(tenantID string, coll *collections.Collection, head int64, written []collections.Document) {
	if len(written) == 0 {
		return
	}
	c.life.RLock()
	defer c.life.RUnlock()
	if c.closed {
		return
	}
	c.mu.Lock()
	s := c.scopes[scopeKey{tenantID, coll.Name}]
	if s == nil {
		// Nothing cached and no read under way (reads create the scope).
		c.mu.Unlock()
		return
	}
	s.writes++
	c.lastGen++
	s.lists = c.lastGen
	// Our own commit moves the known head only when it directly follows it;
	// otherwise another instance's commit may lie in between, and the next
	// Notify must still invalidate the scope for it.
	first := written[0].Change
	for _, d := range written[1:] {
		first = min(first, d.Change)
	}
	if s.headKnown && first == s.head+1 && head > s.head {
		s.head = head
	}
	gen := s.gen
	c.mu.Unlock()
	for _, d := range written {
		c.entries.Del(entryKey(gen, d.ID))
	}
	// Del removes at once, but a Set queued just before it would be applied
	// (briefly) before the queued delete: wait until both have been.
	c.entries.Wait()
}

// Tenants lists the tenants with entries that may still be live, for a
// livesync.PollingNotifier: those read within the last TTL.
func (c *Cache) Tenants() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLocked(time.Now())
	var tenants []string
	seen := map[string]bool{}
	for k := range c.scopes {
		if !seen[k.tenant] {
			seen[k.tenant] = true
			tenants = append(tenants, k.tenant)
		}
	}
	slices.Sort(tenants)
	return tenants
}

// Notify hears that a scope's head is now at least head (another instance
// may have committed): if that is newer than the cache knew, every entry of
// the scope is dropped. It never blocks on I/O.
func (c *Cache) Notify(tenantID string, coll *collections.Collection, head int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.scopes[scopeKey{tenantID, coll.Name}]
	if s == nil || (s.headKnown && head <= s.head) {
		return
	}
	c.lastGen++
	s.gen = c.lastGen
	s.head, s.headKnown = head, true
}

// Stats returns the counters so far.
func (c *Cache) Stats() Stats {
	return Stats{
		Hits:      c.hits.Load(),
		Misses:    c.misses.Load(),
		Reads:     c.reads.Load(),
		Evictions: c.evictions.Load(),
	}
}

// Close frees the cache. Afterwards GetDocuments reads through to the
// wrapped Reader and invalidations do nothing. Close may be called more
// than once and concurrently with everything else.
func (c *Cache) Close() {
	c.life.Lock()
	defer c.life.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	c.entries.Close()
	c.mu.Lock()
	clear(c.scopes)
	c.mu.Unlock()
}

// entryKey names id under a scope generation. Generations are unique across
// scopes, so the key needs neither tenant nor collection.
func entryKey(gen uint64, id string) string {
	b := make([]byte, 0, 24+len(id))
	b = strconv.AppendUint(b, gen, 36)
	b = append(b, ':')
	b = append(b, id...)
	return string(b)
}

// flightKey names a read of ids (sorted) in one state of a scope. Every part
// is length-prefixed, so no two different reads share a key.
func flightKey(tenantID, collection string, gen, writes uint64, ids []string) string {
	var b []byte
	part := func(s string) {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		b = append(b, s...)
	}
	part(tenantID)
	part(collection)
	b = strconv.AppendUint(b, gen, 10)
	b = append(b, '/')
	b = strconv.AppendUint(b, writes, 10)
	b = append(b, '/')
	for _, id := range ids {
		part(id)
	}
	return string(b)
}

// cloneDocument gives a caller its own Fields map; the values are immutable
// scalars and times.
func cloneDocument(d collections.Document) collections.Document {
	d.Fields = maps.Clone(d.Fields)
	return d
}
