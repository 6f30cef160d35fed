package db_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/apperr"
	"github.com/tidemark/tidemark/collections"
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
	err := d.RunTx(ctx, db.TxOptions{IsoLevel: pgx.Serializable}, func(tx *db.Tx) error {
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
	err := d.RunTx(ctx, db.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx *db.Tx) error {
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
	err := d.RunTx(ctx, db.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx *db.Tx) error {
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

func TestRunTxRefusesATransactionThatStatesNoIsolation(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{})
	ran := false
	err := d.RunTx(context.Background(), db.TxOptions{}, func(*db.Tx) error {
		ran = true
		return nil
	})
	if err == nil || ran {
		t.Fatalf("RunTx without an isolation level ran (%v) and returned %v; want a refusal before BEGIN", ran, err)
	}
}

// A transaction the database keeps failing gives up as UNAVAILABLE, a
// retryable answer, after every attempt: never as an internal error.
func TestRunTxThatKeepsFailingGivesUpAsUnavailable(t *testing.T) {
	ctx := context.Background()
	d := dbtest.Open(t, db.PoolConfig{MaxConns: 4})
	if _, err := d.Pool.Exec(ctx, "CREATE TABLE counters (id INT8 PRIMARY KEY, n INT8 NOT NULL); INSERT INTO counters VALUES (1, 0)"); err != nil {
		t.Fatal(err)
	}
	var attempts int
	err := d.RunTx(ctx, db.TxOptions{IsoLevel: pgx.Serializable}, func(tx *db.Tx) error {
		attempts++
		var n int64
		if err := tx.QueryRow(ctx, "SELECT n FROM counters WHERE id = 1").Scan(&n); err != nil {
			return err
		}
		// Every attempt meets a concurrent writer: a real 40001 each time.
		if _, err := d.Pool.Exec(ctx, "UPDATE counters SET n = n + 100 WHERE id = 1"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "UPDATE counters SET n = $1 WHERE id = 1", n+1)
		return err
	})
	e, ok := apperr.As(err)
	if !ok || e.Code != apperr.Unavailable {
		t.Fatalf("RunTx = %v; want an UNAVAILABLE application error", err)
	}
	if got := db.SQLState(err); got != "40001" {
		t.Fatalf("cause SQLSTATE = %q; want 40001 kept for the log", got)
	}
	if attempts != 10 {
		t.Fatalf("attempts = %d; want 10", attempts)
	}
}

// openWithDefaultIsolation opens a fresh database whose default
// transaction isolation is level, as a server configured so would have it.
func openWithDefaultIsolation(t *testing.T, level string, cfg db.PoolConfig) *db.DB {
	t.Helper()
	ctx := context.Background()
	url := dbtest.URL(t)
	if err := dbtest.SetDefaultIsolation(ctx, url, level); err != nil {
		t.Fatal(err)
	}
	d, err := db.Open(ctx, url, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	var got string
	if err := d.Pool.QueryRow(ctx, "SHOW default_transaction_isolation").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != level {
		t.Fatalf("default_transaction_isolation = %q; want %q", got, level)
	}
	return d
}

const contendedWriters, writesEach = 16, 15

// The failure of issue 13, kept as the control of the test below: on a
// database whose default isolation is SERIALIZABLE, transactions that
// inherit it and wait on the change counter's lock fail with 40001, their
// snapshot older than the lock.
func TestInheritedSerializableFailsWaitersOnTheChangeCounter(t *testing.T) {
	ctx := context.Background()
	d := openWithDefaultIsolation(t, "serializable", db.PoolConfig{MaxConns: contendedWriters + 2})
	var failures atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, contendedWriters)
	for w := range contendedWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range writesEach {
				err := func() error {
					tx, err := d.Pool.Begin(ctx) // no isolation stated: the server's default
					if err != nil {
						return err
					}
					defer tx.Rollback(ctx)
					if _, err := tx.Exec(ctx, `INSERT INTO change_counters (tenant_id, collection, seq) VALUES ('t', 'workOrders', 0)
ON CONFLICT (tenant_id, collection) DO UPDATE SET seq = change_counters.seq`); err != nil {
						return err
					}
					if _, err := tx.Exec(ctx, "UPDATE change_counters SET seq = seq + 1 WHERE tenant_id = 't' AND collection = 'workOrders'"); err != nil {
						return err
					}
					return tx.Commit(ctx)
				}()
				if db.SQLState(err) == "40001" {
					failures.Add(1)
				} else if err != nil {
					errs <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if failures.Load() == 0 {
		t.Fatalf("no transaction inheriting SERIALIZABLE failed on the counter; the control does not reproduce the failure")
	}
	t.Logf("%d of %d inherited-serializable writes failed with 40001, as expected", failures.Load(), contendedWriters*writesEach)
}

// With the database's default SERIALIZABLE, 16 writers on one scope all
// succeed: the write transaction states its isolation, and every change
// number is handed out once.
func TestWritesStateTheirIsolationWhateverTheServerDefault(t *testing.T) {
	ctx := context.Background()
	d := openWithDefaultIsolation(t, "serializable", db.PoolConfig{MaxConns: contendedWriters + 2})
	var wg sync.WaitGroup
	errs := make(chan error, contendedWriters)
	var mu sync.Mutex
	changes := map[int64]string{}
	for w := range contendedWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range writesEach {
				id := fmt.Sprintf("w%d-%d", w, i)
				var stored []collections.Document
				err := d.WriteDocuments(ctx, "t", collections.WorkOrder, func(cw collections.Writer) error {
					if _, err := cw.Get(ctx, []string{id}); err != nil {
						return err
					}
					var err error
					stored, err = cw.Put(ctx, []collections.Document{workOrderDoc(id)})
					return err
				})
				if err != nil {
					errs <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
				mu.Lock()
				if other, dup := changes[stored[0].Change]; dup {
					mu.Unlock()
					errs <- fmt.Errorf("change %d handed out to %s and %s", stored[0].Change, other, id)
					return
				}
				changes[stored[0].Change] = id
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	head, err := d.ScopeHead(ctx, "t", collections.WorkOrder)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(contendedWriters * writesEach); head != want || len(changes) != int(want) {
		t.Fatalf("head %d, %d distinct changes; want %d of each", head, len(changes), want)
	}
}

func workOrderDoc(id string) collections.Document {
	return collections.Document{ID: id, Fields: map[string]any{
		"siteId": "site-1", "title": id, "description": nil, "status": "OPEN",
		"priority": int64(1), "assigneeId": nil, "dueAt": nil,
	}}
}

// A queued statement's error surfaces with the flush that sends it (here
// COMMIT's) and nothing of the transaction commits.
func TestQueuedWriteThatFailsFailsTheCommit(t *testing.T) {
	ctx := context.Background()
	d := dbtest.Open(t, db.PoolConfig{})
	if _, err := d.Pool.Exec(ctx, "CREATE TABLE things (k INT8)"); err != nil {
		t.Fatal(err)
	}
	attempts := 0
	err := d.RunTx(ctx, db.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx *db.Tx) error {
		attempts++
		tx.Queue("INSERT INTO things VALUES (1)")
		tx.Queue("INSERT INTO things VALUES ($1)", "not a number")
		return nil
	})
	if got := db.SQLState(err); got != "22P02" {
		t.Fatalf("RunTx = %v (SQLSTATE %q); want the queued insert's 22P02", err, got)
	}
	if attempts != 1 {
		t.Fatalf("attempts = %d; want 1", attempts)
	}
	var n int
	if err := d.Pool.QueryRow(ctx, "SELECT count(*) FROM things").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d rows committed; want none", n)
	}
}

// The transaction runs at the isolation it states, not the server's.
func TestRunTxRunsAtTheStatedIsolation(t *testing.T) {
	ctx := context.Background()
	d := openWithDefaultIsolation(t, "serializable", db.PoolConfig{})
	var got string
	err := d.RunTx(ctx, db.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx *db.Tx) error {
		return tx.QueryRow(ctx, "SHOW transaction_isolation").Scan(&got)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != "read committed" {
		t.Fatalf("transaction_isolation = %q inside RunTx; want read committed, as stated", got)
	}
}
