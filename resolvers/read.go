package resolvers

// The read API's shared machinery: who may read, the per-response loaders,
// Relay paging and connections, the nested parent and children loads, and
// node(id). The generated connections (collections.generated.go) and the
// custom ones (custom_read.go) are built on it.

import (
	"context"
	"slices"
	"time"

	"github.com/99designs/gqlgen/graphql"

	"github.com/tidemark/tidemark/apperr"
	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/dataloader"
	"github.com/tidemark/tidemark/graph/model"
	"github.com/tidemark/tidemark/readapi"
)

// readerFrom returns the caller of a read API field. The read API lists
// and nests documents across collections without sync rules, so under
// rules it serves only callers that sync the whole tenant (dispatchers);
// everyone else reads their own set through pull and stream, and is told
// so instead of being shown documents outside it.
func readerFrom(ctx context.Context, r *Resolver) (auth.Identity, error) {
	id, err := callerFrom(ctx)
	if err != nil {
		return id, err
	}
	if rules := r.Sync.Rules(); rules != nil && !rules.AccessFor(id.UserID, id.Claims).WholeTenant() {
		return auth.Identity{}, apperr.New(apperr.Forbidden, "the read API serves callers that sync the whole tenant; read your documents with pull and stream")
	}
	return id, nil
}

// loadersFor returns the response's loaders (installed per response by the
// server), or unbatched ones for a context that has none.
func loadersFor(ctx context.Context, r *Resolver, tenantID string) *dataloader.Loaders {
	if l := dataloader.For(ctx); l != nil {
		return l
	}
	return dataloader.New(r.Sources, tenantID)
}

// selects reports whether the current field's selection includes name
// (e.g. a connection's totalCount, which costs a query of its own).
func selects(ctx context.Context, name string) bool {
	return slices.Contains(graphql.CollectAllFields(ctx), name)
}

func pageArgs(first *int, after *string, last *int, before *string) readapi.PageArgs {
	return readapi.PageArgs{First: first, After: after, Last: last, Before: before}
}

func pageInfo(res readapi.Result) *model.PageInfo {
	info := &model.PageInfo{HasNextPage: res.HasNextPage, HasPreviousPage: res.HasPreviousPage}
	if n := len(res.Cursors); n > 0 {
		info.StartCursor, info.EndCursor = &res.Cursors[0], &res.Cursors[n-1]
	}
	return info
}

// updatedSinceQuery is the query of a generated connection's filter:
// documents changed at or after since, ordered by updatedAt.
func updatedSinceQuery(since *time.Time, includeDeleted bool) readapi.ListQuery {
	q := readapi.ListQuery{OrderBy: "updatedAt", IncludeDeleted: includeDeleted}
	if since != nil {
		q.Filters = append(q.Filters, readapi.Filter{Field: "updatedAt", Op: readapi.OpAtOrAfter, Value: *since})
	}
	return q
}

// prefetchers queue the nested loads of a collection's custom nested
// fields for a page of its documents (see connection).
var prefetchers = map[*collections.Collection]func(context.Context, *dataloader.Loaders, []collections.Document){
	collections.Site:      prefetchSiteFields,
	collections.WorkOrder: prefetchWorkOrderFields,
}

// connection runs a top-level list and shapes it with edge; the total is
// counted only when the client asked for it.
func connection[T, E any](ctx context.Context, r *Resolver, l readapi.List, edge func(*T, string) E) (edges []E, info *model.PageInfo, total int, err error) {
	id, err := readerFrom(ctx, r)
	if err != nil {
		return nil, nil, 0, err
	}
	res, err := r.Read.Page(ctx, id.TenantID, l)
	if err != nil {
		return nil, nil, 0, err
	}
	if selects(ctx, "totalCount") {
		if total, err = r.Read.Count(ctx, id.TenantID, l); err != nil {
			return nil, nil, 0, err
		}
	}
	if prefetch, ok := prefetchers[l.Collection]; ok {
		prefetch(ctx, loadersFor(ctx, r, id.TenantID), res.Documents)
	}
	edges = make([]E, len(res.Documents))
	for i, d := range res.Documents {
		edges[i] = edge(fromDocument[T](l.Collection, d), res.Cursors[i])
	}
	return edges, pageInfo(res), total, nil
}

// keptParent and keptChildren name the models a page's prefetch built
// for its items' fields (dataloader.Loaders.Keep).
type keptParent struct {
	c  *collections.Collection
	id string
}

type keptChildren struct {
	c                     *collections.Collection
	field, orderBy, owner string
}

// keepParents primes the response's by-id loads of ids and keeps their
// models, so each item's field returns one already built (shared by the
// items that refer to it; models are only read from then on).
func keepParents[T any](ctx context.Context, loaders *dataloader.Loaders, c *collections.Collection, ids []string) {
	docs, err := loaders.PrimeDocuments(ctx, c, ids)
	if err != nil {
		return
	}
	for id, d := range docs {
		if !d.Deleted {
			loaders.Keep(keptParent{c, id}, fromDocument[T](c, d))
		}
	}
}

// keepChildren primes the response's children loads of parentIDs and
// keeps their models (see keepParents).
func keepChildren[T any](ctx context.Context, loaders *dataloader.Loaders, c *collections.Collection, field, orderBy string, parentIDs []string) {
	lists, err := loaders.PrimeChildren(ctx, c, field, orderBy, parentIDs)
	if err != nil {
		return
	}
	for _, p := range parentIDs {
		loaders.Keep(keptChildren{c, field, orderBy, p}, fromDocuments[T](c, lists[p]))
	}
}

// parent loads the document a field refers to, or nil when it is missing
// or deleted (an offline client may sync a child before its parent).
func parent[T any](ctx context.Context, r *Resolver, c *collections.Collection, parentID string) (*T, error) {
	id, err := readerFrom(ctx, r)
	if err != nil {
		return nil, err
	}
	loaders := loadersFor(ctx, r, id.TenantID)
	if kept, ok := loaders.Kept(keptParent{c, parentID}); ok {
		if m, ok := kept.(*T); ok {
			return m, nil
		}
	}
	queueRelations(ctx, loaders)
	doc, ok, err := loaders.Document(ctx, c, parentID)
	if err != nil || !ok {
		return nil, err
	}
	return fromDocument[T](c, doc), nil
}

// children loads the documents of c that refer to parentID through field.
func children[T any](ctx context.Context, r *Resolver, c *collections.Collection, field, orderBy, parentID string) ([]*T, error) {
	id, err := readerFrom(ctx, r)
	if err != nil {
		return nil, err
	}
	loaders := loadersFor(ctx, r, id.TenantID)
	if kept, ok := loaders.Kept(keptChildren{c, field, orderBy, parentID}); ok {
		if models, ok := kept.([]*T); ok {
			return models, nil
		}
	}
	queueRelations(ctx, loaders)
	docs, err := loaders.Children(ctx, c, field, orderBy, parentID)
	if err != nil {
		return nil, err
	}
	return fromDocuments[T](c, docs), nil
}

// queueRelations queues, without waiting, the loads of the relation
// fields selected on the current field's object (a work order's site,
// checklist and notes; a checklist item's or note's work order), and on
// every other object of the list it is an element of. gqlgen resolves
// those fields one after another on one goroutine (collectiongen's
// resolveRelationsInline), and the elements of such a list one after
// another too (graph's marshalList), so where no page primed them (node,
// a pull, Site.workOrders) the first relation to load queues the rest:
// they share one batch window, as they did when each field and element
// ran on its own goroutine, instead of waiting one window each. A list is
// queued once; a load already primed or queued is not queued again.
func queueRelations(ctx context.Context, loaders *dataloader.Loaders) {
	if !graphql.HasOperationContext(ctx) {
		return
	}
	fc := graphql.GetFieldContext(ctx)
	if fc == nil {
		return
	}
	// The field that produced the object holds its selection and result
	// (a list element's context has neither field nor selection); a list
	// of edges is two levels above its node.
	obj := fc.Parent
	for obj != nil && obj.Field.Field == nil {
		obj = obj.Parent
	}
	if obj == nil {
		return
	}
	objects := obj.Result
	if obj.Parent != nil && obj.Parent.Index != nil && obj.Parent.Parent != nil {
		switch obj.Parent.Parent.Result.(type) {
		case []*model.WorkOrderEdge, []*model.ChecklistItemEdge, []*model.NoteEdge:
			objects = obj.Parent.Parent.Result
		}
	}
	typ, key := listOf(objects)
	if key != nil {
		if _, queued := loaders.Kept(key); queued {
			return
		}
		loaders.Keep(key, true)
	}
	selected := graphql.CollectFields(graphql.GetOperationContext(ctx), obj.Field.Selections, []string{typ, "Node"})
	queues := relationQueues[typ]
	each(objects, func(o any) {
		for _, f := range selected {
			if queue := queues[f.Name]; queue != nil {
				queue(ctx, loaders, o)
			}
		}
	})
}

// relationQueues says, by object type and field, how queueRelations queues
// the load of each relation gqlgen resolves inline. A relation added in
// schema/read.graphqls to a type whose relations the generator inlines
// needs a line here, and its type a case in listOf and each:
// TestEveryInlineRelationIsQueued fails until it has one.
var relationQueues = map[string]map[string]func(ctx context.Context, l *dataloader.Loaders, obj any){
	"WorkOrder": {
		"site": func(ctx context.Context, l *dataloader.Loaders, o any) {
			l.PrefetchDocument(ctx, collections.Site, o.(*model.WorkOrder).SiteID)
		},
		"checklist": func(ctx context.Context, l *dataloader.Loaders, o any) {
			l.PrefetchChildren(ctx, collections.ChecklistItem, "workOrderId", "position", o.(*model.WorkOrder).ID)
		},
		"notes": func(ctx context.Context, l *dataloader.Loaders, o any) {
			l.PrefetchChildren(ctx, collections.Note, "workOrderId", "updatedAt", o.(*model.WorkOrder).ID)
		},
	},
	"ChecklistItem": {
		"workOrder": func(ctx context.Context, l *dataloader.Loaders, o any) {
			l.PrefetchDocument(ctx, collections.WorkOrder, o.(*model.ChecklistItem).WorkOrderID)
		},
	},
	"Note": {
		"workOrder": func(ctx context.Context, l *dataloader.Loaders, o any) {
			l.PrefetchDocument(ctx, collections.WorkOrder, o.(*model.Note).WorkOrderID)
		},
	},
}

// queuedList names a list whose relations queueRelations has queued, by
// its first element's address.
type queuedList struct{ first any }

// listOf returns the GraphQL type of the objects v holds and, when v is a
// list of them, its key for Keep (nil for a single object).
func listOf(v any) (typ string, key any) {
	switch l := v.(type) {
	case []*model.WorkOrder:
		return "WorkOrder", firstOf(l)
	case []*model.ChecklistItem:
		return "ChecklistItem", firstOf(l)
	case []*model.Note:
		return "Note", firstOf(l)
	case []*model.WorkOrderEdge:
		return "WorkOrder", firstOf(l)
	case []*model.ChecklistItemEdge:
		return "ChecklistItem", firstOf(l)
	case []*model.NoteEdge:
		return "Note", firstOf(l)
	case *model.WorkOrder:
		return "WorkOrder", nil
	case *model.ChecklistItem:
		return "ChecklistItem", nil
	case *model.Note:
		return "Note", nil
	}
	return "", nil
}

func firstOf[T any](l []T) any {
	if len(l) == 0 {
		return nil
	}
	return queuedList{&l[0]}
}

// each calls f with every object v holds: v itself, or each element or
// node of a list of them.
func each(v any, f func(any)) {
	switch l := v.(type) {
	case []*model.WorkOrder:
		for _, o := range l {
			f(o)
		}
	case []*model.ChecklistItem:
		for _, o := range l {
			f(o)
		}
	case []*model.Note:
		for _, o := range l {
			f(o)
		}
	case []*model.WorkOrderEdge:
		for _, e := range l {
			f(e.Node)
		}
	case []*model.ChecklistItemEdge:
		for _, e := range l {
			f(e.Node)
		}
	case []*model.NoteEdge:
		for _, e := range l {
			f(e.Node)
		}
	default:
		f(v)
	}
}

// node finds id in the caller's collections, in registry order; the first
// live document wins. Another tenant's id, like a deleted document, is
// simply not found: null, never an error that would tell it exists.
func node(ctx context.Context, r *Resolver, docID string) (model.Node, error) {
	id, err := readerFrom(ctx, r)
	if err != nil {
		return nil, err
	}
	// The id reaches SQL: what the database would refuse (NUL, invalid
	// UTF-8) is the client's mistake, not an internal error.
	if err := collections.CheckText(docID); err != nil {
		return nil, apperr.Invalid("id", "%s", err.Error())
	}
	loaders := loadersFor(ctx, r, id.TenantID)
	for _, c := range collections.All() {
		doc, ok, err := loaders.Document(ctx, c, docID)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		return nodeOf[c](doc), nil
	}
	return nil, nil
}
