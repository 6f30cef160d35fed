package db_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
)

// serializationFailureOnce runs a transaction that meets one real
// serialization failure (a concurrent write between its read and its
// write) and then succeeds.
func serializationFailureOnce(tb testing.TB, d *db.DB) {
	tb.Helper()
	ctx := context.Background()
	if _, err := d.Pool.Exec(ctx, "CREATE TABLE IF NOT EXISTS observed (id INT8 PRIMARY KEY, n INT8 NOT NULL)"); err != nil {
		tb.Fatal(err)
	}
	if _, err := d.Pool.Exec(ctx, "INSERT INTO observed VALUES (1, 0) ON CONFLICT (id) DO NOTHING"); err != nil {
		tb.Fatal(err)
	}
	attempt := 0
	err := d.RunTx(ctx, db.TxOptions{IsoLevel: pgx.Serializable}, func(tx *db.Tx) error {
		attempt++
		var n int64
		if err := tx.QueryRow(ctx, "SELECT n FROM observed WHERE id = 1").Scan(&n); err != nil {
			return err
		}
		if attempt == 1 {
			if _, err := d.Pool.Exec(ctx, "UPDATE observed SET n = n + 100 WHERE id = 1"); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, "UPDATE observed SET n = $1 WHERE id = 1", n+1)
		return err
	})
	if err != nil {
		tb.Fatalf("RunTx: %v", err)
	}
	if attempt != 2 {
		tb.Fatalf("attempts = %d, want 2", attempt)
	}
}

func TestRunTxReportsEachRetryWithItsSQLState(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{MaxConns: 4})
	var mu sync.Mutex
	var seen []string
	d.ObserveRetries(func(sqlstate string) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, sqlstate)
	})
	serializationFailureOnce(t, d)
	mu.Lock()
	got := slices.Clone(seen)
	mu.Unlock()
	if !slices.Equal(got, []string{"40001"}) {
		t.Fatalf("retries observed = %v, want [40001]", got)
	}

	// Turned off, the same failure reports nothing.
	d.ObserveRetries(nil)
	serializationFailureOnce(t, d)
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 {
		t.Fatalf("retries observed after ObserveRetries(nil) = %v", seen)
	}
}
