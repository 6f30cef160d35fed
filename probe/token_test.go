package probe_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tidemark/tidemark/testenv"
)

// forgedTokens are tokens an attacker can make without the server's key,
// or tokens the server issued that are no longer (or not yet) good.
func forgedTokens(tb testing.TB) map[string]string {
	tb.Helper()
	now := time.Now()
	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"sub": "mallory", "tenant_id": "tenant-a", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if mod != nil {
			mod(c)
		}
		return c
	}
	hs := func(secret []byte, c jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
		if err != nil {
			tb.Fatal(err)
		}
		return s
	}
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		tb.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	es, err := jwt.NewWithClaims(jwt.SigningMethodES256, claims(nil)).SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	good := hs(testenv.Secret, claims(nil))
	parts := strings.Split(good, ".")
	return map[string]string{
		"signed with another secret":              hs([]byte("not-the-server-secret-not-the-server-secret"), claims(nil)),
		"alg none":                                none,
		"alg none with the signature cut":         strings.Join([]string{headerOf(tb, none), parts[1], ""}, "."),
		"ES256 by an unknown key":                 es,
		"expired":                                 hs(testenv.Secret, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() })),
		"not yet valid (nbf)":                     hs(testenv.Secret, claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() })),
		"issued in the future (iat)":              hs(testenv.Secret, claims(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Hour).Unix() })),
		"without a tenant":                        hs(testenv.Secret, claims(func(c jwt.MapClaims) { delete(c, "tenant_id") })),
		"without a subject":                       hs(testenv.Secret, claims(func(c jwt.MapClaims) { delete(c, "sub") })),
		"payload swapped under a valid signature": strings.Join([]string{parts[0], payloadOf(tb, claims(func(c jwt.MapClaims) { c["tenant_id"] = "tenant-b" })), parts[2]}, "."),
		"oversized":                               hs(testenv.Secret, claims(func(c jwt.MapClaims) { c["pad"] = strings.Repeat("x", 64<<10) })),
		"not a token":                             "definitely-not-a-jwt",
	}
}

func headerOf(tb testing.TB, token string) string {
	tb.Helper()
	return strings.Split(token, ".")[0]
}

// payloadOf encodes claims as a JWT payload segment.
func payloadOf(tb testing.TB, c jwt.MapClaims) string {
	tb.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		tb.Fatal(err)
	}
	return strings.Split(s, ".")[1]
}

// TestForgedAndStaleTokensAreRefused sends each bad token over HTTP and at
// a websocket's connection_init: HTTP answers 401 UNAUTHENTICATED (or 431
// for a header too large to read), the websocket is closed with 4401 or
// 4403, and nothing of the tenant the token names is returned.
func TestForgedAndStaleTokensAreRefused(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	base := env.Serve(t)
	seedVictim(t, caller{base: base, token: testenv.Token(t, "tenant-a", "alice")})
	seen := &transcript{}

	for name, token := range forgedTokens(t) {
		t.Run(name, func(t *testing.T) {
			c := caller{base: base, token: token, seen: seen}
			a := c.post(t, `{ viewer { tenantId userId } workOrders(first: 5) { edges { node { title } } } }`, nil)
			switch {
			case a.Status == 431 && name == "oversized":
			case a.Status != 401:
				t.Fatalf("HTTP status %d, want 401: %.300s", a.Status, a.Body)
			case len(a.Errors) != 1 || a.Errors[0].code() != "UNAUTHENTICATED":
				t.Fatalf("want one UNAUTHENTICATED error, got %s", a.Body)
			}

			s := dial(t, base, seen)
			s.send(t, map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + token}})
			if code := s.closed(t); code != 4401 && code != 4403 {
				t.Fatalf("websocket closed with %d, want 4401 or 4403", code)
			}
		})
	}
	seen.mustNotContain(t, victimMarkers...)
}
