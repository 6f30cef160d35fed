// Package testenv builds, for tests, Tidemark's real HTTP handler on a
// fresh real PostgreSQL database, wired the way cmd/tidemark wires it.
// Test packages that use it must run through dbtest.Main.
package testenv

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/dataloader"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
	"github.com/tidemark/tidemark/doccache"
	"github.com/tidemark/tidemark/graph"
	"github.com/tidemark/tidemark/livesync"
	"github.com/tidemark/tidemark/readapi"
	"github.com/tidemark/tidemark/resolvers"
	"github.com/tidemark/tidemark/server"
	"github.com/tidemark/tidemark/syncengine"
)

// Secret signs the test environment's tokens.
var Secret = []byte("testenv-secret-testenv-secret-0123456789")

// Env is one test's server: its database, sync engine and handler.
type Env struct {
	DB      *db.DB
	Cache   *doccache.Cache
	Sync    *syncengine.Engine
	Live    *livesync.Hub
	Handler http.Handler
}

// Options adjust the environment; the zero value is the production default.
type Options struct {
	Pool         db.PoolConfig
	Server       server.Config // Schema, Verifier and Ready are filled in
	StreamBuffer int           // events a stream subscriber may have waiting (default 16)
	// DB, if set, is used instead of a fresh database: two environments on
	// one DB are two server instances of one deployment.
	DB *db.DB
	// CacheTTL bounds the document cache's staleness (default 5s).
	CacheTTL time.Duration
}

// New returns an environment on a fresh database.
func New(tb testing.TB, opts Options) *Env {
	tb.Helper()
	d := opts.DB
	if d == nil {
		d = dbtest.Open(tb, opts.Pool)
	}
	engine := syncengine.New(d)
	hub := livesync.New(d, livesync.Options{})
	engine.OnCommit(func(tenantID string, c *collections.Collection, head int64, _ []collections.Document) {
		hub.Notify(tenantID, c, head)
	})
	cache, err := doccache.New(d, doccache.Options{TTL: opts.CacheTTL})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cache.Close)
	engine.OnCommit(cache.Committed)
	sources := dataloader.Sources{Documents: cache, Lists: d}
	cfg := opts.Server
	cfg.Schema = graph.NewExecutableSchema(graph.Config{
		Resolvers: &resolvers.Resolver{
			Sync: engine, Live: hub, StreamBuffer: opts.StreamBuffer,
			Read: readapi.New(d), Sources: sources,
		},
		Complexity: resolvers.Complexity(),
	})
	cfg.Verifier = auth.NewVerifier(Secret)
	cfg.Ready = d.CheckSchema
	cfg.ResponseContext = dataloader.PerResponse(sources)
	cfg.Heads = d
	ctx, cancel := context.WithCancel(context.Background())
	go livesync.PollingNotifier{Heads: d, Listeners: []livesync.HeadListener{hub, cache}, Interval: 50 * time.Millisecond}.Run(ctx)
	tb.Cleanup(func() { cancel(); hub.Close() })
	handler, err := server.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return &Env{DB: d, Cache: cache, Sync: engine, Live: hub, Handler: handler}
}

// Token returns a bearer token (without "Bearer ") for the identity.
func Token(tb testing.TB, tenantID, userID string) string {
	tb.Helper()
	tok, err := auth.Issue(Secret, tenantID, userID, time.Hour, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// Serve starts a real HTTP listener on 127.0.0.1:0 for the environment and
// returns its base URL (http://127.0.0.1:PORT); it closes when the test ends.
func (e *Env) Serve(tb testing.TB) string {
	tb.Helper()
	srv := httptest.NewServer(e.Handler)
	tb.Cleanup(srv.Close)
	return srv.URL
}
