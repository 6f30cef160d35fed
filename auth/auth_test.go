package auth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	testSecret = []byte("0123456789abcdef0123456789abcdef")
	testNow    = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
)

func testVerifier(opts ...Option) *Verifier {
	return NewVerifier(testSecret, append([]Option{WithClock(func() time.Time { return testNow })}, opts...)...)
}

// sign signs arbitrary claims with an arbitrary method and key.
func sign(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

// goodClaims returns a complete, valid claim set; callers tweak copies.
func goodClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"sub":       "user-1",
		"tenant_id": "tenant-a",
		"exp":       testNow.Add(time.Hour).Unix(),
		"iat":       testNow.Unix(),
	}
}

func claimsWith(mut func(jwt.MapClaims)) jwt.MapClaims {
	c := goodClaims()
	mut(c)
	return c
}

// handcrafted builds header.payload.sig from raw JSON without any library help.
func handcrafted(header, payload, sig string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(payload)) + "." + sig
}

func TestVerify(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	valid := sign(t, jwt.SigningMethodHS256, testSecret, goodClaims())
	parts := strings.Split(valid, ".")
	otherPayload := base64.RawURLEncoding.EncodeToString([]byte(
		`{"sub":"admin","tenant_id":"tenant-b","exp":` + jsonInt(testNow.Add(time.Hour).Unix()) + `}`))
	tampered := parts[0] + "." + otherPayload + "." + parts[2]

	tests := []struct {
		name    string
		token   string
		wantErr error  // nil means success
		wantMsg string // exact Error() text when wantErr != nil
		wantJWT error  // optional jwt reason that must be wrapped
	}{
		{name: "accepts valid token", token: valid},
		{name: "rejects expired token", token: sign(t, jwt.SigningMethodHS256, testSecret, claimsWith(func(c jwt.MapClaims) {
			c["exp"] = testNow.Add(-time.Hour).Unix()
		})), wantErr: ErrInvalidToken, wantMsg: "token expired", wantJWT: jwt.ErrTokenExpired},
		{name: "rejects wrong secret", token: sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx"), goodClaims()),
			wantErr: ErrInvalidToken, wantMsg: "token signature invalid", wantJWT: jwt.ErrTokenSignatureInvalid},
		{name: "rejects tampered payload", token: tampered,
			wantErr: ErrInvalidToken, wantMsg: "token signature invalid", wantJWT: jwt.ErrTokenSignatureInvalid},
		{name: "rejects alg none", token: sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, goodClaims()),
			wantErr: ErrInvalidToken, wantMsg: "token algorithm not allowed"},
		{name: "rejects alg NONE spelled differently", token: handcrafted(`{"alg":"NONE","typ":"JWT"}`, `{"sub":"u","tenant_id":"t","exp":9999999999}`, ""),
			wantErr: ErrInvalidToken, wantMsg: "token algorithm not allowed"},
		{name: "rejects HS384 signed with the right secret", token: sign(t, jwt.SigningMethodHS384, testSecret, goodClaims()),
			wantErr: ErrInvalidToken, wantMsg: "token algorithm not allowed", wantJWT: jwt.ErrTokenSignatureInvalid},
		{name: "rejects RS256 token", token: sign(t, jwt.SigningMethodRS256, rsaKey, goodClaims()),
			wantErr: ErrInvalidToken, wantMsg: "token algorithm not allowed", wantJWT: jwt.ErrTokenSignatureInvalid},
		{name: "rejects missing tenant_id", token: sign(t, jwt.SigningMethodHS256, testSecret, claimsWith(func(c jwt.MapClaims) {
			delete(c, "tenant_id")
		})), wantErr: ErrInvalidToken, wantMsg: "token has no tenant_id"},
		{name: "rejects empty tenant_id", token: sign(t, jwt.SigningMethodHS256, testSecret, claimsWith(func(c jwt.MapClaims) {
			c["tenant_id"] = ""
		})), wantErr: ErrInvalidToken, wantMsg: "token has no tenant_id"},
		{name: "rejects non-string tenant_id", token: sign(t, jwt.SigningMethodHS256, testSecret, claimsWith(func(c jwt.MapClaims) {
			c["tenant_id"] = 42
		})), wantErr: ErrInvalidToken, wantMsg: "token's tenant_id is not a string"},
		{name: "rejects a NUL in tenant_id", token: sign(t, jwt.SigningMethodHS256, testSecret, claimsWith(func(c jwt.MapClaims) {
			c["tenant_id"] = "tenant\x00a"
		})), wantErr: ErrInvalidToken, wantMsg: "token's tenant_id is not a usable id"},
		{name: "rejects a control character in sub", token: sign(t, jwt.SigningMethodHS256, testSecret, claimsWith(func(c jwt.MapClaims) {
			c["sub"] = "user\nadmin"
		})), wantErr: ErrInvalidToken, wantMsg: "token's sub is not a usable id"},
		{name: "rejects an overlong sub", token: sign(t, jwt.SigningMethodHS256, testSecret, claimsWith(func(c jwt.MapClaims) {
			c["sub"] = strings.Repeat("u", 257)
		})), wantErr: ErrInvalidToken, wantMsg: "token's sub is not a usable id"},
		{name: "rejects missing sub", token: sign(t, jwt.SigningMethodHS256, testSecret, claimsWith(func(c jwt.MapClaims) {
			delete(c, "sub")
		})), wantErr: ErrInvalidToken, wantMsg: "token has no sub"},
		{name: "rejects blank sub", token: sign(t, jwt.SigningMethodHS256, testSecret, claimsWith(func(c jwt.MapClaims) {
			c["sub"] = "  "
		})), wantErr: ErrInvalidToken, wantMsg: "token has no sub"},
		{name: "rejects missing exp", token: sign(t, jwt.SigningMethodHS256, testSecret, claimsWith(func(c jwt.MapClaims) {
			delete(c, "exp")
		})), wantErr: ErrInvalidToken, wantMsg: "token has no exp", wantJWT: jwt.ErrTokenRequiredClaimMissing},
		{name: "rejects token not yet valid", token: sign(t, jwt.SigningMethodHS256, testSecret, claimsWith(func(c jwt.MapClaims) {
			c["nbf"] = testNow.Add(time.Hour).Unix()
		})), wantErr: ErrInvalidToken, wantMsg: "token not valid yet", wantJWT: jwt.ErrTokenNotValidYet},
		{name: "rejects garbage", token: "not-a-jwt", wantErr: ErrInvalidToken, wantMsg: "token malformed", wantJWT: jwt.ErrTokenMalformed},
		{name: "rejects three-part garbage", token: "a.b.c", wantErr: ErrInvalidToken, wantMsg: "token malformed", wantJWT: jwt.ErrTokenMalformed},
		{name: "rejects oversized token", token: strings.Repeat("a", maxTokenLen+1), wantErr: ErrInvalidToken, wantMsg: "token too large"},
		{name: "reports empty token as no credentials", token: "", wantErr: ErrNoCredentials, wantMsg: "missing bearer token"},
	}

	v := testVerifier()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := v.Verify(tc.token)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: unexpected error %v", err)
				}
				want := Identity{UserID: "user-1", TenantID: "tenant-a", ExpiresAt: testNow.Add(time.Hour)}
				if !id.ExpiresAt.Equal(want.ExpiresAt) || id.UserID != want.UserID || id.TenantID != want.TenantID {
					t.Fatalf("Verify = %+v, want %+v", id, want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Verify accepted token, identity %+v", id)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.wantErr)
			}
			other := ErrNoCredentials
			if tc.wantErr == ErrNoCredentials {
				other = ErrInvalidToken
			}
			if errors.Is(err, other) {
				t.Errorf("error %v also matches %v", err, other)
			}
			if err.Error() != tc.wantMsg {
				t.Errorf("message = %q, want %q", err.Error(), tc.wantMsg)
			}
			if tc.wantJWT != nil && !errors.Is(err, tc.wantJWT) {
				t.Errorf("error %v does not wrap jwt reason %v", err, tc.wantJWT)
			}
			if tc.token != "" && strings.Contains(err.Error(), tc.token) {
				t.Errorf("error message echoes the token")
			}
			if id.UserID != "" || id.TenantID != "" || !id.ExpiresAt.IsZero() || id.Claims != nil {
				t.Errorf("identity on error = %+v, want zero", id)
			}
		})
	}
}

func jsonInt(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestLeeway(t *testing.T) {
	expiredAgo := func(d time.Duration) string {
		return sign(t, jwt.SigningMethodHS256, testSecret, claimsWith(func(c jwt.MapClaims) {
			c["exp"] = testNow.Add(-d).Unix()
		}))
	}
	tests := []struct {
		name   string
		opts   []Option
		ago    time.Duration
		accept bool
	}{
		{name: "default leeway accepts token expired 10s ago", ago: 10 * time.Second, accept: true},
		{name: "default leeway rejects token expired 31s ago", ago: 31 * time.Second, accept: false},
		{name: "zero leeway rejects token expired 1s ago", opts: []Option{WithLeeway(0)}, ago: time.Second, accept: false},
		{name: "negative leeway behaves as zero", opts: []Option{WithLeeway(-time.Hour)}, ago: time.Second, accept: false},
		{name: "custom 2m leeway accepts token expired 90s ago", opts: []Option{WithLeeway(2 * time.Minute)}, ago: 90 * time.Second, accept: true},
		{name: "custom 2m leeway rejects token expired 3m ago", opts: []Option{WithLeeway(2 * time.Minute)}, ago: 3 * time.Minute, accept: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := testVerifier(tc.opts...).Verify(expiredAgo(tc.ago))
			if tc.accept && err != nil {
				t.Fatalf("want accept, got %v", err)
			}
			if !tc.accept && !errors.Is(err, jwt.ErrTokenExpired) {
				t.Fatalf("want token expired, got %v", err)
			}
		})
	}
}

func TestVerifyAuthorization(t *testing.T) {
	tok := sign(t, jwt.SigningMethodHS256, testSecret, goodClaims())
	tests := []struct {
		name    string
		header  string
		wantErr error
		wantMsg string
	}{
		{name: "accepts Bearer scheme", header: "Bearer " + tok},
		{name: "accepts lower-case scheme", header: "bearer " + tok},
		{name: "accepts upper-case scheme and extra spaces", header: "  BEARER   " + tok + " "},
		{name: "empty header is no credentials", header: "", wantErr: ErrNoCredentials, wantMsg: "missing bearer token"},
		{name: "blank header is no credentials", header: "   ", wantErr: ErrNoCredentials, wantMsg: "missing bearer token"},
		{name: "scheme without token is no credentials", header: "Bearer ", wantErr: ErrNoCredentials, wantMsg: "missing bearer token"},
		{name: "rejects missing Bearer scheme", header: tok, wantErr: ErrInvalidToken, wantMsg: "authorization scheme must be Bearer"},
		{name: "rejects Basic scheme", header: "Basic dXNlcjpwYXNz", wantErr: ErrInvalidToken, wantMsg: "authorization scheme must be Bearer"},
		{name: "rejects scheme glued to token", header: "Bearer" + tok, wantErr: ErrInvalidToken, wantMsg: "authorization scheme must be Bearer"},
		{name: "rejects invalid token after Bearer", header: "Bearer garbage", wantErr: ErrInvalidToken, wantMsg: "token malformed"},
	}
	v := testVerifier()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := v.VerifyAuthorization(tc.header)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				if id.UserID != "user-1" || id.TenantID != "tenant-a" {
					t.Fatalf("identity = %+v", id)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err.Error() != tc.wantMsg {
				t.Errorf("message = %q, want %q", err.Error(), tc.wantMsg)
			}
			if strings.Contains(err.Error(), tok) {
				t.Errorf("error message echoes the token")
			}
		})
	}
}

func TestIssueVerifyRoundTrip(t *testing.T) {
	tok, err := Issue(testSecret, "tenant-z", "user-9", 15*time.Minute, testNow)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	id, err := testVerifier().Verify(tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := Identity{UserID: "user-9", TenantID: "tenant-z", ExpiresAt: testNow.Add(15 * time.Minute)}
	if id.UserID != want.UserID || id.TenantID != want.TenantID || !id.ExpiresAt.Equal(want.ExpiresAt) {
		t.Fatalf("identity = %+v, want %+v", id, want)
	}

	// Header must say HS256 and the payload must use the documented claim names.
	parts := strings.Split(tok, ".")
	var hdr map[string]any
	var payload map[string]any
	mustDecode(t, parts[0], &hdr)
	mustDecode(t, parts[1], &payload)
	if hdr["alg"] != "HS256" {
		t.Errorf("alg = %v", hdr["alg"])
	}
	if payload["sub"] != "user-9" || payload["tenant_id"] != "tenant-z" || payload["exp"] == nil {
		t.Errorf("payload = %v", payload)
	}

	// Issued token expires: 15m + leeway later it is rejected.
	late := NewVerifier(testSecret, WithClock(func() time.Time { return testNow.Add(16 * time.Minute) }))
	if _, err := late.Verify(tok); !errors.Is(err, jwt.ErrTokenExpired) {
		t.Errorf("Verify after expiry = %v, want token expired", err)
	}

	// Zero now means the real clock.
	tok2, err := Issue(testSecret, "t", "u", time.Minute, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewVerifier(testSecret).Verify(tok2); err != nil {
		t.Errorf("token issued with zero now: %v", err)
	}
}

func mustDecode(t *testing.T, seg string, v any) {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func TestIssueRejectsBadInput(t *testing.T) {
	tests := []struct {
		name         string
		secret       []byte
		tenant, user string
		ttl          time.Duration
	}{
		{name: "empty secret", secret: nil, tenant: "t", user: "u", ttl: time.Hour},
		{name: "empty tenant", secret: testSecret, tenant: "", user: "u", ttl: time.Hour},
		{name: "empty user", secret: testSecret, tenant: "t", user: " ", ttl: time.Hour},
		{name: "zero ttl", secret: testSecret, tenant: "t", user: "u", ttl: 0},
		{name: "negative ttl", secret: testSecret, tenant: "t", user: "u", ttl: -time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tok, err := Issue(tc.secret, tc.tenant, tc.user, tc.ttl, testNow); err == nil {
				t.Fatalf("Issue succeeded: %q", tok)
			}
		})
	}
}

func TestVerifierSecretHandling(t *testing.T) {
	tok := sign(t, jwt.SigningMethodHS256, testSecret, goodClaims())

	t.Run("empty secret rejects everything", func(t *testing.T) {
		emptyTok := handcrafted(`{"alg":"HS256","typ":"JWT"}`, `{"sub":"u","tenant_id":"t","exp":9999999999}`, "")
		for _, s := range []string{tok, emptyTok} {
			if _, err := NewVerifier(nil).Verify(s); !errors.Is(err, ErrInvalidToken) {
				t.Errorf("Verify = %v, want ErrInvalidToken", err)
			}
		}
	})
	t.Run("secret is copied", func(t *testing.T) {
		secret := append([]byte(nil), testSecret...)
		v := NewVerifier(secret, WithClock(func() time.Time { return testNow }))
		for i := range secret {
			secret[i] = 'x'
		}
		if _, err := v.Verify(tok); err != nil {
			t.Errorf("Verify after caller mutated secret: %v", err)
		}
	})
}

func TestVerifierConcurrentUse(t *testing.T) {
	v := testVerifier()
	good := sign(t, jwt.SigningMethodHS256, testSecret, goodClaims())
	bad := sign(t, jwt.SigningMethodHS256, []byte("wrong"), goodClaims())
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.Verify(good); err != nil {
				errs <- err
			}
			if _, err := v.Verify(bad); err == nil {
				errs <- errors.New("bad token accepted")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestGenerateSecret(t *testing.T) {
	a, err := GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 32 || len(b) != 32 {
		t.Fatalf("lengths %d, %d; want 32", len(a), len(b))
	}
	if string(a) == string(b) {
		t.Fatal("two generated secrets are equal")
	}
	tok, err := Issue(a, "t", "u", time.Minute, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewVerifier(a).Verify(tok); err != nil {
		t.Errorf("generated secret round trip: %v", err)
	}
}

func TestContext(t *testing.T) {
	if _, ok := FromContext(context.Background()); ok {
		t.Error("FromContext(Background) reported an identity")
	}
	// A string key with a plausible name must not be mistaken for ours.
	//lint:ignore SA1029 deliberately using a string key to prove it is ignored
	strCtx := context.WithValue(context.Background(), "identity", Identity{UserID: "spoof"}) //nolint:staticcheck
	if _, ok := FromContext(strCtx); ok {
		t.Error("FromContext picked up a string-keyed value")
	}
	want := Identity{UserID: "u", TenantID: "t", ExpiresAt: testNow}
	got, ok := FromContext(WithIdentity(context.Background(), want))
	if !ok || !reflect.DeepEqual(got, want) {
		t.Errorf("FromContext = %+v, %v; want %+v, true", got, ok, want)
	}
}

func TestMiddleware(t *testing.T) {
	v := testVerifier()
	good := sign(t, jwt.SigningMethodHS256, testSecret, goodClaims())
	wrongSecret := sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx"), goodClaims())
	expired := sign(t, jwt.SigningMethodHS256, testSecret, claimsWith(func(c jwt.MapClaims) {
		c["exp"] = testNow.Add(-time.Hour).Unix()
	}))
	wsHeaders := map[string]string{"Upgrade": "websocket", "Connection": "keep-alive, Upgrade"}
	withAuth := func(h map[string]string, auth string) map[string]string {
		out := map[string]string{"Authorization": auth}
		for k, v := range h {
			out[k] = v
		}
		return out
	}

	tests := []struct {
		name         string
		method       string
		headers      map[string]string
		opts         MiddlewareOptions
		wantStatus   int    // 200 means next was called
		wantMsg      string // for 401
		wantIdentity bool   // for 200
	}{
		{name: "missing header is 401", method: http.MethodPost, wantStatus: 401, wantMsg: "missing bearer token"},
		{name: "wrong secret is 401", method: http.MethodPost, headers: map[string]string{"Authorization": "Bearer " + wrongSecret}, wantStatus: 401, wantMsg: "token signature invalid"},
		{name: "expired token is 401", method: http.MethodPost, headers: map[string]string{"Authorization": "Bearer " + expired}, wantStatus: 401, wantMsg: "token expired"},
		{name: "non-Bearer scheme is 401", method: http.MethodPost, headers: map[string]string{"Authorization": "Basic dXNlcjpwYXNz"}, wantStatus: 401, wantMsg: "authorization scheme must be Bearer"},
		{name: "valid token passes identity to next", method: http.MethodPost, headers: map[string]string{"Authorization": "Bearer " + good}, wantStatus: 200, wantIdentity: true},
		{name: "websocket upgrade without token passes", method: http.MethodGet, headers: wsHeaders, wantStatus: 200},
		{name: "websocket upgrade with valid token gets identity", method: http.MethodGet, headers: withAuth(wsHeaders, "Bearer "+good), wantStatus: 200, wantIdentity: true},
		{name: "websocket upgrade with invalid token is 401", method: http.MethodGet, headers: withAuth(wsHeaders, "Bearer "+wrongSecret), wantStatus: 401, wantMsg: "token signature invalid"},
		{name: "websocket upgrade without token is 401 when required", method: http.MethodGet, headers: wsHeaders, opts: MiddlewareOptions{RequireTokenForWebSocket: true}, wantStatus: 401, wantMsg: "missing bearer token"},
		{name: "Upgrade header on POST does not skip auth", method: http.MethodPost, headers: wsHeaders, wantStatus: 401, wantMsg: "missing bearer token"},
		{name: "Upgrade header without Connection upgrade does not skip auth", method: http.MethodGet, headers: map[string]string{"Upgrade": "websocket"}, wantStatus: 401, wantMsg: "missing bearer token"},
		{name: "OPTIONS preflight passes", method: http.MethodOptions, headers: map[string]string{"Access-Control-Request-Method": "POST"}, wantStatus: 200},
		{name: "OPTIONS is 401 when required", method: http.MethodOptions, opts: MiddlewareOptions{RequireTokenForPreflight: true}, wantStatus: 401, wantMsg: "missing bearer token"},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var called bool
			var gotID Identity
			var gotOK bool
			next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				called = true
				gotID, gotOK = FromContext(r.Context())
				w.WriteHeader(http.StatusOK)
			})
			req := httptest.NewRequest(tc.method, "/graphql", nil)
			for k, val := range tc.headers {
				req.Header.Set(k, val)
			}
			rec := httptest.NewRecorder()
			v.Middleware(next, tc.opts).ServeHTTP(rec, req)

			if rec.Code != tc.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", rec.Code, tc.wantStatus, rec.Body.String())
			}
			if tc.wantStatus == http.StatusOK {
				if !called {
					t.Fatal("next was not called")
				}
				if gotOK != tc.wantIdentity {
					t.Fatalf("identity present = %v, want %v", gotOK, tc.wantIdentity)
				}
				if tc.wantIdentity && (gotID.UserID != "user-1" || gotID.TenantID != "tenant-a") {
					t.Fatalf("identity = %+v", gotID)
				}
				return
			}

			if called {
				t.Fatal("next was called on a rejected request")
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != "Bearer" {
				t.Errorf("WWW-Authenticate = %q, want Bearer", got)
			}
			if got := rec.Header().Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q", got)
			}
			var body struct {
				Errors []struct {
					Message    string            `json:"message"`
					Extensions map[string]string `json:"extensions"`
				} `json:"errors"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body is not JSON: %v: %s", err, rec.Body.String())
			}
			if len(body.Errors) != 1 {
				t.Fatalf("errors = %+v, want exactly one", body.Errors)
			}
			if body.Errors[0].Message != tc.wantMsg {
				t.Errorf("message = %q, want %q", body.Errors[0].Message, tc.wantMsg)
			}
			if body.Errors[0].Extensions["code"] != "UNAUTHENTICATED" {
				t.Errorf("extensions = %v, want code UNAUTHENTICATED", body.Errors[0].Extensions)
			}
			if auth := tc.headers["Authorization"]; auth != "" {
				tok := strings.TrimSpace(auth[strings.IndexByte(auth, ' ')+1:])
				if strings.Contains(rec.Body.String(), tok) {
					t.Error("response body echoes the token")
				}
			}
		})
	}
}
