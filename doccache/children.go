package doccache

// Nested lists by parent: a work order's checklist, its notes. A nested
// read of a page needs them for every item, and with the database a round
// trip away they are what keeps the read from answering from memory once
// its parents' by-id lookups are cached. They follow the by-id entries'
// rules, with one more: any commit of this instance to the children's
// collection orphans every list of it (a written child may have left a
// parent the cache cannot name), through a list generation of the scope.

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/readapi"
)

// ListReader is what the cache needs of the wrapped reader to serve
// GetChildren (normally *db.DB).
type ListReader interface {
	ListDocuments(ctx context.Context, tenantID string, c *collections.Collection, q readapi.ListQuery) ([]collections.Document, error)
}

// errNoLister is returned by GetChildren when the wrapped reader cannot list.
var errNoLister = errors.New("doccache: the wrapped reader does not list documents")

// GetChildren returns the documents of coll whose field holds one of
// parentIDs, deleted ones left out, grouped by parent in orderBy order
// (dataloader.ChildrenReader). Lists in the cache come from memory; the
// rest are read in one statement of at most limit rows, and cached when it
// was not cut short. Parents with no children are absent from the map.
// The lists are shared with the cache and other callers: read them only.
func (c *Cache) GetChildren(ctx context.Context, tenantID string, coll *collections.Collection, field, orderBy string, parentIDs []string, limit int) (map[string][]collections.Document, error) {
	if c.lists == nil {
		return nil, errNoLister
	}
	out := make(map[string][]collections.Document, len(parentIDs))
	if len(parentIDs) == 0 {
		return out, nil
	}
	c.life.RLock()
	if c.closed {
		c.life.RUnlock()
		return c.readChildren(ctx, tenantID, coll, field, orderBy, parentIDs, limit)
	}
	s, gen, writes, lists, start := c.beginRead(tenantID, coll)
	var missing []string
	seen := make(map[string]bool, len(parentIDs))
	for _, p := range parentIDs {
		if seen[p] {
			continue
		}
		seen[p] = true
		key := listKey(gen, lists, field, orderBy, p)
		e, ok := c.entries.Get(key)
		if !ok || e.gen != gen || e.id != key || !time.Now().Before(e.expires) {
			missing = append(missing, p)
			continue
		}
		if len(e.list) > 0 {
			out[p] = e.list
		}
	}
	c.life.RUnlock()
	c.hits.Add(uint64(len(seen) - len(missing)))
	c.misses.Add(uint64(len(missing)))
	if len(missing) == 0 {
		return out, nil
	}

	c.reads.Add(1)
	read, err := c.readChildren(ctx, tenantID, coll, field, orderBy, missing, limit)
	if err != nil {
		return nil, err
	}
	n := 0
	for p, docs := range read {
		out[p] = docs
		n += len(docs)
	}
	if n < limit { // a read cut short at limit is not every parent's whole list
		c.storeLists(tenantID, coll, s, gen, writes, lists, start, field, orderBy, missing, read)
	}
	return out, nil
}

func (c *Cache) readChildren(ctx context.Context, tenantID string, coll *collections.Collection, field, orderBy string, parentIDs []string, limit int) (map[string][]collections.Document, error) {
	docs, err := c.lists.ListDocuments(ctx, tenantID, coll, readapi.ListQuery{
		Filters: []readapi.Filter{{Field: field, Op: readapi.OpIn, Value: parentIDs}},
		OrderBy: orderBy,
		Limit:   limit,
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string][]collections.Document, len(parentIDs))
	for _, d := range docs {
		p, _ := d.Fields[field].(string)
		out[p] = append(out[p], d)
	}
	return out, nil
}

// storeLists caches the lists of a read that began at start in the given
// state of scope s, unless the scope changed since (see store).
func (c *Cache) storeLists(tenantID string, coll *collections.Collection, s *scope, gen, writes, lists uint64, start time.Time, field, orderBy string, parentIDs []string, read map[string][]collections.Document) {
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
	if c.scopes[scopeKey{tenantID, coll.Name}] != s || s.gen != gen || s.writes != writes || s.lists != lists {
		c.mu.Unlock()
		return
	}
	expires := start.Add(c.ttl)
	for _, p := range parentIDs {
		key := listKey(gen, lists, field, orderBy, p)
		list := read[p]
		c.entries.SetWithTTL(key, &entry{gen: gen, id: key, found: true, list: list, expires: expires}, max(1, int64(len(list))), ttl)
	}
	c.mu.Unlock()
	c.entries.Wait()
}

// listKey names the list of parent's children under a scope generation and
// list generation. It starts with a NUL, which no document id holds
// (collections.CheckText refuses it), so it never names a by-id entry.
func listKey(gen, lists uint64, field, orderBy, parent string) string {
	b := make([]byte, 0, 40+len(field)+len(orderBy)+len(parent))
	b = append(b, 0)
	b = strconv.AppendUint(b, gen, 36)
	b = append(b, '.')
	b = strconv.AppendUint(b, lists, 36)
	for _, part := range []string{field, orderBy} {
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(len(part)), 10)
		b = append(b, ':')
		b = append(b, part...)
	}
	b = append(b, ':')
	b = append(b, parent...)
	return string(b)
}
