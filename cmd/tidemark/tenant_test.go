package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
)

// tidemarkCmd runs the command line with args and returns its output.
func tidemarkCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestTenantCommandCreatesListsAndMovesTenants(t *testing.T) {
	url := dbtest.URL(t)
	t.Setenv("TIDEMARK_DATABASE_URL", url)
	t.Setenv("TIDEMARK_REGIONS", "us-east1,europe-west1,australia-southeast1")

	out, _, err := tidemarkCmd(t, "tenant", "create", "perth-crew", "--region", "australia-southeast1")
	if err != nil || !strings.Contains(out, "tenant perth-crew is homed in australia-southeast1") ||
		!strings.Contains(out, "PostgreSQL: the region is recorded, rows are not placed") {
		t.Fatalf("tenant create = %q, %v", out, err)
	}
	// Flags may come before the id too.
	if out, _, err := tidemarkCmd(t, "tenant", "create", "-region=europe-west1", "oslo-dispatch"); err != nil {
		t.Fatalf("tenant create with the flag first = %q, %v", out, err)
	}
	out, _, err = tidemarkCmd(t, "tenant", "list")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "TENANT") ||
		!strings.HasPrefix(lines[1], "oslo-dispatch") || !strings.Contains(lines[1], "europe-west1") ||
		!strings.HasPrefix(lines[2], "perth-crew") || !strings.Contains(lines[2], "australia-southeast1") {
		t.Fatalf("tenant list =\n%s", out)
	}

	// The tenant's rows, written through the server's storage, are moved.
	d, err := db.Open(context.Background(), url, db.PoolConfig{MaxConns: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	if _, err := d.Pool.Exec(context.Background(),
		`INSERT INTO change_counters (tenant_id, collection, seq, home_region) VALUES ('perth-crew', 'sites', 3, 'australia-southeast1')`); err != nil {
		t.Fatal(err)
	}
	out, _, err = tidemarkCmd(t, "tenant", "move", "perth-crew", "--region", "us-east1", "--batch", "1")
	if err != nil || !strings.Contains(out, "moved from australia-southeast1 to us-east1: 1 rows rewritten in 1 batches (change_counters=1)") {
		t.Fatalf("tenant move = %q, %v", out, err)
	}
	var region string
	if err := d.Pool.QueryRow(context.Background(), `SELECT home_region FROM change_counters WHERE tenant_id = 'perth-crew'`).Scan(&region); err != nil || region != "us-east1" {
		t.Errorf("counter's region after the move = %q, %v; want us-east1", region, err)
	}
	out, _, err = tidemarkCmd(t, "tenant", "move", "perth-crew", "--region", "us-east1")
	if err != nil || !strings.Contains(out, "0 rows rewritten") {
		t.Errorf("rerun of the move = %q, %v; want nothing rewritten", out, err)
	}
}

func TestTenantCommandRefusesBadArguments(t *testing.T) {
	t.Setenv("TIDEMARK_DATABASE_URL", "postgres://127.0.0.1:1/never-reached")
	t.Setenv("TIDEMARK_REGIONS", "us-east1,europe-west1")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"tenant"}, "want create, list or move"},
		{[]string{"tenant", "rename", "x"}, `unknown subcommand "rename"`},
		{[]string{"tenant", "create", "x"}, "--region is required"},
		{[]string{"tenant", "create", "--region", "us-east1"}, "want one tenant id, got 0"},
		{[]string{"tenant", "create", "x", "y", "--region", "us-east1"}, "want one tenant id, got 2"},
		{[]string{"tenant", "create", "x", "--region", "asia-east1"}, `"asia-east1" is not one of TIDEMARK_REGIONS (us-east1,europe-west1)`},
		{[]string{"tenant", "move", "x", "--region", "Bad Region"}, "region name"},
		{[]string{"tenant", "move", "x", "--region", "us-east1", "--batch", "0"}, "--batch=0"},
		{[]string{"tenant", "list", "x"}, "takes no arguments"},
		{[]string{"tenant", "list", "--survival-goal", "continent"}, "TIDEMARK_SURVIVAL_GOAL"},
	} {
		_, _, err := tidemarkCmd(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v; want one saying %q (before reaching the database)", tc.args, err, tc.want)
		}
	}
}

func TestTenantHelpListsItsFlags(t *testing.T) {
	_, help, err := tidemarkCmd(t, "tenant", "-h")
	if !errors.Is(err, flag.ErrHelp) || !strings.Contains(help, "tidemark tenant move ID --region R") {
		t.Errorf("tenant -h = %q, %v", help, err)
	}
	_, help, err = tidemarkCmd(t, "tenant", "move", "-h")
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("tenant move -h: %v", err)
	}
	flags := flagsIn(help)
	for _, f := range []string{"region", "batch", "database-url", "regions", "survival-goal"} {
		if !flags[f] {
			t.Errorf("tenant move -h lacks -%s:\n%s", f, help)
		}
	}
	if flags["addr"] || flags["jwt-secret"] {
		t.Errorf("tenant move -h lists serve's flags:\n%s", help)
	}
	_, help, _ = tidemarkCmd(t, "tenant", "list", "-h")
	if flags := flagsIn(help); flags["region"] || flags["batch"] {
		t.Errorf("tenant list -h lists -region or -batch:\n%s", help)
	}
}

func TestRegionsAndSurvivalGoalAreParsedAtStart(t *testing.T) {
	for _, tc := range []struct {
		regions, goal string
		want          string // error text; "" for accepted
	}{
		{"", "", ""},
		{"us-east1,europe-west1", "", ""},
		{"us-east1,europe-west1,australia-southeast1", "region", ""},
		{"us-east1,europe-west1", "region", "at least 3 regions"},
		{"us-east1", "continent", "want zone or region"},
		{"us-east1,,us-east1", "", "listed twice"},
		{"us_east1", "", "region name"},
	} {
		got, err := PlacementConfig{Regions: tc.regions, SurvivalGoal: tc.goal}.Placement()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("regions %q goal %q: %v; want accepted", tc.regions, tc.goal, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "TIDEMARK_REGIONS")):
			t.Errorf("regions %q goal %q: %v; want an error naming TIDEMARK_REGIONS and saying %q", tc.regions, tc.goal, err, tc.want)
		case tc.want == "" && tc.regions != "" && got.Primary() != "us-east1":
			t.Errorf("regions %q: primary %q; want the first, us-east1", tc.regions, got.Primary())
		}
	}

	// migrate reads both from the environment and stops at a bad value
	// before it reaches the database (whose URL here leads nowhere).
	t.Setenv("TIDEMARK_DATABASE_URL", "postgres://127.0.0.1:1/never-reached")
	t.Setenv("TIDEMARK_REGIONS", "us-east1,europe-west1")
	t.Setenv("TIDEMARK_SURVIVAL_GOAL", "region")
	_, _, err := tidemarkCmd(t, "migrate")
	if err == nil || !strings.Contains(err.Error(), "TIDEMARK_SURVIVAL_GOAL") || !strings.Contains(err.Error(), "at least 3 regions") {
		t.Errorf("migrate with REGION survival and 2 regions: %v; want the settings refused", err)
	}
	_, _, err = tidemarkCmd(t, "migrate", "--regions", "us-east1,europe-west1,australia-southeast1", "--survival-goal", "planet")
	if err == nil || !strings.Contains(err.Error(), "want zone or region") {
		t.Errorf("migrate --survival-goal planet: %v; want it refused", err)
	}
}

// On PostgreSQL migrate with regions migrates, skips the placement with one
// log line and succeeds.
func TestMigrateWithRegionsOnPostgreSQLSkipsPlacement(t *testing.T) {
	t.Setenv("TIDEMARK_DATABASE_URL", dbtest.EmptyURL(t))
	_, stderr, err := tidemarkCmd(t, "migrate", "--regions", "us-east1,europe-west1")
	if err != nil {
		t.Fatalf("migrate: %v\n%s", err, stderr)
	}
	if n := strings.Count(stderr, "multi-region placement skipped"); n != 1 {
		t.Errorf("migrate's log has %d skip lines, want 1:\n%s", n, stderr)
	}
}
