// Package livesync fans committed changes out to live subscribers. Each
// instance keeps one scope per (tenant, collection) that has local
// subscribers; a scope reads each batch of new changes once and hands the
// same event to all its subscribers. Instances learn of each other's
// commits through the database (a Notifier), and of their own at once.
//
// It knows neither SQL nor GraphQL nor websockets: storage is the Store
// interface, delivery a callback, and dropping a slow subscriber's
// connection the Disconnector its transport put in the context.
package livesync

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/syncengine"
)

// Store is what the hub reads.
type Store interface {
	ChangesSince(ctx context.Context, tenantID string, c *collections.Collection, after int64, limit int) ([]collections.Document, error)
	ScopeHead(ctx context.Context, tenantID string, c *collections.Collection) (int64, error)
}

// Event is one batch of changes of a scope: the documents, in change order
// and at their latest state, and the cursor after them. The same event goes
// to every subscriber of the scope; treat it as read-only.
type Event struct {
	Documents []collections.Document
	Cursor    string

	once      sync.Once
	converted any
}

// Converted returns convert's result, computing it once per event, so a
// transport's translation of an event is shared by all subscribers.
func (e *Event) Converted(convert func() any) any {
	e.once.Do(func() { e.converted = convert() })
	return e.converted
}

// Deliver hands an event to one subscriber without blocking. It returns
// false when the subscriber cannot take it (its buffer is full): the hub
// then drops the subscriber.
type Deliver func(*Event) bool

// Options tune a hub. Zero values take the defaults.
type Options struct {
	// BatchLimit is the most documents in one event (default 1000, the pull limit).
	BatchLimit int
	// RetryDelay is the wait before reading again after a failed read (default 1s).
	RetryDelay time.Duration
	// MaxReadFailures in a row drop a scope's subscribers, so they reconnect
	// and resync instead of waiting on a database that is gone (default 5).
	MaxReadFailures int
	Logger          *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.BatchLimit == 0 {
		o.BatchLimit = syncengine.MaxPullLimit
	}
	if o.RetryDelay == 0 {
		o.RetryDelay = time.Second
	}
	if o.MaxReadFailures == 0 {
		o.MaxReadFailures = 5
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Hub is one instance's fan-out.
type Hub struct {
	store Store
	opts  Options

	mu     sync.Mutex
	scopes map[scopeKey]*scope
	closed bool
	ctx    context.Context
	cancel context.CancelFunc
}

type scopeKey struct {
	tenantID   string
	collection *collections.Collection
}

// New returns a hub reading from store.
func New(store Store, opts Options) *Hub {
	ctx, cancel := context.WithCancel(context.Background())
	return &Hub{store: store, opts: opts.withDefaults(), scopes: map[scopeKey]*scope{}, ctx: ctx, cancel: cancel}
}

// ErrClosed is returned by Subscribe after Close.
var ErrClosed = errors.New("live sync is shutting down")

// Subscribe registers a subscriber of the tenant's collection until ctx
// ends. Its first event starts at the scope's current position (the
// collection's head, when the scope is new), and each later event starts
// where the one before ended, so a client that pulls from any event's
// cursor misses nothing. When the subscriber falls behind, the hub calls
// the Disconnector of ctx (see WithDisconnector) and forgets it.
func (h *Hub) Subscribe(ctx context.Context, tenantID string, c *collections.Collection, deliver Deliver) error {
	key := scopeKey{tenantID, c}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrClosed
	}
	s, ok := h.scopes[key]
	if !ok {
		s = newScope(h, key)
		h.scopes[key] = s
	}
	sub := &subscriber{deliver: deliver, disconnect: disconnectorFrom(ctx), behindFrom: -1}
	if from, ok := startFrom(ctx, tenantID, c); ok {
		sub.behindFrom = from
	}
	s.add(sub)
	h.mu.Unlock()

	if !ok {
		go s.run()
	} else if sub.behindFrom >= 0 {
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
		s.stop()
	}
}

// Notify tells the hub that a scope's head is now at least head: called with
// this instance's own commits (at once) and by the Notifier with others'.
// It never blocks and does nothing for scopes without local subscribers.
func (h *Hub) Notify(tenantID string, c *collections.Collection, head int64) {
	h.mu.Lock()
	s := h.scopes[scopeKey{tenantID, c}]
	h.mu.Unlock()
	if s != nil {
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
	h.mu.Unlock()
	h.cancel()
	for _, s := range scopes {
		s.stop()
	}
}

type subscriber struct {
	deliver    Deliver
	disconnect Disconnector
	// behindFrom is where the subscriber's stream must start when that is
	// before the scope's position (see WithStart), until the scope has
	// brought it up to date; -1 once it is in step with the scope.
	behindFrom int64
}

// scope is the fan-out of one tenant's collection.
type scope struct {
	hub *Hub
	key scopeKey

	mu       sync.Mutex
	subs     map[*subscriber]struct{}
	position int64 // change number every current subscriber has been sent up to
	known    int64 // latest head heard of
	started  bool  // position has been read from the database

	kick     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

func newScope(h *Hub, key scopeKey) *scope {
	return &scope{hub: h, key: key, subs: map[*subscriber]struct{}{}, kick: make(chan struct{}, 1), done: make(chan struct{})}
}

func (s *scope) add(sub *subscriber) {
	s.mu.Lock()
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
}

func (s *scope) remove(sub *subscriber) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.subs, sub)
	return len(s.subs)
}

func (s *scope) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

func (s *scope) stop() { s.stopOnce.Do(func() { close(s.done) }) }

func (s *scope) advance(head int64) {
	s.mu.Lock()
	if head > s.known {
		s.known = head
	}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// run serves the scope until its last subscriber leaves: on every kick it
// reads the changes after its position, once for all subscribers, and
// hands each batch to each subscriber.
func (s *scope) run() {
	log := s.hub.opts.Logger.With("tenant", s.key.tenantID, "collection", s.key.collection.Name)
	ctx := s.hub.ctx
	failures := 0
	for {
		if !s.catchUp(ctx, log, &failures) {
			// A failed read: try again after a pause, unless told to stop.
			select {
			case <-time.After(s.hub.opts.RetryDelay):
				s.advance(0)
			case <-s.done:
				return
			}
			continue
		}
		select {
		case <-s.kick:
		case <-s.done:
			return
		}
	}
}

// catchUp delivers everything up to the known head. It reports false after
// a failed read.
func (s *scope) catchUp(ctx context.Context, log *slog.Logger, failures *int) bool {
	if !s.started {
		head, err := s.hub.store.ScopeHead(ctx, s.key.tenantID, s.key.collection)
		if err != nil {
			return s.failed(log, failures, err)
		}
		s.mu.Lock()
		s.position, s.started = head, true
		s.known = max(s.known, head)
		s.mu.Unlock()
	}
	for {
		if !s.bringUpToDate(ctx, log) {
			return s.failed(log, failures, errBackfill)
		}
		s.mu.Lock()
		pos, known := s.position, s.known
		s.mu.Unlock()
		if known <= pos {
			return true
		}
		docs, err := s.hub.store.ChangesSince(ctx, s.key.tenantID, s.key.collection, pos, s.hub.opts.BatchLimit)
		if err != nil {
			return s.failed(log, failures, err)
		}
		*failures = 0
		if len(docs) == 0 {
			// The head moved but its rows are not visible to this read yet
			// (possible on a lagging replica); the next kick or poll retries.
			return true
		}
		next := docs[len(docs)-1].Change
		ev := &Event{Documents: docs, Cursor: syncengine.EncodeCursor(s.key.collection, s.key.tenantID, next)}
		s.mu.Lock()
		s.position = next
		subs := make([]*subscriber, 0, len(s.subs))
		for sub := range s.subs {
			if sub.behindFrom >= 0 {
				continue // joined meanwhile: bringUpToDate sends it this batch
			}
			subs = append(subs, sub)
		}
		s.mu.Unlock()
		for _, sub := range subs {
			if !sub.deliver(ev) {
				s.drop(log, sub, "subscriber fell behind")
			}
		}
	}
}

var errBackfill = errors.New("reading a new subscriber's missed changes failed")

// bringUpToDate sends each subscriber that joined behind the scope's
// position the changes between its start and that position, read for it
// alone, so that its stream starts where its client's view of the data
// does. Only the scope's goroutine moves the position, so it holds still
// meanwhile.
func (s *scope) bringUpToDate(ctx context.Context, log *slog.Logger) bool {
	s.mu.Lock()
	target := s.position
	var behind []*subscriber
	for sub := range s.subs {
		switch {
		case sub.behindFrom < 0:
		case sub.behindFrom >= target:
			sub.behindFrom = -1 // already there: the next event is its first
		default:
			behind = append(behind, sub)
		}
	}
	s.mu.Unlock()
	for _, sub := range behind {
		from := sub.behindFrom
		for from < target {
			docs, err := s.hub.store.ChangesSince(ctx, s.key.tenantID, s.key.collection, from, s.hub.opts.BatchLimit)
			if err != nil {
				return false
			}
			cut := len(docs)
			for cut > 0 && docs[cut-1].Change > target {
				cut--
			}
			docs = docs[:cut]
			if len(docs) == 0 {
				break
			}
			from = docs[len(docs)-1].Change
			ev := &Event{Documents: docs, Cursor: syncengine.EncodeCursor(s.key.collection, s.key.tenantID, from)}
			if !sub.deliver(ev) {
				s.drop(log, sub, "subscriber fell behind")
				break
			}
		}
		s.mu.Lock()
		sub.behindFrom = -1
		s.mu.Unlock()
	}
	return true
}

func (s *scope) failed(log *slog.Logger, failures *int, err error) bool {
	if s.hub.ctx.Err() != nil {
		return false
	}
	*failures++
	log.Warn("live sync read failed", "err", err, "failures", *failures)
	if *failures >= s.hub.opts.MaxReadFailures {
		s.mu.Lock()
		subs := make([]*subscriber, 0, len(s.subs))
		for sub := range s.subs {
			subs = append(subs, sub)
		}
		s.mu.Unlock()
		for _, sub := range subs {
			s.drop(log, sub, "live sync cannot read changes")
		}
		*failures = 0
	}
	return false
}

func (s *scope) drop(log *slog.Logger, sub *subscriber, why string) {
	s.mu.Lock()
	_, present := s.subs[sub]
	delete(s.subs, sub)
	s.mu.Unlock()
	if !present {
		return
	}
	log.Info("dropping live subscriber", "reason", why)
	if sub.disconnect != nil {
		go sub.disconnect(why)
	}
}
