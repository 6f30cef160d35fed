package main

import (
	"strings"
	"testing"
)

// The demo app and its dev identities are a dev-mode convenience: with a
// real secret (or an identity provider) /demo is off unless TIDEMARK_DEMO=on,
// and dev identities are never issued.
func TestDemoIsOnInDevModeAndOptInOtherwise(t *testing.T) {
	secret := strings.Repeat("s", minSecretLen)
	tests := []struct {
		name      string
		cfg       Config
		demo      bool
		devTokens bool
	}{
		{"dev mode, unset", Config{}, true, true},
		{"dev mode, auto", Config{Demo: "auto"}, true, true},
		{"dev mode, off", Config{Demo: "off"}, false, true},
		{"a secret, unset", Config{JWTSecret: secret}, false, false},
		{"a secret, on", Config{JWTSecret: secret, Demo: "on"}, true, false},
		{"a JWKS, on", Config{JWKSFile: "keys.json", Demo: "ON"}, true, false},
		{"a JWKS, unset", Config{JWKSFile: "keys.json"}, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.cfg.DemoEnabled(); got != tc.demo {
				t.Errorf("DemoEnabled() = %v, want %v", got, tc.demo)
			}
			m := &Main{Config: tc.cfg}
			if got := m.devTokens([]byte(secret)) != nil; got != tc.devTokens {
				t.Errorf("dev tokens issued: %v, want %v", got, tc.devTokens)
			}
		})
	}
	if errs := (Config{Demo: "yes please"}).validateDemo(); len(errs) != 1 {
		t.Errorf("TIDEMARK_DEMO=\"yes please\" gave %v, want one error", errs)
	}
}
