package syncengine

import "github.com/tidemark/tidemark/collections"

// Observer hears what the engine does, for metrics. Every field may be nil;
// an unset one costs nothing. The calls must not block. None of them is
// given a tenant or user id: what they count is per collection.
type Observer struct {
	// Pulled hears of every pull that read: how many documents it returns
	// and how many change numbers its checkpoint was behind the head.
	Pulled func(c *collections.Collection, documents int, behind int64)
	// Pushed hears of every committed push: its rows by outcome.
	Pushed func(c *collections.Collection, outcomes PushOutcomes)
	// KnownHead is the newest change of a tenant's collection this instance
	// knows of without a query (live sync's heads), for Pulled's behind;
	// without it, or when it knows none, the head is the newest change the
	// pull read.
	KnownHead func(tenantID string, c *collections.Collection) (int64, bool)
}

// PushOutcomes counts the rows of one push by what became of them.
type PushOutcomes struct {
	Written   int // written as sent
	Retried   int // the server had that state already
	Merged    int // a three-way merge was written
	Conflicts int // nothing written; the master is returned
	Outside   int // outside the caller's set: returned as a removal
}

// Observe makes the engine report to o. Call it before serving.
func (e *Engine) Observe(o Observer) { e.observer = o }

func (p plan) outcomes() PushOutcomes {
	var o PushOutcomes
	for _, d := range p.decisions {
		switch d.outcome {
		case outcomeWrite:
			o.Written++
		case outcomeRetry:
			o.Retried++
		case outcomeMerge:
			o.Merged++
		case outcomeConflict:
			o.Conflicts++
		}
	}
	return o
}

// observePull reports a pull from position from whose read ended at next.
func (e *Engine) observePull(tenantID string, c *collections.Collection, documents int, from, next int64) {
	if e.observer.Pulled == nil {
		return
	}
	head := next
	if e.observer.KnownHead != nil {
		if known, ok := e.observer.KnownHead(tenantID, c); ok {
			head = max(head, known)
		}
	}
	e.observer.Pulled(c, documents, max(0, head-from))
}
