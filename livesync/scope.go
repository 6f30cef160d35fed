package livesync

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/syncengine"
	"github.com/tidemark/tidemark/syncrules"
)

// scopeKey names a scope: what its subscribers share, one read of changes
// and one stream of events. It is a struct of its own so that a scope can be
// narrowed (say to a part of a collection) by adding a field here; build it
// with field names.
type scopeKey struct {
	tenantID   string
	collection *collections.Collection
	// set is the part of the collection the subscribers sync: the whole
	// tenant, or one bucket under sync rules. Subscribers with different
	// sets never share a scope, so none gets another's documents.
	set syncrules.CollectionAccess
}

type subscriber struct {
	deliver    Deliver
	disconnect Disconnector
	// behindFrom is where the subscriber's stream must start when that is
	// before the scope's position (see WithStart), until the scope has
	// brought it up to date; -1 once it is in step with the scope. Once the
	// subscriber is added to a scope it is read and written under the
	// scope's mu only.
	behindFrom int64
}

// scope is the fan-out of one tenant's collection: one goroutine (run)
// reads each batch of changes once and hands the same event to every
// subscriber.
type scope struct {
	hub *Hub
	key scopeKey

	mu       sync.Mutex
	subs     map[*subscriber]struct{}
	position int64 // change number every current subscriber has been sent up to
	known    int64 // latest head heard of
	started  bool  // position has been read from the database
	// heardAt is when the hub heard of the oldest head not yet sent, for
	// Observer.FanOut (zero when no observer wants it or nothing waits).
	heardAt time.Time

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

// advance raises the known head to head (0 only wakes the scope) without
// blocking.
func (s *scope) advance(head int64) {
	s.mu.Lock()
	if head > s.known {
		s.known = head
		if s.heardAt.IsZero() && s.hub.opts.Observer.FanOut != nil {
			s.heardAt = time.Now()
		}
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
		docs, next, err := s.read(ctx, pos)
		if err != nil {
			return s.failed(log, failures, err)
		}
		*failures = 0
		if s.key.set.Scope == syncrules.InBucket && next-pos < int64(s.hub.opts.BatchLimit) {
			// A bucket has no entry for most of its collection's changes.
			// A head is announced after its commit, so every entry up to
			// the head read before this read is visible to it.
			next = max(next, known)
		}
		if len(docs) == 0 {
			// Whole tenant: the head moved but its rows are not visible to
			// this read yet (possible on a lagging replica); the next kick
			// or poll retries. A bucket moves past entries it skips.
			s.mu.Lock()
			s.position = max(s.position, next)
			s.mu.Unlock()
			if next > pos {
				continue
			}
			return true
		}
		ev := &Event{Documents: docs, Cursor: syncengine.EncodeCursor(s.key.collection, s.key.tenantID, s.key.set, syncengine.Position{Change: next})}
		s.mu.Lock()
		s.position = next
		heardAt := s.heardAt
		if next >= s.known {
			s.heardAt = time.Time{}
		}
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
				s.drop(log, sub, DropSlow)
			} else if !heardAt.IsZero() {
				s.hub.opts.Observer.FanOut(s.key.collection, time.Since(heardAt))
			}
		}
	}
}

// read returns the scope's entries after position `after` and the position
// of the last entry read.
func (s *scope) read(ctx context.Context, after int64) ([]collections.Document, int64, error) {
	if s.key.set.Scope == syncrules.InBucket {
		return s.hub.store.BucketChangesSince(ctx, s.key.tenantID, s.key.collection, s.key.set.BucketID, after, s.hub.opts.BatchLimit)
	}
	docs, err := s.hub.store.ChangesSince(ctx, s.key.tenantID, s.key.collection, after, s.hub.opts.BatchLimit)
	if err != nil || len(docs) == 0 {
		return docs, after, err
	}
	return docs, docs[len(docs)-1].Change, nil
}

var errBackfill = errors.New("reading a new subscriber's missed changes failed")

// bringUpToDate sends each subscriber that joined behind the scope's
// position the changes between its start and that position, read for it
// alone, so that its stream starts where its client's view of the data
// does. Only the scope's goroutine moves the position, so it holds still
// meanwhile.
func (s *scope) bringUpToDate(ctx context.Context, log *slog.Logger) bool {
	type newcomer struct {
		sub  *subscriber
		from int64
	}
	s.mu.Lock()
	target := s.position
	var behind []newcomer
	for sub := range s.subs {
		switch {
		case sub.behindFrom < 0:
		case sub.behindFrom >= target:
			sub.behindFrom = -1 // already there: the next event is its first
		default:
			behind = append(behind, newcomer{sub, sub.behindFrom})
		}
	}
	s.mu.Unlock()
	for _, n := range behind {
		from := n.from
		for from < target {
			docs, _, err := s.read(ctx, from)
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
			ev := &Event{Documents: docs, Cursor: syncengine.EncodeCursor(s.key.collection, s.key.tenantID, s.key.set, syncengine.Position{Change: from})}
			if !n.sub.deliver(ev) {
				s.drop(log, n.sub, DropSlow)
				break
			}
		}
		s.mu.Lock()
		n.sub.behindFrom = -1
		s.mu.Unlock()
	}
	return true
}

func (s *scope) failed(log *slog.Logger, failures *int, err error) bool {
	if s.hub.ctx.Err() != nil {
		return false
	}
	*failures++
	// One line per streak at warning level: during an outage every scope
	// fails on every retry.
	level := slog.LevelDebug
	if *failures == 1 {
		level = slog.LevelWarn
	}
	log.Log(s.hub.ctx, level, "live sync read failed", "err", err, "failures", *failures)
	if *failures >= s.hub.opts.MaxReadFailures {
		s.mu.Lock()
		subs := make([]*subscriber, 0, len(s.subs))
		for sub := range s.subs {
			subs = append(subs, sub)
		}
		s.mu.Unlock()
		for _, sub := range subs {
			s.drop(log, sub, DropReadFailed)
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
	if f := s.hub.opts.Observer.Dropped; f != nil {
		f(s.key.collection, why)
	}
	if sub.disconnect != nil {
		go sub.disconnect(why)
	}
}
