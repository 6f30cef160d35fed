package db

import (
	"context"
	"fmt"
	"sort"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/collections"
)

// stmtTableColumns lists a table's columns as the database has them.
const stmtTableColumns = `SELECT column_name, data_type, is_nullable FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = $1`

// columnTypes are information_schema's names of the types that store
// each kind (PostgreSQL's and CockroachDB's names agree).
var columnTypes = map[collections.Kind]string{
	collections.String: "text",
	collections.Enum:   "text",
	collections.Int:    "bigint",
	collections.Float:  "double precision",
	collections.Bool:   "boolean",
	collections.Time:   "timestamp with time zone",
}

type tableColumn struct {
	dataType string
	nullable bool
}

// TableDifferences compares the migrated tables with the collections'
// descriptions (which come from the schema) and returns, one line each,
// every column that is missing, or whose type or nullability differs. An
// empty result means the database stores what the schema describes.
func (d *DB) TableDifferences(ctx context.Context, cols []*collections.Collection) ([]string, error) {
	var out []string
	for _, c := range cols {
		rows, err := d.Pool.Query(ctx, stmtTableColumns, c.Table)
		if err != nil {
			return nil, fmt.Errorf("read columns of %s: %w", c.Table, err)
		}
		have := map[string]tableColumn{}
		var name, typ, nullable string
		_, err = pgx.ForEachRow(rows, []any{&name, &typ, &nullable}, func() error {
			have[name] = tableColumn{dataType: typ, nullable: nullable == "YES"}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read columns of %s: %w", c.Table, err)
		}
		if len(have) == 0 {
			out = append(out, fmt.Sprintf("%s: table %s does not exist (run `go generate ./...` for its migration, then `tidemark migrate`)", c.Name, c.Table))
			continue
		}
		want := map[string]tableColumn{
			"tenant_id":  {"text", false},
			"id":         {"text", false},
			"change_seq": {"bigint", false},
			"updated_at": {"timestamp with time zone", false},
			"deleted":    {"boolean", false},
		}
		field := map[string]string{}
		for _, f := range c.Fields {
			want[f.Column] = tableColumn{columnTypes[f.Kind], f.Nullable}
			field[f.Column] = c.Name + "." + f.Name
		}
		names := make([]string, 0, len(want))
		for name := range want {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			w := want[name]
			what := c.Table + "." + name
			if f, ok := field[name]; ok {
				what += " (" + f + ")"
			}
			h, ok := have[name]
			switch {
			case !ok:
				out = append(out, fmt.Sprintf("%s: column missing; want %s%s", what, w.dataType, nullText(w.nullable)))
			case h.dataType != w.dataType:
				out = append(out, fmt.Sprintf("%s: column is %s, the schema needs %s", what, h.dataType, w.dataType))
			case h.nullable != w.nullable:
				out = append(out, fmt.Sprintf("%s: column is%s, the schema says%s", what, nullText(h.nullable), nullText(w.nullable)))
			}
		}
	}
	return out, nil
}

func nullText(nullable bool) string {
	if nullable {
		return " nullable"
	}
	return " NOT NULL"
}
