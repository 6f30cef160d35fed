package livesync

import (
	"context"
	"log/slog"
	"time"

	"github.com/tidemark/tidemark/collections"
)

// Notifier tells the hub of changes committed by other instances. The
// portable one polls the change counters; a CockroachDB changefeed or a
// PostgreSQL LISTEN wake-up can take its place behind the same interface.
type Notifier interface {
	// Run feeds hub until ctx ends.
	Run(ctx context.Context, hub *Hub)
}

// HeadReader reads the change heads of tenants in one query.
type HeadReader interface {
	ScopeHeads(ctx context.Context, tenantIDs []string) ([]collections.ScopeHead, error)
}

// PollingNotifier reads the heads of every collection of the tenants with
// local subscribers on a short interval: one cheap, batched query per tick,
// whatever the number of subscribers.
type PollingNotifier struct {
	Heads    HeadReader
	Interval time.Duration // default 200ms
	Logger   *slog.Logger
}

// Run polls until ctx ends.
func (p PollingNotifier) Run(ctx context.Context, hub *Hub) {
	interval := p.Interval
	if interval == 0 {
		interval = 200 * time.Millisecond
	}
	log := p.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		tenants := hub.Tenants()
		if len(tenants) == 0 {
			continue
		}
		heads, err := p.Heads.ScopeHeads(ctx, tenants)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("polling change heads failed", "err", err)
			}
			continue
		}
		for _, h := range heads {
			if c, ok := collections.ByName(h.Collection); ok {
				hub.Notify(h.TenantID, c, h.Change)
			}
		}
	}
}
