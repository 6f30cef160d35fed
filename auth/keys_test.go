package auth

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
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// idpClaims are a provider's claims at testNow.
func idpClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"iss": "https://idp.example.test/", "aud": "tidemark",
		"sub": "user-1", "tenant_id": "tenant-a",
		"iat": testNow.Unix(), "exp": testNow.Add(time.Hour).Unix(),
	}
}

func signKID(t *testing.T, m jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func pemPublic(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func jwksJSON(t *testing.T, kid string, alg jwkset.ALG, pub crypto.PublicKey) []byte {
	t.Helper()
	j, err := jwkset.NewJWKFromKey(pub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid, ALG: alg, USE: jwkset.UseSig}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{j.Marshal()}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newFromFile(t *testing.T, path string, mapping ClaimMapping) *Verifier {
	t.Helper()
	v, err := New(context.Background(), Config{
		JWKSFile: path, Issuer: "https://idp.example.test/", Audience: "tidemark",
		Claims: mapping, Now: func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

// An air-gapped deployment gives the provider's keys as a file: a JWKS, or
// PEM public keys (which have no kid: a token is tried against each key of
// its kind).
func TestJWKSFile(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("JWKS JSON", func(t *testing.T) {
		v := newFromFile(t, writeFile(t, "jwks.json", jwksJSON(t, "k1", jwkset.AlgES256, ecKey.Public())), ClaimMapping{})
		if _, err := v.Verify(signKID(t, jwt.SigningMethodES256, ecKey, "k1", idpClaims())); err != nil {
			t.Errorf("token of the file's key: %v", err)
		}
		if _, err := v.Verify(signKID(t, jwt.SigningMethodES256, ecKey, "k2", idpClaims())); err == nil || err.Error() != "token signed by an unknown key" {
			t.Errorf("token with another kid: err = %v, want an unknown key", err)
		}
	})
	t.Run("PEM keys and no kid", func(t *testing.T) {
		pems := append(pemPublic(t, rsaKey.Public()), pemPublic(t, edPub)...)
		v := newFromFile(t, writeFile(t, "keys.pem", pems), ClaimMapping{})
		for name, tok := range map[string]string{
			"RS256":               signKID(t, jwt.SigningMethodRS256, rsaKey, "", idpClaims()),
			"EdDSA with some kid": signKID(t, jwt.SigningMethodEdDSA, edPriv, "whatever", idpClaims()),
		} {
			if _, err := v.Verify(tok); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
		if _, err := v.Verify(signKID(t, jwt.SigningMethodES256, ecKey, "", idpClaims())); err == nil {
			t.Error("ES256 token accepted with no ECDSA key in the file")
		}
		// The RSA public key as an HS256 secret: no secret is configured, so
		// HS256 is not even an allowed algorithm.
		if _, err := v.Verify(signKID(t, jwt.SigningMethodHS256, pemPublic(t, rsaKey.Public()), "", idpClaims())); err == nil || err.Error() != "token algorithm not allowed" {
			t.Errorf("alg confusion: err = %v", err)
		}
	})
	t.Run("unusable files", func(t *testing.T) {
		small, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			t.Fatal(err)
		}
		for name, data := range map[string][]byte{
			"empty":              nil,
			"a private key":      pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}),
			"a 1024-bit RSA key": pemPublic(t, small.Public()),
			"broken JSON":        []byte(`{"keys": [`),
			"a JWKS of no keys":  []byte(`{"keys": []}`),
		} {
			if _, err := New(context.Background(), Config{JWKSFile: writeFile(t, "f", data)}); err == nil {
				t.Errorf("%s: accepted", name)
			}
		}
		if _, err := New(context.Background(), Config{JWKSFile: filepath.Join(t.TempDir(), "missing.json")}); err == nil {
			t.Error("a missing file: accepted")
		}
	})
}

// A JWKS URL is read before New returns: a server that could verify no
// token reports why, naming the URL.
func TestNewRefusesAnUnreadableJWKS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/jwks.json"
	ln.Close()
	serve := func(status int, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	huge := `{"keys":[` + strings.Repeat(" ", maxJWKSBytes) + `]}`
	encOnly := `{"keys":[{"kty":"oct","use":"enc","kid":"e","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}]}`
	for name, url := range map[string]string{
		"nothing listens":          closed,
		"the provider answers 500": serve(http.StatusInternalServerError, "oops"),
		"not JSON":                 serve(http.StatusOK, "<html>"),
		"no keys":                  serve(http.StatusOK, `{"keys":[]}`),
		"larger than the cap":      serve(http.StatusOK, huge),
		"only an encryption key":   serve(http.StatusOK, encOnly),
	} {
		_, err := New(context.Background(), Config{JWKSURL: url})
		if err == nil || !strings.Contains(err.Error(), url) {
			t.Errorf("%s: err = %v, want an error naming %s", name, err, url)
		}
	}
	if _, err := New(context.Background(), Config{JWKSURL: closed, JWKSFile: "x"}); err == nil {
		t.Error("a URL and a file: accepted")
	}
	if _, err := New(context.Background(), Config{}); err == nil {
		t.Error("no secret and no JWKS: accepted")
	}
}

// Claims for sync rules: the mapped role, user and tenant under their
// default names, nested claims under their dotted path.
func TestClaimMappingFillsTheClaimsSyncRulesRead(t *testing.T) {
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, "jwks.json", jwksJSON(t, "ed", jwkset.AlgEdDSA, edPub))
	claims := idpClaims()
	delete(claims, "tenant_id")
	claims["role"] = "authenticated" // Supabase's top-level role: not the app's
	claims["app_metadata"] = map[string]any{"tenant_id": "tenant-n", "role": "technician", "region": "north", "deeper": map[string]any{"level": 3}}
	claims["https://example.test/site"] = "site-9"
	token := signKID(t, jwt.SigningMethodEdDSA, edPriv, "ed", claims)

	v := newFromFile(t, path, ClaimMapping{Tenant: "app_metadata.tenant_id", Role: "app_metadata.role"})
	id, err := v.Verify(token)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"sub": "user-1", "tenant_id": "tenant-n", "role": "technician",
		"app_metadata.tenant_id": "tenant-n", "app_metadata.role": "technician", "app_metadata.region": "north",
		"https://example.test/site": "site-9", "iss": "https://idp.example.test/", "aud": "tidemark",
	}
	if id.TenantID != "tenant-n" || id.UserID != "user-1" {
		t.Errorf("identity = %+v", id)
	}
	for k, w := range want {
		if id.Claims[k] != w {
			t.Errorf("Claims[%q] = %q, want %q", k, id.Claims[k], w)
		}
	}
	if len(id.Claims) != len(want) {
		t.Errorf("Claims = %v, want exactly %v", id.Claims, want)
	}

	// With the role mapped elsewhere, a token without it has no role, even
	// with a top-level "role".
	delete(claims["app_metadata"].(map[string]any), "role")
	id, err = v.Verify(signKID(t, jwt.SigningMethodEdDSA, edPriv, "ed", claims))
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := id.Claims["role"]; ok {
		t.Errorf("Claims[role] = %q, want none", r)
	}
	// A non-string where the tenant should be is refused.
	claims["app_metadata"].(map[string]any)["tenant_id"] = 7
	if _, err := v.Verify(signKID(t, jwt.SigningMethodEdDSA, edPriv, "ed", claims)); err == nil || !errors.Is(err, ErrInvalidToken) {
		t.Errorf("numeric tenant: err = %v", err)
	}
}
