// Package tombstones purges what sync keeps only so that offline devices
// learn of deletes: deleted documents and the removals of documents that
// left a caller's set. Both are kept for a retention period; after it they
// are deleted in small batches, on one instance at a time, and a device
// whose checkpoint is older than what was purged is told to start over
// (CHECKPOINT_EXPIRED) instead of silently missing a delete.
package tombstones

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/tidemark/tidemark/collections"
)

// Defaults of the purge.
const (
	DefaultRetention = 720 * time.Hour
	DefaultInterval  = time.Hour
	// DefaultBatch keeps each purge transaction short: a writer never
	// waits long on a row the purge has locked.
	DefaultBatch = 500
)

// leaseName is the purge's lease: the instance that holds it purges.
const leaseName = "tombstone-purge"

// Store is what the purge needs; *db.DB implements it.
type Store interface {
	TakeLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, name, holder string) error
	PurgeTombstones(ctx context.Context, c *collections.Collection, cutoff time.Time, batch int) (int, error)
	PurgeRemovals(ctx context.Context, cutoff time.Time, batch int) (int, error)
}

// Purger runs the purge every Interval.
type Purger struct {
	Store     Store
	Retention time.Duration // default DefaultRetention
	Interval  time.Duration // default DefaultInterval
	Batch     int           // default DefaultBatch
	Log       *slog.Logger  // nil discards
	// Now is the clock (default time.Now); tests move it.
	Now func() time.Time

	holder string
}

// Result is what one purge deleted.
type Result struct {
	Tombstones int // deleted documents
	Removals   int // bucket removals
	Skipped    bool
}

// Run purges every Interval until ctx ends. The first purge waits an
// interval too, so instances that start together do not all reach for the
// lease at once.
func (p *Purger) Run(ctx context.Context) {
	p.init()
	ticker := time.NewTicker(p.Interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		if res, err := p.PurgeOnce(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			p.Log.Warn("tombstone purge failed", "err", err)
		} else if !res.Skipped && res.Tombstones+res.Removals > 0 {
			p.Log.Info("tombstones purged", "documents", res.Tombstones, "removals", res.Removals)
		}
	}
}

// PurgeOnce purges everything older than the retention, batch by batch,
// if this instance can take the lease (Skipped otherwise).
func (p *Purger) PurgeOnce(ctx context.Context) (Result, error) {
	p.init()
	var res Result
	// The lease outlives one batch comfortably and is renewed before each.
	ttl := max(p.Interval, time.Minute)
	take := func() (bool, error) { return p.Store.TakeLease(ctx, leaseName, p.holder, ttl) }
	ok, err := take()
	if err != nil || !ok {
		res.Skipped = true
		return res, err
	}
	defer func() { _ = p.Store.ReleaseLease(context.WithoutCancel(ctx), leaseName, p.holder) }()
	cutoff := p.Now().Add(-p.Retention)
	for _, c := range collections.All() {
		for {
			if ok, err := take(); err != nil || !ok {
				return res, err
			}
			n, err := p.Store.PurgeTombstones(ctx, c, cutoff, p.Batch)
			if err != nil {
				return res, err
			}
			res.Tombstones += n
			if n < p.Batch {
				break
			}
		}
	}
	for {
		if ok, err := take(); err != nil || !ok {
			return res, err
		}
		n, err := p.Store.PurgeRemovals(ctx, cutoff, p.Batch)
		if err != nil {
			return res, err
		}
		res.Removals += n
		if n < p.Batch {
			return res, nil
		}
	}
}

func (p *Purger) init() {
	if p.Retention <= 0 {
		p.Retention = DefaultRetention
	}
	if p.Interval <= 0 {
		p.Interval = DefaultInterval
	}
	if p.Batch <= 0 {
		p.Batch = DefaultBatch
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	if p.Log == nil {
		p.Log = slog.New(slog.DiscardHandler)
	}
	if p.holder == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		p.holder = hex.EncodeToString(b[:])
	}
}
