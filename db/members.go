package db

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/collections"
)

// Statements of bucket membership (partial replication).
const (
	stmtMembersOf = `SELECT doc_id, bucket, change_seq, refs, present FROM sync_bucket_members
WHERE tenant_id = $1 AND collection = $2 AND doc_id = ANY($3)`
	stmtSetMember = `INSERT INTO sync_bucket_members (tenant_id, collection, bucket, doc_id, change_seq, refs, present, removed_state, changed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (tenant_id, collection, bucket, doc_id) DO UPDATE SET change_seq = excluded.change_seq,
refs = excluded.refs, present = excluded.present, changed_at = excluded.changed_at,
removed_state = CASE WHEN excluded.present THEN NULL ELSE COALESCE(excluded.removed_state, sync_bucket_members.removed_state) END`
	stmtPurgeHorizon = `SELECT change_seq FROM purge_horizons WHERE tenant_id = $1 AND collection = $2 AND bucket = $3`
)

// bucketChangesSQL reads a bucket's entries after a change number, each
// with its document's current state (absent once a removed document's
// tombstone is purged).
func bucketChangesSQL(c *collections.Collection) string {
	cols := "COALESCE(d.id, m.doc_id), m.change_seq, COALESCE(d.updated_at, m.changed_at), COALESCE(d.deleted, true)"
	for _, col := range fieldColumns(c) {
		cols += ", d." + col
	}
	// The document is looked up per entry (LATERAL ... LIMIT 1) so the plan
	// stays an index range over the bucket plus one index lookup per row:
	// a plain join lets the planner scan the whole table of the tenant.
	// Entries that count a document the bucket never held (a work order's
	// site that has not synced) carry nothing and are not read.
	var dcols []string
	for _, col := range append(append([]string{}, bookkeepingColumns...), fieldColumns(c)...) {
		dcols = append(dcols, "x."+col)
	}
	return fmt.Sprintf(`SELECT m.present, m.removed_state, %s FROM sync_bucket_members AS m
LEFT JOIN LATERAL (SELECT %s FROM %s AS x WHERE x.tenant_id = m.tenant_id AND x.id = m.doc_id LIMIT 1) AS d ON true
WHERE m.tenant_id = $1 AND m.collection = $2 AND m.bucket = $3 AND m.change_seq > $4
AND (m.present OR m.removed_state IS NOT NULL)
ORDER BY m.change_seq LIMIT $5`, cols, strings.Join(dcols, ", "), c.Table)
}

func fieldColumns(c *collections.Collection) []string {
	out := make([]string, len(c.Fields))
	for i, f := range c.Fields {
		out[i] = f.Column
	}
	return out
}

// childrenSQL reads the live documents of c whose field holds one of $2.
func childrenSQL(c *collections.Collection, field collections.Field) string {
	return fmt.Sprintf("SELECT %s FROM %s WHERE tenant_id = $1 AND %s = ANY($2) AND deleted = false",
		statementsFor(c).columns, c.Table, field.Column)
}

// BucketChangesSince returns up to limit entries of the tenant's bucket
// after change number `after`, in change order: documents the bucket holds,
// at their current state, and removals (deleted, with only the last state
// the bucket held). Each document's Change is its entry's position. last is
// the position of the last entry read, which may be past the last document:
// an entry of a document the bucket never held (counted for, but absent or
// deleted) is read and skipped.
func (d *DB) BucketChangesSince(ctx context.Context, tenantID string, c *collections.Collection, bucket string, after int64, limit int) (docs []collections.Document, last int64, err error) {
	rows, err := d.Pool.Query(ctx, bucketChangesSQL(c), tenantID, c.Name, bucket, after, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("%s bucket changes: %w", c.Name, err)
	}
	defer rows.Close()
	last = after
	docs = make([]collections.Document, 0, min(limit, 1000))
	scan := newDocumentScanner(c)
	for rows.Next() {
		var present bool
		var removed []byte
		doc, err := scan.scanWith(rows, &present, &removed)
		if err != nil {
			return nil, 0, fmt.Errorf("%s bucket changes: %w", c.Name, err)
		}
		last = doc.Change
		if !present {
			if removed == nil {
				continue
			}
			change := doc.Change
			if doc, err = decodeState(c, removed); err != nil {
				return nil, 0, fmt.Errorf("%s removal: %w", c.Name, err)
			}
			doc.Change, doc.Deleted = change, true
		}
		docs = append(docs, doc)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("%s bucket changes: %w", c.Name, err)
	}
	return docs, last, nil
}

// PurgeHorizon returns the newest change number of the tenant's bucket of
// c ("" for the whole collection) whose entry was purged, 0 if none was.
func (d *DB) PurgeHorizon(ctx context.Context, tenantID string, c *collections.Collection, bucket string) (int64, error) {
	var seq int64
	err := d.Pool.QueryRow(ctx, stmtPurgeHorizon, tenantID, c.Name, bucket).Scan(&seq)
	if err == pgx.ErrNoRows {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read purge horizon: %w", err)
	}
	return seq, nil
}

// Documents reads current documents of any collection inside the write.
func (w *Writer) Documents(ctx context.Context, c *collections.Collection, ids []string) (map[string]collections.Document, error) {
	return getDocuments(ctx, w.tx, w.tenantID, c, ids)
}

// Children reads the live documents of c whose field holds one of parentIDs.
func (w *Writer) Children(ctx context.Context, c *collections.Collection, field string, parentIDs []string) ([]collections.Document, error) {
	if len(parentIDs) == 0 {
		return nil, nil
	}
	f, ok := c.Field(field)
	if !ok {
		return nil, fmt.Errorf("%s has no field %q", c.Name, field)
	}
	rows, err := w.tx.Query(ctx, childrenSQL(c, f), w.tenantID, parentIDs)
	if err != nil {
		return nil, fmt.Errorf("read %s by %s: %w", c.Name, field, err)
	}
	defer rows.Close()
	var out []collections.Document
	scan := newDocumentScanner(c)
	for rows.Next() {
		doc, err := scan.scan(rows)
		if err != nil {
			return nil, fmt.Errorf("read %s by %s: %w", c.Name, field, err)
		}
		out = append(out, doc)
	}
	return out, rows.Err()
}

// Members reads the bucket rows of c's documents with the given ids.
func (w *Writer) Members(ctx context.Context, c *collections.Collection, ids []string) (map[string][]collections.Member, error) {
	out := map[string][]collections.Member{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := w.tx.Query(ctx, stmtMembersOf, w.tenantID, c.Name, ids)
	if err != nil {
		return nil, fmt.Errorf("read %s buckets: %w", c.Name, err)
	}
	var id string
	var m collections.Member
	_, err = pgx.ForEachRow(rows, []any{&id, &m.Bucket, &m.Change, &m.Refs, &m.Present}, func() error {
		out[id] = append(out[id], m)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s buckets: %w", c.Name, err)
	}
	return out, nil
}

// SetMembers writes bucket rows of c's documents.
func (w *Writer) SetMembers(ctx context.Context, c *collections.Collection, changes []collections.MemberChange) error {
	if len(changes) == 0 {
		return nil
	}
	batch := &pgx.Batch{}
	for _, ch := range changes {
		var removed []byte
		if !ch.Present && ch.Removed != nil {
			var err error
			if removed, err = encodeState(c, *ch.Removed); err != nil {
				return err
			}
		}
		batch.Queue(stmtSetMember, w.tenantID, c.Name, ch.Bucket, ch.DocID, ch.Change, ch.Refs, ch.Present, removed, w.now)
	}
	if err := w.tx.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("store %s buckets: %w", c.Name, err)
	}
	return nil
}

// Reserve takes c's change lock, unless this transaction holds it, and
// reserves n change numbers of c.
func (w *Writer) Reserve(ctx context.Context, c *collections.Collection, n int) (int64, error) {
	if !w.locked[c.Name] {
		if _, err := w.tx.Exec(ctx, stmtLockScope, w.tenantID, c.Name); err != nil {
			return 0, fmt.Errorf("lock %s changes: %w", c.Name, err)
		}
		w.locked[c.Name] = true
	}
	var last int64
	if err := w.tx.QueryRow(ctx, stmtAdvanceScope, w.tenantID, c.Name, n).Scan(&last); err != nil {
		return 0, fmt.Errorf("advance %s changes: %w", c.Name, err)
	}
	return last - int64(n) + 1, nil
}

// storedState is a removal's content as kept in removed_state.
type storedState struct {
	ID        string                     `json:"id"`
	UpdatedAt time.Time                  `json:"updatedAt"`
	Fields    map[string]json.RawMessage `json:"fields"`
}

func encodeState(c *collections.Collection, doc collections.Document) ([]byte, error) {
	st := storedState{ID: doc.ID, UpdatedAt: doc.UpdatedAt, Fields: make(map[string]json.RawMessage, len(c.Fields))}
	for _, f := range c.Fields {
		b, err := json.Marshal(doc.Fields[f.Name])
		if err != nil {
			return nil, fmt.Errorf("encode %s.%s: %w", c.Name, f.Name, err)
		}
		st.Fields[f.Name] = b
	}
	return json.Marshal(st)
}

func decodeState(c *collections.Collection, raw []byte) (collections.Document, error) {
	var st storedState
	if err := json.Unmarshal(raw, &st); err != nil {
		return collections.Document{}, err
	}
	doc := collections.Document{ID: st.ID, UpdatedAt: st.UpdatedAt.UTC(), Fields: make(map[string]any, len(c.Fields))}
	for _, f := range c.Fields {
		raw, ok := st.Fields[f.Name]
		if !ok || string(raw) == "null" {
			doc.Fields[f.Name] = nil
			continue
		}
		var v any
		var err error
		switch f.Kind {
		case collections.Int:
			var n int64
			err = json.Unmarshal(raw, &n)
			v = n
		case collections.Float:
			var x float64
			err = json.Unmarshal(raw, &x)
			v = x
		case collections.Bool:
			var b bool
			err = json.Unmarshal(raw, &b)
			v = b
		case collections.Time:
			var t time.Time
			err = json.Unmarshal(raw, &t)
			v = t.UTC()
		default:
			var s string
			err = json.Unmarshal(raw, &s)
			v = s
		}
		if err != nil {
			return collections.Document{}, fmt.Errorf("decode %s.%s: %w", c.Name, f.Name, err)
		}
		doc.Fields[f.Name] = v
	}
	return doc, nil
}
