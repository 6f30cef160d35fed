package resolvers

import (
	"context"
	"encoding/json"
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

func workOrderQuery(f *model.WorkOrderFilter, order *model.WorkOrderOrder) readapi.ListQuery {
	q := readapi.ListQuery{OrderBy: "updatedAt"}
	if order != nil {
		switch order.Field {
		case model.WorkOrderOrderFieldDueAt:
			q.OrderBy = "dueAt"
		case model.WorkOrderOrderFieldPriority:
			q.OrderBy = "priority"
		}
		q.Desc = order.Direction != nil && *order.Direction == model.OrderDirectionDesc
	}
	if f == nil {
		return q
	}
	if f.Status != nil {
		statuses := make([]string, len(f.Status))
		for i, s := range f.Status {
			statuses[i] = string(s)
		}
		q.Filters = append(q.Filters, readapi.Filter{Field: "status", Op: readapi.OpIn, Value: statuses})
	}
	if f.AssigneeID != nil {
		q.Filters = append(q.Filters, readapi.Filter{Field: "assigneeId", Op: readapi.OpEqual, Value: *f.AssigneeID})
	}
	if f.SiteID != nil {
		q.Filters = append(q.Filters, readapi.Filter{Field: "siteId", Op: readapi.OpEqual, Value: *f.SiteID})
	}
	if f.DueBefore != nil {
		q.Filters = append(q.Filters, readapi.Filter{Field: "dueAt", Op: readapi.OpBefore, Value: *f.DueBefore})
	}
	if f.DueAfter != nil {
		q.Filters = append(q.Filters, readapi.Filter{Field: "dueAt", Op: readapi.OpAtOrAfter, Value: *f.DueAfter})
	}
	if f.UpdatedSince != nil {
		q.Filters = append(q.Filters, readapi.Filter{Field: "updatedAt", Op: readapi.OpAtOrAfter, Value: *f.UpdatedSince})
	}
	q.IncludeDeleted = f.IncludeDeleted != nil && *f.IncludeDeleted
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

// prefetchWorkOrderFields queues, before gqlgen resolves a page's items,
// the nested loads the query selects on them, so each is one statement
// whatever the page size and however the items are scheduled.
func prefetchWorkOrderFields(ctx context.Context, loaders *dataloader.Loaders, docs []collections.Document) {
	sel := nodeSelections(ctx, "WorkOrderConnection", "WorkOrderEdge", "WorkOrder")
	for _, d := range docs {
		if siteID, ok := d.Fields["siteId"].(string); ok && sel["site"] {
			loaders.PrefetchDocument(ctx, collections.Site, siteID)
		}
		if sel["checklist"] {
			loaders.PrefetchChildren(ctx, collections.ChecklistItem, "workOrderId", "position", d.ID)
		}
		if sel["notes"] {
			loaders.PrefetchChildren(ctx, collections.Note, "workOrderId", "updatedAt", d.ID)
		}
	}
}

// nodeSelections returns the names of the fields selected on a
// connection's edges.node, fragments included.
func nodeSelections(ctx context.Context, connType, edgeType, nodeType string) map[string]bool {
	oc, fc := graphql.GetOperationContext(ctx), graphql.GetFieldContext(ctx)
	out := map[string]bool{}
	if oc == nil || fc == nil {
		return out
	}
	for _, e := range graphql.CollectFields(oc, fc.Field.Selections, []string{connType}) {
		if e.Name != "edges" {
			continue
		}
		for _, n := range graphql.CollectFields(oc, e.Selections, []string{edgeType}) {
			if n.Name != "node" {
				continue
			}
			for _, f := range graphql.CollectFields(oc, n.Selections, []string{nodeType, "Node"}) {
				out[f.Name] = true
			}
		}
	}
	return out
}

// siteWorkOrders is Site.workOrders: the first page of every site of a
// response is read in one statement, through the grouped loader.
func siteWorkOrders(ctx context.Context, r *Resolver, site *model.Site, first *int, after *string, filter *model.WorkOrderFilter) (*model.WorkOrderConnection, error) {
	id, err := readerFrom(ctx, r)
	if err != nil {
		return nil, err
	}
	plan, err := siteWorkOrdersPlan(first, after, filter)
	if err != nil {
		return nil, err
	}
	loaders := loadersFor(ctx, r, id.TenantID)
	docs, err := loaders.GroupPage(ctx, collections.WorkOrder, "siteId", site.ID, plan.Query)
	if err != nil {
		return nil, err
	}
	res := plan.Result(docs)
	conn := &model.WorkOrderConnection{PageInfo: pageInfo(res), Edges: make([]*model.WorkOrderEdge, len(res.Documents))}
	for i, d := range res.Documents {
		conn.Edges[i] = &model.WorkOrderEdge{Node: fromDocument[model.WorkOrder](collections.WorkOrder, d), Cursor: res.Cursors[i]}
	}
	if selects(ctx, "totalCount") {
		if conn.TotalCount, err = loaders.GroupCount(ctx, collections.WorkOrder, "siteId", site.ID, plan.Query); err != nil {
			return nil, err
		}
	}
	return conn, nil
}

func siteWorkOrdersPlan(first *int, after *string, filter *model.WorkOrderFilter) (readapi.Plan, error) {
	due := model.WorkOrderOrderFieldDueAt
	return readapi.Prepare(readapi.List{
		Collection: collections.WorkOrder,
		Query:      workOrderQuery(filter, &model.WorkOrderOrder{Field: due}),
		Page:       readapi.PageArgs{First: first, After: after},
	})
}

// prefetchSiteFields queues each site's Site.workOrders page (and count)
// the query selects, with the arguments it gives them, before gqlgen
// resolves the sites: one statement each, whatever the timing. Arguments
// it cannot read are left to the resolver, which reports them.
func prefetchSiteFields(ctx context.Context, loaders *dataloader.Loaders, docs []collections.Document) {
	oc, fc := graphql.GetOperationContext(ctx), graphql.GetFieldContext(ctx)
	if oc == nil || fc == nil {
		return
	}
	for _, e := range graphql.CollectFields(oc, fc.Field.Selections, []string{"SiteConnection"}) {
		if e.Name != "edges" {
			continue
		}
		for _, n := range graphql.CollectFields(oc, e.Selections, []string{"SiteEdge"}) {
			if n.Name != "node" {
				continue
			}
			for _, f := range graphql.CollectFields(oc, n.Selections, []string{"Site", "Node"}) {
				if f.Name == "workOrders" {
					prefetchSiteWorkOrders(ctx, oc, f, loaders, docs)
				}
			}
		}
	}
}

func prefetchSiteWorkOrders(ctx context.Context, oc *graphql.OperationContext, f graphql.CollectedField, loaders *dataloader.Loaders, docs []collections.Document) {
	var args struct {
		First  *int                   `json:"first"`
		After  *string                `json:"after"`
		Filter *model.WorkOrderFilter `json:"filter"`
	}
	raw, err := json.Marshal(f.ArgumentMap(oc.Variables))
	if err != nil || json.Unmarshal(raw, &args) != nil {
		return
	}
	plan, err := siteWorkOrdersPlan(args.First, args.After, args.Filter)
	if err != nil {
		return
	}
	counted := slices.ContainsFunc(graphql.CollectFields(oc, f.Selections, []string{"WorkOrderConnection"}),
		func(c graphql.CollectedField) bool { return c.Name == "totalCount" })
	for _, d := range docs {
		loaders.PrefetchGroupPage(ctx, collections.WorkOrder, "siteId", d.ID, plan.Query)
		if counted {
			loaders.PrefetchGroupCount(ctx, collections.WorkOrder, "siteId", d.ID, plan.Query)
		}
	}
}

// parent loads the document a field refers to, or nil when it is missing
// or deleted (an offline client may sync a child before its parent).
func parent[T any](ctx context.Context, r *Resolver, c *collections.Collection, parentID string) (*T, error) {
	id, err := readerFrom(ctx, r)
	if err != nil {
		return nil, err
	}
	doc, ok, err := loadersFor(ctx, r, id.TenantID).Document(ctx, c, parentID)
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
	docs, err := loadersFor(ctx, r, id.TenantID).Children(ctx, c, field, orderBy, parentID)
	if err != nil {
		return nil, err
	}
	return fromDocuments[T](c, docs), nil
}

// node finds id in the caller's collections, in registry order; the first
// live document wins. Another tenant's id, like a deleted document, is
// simply not found: null, never an error that would tell it exists.
func node(ctx context.Context, r *Resolver, docID string) (model.Node, error) {
	id, err := readerFrom(ctx, r)
	if err != nil {
		return nil, err
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
