// Package syncengine is Tidemark's sync core: pull with commit-ordered
// cursors and push with conflict detection and field merges. It knows
// neither SQL nor GraphQL: storage comes in through Store, and callers
// translate to and from their wire format.
package syncengine

import (
	"context"
	"fmt"

	"github.com/tidemark/tidemark/apperr"
	"github.com/tidemark/tidemark/collections"
)

// Limits of one pull and one push.
const (
	MaxPullLimit = 1000
	MaxPushRows  = 1000
)

// Store is the storage the engine needs; *db.DB implements it.
type Store interface {
	ChangesSince(ctx context.Context, tenantID string, c *collections.Collection, after int64, limit int) ([]collections.Document, error)
	WriteDocuments(ctx context.Context, tenantID string, c *collections.Collection, fn func(w collections.Writer) error) error
}

// CommitListener hears of every committed push that wrote something, after
// the commit; live streams and caches use it. It must not block.
type CommitListener func(tenantID string, c *collections.Collection, head int64, written []collections.Document)

// Engine runs pulls and pushes.
type Engine struct {
	store     Store
	listeners []CommitListener
}

// New returns an engine over store.
func New(store Store) *Engine { return &Engine{store: store} }

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
func (e *Engine) Pull(ctx context.Context, tenantID string, c *collections.Collection, cursor *string, limit int) (PullResult, error) {
	if limit < 1 || limit > MaxPullLimit {
		return PullResult{}, apperr.Invalid("limit", "must be between 1 and %d (got %d)", MaxPullLimit, limit)
	}
	var after int64
	if cursor != nil {
		var err error
		if after, err = DecodeCursor(c, tenantID, *cursor); err != nil {
			return PullResult{}, err
		}
	}
	docs, err := e.store.ChangesSince(ctx, tenantID, c, after, limit)
	if err != nil {
		return PullResult{}, err
	}
	if len(docs) > 0 {
		after = docs[len(docs)-1].Change
	}
	return PullResult{Documents: docs, Cursor: EncodeCursor(c, tenantID, after)}, nil
}

// PushRow is one document a client pushes: the state it wants and the
// server state it last saw (nil for a document it created).
type PushRow struct {
	Assumed *collections.Document
	New     collections.Document
}

// Caller is who pushes; server-owned fields are set from it.
type Caller struct {
	TenantID string
	UserID   string
}

// Push applies rows in one transaction, all or nothing, and returns, in row
// order, the stored document of every row that was not written exactly as
// sent: conflicts (the server's document, unchanged) and merges (the merged
// document as written). Rows written as sent, and retries of writes the
// server already has, add nothing to the result.
func (e *Engine) Push(ctx context.Context, caller Caller, c *collections.Collection, rows []PushRow) ([]collections.Document, error) {
	if len(rows) > MaxPushRows {
		return nil, apperr.Invalid("rows", "at most %d rows per push (got %d)", MaxPushRows, len(rows))
	}
	if len(rows) == 0 {
		return []collections.Document{}, nil
	}
	if err := normalizeRows(c, caller, rows); err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(rows))
	for _, r := range rows {
		ids = append(ids, r.New.ID)
	}

	var result []collections.Document
	var written []collections.Document
	var head int64
	err := e.store.WriteDocuments(ctx, caller.TenantID, c, func(w collections.Writer) error {
		// This closure may run again on a retry: start from scratch each time.
		result, written, head = nil, nil, 0
		masters, err := w.Get(ctx, ids)
		if err != nil {
			return err
		}
		plan := decideAll(c, rows, masters)
		stored, err := w.Put(ctx, plan.writes)
		if err != nil {
			return err
		}
		written = stored
		if len(stored) > 0 {
			head = stored[len(stored)-1].Change
		}
		result = plan.result(stored)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(written) > 0 {
		for _, l := range e.listeners {
			l(caller.TenantID, c, head, written)
		}
	}
	return result, nil
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
