package collectiongen

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/tidemark/tidemark/collections"
)

// MigrationFile is a migration the generator proposes for review.
type MigrationFile struct {
	Name string // "0011_assets.sql"
	SQL  string
}

var (
	migrationFileName = regexp.MustCompile(`^(\d{4})_[a-z0-9_]+(?:\.cockroachdb|\.postgresql)?\.sql$`)
	createTable       = regexp.MustCompile(`(?i)CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([a-z_][a-z0-9_]*)`)
)

// NewMigrations returns the migrations that create the tables of synced
// collections no migration in dir creates yet, numbered after the last
// one: the table (tenant-scoped key, change bookkeeping), then one index
// per step (Tidemark's migrations hold one statement each), for the
// connection's updatedAt order and for each reference. Existing migrations
// are never rewritten; a changed field of an existing table is the
// developer's own migration, which the schema test asks for.
func (sc *Schema) NewMigrations(dir string) ([]MigrationFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	created := map[string]bool{}
	last := 0
	for _, e := range entries {
		m := migrationFileName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		last = max(last, n)
		body, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		for _, t := range createTable.FindAllStringSubmatch(string(body), -1) {
			created[strings.ToLower(t[1])] = true
		}
	}
	var out []MigrationFile
	add := func(name, sql string) {
		last++
		out = append(out, MigrationFile{Name: fmt.Sprintf("%04d_%s.sql", last, name), SQL: sql})
	}
	synced := append([]*Synced(nil), sc.Synced...)
	sort.SliceStable(synced, func(i, j int) bool { return synced[i].Collection.Table < synced[j].Collection.Table })
	for _, s := range synced {
		c := s.Collection
		if created[c.Table] {
			continue
		}
		add(c.Table, CreateTableSQL(s))
		add(c.Table+"_by_updated_at", fmt.Sprintf(
			"-- %s(orderBy updatedAt), the connection's order: keyset pages.\nCREATE INDEX IF NOT EXISTS %s_by_updated_at ON %s (tenant_id, updated_at, id)\n",
			LowerFirst(s.Plural), c.Table, c.Table))
		add(c.Table+"_tombstones", fmt.Sprintf(
			"-- The tombstone purge finds the %s deleted before the retention horizon.\nCREATE INDEX IF NOT EXISTS %s_tombstones ON %s (updated_at) WHERE deleted\n",
			c.Table, c.Table, c.Table))
		for _, f := range c.Fields {
			if f.RefersTo == "" {
				continue
			}
			add(c.Table+"_by_"+f.Column, fmt.Sprintf(
				"-- The %s of a %s, for nested reads and sync rules.\nCREATE INDEX IF NOT EXISTS %s_by_%s ON %s (tenant_id, %s)\n",
				LowerFirst(s.Plural), f.RefersTo, c.Table, f.Column, c.Table, f.Column))
		}
	}
	return out, nil
}

// CreateTableSQL is the table of a synced collection: the tenant-scoped
// key, the change bookkeeping every collection has, and one column per field.
func CreateTableSQL(s *Synced) string {
	c := s.Collection
	lines := []string{
		"tenant_id TEXT NOT NULL",
		"id TEXT NOT NULL",
		"change_seq INT8 NOT NULL",
		"updated_at TIMESTAMPTZ NOT NULL",
		"deleted BOOL NOT NULL DEFAULT false",
		// The tenant's home region, written by every insert (db/tenants.go).
		"home_region TEXT",
	}
	for _, f := range c.Fields {
		col := f.Column + " " + ColumnType(f.Kind)
		if !f.Nullable {
			col += " NOT NULL"
		}
		lines = append(lines, col)
	}
	lines = append(lines, "PRIMARY KEY (tenant_id, id)", fmt.Sprintf("CONSTRAINT %s_change_order UNIQUE (tenant_id, change_seq)", c.Table))
	return fmt.Sprintf("-- %s, generated from %s; review before committing.\nCREATE TABLE IF NOT EXISTS %s (\n    %s\n)\n",
		c.Name, s.Source(), c.Table, strings.Join(lines, ",\n    "))
}

// ColumnType is the SQL type (valid for PostgreSQL and CockroachDB alike)
// that stores a field of the kind.
func ColumnType(k collections.Kind) string {
	switch k {
	case collections.Int:
		return "INT8"
	case collections.Float:
		return "FLOAT8"
	case collections.Bool:
		return "BOOL"
	case collections.Time:
		return "TIMESTAMPTZ"
	}
	return "TEXT"
}
