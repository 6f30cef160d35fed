package server

import (
	"context"

	"github.com/99designs/gqlgen/graphql"
)

// SetStreamKeyForTest makes servers built from now on group stream
// subscribers by key instead of streamKey, and returns the undo. Only for
// tests that do not run in parallel.
func SetStreamKeyForTest(key func(ctx context.Context, oc *graphql.OperationContext) (string, bool)) (undo func()) {
	old := streamKeyFunc
	streamKeyFunc = key
	return func() { streamKeyFunc = old }
}
