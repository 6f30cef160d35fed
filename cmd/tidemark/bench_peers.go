package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/tidemark/tidemark/loadtest"
)

// benchPeer runs one side of a side-by-side read for scripts/bench-peers.sh:
// `tidemark bench peer seed|read|pull --target tidemark|postgraphile`. The
// same code drives both targets; each command ends with a `result` line of
// key=value figures the script reads.
func benchPeer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const usage = "usage: tidemark bench peer seed|read|pull [flags]"
	if len(args) == 0 {
		return errors.New(usage)
	}
	fs := flag.NewFlagSet("tidemark bench peer "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	var target benchTarget
	target.bind(fs)
	var cfg loadtest.PeerConfig
	fs.StringVar(&cfg.Target, "target", loadtest.PeerTidemark, "server to measure: tidemark, or postgraphile at --url reading Tidemark's tables")
	fs.StringVar(&cfg.Tenant, "tenant", "", "tenant to seed or read (required)")
	fs.IntVar(&cfg.Clients, "clients", 16, "concurrent clients of the nested read")
	fs.DurationVar(&cfg.Duration, "duration", 20*time.Second, "how long the nested read runs")
	fs.IntVar(&cfg.Limit, "limit", 1000, "page size of the paged read")
	workOrders := fs.Int("work-orders", 10_000, "work orders to seed (seed), as tidemark bench read seeds them")
	expect := fs.Int("expect", 0, "documents the paged read must return (pull); 0: any")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if cfg.Tenant == "" {
		return errors.New("bench peer: --tenant is required")
	}
	client, err := target.clientFor(&cfg.Tenant, "")
	if err != nil {
		return err
	}
	switch args[0] {
	case "seed":
		if err := loadtest.SeedRead(ctx, client, loadtest.ReadConfig{WorkOrders: *workOrders}); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		fmt.Fprintf(stdout, "seeded tenant %s with %d work orders\n", cfg.Tenant, *workOrders)
		return nil
	case "read":
		rep, err := loadtest.PeerNestedRead(ctx, client, cfg)
		if err != nil {
			return fmt.Errorf("%s: %w", cfg.Target, err)
		}
		fmt.Fprintf(stdout, "%s nested read, %d clients: %s\n", cfg.Target, cfg.Clients, rep)
		fmt.Fprintf(stdout, "result rps=%.1f p50_ms=%.2f p95_ms=%.2f p99_ms=%.2f\n", float64(rep.Requests)/rep.Duration.Seconds(),
			ms(rep.Latency.P50), ms(rep.Latency.P95), ms(rep.Latency.P99))
		return nil
	case "pull":
		rep, err := loadtest.PeerPagedRead(ctx, client, cfg)
		if err != nil {
			return fmt.Errorf("%s: %w", cfg.Target, err)
		}
		fmt.Fprintf(stdout, "%s paged read, pages of %d: %s\n", cfg.Target, cfg.Limit, rep)
		if *expect > 0 && rep.Docs != *expect {
			return fmt.Errorf("%s read %d documents, want %d", cfg.Target, rep.Docs, *expect)
		}
		fmt.Fprintf(stdout, "result docs=%d docs_per_s=%.1f p50_ms=%.2f p99_ms=%.2f\n", rep.Docs, float64(rep.Docs)/rep.Duration.Seconds(),
			ms(rep.Latency.P50), ms(rep.Latency.P99))
		return nil
	}
	return fmt.Errorf("unknown peer benchmark %q; %s", args[0], usage)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
