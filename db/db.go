// Package db is Tidemark's storage layer: the pgx pool, embedded migrations,
// the dialect-aware transaction helper and every SQL statement the server
// sends. No GraphQL types appear here; callers pass tenant ids explicitly and
// every statement is scoped by tenant_id.
package db

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"
)

// Dialect is the database the pool talks to. Statements are portable; the
// dialect only chooses the transaction retry protocol (and any statement kept
// behind an explicit switch).
type Dialect int

const (
	PostgreSQL Dialect = iota
	CockroachDB
)

func (d Dialect) String() string {
	if d == CockroachDB {
		return "CockroachDB"
	}
	return "PostgreSQL"
}

// PoolConfig tunes the connection pool. Zero values take the defaults below.
type PoolConfig struct {
	MaxConns          int32
	MinConns          int32
	MaxConnLifetime   time.Duration
	MaxConnIdleTime   time.Duration
	HealthCheckPeriod time.Duration
	// StartupTimeout bounds how long Open keeps retrying the first ping, so a
	// server that starts together with its database waits for it.
	StartupTimeout time.Duration
	// AcquireTimeout bounds the wait for a connection, a new one's opening
	// included (default DefaultAcquireTimeout); StatementTimeout is the
	// sessions' statement_timeout, and the client gives up on a statement
	// a little after it, in case the database never answers (default
	// DefaultStatementTimeout). Negative: no bound. A request past either
	// fails as IsUnavailable.
	AcquireTimeout   time.Duration
	StatementTimeout time.Duration
	// Tracer, if set, sees every query (tests count statements with it).
	Tracer pgx.QueryTracer
	// TracerProvider, if set, traces every statement under the request's
	// span (OpenTelemetry, through otelpgx; see withTracing).
	TracerProvider trace.TracerProvider
}

func (c PoolConfig) withDefaults() PoolConfig {
	if c.MaxConns == 0 {
		c.MaxConns = 16
	}
	if c.MaxConnLifetime == 0 {
		c.MaxConnLifetime = 30 * time.Minute
	}
	if c.MaxConnIdleTime == 0 {
		c.MaxConnIdleTime = 5 * time.Minute
	}
	if c.HealthCheckPeriod == 0 {
		c.HealthCheckPeriod = 30 * time.Second
	}
	if c.StartupTimeout == 0 {
		c.StartupTimeout = 30 * time.Second
	}
	if c.AcquireTimeout == 0 {
		c.AcquireTimeout = DefaultAcquireTimeout
	}
	if c.StatementTimeout == 0 {
		c.StatementTimeout = DefaultStatementTimeout
	}
	return c
}

// DB is a connection pool and the dialect behind it.
type DB struct {
	Pool    *pgxpool.Pool
	Dialect Dialect
	log     *slog.Logger
	health  *healthCheck
	outage  *outageLog
	retried atomic.Pointer[func(sqlstate string)] // ObserveRetries
}

// Open configures the pool, waits for the database with backoff and detects
// its dialect. It does not migrate; see Migrate and CheckSchema.
func Open(ctx context.Context, url string, cfg PoolConfig, log *slog.Logger) (*DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	cfg.Tracer = withTracing(cfg.Tracer, cfg.TracerProvider)
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database URL (want postgres://user:password@host:port/database?sslmode=...): %w", err)
	}
	pc.MaxConns = cfg.MaxConns
	pc.MinConns = cfg.MinConns
	pc.MaxConnLifetime = cfg.MaxConnLifetime
	// Jitter spreads reconnects so a fleet does not recycle all its
	// connections at the same moment.
	pc.MaxConnLifetimeJitter = cfg.MaxConnLifetime / 10
	pc.MaxConnIdleTime = cfg.MaxConnIdleTime
	pc.HealthCheckPeriod = cfg.HealthCheckPeriod
	outage := &outageLog{log: log}
	pc.ConnConfig.Tracer = &boundedTracer{acquire: cfg.AcquireTimeout, statement: cfg.StatementTimeout, next: cfg.Tracer, outage: outage}
	if t := pc.ConnConfig.ConnectTimeout; cfg.AcquireTimeout > 0 && (t == 0 || t > cfg.AcquireTimeout) {
		// A connection opened for a waiting request (and the health
		// check's) gives up with it; the URL's connect_timeout, if
		// shorter, stays.
		pc.ConnConfig.ConnectTimeout = cfg.AcquireTimeout
	}
	if cfg.StatementTimeout > 0 {
		withStatementTimeout(pc.ConnConfig, cfg.StatementTimeout)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("database pool: %w", err)
	}
	if err := pingWithBackoff(ctx, pool, cfg.StartupTimeout, log); err != nil {
		pool.Close()
		return nil, err
	}
	d := &DB{Pool: pool, log: log, health: newHealthCheck(pc.ConnConfig.Copy()), outage: outage}
	var version string
	if err := pool.QueryRow(ctx, stmtVersion).Scan(&version); err != nil {
		pool.Close()
		return nil, fmt.Errorf("database version: %w", err)
	}
	if strings.Contains(version, "CockroachDB") {
		d.Dialect = CockroachDB
	}
	log.Info("database connected", "dialect", d.Dialect.String(), "max_conns", cfg.MaxConns,
		"acquire_timeout", cfg.AcquireTimeout.String(), "statement_timeout", cfg.StatementTimeout.String())
	return d, nil
}

func pingWithBackoff(ctx context.Context, pool *pgxpool.Pool, limit time.Duration, log *slog.Logger) error {
	deadline := time.Now().Add(limit)
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := pool.Ping(pctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if hint := permanentConnectError(err); hint != "" {
			// Retrying cannot help: say what to fix, at once.
			return fmt.Errorf("%s: %w", hint, err)
		}
		if time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("database unreachable after %d attempts: %w", attempt, err)
		}
		log.Warn("database not reachable yet, retrying", "attempt", attempt, "err", err)
		select {
		case <-time.After(wait + rand.N(wait/2)):
		case <-ctx.Done():
			return ctx.Err()
		}
		wait = min(wait*2, 3*time.Second)
	}
}

// permanentConnectError returns what to fix when err is an answer of the
// server that no retry can change (a database that does not exist, a login
// the server refuses), and "" for a failure that may pass (the server is
// down, restarting, or out of connections). It reads SQLSTATEs, never
// message text.
func permanentConnectError(err error) string {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return ""
	}
	switch {
	case pgErr.Code == "3D000": // invalid_catalog_name
		return "the database in TIDEMARK_DATABASE_URL does not exist: create it, or fix the URL's database name"
	case pgErr.Code == "28P01" || pgErr.Code == "28000": // invalid_password, invalid_authorization_specification
		return "the database refused the login: check the user and password in TIDEMARK_DATABASE_URL and the server's pg_hba.conf"
	case pgErr.Code == "42501": // insufficient_privilege
		return "the database user may not connect to this database: grant CONNECT, or use another user"
	}
	return ""
}

// Close closes the pool.
func (d *DB) Close() {
	d.health.close()
	d.Pool.Close()
}

// Ping checks that the database answers.
func (d *DB) Ping(ctx context.Context) error { return d.Pool.Ping(ctx) }

// ErrSchemaOutdated is returned by CheckSchema when the database is behind
// the migrations this binary needs.
var ErrSchemaOutdated = errors.New("database schema is older than this server needs")
