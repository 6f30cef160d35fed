package db_test

import (
	"context"
	"testing"
	"time"

	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
)

// A saturated pool is a busy instance, not an unreachable database: the
// readiness check has a connection of its own.
func TestCheckReadyDoesNotWaitForTheBusyPool(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{MaxConns: 1})
	ctx := context.Background()
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	held, err := d.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()

	// Control: the pool itself has nothing to give.
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := d.Ping(short); err == nil {
		t.Fatal("control: a ping through the saturated pool succeeded")
	}

	checkCtx, cancelCheck := context.WithTimeout(ctx, 10*time.Second)
	defer cancelCheck()
	for i := range 3 {
		if err := d.CheckReady(checkCtx); err != nil {
			t.Fatalf("check %d with the pool saturated: %v", i, err)
		}
	}
}

func TestCheckReadyReportsAnOutdatedSchema(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{})
	ctx := context.Background()
	if _, err := d.Pool.Exec(ctx, "DROP TABLE IF EXISTS schema_migrations"); err != nil {
		t.Fatal(err)
	}
	err := d.CheckReady(ctx)
	if err == nil {
		t.Fatal("CheckReady passed on a database without migrations")
	}
}
