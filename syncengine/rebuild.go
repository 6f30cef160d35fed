package syncengine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/syncrules"
)

// The rebuild of bucket membership (docs/sync-rules.md, "Changing the rules
// file"). Writes keep bucket rows up to date one change at a time
// (membership.go); they cannot know of data written before the rules
// existed, nor of a rules file that changed meanwhile. The rebuild computes,
// per tenant, the membership every bucket definition wants from the
// documents alone and writes only the difference from the rows there are, so
// that clients see a changed rules file as ordinary moves: a document that
// left their set arrives as a removal, one that entered as an addition.

// RebuildStore is the storage a rebuild needs besides Store; *db.DB
// implements it. The Writer that its WriteDocuments hands out must also be
// a TenantReader.
type RebuildStore interface {
	Store
	// BucketFingerprints returns, per bucket definition name, the
	// fingerprint of the definition its rows were last computed for.
	BucketFingerprints(ctx context.Context) (map[string]string, error)
	// RecordBucketFingerprints records the fingerprints of rebuilt
	// definitions and forgets those in forget.
	RecordBucketFingerprints(ctx context.Context, fingerprints map[string]string, forget []string) error
	// TenantIDs lists every tenant that has written anything.
	TenantIDs(ctx context.Context) ([]string, error)
}

// TenantReader reads whole collections of a tenant inside a write.
type TenantReader interface {
	// EachDocument calls fn with every document of c, deleted ones
	// included; fn must not use the Writer.
	EachDocument(ctx context.Context, c *collections.Collection, fn func(collections.Document) error) error
	// AllMembers reads every bucket row of c's documents, by document id.
	AllMembers(ctx context.Context, c *collections.Collection) (map[string][]collections.Member, error)
}

// RebuildReport says what RebuildMemberships did.
type RebuildReport struct {
	// Rebuilt lists the bucket definitions (role names) whose rows were
	// recomputed: new ones, and those whose definition changed.
	Rebuilt []string
	// Dropped lists the definitions the rules no longer have whose rows were
	// turned into removals.
	Dropped []string
	// Tenants is how many tenants were examined.
	Tenants int
	// Put counts rows that now hold a document they did not hold.
	Put int
	// Removed counts rows turned into removals.
	Removed int
	// Recounted counts rows whose reference count alone changed (a site's
	// count of the bucket's work orders that use it), and new rows that
	// only count references to a document the bucket does not hold (a site
	// that is deleted, or not there yet).
	Recounted int
}

// Changed reports whether the rebuild wrote any bucket row.
func (r RebuildReport) Changed() bool { return r.Put+r.Removed+r.Recounted > 0 }

// LogValue makes a report one group of a log line.
func (r RebuildReport) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Any("rebuilt", r.Rebuilt), slog.Any("dropped", r.Dropped), slog.Int("tenants", r.Tenants),
		slog.Int("put", r.Put), slog.Int("removed", r.Removed), slog.Int("recounted", r.Recounted))
}

// RebuildMemberships brings the bucket rows in line with the rules: for
// every bucket definition whose rows were computed for another definition
// (its fingerprint differs from the stored one) or never computed, and for
// every definition the rules no longer have, it recomputes each tenant's
// membership from the documents and writes the difference, numbered like
// any write so that pulls and streams return it. It does nothing when
// every definition is current, so it is cheap to run at every start.
//
// Each tenant is rebuilt in one transaction holding the change locks of all
// collections, in the rules' lock order: writers of that tenant wait, and
// two instances rebuilding at once take turns (the second finds nothing to
// change). Without sync rules there are no bucket rows, and nothing to do.
func (e *Engine) RebuildMemberships(ctx context.Context) (RebuildReport, error) {
	return e.rebuild(ctx, diffMembers)
}

// diffFunc is what a rebuild writes for one collection's rows of one
// definition: it compares the rows there are (those the definition owns)
// with the membership wanted. Tests swap it for a wrong one to prove that
// their check catches a wrong set.
type diffFunc func(have map[string][]collections.Member, want map[string]map[string]wanted) []rowChange

// wanted is a document's membership in one bucket as computed from scratch.
type wanted struct {
	refs    int64
	present bool
}

type changeKind int

const (
	put       changeKind = iota + 1 // the bucket now holds the document
	remove                          // the bucket no longer holds it: a removal
	recount                         // only the reference count changed
	countOnly                       // a new row that only counts references (its document is not held)
)

// rowChange is one bucket row to write. A recount keeps its row's position
// (Change is set); every other kind gets a new change number.
type rowChange struct {
	collections.MemberChange
	kind changeKind
}

func (e *Engine) rebuild(ctx context.Context, diff diffFunc) (RebuildReport, error) {
	var report RebuildReport
	if e.rules == nil {
		return report, nil
	}
	store, ok := e.store.(RebuildStore)
	if !ok {
		return report, errors.New("rebuild bucket membership: the store cannot read whole tenants")
	}
	stored, err := store.BucketFingerprints(ctx)
	if err != nil {
		return report, err
	}
	defs := e.rules.Buckets()
	var stale []*syncrules.BucketDef
	current := map[string]bool{}
	for _, def := range defs {
		current[def.Name()] = true
		if fp, ok := stored[def.Name()]; !ok || fp != def.Fingerprint() {
			stale = append(stale, def)
			report.Rebuilt = append(report.Rebuilt, def.Name())
		}
	}
	for name := range stored {
		if !current[name] {
			report.Dropped = append(report.Dropped, name)
		}
	}
	slices.Sort(report.Dropped)
	if len(stale) == 0 && len(report.Dropped) == 0 {
		return report, nil
	}

	tenants, err := store.TenantIDs(ctx)
	if err != nil {
		return report, err
	}
	for _, tenantID := range tenants {
		t, err := e.rebuildTenant(ctx, store, tenantID, stale, diff)
		if err != nil {
			return report, fmt.Errorf("rebuild bucket membership of tenant %s: %w", tenantID, err)
		}
		report.Tenants++
		report.Put += t.counts[put]
		report.Removed += t.counts[remove]
		report.Recounted += t.counts[recount] + t.counts[countOnly]
		// As a push does, after the commit: live streams read the new
		// entries, caches learn of the new heads.
		for _, c := range collections.All() {
			if head, ok := t.heads[c]; ok {
				for _, l := range e.listeners {
					l(tenantID, c, head, nil)
				}
			}
		}
	}

	fingerprints := make(map[string]string, len(stale))
	for _, def := range stale {
		fingerprints[def.Name()] = def.Fingerprint()
	}
	if err := store.RecordBucketFingerprints(ctx, fingerprints, report.Dropped); err != nil {
		return report, err
	}
	return report, nil
}

// tenantRebuild is what one tenant's rebuild wrote.
type tenantRebuild struct {
	heads  map[*collections.Collection]int64 // newest change number given out, per collection
	counts map[changeKind]int
}

// rebuildTenant recomputes the rows of the stale definitions, and turns the
// present rows of buckets no definition owns into removals, in one
// transaction of the tenant.
func (e *Engine) rebuildTenant(ctx context.Context, store RebuildStore, tenantID string, stale []*syncrules.BucketDef, diff diffFunc) (tenantRebuild, error) {
	order := e.rules.LockOrder()
	defs := e.rules.Buckets()
	var out tenantRebuild
	if len(order) == 0 {
		return out, nil
	}
	err := store.WriteDocuments(ctx, tenantID, order[0], func(w collections.Writer) error {
		// This closure may run again on a retry: start from scratch each time.
		out = tenantRebuild{heads: map[*collections.Collection]int64{}, counts: map[changeKind]int{}}
		r, ok := w.(TenantReader)
		if !ok {
			return errors.New("the store's writer cannot read whole collections")
		}
		// WriteDocuments holds the first lock; take the others in order,
		// as a push takes its subset, before reading anything.
		for _, c := range order[1:] {
			if _, err := w.Reserve(ctx, c, 0); err != nil {
				return err
			}
		}
		docs, err := readDocuments(ctx, r, stale)
		if err != nil {
			return err
		}
		wants := make([]map[*collections.Collection]map[string]map[string]wanted, len(stale))
		for i, def := range stale {
			wants[i] = desired(def, docs)
		}
		// Buckets of definitions the rules no longer have: nobody computes
		// them any more, so whatever they hold leaves.
		orphan := func(bucket string) bool {
			return !slices.ContainsFunc(defs, func(d *syncrules.BucketDef) bool { return d.Owns(bucket) })
		}
		changes := map[*collections.Collection][]rowChange{}
		for _, c := range order {
			rows, err := r.AllMembers(ctx, c)
			if err != nil {
				return err
			}
			// A definition that no longer syncs c wants none of its rows.
			for i, def := range stale {
				changes[c] = append(changes[c], diff(owned(rows, def.Owns), wants[i][c])...)
			}
			changes[c] = append(changes[c], diff(owned(rows, orphan), nil)...)
		}
		for _, c := range order {
			if err := e.writeRebuilt(ctx, w, c, changes[c], &out); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// slimDocs holds, per collection, what membership reads of each document:
// its id, whether it is deleted, and the fields the rules compare or follow.
type slimDocs map[*collections.Collection]map[string]collections.Document

// readDocuments reads the documents of every collection the definitions
// sync, keeping only what membership reads of them, so a large tenant's
// rebuild holds ids and references, not whole documents.
func readDocuments(ctx context.Context, r TenantReader, defs []*syncrules.BucketDef) (slimDocs, error) {
	fields := map[*collections.Collection][]string{} // a key for every collection to read
	need := func(c *collections.Collection, f string) {
		if !slices.Contains(fields[c], f) {
			fields[c] = append(fields[c], f)
		}
	}
	for _, def := range defs {
		for _, m := range def.Memberships() {
			switch m.Shape {
			case syncrules.Root, syncrules.Child:
				need(m.Collection, m.Field)
			case syncrules.Parent:
				if _, ok := fields[m.Collection]; !ok {
					fields[m.Collection] = []string{} // only its existence and deletion count
				}
				need(m.Via, m.Field)
			}
		}
	}
	out := slimDocs{}
	for _, c := range collections.All() {
		fs, ok := fields[c]
		if !ok {
			continue
		}
		byID := map[string]collections.Document{}
		err := r.EachDocument(ctx, c, func(d collections.Document) error {
			slim := collections.Document{ID: d.ID, Deleted: d.Deleted, Fields: make(map[string]any, len(fs))}
			for _, f := range fs {
				if v, ok := d.Fields[f]; ok {
					slim.Fields[f] = v
				}
			}
			byID[d.ID] = slim
			return nil
		})
		if err != nil {
			return nil, err
		}
		out[c] = byID
	}
	return out, nil
}

// desired computes def's membership from the documents alone, following
// its memberships in order (each after the one it hangs off): per
// collection, document and bucket, the reference count and whether the
// bucket holds the document. Deleted documents are never held.
func desired(def *syncrules.BucketDef, docs slimDocs) map[*collections.Collection]map[string]map[string]wanted {
	out := map[*collections.Collection]map[string]map[string]wanted{}
	set := func(c *collections.Collection, id, bucket string, w wanted) {
		if out[c] == nil {
			out[c] = map[string]map[string]wanted{}
		}
		if out[c][id] == nil {
			out[c][id] = map[string]wanted{}
		}
		out[c][id][bucket] = w
	}
	for _, m := range def.Memberships() {
		c := m.Collection
		switch m.Shape {
		case syncrules.Root:
			for id, d := range docs[c] {
				if b, ok := def.RootBucketOf(d); ok {
					set(c, id, b, wanted{refs: 1, present: true})
				}
			}
		case syncrules.Child:
			for id, d := range docs[c] {
				p, ok := m.Ref(d)
				if !ok {
					continue
				}
				for b, w := range out[m.Via][p] {
					if w.present {
						set(c, id, b, wanted{refs: 1, present: true})
					}
				}
			}
		case syncrules.Parent:
			// A parent is held while a held document of Via references it,
			// and it exists and is not deleted; its row counts those
			// documents even when it is not held (a work order may refer to
			// a site that is not synced yet), so it enters when it appears.
			refs := map[string]map[string]int64{}
			for id, v := range docs[m.Via] {
				p, ok := m.Ref(v)
				if !ok {
					continue
				}
				for b, w := range out[m.Via][id] {
					if w.present {
						if refs[p] == nil {
							refs[p] = map[string]int64{}
						}
						refs[p][b]++
					}
				}
			}
			for p, byBucket := range refs {
				d, exists := docs[c][p]
				for b, n := range byBucket {
					set(c, p, b, wanted{refs: n, present: exists && !d.Deleted})
				}
			}
		}
	}
	return out
}

// diffMembers compares the rows there are with the membership wanted and
// returns the rows to write, ordered by document and bucket: a document
// newly held is put, a held one no longer wanted is removed, a row whose
// count alone differs is recounted in place, a count for a document not
// held gets a row of its own; identical rows are left alone.
func diffMembers(have map[string][]collections.Member, want map[string]map[string]wanted) []rowChange {
	var out []rowChange
	for _, id := range sortedKeys(have, want) {
		rows := map[string]collections.Member{}
		buckets := map[string]bool{}
		for _, r := range have[id] {
			rows[r.Bucket] = r
			buckets[r.Bucket] = true
		}
		for b := range want[id] {
			buckets[b] = true
		}
		for _, b := range sortedSet(buckets) {
			row, exists := rows[b]
			w := want[id][b]
			ch := collections.MemberChange{DocID: id, Bucket: b, Refs: w.refs, Present: w.present}
			switch {
			case w.present && !(exists && row.Present):
				out = append(out, rowChange{ch, put})
			case !w.present && exists && row.Present:
				out = append(out, rowChange{ch, remove})
			case exists && row.Refs != w.refs:
				ch.Change = row.Change
				out = append(out, rowChange{ch, recount})
			case !exists && w.refs > 0:
				out = append(out, rowChange{ch, countOnly})
			}
		}
	}
	return out
}

// writeRebuilt writes c's row changes: recounts in place, the others at
// new change numbers of c, removals carrying the document's current state
// (the state the bucket held).
func (e *Engine) writeRebuilt(ctx context.Context, w collections.Writer, c *collections.Collection, changes []rowChange, out *tenantRebuild) error {
	if len(changes) == 0 {
		return nil
	}
	var inPlace, numbered []collections.MemberChange
	var removedIDs []string
	seen := map[string]bool{}
	for _, ch := range changes {
		out.counts[ch.kind]++
		if ch.kind == recount {
			inPlace = append(inPlace, ch.MemberChange)
			continue
		}
		if ch.kind == remove && !seen[ch.DocID] {
			seen[ch.DocID] = true
			removedIDs = append(removedIDs, ch.DocID)
		}
		numbered = append(numbered, ch.MemberChange)
	}
	if err := setMembersInChunks(ctx, w, c, inPlace); err != nil {
		return err
	}
	if len(numbered) == 0 {
		return nil
	}
	states := map[string]collections.Document{}
	for chunk := range slices.Chunk(removedIDs, rebuildChunk) {
		docs, err := w.Documents(ctx, c, chunk)
		if err != nil {
			return err
		}
		for id, d := range docs {
			states[id] = d
		}
	}
	first, err := w.Reserve(ctx, c, len(numbered))
	if err != nil {
		return err
	}
	for i := range numbered {
		numbered[i].Change = first + int64(i)
		if !numbered[i].Present {
			// A document that is gone altogether leaves a row without
			// content, which pulls skip: there is nothing it may show.
			if d, ok := states[numbered[i].DocID]; ok {
				numbered[i].Removed = &d
			}
		}
	}
	out.heads[c] = first + int64(len(numbered)) - 1
	return setMembersInChunks(ctx, w, c, numbered)
}

// rebuildChunk bounds the rows of one read or write statement batch.
const rebuildChunk = 1000

func setMembersInChunks(ctx context.Context, w collections.Writer, c *collections.Collection, changes []collections.MemberChange) error {
	for chunk := range slices.Chunk(changes, rebuildChunk) {
		if err := w.SetMembers(ctx, c, chunk); err != nil {
			return err
		}
	}
	return nil
}

// owned keeps the rows of buckets that owns accepts.
func owned(rows map[string][]collections.Member, owns func(bucket string) bool) map[string][]collections.Member {
	out := map[string][]collections.Member{}
	for id, rs := range rows {
		for _, r := range rs {
			if owns(r.Bucket) {
				out[id] = append(out[id], r)
			}
		}
	}
	return out
}

func sortedKeys[A, B any](a map[string]A, b map[string]B) []string {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	return sortedSet(keys)
}

func sortedSet(s map[string]bool) []string {
	out := make([]string, 0, len(s))
	for k := range s {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
