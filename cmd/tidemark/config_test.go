package main

import (
	"context"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// A Config built in code (as tests and Main's users do) gets the same
// settings as `tidemark serve` with no flags: both read one defaults value.
func TestConfigInCodeGetsTheFlagsDefaults(t *testing.T) {
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "TIDEMARK_") && !strings.HasPrefix(kv, "TIDEMARK_TEST_") {
			t.Skipf("%s is set, so the flags' defaults are not the defaults", strings.SplitN(kv, "=", 2)[0])
		}
	}
	var fromFlags Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	if err := bindConfig(fs, &fromFlags); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if inCode := (Config{}).withDefaults(); inCode != fromFlags {
		t.Errorf("Config{}.withDefaults() = %+v\nthe flags' defaults  = %+v", inCode, fromFlags)
	}
	if fromFlags != defaults {
		t.Errorf("the flags' defaults = %+v\nwant defaults        = %+v", fromFlags, defaults)
	}
}

// Dev mode hands its token to anyone who can reach the server, so it
// listens on loopback unless told otherwise; an explicit address is kept.
func TestDevModeListensOnLoopbackUnlessGivenAnAddress(t *testing.T) {
	secret := strings.Repeat("s", minSecretLen)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"dev mode", Config{}, "127.0.0.1:8080"},
		{"dev mode with an explicit address", Config{Addr: ":9090"}, ":9090"},
		{"with a secret", Config{JWTSecret: secret}, ":8080"},
		{"with a JWKS URL", Config{JWKSURL: "https://idp.example.test/.well-known/jwks.json"}, ":8080"},
		{"with a JWKS file", Config{JWKSFile: "/etc/tidemark/jwks.json"}, ":8080"},
		{"with a secret and an explicit address", Config{JWTSecret: secret, Addr: "10.0.0.1:80"}, "10.0.0.1:80"},
	}
	for _, tt := range tests {
		if got := tt.cfg.withDefaults().ListenAddr(); got != tt.want {
			t.Errorf("%s: ListenAddr() = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestConfigRefusesBadIdentityProviderSettings(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		mention string
	}{
		{"URL and file", Config{JWKSURL: "https://idp.example.test/jwks.json", JWKSFile: "jwks.json"}, "not both"},
		{"plain http off loopback", Config{JWKSURL: "http://idp.example.test/jwks.json"}, "https"},
		{"not a URL", Config{JWKSURL: "idp.example.test/jwks.json"}, "https"},
		{"issuer in dev mode", Config{JWTIssuer: "https://idp.example.test/"}, "dev mode"},
		{"audience in dev mode", Config{JWTAudience: "tidemark"}, "dev mode"},
		{"unknown-kid refresh interval too short", Config{JWKSURL: "https://idp.example.test/jwks.json", JWKSUnknownKIDInterval: 1}, "TIDEMARK_JWKS_UNKNOWN_KID_INTERVAL"},
		{"short secret beside a JWKS", Config{JWKSURL: "https://idp.example.test/jwks.json", JWTSecret: "short"}, "32"},
	}
	for _, tt := range tests {
		err := tt.cfg.withDefaults().validate()
		if err == nil || !strings.Contains(err.Error(), tt.mention) {
			t.Errorf("%s: err = %v, want one mentioning %q", tt.name, err, tt.mention)
		}
	}
	for _, ok := range []Config{
		{JWKSURL: "http://127.0.0.1:9999/jwks.json"},
		{JWKSURL: "https://idp.example.test/jwks.json", JWTIssuer: "https://idp.example.test/", JWTAudience: "tidemark"},
		{JWKSFile: "jwks.pem", JWTTenantClaim: "app_metadata.tenant_id"},
	} {
		if err := ok.withDefaults().validate(); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
}

// A JWKS that cannot be read stops the start with a clear error, before
// the database is opened: a server that can verify no token must not serve.
func TestServeRefusesAnUnreadableJWKSBeforeOpeningTheDatabase(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/.well-known/jwks.json"
	ln.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	}))
	defer failing.Close()
	empty := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"keys":[]}`)
	}))
	defer empty.Close()

	unreachableDB := "postgres://tidemark@127.0.0.1:1/tidemark?sslmode=disable&connect_timeout=1"
	for _, tt := range []struct{ name, url, mention string }{
		{"nothing listens", closed, "connect"},
		{"the provider answers 503", failing.URL, "503"},
		{"the JWKS has no keys", empty.URL, "no signing key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--database-url", unreachableDB, "--jwks-url", tt.url}, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), "JWKS") || !strings.Contains(err.Error(), tt.url) || !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("err = %v, want a JWKS error naming %s and mentioning %q", err, tt.url, tt.mention)
			}
		})
	}
}
