package resolvers_test

// Helpers of the read API tests (read_test.go): documents to seed, Relay
// connections as JSON, the order the server must list documents in, page
// walks that check pageInfo on every page, and a pgx tracer that counts the
// SQL statements one request sends.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/server"
	"github.com/tidemark/tidemark/testenv"
)

// --- counting statements -------------------------------------------------

// statementLog records the SQL statements sent on behalf of one request.
type statementLog struct {
	mu  sync.Mutex
	sql []string
}

func (l *statementLog) add(sql string) {
	l.mu.Lock()
	l.sql = append(l.sql, strings.Join(strings.Fields(sql), " "))
	l.mu.Unlock()
}

func (l *statementLog) statements() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.sql)
}

type statementLogKey struct{}

// requestTracer counts a statement into the log its context carries. The
// request's context reaches every statement it causes (dataloaders read
// with the context of a batch's first load), while the environment's
// background work (head polling) and other tests' requests carry no log:
// only the request under test is counted, however busy the pool is.
type requestTracer struct{}

func (requestTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if l, ok := ctx.Value(statementLogKey{}).(*statementLog); ok {
		l.add(data.SQL)
	}
	return ctx
}

func (requestTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// newReadEnv is an environment whose pool counts statements per request.
func newReadEnv(tb testing.TB, cfg server.Config) *testenv.Env {
	tb.Helper()
	return testenv.New(tb, testenv.Options{Pool: db.PoolConfig{Tracer: requestTracer{}}, Server: cfg})
}

// --- raw requests ----------------------------------------------------------

// gqlResponse is one HTTP answer of the GraphQL endpoint.
type gqlResponse struct {
	status int
	Data   map[string]any `json:"data"`
	Errors []gqlError     `json:"errors"`
}

// send posts body as the client's JSON request with ctx as the request's
// context, and decodes the answer whatever its status.
func (a *api) send(ctx context.Context, body map[string]any) gqlResponse {
	a.tb.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		a.tb.Fatal(err)
	}
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/graphql", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", a.authorization)
	return a.serve(req)
}

// sendGET sends the operation as a GET request with the given URL parameters.
func (a *api) sendGET(params url.Values) gqlResponse {
	a.tb.Helper()
	req := httptest.NewRequest(http.MethodGet, "/graphql?"+params.Encode(), nil)
	req.Header.Set("Authorization", a.authorization)
	return a.serve(req)
}

func (a *api) serve(req *http.Request) gqlResponse {
	a.tb.Helper()
	rec := httptest.NewRecorder()
	a.handler.ServeHTTP(rec, req)
	resp := gqlResponse{status: rec.Code}
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		a.tb.Fatalf("decode %q (HTTP %d): %v", rec.Body, rec.Code, err)
	}
	return resp
}

// countStatements runs one operation, which must succeed, and returns its
// data and the SQL statements it sent.
func (a *api) countStatements(query string, vars map[string]any) (map[string]any, []string) {
	a.tb.Helper()
	log := &statementLog{}
	resp := a.send(context.WithValue(context.Background(), statementLogKey{}, log), map[string]any{"query": query, "variables": vars})
	if resp.status != http.StatusOK || len(resp.Errors) > 0 {
		a.tb.Fatalf("HTTP %d, errors %s", resp.status, jsonString(resp.Errors))
	}
	return resp.Data, log.statements()
}

// read runs one operation, which must succeed, and decodes its data into out.
func (a *api) read(query string, vars map[string]any, out any) {
	a.tb.Helper()
	data, errs := a.do(query, vars)
	if len(errs) > 0 {
		a.tb.Fatalf("query failed: %s\n%s", jsonString(errs), query)
	}
	decodeInto(a.tb, data, out)
}

// readErr runs one operation that must fail with exactly one error and no data.
func (a *api) readErr(query string, vars map[string]any) gqlError {
	a.tb.Helper()
	data, errs := a.do(query, vars)
	if len(errs) != 1 {
		a.tb.Fatalf("want exactly one error, got %s (data %s)", jsonString(errs), jsonString(data))
	}
	if data != nil {
		a.tb.Fatalf("want no data with error %q, got %s", errs[0].Message, jsonString(data))
	}
	return errs[0]
}

func decodeInto(tb testing.TB, v, out any) {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		tb.Fatalf("decode %s: %v", b, err)
	}
}

// --- documents ---------------------------------------------------------------

func siteDoc(id string, edits ...edit) doc {
	return with(siteFixture.valid(id), edits...)
}

func workOrderDoc(id, siteID string, edits ...edit) doc {
	return with(workOrderFixture.valid(id), append([]edit{{"siteId", siteID}}, edits...)...)
}

func checklistItemDoc(id, workOrderID string, position int, edits ...edit) doc {
	return with(checklistItemFixture.valid(id), append([]edit{{"workOrderId", workOrderID}, {"position", position}}, edits...)...)
}

func noteDoc(id, workOrderID string, edits ...edit) doc {
	return with(noteFixture.valid(id), append([]edit{{"workOrderId", workOrderID}}, edits...)...)
}

// seed creates documents with one push per 1000 (pushSites, pushWorkOrders…):
// every document of one push shares one updatedAt.
func (a *api) seed(f fixture, docs ...doc) {
	a.tb.Helper()
	for chunk := range slices.Chunk(docs, 1000) {
		rows := make([]row, len(chunk))
		for i, d := range chunk {
			rows[i] = row{next: d}
		}
		if got := a.push(f, rows...); len(got) != 0 {
			a.tb.Fatalf("creating %s documents returned conflicts %s", f.typ, jsonString(got))
		}
	}
}

// remove deletes stored documents the way a device does: a push of the
// document as it was, now with deleted set.
func (a *api) remove(f fixture, ids ...string) {
	a.tb.Helper()
	byID := a.stored(f)
	rows := make([]row, len(ids))
	for i, id := range ids {
		d, ok := byID[id]
		if !ok {
			a.tb.Fatalf("remove: no %s %q", f.typ, id)
		}
		rows[i] = row{assumed: d, next: with(d, edit{"deleted", true})}
	}
	if got := a.push(f, rows...); len(got) != 0 {
		a.tb.Fatalf("deleting %s documents returned conflicts %s", f.typ, jsonString(got))
	}
}

// stored returns every document of f the caller's tenant has, tombstones
// included, as pull shows them, by id.
func (a *api) stored(f fixture) map[string]doc {
	a.tb.Helper()
	all, _ := a.pullAll(f, "", 1000)
	out := make(map[string]doc, len(all))
	for _, d := range all {
		out[d["id"].(string)] = d
	}
	return out
}

// where returns the documents for which keep holds, in no particular order.
func where(docs map[string]doc, keep func(doc) bool) []doc {
	var out []doc
	for _, d := range docs {
		if keep(d) {
			out = append(out, d)
		}
	}
	return out
}

func live(d doc) bool { return d["deleted"] == false }

// --- the order the read API promises -----------------------------------------

// listOrder returns the ids of docs in the order workOrders(orderBy) lists
// them: by field (NULL after every value), then by id; desc reverses both.
// field is "updatedAt", "dueAt", "priority" or "" (the id alone).
func listOrder(tb testing.TB, docs []doc, field string, desc bool) []string {
	tb.Helper()
	sorted := slices.Clone(docs)
	slices.SortFunc(sorted, func(x, y doc) int {
		c := 0
		if field != "" {
			c = compareField(tb, x[field], y[field])
		}
		if c == 0 {
			c = strings.Compare(x["id"].(string), y["id"].(string))
		}
		if desc {
			c = -c
		}
		return c
	})
	return ids(sorted)
}

func compareField(tb testing.TB, x, y any) int {
	tb.Helper()
	switch {
	case x == nil && y == nil:
		return 0
	case x == nil:
		return 1
	case y == nil:
		return -1
	}
	switch xv := x.(type) {
	case float64:
		return cmp.Compare(xv, y.(float64))
	case string:
		return parseTime(tb, xv).Compare(parseTime(tb, y.(string)))
	}
	tb.Fatalf("cannot order by %T", x)
	return 0
}

func parseTime(tb testing.TB, s string) time.Time {
	tb.Helper()
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		tb.Fatalf("time %q: %v", s, err)
	}
	return t
}

// --- connections -----------------------------------------------------------------

// connSelection selects everything a page walk checks.
const connSelection = `totalCount edges { cursor node { id } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor }`

// workOrdersQuery lists work orders into the alias c.
const workOrdersQuery = `query($first: Int, $after: String, $last: Int, $before: String, $filter: WorkOrderFilter, $orderBy: WorkOrderOrder) {
  c: workOrders(first: $first, after: $after, last: $last, before: $before, filter: $filter, orderBy: $orderBy) { ` + connSelection + ` }
}`

// sitesQuery lists sites into the alias c.
const sitesQuery = `query($first: Int, $after: String, $last: Int, $before: String, $filter: SiteFilter) {
  c: sites(first: $first, after: $after, last: $last, before: $before, filter: $filter) { ` + connSelection + ` }
}`

// siteWorkOrdersQuery lists one site's work orders into the alias c.
const siteWorkOrdersQuery = `query($id: ID!, $first: Int, $after: String, $filter: WorkOrderFilter) {
  node(id: $id) { ... on Site { c: workOrders(first: $first, after: $after, filter: $filter) { ` + connSelection + ` } } }
}`

type pageInfoJSON struct {
	HasNextPage     bool
	HasPreviousPage bool
	StartCursor     *string
	EndCursor       *string
}

// connJSON is a Relay connection as connSelection selects it.
type connJSON struct {
	TotalCount int
	Edges      []struct {
		Cursor string
		Node   struct{ ID string }
	}
	PageInfo pageInfoJSON
}

func (c connJSON) ids() []string {
	out := make([]string, len(c.Edges))
	for i, e := range c.Edges {
		out[i] = e.Node.ID
	}
	return out
}

// lister fetches one page of one list given the paging variables.
type lister func(tb testing.TB, paging map[string]any) connJSON

// listOf returns the lister of a query whose connection has the alias c
// (found at the top or under node), with fixed variables.
func (a *api) listOf(query string, vars map[string]any) lister {
	return func(tb testing.TB, paging map[string]any) connJSON {
		tb.Helper()
		all := make(map[string]any, len(vars)+len(paging))
		for k, v := range vars {
			all[k] = v
		}
		for k, v := range paging {
			all[k] = v
		}
		var data struct {
			C    *connJSON
			Node *struct{ C *connJSON }
		}
		a.read(query, all, &data)
		switch {
		case data.C != nil:
			return *data.C
		case data.Node != nil && data.Node.C != nil:
			return *data.Node.C
		}
		tb.Fatalf("no connection in the answer to %s", query)
		return connJSON{}
	}
}

// checkPage checks what every page must satisfy: at most size edges,
// cursors matching startCursor/endCursor, and the total.
func checkPage(tb testing.TB, p connJSON, size, total int) {
	tb.Helper()
	if len(p.Edges) > size {
		tb.Fatalf("page of %d has %d edges", size, len(p.Edges))
	}
	if p.TotalCount != total {
		tb.Fatalf("totalCount = %d, want %d", p.TotalCount, total)
	}
	if len(p.Edges) == 0 {
		if p.PageInfo.StartCursor != nil || p.PageInfo.EndCursor != nil {
			tb.Fatalf("empty page has start/end cursors %s", jsonString(p.PageInfo))
		}
		return
	}
	if p.PageInfo.StartCursor == nil || *p.PageInfo.StartCursor != p.Edges[0].Cursor {
		tb.Fatalf("startCursor %s is not the first edge's cursor %q", jsonString(p.PageInfo.StartCursor), p.Edges[0].Cursor)
	}
	if last := p.Edges[len(p.Edges)-1].Cursor; p.PageInfo.EndCursor == nil || *p.PageInfo.EndCursor != last {
		tb.Fatalf("endCursor %s is not the last edge's cursor %q", jsonString(p.PageInfo.EndCursor), last)
	}
}

// walkForward pages through a list with first: size and after, and returns
// the ids in the order visited. It checks pageInfo on every page: full pages
// while hasNextPage, hasPreviousPage exactly when an after cursor was given,
// and that the page after the last one is empty.
func walkForward(tb testing.TB, list lister, size, total int) []string {
	tb.Helper()
	var out []string
	var after any
	for range total + 2 {
		p := list(tb, map[string]any{"first": size, "after": after})
		checkPage(tb, p, size, total)
		if p.PageInfo.HasPreviousPage != (after != nil) {
			tb.Fatalf("first: %d, after: %v: hasPreviousPage = %v", size, after, p.PageInfo.HasPreviousPage)
		}
		out = append(out, p.ids()...)
		if !p.PageInfo.HasNextPage {
			if len(p.Edges) > 0 {
				rest := list(tb, map[string]any{"first": size, "after": *p.PageInfo.EndCursor})
				if len(rest.Edges) != 0 || rest.PageInfo.HasNextPage {
					tb.Fatalf("after the last page (hasNextPage false) came %v, hasNextPage %v", rest.ids(), rest.PageInfo.HasNextPage)
				}
			}
			return out
		}
		if len(p.Edges) != size {
			tb.Fatalf("short page %v (size %d) with hasNextPage true", p.ids(), size)
		}
		after = *p.PageInfo.EndCursor
	}
	tb.Fatalf("paging forwards by %d never ended (visited %v)", size, out)
	return nil
}

// walkBackward pages from the end with last: size and before, and returns
// the ids in list order (the pages put back in front of each other).
func walkBackward(tb testing.TB, list lister, size, total int) []string {
	tb.Helper()
	var pages [][]string
	var before any
	for range total + 2 {
		p := list(tb, map[string]any{"last": size, "before": before})
		checkPage(tb, p, size, total)
		if p.PageInfo.HasNextPage != (before != nil) {
			tb.Fatalf("last: %d, before: %v: hasNextPage = %v", size, before, p.PageInfo.HasNextPage)
		}
		pages = append(pages, p.ids())
		if !p.PageInfo.HasPreviousPage {
			var out []string
			for _, ids := range slices.Backward(pages) {
				out = append(out, ids...)
			}
			return out
		}
		if len(p.Edges) != size {
			tb.Fatalf("short page %v (size %d) with hasPreviousPage true", p.ids(), size)
		}
		before = *p.PageInfo.StartCursor
	}
	tb.Fatalf("paging backwards by %d never ended (visited %v)", size, pages)
	return nil
}

// assertIDs compares two id lists and says which ids repeat or are missing.
func assertIDs(tb testing.TB, what string, got, want []string) {
	tb.Helper()
	if slices.Equal(got, want) {
		return
	}
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
	}
	var repeated, missing []string
	for id, n := range seen {
		if n > 1 {
			repeated = append(repeated, id)
		}
	}
	for _, id := range want {
		if seen[id] == 0 {
			missing = append(missing, id)
		}
	}
	slices.Sort(repeated)
	tb.Fatalf("%s:\n got: %v\nwant: %v\nrepeated: %v, missing: %v", what, got, want, repeated, missing)
}

func apqBody(query, hash string) map[string]any {
	body := map[string]any{"extensions": map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": hash}}}
	if query != "" {
		body["query"] = query
	}
	return body
}
