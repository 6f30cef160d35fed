package server_test

// Live sync under the default sync rules, end to end: the real handler on a
// real PostgreSQL behind a real listener, clients with role tokens pushing
// and pulling over HTTP, and subscribers on real websockets. Each
// subscriber applies what it receives to a local map, as RxDB does, and at
// the end holds exactly its set. That a stream did NOT deliver something is
// shown without waiting: a later marker edit inside the subscriber's own
// set must be the next thing it receives, as a stream delivers in change
// order.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/testenv"
)

// rulesWait bounds the wait for an event that must come.
const rulesWait = 5 * time.Second

// jdoc is a document as JSON.
type jdoc = map[string]any

// rulesCollection is a synced collection as the API names it.
type rulesCollection struct {
	typ, plural, selection string
}

var (
	rulesWorkOrders = rulesCollection{"WorkOrder", "WorkOrders", "id siteId title description status priority assigneeId dueAt updatedAt deleted"}
	rulesItems      = rulesCollection{"ChecklistItem", "ChecklistItems", "id workOrderId label done position updatedAt deleted"}
	rulesSites      = rulesCollection{"Site", "Sites", "id name address latitude longitude updatedAt deleted"}
)

// rulesClient is one caller over HTTP with a token carrying a role.
type rulesClient struct {
	tb    testing.TB
	url   string
	user  string
	token string
}

func newRulesClient(tb testing.TB, url, tenant, user, role string) *rulesClient {
	return &rulesClient{tb: tb, url: url, user: user, token: testenv.TokenWithRole(tb, tenant, user, role)}
}

// do posts one operation and returns the data's "r" field, failing on errors.
func (c *rulesClient) do(query string, vars map[string]any) json.RawMessage {
	c.tb.Helper()
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		c.tb.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, c.url+"/graphql", bytes.NewReader(body))
	if err != nil {
		c.tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.tb.Fatalf("POST /graphql: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.tb.Fatal(err)
	}
	var r struct {
		Data   map[string]json.RawMessage `json:"data"`
		Errors []wireError                `json:"errors"`
	}
	if err := json.Unmarshal(b, &r); err != nil || resp.StatusCode != http.StatusOK || len(r.Errors) > 0 || r.Data["r"] == nil {
		c.tb.Fatalf("%s: POST /graphql: status %d: %.500s", c.user, resp.StatusCode, b)
	}
	return r.Data["r"]
}

// push pushes rows ({assumed, next} pairs; assumed nil for a new document)
// and returns the result documents.
func (c *rulesClient) push(col rulesCollection, rows ...[2]jdoc) []jdoc {
	c.tb.Helper()
	list := make([]map[string]any, len(rows))
	for i, r := range rows {
		list[i] = map[string]any{"newDocumentState": r[1]}
		if r[0] != nil {
			list[i]["assumedMasterState"] = r[0]
		}
	}
	q := fmt.Sprintf(`mutation($rows: [%sPushRow!]!) { r: push%s(rows: $rows) { %s } }`, col.typ, col.plural, col.selection)
	var out []jdoc
	if err := json.Unmarshal(c.do(q, map[string]any{"rows": list}), &out); err != nil {
		c.tb.Fatal(err)
	}
	return out
}

// create pushes new documents and fails unless all are written as sent.
func (c *rulesClient) create(col rulesCollection, docs ...jdoc) {
	c.tb.Helper()
	rows := make([][2]jdoc, len(docs))
	for i, d := range docs {
		rows[i] = [2]jdoc{nil, d}
	}
	if got := c.push(col, rows...); len(got) != 0 {
		c.tb.Fatalf("%s creating %s returned %v", c.user, col.plural, got)
	}
}

// edit pushes seen with changes, seen as the assumed state, and fails
// unless it is written as sent.
func (c *rulesClient) edit(col rulesCollection, seen jdoc, changes jdoc) {
	c.tb.Helper()
	next := maps.Clone(seen)
	maps.Copy(next, changes)
	if got := c.push(col, [2]jdoc{seen, next}); len(got) != 0 {
		c.tb.Fatalf("%s editing %s %v returned %v", c.user, col.typ, seen["id"], got)
	}
}

// pullAll pulls col after cursor ("" for the beginning) to the end.
func (c *rulesClient) pullAll(col rulesCollection, cursor string) ([]jdoc, string) {
	c.tb.Helper()
	q := fmt.Sprintf(`query($cp: CheckpointInput, $limit: Int!) {
  r: pull%s(checkpoint: $cp, limit: $limit) { documents { %s } checkpoint { cursor } } }`, col.plural, col.selection)
	var all []jdoc
	for {
		vars := map[string]any{"limit": 100}
		if cursor != "" {
			vars["cp"] = map[string]any{"cursor": cursor}
		}
		var page struct {
			Documents  []jdoc `json:"documents"`
			Checkpoint struct {
				Cursor string `json:"cursor"`
			} `json:"checkpoint"`
		}
		if err := json.Unmarshal(c.do(q, vars), &page); err != nil {
			c.tb.Fatal(err)
		}
		cursor = page.Checkpoint.Cursor
		if len(page.Documents) == 0 {
			return all, cursor
		}
		all = append(all, page.Documents...)
	}
}

// latest is the current state of a document as the (whole-tenant) caller pulls it.
func (c *rulesClient) latest(col rulesCollection, id string) jdoc {
	c.tb.Helper()
	all, _ := c.pullAll(col, "")
	var found jdoc
	for _, d := range all {
		if d["id"] == id {
			found = d
		}
	}
	if found == nil {
		c.tb.Fatalf("%s %s not found", col.typ, id)
	}
	return found
}

// rulesDevice is a client's local database: the live documents of each
// collection by id, fed by an initial pull and then by its streams.
type rulesDevice struct {
	client *rulesClient
	docs   map[string]map[string]jdoc // plural → id → document
	seen   map[string]map[string]jdoc // plural → id → the last state received, removals included
}

func newRulesDevice(client *rulesClient) *rulesDevice {
	return &rulesDevice{client: client, docs: map[string]map[string]jdoc{}, seen: map[string]map[string]jdoc{}}
}

func (d *rulesDevice) apply(col rulesCollection, docs []jdoc) {
	if d.docs[col.plural] == nil {
		d.docs[col.plural], d.seen[col.plural] = map[string]jdoc{}, map[string]jdoc{}
	}
	for _, doc := range docs {
		id := doc["id"].(string)
		d.seen[col.plural][id] = doc
		if doc["deleted"] == true {
			delete(d.docs[col.plural], id)
			continue
		}
		d.docs[col.plural][id] = doc
	}
}

// sync pulls col from the beginning into the device and returns the checkpoint.
func (d *rulesDevice) sync(col rulesCollection) string {
	d.client.tb.Helper()
	docs, cursor := d.client.pullAll(col, "")
	d.apply(col, docs)
	return cursor
}

// rulesStream is one subscription, on a websocket of its own
// authenticated in connection_init, feeding a device.
type rulesStream struct {
	tb     testing.TB
	dev    *rulesDevice
	col    rulesCollection
	c      *streamClient
	cursor string // checkpoint of the last event
}

func openRulesStream(tb testing.TB, url, proto string, dev *rulesDevice, col rulesCollection) *rulesStream {
	tb.Helper()
	c := connectStream(tb, url, proto, map[string]any{"Authorization": "Bearer " + dev.client.token})
	c.subscribe("1", fmt.Sprintf(`subscription { r: stream%s { documents { %s } checkpoint { cursor } } }`, col.plural, col.selection), nil)
	return &rulesStream{tb: tb, dev: dev, col: col, c: c}
}

func (s *rulesStream) name() string { return s.dev.client.user + "'s stream" + s.col.plural }

// nextEvent reads the next event, applies it to the device and returns its
// documents.
func (s *rulesStream) nextEvent(timeout time.Duration) ([]jdoc, error) {
	m, err := s.c.read(timeout)
	if err != nil {
		return nil, fmt.Errorf("%s: waiting for an event: %w", s.name(), err)
	}
	if m.Type != s.c.dataType() || m.ID != "1" {
		return nil, fmt.Errorf("%s: got %s id=%q %.300s", s.name(), m.Type, m.ID, m.Payload)
	}
	var r struct {
		Data struct {
			R *struct {
				Documents  []jdoc `json:"documents"`
				Checkpoint struct {
					Cursor string `json:"cursor"`
				} `json:"checkpoint"`
			} `json:"r"`
		} `json:"data"`
		Errors []wireError `json:"errors"`
	}
	if err := json.Unmarshal(m.Payload, &r); err != nil || len(r.Errors) > 0 || r.Data.R == nil || len(r.Data.R.Documents) == 0 {
		return nil, fmt.Errorf("%s: event with errors or without documents: %.300s (%v)", s.name(), m.Payload, err)
	}
	s.cursor = r.Data.R.Checkpoint.Cursor
	s.dev.apply(s.col, r.Data.R.Documents)
	return r.Data.R.Documents, nil
}

// tag is a document's id, with "-" before a removal's.
func tag(d jdoc) string {
	if d["deleted"] == true {
		return "-" + d["id"].(string)
	}
	return d["id"].(string)
}

// receiveErr reads events until it has received every document of want
// ("id", or "-id" for a removal), each once, and nothing else: whatever
// arrives before the last of them that is not in want is an error. It
// returns the documents received, by tag.
func (s *rulesStream) receiveErr(want ...string) (map[string]jdoc, error) {
	left := map[string]bool{}
	for _, w := range want {
		left[w] = true
	}
	got := map[string]jdoc{}
	deadline := time.Now().Add(rulesWait)
	for len(left) > 0 {
		docs, err := s.nextEvent(max(time.Until(deadline), time.Millisecond))
		if err != nil {
			return got, fmt.Errorf("%w (still waiting for %v)", err, slices.Sorted(maps.Keys(left)))
		}
		for _, d := range docs {
			t := tag(d)
			if !left[t] {
				return got, fmt.Errorf("%s received %s (%v) while waiting for %v", s.name(), t, d, slices.Sorted(maps.Keys(left)))
			}
			delete(left, t)
			got[t] = d
		}
	}
	return got, nil
}

func (s *rulesStream) receive(want ...string) map[string]jdoc {
	s.tb.Helper()
	got, err := s.receiveErr(want...)
	if err != nil {
		s.tb.Fatal(err)
	}
	return got
}

// receiveUntil applies events until one holds a document for which done
// holds.
func (s *rulesStream) receiveUntil(what string, done func(jdoc) bool) {
	s.tb.Helper()
	deadline := time.Now().Add(rulesWait)
	for {
		docs, err := s.nextEvent(max(time.Until(deadline), time.Millisecond))
		if err != nil {
			s.tb.Fatalf("%v (waiting for %s)", err, what)
		}
		if slices.ContainsFunc(docs, done) {
			return
		}
	}
}

// assertCaughtUp checks that a pull from the last event's checkpoint finds
// nothing: the stream delivered every change of its set.
func (s *rulesStream) assertCaughtUp() {
	s.tb.Helper()
	if docs, _ := s.dev.client.pullAll(s.col, s.cursor); len(docs) != 0 {
		s.tb.Fatalf("%s: a pull from the last event's checkpoint returns %v", s.name(), docs)
	}
}

// removalShowsOnly checks a removal: deleted, and otherwise exactly the
// state its receiver saw last.
func removalShowsOnly(seen, got jdoc) error {
	if got["deleted"] != true {
		return fmt.Errorf("%v is not a removal", got["id"])
	}
	want := maps.Clone(seen)
	want["deleted"] = true
	if !reflect.DeepEqual(got, want) {
		return fmt.Errorf("removal of %v shows %v; its receiver saw %v", got["id"], got, seen)
	}
	return nil
}

func assertRemovals(tb testing.TB, dev *rulesDevice, col rulesCollection, seen map[string]jdoc, got map[string]jdoc) {
	tb.Helper()
	for t, d := range got {
		id := strings.TrimPrefix(t, "-")
		if err := removalShowsOnly(seen[id], d); err != nil {
			tb.Fatalf("%s's %s: %v", dev.client.user, col.plural, err)
		}
	}
}

// expectedSet is what the default rules give technician user of a tenant
// whose live documents are all (plural → id → document): the work orders
// assigned to it, their checklist items, and the sites they reference.
func expectedSet(all map[string]map[string]jdoc, user string) map[string]map[string]jdoc {
	out := map[string]map[string]jdoc{"WorkOrders": {}, "ChecklistItems": {}, "Sites": {}}
	for id, wo := range all["WorkOrders"] {
		if wo["assigneeId"] == user {
			out["WorkOrders"][id] = wo
			if s, ok := all["Sites"][wo["siteId"].(string)]; ok {
				out["Sites"][s["id"].(string)] = s
			}
		}
	}
	for id, ci := range all["ChecklistItems"] {
		if _, ok := out["WorkOrders"][ci["workOrderId"].(string)]; ok {
			out["ChecklistItems"][id] = ci
		}
	}
	return out
}

// assertHoldsItsSet compares a technician's device with its set computed
// from the dispatcher's pull of the whole tenant, for the collections given.
func assertHoldsItsSet(tb testing.TB, dispatcher *rulesClient, dev *rulesDevice, cols ...rulesCollection) {
	tb.Helper()
	all := map[string]map[string]jdoc{}
	for _, col := range []rulesCollection{rulesWorkOrders, rulesItems, rulesSites} {
		docs, _ := dispatcher.pullAll(col, "")
		all[col.plural] = map[string]jdoc{}
		for _, d := range docs {
			if d["deleted"] != true {
				all[col.plural][d["id"].(string)] = d
			}
		}
	}
	want := expectedSet(all, dev.client.user)
	for _, col := range cols {
		got := dev.docs[col.plural]
		if got == nil {
			got = map[string]jdoc{}
		}
		if !reflect.DeepEqual(got, want[col.plural]) {
			tb.Fatalf("%s's %s hold %v; the set is %v", dev.client.user, col.plural, got, want[col.plural])
		}
	}
}

func rulesWorkOrder(id, site, assignee string) jdoc {
	return jdoc{"id": id, "siteId": site, "title": "Fix pump " + id, "description": "It leaks", "status": "OPEN",
		"priority": 2, "assigneeId": assignee, "dueAt": nil, "deleted": false}
}

func rulesItem(id, workOrderID string) jdoc {
	return jdoc{"id": id, "workOrderId": workOrderID, "label": "Check valve " + id, "done": false, "position": 1, "deleted": false}
}

func rulesSite(id string) jdoc {
	return jdoc{"id": id, "name": "Site " + id, "address": "1 Harbour Road", "latitude": 51.5, "longitude": -0.125, "deleted": false}
}

// Two technicians and a dispatcher, each with a work order stream and a
// checklist item stream on websockets of their own, on one tenant: each
// receives only its own set; a reassignment from alice to bob is, live, a
// removal to alice of the work order and its checklist items carrying what
// she saw last, and to bob the work order and its unchanged items; after
// it neither technician's stream carries the other's edits. At the end
// each device holds exactly its set and each stream's checkpoint is where
// a pull ends.
func TestStreamRulesGiveEachSubscriberItsOwnSet(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	url := env.Serve(t)
	tenant := "tenant/" + t.Name()
	dispatcher := newRulesClient(t, url, tenant, "dispatch", "dispatcher")
	aliceAPI := newRulesClient(t, url, tenant, "alice", "technician")
	bobAPI := newRulesClient(t, url, tenant, "bob", "technician")

	dispatcher.create(rulesSites, rulesSite("site-a"), rulesSite("site-b"))
	dispatcher.create(rulesWorkOrders, rulesWorkOrder("wo-a1", "site-a", "alice"), rulesWorkOrder("wo-a2", "site-a", "alice"), rulesWorkOrder("wo-b1", "site-b", "bob"))
	dispatcher.create(rulesItems, rulesItem("ci-a1-1", "wo-a1"), rulesItem("ci-a1-2", "wo-a1"), rulesItem("ci-a2-1", "wo-a2"), rulesItem("ci-b1-1", "wo-b1"))

	alice, bob, disp := newRulesDevice(aliceAPI), newRulesDevice(bobAPI), newRulesDevice(dispatcher)
	for _, dev := range []*rulesDevice{alice, bob, disp} {
		dev.sync(rulesWorkOrders)
		dev.sync(rulesItems)
	}
	proto := protoTransportWS
	aliceWO, aliceCI := openRulesStream(t, url, proto, alice, rulesWorkOrders), openRulesStream(t, url, proto, alice, rulesItems)
	bobWO, bobCI := openRulesStream(t, url, proto, bob, rulesWorkOrders), openRulesStream(t, url, proto, bob, rulesItems)
	dispWO, dispCI := openRulesStream(t, url, proto, disp, rulesWorkOrders), openRulesStream(t, url, proto, disp, rulesItems)
	latest := func(col rulesCollection, id string) jdoc { return dispatcher.latest(col, id) }

	// Each receives only its own set: every stream's first event after an
	// edit outside its set is the next edit inside it.
	dispatcher.edit(rulesWorkOrders, latest(rulesWorkOrders, "wo-a1"), jdoc{"description": "Alice's pump"})
	aliceWO.receive("wo-a1")
	dispWO.receive("wo-a1")
	dispatcher.edit(rulesWorkOrders, latest(rulesWorkOrders, "wo-b1"), jdoc{"description": "Bob's pump"})
	bobWO.receive("wo-b1") // not wo-a1 first
	dispWO.receive("wo-b1")
	dispatcher.edit(rulesItems, latest(rulesItems, "ci-b1-1"), jdoc{"label": "Bob's valve"})
	bobCI.receive("ci-b1-1")
	dispCI.receive("ci-b1-1")
	dispatcher.edit(rulesItems, latest(rulesItems, "ci-a1-1"), jdoc{"label": "Alice's valve"})
	aliceCI.receive("ci-a1-1") // not ci-b1-1 first
	dispCI.receive("ci-a1-1")
	dispatcher.edit(rulesWorkOrders, latest(rulesWorkOrders, "wo-a2"), jdoc{"description": "Alice's second"})
	aliceWO.receive("wo-a2") // not wo-b1 first
	dispWO.receive("wo-a2")

	// The reassignment, live.
	aliceSawWO := maps.Clone(alice.seen["WorkOrders"])
	aliceSawCI := maps.Clone(alice.seen["ChecklistItems"])
	dispatcher.edit(rulesWorkOrders, latest(rulesWorkOrders, "wo-a1"), jdoc{"assigneeId": "bob"})
	assertRemovals(t, alice, rulesWorkOrders, aliceSawWO, aliceWO.receive("-wo-a1"))
	assertRemovals(t, alice, rulesItems, aliceSawCI, aliceCI.receive("-ci-a1-1", "-ci-a1-2"))
	got := bobWO.receive("wo-a1")
	if wo := got["wo-a1"]; wo["assigneeId"] != "bob" || wo["description"] != "Alice's pump" {
		t.Fatalf("bob received wo-a1 as %v", wo)
	}
	// The checklist items did not change: bob gets them as alice had them.
	for id, ci := range bobCI.receive("ci-a1-1", "ci-a1-2") {
		if !reflect.DeepEqual(ci, aliceSawCI[id]) {
			t.Fatalf("bob received %s as %v; unchanged, it is %v", id, ci, aliceSawCI[id])
		}
	}
	if wo := dispWO.receive("wo-a1")["wo-a1"]; wo["assigneeId"] != "bob" {
		t.Fatalf("the dispatcher received wo-a1 as %v", wo)
	}
	// The control of the removal check: what bob got is no removal of what
	// alice saw.
	if err := removalShowsOnly(aliceSawWO["wo-a1"], got["wo-a1"]); err == nil {
		t.Fatal("the removal check accepted bob's copy of wo-a1 as alice's removal; it is not sensitive")
	}

	// From now on neither technician's stream carries the other's edits.
	bobAPI.edit(rulesWorkOrders, bob.seen["WorkOrders"]["wo-a1"], jdoc{"title": "Bob's now"})
	bobWO.receive("wo-a1")
	dispWO.receive("wo-a1")
	bobAPI.edit(rulesItems, bob.seen["ChecklistItems"]["ci-a1-1"], jdoc{"label": "Bob's valve now"})
	bobCI.receive("ci-a1-1")
	dispCI.receive("ci-a1-1") // the moves themselves changed no checklist item: nothing before this
	aliceAPI.edit(rulesItems, alice.seen["ChecklistItems"]["ci-a2-1"], jdoc{"done": true})
	aliceCI.receive("ci-a2-1") // not bob's ci-a1-1 first
	dispCI.receive("ci-a2-1")
	aliceAPI.edit(rulesWorkOrders, alice.seen["WorkOrders"]["wo-a2"], jdoc{"status": "IN_PROGRESS"})
	aliceWO.receive("wo-a2") // not bob's wo-a1 first
	dispWO.receive("wo-a2")
	bobAPI.edit(rulesWorkOrders, bob.seen["WorkOrders"]["wo-b1"], jdoc{"status": "IN_PROGRESS"})
	bobWO.receive("wo-b1") // not alice's wo-a2 first
	dispWO.receive("wo-b1")
	bobAPI.edit(rulesItems, bob.seen["ChecklistItems"]["ci-b1-1"], jdoc{"done": true})
	bobCI.receive("ci-b1-1") // not alice's ci-a2-1 first
	dispCI.receive("ci-b1-1")

	// The control of the marker check: the dispatcher's stream does carry
	// bob's edit before alice's marker, and the check must say so.
	bobAPI.edit(rulesWorkOrders, bob.seen["WorkOrders"]["wo-b1"], jdoc{"description": "Bob's again"})
	aliceAPI.edit(rulesWorkOrders, alice.seen["WorkOrders"]["wo-a2"], jdoc{"description": "Alice's again"})
	if _, err := dispWO.receiveErr("wo-a2"); err == nil {
		t.Fatal("the marker check passed a stream that received another technician's edit first; it is not sensitive")
	}
	aliceWO.receive("wo-a2")
	bobWO.receive("wo-b1")

	for _, dev := range []*rulesDevice{alice, bob} {
		assertHoldsItsSet(t, dispatcher, dev, rulesWorkOrders, rulesItems)
	}
	for _, s := range []*rulesStream{aliceWO, aliceCI, bobWO, bobCI, dispCI} {
		s.assertCaughtUp()
	}
}

// A subscriber whose set changes while it is connected: carol starts with
// nothing; a work order is assigned to her, and its checklist items and
// site arrive on her streams though they did not change; it goes back
// (retitled in the same push), and all three go as removals of what she
// saw; it comes and goes and comes again between her reads, and her device
// ends with its current state; another technician's documents never reach
// her.
func TestStreamRulesFollowASetThatChangesWhileConnected(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	url := env.Serve(t)
	tenant := "tenant/" + t.Name()
	dispatcher := newRulesClient(t, url, tenant, "dispatch", "dispatcher")
	carolAPI := newRulesClient(t, url, tenant, "carol", "technician")
	dispatcher.create(rulesSites, rulesSite("site-c"), rulesSite("site-d"))
	dispatcher.create(rulesWorkOrders, rulesWorkOrder("wo-c1", "site-c", "dave"), rulesWorkOrder("wo-d1", "site-d", "dave"))
	dispatcher.create(rulesItems, rulesItem("ci-c1-1", "wo-c1"), rulesItem("ci-c1-2", "wo-c1"), rulesItem("ci-d1-1", "wo-d1"))

	carol := newRulesDevice(carolAPI)
	for _, col := range []rulesCollection{rulesWorkOrders, rulesItems, rulesSites} {
		carol.sync(col)
	}
	if n := len(carol.docs["WorkOrders"]) + len(carol.docs["ChecklistItems"]) + len(carol.docs["Sites"]); n != 0 {
		t.Fatalf("carol starts with %d documents, want none", n)
	}
	proto := protoLegacyWS
	wo, ci, site := openRulesStream(t, url, proto, carol, rulesWorkOrders), openRulesStream(t, url, proto, carol, rulesItems), openRulesStream(t, url, proto, carol, rulesSites)
	latest := func(col rulesCollection, id string) jdoc { return dispatcher.latest(col, id) }
	assign := func(id, to string) {
		dispatcher.edit(rulesWorkOrders, latest(rulesWorkOrders, id), jdoc{"assigneeId": to})
	}

	assign("wo-c1", "carol")
	wo.receive("wo-c1")
	ci.receive("ci-c1-1", "ci-c1-2")
	site.receive("site-c")
	dispatcher.edit(rulesItems, latest(rulesItems, "ci-c1-1"), jdoc{"label": "Seen by carol"})
	ci.receive("ci-c1-1")

	// Reassigned and retitled in one push: carol's removal shows neither.
	sawWO, sawCI, sawSite := maps.Clone(carol.seen["WorkOrders"]), maps.Clone(carol.seen["ChecklistItems"]), maps.Clone(carol.seen["Sites"])
	dispatcher.edit(rulesWorkOrders, latest(rulesWorkOrders, "wo-c1"), jdoc{"assigneeId": "dave", "title": "Dave's secret"})
	assertRemovals(t, carol, rulesWorkOrders, sawWO, wo.receive("-wo-c1"))
	assertRemovals(t, carol, rulesItems, sawCI, ci.receive("-ci-c1-1", "-ci-c1-2"))
	assertRemovals(t, carol, rulesSites, sawSite, site.receive("-site-c"))

	// In and out and in again, with an edit while it is away, without
	// carol reading in between; then a marker in each stream: once it has
	// arrived, every event before it has too.
	assign("wo-c1", "carol")
	dispatcher.edit(rulesWorkOrders, latest(rulesWorkOrders, "wo-c1"), jdoc{"title": "Changed while away"})
	assign("wo-c1", "dave")
	dispatcher.edit(rulesWorkOrders, latest(rulesWorkOrders, "wo-c1"), jdoc{"description": "Changed while away"})
	assign("wo-c1", "carol")
	dispatcher.edit(rulesSites, latest(rulesSites, "site-c"), jdoc{"name": "marker"})
	dispatcher.edit(rulesItems, latest(rulesItems, "ci-c1-2"), jdoc{"label": "marker"})
	dispatcher.edit(rulesWorkOrders, latest(rulesWorkOrders, "wo-c1"), jdoc{"status": "DONE"})
	wo.receiveUntil("the marker of wo-c1", func(d jdoc) bool { return d["status"] == "DONE" })
	ci.receiveUntil("the marker of ci-c1-2", func(d jdoc) bool { return d["label"] == "marker" })
	site.receiveUntil("the marker of site-c", func(d jdoc) bool { return d["name"] == "marker" })
	assertHoldsItsSet(t, dispatcher, carol, rulesWorkOrders, rulesItems, rulesSites)
	if got := carol.docs["WorkOrders"]["wo-c1"]; got["title"] != "Changed while away" || got["description"] != "Changed while away" {
		t.Fatalf("wo-c1 came back as %v", got)
	}

	// Dave's other work order never reaches her.
	dispatcher.edit(rulesWorkOrders, latest(rulesWorkOrders, "wo-d1"), jdoc{"title": "Dave's"})
	dispatcher.edit(rulesItems, latest(rulesItems, "ci-d1-1"), jdoc{"label": "Dave's"})
	dispatcher.edit(rulesSites, latest(rulesSites, "site-d"), jdoc{"name": "Dave's"})
	dispatcher.edit(rulesWorkOrders, latest(rulesWorkOrders, "wo-c1"), jdoc{"priority": 5})
	dispatcher.edit(rulesItems, latest(rulesItems, "ci-c1-1"), jdoc{"done": true})
	dispatcher.edit(rulesSites, latest(rulesSites, "site-c"), jdoc{"name": "Carol's"})
	wo.receive("wo-c1")
	ci.receive("ci-c1-1")
	site.receive("site-c")
	for _, s := range []*rulesStream{wo, ci, site} {
		s.assertCaughtUp()
	}
}
