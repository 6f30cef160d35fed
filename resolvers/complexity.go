package resolvers

import (
	"github.com/tidemark/tidemark/graph"
	"github.com/tidemark/tidemark/graph/model"
	"github.com/tidemark/tidemark/readapi"
	"github.com/tidemark/tidemark/syncengine"
)

// childListEstimate is the assumed length of an unpaged nested list (a work
// order's checklist or notes) when pricing a query.
const childListEstimate = 10

// Complexity prices the fields whose cost grows with their arguments: a
// connection costs its page size times its selection. Every function is
// nil-safe: a missing first/last means the default page size. A pull costs
// its limit and a push its rows (pullCost, pushCost).
func Complexity() graph.ComplexityRoot {
	var c graph.ComplexityRoot
	priceGeneratedFields(&c)
	c.Query.WorkOrders = func(child int, first *int, _ *string, last *int, _ *string, _ *model.WorkOrderFilter, _ *model.WorkOrderOrder) int {
		return 1 + pageCost(first, last)*child
	}
	c.Site.WorkOrders = func(child int, first *int, _ *string, _ *model.WorkOrderFilter) int {
		return 1 + pageCost(first, nil)*child
	}
	c.WorkOrder.Checklist = func(child int) int { return 1 + childListEstimate*child }
	c.WorkOrder.Notes = func(child int) int { return 1 + childListEstimate*child }
	return c
}

// pageCost is the page size a connection will return, as its arguments
// say. Out-of-range sizes are priced at 1, so that the resolver's clearer
// error about the argument is what the client sees.
func pageCost(first, last *int) int {
	n := readapi.DefaultPageSize
	switch {
	case first != nil:
		n = *first
	case last != nil:
		n = *last
	}
	if n < 1 || n > readapi.MaxPageSize {
		return 1
	}
	return n
}

// pullCost prices a pull as the documents it may return plus its selection
// once, and pushCost a push as its rows plus its selection. They are not
// multiplied by the selection, so that a full pull (1,000 documents) of any
// collection passes the limit whatever fields the client syncs; the server
// allows one pull or push per operation (server.documentLimits), and the
// price keeps a pull sent with read fields within the same budget. An
// out-of-range limit is priced at 1, so the resolver's clearer error is
// what the client sees.
func pullCost(child, limit int) int {
	if limit < 1 || limit > syncengine.MaxPullLimit {
		return 1 + child
	}
	return 1 + limit + child
}

func pushCost(child, rows int) int { return 1 + rows + child }
