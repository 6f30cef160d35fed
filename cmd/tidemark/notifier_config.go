package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/tidemark/tidemark/wiring"
)

// bindNotifier registers TIDEMARK_NOTIFIER and TIDEMARK_NOTIFIER_OVERLAP:
// how an instance learns of other instances' commits (docs/benchmarks.md,
// "Notifier at scale").
func bindNotifier(fs *flag.FlagSet, notifier *string, overlap *time.Duration, errs *envErrors) {
	fs.StringVar(notifier, "notifier", env("TIDEMARK_NOTIFIER", wiring.NotifierChanges),
		"how live sync and the cache learn of other instances' commits: changes (one query per interval for the scopes changed since the last) or heads (the heads of every tenant with local subscribers) (TIDEMARK_NOTIFIER)")
	fs.DurationVar(overlap, "notifier-overlap", errs.duration("TIDEMARK_NOTIFIER_OVERLAP", wiring.DefaultNotifierOverlap),
		"how far before the last poll's clock the changes notifier asks from, for pushes committed just after it and clock skew between CockroachDB nodes; more reads more rows per poll (TIDEMARK_NOTIFIER_OVERLAP)")
}

// maxNotifierOverlap bounds the overlap: past it a poll rereads minutes of
// changes for a margin that only needs to cover a commit in flight.
const maxNotifierOverlap = time.Minute

func validateNotifier(notifier string, overlap time.Duration) []error {
	var errs []error
	switch notifier {
	case wiring.NotifierChanges, wiring.NotifierHeads:
	default:
		errs = append(errs, fmt.Errorf("TIDEMARK_NOTIFIER must be %s or %s (got %q)", wiring.NotifierChanges, wiring.NotifierHeads, notifier))
	}
	if overlap < 100*time.Millisecond || overlap > maxNotifierOverlap {
		errs = append(errs, fmt.Errorf("TIDEMARK_NOTIFIER_OVERLAP must be between 100ms and %s (got %s)", maxNotifierOverlap, overlap))
	}
	return errs
}
