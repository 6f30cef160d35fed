package db_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
)

// TestPushReadProbesThePrimaryKeyForANewTenant: a push reads its documents
// by id inside the scope lock. For a tenant that came after the table's
// last ANALYZE the planner, left to itself, believes the tenant empty and
// may scan all its rows through another index; under the write
// transaction's generic plans it probes the primary key for each id.
func TestPushReadProbesThePrimaryKeyForANewTenant(t *testing.T) {
	ctx := context.Background()
	d := dbtest.Open(t, db.PoolConfig{MaxConns: 2})
	fill := `INSERT INTO work_orders (tenant_id, id, change_seq, updated_at, site_id, title, status, priority)
SELECT $1, 'wo-' || g, g, now(), 'site', 'title', 'OPEN', g % 5 FROM generate_series(1, 20000) AS g`
	if _, err := d.Pool.Exec(ctx, fill, "old"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Pool.Exec(ctx, "ANALYZE work_orders"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Pool.Exec(ctx, fill, "new"); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 100)
	for i := range ids {
		ids[i] = fmt.Sprintf("missing-%d", i)
	}
	plan := func(generic bool) (index, cond string) {
		t.Helper()
		err := d.RunTx(ctx, db.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx *db.Tx) error {
			if generic {
				if _, err := tx.Exec(ctx, db.GenericPlansStatement); err != nil {
					return err
				}
			}
			// EXPLAIN EXECUTE goes through the plan cache, as the
			// server's prepared statements do; EXPLAIN of the text would
			// plan for the values given.
			if _, err := tx.Exec(ctx, "PREPARE by_ids (TEXT, TEXT[]) AS "+db.ByIDsStatement(collections.WorkOrder)); err != nil {
				return err
			}
			var raw []byte
			if err := tx.QueryRow(ctx, "EXPLAIN (FORMAT JSON) EXECUTE by_ids('new', '{"+strings.Join(ids, ",")+"}')").Scan(&raw); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "DEALLOCATE by_ids"); err != nil {
				return err
			}
			var out []struct {
				Plan struct {
					Index string `json:"Index Name"`
					Cond  string `json:"Index Cond"`
				} `json:"Plan"`
			}
			if err := json.Unmarshal(raw, &out); err != nil {
				return err
			}
			index, cond = out[0].Plan.Index, out[0].Plan.Cond
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return index, cond
	}
	// The control: without generic plans the read goes wrong, so this
	// test's setup shows the problem it guards against.
	index, cond := plan(false)
	t.Logf("custom plan (the control): %s, %s", index, cond)
	if index == "work_orders_pkey" && strings.Contains(cond, "ANY") {
		t.Fatalf("the control's custom plan probes the primary key too (%s): the setup no longer reproduces the misplan", cond)
	}
	index, cond = plan(true)
	t.Logf("generic plan: %s, %s", index, cond)
	if index != "work_orders_pkey" {
		t.Fatalf("the push's read uses %q (%s); want the primary key probed for each id", index, cond)
	}
}
