package db_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/apperr"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
)

// RunTx's CockroachDB path (cockroach-go's savepoint protocol over the
// pipelined Tx) cannot run on CockroachDB here; PostgreSQL understands the
// same SAVEPOINT, RELEASE and ROLLBACK TO SAVEPOINT statements, so these
// tests run it there with the dialect switched.
func openAsCockroachDB(t *testing.T) *db.DB {
	t.Helper()
	d := dbtest.Open(t, db.PoolConfig{MaxConns: 4})
	d.Dialect = db.CockroachDB
	return d
}

// raiseRetry fails the statement with SQLSTATE 40001, as CockroachDB does
// when it asks the client to retry.
const raiseRetry = `DO $$ BEGIN RAISE EXCEPTION 'restart transaction' USING ERRCODE = '40001'; END $$`

func TestRunTxOnCockroachDBRetriesInPlaceAndUndoesTheFailedAttempt(t *testing.T) {
	ctx := context.Background()
	d := openAsCockroachDB(t)
	if _, err := d.Pool.Exec(ctx, "CREATE TABLE things (attempt INT8)"); err != nil {
		t.Fatal(err)
	}
	attempts := 0
	err := d.RunTx(ctx, db.TxOptions{IsoLevel: pgx.Serializable}, func(tx *db.Tx) error {
		attempts++
		tx.Queue("INSERT INTO things VALUES ($1)", attempts)
		if attempts == 1 {
			_, err := tx.Exec(ctx, raiseRetry)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("RunTx: %v", err)
	}
	if attempts != 2 {
		t.Fatalf("attempts = %d, want 2", attempts)
	}
	rows, err := d.Pool.Query(ctx, "SELECT attempt FROM things")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != 2 {
		t.Fatalf("committed attempts %v, want only [2]: the first attempt's write must be rolled back to the savepoint", got)
	}
}

func TestRunTxOnCockroachDBSurfacesCommitFailure(t *testing.T) {
	ctx := context.Background()
	d := openAsCockroachDB(t)
	if _, err := d.Pool.Exec(ctx, "CREATE TABLE uniq (k INT8, CONSTRAINT uniq_k UNIQUE (k) DEFERRABLE INITIALLY DEFERRED)"); err != nil {
		t.Fatal(err)
	}
	err := d.RunTx(ctx, db.TxOptions{IsoLevel: pgx.Serializable}, func(tx *db.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO uniq VALUES (1), (1)")
		return err
	})
	if got := db.SQLState(err); got != "23505" {
		t.Fatalf("RunTx = %v (SQLSTATE %q), want the COMMIT's 23505", err, got)
	}
	var n int
	if err := d.Pool.QueryRow(ctx, "SELECT count(*) FROM uniq").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d rows committed, want none", n)
	}
}

func TestRunTxOnCockroachDBGivesUpAsUnavailable(t *testing.T) {
	ctx := context.Background()
	d := openAsCockroachDB(t)
	attempts := 0
	err := d.RunTx(ctx, db.TxOptions{IsoLevel: pgx.Serializable}, func(tx *db.Tx) error {
		attempts++
		_, err := tx.Exec(ctx, raiseRetry)
		return err
	})
	e, ok := apperr.As(err)
	if !ok || e.Code != apperr.Unavailable {
		t.Fatalf("RunTx = %v, want UNAVAILABLE", err)
	}
	if attempts != 10 {
		t.Fatalf("attempts = %d, want 10", attempts)
	}
}

func TestRunTxOnCockroachDBReturnsTheFunctionsError(t *testing.T) {
	ctx := context.Background()
	d := openAsCockroachDB(t)
	boom := errors.New("boom")
	if err := d.RunTx(ctx, db.TxOptions{IsoLevel: pgx.Serializable}, func(tx *db.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("RunTx = %v, want the function's error", err)
	}
	// The connection went back to the pool outside any transaction.
	var open int
	if err := d.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND state LIKE 'idle in transaction%'`).Scan(&open); err != nil {
		t.Fatal(err)
	}
	if open != 0 {
		t.Fatalf("%d pooled connections were left inside a transaction", open)
	}
}
