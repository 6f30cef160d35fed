package resolvers

import (
	"testing"

	"github.com/tidemark/tidemark/graph"
)

// A relation the generator resolves inline but queueRelations does not
// queue would still answer correctly, but a list of such objects would
// wait one batch window per element, one after another: this holds the
// generated list of inline relations and relationQueues together.
func TestEveryInlineRelationIsQueued(t *testing.T) {
	inline := graph.InlineRelations()
	if len(inline) == 0 {
		t.Fatal("the generator resolves no relation inline; this test has nothing to hold together")
	}
	for typ, fields := range inline {
		for _, f := range fields {
			if relationQueues[typ][f] == nil {
				t.Errorf("%s.%s is resolved inline, but relationQueues (resolvers/read.go) does not queue its load", typ, f)
			}
		}
	}
	for typ, fields := range relationQueues {
		for f := range fields {
			found := false
			for _, g := range inline[typ] {
				found = found || g == f
			}
			if !found {
				t.Errorf("relationQueues queues %s.%s, which the generator does not resolve inline", typ, f)
			}
		}
	}
}
