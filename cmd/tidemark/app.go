package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/pgcluster"
	"github.com/tidemark/tidemark/server"
	"github.com/tidemark/tidemark/syncrules"
	"github.com/tidemark/tidemark/wiring"
)

// Dev-mode identity: the tenant and user of the token logged at start-up.
const (
	devTenant = "dev"
	devUser   = "dev-user"
)

// Main is the whole running program. Run starts it and returns once it
// listens; Close stops it. End-to-end tests start it on port :0.
type Main struct {
	Config Config
	Log    *slog.Logger

	cluster  *pgcluster.Cluster
	db       *db.DB
	built    *wiring.Built
	verifier *auth.Verifier
	listener net.Listener
	http     *http.Server
	debug    *http.Server
	serveErr chan error
	tracing  *tracing         // nil: tracing off
	metrics  *metricsEndpoint // nil: metrics off (metrics_config.go)

	background     context.Context
	stopBackground context.CancelFunc
	// draining ends when shutdown begins (/readyz answers 503); the
	// websockets are closed with 1001 as the listener closes. See Shutdown.
	draining   context.Context
	drain      context.CancelFunc
	websockets *server.Websockets
	closeOnce  sync.Once
	closeErr   error

	// DevToken is the token logged in dev mode (empty otherwise).
	DevToken string
}

// Addr is the address the server listens on, once Run has returned.
func (m *Main) Addr() string { return m.listener.Addr().String() }

// Run opens the database (starting the embedded one if no URL is set),
// migrates it in dev mode, refuses an outdated schema, and starts serving.
func (m *Main) Run(ctx context.Context) (err error) {
	m.Config = m.Config.withDefaults()
	// Settings that can be checked alone are checked before anything starts,
	// so a bad one is reported at once, not after waiting for a database.
	if err := m.Config.validate(); err != nil {
		return err
	}
	// The rules file is read before anything starts: a bad rule stops the
	// start with its file and line.
	rules, err := syncrules.Load(m.Config.SyncRules, collections.All())
	if err != nil {
		return fmt.Errorf("sync rules: %w", err)
	}
	defer func() {
		if err != nil {
			m.Close(context.WithoutCancel(ctx))
		}
	}()
	// The port is taken before anything starts: a port in use stops the
	// start at once, before an embedded PostgreSQL starts or a database
	// is waited for.
	if m.listener, err = listen(m.Config.ListenAddr()); err != nil {
		return err
	}
	if m.tracing, err = startTracing(ctx, m.Config.Tracing, m.Log); err != nil {
		return err
	}
	if m.metrics, err = startMetrics(m.Config.Metrics, m.Log); err != nil {
		return err
	}
	m.metrics.serverConfig().Metrics.SetRegion(m.Config.Region)
	if !m.Config.DevMode() {
		// A JWKS URL is fetched here, before the database: a JWKS that
		// cannot be read stops the start at once, with the URL and why.
		m.verifier, err = auth.New(context.WithoutCancel(ctx), m.Config.AuthConfig([]byte(m.Config.JWTSecret), m.Log))
		if err != nil {
			return err
		}
	}
	if err := m.openDatabase(ctx); err != nil {
		return err
	}
	if m.Config.DevMode() || m.cluster != nil {
		if err := m.db.Migrate(ctx); err != nil {
			return err
		}
		placement, _ := m.Config.Placement.Placement() // checked by validate
		if err := m.db.ApplyPlacement(ctx, placement); err != nil {
			return err
		}
	}
	if err := m.db.CheckSchema(ctx); err != nil {
		return err
	}
	secret, err := m.jwtSecret()
	if err != nil {
		return err
	}
	if m.verifier == nil {
		if m.verifier, err = auth.New(context.WithoutCancel(ctx), m.Config.AuthConfig(secret, m.Log)); err != nil {
			return err
		}
	}

	m.draining, m.drain = context.WithCancel(context.Background())
	m.websockets = server.NewWebsockets()
	m.built, err = wiring.Build(m.db, wiring.Config{
		Verifier:       m.verifier,
		Logger:         m.Log,
		PollInterval:   m.Config.PollInterval,
		Notifier:       m.Config.Notifier,
		CacheDocuments: m.Config.CacheDocuments,
		CacheTTL:       m.Config.CacheTTL,
		NoCache:        m.Config.NoCache,
		CacheChildren:  !m.Config.NoCacheChildren,
		SyncRules:      rules,

		TombstoneRetention:     m.Config.TombstoneRetention,
		TombstonePurgeInterval: m.Config.TombstonePurgeInterval,
		NotifierOverlap:        m.Config.NotifierOverlap,
		PushLimits:             m.Config.PushLimits,
		TracerProvider:         m.tracing.Provider(),
		Server: m.Config.RequestLimits.into(server.Config{
			Introspection:   m.Config.IntrospectionEnabled(),
			PlaygroundToken: m.DevToken,
			Demo:            m.Config.DemoEnabled(),
			DevTokens:       m.devTokens(secret),
			AllowedOrigins:  m.Config.Origins(),
			MaxBodyBytes:    m.Config.MaxBodyBytes,
			WebsocketLimits: m.Config.WebsocketLimits,
			Draining:        m.draining,
			Websockets:      m.websockets,
			Metrics:         m.metrics.serverConfig(),
			Region:          m.Config.Region,
		}),
	})
	if err != nil {
		return err
	}
	// Bucket rows follow the rules before anyone syncs: computed once for
	// data from before the rules, again when the rules file changed.
	rebuilt, err := m.built.Sync.RebuildMemberships(ctx)
	if err != nil {
		return err
	}
	m.Log.Info("bucket membership is current", "rebuild", rebuilt)
	// Websockets live until Close cancels this context; closing it ends
	// every websocket, so clients reconnect elsewhere.
	m.background, m.stopBackground = context.WithCancel(context.WithoutCancel(ctx))
	m.http = &http.Server{
		Handler:           m.built.Handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          server.HTTPErrorLog(m.Log),
		BaseContext:       func(net.Listener) context.Context { return m.background },
	}
	m.serveErr = make(chan error, 1)
	go func() { m.serveErr <- m.http.Serve(m.listener) }()
	if m.Config.DebugAddr != "" {
		if err := m.serveDebug(); err != nil {
			return err
		}
	}

	m.Log.Info("tidemark is serving", "addr", m.Addr(), "playground", "http://"+browsable(m.Addr())+"/",
		"dev_mode", m.Config.DevMode(), "dialect", m.db.Dialect.String(), "region", m.Config.Region)
	if m.Config.DevMode() && m.Config.Addr == "" {
		m.Log.Info("dev mode listens on loopback only, as it hands out a token: set TIDEMARK_ADDR (e.g. :8080) to listen on other interfaces", "addr", m.Addr())
	}
	if m.DevToken != "" {
		m.Log.Info("dev mode: use this token (tenant "+devTenant+", user "+devUser+")", "authorization", "Bearer "+m.DevToken)
	}
	return nil
}

// serveDebug serves Go's profiler on its own listener, never on the public
// one: profiles reveal internals and cost CPU.
func (m *Main) serveDebug() error {
	ln, err := net.Listen("tcp", m.Config.DebugAddr)
	if err != nil {
		return fmt.Errorf("debug listener on %s: %w", m.Config.DebugAddr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	m.debug = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: server.HTTPErrorLog(m.Log)}
	go m.debug.Serve(ln)
	m.Log.Info("debug listener serving /debug/pprof", "addr", ln.Addr().String())
	return nil
}

// Wait blocks until the server stops on its own (a listener failure) or ctx ends.
func (m *Main) Wait(ctx context.Context) error {
	select {
	case err := <-m.serveErr:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
		return nil
	}
}

func (m *Main) openDatabase(ctx context.Context) error {
	url := m.Config.DatabaseURL
	if url == "" {
		// Supervised: a postmaster that dies while we serve is restarted
		// (requests fail and /readyz is false meanwhile), not left dead.
		cluster, err := pgcluster.Start(ctx, pgcluster.Config{DataDir: m.Config.DataDir, Logger: m.Log, Supervise: true})
		if err != nil {
			return fmt.Errorf("embedded PostgreSQL: %w", err)
		}
		m.cluster = cluster
		if err := cluster.CreateDatabase(ctx, "tidemark"); err != nil {
			return err
		}
		url = cluster.URL("tidemark")
		m.Log.Info("embedded PostgreSQL started", "data_dir", cluster.DataDir(), "cluster_dir", cluster.ClusterDir(), "port", cluster.Port())
	}
	pool := m.Config.Resilience.poolConfig(m.Config.DBMaxConns)
	pool.TracerProvider = m.tracing.Provider()
	d, err := db.Open(ctx, url, pool, m.Log)
	if err != nil {
		return err
	}
	m.db = d
	return nil
}

// jwtSecret returns the configured secret or, in dev mode, a dev secret
// (kept in the data folder when Tidemark manages one, so dev tokens survive
// restarts) and the token for the dev identity.
func (m *Main) jwtSecret() ([]byte, error) {
	if !m.Config.DevMode() {
		return []byte(m.Config.JWTSecret), nil
	}
	secret, err := devSecret(m.Config.DataDir, m.cluster != nil)
	if err != nil {
		return nil, err
	}
	m.DevToken, err = auth.Issue(secret, devTenant, devUser, 30*24*time.Hour, time.Now())
	return secret, err
}

const devSecretFile = "dev-jwt-secret"

func devSecret(dataDir string, persist bool) ([]byte, error) {
	path := filepath.Join(dataDir, devSecretFile)
	if persist {
		if b, err := os.ReadFile(path); err == nil && len(b) >= 32 {
			return b, nil
		}
	}
	secret, err := auth.GenerateSecret()
	if err != nil {
		return nil, err
	}
	if persist {
		if err := os.WriteFile(path, secret, 0o600); err != nil {
			return nil, fmt.Errorf("save dev secret: %w", err)
		}
	}
	return secret, nil
}

// Shutdown stops the program as SIGTERM asks, draining it: /readyz answers
// 503 at once while everything is still served; after the drain delay
// (load balancers have noticed by then) Close runs with what is left of
// the shutdown timeout. The drain delay takes at most half of it. Dev mode
// has no load balancer to wait for (it listens on loopback), so Ctrl-C
// stops it at once.
func (m *Main) Shutdown(ctx context.Context) error {
	start := time.Now()
	m.beginDrain()
	delay := min(m.Config.Resilience.DrainDelay, m.Config.ShutdownTimeout/2)
	if m.Config.DevMode() {
		delay = 0
	}
	if delay > 0 {
		m.Log.Info("shutting down: not ready; the listener closes after the drain delay", "drain_delay", delay.String())
		select {
		case <-time.After(delay):
		case <-ctx.Done():
		}
	}
	return m.close(ctx, m.Config.ShutdownTimeout-time.Since(start))
}

// Close shuts down gracefully, without a drain delay: readiness turns
// false, the listener closes, websockets close with 1001 (going away),
// requests in flight may finish within the shutdown timeout; then the
// pool closes and the embedded database stops. A request still running at
// the timeout (a push waiting on a row lock) is canceled: that is logged,
// not an error, since the shutdown itself went as it should.
func (m *Main) Close(ctx context.Context) error { return m.close(ctx, m.Config.ShutdownTimeout) }

func (m *Main) beginDrain() {
	if m.drain != nil {
		m.drain()
	}
}

func (m *Main) close(ctx context.Context, inFlight time.Duration) error {
	m.closeOnce.Do(func() { m.closeErr = m.stop(ctx, inFlight) })
	return m.closeErr
}

func (m *Main) stop(ctx context.Context, inFlight time.Duration) error {
	var errs []error
	m.beginDrain()
	if m.http != nil {
		sctx, cancel := context.WithTimeout(ctx, max(inFlight, 0))
		// Shutdown closes the listener first, then closes the websockets
		// (hijacked, so Shutdown does not wait for them) and waits for the
		// requests in flight.
		wentAway := make(chan struct{})
		m.http.RegisterOnShutdown(func() {
			defer close(wentAway)
			m.websockets.GoAway(sctx)
		})
		if err := m.http.Shutdown(sctx); err != nil {
			// Ending the requests' base context cancels their statements,
			// which would otherwise hold the pool (and Close) open;
			// closing their connections ends the rest.
			m.Log.Warn("shutdown timeout: canceling the requests still in flight", "timeout", inFlight.String(), "err", err)
			m.stopBackground()
			m.http.Close()
		}
		<-wentAway
		cancel()
	} else if m.listener != nil {
		m.listener.Close() // Run stopped before serving
	}
	if m.debug != nil {
		m.debug.Close()
	}
	m.metrics.Close()
	if m.stopBackground != nil {
		// Websockets that still run (their close frames written, their
		// peers not gone yet) end with their base context.
		m.stopBackground()
	}
	if m.built != nil {
		m.built.Close()
	}
	if m.verifier != nil {
		m.verifier.Close()
	}
	if m.db != nil {
		m.db.Close()
	}
	if m.cluster != nil {
		if err := m.cluster.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop embedded PostgreSQL: %w", err))
		}
	}
	// Last: the spans of the requests that shutdown let finish go out too.
	// A collector that cannot take them costs the spans, not the exit status.
	if err := m.tracing.Close(ctx); err != nil {
		m.Log.Warn("tracing: spans not sent at shutdown", "err", err)
	}
	return errors.Join(errs...)
}

// listen takes the server's port. A port in use gets a message that says
// what to do about it.
func listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("listen on %s: the address is already in use, by another Tidemark or another program: stop it, or choose another address with --addr or TIDEMARK_ADDR", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// browsable turns a listen address like [::]:8080 into one a browser opens.
func browsable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "::" || host == "0.0.0.0" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
