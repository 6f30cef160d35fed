package syncengine

import (
	"context"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/syncrules"
)

// PageReader is what a Store may add to read a pull's page and the purge
// horizons around it in one round trip (db.DB does).
type PageReader interface {
	// PullPage reads the purge horizon of the bucket ("" for the whole
	// collection), then up to limit changes after position after (the
	// bucket's entries, or the collection's documents when bucket is ""),
	// then the horizon again, in that order, each seeing what committed
	// before it. last is the position of the last entry read, after if none.
	PullPage(ctx context.Context, tenantID string, c *collections.Collection, bucket string, after int64, limit int) (docs []collections.Document, last, horizonBefore, horizonAfter int64, err error)
}

// readPage reads a pull's page of set after position from, and the purge
// horizons before and after it. The horizon before the read bounds what
// this client never needs: an entry purged before it read could only
// concern a document it never had. The horizon after: a purge that deleted
// an entry this read missed has moved it by then.
func (e *Engine) readPage(ctx context.Context, tenantID string, c *collections.Collection, set syncrules.CollectionAccess, from int64, limit int) (docs []collections.Document, next, before, after int64, err error) {
	if r, ok := e.store.(PageReader); ok {
		return r.PullPage(ctx, tenantID, c, set.BucketID, from, limit)
	}
	if before, err = e.store.PurgeHorizon(ctx, tenantID, c, set.BucketID); err != nil {
		return nil, 0, 0, 0, err
	}
	next = from
	if set.Scope == syncrules.All {
		docs, err = e.store.ChangesSince(ctx, tenantID, c, from, limit)
		if len(docs) > 0 {
			next = docs[len(docs)-1].Change
		}
	} else {
		docs, next, err = e.store.BucketChangesSince(ctx, tenantID, c, set.BucketID, from, limit)
	}
	if err != nil {
		return nil, 0, 0, 0, err
	}
	if after, err = e.store.PurgeHorizon(ctx, tenantID, c, set.BucketID); err != nil {
		return nil, 0, 0, 0, err
	}
	return docs, next, before, after, nil
}
