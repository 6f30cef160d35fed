package db

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	crdbpgx "github.com/cockroachdb/cockroach-go/v2/crdb/crdbpgxv5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// SQLSTATE codes Tidemark tells errors apart by.
const (
	sqlstateSerializationFailure = "40001"
	sqlstateDeadlockDetected     = "40P01"
	sqlstateUndefinedTable       = "42P01"
)

// maxTxAttempts bounds retries of a whole transaction on PostgreSQL.
const maxTxAttempts = 10

// TxOptions are the options of one transaction; the zero value is the
// database's default isolation, read-write.
type TxOptions = pgx.TxOptions

// RunTx runs fn in a transaction and commits it, retrying the whole
// transaction when the database asks for a retry. Every write goes through it.
//
// On CockroachDB it uses cockroach-go's ExecuteTx (savepoint-based retries).
// On PostgreSQL that protocol would hide a failed COMMIT, so RunTx retries
// whole transactions on serialization failures (40001) and deadlocks (40P01)
// and returns every other error, COMMIT's included. fn may run more than
// once and must not have effects outside the transaction.
func (d *DB) RunTx(ctx context.Context, opts TxOptions, fn func(pgx.Tx) error) error {
	if d.Dialect == CockroachDB {
		return crdbpgx.ExecuteTx(ctx, d.Pool, opts, fn)
	}
	var err error
	for attempt := 1; attempt <= maxTxAttempts; attempt++ {
		err = runTxOnce(ctx, d, opts, fn)
		if err == nil || !retryable(err) {
			return err
		}
		d.log.Debug("transaction retry", "attempt", attempt, "err", err)
		backoff := time.Duration(attempt*attempt) * 2 * time.Millisecond
		select {
		case <-time.After(backoff + rand.N(backoff)):
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		}
	}
	return fmt.Errorf("transaction failed after %d attempts: %w", maxTxAttempts, err)
}

func runTxOnce(ctx context.Context, d *DB, opts TxOptions, fn func(pgx.Tx) error) (err error) {
	tx, err := d.Pool.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			// Rollback after a failed COMMIT is a no-op; its own error adds nothing.
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func retryable(err error) bool {
	code := SQLState(err)
	return code == sqlstateSerializationFailure || code == sqlstateDeadlockDetected
}

// SQLState returns the SQLSTATE of the database error in err's chain, or "".
func SQLState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}
