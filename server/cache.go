package server

import (
	"context"
	"fmt"

	"github.com/dgraph-io/ristretto/v2"
)

// ristrettoCache backs gqlgen's parsed-query cache and APQ store with
// ristretto, so their memory is bounded in bytes rather than entries.
type ristrettoCache[T any] struct {
	c    *ristretto.Cache[string, T]
	cost func(key string, value T) int64
}

func newRistrettoCache[T any](maxBytes int64, cost func(key string, value T) int64) (*ristrettoCache[T], error) {
	c, err := ristretto.NewCache(&ristretto.Config[string, T]{
		NumCounters: 10 * maxBytes / 512, // ten counters per expected entry of ~512 bytes
		MaxCost:     maxBytes,
		BufferItems: 64,
		// Our cost is the entry's size; ristretto's own accounting would
		// add its internal overhead and keep far fewer entries.
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("query cache: %w", err)
	}
	return &ristrettoCache[T]{c: c, cost: cost}, nil
}

func (r *ristrettoCache[T]) Get(_ context.Context, key string) (T, bool) { return r.c.Get(key) }

// Add waits for ristretto's buffered write to land: a client that has just
// registered a persisted query sends its hash alone next, and must find it.
func (r *ristrettoCache[T]) Add(_ context.Context, key string, value T) {
	r.c.Set(key, value, r.cost(key, value))
	r.c.Wait()
}

func (r *ristrettoCache[T]) Close() { r.c.Close() }
