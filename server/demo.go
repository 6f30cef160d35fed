package server

import (
	"io/fs"
	"net/http"
	"strings"

	"github.com/tidemark/tidemark/apperr"
	"github.com/tidemark/tidemark/web/demo"
)

// DevIdentity is one identity the demo app switches between in dev mode.
type DevIdentity struct {
	User  string `json:"user"`  // the token's sub
	Name  string `json:"name"`  // shown in the app
	Role  string `json:"role"`  // the token's role claim (syncrules/default.rules)
	Token string `json:"token"` // bearer token, without "Bearer "
}

// DevIdentities are the demo's identities: two technicians, who each sync
// their own work orders under the default sync rules, and a dispatcher, who
// syncs the whole tenant.
var DevIdentities = []DevIdentity{
	{User: "tech-ana", Name: "Ana (technician)", Role: "technician"},
	{User: "tech-ben", Name: "Ben (technician)", Role: "technician"},
	{User: "dispatch-dana", Name: "Dana (dispatcher)", Role: "dispatcher"},
}

// mountDemo serves the demo app at /demo when cfg.Demo is set, and its dev
// identities at /demo/identities when cfg.DevTokens is set too.
func mountDemo(mux *http.ServeMux, cfg Config) {
	if !cfg.Demo {
		return
	}
	assets := demo.Assets()
	files := http.StripPrefix("/demo/", http.FileServerFS(assets))
	mux.HandleFunc("GET /demo/{path...}", func(w http.ResponseWriter, r *http.Request) {
		path := r.PathValue("path")
		if path == "" || path == "index.html" {
			// The page names the current assets: never cached.
			w.Header().Set("Cache-Control", "no-cache")
			http.ServeFileFS(w, r, assets, "index.html")
			return
		}
		if _, err := fs.Stat(assets, path); err != nil {
			writeHTTPError(w, http.StatusNotFound, apperr.NotFound, "no such file in the demo app")
			return
		}
		if strings.HasPrefix(path, "assets/") {
			// Vite puts a hash of the content in these names.
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		}
		files.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /demo/identities", func(w http.ResponseWriter, r *http.Request) {
		if cfg.DevTokens == nil {
			writeHTTPError(w, http.StatusNotFound, apperr.NotFound, "dev identities exist only in dev mode")
			return
		}
		if !fromThisMachine(r) || !sameOriginOrNone(r) {
			writeHTTPError(w, http.StatusForbidden, apperr.Forbidden, "dev identities are handed out only to loopback requests from the same origin")
			return
		}
		out := make([]DevIdentity, 0, len(DevIdentities))
		for _, id := range DevIdentities {
			tok, err := cfg.DevTokens(id.User, id.Role)
			if err != nil {
				Logger(r.Context(), cfg.Logger).Error("issue dev token", "err", err, "user", id.User)
				writeHTTPError(w, http.StatusInternalServerError, apperr.Internal, "internal error")
				return
			}
			id.Token = tok
			out = append(out, id)
		}
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, map[string]any{"identities": out})
	})
}

// writeHTTPError answers a request outside GraphQL in the shape of a
// GraphQL error, so every client reads extensions.code the same way.
func writeHTTPError(w http.ResponseWriter, status int, code apperr.Code, message string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, map[string]any{"errors": []map[string]any{{
		"message":    message,
		"extensions": map[string]string{"code": string(code)},
	}}})
}
