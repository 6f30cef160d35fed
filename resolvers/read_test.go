package resolvers_test

// These tests drive the read API (schema/read.graphqls) through the real
// handler: Relay paging in both directions, orders with ties, filters,
// nested fields and their batching, tenant isolation, node(id), the cost
// and depth limits, automatic persisted queries and introspection. Data is
// written the way devices write it, with pushSites, pushWorkOrders,
// pushChecklistItems and pushNotes.

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/server"
	"github.com/tidemark/tidemark/testenv"
)

// t0 is the base of the due times in these tests.
var t0 = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

func at(d time.Duration) string { return t0.Add(d).Format(time.RFC3339Nano) }

func orderBy(field, direction string) map[string]any {
	return map[string]any{"field": field, "direction": direction}
}

func TestReadPaging(t *testing.T) {
	t.Parallel()
	env := newReadEnv(t, server.Config{})
	a := newAPI(t, env, "acme", "alice")

	// 28 work orders with distinct priorities, in two pushes (odd ids first,
	// so the default order, by updatedAt, is not the id order); 3 deleted.
	var odd, even []doc
	for i := range 28 {
		d := workOrderDoc(fmt.Sprintf("wo-%02d", i), "site-1", edit{"priority", (i * 11) % 28})
		if i%2 == 1 {
			odd = append(odd, d)
		} else {
			even = append(even, d)
		}
	}
	a.seed(workOrderFixture, odd...)
	a.seed(workOrderFixture, even...)
	a.remove(workOrderFixture, "wo-04", "wo-13", "wo-22")
	liveOrders := where(a.stored(workOrderFixture), live)
	if len(liveOrders) != 25 {
		t.Fatalf("seeded %d live work orders, want 25", len(liveOrders))
	}

	var sites []doc
	for i := range 12 {
		sites = append(sites, siteDoc(fmt.Sprintf("site-%02d", i)))
	}
	a.seed(siteFixture, sites...)
	a.remove(siteFixture, "site-03", "site-07")
	liveSites := listOrder(t, where(a.stored(siteFixture), live), "", false)

	byUpdated := listOrder(t, liveOrders, "updatedAt", false)
	if slices.IsSorted(byUpdated) {
		t.Fatalf("the default order %v is the id order: the data does not tell them apart", byUpdated)
	}
	orders := []struct {
		name    string
		orderBy any
		want    []string
	}{
		{"default order (UPDATED_AT ASC)", nil, byUpdated},
		{"PRIORITY ASC", orderBy("PRIORITY", "ASC"), listOrder(t, liveOrders, "priority", false)},
		{"PRIORITY DESC", orderBy("PRIORITY", "DESC"), listOrder(t, liveOrders, "priority", true)},
	}
	for _, o := range orders {
		list := a.listOf(workOrdersQuery, map[string]any{"orderBy": o.orderBy})
		for _, size := range []int{1, 4, 7, 25, 30} {
			t.Run(fmt.Sprintf("%s: forwards by %d visits every live work order once, in order", o.name, size), func(t *testing.T) {
				assertIDs(t, "forwards", walkForward(t, list, size, len(o.want)), o.want)
			})
			t.Run(fmt.Sprintf("%s: backwards by %d visits them in the same order", o.name, size), func(t *testing.T) {
				assertIDs(t, "backwards", walkBackward(t, list, size, len(o.want)), o.want)
			})
		}
		t.Run(o.name+": before the start cursor of any page is the page before it", func(t *testing.T) {
			var prev []string
			var after any
			for range 10 {
				p := list(t, map[string]any{"first": 4, "after": after})
				if prev != nil {
					back := list(t, map[string]any{"last": 4, "before": *p.PageInfo.StartCursor})
					assertIDs(t, "the page before", back.ids(), prev)
					if !back.PageInfo.HasNextPage {
						t.Fatalf("a page read with before has hasNextPage false")
					}
				}
				if !p.PageInfo.HasNextPage {
					return
				}
				prev, after = p.ids(), *p.PageInfo.EndCursor
			}
			t.Fatal("paging never ended")
		})
	}

	for _, size := range []int{1, 3, 10, 11} {
		list := a.listOf(sitesQuery, nil)
		t.Run(fmt.Sprintf("sites forwards and backwards by %d visit every live site once, by id", size), func(t *testing.T) {
			assertIDs(t, "forwards", walkForward(t, list, size, len(liveSites)), liveSites)
			assertIDs(t, "backwards", walkBackward(t, list, size, len(liveSites)), liveSites)
		})
	}

	t.Run("the largest page (first: 500) is accepted", func(t *testing.T) {
		var data struct{ WorkOrders connJSON }
		a.read(`{ workOrders(first: 500) { edges { node { id } } } }`, nil, &data)
		assertIDs(t, "first: 500", data.WorkOrders.ids(), byUpdated)
	})

	t.Run("no paging arguments give the first page of the default size", func(t *testing.T) {
		p := a.listOf(workOrdersQuery, nil)(t, nil)
		assertIDs(t, "no arguments", p.ids(), byUpdated) // 25 < 50, the default
	})

	t.Run("first: 0 and last: 0 give an empty page with the total", func(t *testing.T) {
		for _, paging := range []map[string]any{{"first": 0}, {"last": 0}, {"first": 0, "after": nil}} {
			p := a.listOf(workOrdersQuery, nil)(t, paging)
			checkPage(t, p, 0, 25)
			if len(p.Edges) != 0 {
				t.Fatalf("%v: edges %v, want none", paging, p.ids())
			}
		}
	})

	t.Run("first: 0 says whether a next page exists, last: 0 whether a previous one does", func(t *testing.T) {
		// Relay: hasNextPage is true when more edges than first exist.
		list := a.listOf(workOrdersQuery, nil)
		if p := list(t, map[string]any{"first": 0}); !p.PageInfo.HasNextPage {
			t.Errorf("first: 0 over 25 work orders: hasNextPage false, want true")
		}
		if p := list(t, map[string]any{"last": 0}); !p.PageInfo.HasPreviousPage {
			t.Errorf("last: 0 over 25 work orders: hasPreviousPage false, want true")
		}
	})

	t.Run("page arguments out of range or together are refused, naming the argument", func(t *testing.T) {
		cursor := *a.listOf(workOrdersQuery, nil)(t, map[string]any{"first": 1}).PageInfo.EndCursor
		cases := []struct {
			paging map[string]any
			arg    string
		}{
			{map[string]any{"first": 501}, "first"},
			{map[string]any{"first": -1}, "first"},
			{map[string]any{"last": -1}, "last"},
			{map[string]any{"last": 501}, "last"},
			{map[string]any{"first": 1, "last": 1}, "first"},
			{map[string]any{"after": cursor, "before": cursor}, "after"},
		}
		// A light selection: with connSelection a page of 501 is priced
		// over the complexity limit before the resolver sees it.
		light := []string{
			`query($first: Int, $after: String, $last: Int, $before: String) {
  workOrders(first: $first, after: $after, last: $last, before: $before) { edges { node { id } } } }`,
			`query($first: Int, $after: String, $last: Int, $before: String) {
  sites(first: $first, after: $after, last: $last, before: $before) { edges { node { id } } } }`,
		}
		for _, query := range light {
			for _, c := range cases {
				err := a.readErr(query, c.paging)
				assertError(t, err, "BAD_USER_INPUT", c.arg+": ")
				if err.Extensions["field"] != c.arg {
					t.Fatalf("%v: extensions %v, want field %q", c.paging, err.Extensions, c.arg)
				}
			}
		}
	})

	t.Run("a cursor issued under one order is refused under another", func(t *testing.T) {
		cursorOf := func(query string, o any) string {
			p := a.listOf(query, map[string]any{"orderBy": o})(t, map[string]any{"first": 2})
			return *p.PageInfo.EndCursor
		}
		byPriority := cursorOf(workOrdersQuery, orderBy("PRIORITY", "ASC"))
		byDefault := cursorOf(workOrdersQuery, nil)
		byDue := cursorOf(workOrdersQuery, orderBy("DUE_AT", "ASC"))
		site := cursorOf(sitesQuery, nil)
		cases := []struct {
			name, query, cursor string
			orderBy             any
		}{
			{"PRIORITY cursor with the default order", workOrdersQuery, byPriority, nil},
			{"PRIORITY cursor with DUE_AT", workOrdersQuery, byPriority, orderBy("DUE_AT", "DESC")},
			{"UPDATED_AT cursor with PRIORITY", workOrdersQuery, byDefault, orderBy("PRIORITY", "ASC")},
			{"DUE_AT cursor with UPDATED_AT", workOrdersQuery, byDue, orderBy("UPDATED_AT", "ASC")},
			{"sites cursor with workOrders", workOrdersQuery, site, nil},
			{"workOrders cursor with sites", sitesQuery, byDefault, nil},
		}
		for _, c := range cases {
			for _, arg := range []string{"after", "before"} {
				err := a.readErr(c.query, map[string]any{arg: c.cursor, "orderBy": c.orderBy})
				assertError(t, err, "BAD_USER_INPUT", arg+": ")
			}
		}
	})

	t.Run("a garbage cursor is refused", func(t *testing.T) {
		b64 := base64.RawURLEncoding.EncodeToString
		for _, cursor := range []string{
			"garbage!", "", "eyJv", b64([]byte("{}")), b64([]byte(`{"o":"priority","v":"\"high\"","i":"wo-01"}`)),
			b64([]byte(`{"o":"priority","v":"3"}`)), strings.Repeat("A", 2000),
		} {
			err := a.readErr(workOrdersQuery, map[string]any{"after": cursor, "orderBy": orderBy("PRIORITY", "ASC")})
			assertError(t, err, "BAD_USER_INPUT", "after: ")
		}
	})
}

func TestReadOrderingWithTies(t *testing.T) {
	t.Parallel()
	env := newReadEnv(t, server.Config{})
	a := newAPI(t, env, "acme", "alice")

	// 36 work orders in three pushes of 12 (three updatedAt values), with
	// three priorities, a few shared due times and many missing ones; each
	// push mixes ids, so no order happens to be the id order.
	batches := make([][]doc, 3)
	for i := range 36 {
		var due any
		switch i % 4 {
		case 1:
			due = at(time.Hour)
		case 2:
			due = at(2 * time.Hour)
		case 3:
			due = at(time.Duration(i) * time.Minute)
		}
		d := workOrderDoc(fmt.Sprintf("wo-%02d", i), "site-1", edit{"priority", i % 3}, edit{"dueAt", due})
		batches[i%3] = append(batches[i%3], d)
	}
	for _, b := range batches {
		a.seed(workOrderFixture, b...)
	}
	a.remove(workOrderFixture, "wo-05", "wo-16", "wo-27")
	docs := where(a.stored(workOrderFixture), live)

	dueAsc := listOrder(t, docs, "dueAt", false)
	if n := len(dueAsc); a.stored(workOrderFixture)[dueAsc[n-1]]["dueAt"] != nil {
		t.Fatalf("expected order %v does not end with the work orders without a due time", dueAsc)
	}
	orders := []struct {
		name    string
		orderBy any
		want    []string
	}{
		{"PRIORITY ASC", orderBy("PRIORITY", "ASC"), listOrder(t, docs, "priority", false)},
		{"PRIORITY (direction defaults to ASC)", map[string]any{"field": "PRIORITY"}, listOrder(t, docs, "priority", false)},
		{"PRIORITY DESC", orderBy("PRIORITY", "DESC"), listOrder(t, docs, "priority", true)},
		{"DUE_AT ASC, no due time last", orderBy("DUE_AT", "ASC"), dueAsc},
		{"DUE_AT DESC, no due time first", orderBy("DUE_AT", "DESC"), listOrder(t, docs, "dueAt", true)},
		{"UPDATED_AT ASC", orderBy("UPDATED_AT", "ASC"), listOrder(t, docs, "updatedAt", false)},
		{"UPDATED_AT DESC", orderBy("UPDATED_AT", "DESC"), listOrder(t, docs, "updatedAt", true)},
	}
	for _, o := range orders {
		t.Run(o.name+": pages split inside tie groups never repeat or skip a work order", func(t *testing.T) {
			t.Parallel()
			list := a.listOf(workOrdersQuery, map[string]any{"orderBy": o.orderBy})
			for _, size := range []int{1, 2, 5, 12} {
				assertIDs(t, fmt.Sprintf("forwards by %d", size), walkForward(t, list, size, len(o.want)), o.want)
				assertIDs(t, fmt.Sprintf("backwards by %d", size), walkBackward(t, list, size, len(o.want)), o.want)
			}
		})
	}
}

func TestReadFilters(t *testing.T) {
	t.Parallel()
	env := newReadEnv(t, server.Config{})
	a := newAPI(t, env, "acme", "alice")

	statuses := []string{"OPEN", "IN_PROGRESS", "DONE", "CANCELLED"}
	assignees := []any{"alice", "bob", nil}
	workOrder := func(i int) doc {
		var due any
		if i%5 != 0 {
			due = at(time.Duration(i%5) * time.Hour)
		}
		return workOrderDoc(fmt.Sprintf("wo-%02d", i), []string{"s-1", "s-2"}[i%2],
			edit{"status", statuses[i%4]}, edit{"assigneeId", assignees[i%3]}, edit{"dueAt", due})
	}
	var first, second []doc
	for i := range 28 {
		if i < 20 {
			first = append(first, workOrder(i))
		} else {
			second = append(second, workOrder(i))
		}
	}
	a.seed(siteFixture, siteDoc("s-1"), siteDoc("s-2"), siteDoc("s-3"))
	a.seed(workOrderFixture, first...)
	a.seed(workOrderFixture, second...)
	a.seed(siteFixture, siteDoc("s-4"))
	a.remove(workOrderFixture, "wo-03", "wo-10", "wo-21")
	a.remove(siteFixture, "s-3")
	orders, sites := a.stored(workOrderFixture), a.stored(siteFixture)
	secondPush := orders["wo-20"]["updatedAt"].(string)
	sitePush := sites["s-4"]["updatedAt"].(string)

	due := func(keep func(time.Time) bool) func(doc) bool {
		return func(d doc) bool { s, ok := d["dueAt"].(string); return ok && keep(parseTime(t, s)) }
	}
	since := func(ts string) func(doc) bool {
		return func(d doc) bool { return !parseTime(t, d["updatedAt"].(string)).Before(parseTime(t, ts)) }
	}
	all := func(preds ...func(doc) bool) func(doc) bool {
		return func(d doc) bool {
			for _, p := range preds {
				if !p(d) {
					return false
				}
			}
			return true
		}
	}
	anything := func(doc) bool { return true }
	t2 := t0.Add(2 * time.Hour)

	cases := []struct {
		name   string
		filter map[string]any
		keep   func(doc) bool
	}{
		{"no filter lists live work orders", nil, live},
		{"includeDeleted false hides deleted work orders", map[string]any{"includeDeleted": false}, live},
		{"includeDeleted true shows deleted work orders too", map[string]any{"includeDeleted": true}, anything},
		{"status matches any of the listed statuses", map[string]any{"status": []string{"OPEN", "DONE"}}, all(live, is("status", "OPEN", "DONE"))},
		{"status with one value", map[string]any{"status": []string{"CANCELLED"}}, all(live, is("status", "CANCELLED"))},
		{"assigneeId", map[string]any{"assigneeId": "alice"}, all(live, is("assigneeId", "alice"))},
		{"siteId", map[string]any{"siteId": "s-2"}, all(live, is("siteId", "s-2"))},
		{"dueBefore is strict and never matches a missing due time", map[string]any{"dueBefore": at(2 * time.Hour)},
			all(live, due(func(d time.Time) bool { return d.Before(t2) }))},
		{"dueAfter includes its own time and never matches a missing due time", map[string]any{"dueAfter": at(2 * time.Hour)},
			all(live, due(func(d time.Time) bool { return !d.Before(t2) }))},
		{"dueAfter and dueBefore make a window", map[string]any{"dueAfter": at(time.Hour), "dueBefore": at(3 * time.Hour)},
			all(live, due(func(d time.Time) bool { return !d.Before(t0.Add(time.Hour)) && d.Before(t0.Add(3*time.Hour)) }))},
		{"updatedSince includes changes at that time", map[string]any{"updatedSince": secondPush}, all(live, since(secondPush))},
		{"updatedSince with includeDeleted shows later deletes", map[string]any{"updatedSince": secondPush, "includeDeleted": true}, since(secondPush)},
		{"filters combine with AND", map[string]any{"status": []string{"OPEN", "IN_PROGRESS"}, "assigneeId": "bob", "siteId": "s-1"},
			all(live, is("status", "OPEN", "IN_PROGRESS"), is("assigneeId", "bob"), is("siteId", "s-1"))},
		{"includeDeleted with siteId", map[string]any{"includeDeleted": true, "siteId": "s-1"}, is("siteId", "s-1")},
		{"a filter nothing matches gives an empty list and a total of 0", map[string]any{"assigneeId": "nobody"}, func(doc) bool { return false }},
	}
	for _, c := range cases {
		t.Run("workOrders: "+c.name, func(t *testing.T) {
			want := where(orders, c.keep)
			if len(want) == 0 && !strings.HasPrefix(c.name, "a filter nothing matches") {
				t.Fatal("no seeded work order matches: the case tests nothing")
			}
			if len(want) == len(orders) && c.filter["includeDeleted"] != true {
				t.Fatal("every seeded work order matches: the case tests nothing")
			}
			list := a.listOf(workOrdersQuery, map[string]any{"filter": c.filter})
			p := list(t, map[string]any{"first": 100})
			assertIDs(t, jsonString(c.filter), p.ids(), listOrder(t, want, "updatedAt", false))
			if p.TotalCount != len(want) {
				t.Fatalf("totalCount = %d, want %d", p.TotalCount, len(want))
			}
			if small := list(t, map[string]any{"first": 2}); small.TotalCount != len(want) {
				t.Fatalf("totalCount of a page of 2 = %d, want every match: %d", small.TotalCount, len(want))
			}
		})
	}

	siteCases := []struct {
		name   string
		filter map[string]any
		want   []string
	}{
		{"no filter lists live sites", nil, []string{"s-1", "s-2", "s-4"}},
		// In updatedAt order: s-3 was deleted after s-4 was written.
		{"includeDeleted true shows deleted sites", map[string]any{"includeDeleted": true}, []string{"s-1", "s-2", "s-4", "s-3"}},
		{"updatedSince", map[string]any{"updatedSince": sitePush}, []string{"s-4"}},
		{"updatedSince with includeDeleted", map[string]any{"updatedSince": sitePush, "includeDeleted": true}, []string{"s-4", "s-3"}},
	}
	for _, c := range siteCases {
		t.Run("sites: "+c.name, func(t *testing.T) {
			p := a.listOf(sitesQuery, map[string]any{"filter": c.filter})(t, map[string]any{"first": 100})
			assertIDs(t, jsonString(c.filter), p.ids(), c.want)
			if p.TotalCount != len(c.want) {
				t.Fatalf("totalCount = %d, want %d", p.TotalCount, len(c.want))
			}
		})
	}
}

func TestReadNestedFields(t *testing.T) {
	t.Parallel()
	env := newReadEnv(t, server.Config{})
	a := newAPI(t, env, "acme", "alice")

	a.seed(siteFixture, siteDoc("s-1", edit{"name", "Harbour"}), siteDoc("s-2"), siteDoc("s-3"))
	a.seed(workOrderFixture,
		workOrderDoc("w-01", "s-1", edit{"dueAt", at(0)}),
		workOrderDoc("w-02", "s-2"),
		workOrderDoc("w-03", "s-missing"),
		workOrderDoc("w-04", "s-1", edit{"dueAt", at(0)}),
		workOrderDoc("w-05", "s-1", edit{"dueAt", at(3 * time.Hour)}, edit{"status", "DONE"}),
		workOrderDoc("w-06", "s-1", edit{"dueAt", nil}),
		workOrderDoc("w-07", "s-1", edit{"dueAt", at(time.Hour)}),
		workOrderDoc("w-08", "s-1", edit{"dueAt", at(time.Hour)}, edit{"status", "DONE"}),
		workOrderDoc("w-09", "s-1", edit{"dueAt", nil}),
		workOrderDoc("w-10", "s-1", edit{"dueAt", at(2 * time.Hour)}),
		workOrderDoc("w-11", "s-3", edit{"dueAt", nil}),
		workOrderDoc("w-12", "s-3", edit{"dueAt", at(time.Hour)}),
	)
	a.seed(checklistItemFixture,
		checklistItemDoc("c-1", "w-01", 3), checklistItemDoc("c-2", "w-01", 1), checklistItemDoc("c-4", "w-01", 2),
		checklistItemDoc("c-3", "w-01", 2), checklistItemDoc("c-5", "w-01", 0),
		checklistItemDoc("c-6", "w-04", 1), checklistItemDoc("c-7", "w-missing", 1),
	)
	a.seed(noteFixture, noteDoc("n-2", "w-01"), noteDoc("n-1", "w-01"), noteDoc("n-4", "w-01"), noteDoc("n-5", "w-04"))
	a.seed(noteFixture, noteDoc("n-3", "w-01"))
	a.remove(siteFixture, "s-2")
	a.remove(workOrderFixture, "w-04")
	a.remove(checklistItemFixture, "c-5")
	a.remove(noteFixture, "n-4")

	t.Run("WorkOrder.site is the site, or null when it is deleted or missing", func(t *testing.T) {
		var data struct {
			WorkOrders struct {
				Edges []struct {
					Node struct {
						ID   string
						Site *struct{ ID, Name string }
					}
				}
			}
		}
		a.read(`{ workOrders(first: 100) { edges { node { id site { id name } } } } }`, nil, &data)
		got := map[string]any{}
		for _, e := range data.WorkOrders.Edges {
			if e.Node.Site == nil {
				got[e.Node.ID] = nil
			} else {
				got[e.Node.ID] = e.Node.Site.ID + "/" + e.Node.Site.Name
			}
		}
		for id, want := range map[string]any{"w-01": "s-1/Harbour", "w-02": nil, "w-03": nil, "w-11": "s-3/Site s-3"} {
			if g, ok := got[id]; !ok || g != want {
				t.Fatalf("%s.site = %v, want %v (all: %v)", id, g, want, got)
			}
		}
	})

	t.Run("WorkOrder.checklist is ordered by position, ties by id, without deleted items; notes are live notes, oldest change first", func(t *testing.T) {
		type items struct {
			Checklist []struct {
				ID        string
				WorkOrder *struct{ ID string }
			}
			Notes []struct {
				ID        string
				WorkOrder *struct{ ID string }
			}
		}
		check := func(t *testing.T, id string, it items, wantItems, wantNotes []string) {
			t.Helper()
			var gotItems, gotNotes []string
			for _, c := range it.Checklist {
				gotItems = append(gotItems, c.ID)
				if c.WorkOrder == nil || c.WorkOrder.ID != id {
					t.Fatalf("%s.checklist[%s].workOrder = %v, want %s", id, c.ID, c.WorkOrder, id)
				}
			}
			for _, n := range it.Notes {
				gotNotes = append(gotNotes, n.ID)
				if n.WorkOrder == nil || n.WorkOrder.ID != id {
					t.Fatalf("%s.notes[%s].workOrder = %v, want %s", id, n.ID, n.WorkOrder, id)
				}
			}
			assertIDs(t, id+".checklist", gotItems, wantItems)
			assertIDs(t, id+".notes", gotNotes, wantNotes)
			if it.Checklist == nil || it.Notes == nil {
				t.Fatalf("%s: checklist or notes is null, want a list", id)
			}
		}
		const selection = `checklist { id workOrder { id } } notes { id workOrder { id } }`
		var one struct{ Node items }
		a.read(`{ node(id: "w-01") { ... on WorkOrder { `+selection+` } } }`, nil, &one)
		check(t, "w-01", one.Node, []string{"c-2", "c-3", "c-4", "c-1"}, []string{"n-1", "n-2", "n-3"})

		// The same through a list, where the loaders batch every work order.
		var many struct {
			WorkOrders struct {
				Edges []struct {
					Node struct {
						ID string
						items
					}
				}
			}
		}
		a.read(`{ workOrders(first: 20) { edges { node { id `+selection+` } } } }`, nil, &many)
		for _, e := range many.WorkOrders.Edges {
			switch e.Node.ID {
			case "w-01":
				check(t, "w-01", e.Node.items, []string{"c-2", "c-3", "c-4", "c-1"}, []string{"n-1", "n-2", "n-3"})
			default:
				check(t, e.Node.ID, e.Node.items, nil, nil)
			}
		}
	})

	t.Run("ChecklistItem.workOrder and Note.workOrder are null when the work order is deleted or missing", func(t *testing.T) {
		var data map[string]*struct{ WorkOrder *struct{ ID string } }
		a.read(`{
  c1: node(id: "c-1") { ... on ChecklistItem { workOrder { id } } }
  c6: node(id: "c-6") { ... on ChecklistItem { workOrder { id } } }
  c7: node(id: "c-7") { ... on ChecklistItem { workOrder { id } } }
  n1: node(id: "n-1") { ... on Note { workOrder { id } } }
  n5: node(id: "n-5") { ... on Note { workOrder { id } } }
}`, nil, &data)
		for alias, want := range map[string]string{"c1": "w-01", "c6": "", "c7": "", "n1": "w-01", "n5": ""} {
			n := data[alias]
			if n == nil {
				t.Fatalf("%s: node is null", alias)
			}
			switch {
			case want == "" && n.WorkOrder != nil:
				t.Fatalf("%s.workOrder = %s, want null", alias, n.WorkOrder.ID)
			case want != "" && (n.WorkOrder == nil || n.WorkOrder.ID != want):
				t.Fatalf("%s.workOrder = %v, want %s", alias, n.WorkOrder, want)
			}
		}
	})

	orders := a.stored(workOrderFixture)
	ofSite := func(site string, keep func(doc) bool) []string {
		return listOrder(t, where(orders, func(d doc) bool { return d["siteId"] == site && keep(d) }), "dueAt", false)
	}
	s1 := ofSite("s-1", live)
	if len(s1) != 7 {
		t.Fatalf("site s-1 has %v live work orders, want 7", s1)
	}

	for _, size := range []int{1, 2, 3, 7, 10} {
		t.Run(fmt.Sprintf("Site.workOrders pages by %d through one site's work orders by due time", size), func(t *testing.T) {
			list := a.listOf(siteWorkOrdersQuery, map[string]any{"id": "s-1"})
			assertIDs(t, "s-1 work orders", walkForward(t, list, size, len(s1)), s1)
		})
	}
	t.Run("Site.workOrders with a filter pages through the matches only", func(t *testing.T) {
		filter := map[string]any{"status": []string{"DONE"}, "includeDeleted": true}
		list := a.listOf(siteWorkOrdersQuery, map[string]any{"id": "s-1", "filter": filter})
		want := ofSite("s-1", is("status", "DONE"))
		assertIDs(t, "done work orders of s-1", walkForward(t, list, 1, len(want)), want)
	})

	t.Run("Site.workOrders of every site on a page has its own first page and totalCount", func(t *testing.T) {
		for _, c := range []struct {
			first  int
			filter map[string]any
			keep   func(doc) bool
		}{
			{2, nil, live},
			{3, map[string]any{"dueBefore": at(2 * time.Hour)}, func(d doc) bool {
				s, ok := d["dueAt"].(string)
				return live(d) && ok && parseTime(t, s).Before(t0.Add(2*time.Hour))
			}},
			{10, map[string]any{"includeDeleted": true}, func(doc) bool { return true }},
			{0, nil, live},
		} {
			var data struct {
				Sites struct {
					Edges []struct {
						Node struct {
							ID         string
							WorkOrders connJSON
						}
					}
				}
			}
			a.read(`query($first: Int, $filter: WorkOrderFilter) { sites(first: 10) { edges { node { id
  workOrders(first: $first, filter: $filter) { `+connSelection+` } } } } }`, map[string]any{"first": c.first, "filter": c.filter}, &data)
			var sites []string
			for _, e := range data.Sites.Edges {
				sites = append(sites, e.Node.ID)
				all := ofSite(e.Node.ID, c.keep)
				page := all[:min(c.first, len(all))]
				got := e.Node.WorkOrders
				what := fmt.Sprintf("%s.workOrders(first: %d, filter: %s)", e.Node.ID, c.first, jsonString(c.filter))
				assertIDs(t, what, got.ids(), page)
				checkPage(t, got, c.first, len(all))
				// first: 0's hasNextPage is checked by TestReadPaging.
				if (c.first > 0 && got.PageInfo.HasNextPage != (len(all) > c.first)) || got.PageInfo.HasPreviousPage {
					t.Fatalf("%s: pageInfo %s with %d matches", what, jsonString(got.PageInfo), len(all))
				}
			}
			assertIDs(t, "sites", sites, []string{"s-1", "s-3"})
		}
	})
}

// is keeps documents whose field holds one of values.
func is(field string, values ...any) func(doc) bool {
	return func(d doc) bool { return slices.Contains(values, d[field]) }
}

// batchRuns is how often each batching measurement repeats.
const batchRuns = 40

// splitByIDLookups separates lookups by id (which the document cache may
// answer without a statement) from the other statements.
func splitByIDLookups(stmts []string) (others, byID []string) {
	for _, s := range stmts {
		if strings.Contains(s, " AND id = ANY(") {
			byID = append(byID, s)
		} else {
			others = append(others, s)
		}
	}
	return others, byID
}

func TestReadNestedFieldsAreBatched(t *testing.T) {
	t.Parallel()
	env := newReadEnv(t, server.Config{})

	t.Run("a page of work orders with site, checklist and notes takes the same few statements for 10 as for 100", func(t *testing.T) {
		a := newAPI(t, env, tenantOf(t), "alice")
		var sites, orders, items, notes []doc
		for s := range 10 {
			sites = append(sites, siteDoc(fmt.Sprintf("site-%02d", s)))
		}
		for w := range 100 {
			id := fmt.Sprintf("wo-%03d", w)
			orders = append(orders, workOrderDoc(id, fmt.Sprintf("site-%02d", w%10)))
			for i := range 3 {
				items = append(items, checklistItemDoc(fmt.Sprintf("%s-c%d", id, i), id, i))
			}
			for n := range 2 {
				notes = append(notes, noteDoc(fmt.Sprintf("%s-n%d", id, n), id))
			}
		}
		a.seed(siteFixture, sites...)
		a.seed(workOrderFixture, orders...)
		a.seed(checklistItemFixture, items...)
		a.seed(noteFixture, notes...)

		// Every run must take the same statements: batching that depends on
		// timing shows up as an occasional extra statement, so each size runs
		// many times. Lookups by id (WorkOrder.site) may be answered by the
		// document cache instead of a statement, so they are counted apart:
		// at most one per request.
		const query = `query($n: Int) { workOrders(first: $n) { edges { node { title site { name } checklist { label done } notes { body } } } } }`
		counts := map[string]int{} // "first: n sent k list statements" → runs
		total := map[int]int{}     // statements per request → runs
		for _, n := range []int{10, 100} {
			for range batchRuns {
				data, stmts := a.countStatements(query, map[string]any{"n": n})
				var got struct {
					WorkOrders struct {
						Edges []struct {
							Node struct {
								Title     string
								Site      *struct{ Name string }
								Checklist []any
								Notes     []any
							}
						}
					}
				}
				decodeInto(t, data, &got)
				if len(got.WorkOrders.Edges) != n {
					t.Fatalf("first: %d returned %d work orders", n, len(got.WorkOrders.Edges))
				}
				for _, e := range got.WorkOrders.Edges {
					if e.Node.Site == nil || len(e.Node.Checklist) != 3 || len(e.Node.Notes) != 2 {
						t.Fatalf("work order %q: site %v, %d checklist items, %d notes; want a site, 3 and 2", e.Node.Title, e.Node.Site, len(e.Node.Checklist), len(e.Node.Notes))
					}
				}
				lists, byID := splitByIDLookups(stmts)
				counts[fmt.Sprintf("first: %d sent %d list statements", n, len(lists))]++
				if len(stmts) > 5 || len(byID) > 1 {
					t.Errorf("first: %d sent %d statements (%d by id), want at most 5 (list, sites, checklists, notes) with at most one by id:\n%s",
						n, len(stmts), len(byID), strings.Join(stmts, "\n"))
				}
				total[len(stmts)]++
			}
		}
		t.Logf("runs: %v; statements per request (by-id lookups included) → runs: %v", counts, total)
		// The loaders batch what arrives within a short window, so a run
		// whose goroutine the machine starves past that window may send
		// one list statement more (seen once in 40 runs on a loaded CI
		// machine); the bound of 5 above still holds, where one statement
		// per item would send hundreds. Both sizes must send the same
		// number of list statements in nearly every run.
		for _, n := range []int{10, 100} {
			same := counts[fmt.Sprintf("first: %d sent 3 list statements", n)]
			if same < batchRuns*9/10 {
				t.Fatalf("first: %d sent the three list statements (work orders, checklists, notes) in %d of %d runs; runs: %v", n, same, batchRuns, counts)
			}
		}
	})

	t.Run("sites with their work orders and totals take the same few statements for 2, 10 and 50 sites", func(t *testing.T) {
		a := newAPI(t, env, tenantOf(t), "alice")
		addSites := func(from, to int) {
			var sites, orders []doc
			for s := from; s < to; s++ {
				site := fmt.Sprintf("site-%02d", s)
				sites = append(sites, siteDoc(site))
				for w := range 6 {
					orders = append(orders, workOrderDoc(fmt.Sprintf("%s-wo%d", site, w), site))
				}
			}
			a.seed(siteFixture, sites...)
			a.seed(workOrderFixture, orders...)
		}
		const query = `query($n: Int) { sites(first: $n) { edges { node { workOrders(first: 5) { totalCount edges { node { id } } } } } } }`
		counts := map[string]int{} // "n sites sent k statements" → runs
		count := func(first, sites int) {
			for range batchRuns {
				data, stmts := a.countStatements(query, map[string]any{"n": first})
				var got struct {
					Sites struct {
						Edges []struct{ Node struct{ WorkOrders connJSON } }
					}
				}
				decodeInto(t, data, &got)
				if len(got.Sites.Edges) != sites {
					t.Fatalf("%d sites listed, want %d", len(got.Sites.Edges), sites)
				}
				for _, e := range got.Sites.Edges {
					if w := e.Node.WorkOrders; w.TotalCount != 6 || len(w.Edges) != 5 {
						t.Fatalf("a site's workOrders: totalCount %d, %d edges; want 6 and 5", w.TotalCount, len(w.Edges))
					}
				}
				counts[fmt.Sprintf("%d sites sent %d statements", sites, len(stmts))]++
				if len(stmts) > 4 {
					t.Errorf("%d sites sent %d statements, want at most 4 (sites, work order pages, counts):\n%s", sites, len(stmts), strings.Join(stmts, "\n"))
				}
			}
		}
		addSites(0, 2)
		count(10, 2)
		addSites(2, 10)
		count(10, 10)
		addSites(10, 50)
		count(50, 50)
		t.Logf("runs: %v", counts)
		// As above: a goroutine starved past the batching window on a busy
		// machine can cost one statement more in a rare run (the bound of 4
		// still holds); the three sizes must send the same statements in
		// nearly every run.
		for _, sites := range []int{2, 10, 50} {
			if same := counts[fmt.Sprintf("%d sites sent 3 statements", sites)]; same < batchRuns*9/10 {
				t.Fatalf("%d sites sent 3 statements in %d of %d runs; 2, 10 and 50 sites must send the same statements; runs: %v", sites, same, batchRuns, counts)
			}
		}
	})
}

func TestReadTenantIsolation(t *testing.T) {
	t.Parallel()
	env := newReadEnv(t, server.Config{})
	acme := newAPI(t, env, "acme", "alice")
	globex := newAPI(t, env, "globex", "alice") // the same user id in another tenant

	// acme's documents; some refer to globex's ids, which acme does not have.
	acme.seed(siteFixture, siteDoc("s-acme"), siteDoc("s-globex"))
	acme.seed(workOrderFixture, workOrderDoc("w-acme", "s-acme"), workOrderDoc("w-acme-on-globex-site", "s-globex"),
		workOrderDoc("w-acme-deleted", "s-acme"), workOrderDoc("w-globex", "s-acme"))
	acme.seed(checklistItemFixture, checklistItemDoc("c-acme", "w-acme", 1), checklistItemDoc("c-acme-on-globex", "w-globex", 1))
	acme.seed(noteFixture, noteDoc("n-acme", "w-acme"), noteDoc("n-acme-on-globex", "w-globex"))
	acme.remove(workOrderFixture, "w-acme-deleted")
	// globex's documents refer to acme's ids; a few share acme's ids.
	globex.seed(siteFixture, siteDoc("s-globex"))
	globex.seed(workOrderFixture, workOrderDoc("w-globex", "s-globex"), workOrderDoc("w-globex-on-acme-site", "s-acme"))
	globex.seed(checklistItemFixture, checklistItemDoc("c-globex-on-acme", "w-acme", 1))

	t.Run("another tenant's documents are not found by node: null, no error", func(t *testing.T) {
		for _, id := range []string{"s-acme", "w-acme", "c-acme", "n-acme", "w-acme-deleted", "w-acme-on-globex-site"} {
			data, errs := globex.do(`query($id: ID!) { node(id: $id) { __typename id } }`, map[string]any{"id": id})
			if len(errs) != 0 || data == nil || data["node"] != nil {
				t.Fatalf("globex node(%q): data %s, errors %s; want node null and no errors", id, jsonString(data), jsonString(errs))
			}
		}
	})

	t.Run("a deleted document is not found by node: null, no error", func(t *testing.T) {
		data, errs := acme.do(`{ node(id: "w-acme-deleted") { id } }`, nil)
		if len(errs) != 0 || data == nil || data["node"] != nil {
			t.Fatalf("node of a deleted work order: data %s, errors %s; want null", jsonString(data), jsonString(errs))
		}
	})

	t.Run("an id both tenants use finds each tenant's own document", func(t *testing.T) {
		var data struct{ Node struct{ SiteID string } }
		globex.read(`{ node(id: "w-globex") { ... on WorkOrder { siteId } } }`, nil, &data)
		if data.Node.SiteID != "s-globex" {
			t.Fatalf("globex's w-globex has siteId %q, want s-globex (acme's says s-acme)", data.Node.SiteID)
		}
	})

	t.Run("lists, totals and nested fields hold only the caller's documents", func(t *testing.T) {
		var data struct {
			WorkOrders struct {
				TotalCount int
				Edges      []struct {
					Node struct {
						ID        string
						Site      *struct{ ID string }
						Checklist []struct{ ID string }
						Notes     []struct{ ID string }
					}
				}
			}
			Sites struct {
				TotalCount int
				Edges      []struct {
					Node struct {
						ID         string
						WorkOrders struct {
							TotalCount int
							Edges      []struct{ Node struct{ ID string } }
						}
					}
				}
			}
		}
		globex.read(`{
  workOrders(first: 50, filter: {includeDeleted: true}) { totalCount edges { node { id site { id } checklist { id } notes { id } } } }
  sites(first: 10, filter: {includeDeleted: true}) { totalCount edges { node { id workOrders(first: 10) { totalCount edges { node { id } } } } } }
}`, nil, &data)
		got := map[string]string{}
		for _, e := range data.WorkOrders.Edges {
			n := e.Node
			got[n.ID] = fmt.Sprintf("site=%v checklist=%d notes=%d", n.Site != nil, len(n.Checklist), len(n.Notes))
		}
		want := map[string]string{
			"w-globex":              "site=true checklist=0 notes=0",
			"w-globex-on-acme-site": "site=false checklist=0 notes=0", // s-acme is acme's
		}
		if jsonString(got) != jsonString(want) || data.WorkOrders.TotalCount != 2 {
			t.Fatalf("globex's work orders: %v (totalCount %d), want %v (2)", got, data.WorkOrders.TotalCount, want)
		}
		if s := data.Sites; s.TotalCount != 1 || len(s.Edges) != 1 || s.Edges[0].Node.ID != "s-globex" {
			t.Fatalf("globex's sites: %s, want only s-globex", jsonString(s))
		}
		// acme's w-acme-on-globex-site has siteId s-globex: not globex's.
		if w := data.Sites.Edges[0].Node.WorkOrders; w.TotalCount != 1 || len(w.Edges) != 1 || w.Edges[0].Node.ID != "w-globex" {
			t.Fatalf("s-globex.workOrders: %s, want only w-globex", jsonString(w))
		}
	})

	t.Run("filters and references by another tenant's ids find only the caller's documents", func(t *testing.T) {
		p := globex.listOf(workOrdersQuery, map[string]any{"filter": map[string]any{"siteId": "s-acme", "includeDeleted": true}})(t, nil)
		if len(p.Edges) != 1 || p.Edges[0].Node.ID != "w-globex-on-acme-site" || p.TotalCount != 1 {
			t.Fatalf("globex's work orders on site s-acme: %v (totalCount %d), want only its own w-globex-on-acme-site", p.ids(), p.TotalCount)
		}
		var data struct {
			Node struct{ WorkOrder *struct{ ID string } }
		}
		globex.read(`{ node(id: "c-globex-on-acme") { ... on ChecklistItem { workOrder { id } } } }`, nil, &data)
		if data.Node.WorkOrder != nil {
			t.Fatalf("globex's checklist item on acme's w-acme has workOrder %q, want null", data.Node.WorkOrder.ID)
		}
	})
}

func TestReadNodeTypenames(t *testing.T) {
	t.Parallel()
	env := newReadEnv(t, server.Config{})
	a := newAPI(t, env, "acme", "alice")
	a.seed(siteFixture, siteDoc("the-site"))
	a.seed(workOrderFixture, workOrderDoc("the-work-order", "the-site"))
	a.seed(checklistItemFixture, checklistItemDoc("the-item", "the-work-order", 1))
	a.seed(noteFixture, noteDoc("the-note", "the-work-order"))

	const query = `query($id: ID!) { node(id: $id) { __typename id
  ... on Site { name } ... on WorkOrder { title } ... on ChecklistItem { label } ... on Note { body } } }`
	for _, c := range []struct{ id, typename, field, value string }{
		{"the-site", "Site", "name", "Site the-site"},
		{"the-work-order", "WorkOrder", "title", "Fix pump the-work-order"},
		{"the-item", "ChecklistItem", "label", "Check valve the-item"},
		{"the-note", "Note", "body", "Gate code 1234 (the-note)"},
	} {
		t.Run("node of a "+c.typename+" is a "+c.typename, func(t *testing.T) {
			var data struct{ Node map[string]any }
			a.read(query, map[string]any{"id": c.id}, &data)
			want := map[string]any{"__typename": c.typename, "id": c.id, c.field: c.value}
			if jsonString(data.Node) != jsonString(want) {
				t.Fatalf("node(%q) = %s, want %s", c.id, jsonString(data.Node), jsonString(want))
			}
		})
	}
	t.Run("node of an unknown id is null", func(t *testing.T) {
		var data struct{ Node map[string]any }
		a.read(query, map[string]any{"id": "nothing-has-this-id"}, &data)
		if data.Node != nil {
			t.Fatalf("node = %s, want null", jsonString(data.Node))
		}
	})
}

func TestReadLimits(t *testing.T) {
	t.Parallel()
	env := newReadEnv(t, server.Config{})
	a := newAPI(t, env, "acme", "alice")
	a.seed(siteFixture, siteDoc("s-1"))
	a.seed(workOrderFixture, workOrderDoc("w-1", "s-1"))

	// gqlgen answers COMPLEXITY_LIMIT_EXCEEDED with HTTP 200 and the
	// server's DEPTH_LIMIT_EXCEEDED (a protocol error) with 422; either way
	// the operation does not run.
	refused := func(t *testing.T, a *api, query, code string) {
		t.Helper()
		rec := postGraphQL(t, a.handler, a.authorization, query, nil)
		var resp gqlResponse
		decodeInto(t, json.RawMessage(rec.Body.Bytes()), &resp)
		if (rec.Code != http.StatusOK && rec.Code != http.StatusUnprocessableEntity) || len(resp.Errors) != 1 || resp.Errors[0].code() != code || resp.Data != nil {
			t.Fatalf("HTTP %d, body %s; want one %s and no data", rec.Code, rec.Body, code)
		}
	}
	accepted := func(t *testing.T, a *api, query string, vars map[string]any) {
		t.Helper()
		status, errs := a.postStatus(query, vars)
		if status != http.StatusOK || len(errs) != 0 {
			t.Fatalf("HTTP %d, errors %s; want 200 and no errors", status, jsonString(errs))
		}
	}

	t.Run("a query costing more than the complexity limit is refused", func(t *testing.T) {
		for _, q := range []string{
			`{ workOrders(first: 500) { edges { node { site { workOrders(first: 500) { edges { node { id } } } } } } } }`,
			`{ sites(first: 500) { edges { node { workOrders(first: 500) { totalCount } } } } }`,
			`{ a: workOrders(first: 500) { edges { node { site { workOrders(first: 50) { edges { node { checklist { id } } } } } } } } }`,
			`{ node(id: "s-1") { ... on Site { workOrders(first: 500) { edges { node { site { workOrders(first: 500) { totalCount } } } } } } } }`,
		} {
			refused(t, a, q, "COMPLEXITY_LIMIT_EXCEEDED")
		}
	})

	t.Run("the largest page the schema allows, of work orders with their own fields, fits the complexity limit", func(t *testing.T) {
		// schema/read.graphqls: "Pages hold at most 500".
		accepted(t, a, `{ workOrders(first: 500) { totalCount pageInfo { hasNextPage endCursor }
  edges { cursor node { id siteId title description status priority assigneeId dueAt updatedAt deleted } } } }`, nil)
	})

	t.Run("the same queries with small pages are accepted", func(t *testing.T) {
		for _, q := range []string{
			`{ workOrders(first: 10) { edges { node { site { workOrders(first: 10) { edges { node { id } } } } } } } }`,
			`{ sites(first: 10) { edges { node { workOrders(first: 10) { totalCount } } } } }`,
			`{ workOrders(first: 20) { edges { node { checklist { id } notes { id } } } } }`,
		} {
			accepted(t, a, q, nil)
		}
	})

	t.Run("missing or null first and last are priced at the default page, without a panic", func(t *testing.T) {
		for _, q := range []string{
			`{ workOrders { totalCount edges { node { id site { id } } } } }`,
			`{ sites { edges { node { id workOrders { totalCount } } } } }`,
			`{ sites(last: 2) { edges { node { id } } } workOrders(last: 3) { edges { cursor } } }`,
			`{ node(id: "s-1") { ... on Site { workOrders(after: null) { edges { node { id } } } } } }`,
		} {
			accepted(t, a, q, nil)
		}
		accepted(t, a, `query($n: Int) { workOrders(first: $n, last: $n) { totalCount } sites(first: $n) { totalCount } }`, map[string]any{"n": nil})
	})

	t.Run("out-of-range page sizes are the client's error, not a server failure", func(t *testing.T) {
		for _, q := range []string{
			`{ workOrders(first: -5) { totalCount } }`,
			`{ workOrders(first: 2147483647) { totalCount } }`,
			`{ node(id: "s-1") { ... on Site { workOrders(first: -1) { totalCount } } } }`,
			`{ node(id: "s-1") { ... on Site { workOrders(first: 501) { totalCount } } } }`,
		} {
			status, errs := a.postStatus(q, nil)
			if status != http.StatusOK || len(errs) != 1 || errs[0].code() != "BAD_USER_INPUT" {
				t.Fatalf("%s: HTTP %d, errors %s; want one BAD_USER_INPUT", q, status, jsonString(errs))
			}
		}
	})

	t.Run("a query nested deeper than the depth limit is refused", func(t *testing.T) {
		shallow := newReadEnv(t, server.Config{MaxDepth: 4})
		b := newAPI(t, shallow, "acme", "alice")
		accepted(t, b, `{ workOrders { edges { node { id } } } }`, nil)
		accepted(t, b, `{ node(id: "x") { ... on WorkOrder { site { workOrders { totalCount } } } } }`, nil)
		for _, q := range []string{
			`{ workOrders { edges { node { site { id } } } } }`,
			`{ workOrders { edges { ...E } } } fragment E on WorkOrderEdge { node { site { id } } }`,
			`{ node(id: "x") { ... on WorkOrder { site { workOrders { edges { cursor } } } } } }`,
		} {
			refused(t, b, q, "DEPTH_LIMIT_EXCEEDED")
		}
	})
}

func TestReadAutomaticPersistedQueries(t *testing.T) {
	t.Parallel()
	env := newReadEnv(t, server.Config{})
	a := newAPI(t, env, "acme", "alice")
	a.seed(workOrderFixture, workOrderDoc("w-1", "s-1"), workOrderDoc("w-2", "s-1"))

	const query = `query PersistedWorkOrders { workOrders(first: 10) { totalCount edges { node { id } } } }`
	sum := sha256.Sum256([]byte(query))
	hash := hex.EncodeToString(sum[:])
	works := func(t *testing.T, what string, resp gqlResponse) {
		t.Helper()
		if resp.status != http.StatusOK || len(resp.Errors) != 0 {
			t.Fatalf("%s: HTTP %d, errors %s", what, resp.status, jsonString(resp.Errors))
		}
		var data struct{ WorkOrders connJSON }
		decodeInto(t, resp.Data, &data)
		if data.WorkOrders.TotalCount != 2 || len(data.WorkOrders.Edges) != 2 {
			t.Fatalf("%s: data %s, want both work orders", what, jsonString(resp.Data))
		}
	}
	notFound := func(t *testing.T, what string, resp gqlResponse) {
		t.Helper()
		if len(resp.Errors) != 1 || resp.Errors[0].Message != "PersistedQueryNotFound" || resp.Errors[0].code() != "PERSISTED_QUERY_NOT_FOUND" || resp.Data != nil {
			t.Fatalf("%s: HTTP %d, data %s, errors %s; want one PersistedQueryNotFound (PERSISTED_QUERY_NOT_FOUND)", what, resp.status, jsonString(resp.Data), jsonString(resp.Errors))
		}
	}

	t.Run("a hash the server never saw is PersistedQueryNotFound", func(t *testing.T) {
		sum := sha256.Sum256([]byte("query NeverSent { __typename }"))
		notFound(t, "unknown hash", a.send(t.Context(), apqBody("", hex.EncodeToString(sum[:]))))
	})

	t.Run("hash alone is not found, then the query with its hash runs, then the hash alone runs", func(t *testing.T) {
		ctx := t.Context()
		notFound(t, "hash of a query never sent", a.send(ctx, apqBody("", hash)))
		works(t, "query with its hash", a.send(ctx, apqBody(query, hash)))
		works(t, "hash alone, right after the query was sent", a.send(ctx, apqBody("", hash)))
		works(t, "hash alone, again", a.send(ctx, apqBody("", hash)))
		works(t, "hash alone over GET", a.sendGET(url.Values{"extensions": {jsonString(apqBody("", hash)["extensions"])}}))
	})

	t.Run("a hash works on the very next request after its query", func(t *testing.T) {
		// A query that needs no database is answered at once, so the next
		// request follows the registration immediately, as an APQ client's
		// next use of the hash may.
		for i := range 20 {
			q := fmt.Sprintf("query Cheap%d { __typename }", i)
			sum := sha256.Sum256([]byte(q))
			h := hex.EncodeToString(sum[:])
			if resp := a.send(t.Context(), apqBody(q, h)); len(resp.Errors) != 0 {
				t.Fatalf("registering %q: %s", q, jsonString(resp.Errors))
			}
			if resp := a.send(t.Context(), apqBody("", h)); len(resp.Errors) != 0 {
				t.Fatalf("hash of %q right after it was sent: errors %s; the persisted query was not stored yet", q, jsonString(resp.Errors))
			}
		}
	})

	t.Run("a query with a wrong hash is refused and not stored", func(t *testing.T) {
		ctx := t.Context()
		other := `{ workOrders(first: 1) { totalCount } }`
		wrong := strings.Repeat("0", 64)
		resp := a.send(ctx, apqBody(other, wrong))
		if len(resp.Errors) != 1 || !strings.Contains(resp.Errors[0].Message, "hash") || resp.Data != nil {
			t.Fatalf("query with a wrong hash: HTTP %d, data %s, errors %s; want one error about the hash", resp.status, jsonString(resp.Data), jsonString(resp.Errors))
		}
		if code := resp.Errors[0].code(); code != "BAD_USER_INPUT" {
			t.Fatalf("query with a wrong hash: code %q, want BAD_USER_INPUT", code)
		}
		notFound(t, "the wrong hash was not stored", a.send(ctx, apqBody("", wrong)))
		resp = a.send(ctx, apqBody(query, hash[:63]+"x"))
		if len(resp.Errors) != 1 || resp.Data != nil {
			t.Fatalf("query with a hash one character off: data %s, errors %s; want one error", jsonString(resp.Data), jsonString(resp.Errors))
		}
	})
}

func TestReadIntrospection(t *testing.T) {
	t.Parallel()
	const query = `{
  connection: __type(name: "WorkOrderConnection") { fields { name } }
  node: __type(name: "Node") { kind possibleTypes { name } }
  order: __type(name: "WorkOrderOrderField") { enumValues { name } }
  query: __type(name: "Query") { fields { name args { name } } }
  site: __type(name: "Site") { fields { name args { name } } }
}`
	t.Run("with introspection on, the read types are described", func(t *testing.T) {
		env := testenv.New(t, testenv.Options{Server: server.Config{Introspection: true}})
		a := newAPI(t, env, "acme", "alice")
		type field struct {
			Name string
			Args []struct{ Name string }
		}
		var data struct {
			Connection struct{ Fields []field }
			Node       struct {
				Kind          string
				PossibleTypes []struct{ Name string }
			}
			Order struct{ EnumValues []struct{ Name string } }
			Query struct{ Fields []field }
			Site  struct{ Fields []field }
		}
		a.read(query, nil, &data)
		names := func(fields []field) []string {
			var out []string
			for _, f := range fields {
				out = append(out, f.Name)
			}
			slices.Sort(out)
			return out
		}
		argsOf := func(fields []field, name string) []string {
			for _, f := range fields {
				if f.Name == name {
					var out []string
					for _, a := range f.Args {
						out = append(out, a.Name)
					}
					return out
				}
			}
			t.Fatalf("no field %q in %v", name, names(fields))
			return nil
		}
		assertIDs(t, "WorkOrderConnection fields", names(data.Connection.Fields), []string{"edges", "pageInfo", "totalCount"})
		var possible []string
		for _, p := range data.Node.PossibleTypes {
			possible = append(possible, p.Name)
		}
		slices.Sort(possible)
		if data.Node.Kind != "INTERFACE" {
			t.Fatalf("Node is a %s, want INTERFACE", data.Node.Kind)
		}
		assertIDs(t, "Node's types", possible, []string{"ChecklistItem", "Note", "Site", "WorkOrder"})
		var values []string
		for _, v := range data.Order.EnumValues {
			values = append(values, v.Name)
		}
		assertIDs(t, "WorkOrderOrderField", values, []string{"DUE_AT", "PRIORITY", "UPDATED_AT"})
		assertIDs(t, "Query.workOrders arguments", argsOf(data.Query.Fields, "workOrders"), []string{"first", "after", "last", "before", "filter", "orderBy"})
		assertIDs(t, "Query.sites arguments", argsOf(data.Query.Fields, "sites"), []string{"first", "after", "last", "before", "filter"})
		assertIDs(t, "Query.node arguments", argsOf(data.Query.Fields, "node"), []string{"id"})
		assertIDs(t, "Site.workOrders arguments", argsOf(data.Site.Fields, "workOrders"), []string{"first", "after", "filter"})
	})
	t.Run("with introspection off, it is refused", func(t *testing.T) {
		env := testenv.New(t, testenv.Options{})
		a := newAPI(t, env, "acme", "alice")
		if _, errs := a.do(query, nil); len(errs) == 0 {
			t.Fatal("introspection answered with introspection off")
		}
	})
}
