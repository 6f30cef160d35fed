package syncengine

import "github.com/tidemark/tidemark/collections"

// Waiting is the number of pushes of the scope waiting for its running
// transaction, for group tests.
func (e *Engine) Waiting(tenantID string, c *collections.Collection) int {
	e.groupMu.Lock()
	defer e.groupMu.Unlock()
	return len(e.scopes[scopeKey{tenantID, c}])
}
