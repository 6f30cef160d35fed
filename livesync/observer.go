package livesync

import (
	"time"

	"github.com/tidemark/tidemark/collections"
)

// Observer hears what the hub does, for metrics (Options.Observer). Every
// field may be nil; an unset one costs nothing, not even a clock read. The
// calls must not block.
type Observer struct {
	// FanOut hears of every event handed to a subscriber: the time since
	// the hub heard of the newest change it carries (right after the commit
	// for this instance's commits, at the notifier's poll for others').
	FanOut func(c *collections.Collection, lag time.Duration)
	// Dropped hears of every subscriber the hub disconnects, with why:
	// DropSlow or DropReadFailed.
	Dropped func(c *collections.Collection, why string)
}

// Why the hub drops a subscriber; the reason also goes to its Disconnector.
const (
	// DropSlow: its buffer was full (the client reads too slowly).
	DropSlow = "subscriber fell behind"
	// DropReadFailed: the hub could not read changes MaxReadFailures times in a row.
	DropReadFailed = "live sync cannot read changes"
)

// KnownHead is the newest head the hub has heard of for the tenant's
// collection, in any of its sets; false when no local subscriber follows it.
func (h *Hub) KnownHead(tenantID string, c *collections.Collection) (int64, bool) {
	h.mu.Lock()
	scopes := make([]*scope, 0, len(h.byTarget[target{tenantID, c}]))
	for s := range h.byTarget[target{tenantID, c}] {
		scopes = append(scopes, s)
	}
	h.mu.Unlock()
	var head int64
	known := false
	for _, s := range scopes {
		s.mu.Lock()
		if s.started || s.known > 0 {
			head, known = max(head, s.known), true
		}
		s.mu.Unlock()
	}
	return head, known
}

// SubscribersByCollection counts the local subscribers of each collection
// (by name), across tenants and sets.
func (h *Hub) SubscribersByCollection() map[string]int {
	h.mu.Lock()
	scopes := make([]*scope, 0, len(h.scopes))
	for _, s := range h.scopes {
		scopes = append(scopes, s)
	}
	h.mu.Unlock()
	out := map[string]int{}
	for _, s := range scopes {
		out[s.key.collection.Name] += s.count()
	}
	return out
}
