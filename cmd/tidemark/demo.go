package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/tidemark/tidemark/auth"
)

// devIdentityTTL is how long a dev identity's token from /demo/identities
// lives; the demo fetches new ones at every page load.
const devIdentityTTL = 24 * time.Hour

// DemoEnabled reports whether /demo serves the demo app: TIDEMARK_DEMO=on
// or off, and "auto" (or unset) means on in dev mode only.
func (c Config) DemoEnabled() bool {
	switch strings.ToLower(c.Demo) {
	case "on", "true", "1":
		return true
	case "off", "false", "0":
		return false
	}
	return c.DevMode()
}

func (c Config) validateDemo() []error {
	switch strings.ToLower(c.Demo) {
	case "", "auto", "on", "true", "1", "off", "false", "0":
		return nil
	}
	return []error{fmt.Errorf("TIDEMARK_DEMO=%q must be auto, on or off", c.Demo)}
}

// devTokens issues the demo's dev identities (technicians and a
// dispatcher of the dev tenant) in dev mode, and nothing otherwise: with a
// real secret or an identity provider, tokens come from elsewhere.
func (m *Main) devTokens(secret []byte) func(userID, role string) (string, error) {
	if !m.Config.DevMode() {
		return nil
	}
	return func(userID, role string) (string, error) {
		return auth.IssueWithRole(secret, devTenant, userID, role, devIdentityTTL, time.Now())
	}
}
