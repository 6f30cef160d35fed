package resolvers

import (
	"context"
	"slices"

	"github.com/99designs/gqlgen/graphql"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/dataloader"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/graph/model"
	"github.com/tidemark/tidemark/readapi"
)

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

func siteQuery(f *model.SiteFilter) db.ListQuery {
	var q db.ListQuery
	if f == nil {
		return q
	}
	if f.UpdatedSince != nil {
		q.Filters = append(q.Filters, db.Filter{Field: "updatedAt", Op: db.OpAtOrAfter, Value: *f.UpdatedSince})
	}
	q.IncludeDeleted = f.IncludeDeleted != nil && *f.IncludeDeleted
	return q
}

func workOrderQuery(f *model.WorkOrderFilter, order *model.WorkOrderOrder) db.ListQuery {
	q := db.ListQuery{OrderBy: "updatedAt"}
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
		q.Filters = append(q.Filters, db.Filter{Field: "status", Op: db.OpIn, Value: statuses})
	}
	if f.AssigneeID != nil {
		q.Filters = append(q.Filters, db.Filter{Field: "assigneeId", Op: db.OpEqual, Value: *f.AssigneeID})
	}
	if f.SiteID != nil {
		q.Filters = append(q.Filters, db.Filter{Field: "siteId", Op: db.OpEqual, Value: *f.SiteID})
	}
	if f.DueBefore != nil {
		q.Filters = append(q.Filters, db.Filter{Field: "dueAt", Op: db.OpBefore, Value: *f.DueBefore})
	}
	if f.DueAfter != nil {
		q.Filters = append(q.Filters, db.Filter{Field: "dueAt", Op: db.OpAtOrAfter, Value: *f.DueAfter})
	}
	if f.UpdatedSince != nil {
		q.Filters = append(q.Filters, db.Filter{Field: "updatedAt", Op: db.OpAtOrAfter, Value: *f.UpdatedSince})
	}
	q.IncludeDeleted = f.IncludeDeleted != nil && *f.IncludeDeleted
	return q
}

// connection runs a top-level list and shapes it with edge; the total is
// counted only when the client asked for it.
func connection[T any](ctx context.Context, r *Resolver, l readapi.List, edge func(*T, string) any) (edges []any, info *model.PageInfo, total int, err error) {
	id, err := callerFrom(ctx)
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
	edges = make([]any, len(res.Documents))
	for i, d := range res.Documents {
		edges[i] = edge(fromDocument[T](l.Collection, d), res.Cursors[i])
	}
	return edges, pageInfo(res), total, nil
}

func workOrderEdges(edges []any) []*model.WorkOrderEdge {
	out := make([]*model.WorkOrderEdge, len(edges))
	for i, e := range edges {
		out[i] = e.(*model.WorkOrderEdge)
	}
	return out
}

func newWorkOrderEdge(n *model.WorkOrder, cursor string) any {
	return &model.WorkOrderEdge{Node: n, Cursor: cursor}
}

// siteWorkOrders is Site.workOrders: the first page of every site of a
// response is read in one statement, through the grouped loader.
func siteWorkOrders(ctx context.Context, r *Resolver, site *model.Site, first *int, after *string, filter *model.WorkOrderFilter) (*model.WorkOrderConnection, error) {
	id, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	due := model.WorkOrderOrderFieldDueAt
	l := readapi.List{Collection: collections.WorkOrder, Query: workOrderQuery(filter, &model.WorkOrderOrder{Field: due}), Page: readapi.PageArgs{First: first, After: after}}
	plan, err := readapi.Prepare(l)
	if err != nil {
		return nil, err
	}
	loaders := loadersFor(ctx, r, id.TenantID)
	var docs []collections.Document
	if !plan.Empty() {
		if docs, err = loaders.GroupPage(ctx, collections.WorkOrder, "siteId", site.ID, plan.Query); err != nil {
			return nil, err
		}
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

// parent loads the document a field refers to, or nil when it is missing
// or deleted (an offline client may sync a child before its parent).
func parent[T any](ctx context.Context, r *Resolver, c *collections.Collection, parentID string) (*T, error) {
	id, err := callerFrom(ctx)
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
	id, err := callerFrom(ctx)
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
	id, err := callerFrom(ctx)
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
		switch c {
		case collections.Site:
			return fromDocument[model.Site](c, doc), nil
		case collections.WorkOrder:
			return fromDocument[model.WorkOrder](c, doc), nil
		case collections.ChecklistItem:
			return fromDocument[model.ChecklistItem](c, doc), nil
		case collections.Note:
			return fromDocument[model.Note](c, doc), nil
		}
	}
	return nil, nil
}
