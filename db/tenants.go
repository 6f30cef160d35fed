package db

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/collections"
)

// tenantHomeRegion is the home region of the tenant whose id is the
// statement's $1, for an insert's home_region: one index read of the
// tenants table inside the insert (local in every region: the table is
// GLOBAL), no round trip more. NULL for a tenant not in the table, whose
// rows then go to the default region.
const tenantHomeRegion = `(SELECT home_region FROM tenants WHERE tenant_id = $1)`

const (
	stmtCreateTenant = `INSERT INTO tenants (tenant_id, home_region) VALUES ($1, $2)
ON CONFLICT (tenant_id) DO NOTHING`
	stmtTenant      = `SELECT tenant_id, home_region, created_at FROM tenants WHERE tenant_id = $1`
	stmtListTenants = `SELECT tenant_id, home_region, created_at FROM tenants ORDER BY tenant_id`
	// stmtDatabaseRegions lists a CockroachDB database's regions (none
	// when it is not multi-region). CockroachDB only: behind the dialect
	// switch in checkRegion.
	stmtDatabaseRegions = `SELECT region FROM [SHOW REGIONS FROM DATABASE]`
	// stmtHomeTenant records a tenant's new home region, creating the
	// tenant if it was not in the table (a deployment from before tenants
	// were recorded).
	stmtHomeTenant = `INSERT INTO tenants (tenant_id, home_region) VALUES ($1, $2)
ON CONFLICT (tenant_id) DO UPDATE SET home_region = excluded.home_region`
)

// Tenant is a tenant as the tenants table records it.
type Tenant struct {
	ID         string
	HomeRegion string
	CreatedAt  time.Time
}

// ErrTenantExists is returned by CreateTenant for a tenant recorded with
// another home region: moving it is MoveTenant's job.
var ErrTenantExists = errors.New("tenant exists with another home region")

// ErrUnknownTenant is returned for a tenant the tenants table lacks.
var ErrUnknownTenant = errors.New("unknown tenant")

// ErrNotARegion is returned for a home region a multi-region CockroachDB
// database does not have: its rows could not be placed, and every insert
// of the tenant would fail on the cast to crdb_internal_region.
var ErrNotARegion = errors.New("not a region of the database")

// checkRegion refuses, on a multi-region CockroachDB, a region the
// database lacks. PostgreSQL, and CockroachDB before placement, record
// any region.
func (d *DB) checkRegion(ctx context.Context, region string) error {
	if d.Dialect != CockroachDB {
		return nil
	}
	rows, err := d.Pool.Query(ctx, stmtDatabaseRegions)
	if err != nil {
		return fmt.Errorf("read the database's regions: %w", err)
	}
	regions, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("read the database's regions: %w", err)
	}
	if len(regions) > 0 && !slices.Contains(regions, region) {
		return fmt.Errorf("%q is %w (it has %s)", region, ErrNotARegion, strings.Join(regions, ", "))
	}
	return nil
}

// CreateTenant records a tenant and its home region. Creating a tenant
// that exists with the same region is a no-op (scripts may rerun it).
// It places nothing: a tenant's rows take its home region as they are
// written. Rows written before, while the tenant was unknown, keep the
// default region until MoveTenant rewrites them.
func (d *DB) CreateTenant(ctx context.Context, id, region string) (Tenant, error) {
	if id == "" || region == "" {
		return Tenant{}, errors.New("tenant id and home region are required")
	}
	if err := d.checkRegion(ctx, region); err != nil {
		return Tenant{}, fmt.Errorf("create tenant %q: %w", id, err)
	}
	var t Tenant
	err := d.RunTx(ctx, TxOptions{IsoLevel: d.isolation()}, func(tx *Tx) error {
		if _, err := tx.Exec(ctx, stmtCreateTenant, id, region); err != nil {
			return err
		}
		return tx.QueryRow(ctx, stmtTenant, id).Scan(&t.ID, &t.HomeRegion, &t.CreatedAt)
	})
	if err != nil {
		return Tenant{}, fmt.Errorf("create tenant %q: %w", id, err)
	}
	if t.HomeRegion != region {
		return t, fmt.Errorf("%w: %q is homed in %s (use tenant move)", ErrTenantExists, id, t.HomeRegion)
	}
	return t, nil
}

// GetTenant returns one tenant, ErrUnknownTenant if it is not recorded.
func (d *DB) GetTenant(ctx context.Context, id string) (Tenant, error) {
	var t Tenant
	err := d.Pool.QueryRow(ctx, stmtTenant, id).Scan(&t.ID, &t.HomeRegion, &t.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Tenant{}, fmt.Errorf("%w %q", ErrUnknownTenant, id)
	}
	return t, err
}

// ListTenants returns every recorded tenant, by id.
func (d *DB) ListTenants(ctx context.Context) ([]Tenant, error) {
	rows, err := d.Pool.Query(ctx, stmtListTenants)
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Tenant, error) {
		var t Tenant
		err := r.Scan(&t.ID, &t.HomeRegion, &t.CreatedAt)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	return out, nil
}

// tenantTableKeys is the primary key of each tenant-scoped table, by
// which a move's batch names the rows it rewrites.
func tenantTableKeys() map[string]string {
	keys := map[string]string{
		"change_counters":     "tenant_id, collection",
		"sync_bucket_members": "tenant_id, collection, bucket, doc_id",
		"purge_horizons":      "tenant_id, collection, bucket",
	}
	for _, c := range collections.All() {
		keys[c.Table] = "tenant_id, id"
	}
	return keys
}

// moveBatchSQL rewrites the home region of up to $3 rows of tenant $1 in
// table that are not yet in region $2. PostgreSQL has no UPDATE ... LIMIT,
// so the batch is chosen by key in a subquery; both dialects accept it.
func moveBatchSQL(table string) string {
	key := tenantTableKeys()[table]
	return fmt.Sprintf(`UPDATE %s SET home_region = $2 WHERE (%s) IN (SELECT %s FROM %s WHERE tenant_id = $1 AND home_region IS DISTINCT FROM $2 LIMIT $3)`,
		table, key, key, table)
}

// TenantStatements are the statements of tenants and of their moves, for
// the portability test.
func TenantStatements() []string {
	out := []string{stmtCreateTenant, stmtTenant, stmtListTenants, stmtHomeTenant, stmtCurrentDatabase, stmtDatabaseRegions,
		"SELECT " + tenantHomeRegion}
	for _, t := range TenantScopedTables() {
		out = append(out, moveBatchSQL(t))
	}
	return out
}

// DefaultMoveBatch is how many rows one transaction of a move rewrites:
// small enough that a batch on CockroachDB (each row deleted in one
// region's partition and written in another's) commits well inside the
// statement timeout and holds its locks briefly.
const DefaultMoveBatch = 500

// MoveResult is what a move rewrote.
type MoveResult struct {
	From    string         // the home region before, "" if the tenant was not recorded
	Rows    map[string]int // rows rewritten, by table
	Batches int            // transactions that rewrote rows
}

// MoveTenant sets a tenant's home region and rewrites the home_region of
// every row of the tenant, in batches of batch rows, one transaction each.
// On a multi-region CockroachDB each rewritten row moves to the new
// region's partition (its crdb_region is computed from home_region): the
// cost is every row of the tenant written once more, across regions.
//
// The tenant's record changes first, so rows written during the move
// already carry the new region. A move that stops halfway (or a move to
// the region the tenant has) can be run again: it rewrites only rows not
// yet in the new region. An unrecorded tenant is recorded.
func (d *DB) MoveTenant(ctx context.Context, id, region string, batch int, progress func(table string, rows int)) (MoveResult, error) {
	if id == "" || region == "" {
		return MoveResult{}, errors.New("tenant id and home region are required")
	}
	if batch <= 0 {
		batch = DefaultMoveBatch
	}
	if err := d.checkRegion(ctx, region); err != nil {
		return MoveResult{}, fmt.Errorf("move tenant %q: %w", id, err)
	}
	res := MoveResult{Rows: map[string]int{}}
	before, err := d.GetTenant(ctx, id)
	switch {
	case err == nil:
		res.From = before.HomeRegion
	case !errors.Is(err, ErrUnknownTenant):
		return res, fmt.Errorf("move tenant %q: %w", id, err)
	}
	err = d.RunTx(ctx, TxOptions{IsoLevel: d.isolation()}, func(tx *Tx) error {
		_, err := tx.Exec(ctx, stmtHomeTenant, id, region)
		return err
	})
	if err != nil {
		return res, fmt.Errorf("move tenant %q: record home region: %w", id, err)
	}
	for _, table := range TenantScopedTables() {
		stmt := moveBatchSQL(table)
		for {
			var n int64
			err := d.RunTx(ctx, TxOptions{IsoLevel: d.isolation()}, func(tx *Tx) error {
				tag, err := tx.Exec(ctx, stmt, id, region, batch)
				n = tag.RowsAffected()
				return err
			})
			if err != nil {
				return res, fmt.Errorf("move tenant %q: rewrite %s: %w", id, table, err)
			}
			if n == 0 {
				break
			}
			res.Rows[table] += int(n)
			res.Batches++
			if progress != nil {
				progress(table, int(n))
			}
		}
	}
	return res, nil
}

// Total is the number of rows a move rewrote.
func (r MoveResult) Total() int {
	n := 0
	for _, v := range r.Rows {
		n += v
	}
	return n
}

// String lists the rows rewritten per table, for logs.
func (r MoveResult) String() string {
	var parts []string
	for _, t := range TenantScopedTables() {
		if n := r.Rows[t]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", t, n))
		}
	}
	if len(parts) == 0 {
		return "no rows"
	}
	return strings.Join(parts, " ")
}
