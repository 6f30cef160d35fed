package db

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cockroachdb/cockroach-go/v2/crdb"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tidemark/tidemark/apperr"
)

// SQLSTATE codes Tidemark tells errors apart by.
const (
	sqlstateSerializationFailure = "40001"
	sqlstateDeadlockDetected     = "40P01"
	sqlstateUndefinedTable       = "42P01"
)

// maxTxAttempts bounds the attempts of one transaction; backoff between
// them is quadratic with jitter (txBackoff), about 1.2 s in all.
const maxTxAttempts = 10

// TxOptions are the options of one transaction. IsoLevel is required:
// RunTx refuses a transaction that would inherit the server's default.
type TxOptions = pgx.TxOptions

// RunTx runs fn in a transaction and commits it, retrying the whole
// transaction when the database asks for a retry. Every transaction goes
// through it, on both dialects.
//
// The transaction states its isolation (opts.IsoLevel, required) in its
// BEGIN, so the server's default_transaction_isolation never matters: a
// transaction that relied on READ COMMITTED's fresh snapshot per statement
// fails at SERIALIZABLE each time it waits on a lock (its snapshot predates
// the lock), which is what a database whose default is SERIALIZABLE did to
// every push that queued on a change counter.
//
// On PostgreSQL it retries whole transactions on serialization failures
// (40001) and deadlocks (40P01), after a jittered backoff. On CockroachDB
// it runs cockroach-go's retry protocol (crdb.ExecuteInTx): a retry rolls
// back to the savepoint cockroach_restart inside the same transaction,
// which keeps the transaction's place in the queue for the rows it locked
// (CockroachDB's advice for contended rows such as a change counter). The
// savepoint statements are pipelined with their neighbours, so they add no
// round trip, and COMMIT is sent with RELEASE, so a failed COMMIT is never
// hidden. Every other error, COMMIT's included, is returned.
//
// When the attempts run out the error is apperr.Unavailable: the database
// is too contended right now, and the client may retry later. fn may run
// more than once and must not have effects outside the transaction.
func (d *DB) RunTx(ctx context.Context, opts TxOptions, fn func(*Tx) error) error {
	begin, err := beginSQL(opts)
	if err != nil {
		return err
	}
	if d.Dialect == CockroachDB {
		return d.runTxWithRestarts(ctx, begin, fn)
	}
	for attempt := 1; attempt <= maxTxAttempts; attempt++ {
		err = runTxOnce(ctx, d, begin, fn)
		if err == nil || !retryable(err) {
			return err
		}
		d.log.Debug("transaction retry", "attempt", attempt, "err", err)
		d.noteRetry(SQLState(err))
		if attempt == maxTxAttempts {
			break
		}
		t := time.NewTimer(txBackoff(attempt))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return errors.Join(ctx.Err(), err)
		}
	}
	return d.gaveUp(err)
}

func (d *DB) gaveUp(err error) error {
	d.log.Warn("transaction gave up: the database kept asking for retries", "attempts", maxTxAttempts, "err", err)
	return apperr.Wrap(apperr.Unavailable, fmt.Errorf("transaction failed after %d attempts: %w", maxTxAttempts, err),
		"the database is too busy to complete this request now; retry it later")
}

// runTxWithRestarts is RunTx on CockroachDB: one transaction, retried in
// place by cockroach-go's savepoint protocol.
func (d *DB) runTxWithRestarts(ctx context.Context, begin string, fn func(*Tx) error) error {
	conn, err := d.Pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	tx := &Tx{conn: conn.Conn(), begin: begin}
	attempts := 0
	err = crdb.ExecuteInTx(crdb.WithMaxRetries(ctx, maxTxAttempts-1), savepointTx{tx}, func() error {
		attempts++
		if attempts > 1 {
			// crdb retries only on 40001 (and the retired CR000).
			d.noteRetry(sqlstateSerializationFailure)
		}
		return fn(tx)
	})
	var exceeded *crdb.MaxRetriesExceededError
	if errors.As(err, &exceeded) {
		return d.gaveUp(err)
	}
	return err
}

// savepointTx lets cockroach-go drive a pipelined Tx. SAVEPOINT and
// ROLLBACK TO SAVEPOINT wait for the transaction's next statement; RELEASE
// (which commits on CockroachDB) leaves with COMMIT, and their answers are
// read before ExecuteInTx decides whether to retry.
type savepointTx struct{ tx *Tx }

// The statements of cockroach-go's protocol that savepointTx treats apart.
const (
	releaseSavepoint    = "RELEASE SAVEPOINT cockroach_restart"
	rollbackToSavepoint = "ROLLBACK TO SAVEPOINT cockroach_restart"
)

func (s savepointTx) Exec(ctx context.Context, sql string, args ...any) error {
	switch sql {
	case releaseSavepoint:
		s.tx.Queue(sql, args...)
		return s.tx.commit(ctx)
	case rollbackToSavepoint:
		// The transaction is in an error state, where the server refuses
		// to prepare anything else: send this alone, by the simple
		// protocol. Only a retry pays this round trip.
		s.tx.queued = nil
		_, err := s.tx.conn.Exec(ctx, sql, args...)
		return err
	}
	s.tx.Queue(sql, args...)
	return nil
}

// Commit does nothing: COMMIT went with RELEASE.
func (s savepointTx) Commit(context.Context) error { return nil }

func (s savepointTx) Rollback(ctx context.Context) error { return s.tx.rollback(ctx) }

// txBackoff is the wait after the attempt-th failed attempt: a quadratic
// base (2 ms, 8 ms, 18 ms, ... 162 ms) plus up to as much again at random,
// so writers that collided once do not collide again in step.
func txBackoff(attempt int) time.Duration {
	base := time.Duration(attempt*attempt) * 2 * time.Millisecond
	return base + rand.N(base)
}

// ObserveRetries makes RunTx report every retry with the SQLSTATE that
// caused it, for metrics; nil stops it.
func (d *DB) ObserveRetries(f func(sqlstate string)) {
	if f == nil {
		d.retried.Store(nil)
		return
	}
	d.retried.Store(&f)
}

func (d *DB) noteRetry(sqlstate string) {
	if f := d.retried.Load(); f != nil {
		(*f)(sqlstate)
	}
}

func runTxOnce(ctx context.Context, d *DB, begin string, fn func(*Tx) error) (err error) {
	conn, err := d.Pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// A connection released inside a transaction (a failed ROLLBACK) is
	// closed by the pool, never reused.
	defer conn.Release()
	tx := &Tx{conn: conn.Conn(), begin: begin}
	defer func() {
		if err != nil {
			// Rollback after a failed COMMIT is a no-op; its own error adds nothing.
			_ = tx.rollback(context.WithoutCancel(ctx))
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.commit(ctx)
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
