package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tidemark/tidemark/loadtest"
)

// benchLatency measures each verb with the database far away: an
// in-process Tidemark on --database-url, through a proxy that delays
// every byte to and from the database (docs/benchmarks.md, "Database far
// away").
func benchLatency(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tidemark bench latency", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg loadtest.LatencyConfig
	fs.StringVar(&cfg.DatabaseURL, "database-url", env("TIDEMARK_DATABASE_URL", ""), "PostgreSQL or CockroachDB URL to run against, directly (it is migrated, and a tenant of its own seeded) (TIDEMARK_DATABASE_URL)")
	delays := fs.String("delays", "0,25ms,75ms", "one-way delays to the database, comma-separated (a round trip costs twice each)")
	fs.IntVar(&cfg.Requests, "n", 50, "requests per verb, delay and cache setting")
	fs.IntVar(&cfg.Warmup, "warmup", 5, "unmeasured requests per verb before the measured ones")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.DatabaseURL == "" {
		return fmt.Errorf("bench latency: set --database-url (or TIDEMARK_DATABASE_URL)")
	}
	for _, s := range strings.Split(*delays, ",") {
		s = strings.TrimSpace(s)
		if s == "0" {
			s = "0s"
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return fmt.Errorf("bench latency: --delays: %q is not a duration such as 25ms", s)
		}
		cfg.Delays = append(cfg.Delays, d)
	}
	cfg.Log = stderr
	rep, err := loadtest.Latency(ctx, cfg)
	fmt.Fprintln(stdout, rep)
	return err
}
