package resolvers_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/testenv"
)

func TestViewerReturnsTheTokensIdentity(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	for _, id := range []struct{ tenant, user string }{{"acme", "alice"}, {"globex", "bob"}} {
		a := newAPI(t, env, id.tenant, id.user)
		data, errs := a.do(`{ viewer { userId tenantId } }`, nil)
		if len(errs) != 0 {
			t.Fatalf("viewer: %v", errs)
		}
		want := map[string]any{"userId": id.user, "tenantId": id.tenant}
		if got := data["viewer"]; jsonString(got) != jsonString(want) {
			t.Fatalf("viewer = %s, want %s", jsonString(got), jsonString(want))
		}
	}
}

func TestRequestsWithoutAValidTokenAreUnauthenticated(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	expired, err := auth.Issue(testenv.Secret, "acme", "alice", time.Minute, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	forged, err := auth.Issue([]byte("another-secret-another-secret-0123456789"), "acme", "alice", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	f := siteFixture
	operations := []struct {
		name  string
		query string
		vars  map[string]any
	}{
		{"viewer", `{ viewer { userId tenantId } }`, nil},
		{"pull", f.pullQuery(), map[string]any{"limit": 10}},
		{"push", f.pushQuery(), map[string]any{"rows": rowsJSON([]row{{next: f.valid("a")}})}},
	}
	credentials := []struct{ name, header string }{
		{"no token", ""},
		{"expired token", "Bearer " + expired},
		{"token signed with another secret", "Bearer " + forged},
		{"garbage token", "Bearer not.a.token"},
		{"another scheme", "Basic YWxpY2U6c2VjcmV0"},
	}
	for _, op := range operations {
		for _, cred := range credentials {
			t.Run(op.name+" with "+cred.name+" is refused with 401 UNAUTHENTICATED", func(t *testing.T) {
				rec := postGraphQL(t, env.Handler, cred.header, op.query, op.vars)
				if rec.Code != http.StatusUnauthorized {
					t.Fatalf("status = %d, want 401; body %s", rec.Code, rec.Body)
				}
				var resp struct {
					Data   any        `json:"data"`
					Errors []gqlError `json:"errors"`
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
					t.Fatalf("body %q: %v", rec.Body, err)
				}
				if resp.Data != nil || len(resp.Errors) != 1 || resp.Errors[0].code() != "UNAUTHENTICATED" {
					t.Fatalf("body = %s, want one UNAUTHENTICATED error and no data", rec.Body)
				}
			})
		}
	}
	// None of the refused pushes wrote anything, in any tenant they named.
	assertNothingStored(t, f, newAPI(t, env, "acme", "alice"))
}
