package server_test

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/server"
	"github.com/tidemark/tidemark/testenv"
	webplayground "github.com/tidemark/tidemark/web/playground"
)

// playgroundSettings reads the settings the server wrote into the page.
func playgroundSettings(tb testing.TB, page []byte) map[string]any {
	tb.Helper()
	m := regexp.MustCompile(`<script id="tidemark-config" type="application/json">(.*?)</script>`).FindSubmatch(page)
	if m == nil {
		tb.Fatalf("no settings in the page:\n%s", page)
	}
	var settings map[string]any
	if err := json.Unmarshal(m[1], &settings); err != nil {
		tb.Fatalf("settings are not JSON: %v: %s", err, m[1])
	}
	return settings
}

func authorizationOf(settings map[string]any) string {
	headers, _ := settings["headers"].(map[string]any)
	auth, _ := headers["Authorization"].(string)
	return auth
}

func TestPlaygroundServesItsAssetsFromTheBinary(t *testing.T) {
	_, url, _ := start(t, server.Config{})
	page := do(t, mustRequest(t, http.MethodGet, url+"/"))
	if page.Status != http.StatusOK {
		t.Fatalf("GET / = %d", page.Status)
	}
	if got := page.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("page Cache-Control = %q, want no-store", got)
	}
	// Offline means no other origin: no absolute URL in a src or href.
	if m := regexp.MustCompile(`(?:src|href)="(?:https?:)?//[^"]*"`).Find(page.Body); m != nil {
		t.Errorf("the page loads %s from another origin", m)
	}
	refs := regexp.MustCompile(`(?:src|href)="(/playground/assets/[^"]+)"`).FindAllSubmatch(page.Body, -1)
	if len(refs) < 2 {
		t.Fatalf("the page references %d assets, want its script and its styles:\n%s", len(refs), page.Body)
	}
	for _, ref := range refs {
		asset := do(t, mustRequest(t, http.MethodGet, url+string(ref[1])))
		if asset.Status != http.StatusOK || len(asset.Body) == 0 {
			t.Errorf("GET %s = %d, %d bytes", ref[1], asset.Status, len(asset.Body))
			continue
		}
		ct := asset.Header.Get("Content-Type")
		if !strings.HasPrefix(ct, "text/javascript") && !strings.HasPrefix(ct, "text/css") {
			t.Errorf("GET %s: Content-Type %q", ref[1], ct)
		}
		if !strings.Contains(asset.Header.Get("Cache-Control"), "immutable") {
			t.Errorf("GET %s: Cache-Control %q, want immutable", ref[1], asset.Header.Get("Cache-Control"))
		}
	}
	if r := do(t, mustRequest(t, http.MethodGet, url+"/playground/assets/nothing.js")); r.Status != http.StatusNotFound {
		t.Errorf("GET a missing asset = %d, want 404", r.Status)
	}
}

func TestPlaygroundBundleLoadsNothingFromACDN(t *testing.T) {
	for _, cdn := range []string{"unpkg.com", "cdn.jsdelivr.net", "cdnjs.cloudflare.com", "esm.sh"} {
		err := fs.WalkDir(webplayground.Files(), ".", func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := fs.ReadFile(webplayground.Files(), path)
			if err != nil {
				return err
			}
			if bytes.Contains(b, []byte(cdn)) {
				t.Errorf("%s mentions %s", path, cdn)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestPlaygroundGivesTheDevTokenOnlyToThisMachine(t *testing.T) {
	token := testenv.Token(t, "dev", "dev-user")
	env, url, _ := start(t, server.Config{PlaygroundToken: token, AllowedOrigins: []string{"*"}})

	t.Run("a request over loopback gets the token", func(t *testing.T) {
		r := do(t, mustRequest(t, http.MethodGet, url+"/"))
		if got := authorizationOf(playgroundSettings(t, r.Body)); got != "Bearer "+token {
			t.Errorf("Authorization = %q, want the dev token", got)
		}
	})

	tests := []struct {
		name   string
		remote string
		host   string
		header map[string]string
	}{
		{name: "a request from another machine does not", remote: "192.0.2.10:51000", host: "tidemark.example:8080"},
		{name: "nor one from another machine addressed to localhost", remote: "192.0.2.10:51000", host: "localhost:8080"},
		{name: "nor one that claims a loopback client in its headers", remote: "192.0.2.10:51000", host: "127.0.0.1:8080",
			header: map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Real-Ip": "127.0.0.1", "Forwarded": "for=127.0.0.1"}},
		{name: "nor one from an IPv6 address of another machine", remote: "[2001:db8::1]:51000", host: "[::1]:8080"},
		{name: "nor a loopback request addressed to another name (DNS rebinding)", remote: "127.0.0.1:51000", host: "attacker.example:8080"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "http://"+tt.host+"/", nil)
			req.RemoteAddr = tt.remote
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			env.Handler.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				t.Fatalf("GET / = %d", rec.Code)
			}
			if bytes.Contains(rec.Body.Bytes(), []byte(token)) {
				t.Fatalf("the page carries the dev token")
			}
			settings := playgroundSettings(t, rec.Body.Bytes())
			if settings["tokenWithheld"] != true {
				t.Errorf("settings = %v, want tokenWithheld", settings)
			}
		})
	}

	t.Run("an IPv6 loopback request gets the token", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodGet, "http://[::1]:8080/", nil)
		req.RemoteAddr = "[::1]:51000"
		rec := httptest.NewRecorder()
		env.Handler.ServeHTTP(rec, req)
		if got := authorizationOf(playgroundSettings(t, rec.Body.Bytes())); got != "Bearer "+token {
			t.Errorf("Authorization = %q, want the dev token", got)
		}
	})
}

func TestCORSOnlyOnTheAPI(t *testing.T) {
	token := testenv.Token(t, "dev", "dev-user")
	_, url, _ := start(t, server.Config{PlaygroundToken: token, AllowedOrigins: []string{"*"}})
	page := do(t, mustRequest(t, http.MethodGet, url+"/"))
	asset := regexp.MustCompile(`src="(/playground/assets/[^"]+)"`).FindSubmatch(page.Body)
	if asset == nil {
		t.Fatalf("no script in the page:\n%s", page.Body)
	}

	corsHeaders := func(r reply) []string {
		var names []string
		for name := range r.Header {
			if strings.HasPrefix(name, "Access-Control-") {
				names = append(names, name)
			}
		}
		return names
	}
	for _, path := range []string{"/", string(asset[1]), "/healthz"} {
		for _, method := range []string{http.MethodGet, http.MethodOptions} {
			req := mustRequest(t, method, url+path)
			req.Header.Set("Origin", "https://attacker.example")
			req.Header.Set("Access-Control-Request-Method", http.MethodGet)
			if r := do(t, req); len(corsHeaders(r)) != 0 {
				t.Errorf("%s %s from another origin: CORS headers %v, want none", method, path, corsHeaders(r))
			}
		}
	}

	// The API itself still answers cross-origin requests.
	pre := mustRequest(t, http.MethodOptions, url+"/graphql")
	pre.Header.Set("Origin", "https://app.example")
	pre.Header.Set("Access-Control-Request-Method", http.MethodPost)
	pre.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
	if r := do(t, pre); r.Header.Get("Access-Control-Allow-Origin") == "" {
		t.Errorf("preflight of /graphql: no Access-Control-Allow-Origin (status %d, headers %v)", r.Status, r.Header)
	}
	post := mustRequest(t, http.MethodPost, url+"/graphql")
	post.Body = http.NoBody
	post.Header.Set("Origin", "https://app.example")
	if r := do(t, post); r.Header.Get("Access-Control-Allow-Origin") == "" {
		t.Errorf("POST /graphql from another origin: no Access-Control-Allow-Origin (status %d)", r.Status)
	}
}

func mustRequest(tb testing.TB, method, url string) *http.Request {
	tb.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return req
}
