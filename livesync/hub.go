package livesync

import (
	"context"
	"errors"
	"sync"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/syncrules"
)

// Hub is one instance's fan-out: it routes subscriptions and commits to the
// scope they belong to, starting a scope with its first subscriber and
// stopping it with its last. The reading and the fan-out are the scope's
// (scope.go).
type Hub struct {
	store Store
	opts  Options

	mu     sync.Mutex
	scopes map[scopeKey]*scope
	// byTarget indexes the scopes by (tenant, collection): a commit wakes
	// every set's scope of its collection, and with hundreds of
	// technicians' buckets per tenant it must not walk every scope.
	byTarget map[target]map[*scope]struct{}
	closed   bool
	ctx      context.Context
	cancel   context.CancelFunc
}

// New returns a hub reading from store.
func New(store Store, opts Options) *Hub {
	ctx, cancel := context.WithCancel(context.Background())
	return &Hub{store: store, opts: opts.withDefaults(), scopes: map[scopeKey]*scope{}, byTarget: map[target]map[*scope]struct{}{}, ctx: ctx, cancel: cancel}
}

// target is what a commit names: a tenant's collection.
type target struct {
	tenantID   string
	collection *collections.Collection
}

// ErrClosed is returned by Subscribe after Close.
var ErrClosed = errors.New("live sync is shutting down")

// Subscribe registers a subscriber of the tenant's collection until ctx
// ends. Its first event starts at its start (WithStart) or, without one, at
// the scope's current position (the collection's head, when the scope is
// new), and each later event starts where the one before ended, so a
// client that pulls from any event's cursor misses nothing. Transports
// must give every stream a start taken before the client pulls: a new
// scope reads its head only when the database answers, which after an
// outage may be past changes the client never pulled (the server refuses
// a stream whose start it cannot read). When the subscriber falls behind, the hub calls
// the Disconnector of ctx (see WithDisconnector) and forgets it.
//
// set is what the subscriber may see of the collection (see syncrules): a
// subscriber of a bucket gets only that bucket's entries. A subscriber that
// may see nothing is registered and never sent anything.
func (h *Hub) Subscribe(ctx context.Context, tenantID string, c *collections.Collection, set syncrules.CollectionAccess, deliver Deliver) error {
	if set.Scope == syncrules.None {
		return nil
	}
	key := scopeKey{tenantID: tenantID, collection: c, set: set}
	sub := &subscriber{deliver: deliver, disconnect: disconnectorFrom(ctx), behindFrom: -1}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrClosed
	}
	// Set before the scope can see the subscriber; from then on the scope
	// changes it (under its lock), so below only the local copy is read.
	from, behind := startFrom(ctx, tenantID, c)
	if behind {
		sub.behindFrom = from
	}
	s, running := h.scopes[key]
	if !running {
		s = newScope(h, key)
		h.scopes[key] = s
		t := target{tenantID, c}
		if h.byTarget[t] == nil {
			h.byTarget[t] = map[*scope]struct{}{}
		}
		h.byTarget[t][s] = struct{}{}
	}
	s.add(sub)
	h.mu.Unlock()

	switch {
	case !running:
		go s.run()
	case behind:
		s.advance(0) // wake the scope to bring the newcomer up to date
	}
	// No goroutine per subscriber: with tens of thousands of idle
	// subscriptions, every few KiB of stack counts.
	context.AfterFunc(ctx, func() { h.unsubscribe(s, sub) })
	return nil
}

func (h *Hub) unsubscribe(s *scope, sub *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.remove(sub) == 0 && h.scopes[s.key] == s {
		delete(h.scopes, s.key)
		t := target{s.key.tenantID, s.key.collection}
		delete(h.byTarget[t], s)
		if len(h.byTarget[t]) == 0 {
			delete(h.byTarget, t)
		}
		s.stop()
	}
}

// Notify tells the hub that a scope's head is now at least head: called with
// this instance's own commits (at once) and by the Notifier with others'.
// It never blocks and does nothing for scopes without local subscribers.
func (h *Hub) Notify(tenantID string, c *collections.Collection, head int64) {
	h.mu.Lock()
	targeted := h.byTarget[target{tenantID, c}]
	scopes := make([]*scope, 0, len(targeted))
	for s := range targeted {
		scopes = append(scopes, s)
	}
	h.mu.Unlock()
	for _, s := range scopes {
		s.advance(head)
	}
}

// Tenants lists the tenants that have local subscribers, for the Notifier.
func (h *Hub) Tenants() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for k := range h.scopes {
		if !seen[k.tenantID] {
			seen[k.tenantID] = true
			out = append(out, k.tenantID)
		}
	}
	return out
}

// HasTenants reports whether any tenant has local subscribers: what a
// notifier asks on every tick, without building Tenants' list.
func (h *Hub) HasTenants() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.scopes) > 0
}

// Stats counts what the hub serves now.
type Stats struct{ Scopes, Subscribers int }

// Stats returns the current scope and subscriber counts.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := Stats{Scopes: len(h.scopes)}
	for _, s := range h.scopes {
		st.Subscribers += s.count()
	}
	return st
}

// Close stops every scope. Subscribers get no more events; their
// connections close with the server.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	scopes := h.scopes
	h.scopes = map[scopeKey]*scope{}
	h.byTarget = map[target]map[*scope]struct{}{}
	h.mu.Unlock()
	h.cancel()
	for _, s := range scopes {
		s.stop()
	}
}
