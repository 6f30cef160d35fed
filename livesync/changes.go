package livesync

import (
	"context"
	"log/slog"
	"time"

	"github.com/tidemark/tidemark/collections"
)

// ChangedScopesReader reads, in one statement, the scopes of every tenant
// whose change counter advanced after since (by the database's clock), and
// that clock; a zero since reads the clock alone. *db.DB is one.
type ChangedScopesReader interface {
	ChangedScopes(ctx context.Context, since time.Time) (now time.Time, heads []collections.ScopeHead, err error)
}

// DefaultOverlap is ChangesNotifier's default margin for commits in flight.
const DefaultOverlap = 2 * time.Second

// ChangesNotifier is the notifier that stays cheap with many tenants: each
// poll is one query that returns only the scopes changed since the last
// poll, whatever the number of tenants with local subscribers, where
// PollingNotifier reads every collection of every such tenant on each tick.
//
// A writer stamps its counter with the database's clock before it commits,
// so a scope may become visible after a poll whose clock is past its stamp.
// Each poll therefore asks from Overlap before the previous poll's clock,
// and sees a scope changed in that margin twice (listeners take a head they
// know as a no-op, and the notifier skips the ones it just reported). A
// notification is a hint: subscribers read from their own positions, so an
// early or repeated one costs a read, never a gap.
//
// On start it reads the heads of its listeners' tenants once (Heads), after
// taking the database's clock, so the changes committed while no notifier
// ran (a restart) reach subscribers that outlived it. It does the same
// after a time without listened-to tenants, when it reads nothing.
type ChangesNotifier struct {
	Changes   ChangedScopesReader
	Heads     HeadReader
	Listeners []HeadListener
	Interval  time.Duration // default 200ms
	// Overlap is how far before the last poll's clock the next poll asks
	// from (default DefaultOverlap): it must exceed the time from a
	// counter's advance to its commit, plus the skew between database
	// nodes' clocks on CockroachDB (500ms at most by default).
	Overlap time.Duration
	Logger  *slog.Logger
	// Cycle, if set, hears how long each poll took: the read and the
	// listeners' notifications.
	Cycle func(time.Duration)

	since    time.Time        // the next poll's lower bound; zero until caught up
	reported map[scopeAt]bool // what the last poll reported, to skip repeats
	failing  bool
}

type scopeAt struct {
	tenantID, collection string
	head                 int64
}

// Run polls until ctx ends: at once, then on every tick.
func (n *ChangesNotifier) Run(ctx context.Context) {
	interval := n.Interval
	if interval == 0 {
		interval = 200 * time.Millisecond
	}
	log := n.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		start := time.Now()
		polled, err := n.poll(ctx)
		switch {
		case err != nil:
			// During an outage this fails on every tick: say so once,
			// and once more when it works again. The lower bound stays
			// where it was, so the outage's commits come with the next
			// poll that works.
			if ctx.Err() == nil && !n.failing {
				log.Warn("polling changed scopes failed; retrying on every tick", "err", err)
			}
			n.failing = true
		default:
			if n.failing {
				log.Info("polling changed scopes works again")
				n.failing = false
			}
			if polled && n.Cycle != nil {
				n.Cycle(time.Since(start))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Poll runs one cycle: the catch-up read if this notifier has not caught up
// yet, else the query of the scopes changed since the last poll, and tells
// the listeners. It is Run's step, for tests and benchmarks.
//
// While no listener names a tenant it reads nothing, as PollingNotifier
// does, and catches up again when one does: an instance without
// subscribers leaves the database alone.
func (n *ChangesNotifier) Poll(ctx context.Context) error {
	_, err := n.poll(ctx)
	return err
}

func (n *ChangesNotifier) poll(ctx context.Context) (polled bool, err error) {
	if !anyTenants(n.Listeners) {
		n.since, n.reported = time.Time{}, nil
		return false, nil
	}
	if n.since.IsZero() {
		return true, n.catchUp(ctx, listenersTenants(n.Listeners))
	}
	now, heads, err := n.Changes.ChangedScopes(ctx, n.since)
	if err != nil {
		return true, err
	}
	reported := make(map[scopeAt]bool, len(heads))
	for _, h := range heads {
		k := scopeAt{h.TenantID, h.Collection, h.Change}
		reported[k] = true
		if n.reported[k] {
			continue // seen in the overlap of the previous poll
		}
		n.notify(h)
	}
	n.reported = reported
	n.advance(now)
	return true, nil
}

// catchUp takes the database's clock, then reads the heads of the
// listeners' tenants: whatever committed before that read is in it, and
// whatever commits after carries a stamp the next poll asks for.
func (n *ChangesNotifier) catchUp(ctx context.Context, tenants []string) error {
	now, _, err := n.Changes.ChangedScopes(ctx, time.Time{})
	if err != nil {
		return err
	}
	heads, err := n.Heads.ScopeHeads(ctx, tenants)
	if err != nil {
		return err
	}
	for _, h := range heads {
		n.notify(h)
	}
	n.reported = nil
	n.advance(now)
	return nil
}

func (n *ChangesNotifier) advance(now time.Time) {
	overlap := n.Overlap
	if overlap == 0 {
		overlap = DefaultOverlap
	}
	n.since = now.Add(-overlap)
}

func (n *ChangesNotifier) notify(h collections.ScopeHead) {
	c, ok := collections.ByName(h.Collection)
	if !ok {
		return
	}
	for _, l := range n.Listeners {
		l.Notify(h.TenantID, c, h.Change)
	}
}

// tenantsKnower is a HeadListener that says whether it has tenants without
// listing them (Hub does): a poll asks on every tick, and a list of 100k
// tenants costs tens of milliseconds to build.
type tenantsKnower interface{ HasTenants() bool }

// anyTenants reports whether any listener cares about a tenant now.
func anyTenants(listeners []HeadListener) bool {
	for _, l := range listeners {
		if k, ok := l.(tenantsKnower); ok {
			if k.HasTenants() {
				return true
			}
		} else if len(l.Tenants()) > 0 {
			return true
		}
	}
	return false
}

// listenersTenants lists the tenants any listener cares about, once each.
func listenersTenants(listeners []HeadListener) []string {
	seen := map[string]bool{}
	var tenants []string
	for _, l := range listeners {
		for _, t := range l.Tenants() {
			if !seen[t] {
				seen[t] = true
				tenants = append(tenants, t)
			}
		}
	}
	return tenants
}
