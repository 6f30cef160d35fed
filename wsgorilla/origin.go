package wsgorilla

import (
	"net/http"
	"strings"
)

// OriginAllowList returns a CheckOrigin that accepts upgrades whose Origin
// header is one of origins, compared as scheme://host[:port] without regard
// to case ("https://app.example.com", not "app.example.com" and not with a
// path). "*" among origins accepts every origin. A request without an Origin
// header is accepted: browsers always send one on a websocket upgrade, so its
// absence means a non-browser client, which cross-site request forgery does
// not concern.
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
		return len(values) == 1 && allowed[strings.ToLower(values[0])]
	}
}
