package livesync

import (
	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/syncrules"
)

// ScopeDone returns a channel that closes when the scope of the tenant's
// collection stops, or nil when the hub has no such scope, so a test can
// wait for the stop instead of polling for it.
func ScopeDone(h *Hub, tenantID string, c *collections.Collection) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s := h.scopes[scopeKey{tenantID: tenantID, collection: c, set: syncrules.CollectionAccess{Scope: syncrules.All}}]; s != nil {
		return s.done
	}
	return nil
}
