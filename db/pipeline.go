package db

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Tx is one attempt of a transaction RunTx runs. It pipelines: BEGIN is
// not sent alone but with the transaction's first statement, statements
// queued with Queue wait for the next statement that needs an answer, and
// COMMIT leaves with the last of them. A one-row push is so two round trips
// to the database instead of seven, a pull one instead of three
// (docs/deploy.md, "Round trips per verb").
//
// A queued statement's error surfaces at the next Flush (a read, Exec, or
// COMMIT) and fails the transaction there: nothing of it commits.
type Tx struct {
	conn   *pgx.Conn
	begin  string     // the BEGIN statement, until it is sent
	queued *pgx.Batch // statements waiting for the next flush
	done   bool       // COMMIT was sent
}

// Queue adds a statement to send with the next flush; set a callback on
// the result (QueuedQuery.Exec, QueryRow, Query) to read its answer.
func (t *Tx) Queue(sql string, args ...any) *pgx.QueuedQuery {
	if t.queued == nil {
		t.queued = &pgx.Batch{}
	}
	return t.queued.Queue(sql, args...)
}

// Flush sends BEGIN, if not sent yet, and the queued statements in one
// round trip, and runs their callbacks. With nothing to send it does nothing.
func (t *Tx) Flush(ctx context.Context) error {
	if t.begin == "" && (t.queued == nil || t.queued.Len() == 0) {
		return nil
	}
	b := &pgx.Batch{}
	if t.begin != "" {
		b.Queue(t.begin)
	}
	if t.queued != nil {
		b.QueuedQueries = append(b.QueuedQueries, t.queued.QueuedQueries...)
	}
	t.begin, t.queued = "", nil
	return t.conn.SendBatch(ctx, b).Close()
}

// Exec sends the queued statements and this one in one round trip.
func (t *Tx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	var tag pgconn.CommandTag
	t.Queue(sql, args...).Exec(func(ct pgconn.CommandTag) error {
		tag = ct
		return nil
	})
	err := t.Flush(ctx)
	return tag, err
}

// Query flushes what is queued, then runs the query.
func (t *Tx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := t.Flush(ctx); err != nil {
		return nil, err
	}
	return t.conn.Query(ctx, sql, args...)
}

// QueryRow flushes what is queued, then runs the query.
func (t *Tx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := t.Flush(ctx); err != nil {
		return errRow{err}
	}
	return t.conn.QueryRow(ctx, sql, args...)
}

// SendBatch sends the queued statements and b in one round trip, running
// the callbacks of all of them; the result's Close returns the first error.
func (t *Tx) SendBatch(ctx context.Context, b *pgx.Batch) FlushedBatch {
	t.queued = appendBatch(t.queued, b)
	return FlushedBatch{t.Flush(ctx)}
}

func appendBatch(to, b *pgx.Batch) *pgx.Batch {
	if to == nil {
		to = &pgx.Batch{}
	}
	to.QueuedQueries = append(to.QueuedQueries, b.QueuedQueries...)
	return to
}

// commit sends the queued statements and COMMIT in one round trip. A
// transaction that sent nothing has nothing to commit.
func (t *Tx) commit(ctx context.Context) error {
	if t.begin != "" && (t.queued == nil || t.queued.Len() == 0) {
		t.begin = ""
		return nil
	}
	t.Queue("COMMIT").Exec(func(ct pgconn.CommandTag) error {
		// A COMMIT of a failed transaction answers ROLLBACK, not an error.
		if ct.String() != "COMMIT" {
			return pgx.ErrTxCommitRollback
		}
		return nil
	})
	if err := t.Flush(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	t.done = true
	return nil
}

// rollback ends a transaction that did not commit, if BEGIN was sent.
func (t *Tx) rollback(ctx context.Context) error {
	if t.begin != "" || t.done {
		return nil
	}
	t.queued = nil
	_, err := t.conn.Exec(ctx, "ROLLBACK")
	return err
}

// FlushedBatch is the outcome of a batch SendBatch sent and read: the
// callbacks of its statements ran, and Close returns the first error.
type FlushedBatch struct{ err error }

// Close returns the batch's first error.
func (f FlushedBatch) Close() error { return f.err }

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// beginSQL states the transaction's isolation (and access mode) in its
// BEGIN, so that the server's default_transaction_isolation never matters.
func beginSQL(opts TxOptions) (string, error) {
	if opts.IsoLevel == "" {
		return "", errors.New("a transaction must state its isolation level (TxOptions.IsoLevel)")
	}
	s := "BEGIN ISOLATION LEVEL " + string(opts.IsoLevel)
	if opts.AccessMode != "" {
		s += " " + string(opts.AccessMode)
	}
	if opts.DeferrableMode != "" {
		s += " " + string(opts.DeferrableMode)
	}
	return s, nil
}

// txControlStatements are the BEGIN, COMMIT and ROLLBACK statements RunTx
// sends, and cockroach-go's savepoint statements, for the portability test.
func txControlStatements() []string {
	out := []string{"COMMIT", "ROLLBACK", "SAVEPOINT cockroach_restart", releaseSavepoint, rollbackToSavepoint}
	for _, level := range []pgx.TxIsoLevel{pgx.ReadCommitted, pgx.Serializable} {
		for _, mode := range []pgx.TxAccessMode{"", pgx.ReadOnly} {
			s, _ := beginSQL(TxOptions{IsoLevel: level, AccessMode: mode})
			out = append(out, s)
		}
	}
	return out
}
