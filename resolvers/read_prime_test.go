package resolvers_test

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
	"github.com/tidemark/tidemark/server"
	"github.com/tidemark/tidemark/testenv"
	"github.com/tidemark/tidemark/wiring"
)

// seedNestedPage seeds n work orders over 10 sites, each with three
// checklist items and two notes.
func seedNestedPage(a *api, n int) {
	var sites, orders, items, notes []doc
	for s := range 10 {
		sites = append(sites, siteDoc(fmt.Sprintf("site-%02d", s)))
	}
	for w := range n {
		id := fmt.Sprintf("wo-%03d", w)
		orders = append(orders, workOrderDoc(id, fmt.Sprintf("site-%02d", w%10)))
		for i := range 3 {
			items = append(items, checklistItemDoc(fmt.Sprintf("%s-c%d", id, i), id, i))
		}
		for k := range 2 {
			notes = append(notes, noteDoc(fmt.Sprintf("%s-n%d", id, k), id))
		}
	}
	a.seed(siteFixture, sites...)
	a.seed(workOrderFixture, orders...)
	a.seed(checklistItemFixture, items...)
	a.seed(noteFixture, notes...)
}

// The list resolver reads a page's nested documents itself, before gqlgen
// resolves the items, so batching no longer depends on the items arriving
// within a time window: every run sends exactly the page, the checklists
// and the notes as list statements (the sites by id, unless the document
// cache has them), however the machine schedules the goroutines.
func TestReadNestedFieldsArePrimedByThePage(t *testing.T) {
	t.Parallel()
	env := newReadEnv(t, server.Config{})
	a := newAPI(t, env, tenantOf(t), "alice")
	seedNestedPage(a, 100)
	const query = `query($n: Int) { workOrders(first: $n) { edges { node { title site { name } checklist { label done } notes { body } } } } }`
	for _, n := range []int{1, 10, 100} {
		for run := range batchRuns {
			data, stmts := a.countStatements(query, map[string]any{"n": n})
			var got struct {
				WorkOrders struct {
					Edges []struct {
						Node struct {
							Site      *struct{ Name string }
							Checklist []struct{ Label string }
							Notes     []struct{ Body string }
						}
					}
				}
			}
			decodeInto(t, data, &got)
			if len(got.WorkOrders.Edges) != n {
				t.Fatalf("first: %d returned %d work orders", n, len(got.WorkOrders.Edges))
			}
			for i, e := range got.WorkOrders.Edges {
				if e.Node.Site == nil || len(e.Node.Checklist) != 3 || len(e.Node.Notes) != 2 {
					t.Fatalf("first: %d, item %d: site %v, %d checklist items, %d notes; want a site, 3 and 2", n, i, e.Node.Site, len(e.Node.Checklist), len(e.Node.Notes))
				}
			}
			lists, byID := splitByIDLookups(stmts)
			if len(lists) != 3 || len(byID) > 1 {
				t.Fatalf("first: %d, run %d sent %d list statements and %d by id, want exactly 3 (page, checklists, notes) and at most 1:\n%s",
					n, run, len(lists), len(byID), strings.Join(stmts, "\n"))
			}
		}
	}
}

// A nested field the page did not select is not read: a page of titles
// alone is one statement.
func TestReadPageWithoutNestedFieldsReadsOnlyThePage(t *testing.T) {
	t.Parallel()
	env := newReadEnv(t, server.Config{})
	a := newAPI(t, env, tenantOf(t), "alice")
	seedNestedPage(a, 20)
	_, stmts := a.countStatements(`{ workOrders(first: 20) { edges { node { title checklist { label } } } } }`, nil)
	if lists, byID := splitByIDLookups(stmts); len(lists) != 2 || len(byID) != 0 {
		t.Fatalf("a page with its checklists sent %d list and %d by-id statements, want 2 and 0:\n%s", len(lists), len(byID), strings.Join(stmts, "\n"))
	}
	_, stmts = a.countStatements(`{ workOrders(first: 20) { edges { node { title } } } }`, nil)
	if len(stmts) != 1 {
		t.Fatalf("a page of titles sent %d statements, want 1:\n%s", len(stmts), strings.Join(stmts, "\n"))
	}
}

// BenchmarkNestedRead serves the nested read (a page of 100 work
// orders with their site and checklist) through the real handler and a
// real PostgreSQL, one request per iteration.
func BenchmarkNestedRead(b *testing.B) {
	for _, q := range []struct{ name, query string }{
		{"site+checklist", `{ workOrders(first: 100) { edges { node { title site { name } checklist { label done } } } } }`},
		{"site+checklist+notes", `{ workOrders(first: 100) { edges { node { title site { name } checklist { label done } notes { body } } } } }`},
	} {
		b.Run(q.name, func(b *testing.B) {
			env := newReadEnv(b, server.Config{})
			a := newAPI(b, env, tenantOf(b), "alice")
			seedNestedPage(a, 100)
			b.ReportAllocs()
			// Wall time swings with whatever else the machine runs; the
			// process's CPU time per request (handler and client, not
			// PostgreSQL) is the steadier figure to compare.
			cpu0 := processCPU(b)
			for b.Loop() {
				var got struct{ WorkOrders struct{ Edges []any } }
				a.read(q.query, nil, &got)
				if len(got.WorkOrders.Edges) != 100 {
					b.Fatalf("%d work orders, want 100", len(got.WorkOrders.Edges))
				}
			}
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the CPU time this process has used (user and system).
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// newCachingReadEnv is newReadEnv with the document cache keeping nested
// lists too, as the program runs by default (testenv leaves it off). Its
// notifier never polls: the first news of a scope drops the scope's
// entries (doccache.Notify), which would make the counts below depend on
// when the poll falls; this instance's own writes still invalidate.
func newCachingReadEnv(tb testing.TB) *testenv.Env {
	tb.Helper()
	d := dbtest.Open(tb, db.PoolConfig{Tracer: requestTracer{}})
	built, err := wiring.Build(d, wiring.Config{
		Secret: testenv.Secret, PollInterval: time.Hour, CacheTTL: time.Hour, CacheChildren: true,
		Server: server.Config{AddressRate: -1, IdentityRate: -1, PushesInFlight: -1},
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(built.Close)
	return &testenv.Env{DB: d, Cache: built.Cache, Sync: built.Sync, Live: built.Live, Handler: built.Handler}
}

// Statements (one database round trip each: they are sent at once) of the
// nested read with the document cache keeping lists: once the page has
// been read, a read of it again sends the page's statement alone; a write
// to one child collection makes the next read send that collection's list
// again and nothing else (issue 13: the cache pays off with the database
// far away). The first read is the control: the same query without the
// cache's lists sends all three lists.
func TestReadNestedListsFromTheCache(t *testing.T) {
	t.Parallel()
	env := newCachingReadEnv(t)
	a := newAPI(t, env, tenantOf(t), "alice")
	seedNestedPage(a, 100)
	const query = `{ workOrders(first: 100) { edges { node { title site { name } checklist { label done } notes { body } } } } }`
	read := func() (lists, byID []string) {
		t.Helper()
		data, stmts := a.countStatements(query, nil)
		var got struct {
			WorkOrders struct {
				Edges []struct {
					Node struct {
						Site      *struct{ Name string }
						Checklist []struct{ Label string }
						Notes     []struct{ Body string }
					}
				}
			}
		}
		decodeInto(t, data, &got)
		for i, e := range got.WorkOrders.Edges {
			if e.Node.Site == nil || len(e.Node.Notes) != 2 || (i != 0 && len(e.Node.Checklist) != 3) {
				t.Fatalf("item %d: site %v, %d checklist items, %d notes", i, e.Node.Site, len(e.Node.Checklist), len(e.Node.Notes))
			}
		}
		if len(got.WorkOrders.Edges) != 100 {
			t.Fatalf("%d work orders", len(got.WorkOrders.Edges))
		}
		return splitByIDLookups(stmts)
	}
	if lists, byID := read(); len(lists) != 3 || len(byID) != 1 {
		t.Fatalf("first read: %d list and %d by-id statements, want 3 and 1:\n%s", len(lists), len(byID), strings.Join(append(lists, byID...), "\n"))
	}
	for run := range 5 {
		if lists, byID := read(); len(lists) != 1 || len(byID) != 0 {
			t.Fatalf("read %d again: %d list and %d by-id statements, want the page alone:\n%s", run, len(lists), len(byID), strings.Join(append(lists, byID...), "\n"))
		}
	}
	// One checklist item more: the checklists are read again (the new one
	// is in its list), the notes and sites still come from memory.
	a.seed(checklistItemFixture, checklistItemDoc("wo-000-c3", "wo-000", 3))
	lists, byID := read()
	if len(lists) != 2 || len(byID) != 0 || !strings.Contains(strings.Join(lists, "\n"), "checklist") {
		t.Fatalf("after a checklist write: %d list and %d by-id statements, want the page and the checklists:\n%s", len(lists), len(byID), strings.Join(append(lists, byID...), "\n"))
	}
	var got struct {
		WorkOrders struct {
			Edges []struct {
				Node struct{ Checklist []struct{ Label string } }
			}
		}
	}
	a.read(`{ workOrders(first: 100) { edges { node { checklist { label } } } } }`, nil, &got)
	found := false
	for _, e := range got.WorkOrders.Edges {
		found = found || len(e.Node.Checklist) == 4
	}
	if !found {
		t.Fatal("no work order shows the checklist item just written")
	}
}
