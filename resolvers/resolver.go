// Package resolvers translates GraphQL operations into calls to Tidemark's
// domain packages. resolver.go is the dependency-injection root: it holds
// what the resolvers need and nothing else; no SQL lives here.
package resolvers

//go:generate sh -c "cd .. && go run ./cmd/tidemark-generate"

import (
	"context"

	"github.com/tidemark/tidemark/apperr"
	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/dataloader"
	"github.com/tidemark/tidemark/livesync"
	"github.com/tidemark/tidemark/readapi"
	"github.com/tidemark/tidemark/syncengine"
)

// Resolver is the root of every resolver.
type Resolver struct {
	Sync *syncengine.Engine
	Live *livesync.Hub
	Read *readapi.Service
	// Sources serve the nested reads of the read API, batched per response
	// by the dataloaders; by-id lookups go through the document cache.
	Sources dataloader.Sources
	// StreamBuffer is how many events a stream subscriber may have waiting
	// before it counts as too slow and is disconnected (default 16).
	StreamBuffer int
}

// callerFrom returns the authenticated caller. The HTTP middleware already
// refuses requests without a valid token; this guards every other path
// (websocket connections that have not authenticated, tests, mistakes).
func callerFrom(ctx context.Context) (auth.Identity, error) {
	id, ok := auth.FromContext(ctx)
	if !ok {
		return auth.Identity{}, apperr.New(apperr.Unauthenticated, "authentication required")
	}
	return id, nil
}
