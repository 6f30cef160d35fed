package db

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/collections"
)

// Statements of the tombstone purge.
const (
	// stmtTakeLease takes the named lease for holder until $3 when it is
	// free, expired ($4 is now) or already the holder's; it returns a row
	// only when the caller holds the lease afterwards.
	stmtTakeLease = `INSERT INTO job_leases (name, holder, expires_at) VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE job_leases.expires_at < $4 OR job_leases.holder = excluded.holder
RETURNING holder`
	stmtReleaseLease = `DELETE FROM job_leases WHERE name = $1 AND holder = $2`
	// stmtPurgeRemovals deletes a batch of removals older than $1. The
	// conditions are repeated outside the subquery so that a row a writer
	// brought back meanwhile is re-checked and kept.
	stmtPurgeRemovals = `DELETE FROM sync_bucket_members
WHERE present = false AND refs = 0 AND changed_at < $1
AND (tenant_id, collection, bucket, doc_id) IN (
    SELECT tenant_id, collection, bucket, doc_id FROM sync_bucket_members
    WHERE present = false AND refs = 0 AND changed_at < $1 LIMIT $2)
RETURNING tenant_id, collection, bucket, change_seq`
	stmtRaiseHorizon = `INSERT INTO purge_horizons (tenant_id, collection, bucket, change_seq, home_region) VALUES ($1, $2, $3, $4, ` + tenantHomeRegion + `)
ON CONFLICT (tenant_id, collection, bucket) DO UPDATE SET change_seq = GREATEST(purge_horizons.change_seq, excluded.change_seq)`
)

// purgeTombstonesSQL deletes a batch of c's tombstones older than $1,
// re-checking them outside the subquery so a document a writer brought
// back meanwhile stays.
func purgeTombstonesSQL(c *collections.Collection) string {
	return fmt.Sprintf(`DELETE FROM %[1]s WHERE deleted = true AND updated_at < $1
AND (tenant_id, id) IN (SELECT tenant_id, id FROM %[1]s WHERE deleted = true AND updated_at < $1 LIMIT $2)
RETURNING tenant_id, change_seq`, c.Table)
}

// TakeLease takes or renews the named lease for holder for ttl, and
// reports whether holder has it.
func (d *DB) TakeLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	now := time.Now()
	rows, err := d.Pool.Query(ctx, stmtTakeLease, name, holder, now.Add(ttl), now)
	if err != nil {
		return false, fmt.Errorf("take lease %s: %w", name, err)
	}
	held, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return false, fmt.Errorf("take lease %s: %w", name, err)
	}
	return len(held) == 1, nil
}

// ReleaseLease gives the named lease up, if holder has it.
func (d *DB) ReleaseLease(ctx context.Context, name, holder string) error {
	_, err := d.Pool.Exec(ctx, stmtReleaseLease, name, holder)
	return err
}

// horizonKey is a (tenant, collection, bucket) whose entries a purge deleted.
type horizonKey struct{ tenant, collection, bucket string }

// PurgeTombstones deletes at most batch tombstones of c (deleted documents
// written before cutoff) in one short transaction, and raises the purge
// horizon of each tenant it touched, so a checkpoint from before a purged
// tombstone is refused (CHECKPOINT_EXPIRED) instead of missing the delete.
// It returns how many it deleted.
func (d *DB) PurgeTombstones(ctx context.Context, c *collections.Collection, cutoff time.Time, batch int) (int, error) {
	return d.purgeBatch(ctx, purgeTombstonesSQL(c), cutoff, batch, func(rows pgx.Rows) (horizonKey, int64, error) {
		var k horizonKey
		var seq int64
		err := rows.Scan(&k.tenant, &seq)
		k.collection = c.Name
		return k, seq, err
	})
}

// PurgeRemovals deletes at most batch bucket removals (entries of
// documents that left a bucket) older than cutoff, raising each bucket's
// purge horizon, and returns how many it deleted.
func (d *DB) PurgeRemovals(ctx context.Context, cutoff time.Time, batch int) (int, error) {
	return d.purgeBatch(ctx, stmtPurgeRemovals, cutoff, batch, func(rows pgx.Rows) (horizonKey, int64, error) {
		var k horizonKey
		var seq int64
		err := rows.Scan(&k.tenant, &k.collection, &k.bucket, &seq)
		return k, seq, err
	})
}

func (d *DB) purgeBatch(ctx context.Context, stmt string, cutoff time.Time, batch int, scan func(pgx.Rows) (horizonKey, int64, error)) (int, error) {
	var n int
	err := d.RunTx(ctx, TxOptions{IsoLevel: d.isolation()}, func(tx *Tx) error {
		n = 0
		rows, err := tx.Query(ctx, stmt, cutoff, batch)
		if err != nil {
			return err
		}
		horizons := map[horizonKey]int64{}
		for rows.Next() {
			k, seq, err := scan(rows)
			if err != nil {
				rows.Close()
				return err
			}
			horizons[k] = max(horizons[k], seq)
			n++
		}
		if err := rows.Err(); err != nil {
			return err
		}
		b := &pgx.Batch{}
		for k, seq := range horizons {
			b.Queue(stmtRaiseHorizon, k.tenant, k.collection, k.bucket, seq)
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	return n, nil
}

// isolation is the isolation level Tidemark's write transactions state:
// READ COMMITTED on PostgreSQL (see WriteDocuments), SERIALIZABLE on
// CockroachDB.
func (d *DB) isolation() pgx.TxIsoLevel {
	if d.Dialect == CockroachDB {
		return pgx.Serializable
	}
	return pgx.ReadCommitted
}
