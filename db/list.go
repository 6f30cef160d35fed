package db

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/readapi"
)

// nullsLast is what a NULL sort value compares as: later than any value.
var nullsLast = map[collections.Kind]string{
	collections.Time:   "CAST('9999-12-31T23:59:59Z' AS TIMESTAMPTZ)",
	collections.Int:    "CAST(9223372036854775807 AS INT8)",
	collections.Float:  "CAST('Infinity' AS FLOAT8)",
	collections.String: "CAST(NULL AS TEXT)", // strings are never nullable sort keys today
}

// ListDocuments returns one page of the tenant's documents matching q.
func (d *DB) ListDocuments(ctx context.Context, tenantID string, c *collections.Collection, q readapi.ListQuery) ([]collections.Document, error) {
	sql, args, err := buildList(c, tenantID, q)
	if err != nil {
		return nil, err
	}
	return d.queryDocuments(ctx, c, sql, args, q.Limit)
}

// CountDocuments counts the tenant's documents matching the filters of q.
func (d *DB) CountDocuments(ctx context.Context, tenantID string, c *collections.Collection, q readapi.ListQuery) (int64, error) {
	where, args, err := listWhere(c, tenantID, q, 1)
	if err != nil {
		return 0, err
	}
	var n int64
	err = d.Pool.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s WHERE %s", c.Table, where), args...).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count %s: %w", c.Name, err)
	}
	return n, nil
}

// ListGrouped returns, for each value of the group field among groupIDs,
// the first q.Limit matching documents in q's order (with q.After applied
// within every group), in one statement: the batched form of a nested list
// such as Site.workOrders.
func (d *DB) ListGrouped(ctx context.Context, tenantID string, c *collections.Collection, groupField string, groupIDs []string, q readapi.ListQuery) (map[string][]collections.Document, error) {
	sql, args, err := buildGroupedList(c, tenantID, groupField, groupIDs, q)
	if err != nil {
		return nil, err
	}
	docs, err := d.queryDocuments(ctx, c, sql, args, q.Limit*len(groupIDs))
	if err != nil {
		return nil, err
	}
	out := make(map[string][]collections.Document, len(groupIDs))
	for _, doc := range docs {
		g, _ := doc.Fields[groupField].(string)
		out[g] = append(out[g], doc)
	}
	return out, nil
}

// CountGrouped counts, for each of groupIDs, the tenant's documents of c
// whose group field holds it and that match q's filters, in one statement.
func (d *DB) CountGrouped(ctx context.Context, tenantID string, c *collections.Collection, groupField string, groupIDs []string, q readapi.ListQuery) (map[string]int64, error) {
	sql, args, err := buildGroupedCount(c, tenantID, groupField, groupIDs, q)
	if err != nil {
		return nil, err
	}
	rows, err := d.Pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("count %s: %w", c.Name, err)
	}
	defer rows.Close()
	out := make(map[string]int64, len(groupIDs))
	for rows.Next() {
		var g string
		var n int64
		if err := rows.Scan(&g, &n); err != nil {
			return nil, fmt.Errorf("count %s: %w", c.Name, err)
		}
		out[g] = n
	}
	return out, rows.Err()
}

func buildGroupedCount(c *collections.Collection, tenantID, groupField string, groupIDs []string, q readapi.ListQuery) (string, []any, error) {
	groupCol, where, args, err := groupedWhere(c, tenantID, groupField, groupIDs, q)
	if err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("SELECT %s, count(*) FROM %s WHERE %s GROUP BY %s", groupCol, c.Table, where, groupCol), args, nil
}

// groupedWhere is q's WHERE clause narrowed to the given groups.
func groupedWhere(c *collections.Collection, tenantID, groupField string, groupIDs []string, q readapi.ListQuery) (string, string, []any, error) {
	groupCol, _, _, err := column(c, groupField)
	if err != nil {
		return "", "", nil, err
	}
	where, args, err := listWhere(c, tenantID, q, 1)
	if err != nil {
		return "", "", nil, err
	}
	args = append(args, groupIDs)
	return groupCol, fmt.Sprintf("%s AND %s = ANY($%d)", where, groupCol, len(args)), args, nil
}

func (d *DB) queryDocuments(ctx context.Context, c *collections.Collection, sql string, args []any, sizeHint int) ([]collections.Document, error) {
	rows, err := d.Pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", c.Name, err)
	}
	defer rows.Close()
	docs := make([]collections.Document, 0, min(sizeHint, 1000))
	scan := newDocumentScanner(c)
	for rows.Next() {
		doc, err := scan.scan(rows)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", c.Name, err)
		}
		docs = append(docs, doc)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list %s: %w", c.Name, err)
	}
	return docs, nil
}

// column returns the storage column and kind of an API field name.
func column(c *collections.Collection, name string) (string, collections.Kind, bool, error) {
	switch name {
	case "updatedAt":
		return "updated_at", collections.Time, false, nil
	case "id":
		return "id", collections.String, false, nil
	}
	f, ok := c.Field(name)
	if !ok {
		return "", 0, false, fmt.Errorf("%s has no field %q", c.Name, name)
	}
	return f.Column, f.Kind, f.Nullable, nil
}

// sortExpr is the expression a list orders by; NULLs become a value larger
// than any, so keyset comparisons need no special cases.
func sortExpr(c *collections.Collection, orderBy string) (string, error) {
	if orderBy == "" {
		return "", nil
	}
	col, kind, nullable, err := column(c, orderBy)
	if err != nil {
		return "", err
	}
	if nullable {
		return fmt.Sprintf("COALESCE(%s, %s)", col, nullsLast[kind]), nil
	}
	return col, nil
}

// listWhere builds the WHERE clause of q; args start at $first.
func listWhere(c *collections.Collection, tenantID string, q readapi.ListQuery, first int) (string, []any, error) {
	args := []any{tenantID}
	next := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", first+len(args)-1)
	}
	conds := []string{fmt.Sprintf("tenant_id = $%d", first)}
	if !q.IncludeDeleted {
		conds = append(conds, "deleted = false")
	}
	for _, f := range q.Filters {
		col, _, _, err := column(c, f.Field)
		if err != nil {
			return "", nil, err
		}
		switch f.Op {
		case readapi.OpEqual:
			conds = append(conds, fmt.Sprintf("%s = %s", col, next(f.Value)))
		case readapi.OpIn:
			conds = append(conds, fmt.Sprintf("%s = ANY(%s)", col, next(f.Value)))
		case readapi.OpBefore:
			conds = append(conds, fmt.Sprintf("%s < %s", col, next(f.Value)))
		case readapi.OpAtOrAfter:
			conds = append(conds, fmt.Sprintf("%s >= %s", col, next(f.Value)))
		default:
			return "", nil, fmt.Errorf("unknown filter op %d", f.Op)
		}
	}
	return strings.Join(conds, " AND "), args, nil
}

// keysetAndOrder returns the keyset condition (empty without After) and
// the ORDER BY list of q.
func keysetAndOrder(c *collections.Collection, q readapi.ListQuery, next func(any) string) (string, string, error) {
	sort, err := sortExpr(c, q.OrderBy)
	if err != nil {
		return "", "", err
	}
	cmp, dir := ">", "ASC"
	if q.Desc {
		cmp, dir = "<", "DESC"
	}
	order := "id " + dir
	if sort != "" {
		order = fmt.Sprintf("%s %s, id %s", sort, dir, dir)
	}
	if q.After == nil {
		return "", order, nil
	}
	if sort == "" {
		return fmt.Sprintf("id %s %s", cmp, next(q.After.ID)), order, nil
	}
	value := q.After.Value
	if value == nil {
		_, kind, _, _ := column(c, q.OrderBy)
		value = nullSentinel(kind)
	}
	return fmt.Sprintf("(%s, id) %s (%s, %s)", sort, cmp, next(value), next(q.After.ID)), order, nil
}

// nullSentinel is the Go value of nullsLast for a kind.
func nullSentinel(kind collections.Kind) any {
	switch kind {
	case collections.Time:
		return time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	case collections.Int:
		return int64(9223372036854775807)
	case collections.Float:
		return math.Inf(1)
	}
	return nil
}

func buildList(c *collections.Collection, tenantID string, q readapi.ListQuery) (string, []any, error) {
	where, args, err := listWhere(c, tenantID, q, 1)
	if err != nil {
		return "", nil, err
	}
	next := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	keyset, order, err := keysetAndOrder(c, q, next)
	if err != nil {
		return "", nil, err
	}
	if keyset != "" {
		where += " AND " + keyset
	}
	limit := next(q.Limit)
	return fmt.Sprintf("SELECT %s FROM %s WHERE %s ORDER BY %s LIMIT %s",
		statementsFor(c).columns, c.Table, where, order, limit), args, nil
}

func buildGroupedList(c *collections.Collection, tenantID, groupField string, groupIDs []string, q readapi.ListQuery) (string, []any, error) {
	groupCol, where, args, err := groupedWhere(c, tenantID, groupField, groupIDs, q)
	if err != nil {
		return "", nil, err
	}
	next := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	keyset, order, err := keysetAndOrder(c, q, next)
	if err != nil {
		return "", nil, err
	}
	if keyset != "" {
		where += " AND " + keyset
	}
	limit := next(q.Limit)
	cols := statementsFor(c).columns
	return fmt.Sprintf("SELECT %s FROM (SELECT %s, row_number() OVER (PARTITION BY %s ORDER BY %s) AS page_row FROM %s WHERE %s) AS page WHERE page_row <= %s ORDER BY %s, page_row",
		cols, cols, groupCol, order, c.Table, where, limit, groupCol), args, nil
}
