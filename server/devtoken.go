package server

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// fromThisMachine reports whether r may receive a dev-mode token (the
// Playground's, the demo's identities): its peer address (the
// connection's, never a header such as X-Forwarded-For) is a loopback
// address, and it is addressed to a loopback name, so that a web page
// that rebinds its own name to 127.0.0.1 does not get a token either.
func fromThisMachine(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || !peer.Unmap().IsLoopback() {
		return false
	}
	return loopbackName(r.Host)
}

// sameOriginOrNone reports whether r comes from no web page or from one
// of the server's own: a script of another site may call a dev-mode
// server (its CORS allows any origin) but must not read a token from it.
func sameOriginOrNone(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

func loopbackName(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.Unmap().IsLoopback()
}
