package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tidemark/tidemark/server"
	"github.com/tidemark/tidemark/testenv"
)

// fakeClock is the rate limiters' clock: a test moves it by the Retry-After
// it was given instead of waiting.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// postRaw sends body as it is to /graphql.
func postRaw(tb testing.TB, url, token, contentType string, body []byte, header map[string]string) reply {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/graphql", bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return do(tb, req)
}

// refusal checks that r is one error with code and status.
func refusal(tb testing.TB, r reply, status int, code string) gqlError {
	tb.Helper()
	if r.Status != status {
		tb.Errorf("status = %d, want %d (body %.300s)", r.Status, status, r.Body)
	}
	if len(r.GQL.Errors) == 0 {
		tb.Fatalf("no errors; body %.300s", r.Body)
	}
	e := r.GQL.Errors[0]
	if e.Extensions["code"] != code {
		tb.Errorf("code = %v, want %s (message %q)", e.Extensions["code"], code, e.Message)
	}
	return e
}

func repeat(n int, format string) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, format, i)
	}
	return b.String()
}

// fanOut is finding 2's fragment fan-out: each level spreads the next four
// times, so 13 levels select 4¹³ fields from under a kilobyte.
func fanOut(levels int) string {
	var b strings.Builder
	b.WriteString("query { ...F0 }\n")
	for i := range levels {
		fmt.Fprintf(&b, "fragment F%d on Query { ...F%d ...F%d ...F%d ...F%d }\n", i, i+1, i+1, i+1, i+1)
	}
	fmt.Fprintf(&b, "fragment F%d on Query { viewer { userId } }\n", levels)
	return b.String()
}

func TestDocumentLimitsRefuseBeforeValidation(t *testing.T) {
	_, url, _ := start(t, server.Config{})
	token := testenv.Token(t, "t1", "u1")
	tests := []struct {
		name, query, code string
	}{
		{"finding 2: 2,000 repeats of one alias with different arguments",
			"{" + repeat(2000, " a: pullSites(limit: %d) { checkpoint { cursor } }") + " }", "TOKEN_LIMIT_EXCEEDED"},
		{"finding 2: 100,000 spreads of one fragment",
			"{" + strings.Repeat(" ...V", 100_000) + " } fragment V on Query { viewer { userId } }", "TOKEN_LIMIT_EXCEEDED"},
		{"finding 2: a fragment fanned out four times per level, 13 levels", fanOut(13), "FIELD_LIMIT_EXCEEDED"},
		{"more tokens than the limit", "{ viewer { userId } }" + " query Q($v: [Int] = [" + strings.Repeat("1 ", 10_000) + "]) { viewer { userId } }", "TOKEN_LIMIT_EXCEEDED"},
		{"more aliases than the limit", "{" + repeat(31, " a%d: viewer { userId }") + " }", "ALIAS_LIMIT_EXCEEDED"},
		{"more operations than the limit", repeat(11, "query Q%d { viewer { userId } }\n"), "OPERATION_LIMIT_EXCEEDED"},
		{"more fields than the limit once fragments are expanded", fanOut(5), "FIELD_LIMIT_EXCEEDED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := post(t, url, token, tt.query, nil)
			refusal(t, r, http.StatusUnprocessableEntity, tt.code)
			if len(r.GQL.Errors) != 1 || len(r.Body) > 1024 {
				t.Errorf("want one short error, got %d errors in %d bytes", len(r.GQL.Errors), len(r.Body))
			}
		})
	}
	t.Run("a document at every limit passes", func(t *testing.T) {
		query := "query Q0 {" + repeat(30, " a%d: viewer { userId }") + " }\n" + repeat(9, "query P%d { viewer { userId } }\n")
		// Several operations: pick one by name, as the GraphQL spec says.
		body, _ := json.Marshal(map[string]any{"query": query, "operationName": "Q0"})
		r := postRaw(t, url, token, "application/json", body, nil)
		if r.Status != http.StatusOK || len(r.GQL.Errors) != 0 {
			t.Fatalf("status %d, body %.300s", r.Status, r.Body)
		}
	})
	t.Run("introspection of GraphiQL stays within the limits", func(t *testing.T) {
		_, url, _ := start(t, server.Config{Introspection: true})
		r := post(t, url, token, graphiqlIntrospection, nil)
		if r.Status != http.StatusOK || len(r.GQL.Errors) != 0 {
			t.Fatalf("status %d, body %.300s", r.Status, r.Body)
		}
	})
}

func TestValidationErrorsAreCapped(t *testing.T) {
	_, url, _ := start(t, server.Config{MaxErrors: 5})
	r := post(t, url, testenv.Token(t, "t1", "u1"), "{ viewer {"+repeat(20, " nope%d")+" } }", nil)
	refusal(t, r, http.StatusUnprocessableEntity, "GRAPHQL_VALIDATION_FAILED")
	if n := len(r.GQL.Errors); n != 5 {
		t.Fatalf("%d errors, want 5: %s", n, r.Body)
	}
	if last := r.GQL.Errors[4].Message; !strings.Contains(last, "too many validation errors") {
		t.Errorf("last error = %q, want it to say the rest were left out", last)
	}
}

func TestResponseLimits(t *testing.T) {
	t.Run("a response larger than the limit is replaced by an error", func(t *testing.T) {
		_, url, _ := start(t, server.Config{MaxResponseBytes: 20})
		r := post(t, url, testenv.Token(t, "t1", "u1"), `{ viewer { userId tenantId } }`, nil)
		refusal(t, r, http.StatusOK, "RESPONSE_TOO_LARGE")
		if string(r.GQL.Data) != "null" && len(r.GQL.Data) != 0 {
			t.Errorf("data = %s, want none", r.GQL.Data)
		}
	})
}

func TestFieldSuggestionsOnlyWithIntrospection(t *testing.T) {
	token := testenv.Token(t, "t1", "u1")
	for _, introspection := range []bool{false, true} {
		t.Run(fmt.Sprintf("introspection %v", introspection), func(t *testing.T) {
			_, url, _ := start(t, server.Config{Introspection: introspection})
			r := post(t, url, token, `{ pullSite(limit: 1) { checkpoint { cursor } } }`, nil)
			e := refusal(t, r, http.StatusUnprocessableEntity, "GRAPHQL_VALIDATION_FAILED")
			if suggested := strings.Contains(e.Message, "Did you mean"); suggested != introspection {
				t.Errorf("message %q: suggests a field = %v, want %v", e.Message, suggested, introspection)
			}
		})
	}
}

func TestOneSyncFieldPerOperation(t *testing.T) {
	_, url, _ := start(t, server.Config{MaxAliases: 100})
	token := testenv.Token(t, "t1", "u1")
	t.Run("finding 3: 60 aliased pulls are refused before running", func(t *testing.T) {
		r := post(t, url, token, "{"+repeat(60, " p%d: pullWorkOrders(limit: 1000) { documents { id } checkpoint { cursor } }")+" }", nil)
		refusal(t, r, http.StatusUnprocessableEntity, "SYNC_FIELD_LIMIT_EXCEEDED")
	})
	t.Run("finding 3: 50 aliased pushes write nothing", func(t *testing.T) {
		rows := []map[string]any{{"newDocumentState": map[string]any{"id": "s1", "name": "n", "address": "a", "deleted": false}}}
		r := post(t, url, token, "mutation($rows: [SitePushRow!]!) {"+repeat(50, " p%d: pushSites(rows: $rows) { id }")+" }", map[string]any{"rows": rows})
		refusal(t, r, http.StatusUnprocessableEntity, "SYNC_FIELD_LIMIT_EXCEEDED")
		pulled := post(t, url, token, `{ pullSites(limit: 10) { documents { id } } }`, nil)
		if want := `{"pullSites":{"documents":[]}}`; string(pulled.GQL.Data) != want {
			t.Errorf("after the refused pushes: %s, want %s", pulled.GQL.Data, want)
		}
	})
	t.Run("two pulls of different collections are refused", func(t *testing.T) {
		r := post(t, url, token, `{ pullSites(limit: 1) { checkpoint { cursor } } pullNotes(limit: 1) { checkpoint { cursor } } }`, nil)
		refusal(t, r, http.StatusUnprocessableEntity, "SYNC_FIELD_LIMIT_EXCEEDED")
	})
	t.Run("a full pull with read fields passes", func(t *testing.T) {
		r := post(t, url, token, `{ viewer { userId } pullWorkOrders(limit: 1000) { documents { id title } checkpoint { cursor } } }`, nil)
		if r.Status != http.StatusOK || len(r.GQL.Errors) != 0 {
			t.Fatalf("status %d, body %.300s", r.Status, r.Body)
		}
	})
	t.Run("a pull skipped by @skip does not count", func(t *testing.T) {
		r := post(t, url, token, `{ pullSites(limit: 1) { checkpoint { cursor } } pullNotes(limit: 1) @skip(if: true) { checkpoint { cursor } } }`, nil)
		if r.Status != http.StatusOK || len(r.GQL.Errors) != 0 {
			t.Fatalf("status %d, body %.300s", r.Status, r.Body)
		}
	})
}

func TestMalformedRequestsAreShortBadRequests(t *testing.T) {
	_, url, _ := start(t, server.Config{})
	token := testenv.Token(t, "t1", "u1")
	marker := strings.Repeat("SECRET-ECHO-", 10_000)
	tests := []struct {
		name, contentType, body string
		status                  int
		says                    string
	}{
		{"batched request", "application/json", `[{"query": "{ viewer { userId } }"}, {"query": "{ viewer { tenantId } }", "x": "` + marker + `"}]`, http.StatusBadRequest, "batched"},
		{"finding 8: a JSON array", "application/json", `["` + marker + `"]`, http.StatusBadRequest, "batched"},
		{"garbage", "application/json", marker, http.StatusBadRequest, "JSON object"},
		{"a query that is not a string", "application/json", `{"query": 5, "x": "` + marker + `"}`, http.StatusBadRequest, "JSON object"},
		{"variables that are not an object", "application/json", `{"query": "{ viewer { userId } }", "variables": ["` + marker + `"]}`, http.StatusBadRequest, "JSON object"},
		{"trailing data", "application/json", `{"query": "{ viewer { userId } }"} {"` + marker + `": 1}`, http.StatusBadRequest, "JSON object"},
		{"an empty body", "application/json", ``, http.StatusBadRequest, "JSON object"},
		{"not JSON at all", "text/plain", marker, http.StatusUnsupportedMediaType, "application/json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := postRaw(t, url, token, tt.contentType, []byte(tt.body), nil)
			e := refusal(t, r, tt.status, "BAD_REQUEST")
			if !strings.Contains(e.Message, tt.says) {
				t.Errorf("message %q does not say %q", e.Message, tt.says)
			}
			if len(r.Body) > 512 || strings.Contains(string(r.Body), "SECRET-ECHO") {
				t.Errorf("the answer echoes the request (%d bytes): %.200s", len(r.Body), r.Body)
			}
			for _, leak := range []string{"RawParams", "Go value", "json:", "unmarshal"} {
				if strings.Contains(e.Message, leak) {
					t.Errorf("message %q names Go internals (%q)", e.Message, leak)
				}
			}
		})
	}
}

func TestSubscriptionOverPlainHTTPIsRefused(t *testing.T) {
	_, url, _ := start(t, server.Config{})
	token := testenv.Token(t, "t1", "u1")
	const sub = `subscription { streamSites { checkpoint { cursor } } }`
	t.Run("POST", func(t *testing.T) {
		e := refusal(t, post(t, url, token, sub, nil), http.StatusBadRequest, "BAD_REQUEST")
		if !strings.Contains(e.Message, "websocket") || !strings.Contains(e.Message, "graphql-transport-ws") {
			t.Errorf("message %q does not point to the websocket", e.Message)
		}
	})
	t.Run("GET", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, url+"/graphql?query="+strings.ReplaceAll(sub, " ", "+"), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		refusal(t, do(t, req), http.StatusBadRequest, "BAD_REQUEST")
	})
	t.Run("a query over GET runs", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, url+"/graphql?query="+strings.ReplaceAll(`{ viewer { userId } }`, " ", "+"), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		if r := do(t, req); r.Status != http.StatusOK || string(r.GQL.Data) != `{"viewer":{"userId":"u1"}}` {
			t.Errorf("status %d, body %s", r.Status, r.Body)
		}
	})
	t.Run("a mutation over GET", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, url+"/graphql?query="+strings.ReplaceAll(`mutation { pushSites(rows: []) { id } }`, " ", "+"), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		r := do(t, req)
		refusal(t, r, http.StatusMethodNotAllowed, "BAD_REQUEST")
		if r.Header.Get("Allow") != http.MethodPost {
			t.Errorf("Allow = %q, want POST", r.Header.Get("Allow"))
		}
	})
}

func TestUnauthenticatedRequestsAreRefusedBeforeParsing(t *testing.T) {
	_, url, logs := start(t, server.Config{})
	query := "{" + repeat(10_000, " a%d: pullSites(limit: 1) { checkpoint { cursor } }") + " }"
	body, _ := json.Marshal(map[string]any{"query": query})
	t.Run("a 10,000-alias document without a token", func(t *testing.T) {
		r := postRaw(t, url, "", "application/json", body, nil)
		refusal(t, r, http.StatusUnauthorized, "UNAUTHENTICATED")
		if len(r.Body) > 256 {
			t.Errorf("401 body is %d bytes", len(r.Body))
		}
	})
	t.Run("401 as application/graphql-response+json when the client accepts it", func(t *testing.T) {
		r := postRaw(t, url, "", "application/json", body, map[string]string{"Accept": "application/graphql-response+json, application/json;q=0.9"})
		refusal(t, r, http.StatusUnauthorized, "UNAUTHENTICATED")
		if ct := r.Header.Get("Content-Type"); ct != "application/graphql-response+json" {
			t.Errorf("Content-Type = %q", ct)
		}
	})
	if strings.Contains(logs.String(), "TOKEN_LIMIT") || strings.Contains(logs.String(), "operation") {
		t.Errorf("the document was looked at: %s", logs.String())
	}
}

func TestRateLimitByClientAddress(t *testing.T) {
	clock := newFakeClock()
	_, url, _ := start(t, server.Config{AddressRate: 1, AddressBurst: 2, Now: clock.Now})
	token := testenv.Token(t, "t1", "u1")
	for i := range 2 {
		if r := post(t, url, token, `{ viewer { userId } }`, nil); r.Status != http.StatusOK {
			t.Fatalf("request %d: status %d, body %s", i, r.Status, r.Body)
		}
	}
	r := post(t, url, token, `{ viewer { userId } }`, nil)
	e := refusal(t, r, http.StatusTooManyRequests, "RATE_LIMITED")
	retry, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || retry < 1 {
		t.Fatalf("Retry-After = %q, want whole seconds", r.Header.Get("Retry-After"))
	}
	if hint, _ := e.Extensions["retryAfter"].(float64); int(hint) != retry {
		t.Errorf("extensions.retryAfter = %v, want the Retry-After %d", e.Extensions["retryAfter"], retry)
	}
	// The address limit comes before authentication: no token, still 429.
	refusal(t, post(t, url, "", `{ viewer { userId } }`, nil), http.StatusTooManyRequests, "RATE_LIMITED")
	// A websocket upgrade is an HTTP request like any other.
	dialer := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}}
	conn, resp, err := dialer.Dial("ws"+strings.TrimPrefix(url, "http")+"/graphql", nil)
	if err == nil {
		conn.Close()
		t.Fatal("websocket upgrade over the address limit accepted")
	}
	if resp == nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("websocket upgrade over the limit: %v, want 429 with Retry-After", resp)
	}
	clock.Advance(time.Duration(retry) * time.Second)
	if r := post(t, url, token, `{ viewer { userId } }`, nil); r.Status != http.StatusOK {
		t.Fatalf("after Retry-After: status %d, body %s", r.Status, r.Body)
	}
}

func TestRateLimitByCaller(t *testing.T) {
	clock := newFakeClock()
	_, url, _ := start(t, server.Config{IdentityRate: 1, IdentityBurst: 1, Now: clock.Now})
	alice, bob := testenv.Token(t, "t1", "alice"), testenv.Token(t, "t1", "bob")
	if r := post(t, url, alice, `{ viewer { userId } }`, nil); r.Status != http.StatusOK {
		t.Fatalf("status %d", r.Status)
	}
	r := post(t, url, alice, `{ viewer { userId } }`, nil)
	refusal(t, r, http.StatusTooManyRequests, "RATE_LIMITED")
	if r := post(t, url, bob, `{ viewer { userId } }`, nil); r.Status != http.StatusOK {
		t.Errorf("another user from the same address: status %d", r.Status)
	}
	retry, _ := strconv.Atoi(r.Header.Get("Retry-After"))
	clock.Advance(time.Duration(retry) * time.Second)
	if r := post(t, url, alice, `{ viewer { userId } }`, nil); r.Status != http.StatusOK {
		t.Errorf("after Retry-After: status %d", r.Status)
	}
}

func TestRateLimitReadsForwardedForOnlyFromTrustedProxies(t *testing.T) {
	clock := newFakeClock()
	limits := server.Config{AddressRate: 1, AddressBurst: 1, Now: clock.Now}
	token := testenv.Token(t, "t1", "u1")
	send := func(url, forwardedFor string) int {
		req, _ := http.NewRequest(http.MethodPost, url+"/graphql", strings.NewReader(`{"query": "{ viewer { userId } }"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("X-Forwarded-For", forwardedFor)
		return do(t, req).Status
	}
	t.Run("behind a trusted proxy each client has its own bucket", func(t *testing.T) {
		cfg := limits
		cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		_, url, _ := start(t, cfg)
		if s := send(url, "203.0.113.1"); s != http.StatusOK {
			t.Fatalf("first request: %d", s)
		}
		if s := send(url, "203.0.113.1"); s != http.StatusTooManyRequests {
			t.Errorf("second request of the same client: %d, want 429", s)
		}
		if s := send(url, "203.0.113.2"); s != http.StatusOK {
			t.Errorf("another client: %d, want 200", s)
		}
		// What the client itself put left of the proxy's entry is not believed.
		if s := send(url, "198.51.100.7, 203.0.113.1"); s != http.StatusTooManyRequests {
			t.Errorf("client-made hop: %d, want 429", s)
		}
	})
	t.Run("without trusted proxies the header is ignored", func(t *testing.T) {
		_, url, _ := start(t, limits)
		if s := send(url, "203.0.113.1"); s != http.StatusOK {
			t.Fatalf("first request: %d", s)
		}
		if s := send(url, "203.0.113.2"); s != http.StatusTooManyRequests {
			t.Errorf("a made-up X-Forwarded-For got a fresh bucket: %d, want 429", s)
		}
	})
}

func TestPushesInFlightPerCaller(t *testing.T) {
	env, url, _ := start(t, server.Config{PushesInFlight: 1})
	token := testenv.Token(t, "t1", "u1")
	ctx := context.Background()
	const push = `mutation($rows: [SitePushRow!]!) { pushSites(rows: $rows) { id } }`
	rows := func(id string) map[string]any {
		return map[string]any{"rows": []map[string]any{{"newDocumentState": map[string]any{"id": id, "name": "n", "address": "a", "deleted": false}}}}
	}
	// Hold the sites table so that the first push waits inside its
	// transaction, in flight.
	tx, err := env.DB.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, "LOCK TABLE sites IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	first := make(chan reply, 1)
	go func() { first <- post(t, url, token, push, rows("s1")) }()
	// The signal that the first push is in flight: it waits on our lock.
	for waiting := false; !waiting; {
		if err := env.DB.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
			WHERE c.relname = 'sites' AND NOT l.granted)`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	r := post(t, url, token, push, rows("s2"))
	refusal(t, r, http.StatusTooManyRequests, "RATE_LIMITED")
	if r.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	other := post(t, url, testenv.Token(t, "t1", "u2"), `{ viewer { userId } }`, nil)
	if other.Status != http.StatusOK {
		t.Errorf("another request meanwhile: %d", other.Status)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if r := <-first; r.Status != http.StatusOK || len(r.GQL.Errors) != 0 {
		t.Fatalf("first push: %d %s", r.Status, r.Body)
	}
	if r := post(t, url, token, push, rows("s3")); r.Status != http.StatusOK || len(r.GQL.Errors) != 0 {
		t.Errorf("push after the first ended: %d %s", r.Status, r.Body)
	}
}

// TestOutputErrorIsInternal stores what no push may store (a NaN), as a
// bug or a hand edit would, and checks that failing to write it out is our
// error, not the client's (finding 4's "labelled BAD_USER_INPUT").
func TestOutputErrorIsInternal(t *testing.T) {
	env, url, logs := start(t, server.Config{})
	token := testenv.Token(t, "t1", "u1")
	r := post(t, url, token, `mutation { pushSites(rows: [{newDocumentState: {id: "s1", name: "n", address: "a", latitude: 1.5, deleted: false}}]) { id } }`, nil)
	if len(r.GQL.Errors) != 0 {
		t.Fatalf("push: %s", r.Body)
	}
	if _, err := env.DB.Pool.Exec(context.Background(), `UPDATE sites SET latitude = 'NaN' WHERE id = 's1'`); err != nil {
		t.Fatal(err)
	}
	r = post(t, url, token, `{ pullSites(limit: 10) { documents { id latitude } } }`, nil)
	e := onlyError(t, r)
	if e.Extensions["code"] != "INTERNAL" || e.Message != "internal error" {
		t.Errorf("error = %q %v, want \"internal error\" INTERNAL", e.Message, e.Extensions)
	}
	if !strings.Contains(logs.String(), "NaN") {
		t.Error("the cause is not logged")
	}
}

// graphiqlIntrospection is the query GraphiQL sends for the schema.
const graphiqlIntrospection = `query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }
}`
