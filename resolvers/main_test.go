package resolvers_test

// These tests drive Tidemark's real HTTP handler (testenv) on a fresh real
// PostgreSQL database, over GraphQL, the way a client does. Documents travel
// as JSON maps, so one table of per-collection fixtures runs every sync rule
// against all four collections.
//
// One environment (one database) serves a whole test function; every subtest
// gets a tenant of its own, which isolates its documents and change order.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/99designs/gqlgen/client"

	"github.com/tidemark/tidemark/db/dbtest"
	"github.com/tidemark/tidemark/testenv"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// doc is a document as JSON: an input to push or an output of pull.
type doc = map[string]any

// edit sets one field of a document.
type edit struct {
	field string
	value any
}

// fixture describes one synced collection to the tests.
type fixture struct {
	typ       string // GraphQL type, e.g. "WorkOrder"
	plural    string // as in pullWorkOrders / pushWorkOrders
	selection string // every field of the output type
	merges    bool   // MERGE_FIELDS; otherwise CLIENT_RESOLVES
	valid     func(id string) doc
	// clientEdit is what the device under test changes; serverEdit is a
	// different field another device changed meanwhile; overlap is another
	// device's different change to clientEdit's field.
	clientEdit edit
	serverEdit edit
	overlap    edit
	// tooLong is a string field one character over its limit.
	tooLong edit
}

var (
	siteFixture = fixture{
		typ:       "Site",
		plural:    "Sites",
		selection: "id name address latitude longitude updatedAt deleted",
		valid: func(id string) doc {
			return doc{"id": id, "name": "Site " + id, "address": "1 Harbour Road", "latitude": 51.5, "longitude": -0.125, "deleted": false}
		},
		clientEdit: edit{"name", "Renamed on the tablet"},
		serverEdit: edit{"address", "2 Quay Street"},
		overlap:    edit{"name", "Renamed in the office"},
		tooLong:    edit{"name", strings.Repeat("s", 501)},
	}
	workOrderFixture = fixture{
		typ:       "WorkOrder",
		plural:    "WorkOrders",
		selection: "id siteId title description status priority assigneeId dueAt updatedAt deleted",
		merges:    true,
		valid: func(id string) doc {
			return doc{"id": id, "siteId": "site-1", "title": "Fix pump " + id, "description": "It leaks", "status": "OPEN",
				"priority": 2, "assigneeId": "user-9", "dueAt": "2026-11-23T09:30:00.123456Z", "deleted": false}
		},
		clientEdit: edit{"title", "Fix pump today"},
		serverEdit: edit{"status", "IN_PROGRESS"},
		overlap:    edit{"title", "Replace pump"},
		tooLong:    edit{"title", strings.Repeat("t", 501)},
	}
	checklistItemFixture = fixture{
		typ:       "ChecklistItem",
		plural:    "ChecklistItems",
		selection: "id workOrderId label done position updatedAt deleted",
		merges:    true,
		valid: func(id string) doc {
			return doc{"id": id, "workOrderId": "wo-1", "label": "Check valve " + id, "done": false, "position": 1, "deleted": false}
		},
		clientEdit: edit{"label", "Check both valves"},
		serverEdit: edit{"position", 7},
		overlap:    edit{"label", "Check the inlet valve"},
		tooLong:    edit{"label", strings.Repeat("l", 1001)},
	}
	noteFixture = fixture{
		typ:       "Note",
		plural:    "Notes",
		selection: "id workOrderId body authorId updatedAt deleted",
		valid: func(id string) doc {
			return doc{"id": id, "workOrderId": "wo-1", "body": "Gate code 1234 (" + id + ")", "deleted": false}
		},
		clientEdit: edit{"body", "Gate code changed to 4321"},
		serverEdit: edit{"workOrderId", "wo-2"},
		overlap:    edit{"body", "Gate is open, no code"},
		tooLong:    edit{"body", strings.Repeat("n", 20_001)},
	}
	fixtures = []fixture{siteFixture, workOrderFixture, checklistItemFixture, noteFixture}
)

// serverOwned are output fields the server sets; they never count as client state.
var serverOwned = []string{"updatedAt", "authorId"}

func (f fixture) pullQuery() string {
	return fmt.Sprintf(`query($cp: CheckpointInput, $limit: Int!) {
  r: pull%s(checkpoint: $cp, limit: $limit) { documents { %s } checkpoint { cursor } }
}`, f.plural, f.selection)
}

func (f fixture) pushQuery() string {
	return fmt.Sprintf(`mutation($rows: [%sPushRow!]!) { r: push%s(rows: $rows) { %s } }`, f.typ, f.plural, f.selection)
}

// gqlError is one entry of a response's errors.
type gqlError struct {
	Message    string         `json:"message"`
	Path       []any          `json:"path"`
	Extensions map[string]any `json:"extensions"`
}

func (e gqlError) code() string { s, _ := e.Extensions["code"].(string); return s }

// api is one authenticated client of one environment.
type api struct {
	tb            testing.TB
	c             *client.Client
	handler       http.Handler
	authorization string
}

func newAPI(tb testing.TB, env *testenv.Env, tenantID, userID string) *api {
	tb.Helper()
	authorization := "Bearer " + testenv.Token(tb, tenantID, userID)
	return &api{
		tb:            tb,
		c:             client.New(env.Handler, client.Path("/graphql"), client.AddHeader("Authorization", authorization)),
		handler:       env.Handler,
		authorization: authorization,
	}
}

// postStatus sends one operation as a plain HTTP request, for answers the
// gqlgen client refuses to decode (HTTP 4xx), and returns the status and errors.
func (a *api) postStatus(query string, vars map[string]any) (int, []gqlError) {
	a.tb.Helper()
	rec := postGraphQL(a.tb, a.handler, a.authorization, query, vars)
	var resp struct {
		Errors []gqlError `json:"errors"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		a.tb.Fatalf("decode %q: %v", rec.Body, err)
	}
	return rec.Code, resp.Errors
}

// postGraphQL sends one operation with the given Authorization header ("" for none).
func postGraphQL(tb testing.TB, h http.Handler, authorization, query string, vars map[string]any) *httptest.ResponseRecorder {
	tb.Helper()
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		tb.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// tenantOf names a tenant after the running (sub)test, so that every subtest
// has documents and change counters of its own.
func tenantOf(tb testing.TB) string { return "tenant/" + tb.Name() }

// do posts one operation and returns its data (nil when absent) and errors.
func (a *api) do(query string, vars map[string]any) (map[string]any, []gqlError) {
	a.tb.Helper()
	var opts []client.Option
	for k, v := range vars {
		opts = append(opts, client.Var(k, v))
	}
	resp, err := a.c.RawPost(query, opts...)
	if err != nil {
		a.tb.Fatalf("post: %v", err)
	}
	var errs []gqlError
	if len(resp.Errors) > 0 && string(resp.Errors) != "null" {
		if err := json.Unmarshal(resp.Errors, &errs); err != nil {
			a.tb.Fatalf("decode errors %s: %v", resp.Errors, err)
		}
	}
	data, _ := resp.Data.(map[string]any)
	return data, errs
}

// page is one pull result.
type page struct {
	docs   []doc
	cursor string
}

// pullRaw pulls with any checkpoint value: nil or a cursor string.
func (a *api) pullRaw(f fixture, checkpoint any, limit int) (page, []gqlError) {
	a.tb.Helper()
	var cp any
	if checkpoint != nil {
		cp = map[string]any{"cursor": checkpoint}
	}
	data, errs := a.do(f.pullQuery(), map[string]any{"cp": cp, "limit": limit})
	if len(errs) > 0 {
		return page{}, errs
	}
	r, ok := data["r"].(map[string]any)
	if !ok {
		a.tb.Fatalf("pull%s: no data and no errors: %v", f.plural, data)
	}
	var p page
	for _, d := range r["documents"].([]any) {
		p.docs = append(p.docs, d.(doc))
	}
	p.cursor = r["checkpoint"].(map[string]any)["cursor"].(string)
	if p.cursor == "" {
		a.tb.Fatalf("pull%s returned an empty cursor", f.plural)
	}
	return p, nil
}

// pull pulls after cursor ("" for the beginning) and fails the test on errors.
func (a *api) pull(f fixture, cursor string, limit int) page {
	a.tb.Helper()
	var cp any
	if cursor != "" {
		cp = cursor
	}
	p, errs := a.pullRaw(f, cp, limit)
	if len(errs) > 0 {
		a.tb.Fatalf("pull%s: %v", f.plural, errs)
	}
	return p
}

// pullAll pages through every change after cursor with the given limit. It
// checks that no page is short while more changes remain and that the page
// after the last one is empty and keeps the checkpoint.
func (a *api) pullAll(f fixture, cursor string, limit int) ([]doc, string) {
	a.tb.Helper()
	var all []doc
	short := false
	for range 10_000 {
		p := a.pull(f, cursor, limit)
		if len(p.docs) > limit {
			a.tb.Fatalf("pull%s with limit %d returned %d documents", f.plural, limit, len(p.docs))
		}
		if len(p.docs) == 0 {
			if cursor != "" && p.cursor != cursor {
				a.tb.Fatalf("pull%s with no new changes moved the checkpoint from %q to %q", f.plural, cursor, p.cursor)
			}
			return all, p.cursor
		}
		if short {
			a.tb.Fatalf("pull%s returned a short page while more changes were ready (next page: %v)", f.plural, ids(p.docs))
		}
		short = len(p.docs) < limit
		all = append(all, p.docs...)
		cursor = p.cursor
	}
	a.tb.Fatalf("pull%s never ended", f.plural)
	return nil, ""
}

// head returns the checkpoint after every change the caller can see.
func (a *api) head(f fixture) string {
	a.tb.Helper()
	_, cursor := a.pullAll(f, "", 1000)
	return cursor
}

// latest returns the stored document with the given id, as pull shows it.
func (a *api) latest(f fixture, id string) doc {
	a.tb.Helper()
	all, _ := a.pullAll(f, "", 1000)
	for _, d := range all {
		if d["id"] == id {
			return d
		}
	}
	a.tb.Fatalf("%s %q not found in pull", f.typ, id)
	return nil
}

// assertNoChangesSince checks that nothing was written after cursor.
func (a *api) assertNoChangesSince(f fixture, cursor string) {
	a.tb.Helper()
	p := a.pull(f, cursor, 1000)
	if len(p.docs) != 0 {
		a.tb.Fatalf("expected no new %s changes, got %v", f.typ, jsonString(p.docs))
	}
	if p.cursor != cursor {
		a.tb.Fatalf("checkpoint moved without changes: %q → %q", cursor, p.cursor)
	}
}

// row is one push row; assumed nil means a document the client created.
type row struct {
	assumed doc
	next    doc
}

func rowsJSON(rows []row) []any {
	out := make([]any, len(rows))
	for i, r := range rows {
		m := map[string]any{"newDocumentState": r.next}
		if r.assumed != nil {
			m["assumedMasterState"] = r.assumed
		}
		out[i] = m
	}
	return out
}

// pushRaw pushes rows and returns the result documents or the errors.
func (a *api) pushRaw(f fixture, rows []row) ([]doc, []gqlError) {
	a.tb.Helper()
	data, errs := a.do(f.pushQuery(), map[string]any{"rows": rowsJSON(rows)})
	if len(errs) > 0 {
		return nil, errs
	}
	list, ok := data["r"].([]any)
	if !ok {
		a.tb.Fatalf("push%s: no result list and no errors: %v", f.plural, data)
	}
	out := make([]doc, 0, len(list))
	for _, d := range list {
		out = append(out, d.(doc))
	}
	return out, nil
}

// push pushes rows and fails the test on errors.
func (a *api) push(f fixture, rows ...row) []doc {
	a.tb.Helper()
	docs, errs := a.pushRaw(f, rows)
	if len(errs) > 0 {
		a.tb.Fatalf("push%s: %v", f.plural, errs)
	}
	return docs
}

// pushErr pushes rows that must be refused and returns the one error.
func (a *api) pushErr(f fixture, rows ...row) gqlError {
	a.tb.Helper()
	docs, errs := a.pushRaw(f, rows)
	if len(errs) != 1 {
		a.tb.Fatalf("push%s: want exactly one error, got %v (result %v)", f.plural, errs, jsonString(docs))
	}
	return errs[0]
}

// create pushes new documents, checks they are all written as sent, and
// returns them as stored.
func (a *api) create(f fixture, docs ...doc) []doc {
	a.tb.Helper()
	rows := make([]row, len(docs))
	for i, d := range docs {
		rows[i] = row{next: d}
	}
	if got := a.push(f, rows...); len(got) != 0 {
		a.tb.Fatalf("creating %s documents returned %v, want nothing", f.typ, jsonString(got))
	}
	stored := make([]doc, len(docs))
	for i, d := range docs {
		stored[i] = a.latest(f, d["id"].(string))
		assertSameClientState(a.tb, stored[i], d)
	}
	return stored
}

// with returns a copy of d with edits applied.
func with(d doc, edits ...edit) doc {
	out := make(doc, len(d))
	for k, v := range d {
		out[k] = v
	}
	for _, e := range edits {
		out[e.field] = e.value
	}
	return out
}

// clientState is d without server-owned fields, in JSON's value types.
func clientState(d doc) doc {
	out := normalizeJSON(d).(doc)
	for _, f := range serverOwned {
		delete(out, f)
	}
	return out
}

func normalizeJSON(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func assertSameClientState(tb testing.TB, got, want doc) {
	tb.Helper()
	if g, w := clientState(got), clientState(want); !reflect.DeepEqual(g, w) {
		tb.Fatalf("client state differs\n got: %s\nwant: %s", jsonString(g), jsonString(w))
	}
}

// assertDocs checks a list of documents field by field, server-owned fields included.
func assertDocs(tb testing.TB, got, want []doc) {
	tb.Helper()
	if g, w := normalizeJSON(got), normalizeJSON(want); !reflect.DeepEqual(g, w) {
		tb.Fatalf("documents differ\n got: %s\nwant: %s", jsonString(g), jsonString(w))
	}
}

func ids(docs []doc) []string {
	out := make([]string, len(docs))
	for i, d := range docs {
		out[i], _ = d["id"].(string)
	}
	return out
}

func updatedAt(tb testing.TB, d doc) time.Time {
	tb.Helper()
	s, _ := d["updatedAt"].(string)
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		tb.Fatalf("updatedAt %q of %v: %v", s, d["id"], err)
	}
	return t
}

// assertError checks an error's code and that its message contains want.
func assertError(tb testing.TB, err gqlError, code, want string) {
	tb.Helper()
	if err.code() != code || !strings.Contains(err.Message, want) {
		tb.Fatalf("error = %q (code %q), want code %s and a message containing %q", err.Message, err.code(), code, want)
	}
}
