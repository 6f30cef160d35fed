package resolvers_test

import (
	"net/http"
	"slices"
	"testing"

	"github.com/99designs/gqlgen/client"

	"github.com/tidemark/tidemark/testenv"
)

// withRole is a client of env whose token carries a role claim.
func withRole(tb testing.TB, env *testenv.Env, tenantID, userID, role string) *api {
	tb.Helper()
	authorization := "Bearer " + testenv.TokenWithRole(tb, tenantID, userID, role)
	return &api{tb: tb, c: client.New(env.Handler, client.Path("/graphql"), client.AddHeader("Authorization", authorization)),
		handler: env.Handler, authorization: authorization}
}

// idsOf lists the ids of documents, with "-" before a removal's id.
func idsOf(docs []doc) []string {
	out := make([]string, 0, len(docs))
	for _, d := range docs {
		id := d["id"].(string)
		if d["deleted"] == true {
			id = "-" + id
		}
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

func assertSet(tb testing.TB, what string, got []doc, want ...string) {
	tb.Helper()
	slices.Sort(want)
	if g := idsOf(got); !slices.Equal(g, want) {
		tb.Fatalf("%s: got %v, want %v", what, g, want)
	}
}

// The default rules: a technician syncs the work orders assigned to them,
// their checklist items and notes and their sites; a reassignment moves all
// of it out of one technician's set (as removals) and into the other's,
// though the children and the site did not change; a dispatcher and a token
// without a role sync everything.
func TestDefaultRulesMoveDocumentsInAndOut(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	tenant := tenantOf(t)
	dispatcher := withRole(t, env, tenant, "d-1", "dispatcher")
	alice := withRole(t, env, tenant, "alice", "technician")
	bob := withRole(t, env, tenant, "bob", "technician")
	noRole := newAPI(t, env, tenant, "legacy")

	dispatcher.create(siteFixture, with(siteFixture.valid("site-a")), with(siteFixture.valid("site-b")), with(siteFixture.valid("site-c")))
	wo := func(id, site, assignee string) doc {
		return with(workOrderFixture.valid(id), edit{"siteId", site}, edit{"assigneeId", assignee})
	}
	dispatcher.create(workOrderFixture, wo("wo-1", "site-a", "alice"), wo("wo-2", "site-a", "alice"), wo("wo-3", "site-b", "bob"), wo("wo-4", "site-c", "carol"))
	dispatcher.create(checklistItemFixture,
		with(checklistItemFixture.valid("ci-1"), edit{"workOrderId", "wo-1"}),
		with(checklistItemFixture.valid("ci-3"), edit{"workOrderId", "wo-3"}))
	dispatcher.create(noteFixture, with(noteFixture.valid("n-1"), edit{"workOrderId", "wo-1"}))

	aliceWO, aliceWOCursor := alice.pullAll(workOrderFixture, "", 100)
	assertSet(t, "alice's work orders", aliceWO, "wo-1", "wo-2")
	aliceCI, aliceCICursor := alice.pullAll(checklistItemFixture, "", 100)
	assertSet(t, "alice's checklist items", aliceCI, "ci-1")
	aliceNotes, aliceNoteCursor := alice.pullAll(noteFixture, "", 100)
	assertSet(t, "alice's notes", aliceNotes, "n-1")
	aliceSites, aliceSiteCursor := alice.pullAll(siteFixture, "", 100)
	assertSet(t, "alice's sites", aliceSites, "site-a")
	bobWO, bobWOCursor := bob.pullAll(workOrderFixture, "", 100)
	assertSet(t, "bob's work orders", bobWO, "wo-3")
	_, bobCICursor := bob.pullAll(checklistItemFixture, "", 100)
	_, bobSiteCursor := bob.pullAll(siteFixture, "", 100)
	all, _ := noRole.pullAll(workOrderFixture, "", 100)
	assertSet(t, "a token without a role", all, "wo-1", "wo-2", "wo-3", "wo-4")

	// Reassign wo-1 from alice to bob. site-a stays with alice (wo-2 is
	// still hers); ci-1 and n-1 move with wo-1.
	current := dispatcher.latest(workOrderFixture, "wo-1")
	dispatcher.push(workOrderFixture, row{assumed: clientState(current), next: with(clientState(current), edit{"assigneeId", "bob"})})

	got, _ := alice.pullAll(workOrderFixture, aliceWOCursor, 100)
	assertSet(t, "alice after the reassignment", got, "-wo-1")
	if got[0]["assigneeId"] != "alice" {
		t.Fatalf("alice's removal shows %v: it must carry only what alice saw", got[0]["assigneeId"])
	}
	got, _ = alice.pullAll(checklistItemFixture, aliceCICursor, 100)
	assertSet(t, "alice's checklist after the reassignment", got, "-ci-1")
	got, _ = alice.pullAll(noteFixture, aliceNoteCursor, 100)
	assertSet(t, "alice's notes after the reassignment", got, "-n-1")
	got, aliceSiteCursor = alice.pullAll(siteFixture, aliceSiteCursor, 100)
	assertSet(t, "alice's sites after the reassignment (wo-2 still uses site-a)", got)

	got, _ = bob.pullAll(workOrderFixture, bobWOCursor, 100)
	assertSet(t, "bob after the reassignment", got, "wo-1")
	got, _ = bob.pullAll(checklistItemFixture, bobCICursor, 100)
	assertSet(t, "bob's checklist after the reassignment (unchanged, older than his checkpoint)", got, "ci-1")
	got, bobSiteCursor = bob.pullAll(siteFixture, bobSiteCursor, 100)
	assertSet(t, "bob's sites after the reassignment", got, "site-a")

	// The last of alice's work orders on site-a goes: so does site-a.
	current = dispatcher.latest(workOrderFixture, "wo-2")
	dispatcher.push(workOrderFixture, row{assumed: clientState(current), next: with(clientState(current), edit{"deleted", true})})
	got, _ = alice.pullAll(siteFixture, aliceSiteCursor, 100)
	assertSet(t, "alice's sites once her last work order there is deleted", got, "-site-a")
	got, _ = bob.pullAll(siteFixture, bobSiteCursor, 100)
	assertSet(t, "bob keeps site-a through wo-1", got)

	// Move wo-1 back to alice: it and its children come back to her.
	current = dispatcher.latest(workOrderFixture, "wo-1")
	dispatcher.push(workOrderFixture, row{assumed: clientState(current), next: with(clientState(current), edit{"assigneeId", "alice"})})
	got, _ = alice.pullAll(checklistItemFixture, "", 100)
	assertSet(t, "alice's checklist from scratch after the move back", got, "ci-1")
	// From a null checkpoint removals are tombstones like any other: the
	// live set is what counts.
	got, _ = bob.pullAll(workOrderFixture, "", 100)
	assertSet(t, "bob from scratch after the move back", got, "-wo-1", "wo-3")
}

// A push outside the caller's set is not written; its result is a removal
// that carries only what the caller sent; an unknown role may not push and
// the read API refuses callers that do not sync the whole tenant.
func TestPushOutsideTheSetIsNotWritten(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	tenant := tenantOf(t)
	dispatcher := withRole(t, env, tenant, "d-1", "dispatcher")
	alice := withRole(t, env, tenant, "alice", "technician")
	dispatcher.create(siteFixture, siteFixture.valid("site-a"))
	secret := with(workOrderFixture.valid("wo-9"), edit{"siteId", "site-a"}, edit{"assigneeId", "bob"}, edit{"title", "Bob's secret job"})
	dispatcher.create(workOrderFixture, secret)

	mine := with(secret, edit{"title", "Alice's guess"})
	got := alice.push(workOrderFixture, row{assumed: mine, next: with(mine, edit{"status", "DONE"})})
	assertSet(t, "result of a push outside the set", got, "-wo-9")
	if got[0]["title"] != "Alice's guess" {
		t.Fatalf("removal leaked %v", got[0]["title"])
	}
	if stored := dispatcher.latest(workOrderFixture, "wo-9"); stored["status"] != "OPEN" {
		t.Fatalf("the push outside the set was written: %v", stored["status"])
	}
	// A new work order assigned to someone else is outside too.
	got = alice.push(workOrderFixture, row{next: with(workOrderFixture.valid("wo-new"), edit{"assigneeId", "bob"})})
	assertSet(t, "a new document outside the set", got, "-wo-new")
	// A new work order assigned to herself is inside.
	if got := alice.push(workOrderFixture, row{next: with(workOrderFixture.valid("wo-own"), edit{"assigneeId", "alice"})}); len(got) != 0 {
		t.Fatalf("a new document inside the set returned %v", got)
	}

	stranger := withRole(t, env, tenant, "eve", "auditor")
	err := stranger.pushErr(workOrderFixture, row{next: workOrderFixture.valid("wo-x")})
	assertError(t, err, "FORBIDDEN", "")
	if page := stranger.pull(workOrderFixture, "", 100); len(page.docs) != 0 {
		t.Fatalf("an unknown role pulled %v", idsOf(page.docs))
	}
	status, errs := alice.postStatus(`{ workOrders(first: 10) { totalCount } }`, nil)
	if status != http.StatusOK || len(errs) != 1 || errs[0].code() != "FORBIDDEN" {
		t.Fatalf("read API for a technician: status %d, errors %v", status, errs)
	}
}

// Devices push each collection on its own, so a technician's new checklist
// item may arrive before its new work order: it is written (it shows
// nobody anything yet) and joins her set when the work order arrives. A
// new item under someone else's existing work order is outside her set.
func TestChildPushedBeforeItsParentIsKept(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	tenant := tenantOf(t)
	dispatcher := withRole(t, env, tenant, "d-1", "dispatcher")
	alice := withRole(t, env, tenant, "alice", "technician")
	dispatcher.create(siteFixture, siteFixture.valid("site-a"))
	dispatcher.create(workOrderFixture, with(workOrderFixture.valid("wo-bob"), edit{"siteId", "site-a"}, edit{"assigneeId", "bob"}))

	early := with(checklistItemFixture.valid("ci-early"), edit{"workOrderId", "wo-new"})
	if got := alice.push(checklistItemFixture, row{next: early}); len(got) != 0 {
		t.Fatalf("an item pushed before its work order came back as %v", idsOf(got))
	}
	intruder := with(checklistItemFixture.valid("ci-intruder"), edit{"workOrderId", "wo-bob"})
	got := alice.push(checklistItemFixture, row{next: intruder})
	assertSet(t, "an item under bob's work order", got, "-ci-intruder")

	_, cursor := alice.pullAll(checklistItemFixture, "", 100)
	if got := alice.push(workOrderFixture, row{next: with(workOrderFixture.valid("wo-new"), edit{"siteId", "site-a"}, edit{"assigneeId", "alice"})}); len(got) != 0 {
		t.Fatalf("alice's own work order came back as %v", idsOf(got))
	}
	items, _ := alice.pullAll(checklistItemFixture, cursor, 100)
	assertSet(t, "alice's checklist once the work order arrived", items, "ci-early")
	all, _ := dispatcher.pullAll(checklistItemFixture, "", 100)
	assertSet(t, "the tenant's checklist items (the intruder was not written)", all, "ci-early")
}
