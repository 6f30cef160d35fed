// Package dataloader batches the nested reads of one GraphQL response:
// every WorkOrder.site of a page becomes one lookup, every
// WorkOrder.checklist one list, and so on, whatever the page size.
//
// Loaders belong to one response of one caller. They cache what they
// loaded for that response only: a loader that outlived it would serve
// stale documents, so every query and every subscription event gets fresh
// ones (see Middleware).
package dataloader

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vikstrous/dataloadgen"

	"github.com/tidemark/tidemark/apperr"
	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/readapi"
)

// Sources are the reads the loaders batch: by-id lookups (which may go
// through the document cache) and lists.
type Sources struct {
	Documents DocumentReader
	Lists     ListReader
	// Children, if set, serves the nested lists (a work order's checklist)
	// instead of Lists: the document cache keeps them by parent, so a
	// nested read it has seen takes no database round trip for them.
	Children ChildrenReader
}

// ChildrenReader reads the children of many parents at once: the
// documents of c whose field holds one of parentIDs, deleted ones left
// out, each parent's in orderBy order. It reads at most limit rows from
// the database in one call (a caller that gets more in all refuses them).
// The lists returned may be shared: callers must not change them.
type ChildrenReader interface {
	GetChildren(ctx context.Context, tenantID string, c *collections.Collection, field, orderBy string, parentIDs []string, limit int) (map[string][]collections.Document, error)
}

// DocumentReader looks documents up by id, deleted ones included.
type DocumentReader interface {
	GetDocuments(ctx context.Context, tenantID string, c *collections.Collection, ids []string) (map[string]collections.Document, error)
}

// SharedDocumentReader is a DocumentReader that can also answer without
// copying (the document cache): the loaders use it when they can, since
// the read API only reads the documents it loads.
type SharedDocumentReader interface {
	GetSharedDocuments(ctx context.Context, tenantID string, c *collections.Collection, ids []string) (map[string]collections.Document, error)
}

// getDocuments reads by id, without a copy when the reader allows it.
func (l *Loaders) getDocuments(ctx context.Context, c *collections.Collection, ids []string) (map[string]collections.Document, error) {
	if shared, ok := l.sources.Documents.(SharedDocumentReader); ok {
		return shared.GetSharedDocuments(ctx, l.tenantID, c, ids)
	}
	return l.sources.Documents.GetDocuments(ctx, l.tenantID, c, ids)
}

// ListReader reads lists, grouped lists and grouped counts.
type ListReader interface {
	ListDocuments(ctx context.Context, tenantID string, c *collections.Collection, q readapi.ListQuery) ([]collections.Document, error)
	ListGrouped(ctx context.Context, tenantID string, c *collections.Collection, groupField string, groupIDs []string, q readapi.ListQuery) (map[string][]collections.Document, error)
	CountGrouped(ctx context.Context, tenantID string, c *collections.Collection, groupField string, groupIDs []string, q readapi.ListQuery) (map[string]int64, error)
}

// wait is how long a loader collects keys before it reads. gqlgen resolves
// the nested fields of a page's items concurrently, so they all arrive
// well within it.
const wait = 2 * time.Millisecond

// MaxChildren bounds one batched children read: the nested lists (a work
// order's checklist or notes) of one page of parents together.
//
// The nested lists take no paging arguments, and a realistic page (500
// work orders, the largest page, with 20 to 100 checklist items each)
// must answer with data, so the bound is set at 500 × 100 = 50,000 rows:
// well above real data, yet it keeps one response's memory bounded (the
// complexity limit prices a nested list at an estimate, not at what the
// data holds). A page over it answers a BAD_USER_INPUT error that names
// the bound and tells the client to ask for fewer parents; it is never an
// internal error, and never silently cut short.
const MaxChildren = 50_000

// Loaders are the batching loaders of one response.
type Loaders struct {
	tenantID    string
	sources     Sources
	maxChildren int // MaxChildren; lowered by tests
	byID        map[*collections.Collection]*dataloadgen.Loader[string, collections.Document]
	children    map[childKey]*dataloadgen.Loader[string, []collections.Document]
	pages       map[*collections.Collection]*dataloadgen.Loader[GroupPageKey, []collections.Document]
	counts      map[*collections.Collection]*dataloadgen.Loader[GroupPageKey, int64]

	// kept holds what the resolvers derived from this response's loads
	// (see Keep).
	kept sync.Map

	mu      sync.Mutex
	queries map[string]readapi.ListQuery // GroupPage queries by their key text
	childMu sync.Mutex                   // guards children, which grows on demand
}

type childKey struct {
	c       *collections.Collection
	field   string
	orderBy string
}

// New returns fresh loaders for one response of the tenant's caller.
func New(sources Sources, tenantID string) *Loaders {
	l := &Loaders{
		tenantID:    tenantID,
		sources:     sources,
		maxChildren: MaxChildren,
		byID:        map[*collections.Collection]*dataloadgen.Loader[string, collections.Document]{},
		children:    map[childKey]*dataloadgen.Loader[string, []collections.Document]{},
		pages:       map[*collections.Collection]*dataloadgen.Loader[GroupPageKey, []collections.Document]{},
		counts:      map[*collections.Collection]*dataloadgen.Loader[GroupPageKey, int64]{},
		queries:     map[string]readapi.ListQuery{},
	}
	for _, c := range collections.All() {
		l.byID[c] = dataloadgen.NewMappedLoader(l.fetchByID(c), dataloadgen.WithWait(wait))
		l.pages[c] = dataloadgen.NewMappedLoader(l.fetchGroupPages(c), dataloadgen.WithWait(wait))
		l.counts[c] = dataloadgen.NewMappedLoader(l.fetchGroupCounts(c), dataloadgen.WithWait(wait))
	}
	return l
}

// Document loads one document by id; ok is false when the tenant has no
// such document or it is deleted.
func (l *Loaders) Document(ctx context.Context, c *collections.Collection, id string) (collections.Document, bool, error) {
	doc, err := l.byID[c].Load(ctx, id)
	if errors.Is(err, dataloadgen.ErrNotFound) {
		return collections.Document{}, false, nil
	}
	if err != nil {
		return collections.Document{}, false, err
	}
	return doc, !doc.Deleted, nil
}

// PrefetchDocument queues a by-id load without waiting for it. A resolver
// that has just read a page queues all its items' loads at once, so they
// share one batch however gqlgen then schedules the items.
func (l *Loaders) PrefetchDocument(ctx context.Context, c *collections.Collection, id string) {
	l.byID[c].LoadThunk(ctx, id)
}

// PrefetchChildren queues a Children load without waiting for it.
func (l *Loaders) PrefetchChildren(ctx context.Context, c *collections.Collection, field, orderBy, parentID string) {
	l.childLoader(childKey{c, field, orderBy}).LoadThunk(ctx, parentID)
}

func (l *Loaders) childLoader(key childKey) *dataloadgen.Loader[string, []collections.Document] {
	l.childMu.Lock()
	defer l.childMu.Unlock()
	loader, ok := l.children[key]
	if !ok {
		loader = dataloadgen.NewMappedLoader(l.fetchChildren(key), dataloadgen.WithWait(wait))
		l.children[key] = loader
	}
	return loader
}

func (l *Loaders) fetchByID(c *collections.Collection) func(context.Context, []string) (map[string]collections.Document, error) {
	return func(ctx context.Context, ids []string) (map[string]collections.Document, error) {
		return l.getDocuments(ctx, c, ids)
	}
}

// Children loads the documents of c whose field holds parentID (e.g. the
// checklist items of a work order), deleted ones left out, in orderBy order.
func (l *Loaders) Children(ctx context.Context, c *collections.Collection, field, orderBy, parentID string) ([]collections.Document, error) {
	loader := l.childLoader(childKey{c, field, orderBy})
	docs, err := loader.Load(ctx, parentID)
	if errors.Is(err, dataloadgen.ErrNotFound) {
		return []collections.Document{}, nil
	}
	return docs, err
}

func (l *Loaders) fetchChildren(k childKey) func(context.Context, []string) (map[string][]collections.Document, error) {
	return func(ctx context.Context, parentIDs []string) (map[string][]collections.Document, error) {
		return l.readChildren(ctx, k, parentIDs)
	}
}

// readChildren reads the children of parentIDs in one call, through the
// Children source when there is one.
func (l *Loaders) readChildren(ctx context.Context, k childKey, parentIDs []string) (map[string][]collections.Document, error) {
	tooMany := func() error {
		return apperr.New(apperr.BadUserInput, "the %d parents of this page hold more than %d %s together, more than one response's nested lists may hold; ask for fewer parents (first)", len(parentIDs), l.maxChildren, k.c.Name)
	}
	if l.sources.Children != nil {
		out, err := l.sources.Children.GetChildren(ctx, l.tenantID, k.c, k.field, k.orderBy, parentIDs, l.maxChildren+1)
		if err != nil {
			return nil, err
		}
		n := 0
		for _, docs := range out {
			n += len(docs)
		}
		if n > l.maxChildren {
			return nil, tooMany()
		}
		return out, nil
	}
	docs, err := l.sources.Lists.ListDocuments(ctx, l.tenantID, k.c, readapi.ListQuery{
		Filters: []readapi.Filter{{Field: k.field, Op: readapi.OpIn, Value: parentIDs}},
		OrderBy: k.orderBy,
		Limit:   l.maxChildren + 1,
	})
	if err != nil {
		return nil, err
	}
	if len(docs) > l.maxChildren {
		return nil, tooMany()
	}
	return GroupChildren(docs, k.field, len(parentIDs)), nil
}

// GroupChildren groups documents by the parent id their field holds,
// keeping their order.
func GroupChildren(docs []collections.Document, field string, parents int) map[string][]collections.Document {
	out := make(map[string][]collections.Document, parents)
	for _, d := range docs {
		p, _ := d.Fields[field].(string)
		out[p] = append(out[p], d)
	}
	return out
}

// PrimeChildren reads now, in one call, the children of every parent in
// parentIDs and primes the response's Children loads with them, so the
// nested fields of a page resolve at once instead of waiting for a batch
// to fill. A resolver that has just read a page calls it before gqlgen
// resolves the page's items. On an error nothing is primed: each field
// then loads (and reports) on its own.
// It returns the lists it read (parents without children absent), which
// are shared with the loads and must only be read.
func (l *Loaders) PrimeChildren(ctx context.Context, c *collections.Collection, field, orderBy string, parentIDs []string) (map[string][]collections.Document, error) {
	key := childKey{c, field, orderBy}
	parentIDs = distinct(parentIDs)
	if len(parentIDs) == 0 {
		return nil, nil
	}
	out, err := l.readChildren(ctx, key, parentIDs)
	if err != nil {
		return nil, err
	}
	loader := l.childLoader(key)
	for _, p := range parentIDs {
		docs, ok := out[p]
		if !ok {
			docs = []collections.Document{}
		}
		loader.Prime(p, docs)
	}
	return out, nil
}

// PrimeDocuments reads now, in one call, the documents of c with the given
// ids and primes the response's by-id loads with them; an absent id is
// primed as absent (Document reports it missing at once, as its own load
// would after a batch window). It returns what it read, to be read only.
func (l *Loaders) PrimeDocuments(ctx context.Context, c *collections.Collection, ids []string) (map[string]collections.Document, error) {
	ids = distinct(ids)
	if len(ids) == 0 {
		return nil, nil
	}
	docs, err := l.getDocuments(ctx, c, ids)
	if err != nil {
		return nil, err
	}
	loader := l.byID[c]
	for _, id := range ids {
		d, ok := docs[id]
		if !ok {
			d = absent
		}
		loader.Prime(id, d)
	}
	return docs, nil
}

// absent is what a by-id load primed for a missing document holds:
// Document reports it missing, as for a deleted one.
var absent = collections.Document{Deleted: true}

// Keep stores v under key for the rest of the response: what a resolver
// derived from primed documents (its models of a page's nested
// documents), built once where the page is read instead of once per field
// in the goroutines gqlgen resolves fields in. key must be comparable.
func (l *Loaders) Keep(key, v any) { l.kept.Store(key, v) }

// Kept returns what Keep stored under key.
func (l *Loaders) Kept(key any) (any, bool) { return l.kept.Load(key) }

// distinct returns ids without repeats, in first-seen order.
func distinct(ids []string) []string {
	seen := make(map[string]struct{}, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if _, ok := seen[id]; !ok {
			seen[id] = struct{}{}
			out = append(out, id)
		}
	}
	return out
}

// GroupPageKey asks for the first page of one group (e.g. one site's work
// orders) under a query; the query's shape is part of the key so groups
// asked for with the same arguments share one read.
type GroupPageKey struct {
	Field   string
	GroupID string
	query   string // canonical form of the query, see QueryKey
}

// GroupPage loads the first q.Limit documents of c whose field holds
// groupID, in q's order. Every group asked for with an equal query in this
// response is read in one statement.
func (l *Loaders) GroupPage(ctx context.Context, c *collections.Collection, field, groupID string, q readapi.ListQuery) ([]collections.Document, error) {
	key := GroupPageKey{Field: field, GroupID: groupID, query: queryKey(q)}
	l.rememberQuery(key.query, q)
	docs, err := l.pages[c].Load(ctx, key)
	if errors.Is(err, dataloadgen.ErrNotFound) {
		return []collections.Document{}, nil
	}
	return docs, err
}

func (l *Loaders) fetchGroupPages(c *collections.Collection) func(context.Context, []GroupPageKey) (map[GroupPageKey][]collections.Document, error) {
	return func(ctx context.Context, keys []GroupPageKey) (map[GroupPageKey][]collections.Document, error) {
		out := make(map[GroupPageKey][]collections.Document, len(keys))
		for b, ids := range batchesOf(keys) {
			q, ok := l.query(b.query)
			if !ok {
				return nil, fmt.Errorf("dataloader: unknown query %q", b.query)
			}
			pages, err := l.sources.Lists.ListGrouped(ctx, l.tenantID, c, b.field, ids, q)
			if err != nil {
				return nil, err
			}
			for id, docs := range pages {
				out[GroupPageKey{Field: b.field, GroupID: id, query: b.query}] = docs
			}
		}
		return out, nil
	}
}

// PrefetchGroupPage queues a GroupPage load without waiting for it.
func (l *Loaders) PrefetchGroupPage(ctx context.Context, c *collections.Collection, field, groupID string, q readapi.ListQuery) {
	key := GroupPageKey{Field: field, GroupID: groupID, query: queryKey(q)}
	l.rememberQuery(key.query, q)
	l.pages[c].LoadThunk(ctx, key)
}

// PrefetchGroupCount queues a GroupCount load without waiting for it.
func (l *Loaders) PrefetchGroupCount(ctx context.Context, c *collections.Collection, field, groupID string, q readapi.ListQuery) {
	q.After, q.Limit, q.OrderBy, q.Desc = nil, 0, "", false
	key := GroupPageKey{Field: field, GroupID: groupID, query: queryKey(q)}
	l.rememberQuery(key.query, q)
	l.counts[c].LoadThunk(ctx, key)
}

// GroupCount loads how many documents of c whose field holds groupID
// match q's filters; groups asked for with an equal query share one read.
func (l *Loaders) GroupCount(ctx context.Context, c *collections.Collection, field, groupID string, q readapi.ListQuery) (int, error) {
	q.After, q.Limit, q.OrderBy, q.Desc = nil, 0, "", false // only the filters count
	key := GroupPageKey{Field: field, GroupID: groupID, query: queryKey(q)}
	l.rememberQuery(key.query, q)
	n, err := l.counts[c].Load(ctx, key)
	if errors.Is(err, dataloadgen.ErrNotFound) {
		return 0, nil
	}
	return int(n), err
}

func (l *Loaders) fetchGroupCounts(c *collections.Collection) func(context.Context, []GroupPageKey) (map[GroupPageKey]int64, error) {
	return func(ctx context.Context, keys []GroupPageKey) (map[GroupPageKey]int64, error) {
		out := make(map[GroupPageKey]int64, len(keys))
		for b, ids := range batchesOf(keys) {
			q, ok := l.query(b.query)
			if !ok {
				return nil, fmt.Errorf("dataloader: unknown query %q", b.query)
			}
			counts, err := l.sources.Lists.CountGrouped(ctx, l.tenantID, c, b.field, ids, q)
			if err != nil {
				return nil, err
			}
			for id, n := range counts {
				out[GroupPageKey{Field: b.field, GroupID: id, query: b.query}] = n
			}
		}
		return out, nil
	}
}

// batch is one read of a grouped loader: the groups asked for with one
// field and query.
type batch struct{ field, query string }

func batchesOf(keys []GroupPageKey) map[batch][]string {
	groups := map[batch][]string{}
	for _, k := range keys {
		b := batch{k.Field, k.query}
		groups[b] = append(groups[b], k.GroupID)
	}
	return groups
}

func (l *Loaders) rememberQuery(key string, q readapi.ListQuery) {
	l.mu.Lock()
	l.queries[key] = q
	l.mu.Unlock()
}

func (l *Loaders) query(key string) (readapi.ListQuery, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	q, ok := l.queries[key]
	return q, ok
}

// queryKey is a canonical text of a list query, to group loads by.
func queryKey(q readapi.ListQuery) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%v|%v|%d|", q.OrderBy, q.Desc, q.IncludeDeleted, q.Limit)
	if q.After != nil {
		fmt.Fprintf(&b, "after=%v/%s|", q.After.Value, q.After.ID)
	}
	filters := make([]string, len(q.Filters))
	for i, f := range q.Filters {
		filters[i] = fmt.Sprintf("%s%d%v", f.Field, f.Op, f.Value)
	}
	sort.Strings(filters)
	b.WriteString(strings.Join(filters, ","))
	return b.String()
}

type loadersKey struct{}

// With returns ctx carrying l.
func With(ctx context.Context, l *Loaders) context.Context {
	return context.WithValue(ctx, loadersKey{}, l)
}

// For returns the loaders of ctx, or nil.
func For(ctx context.Context) *Loaders {
	l, _ := ctx.Value(loadersKey{}).(*Loaders)
	return l
}

// PerResponse returns the hook that gives every GraphQL response of an
// authenticated caller fresh loaders (server.Config.ResponseContext).
func PerResponse(sources Sources) func(context.Context) context.Context {
	return func(ctx context.Context) context.Context {
		id, ok := auth.FromContext(ctx)
		if !ok {
			return ctx
		}
		return With(ctx, New(sources, id.TenantID))
	}
}
