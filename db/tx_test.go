package db_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
)

// A real serialization failure: the transaction reads a row at SERIALIZABLE,
// another transaction changes it and commits, then the first writes it.
// RunTx must retry the whole transaction, and the retry must succeed.
func TestRunTxRetriesSerializationFailure(t *testing.T) {
	ctx := context.Background()
	d := dbtest.Open(t, db.PoolConfig{MaxConns: 4})
	if _, err := d.Pool.Exec(ctx, "CREATE TABLE counters (id INT8 PRIMARY KEY, n INT8 NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Pool.Exec(ctx, "INSERT INTO counters VALUES (1, 0)"); err != nil {
		t.Fatal(err)
	}

	var attempts atomic.Int32
	err := d.RunTx(ctx, db.TxOptions{IsoLevel: pgx.Serializable}, func(tx pgx.Tx) error {
		attempt := attempts.Add(1)
		var n int64
		if err := tx.QueryRow(ctx, "SELECT n FROM counters WHERE id = 1").Scan(&n); err != nil {
			return err
		}
		if attempt == 1 {
			// A concurrent writer commits between our read and our write.
			if _, err := d.Pool.Exec(ctx, "UPDATE counters SET n = n + 100 WHERE id = 1"); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, "UPDATE counters SET n = $1 WHERE id = 1", n+1)
		return err
	})
	if err != nil {
		t.Fatalf("RunTx: %v", err)
	}
	if got := attempts.Load(); got != 2 {
		t.Fatalf("attempts = %d; want 2 (one serialization failure, one success)", got)
	}
	var n int64
	if err := d.Pool.QueryRow(ctx, "SELECT n FROM counters WHERE id = 1").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 101 {
		t.Fatalf("n = %d; want 101 (the retry read the concurrent write)", n)
	}
}

// A COMMIT that fails (a deferred constraint checked at commit time) must be
// returned to the caller, not swallowed, and must not be retried.
func TestRunTxSurfacesCommitFailure(t *testing.T) {
	ctx := context.Background()
	d := dbtest.Open(t, db.PoolConfig{})
	if _, err := d.Pool.Exec(ctx, "CREATE TABLE uniq (k INT8, CONSTRAINT uniq_k UNIQUE (k) DEFERRABLE INITIALLY DEFERRED)"); err != nil {
		t.Fatal(err)
	}
	var attempts int
	err := d.RunTx(ctx, db.TxOptions{}, func(tx pgx.Tx) error {
		attempts++
		_, err := tx.Exec(ctx, "INSERT INTO uniq VALUES (1), (1)")
		return err // succeeds: the check is deferred to COMMIT
	})
	if err == nil {
		t.Fatal("RunTx returned nil although COMMIT failed")
	}
	if got := db.SQLState(err); got != "23505" {
		t.Fatalf("SQLSTATE = %q (%v); want 23505 unique_violation from COMMIT", got, err)
	}
	if attempts != 1 {
		t.Fatalf("attempts = %d; a commit failure that is not a serialization failure must not be retried", attempts)
	}
	var n int
	if err := d.Pool.QueryRow(ctx, "SELECT count(*) FROM uniq").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d rows committed; want none", n)
	}
}

func TestRunTxReturnsTheFunctionsErrorAndRollsBack(t *testing.T) {
	ctx := context.Background()
	d := dbtest.Open(t, db.PoolConfig{})
	if _, err := d.Pool.Exec(ctx, "CREATE TABLE things (k INT8)"); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := d.RunTx(ctx, db.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO things VALUES (1)"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("RunTx = %v; want the function's error", err)
	}
	var n int
	if err := d.Pool.QueryRow(ctx, "SELECT count(*) FROM things").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d rows committed after the function failed; want 0", n)
	}
}
