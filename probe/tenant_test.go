// Package probe_test attacks a real Tidemark the way a hostile client on the
// internet would: over a real listener, with real HTTP requests and real
// websockets, on a real PostgreSQL. Each probe states what an attacker tries
// and what the server must never do. The limits themselves have their own
// tests next to their code (server, wsgorilla, auth, collections); these
// probes cover what crosses packages: tenant isolation on every path, tokens,
// and what error messages may reveal (field suggestions included: the
// probes run with introspection off, as production does).
package probe_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/db/dbtest"
	"github.com/tidemark/tidemark/testenv"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// Markers that tenant A's documents carry. No answer to tenant B may
// contain any of them.
var victimMarkers = []string{"VICTIM-SITE-NAME", "VICTIM-WO-TITLE", "VICTIM-NOTE-BODY", "VICTIM-ITEM-LABEL"}

// seedVictim writes one document of each collection for tenant A and
// returns A's pull checkpoint cursor for work orders.
func seedVictim(tb testing.TB, victim caller) string {
	tb.Helper()
	const ts = "2026-11-30T10:00:00Z"
	steps := []struct{ query, root string }{
		{`mutation { pushSites(rows: [{newDocumentState: {id: "site-a", name: "VICTIM-SITE-NAME", address: "1 Secret St", latitude: 1.5, longitude: 2.5, deleted: false}}]) { id } }`, "pushSites"},
		{`mutation { pushWorkOrders(rows: [{newDocumentState: {id: "wo-a", siteId: "site-a", title: "VICTIM-WO-TITLE", status: OPEN, priority: 1, assigneeId: "alice", dueAt: "` + ts + `", deleted: false}}]) { id } }`, "pushWorkOrders"},
		{`mutation { pushNotes(rows: [{newDocumentState: {id: "note-a", workOrderId: "wo-a", body: "VICTIM-NOTE-BODY", deleted: false}}]) { id } }`, "pushNotes"},
		{`mutation { pushChecklistItems(rows: [{newDocumentState: {id: "item-a", workOrderId: "wo-a", label: "VICTIM-ITEM-LABEL", done: false, position: 1, deleted: false}}]) { id } }`, "pushChecklistItems"},
	}
	for _, s := range steps {
		a := victim.post(tb, s.query, nil)
		if len(a.Errors) > 0 || a.Status != 200 {
			tb.Fatalf("seeding %s: %d %s", s.root, a.Status, a.Body)
		}
		if conflicts, _ := a.Data[s.root].([]any); len(conflicts) != 0 {
			tb.Fatalf("seeding %s returned conflicts: %s", s.root, a.Body)
		}
	}
	a := victim.post(tb, `{ pullWorkOrders(checkpoint: null, limit: 10) { documents { id title } checkpoint { cursor } } }`, nil)
	bulk, _ := a.Data["pullWorkOrders"].(map[string]any)
	docs, _ := bulk["documents"].([]any)
	if len(docs) != 1 {
		tb.Fatalf("the victim cannot pull its own work order: %s", a.Body)
	}
	cp, _ := bulk["checkpoint"].(map[string]any)
	cursor, _ := cp["cursor"].(string)
	if cursor == "" {
		tb.Fatalf("no checkpoint cursor: %s", a.Body)
	}
	return cursor
}

// TestAnotherTenantsDataIsUnreachable tries every verb and read path with
// tenant A's ids, cursor and persisted query from tenant B's token, and
// checks that no answer to B carries A's data and A's documents are unchanged.
func TestAnotherTenantsDataIsUnreachable(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	base := env.Serve(t)
	victim := caller{base: base, token: testenv.Token(t, "tenant-a", "alice")}
	attackerSeen := &transcript{}
	attacker := caller{base: base, token: testenv.Token(t, "tenant-b", "mallory"), seen: attackerSeen}

	victimCursor := seedVictim(t, victim)

	// The victim reads its documents first, so that the document cache,
	// the query cache and the persisted-query cache are warm.
	warm := `{ node(id: "wo-a") { id ... on WorkOrder { title site { name } checklist { label } } } workOrders(first: 10) { edges { node { id title notes { body } } } } }`
	if a := victim.post(t, warm, nil); len(a.Errors) > 0 {
		t.Fatalf("victim's warm-up read failed: %s", a.Body)
	}
	persisted := `{ workOrders(first: 10) { edges { node { id title } } } sites(first: 10) { edges { node { id name } } } }`
	sum := sha256.Sum256([]byte(persisted))
	hash := hex.EncodeToString(sum[:])
	apq := map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": hash}}
	if a := victim.postBody(t, map[string]any{"query": persisted, "extensions": apq}); len(a.Errors) > 0 {
		t.Fatalf("victim's persisted query failed: %s", a.Body)
	}

	t.Run("pull from the start sees nothing of A", func(t *testing.T) {
		for _, c := range []string{"pullSites", "pullWorkOrders", "pullNotes", "pullChecklistItems"} {
			a := attacker.post(t, fmt.Sprintf(`{ %s(checkpoint: null, limit: 100) { documents { id } checkpoint { cursor } } }`, c), nil)
			if len(a.Errors) > 0 {
				t.Fatalf("%s: %s", c, a.Body)
			}
			docs, _ := a.Data[c].(map[string]any)["documents"].([]any)
			if len(docs) != 0 {
				t.Errorf("%s gave tenant B %d documents of tenant A: %s", c, len(docs), a.Body)
			}
		}
	})
	t.Run("pull with A's cursor", func(t *testing.T) {
		a := attacker.post(t, `query($c: String!) { pullWorkOrders(checkpoint: {cursor: $c}, limit: 100) { documents { id title } } }`, map[string]any{"c": victimCursor})
		if len(a.Errors) == 0 {
			docs, _ := a.Data["pullWorkOrders"].(map[string]any)["documents"].([]any)
			if len(docs) != 0 {
				t.Errorf("A's cursor gave B documents: %s", a.Body)
			}
		}
	})
	t.Run("node and every connection with A's ids", func(t *testing.T) {
		for _, id := range []string{"site-a", "wo-a", "note-a", "item-a"} {
			a := attacker.post(t, `query($id: ID!) { node(id: $id) { id } }`, map[string]any{"id": id})
			if len(a.Errors) > 0 || a.Data["node"] != nil {
				t.Errorf("node(%q) for tenant B = %s, want null", id, a.Body)
			}
		}
		a := attacker.post(t, warm, nil)
		if a.Data["node"] != nil {
			t.Errorf("the victim's warmed node answered B: %s", a.Body)
		}
		attacker.post(t, `{ workOrders(first: 50, filter: {siteId: "site-a"}) { edges { node { id } } } }`, nil)
		attacker.post(t, `{ workOrders(first: 50, filter: {assigneeId: "alice"}) { edges { node { id } } } }`, nil)
		attacker.post(t, `{ sites(first: 50) { edges { node { id name } } } notes(first: 50) { edges { node { body } } } checklistItems(first: 50) { edges { node { label } } } }`, nil)
	})
	t.Run("A's persisted query runs as B", func(t *testing.T) {
		a := attacker.postBody(t, map[string]any{"extensions": apq})
		if len(a.Errors) > 0 {
			t.Fatalf("the persisted query is shared by text, not by tenant, and should run for B: %s", a.Body)
		}
		edges, _ := a.Data["workOrders"].(map[string]any)["edges"].([]any)
		if len(edges) != 0 {
			t.Errorf("the persisted query gave B A's work orders: %s", a.Body)
		}
	})
	t.Run("push over A's ids", func(t *testing.T) {
		// B claims to have seen A's document and overwrites it; then
		// writes children that reference A's documents.
		attacker.post(t, `mutation { pushWorkOrders(rows: [{assumedMasterState: {id: "wo-a", siteId: "site-a", title: "VICTIM-WO-TITLE", status: OPEN, priority: 1, deleted: false}, newDocumentState: {id: "wo-a", siteId: "site-a", title: "pwned", status: DONE, priority: 9, deleted: true}}]) { id title } }`, nil)
		attacker.post(t, `mutation { pushNotes(rows: [{newDocumentState: {id: "note-b", workOrderId: "wo-a", body: "injected", deleted: false}}]) { id body } }`, nil)
		attacker.post(t, `mutation { pushChecklistItems(rows: [{newDocumentState: {id: "item-a", workOrderId: "wo-a", label: "pwned", done: true, position: 1, deleted: false}}]) { id label } }`, nil)

		a := victim.post(t, `{ node(id: "wo-a") { ... on WorkOrder { title status deleted notes { id } checklist { label done } } } }`, nil)
		wo, _ := a.Data["node"].(map[string]any)
		if wo == nil || wo["title"] != "VICTIM-WO-TITLE" || wo["status"] != "OPEN" || wo["deleted"] != false {
			t.Fatalf("tenant B's push changed tenant A's work order: %s", a.Body)
		}
		if notes, _ := wo["notes"].([]any); len(notes) != 1 {
			t.Errorf("tenant B's note landed under tenant A's work order: %s", a.Body)
		}
		if items, _ := wo["checklist"].([]any); len(items) != 1 || items[0].(map[string]any)["label"] != "VICTIM-ITEM-LABEL" {
			t.Errorf("tenant B's checklist item changed tenant A's: %s", a.Body)
		}
	})
	t.Run("stream", func(t *testing.T) {
		victimSocket := dial(t, base, nil)
		victimSocket.send(t, map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + victim.token}})
		if m := victimSocket.next(t); m.Type != "connection_ack" {
			t.Fatalf("victim's connection_init: %+v", m)
		}
		attackerSocket := dial(t, base, attackerSeen)
		attackerSocket.send(t, map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + attacker.token}})
		if m := attackerSocket.next(t); m.Type != "connection_ack" {
			t.Fatalf("attacker's connection_init: %+v", m)
		}
		sub := `subscription { streamWorkOrders { documents { id title } checkpoint { cursor } } }`
		victimSocket.send(t, map[string]any{"id": "v", "type": "subscribe", "payload": map[string]any{"query": sub}})
		attackerSocket.send(t, map[string]any{"id": "a", "type": "subscribe", "payload": map[string]any{"query": sub}})

		// The victim writes; once the victim's own stream has the
		// change, the attacker writes, and the attacker's stream must
		// show only its own change.
		victim.post(t, `mutation { pushWorkOrders(rows: [{newDocumentState: {id: "wo-a2", siteId: "site-a", title: "VICTIM-WO-TITLE 2", status: OPEN, priority: 1, deleted: false}}]) { id } }`, nil)
		if m := victimSocket.next(t); m.Type != "next" {
			t.Fatalf("victim's stream: %+v", m)
		}
		if a := attacker.post(t, `mutation { pushWorkOrders(rows: [{newDocumentState: {id: "wo-b", siteId: "site-b", title: "mine", status: OPEN, priority: 1, deleted: false}}]) { id } }`, nil); len(a.Errors) > 0 {
			t.Fatalf("attacker's own push: %s", a.Body)
		}
		m := attackerSocket.next(t)
		if m.Type != "next" {
			t.Fatalf("attacker's stream: %+v", m)
		}
		if !strings.Contains(string(m.Payload), `"wo-b"`) {
			t.Fatalf("attacker's first stream event is not its own change: %s", m.Payload)
		}
	})

	attackerSeen.mustNotContain(t, victimMarkers...)
}
