package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/loadtest"
)

// bench runs a load test against a running Tidemark:
// `tidemark bench sync|stream|read|rules|soak`; `latency` starts its own
// server (bench_latency.go).
func bench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: tidemark bench sync|stream|read|rules|soak|latency|fleet [flags]")
	}
	switch args[0] {
	case "sync":
		return benchSync(ctx, args[1:], stdout, stderr)
	case "stream":
		return benchStream(ctx, args[1:], stdout, stderr)
	case "read":
		return benchRead(ctx, args[1:], stdout, stderr)
	case "rules":
		return benchRules(ctx, args[1:], stdout, stderr)
	case "soak":
		return benchSoak(ctx, args[1:], stdout, stderr)
	case "latency":
		return benchLatency(ctx, args[1:], stdout, stderr)
	case "peer": // one side of scripts/bench-peers.sh (bench_peers.go)
		return benchPeer(ctx, args[1:], stdout, stderr)
	case "fleet": // bench_fleet.go
		return benchFleet(ctx, args[1:], stdout, stderr)
	}
	return fmt.Errorf("unknown benchmark %q (want sync, stream, read, rules, soak, latency or fleet)", args[0])
}

// benchTarget is the server a benchmark talks to and how it signs tokens.
type benchTarget struct {
	url, secret, dataDir string
}

func (b *benchTarget) bind(fs *flag.FlagSet) {
	fs.StringVar(&b.url, "url", "http://127.0.0.1:8080/graphql", "GraphQL endpoint of a running Tidemark")
	fs.StringVar(&b.secret, "jwt-secret", env("TIDEMARK_JWT_SECRET", ""), "secret to sign the bench tokens; empty uses the dev secret of --data-dir")
	fs.StringVar(&b.dataDir, "data-dir", env("TIDEMARK_DATA_DIR", defaults.DataDir), "data folder holding the dev secret")
}

// key is the secret the bench signs its tokens with.
func (b *benchTarget) key() ([]byte, error) {
	if b.secret != "" {
		return []byte(b.secret), nil
	}
	k, err := os.ReadFile(filepath.Join(b.dataDir, devSecretFile))
	if err != nil {
		return nil, errors.New("bench: set TIDEMARK_JWT_SECRET to the server's secret, or run against a dev-mode server's --data-dir")
	}
	return k, nil
}

// signer returns a function making a token for a tenant.
func (b *benchTarget) signer() (func(tenant string) string, error) {
	key, err := b.key()
	if err != nil {
		return nil, err
	}
	return func(tenant string) string {
		tok, err := auth.Issue(key, tenant, "bench", 2*time.Hour, time.Now())
		if err != nil {
			panic(err) // only for an empty tenant, which the benchmarks never use
		}
		return tok
	}, nil
}

// clientFor returns a client signed for *tenant, naming a new tenant with
// prefix when none was given.
func (b *benchTarget) clientFor(tenant *string, prefix string) (*loadtest.Client, error) {
	sign, err := b.signer()
	if err != nil {
		return nil, err
	}
	if *tenant == "" {
		*tenant = fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
	}
	c := b.client()
	c.Token = sign(*tenant)
	return c, nil
}

func (b *benchTarget) client() *loadtest.Client {
	return &loadtest.Client{URL: b.url, HTTP: &http.Client{
		Timeout:   time.Minute,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64},
	}}
}

func benchStream(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tidemark bench stream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var target benchTarget
	target.bind(fs)
	var cfg loadtest.StreamConfig
	fs.IntVar(&cfg.Subscribers, "subscribers", 1000, "websocket subscriptions to open")
	fs.IntVar(&cfg.Tenants, "tenants", 1, "tenants the subscribers are spread over (1: every push reaches every subscriber)")
	fs.Float64Var(&cfg.Rate, "rate", 20, "pushes per second")
	fs.DurationVar(&cfg.Duration, "duration", 20*time.Second, "how long to push")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "server process id, to report its memory per connection")
	fs.IntVar(&cfg.Idle, "idle", 0, "instead of pushing: open this many connections with one stream subscription each, no events, and report the server's memory per idle connection (with -server-pid)")
	fs.DurationVar(&cfg.Settle, "settle", 10*time.Second, "with -idle: wait this long after connecting before reading the server's memory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	sign, err := target.signer()
	if err != nil {
		return err
	}
	rep, err := loadtest.Stream(ctx, target.client(), sign, cfg)
	if cfg.Idle > 0 {
		fmt.Fprintf(stdout, "%d idle connections over %d tenant(s)\n%s\n", cfg.Idle, cfg.Tenants, rep)
		return err
	}
	fmt.Fprintf(stdout, "%d subscribers over %d tenant(s), %.0f pushes/s for %s\n%s\n", cfg.Subscribers, cfg.Tenants, cfg.Rate, cfg.Duration, rep)
	return err
}

// benchSoak runs a long mixed load and samples the server's memory,
// goroutines and open files (scripts/soak.sh starts a server for it).
func benchSoak(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tidemark bench soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var target benchTarget
	target.bind(fs)
	var cfg loadtest.SoakConfig
	fs.DurationVar(&cfg.Duration, "duration", 30*time.Minute, "how long the load runs")
	fs.IntVar(&cfg.Pushers, "pushers", 2, "clients pushing batches of edits")
	fs.IntVar(&cfg.Pullers, "pullers", 2, "clients pulling from their checkpoint")
	fs.IntVar(&cfg.Streams, "streams", 10, "websocket subscriptions held open")
	fs.IntVar(&cfg.Readers, "readers", 1, "clients paging the read API")
	fs.DurationVar(&cfg.SampleEvery, "sample-every", 10*time.Second, "sampling interval")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "server process id, to sample its resident memory and open files from /proc")
	fs.StringVar(&cfg.DebugURL, "debug-url", "", "server's debug listener (TIDEMARK_DEBUG_ADDR), e.g. http://127.0.0.1:6060, to sample its Go heap and goroutines")
	if err := fs.Parse(args); err != nil {
		return err
	}
	sign, err := target.signer()
	if err != nil {
		return err
	}
	cfg.Samples = stdout
	rep, err := loadtest.Soak(ctx, target.client(), sign, cfg)
	fmt.Fprint(stdout, rep)
	return err
}

func benchSync(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tidemark bench sync", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var target benchTarget
	target.bind(fs)
	tenant := fs.String("tenant", "", "tenant to write into (default: a new one per run, so the pull counts only this run)")
	var cfg loadtest.SyncConfig
	fs.IntVar(&cfg.Documents, "docs", 100_000, "work orders to push and pull")
	fs.IntVar(&cfg.PushBatch, "push-batch", 100, "rows per push")
	fs.IntVar(&cfg.PushClients, "push-clients", 4, "concurrent pushers")
	fs.IntVar(&cfg.PullLimit, "pull-limit", 1000, "documents per pull page")
	fs.BoolVar(&cfg.PushOnly, "push-only", false, "push only: no pull afterwards")
	fs.BoolVar(&cfg.EncodeDuring, "encode-during", false, "encode each push's request body while the clock runs (the default encodes them all first)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	client, err := target.clientFor(tenant, "bench")
	if err != nil {
		return err
	}
	rep, err := loadtest.Sync(ctx, client, cfg)
	if err != nil {
		return err
	}
	pull := fmt.Sprintf("pull pages of %d", cfg.PullLimit)
	if cfg.PushOnly {
		pull = "no pull"
	}
	fmt.Fprintf(stdout, "tenant %s, %d documents, push batches of %d from %d clients, %s\n%s\n",
		*tenant, cfg.Documents, cfg.PushBatch, cfg.PushClients, pull, rep)
	return nil
}

func benchRead(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tidemark bench read", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var target benchTarget
	target.bind(fs)
	tenant := fs.String("tenant", "", "tenant to read (default: a new one, seeded first)")
	seed := fs.Bool("seed", true, "seed the tenant before measuring")
	var cfg loadtest.ReadConfig
	fs.IntVar(&cfg.WorkOrders, "work-orders", 10_000, "work orders to seed")
	fs.IntVar(&cfg.Clients, "clients", 16, "concurrent clients")
	fs.DurationVar(&cfg.Duration, "duration", 20*time.Second, "how long to query")
	notes := fs.Bool("notes", true, "select each work order's notes too; false reads issue 12's query (title, site, checklist)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.WithoutNotes = !*notes
	client, err := target.clientFor(tenant, "read")
	if err != nil {
		return err
	}
	if *seed {
		if err := loadtest.SeedRead(ctx, client, cfg); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
	}
	rep, err := loadtest.Read(ctx, client, cfg)
	fmt.Fprintf(stdout, "tenant %s, %d work orders, %d clients, %s\n%s\n", *tenant, cfg.WorkOrders, cfg.Clients, cfg.Duration, rep)
	return err
}

func benchRules(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tidemark bench rules", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var target benchTarget
	target.bind(fs)
	var cfg loadtest.RulesConfig
	fs.IntVar(&cfg.WorkOrders, "work-orders", 100_000, "work orders of the tenant, 3 checklist items each")
	fs.IntVar(&cfg.Technicians, "technicians", 1_000, "technicians the work orders are assigned to, evenly")
	fs.IntVar(&cfg.Sites, "sites", 2_000, "sites the work orders are spread over")
	fs.IntVar(&cfg.Batch, "batch", 100, "rows per push (seeding and edits)")
	fs.IntVar(&cfg.SeedClients, "seed-clients", 4, "concurrent seeding pushers")
	fs.IntVar(&cfg.FirstSyncs, "first-syncs", 20, "technicians whose first sync is timed")
	fs.IntVar(&cfg.PullLimit, "pull-limit", 1000, "documents per pull page")
	fs.IntVar(&cfg.PushClients, "push-clients", 4, "concurrent pushers of each push variant")
	fs.IntVar(&cfg.PushRounds, "rounds", 7, "alternating rounds of the push comparison")
	fs.IntVar(&cfg.PushBatches, "push-batches", 16, "batches each pusher sends per round and variant")
	fs.IntVar(&cfg.Reassigns, "reassignments", 200, "reassignments timed, each next to an ordinary edit")
	timeout := fs.Duration("timeout", time.Hour, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	key, err := target.key()
	if err != nil {
		return err
	}
	sign := func(tenant, user, role string) string {
		tok, err := auth.IssueWithRole(key, tenant, user, role, *timeout+time.Hour, time.Now())
		if err != nil {
			panic(err) // only for an empty tenant or user, which the benchmark never uses
		}
		return tok
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	cfg.Log = stderr
	rep, err := loadtest.Rules(ctx, target.client(), sign, cfg)
	fmt.Fprintln(stdout, rep)
	return err
}
