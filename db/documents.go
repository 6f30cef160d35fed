package db

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/collections"
)

// GetDocuments reads the tenant's documents with the given ids, deleted ones
// included. Missing ids are absent from the map.
func (d *DB) GetDocuments(ctx context.Context, tenantID string, c *collections.Collection, ids []string) (map[string]collections.Document, error) {
	return getDocuments(ctx, d.Pool, tenantID, c, ids)
}

// ChangesSince returns up to limit of the tenant's documents whose latest
// change comes after change number `after`, in change order.
func (d *DB) ChangesSince(ctx context.Context, tenantID string, c *collections.Collection, after int64, limit int) ([]collections.Document, error) {
	rows, err := d.Pool.Query(ctx, statementsFor(c).changes, tenantID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("%s changes: %w", c.Name, err)
	}
	defer rows.Close()
	return scanChanges(c, rows, limit)
}

func scanChanges(c *collections.Collection, rows pgx.Rows, limit int) ([]collections.Document, error) {
	docs := make([]collections.Document, 0, min(limit, 1000))
	scan := newDocumentScanner(c)
	for rows.Next() {
		doc, err := scan.scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s changes: %w", c.Name, err)
		}
		docs = append(docs, doc)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s changes: %w", c.Name, err)
	}
	return docs, nil
}

// ScopeHead returns the latest change number handed out in the tenant's
// collection, 0 if it has none.
func (d *DB) ScopeHead(ctx context.Context, tenantID string, c *collections.Collection) (int64, error) {
	var seq int64
	err := d.Pool.QueryRow(ctx, stmtScopeHead, tenantID, c.Name).Scan(&seq)
	if err == pgx.ErrNoRows {
		return 0, nil
	}
	return seq, err
}

// ScopeHeads returns the latest change number of every collection of the
// given tenants that has one.
func (d *DB) ScopeHeads(ctx context.Context, tenantIDs []string) ([]collections.ScopeHead, error) {
	if len(tenantIDs) == 0 {
		return nil, nil
	}
	rows, err := d.Pool.Query(ctx, stmtScopeHeads, tenantIDs)
	if err != nil {
		return nil, fmt.Errorf("read change heads: %w", err)
	}
	heads, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (collections.ScopeHead, error) {
		var h collections.ScopeHead
		err := row.Scan(&h.TenantID, &h.Collection, &h.Change)
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("read change heads: %w", err)
	}
	return heads, nil
}

// Writer writes one tenant's documents of one collection inside a
// transaction that holds the scope's change lock.
//
// It pipelines (see Tx): statements that need no answer before the next
// decision (the lock, the change counter's advance, upserts, bucket rows)
// are queued and leave with the next read or with COMMIT. A one-row push so
// costs two round trips: BEGIN, the lock, the documents and their bucket
// rows in the first; the writes and COMMIT in the second.
type Writer struct {
	tx         *Tx
	tenantID   string
	collection *collections.Collection
	now        time.Time
	cockroach  bool             // the database is CockroachDB (the lock takes a locking read first)
	locked     map[string]bool  // collections whose change lock this transaction holds
	seq        map[string]int64 // collection → its counter, once the lock's answer is read
	// members holds the bucket rows of the pushed documents, read with
	// them (the lock of their collection is held, so only this
	// transaction changes them); nil once this transaction writes some.
	members map[string][]collections.Member
	read    map[string]bool // ids whose rows members holds
	// pre holds what Prefetch read for the pushes of a group; nil without.
	pre *prefetched
	// absent holds the ids this transaction read and found missing and has
	// not written since: Put inserts them without ON CONFLICT.
	absent map[string]bool
}

// prefetched is the documents and bucket rows of the ids of every push of
// a group, read in the transaction's first round trip (with the lock), so
// that each push's Get after the first needs no round trip of its own.
// An id leaves ids when this transaction writes it, and the whole set is
// dropped when it writes bucket rows of the collection: a Get of it then
// reads again.
type prefetched struct {
	ids     map[string]bool
	docs    map[string]collections.Document
	members map[string][]collections.Member
	arrived bool // the reads were flushed and their maps filled
}

// WriteDocuments runs fn in a transaction (through RunTx, so it may run more
// than once) after taking the scope's change lock: fn reads the current
// documents with Writer.Get, decides, and writes with Writer.Put. Nothing fn
// wrote is visible to others until it returns nil and the commit succeeds.
//
// The transaction states its isolation instead of inheriting the server's:
// on PostgreSQL READ COMMITTED, because each statement after a change lock
// must see what the lock's previous holder committed (a checklist item's
// write reads its work order's buckets after taking its own lock, and a
// reassignment that moves the item waits for that lock); CockroachDB runs
// it SERIALIZABLE, where the lock is the transaction's first statement, a
// locking read (SELECT ... FOR UPDATE), so waiters queue on it instead of
// aborting (docs/deploy.md, "Isolation and retries").
func (d *DB) WriteDocuments(ctx context.Context, tenantID string, c *collections.Collection, fn func(w collections.Writer) error) error {
	return d.RunTx(ctx, TxOptions{IsoLevel: d.isolation()}, func(tx *Tx) error {
		w := &Writer{tx: tx, tenantID: tenantID, collection: c, now: collections.NormalizeTime(time.Now()),
			cockroach: d.Dialect == CockroachDB, locked: map[string]bool{}, seq: map[string]int64{}, absent: map[string]bool{}}
		if !w.cockroach {
			tx.Queue(stmtGenericPlans)
		}
		w.lock(c)
		return fn(w)
	})
}

// lock queues the statements that take c's change lock: the upsert that
// creates the counter on first use and locks it either way, preceded on
// CockroachDB by a locking read, so that waiters queue on the row instead
// of reading it and aborting on the write. PostgreSQL needs no read first:
// the upsert waits for the row's lock, then sees its latest version. The
// counter's value arrives with the next flush.
func (w *Writer) lock(c *collections.Collection) {
	w.locked[c.Name] = true
	if w.cockroach {
		w.tx.Queue(stmtLockCounter, w.tenantID, c.Name)
	}
	w.tx.Queue(stmtLockScope, w.tenantID, c.Name).QueryRow(func(row pgx.Row) error {
		var seq int64
		if err := row.Scan(&seq); err != nil {
			return fmt.Errorf("lock %s changes: %w", c.Name, err)
		}
		w.seq[c.Name] = seq
		return nil
	})
}

// Prefetch queues the read of the documents with the given ids and their
// bucket rows, to leave with the lock: the ids of all pushes of a group.
// A later Get of prefetched ids that this transaction has not written since
// is answered from it, without a round trip.
func (w *Writer) Prefetch(ids []string) {
	pre := &prefetched{ids: make(map[string]bool, len(ids))}
	for _, id := range ids {
		pre.ids[id] = true
	}
	pre.docs = queueDocuments(w.tx, w.tenantID, w.collection, ids)
	pre.members = queueMembers(w.tx, w.tenantID, w.collection, ids)
	w.pre = pre
}

// fromPrefetch answers Get from the prefetched reads when it holds every id.
func (w *Writer) fromPrefetch(ctx context.Context, ids []string) (map[string]collections.Document, bool, error) {
	if w.pre == nil {
		return nil, false, nil
	}
	for _, id := range ids {
		if !w.pre.ids[id] {
			return nil, false, nil
		}
	}
	if !w.pre.arrived {
		if err := w.tx.Flush(ctx); err != nil {
			return nil, false, err
		}
		w.pre.arrived = true
	}
	out := make(map[string]collections.Document, len(ids))
	w.members, w.read = make(map[string][]collections.Member, len(ids)), make(map[string]bool, len(ids))
	for _, id := range ids {
		if d, ok := w.pre.docs[id]; ok {
			out[id] = d
		} else {
			w.absent[id] = true
		}
		if rows, ok := w.pre.members[id]; ok {
			w.members[id] = rows
		}
		w.read[id] = true
	}
	return out, true, nil
}

// Get reads current documents inside the write transaction, and with them
// their bucket rows. Because the scope lock is held, no other writer of the
// scope changes either until commit.
func (w *Writer) Get(ctx context.Context, ids []string) (map[string]collections.Document, error) {
	if out, ok, err := w.fromPrefetch(ctx, ids); ok || err != nil {
		return out, err
	}
	out := queueDocuments(w.tx, w.tenantID, w.collection, ids)
	members := queueMembers(w.tx, w.tenantID, w.collection, ids)
	if err := w.tx.Flush(ctx); err != nil {
		return nil, err
	}
	w.members, w.read = members, map[string]bool{}
	for _, id := range ids {
		w.read[id] = true
		if _, ok := out[id]; !ok {
			w.absent[id] = true
		}
	}
	return out, nil
}

// Put stores docs as the scope's next changes: each gets a new change number
// (in slice order) and the transaction's time as UpdatedAt. It returns the
// documents as stored; the writes leave with the next read or COMMIT.
func (w *Writer) Put(ctx context.Context, docs []collections.Document) ([]collections.Document, error) {
	if len(docs) == 0 {
		return nil, nil
	}
	first, err := w.Reserve(ctx, w.collection, len(docs))
	if err != nil {
		return nil, err
	}
	stored := make([]collections.Document, len(docs))
	for i, doc := range docs {
		doc.Change = first + int64(i)
		doc.UpdatedAt = w.now
		stored[i] = doc
		if w.pre != nil {
			delete(w.pre.ids, doc.ID)
		}
	}
	var fresh, existing []collections.Document
	for _, doc := range lastOfEach(stored) {
		if w.absent[doc.ID] {
			fresh = append(fresh, doc)
			delete(w.absent, doc.ID)
		} else {
			existing = append(existing, doc)
		}
	}
	sql := statementsFor(w.collection)
	for _, part := range []struct {
		stmt string
		docs []collections.Document
	}{{sql.insertMany, fresh}, {sql.upsertMany, existing}} {
		if len(part.docs) == 0 {
			continue
		}
		args, err := upsertArgs(w.tenantID, w.now, w.collection, part.docs)
		if err != nil {
			return nil, err
		}
		w.tx.Queue(part.stmt, args...)
	}
	return stored, nil
}

// lastOfEach keeps, of documents that share an id, the last: a push may
// write one id more than once, and only its last state is the row's.
func lastOfEach(docs []collections.Document) []collections.Document {
	last := make(map[string]int, len(docs))
	for i, d := range docs {
		last[d.ID] = i
	}
	if len(last) == len(docs) {
		return docs
	}
	out := make([]collections.Document, 0, len(last))
	for i, d := range docs {
		if last[d.ID] == i {
			out = append(out, d)
		}
	}
	return out
}

// upsertArgs are upsertMany's parameters for docs: one typed array per
// column, NULL elements for absent values.
func upsertArgs(tenantID string, now time.Time, c *collections.Collection, docs []collections.Document) ([]any, error) {
	ids := make([]string, len(docs))
	changes := make([]int64, len(docs))
	deleted := make([]bool, len(docs))
	for i, d := range docs {
		ids[i], changes[i], deleted[i] = d.ID, d.Change, d.Deleted
	}
	args := make([]any, 0, 5+len(c.Fields))
	args = append(args, tenantID, now, ids, changes, deleted)
	for _, f := range c.Fields {
		col, err := fieldArray(f, docs)
		if err != nil {
			return nil, err
		}
		args = append(args, col)
	}
	return args, nil
}

// fieldArray collects one field of docs as a slice of the field's Go type
// (collections.Kind), nil elements for NULL.
func fieldArray(f collections.Field, docs []collections.Document) (any, error) {
	switch f.Kind {
	case collections.String, collections.Enum:
		return typedArray[string](f, docs)
	case collections.Int:
		return typedArray[int64](f, docs)
	case collections.Float:
		return typedArray[float64](f, docs)
	case collections.Bool:
		return typedArray[bool](f, docs)
	case collections.Time:
		return typedArray[time.Time](f, docs)
	}
	return nil, fmt.Errorf("field %s: unknown kind %v", f.Name, f.Kind)
}

func typedArray[T any](f collections.Field, docs []collections.Document) ([]*T, error) {
	out := make([]*T, len(docs))
	for i, d := range docs {
		v := d.Fields[f.Name]
		if v == nil {
			continue
		}
		x, ok := v.(T)
		if !ok {
			return nil, fmt.Errorf("write %s: field %s of %s holds %T, not %T", d.ID, f.Name, f.Kind, v, x)
		}
		out[i] = &x
	}
	return out, nil
}

// queueDocuments queues the read of c's documents with the given ids; the
// map fills when the transaction flushes.
func queueDocuments(tx *Tx, tenantID string, c *collections.Collection, ids []string) map[string]collections.Document {
	out := make(map[string]collections.Document, len(ids))
	if len(ids) == 0 {
		return out
	}
	tx.Queue(statementsFor(c).byIDs, tenantID, ids).Query(func(rows pgx.Rows) error {
		scan := newDocumentScanner(c)
		for rows.Next() {
			doc, err := scan.scan(rows)
			if err != nil {
				return fmt.Errorf("read %s: %w", c.Name, err)
			}
			out[doc.ID] = doc
		}
		return nil
	})
	return out
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func getDocuments(ctx context.Context, q querier, tenantID string, c *collections.Collection, ids []string) (map[string]collections.Document, error) {
	out := make(map[string]collections.Document, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := q.Query(ctx, statementsFor(c).byIDs, tenantID, ids)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", c.Name, err)
	}
	defer rows.Close()
	scan := newDocumentScanner(c)
	for rows.Next() {
		doc, err := scan.scan(rows)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", c.Name, err)
		}
		out[doc.ID] = doc
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", c.Name, err)
	}
	return out, nil
}

// documentScanner turns rows of a collection's select list into Documents.
type documentScanner struct {
	c    *collections.Collection
	dest []any
}

func newDocumentScanner(c *collections.Collection) *documentScanner {
	s := &documentScanner{c: c, dest: make([]any, 4+len(c.Fields))}
	return s
}

func (s *documentScanner) scan(rows pgx.Rows) (collections.Document, error) {
	return s.scanWith(rows)
}

// scanWith scans a row whose select list has the columns of extra before
// the document's.
func (s *documentScanner) scanWith(rows pgx.Rows, extra ...any) (collections.Document, error) {
	var doc collections.Document
	s.dest[0], s.dest[1], s.dest[2], s.dest[3] = &doc.ID, &doc.Change, &doc.UpdatedAt, &doc.Deleted
	for i, f := range s.c.Fields {
		switch f.Kind {
		case collections.String, collections.Enum:
			s.dest[4+i] = new(*string)
		case collections.Int:
			s.dest[4+i] = new(*int64)
		case collections.Float:
			s.dest[4+i] = new(*float64)
		case collections.Bool:
			s.dest[4+i] = new(*bool)
		case collections.Time:
			s.dest[4+i] = new(*time.Time)
		default:
			return doc, fmt.Errorf("field %s: unknown kind %v", f.Name, f.Kind)
		}
	}
	if err := rows.Scan(append(extra, s.dest...)...); err != nil {
		return doc, err
	}
	doc.UpdatedAt = doc.UpdatedAt.UTC()
	doc.Fields = make(map[string]any, len(s.c.Fields))
	for i, f := range s.c.Fields {
		doc.Fields[f.Name] = deref(s.dest[4+i])
	}
	return doc, nil
}

func deref(p any) any {
	switch v := p.(type) {
	case **string:
		if *v == nil {
			return nil
		}
		return **v
	case **int64:
		if *v == nil {
			return nil
		}
		return **v
	case **float64:
		if *v == nil {
			return nil
		}
		return **v
	case **bool:
		if *v == nil {
			return nil
		}
		return **v
	case **time.Time:
		if *v == nil {
			return nil
		}
		return (*v).UTC()
	}
	return nil
}
