package server_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/server"
	"github.com/tidemark/tidemark/testenv"
)

// demoHandler is the whole HTTP handler with the demo app on, and dev
// identities when devTokens is set.
func demoHandler(t *testing.T, demo, devTokens bool) http.Handler {
	t.Helper()
	cfg := server.Config{Demo: demo}
	if devTokens {
		cfg.DevTokens = func(user, role string) (string, error) {
			return testenv.TokenWithRole(t, "dev", user, role), nil
		}
	}
	return testenv.New(t, testenv.Options{Server: cfg}).Handler
}

func serveDemo(h http.Handler, remote, host, origin, path string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "http://"+host+path, nil)
	r.RemoteAddr = remote
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func errorCode(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var body struct {
		Errors []struct {
			Extensions map[string]string `json:"extensions"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || len(body.Errors) != 1 {
		t.Fatalf("want one GraphQL-shaped error, got %d %q (%v)", w.Code, w.Body.String(), err)
	}
	return body.Errors[0].Extensions["code"]
}

func TestDemoIdentities(t *testing.T) {
	h := demoHandler(t, true, true)
	const local = "127.0.0.1:50000"

	t.Run("a loopback request gets a token per identity, with its role", func(t *testing.T) {
		w := serveDemo(h, local, "127.0.0.1:8080", "", "/demo/identities")
		if w.Code != http.StatusOK {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		var body struct{ Identities []server.DevIdentity }
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if len(body.Identities) != len(server.DevIdentities) {
			t.Fatalf("got %d identities, want %d", len(body.Identities), len(server.DevIdentities))
		}
		verifier := auth.NewVerifier(testenv.Secret)
		roles := map[string]int{}
		for _, id := range body.Identities {
			got, err := verifier.Verify(id.Token)
			if err != nil {
				t.Fatalf("%s's token: %v", id.User, err)
			}
			if got.TenantID != "dev" || got.UserID != id.User || got.Claims["role"] != id.Role {
				t.Errorf("%s's token is for %+v", id.User, got)
			}
			roles[id.Role]++
		}
		if roles["technician"] != 2 || roles["dispatcher"] != 1 {
			t.Errorf("roles %v, want two technicians and a dispatcher", roles)
		}
	})

	refused := []struct{ name, remote, host, origin string }{
		{"a request from another machine", "192.0.2.7:40000", "127.0.0.1:8080", ""},
		{"a page whose name was rebound to 127.0.0.1", local, "attacker.example:8080", ""},
		{"another site's script", local, "localhost:8080", "http://attacker.example"},
	}
	for _, tc := range refused {
		t.Run(tc.name+" is refused", func(t *testing.T) {
			w := serveDemo(h, tc.remote, tc.host, tc.origin, "/demo/identities")
			if w.Code != http.StatusForbidden || errorCode(t, w) != "FORBIDDEN" {
				t.Fatalf("got %d %s, want 403 FORBIDDEN", w.Code, w.Body)
			}
			if strings.Contains(w.Body.String(), "token") && strings.Contains(w.Body.String(), "eyJ") {
				t.Fatal("a refusal carries a token")
			}
		})
	}
	t.Run("the app's own page may ask", func(t *testing.T) {
		w := serveDemo(h, local, "localhost:8080", "http://localhost:8080", "/demo/identities")
		if w.Code != http.StatusOK {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	})
}

func TestDemoApp(t *testing.T) {
	t.Run("the embedded app is served at /demo/", func(t *testing.T) {
		h := demoHandler(t, true, false)
		w := serveDemo(h, "192.0.2.7:40000", "tidemark.example", "", "/demo/")
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `<script type="module"`) {
			t.Fatalf("GET /demo/: %d %.200s", w.Code, w.Body)
		}
		if w := serveDemo(h, "192.0.2.7:40000", "tidemark.example", "", "/demo/nothing-here.js"); w.Code != http.StatusNotFound || errorCode(t, w) != "NOT_FOUND" {
			t.Fatalf("a missing file: %d %s", w.Code, w.Body)
		}
		t.Run("without dev tokens it hands out no identities", func(t *testing.T) {
			w := serveDemo(h, "127.0.0.1:50000", "127.0.0.1:8080", "", "/demo/identities")
			if w.Code != http.StatusNotFound || errorCode(t, w) != "NOT_FOUND" {
				t.Fatalf("got %d %s, want 404 NOT_FOUND", w.Code, w.Body)
			}
		})
	})
	t.Run("switched off, /demo does not exist", func(t *testing.T) {
		h := demoHandler(t, false, true)
		for _, path := range []string{"/demo/", "/demo/identities"} {
			if w := serveDemo(h, "127.0.0.1:50000", "127.0.0.1:8080", "", path); w.Code != http.StatusNotFound {
				t.Errorf("GET %s: %d, want 404", path, w.Code)
			}
		}
	})
}
