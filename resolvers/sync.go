package resolvers

import (
	"context"

	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/graph/model"
	"github.com/tidemark/tidemark/livesync"
	"github.com/tidemark/tidemark/syncengine"
	"github.com/tidemark/tidemark/syncrules"
)

// pull runs a pull for the caller and translates the page to the
// collection's generated document type T.
func pull[T any](ctx context.Context, r *Resolver, c *collections.Collection, checkpoint *model.CheckpointInput, limit int) ([]*T, *model.Checkpoint, error) {
	id, err := callerFrom(ctx)
	if err != nil {
		return nil, nil, err
	}
	var cursor *string
	if checkpoint != nil {
		cursor = &checkpoint.Cursor
	}
	res, err := r.Sync.Pull(ctx, callerOf(id), c, cursor, limit)
	if err != nil {
		return nil, nil, err
	}
	return fromDocuments[T](c, res.Documents), &model.Checkpoint{Cursor: res.Cursor}, nil
}

// push runs a push of rows given as (assumed, new) pairs of the collection's
// generated input type In and returns the documents the client must adopt
// as the generated output type Out.
func push[Out, In any](ctx context.Context, r *Resolver, c *collections.Collection, n int, row func(i int) (assumed, next *In)) ([]*Out, error) {
	id, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	rows := make([]syncengine.PushRow, n)
	for i := range rows {
		assumed, next := row(i)
		rows[i].New = toDocument(c, next)
		if assumed != nil {
			a := toDocument(c, assumed)
			rows[i].Assumed = &a
		}
	}
	docs, err := r.Sync.Push(ctx, callerOf(id), c, rows)
	if err != nil {
		return nil, err
	}
	return fromDocuments[Out](c, docs), nil
}

// stream subscribes the caller to the collection's live changes. Each event
// is translated once (shared by every subscriber of the scope) with wrap.
// The channel is never closed: closing it would send `complete`, which ends
// live sync for good in RxDB; a subscriber that must go is disconnected
// instead (see livesync.Disconnector). The `headers` argument of the stream
// fields is read by the transport, which authenticates the subscription
// before the resolver runs.
//
// A transport that put a livesync.Sink in ctx gets the events there
// instead: the hub calls the sink, and the channel returned holds at most
// the one event the transport primed before running the subscription's
// response handler, so no goroutine waits on it between events; the
// transport holds up to StreamBuffer events of the subscriber waiting.
func stream[T, Bulk any](ctx context.Context, r *Resolver, c *collections.Collection, wrap func([]*T, *model.Checkpoint) *Bulk) (<-chan *Bulk, error) {
	id, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	convert := func(ev *livesync.Event) *Bulk {
		return ev.Converted(func() any {
			return wrap(fromDocuments[T](c, ev.Documents), &model.Checkpoint{Cursor: ev.Cursor})
		}).(*Bulk)
	}
	access := r.Sync.Access(callerOf(id), c)
	buffer := r.StreamBuffer
	if buffer <= 0 {
		buffer = 16
	}
	if sink := livesync.SinkFrom(ctx); sink != nil {
		ch := make(chan *Bulk, 1)
		sink.Attach(func(ev *livesync.Event) {
			// Only the transport's writer primes, one event at a time; an
			// event left by an execution cut short by the connection's end
			// is replaced.
			select {
			case <-ch:
			default:
			}
			ch <- convert(ev)
		}, buffer)
		sink.SetScope(streamScope{tenantID: id.TenantID, collection: c, access: access})
		if err := r.Live.Subscribe(sink.SubscribeContext(ctx), id.TenantID, c, access, sink.Deliver); err != nil {
			sink.Attach(nil, 0)
			return nil, err
		}
		return ch, nil
	}
	ch := make(chan *Bulk, buffer)
	err = r.Live.Subscribe(ctx, id.TenantID, c, access, func(ev *livesync.Event) bool {
		select {
		case ch <- convert(ev):
			return true
		default:
			return false
		}
	})
	if err != nil {
		return nil, err
	}
	return ch, nil
}

// streamScope names the hub's scope a stream's events come from (see
// livesync.Sink.SetScope).
type streamScope struct {
	tenantID   string
	collection *collections.Collection
	access     syncrules.CollectionAccess
}

// callerOf is the sync engine's view of an authenticated caller.
func callerOf(id auth.Identity) syncengine.Caller {
	return syncengine.Caller{TenantID: id.TenantID, UserID: id.UserID, Claims: id.Claims}
}
