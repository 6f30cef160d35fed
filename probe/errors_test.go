package probe_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/testenv"
)

// leaks are what an error message must never show a client: SQL and
// SQLSTATEs, stack traces and source paths, Go types and decoder internals.
var leaks = regexp.MustCompile(`(?i)\b(select|insert|update|delete)\s+.*\b(from|into|set)\b|sqlstate|\bpgx?\b|pgconn|postgres|goroutine \d|\.go:\d+|/usr/local/go|/work/|/root/|github\.com/|runtime\.|panic|interface \{\}|map\[string\]|\*?json\.\w+|go value|cannot unmarshal|reflect\.|unexpected EOF|2006-01-02|did you mean`)

// TestErrorMessagesRevealNothingInternal sends malformed, hostile and merely
// wrong requests, with and without a token, and checks every error message
// and every non-GraphQL body for internals.
func TestErrorMessagesRevealNothingInternal(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	base := env.Serve(t)
	token := testenv.Token(t, "tenant-a", "alice")
	seedVictim(t, caller{base: base, token: token})
	authed := caller{base: base, token: token}
	anonymous := caller{base: base}

	type probe struct {
		name        string
		contentType string
		body        string
	}
	probes := []probe{
		{"a JSON array (a batch)", "application/json", `[{"query":"{ viewer { userId } }"},{"query":"{ viewer { tenantId } }"}]`},
		{"not JSON", "application/json", `{"query": "{ viewer { userId } }"`},
		{"garbage", "application/json", "\x00\x01\x02not json at all"},
		{"query is a number", "application/json", `{"query": 42}`},
		{"variables are a string", "application/json", `{"query": "query($n: Int!) { pullWorkOrders(checkpoint: null, limit: $n) { documents { id } } }", "variables": "oops"}`},
		{"wrong content type", "text/plain", `{ viewer { userId } }`},
		{"syntax error", "application/json", `{"query": "{ viewer { "}`},
		{"unknown field", "application/json", `{"query": "{ pullWorkOrder(checkpoint: null, limit: 1) { documents { id } } }"}`},
		{"variable of the wrong type", "application/json", `{"query": "query($n: Int!) { pullWorkOrders(checkpoint: null, limit: $n) { documents { id } } }", "variables": {"n": "ten"}}`},
		{"integer overflow", "application/json", `{"query": "{ pullWorkOrders(checkpoint: null, limit: 99999999999999999999) { documents { id } } }"}`},
		{"negative limit", "application/json", `{"query": "{ pullWorkOrders(checkpoint: null, limit: -1) { documents { id } } }"}`},
		{"a forged cursor", "application/json", `{"query": "{ pullWorkOrders(checkpoint: {cursor: \"AAAA\"}, limit: 5) { documents { id } } }"}`},
		{"a cursor with a NUL", "application/json", `{"query": "query($c: String!) { workOrders(first: 5, after: $c) { edges { node { id } } } }", "variables": {"c": "\u0000abc"}}`},
		{"a node id with a NUL", "application/json", `{"query": "query($id: ID!) { node(id: $id) { id } }", "variables": {"id": "wo\u0000a"}}`},
		{"a filter with a NUL", "application/json", `{"query": "query($s: ID!) { workOrders(first: 5, filter: {siteId: $s}) { edges { node { id } } } }", "variables": {"s": "\u0000"}}`},
		{"invalid time", "application/json", `{"query": "mutation { pushWorkOrders(rows: [{newDocumentState: {id: \"x\", siteId: \"site-a\", title: \"t\", status: OPEN, priority: 1, dueAt: \"yesterday\", deleted: false}}]) { id } }"}`},
		{"time out of range", "application/json", `{"query": "mutation { pushWorkOrders(rows: [{newDocumentState: {id: \"x\", siteId: \"site-a\", title: \"t\", status: OPEN, priority: 1, dueAt: \"9999-12-31T23:59:59-14:00\", deleted: false}}]) { id } }"}`},
		{"NaN", "application/json", `{"query": "mutation($lat: Float) { pushSites(rows: [{newDocumentState: {id: \"s\", name: \"n\", address: \"a\", latitude: $lat, deleted: false}}]) { id } }", "variables": {"lat": "NaN"}}`},
		{"unknown enum", "application/json", `{"query": "mutation { pushWorkOrders(rows: [{newDocumentState: {id: \"x\", siteId: \"site-a\", title: \"t\", status: EXPLODED, priority: 1, deleted: false}}]) { id } }"}`},
		{"a title over its length", "application/json", `{"query": "mutation { pushWorkOrders(rows: [{newDocumentState: {id: \"x\", siteId: \"site-a\", title: \"` + strings.Repeat("t", 600) + `\", status: OPEN, priority: 1, deleted: false}}]) { id } }"}`},
		{"an unknown persisted query", "application/json", `{"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "0000000000000000000000000000000000000000000000000000000000000000"}}}`},
		{"a subscription over HTTP", "application/json", `{"query": "subscription { streamWorkOrders { documents { id } } }"}`},
		{"an introspection query", "application/json", `{"query": "{ __schema { types { name } } }"}`},
	}
	for _, p := range probes {
		for _, c := range []struct {
			who string
			c   caller
		}{{"with a token", authed}, {"without a token", anonymous}} {
			t.Run(p.name+" "+c.who, func(t *testing.T) {
				a := c.c.raw(t, "POST", "/graphql", p.contentType, []byte(p.body), nil)
				if a.Status >= 500 {
					t.Fatalf("HTTP %d for a client's mistake: %.300s", a.Status, a.Body)
				}
				if len(a.Errors) == 0 && a.Status == 200 {
					t.Fatalf("accepted without an error: %.300s", a.Body)
				}
				if len(a.Body) > 16<<10 {
					t.Errorf("the error body is %d bytes", len(a.Body))
				}
				for _, e := range a.Errors {
					if e.code() == "" {
						t.Errorf("error without extensions.code: %q", e.Message)
					}
					if e.code() == "INTERNAL" {
						t.Errorf("a client's mistake answered INTERNAL: %q", e.Message)
					}
					if m := leaks.FindString(e.Message); m != "" {
						t.Errorf("error message reveals %q: %q", m, e.Message)
					}
				}
				if len(a.Errors) == 0 {
					if m := leaks.FindString(string(a.Body)); m != "" {
						t.Errorf("body reveals %q: %.300s", m, a.Body)
					}
				}
			})
		}
	}
}
