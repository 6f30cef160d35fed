package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/server"
	"github.com/tidemark/tidemark/testenv"
)

// hangBound is how long a request may take before the fuzz target calls it
// a hang.
const hangBound = 30 * time.Second

// FuzzGraphQLDocument sends arbitrary documents and variables through the
// real handler, in process, with a valid token (the rate limits are off,
// so that every input reaches GraphQL). Whatever comes in: no panic, no
// 5xx, no INTERNAL (an internal error is a bug of ours, however odd the
// request), a body bounded by the request's size, and no error message
// that carries SQL, a stack or a Go type.
//
// The seed corpus (testdata/fuzz/FuzzGraphQLDocument) holds the attacks of
// issue 10 in small, the sync operations RxDB sends, and read queries.
func FuzzGraphQLDocument(f *testing.F) {
	env := testenv.New(f, testenv.Options{Server: server.Config{AddressRate: -1, IdentityRate: -1, PushesInFlight: -1}})
	auth := "Bearer " + testenv.Token(f, "fuzz-tenant", "fuzz-user")
	send := func(tb testing.TB, body []byte) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", auth)
		w := httptest.NewRecorder()
		done := make(chan struct{})
		go func() {
			defer close(done)
			env.Handler.ServeHTTP(w, r)
		}()
		// Go's fuzzing has no hang detector; a request that never ends
		// (a leaked connection, a lock never released) is a finding too.
		// The bound is far above any request's time: not a timing check.
		select {
		case <-done:
		case <-time.After(hangBound):
			stacks := make([]byte, 1<<20)
			tb.Fatalf("request did not end within %s: %.300s\n%s", hangBound, body, stacks[:runtime.Stack(stacks, true)])
		}
		return w
	}
	// The control: inputs reach GraphQL and run, so the checks below are
	// not passed by a handler that refuses everything.
	if w := send(f, []byte(`{"query": "{ viewer { userId } }"}`)); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"userId":"fuzz-user"`) {
		f.Fatalf("a plain query does not run: %d %s", w.Code, w.Body)
	}
	f.Add(`{ viewer { userId } }`, []byte(`{}`))
	f.Fuzz(func(t *testing.T, query string, variables []byte) {
		req := map[string]any{"query": query}
		if json.Valid(variables) {
			req["variables"] = json.RawMessage(variables)
		}
		body, err := json.Marshal(req)
		if err != nil {
			t.Skip() // not a request a client could send
		}
		w := send(t, body)

		if w.Code >= 500 {
			t.Fatalf("status %d for %q: %.500s", w.Code, query, w.Body)
		}
		if limit := 64<<10 + 4*len(body); w.Body.Len() > limit {
			t.Fatalf("%d-byte response to a %d-byte request", w.Body.Len(), len(body))
		}
		var resp struct {
			Errors []struct {
				Message    string         `json:"message"`
				Extensions map[string]any `json:"extensions"`
			} `json:"errors"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
			t.Fatalf("response is not JSON: %v: %.500s", err, w.Body)
		}
		for _, e := range resp.Errors {
			if e.Extensions["code"] == nil {
				t.Errorf("error without a code: %q", e.Message)
			}
			if e.Extensions["code"] == "INTERNAL" {
				t.Errorf("INTERNAL for %q with variables %q", query, variables)
			}
			for _, leak := range []string{"SQLSTATE", "goroutine ", ".go:", "runtime.", "pgx", "Go value", "*model.", "map[string]"} {
				if strings.Contains(e.Message, leak) && !strings.Contains(string(body), leak) {
					t.Errorf("message %q carries %q", e.Message, leak)
				}
			}
		}
	})
}
