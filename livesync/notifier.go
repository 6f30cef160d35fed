package livesync

import (
	"context"
	"log/slog"
	"time"

	"github.com/tidemark/tidemark/collections"
)

// Notifier tells listeners (the live-sync hub, the document cache) of
// changes committed by other instances. The portable one polls the change
// counters; a CockroachDB changefeed or a PostgreSQL LISTEN wake-up can take
// its place behind the same interface.
type Notifier interface {
	// Run feeds the listeners until ctx ends.
	Run(ctx context.Context)
}

// HeadListener wants to know when the heads of its tenants' scopes move.
// Hub is one.
type HeadListener interface {
	// Tenants lists the tenants whose scopes the listener cares about now.
	Tenants() []string
	// Notify says a scope's head is now at least head. It must not block.
	Notify(tenantID string, c *collections.Collection, head int64)
}

// HeadReader reads the change heads of tenants in one query.
type HeadReader interface {
	ScopeHeads(ctx context.Context, tenantIDs []string) ([]collections.ScopeHead, error)
}

// PollingNotifier reads the heads of every collection of the tenants with
// local subscribers on a short interval: one cheap, batched query per tick,
// whatever the number of subscribers.
type PollingNotifier struct {
	Heads     HeadReader
	Listeners []HeadListener
	Interval  time.Duration // default 200ms
	Logger    *slog.Logger
	// Cycle, if set, hears how long each cycle that had tenants to poll
	// took: the read of the heads and the listeners' notifications.
	Cycle func(time.Duration)
}

// Run polls until ctx ends.
func (p PollingNotifier) Run(ctx context.Context) {
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
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		seen := map[string]bool{}
		var tenants []string
		for _, l := range p.Listeners {
			for _, t := range l.Tenants() {
				if !seen[t] {
					seen[t] = true
					tenants = append(tenants, t)
				}
			}
		}
		if len(tenants) == 0 {
			continue
		}
		start := time.Now()
		heads, err := p.Heads.ScopeHeads(ctx, tenants)
		if err != nil {
			// During an outage this fails on every tick: say so once,
			// and once more when it works again.
			if ctx.Err() == nil && !failing {
				log.Warn("polling change heads failed; retrying on every tick", "err", err)
			}
			failing = true
			continue
		}
		if failing {
			log.Info("polling change heads works again")
			failing = false
		}
		for _, h := range heads {
			c, ok := collections.ByName(h.Collection)
			if !ok {
				continue
			}
			for _, l := range p.Listeners {
				l.Notify(h.TenantID, c, h.Change)
			}
		}
		if p.Cycle != nil {
			p.Cycle(time.Since(start))
		}
	}
}
