package db

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/collections"
)

// Statements of the bucket membership rebuild (syncengine/rebuild.go): what
// it reads of a whole tenant, and the fingerprints of the bucket
// definitions the rows were computed for.
const (
	stmtBucketFingerprints = `SELECT bucket_def, fingerprint FROM sync_rules_state`
	stmtRecordFingerprint  = `INSERT INTO sync_rules_state (bucket_def, fingerprint, rebuilt_at) VALUES ($1, $2, $3)
ON CONFLICT (bucket_def) DO UPDATE SET fingerprint = excluded.fingerprint, rebuilt_at = excluded.rebuilt_at`
	stmtForgetFingerprint = `DELETE FROM sync_rules_state WHERE bucket_def = $1`
	stmtTenantIDs         = `SELECT DISTINCT tenant_id FROM change_counters ORDER BY tenant_id`
	stmtTenantMembers     = `SELECT doc_id, bucket, change_seq, refs, present FROM sync_bucket_members
WHERE tenant_id = $1 AND collection = $2`
)

// tenantDocumentsSQL reads every document of a tenant's collection,
// deleted ones included.
func tenantDocumentsSQL(c *collections.Collection) string {
	return fmt.Sprintf("SELECT %s FROM %s WHERE tenant_id = $1", statementsFor(c).columns, c.Table)
}

// BucketFingerprints returns, per bucket definition (a role's name), the
// fingerprint of the definition its bucket rows were last computed for.
func (d *DB) BucketFingerprints(ctx context.Context) (map[string]string, error) {
	rows, err := d.Pool.Query(ctx, stmtBucketFingerprints)
	if err != nil {
		return nil, fmt.Errorf("read sync rules state: %w", err)
	}
	out := map[string]string{}
	var def, fp string
	if _, err := pgx.ForEachRow(rows, []any{&def, &fp}, func() error {
		out[def] = fp
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read sync rules state: %w", err)
	}
	return out, nil
}

// RecordBucketFingerprints records, in one transaction, the fingerprints
// the bucket rows of the given definitions are now computed for, and
// forgets the definitions in forget (rows of a definition the rules no
// longer have, all turned into removals).
func (d *DB) RecordBucketFingerprints(ctx context.Context, fingerprints map[string]string, forget []string) error {
	now := collections.NormalizeTime(time.Now())
	// Upserts of whole rows: any isolation would do; state it as every
	// write does rather than inherit the server's.
	opts := TxOptions{IsoLevel: pgx.ReadCommitted}
	if d.Dialect == CockroachDB {
		opts.IsoLevel = pgx.Serializable
	}
	err := d.RunTx(ctx, opts, func(tx *Tx) error {
		batch := &pgx.Batch{}
		for def, fp := range fingerprints {
			batch.Queue(stmtRecordFingerprint, def, fp, now)
		}
		for _, def := range forget {
			batch.Queue(stmtForgetFingerprint, def)
		}
		return tx.SendBatch(ctx, batch).Close()
	})
	if err != nil {
		return fmt.Errorf("record sync rules state: %w", err)
	}
	return nil
}

// TenantIDs lists every tenant that has written anything.
func (d *DB) TenantIDs(ctx context.Context) ([]string, error) {
	rows, err := d.Pool.Query(ctx, stmtTenantIDs)
	if err != nil {
		return nil, fmt.Errorf("read tenants: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read tenants: %w", err)
	}
	return ids, nil
}

// EachDocument calls fn with every document of the tenant's collection c,
// deleted ones included, inside the write. fn must not use the Writer: the
// rows are read while it runs.
func (w *Writer) EachDocument(ctx context.Context, c *collections.Collection, fn func(collections.Document) error) error {
	rows, err := w.tx.Query(ctx, tenantDocumentsSQL(c), w.tenantID)
	if err != nil {
		return fmt.Errorf("read every %s: %w", c.Name, err)
	}
	defer rows.Close()
	scan := newDocumentScanner(c)
	for rows.Next() {
		doc, err := scan.scan(rows)
		if err != nil {
			return fmt.Errorf("read every %s: %w", c.Name, err)
		}
		if err := fn(doc); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read every %s: %w", c.Name, err)
	}
	return nil
}

// AllMembers reads every bucket row of the tenant's collection c, by
// document id.
func (w *Writer) AllMembers(ctx context.Context, c *collections.Collection) (map[string][]collections.Member, error) {
	rows, err := w.tx.Query(ctx, stmtTenantMembers, w.tenantID, c.Name)
	if err != nil {
		return nil, fmt.Errorf("read every %s bucket row: %w", c.Name, err)
	}
	out := map[string][]collections.Member{}
	var id string
	var m collections.Member
	if _, err := pgx.ForEachRow(rows, []any{&id, &m.Bucket, &m.Change, &m.Refs, &m.Present}, func() error {
		out[id] = append(out[id], m)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read every %s bucket row: %w", c.Name, err)
	}
	return out, nil
}
