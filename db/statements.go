package db

import (
	"fmt"
	"strings"
	"sync"

	"github.com/tidemark/tidemark/collections"
)

// Every statement the server sends is declared in this file (or built here
// from a collection's description), so the portability test can parse all of
// them with CockroachDB's parser. Keep each one valid for PostgreSQL 15 and
// CockroachDB alike.
const (
	stmtVersion = `SELECT version()`

	stmtCreateMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INT8 PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)`
	stmtAppliedMigrations = `SELECT version FROM schema_migrations ORDER BY version`
	stmtRecordMigration   = `INSERT INTO schema_migrations (version, name) VALUES ($1, $2) ON CONFLICT (version) DO NOTHING`
	stmtSchemaVersion     = `SELECT COALESCE(max(version), 0) FROM schema_migrations`

	// stmtLockCounter takes a (tenant, collection) change counter's row
	// lock as the transaction's first statement: on CockroachDB a locking
	// read queues waiters on the row instead of letting them read it and
	// abort on the write (docs/deploy.md, "Isolation and retries").
	stmtLockCounter = `SELECT seq FROM change_counters WHERE tenant_id = $1 AND collection = $2 FOR UPDATE`
	// stmtLockScope takes the row lock of a (tenant, collection) change
	// counter, creating the row on first use. Holding it serializes the
	// scope's writers, so change numbers are handed out in commit order.
	stmtLockScope = `INSERT INTO change_counters (tenant_id, collection, seq, home_region) VALUES ($1, $2, 0, ` + tenantHomeRegion + `)
ON CONFLICT (tenant_id, collection) DO UPDATE SET seq = change_counters.seq
RETURNING seq`
	// stmtGenericPlans makes a PostgreSQL write transaction plan its
	// statements for any tenant rather than for the one at hand. A tenant
	// that is new since the table's last ANALYZE looks empty to the
	// planner, which then reads a push's documents by id through whichever
	// tenant-leading index is smallest, filtering the tenant's every row
	// (40k rows: 27 ms instead of 0.3 ms through the primary key, inside
	// the scope lock, and growing with each push until autovacuum runs);
	// the generic plan probes the key for each id whatever the tenant's size.
	stmtGenericPlans = `SET LOCAL plan_cache_mode = force_generic_plan`
	// stmtAdvanceScope reserves n change numbers; the lock is already held.
	// It stamps the row with the database's clock for the notifier's poll
	// of changed scopes (db/changes.go): the same statement, no round trip.
	stmtAdvanceScope = `UPDATE change_counters SET seq = seq + $3, changed_at = clock_timestamp() WHERE tenant_id = $1 AND collection = $2 RETURNING seq`
	// stmtScopeHead reads a scope's latest change number without locking.
	stmtScopeHead = `SELECT seq FROM change_counters WHERE tenant_id = $1 AND collection = $2`
	// stmtScopeHeads reads the heads of every collection of the given tenants:
	// the cheap, batched query by which an instance learns of other
	// instances' commits.
	stmtScopeHeads = `SELECT tenant_id, collection, seq FROM change_counters WHERE tenant_id = ANY($1)`
)

// collectionSQL holds the statements of one collection.
type collectionSQL struct {
	columns string // select list: id, bookkeeping, then the collection's fields in order
	byIDs   string
	changes string
	// upsertMany writes many documents in one statement: the tenant and
	// update time as scalars ($1, $2), then one array per column
	// (bookkeeping, then fields), unnested into rows. A push's writes so
	// cost one statement inside the scope lock, not one per row. The
	// arrays must not repeat an id: ON CONFLICT DO UPDATE may not touch
	// a row twice in one statement.
	upsertMany string
	// insertMany is upsertMany without ON CONFLICT, for documents the
	// transaction read as absent while holding the scope lock, so none can
	// appear before it commits: it spares each row the speculative
	// insertion (the key probe before the insert and the WAL record that
	// confirms it).
	insertMany string
}

// Bookkeeping columns every collection table has, in the order they are
// selected (before the collection's own fields).
var bookkeepingColumns = []string{"id", "change_seq", "updated_at", "deleted"}

var (
	sqlCacheMu sync.Mutex
	sqlCache   = map[*collections.Collection]*collectionSQL{}
)

func statementsFor(c *collections.Collection) *collectionSQL {
	sqlCacheMu.Lock()
	defer sqlCacheMu.Unlock()
	if s, ok := sqlCache[c]; ok {
		return s
	}
	s := buildCollectionSQL(c)
	sqlCache[c] = s
	return s
}

func buildCollectionSQL(c *collections.Collection) *collectionSQL {
	cols := append([]string{}, bookkeepingColumns...)
	for _, f := range c.Fields {
		cols = append(cols, f.Column)
	}
	list := strings.Join(cols, ", ")

	insertCols := append([]string{"tenant_id"}, cols...)
	var set []string
	for _, col := range cols[1:] { // everything but the key
		set = append(set, fmt.Sprintf("%s = excluded.%s", col, col))
	}
	// upsertMany: id, change_seq and deleted per row; updated_at is the
	// transaction's, one value for all.
	arrays := []string{"$3::TEXT[]", "$4::INT8[]", "$5::BOOL[]"}
	names := []string{"id", "change_seq", "deleted"}
	for i, f := range c.Fields {
		arrays = append(arrays, fmt.Sprintf("$%d::%s[]", 6+i, sqlType(f.Kind)))
		names = append(names, f.Column)
	}
	selectList := []string{"$1::TEXT", "u.id", "u.change_seq", "$2::TIMESTAMPTZ", "u.deleted"}
	for _, f := range c.Fields {
		selectList = append(selectList, "u."+f.Column)
	}
	// A new row takes its tenant's home region (db/tenants.go); an
	// update keeps the row's: home_region is not in set.
	insertCols = append(insertCols, "home_region")
	selectList = append(selectList, tenantHomeRegion)
	insertMany := fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM unnest(%s) AS u (%s)",
		c.Table, strings.Join(insertCols, ", "), strings.Join(selectList, ", "), strings.Join(arrays, ", "), strings.Join(names, ", "))
	return &collectionSQL{
		insertMany: insertMany,
		upsertMany: insertMany + " ON CONFLICT (tenant_id, id) DO UPDATE SET " + strings.Join(set, ", "),
		columns:    list,
		byIDs:      fmt.Sprintf("SELECT %s FROM %s WHERE tenant_id = $1 AND id = ANY($2)", list, c.Table),
		changes:    fmt.Sprintf("SELECT %s FROM %s WHERE tenant_id = $1 AND change_seq > $2 ORDER BY change_seq LIMIT $3", list, c.Table),
	}
}

// sqlType is the column type of a field kind, as the migrations declare it.
func sqlType(k collections.Kind) string {
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
	return "TEXT" // String, Enum
}

// Statements returns every SQL statement the server may send: migrations,
// fixed statements and those of every registered collection. The
// portability test parses each of them with CockroachDB's parser.
func Statements() ([]string, error) {
	out := []string{
		stmtVersion, stmtCreateMigrationsTable, stmtAppliedMigrations, stmtRecordMigration,
		stmtSchemaVersion, stmtLockCounter, stmtLockScope, stmtGenericPlans, stmtAdvanceScope, stmtScopeHead, stmtScopeHeads,
		stmtTableColumns, stmtMembersOf, stmtSetMembers, stmtPurgeHorizon,
		stmtTakeLease, stmtReleaseLease, stmtPurgeRemovals, stmtRaiseHorizon,
		stmtBucketFingerprints, stmtRecordFingerprint, stmtForgetFingerprint, stmtTenantIDs, stmtTenantMembers,
		stmtChangedScopes,
	}
	out = append(out, txControlStatements()...)
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		out = append(out, m.Statement)
	}
	for _, c := range collections.All() {
		s := statementsFor(c)
		out = append(out, s.byIDs, s.changes, s.upsertMany, s.insertMany, bucketChangesSQL(c), purgeTombstonesSQL(c))
		out = append(out, tenantDocumentsSQL(c))
		for _, f := range c.Fields {
			if f.RefersTo != "" {
				out = append(out, childrenSQL(c, f))
			}
		}
		// List statements are built per query: the portability test adds
		// their shapes (ListStatementShapes in list_test.go).
	}
	return out, nil
}
