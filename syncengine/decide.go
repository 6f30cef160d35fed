package syncengine

import (
	"github.com/tidemark/tidemark/collections"
)

// outcome is what happens to one push row.
type outcome int

const (
	outcomeWrite    outcome = iota // written as sent
	outcomeRetry                   // the server already has this state: nothing to do
	outcomeMerge                   // the three-way merge is written and returned
	outcomeConflict                // nothing written; the master is returned
)

// decision is the outcome of one row and the document it concerns: the
// document to write, or the master returned on conflict.
type decision struct {
	outcome outcome
	doc     collections.Document
	write   int // index into plan.writes for written rows
	// masterWrite is the index into plan.writes of the master this row was
	// decided against when an earlier row of the same push wrote it, else -1.
	masterWrite int
}

type plan struct {
	decisions []decision
	writes    []collections.Document
}

// decideAll applies the push rules to every row in order. A later row for
// the same id sees the earlier row's outcome as its master.
func decideAll(c *collections.Collection, rows []PushRow, masters map[string]collections.Document) plan {
	current := make(map[string]collections.Document, len(masters))
	for id, m := range masters {
		current[id] = m
	}
	writtenAt := map[string]int{} // id → index in p.writes of its latest write in this push
	var p plan
	for _, r := range rows {
		var d decision
		if m, ok := current[r.New.ID]; ok {
			d = decide(c, r, &m)
		} else {
			d = decide(c, r, nil)
		}
		d.masterWrite = -1
		if i, ok := writtenAt[r.New.ID]; ok {
			d.masterWrite = i
		}
		if d.outcome == outcomeWrite || d.outcome == outcomeMerge {
			d.write = len(p.writes)
			p.writes = append(p.writes, d.doc)
			current[r.New.ID] = d.doc
			writtenAt[r.New.ID] = d.write
		}
		p.decisions = append(p.decisions, d)
	}
	return p
}

// result lists, in row order, the documents a client must adopt: masters of
// conflicting rows and merged documents as stored.
func (p plan) result(stored []collections.Document) []collections.Document {
	out := []collections.Document{}
	for i := range p.decisions {
		if doc, ok := p.adopt(i, stored); ok {
			out = append(out, doc)
		}
	}
	return out
}

// adopt is what the client must adopt for decision i, if anything.
func (p plan) adopt(i int, stored []collections.Document) (collections.Document, bool) {
	d := p.decisions[i]
	switch d.outcome {
	case outcomeConflict:
		if d.masterWrite >= 0 {
			// The master is an earlier row of this push: return it as
			// stored, with its change number and update time.
			return stored[d.masterWrite], true
		}
		return d.doc, true
	case outcomeMerge:
		return stored[d.write], true
	}
	return collections.Document{}, false
}

// decide applies the push rules to one row, given the current master (nil
// when the server has no such document):
//  1. no master: write the new state;
//  2. master equals the new state on client-owned fields: a retry, nothing to do;
//  3. the assumed state equals the master: write the new state;
//  4. otherwise the collection's conflict policy decides.
func decide(c *collections.Collection, r PushRow, master *collections.Document) decision {
	switch {
	case master == nil:
		return decision{outcome: outcomeWrite, doc: r.New}
	case sameClientState(c, *master, r.New):
		return decision{outcome: outcomeRetry}
	case r.Assumed != nil && sameClientState(c, *r.Assumed, *master):
		return decision{outcome: outcomeWrite, doc: r.New}
	}
	if c.Policy == collections.MergeFields && r.Assumed != nil {
		if merged, ok := mergeFields(c, *r.Assumed, *master, r.New); ok {
			if sameClientState(c, merged, *master) {
				// The server already has every change the client made; the
				// client still lacks the server's, so it gets the master.
				return decision{outcome: outcomeConflict, doc: *master}
			}
			return decision{outcome: outcomeMerge, doc: merged}
		}
	}
	return decision{outcome: outcomeConflict, doc: *master}
}

// sameClientState compares the client-owned parts of two documents.
// Server-owned fields (updatedAt, change numbers, authorId) never count:
// clients send back what they were given, and counting them would turn
// quick successive edits into conflicts.
func sameClientState(c *collections.Collection, a, b collections.Document) bool {
	if a.Deleted != b.Deleted {
		return false
	}
	for _, f := range c.Fields {
		if !f.ServerOwned && !f.Equal(a.Fields[f.Name], b.Fields[f.Name]) {
			return false
		}
	}
	return true
}

// mergeFields is the three-way merge of MERGE_FIELDS: when the fields the
// client changed (assumed → new) and those changed on the server since
// (assumed → master) are disjoint, the result is the master with the
// client's changes applied. ok is false when they overlap, unless both
// sides set a field to the same value.
func mergeFields(c *collections.Collection, assumed, master, next collections.Document) (collections.Document, bool) {
	merged := collections.Document{ID: master.ID, Deleted: master.Deleted, Fields: make(map[string]any, len(c.Fields))}
	if assumed.Deleted != next.Deleted {
		if assumed.Deleted != master.Deleted && master.Deleted != next.Deleted {
			return collections.Document{}, false
		}
		merged.Deleted = next.Deleted
	}
	for _, f := range c.Fields {
		merged.Fields[f.Name] = master.Fields[f.Name]
		if f.ServerOwned {
			// Whoever writes the merge is its author.
			merged.Fields[f.Name] = next.Fields[f.Name]
			continue
		}
		clientChanged := !f.Equal(assumed.Fields[f.Name], next.Fields[f.Name])
		if !clientChanged {
			continue
		}
		serverChanged := !f.Equal(assumed.Fields[f.Name], master.Fields[f.Name])
		if serverChanged && !f.Equal(master.Fields[f.Name], next.Fields[f.Name]) {
			return collections.Document{}, false
		}
		merged.Fields[f.Name] = next.Fields[f.Name]
	}
	return merged, true
}
