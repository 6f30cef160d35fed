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

// bench runs a load test against a running Tidemark: `tidemark bench sync`.
func bench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "sync" {
		return errors.New("usage: tidemark bench sync [flags]")
	}
	fs := flag.NewFlagSet("tidemark bench sync", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:8080/graphql", "GraphQL endpoint of a running Tidemark")
	tenant := fs.String("tenant", "", "tenant to write into (default: a new one per run, so the pull counts only this run)")
	secret := fs.String("jwt-secret", env("TIDEMARK_JWT_SECRET", ""), "secret to sign the bench token; empty uses the dev secret of --data-dir")
	dataDir := fs.String("data-dir", env("TIDEMARK_DATA_DIR", "./tidemark-data"), "data folder holding the dev secret")
	var cfg loadtest.SyncConfig
	fs.IntVar(&cfg.Documents, "docs", 100_000, "work orders to push and pull")
	fs.IntVar(&cfg.PushBatch, "push-batch", 100, "rows per push")
	fs.IntVar(&cfg.PushClients, "push-clients", 4, "concurrent pushers")
	fs.IntVar(&cfg.PullLimit, "pull-limit", 1000, "documents per pull page")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	key := []byte(*secret)
	if len(key) == 0 {
		b, err := os.ReadFile(filepath.Join(*dataDir, devSecretFile))
		if err != nil {
			return errors.New("bench: set TIDEMARK_JWT_SECRET to the server's secret, or run against a dev-mode server's --data-dir")
		}
		key = b
	}
	if *tenant == "" {
		*tenant = fmt.Sprintf("bench-%d", time.Now().UnixNano())
	}
	tok, err := auth.Issue(key, *tenant, "bench", 2*time.Hour, time.Now())
	if err != nil {
		return err
	}
	client := &loadtest.Client{URL: *url, Token: tok, HTTP: &http.Client{
		Timeout:   time.Minute,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64},
	}}
	rep, err := loadtest.Sync(ctx, client, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "tenant %s, %d documents, push batches of %d from %d clients, pull pages of %d\n%s\n",
		*tenant, cfg.Documents, cfg.PushBatch, cfg.PushClients, cfg.PullLimit, rep)
	return nil
}
