package db

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/collections"
)

// PullPage reads a pull's page in one round trip: the purge horizon of the
// bucket ("" for the whole collection), up to limit changes after position
// after (the bucket's entries, else the collection's documents), and the
// horizon again, as one read-only transaction whose BEGIN, statements and
// COMMIT are pipelined. Its isolation is stated like every transaction's:
// at READ COMMITTED (PostgreSQL) each statement sees what committed before
// it, as three separate statements did; at SERIALIZABLE (CockroachDB) all
// three see one snapshot, which keeps the horizon check sound (a purge
// deletes entries and raises the horizon in one transaction) and lets
// RunTx retry the whole read. last is the position of the last entry
// read, after if none.
func (d *DB) PullPage(ctx context.Context, tenantID string, c *collections.Collection, bucket string, after int64, limit int) (docs []collections.Document, last, horizonBefore, horizonAfter int64, err error) {
	err = d.RunTx(ctx, TxOptions{IsoLevel: d.isolation(), AccessMode: pgx.ReadOnly}, func(tx *Tx) error {
		docs, last = nil, after
		queueHorizon(tx, tenantID, c, bucket, &horizonBefore)
		if bucket == "" {
			tx.Queue(statementsFor(c).changes, tenantID, after, limit).Query(func(rows pgx.Rows) error {
				var err error
				if docs, err = scanChanges(c, rows, limit); err == nil && len(docs) > 0 {
					last = docs[len(docs)-1].Change
				}
				return err
			})
		} else {
			tx.Queue(bucketChangesSQL(c), tenantID, c.Name, bucket, after, limit).Query(func(rows pgx.Rows) error {
				var err error
				docs, last, err = scanBucketChanges(c, rows, after, limit)
				return err
			})
		}
		queueHorizon(tx, tenantID, c, bucket, &horizonAfter)
		return nil
	})
	if err != nil {
		return nil, 0, 0, 0, err
	}
	return docs, last, horizonBefore, horizonAfter, nil
}

func queueHorizon(tx *Tx, tenantID string, c *collections.Collection, bucket string, into *int64) {
	tx.Queue(stmtPurgeHorizon, tenantID, c.Name, bucket).QueryRow(func(row pgx.Row) error {
		*into = 0
		if err := row.Scan(into); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		return nil
	})
}
