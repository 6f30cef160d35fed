package db

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/tidemark/tidemark/collections"
)

// Survival goals of a multi-region CockroachDB database (docs/deploy.md,
// "Survival goals").
const (
	SurviveZone   = "zone"
	SurviveRegion = "region"
)

// regionPattern is what a region name may be. Names are written into DDL
// (as quoted identifiers and string literals), so they are held to the
// characters cloud and CockroachDB region names use.
var regionPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Placement is where a multi-region CockroachDB database keeps its data:
// its regions (the first is the primary) and its survival goal. The zero
// value places nothing: the database stays as it is.
type Placement struct {
	Regions  []string
	Survival string // SurviveZone (the default) or SurviveRegion
}

// ParsePlacement reads a comma-separated region list (TIDEMARK_REGIONS)
// and a survival goal (TIDEMARK_SURVIVAL_GOAL). An empty list is no
// placement; a goal without regions, an unknown goal, a malformed or
// repeated region, or REGION survival with fewer than three regions (what
// CockroachDB needs to survive losing one) is an error.
func ParsePlacement(regions, survival string) (Placement, error) {
	var p Placement
	for _, r := range strings.Split(regions, ",") {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		if !regionPattern.MatchString(r) {
			return Placement{}, fmt.Errorf("region %q: want a region name of lower-case letters, digits and '-' (as CockroachDB's --locality region= names it)", r)
		}
		if slices.Contains(p.Regions, r) {
			return Placement{}, fmt.Errorf("region %q is listed twice", r)
		}
		p.Regions = append(p.Regions, r)
	}
	switch strings.ToLower(strings.TrimSpace(survival)) {
	case "", SurviveZone:
		p.Survival = SurviveZone
	case SurviveRegion:
		p.Survival = SurviveRegion
	default:
		return Placement{}, fmt.Errorf("survival goal %q: want zone or region", survival)
	}
	if len(p.Regions) == 0 {
		if p.Survival == SurviveRegion {
			return Placement{}, fmt.Errorf("survival goal region needs regions (TIDEMARK_REGIONS)")
		}
		return Placement{}, nil
	}
	if p.Survival == SurviveRegion && len(p.Regions) < 3 {
		return Placement{}, fmt.Errorf("survival goal region needs at least 3 regions, have %d", len(p.Regions))
	}
	return p, nil
}

// Enabled reports whether p names any region.
func (p Placement) Enabled() bool { return len(p.Regions) > 0 }

// Primary is the primary region, "" without regions.
func (p Placement) Primary() string {
	if len(p.Regions) == 0 {
		return ""
	}
	return p.Regions[0]
}

// Has reports whether region is one of p's regions.
func (p Placement) Has(region string) bool { return slices.Contains(p.Regions, region) }

// TenantScopedTables are the tables keyed by tenant_id whose rows belong to
// one tenant: each has a home_region column and, on a multi-region
// database, is REGIONAL BY ROW. job_leases, sync_rules_state and
// schema_migrations belong to no tenant and stay in the primary region.
func TenantScopedTables() []string {
	out := []string{"change_counters", "sync_bucket_members", "purge_horizons"}
	for _, c := range collections.All() {
		out = append(out, c.Table)
	}
	return out
}

// PlacementStatements are the statements that make database multi-region
// as p says, in the order they run. Each is idempotent, so a rerun (or a
// rerun with a region added) changes only what differs.
//
// A row's region is crdb_region, computed from the row's home_region
// (REGIONAL BY ROW AS, CockroachDB's pattern for a region derived from the
// row): the application writes the tenant's home region into every row it
// inserts (read from the GLOBAL tenants table in the same statement), and
// a row of a tenant not in that table (home_region NULL) is placed in the
// primary region. A computed column must be immutable, so it cannot fall
// back to gateway_region(); a string-to-enum cast is immutable.
func PlacementStatements(database string, p Placement) []string {
	if !p.Enabled() {
		return nil
	}
	db := quoteIdent(database)
	out := []string{
		fmt.Sprintf("ALTER DATABASE %s SET PRIMARY REGION %s", db, quoteIdent(p.Primary())),
	}
	for _, r := range p.Regions[1:] {
		out = append(out, fmt.Sprintf("ALTER DATABASE %s ADD REGION IF NOT EXISTS %s", db, quoteIdent(r)))
	}
	goal := "ZONE"
	if p.Survival == SurviveRegion {
		goal = "REGION"
	}
	out = append(out,
		fmt.Sprintf("ALTER DATABASE %s SURVIVE %s FAILURE", db, goal),
		"ALTER TABLE tenants SET LOCALITY GLOBAL",
	)
	for _, t := range TenantScopedTables() {
		out = append(out,
			fmt.Sprintf("ALTER TABLE %s ADD COLUMN IF NOT EXISTS crdb_region crdb_internal_region NOT VISIBLE NOT NULL AS (COALESCE(home_region, %s)::crdb_internal_region) STORED",
				t, quoteLiteral(p.Primary())),
			fmt.Sprintf("ALTER TABLE %s SET LOCALITY REGIONAL BY ROW AS crdb_region", t),
		)
	}
	return out
}

const stmtCurrentDatabase = `SELECT current_database()`

// ApplyPlacement makes the database multi-region as p says (see
// PlacementStatements). It runs after Migrate. On PostgreSQL, which has no
// placement, it logs one line and changes nothing; with no regions it does
// nothing.
func (d *DB) ApplyPlacement(ctx context.Context, p Placement) error {
	if !p.Enabled() {
		return nil
	}
	if d.Dialect != CockroachDB {
		d.log.Info("multi-region placement skipped: the database is PostgreSQL; tenants' home regions are recorded, rows are not placed",
			"regions", strings.Join(p.Regions, ","), "survival_goal", p.Survival)
		return nil
	}
	var database string
	if err := d.Pool.QueryRow(ctx, stmtCurrentDatabase).Scan(&database); err != nil {
		return fmt.Errorf("read database name: %w", err)
	}
	for _, stmt := range PlacementStatements(database, p) {
		if _, err := d.Pool.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("multi-region placement: %s: %w", stmt, err)
		}
	}
	d.log.Info("multi-region placement applied", "primary_region", p.Primary(),
		"regions", strings.Join(p.Regions, ","), "survival_goal", p.Survival, "regional_by_row_tables", len(TenantScopedTables()))
	return nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func quoteLiteral(s string) string { return `'` + strings.ReplaceAll(s, `'`, `''`) + `'` }
