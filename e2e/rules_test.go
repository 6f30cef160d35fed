package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/tombstones"
)

// TestRxDBReassignWhileOffline runs the move-out and move-in of
// docs/sync-rules.md with three RxDB clients (two technicians and a
// dispatcher, each an RxDB database of its own replicating the four
// collections with pull, push and stream): the dispatcher reassigns a work
// order from technician A to technician B while A is offline with edits to
// that work order and one of its checklist items. After A reconnects, each
// client holds exactly its set, and A's edits went where the docs say: its
// pushes were outside its set, were not written and came back as removals,
// and A deleted the documents; B and the dispatcher hold the dispatcher's
// state. Every check reads the clients' local databases.
func TestRxDBReassignWhileOffline(t *testing.T) {
	requireNode(t)
	began := time.Now()
	srv := startRulesServer(t)
	dispatcherToken := srv.token(t, "disp", "dispatcher")
	host := startRxDBHost(t, srv.graphqlURL(), dispatcherToken)
	d := host.open("dispatcher", dispatcherToken, nil)
	a := host.open("tech-a", srv.token(t, "tech-a", "technician"), nil)
	b := host.open("tech-b", srv.token(t, "tech-b", "technician"), nil)

	d.insert("sites",
		site("site-harbour", "Harbour depot"), // only wo-a-pump's
		site("site-north", "North yard"),
		site("site-east", "East gate"),
		site("site-west", "West drain"),
	)
	d.insert("workOrders",
		workOrder("wo-a-pump", "site-harbour", "Replace pump", "tech-a"),
		workOrder("wo-a-fence", "site-north", "Paint fence", "tech-a"),
		workOrder("wo-b-gate", "site-east", "Fix gate", "tech-b"),
		workOrder("wo-open-drain", "site-west", "Clear drain", ""),
	)
	d.insert("checklistItems",
		checklistItem("item-pump-1", "wo-a-pump", "Isolate power", 1),
		checklistItem("item-pump-2", "wo-a-pump", "Swap pump", 2),
		checklistItem("item-fence-1", "wo-a-fence", "Sand", 1),
		checklistItem("item-gate-1", "wo-b-gate", "Oil hinges", 1),
		checklistItem("item-drain-1", "wo-open-drain", "Lift cover", 1),
	)
	d.insert("notes",
		note("note-pump", "wo-a-pump", "Spare pump in the van"),
		note("note-fence", "wo-a-fence", "Green paint"),
		note("note-gate", "wo-b-gate", "Code 1234"),
	)
	d.sync()
	a.sync()
	b.sync()
	checkIDs(t, "technician A before", a.state().Documents, map[string][]string{
		"workOrders":     {"wo-a-fence", "wo-a-pump"},
		"sites":          {"site-harbour", "site-north"},
		"checklistItems": {"item-fence-1", "item-pump-1", "item-pump-2"},
		"notes":          {"note-fence", "note-pump"},
	})
	checkIDs(t, "technician B before", b.state().Documents, map[string][]string{
		"workOrders":     {"wo-b-gate"},
		"sites":          {"site-east"},
		"checklistItems": {"item-gate-1"},
		"notes":          {"note-gate"},
	})
	if t.Failed() {
		t.FailNow()
	}

	// A goes offline and edits the work order it is about to lose, one of
	// its checklist items, and a work order it keeps.
	a.offline()
	a.patch("workOrders", "wo-a-pump", doc{"title": "Replace pump (A, offline)", "status": "IN_PROGRESS"})
	a.patch("checklistItems", "item-pump-1", doc{"done": true})
	a.patch("workOrders", "wo-a-fence", doc{"status": "DONE"})

	// Meanwhile the dispatcher reassigns it to B, with data A must never see.
	d.patch("workOrders", "wo-a-pump", doc{"assigneeId": "tech-b", "description": "Reassigned: A is off sick", "priority": 1})
	d.sync()
	b.sync()

	a.online()
	a.sync()
	a.sync()
	b.sync()
	d.sync()
	a.sync()

	dispatcherAPI := srv.api(t, "disp", "dispatcher")
	server := serverSet(t, dispatcherAPI)
	pump := byID(server["workOrders"])["wo-a-pump"]
	if pump["assigneeId"] != "tech-b" || pump["title"] != "Replace pump" || pump["status"] != "OPEN" ||
		pump["description"] != "Reassigned: A is off sick" || pump["priority"] != 1.0 {
		t.Errorf("the server's wo-a-pump = %v, want the dispatcher's state without A's offline edit", pump)
	}
	if item := byID(server["checklistItems"])["item-pump-1"]; item["done"] != false {
		t.Errorf("the server's item-pump-1 = %v, want done: false (A's offline edit is not written)", item)
	}
	if fence := byID(server["workOrders"])["wo-a-fence"]; fence["status"] != "DONE" {
		t.Errorf("the server's wo-a-fence = %v, want A's offline edit (status DONE): it stayed in A's set", fence)
	}

	stateA, stateB, stateD := a.state(), b.state(), d.state()
	checkIDs(t, "technician A after", stateA.Documents, map[string][]string{
		"workOrders":     {"wo-a-fence"},
		"sites":          {"site-north"},
		"checklistItems": {"item-fence-1"},
		"notes":          {"note-fence"},
	})
	checkIDs(t, "technician B after", stateB.Documents, map[string][]string{
		"workOrders":     {"wo-a-pump", "wo-b-gate"},
		"sites":          {"site-east", "site-harbour"},
		"checklistItems": {"item-gate-1", "item-pump-1", "item-pump-2"},
		"notes":          {"note-gate", "note-pump"},
	})
	checkIDs(t, "the dispatcher after", stateD.Documents, map[string][]string{
		"workOrders":     {"wo-a-fence", "wo-a-pump", "wo-b-gate", "wo-open-drain"},
		"sites":          {"site-east", "site-harbour", "site-north", "site-west"},
		"checklistItems": {"item-drain-1", "item-fence-1", "item-gate-1", "item-pump-1", "item-pump-2"},
		"notes":          {"note-fence", "note-gate", "note-pump"},
	})
	// Each holds its set exactly as the server has it, field for field.
	for _, c := range []struct {
		who   string
		state clientState
		api   *graphqlClient
	}{
		{"technician A", stateA, srv.api(t, "tech-a", "technician")},
		{"technician B", stateB, srv.api(t, "tech-b", "technician")},
		{"the dispatcher", stateD, dispatcherAPI},
	} {
		for _, p := range holdsExactly(c.state.Documents, serverSet(t, c.api)) {
			t.Errorf("%s: %s", c.who, p)
		}
		if codes := c.state.errorCodes(); len(codes) > 0 {
			t.Errorf("%s: replication errors %v", c.who, c.state.Errors)
		}
	}

	// A deleted what left its set: the reassigned work order, its checklist
	// items and note, and the site no other of its work orders uses. The
	// removals carry what A had seen, nothing of the dispatcher's edit.
	for collection, gone := range map[string][]string{
		"workOrders":     {"wo-a-pump"},
		"checklistItems": {"item-pump-1", "item-pump-2"},
		"notes":          {"note-pump"},
		"sites":          {"site-harbour"},
	} {
		local := a.local(collection, gone...)
		for _, id := range gone {
			if l, ok := local[id]; !ok || !l.Deleted {
				t.Errorf("technician A's %s %s = %+v, want it deleted locally", collection, id, l)
			}
		}
	}
	if l := a.local("workOrders", "wo-a-pump")["wo-a-pump"]; l.Doc["assigneeId"] != "tech-a" || l.Doc["description"] != nil || l.Doc["priority"] == 1.0 {
		t.Errorf("technician A's deleted wo-a-pump = %v: it shows the dispatcher's edit", l.Doc)
	}
	// A's two offline edits came back from its pushes as removals (RxDB's
	// conflicts), carrying what A sent: its assumed state.
	returned := map[string]doc{}
	for _, c := range stateA.Conflicts {
		returned[c.Collection+" "+c.Returned["id"].(string)] = c.Returned
	}
	for _, key := range []string{"workOrders wo-a-pump", "checklistItems item-pump-1"} {
		r, ok := returned[key]
		switch {
		case !ok:
			t.Errorf("technician A's push of %s returned nothing (conflicts: %v)", key, stateA.Conflicts)
		case r["deleted"] != true:
			t.Errorf("technician A's push of %s returned %v, want a removal (deleted: true)", key, r)
		case r["description"] != nil || r["priority"] == 1.0 || r["done"] == true:
			t.Errorf("technician A's push of %s returned %v, want what A had seen", key, r)
		}
	}
	if _, ok := returned["workOrders wo-a-fence"]; ok {
		t.Errorf("technician A's push of wo-a-fence (inside its set) came back: %v", returned["workOrders wo-a-fence"])
	}
	// B and the dispatcher hold the dispatcher's wo-a-pump, not A's edit.
	for who, st := range map[string]clientState{"technician B": stateB, "the dispatcher": stateD} {
		if got := byID(st.Documents["workOrders"])["wo-a-pump"]; !equalDocs(got, pump) {
			t.Errorf("%s's wo-a-pump = %v, want the server's %v", who, got, pump)
		}
	}
	t.Logf("TestRxDBReassignWhileOffline took %s", time.Since(began).Round(time.Millisecond))
}

// TestRxDBCheckpointExpired runs the CHECKPOINT_EXPIRED recipe
// (checkpoint-expired.mjs) with RxDB clients that were offline while
// documents were deleted, reassigned and purged: a technician, a second
// device of the same technician with the recipe's drop step off (the
// control), and a dispatcher. Back online, their pulls are refused; each
// resyncs from a null checkpoint, pushes its offline edits and, with the
// drop step, ends with exactly the server's state. The control shows that
// a resync alone keeps documents whose deletes were purged.
func TestRxDBCheckpointExpired(t *testing.T) {
	requireNode(t)
	began := time.Now()
	srv := startRulesServer(t)
	dispatcherToken := srv.token(t, "disp", "dispatcher")
	technicianToken := srv.token(t, "tech-t", "technician")
	host := startRxDBHost(t, srv.graphqlURL(), dispatcherToken)
	d := host.open("dispatcher", dispatcherToken, nil)
	tech := host.open("tech-t", technicianToken, nil)
	control := host.open("tech-t-control", technicianToken, map[string]any{"checkpointReset": map[string]any{"dropMissing": false}})

	d.insert("sites",
		site("site-1", "Depot"), // wo-kept's and wo-moved's
		site("site-2", "Quay"),  // wo-deleted's alone
		site("site-3", "Yard"),
	)
	d.insert("workOrders",
		workOrder("wo-kept", "site-1", "Service boiler", "tech-t"),
		workOrder("wo-deleted", "site-2", "Inspect crane", "tech-t"),
		workOrder("wo-moved", "site-1", "Fix lights", "tech-t"),
		workOrder("wo-gone", "site-3", "Sweep yard", ""),
		workOrder("wo-revived", "site-3", "Paint lines", ""),
	)
	d.insert("checklistItems",
		checklistItem("item-kept", "wo-kept", "Bleed radiators", 1),
		checklistItem("item-deleted", "wo-deleted", "Check cables", 1),
		checklistItem("item-moved", "wo-moved", "Swap bulbs", 1),
		checklistItem("item-gone", "wo-gone", "Empty bins", 1),
	)
	d.insert("notes",
		note("note-kept", "wo-kept", "Boiler room key at reception"),
		note("note-deleted", "wo-deleted", "Crane out of use"),
	)
	d.sync()
	tech.sync()
	control.sync()
	technicianBefore := map[string][]string{
		"workOrders":     {"wo-deleted", "wo-kept", "wo-moved"},
		"sites":          {"site-1", "site-2"},
		"checklistItems": {"item-deleted", "item-kept", "item-moved"},
		"notes":          {"note-deleted", "note-kept"},
	}
	checkIDs(t, "the technician before", tech.state().Documents, technicianBefore)
	checkIDs(t, "the control before", control.state().Documents, technicianBefore)
	if t.Failed() {
		t.FailNow()
	}

	// All three go offline; two of them edit.
	tech.offline()
	control.offline()
	d.offline()
	tech.patch("workOrders", "wo-kept", doc{"title": "Service boiler (offline edit)"})
	d.patch("sites", "site-3", doc{"name": "Yard (offline edit)"})
	d.patch("workOrders", "wo-revived", doc{"priority": 9})

	// Meanwhile another dispatcher deletes and reassigns, and the purge
	// runs as it would once the retention has passed.
	ops := srv.api(t, "ops", "dispatcher")
	writeDocs(t, ops, "workOrders", map[string]doc{
		"wo-deleted": {"deleted": true},
		"wo-moved":   {"assigneeId": "tech-u"},
		"wo-gone":    {"deleted": true},
		"wo-revived": {"deleted": true},
	})
	writeDocs(t, ops, "checklistItems", map[string]doc{"item-gone": {"deleted": true}})
	purged := purgeAfterRetention(t, srv.dbURL)
	if purged.Tombstones < 4 || purged.Removals < 1 {
		t.Fatalf("the purge deleted %d tombstones and %d removals, want at least the 4 deletes and a removal", purged.Tombstones, purged.Removals)
	}

	for _, c := range []*rxdbClient{tech, control, d} {
		c.online()
	}
	for range 2 {
		for _, c := range []*rxdbClient{tech, control, d} {
			c.sync()
		}
	}

	technicianAPI := srv.api(t, "tech-t", "technician")
	dispatcherAPI := srv.api(t, "disp", "dispatcher")
	techState, controlState, dState := tech.state(), control.state(), d.state()
	t.Logf("purged %+v; resyncs: technician %+v, control %+v, dispatcher %+v", purged, techState.Resets, controlState.Resets, dState.Resets)

	// Each was refused, resynced from null, and nothing else went wrong.
	for _, c := range []struct {
		who         string
		state       clientState
		collections []string
	}{
		// A technician's removals were purged in all four collections; the
		// dispatcher's purged tombstones were work orders and checklist items.
		{"the technician", techState, []string{"checklistItems", "notes", "sites", "workOrders"}},
		{"the control", controlState, []string{"checklistItems", "notes", "sites", "workOrders"}},
		{"the dispatcher", dState, []string{"checklistItems", "workOrders"}},
	} {
		codes := c.state.errorCodes()
		if len(codes) == 0 || slices.ContainsFunc(codes, func(code string) bool { return code != "CHECKPOINT_EXPIRED" }) {
			t.Errorf("%s: replication errors %v, want CHECKPOINT_EXPIRED only", c.who, c.state.Errors)
		}
		if got := c.state.resetCollections(); !slices.Equal(got, c.collections) {
			t.Errorf("%s resynced from a null checkpoint in %v, want %v", c.who, got, c.collections)
		}
	}

	// The technician dropped what left its set while the removals were
	// purged, kept the rest, and holds exactly its set.
	for collection, want := range map[string][]string{
		"workOrders":     {"wo-deleted", "wo-moved"},
		"checklistItems": {"item-deleted", "item-moved"},
		"notes":          {"note-deleted"},
		"sites":          {"site-2"},
	} {
		if got := techState.dropped(collection); !slices.Equal(got, want) {
			t.Errorf("the technician's resync dropped %s %v, want %v", collection, got, want)
		}
	}
	checkIDs(t, "the technician after", techState.Documents, map[string][]string{
		"workOrders":     {"wo-kept"},
		"sites":          {"site-1"},
		"checklistItems": {"item-kept"},
		"notes":          {"note-kept"},
	})
	for _, p := range holdsExactly(techState.Documents, serverSet(t, technicianAPI)) {
		t.Errorf("the technician: %s", p)
	}

	// The dispatcher dropped the purged deletes and holds exactly the tenant.
	for collection, want := range map[string][]string{
		"workOrders":     {"wo-deleted", "wo-gone"},
		"checklistItems": {"item-gone"},
	} {
		if got := dState.dropped(collection); !slices.Equal(got, want) {
			t.Errorf("the dispatcher's resync dropped %s %v, want %v", collection, got, want)
		}
	}
	server := serverSet(t, dispatcherAPI)
	for _, p := range holdsExactly(dState.Documents, server) {
		t.Errorf("the dispatcher: %s", p)
	}

	// The offline edits were pushed. An edit of a document that was deleted
	// and purged meanwhile brings it back: the server no longer knows of
	// the delete, so the push is a new document (docs/sync-protocol.md).
	if got := byID(server["workOrders"])["wo-kept"]["title"]; got != "Service boiler (offline edit)" {
		t.Errorf("the server's wo-kept title = %v, want the technician's offline edit", got)
	}
	if got := byID(server["sites"])["site-3"]["name"]; got != "Yard (offline edit)" {
		t.Errorf("the server's site-3 name = %v, want the dispatcher's offline edit", got)
	}
	if revived := byID(server["workOrders"])["wo-revived"]; revived == nil || revived["priority"] != 9.0 {
		t.Errorf("the server's wo-revived = %v, want it back with the dispatcher's offline edit (priority 9)", revived)
	}
	all := map[string]map[string]doc{}
	for collection := range collectionTypes {
		all[collection] = serverDocuments(t, dispatcherAPI, collection)
	}
	for collection, gone := range map[string][]string{"workOrders": {"wo-deleted", "wo-gone"}, "checklistItems": {"item-gone"}} {
		for _, id := range gone {
			if left, ok := all[collection][id]; ok {
				t.Errorf("the server still has %s %s after the purge: %v", collection, id, left)
			}
		}
	}

	// The control resynced too but kept every document whose delete or
	// removal was purged: no pull can tell it of them.
	for _, r := range controlState.Resets {
		if len(r.Dropped) > 0 {
			t.Errorf("the control dropped %s %v with dropMissing off", r.Collection, r.Dropped)
		}
	}
	stale := holdsExactly(controlState.Documents, serverSet(t, technicianAPI))
	wantStale := []string{
		"checklistItems item-deleted should not be there",
		"checklistItems item-moved should not be there",
		"notes note-deleted should not be there",
		"sites site-2 should not be there",
		"workOrders wo-deleted should not be there",
		"workOrders wo-moved should not be there",
	}
	if !slices.Equal(stale, wantStale) {
		t.Errorf("the control differs from the server by\n  %s\nwant exactly the purged documents:\n  %s",
			strings.Join(stale, "\n  "), strings.Join(wantStale, "\n  "))
	}
	t.Logf("TestRxDBCheckpointExpired took %s", time.Since(began).Round(time.Millisecond))
}

// TestRxDBGuideQuotesTheRecipe keeps the recipe in docs/sync-protocol.md
// the code the end-to-end test runs: the guide quotes checkpoint-expired.mjs
// whole, in the code block after the line naming the file.
func TestRxDBGuideQuotesTheRecipe(t *testing.T) {
	const marker = "<!-- quoted from e2e/checkpoint-expired.mjs"
	guide, err := os.ReadFile("../docs/sync-protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile("checkpoint-expired.mjs")
	if err != nil {
		t.Fatal(err)
	}
	quoted, ok := quotedBlock(string(guide), marker)
	if !ok {
		t.Fatalf("docs/sync-protocol.md has no ```js block after %q", marker)
	}
	if quoted != string(file) {
		t.Errorf("the recipe in docs/sync-protocol.md differs from e2e/checkpoint-expired.mjs at line %d; copy the file into the guide",
			firstDifferentLine(quoted, string(file)))
	}
}

// The check above can fail: a guide whose block lost a line, or has no
// block after the marker, is caught.
func TestQuotedBlockFindsTheBlockAfterTheMarker(t *testing.T) {
	doc := "intro\n<!-- quoted from x -->\n\n```js\nconst a = 1;\nconst b = 2;\n```\nafter\n"
	got, ok := quotedBlock(doc, "<!-- quoted from x")
	if !ok || got != "const a = 1;\nconst b = 2;\n" {
		t.Fatalf("quotedBlock = %q, %v", got, ok)
	}
	if firstDifferentLine(got, "const a = 1;\nconst c = 3;\n") != 2 {
		t.Errorf("a changed second line is not reported as line 2")
	}
	if _, ok := quotedBlock("<!-- quoted from x -->\nno block\n", "<!-- quoted from x"); ok {
		t.Errorf("a marker without a block was accepted")
	}
}

// quotedBlock returns the body of the first ```js block after the line
// that starts with marker.
func quotedBlock(doc, marker string) (string, bool) {
	sc := bufio.NewScanner(strings.NewReader(doc))
	var body strings.Builder
	state := 0 // 0: before the marker, 1: before the block, 2: in it
	for sc.Scan() {
		line := sc.Text()
		switch {
		case state == 0 && strings.HasPrefix(line, marker):
			state = 1
		case state == 1 && line == "```js":
			state = 2
		case state == 1 && strings.TrimSpace(line) != "":
			return "", false
		case state == 2 && line == "```":
			return body.String(), true
		case state == 2:
			body.WriteString(line + "\n")
		}
	}
	return "", false
}

func firstDifferentLine(a, b string) int {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range max(len(la), len(lb)) {
		if i >= len(la) || i >= len(lb) || la[i] != lb[i] {
			return i + 1
		}
	}
	return 0
}

// requireNode skips under -short and fails without Node and npm, as
// TestRxDB does, so that CI cannot pass by not running the client.
func requireNode(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: builds the server and runs Node")
	}
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed; it is needed for the RxDB end-to-end tests (go test -short skips them)", tool)
		}
	}
}

// rulesServer is one `tidemark serve` on a fresh database, with the
// default sync rules, and the means to sign tokens of one tenant with roles.
type rulesServer struct {
	inst   *instance
	dbURL  string
	secret []byte
	tenant string
}

func startRulesServer(t *testing.T) *rulesServer {
	t.Helper()
	secret := randomHex(t, 20)
	bin, env, dbURL := buildAndMigrate(t, secret)
	return &rulesServer{
		inst:   startInstance(t, "rules", bin, env),
		dbURL:  dbURL,
		secret: []byte(secret),
		tenant: "tenant-rules",
	}
}

func (s *rulesServer) graphqlURL() string { return s.inst.url() + "/graphql" }

// token signs a token of the tenant for user with the role claim.
func (s *rulesServer) token(t *testing.T, user, role string) string {
	t.Helper()
	tok, err := auth.IssueWithRole(s.secret, s.tenant, user, role, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (s *rulesServer) api(t *testing.T, user, role string) *graphqlClient {
	t.Helper()
	return &graphqlClient{url: s.graphqlURL(), token: s.token(t, user, role)}
}

// purgeAfterRetention runs the tombstone purge once on the database with
// its clock moved past the default retention, so that every delete and
// removal made so far is purged.
func purgeAfterRetention(t *testing.T, dbURL string) tombstones.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, err := db.Open(ctx, dbURL, db.PoolConfig{MaxConns: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	retention := tombstones.DefaultRetention
	purger := &tombstones.Purger{Store: store, Retention: retention, Now: func() time.Time { return time.Now().Add(retention + time.Hour) }}
	res, err := purger.PurgeOnce(ctx)
	if err != nil || res.Skipped {
		t.Fatalf("purge: %+v, %v", res, err)
	}
	return res
}

// writeDocs changes documents through the API, as another client would:
// each id's current state with the fields of its patch.
func writeDocs(t *testing.T, c *graphqlClient, collection string, patches map[string]doc) {
	t.Helper()
	current := serverDocuments(t, c, collection)
	var rows []any
	for id, patch := range patches {
		cur, ok := current[id]
		if !ok {
			t.Fatalf("writeDocs: the server has no %s %s", collection, id)
		}
		next := doc{}
		for k, v := range cur {
			next[k] = v
		}
		for k, v := range patch {
			next[k] = v
		}
		rows = append(rows, map[string]any{"assumedMasterState": cur, "newDocumentState": next})
	}
	typ := collectionTypes[collection]
	var out map[string][]doc
	c.mustDo(t, "mutation($rows: ["+typ+"PushRow!]!) { push"+typ+"s(rows: $rows) { id } }", vars{"rows": rows}, &out)
	if returned := out["push"+typ+"s"]; len(returned) > 0 {
		t.Fatalf("writeDocs: the server did not write %v as sent", returned)
	}
}

// checkIDs compares the ids a client holds, collection by collection.
func checkIDs(t *testing.T, who string, docs map[string][]doc, want map[string][]string) {
	t.Helper()
	for collection, w := range want {
		if got := ids(docs[collection]); !slices.Equal(got, w) {
			t.Errorf("%s holds %s %v, want %v", who, collection, got, w)
		}
	}
}

func equalDocs(a, b doc) bool {
	return a != nil && b != nil && reflect.DeepEqual(normalized(a), normalized(b))
}

func site(id, name string) doc {
	return doc{"id": id, "name": name, "address": name + ", 1 Quay Street"}
}

func workOrder(id, siteID, title, assignee string) doc {
	d := doc{"id": id, "siteId": siteID, "title": title, "status": "OPEN", "priority": 3}
	if assignee != "" {
		d["assigneeId"] = assignee
	}
	return d
}

func checklistItem(id, workOrderID, label string, position int) doc {
	return doc{"id": id, "workOrderId": workOrderID, "label": label, "done": false, "position": position}
}

func note(id, workOrderID, body string) doc {
	return doc{"id": id, "workOrderId": workOrderID, "body": body}
}
