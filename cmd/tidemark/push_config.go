package main

import (
	"flag"
	"fmt"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/syncengine"
)

var defaultPushLimits = syncengine.PushLimits{
	MaxRowBytes:  collections.DefaultMaxRowBytes,
	MaxPushBytes: collections.DefaultMaxPushBytes,
}

// bindPushLimits registers the flags and variables of the push input's
// byte limits (docs/security.md); the defaults are collections'.
func bindPushLimits(fs *flag.FlagSet, l *syncengine.PushLimits, errs *envErrors) {
	fs.IntVar(&l.MaxRowBytes, "max-row-bytes", errs.int("TIDEMARK_MAX_ROW_BYTES", defaultPushLimits.MaxRowBytes), "most bytes of values one push row may hold, new and assumed state together (TIDEMARK_MAX_ROW_BYTES)")
	fs.IntVar(&l.MaxPushBytes, "max-push-bytes", errs.int("TIDEMARK_MAX_PUSH_BYTES", defaultPushLimits.MaxPushBytes), "most bytes of values all rows of one push may hold (TIDEMARK_MAX_PUSH_BYTES)")
}

func validatePushLimits(l syncengine.PushLimits) []error {
	var errs []error
	if l.MaxRowBytes < 1024 {
		errs = append(errs, fmt.Errorf("TIDEMARK_MAX_ROW_BYTES must be at least 1024 (got %d)", l.MaxRowBytes))
	}
	if l.MaxPushBytes < l.MaxRowBytes {
		errs = append(errs, fmt.Errorf("TIDEMARK_MAX_PUSH_BYTES must be at least TIDEMARK_MAX_ROW_BYTES (got %d < %d)", l.MaxPushBytes, l.MaxRowBytes))
	}
	return errs
}
