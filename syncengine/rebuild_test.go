package syncengine

// Tests of the bucket membership rebuild (rebuild.go) through a real
// database. What a technician should hold is computed here, from every
// document of the tenant, by plain Go that shares nothing with the engine
// (wantSets); a technician's set is what its pulls leave in a model of a
// client (techClient), so the tests check what callers see, removals and
// additions included, not the rows.

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
	"github.com/tidemark/tidemark/syncrules"
)

// Rules texts the tests change to. byAuthor keeps the collections and the
// bucket ids of the default rules (so clients keep their checkpoints) but
// changes every membership: a technician syncs the notes they wrote, the
// work orders those notes are on, and their checklist items and sites.
const (
	rulesByAuthor = `
role technician
    Note          where authorId    = token.sub
    WorkOrder     where id          in Note.workOrderId
    ChecklistItem where workOrderId in WorkOrder
    Site          where id          in WorkOrder.siteId
role dispatcher
    all
no role
    all
`
	rulesWithoutNotes = `
role technician
    WorkOrder     where assigneeId  = token.sub
    ChecklistItem where workOrderId in WorkOrder
    Site          where id          in WorkOrder.siteId
role dispatcher
    all
no role
    all
`
	rulesWithoutTechnicians = `
role dispatcher
    all
no role
    all
`
)

// ruleSet names which rules wantSets applies.
type ruleSet int

const (
	byAssignee ruleSet = iota // the default rules
	byAuthor
	withoutNotes
)

var syncedCollections = []*collections.Collection{collections.WorkOrder, collections.ChecklistItem, collections.Note, collections.Site}

func parseRules(tb testing.TB, text string) *syncrules.Rules {
	tb.Helper()
	r, err := syncrules.Parse("test.rules", []byte(text), collections.All())
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

func defaultRules(tb testing.TB) *syncrules.Rules {
	tb.Helper()
	r, err := syncrules.Default(collections.All())
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// engineWith is an engine on d under rules (nil: no rules, so writes keep
// no bucket rows, as before sync rules existed).
func engineWith(d *db.DB, rules *syncrules.Rules) *Engine {
	e := New(d)
	if rules != nil {
		e.UseRules(rules)
	}
	return e
}

var dispatcher = func(tenant string) Caller {
	return Caller{TenantID: tenant, UserID: "d-1", Claims: map[string]string{"role": "dispatcher"}}
}

func technician(tenant, user string) Caller {
	return Caller{TenantID: tenant, UserID: user, Claims: map[string]string{"role": "technician"}}
}

func siteDoc(id string) collections.Document {
	return collections.Document{ID: id, Fields: map[string]any{"name": "Site " + id, "address": "1 Quay", "latitude": nil, "longitude": nil}}
}

func workOrderDoc(id, site string, assignee any) collections.Document {
	return collections.Document{ID: id, Fields: map[string]any{
		"siteId": site, "title": "Job " + id, "description": nil, "status": "OPEN",
		"priority": int64(1), "assigneeId": assignee, "dueAt": nil,
	}}
}

func itemDoc(id, workOrder string) collections.Document {
	return collections.Document{ID: id, Fields: map[string]any{"workOrderId": workOrder, "label": "Check " + id, "done": false, "position": int64(0)}}
}

func noteDoc(id, workOrder string) collections.Document {
	return collections.Document{ID: id, Fields: map[string]any{"workOrderId": workOrder, "body": "Note " + id, "authorId": nil}}
}

// create pushes new documents as caller.
func create(tb testing.TB, e *Engine, caller Caller, c *collections.Collection, docs ...collections.Document) {
	tb.Helper()
	rows := make([]PushRow, len(docs))
	for i, d := range docs {
		rows[i] = PushRow{New: d}
	}
	res, err := e.Push(context.Background(), caller, c, rows)
	if err != nil {
		tb.Fatalf("push %s: %v", c.Name, err)
	}
	if len(res) > 0 {
		tb.Fatalf("push %s: not written as sent: %v", c.Name, res)
	}
}

// edit changes a stored document as caller, assuming its current state.
func edit(tb testing.TB, e *Engine, d *db.DB, caller Caller, c *collections.Collection, id string, change func(*collections.Document)) {
	tb.Helper()
	got, err := d.GetDocuments(context.Background(), caller.TenantID, c, []string{id})
	if err != nil {
		tb.Fatal(err)
	}
	cur, ok := got[id]
	if !ok {
		tb.Fatalf("edit %s %s: no such document", c.Name, id)
	}
	next := cur
	next.Fields = maps.Clone(cur.Fields)
	change(&next)
	res, err := e.Push(context.Background(), caller, c, []PushRow{{Assumed: &cur, New: next}})
	if err != nil {
		tb.Fatalf("edit %s %s: %v", c.Name, id, err)
	}
	if len(res) > 0 {
		tb.Fatalf("edit %s %s: not written as sent: %v", c.Name, id, res)
	}
}

// seedField writes a small field-service tenant: alice has wo-1 and wo-2
// on site-a and wo-5 on site-b (deleted), bob has wo-3 on site-b, wo-4 on
// site-c is unassigned; notes are written by alice and bob, across
// assignments.
func seedField(tb testing.TB, e *Engine, d *db.DB, tenant string) {
	tb.Helper()
	as := func(user string) Caller { return Caller{TenantID: tenant, UserID: user} }
	create(tb, e, as("d-1"), collections.Site, siteDoc("site-a"), siteDoc("site-b"), siteDoc("site-c"), siteDoc("site-d"))
	create(tb, e, as("d-1"), collections.WorkOrder,
		workOrderDoc("wo-1", "site-a", "alice"), workOrderDoc("wo-2", "site-a", "alice"),
		workOrderDoc("wo-3", "site-b", "bob"), workOrderDoc("wo-4", "site-c", nil),
		workOrderDoc("wo-5", "site-b", "alice"), workOrderDoc("wo-6", "site-gone", "bob"))
	create(tb, e, as("d-1"), collections.ChecklistItem,
		itemDoc("ci-1", "wo-1"), itemDoc("ci-2", "wo-1"), itemDoc("ci-3", "wo-3"),
		itemDoc("ci-4", "wo-4"), itemDoc("ci-5", "wo-5"), itemDoc("ci-6", "wo-2"))
	create(tb, e, as("alice"), collections.Note, noteDoc("n-1", "wo-1"), noteDoc("n-2", "wo-4"))
	create(tb, e, as("bob"), collections.Note, noteDoc("n-3", "wo-3"), noteDoc("n-4", "wo-1"), noteDoc("n-5", "wo-6"))
	del := func(doc *collections.Document) { doc.Deleted = true }
	edit(tb, e, d, as("d-1"), collections.WorkOrder, "wo-5", del)
	edit(tb, e, d, as("d-1"), collections.ChecklistItem, "ci-6", del)
	edit(tb, e, d, as("d-1"), collections.Site, "site-d", del)
}

// tenantDocs reads every document of the tenant, deleted ones included.
func tenantDocs(tb testing.TB, d *db.DB, tenant string) map[*collections.Collection]map[string]collections.Document {
	tb.Helper()
	out := map[*collections.Collection]map[string]collections.Document{}
	for _, c := range syncedCollections {
		docs, err := d.ChangesSince(context.Background(), tenant, c, 0, 1_000_000)
		if err != nil {
			tb.Fatal(err)
		}
		out[c] = map[string]collections.Document{}
		for _, doc := range docs {
			out[c][doc.ID] = doc
		}
	}
	return out
}

// wantSets is the oracle: the ids of each collection a technician holds
// under rules, computed from the documents by the rules' plain meaning.
// A collection the rules do not sync for technicians is absent.
func wantSets(all map[*collections.Collection]map[string]collections.Document, user string, rules ruleSet) map[*collections.Collection][]string {
	live := func(c *collections.Collection, keep func(collections.Document) bool) map[string]collections.Document {
		out := map[string]collections.Document{}
		for id, d := range all[c] {
			if !d.Deleted && keep(d) {
				out[id] = d
			}
		}
		return out
	}
	field := func(d collections.Document, f string) string { s, _ := d.Fields[f].(string); return s }
	var workOrders, notes map[string]collections.Document
	switch rules {
	case byAssignee, withoutNotes:
		workOrders = live(collections.WorkOrder, func(d collections.Document) bool { return field(d, "assigneeId") == user })
		notes = live(collections.Note, func(d collections.Document) bool { _, ok := workOrders[field(d, "workOrderId")]; return ok })
	case byAuthor:
		notes = live(collections.Note, func(d collections.Document) bool { return field(d, "authorId") == user })
		workOrders = live(collections.WorkOrder, func(d collections.Document) bool {
			for _, n := range notes {
				if field(n, "workOrderId") == d.ID {
					return true
				}
			}
			return false
		})
	}
	items := live(collections.ChecklistItem, func(d collections.Document) bool { _, ok := workOrders[field(d, "workOrderId")]; return ok })
	sites := live(collections.Site, func(d collections.Document) bool {
		for _, w := range workOrders {
			if field(w, "siteId") == d.ID {
				return true
			}
		}
		return false
	})
	out := map[*collections.Collection][]string{
		collections.WorkOrder:     slices.Sorted(maps.Keys(workOrders)),
		collections.ChecklistItem: slices.Sorted(maps.Keys(items)),
		collections.Site:          slices.Sorted(maps.Keys(sites)),
		collections.Note:          slices.Sorted(maps.Keys(notes)),
	}
	if rules == withoutNotes {
		delete(out, collections.Note)
	}
	return out
}

// techClient models a technician's device: per collection, its checkpoint
// and the documents its pulls left it with.
type techClient struct {
	caller  Caller
	cursors map[*collections.Collection]*string
	local   map[*collections.Collection]map[string]collections.Document
	// removals counts, per collection, the removals the last sync returned.
	removals map[*collections.Collection]int
	pulled   map[*collections.Collection]int
	// upToDate says the client has pulled every state its buckets held, so
	// a removal must carry exactly the state it holds (the last state the
	// bucket held); otherwise a removal may carry a later one it missed.
	upToDate bool
}

func newTechClient(tenant, user string) *techClient {
	return &techClient{caller: technician(tenant, user), cursors: map[*collections.Collection]*string{},
		local: map[*collections.Collection]map[string]collections.Document{}}
}

// sync pulls every collection from the client's checkpoints to the end,
// as RxDB does: a removal deletes the local document. It returns the
// problems it saw: a removal carrying a state the client never held (a
// leak), or a pull error.
func (tc *techClient) sync(ctx context.Context, e *Engine) []string {
	var problems []string
	tc.removals = map[*collections.Collection]int{}
	tc.pulled = map[*collections.Collection]int{}
	for _, c := range syncedCollections {
		if tc.local[c] == nil {
			tc.local[c] = map[string]collections.Document{}
		}
		for {
			res, err := e.Pull(ctx, tc.caller, c, tc.cursors[c], 3)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s pull of %s: %v", tc.caller.UserID, c.Name, err))
				break
			}
			for _, d := range res.Documents {
				tc.pulled[c]++
				if !d.Deleted {
					tc.local[c][d.ID] = d
					continue
				}
				tc.removals[c]++
				if had, ok := tc.local[c][d.ID]; ok && tc.upToDate && !sameFields(c, had, d) {
					problems = append(problems, fmt.Sprintf("%s: removal of %s %s carries %v, the client held %v", tc.caller.UserID, c.Name, d.ID, d.Fields, had.Fields))
				}
				delete(tc.local[c], d.ID)
			}
			// The end is a pull that leaves the checkpoint where it was (a
			// page of skipped entries moves it without documents).
			done := tc.cursors[c] != nil && *tc.cursors[c] == res.Cursor
			tc.cursors[c] = &res.Cursor
			if done {
				break
			}
		}
	}
	return problems
}

// sameFields reports whether two states of a document hold the same values.
func sameFields(c *collections.Collection, a, b collections.Document) bool {
	for _, f := range c.Fields {
		if !f.Equal(a.Fields[f.Name], b.Fields[f.Name]) {
			return false
		}
	}
	return true
}

// String counts what the client holds, per collection.
func (tc *techClient) String() string {
	var parts []string
	for _, c := range syncedCollections {
		parts = append(parts, fmt.Sprintf("%d %s", len(tc.local[c]), c.Name))
	}
	return strings.Join(parts, ", ")
}

// mismatches compares what the client holds with what it should hold.
func (tc *techClient) mismatches(want map[*collections.Collection][]string) []string {
	var out []string
	for _, c := range syncedCollections {
		w, synced := want[c]
		if !synced {
			continue
		}
		got := slices.Sorted(maps.Keys(tc.local[c]))
		if !slices.Equal(got, w) {
			out = append(out, fmt.Sprintf("%s holds %s %v, want %v", tc.caller.UserID, c.Name, got, w))
		}
	}
	return out
}

// checkClients syncs each client and compares its set with the oracle's.
func checkClients(ctx context.Context, tb testing.TB, e *Engine, d *db.DB, tenant string, rules ruleSet, clients ...*techClient) []string {
	tb.Helper()
	all := tenantDocs(tb, d, tenant)
	var problems []string
	for _, tc := range clients {
		problems = append(problems, tc.sync(ctx, e)...)
		problems = append(problems, tc.mismatches(wantSets(all, tc.caller.UserID, rules))...)
	}
	return problems
}

func heads(tb testing.TB, d *db.DB, tenant string) map[string]int64 {
	tb.Helper()
	out := map[string]int64{}
	for _, c := range syncedCollections {
		h, err := d.ScopeHead(context.Background(), tenant, c)
		if err != nil {
			tb.Fatal(err)
		}
		out[c.Name] = h
	}
	return out
}

func forgetFingerprints(tb testing.TB, d *db.DB) {
	tb.Helper()
	if _, err := d.Pool.Exec(context.Background(), "DELETE FROM sync_rules_state"); err != nil {
		tb.Fatal(err)
	}
}

func rebuild(tb testing.TB, e *Engine) RebuildReport {
	tb.Helper()
	r, err := e.RebuildMemberships(context.Background())
	if err != nil {
		tb.Fatalf("rebuild: %v", err)
	}
	tb.Logf("rebuild: %+v", r)
	return r
}

// Data written before sync rules existed has no bucket rows; the rebuild
// computes them, and a technician's first pull returns exactly their work
// orders, the checklist items and notes of those, and their sites. The
// commit listeners hear of the new heads, as after a push.
func TestRebuildComputesMembershipOfDataWrittenWithoutRules(t *testing.T) {
	ctx := context.Background()
	d := dbtest.Open(t, db.PoolConfig{})
	plain := engineWith(d, nil)
	seedField(t, plain, d, "t-1")
	seedField(t, plain, d, "t-2")
	var n int64
	if err := d.Pool.QueryRow(ctx, "SELECT count(*) FROM sync_bucket_members").Scan(&n); err != nil || n != 0 {
		t.Fatalf("bucket rows written without rules: %d (%v)", n, err)
	}

	e := engineWith(d, defaultRules(t))
	var mu sync.Mutex
	heard := map[string]int64{}
	e.OnCommit(func(tenant string, c *collections.Collection, head int64, _ []collections.Document) {
		mu.Lock()
		defer mu.Unlock()
		heard[tenant+"/"+c.Name] = head
	})
	report := rebuild(t, e)
	if !slices.Equal(report.Rebuilt, []string{"technician"}) || report.Tenants != 2 || report.Removed != 0 || report.Put == 0 {
		t.Errorf("report %+v: want technician rebuilt in 2 tenants, rows put and none removed", report)
	}
	for _, tenant := range []string{"t-1", "t-2"} {
		clients := []*techClient{newTechClient(tenant, "alice"), newTechClient(tenant, "bob"), newTechClient(tenant, "carol")}
		if p := checkClients(ctx, t, e, d, tenant, byAssignee, clients...); len(p) > 0 {
			t.Errorf("%s:\n%s", tenant, strings.Join(p, "\n"))
		}
		alice := clients[0]
		if got := slices.Sorted(maps.Keys(alice.local[collections.Site])); !slices.Equal(got, []string{"site-a"}) {
			t.Errorf("alice's sites %v, want [site-a] (wo-5 on site-b is deleted)", got)
		}
		for c, n := range alice.removals {
			if n > 0 {
				t.Errorf("alice's first sync returned %d removals of %s", n, c.Name)
			}
		}
		for _, c := range syncedCollections {
			// Every collection got bucket rows, numbered last.
			if h := heads(t, d, tenant)[c.Name]; heard[tenant+"/"+c.Name] != h {
				t.Errorf("%s %s: listeners heard head %d, the head is %d", tenant, c.Name, heard[tenant+"/"+c.Name], h)
			}
		}
	}
}

// Rows deleted from the table (a lost or truncated table) come back the
// same way, and a write after the rebuild moves documents as usual.
func TestRebuildRestoresDeletedRows(t *testing.T) {
	ctx := context.Background()
	d := dbtest.Open(t, db.PoolConfig{})
	e := engineWith(d, defaultRules(t))
	seedField(t, e, d, "t-1")
	alice := newTechClient("t-1", "alice")
	if p := checkClients(ctx, t, e, d, "t-1", byAssignee, alice); len(p) > 0 {
		t.Fatalf("before: %s", strings.Join(p, "\n"))
	}
	if _, err := d.Pool.Exec(ctx, "DELETE FROM sync_bucket_members"); err != nil {
		t.Fatal(err)
	}
	forgetFingerprints(t, d)
	rebuild(t, e)
	fresh := newTechClient("t-1", "alice")
	if p := checkClients(ctx, t, e, d, "t-1", byAssignee, fresh); len(p) > 0 {
		t.Errorf("after the rebuild:\n%s", strings.Join(p, "\n"))
	}
	edit(t, e, d, dispatcher("t-1"), collections.WorkOrder, "wo-1", func(doc *collections.Document) { doc.Fields["assigneeId"] = "bob" })
	bob := newTechClient("t-1", "bob")
	if p := checkClients(ctx, t, e, d, "t-1", byAssignee, fresh, bob); len(p) > 0 {
		t.Errorf("after a reassignment:\n%s", strings.Join(p, "\n"))
	}
}

// changeRules runs the rules-change scenario: clients synced under the
// default rules, the rules change to next, the rebuild runs (through
// rebuildWith), and each client pulls again from its old checkpoints. It
// returns the clients and the problems their sets show.
func changeRules(t *testing.T, next string, nextSet ruleSet, diff diffFunc) ([]*techClient, RebuildReport, []string) {
	t.Helper()
	ctx := context.Background()
	d := dbtest.Open(t, db.PoolConfig{})
	seedField(t, engineWith(d, defaultRules(t)), d, "t-1")
	before := engineWith(d, defaultRules(t))
	rebuild(t, before) // records the fingerprints
	clients := []*techClient{newTechClient("t-1", "alice"), newTechClient("t-1", "bob")}
	if p := checkClients(ctx, t, before, d, "t-1", byAssignee, clients...); len(p) > 0 {
		t.Fatalf("before the change: %s", strings.Join(p, "\n"))
	}
	for _, tc := range clients {
		tc.upToDate = true
	}
	after := engineWith(d, parseRules(t, next))
	report, err := after.rebuild(ctx, diff)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rebuild: %+v", report)
	return clients, report, checkClients(ctx, t, after, d, "t-1", nextSet, clients...)
}

// A rules file that changes every membership but keeps the buckets'
// collections and ids: clients keep their checkpoints, and their next pull
// returns the documents that left their set as removals (carrying only the
// state they held) and the documents that entered it.
func TestRebuildAfterRulesChangeMovesDocumentsOutAndIn(t *testing.T) {
	clients, report, problems := changeRules(t, rulesByAuthor, byAuthor, diffMembers)
	if len(problems) > 0 {
		t.Fatalf("after the rules changed:\n%s", strings.Join(problems, "\n"))
	}
	if !slices.Equal(report.Rebuilt, []string{"technician"}) || report.Removed == 0 || report.Put == 0 {
		t.Errorf("report %+v: want technician rebuilt, rows put and removed", report)
	}
	alice := clients[0]
	// alice wrote notes on wo-1 (hers) and wo-4 (unassigned); wo-2 was hers.
	if got := slices.Sorted(maps.Keys(alice.local[collections.WorkOrder])); !slices.Equal(got, []string{"wo-1", "wo-4"}) {
		t.Errorf("alice's work orders %v, want [wo-1 wo-4]", got)
	}
	if alice.removals[collections.WorkOrder] != 1 || alice.removals[collections.Note] != 1 || alice.removals[collections.ChecklistItem] != 0 {
		t.Errorf("alice's removals %v: want wo-2 and bob's n-4 on wo-1, no checklist item (ci-6 on wo-2 is deleted)", alice.removals)
	}
}

// A rules file under which technicians no longer sync notes: their note
// rows become removals (their checkpoint of notes is of a set they no
// longer have: CHECKPOINT_EXPIRED, then nothing), and the other
// collections, whose rows are the same, get no new entries.
func TestRebuildAfterACollectionLeavesTheRules(t *testing.T) {
	clients, report, problems := changeRules(t, rulesWithoutNotes, withoutNotes, diffMembers)
	var unexpected []string
	for _, p := range problems {
		if !strings.Contains(p, "pull of Note") || !strings.Contains(p, "CHECKPOINT_EXPIRED") && !strings.Contains(p, "another sync set") {
			unexpected = append(unexpected, p)
		}
	}
	if len(unexpected) > 0 {
		t.Fatalf("after the rules changed:\n%s", strings.Join(unexpected, "\n"))
	}
	if report.Put != 0 || report.Removed != 4 {
		t.Errorf("report %+v: want 4 removals (n-1, n-4 of alice, n-3, n-5 of bob) and nothing put", report)
	}
	for _, tc := range clients {
		for _, c := range []*collections.Collection{collections.WorkOrder, collections.ChecklistItem, collections.Site} {
			if tc.pulled[c] != 0 {
				t.Errorf("%s pulled %d %s after a change that left them alone", tc.caller.UserID, tc.pulled[c], c.Name)
			}
		}
	}
}

// A role that leaves the rules: its buckets' present rows become removals
// and the fingerprint is forgotten; the role coming back rebuilds them.
func TestRebuildOfARemovedRole(t *testing.T) {
	ctx := context.Background()
	d := dbtest.Open(t, db.PoolConfig{})
	e := engineWith(d, defaultRules(t))
	seedField(t, e, d, "t-1")
	rebuild(t, e)
	gone := rebuild(t, engineWith(d, parseRules(t, rulesWithoutTechnicians)))
	if !slices.Equal(gone.Dropped, []string{"technician"}) || gone.Put != 0 || gone.Removed == 0 {
		t.Errorf("report %+v: want technician dropped, its rows removed", gone)
	}
	var present int
	if err := d.Pool.QueryRow(ctx, "SELECT count(*) FROM sync_bucket_members WHERE present").Scan(&present); err != nil || present != 0 {
		t.Errorf("%d rows still present (%v)", present, err)
	}
	fps, err := d.BucketFingerprints(ctx)
	if err != nil || len(fps) != 0 {
		t.Errorf("fingerprints %v (%v), want none", fps, err)
	}
	back := rebuild(t, e)
	if !slices.Equal(back.Rebuilt, []string{"technician"}) || back.Put != gone.Removed {
		t.Errorf("report %+v: want the %d removed rows put back", back, gone.Removed)
	}
	alice := newTechClient("t-1", "alice")
	if p := checkClients(ctx, t, e, d, "t-1", byAssignee, alice); len(p) > 0 {
		t.Errorf("after the role came back:\n%s", strings.Join(p, "\n"))
	}
}

// Rebuilding twice changes nothing the second time: with the fingerprints
// current it reads nothing, and with them forgotten it recomputes the same
// rows and writes none, giving out no change number.
func TestRebuildTwiceChangesNothing(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{})
	seedField(t, engineWith(d, nil), d, "t-1")
	e := engineWith(d, defaultRules(t))
	first := rebuild(t, e)
	if !first.Changed() {
		t.Fatalf("first rebuild changed nothing: %+v", first)
	}
	before := heads(t, d, "t-1")
	if again := rebuild(t, e); again.Changed() || len(again.Rebuilt) != 0 || again.Tenants != 0 {
		t.Errorf("second rebuild: %+v, want nothing done", again)
	}
	forgetFingerprints(t, d)
	if forced := rebuild(t, e); forced.Changed() || forced.Tenants != 1 {
		t.Errorf("rebuild with forgotten fingerprints: %+v, want one tenant examined and nothing written", forced)
	}
	if after := heads(t, d, "t-1"); !maps.Equal(before, after) {
		t.Errorf("heads moved from %v to %v", before, after)
	}
}

// Two instances that start at once both rebuild: the change locks make
// them take turns per tenant, and the rows written are those one would
// write.
func TestRebuildOnTwoInstancesAtOnce(t *testing.T) {
	ctx := context.Background()
	d := dbtest.Open(t, db.PoolConfig{})
	plain := engineWith(d, nil)
	for i := range 4 {
		seedField(t, plain, d, fmt.Sprintf("t-%d", i))
	}
	reference := dbtest.Open(t, db.PoolConfig{})
	seedField(t, engineWith(reference, nil), reference, "t-0")
	want := rebuild(t, engineWith(reference, defaultRules(t)))

	var wg sync.WaitGroup
	reports := make([]RebuildReport, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reports[i], errs[i] = engineWith(d, defaultRules(t)).RebuildMemberships(ctx)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("reports: %+v", reports)
	if got := reports[0].Put + reports[1].Put; got != 4*want.Put {
		t.Errorf("two instances put %d rows, want %d (4 tenants of %d)", got, 4*want.Put, want.Put)
	}
	for i := range 4 {
		tenant := fmt.Sprintf("t-%d", i)
		if p := checkClients(ctx, t, engineWith(d, defaultRules(t)), d, tenant, byAssignee, newTechClient(tenant, "alice"), newTechClient(tenant, "bob")); len(p) > 0 {
			t.Errorf("%s:\n%s", tenant, strings.Join(p, "\n"))
		}
	}
}

// history writes a random field-service history into one tenant:
// creations, reassignments (one at a time and several in one push), moves
// of work orders between sites and of checklist items between work orders,
// deletions and undeletions of every kind, sites that appear after work
// orders refer to them. Its writes may conflict with a concurrent
// history's; a conflict is skipped.
type history struct {
	e      *Engine
	d      *db.DB
	tenant string
	users  []string
	mu     sync.Mutex
	sites  int // site-0 … site-(sites-1) exist; work orders may refer to two more
}

const (
	historyOrders = 12
	historyItems  = 20
	historyNotes  = 20
)

func newHistory(tb testing.TB, e *Engine, d *db.DB, tenant string, rng *rand.Rand) *history {
	tb.Helper()
	h := &history{e: e, d: d, tenant: tenant, users: []string{"alice", "bob", "carol"}, sites: 6}
	for i := range h.sites {
		create(tb, e, dispatcher(tenant), collections.Site, siteDoc(fmt.Sprintf("site-%d", i)))
	}
	for i := range historyOrders {
		create(tb, e, dispatcher(tenant), collections.WorkOrder, workOrderDoc(fmt.Sprintf("wo-%d", i), h.site(rng), h.assignee(rng)))
	}
	for i := range historyItems {
		// wo-12 does not exist: an item may wait for its work order.
		create(tb, e, dispatcher(tenant), collections.ChecklistItem, itemDoc(fmt.Sprintf("ci-%d", i), fmt.Sprintf("wo-%d", rng.IntN(historyOrders+1))))
	}
	for i := range historyNotes {
		author := Caller{TenantID: tenant, UserID: h.users[rng.IntN(len(h.users))]}
		create(tb, e, author, collections.Note, noteDoc(fmt.Sprintf("n-%d", i), fmt.Sprintf("wo-%d", rng.IntN(historyOrders))))
	}
	return h
}

func (h *history) site(rng *rand.Rand) string { return fmt.Sprintf("site-%d", rng.IntN(h.sites+2)) }

func (h *history) assignee(rng *rand.Rand) any {
	if rng.IntN(5) == 0 {
		return nil
	}
	return h.users[rng.IntN(len(h.users))]
}

// step makes one random write; it reports an error other than a conflict.
func (h *history) step(ctx context.Context, rng *rand.Rand) error {
	toggle := func(doc *collections.Document) { doc.Deleted = !doc.Deleted }
	order := func() string { return fmt.Sprintf("wo-%d", rng.IntN(historyOrders)) }
	switch rng.IntN(11) {
	case 0, 1:
		return h.edit(ctx, collections.WorkOrder, func(doc *collections.Document) { doc.Fields["assigneeId"] = h.assignee(rng) }, order())
	case 2:
		// several work orders reassigned in one push, one of them twice
		a, b := order(), order()
		return h.edit(ctx, collections.WorkOrder, func(doc *collections.Document) { doc.Fields["assigneeId"] = h.assignee(rng) }, a, b, a)
	case 3:
		return h.edit(ctx, collections.WorkOrder, func(doc *collections.Document) { doc.Fields["siteId"] = h.site(rng) }, order())
	case 4:
		return h.edit(ctx, collections.WorkOrder, toggle, order())
	case 5:
		return h.edit(ctx, collections.ChecklistItem, func(doc *collections.Document) {
			doc.Fields["workOrderId"] = fmt.Sprintf("wo-%d", rng.IntN(historyOrders+1))
		}, fmt.Sprintf("ci-%d", rng.IntN(historyItems)))
	case 6:
		return h.edit(ctx, collections.ChecklistItem, toggle, fmt.Sprintf("ci-%d", rng.IntN(historyItems)))
	case 7:
		h.mu.Lock()
		n := h.sites
		grow := n < 8 && rng.IntN(3) == 0
		if grow {
			h.sites++
		}
		h.mu.Unlock()
		if grow {
			// a site that work orders already refer to appears
			_, err := h.e.Push(ctx, dispatcher(h.tenant), collections.Site, []PushRow{{New: siteDoc(fmt.Sprintf("site-%d", n))}})
			return err
		}
		return h.edit(ctx, collections.Site, toggle, fmt.Sprintf("site-%d", rng.IntN(n)))
	case 8:
		return h.edit(ctx, collections.Note, func(doc *collections.Document) { doc.Fields["workOrderId"] = order() }, fmt.Sprintf("n-%d", rng.IntN(historyNotes)))
	case 9:
		// the work order some checklist items wait for appears (once;
		// later pushes of it are conflicts or retries)
		_, err := h.e.Push(ctx, dispatcher(h.tenant), collections.WorkOrder, []PushRow{{New: workOrderDoc(fmt.Sprintf("wo-%d", historyOrders), h.site(rng), h.assignee(rng))}})
		return err
	default:
		return h.edit(ctx, collections.Note, toggle, fmt.Sprintf("n-%d", rng.IntN(historyNotes)))
	}
}

// edit pushes change applied to each id (in order, an id repeated is
// changed again) in one push, assuming the states it reads.
func (h *history) edit(ctx context.Context, c *collections.Collection, change func(*collections.Document), ids ...string) error {
	cur, err := h.d.GetDocuments(ctx, h.tenant, c, ids)
	if err != nil {
		return err
	}
	var rows []PushRow
	for _, id := range ids {
		doc, ok := cur[id]
		if !ok {
			continue
		}
		assumed := doc
		next := doc
		next.Fields = maps.Clone(doc.Fields)
		change(&next)
		rows = append(rows, PushRow{Assumed: &assumed, New: next})
		cur[id] = next
	}
	_, err = h.e.Push(ctx, dispatcher(h.tenant), c, rows)
	return err
}

// The rows that writes maintain one change at a time are the rows a
// rebuild computes from scratch: after a random history, a forced rebuild
// finds nothing to change, and every technician holds its set throughout.
// Under the default rules and under rules whose chains run through a
// parent (a note's work order, that work order's items and site).
func TestWritesKeepTheMembershipARebuildComputes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rules string
		set   ruleSet
	}{
		{"default rules", "", byAssignee},
		{"rules by author", rulesByAuthor, byAuthor},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			d := dbtest.Open(t, db.PoolConfig{})
			rules := defaultRules(t)
			if tc.rules != "" {
				rules = parseRules(t, tc.rules)
			}
			e := engineWith(d, rules)
			rebuild(t, e)
			for seed := range uint64(3) {
				tenant := fmt.Sprintf("t-%d", seed)
				rng := rand.New(rand.NewPCG(seed, 9))
				h := newHistory(t, e, d, tenant, rng)
				clients := []*techClient{newTechClient(tenant, "alice"), newTechClient(tenant, "bob"), newTechClient(tenant, "carol")}
				for step := range 150 {
					if err := h.step(ctx, rng); err != nil {
						t.Fatalf("%s step %d: %v", tenant, step, err)
					}
					if step%10 == 0 {
						if p := checkClients(ctx, t, e, d, tenant, tc.set, clients...); len(p) > 0 {
							t.Fatalf("%s step %d:\n%s", tenant, step, strings.Join(p, "\n"))
						}
					}
				}
				if p := checkClients(ctx, t, e, d, tenant, tc.set, clients...); len(p) > 0 {
					t.Fatalf("%s at the end:\n%s", tenant, strings.Join(p, "\n"))
				}
				for _, c := range clients {
					t.Logf("%s: %s holds %s", tenant, c.caller.UserID, c)
				}
			}
			forgetFingerprints(t, d)
			if r := rebuild(t, e); r.Changed() {
				t.Errorf("the rebuild corrected the rows that writes kept: %+v", r)
			}
		})
	}
}

// The same with concurrent writers (reassignments racing with edits of
// the work orders' checklist items, sites appearing and leaving): the
// change locks must leave the rows exactly as a rebuild computes them.
func TestConcurrentWritesKeepTheMembershipARebuildComputes(t *testing.T) {
	ctx := context.Background()
	d := dbtest.Open(t, db.PoolConfig{MaxConns: 8})
	e := engineWith(d, defaultRules(t))
	rebuild(t, e)
	h := newHistory(t, e, d, "t-1", rand.New(rand.NewPCG(1, 1)))
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			for range 60 {
				if err := h.step(ctx, rng); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	clients := []*techClient{newTechClient("t-1", "alice"), newTechClient("t-1", "bob"), newTechClient("t-1", "carol")}
	if p := checkClients(ctx, t, e, d, "t-1", byAssignee, clients...); len(p) > 0 {
		t.Errorf("after the writers:\n%s", strings.Join(p, "\n"))
	}
	forgetFingerprints(t, d)
	if r := rebuild(t, e); r.Changed() {
		t.Errorf("the rebuild corrected the rows that concurrent writes kept: %+v", r)
	}
}

// The control: a rebuild that skips its removals leaves technicians with
// documents that left their set, and the check used above says so.
func TestRebuildCheckCatchesSkippedRemovals(t *testing.T) {
	withoutRemovals := func(have map[string][]collections.Member, want map[string]map[string]wanted) []rowChange {
		return slices.DeleteFunc(diffMembers(have, want), func(ch rowChange) bool { return ch.kind == remove })
	}
	_, report, problems := changeRules(t, rulesByAuthor, byAuthor, withoutRemovals)
	if len(problems) == 0 {
		t.Fatalf("a rebuild without removals passed the check (report %+v)", report)
	}
	t.Logf("the check caught it:\n%s", strings.Join(problems, "\n"))
	if report.Removed != 0 {
		t.Errorf("report %+v: the wrong diff removed rows", report)
	}
}
