package resolvers

// The hand-written parts of the field-service collections' read API, beside
// what is generated from their @synced types: the work orders' filters and
// orders, Site.workOrders, and the prefetching of the nested fields a page
// of work orders or sites selects.

import (
	"context"
	"encoding/json"
	"slices"
	"sync"

	"github.com/99designs/gqlgen/graphql"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/dataloader"
	"github.com/tidemark/tidemark/graph/model"
	"github.com/tidemark/tidemark/readapi"
)

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

// prefetchWorkOrderFields reads, before gqlgen resolves a page's items,
// the nested documents the query selects on them and primes the
// response's loaders with them: one statement per nested field whatever
// the page size, all sent at once (one round trip to a distant database),
// and the items' fields then resolve without waiting for a batch window.
func prefetchWorkOrderFields(ctx context.Context, loaders *dataloader.Loaders, docs []collections.Document) {
	sel := nodeSelections(ctx, "WorkOrderConnection", "WorkOrderEdge", "WorkOrder")
	if len(docs) == 0 || !(sel["site"] || sel["checklist"] || sel["notes"]) {
		return
	}
	ids := make([]string, len(docs))
	var siteIDs []string
	for i, d := range docs {
		ids[i] = d.ID
		if siteID, ok := d.Fields["siteId"].(string); ok {
			siteIDs = append(siteIDs, siteID)
		}
	}
	// A failed read primes nothing: each field then loads on its own and
	// reports the error where the client asked for the data.
	var wg sync.WaitGroup
	if sel["site"] {
		wg.Go(func() { keepParents[model.Site](ctx, loaders, collections.Site, siteIDs) })
	}
	if sel["checklist"] {
		wg.Go(func() {
			keepChildren[model.ChecklistItem](ctx, loaders, collections.ChecklistItem, "workOrderId", "position", ids)
		})
	}
	if sel["notes"] {
		wg.Go(func() { keepChildren[model.Note](ctx, loaders, collections.Note, "workOrderId", "updatedAt", ids) })
	}
	wg.Wait()
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
