package readapi

import "github.com/tidemark/tidemark/collections"

// The query vocabulary of lists: what a Store is asked for. The store
// turns it into its own language (db/list.go builds SQL from it).

// FilterOp is how a list filter compares a field.
type FilterOp int

const (
	OpEqual     FilterOp = iota // field = value
	OpIn                        // field = ANY(values)
	OpBefore                    // field < value
	OpAtOrAfter                 // field >= value
)

// Filter narrows a list to documents whose Field (an API field name, or
// "updatedAt") compares to Value by Op.
type Filter struct {
	Field string
	Op    FilterOp
	Value any
}

// ListQuery is one page of a keyset-paginated list of a tenant's documents.
type ListQuery struct {
	Filters        []Filter
	IncludeDeleted bool
	// OrderBy is an API field name, "updatedAt", or "" for the id alone.
	// The id always breaks ties, so the order is total and pages are stable.
	// NULLs sort as larger than every value.
	OrderBy string
	Desc    bool
	// After, if set, starts the page after this position (exclusive), in
	// the direction of the order.
	After *ListKey
	Limit int
}

// ListKey is a document's position in a list order: its sort value and id.
type ListKey struct {
	Value any // nil for a NULL sort value
	ID    string
}

// KeyOf returns the list position of doc under q's order.
func KeyOf(c *collections.Collection, q ListQuery, doc collections.Document) ListKey {
	switch q.OrderBy {
	case "":
		return ListKey{ID: doc.ID}
	case "updatedAt":
		return ListKey{Value: doc.UpdatedAt, ID: doc.ID}
	}
	return ListKey{Value: doc.Fields[q.OrderBy], ID: doc.ID}
}
