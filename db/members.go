package db

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/collections"
)

// Statements of bucket membership (partial replication).
const (
	stmtMembersOf = `SELECT doc_id, bucket, change_seq, refs, present FROM sync_bucket_members
WHERE tenant_id = $1 AND collection = $2 AND doc_id = ANY($3)`
	// stmtSetMembers writes many bucket rows of one collection in one
	// statement: one array per column, unnested into rows. The arrays must
	// not repeat a (bucket, doc_id): ON CONFLICT DO UPDATE may not touch a
	// row twice in one statement.
	stmtSetMembers = `INSERT INTO sync_bucket_members (tenant_id, collection, bucket, doc_id, change_seq, refs, present, removed_state, changed_at, home_region)
SELECT $1::TEXT, $2::TEXT, u.bucket, u.doc_id, u.change_seq, u.refs, u.present, u.removed_state::JSONB, $3::TIMESTAMPTZ, ` + tenantHomeRegion + `
FROM unnest($4::TEXT[], $5::TEXT[], $6::INT8[], $7::INT8[], $8::BOOL[], $9::TEXT[]) AS u (bucket, doc_id, change_seq, refs, present, removed_state)
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
	return scanBucketChanges(c, rows, after, limit)
}

func scanBucketChanges(c *collections.Collection, rows pgx.Rows, after int64, limit int) (docs []collections.Document, last int64, err error) {
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
	out := queueDocuments(w.tx, w.tenantID, c, ids)
	if err := w.tx.Flush(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

// Children reads the live documents of c whose field holds one of parentIDs.
func (w *Writer) Children(ctx context.Context, c *collections.Collection, field string, parentIDs []string) ([]collections.Document, error) {
	all, err := w.ChildrenOfEach(ctx, []*collections.Collection{c}, []string{field}, parentIDs)
	if err != nil {
		return nil, err
	}
	return all[0], nil
}

// ChildrenOfEach reads, in one round trip, for each i the live documents
// of cs[i] whose field fields[i] holds one of parentIDs.
func (w *Writer) ChildrenOfEach(ctx context.Context, cs []*collections.Collection, fields []string, parentIDs []string) ([][]collections.Document, error) {
	out := make([][]collections.Document, len(cs))
	if len(parentIDs) == 0 {
		return out, nil
	}
	for i, c := range cs {
		f, ok := c.Field(fields[i])
		if !ok {
			return nil, fmt.Errorf("%s has no field %q", c.Name, fields[i])
		}
		w.tx.Queue(childrenSQL(c, f), w.tenantID, parentIDs).Query(func(rows pgx.Rows) error {
			scan := newDocumentScanner(c)
			for rows.Next() {
				doc, err := scan.scan(rows)
				if err != nil {
					return fmt.Errorf("read %s by %s: %w", c.Name, f.Name, err)
				}
				out[i] = append(out[i], doc)
			}
			return nil
		})
	}
	if err := w.tx.Flush(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

// MembersAndDocuments reads documents of c and their bucket rows in one
// round trip.
func (w *Writer) MembersAndDocuments(ctx context.Context, c *collections.Collection, ids []string) (map[string][]collections.Member, map[string]collections.Document, error) {
	docs := queueDocuments(w.tx, w.tenantID, c, ids)
	members := queueMembers(w.tx, w.tenantID, c, ids)
	if err := w.tx.Flush(ctx); err != nil {
		return nil, nil, err
	}
	return members, docs, nil
}

// Members reads the bucket rows of c's documents with the given ids. The
// rows of the pushed documents came with Get, unless this transaction has
// written some since.
func (w *Writer) Members(ctx context.Context, c *collections.Collection, ids []string) (map[string][]collections.Member, error) {
	if c == w.collection && w.members != nil && allRead(w.read, ids) {
		out := make(map[string][]collections.Member, len(ids))
		for _, id := range ids {
			if rows, ok := w.members[id]; ok {
				out[id] = slices.Clone(rows)
			}
		}
		return out, nil
	}
	out := queueMembers(w.tx, w.tenantID, c, ids)
	if err := w.tx.Flush(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

func allRead(read map[string]bool, ids []string) bool {
	for _, id := range ids {
		if !read[id] {
			return false
		}
	}
	return true
}

// queueMembers queues the read of the bucket rows of c's documents with
// the given ids; the map fills when the transaction flushes.
func queueMembers(tx *Tx, tenantID string, c *collections.Collection, ids []string) map[string][]collections.Member {
	out := map[string][]collections.Member{}
	if len(ids) == 0 {
		return out
	}
	tx.Queue(stmtMembersOf, tenantID, c.Name, ids).Query(func(rows pgx.Rows) error {
		var id string
		var m collections.Member
		_, err := pgx.ForEachRow(rows, []any{&id, &m.Bucket, &m.Change, &m.Refs, &m.Present}, func() error {
			out[id] = append(out[id], m)
			return nil
		})
		if err != nil {
			return fmt.Errorf("read %s buckets: %w", c.Name, err)
		}
		return nil
	})
	return out
}

// SetMembers queues writes of bucket rows of c's documents.
func (w *Writer) SetMembers(ctx context.Context, c *collections.Collection, changes []collections.MemberChange) error {
	if len(changes) == 0 {
		return nil
	}
	if c == w.collection {
		w.members, w.pre = nil, nil
	}
	// Of rows set twice in one call, the last counts, as when each was
	// its own statement.
	last := make(map[[2]string]int, len(changes))
	for i, ch := range changes {
		last[[2]string{ch.Bucket, ch.DocID}] = i
	}
	n := len(last)
	buckets, docIDs := make([]string, 0, n), make([]string, 0, n)
	seqs, refs := make([]int64, 0, n), make([]int64, 0, n)
	present, removed := make([]bool, 0, n), make([]*string, 0, n)
	for i, ch := range changes {
		if last[[2]string{ch.Bucket, ch.DocID}] != i {
			continue
		}
		var state *string
		if !ch.Present && ch.Removed != nil {
			b, err := encodeState(c, *ch.Removed)
			if err != nil {
				return err
			}
			s := string(b)
			state = &s
		}
		buckets, docIDs = append(buckets, ch.Bucket), append(docIDs, ch.DocID)
		seqs, refs = append(seqs, ch.Change), append(refs, ch.Refs)
		present, removed = append(present, ch.Present), append(removed, state)
	}
	w.tx.Queue(stmtSetMembers, w.tenantID, c.Name, w.now, buckets, docIDs, seqs, refs, present, removed)
	return nil
}

// Reserve takes c's change lock, unless this transaction holds it, and
// reserves n change numbers of c, returning the first (0 when n is 0).
// Holding the lock, the writer knows the counter: the advance is queued,
// and checks on its way back that nobody else moved it.
func (w *Writer) Reserve(ctx context.Context, c *collections.Collection, n int) (int64, error) {
	if !w.locked[c.Name] {
		w.lock(c)
	}
	if n == 0 {
		return 0, nil
	}
	if _, known := w.seq[c.Name]; !known {
		if err := w.tx.Flush(ctx); err != nil {
			return 0, err
		}
	}
	seq, known := w.seq[c.Name]
	if !known {
		return 0, fmt.Errorf("lock %s changes: no counter read", c.Name)
	}
	want := seq + int64(n)
	w.seq[c.Name] = want
	w.tx.Queue(stmtAdvanceScope, w.tenantID, c.Name, n).QueryRow(func(row pgx.Row) error {
		var got int64
		if err := row.Scan(&got); err != nil {
			return fmt.Errorf("advance %s changes: %w", c.Name, err)
		}
		if got != want {
			return fmt.Errorf("advance %s changes: the counter is at %d, not %d: its lock was not held", c.Name, got, want)
		}
		return nil
	})
	return seq + 1, nil
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
