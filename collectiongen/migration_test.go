package collectiongen_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/cockroachdb-parser/pkg/sql/parser"

	"github.com/tidemark/tidemark/collectiongen"
)

// migrationsDir writes a migrations folder with the given files.
func migrationsDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, sql := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(sql), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func names(ms []collectiongen.MigrationFile) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

const assetWithSite = `type Asset implements Node @synced(conflicts: CLIENT_RESOLVES) {
  id: ID!
  siteId: ID! @references(collection: "Site")
  name: String! @length(max: 200)
  updatedAt: Time!
  deleted: Boolean!
}
`

func TestNewMigrationsNumbersAfterTheLastOneAndSkipsCreatedTables(t *testing.T) {
	sc, err := describe(assetWithSite)
	if err != nil {
		t.Fatal(err)
	}
	dir := migrationsDir(t, map[string]string{
		"0001_change_counters.sql": "CREATE TABLE IF NOT EXISTS change_counters (tenant_id TEXT NOT NULL)\n",
		"0002_sites.sql":           "-- Sites.\ncreate table Sites (\n    tenant_id TEXT NOT NULL\n)\n",
		"0003_sites_by_name.sql":   "CREATE INDEX IF NOT EXISTS sites_by_name ON sites (tenant_id, name)\n",
		"README.md":                "CREATE TABLE assets: not a migration, so not counted",
	})
	ms, err := sc.NewMigrations(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"0004_assets.sql", "0005_assets_by_updated_at.sql", "0006_assets_tombstones.sql", "0007_assets_by_site_id.sql"}
	if got := names(ms); !slices.Equal(got, want) {
		t.Fatalf("NewMigrations = %v, want %v (sites is created by 0002 already)", got, want)
	}
	for _, sub := range []string{"CREATE TABLE IF NOT EXISTS assets (", "generated from schema/asset.graphqls"} {
		if !strings.Contains(ms[0].SQL, sub) {
			t.Errorf("%s lacks %q:\n%s", ms[0].Name, sub, ms[0].SQL)
		}
	}
	if !strings.Contains(ms[1].SQL, "CREATE INDEX IF NOT EXISTS assets_by_updated_at ON assets (tenant_id, updated_at, id)") {
		t.Errorf("%s:\n%s", ms[1].Name, ms[1].SQL)
	}
	if !strings.Contains(ms[2].SQL, "CREATE INDEX IF NOT EXISTS assets_tombstones ON assets (updated_at) WHERE deleted") {
		t.Errorf("%s:\n%s", ms[2].Name, ms[2].SQL)
	}
	if !strings.Contains(ms[3].SQL, "CREATE INDEX IF NOT EXISTS assets_by_site_id ON assets (tenant_id, site_id)") {
		t.Errorf("%s:\n%s", ms[3].Name, ms[3].SQL)
	}
}

// A field added to a collection whose table exists is the developer's own
// migration (the schema test names the missing column): the generator
// never proposes one, and never touches a migration that is there.
func TestNewMigrationsNeverTouchesAnExistingTable(t *testing.T) {
	sc, err := describe(assetWithSite)
	if err != nil {
		t.Fatal(err)
	}
	existing := map[string]string{
		"0001_sites.sql":  "CREATE TABLE IF NOT EXISTS sites (tenant_id TEXT NOT NULL)\n",
		"0002_assets.sql": "CREATE TABLE IF NOT EXISTS assets (tenant_id TEXT NOT NULL, id TEXT NOT NULL)\n",
	}
	dir := migrationsDir(t, existing)
	ms, err := sc.NewMigrations(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 0 {
		t.Fatalf("NewMigrations proposed %v for tables that exist", names(ms))
	}
	for name, sql := range existing {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(b) != sql {
			t.Errorf("%s changed: %q (%v)", name, b, err)
		}
	}
}

// Once the proposed migrations are written (as `go generate` does), a
// second run proposes nothing: generating again is harmless.
func TestNewMigrationsProposesNothingOnceWritten(t *testing.T) {
	sc, err := describe(assetWithSite)
	if err != nil {
		t.Fatal(err)
	}
	dir := migrationsDir(t, map[string]string{"0001_change_counters.sql": "CREATE TABLE IF NOT EXISTS change_counters (tenant_id TEXT NOT NULL)\n"})
	first, err := sc.NewMigrations(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(first), []string{
		"0002_assets.sql", "0003_assets_by_updated_at.sql", "0004_assets_tombstones.sql", "0005_assets_by_site_id.sql",
		"0006_sites.sql", "0007_sites_by_updated_at.sql", "0008_sites_tombstones.sql",
	}; !slices.Equal(got, want) {
		t.Fatalf("NewMigrations = %v, want %v (tables in name order)", got, want)
	}
	for _, m := range first {
		if err := os.WriteFile(filepath.Join(dir, m.Name), []byte(m.SQL), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	again, err := sc.NewMigrations(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 0 {
		t.Fatalf("a second run proposed %v", names(again))
	}
}

func TestNewMigrationsNeedsTheFolder(t *testing.T) {
	sc, err := describe(assetWithSite)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.NewMigrations(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("NewMigrations of a missing folder succeeded")
	}
}

// Every column type the generator writes is one statement CockroachDB's
// parser accepts (PostgreSQL's is checked when the migration is committed,
// by the db tests), with each field's nullability.
func TestCreateTableSQLCoversEveryKind(t *testing.T) {
	sc, err := describe(assetWith(
		`  siteId: ID! @references(collection: "Site")`,
		`  name: String!`,
		`  serialNumber: String`,
		`  count: Int!`,
		`  weight: Float`,
		`  active: Boolean!`,
		`  installedAt: Time`,
		`  condition: Condition`,
		`  editorId: ID! @serverSet(value: CALLER_USER_ID)`,
	))
	if err != nil {
		t.Fatal(err)
	}
	sql := collectiongen.CreateTableSQL(sc.Synced[1])
	for _, col := range []string{
		"tenant_id TEXT NOT NULL,", "id TEXT NOT NULL,", "change_seq INT8 NOT NULL,", "updated_at TIMESTAMPTZ NOT NULL,",
		"deleted BOOL NOT NULL DEFAULT false,", "site_id TEXT NOT NULL,", "name TEXT NOT NULL,", "serial_number TEXT,",
		"count INT8 NOT NULL,", "weight FLOAT8,", "active BOOL NOT NULL,", "installed_at TIMESTAMPTZ,", "condition TEXT,",
		"editor_id TEXT NOT NULL,", "PRIMARY KEY (tenant_id, id),", "CONSTRAINT assets_change_order UNIQUE (tenant_id, change_seq)",
	} {
		if !strings.Contains(sql, col) {
			t.Errorf("the table lacks %q:\n%s", col, sql)
		}
	}
	stmts, err := parser.Parse(sql)
	if err != nil || len(stmts) != 1 {
		t.Fatalf("CockroachDB parses %d statements (%v) from\n%s", len(stmts), err, sql)
	}
}
