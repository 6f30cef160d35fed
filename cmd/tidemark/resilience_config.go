package main

import (
	"flag"
	"time"

	"github.com/tidemark/tidemark/db"
)

// ResilienceConfig bounds what a database outage or a deploy costs: how
// long a request may wait for the database, and how the server drains on
// SIGTERM. Zero takes the default; a negative duration turns that bound off.
type ResilienceConfig struct {
	// DBAcquireTimeout bounds the wait for a pooled connection (a new
	// one's opening included); DBStatementTimeout is the sessions'
	// statement_timeout, which the client also enforces, a little later,
	// for a database that answers nothing. Past either, UNAVAILABLE.
	DBAcquireTimeout   time.Duration
	DBStatementTimeout time.Duration
	// DrainDelay is how long, on SIGTERM, /readyz answers 503 while the
	// server still serves, before the listener closes: load balancers
	// notice and send new clients elsewhere. It counts within the shutdown
	// timeout (at most half of it); what is left is for requests in flight.
	DrainDelay time.Duration
}

var defaultResilience = ResilienceConfig{
	DBAcquireTimeout:   db.DefaultAcquireTimeout,
	DBStatementTimeout: db.DefaultStatementTimeout,
	DrainDelay:         5 * time.Second,
}

func (r ResilienceConfig) withDefaults() ResilienceConfig {
	fill(&r.DBAcquireTimeout, defaultResilience.DBAcquireTimeout)
	fill(&r.DBStatementTimeout, defaultResilience.DBStatementTimeout)
	fill(&r.DrainDelay, defaultResilience.DrainDelay)
	return r
}

// bindResilience registers the timeouts' and the drain's flags and variables.
func bindResilience(fs *flag.FlagSet, r *ResilienceConfig, errs *envErrors) {
	fs.DurationVar(&r.DBAcquireTimeout, "db-acquire-timeout", errs.duration("TIDEMARK_DB_ACQUIRE_TIMEOUT", defaultResilience.DBAcquireTimeout), "longest wait for a database connection, opening one included; then UNAVAILABLE; negative: no bound (TIDEMARK_DB_ACQUIRE_TIMEOUT)")
	fs.DurationVar(&r.DBStatementTimeout, "db-statement-timeout", errs.duration("TIDEMARK_DB_STATEMENT_TIMEOUT", defaultResilience.DBStatementTimeout), "the database sessions' statement_timeout (lock waits included); then UNAVAILABLE; negative: no bound (TIDEMARK_DB_STATEMENT_TIMEOUT)")
	fs.DurationVar(&r.DrainDelay, "drain-delay", errs.duration("TIDEMARK_DRAIN_DELAY", defaultResilience.DrainDelay), "on shutdown, how long /readyz answers 503 before the listener closes, within the shutdown timeout; negative: close at once (TIDEMARK_DRAIN_DELAY)")
}

// poolConfig is the pool's configuration of these settings.
func (r ResilienceConfig) poolConfig(maxConns int) db.PoolConfig {
	return db.PoolConfig{MaxConns: int32(maxConns), AcquireTimeout: r.DBAcquireTimeout, StatementTimeout: r.DBStatementTimeout}
}
