package db

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults of PoolConfig's timeouts.
const (
	// DefaultAcquireTimeout bounds the wait for a pooled connection,
	// opening a new one included.
	DefaultAcquireTimeout = 5 * time.Second
	// DefaultStatementTimeout is the session's statement_timeout: the
	// database cancels a statement (a lock wait included) that runs longer.
	DefaultStatementTimeout = 30 * time.Second
	// statementGrace is how long past statement_timeout (at most as long
	// again) the client waits before giving up on its own: long enough for the server's own
	// cancellation to arrive first, so only a database that answers
	// nothing at all (a network that drops packets) meets the client's.
	statementGrace = 2 * time.Second
)

// withStatementTimeout sets the sessions' statement_timeout, in
// milliseconds, as a startup option of every connection (PostgreSQL and
// CockroachDB both read "-c name=value" from the options parameter, as from
// a connection string's options=). A SET after connecting would cost each
// new connection a round trip, paid by whichever request opened it. A
// statement_timeout the URL's options already set is kept.
func withStatementTimeout(c *pgx.ConnConfig, d time.Duration) {
	options := c.RuntimeParams["options"]
	if strings.Contains(options, "statement_timeout") {
		return
	}
	setting := fmt.Sprintf("-c statement_timeout=%d", d.Milliseconds())
	if options != "" {
		setting = options + " " + setting
	}
	c.RuntimeParams["options"] = setting
}

// boundedTracer gives every pool acquire and every statement a deadline of
// its own, so that no request stalls for as long as a database hang lasts
// (statement_timeout cannot help when the database never receives the
// statement), and watches the statements' outcomes for outages. It wraps
// the configured tracer, if any.
type boundedTracer struct {
	acquire   time.Duration // <= 0: no bound
	statement time.Duration // <= 0: no bound
	next      pgx.QueryTracer
	outage    *outageLog
}

// It implements every tracer interface pgx and pgxpool look for, handing
// each call on to the wrapped tracer when that implements it too (an
// OpenTelemetry tracer does).
var (
	_ pgx.QueryTracer       = (*boundedTracer)(nil)
	_ pgx.BatchTracer       = (*boundedTracer)(nil)
	_ pgx.CopyFromTracer    = (*boundedTracer)(nil)
	_ pgx.PrepareTracer     = (*boundedTracer)(nil)
	_ pgx.ConnectTracer     = (*boundedTracer)(nil)
	_ pgxpool.AcquireTracer = (*boundedTracer)(nil)
)

type boundKey struct{}

// bound returns ctx with a deadline d from now (none when d <= 0) and its
// cancel function stored in it, for release. A bound's deadline is never
// later than one ctx already has.
func bound(ctx context.Context, d time.Duration) context.Context {
	if d <= 0 {
		return context.WithValue(ctx, boundKey{}, context.CancelFunc(func() {}))
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	return context.WithValue(ctx, boundKey{}, cancel)
}

func release(ctx context.Context) {
	if cancel, ok := ctx.Value(boundKey{}).(context.CancelFunc); ok {
		cancel()
	}
}

func (t *boundedTracer) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	ctx = bound(ctx, t.statementBound())
	if t.next != nil {
		ctx = t.next.TraceQueryStart(ctx, conn, data)
	}
	return ctx
}

func (t *boundedTracer) TraceQueryEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryEndData) {
	if t.next != nil {
		t.next.TraceQueryEnd(ctx, conn, data)
	}
	t.outage.observe(data.Err)
	release(ctx)
}

func (t *boundedTracer) TraceBatchStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	ctx = bound(ctx, t.statementBound())
	if next, ok := t.next.(pgx.BatchTracer); ok {
		ctx = next.TraceBatchStart(ctx, conn, data)
	}
	return ctx
}

func (t *boundedTracer) TraceBatchQuery(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchQueryData) {
	if next, ok := t.next.(pgx.BatchTracer); ok {
		next.TraceBatchQuery(ctx, conn, data)
	}
}

func (t *boundedTracer) TraceBatchEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchEndData) {
	if next, ok := t.next.(pgx.BatchTracer); ok {
		next.TraceBatchEnd(ctx, conn, data)
	}
	t.outage.observe(data.Err)
	release(ctx)
}

func (t *boundedTracer) TraceAcquireStart(ctx context.Context, pool *pgxpool.Pool, data pgxpool.TraceAcquireStartData) context.Context {
	ctx = bound(ctx, t.acquire)
	if next, ok := t.next.(pgxpool.AcquireTracer); ok {
		ctx = next.TraceAcquireStart(ctx, pool, data)
	}
	return ctx
}

func (t *boundedTracer) TraceAcquireEnd(ctx context.Context, pool *pgxpool.Pool, data pgxpool.TraceAcquireEndData) {
	if next, ok := t.next.(pgxpool.AcquireTracer); ok {
		next.TraceAcquireEnd(ctx, pool, data)
	}
	if data.Err != nil && !saturated(pool) {
		// A connection handed out proves nothing (it may be idle from
		// before an outage); a failure to get one does, unless every
		// connection was busy: that is load, not an outage (the request
		// still answers UNAVAILABLE; the pool's metrics show it).
		t.outage.observe(data.Err)
	}
	release(ctx)
}

func (t *boundedTracer) TraceCopyFromStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceCopyFromStartData) context.Context {
	ctx = bound(ctx, t.statementBound())
	if next, ok := t.next.(pgx.CopyFromTracer); ok {
		ctx = next.TraceCopyFromStart(ctx, conn, data)
	}
	return ctx
}

func (t *boundedTracer) TraceCopyFromEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceCopyFromEndData) {
	if next, ok := t.next.(pgx.CopyFromTracer); ok {
		next.TraceCopyFromEnd(ctx, conn, data)
	}
	t.outage.observe(data.Err)
	release(ctx)
}

// Prepare runs inside a query (bounded there) or on its own; connecting
// is bounded by ConnectTimeout. Both are only handed on.

func (t *boundedTracer) TracePrepareStart(ctx context.Context, conn *pgx.Conn, data pgx.TracePrepareStartData) context.Context {
	if next, ok := t.next.(pgx.PrepareTracer); ok {
		ctx = next.TracePrepareStart(ctx, conn, data)
	}
	return ctx
}

func (t *boundedTracer) TracePrepareEnd(ctx context.Context, conn *pgx.Conn, data pgx.TracePrepareEndData) {
	if next, ok := t.next.(pgx.PrepareTracer); ok {
		next.TracePrepareEnd(ctx, conn, data)
	}
}

func (t *boundedTracer) TraceConnectStart(ctx context.Context, data pgx.TraceConnectStartData) context.Context {
	if next, ok := t.next.(pgx.ConnectTracer); ok {
		ctx = next.TraceConnectStart(ctx, data)
	}
	return ctx
}

func (t *boundedTracer) TraceConnectEnd(ctx context.Context, data pgx.TraceConnectEndData) {
	if next, ok := t.next.(pgx.ConnectTracer); ok {
		next.TraceConnectEnd(ctx, data)
	}
}

func saturated(pool *pgxpool.Pool) bool {
	st := pool.Stat()
	return st.AcquiredConns() >= st.MaxConns()
}

func (t *boundedTracer) statementBound() time.Duration {
	if t.statement <= 0 {
		return 0
	}
	return t.statement + min(statementGrace, t.statement)
}

// outageLog logs the database's state changes, once each: the first
// failure that means the database is out ("database unavailable"), and the
// first statement that succeeds after it ("database reachable again").
// Requests during an outage answer UNAVAILABLE without a line each.
type outageLog struct {
	log  *slog.Logger
	down atomic.Bool // fast path: every statement reads it

	mu       sync.Mutex
	since    time.Time
	failures int
}

func (o *outageLog) observe(err error) {
	switch {
	case err == nil:
		if !o.down.Load() {
			return
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.down.CompareAndSwap(true, false) {
			o.log.Warn("database reachable again", "down_for", time.Since(o.since).Round(time.Millisecond).String(), "failures", o.failures)
		}
	case IsUnavailable(err):
		o.mu.Lock()
		defer o.mu.Unlock()
		o.failures++
		if o.down.CompareAndSwap(false, true) {
			o.since, o.failures = time.Now(), 1
			o.log.Error("database unavailable: requests answer UNAVAILABLE until it is reachable again", "err", err)
		}
	}
}

// Unavailable reports whether the database is in an outage: the last
// statement or acquire failed as IsUnavailable describes and none has
// succeeded since.
func (d *DB) Unavailable() bool { return d.outage.down.Load() }
