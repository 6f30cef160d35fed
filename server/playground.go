package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"

	"github.com/rs/cors"

	webplayground "github.com/tidemark/tidemark/web/playground"
)

// PlaygroundAssetsPath is where the Playground's built assets are served;
// the page itself is served at /. It matches Vite's base in
// web/playground/vite.config.js.
const PlaygroundAssetsPath = "/playground/"

// playgroundConfigTag is the placeholder in the built index.html that the
// page's settings replace.
var playgroundConfigTag = []byte(`<script id="tidemark-config" type="application/json">{}</script>`)

// playgroundSettings is what the page reads from its config tag.
type playgroundSettings struct {
	Endpoint string            `json:"endpoint"`
	Headers  map[string]string `json:"headers,omitempty"`
	// TokenWithheld says the server has a dev token but did not give it to
	// this (non-loopback) request, so the page asks for one.
	TokenWithheld bool `json:"tokenWithheld,omitempty"`
}

// playground serves the Playground from the binary: the page at / and its
// assets under PlaygroundAssetsPath.
type playground struct {
	page   []byte // index.html
	assets http.Handler
	token  string
}

func newPlayground(token string) (*playground, error) {
	files := webplayground.Files()
	page, err := fs.ReadFile(files, "index.html")
	if err != nil {
		return nil, fmt.Errorf("playground: %w", err)
	}
	if bytes.Count(page, playgroundConfigTag) != 1 {
		return nil, fmt.Errorf("playground: index.html does not hold the config tag once; rebuild web/playground")
	}
	return &playground{
		page:   page,
		assets: http.StripPrefix(PlaygroundAssetsPath, http.FileServerFS(files)),
		token:  token,
	}, nil
}

// servePage serves index.html with its settings. The dev token goes only to
// requests from this machine: dev mode must not hand a 30-day token to
// anyone on the network.
func (p *playground) servePage(w http.ResponseWriter, r *http.Request) {
	settings := playgroundSettings{Endpoint: "/graphql"}
	if p.token != "" {
		if fromThisMachine(r) {
			settings.Headers = map[string]string{"Authorization": "Bearer " + p.token}
		} else {
			settings.TokenWithheld = true
		}
	}
	// json.Marshal escapes <, > and &, so the settings cannot end the tag.
	js, err := json.Marshal(settings)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	tag := append(append([]byte(`<script id="tidemark-config" type="application/json">`), js...), "</script>"...)
	body := bytes.Replace(p.page, playgroundConfigTag, tag, 1)
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// The page may carry a token: never cached, never framed, never the
	// referrer of a request elsewhere.
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "+
		"img-src 'self' data:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	_, _ = w.Write(body)
}

// serveAsset serves the built scripts and styles. Their names carry a hash
// of their content, so they are cached for good.
func (p *playground) serveAsset(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == PlaygroundAssetsPath || r.URL.Path == PlaygroundAssetsPath+"index.html" {
		http.Redirect(w, r, "/", http.StatusFound)
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	p.assets.ServeHTTP(w, r)
}

// corsOnlyOn applies the CORS policy to one path alone. Cross-origin
// browser requests are for the API; the Playground's page (which may carry
// the dev token), its assets and the health endpoints get no CORS headers,
// so no page of another origin can read them.
func corsOnlyOn(path string, c *cors.Cors, next http.Handler) http.Handler {
	withCORS := c.Handler(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == path {
			withCORS.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
