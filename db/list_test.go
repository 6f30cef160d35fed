package db

import (
	"fmt"
	"time"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/readapi"
)

// ListStatementShapes returns, for the CockroachDB portability test
// (portability_test.go), the shapes of list statement of every registered
// collection. List statements are built per query, so Statements() cannot
// hold them; this test-only builder stands in for them.
func ListStatementShapes() []string {
	var out []string
	for _, c := range collections.All() {
		out = append(out, listStatementShapes(c)...)
	}
	return out
}

// listStatementShapes builds every shape of list statement the builders can
// produce for c: each filter operator on each field, each order (both
// directions, with and without a keyset) and each grouping. A real
// statement ANDs several of these fragments together.
func listStatementShapes(c *collections.Collection) []string {
	fields := []string{"id", "updatedAt"}
	for _, f := range c.Fields {
		fields = append(fields, f.Name)
	}
	sample := func(field string) any {
		_, kind, _, _ := column(c, field)
		switch kind {
		case collections.Int:
			return int64(1)
		case collections.Float:
			return 1.5
		case collections.Bool:
			return true
		case collections.Time:
			return time.Now()
		}
		return "x"
	}
	var out []string
	add := func(sql string, _ []any, err error) {
		if err == nil {
			out = append(out, sql)
		}
	}
	for _, field := range fields {
		for _, op := range []readapi.FilterOp{readapi.OpEqual, readapi.OpIn, readapi.OpBefore, readapi.OpAtOrAfter} {
			q := readapi.ListQuery{Filters: []readapi.Filter{{Field: field, Op: op, Value: sample(field)}}, Limit: 10}
			add(buildList(c, "t", q))
			where, args, err := listWhere(c, "t", q, 1)
			add(fmt.Sprintf("SELECT count(*) FROM %s WHERE %s", c.Table, where), args, err)
		}
		for _, desc := range []bool{false, true} {
			for _, after := range []*readapi.ListKey{nil, {Value: sample(field), ID: "x"}, {Value: nil, ID: "x"}} {
				q := readapi.ListQuery{OrderBy: field, Desc: desc, After: after, Limit: 10, IncludeDeleted: true}
				if field == "id" {
					q.OrderBy = ""
				}
				add(buildList(c, "t", q))
				for _, f := range c.Fields {
					if f.RefersTo != "" {
						add(buildGroupedList(c, "t", f.Name, []string{"a"}, q))
						add(buildGroupedCount(c, "t", f.Name, []string{"a"}, q))
					}
				}
			}
		}
	}
	return out
}
