package livesync

import (
	"context"
	"sync"

	"github.com/tidemark/tidemark/collections"
)

// Disconnector closes the connection a subscription runs on, telling the
// client to reconnect and resync from its checkpoint. Ending a subscription
// with `complete` instead would make clients such as RxDB stop live sync
// for good, so the hub never does that.
type Disconnector func(reason string)

type disconnectorKey struct{}

// WithDisconnector lets the transport say how to close the connection of
// subscriptions started with ctx.
func WithDisconnector(ctx context.Context, d Disconnector) context.Context {
	return context.WithValue(ctx, disconnectorKey{}, d)
}

func disconnectorFrom(ctx context.Context) Disconnector {
	d, _ := ctx.Value(disconnectorKey{}).(Disconnector)
	return d
}

type startKey struct{}

type start struct {
	tenantID string
	mu       *sync.Mutex
	heads    map[string]int64 // collection name → head; taken by the first stream of each
}

// WithStart records the heads of the tenant's collections at the moment a
// client's connection was accepted. Clients pull once connected; a stream
// subscribed on that connection starts from these heads, so nothing that
// commits between the client's pull and its subscription reaching the hub
// is missed. A collection absent from heads starts from 0. Only the first
// stream of each collection on the connection uses its head.
func WithStart(ctx context.Context, tenantID string, heads []collections.ScopeHead) context.Context {
	st := start{tenantID: tenantID, mu: &sync.Mutex{}, heads: map[string]int64{}}
	for _, c := range collections.All() {
		st.heads[c.Name] = 0
	}
	for _, h := range heads {
		if h.TenantID == tenantID {
			st.heads[h.Collection] = h.Change
		}
	}
	return context.WithValue(ctx, startKey{}, st)
}

// HasStart reports whether ctx already holds the tenant's start heads (set
// when the connection was accepted). A later authentication of the same
// tenant on that connection must keep them: heads read when a subscription
// arrives may be past a change the client's pull, begun after the
// connection, has not seen.
func HasStart(ctx context.Context, tenantID string) bool {
	st, ok := ctx.Value(startKey{}).(start)
	return ok && st.tenantID == tenantID
}

func startFrom(ctx context.Context, tenantID string, c *collections.Collection) (int64, bool) {
	st, ok := ctx.Value(startKey{}).(start)
	if !ok || st.tenantID != tenantID {
		return 0, false
	}
	// Only the connection's first stream of a collection starts back at
	// the accept-time head: a later one would replay everything since.
	st.mu.Lock()
	defer st.mu.Unlock()
	head, ok := st.heads[c.Name]
	delete(st.heads, c.Name)
	return head, ok
}
