package syncengine

import (
	"context"
	"slices"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/syncrules"
)

// Bucket membership (partial replication, docs/sync-rules.md). A write
// changes the buckets that hold the written documents and, through the
// rules' references, the buckets of documents that come with them (a work
// order's checklist items and notes, its site). Every row it changes gets a
// change number of its collection in the same transaction, so a caller's
// pull of its bucket stays gap-free; a row that leaves a bucket keeps the
// last state the bucket held, which is all its removal may show.

// membershipWrite maintains bucket rows during one push.
type membershipWrite struct {
	ctx     context.Context
	w       collections.Writer
	rules   *syncrules.Rules
	pushed  *collections.Collection
	locked  bool                              // the dependents' change locks are held
	touched map[*collections.Collection]int64 // collection → newest change number given out
}

// written is one stored document and its state before the write (nil for a new one).
type written struct {
	before *collections.Document
	after  collections.Document
}

type bucketSet map[string]bool

func (s bucketSet) minus(o bucketSet) []string {
	var out []string
	for b := range s {
		if !o[b] {
			out = append(out, b)
		}
	}
	slices.Sort(out)
	return out
}

// maintain updates every bucket definition's rows for docs of c.
func (m *membershipWrite) maintain(c *collections.Collection, docs []written) error {
	if len(docs) == 0 {
		return nil
	}
	ids := make([]string, len(docs))
	for i, d := range docs {
		ids[i] = d.after.ID
	}
	rows, err := m.w.Members(m.ctx, c, ids)
	if err != nil {
		return err
	}
	for _, def := range m.rules.Buckets() {
		mem, ok := def.Membership(c)
		if !ok {
			continue
		}
		newSets, err := m.bucketsOf(def, mem, docs, rows)
		if err != nil {
			return err
		}
		var changes []collections.MemberChange
		var moves []move
		for i, d := range docs {
			old := presentIn(def, rows[d.after.ID])
			now := newSets[i]
			refs := refsIn(def, rows[d.after.ID])
			for _, b := range sortedUnion(old, now) {
				ch := collections.MemberChange{DocID: d.after.ID, Bucket: b, Change: d.after.Change, Present: now[b], Refs: refs[b]}
				if mem.Shape != syncrules.Parent {
					ch.Refs = 0
					if now[b] {
						ch.Refs = 1
					}
				}
				if !now[b] {
					ch.Removed = lastSeen(d)
				}
				changes = append(changes, ch)
			}
			moves = append(moves, move{before: d.before, after: d.after, left: old.minus(now), entered: now.minus(old), stayed: intersect(old, now)})
		}
		if err := m.w.SetMembers(m.ctx, c, changes); err != nil {
			return err
		}
		m.note(c, changes)
		if err := m.cascade(def, c, moves); err != nil {
			return err
		}
	}
	return nil
}

// bucketsOf computes, for each written document, the buckets of def that
// hold its new state.
func (m *membershipWrite) bucketsOf(def *syncrules.BucketDef, mem *syncrules.Membership, docs []written, rows map[string][]collections.Member) ([]bucketSet, error) {
	out := make([]bucketSet, len(docs))
	switch mem.Shape {
	case syncrules.Root:
		for i, d := range docs {
			out[i] = bucketSet{}
			if b, ok := def.RootBucketOf(d.after); ok {
				out[i][b] = true
			}
		}
	case syncrules.Child:
		var parents []string
		for _, d := range docs {
			if p, ok := mem.Ref(d.after); ok {
				parents = append(parents, p)
			}
		}
		parentRows, err := m.w.Members(m.ctx, mem.Via, parents)
		if err != nil {
			return nil, err
		}
		for i, d := range docs {
			out[i] = bucketSet{}
			if p, ok := mem.Ref(d.after); ok {
				out[i] = presentIn(def, parentRows[p])
			}
		}
	case syncrules.Parent:
		// A parent is held while some member references it (refs > 0)
		// and it is not deleted itself.
		for i, d := range docs {
			out[i] = bucketSet{}
			if d.after.Deleted {
				continue
			}
			for b, n := range refsIn(def, rows[d.after.ID]) {
				if n > 0 {
					out[i][b] = true
				}
			}
		}
	}
	return out, nil
}

// move is how one document's buckets changed.
type move struct {
	before        *collections.Document
	after         collections.Document
	left, entered []string
	stayed        []string
}

// cascade carries a change of c's documents' buckets to the documents
// whose membership depends on them. The children of every child
// membership are read together, before any of them is recomputed: a
// cascade writes bucket rows, never documents, so what one child
// collection's cascade writes cannot change another's children.
func (m *membershipWrite) cascade(def *syncrules.BucketDef, c *collections.Collection, moves []move) error {
	deps := def.DependentsOf(c)
	children, err := m.childrenOf(deps, moves)
	if err != nil {
		return err
	}
	for _, dep := range deps {
		var err error
		switch dep.Shape {
		case syncrules.Child:
			err = m.cascadeToChildren(def, dep, moves, children[dep])
		case syncrules.Parent:
			err = m.cascadeToParents(def, dep, moves)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// ChildrenReader is what a Writer may add to read the children of several
// collections in one round trip (db.Writer does).
type ChildrenReader interface {
	// ChildrenOfEach reads, for each i, the live documents of cs[i] whose
	// field fields[i] holds one of parentIDs.
	ChildrenOfEach(ctx context.Context, cs []*collections.Collection, fields []string, parentIDs []string) ([][]collections.Document, error)
}

// PairedReader is what a Writer may add to read documents and their
// bucket rows in one round trip (db.Writer does).
type PairedReader interface {
	MembersAndDocuments(ctx context.Context, c *collections.Collection, ids []string) (map[string][]collections.Member, map[string]collections.Document, error)
}

// movedParents is the ids of the moved documents that left or entered a
// bucket: the parents whose children move with them.
func movedParents(moves []move) []string {
	var parents []string
	for _, mv := range moves {
		if len(mv.left)+len(mv.entered) > 0 {
			parents = append(parents, mv.after.ID)
		}
	}
	return parents
}

// childrenOf reads the live children of the moved documents for every
// child membership of deps, after taking the dependents' locks.
func (m *membershipWrite) childrenOf(deps []*syncrules.Membership, moves []move) (map[*syncrules.Membership][]collections.Document, error) {
	parents := movedParents(moves)
	var childDeps []*syncrules.Membership
	for _, dep := range deps {
		if dep.Shape == syncrules.Child {
			childDeps = append(childDeps, dep)
		}
	}
	if len(parents) == 0 || len(childDeps) == 0 {
		return nil, nil
	}
	if err := m.lockDependents(); err != nil {
		return nil, err
	}
	out := make(map[*syncrules.Membership][]collections.Document, len(childDeps))
	if r, ok := m.w.(ChildrenReader); ok {
		cs := make([]*collections.Collection, len(childDeps))
		fields := make([]string, len(childDeps))
		for i, dep := range childDeps {
			cs[i], fields[i] = dep.Collection, dep.Field
		}
		all, err := r.ChildrenOfEach(m.ctx, cs, fields, parents)
		if err != nil {
			return nil, err
		}
		for i, dep := range childDeps {
			out[dep] = all[i]
		}
		return out, nil
	}
	for _, dep := range childDeps {
		children, err := m.w.Children(m.ctx, dep.Collection, dep.Field, parents)
		if err != nil {
			return nil, err
		}
		out[dep] = children
	}
	return out, nil
}

// cascadeToChildren moves the live children of documents that left or
// entered buckets along with them; children are those childrenOf read.
func (m *membershipWrite) cascadeToChildren(def *syncrules.BucketDef, dep *syncrules.Membership, moves []move, children []collections.Document) error {
	if len(children) == 0 {
		return nil
	}
	byParent := map[string]move{}
	for _, mv := range moves {
		if len(mv.left)+len(mv.entered) > 0 {
			byParent[mv.after.ID] = mv
		}
	}
	childIDs := make([]string, len(children))
	for i, child := range children {
		childIDs[i] = child.ID
	}
	rows, err := m.w.Members(m.ctx, dep.Collection, childIDs)
	if err != nil {
		return err
	}
	var changes []collections.MemberChange
	var childMoves []move
	for _, child := range children {
		p, _ := dep.Ref(child)
		mv := byParent[p]
		held := presentIn(def, rows[child.ID])
		var left, entered []string
		for _, b := range mv.left {
			// Only a bucket that holds the child loses it: a removal
			// shows its bucket what it held, never a document it lacked.
			if held[b] {
				left = append(left, b)
				changes = append(changes, collections.MemberChange{DocID: child.ID, Bucket: b, Present: false, Removed: &child})
			}
		}
		for _, b := range mv.entered {
			if !held[b] {
				entered = append(entered, b)
				changes = append(changes, collections.MemberChange{DocID: child.ID, Bucket: b, Present: true, Refs: 1})
			}
		}
		childMoves = append(childMoves, move{before: &child, after: child, left: left, entered: entered})
	}
	if err := m.number(dep.Collection, changes); err != nil {
		return err
	}
	return m.cascade(def, dep.Collection, childMoves)
}

// cascadeToParents adjusts the reference counts of the documents the moved
// documents refer to (a work order's site), in the buckets they left and
// entered, and of the documents they stopped or started referring to.
func (m *membershipWrite) cascadeToParents(def *syncrules.BucketDef, dep *syncrules.Membership, moves []move) error {
	type key struct{ doc, bucket string }
	delta := map[key]int64{}
	for _, mv := range moves {
		var oldRef, newRef string
		var oldOK, newOK bool
		if mv.before != nil {
			oldRef, oldOK = dep.Ref(*mv.before)
		}
		newRef, newOK = dep.Ref(mv.after)
		oldBuckets := append(append([]string(nil), mv.left...), mv.stayed...)
		newBuckets := append(append([]string(nil), mv.entered...), mv.stayed...)
		if oldOK {
			for _, b := range oldBuckets {
				delta[key{oldRef, b}]--
			}
		}
		if newOK {
			for _, b := range newBuckets {
				delta[key{newRef, b}]++
			}
		}
	}
	var ids []string
	for k, n := range delta {
		if n != 0 && !slices.Contains(ids, k.doc) {
			ids = append(ids, k.doc)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	slices.Sort(ids)
	if err := m.lockDependents(); err != nil {
		return err
	}
	rows, docs, err := m.membersAndDocuments(dep.Collection, ids)
	if err != nil {
		return err
	}
	var changes, countsOnly []collections.MemberChange
	var parentMoves []move
	for _, id := range ids {
		doc, exists := docs[id]
		refs := refsIn(def, rows[id])
		was := presentIn(def, rows[id])
		var buckets []string
		for k := range delta {
			if k.doc == id && delta[k] != 0 {
				buckets = append(buckets, k.bucket)
			}
		}
		slices.Sort(buckets)
		var left, entered []string
		for _, b := range buckets {
			n := max(refs[b]+delta[key{id, b}], 0)
			present := n > 0 && exists && !doc.Deleted
			ch := collections.MemberChange{DocID: id, Bucket: b, Refs: n, Present: present}
			switch {
			case present && !was[b]:
				entered = append(entered, b)
			case !present && was[b]:
				left = append(left, b)
				removed := doc
				ch.Removed = &removed
			default:
				if pos, ok := positionIn(rows[id], b); ok {
					// Only the count changed: the row keeps its position,
					// as its callers have nothing new to learn.
					ch.Change = pos
					countsOnly = append(countsOnly, ch)
					continue
				}
			}
			changes = append(changes, ch)
		}
		if exists && len(left)+len(entered) > 0 {
			d := doc
			parentMoves = append(parentMoves, move{before: &d, after: doc, left: left, entered: entered})
		}
	}
	if err := m.w.SetMembers(m.ctx, dep.Collection, countsOnly); err != nil {
		return err
	}
	if err := m.number(dep.Collection, changes); err != nil {
		return err
	}
	return m.cascade(def, dep.Collection, parentMoves)
}

// membersAndDocuments reads documents of c and their bucket rows, in one
// round trip when the writer can.
func (m *membershipWrite) membersAndDocuments(c *collections.Collection, ids []string) (map[string][]collections.Member, map[string]collections.Document, error) {
	if r, ok := m.w.(PairedReader); ok {
		return r.MembersAndDocuments(m.ctx, c, ids)
	}
	rows, err := m.w.Members(m.ctx, c, ids)
	if err != nil {
		return nil, nil, err
	}
	docs, err := m.w.Documents(m.ctx, c, ids)
	if err != nil {
		return nil, nil, err
	}
	return rows, docs, nil
}

// number gives changes of c new change numbers and writes them. A new row
// whose count alone is set gets one too: a position is unique within a
// bucket (a work order that refers to a site not synced yet counts for it
// before the site exists).
func (m *membershipWrite) number(c *collections.Collection, changes []collections.MemberChange) error {
	if len(changes) == 0 {
		return nil
	}
	first, err := m.w.Reserve(m.ctx, c, len(changes))
	if err != nil {
		return err
	}
	for i := range changes {
		changes[i].Change = first + int64(i)
	}
	if err := m.w.SetMembers(m.ctx, c, changes); err != nil {
		return err
	}
	m.note(c, changes)
	return nil
}

// lockDependents takes, once, the change locks of every collection whose
// membership depends on the pushed one, in the rules' lock order (after the
// pushed collection's own), so concurrent writers never wait in a cycle.
func (m *membershipWrite) lockDependents() error {
	if m.locked {
		return nil
	}
	for _, c := range m.rules.LocksFor(m.pushed)[1:] {
		if _, err := m.w.Reserve(m.ctx, c, 0); err != nil {
			return err
		}
	}
	m.locked = true
	return nil
}

func (m *membershipWrite) note(c *collections.Collection, changes []collections.MemberChange) {
	for _, ch := range changes {
		if ch.Change > m.touched[c] {
			m.touched[c] = ch.Change
		}
	}
}

// lastSeen is what a bucket that loses d held of it: its state before the
// write, or the written state for a document the bucket never held before.
func lastSeen(d written) *collections.Document {
	if d.before != nil {
		b := *d.before
		return &b
	}
	a := d.after
	return &a
}

func presentIn(def *syncrules.BucketDef, rows []collections.Member) bucketSet {
	out := bucketSet{}
	for _, r := range rows {
		if r.Present && def.Owns(r.Bucket) {
			out[r.Bucket] = true
		}
	}
	return out
}

func positionIn(rows []collections.Member, bucket string) (int64, bool) {
	for _, r := range rows {
		if r.Bucket == bucket {
			return r.Change, true
		}
	}
	return 0, false
}

func refsIn(def *syncrules.BucketDef, rows []collections.Member) map[string]int64 {
	out := map[string]int64{}
	for _, r := range rows {
		if def.Owns(r.Bucket) {
			out[r.Bucket] = r.Refs
		}
	}
	return out
}

func sortedUnion(a, b bucketSet) []string {
	var out []string
	for k := range a {
		out = append(out, k)
	}
	for k := range b {
		if !a[k] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func intersect(a, b bucketSet) []string {
	var out []string
	for k := range a {
		if b[k] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}
