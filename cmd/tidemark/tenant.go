package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/pgcluster"
)

const tenantUsage = `Usage: tidemark tenant create|list|move [flags]

Create, list or move tenants and their home regions (docs/deploy.md,
"Tenant homing"). On a multi-region CockroachDB a tenant's rows live in its
home region; on PostgreSQL the region is recorded and nothing is placed.

  tidemark tenant create ID --region R   record a tenant homed in R
  tidemark tenant list                   list tenants and their regions
  tidemark tenant move ID --region R     home a tenant in R and rewrite its rows

Run "tidemark tenant SUBCOMMAND -h" for its flags.
`

// tenantConfig is what every tenant subcommand reads.
type tenantConfig struct {
	Config
	Region string
	Batch  int
}

// tenant runs `tidemark tenant SUBCOMMAND`.
func tenant(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || isHelpFlag(args[0]) {
		fmt.Fprint(stderr, tenantUsage)
		if len(args) == 0 {
			return errors.New("tenant: want create, list or move")
		}
		return flag.ErrHelp
	}
	sub, args := args[0], args[1:]
	var summary string
	switch sub {
	case "create":
		summary = "record a tenant and its home region (one of TIDEMARK_REGIONS when set); its rows take the region as they are written"
	case "list":
		summary = "list the recorded tenants and their home regions"
	case "move":
		summary = "home a tenant in another region and rewrite the region of every row of it, in batches; a rerun finishes a move that stopped"
	default:
		return fmt.Errorf("tenant: unknown subcommand %q (want create, list or move)", sub)
	}
	var cfg tenantConfig
	fs := newFlagSet("tenant "+sub, summary, stderr)
	if sub != "list" {
		fs.Usage = func() {
			fmt.Fprintf(stderr, "Usage: tidemark tenant %s ID --region R [flags]\n\n%s.\n\nFlags:\n", sub, strings.ToUpper(summary[:1])+summary[1:])
			fs.PrintDefaults()
		}
	}
	envErr := bindMigrateConfig(fs, &cfg.Config)
	if sub != "list" {
		fs.StringVar(&cfg.Region, "region", "", "the tenant's home region (required)")
	}
	if sub == "move" {
		fs.IntVar(&cfg.Batch, "batch", db.DefaultMoveBatch, "rows rewritten per transaction")
	}
	ids, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if envErr != nil {
		return envErr
	}
	placement, err := cfg.Placement.Placement()
	if err != nil {
		return err
	}
	var id string
	switch {
	case sub == "list" && len(ids) > 0:
		return fmt.Errorf("tenant list takes no arguments, got %q", ids)
	case sub != "list" && len(ids) != 1:
		return fmt.Errorf("tenant %s: want one tenant id, got %d (tidemark tenant %s ID --region R)", sub, len(ids), sub)
	case sub != "list":
		id = ids[0]
		if err := checkHomeRegion(cfg.Region, placement); err != nil {
			return fmt.Errorf("tenant %s: %w", sub, err)
		}
	}
	if sub == "move" && cfg.Batch <= 0 {
		return fmt.Errorf("tenant move: --batch=%d must be at least 1", cfg.Batch)
	}
	log, err := newLogger(cfg.Config, stderr)
	if err != nil {
		return err
	}
	d, closeDB, err := openTenantDatabase(ctx, cfg.Config, log)
	if err != nil {
		return err
	}
	defer closeDB()

	switch sub {
	case "create":
		t, err := d.CreateTenant(ctx, id, cfg.Region)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "tenant %s is homed in %s (created %s)%s\n", t.ID, t.HomeRegion, t.CreatedAt.UTC().Format(time.RFC3339), placementNote(d, placement))
		return err
	case "list":
		list, err := d.ListTenants(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TENANT\tHOME REGION\tCREATED")
		for _, t := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", t.ID, t.HomeRegion, t.CreatedAt.UTC().Format(time.RFC3339))
		}
		return tw.Flush()
	}
	start := time.Now()
	res, err := d.MoveTenant(ctx, id, cfg.Region, cfg.Batch, func(table string, rows int) {
		log.Debug("tenant move batch", "tenant", id, "table", table, "rows", rows)
	})
	if err != nil {
		return fmt.Errorf("%w (rerun the same command to finish the move)", err)
	}
	from := res.From
	if from == "" {
		from = "(not recorded)"
	}
	_, err = fmt.Fprintf(stdout, "tenant %s moved from %s to %s: %d rows rewritten in %d batches (%s) in %s%s\n",
		id, from, cfg.Region, res.Total(), res.Batches, res, time.Since(start).Round(time.Millisecond), placementNote(d, placement))
	return err
}

// parseInterspersed parses flags that may follow positional arguments
// (`tenant create ID --region R`), which the flag package alone stops at.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// checkHomeRegion refuses a missing or malformed region, and with
// TIDEMARK_REGIONS set one that is not among them: CockroachDB could not
// place its rows.
func checkHomeRegion(region string, p db.Placement) error {
	if region == "" {
		return errors.New("--region is required")
	}
	if _, err := db.ParsePlacement(region, ""); err != nil {
		return fmt.Errorf("--region: %w", err)
	}
	if p.Enabled() && !p.Has(region) {
		return fmt.Errorf("--region %q is not one of TIDEMARK_REGIONS (%s)", region, strings.Join(p.Regions, ","))
	}
	return nil
}

// placementNote says, after a create or move on PostgreSQL, that the region
// is recorded but no row is placed.
func placementNote(d *db.DB, p db.Placement) string {
	if d.Dialect == db.CockroachDB && p.Enabled() {
		return ""
	}
	if d.Dialect == db.CockroachDB {
		return "; the database is not multi-region (TIDEMARK_REGIONS unset): rows are not placed"
	}
	return "; PostgreSQL: the region is recorded, rows are not placed"
}

// openTenantDatabase opens TIDEMARK_DATABASE_URL, or the embedded
// PostgreSQL of the data folder when none is set (as migrate does), and
// refuses a schema older than this binary's: run migrate first.
func openTenantDatabase(ctx context.Context, cfg Config, log *slog.Logger) (*db.DB, func(), error) {
	url := cfg.DatabaseURL
	var stop func()
	if url == "" {
		cluster, err := pgcluster.Start(ctx, pgcluster.Config{DataDir: cfg.DataDir, Logger: log})
		if err != nil {
			return nil, nil, fmt.Errorf("embedded PostgreSQL: %w", err)
		}
		stop = func() { cluster.Stop(context.WithoutCancel(ctx)) }
		if err := cluster.CreateDatabase(ctx, "tidemark"); err != nil {
			stop()
			return nil, nil, err
		}
		url = cluster.URL("tidemark")
	}
	d, err := db.Open(ctx, url, db.PoolConfig{MaxConns: 2}, log)
	if err == nil {
		err = d.CheckSchema(ctx)
		if err != nil {
			d.Close()
		}
	}
	if err != nil {
		if stop != nil {
			stop()
		}
		return nil, nil, err
	}
	return d, func() {
		d.Close()
		if stop != nil {
			stop()
		}
	}, nil
}
