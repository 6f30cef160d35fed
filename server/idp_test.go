package server_test

// Identity-provider tokens, end to end: a JWKS served on loopback with real
// RSA, ECDSA P-256 and Ed25519 key pairs, a verifier built by auth.New on
// it, the real handler on a real PostgreSQL behind a real listener, and
// tokens sent as a client would: over HTTP and at a websocket's
// connection_init.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/testenv"
)

const (
	idpIssuer   = "https://idp.example.test/"
	idpAudience = "tidemark-api"
)

// signingKey is one of the provider's key pairs.
type signingKey struct {
	kid    string
	method jwt.SigningMethod
	priv   crypto.Signer
}

func newSigningKey(tb testing.TB, kid, alg string) signingKey {
	tb.Helper()
	var (
		priv crypto.Signer
		err  error
	)
	switch alg {
	case "RS256":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		tb.Fatalf("no key type for %s", alg)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return signingKey{kid: kid, method: jwt.GetSigningMethod(alg), priv: priv}
}

// sign mints a token with this key; kid "" leaves the header without one.
func (k signingKey) sign(tb testing.TB, claims jwt.MapClaims) string {
	tb.Helper()
	tok := jwt.NewWithClaims(k.method, claims)
	if k.kid != "" {
		tok.Header["kid"] = k.kid
	}
	s, err := tok.SignedString(k.priv)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// jwk is the public half as a provider publishes it.
func (k signingKey) jwk(tb testing.TB) jwkset.JWKMarshal {
	tb.Helper()
	j, err := jwkset.NewJWKFromKey(k.priv.Public(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{
		KID: k.kid, ALG: jwkset.ALG(k.method.Alg()), USE: jwkset.UseSig,
	}})
	if err != nil {
		tb.Fatal(err)
	}
	return j.Marshal()
}

// identityProvider serves a JWKS on loopback and counts its fetches.
type identityProvider struct {
	url     string
	fetches atomic.Int64

	mu   sync.Mutex
	keys []signingKey
}

func newIdentityProvider(tb testing.TB, keys ...signingKey) *identityProvider {
	tb.Helper()
	p := &identityProvider{keys: keys}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		p.mu.Lock()
		set := jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{}}
		for _, k := range p.keys {
			set.Keys = append(set.Keys, k.jwk(tb))
		}
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	}))
	tb.Cleanup(srv.Close)
	p.url = srv.URL + "/.well-known/jwks.json"
	return p
}

// publish replaces the provider's keys, as a rotation does.
func (p *identityProvider) publish(keys ...signingKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = keys
}

// idpVerifier builds the server's verifier on the provider.
func idpVerifier(tb testing.TB, cfg auth.Config) *auth.Verifier {
	tb.Helper()
	if cfg.Issuer == "" {
		cfg.Issuer = idpIssuer
	}
	if cfg.Audience == "" {
		cfg.Audience = idpAudience
	}
	if cfg.JWKSUnknownKIDInterval == 0 {
		// No refill within a test: what the limiter allows is exact.
		cfg.JWKSUnknownKIDInterval = time.Hour
	}
	v, err := auth.New(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(v.Close)
	return v
}

// idpClaims are a provider token's claims for a caller of tenantID.
func idpClaims(tenantID string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss": idpIssuer, "aud": []string{idpAudience, "another-api"},
		"sub": "user-1", "tenant_id": tenantID,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
}

func withClaims(c jwt.MapClaims, set map[string]any) jwt.MapClaims {
	for k, v := range set {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

// viewer asks who the caller is with token and returns the reply.
func viewer(tb testing.TB, url, token string) reply {
	tb.Helper()
	return post(tb, url, token, `{ viewer { userId tenantId } }`, nil)
}

// assertAccepted checks that token is someone over HTTP and at
// connection_init of both websocket protocols.
func assertAccepted(t *testing.T, url, token, wantTenant, wantUser string) {
	t.Helper()
	r := viewer(t, url, token)
	var data struct {
		Viewer struct{ UserID, TenantID string }
	}
	if r.Status != http.StatusOK || len(r.GQL.Errors) != 0 || json.Unmarshal(r.GQL.Data, &data) != nil {
		t.Fatalf("viewer: status %d: %s", r.Status, r.Body)
	}
	if data.Viewer.TenantID != wantTenant || data.Viewer.UserID != wantUser {
		t.Errorf("viewer = %+v, want tenant %q user %q", data.Viewer, wantTenant, wantUser)
	}
	for _, proto := range streamProtocols {
		connectStream(t, url, proto, map[string]any{"Authorization": bearer(token)})
	}
}

// assertRefused checks that token gets 401 UNAUTHENTICATED over HTTP and
// a 4403 close at connection_init of both websocket protocols.
func assertRefused(t *testing.T, url, token, wantMessage string) {
	t.Helper()
	r := viewer(t, url, token)
	if r.Status != http.StatusUnauthorized || len(r.GQL.Errors) != 1 || r.GQL.Errors[0].Extensions["code"] != "UNAUTHENTICATED" {
		t.Errorf("HTTP: status %d %s, want 401 with one UNAUTHENTICATED error", r.Status, r.Body)
	} else if r.GQL.Errors[0].Message != wantMessage {
		t.Errorf("HTTP: message %q, want %q", r.GQL.Errors[0].Message, wantMessage)
	}
	for _, proto := range streamProtocols {
		c, _, err := dialStream(t, url, proto, streamDialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c.init(map[string]any{"Authorization": bearer(token)})
		if ce, before := c.closeCode(eventWait); ce.Code != closeForbidden {
			t.Errorf("%s: close %d %q after %s, want %d", proto, ce.Code, ce.Text, describeMessages(before), closeForbidden)
		}
	}
}

func TestIdentityProviderTokenOfEachAlgorithmIsAccepted(t *testing.T) {
	t.Parallel()
	keys := []signingKey{newSigningKey(t, "rsa-1", "RS256"), newSigningKey(t, "ec-1", "ES256"), newSigningKey(t, "ed-1", "EdDSA")}
	idp := newIdentityProvider(t, keys...)
	env := testenv.New(t, testenv.Options{Verifier: idpVerifier(t, auth.Config{JWKSURL: idp.url})})
	url := env.Serve(t)
	for _, k := range keys {
		t.Run(k.method.Alg(), func(t *testing.T) {
			tenant := "tenant/" + t.Name()
			token := k.sign(t, idpClaims(tenant))
			assertAccepted(t, url, token, tenant, "user-1")

			// A stream authenticated at connection_init with it is live.
			for _, proto := range streamProtocols {
				c := connectStream(t, url, proto, map[string]any{"Authorization": bearer(token)})
				s := subscribeWorkOrders(c, "1", "")
				awaitLive(t, workOrderAPI{tb: t, url: url, token: token}, s)
			}
		})
	}
	// A token without kid is tried against the keys of its algorithm.
	noKID := keys[1]
	noKID.kid = ""
	assertAccepted(t, url, noKID.sign(t, idpClaims("tenant-nokid")), "tenant-nokid", "user-1")
	if n := idp.fetches.Load(); n != 1 {
		t.Errorf("JWKS fetched %d times, want once: known keys are cached", n)
	}
}

func TestIdentityProviderRefusesBadTokens(t *testing.T) {
	t.Parallel()
	rsaKey, ecKey := newSigningKey(t, "rsa-1", "RS256"), newSigningKey(t, "ec-1", "ES256")
	idp := newIdentityProvider(t, rsaKey, ecKey)

	// The RS256 key's public key, as an attacker finds it in the JWKS,
	// used as an HS256 secret.
	pub, err := x509.MarshalPKIXPublicKey(rsaKey.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	confused := func(claims jwt.MapClaims) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
		tok.Header["kid"] = rsaKey.kid
		s, err := tok.SignedString(pubPEM)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	now := time.Now()
	stranger := newSigningKey(t, "stranger", "RS256")
	impostor := newSigningKey(t, rsaKey.kid, "RS256") // a known kid, another key
	ecAsRSA := signingKey{kid: rsaKey.kid, method: ecKey.method, priv: ecKey.priv}
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, idpClaims("tenant-x")).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}

	refusals := []struct {
		name, token, message string
	}{
		{"expired", rsaKey.sign(t, withClaims(idpClaims("tenant-x"), map[string]any{"exp": now.Add(-2 * time.Minute).Unix(), "iat": now.Add(-time.Hour).Unix(), "nbf": nil})), "token expired"},
		{"nbf in the future", rsaKey.sign(t, withClaims(idpClaims("tenant-x"), map[string]any{"nbf": now.Add(2 * time.Minute).Unix()})), "token not valid yet"},
		{"iat in the future", rsaKey.sign(t, withClaims(idpClaims("tenant-x"), map[string]any{"iat": now.Add(2 * time.Minute).Unix(), "nbf": nil})), "token issued in the future"},
		{"wrong issuer", rsaKey.sign(t, withClaims(idpClaims("tenant-x"), map[string]any{"iss": "https://evil.example.test/"})), "token issuer not accepted"},
		{"no issuer", rsaKey.sign(t, withClaims(idpClaims("tenant-x"), map[string]any{"iss": nil})), "token has no iss"},
		{"wrong audience", rsaKey.sign(t, withClaims(idpClaims("tenant-x"), map[string]any{"aud": "another-api"})), "token audience not accepted"},
		{"alg none", none, "token algorithm not allowed"},
		{"RS256 public key used as an HS256 secret", confused(idpClaims("tenant-x")), "token algorithm not allowed"},
		{"signed by a key the provider does not publish", stranger.sign(t, idpClaims("tenant-x")), "token signed by an unknown key"},
		{"signed by another key under a published kid", impostor.sign(t, idpClaims("tenant-x")), "token signature invalid"},
		{"ES256 under an RSA key's kid", ecAsRSA.sign(t, idpClaims("tenant-x")), "token algorithm not allowed"},
		{"no tenant", rsaKey.sign(t, withClaims(idpClaims("tenant-x"), map[string]any{"tenant_id": nil})), "token has no tenant_id"},
	}

	env := testenv.New(t, testenv.Options{Verifier: idpVerifier(t, auth.Config{JWKSURL: idp.url})})
	url := env.Serve(t)
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) { assertRefused(t, url, r.token, r.message) })
	}
	// The control: the same key and claims, nothing wrong, is accepted.
	assertAccepted(t, url, rsaKey.sign(t, idpClaims("tenant-x")), "tenant-x", "user-1")

	// With a secret as well, HS256 tokens are checked against the secret
	// alone: the public key is still no secret, and a token signed with the
	// secret is accepted (it, too, must name the issuer and audience).
	t.Run("with a secret too", func(t *testing.T) {
		both := testenv.New(t, testenv.Options{Verifier: idpVerifier(t, auth.Config{JWKSURL: idp.url, Secret: testenv.Secret})})
		url := both.Serve(t)
		assertRefused(t, url, confused(idpClaims("tenant-x")), "token signature invalid")
		hs, err := jwt.NewWithClaims(jwt.SigningMethodHS256, idpClaims("tenant-hs")).SignedString(testenv.Secret)
		if err != nil {
			t.Fatal(err)
		}
		assertAccepted(t, url, hs, "tenant-hs", "user-1")
		assertRefused(t, url, testenv.Token(t, "tenant-hs", "user-1"), "token has no iss")
	})
}

func TestIdentityProviderKeyRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKey := newSigningKey(t, "2026-11", "RS256"), newSigningKey(t, "2026-12", "ES256")
	idp := newIdentityProvider(t, oldKey)
	env := testenv.New(t, testenv.Options{Verifier: idpVerifier(t, auth.Config{JWKSURL: idp.url})})
	url := env.Serve(t)

	assertAccepted(t, url, oldKey.sign(t, idpClaims("tenant-r")), "tenant-r", "user-1")
	// The provider rotates: the new key appears, the old one is removed.
	idp.publish(newKey)
	// The first token with the new kid fetches the JWKS anew and is accepted.
	assertAccepted(t, url, newKey.sign(t, idpClaims("tenant-r")), "tenant-r", "user-1")
	if n := idp.fetches.Load(); n != 2 {
		t.Fatalf("JWKS fetched %d times, want 2: at start and for the new kid", n)
	}
	// The old key went with that fetch.
	assertRefused(t, url, oldKey.sign(t, idpClaims("tenant-r")), "token signed by an unknown key")
}

func TestIdentityProviderUnknownKIDFloodFetchesTheJWKSOnce(t *testing.T) {
	t.Parallel()
	key := newSigningKey(t, "real", "EdDSA")
	idp := newIdentityProvider(t, key)
	env := testenv.New(t, testenv.Options{Verifier: idpVerifier(t, auth.Config{JWKSURL: idp.url})})
	url := env.Serve(t)

	const flood = 100
	var wg sync.WaitGroup
	var refused atomic.Int64
	for i := range flood {
		wg.Go(func() {
			made := key
			made.kid = fmt.Sprintf("made-up-%d", i)
			if r := viewer(t, url, made.sign(t, idpClaims("tenant-f"))); r.Status == http.StatusUnauthorized {
				refused.Add(1)
			}
		})
	}
	wg.Wait()
	if n := refused.Load(); n != flood {
		t.Errorf("%d of %d tokens with made-up kids refused, want all", n, flood)
	}
	// One fetch at start, one for the first unknown kid: the control that
	// an unknown kid does reach the provider. Then no more.
	if n := idp.fetches.Load(); n != 2 {
		t.Errorf("JWKS fetched %d times for %d unknown kids, want 2 (start, then one rate-limited refresh)", n, flood)
	}
	// The known key is still served from the cache.
	assertAccepted(t, url, key.sign(t, idpClaims("tenant-f")), "tenant-f", "user-1")
	if n := idp.fetches.Load(); n != 2 {
		t.Errorf("JWKS fetched %d times, want still 2", n)
	}
}

func TestIdentityProviderClaimMapping(t *testing.T) {
	t.Parallel()
	key := newSigningKey(t, "k", "RS256")
	idp := newIdentityProvider(t, key)
	env := testenv.New(t, testenv.Options{Verifier: idpVerifier(t, auth.Config{
		JWKSURL: idp.url,
		Claims: auth.ClaimMapping{
			Tenant: "app_metadata.tenant_id",
			User:   "https://tidemark.example.test/user_id",
			Role:   "app_metadata.role",
		},
	})})
	url := env.Serve(t)

	// Auth0-style: a namespaced claim whose name has dots, and nested
	// ones. The top-level tenant_id and role are decoys the mapping skips.
	mapped := func(tenant, role string) string {
		return key.sign(t, withClaims(idpClaims("top-level-tenant"), map[string]any{
			"sub":                                   "auth0|abc",
			"https://tidemark.example.test/user_id": "user-42",
			"role":                                  "dispatcher",
			"app_metadata":                          map[string]any{"tenant_id": tenant, "role": role},
		}))
	}
	assertAccepted(t, url, mapped("tenant-m", "technician"), "tenant-m", "user-42")

	// The mapped role and user reach the sync rules: a technician
	// (default rules) syncs the work orders assigned to its user id.
	dispatcher := workOrderAPI{tb: t, url: url, token: mapped("tenant-m1", "dispatcher")}
	technician := workOrderAPI{tb: t, url: url, token: mapped("tenant-m1", "technician")}
	mine, theirs := workOrder("wo-mine", "assigned to user-42"), workOrder("wo-theirs", "assigned to someone else")
	mine["assigneeId"], theirs["assigneeId"] = "user-42", "user-7"
	dispatcher.push(mine, theirs)
	if ids, _ := technician.pull("", 10); len(ids) != 1 || ids[0] != "wo-mine" {
		t.Errorf("technician pulled %v, want only [wo-mine]", ids)
	}
	if ids, _ := dispatcher.pull("", 10); len(ids) != 2 {
		t.Errorf("dispatcher pulled %v, want both work orders", ids)
	}
	// The mapped tenant is the tenant.
	other := workOrderAPI{tb: t, url: url, token: mapped("tenant-m2", "dispatcher")}
	if ids, _ := other.pull("", 10); len(ids) != 0 {
		t.Errorf("tenant-m2 pulled %v, pushed by tenant-m1", ids)
	}
	// A token whose tenant is only where the default mapping looks is refused.
	assertRefused(t, url, key.sign(t, withClaims(idpClaims("tenant-m"), map[string]any{"https://tidemark.example.test/user_id": "user-42"})), "token has no app_metadata.tenant_id")
}
