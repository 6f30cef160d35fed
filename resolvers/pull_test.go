package resolvers_test

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tidemark/tidemark/testenv"
)

// pullCase runs against one collection with one client of a fresh tenant.
type pullCase struct {
	name string
	run  func(t *testing.T, f fixture, a *api)
}

var pullCases = []pullCase{
	{
		name: "pull of an empty collection returns no documents and a stable initial checkpoint",
		run: func(t *testing.T, f fixture, a *api) {
			first := a.pull(f, "", 10)
			if len(first.docs) != 0 {
				t.Fatalf("documents = %s, want none", jsonString(first.docs))
			}
			if again := a.pull(f, "", 10); again.cursor != first.cursor {
				t.Fatalf("initial checkpoint changed between pulls: %q, %q", first.cursor, again.cursor)
			}
			a.assertNoChangesSince(f, first.cursor)
		},
	},
	{
		name: "pull with no new changes returns the given checkpoint",
		run: func(t *testing.T, f fixture, a *api) {
			a.create(f, f.valid("a"), f.valid("b"))
			p := a.pull(f, "", 10)
			if len(p.docs) != 2 {
				t.Fatalf("documents = %v, want [a b]", ids(p.docs))
			}
			a.assertNoChangesSince(f, p.cursor)
			a.assertNoChangesSince(f, p.cursor) // and again: pulling does not move it
		},
	},
	{
		name: "pull after a checkpoint returns only later changes",
		run: func(t *testing.T, f fixture, a *api) {
			a.create(f, f.valid("a"), f.valid("b"))
			cursor := a.head(f)
			a.create(f, f.valid("c"))
			p := a.pull(f, cursor, 10)
			if got := ids(p.docs); !slices.Equal(got, []string{"c"}) {
				t.Fatalf("documents = %v, want [c]", got)
			}
			a.assertNoChangesSince(f, p.cursor)
		},
	},
	{
		name: "paging with small limits returns every document exactly once in change order, never a short page while more remain",
		run: func(t *testing.T, f fixture, a *api) {
			var want []string
			// Several pushes of different sizes, so pages straddle transactions.
			for _, n := range []int{1, 7, 3, 12} {
				var docs []doc
				for range n {
					id := fmt.Sprintf("doc-%02d", len(want))
					want = append(want, id)
					docs = append(docs, f.valid(id))
				}
				a.create(f, docs...)
			}
			for _, limit := range []int{1, 4, 5, 23, 1000} {
				got, _ := a.pullAll(f, "", limit)
				if !slices.Equal(ids(got), want) {
					t.Fatalf("limit %d: documents = %v, want %v", limit, ids(got), want)
				}
			}
			p := a.pull(f, "", 4)
			if !slices.Equal(ids(p.docs), want[:4]) {
				t.Fatalf("first page of 4 = %v, want %v", ids(p.docs), want[:4])
			}
		},
	},
	{
		name: "updated document appears once, at its latest state, moved to the end of change order",
		run: func(t *testing.T, f fixture, a *api) {
			stored := a.create(f, f.valid("a"), f.valid("b"), f.valid("c"))
			next := with(stored[0], f.clientEdit)
			a.push(f, row{assumed: stored[0], next: next})
			got, _ := a.pullAll(f, "", 2)
			if !slices.Equal(ids(got), []string{"b", "c", "a"}) {
				t.Fatalf("documents = %v, want [b c a]", ids(got))
			}
			assertSameClientState(t, got[2], next)
		},
	},
	{
		name: "deleted documents are returned as tombstones in change order",
		run: func(t *testing.T, f fixture, a *api) {
			stored := a.create(f, f.valid("a"), f.valid("b"))
			cursor := a.head(f)
			a.push(f, row{assumed: stored[0], next: with(stored[0], edit{"deleted", true})})
			p := a.pull(f, cursor, 10)
			if len(p.docs) != 1 || p.docs[0]["id"] != "a" || p.docs[0]["deleted"] != true {
				t.Fatalf("documents = %s, want the tombstone of a", jsonString(p.docs))
			}
			all, _ := a.pullAll(f, "", 1)
			if !slices.Equal(ids(all), []string{"b", "a"}) {
				t.Fatalf("documents from the beginning = %v, want [b a]", ids(all))
			}
		},
	},
	{
		name: "limit out of range is rejected",
		run: func(t *testing.T, f fixture, a *api) {
			for _, limit := range []int{0, -1, 1001} {
				_, errs := a.pullRaw(f, nil, limit)
				if len(errs) != 1 {
					t.Fatalf("limit %d: errors = %v, want one", limit, errs)
				}
				assertError(t, errs[0], "BAD_USER_INPUT", "limit")
			}
			if p := a.pull(f, "", 1000); len(p.docs) != 0 {
				t.Fatalf("limit 1000: documents = %s", jsonString(p.docs))
			}
		},
	},
	{
		name: "malformed cursor is rejected",
		run: func(t *testing.T, f fixture, a *api) {
			a.create(f, f.valid("a"))
			enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
			valid := a.head(f)
			for _, cursor := range []string{
				"",
				"not a cursor!",
				valid + "!",
				valid + "=",
				"1",
				enc("v1:" + f.typ + ":abc"),
				enc("v1:" + f.typ + ":-1"),
				enc("v1:" + f.typ),
				enc("v9:" + f.typ + ":1"),
				strings.Repeat("A", 10_000),
			} {
				_, errs := a.pullRaw(f, cursor, 10)
				if len(errs) != 1 {
					t.Fatalf("cursor %.40q: errors = %v, want one", cursor, errs)
				}
				assertError(t, errs[0], "BAD_USER_INPUT", "checkpoint.cursor")
			}
		},
	},
	{
		name: "cursor of another collection is rejected",
		run: func(t *testing.T, f fixture, a *api) {
			for _, other := range fixtures {
				if other.typ == f.typ {
					continue
				}
				a.create(other, other.valid("x"))
				cursor := a.head(other)
				_, errs := a.pullRaw(f, cursor, 10)
				if len(errs) != 1 {
					t.Fatalf("%s cursor: errors = %v, want one", other.typ, errs)
				}
				assertError(t, errs[0], "BAD_USER_INPUT", "checkpoint.cursor")
			}
		},
	},
}

func TestPull(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	for _, f := range fixtures {
		t.Run(f.typ, func(t *testing.T) {
			t.Parallel()
			for _, tc := range pullCases {
				t.Run(tc.name, func(t *testing.T) {
					tc.run(t, f, newAPI(t, env, tenantOf(t), "alice"))
				})
			}
		})
	}
}

// TestPullDuringConcurrentPushesMissesNothing pulls while several devices
// push: change numbers must follow commit order, or a puller could move its
// checkpoint past a change that commits later and never see it.
func TestPullDuringConcurrentPushesMissesNothing(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	const writers, pushes = 6, 10
	for _, f := range fixtures {
		t.Run(f.typ, func(t *testing.T) {
			t.Parallel()
			tenant := tenantOf(t)
			var wg sync.WaitGroup
			errs := make(chan string, writers*pushes)
			for w := range writers {
				device := newAPI(t, env, tenant, fmt.Sprintf("user-%d", w))
				wg.Go(func() {
					for i := range pushes {
						id := fmt.Sprintf("w%d-%02d", w, i)
						if got, e := device.pushRaw(f, []row{{next: f.valid(id)}}); len(e) > 0 || len(got) != 0 {
							errs <- fmt.Sprintf("push %s: result %s, errors %v", id, jsonString(got), e)
						}
					}
				})
			}
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()

			puller := newAPI(t, env, tenant, "puller")
			seen := map[string]int{}
			cursor := ""
			for finished := false; ; {
				select {
				case <-done:
					finished = true
				default:
				}
				p := puller.pull(f, cursor, 3)
				for _, d := range p.docs {
					seen[d["id"].(string)]++
				}
				cursor = p.cursor
				if finished && len(p.docs) == 0 {
					break
				}
			}
			close(errs)
			for e := range errs {
				t.Error(e)
			}
			if len(seen) != writers*pushes {
				t.Fatalf("puller saw %d documents, want %d", len(seen), writers*pushes)
			}
			for id, n := range seen {
				if n != 1 {
					t.Fatalf("puller saw %s %d times, want once", id, n)
				}
			}
		})
	}
}
