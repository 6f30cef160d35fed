// Package readapi serves the ordinary, browsing reads of online screens:
// filtered, ordered, keyset-paginated lists and lookups by id. Deleted
// documents stay hidden unless asked for. It knows no SQL and no GraphQL:
// storage is the Store interface, and resolvers shape its pages into Relay
// connections.
package readapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"

	"github.com/tidemark/tidemark/apperr"
	"github.com/tidemark/tidemark/collections"
)

// Page sizes.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// Store is the storage the read API needs; *db.DB implements it.
type Store interface {
	ListDocuments(ctx context.Context, tenantID string, c *collections.Collection, q ListQuery) ([]collections.Document, error)
	CountDocuments(ctx context.Context, tenantID string, c *collections.Collection, q ListQuery) (int64, error)
}

// PageArgs are Relay's paging arguments.
type PageArgs struct {
	First, Last   *int
	After, Before *string
}

// Size validates the arguments and returns the page size and whether the
// page is read backwards (last/before).
func (a PageArgs) Size() (int, bool, error) {
	if a.First != nil && a.Last != nil {
		return 0, false, apperr.Invalid("first", "give first or last, not both")
	}
	if a.After != nil && a.Before != nil {
		return 0, false, apperr.Invalid("after", "give after or before, not both")
	}
	backward := a.Last != nil || (a.Before != nil && a.First == nil)
	n := DefaultPageSize
	name := "first"
	if a.First != nil {
		n = *a.First
	}
	if a.Last != nil {
		n, name = *a.Last, "last"
	}
	if n < 0 || n > MaxPageSize {
		return 0, false, apperr.Invalid(name, "must be between 0 and %d (got %d)", MaxPageSize, n)
	}
	return n, backward, nil
}

// Result is one page of a list.
type Result struct {
	Documents       []collections.Document
	Cursors         []string // Cursors[i] is the cursor of Documents[i]
	HasNextPage     bool
	HasPreviousPage bool
}

// List is a list request: what to list, how, and which page.
type List struct {
	Collection *collections.Collection
	Query      ListQuery // filters and order; paging is filled in from Page
	Page       PageArgs
}

// Service answers list requests.
type Service struct{ store Store }

// New returns a read service over store.
func New(store Store) *Service { return &Service{store: store} }

// Plan is a validated list request, ready to read: Query has the keyset
// position and a limit of one more than the page, so the read tells
// whether another page follows.
type Plan struct {
	List     List
	Query    ListQuery
	size     int
	backward bool
}

// Prepare validates the paging arguments and cursor of l.
func Prepare(l List) (Plan, error) {
	n, backward, err := l.Page.Size()
	if err != nil {
		return Plan{}, err
	}
	if err := CheckFilters(l.Query.Filters); err != nil {
		return Plan{}, err
	}
	q := l.Query
	cursor, cursorArg := l.Page.After, "after"
	if backward {
		q.Desc = !q.Desc
		cursor, cursorArg = l.Page.Before, "before"
	}
	if cursor != nil {
		key, err := decodeCursor(l.Collection, l.Query.OrderBy, *cursor, cursorArg)
		if err != nil {
			return Plan{}, err
		}
		q.After = &key
	}
	q.Limit = n + 1
	return Plan{List: l, Query: q, size: n, backward: backward}, nil
}

// CheckFilters refuses filter strings the database would refuse (NUL
// bytes, invalid UTF-8: SQLSTATE 22021), naming the filter field, so that
// the client hears BAD_USER_INPUT rather than an internal error.
func CheckFilters(filters []Filter) error {
	for _, f := range filters {
		var values []string
		switch v := f.Value.(type) {
		case string:
			values = []string{v}
		case []string:
			values = v
		}
		for _, v := range values {
			if err := collections.CheckText(v); err != nil {
				return apperr.Invalid("filter."+f.Field, "%s", err.Error())
			}
		}
	}
	return nil
}

// Result shapes the documents read for the plan into a page.
func (p Plan) Result(docs []collections.Document) Result {
	more := len(docs) > p.size
	if more {
		docs = docs[:p.size]
	}
	if p.backward {
		for i, j := 0, len(docs)-1; i < j; i, j = i+1, j-1 {
			docs[i], docs[j] = docs[j], docs[i]
		}
	}
	res := Result{Documents: docs, Cursors: Cursors(p.List.Collection, p.List.Query, docs)}
	// Relay lets a server answer false for the direction it was not asked
	// to page in when finding out would cost a query; a cursor in that
	// direction means a page exists there.
	if p.backward {
		res.HasPreviousPage, res.HasNextPage = more, p.List.Page.Before != nil
	} else {
		res.HasNextPage, res.HasPreviousPage = more, p.List.Page.After != nil
	}
	return res
}

// Page returns one page of the tenant's documents.
func (s *Service) Page(ctx context.Context, tenantID string, l List) (Result, error) {
	plan, err := Prepare(l)
	if err != nil {
		return Result{}, err
	}
	docs, err := s.store.ListDocuments(ctx, tenantID, l.Collection, plan.Query)
	if err != nil {
		return Result{}, err
	}
	return plan.Result(docs), nil
}

// Count returns how many of the tenant's documents match the list's filters.
func (s *Service) Count(ctx context.Context, tenantID string, l List) (int, error) {
	if err := CheckFilters(l.Query.Filters); err != nil {
		return 0, err
	}
	n, err := s.store.CountDocuments(ctx, tenantID, l.Collection, l.Query)
	return int(n), err
}

// Cursors returns the cursor of each document under q's order.
func Cursors(c *collections.Collection, q ListQuery, docs []collections.Document) []string {
	out := make([]string, len(docs))
	for i, d := range docs {
		out[i] = encodeCursor(c, q.OrderBy, KeyOf(c, q, d))
	}
	return out
}

// A list cursor is a document's position: the order it was issued for, the
// sort value and the id, as base64url JSON. Opaque to clients; refused when
// used with another order.
type listCursor struct {
	// Collection names the list's collection: connections of different
	// collections share orders (updatedAt), never positions.
	Collection string  `json:"c"`
	Order      string  `json:"o"`
	Value      *string `json:"v,omitempty"` // nil for a NULL sort value (or the id order)
	ID         string  `json:"i"`
}

func encodeCursor(c *collections.Collection, order string, key ListKey) string {
	lc := listCursor{Collection: c.Name, Order: order, ID: key.ID}
	if key.Value != nil {
		var v string
		switch x := key.Value.(type) {
		case time.Time:
			v = x.UTC().Format(time.RFC3339Nano)
		default:
			b, _ := json.Marshal(x)
			v = string(b)
		}
		lc.Value = &v
	}
	b, _ := json.Marshal(lc)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(c *collections.Collection, order, cursor, arg string) (ListKey, error) {
	invalid := apperr.Invalid(arg, "is not a cursor of this list and order")
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(cursor) > 1000 {
		return ListKey{}, invalid
	}
	var lc listCursor
	if err := json.Unmarshal(raw, &lc); err != nil || lc.Collection != c.Name || lc.Order != order || collections.CheckID(lc.ID) != nil {
		return ListKey{}, invalid
	}
	// The sort value and id reach SQL: a NUL or invalid UTF-8 in them must
	// be refused here, not by the database as an internal error.
	if lc.Value != nil && collections.CheckText(*lc.Value) != nil {
		return ListKey{}, invalid
	}
	key, err := cursorKey(c, order, lc)
	if err != nil {
		return ListKey{}, invalid
	}
	// Only the exact text this server issues is a cursor, so every accepted
	// cursor names a position a stored document can have.
	if encodeCursor(c, order, key) != cursor {
		return ListKey{}, invalid
	}
	return key, nil
}

func cursorKey(c *collections.Collection, order string, lc listCursor) (ListKey, error) {
	invalid := errors.New("invalid cursor")
	key := ListKey{ID: lc.ID}
	if order == "" {
		if lc.Value != nil {
			return ListKey{}, invalid
		}
		return key, nil
	}
	kind, nullable := collections.Time, false // updatedAt
	if order != "updatedAt" {
		f, ok := c.Field(order)
		if !ok {
			return ListKey{}, invalid
		}
		kind, nullable = f.Kind, f.Nullable
	}
	if lc.Value == nil {
		// A NULL sort value only where a document can have one.
		if !nullable {
			return ListKey{}, invalid
		}
		return key, nil
	}
	switch kind {
	case collections.Time:
		t, err := time.Parse(time.RFC3339Nano, *lc.Value)
		if err != nil || collections.CheckTime(t) != nil {
			return ListKey{}, invalid
		}
		key.Value = t.UTC()
	case collections.Int:
		var n int64
		if err := json.Unmarshal([]byte(*lc.Value), &n); err != nil {
			return ListKey{}, invalid
		}
		key.Value = n
	case collections.Float:
		var f float64
		if err := json.Unmarshal([]byte(*lc.Value), &f); err != nil {
			return ListKey{}, invalid
		}
		key.Value = f
	default:
		var s string
		if err := json.Unmarshal([]byte(*lc.Value), &s); err != nil || collections.CheckText(s) != nil {
			return ListKey{}, invalid
		}
		key.Value = s
	}
	return key, nil
}
