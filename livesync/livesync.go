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
	"log/slog"
	"sync"
	"time"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/syncengine"
)

// Store is what the hub reads.
type Store interface {
	ChangesSince(ctx context.Context, tenantID string, c *collections.Collection, after int64, limit int) ([]collections.Document, error)
	// BucketChangesSince reads one bucket of a collection (a caller's set
	// under sync rules); its positions are the collection's change numbers.
	BucketChangesSince(ctx context.Context, tenantID string, c *collections.Collection, bucket string, after int64, limit int) ([]collections.Document, int64, error)
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

	encMu   sync.Mutex
	encoded map[string]*encoding // Encoded's memo, by operation key
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
	// Observer hears of fan-out, for metrics (observer.go).
	Observer Observer
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
