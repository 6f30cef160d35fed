// Package wiring builds Tidemark's server from its parts, once, for both
// the program (cmd/tidemark) and the tests (testenv): the sync engine on
// the database, the live-sync hub and the document cache listening to its
// commits and to the polling notifier, the read API, the per-response
// dataloaders, the resolvers and the HTTP handler. The defaults of the
// settings it takes are declared here, and only here.
//
// It only wires: opening (or starting) the database, migrating it, the
// listener and shutdown stay with the caller.
package wiring

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/dataloader"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/doccache"
	"github.com/tidemark/tidemark/graph"
	"github.com/tidemark/tidemark/livesync"
	"github.com/tidemark/tidemark/readapi"
	"github.com/tidemark/tidemark/resolvers"
	"github.com/tidemark/tidemark/server"
	"github.com/tidemark/tidemark/syncengine"
	"github.com/tidemark/tidemark/syncrules"
	"github.com/tidemark/tidemark/tombstones"
)

// Defaults of Config's settings, which are also the defaults of the
// program's flags.
const (
	DefaultPollInterval   = 200 * time.Millisecond
	DefaultCacheDocuments = doccache.DefaultMaxDocuments
	DefaultCacheTTL       = doccache.DefaultTTL
	DefaultMaxBodyBytes   = 16 << 20
	// DefaultNotifierOverlap is Config.NotifierOverlap's default.
	DefaultNotifierOverlap = livesync.DefaultOverlap
)

// The notifiers Config.Notifier names.
const (
	// NotifierChanges polls the scopes changed since the last poll, one
	// query per instance per interval whatever the number of tenants
	// (livesync.ChangesNotifier).
	NotifierChanges = "changes"
	// NotifierHeads polls the heads of every tenant with local
	// subscribers (livesync.PollingNotifier), the notifier before 0025.
	NotifierHeads = "heads"
)

// readyTimeout bounds one /readyz check.
const readyTimeout = 2 * time.Second

// Config is what Build needs besides the database. The zero value of every
// setting means its default.
type Config struct {
	// Secret signs and verifies the bearer tokens (HS256), unless
	// Verifier is set.
	Secret []byte
	// Verifier, when set, verifies the bearer tokens instead of an HS256
	// verifier on Secret (identity-provider tokens, see auth.New). It
	// stays the caller's to Close.
	Verifier *auth.Verifier
	// Logger receives the hub's and the poller's lines, and the server's
	// unless Server.Logger is set; nil discards them.
	Logger *slog.Logger
	// PollInterval is how often live sync and the cache look for other
	// instances' commits (default DefaultPollInterval).
	PollInterval time.Duration
	// Notifier is how they look (default NotifierChanges; see
	// docs/benchmarks.md, "Notifier at scale"). NotifierOverlap is how
	// far back NotifierChanges asks each time, for commits in flight
	// (default DefaultNotifierOverlap).
	Notifier        string
	NotifierOverlap time.Duration
	// CacheDocuments and CacheTTL size the by-id document cache (defaults
	// DefaultCacheDocuments and DefaultCacheTTL).
	CacheDocuments int64
	CacheTTL       time.Duration
	// NoCache serves by-id lookups from the database alone. The cache is
	// still built and invalidated, so turning it off changes nothing else.
	NoCache bool
	// CacheChildren lets the document cache keep nested lists by parent (a
	// work order's checklist), so a nested read it has seen needs no round
	// trip for them (see doccache.GetChildren). Off unless set: then only
	// by-id lookups are cached.
	CacheChildren bool
	// StreamBuffer is how many events a stream subscriber may have waiting
	// before it is disconnected (default: resolvers.Resolver's).
	StreamBuffer int
	// SyncRules decide what each caller syncs (partial replication); nil
	// means the default rules (syncrules.Default), under which a token
	// without a role syncs its whole tenant.
	SyncRules *syncrules.Rules
	// TombstoneRetention is how long deleted documents and removals are
	// kept for offline devices; TombstonePurgeInterval how often the purge
	// runs (defaults tombstones.DefaultRetention and DefaultInterval).
	TombstoneRetention     time.Duration
	TombstonePurgeInterval time.Duration
	// PushLimits bound the bytes of one push row and one push (zero:
	// collections.DefaultMaxRowBytes and DefaultMaxPushBytes).
	PushLimits syncengine.PushLimits
	// TracerProvider, when set, traces GraphQL operations and the sync
	// engine's pulls and pushes under them (the database's spans come from
	// the pool: db.PoolConfig.TracerProvider). Nil: Server.TracerProvider,
	// and with neither tracing is off.
	TracerProvider trace.TracerProvider
	// Server configures the HTTP surface. Build fills in Schema, Verifier,
	// Ready, Heads and ResponseContext, and MaxBodyBytes when it is zero
	// (DefaultMaxBodyBytes).
	Server server.Config
}

func (c Config) withDefaults() Config {
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.Notifier == "" {
		c.Notifier = NotifierChanges
	}
	if c.CacheDocuments == 0 {
		c.CacheDocuments = DefaultCacheDocuments
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = DefaultCacheTTL
	}
	if c.Server.MaxBodyBytes == 0 {
		c.Server.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.Server.Logger == nil {
		c.Server.Logger = c.Logger
	}
	if c.TracerProvider == nil {
		c.TracerProvider = c.Server.TracerProvider
	}
	c.Server.TracerProvider = c.TracerProvider
	return c
}

// Built is a wired server: its parts, for callers and tests that look
// inside, and its HTTP handler. Close stops what Build started; the
// database stays open, as it is the caller's.
type Built struct {
	DB      *db.DB
	Sync    *syncengine.Engine
	Live    *livesync.Hub
	Cache   *doccache.Cache
	Handler http.Handler

	stopPolling context.CancelFunc
	polling     chan struct{} // closed when the poller has stopped
}

// Build wires a server on d. The polling notifier and the tombstone purge
// run until Close.
func Build(d *db.DB, cfg Config) (*Built, error) {
	if d == nil {
		return nil, errors.New("wiring: no database")
	}
	if len(cfg.Secret) == 0 && cfg.Verifier == nil {
		return nil, errors.New("wiring: no JWT secret and no verifier")
	}
	cfg = cfg.withDefaults()
	if cfg.Notifier != NotifierChanges && cfg.Notifier != NotifierHeads {
		return nil, fmt.Errorf("wiring: unknown notifier %q (want %q or %q)", cfg.Notifier, NotifierChanges, NotifierHeads)
	}

	engine := syncengine.New(d)
	engine.SetPushLimits(cfg.PushLimits)
	engine.SetTracerProvider(cfg.TracerProvider)
	rules := cfg.SyncRules
	if rules == nil {
		var err error
		if rules, err = syncrules.Default(collections.All()); err != nil {
			return nil, err
		}
	}
	engine.UseRules(rules)
	cache, err := doccache.New(d, doccache.Options{MaxDocuments: cfg.CacheDocuments, TTL: cfg.CacheTTL})
	if err != nil {
		return nil, err
	}
	// The cache hears of a commit before the streams do, so a client that
	// reads by id on a stream event sees the committed documents.
	engine.OnCommit(cache.Committed)
	hub := livesync.New(d, livesync.Options{Logger: cfg.Logger, Observer: cfg.Server.Metrics.Metrics.LiveObserver()})
	engine.OnCommit(func(tenantID string, c *collections.Collection, head int64, _ []collections.Document) {
		hub.Notify(tenantID, c, head)
	})

	cfg.Server.Metrics.Metrics.Connect(d, engine, hub, cache)

	sources := dataloader.Sources{Documents: cache, Lists: d}
	if cfg.CacheChildren {
		sources.Children = cache
	}
	if cfg.NoCache {
		sources.Documents, sources.Children = d, nil
	}
	srv := cfg.Server
	srv.Schema = graph.NewExecutableSchema(graph.Config{
		Resolvers: &resolvers.Resolver{
			Sync: engine, Live: hub, StreamBuffer: cfg.StreamBuffer,
			Read: readapi.New(d), Sources: sources,
		},
		Complexity: resolvers.Complexity(),
	})
	srv.Verifier = cfg.Verifier
	if srv.Verifier == nil {
		srv.Verifier = auth.NewVerifier(cfg.Secret)
	}
	srv.Ready = ready(d)
	if srv.SyncFields == nil {
		srv.SyncFields = resolvers.SyncFields()
	}
	srv.Heads = d
	srv.Unavailable = db.IsUnavailable
	srv.ResponseContext = dataloader.PerResponse(sources)
	handler, err := server.New(srv)
	if err != nil {
		hub.Close()
		cache.Close()
		return nil, err
	}

	ctx, stop := context.WithCancel(context.Background())
	polling := make(chan struct{})
	purger := &tombstones.Purger{Store: d, Retention: cfg.TombstoneRetention, Interval: cfg.TombstonePurgeInterval, Log: cfg.Logger}
	go func() {
		defer close(polling)
		purging := make(chan struct{})
		go func() {
			defer close(purging)
			purger.Run(ctx)
		}()
		notifier(cfg, d, hub, cache).Run(ctx)
		<-purging
	}()
	return &Built{
		DB: d, Sync: engine, Live: hub, Cache: cache, Handler: handler,
		stopPolling: stop, polling: polling,
	}, nil
}

// notifier builds the Notifier cfg names for the hub and the cache.
func notifier(cfg Config, d *db.DB, listeners ...livesync.HeadListener) livesync.Notifier {
	cycle := cfg.Server.Metrics.Metrics.NotifierCycleFunc()
	if cfg.Notifier == NotifierHeads {
		return livesync.PollingNotifier{Heads: d, Listeners: listeners, Interval: cfg.PollInterval, Logger: cfg.Logger, Cycle: cycle}
	}
	return &livesync.ChangesNotifier{Changes: d, Heads: d, Listeners: listeners, Interval: cfg.PollInterval,
		Overlap: cfg.NotifierOverlap, Logger: cfg.Logger, Cycle: cycle}
}

// Close stops the poller, ends every live stream's scope and empties the
// cache. It leaves the database open. Calling it again does nothing more.
func (b *Built) Close() {
	b.stopPolling()
	<-b.polling
	b.Live.Close()
	b.Cache.Close()
}

// ready is /readyz: the database answers and its schema is current. It
// checks on a connection of its own (db.CheckReady), so a busy instance
// whose pool is in full use still reports ready.
func ready(d *db.DB) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, readyTimeout)
		defer cancel()
		err := d.CheckReady(ctx)
		switch {
		case errors.Is(err, db.ErrSchemaOutdated):
			return errors.New("database schema outdated: run `tidemark migrate`")
		case err != nil:
			return errors.New("database unreachable")
		}
		return nil
	}
}
