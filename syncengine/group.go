package syncengine

import (
	"context"
	"errors"
	"slices"

	"github.com/tidemark/tidemark/collections"
)

// Group commit of pushes. The writers of one (tenant, collection) queue on
// its change counter's lock, and each holds it through its COMMIT, whose
// WAL flush is most of the time a 100-row push spends inside the lock
// (docs/benchmarks.md, "Push path: inside the scope lock"). So while one
// push of a scope is in its transaction, the pushes of that scope that
// arrive on this instance wait here instead of at the lock, and then run
// together, in arrival order, in one transaction: one lock, one COMMIT.
//
// Each push of a group is applied as it would be alone (apply): it reads
// the documents as the earlier pushes of the group left them, so conflicts,
// merges and bucket rows come out as if the pushes had committed one after
// the other, and change numbers are handed out in that order under the
// lock, which keeps pull cursors gap-free. A group is all or nothing: if its
// transaction fails, each of its pushes runs again alone, with its own
// context, so one push's error (or its client leaving) is never another's.

// maxGroupRows bounds the rows the pushes that join a waiting group bring,
// so that one transaction stays about as long as one full push.
const maxGroupRows = MaxPushRows

// Prefetcher is what a Writer may add to read, with the lock, the
// documents of every push of a group (db.Writer does): each push's Get then
// costs no round trip of its own unless an earlier push of the group wrote
// its documents or their bucket rows.
type Prefetcher interface {
	Prefetch(ids []string)
}

// scopeKey names a change lock: one tenant's collection.
type scopeKey struct {
	tenantID string
	c        *collections.Collection
}

// queuedPush is a push waiting for its scope's running transaction.
type queuedPush struct {
	p    *pendingPush
	lead chan []*queuedPush // the group this push is to run, itself first
	done chan error         // the outcome, once its group committed or failed
}

// errAlone tells a push of a failed group to run again by itself.
var errAlone = errors.New("the group's transaction failed: push again alone")

// write applies p in a transaction of its scope, alone or with the pushes
// of the scope that wait with it, and announces it after the commit.
func (e *Engine) write(ctx context.Context, tenantID string, c *collections.Collection, p *pendingPush) error {
	key := scopeKey{tenantID, c}
	q := &queuedPush{p: p, lead: make(chan []*queuedPush, 1), done: make(chan error, 1)}
	e.groupMu.Lock()
	if e.scopes == nil {
		e.scopes = map[scopeKey][]*queuedPush{}
	}
	waiting, busy := e.scopes[key]
	var err error
	if !busy {
		e.scopes[key] = nil // busy, nobody waiting
		e.groupMu.Unlock()
		e.runGroup(ctx, key, []*queuedPush{q})
		err = <-q.done
	} else {
		e.scopes[key] = append(waiting, q)
		e.groupMu.Unlock()
		// A push that gives up while it waits leaves the queue; once a
		// group holds it, it is written or fails with that group.
		select {
		case group := <-q.lead:
			e.runGroup(ctx, key, group)
			err = <-q.done
		case err = <-q.done:
		case <-ctx.Done():
			if e.leave(key, q) {
				return ctx.Err()
			}
			select {
			case group := <-q.lead:
				e.runGroup(ctx, key, group)
				err = <-q.done
			case err = <-q.done:
			}
		}
	}
	if err != errAlone {
		return err
	}
	if err := e.store.WriteDocuments(ctx, tenantID, c, func(w collections.Writer) error {
		return e.apply(ctx, w, c, p)
	}); err != nil {
		return err
	}
	e.announce(tenantID, c, p)
	return nil
}

// runGroup runs group in one transaction with the caller's context, then
// announces and delivers the outcomes. It hands the scope to the next group
// once its own writes are queued, before its COMMIT is sent: the next
// group's BEGIN and lock then wait in the database behind this COMMIT and
// proceed the moment it lands, with no trip through this process between.
// (A transaction retried after that competes with the next group for the
// lock, which orders them as it orders instances.)
func (e *Engine) runGroup(ctx context.Context, key scopeKey, group []*queuedPush) {
	handed := false
	err := e.store.WriteDocuments(ctx, key.tenantID, key.c, func(w collections.Writer) error {
		if pf, ok := w.(Prefetcher); ok && len(group) > 1 {
			var ids []string
			for _, q := range group {
				for _, r := range q.p.rows {
					ids = append(ids, r.New.ID)
				}
			}
			pf.Prefetch(ids)
		}
		for _, q := range group {
			if err := e.apply(ctx, w, key.c, q.p); err != nil {
				return err
			}
		}
		if !handed {
			handed = true
			e.handOver(key)
		}
		return nil
	})
	if err == nil {
		// In this group's commit order. The next group may commit and
		// announce before this one announces: listeners take heads in any
		// order, as they do from several instances.
		for _, q := range group {
			e.announce(key.tenantID, key.c, q.p)
		}
	}
	if !handed {
		e.handOver(key)
	}
	if err != nil && len(group) > 1 {
		err = errAlone
	}
	for _, q := range group {
		q.done <- err
	}
}

// leave takes q out of its scope's queue, unless a group already holds it.
func (e *Engine) leave(key scopeKey, q *queuedPush) bool {
	e.groupMu.Lock()
	defer e.groupMu.Unlock()
	waiting := e.scopes[key]
	i := slices.Index(waiting, q)
	if i < 0 {
		return false
	}
	e.scopes[key] = slices.Delete(waiting, i, i+1)
	return true
}

// handOver gives the scope to the pushes waiting for it, as one group led
// by the first, or marks it idle.
func (e *Engine) handOver(key scopeKey) {
	e.groupMu.Lock()
	waiting := e.scopes[key]
	if len(waiting) == 0 {
		delete(e.scopes, key)
		e.groupMu.Unlock()
		return
	}
	n, rows := 1, len(waiting[0].p.rows)
	for n < len(waiting) && rows+len(waiting[n].p.rows) <= maxGroupRows {
		rows += len(waiting[n].p.rows)
		n++
	}
	group := waiting[:n:n]
	e.scopes[key] = waiting[n:]
	e.groupMu.Unlock()
	group[0].lead <- group
}
