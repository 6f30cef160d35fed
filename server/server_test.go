package server_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/tidemark/tidemark/db/dbtest"
	"github.com/tidemark/tidemark/server"
	"github.com/tidemark/tidemark/testenv"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// gqlResponse is a GraphQL response as a client reads it.
type gqlResponse struct {
	Data   json.RawMessage `json:"data"`
	Errors []gqlError      `json:"errors"`
}

type gqlError struct {
	Message    string         `json:"message"`
	Path       []any          `json:"path"`
	Extensions map[string]any `json:"extensions"`
}

// reply is one HTTP exchange with the server.
type reply struct {
	Status int
	Header http.Header
	Body   []byte
	GQL    gqlResponse
}

// post sends a GraphQL request with the given bearer token ("" for none).
func post(tb testing.TB, url, token, query string, vars map[string]any) reply {
	tb.Helper()
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		tb.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, url+"/graphql", bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return do(tb, req)
}

func do(tb testing.TB, req *http.Request) reply {
	tb.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("read response: %v", err)
	}
	r := reply{Status: resp.StatusCode, Header: resp.Header, Body: b}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || strings.HasPrefix(resp.Header.Get("Content-Type"), "application/graphql-response+json") {
		if err := json.Unmarshal(b, &r.GQL); err != nil {
			tb.Fatalf("response is not JSON: %v\n%s", err, b)
		}
	}
	return r
}

// onlyError returns the single error of a response, failing otherwise.
func onlyError(tb testing.TB, r reply) gqlError {
	tb.Helper()
	if len(r.GQL.Errors) != 1 {
		tb.Fatalf("want exactly one error, got status %d body %s", r.Status, r.Body)
	}
	return r.GQL.Errors[0]
}

// logBuffer is a concurrency-safe writer for a JSON slog handler.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// lines returns every log record as a map.
func (l *logBuffer) lines(tb testing.TB) []map[string]any {
	tb.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			tb.Fatalf("log line is not JSON: %v: %s", err, sc.Bytes())
		}
		out = append(out, m)
	}
	return out
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// start runs the real handler with cfg on a fresh database behind a real
// listener and returns the environment, its base URL and its log.
func start(tb testing.TB, cfg server.Config) (*testenv.Env, string, *logBuffer) {
	tb.Helper()
	logs := &logBuffer{}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	env := testenv.New(tb, testenv.Options{Server: cfg})
	return env, env.Serve(tb), logs
}

const pullSitesQuery = `{ pullSites(limit: 1) { documents { id } checkpoint { cursor } } }`

func TestErrorPresenterKeepsGraphQLCodes(t *testing.T) {
	_, url, logs := start(t, server.Config{})
	token := testenv.Token(t, "t1", "u1")

	tests := []struct {
		name   string
		query  string
		vars   map[string]any
		status int
		code   string
	}{
		{"unknown field fails validation", `{ noSuchField }`, nil, http.StatusUnprocessableEntity, "GRAPHQL_VALIDATION_FAILED"},
		{"argument literal of the wrong type fails validation", `{ pullSites(limit: "one") { checkpoint { cursor } } }`, nil, http.StatusUnprocessableEntity, "GRAPHQL_VALIDATION_FAILED"},
		{"variable of the wrong type fails validation", `query($n: Int!) { pullSites(limit: $n) { checkpoint { cursor } } }`, map[string]any{"n": "one"}, http.StatusUnprocessableEntity, "GRAPHQL_VALIDATION_FAILED"},
		{"syntax error fails parsing", `{ pullSites(limit: 1) {`, nil, http.StatusUnprocessableEntity, "GRAPHQL_PARSE_FAILED"},
		{"scalar value that cannot be read is bad user input",
			`mutation { pushSites(rows: [{newDocumentState: {id: "s1", name: "n", address: "a", deleted: false, updatedAt: "yesterday"}}]) { id } }`,
			nil, http.StatusOK, "BAD_USER_INPUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := post(t, url, token, tt.query, tt.vars)
			e := onlyError(t, r)
			if got := e.Extensions["code"]; got != tt.code {
				t.Errorf("code = %v, want %s (body %s)", got, tt.code, r.Body)
			}
			if r.Status != tt.status {
				t.Errorf("status = %d, want %d", r.Status, tt.status)
			}
			if e.Message == "internal error" {
				t.Errorf("a client mistake is reported as an internal error: %s", r.Body)
			}
		})
	}
	for _, line := range logs.lines(t) {
		if line["level"] == "ERROR" {
			t.Errorf("a client mistake was logged as an error: %v", line)
		}
	}
}

func TestErrorPresenterKeepsAppErrorCodeAndField(t *testing.T) {
	_, url, _ := start(t, server.Config{})
	token := testenv.Token(t, "t1", "u1")

	tests := []struct {
		name  string
		query string
		field string
	}{
		{"pull limit out of range", `{ pullSites(limit: 0) { checkpoint { cursor } } }`, "limit"},
		{"cursor the server never issued", `{ pullSites(limit: 1, checkpoint: {cursor: "forged"}) { checkpoint { cursor } } }`, "checkpoint.cursor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := post(t, url, token, tt.query, nil)
			e := onlyError(t, r)
			if e.Extensions["code"] != "BAD_USER_INPUT" {
				t.Errorf("code = %v, want BAD_USER_INPUT", e.Extensions["code"])
			}
			if e.Extensions["field"] != tt.field {
				t.Errorf("field = %v, want %s", e.Extensions["field"], tt.field)
			}
			if !strings.HasPrefix(e.Message, tt.field+": ") {
				t.Errorf("message %q does not name the field %s", e.Message, tt.field)
			}
			if len(e.Path) == 0 || e.Path[0] != "pullSites" {
				t.Errorf("path = %v, want it to start at pullSites", e.Path)
			}
		})
	}
}

func TestInternalErrorIsHiddenFromTheClientAndLoggedWithTheRequestID(t *testing.T) {
	env, url, logs := start(t, server.Config{})
	token := testenv.Token(t, "t1", "u1")
	env.DB.Close() // every query now fails with a database error

	r := post(t, url, token, pullSitesQuery, nil)
	e := onlyError(t, r)
	if e.Message != "internal error" {
		t.Errorf("message = %q, want %q", e.Message, "internal error")
	}
	if e.Extensions["code"] != "INTERNAL" {
		t.Errorf("code = %v, want INTERNAL", e.Extensions["code"])
	}
	if len(e.Extensions) != 1 {
		t.Errorf("extensions = %v, want only the code", e.Extensions)
	}
	if bytes.Contains(r.Body, []byte("closed")) || bytes.Contains(r.Body, []byte("sites changes")) {
		t.Errorf("the database error leaked to the client: %s", r.Body)
	}
	id := r.Header.Get(server.RequestIDHeader)
	if id == "" {
		t.Fatal("no X-Request-Id in the response")
	}

	var found bool
	for _, line := range logs.lines(t) {
		if line["level"] != "ERROR" || line["request_id"] != id {
			continue
		}
		found = true
		if msg, _ := line["err"].(string); !strings.Contains(msg, "closed pool") {
			t.Errorf("the error log line does not carry the real error: %v", line)
		}
		if path, _ := line["path"].(string); path != "pullSites" {
			t.Errorf("the error log line has path %q, want pullSites", path)
		}
	}
	if !found {
		t.Errorf("no ERROR log line with request_id %s; log:\n%s", id, logs)
	}
}

func TestDepthLimit(t *testing.T) {
	_, url, _ := start(t, server.Config{MaxDepth: 2, Introspection: true})
	token := testenv.Token(t, "t1", "u1")

	tests := []struct {
		name     string
		query    string
		exceeded bool
	}{
		{"depth 2 passes", `{ viewer { userId } }`, false},
		{"depth 3 is refused", pullSitesQuery, true},
		{"depth through a named fragment counts", `{ ...Q } fragment Q on Query { pullSites(limit: 1) { documents { id } } }`, true},
		{"depth through an inline fragment counts", `{ pullSites(limit: 1) { ... on SitePullBulk { checkpoint { cursor } } } }`, true},
		{"introspection is not counted", `{ __schema { types { name fields { name type { name ofType { name } } } } } }`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := post(t, url, token, tt.query, nil)
			if !tt.exceeded {
				if len(r.GQL.Errors) != 0 {
					t.Fatalf("unexpected errors: %s", r.Body)
				}
				return
			}
			e := onlyError(t, r)
			if e.Extensions["code"] != "DEPTH_LIMIT_EXCEEDED" {
				t.Errorf("code = %v, want DEPTH_LIMIT_EXCEEDED (body %s)", e.Extensions["code"], r.Body)
			}
			if string(r.GQL.Data) != "" && string(r.GQL.Data) != "null" {
				t.Errorf("a refused operation returned data: %s", r.GQL.Data)
			}
		})
	}
}

func TestDepthLimitAllowsTheLimit(t *testing.T) {
	_, url, _ := start(t, server.Config{MaxDepth: 3})
	r := post(t, url, testenv.Token(t, "t1", "u1"), pullSitesQuery, nil)
	if len(r.GQL.Errors) != 0 {
		t.Fatalf("a query exactly at the depth limit was refused: %s", r.Body)
	}
}

func TestComplexityLimit(t *testing.T) {
	// pullSitesQuery costs 6: pullSites and the one document its limit
	// allows, documents, id, checkpoint, cursor.
	for _, tt := range []struct {
		limit    int
		exceeded bool
	}{{5, true}, {6, false}} {
		_, url, _ := start(t, server.Config{ComplexityLimit: tt.limit})
		r := post(t, url, testenv.Token(t, "t1", "u1"), pullSitesQuery, nil)
		if !tt.exceeded {
			if len(r.GQL.Errors) != 0 {
				t.Errorf("limit %d: unexpected errors: %s", tt.limit, r.Body)
			}
			continue
		}
		e := onlyError(t, r)
		if e.Extensions["code"] != "COMPLEXITY_LIMIT_EXCEEDED" {
			t.Errorf("limit %d: code = %v, want COMPLEXITY_LIMIT_EXCEEDED (body %s)", tt.limit, e.Extensions["code"], r.Body)
		}
	}
}

// bigQuery is a valid request body of well over 1 KiB.
func bigQuery() []byte {
	b, _ := json.Marshal(map[string]any{"query": "{ viewer { userId } }" + strings.Repeat(" ", 4096)})
	return b
}

func TestBodyLimit(t *testing.T) {
	_, url, _ := start(t, server.Config{MaxBodyBytes: 1024})
	token := testenv.Token(t, "t1", "u1")

	check := func(t *testing.T, r reply) {
		t.Helper()
		if r.Status != http.StatusRequestEntityTooLarge {
			t.Errorf("status = %d, want 413 (body %s)", r.Status, r.Body)
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("Content-Type = %q, want JSON", ct)
		}
		if len(r.GQL.Errors) != 1 || r.GQL.Errors[0].Extensions["code"] == nil {
			t.Errorf("want one error with a code, got %s", r.Body)
		}
	}

	t.Run("declared length over the limit", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, url+"/graphql", bytes.NewReader(bigQuery()))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		check(t, do(t, req))
	})
	t.Run("chunked body over the limit", func(t *testing.T) {
		// io.MultiReader hides the length, so the client sends the body
		// chunked and the server learns its size only by reading it.
		req, _ := http.NewRequest(http.MethodPost, url+"/graphql", io.MultiReader(bytes.NewReader(bigQuery())))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		if req.ContentLength != 0 {
			t.Fatalf("ContentLength = %d, want unknown", req.ContentLength)
		}
		check(t, do(t, req))
	})
	t.Run("body under the limit passes", func(t *testing.T) {
		r := post(t, url, token, `{ viewer { userId } }`, nil)
		if r.Status != http.StatusOK || len(r.GQL.Errors) != 0 {
			t.Errorf("status %d body %s", r.Status, r.Body)
		}
	})
}

const introspectionQuery = `{ __schema { types { name } } }`

func TestIntrospectionSwitch(t *testing.T) {
	token := testenv.Token(t, "t1", "u1")

	t.Run("on", func(t *testing.T) {
		_, url, _ := start(t, server.Config{Introspection: true})
		r := post(t, url, token, introspectionQuery, nil)
		if len(r.GQL.Errors) != 0 {
			t.Fatalf("errors: %s", r.Body)
		}
		if !bytes.Contains(r.GQL.Data, []byte(`"SitePullBulk"`)) {
			t.Errorf("the schema lacks SitePullBulk: %s", r.GQL.Data)
		}
	})
	t.Run("off", func(t *testing.T) {
		_, url, _ := start(t, server.Config{Introspection: false})
		r := post(t, url, token, introspectionQuery, nil)
		if len(r.GQL.Errors) == 0 {
			t.Fatalf("introspection answered while off: %s", r.Body)
		}
		if bytes.Contains(r.Body, []byte(`"SitePullBulk"`)) {
			t.Errorf("the response reveals the schema: %s", r.Body)
		}
		// __typename is not introspection of the schema and stays available.
		r = post(t, url, token, `{ __typename }`, nil)
		if len(r.GQL.Errors) != 0 {
			t.Errorf("__typename refused: %s", r.Body)
		}
	})
}

// With introspection off, asking for the schema is the client's doing: it
// must not be reported (and logged) as a server fault.
func TestIntrospectionOffIsAClientError(t *testing.T) {
	_, url, logs := start(t, server.Config{Introspection: false})
	r := post(t, url, testenv.Token(t, "t1", "u1"), introspectionQuery, nil)
	e := onlyError(t, r)
	if e.Extensions["code"] == "INTERNAL" || e.Message == "internal error" {
		t.Errorf("introspection while off is reported as an internal error: %s", r.Body)
	}
	for _, line := range logs.lines(t) {
		if line["level"] == "ERROR" {
			t.Errorf("introspection while off was logged as an error: %v", line)
		}
	}
}

func TestRequestID(t *testing.T) {
	_, url, logs := start(t, server.Config{})
	generated := regexp.MustCompile(`^[0-9a-f]{24}$`)

	get := func(t *testing.T, id string) string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url+"/healthz", nil)
		if id != "" {
			req.Header.Set(server.RequestIDHeader, id)
		}
		return do(t, req).Header.Get(server.RequestIDHeader)
	}

	t.Run("a sane incoming id is kept", func(t *testing.T) {
		const id = "edge-7f3a.b_2"
		if got := get(t, id); got != id {
			t.Errorf("X-Request-Id = %q, want %q", got, id)
		}
		var logged bool
		for _, line := range logs.lines(t) {
			if line["msg"] == "request" && line["request_id"] == id && line["path"] == "/healthz" {
				logged = true
			}
		}
		if !logged {
			t.Errorf("no access log line with request_id %s:\n%s", id, logs)
		}
	})
	for _, id := range []string{"", "has spaces in it", "semi;colon", "<script>", strings.Repeat("a", 65)} {
		t.Run("replaced: "+id, func(t *testing.T) {
			got := get(t, id)
			if !generated.MatchString(got) {
				t.Errorf("X-Request-Id = %q, want a fresh id", got)
			}
		})
	}
	t.Run("fresh ids differ", func(t *testing.T) {
		if a, b := get(t, ""), get(t, ""); a == b {
			t.Errorf("two requests got the same id %s", a)
		}
	})
}

func TestCORS(t *testing.T) {
	_, url, _ := start(t, server.Config{AllowedOrigins: []string{"https://app.example"}})

	preflight := func(t *testing.T, origin string) reply {
		t.Helper()
		req, _ := http.NewRequest(http.MethodOptions, url+"/graphql", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", http.MethodPost)
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		return do(t, req)
	}

	t.Run("allowed origin", func(t *testing.T) {
		r := preflight(t, "https://app.example")
		if r.Status >= 300 {
			t.Errorf("preflight status = %d", r.Status)
		}
		if got := r.Header.Get("Access-Control-Allow-Origin"); got != "https://app.example" {
			t.Errorf("Access-Control-Allow-Origin = %q", got)
		}
		if got := strings.ToLower(strings.Join(r.Header.Values("Access-Control-Allow-Headers"), ",")); !strings.Contains(got, "authorization") {
			t.Errorf("Access-Control-Allow-Headers = %q, want Authorization", got)
		}
		if got := r.Header.Get("Access-Control-Allow-Credentials"); got != "" {
			t.Errorf("Access-Control-Allow-Credentials = %q, want none", got)
		}
	})
	t.Run("allowed origin on the actual request", func(t *testing.T) {
		body, _ := json.Marshal(map[string]string{"query": "{ viewer { userId } }"})
		req, _ := http.NewRequest(http.MethodPost, url+"/graphql", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+testenv.Token(t, "t1", "u1"))
		req.Header.Set("Origin", "https://app.example")
		r := do(t, req)
		if got := r.Header.Get("Access-Control-Allow-Origin"); got != "https://app.example" {
			t.Errorf("Access-Control-Allow-Origin = %q", got)
		}
		if got := r.Header.Get("Access-Control-Expose-Headers"); !strings.EqualFold(got, server.RequestIDHeader) {
			t.Errorf("Access-Control-Expose-Headers = %q, want X-Request-Id", got)
		}
		if got := r.Header.Get("Access-Control-Allow-Credentials"); got != "" {
			t.Errorf("Access-Control-Allow-Credentials = %q, want none", got)
		}
	})
	t.Run("other origin", func(t *testing.T) {
		r := preflight(t, "https://evil.example")
		for _, h := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Headers", "Access-Control-Allow-Methods", "Access-Control-Allow-Credentials"} {
			if got := r.Header.Get(h); got != "" {
				t.Errorf("%s = %q, want none", h, got)
			}
		}
	})
}

func TestAuthentication(t *testing.T) {
	_, url, _ := start(t, server.Config{})
	for _, tt := range []struct{ name, token string }{
		{"no token", ""},
		{"garbage token", "not-a-jwt"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := post(t, url, tt.token, `{ viewer { userId } }`, nil)
			if r.Status != http.StatusUnauthorized {
				t.Errorf("status = %d, want 401", r.Status)
			}
			if got := r.Header.Get("WWW-Authenticate"); got != "Bearer" {
				t.Errorf("WWW-Authenticate = %q", got)
			}
			if e := onlyError(t, r); e.Extensions["code"] != "UNAUTHENTICATED" {
				t.Errorf("code = %v, want UNAUTHENTICATED", e.Extensions["code"])
			}
		})
	}
	t.Run("valid token", func(t *testing.T) {
		r := post(t, url, testenv.Token(t, "t1", "u1"), `{ viewer { userId tenantId } }`, nil)
		if want := `{"viewer":{"userId":"u1","tenantId":"t1"}}`; string(r.GQL.Data) != want {
			t.Errorf("data = %s, want %s", r.GQL.Data, want)
		}
	})
}

func TestHealthAndReadiness(t *testing.T) {
	env, url, _ := start(t, server.Config{})
	get := func(path string) reply {
		req, _ := http.NewRequest(http.MethodGet, url+path, nil)
		return do(t, req)
	}
	var body map[string]string

	if r := get("/readyz"); r.Status != http.StatusOK {
		t.Errorf("/readyz = %d %s, want 200", r.Status, r.Body)
	}
	env.DB.Close()
	r := get("/readyz")
	if r.Status != http.StatusServiceUnavailable {
		t.Errorf("/readyz with the pool closed = %d %s, want 503", r.Status, r.Body)
	}
	if err := json.Unmarshal(r.Body, &body); err != nil || body["status"] != "unavailable" || body["reason"] == "" {
		t.Errorf("/readyz body = %s, want status unavailable and a reason", r.Body)
	}
	// Liveness does not depend on the database.
	if r := get("/healthz"); r.Status != http.StatusOK {
		t.Errorf("/healthz with the pool closed = %d, want 200", r.Status)
	}
}

func TestPlayground(t *testing.T) {
	t.Run("with a token", func(t *testing.T) {
		token := testenv.Token(t, "dev", "dev-user")
		_, url, _ := start(t, server.Config{PlaygroundToken: token})
		req, _ := http.NewRequest(http.MethodGet, url+"/", nil)
		r := do(t, req)
		if r.Status != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("GET / = %d %s", r.Status, r.Header.Get("Content-Type"))
		}
		if !bytes.Contains(r.Body, []byte("Bearer "+token)) {
			t.Errorf("the Playground does not prefill the token")
		}
	})
	t.Run("without a token", func(t *testing.T) {
		_, url, _ := start(t, server.Config{})
		req, _ := http.NewRequest(http.MethodGet, url+"/", nil)
		r := do(t, req)
		if r.Status != http.StatusOK {
			t.Fatalf("GET / = %d", r.Status)
		}
		if bytes.Contains(r.Body, []byte("Bearer ")) {
			t.Errorf("the Playground prefills a token it was not given")
		}
		req, _ = http.NewRequest(http.MethodGet, url+"/nothing-here", nil)
		if r := do(t, req); r.Status != http.StatusNotFound {
			t.Errorf("GET /nothing-here = %d, want 404", r.Status)
		}
	})
}
