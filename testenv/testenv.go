// Package testenv builds, for tests, Tidemark's real HTTP handler on a
// fresh real PostgreSQL database, wired by the same constructor as
// cmd/tidemark (package wiring). Test packages that use it must run through
// dbtest.Main.
package testenv

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
	"github.com/tidemark/tidemark/doccache"
	"github.com/tidemark/tidemark/livesync"
	"github.com/tidemark/tidemark/server"
	"github.com/tidemark/tidemark/syncengine"
	"github.com/tidemark/tidemark/wiring"
)

// Secret signs the test environment's tokens.
var Secret = []byte("testenv-secret-testenv-secret-0123456789")

// PollInterval is how often the environment looks for other instances'
// commits: shorter than the program's default, so tests of two instances
// on one database do not wait long.
const PollInterval = 50 * time.Millisecond

// Env is one test's server: its database, sync engine and handler.
type Env struct {
	DB      *db.DB
	Cache   *doccache.Cache
	Sync    *syncengine.Engine
	Live    *livesync.Hub
	Handler http.Handler
}

// Options adjust the environment; the zero value is the program's default
// but for PollInterval and the rate limits (off unless set; see New).
type Options struct {
	Pool         db.PoolConfig
	Server       server.Config // Schema, Verifier, Ready, Heads and ResponseContext are filled in
	StreamBuffer int           // events a stream subscriber may have waiting (default: the program's)
	// DB, if set, is used instead of a fresh database: two environments on
	// one DB are two server instances of one deployment.
	DB *db.DB
	// CacheTTL bounds the document cache's staleness (default: the program's).
	CacheTTL time.Duration
	// Verifier, if set, verifies bearer tokens instead of the HS256
	// verifier on Secret (identity-provider tokens); the test closes it.
	Verifier *auth.Verifier
}

// New returns an environment on a fresh database.
func New(tb testing.TB, opts Options) *Env {
	tb.Helper()
	// The request rate limits and the pushes-in-flight limit are off unless
	// a test sets them: tests send bursts from one address and one user
	// that no device sends (server/limits_test.go tests the limits).
	for _, off := range []*float64{&opts.Server.AddressRate, &opts.Server.IdentityRate} {
		if *off == 0 {
			*off = -1
		}
	}
	if opts.Server.PushesInFlight == 0 {
		opts.Server.PushesInFlight = -1
	}
	d := opts.DB
	if d == nil {
		d = dbtest.Open(tb, opts.Pool)
	}
	built, err := wiring.Build(d, wiring.Config{
		Secret:       Secret,
		Verifier:     opts.Verifier,
		PollInterval: PollInterval,
		CacheTTL:     opts.CacheTTL,
		StreamBuffer: opts.StreamBuffer,
		Server:       opts.Server,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(built.Close)
	return &Env{DB: d, Cache: built.Cache, Sync: built.Sync, Live: built.Live, Handler: built.Handler}
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

// TokenWithRole returns a bearer token (without "Bearer ") whose "role"
// claim is role, for the default sync rules.
func TokenWithRole(tb testing.TB, tenantID, userID, role string) string {
	tb.Helper()
	tok, err := auth.IssueWithRole(Secret, tenantID, userID, role, time.Hour, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}
