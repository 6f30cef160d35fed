package main

import (
	"flag"
	"fmt"

	"github.com/tidemark/tidemark/wiring"
)

// bindNotifier registers TIDEMARK_NOTIFIER: how an instance learns of
// other instances' commits (docs/benchmarks.md, "Notifier at scale").
func bindNotifier(fs *flag.FlagSet, notifier *string) {
	fs.StringVar(notifier, "notifier", env("TIDEMARK_NOTIFIER", wiring.NotifierChanges),
		"how live sync and the cache learn of other instances' commits: changes (one query per interval for the scopes changed since the last) or heads (the heads of every tenant with local subscribers) (TIDEMARK_NOTIFIER)")
}

func validateNotifier(notifier string) []error {
	switch notifier {
	case wiring.NotifierChanges, wiring.NotifierHeads:
		return nil
	}
	return []error{fmt.Errorf("TIDEMARK_NOTIFIER must be %s or %s (got %q)", wiring.NotifierChanges, wiring.NotifierHeads, notifier)}
}
