package wsgorilla

import (
	"net/http"
	"net/url"
	"strings"
)

// OriginAllowList returns a CheckOrigin that accepts upgrades whose Origin
// header is one of origins, compared as scheme://host[:port] without regard
// to case ("https://app.example.com", not "app.example.com" and not with a
// path). "*" among origins accepts every origin. A request without an Origin
// header is accepted: browsers always send one on a websocket upgrade, so its
// absence means a non-browser client, which cross-site request forgery does
// not concern. The server's own origin (the Origin's host is the request's
// Host, as gorilla's default check has it) is always accepted: those are the
// pages Tidemark itself serves, the Playground and the demo.
//
// Browsers send cookies with websocket upgrades from any site, so use "*" only
// when authentication travels in the connection_init payload, never when it
// rides on cookies.
func OriginAllowList(origins []string) func(*http.Request) bool {
	allowed := make(map[string]bool, len(origins))
	anyOrigin := false
	for _, o := range origins {
		o = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(o), "/"))
		switch o {
		case "":
		case "*":
			anyOrigin = true
		default:
			allowed[o] = true
		}
	}
	return func(r *http.Request) bool {
		values := r.Header.Values("Origin")
		if len(values) == 0 {
			return true
		}
		if anyOrigin {
			return true
		}
		if len(values) != 1 {
			return false
		}
		origin := strings.ToLower(values[0])
		if allowed[origin] {
			return true
		}
		u, err := url.Parse(origin)
		return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Path == "" &&
			u.RawQuery == "" && u.Host != "" && strings.EqualFold(u.Host, r.Host)
	}
}
