package resolvers_test

import (
	"testing"

	"github.com/tidemark/tidemark/testenv"
)

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	for _, f := range fixtures {
		t.Run(f.typ, func(t *testing.T) {
			t.Parallel()
			t.Run("tenants never see or overwrite each other's documents, even with the same id", func(t *testing.T) {
				tenantA := newAPI(t, env, tenantOf(t)+"/A", "alice")
				tenantB := newAPI(t, env, tenantOf(t)+"/B", "alice") // the same user id in another tenant
				mineA := tenantA.create(f, f.valid("same-id"))[0]
				cursorA := tenantA.head(f)

				if p := tenantB.pull(f, "", 1000); len(p.docs) != 0 {
					t.Fatalf("tenant B sees %s", jsonString(p.docs))
				}
				// For tenant B the id is new: an insert, not a conflict with A's document.
				docB := with(f.valid("same-id"), f.overlap)
				if got := tenantB.push(f, row{next: docB}); len(got) != 0 {
					t.Fatalf("tenant B's insert returned %s, want []", jsonString(got))
				}
				// Nor may B edit A's document by presenting A's state as assumed.
				if got := tenantB.push(f, row{assumed: mineA, next: with(mineA, f.clientEdit)}); len(got) != 1 {
					t.Fatalf("tenant B's edit from A's state returned %s, want a conflict with B's own document", jsonString(got))
				} else {
					assertSameClientState(t, got[0], docB)
				}

				tenantA.assertNoChangesSince(f, cursorA)
				assertDocs(t, []doc{tenantA.latest(f, "same-id")}, []doc{mineA})
				assertSameClientState(t, tenantB.latest(f, "same-id"), docB)
				if all, _ := tenantB.pullAll(f, "", 1000); len(all) != 1 {
					t.Fatalf("tenant B has %d documents, want 1", len(all))
				}
			})
		})
	}
}

func TestNoteAuthor(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	f := noteFixture
	tests := []struct {
		name string
		run  func(t *testing.T, alice, bob *api)
	}{
		{
			name: "authorId is set from the token's sub, never from input",
			run: func(t *testing.T, alice, _ *api) {
				alice.push(f, row{next: with(f.valid("n1"), edit{"authorId", "mallory"})})
				if got := alice.latest(f, "n1")["authorId"]; got != "alice" {
					t.Fatalf("authorId = %v, want alice", got)
				}
			},
		},
		{
			name: "authorId becomes whoever last wrote the note",
			run: func(t *testing.T, alice, bob *api) {
				v1 := alice.create(f, f.valid("n2"))[0]
				bob.push(f, row{assumed: v1, next: with(v1, f.clientEdit)})
				if got := bob.latest(f, "n2")["authorId"]; got != "bob" {
					t.Fatalf("authorId = %v, want bob", got)
				}
			},
		},
		{
			name: "a retry by another user writes nothing and keeps the author",
			run: func(t *testing.T, alice, bob *api) {
				v1 := alice.create(f, f.valid("n3"))[0]
				cursor := bob.head(f)
				bob.push(f, row{next: v1})
				bob.assertNoChangesSince(f, cursor)
				if got := bob.latest(f, "n3")["authorId"]; got != "alice" {
					t.Fatalf("authorId = %v, want alice", got)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tenant := tenantOf(t)
			tc.run(t, newAPI(t, env, tenant, "alice"), newAPI(t, env, tenant, "bob"))
		})
	}
}

// TestTimePrecision covers WorkOrder.dueAt, the one client-owned time: the
// server keeps microseconds, and a client that sends nanoseconds must still
// see its own pushes, and the pulled documents, as retries.
func TestTimePrecision(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	f := workOrderFixture
	tests := []struct {
		name   string
		sent   string // dueAt as pushed
		stored string // dueAt as pulled
	}{
		{"nanoseconds are truncated to microseconds", "2026-11-23T09:30:00.123456789Z", "2026-11-23T09:30:00.123456Z"},
		{"an offset is converted to UTC", "2026-11-23T11:30:00.5+02:00", "2026-11-23T09:30:00.5Z"},
		{"whole seconds stay whole", "2026-11-23T09:30:00Z", "2026-11-23T09:30:00Z"},
		{"times before 1970 keep their microseconds", "1969-12-31T23:59:59.999999999Z", "1969-12-31T23:59:59.999999Z"},
		{"the earliest accepted instant round-trips", "0001-01-01T00:00:00.000001Z", "0001-01-01T00:00:00.000001Z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newAPI(t, env, tenantOf(t), "alice")
			sent := with(f.valid("wo"), edit{"dueAt", tc.sent}, edit{"updatedAt", "2026-01-01T00:00:00.999999999Z"})
			a.push(f, row{next: sent})
			pulled := a.latest(f, "wo")
			if pulled["dueAt"] != tc.stored {
				t.Fatalf("dueAt = %v, want %s", pulled["dueAt"], tc.stored)
			}
			cursor := a.head(f)
			for _, r := range []struct {
				name string
				row  row
			}{
				{"the pulled document pushed back", row{assumed: pulled, next: pulled}},
				{"the pulled document pushed back as new", row{next: pulled}},
				{"the sent document pushed again", row{next: sent}},
				{"the sent document pushed again over itself", row{assumed: sent, next: sent}},
			} {
				if got := a.push(f, r.row); len(got) != 0 {
					t.Fatalf("%s: result = %s, want [] (a retry)", r.name, jsonString(got))
				}
			}
			a.assertNoChangesSince(f, cursor)
			// An edit based on the client's nanosecond copy is not a conflict.
			next := with(sent, f.clientEdit)
			if got := a.push(f, row{assumed: sent, next: next}); len(got) != 0 {
				t.Fatalf("edit from the sent state: result = %s, want []", jsonString(got))
			}
			assertSameClientState(t, a.latest(f, "wo"), with(pulled, f.clientEdit))
		})
	}
}
