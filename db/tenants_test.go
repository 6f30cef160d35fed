package db_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
)

// homeRegions counts the rows of tenant in every tenant-scoped table by
// home_region ("" for NULL).
func homeRegions(t *testing.T, d *db.DB, tenant string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, table := range db.TenantScopedTables() {
		rows, err := d.Pool.Query(context.Background(),
			fmt.Sprintf("SELECT COALESCE(home_region, ''), count(*) FROM %s WHERE tenant_id = $1 GROUP BY 1", table), tenant)
		if err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		for rows.Next() {
			var region string
			var n int
			if err := rows.Scan(&region, &n); err != nil {
				t.Fatal(err)
			}
			out[region] += n
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestEveryTenantScopedTableHasAHomeRegion(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{})
	for _, table := range db.TenantScopedTables() {
		var n int
		err := d.Pool.QueryRow(context.Background(), `SELECT count(*) FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = $1 AND column_name IN ('tenant_id', 'home_region')`, table).Scan(&n)
		if err != nil || n != 2 {
			t.Errorf("table %s: %d of tenant_id and home_region (%v); a tenant-scoped table needs both (add a home_region migration)", table, n, err)
		}
	}
}

func TestTenantsAreCreatedAndListed(t *testing.T) {
	ctx := context.Background()
	d := dbtest.Open(t, db.PoolConfig{})

	if list, err := d.ListTenants(ctx); err != nil || len(list) != 0 {
		t.Fatalf("tenants of a new database = %v, %v; want none", list, err)
	}
	for _, tc := range []struct{ id, region string }{{"perth-crew", "australia-southeast1"}, {"oslo-dispatch", "europe-west1"}} {
		got, err := d.CreateTenant(ctx, tc.id, tc.region)
		if err != nil || got.ID != tc.id || got.HomeRegion != tc.region || got.CreatedAt.IsZero() {
			t.Fatalf("CreateTenant(%s, %s) = %+v, %v", tc.id, tc.region, got, err)
		}
	}
	// Creating again with the same region is a no-op; another region is refused.
	if _, err := d.CreateTenant(ctx, "perth-crew", "australia-southeast1"); err != nil {
		t.Errorf("creating a tenant again with its region: %v; want a no-op", err)
	}
	if _, err := d.CreateTenant(ctx, "perth-crew", "us-east1"); !errors.Is(err, db.ErrTenantExists) {
		t.Errorf("creating a tenant again in another region: %v; want ErrTenantExists", err)
	}
	list, err := d.ListTenants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != "oslo-dispatch" || list[1].ID != "perth-crew" || list[1].HomeRegion != "australia-southeast1" {
		t.Errorf("ListTenants = %+v; want oslo-dispatch then perth-crew in australia-southeast1", list)
	}
	if _, err := d.GetTenant(ctx, "nobody"); !errors.Is(err, db.ErrUnknownTenant) {
		t.Errorf("GetTenant of an unknown tenant: %v; want ErrUnknownTenant", err)
	}
}

// A known tenant's rows carry its home region, in every table a push
// writes; an unknown tenant's writes work and carry none (the default
// region). The control: the known tenant's count is checked to be non-zero.
func TestWritesCarryTheTenantsHomeRegionAndUnknownTenantsStillWrite(t *testing.T) {
	ctx := context.Background()
	d := dbtest.Open(t, db.PoolConfig{})
	if _, err := d.CreateTenant(ctx, "homed", "europe-west1"); err != nil {
		t.Fatal(err)
	}
	put(t, d, "homed", site("s1", "one"), site("s2", "two"))
	put(t, d, "unknown", site("s1", "one"))

	homed := homeRegions(t, d, "homed")
	if homed["europe-west1"] < 3 || homed[""] != 0 {
		t.Errorf("homed tenant's rows by region = %v; want every row (2 sites, 1 counter at least) in europe-west1", homed)
	}
	unknown := homeRegions(t, d, "unknown")
	if unknown[""] < 2 || len(unknown) != 1 {
		t.Errorf("unknown tenant's rows by region = %v; want every row without a region", unknown)
	}
	if docs, err := d.GetDocuments(ctx, "unknown", collections.Site, []string{"s1"}); err != nil || len(docs) != 1 {
		t.Errorf("unknown tenant reads its write: %v, %v", docs, err)
	}
}

func TestMovingATenantRewritesItsRowsInBatchesAndCanBeRerun(t *testing.T) {
	ctx := context.Background()
	d := dbtest.Open(t, db.PoolConfig{})
	if _, err := d.CreateTenant(ctx, "mover", "us-east1"); err != nil {
		t.Fatal(err)
	}
	var docs []collections.Document
	for i := range 7 {
		docs = append(docs, site(fmt.Sprintf("s%d", i), "site"))
	}
	put(t, d, "mover", docs...)
	put(t, d, "bystander", site("s1", "not moved"))
	before := homeRegions(t, d, "mover")
	total := before["us-east1"]
	if total < 8 || len(before) != 1 {
		t.Fatalf("rows before the move by region = %v; want all (7 sites, 1 counter) in us-east1", before)
	}

	var batches []int
	res, err := d.MoveTenant(ctx, "mover", "europe-west1", 3, func(table string, n int) { batches = append(batches, n) })
	if err != nil {
		t.Fatal(err)
	}
	if res.From != "us-east1" || res.Total() != total || res.Rows["sites"] != 7 {
		t.Errorf("move = %+v (%s); want from us-east1, %d rows, 7 sites", res, res, total)
	}
	// 7 sites in batches of at most 3: 3, 3, 1; the counter: 1.
	if res.Batches != len(batches) || res.Batches != 4 {
		t.Errorf("batches %v (%d counted); want 4 of at most 3 rows", batches, res.Batches)
	}
	for _, n := range batches {
		if n > 3 {
			t.Errorf("a batch rewrote %d rows; want at most 3", n)
		}
	}
	if after := homeRegions(t, d, "mover"); after["europe-west1"] != total || len(after) != 1 {
		t.Errorf("rows after the move by region = %v; want all %d in europe-west1", after, total)
	}
	if got, err := d.GetTenant(ctx, "mover"); err != nil || got.HomeRegion != "europe-west1" {
		t.Errorf("tenant after the move = %+v, %v", got, err)
	}
	if by := homeRegions(t, d, "bystander"); by[""] < 2 || len(by) != 1 {
		t.Errorf("another tenant's rows by region = %v; want them untouched", by)
	}
	// New rows take the new region at once.
	put(t, d, "mover", site("s-new", "after the move"))
	if after := homeRegions(t, d, "mover"); len(after) != 1 {
		t.Errorf("rows after a write that followed the move = %v; want all in europe-west1", after)
	}

	// A rerun finds nothing left to rewrite.
	again, err := d.MoveTenant(ctx, "mover", "europe-west1", 3, nil)
	if err != nil || again.Total() != 0 || again.From != "europe-west1" {
		t.Errorf("rerun = %+v, %v; want no rows rewritten", again, err)
	}
}

// A tenant that wrote before it was recorded (an existing deployment) is
// recorded by its move, and its rows get the region.
func TestMovingAnUnrecordedTenantRecordsIt(t *testing.T) {
	ctx := context.Background()
	d := dbtest.Open(t, db.PoolConfig{})
	put(t, d, "legacy", site("s1", "from before tenants"))
	res, err := d.MoveTenant(ctx, "legacy", "us-east1", 0, nil)
	if err != nil || res.From != "" || res.Total() < 2 {
		t.Fatalf("move of an unrecorded tenant = %+v, %v; want its rows rewritten", res, err)
	}
	if got, err := d.GetTenant(ctx, "legacy"); err != nil || got.HomeRegion != "us-east1" {
		t.Errorf("tenant after the move = %+v, %v", got, err)
	}
}

func TestPlacementIsSkippedOnPostgreSQLWithOneLogLine(t *testing.T) {
	ctx := context.Background()
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	d, err := db.Open(ctx, dbtest.URL(t), db.PoolConfig{MaxConns: 2}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)

	if err := d.ApplyPlacement(ctx, db.Placement{}); err != nil {
		t.Fatalf("ApplyPlacement without regions: %v", err)
	}
	if strings.Contains(buf.String(), "placement") {
		t.Errorf("placement without regions logged %q; want nothing", buf.String())
	}
	p, err := db.ParsePlacement("us-east1,europe-west1", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.ApplyPlacement(ctx, p); err != nil {
		t.Fatalf("ApplyPlacement on PostgreSQL: %v", err)
	}
	if n := strings.Count(buf.String(), "multi-region placement skipped"); n != 1 {
		t.Errorf("log %q has %d skip lines; want 1", buf.String(), n)
	}
	if !strings.Contains(buf.String(), "regions=us-east1,europe-west1") {
		t.Errorf("skip line lacks the regions: %q", buf.String())
	}
}

func TestPlacementIsParsed(t *testing.T) {
	for _, tc := range []struct {
		regions, goal string
		want          string // error text, or "" for accepted
		primary       string
	}{
		{"", "", "", ""},
		{"us-east1", "", "", "us-east1"},
		{" us-east1 , europe-west1 ", "ZONE", "", "us-east1"},
		{"us-east1,europe-west1,australia-southeast1", "region", "", "us-east1"},
		{"us-east1,europe-west1", "region", "at least 3 regions", ""},
		{"", "region", "needs regions", ""},
		{"us-east1", "continent", "want zone or region", ""},
		{"us-east1,us-east1", "", "listed twice", ""},
		{`us-east1";DROP`, "", "region name", ""},
		{"US_EAST", "", "region name", ""},
	} {
		p, err := db.ParsePlacement(tc.regions, tc.goal)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("ParsePlacement(%q, %q) = %v; want accepted", tc.regions, tc.goal, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("ParsePlacement(%q, %q) = %v; want an error saying %q", tc.regions, tc.goal, err, tc.want)
		case tc.want == "" && p.Primary() != tc.primary:
			t.Errorf("ParsePlacement(%q, %q) primary = %q; want %q", tc.regions, tc.goal, p.Primary(), tc.primary)
		}
	}
}

func TestPlacementStatementsFollowTheRegionsAndGoal(t *testing.T) {
	p, err := db.ParsePlacement("us-east1,europe-west1,australia-southeast1", "region")
	if err != nil {
		t.Fatal(err)
	}
	stmts := db.PlacementStatements("tide mark", p)
	joined := strings.Join(stmts, "\n")
	for _, want := range []string{
		`ALTER DATABASE "tide mark" SET PRIMARY REGION "us-east1"`,
		`ALTER DATABASE "tide mark" ADD REGION IF NOT EXISTS "europe-west1"`,
		`ALTER DATABASE "tide mark" ADD REGION IF NOT EXISTS "australia-southeast1"`,
		`ALTER DATABASE "tide mark" SURVIVE REGION FAILURE`,
		"ALTER TABLE tenants SET LOCALITY GLOBAL",
		"ALTER TABLE change_counters SET LOCALITY REGIONAL BY ROW AS crdb_region",
		"ALTER TABLE work_orders ADD COLUMN IF NOT EXISTS crdb_region crdb_internal_region NOT VISIBLE NOT NULL AS (COALESCE(home_region, 'us-east1')::crdb_internal_region) STORED",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("placement lacks %s", want)
		}
	}
	if strings.Contains(joined, `ADD REGION IF NOT EXISTS "us-east1"`) {
		t.Error("the primary region is added twice")
	}
	if got := db.PlacementStatements("tidemark", db.Placement{}); len(got) != 0 {
		t.Errorf("no regions gives %d statements; want none", len(got))
	}
}
