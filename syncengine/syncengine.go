// Package syncengine is Tidemark's sync core: pull with commit-ordered
// cursors and push with conflict detection and field merges. It knows
// neither SQL nor GraphQL: storage comes in through Store, and callers
// translate to and from their wire format.
package syncengine

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/tidemark/tidemark/apperr"
	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/syncrules"
)

// Limits of one pull and one push.
const (
	MaxPullLimit = 1000
	MaxPushRows  = 1000
)

// Store is the storage the engine needs; *db.DB implements it.
type Store interface {
	ChangesSince(ctx context.Context, tenantID string, c *collections.Collection, after int64, limit int) ([]collections.Document, error)
	// BucketChangesSince reads a bucket's entries after a position; last is
	// the position of the last entry read (see db.BucketChangesSince).
	BucketChangesSince(ctx context.Context, tenantID string, c *collections.Collection, bucket string, after int64, limit int) (docs []collections.Document, last int64, err error)
	// PurgeHorizon is the newest purged position of a bucket ("" for the
	// whole collection), 0 if none.
	PurgeHorizon(ctx context.Context, tenantID string, c *collections.Collection, bucket string) (int64, error)
	WriteDocuments(ctx context.Context, tenantID string, c *collections.Collection, fn func(w collections.Writer) error) error
}

// CommitListener hears of every committed push that wrote something, after
// the commit; live streams and caches use it. It must not block.
type CommitListener func(tenantID string, c *collections.Collection, head int64, written []collections.Document)

// Engine runs pulls and pushes.
type Engine struct {
	store     Store
	listeners []CommitListener
	rules     *syncrules.Rules
	tracer    trace.Tracer // spans of pulls and pushes (tracing.go)
	// pushLimits bound the bytes of push input (limits.go).
	pushLimits PushLimits
	observer   Observer // observer.go

	// The pushes waiting for their scope's running transaction (group.go);
	// a scope is present while one of its transactions runs.
	groupMu sync.Mutex
	scopes  map[scopeKey][]*queuedPush
}

// New returns an engine over store. Until UseRules is called every caller
// syncs its whole tenant.
func New(store Store) *Engine { return &Engine{store: store, tracer: noopTracer} }

// UseRules makes the engine apply sync rules (partial replication): which
// documents each caller pulls, streams and may push, and the bucket rows
// every write maintains. Call it before serving.
func (e *Engine) UseRules(r *syncrules.Rules) { e.rules = r }

// Rules returns the rules in use, nil when every caller syncs its tenant.
func (e *Engine) Rules() *syncrules.Rules { return e.rules }

// Access is what the caller may sync of c.
func (e *Engine) Access(caller Caller, c *collections.Collection) syncrules.CollectionAccess {
	if e.rules == nil {
		return syncrules.CollectionAccess{Scope: syncrules.All}
	}
	return e.rules.AccessFor(caller.UserID, caller.Claims).Collection(c)
}

// OnCommit registers a listener for committed writes. Register listeners
// before serving; the list is not guarded for concurrent change.
func (e *Engine) OnCommit(l CommitListener) { e.listeners = append(e.listeners, l) }

// PullResult is one page of changes and the checkpoint after it.
type PullResult struct {
	Documents []collections.Document
	Cursor    string
}

// Pull returns up to limit documents changed after the cursor ("" for the
// beginning), in change order, each at its latest state, deleted ones
// included. With no new changes the checkpoint stays where it was.
//
// Under sync rules the caller pulls its own set: its bucket's entries,
// which include removals of documents that left it and the documents that
// entered it with everything that came along. A checkpoint older than what
// the tombstone purge kept, or from another set, is CHECKPOINT_EXPIRED.
func (e *Engine) Pull(ctx context.Context, caller Caller, c *collections.Collection, cursor *string, limit int) (res PullResult, err error) {
	ctx, span := e.startSpan(ctx, "syncengine.Pull", c)
	defer func() { endSpan(span, len(res.Documents), err) }()
	if limit < 1 || limit > MaxPullLimit {
		return PullResult{}, apperr.Invalid("limit", "must be between 1 and %d (got %d)", MaxPullLimit, limit)
	}
	set := e.Access(caller, c)
	var from Position
	if cursor != nil {
		var err error
		if from, err = DecodeCursor(c, caller.TenantID, set, *cursor); err != nil {
			return PullResult{}, err
		}
	}
	if set.Scope == syncrules.None {
		return PullResult{Documents: []collections.Document{}, Cursor: EncodeCursor(c, caller.TenantID, set, from)}, nil
	}
	docs, next, before, after, err := e.readPage(ctx, caller.TenantID, c, set, from.Change, limit)
	if err != nil {
		return PullResult{}, err
	}
	if cursor != nil && from.Change < after && from.Floor < after {
		return PullResult{}, apperr.New(apperr.CheckpointExpired, "the checkpoint is older than the deleted documents this server keeps; start again from a null checkpoint, keeping unsynced local changes")
	}
	e.observePull(caller.TenantID, c, len(docs), from.Change, next)
	// Whatever was purged before this read never concerns this client
	// again: it started from null, or passed the check above.
	return PullResult{Documents: docs, Cursor: EncodeCursor(c, caller.TenantID, set, Position{Change: next, Floor: max(from.Floor, before)})}, nil
}

// PushRow is one document a client pushes: the state it wants and the
// server state it last saw (nil for a document it created).
type PushRow struct {
	Assumed *collections.Document
	New     collections.Document
}

// Caller is who syncs: server-owned fields are set from it, and its token's
// claims (the role) decide, under sync rules, what it may sync.
type Caller struct {
	TenantID string
	UserID   string
	Claims   map[string]string
}

// Push applies rows in one transaction, all or nothing, and returns, in row
// order, the stored document of every row that was not written exactly as
// sent: conflicts (the server's document, unchanged) and merges (the merged
// document as written). Rows written as sent, and retries of writes the
// server already has, add nothing to the result.
func (e *Engine) Push(ctx context.Context, caller Caller, c *collections.Collection, rows []PushRow) (adopt []collections.Document, err error) {
	ctx, span := e.startSpan(ctx, "syncengine.Push", c, attrRows.Int(len(rows)))
	defer func() { endSpan(span, len(adopt), err) }()
	if len(rows) > MaxPushRows {
		return nil, apperr.Invalid("rows", "at most %d rows per push (got %d)", MaxPushRows, len(rows))
	}
	if len(rows) == 0 {
		return []collections.Document{}, nil
	}
	if err := normalizeRows(c, caller, rows); err != nil {
		return nil, err
	}
	if err := checkPushBytes(e.pushLimits, rows); err != nil {
		return nil, err
	}
	set := e.Access(caller, c)
	if e.rules != nil && e.rules.AccessFor(caller.UserID, caller.Claims).Denied() {
		return nil, apperr.New(apperr.Forbidden, "this role may not push")
	}
	p := &pendingPush{set: set, rows: rows}
	if err := e.write(ctx, caller.TenantID, c, p); err != nil {
		return nil, err
	}
	return p.result, nil
}

// pendingPush is one push on its way into a transaction, and what applying
// it there produced.
type pendingPush struct {
	set  syncrules.CollectionAccess
	rows []PushRow

	result   []collections.Document
	heads    map[*collections.Collection]int64
	written  []collections.Document
	outcomes PushOutcomes
}

// apply decides and writes one push inside a write transaction that holds
// c's change lock. It may run again on a retry, so it starts from scratch.
func (e *Engine) apply(ctx context.Context, w collections.Writer, c *collections.Collection, p *pendingPush) error {
	p.result, p.written, p.heads = nil, nil, map[*collections.Collection]int64{}
	rows := p.rows
	ids := make([]string, 0, len(rows))
	for _, r := range rows {
		ids = append(ids, r.New.ID)
	}
	masters, err := w.Get(ctx, ids)
	if err != nil {
		return err
	}
	inside, err := e.inside(ctx, w, c, p.set, rows, masters)
	if err != nil {
		return err
	}
	allowed := make([]PushRow, 0, len(rows))
	for i, r := range rows {
		if inside[i] {
			allowed = append(allowed, r)
		}
	}
	plan := decideAll(c, allowed, masters)
	p.outcomes = plan.outcomes()
	p.outcomes.Outside = len(rows) - len(allowed)
	stored, err := w.Put(ctx, plan.writes)
	if err != nil {
		return err
	}
	p.written = stored
	if len(stored) > 0 {
		p.heads[c] = stored[len(stored)-1].Change
	}
	if e.rules != nil {
		m := &membershipWrite{ctx: ctx, w: w, rules: e.rules, pushed: c, touched: p.heads}
		if err := m.maintain(c, collapse(stored, masters)); err != nil {
			return err
		}
	}
	result := make([]collections.Document, 0)
	j := 0
	for i, r := range rows {
		if !inside[i] {
			result = append(result, removal(r))
			continue
		}
		if doc, ok := plan.adopt(j, stored); ok {
			result = append(result, doc)
		}
		j++
	}
	p.result = result
	return nil
}

// announce tells the observer and the commit listeners of a committed push.
func (e *Engine) announce(tenantID string, c *collections.Collection, p *pendingPush) {
	if e.observer.Pushed != nil {
		e.observer.Pushed(c, p.outcomes)
	}
	for _, col := range collections.All() {
		head, ok := p.heads[col]
		if !ok {
			continue
		}
		var docs []collections.Document
		if col == c {
			docs = p.written
		}
		for _, l := range e.listeners {
			l(tenantID, col, head, docs)
		}
	}
}

// inside reports, per row, whether the caller may write it: under sync
// rules a row is written only when its document is in the caller's set
// now, or, for a new document, when its new state is.
func (e *Engine) inside(ctx context.Context, w collections.Writer, c *collections.Collection, set syncrules.CollectionAccess, rows []PushRow, masters map[string]collections.Document) ([]bool, error) {
	out := make([]bool, len(rows))
	if set.Scope == syncrules.All {
		for i := range out {
			out[i] = true
		}
		return out, nil
	}
	if set.Scope == syncrules.None {
		return out, nil
	}
	access := e.bucketDef(set.BucketID)
	mem, ok := access.Membership(c)
	if !ok {
		return out, nil
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.New.ID
	}
	members, err := w.Members(ctx, c, ids)
	if err != nil {
		return nil, err
	}
	// A new document that no bucket can hold yet, because what would bring
	// it in has not synced (a checklist item pushed before its work order:
	// devices push each collection on its own), is written: it is the
	// caller's own data and shows nobody anything. It joins the sets of
	// its parent when the parent arrives.
	var existing map[string]collections.Document
	if mem.Shape == syncrules.Child {
		var parents []string
		for _, r := range rows {
			if p, ok := mem.Ref(r.New); ok {
				parents = append(parents, p)
			}
		}
		if existing, err = w.Documents(ctx, mem.Via, parents); err != nil {
			return nil, err
		}
	}
	// New documents are judged by their new state, all in one read.
	var fresh []written
	var freshRows []int
	for i, r := range rows {
		if _, exists := masters[r.New.ID]; exists {
			out[i] = presentIn(access, members[r.New.ID])[set.BucketID]
			continue
		}
		fresh = append(fresh, written{after: r.New})
		freshRows = append(freshRows, i)
	}
	if len(fresh) == 0 {
		return out, nil
	}
	m := &membershipWrite{ctx: ctx, w: w, rules: e.rules, pushed: c}
	sets, err := m.bucketsOf(access, mem, fresh, members)
	if err != nil {
		return nil, err
	}
	for j, i := range freshRows {
		doc := rows[i].New
		out[i] = sets[j][set.BucketID] || orphan(mem, doc, existing, members[doc.ID])
	}
	return out, nil
}

// orphan reports whether a new document is one no bucket holds or counts
// yet because what would bring it in does not exist.
func orphan(mem *syncrules.Membership, doc collections.Document, parents map[string]collections.Document, rows []collections.Member) bool {
	switch mem.Shape {
	case syncrules.Child:
		p, ok := mem.Ref(doc)
		if !ok {
			return false
		}
		_, exists := parents[p]
		return !exists
	case syncrules.Parent:
		for _, r := range rows {
			if r.Refs > 0 {
				return false
			}
		}
		return true
	}
	return false
}

// bucketDef is the definition that owns a bucket id.
func (e *Engine) bucketDef(bucketID string) *syncrules.BucketDef {
	for _, def := range e.rules.Buckets() {
		if def.Owns(bucketID) {
			return def
		}
	}
	return nil
}

// removal is what a caller gets back for a row outside its set: the
// document deleted, carrying only what the caller itself sent (the state it
// assumed, else its new state), never the hidden document's current data.
func removal(r PushRow) collections.Document {
	doc := r.New
	if r.Assumed != nil {
		doc = *r.Assumed
	}
	doc.Deleted = true
	doc.UpdatedAt = collections.NormalizeTime(time.Now())
	return doc
}

// collapse pairs each written document's first state before the push with
// its last state stored by it (a push may write one id more than once).
func collapse(stored []collections.Document, masters map[string]collections.Document) []written {
	last := map[string]int{}
	var order []string
	for i, d := range stored {
		if _, ok := last[d.ID]; !ok {
			order = append(order, d.ID)
		}
		last[d.ID] = i
	}
	out := make([]written, 0, len(order))
	for _, id := range order {
		w := written{after: stored[last[id]]}
		if m, ok := masters[id]; ok {
			w.before = &m
		}
		out = append(out, w)
	}
	return out
}

// normalizeRows validates the whole batch before anything is written and
// puts every value in its canonical form; server-owned fields are set from
// the caller, whatever the client sent.
func normalizeRows(c *collections.Collection, caller Caller, rows []PushRow) error {
	for i := range rows {
		field := func(state, name string) string { return fmt.Sprintf("rows[%d].%s.%s", i, state, name) }
		if err := normalizeDocument(c, caller, &rows[i].New, func(name string) string { return field("newDocumentState", name) }); err != nil {
			return err
		}
		if a := rows[i].Assumed; a != nil {
			if a.ID != rows[i].New.ID {
				return apperr.Invalid(field("assumedMasterState", "id"), "must equal newDocumentState.id")
			}
			if err := normalizeDocument(c, caller, a, func(name string) string { return field("assumedMasterState", name) }); err != nil {
				return err
			}
		}
	}
	return nil
}

func normalizeDocument(c *collections.Collection, caller Caller, doc *collections.Document, path func(string) string) error {
	if err := collections.CheckID(doc.ID); err != nil {
		return apperr.Invalid(path("id"), "%s", err.Error())
	}
	fields := make(map[string]any, len(c.Fields))
	for _, f := range c.Fields {
		if f.ServerOwned {
			fields[f.Name] = serverValue(f, caller)
			continue
		}
		v, err := f.Normalize(doc.Fields[f.Name])
		if err != nil {
			return apperr.Invalid(path(f.Name), "%s", err.Error())
		}
		if f.RefersTo != "" {
			if s, ok := v.(string); ok {
				if err := collections.CheckID(s); err != nil {
					return apperr.Invalid(path(f.Name), "%s", err.Error())
				}
			}
		}
		fields[f.Name] = v
	}
	doc.Fields = fields
	return nil
}

// serverValue is the value of a server-owned field for a write by caller,
// as the field's description (the schema's @serverSet) says.
func serverValue(f collections.Field, caller Caller) any {
	switch f.ServerValue {
	case collections.CallerUserID:
		return caller.UserID
	}
	return nil
}
