package db

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
)

// healthCheck owns one connection outside the pool for readiness checks.
// A busy instance uses every pooled connection; if its readiness probe
// waited for one of them it would report the database unreachable exactly
// when it is busiest, and a load balancer would take every busy instance
// out at once.
type healthCheck struct {
	config *pgx.ConnConfig
	// turn holds the connection; taking it is how a check waits its turn
	// (with its context, unlike a mutex).
	turn chan *pgx.Conn
	// closed is set by DB.Close: a closed DB is never ready, though the
	// database itself may still answer.
	closed atomic.Bool
}

func newHealthCheck(config *pgx.ConnConfig) *healthCheck {
	h := &healthCheck{config: config, turn: make(chan *pgx.Conn, 1)}
	h.turn <- nil // no connection yet: the first check makes it
	return h
}

// CheckReady fails when the database does not answer on the health
// connection, or lacks migrations this binary needs (ErrSchemaOutdated).
// It never waits for the pool.
func (d *DB) CheckReady(ctx context.Context) error {
	h := d.health
	if h.closed.Load() {
		return errors.New("database pool closed")
	}
	var conn *pgx.Conn
	select {
	case conn = <-h.turn:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { h.turn <- conn }()
	if conn == nil || conn.IsClosed() {
		c, err := pgx.ConnectConfig(ctx, h.config)
		if err != nil {
			return fmt.Errorf("health connection: %w", err)
		}
		conn = c
	}
	var have int64
	err := conn.QueryRow(ctx, stmtSchemaVersion).Scan(&have)
	if SQLState(err) == sqlstateUndefinedTable {
		have, err = 0, nil
	}
	if err != nil {
		// The connection may be broken; the next check makes a new one.
		_ = conn.Close(context.WithoutCancel(ctx))
		conn = nil
		return fmt.Errorf("health check: %w", err)
	}
	want, err := RequiredSchemaVersion()
	if err != nil {
		return err
	}
	if have < want {
		return fmt.Errorf("%w (database at version %d, server needs %d): run `tidemark migrate`", ErrSchemaOutdated, have, want)
	}
	return nil
}

func (h *healthCheck) close() {
	h.closed.Store(true)
	select {
	case conn := <-h.turn:
		if conn != nil {
			_ = conn.Close(context.Background())
		}
		h.turn <- nil
	default:
		// A check holds the connection; it is closed with the process.
	}
}
