package auth

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// MiddlewareOptions tunes Verifier.Middleware. The zero value is the normal
// server setup: WebSocket upgrades and CORS preflights pass without a token.
type MiddlewareOptions struct {
	// RequireTokenForWebSocket, when true, treats WebSocket upgrade requests
	// like any other request. By default an upgrade without an Authorization
	// header passes through (authentication then happens in connection_init);
	// one with a valid header gets the Identity in its context, and one with
	// an invalid header is rejected.
	RequireTokenForWebSocket bool
	// RequireTokenForPreflight, when true, treats OPTIONS requests like any
	// other request. By default they pass through untouched.
	RequireTokenForPreflight bool
}

// Middleware authenticates every request from its Authorization header. On
// success the Identity is stored in the request context (see FromContext) and
// next is called. Otherwise it answers 401 with "WWW-Authenticate: Bearer" and
// a GraphQL-shaped JSON error whose extensions.code is UNAUTHENTICATED.
//
// Requests let through without a token (see MiddlewareOptions) reach next with
// no Identity in their context; next must check FromContext.
func (v *Verifier) Middleware(next http.Handler, opts MiddlewareOptions) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions && !opts.RequireTokenForPreflight {
			next.ServeHTTP(w, r)
			return
		}

		id, err := v.VerifyAuthorization(r.Header.Get("Authorization"))
		if err != nil {
			if errors.Is(err, ErrNoCredentials) && !opts.RequireTokenForWebSocket && isWebSocketUpgrade(r) {
				next.ServeHTTP(w, r)
				return
			}
			writeUnauthorized(w, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
	})
}

// isWebSocketUpgrade reports whether r is a WebSocket opening handshake
// (RFC 6455 §4.1: GET, Connection: Upgrade, Upgrade: websocket). Requiring all
// three keeps a stray "Upgrade: websocket" header on a POST from skipping auth.
func isWebSocketUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet &&
		headerHasToken(r.Header, "Connection", "upgrade") &&
		headerHasToken(r.Header, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, part := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}

type gqlErrorBody struct {
	Errors []gqlError `json:"errors"`
}

type gqlError struct {
	Message    string            `json:"message"`
	Extensions map[string]string `json:"extensions"`
}

func writeUnauthorized(w http.ResponseWriter, err error) {
	msg := ErrInvalidToken.Error()
	if err != nil {
		msg = err.Error() // short messages only; never contains the token
	}
	body, _ := json.Marshal(gqlErrorBody{Errors: []gqlError{{
		Message:    msg,
		Extensions: map[string]string{"code": "UNAUTHENTICATED"},
	}}})
	h := w.Header()
	h.Set("WWW-Authenticate", "Bearer")
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write(body)
}
