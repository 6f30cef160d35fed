package resolvers_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tidemark/tidemark/testenv"
)

// policy says which collections a push case applies to.
type policy int

const (
	anyPolicy policy = iota
	mergeFields
	clientResolves
)

func (p policy) covers(f fixture) bool {
	return p == anyPolicy || (p == mergeFields) == f.merges
}

// pushCase runs against one collection with two devices of one tenant:
// "device" is the client under test (user alice) and "other" another
// device (user bob) whose writes the device has not pulled yet.
type pushCase struct {
	name   string
	policy policy
	run    func(t *testing.T, f fixture, device, other *api)
}

var pushCases = []pushCase{
	{
		name: "push of a new document writes it and returns nothing",
		run: func(t *testing.T, f fixture, device, _ *api) {
			before := device.head(f)
			sent := f.valid("new-1")
			if got := device.push(f, row{next: sent}); len(got) != 0 {
				t.Fatalf("result = %s, want []", jsonString(got))
			}
			p := device.pull(f, before, 10)
			if len(p.docs) != 1 {
				t.Fatalf("pull after insert = %s, want the new document", jsonString(p.docs))
			}
			assertSameClientState(t, p.docs[0], sent)
			if at := updatedAt(t, p.docs[0]); time.Since(at) > time.Minute || time.Until(at) > time.Minute {
				t.Fatalf("updatedAt = %v, want about now", at)
			}
			if p.cursor == before {
				t.Fatal("checkpoint did not move after a write")
			}
		},
	},
	{
		name: "push of the state the server already has is a retry: nothing written, checkpoint unchanged",
		run: func(t *testing.T, f fixture, device, _ *api) {
			sent := f.valid("retry-1")
			device.create(f, sent)
			cursor := device.head(f)
			if got := device.push(f, row{next: sent}); len(got) != 0 {
				t.Fatalf("retried insert returned %s, want []", jsonString(got))
			}
			device.assertNoChangesSince(f, cursor)
		},
	},
	{
		name: "retried update whose assumed state is now stale is still a retry, not a conflict",
		run: func(t *testing.T, f fixture, device, _ *api) {
			v1 := device.create(f, f.valid("retry-2"))[0]
			update := row{assumed: v1, next: with(v1, f.clientEdit)}
			if got := device.push(f, update); len(got) != 0 {
				t.Fatalf("update returned %s, want []", jsonString(got))
			}
			cursor := device.head(f)
			// The response was lost; the client sends the same push again.
			if got := device.push(f, update); len(got) != 0 {
				t.Fatalf("retried update returned %s, want []", jsonString(got))
			}
			device.assertNoChangesSince(f, cursor)
		},
	},
	{
		name: "push with assumed state equal to the master writes the new state",
		run: func(t *testing.T, f fixture, device, _ *api) {
			v1 := device.create(f, f.valid("edit-1"))[0]
			cursor := device.head(f)
			next := with(v1, f.clientEdit)
			if got := device.push(f, row{assumed: v1, next: next}); len(got) != 0 {
				t.Fatalf("result = %s, want []", jsonString(got))
			}
			p := device.pull(f, cursor, 10)
			if len(p.docs) != 1 {
				t.Fatalf("pull after update = %s, want one document", jsonString(p.docs))
			}
			assertSameClientState(t, p.docs[0], next)
			if !updatedAt(t, p.docs[0]).After(updatedAt(t, v1)) {
				t.Fatalf("updatedAt %v is not after the previous %v", p.docs[0]["updatedAt"], v1["updatedAt"])
			}
			if p.cursor == cursor {
				t.Fatal("checkpoint did not move after an update")
			}
		},
	},
	{
		name: "stale or foreign server-owned fields in the assumed state are not a conflict",
		run: func(t *testing.T, f fixture, device, other *api) {
			v1 := other.create(f, f.valid("owned-1"))[0]
			assumed := with(v1, edit{"updatedAt", "2001-02-03T04:05:06Z"})
			if f.typ == "Note" {
				assumed = with(assumed, edit{"authorId", "someone-else"})
			}
			next := with(v1, f.clientEdit, edit{"updatedAt", "1999-01-01T00:00:00Z"})
			if got := device.push(f, row{assumed: assumed, next: next}); len(got) != 0 {
				t.Fatalf("result = %s, want []", jsonString(got))
			}
			assertSameClientState(t, device.latest(f, "owned-1"), next)
		},
	},
	{
		name: "push that differs from the master only in server-owned fields is a retry",
		run: func(t *testing.T, f fixture, device, other *api) {
			v1 := other.create(f, f.valid("owned-2"))[0]
			cursor := device.head(f)
			next := with(v1, edit{"updatedAt", "2001-02-03T04:05:06Z"})
			if f.typ == "Note" {
				next = with(next, edit{"authorId", "someone-else"})
			}
			if got := device.push(f, row{next: next}); len(got) != 0 {
				t.Fatalf("result = %s, want []", jsonString(got))
			}
			device.assertNoChangesSince(f, cursor)
		},
	},
	{
		name:   "push with stale assumed state returns conflict and writes nothing",
		policy: clientResolves,
		run: func(t *testing.T, f fixture, device, other *api) {
			v1 := device.create(f, f.valid("stale-1"))[0]
			other.push(f, row{assumed: v1, next: with(v1, f.serverEdit)})
			master := device.latest(f, "stale-1")
			cursor := device.head(f)
			got := device.push(f, row{assumed: v1, next: with(v1, f.clientEdit)})
			assertDocs(t, got, []doc{master})
			device.assertNoChangesSince(f, cursor)
		},
	},
	{
		name:   "push with stale assumed state and disjoint edits writes and returns the merge",
		policy: mergeFields,
		run: func(t *testing.T, f fixture, device, other *api) {
			v1 := device.create(f, f.valid("merge-1"))[0]
			other.push(f, row{assumed: v1, next: with(v1, f.serverEdit)})
			serverAt := updatedAt(t, device.latest(f, "merge-1"))
			cursor := device.head(f)
			got := device.push(f, row{assumed: v1, next: with(v1, f.clientEdit)})
			if len(got) != 1 {
				t.Fatalf("result = %s, want the merged document", jsonString(got))
			}
			assertSameClientState(t, got[0], with(v1, f.serverEdit, f.clientEdit))
			p := device.pull(f, cursor, 10)
			assertDocs(t, p.docs, got)
			if !updatedAt(t, got[0]).After(serverAt) {
				t.Fatalf("merged updatedAt %v is not after the master's %v", got[0]["updatedAt"], serverAt)
			}
		},
	},
	{
		name: "push with overlapping edits returns conflict and writes nothing",
		run: func(t *testing.T, f fixture, device, other *api) {
			v1 := device.create(f, f.valid("overlap-1"))[0]
			other.push(f, row{assumed: v1, next: with(v1, f.overlap)})
			master := device.latest(f, "overlap-1")
			cursor := device.head(f)
			got := device.push(f, row{assumed: v1, next: with(v1, f.clientEdit)})
			assertDocs(t, got, []doc{master})
			device.assertNoChangesSince(f, cursor)
		},
	},
	{
		name: "push without assumed state over an existing document returns conflict",
		run: func(t *testing.T, f fixture, device, other *api) {
			master := other.create(f, f.valid("exists-1"))[0]
			cursor := device.head(f)
			got := device.push(f, row{next: with(f.valid("exists-1"), f.clientEdit)})
			assertDocs(t, got, []doc{master})
			device.assertNoChangesSince(f, cursor)
		},
	},
	{
		name:   "push with stale assumed state that only deletes merges into a tombstone",
		policy: mergeFields,
		run: func(t *testing.T, f fixture, device, other *api) {
			v1 := device.create(f, f.valid("merge-del"))[0]
			other.push(f, row{assumed: v1, next: with(v1, f.serverEdit)})
			got := device.push(f, row{assumed: v1, next: with(v1, edit{"deleted", true})})
			if len(got) != 1 {
				t.Fatalf("result = %s, want the merged document", jsonString(got))
			}
			assertSameClientState(t, got[0], with(v1, f.serverEdit, edit{"deleted", true}))
			assertDocs(t, []doc{device.latest(f, "merge-del")}, got)
		},
	},
	{
		name: "delete is a tombstone that pull returns",
		run: func(t *testing.T, f fixture, device, _ *api) {
			v1 := device.create(f, f.valid("del-1"))[0]
			cursor := device.head(f)
			gone := with(v1, edit{"deleted", true})
			if got := device.push(f, row{assumed: v1, next: gone}); len(got) != 0 {
				t.Fatalf("result = %s, want []", jsonString(got))
			}
			p := device.pull(f, cursor, 10)
			if len(p.docs) != 1 || p.docs[0]["deleted"] != true {
				t.Fatalf("pull after delete = %s, want the tombstone", jsonString(p.docs))
			}
			assertSameClientState(t, p.docs[0], gone)
			// The tombstone is a master like any other: pushing it again is a retry.
			cursor = p.cursor
			if got := device.push(f, row{assumed: v1, next: gone}); len(got) != 0 {
				t.Fatalf("retried delete returned %s, want []", jsonString(got))
			}
			device.assertNoChangesSince(f, cursor)
		},
	},
	{
		name: "result lists only conflicting rows, in row order",
		run: func(t *testing.T, f fixture, device, other *api) {
			taken := other.create(f, f.valid("taken-a"), f.valid("taken-b"))
			got := device.push(f,
				row{next: f.valid("free-a")},
				row{next: with(f.valid("taken-b"), f.overlap)},
				row{next: f.valid("free-b")},
				row{next: with(f.valid("taken-a"), f.overlap)},
			)
			assertDocs(t, got, []doc{taken[1], taken[0]})
			all, _ := device.pullAll(f, "", 1000)
			if want := []string{"taken-a", "taken-b", "free-a", "free-b"}; fmt.Sprint(ids(all)) != fmt.Sprint(want) {
				t.Fatalf("documents = %v, want %v", ids(all), want)
			}
		},
	},
	{
		name: "two rows for the same id in one push: the second builds on the first",
		run: func(t *testing.T, f fixture, device, _ *api) {
			v1 := f.valid("twice-1")
			v2 := with(v1, f.clientEdit)
			if got := device.push(f, row{next: v1}, row{assumed: v1, next: v2}); len(got) != 0 {
				t.Fatalf("result = %s, want []", jsonString(got))
			}
			all, _ := device.pullAll(f, "", 1000)
			if len(all) != 1 {
				t.Fatalf("pull = %s, want one document", jsonString(all))
			}
			assertSameClientState(t, all[0], v2)
		},
	},
	{
		name: "two identical rows for the same id in one push: the second is a retry",
		run: func(t *testing.T, f fixture, device, _ *api) {
			v1 := f.valid("twice-2")
			if got := device.push(f, row{next: v1}, row{next: v1}); len(got) != 0 {
				t.Fatalf("result = %s, want []", jsonString(got))
			}
			all, _ := device.pullAll(f, "", 1000)
			if len(all) != 1 {
				t.Fatalf("pull = %s, want one document", jsonString(all))
			}
			assertSameClientState(t, all[0], v1)
		},
	},
	{
		name: "two rows for the same id in one push: a second row that conflicts with the first gets it as stored",
		run: func(t *testing.T, f fixture, device, _ *api) {
			v1 := f.valid("twice-3")
			got, errs := device.pushRaw(f, []row{{next: v1}, {next: with(v1, f.overlap)}})
			stored := device.latest(f, "twice-3")
			assertSameClientState(t, stored, v1)
			if len(errs) != 0 {
				t.Fatalf("push wrote row 0 but answered with errors %v; want the result [row 0 as stored]", errs)
			}
			assertDocs(t, got, []doc{stored})
		},
	},
}

func TestPush(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	for _, f := range fixtures {
		t.Run(f.typ, func(t *testing.T) {
			t.Parallel()
			for _, tc := range pushCases {
				if !tc.policy.covers(f) {
					continue
				}
				t.Run(tc.name, func(t *testing.T) {
					tenant := tenantOf(t)
					tc.run(t, f, newAPI(t, env, tenant, "alice"), newAPI(t, env, tenant, "bob"))
				})
			}
		})
	}
}
