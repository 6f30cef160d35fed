package syncengine_test

// Helpers of the sync-rules acceptance tests (rules_concurrency_test.go):
// the sync engine with the default rules on a real PostgreSQL, callers of
// each role, devices that pull into a local map as RxDB does, and a checker
// that computes every technician's set from the whole tenant by the rules'
// meaning (written out here, not taken from syncrules) and compares.

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
	"github.com/tidemark/tidemark/syncengine"
	"github.com/tidemark/tidemark/syncrules"
)

const rulesTenant = "rules"

// synced lists the collections a technician syncs, roots first.
var synced = []*collections.Collection{collections.WorkOrder, collections.ChecklistItem, collections.Note, collections.Site}

func technician(user string) syncengine.Caller {
	return syncengine.Caller{TenantID: rulesTenant, UserID: user, Claims: map[string]string{"role": "technician"}}
}

var dispatcher = syncengine.Caller{TenantID: rulesTenant, UserID: "dispatch", Claims: map[string]string{"role": "dispatcher"}}

func siteDoc(id, name string) collections.Document {
	return collections.Document{ID: id, Fields: map[string]any{"name": name, "address": "1 Quay Street", "latitude": nil, "longitude": nil}}
}

// workOrderFor is a work order on siteID assigned to assignee ("" for nobody).
func workOrderFor(id, siteID, assignee, title string) collections.Document {
	var a any
	if assignee != "" {
		a = assignee
	}
	return collections.Document{ID: id, Fields: map[string]any{
		"siteId": siteID, "title": title, "description": nil, "status": "OPEN",
		"priority": int64(1), "assigneeId": a, "dueAt": nil,
	}}
}

func checklistItem(id, workOrderID, label string) collections.Document {
	return collections.Document{ID: id, Fields: map[string]any{"workOrderId": workOrderID, "label": label, "done": false, "position": int64(1)}}
}

func noteDoc(id, workOrderID, body string) collections.Document {
	return collections.Document{ID: id, Fields: map[string]any{"workOrderId": workOrderID, "body": body, "authorId": nil}}
}

func cloneDoc(d collections.Document) collections.Document {
	d.Fields = maps.Clone(d.Fields)
	return d
}

// rulesEnv is the sync engine with the default rules on a fresh database.
type rulesEnv struct {
	tb     testing.TB
	d      *db.DB
	engine *syncengine.Engine
}

// newRulesEnv opens a fresh database; wrap, if not nil, stands between the
// engine and the database.
func newRulesEnv(tb testing.TB, wrap func(syncengine.Store) syncengine.Store) *rulesEnv {
	tb.Helper()
	d := dbtest.Open(tb, db.PoolConfig{MaxConns: 16})
	var store syncengine.Store = d
	if wrap != nil {
		store = wrap(d)
	}
	rules, err := syncrules.Default(collections.All())
	if err != nil {
		tb.Fatal(err)
	}
	e := syncengine.New(store)
	e.UseRules(rules)
	return &rulesEnv{tb: tb, d: d, engine: e}
}

// create pushes new documents as caller and fails unless all are written.
func (e *rulesEnv) create(caller syncengine.Caller, c *collections.Collection, docs ...collections.Document) {
	e.tb.Helper()
	rows := make([]syncengine.PushRow, len(docs))
	for i, d := range docs {
		rows[i] = syncengine.PushRow{New: cloneDoc(d)}
	}
	res, err := e.engine.Push(context.Background(), caller, c, rows)
	if err != nil {
		e.tb.Fatalf("create %s: %v", c.Name, err)
	}
	if len(res) != 0 {
		e.tb.Fatalf("creating %s documents returned %v, want nothing", c.Name, res)
	}
}

// current reads a document as stored.
func (e *rulesEnv) current(c *collections.Collection, id string) (collections.Document, bool) {
	e.tb.Helper()
	docs, err := e.d.GetDocuments(context.Background(), rulesTenant, c, []string{id})
	if err != nil {
		e.tb.Fatal(err)
	}
	d, ok := docs[id]
	return d, ok
}

// change pushes, as caller, the stored document with fields changed, the
// stored state as the assumed one, and returns the push's result.
func (e *rulesEnv) change(ctx context.Context, caller syncengine.Caller, c *collections.Collection, id string, fields map[string]any) ([]collections.Document, error) {
	docs, err := e.d.GetDocuments(ctx, rulesTenant, c, []string{id})
	if err != nil {
		return nil, err
	}
	cur, ok := docs[id]
	if !ok {
		return nil, fmt.Errorf("%s %s does not exist", c.Name, id)
	}
	return e.engine.Push(ctx, caller, c, []syncengine.PushRow{{Assumed: &cur, New: edited(cur, fields)}})
}

// mustChange is change that fails the test on an error or on a result
// other than "written as sent".
func (e *rulesEnv) mustChange(caller syncengine.Caller, c *collections.Collection, id string, fields map[string]any) {
	e.tb.Helper()
	res, err := e.change(context.Background(), caller, c, id, fields)
	if err != nil {
		e.tb.Fatalf("change %s %s: %v", c.Name, id, err)
	}
	if len(res) != 0 {
		e.tb.Fatalf("change %s %s returned %v, want nothing", c.Name, id, res)
	}
}

// edited is d with fields set; "deleted" sets the tombstone flag.
func edited(d collections.Document, fields map[string]any) collections.Document {
	out := cloneDoc(d)
	for k, v := range fields {
		if k == "deleted" {
			out.Deleted = v.(bool)
			continue
		}
		out.Fields[k] = v
	}
	return out
}

// pullFunc is a way to pull a page of a caller's changes.
type pullFunc func(ctx context.Context, caller syncengine.Caller, c *collections.Collection, cursor *string, limit int) (syncengine.PullResult, error)

// docSet is the live documents of each collection, by id.
type docSet map[*collections.Collection]map[string]collections.Document

func newDocSet() docSet {
	s := docSet{}
	for _, c := range synced {
		s[c] = map[string]collections.Document{}
	}
	return s
}

// device is one client's local database: it pulls each collection from its
// own checkpoint and applies every page as RxDB does (a deleted document is
// removed, any other is stored).
type device struct {
	caller  syncengine.Caller
	pull    pullFunc
	cursors map[*collections.Collection]*string
	docs    docSet
	// leaks are work order states a technician received that were not
	// assigned to it: nothing of another technician's set may reach it,
	// not even in a removal.
	leaks    []string
	removals int // removals received
}

func newDevice(caller syncengine.Caller, pull pullFunc) *device {
	return &device{caller: caller, pull: pull, cursors: map[*collections.Collection]*string{}, docs: newDocSet()}
}

// pullPage pulls one page of c and applies it.
func (d *device) pullPage(ctx context.Context, c *collections.Collection, limit int) ([]collections.Document, error) {
	res, err := d.pull(ctx, d.caller, c, d.cursors[c], limit)
	if err != nil {
		return nil, fmt.Errorf("%s pulls %s: %w", d.caller.UserID, c.Name, err)
	}
	d.apply(c, res.Documents)
	cur := res.Cursor
	d.cursors[c] = &cur
	return res.Documents, nil
}

func (d *device) apply(c *collections.Collection, docs []collections.Document) {
	isTechnician := d.caller.Claims["role"] == "technician"
	for _, doc := range docs {
		if isTechnician && c == collections.WorkOrder && doc.Fields["assigneeId"] != d.caller.UserID {
			d.leaks = append(d.leaks, fmt.Sprintf("%s received %s (deleted %v) assigned to %v", d.caller.UserID, doc.ID, doc.Deleted, doc.Fields["assigneeId"]))
		}
		if doc.Deleted {
			d.removals++
			delete(d.docs[c], doc.ID)
			continue
		}
		d.docs[c][doc.ID] = doc
	}
}

// catchUp pulls every collection until a page comes back empty.
func (d *device) catchUp(ctx context.Context, limit int) error {
	for _, c := range synced {
		for range 100_000 {
			docs, err := d.pullPage(ctx, c, limit)
			if err != nil {
				return err
			}
			if len(docs) == 0 {
				break
			}
		}
	}
	return nil
}

func (d *device) mustCatchUp(tb testing.TB) {
	tb.Helper()
	if err := d.catchUp(context.Background(), 50); err != nil {
		tb.Fatal(err)
	}
}

// pullAll pulls c from the device's checkpoint to the end and returns
// everything it received (applied too).
func (d *device) pullAll(tb testing.TB, c *collections.Collection) []collections.Document {
	tb.Helper()
	var all []collections.Document
	for {
		docs, err := d.pullPage(context.Background(), c, 50)
		if err != nil {
			tb.Fatal(err)
		}
		if len(docs) == 0 {
			return all
		}
		all = append(all, docs...)
	}
}

// expectedSet is what the default rules give technician user of a tenant
// whose live documents are all: the work orders assigned to user, their
// checklist items and notes, and the sites they reference.
func expectedSet(all docSet, user string) docSet {
	out := newDocSet()
	for id, wo := range all[collections.WorkOrder] {
		if wo.Fields["assigneeId"] == user {
			out[collections.WorkOrder][id] = wo
		}
	}
	for _, c := range []*collections.Collection{collections.ChecklistItem, collections.Note} {
		for id, d := range all[c] {
			if _, ok := out[collections.WorkOrder][d.Fields["workOrderId"].(string)]; ok {
				out[c][id] = d
			}
		}
	}
	for _, wo := range out[collections.WorkOrder] {
		siteID := wo.Fields["siteId"].(string)
		if s, ok := all[collections.Site][siteID]; ok {
			out[collections.Site][siteID] = s
		}
	}
	return out
}

// setDiff is how a device's documents differ from what they should be.
type setDiff struct {
	missing, extra, stale []string // "Collection/id"
}

func (s setDiff) empty() bool { return len(s.missing)+len(s.extra)+len(s.stale) == 0 }

func (s setDiff) count() int { return len(s.missing) + len(s.extra) + len(s.stale) }

func (s setDiff) String() string {
	return fmt.Sprintf("%d missing %v, %d extra %v, %d stale %v",
		len(s.missing), head(s.missing), len(s.extra), head(s.extra), len(s.stale), head(s.stale))
}

// diffSets compares got with want: ids, and each document's fields and updatedAt.
func diffSets(got, want docSet) setDiff {
	var out setDiff
	for _, c := range synced {
		for id, w := range want[c] {
			g, ok := got[c][id]
			switch {
			case !ok:
				out.missing = append(out.missing, c.Name+"/"+id)
			case !g.UpdatedAt.Equal(w.UpdatedAt) || !reflect.DeepEqual(g.Fields, w.Fields):
				out.stale = append(out.stale, c.Name+"/"+id)
			}
		}
		for id := range got[c] {
			if _, ok := want[c][id]; !ok {
				out.extra = append(out.extra, c.Name+"/"+id)
			}
		}
	}
	slices.Sort(out.missing)
	slices.Sort(out.extra)
	slices.Sort(out.stale)
	return out
}

// storedSet reads every live document of the tenant straight from the database.
func storedSet(tb testing.TB, d *db.DB) docSet {
	tb.Helper()
	out := newDocSet()
	for _, c := range synced {
		docs, err := d.ChangesSince(context.Background(), rulesTenant, c, 0, 1_000_000)
		if err != nil {
			tb.Fatal(err)
		}
		for _, doc := range docs {
			if !doc.Deleted {
				out[c][doc.ID] = doc
			}
		}
	}
	return out
}

// checkDevices compares the dispatcher's local documents with the database,
// then each technician's with its set computed from the dispatcher's.
func checkDevices(tb testing.TB, d *db.DB, disp *device, techs []*device) map[string]setDiff {
	tb.Helper()
	if diff := diffSets(disp.docs, storedSet(tb, d)); !diff.empty() {
		tb.Fatalf("the dispatcher's whole-tenant pull differs from the database: %v", diff)
	}
	out := map[string]setDiff{}
	for _, t := range techs {
		out[t.caller.UserID] = diffSets(t.docs, expectedSet(disp.docs, t.caller.UserID))
	}
	return out
}

// assertDevices fails unless every technician holds exactly its set.
func assertDevices(tb testing.TB, d *db.DB, disp *device, techs ...*device) {
	tb.Helper()
	diffs := checkDevices(tb, d, disp, techs)
	var bad []string
	for _, t := range techs {
		if diff := diffs[t.caller.UserID]; !diff.empty() {
			bad = append(bad, fmt.Sprintf("%s: %v", t.caller.UserID, diff))
		}
		if len(t.leaks) > 0 {
			bad = append(bad, fmt.Sprintf("%s: %d leaks: %v", t.caller.UserID, len(t.leaks), head(t.leaks)))
		}
	}
	if len(bad) > 0 {
		tb.Fatalf("technicians' local databases differ from their sets:\n%s", strings.Join(bad, "\n"))
	}
}

// idsOf lists ids, with "-" before a removal's, sorted.
func idsOf(docs []collections.Document) []string {
	out := make([]string, len(docs))
	for i, d := range docs {
		out[i] = d.ID
		if d.Deleted {
			out[i] = "-" + d.ID
		}
	}
	slices.Sort(out)
	return out
}

func assertIDs(tb testing.TB, what string, docs []collections.Document, want ...string) {
	tb.Helper()
	slices.Sort(want)
	if got := idsOf(docs); !slices.Equal(got, want) {
		tb.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

func find(docs []collections.Document, id string) collections.Document {
	for _, d := range docs {
		if d.ID == id {
			return d
		}
	}
	return collections.Document{}
}

// pauseKey carries a *pause in a push's context.
type pauseKey struct{}

// pause holds one write transaction open after it wrote, before it commits,
// until released: two writers can then be made to meet at the locks in a
// chosen order.
type pause struct {
	written chan struct{} // closed when the transaction has written
	release chan struct{} // closed by the test to let it commit
	once    sync.Once
}

func newPause() *pause { return &pause{written: make(chan struct{}), release: make(chan struct{})} }

func (p *pause) in(ctx context.Context) context.Context { return context.WithValue(ctx, pauseKey{}, p) }

// pausingStore honours a pause in the context of a write.
type pausingStore struct{ syncengine.Store }

func (s pausingStore) WriteDocuments(ctx context.Context, tenant string, c *collections.Collection, fn func(collections.Writer) error) error {
	p, _ := ctx.Value(pauseKey{}).(*pause)
	return s.Store.WriteDocuments(ctx, tenant, c, func(w collections.Writer) error {
		if err := fn(w); err != nil {
			return err
		}
		if p != nil {
			p.once.Do(func() { close(p.written) })
			<-p.release
		}
		return nil
	})
}

// awaitLockWaiters returns once n sessions of the test's database wait for
// a lock: the writer started after a paused one has reached the lock the
// paused one holds. PostgreSQL gives no signal of it, so this polls
// pg_stat_activity, within a bound.
func awaitLockWaiters(tb testing.TB, d *db.DB, n int) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		err := d.Pool.QueryRow(context.Background(),
			`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		if err != nil {
			tb.Fatal(err)
		}
		if waiting >= n {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d sessions wait for a lock after 10s, want %d", waiting, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
