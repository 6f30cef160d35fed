package main

import (
	"flag"
	"fmt"

	"github.com/tidemark/tidemark/ratelimit"
	"github.com/tidemark/tidemark/server"
)

// RequestLimits are the limits of the HTTP path: per document, per
// response, and request rates (docs/security.md). Each default is
// server's; a negative rate or PushesInFlight turns that limit off.
type RequestLimits struct {
	MaxDepth         int
	ComplexityLimit  int
	MaxTokens        int
	MaxFields        int
	MaxAliases       int
	MaxOperations    int
	MaxErrors        int
	MaxResponseBytes int64
	AddressRate      float64
	AddressBurst     int
	IdentityRate     float64
	IdentityBurst    int
	RateLimitKeys    int
	PushesInFlight   int
	TrustedProxies   string // comma-separated addresses and CIDR blocks
}

// defaultRequestLimits are server's defaults.
var defaultRequestLimits = RequestLimits{
	MaxDepth:         server.DefaultMaxDepth,
	ComplexityLimit:  server.DefaultComplexityLimit,
	MaxTokens:        server.DefaultMaxTokens,
	MaxFields:        server.DefaultMaxFields,
	MaxAliases:       server.DefaultMaxAliases,
	MaxOperations:    server.DefaultMaxOperations,
	MaxErrors:        server.DefaultMaxErrors,
	MaxResponseBytes: server.DefaultMaxResponseBytes,
	AddressRate:      server.DefaultAddressRate,
	AddressBurst:     server.DefaultAddressBurst,
	IdentityRate:     server.DefaultIdentityRate,
	IdentityBurst:    server.DefaultIdentityBurst,
	RateLimitKeys:    ratelimit.DefaultMaxKeys,
	PushesInFlight:   server.DefaultPushesInFlight,
}

// withDefaults fills the limits left zero.
func (l RequestLimits) withDefaults() RequestLimits {
	d := defaultRequestLimits
	fill(&l.MaxDepth, d.MaxDepth)
	fill(&l.ComplexityLimit, d.ComplexityLimit)
	fill(&l.MaxTokens, d.MaxTokens)
	fill(&l.MaxFields, d.MaxFields)
	fill(&l.MaxAliases, d.MaxAliases)
	fill(&l.MaxOperations, d.MaxOperations)
	fill(&l.MaxErrors, d.MaxErrors)
	fill(&l.MaxResponseBytes, d.MaxResponseBytes)
	fill(&l.AddressRate, d.AddressRate)
	fill(&l.AddressBurst, d.AddressBurst)
	fill(&l.IdentityRate, d.IdentityRate)
	fill(&l.IdentityBurst, d.IdentityBurst)
	fill(&l.RateLimitKeys, d.RateLimitKeys)
	fill(&l.PushesInFlight, d.PushesInFlight)
	return l
}

// bindRequestLimits registers the request limits' flags and variables.
func bindRequestLimits(fs *flag.FlagSet, l *RequestLimits, errs *envErrors) {
	d := defaultRequestLimits
	fs.IntVar(&l.MaxDepth, "max-depth", errs.int("TIDEMARK_MAX_DEPTH", d.MaxDepth), "deepest selection nesting an operation may have (TIDEMARK_MAX_DEPTH)")
	fs.IntVar(&l.ComplexityLimit, "complexity-limit", errs.int("TIDEMARK_COMPLEXITY_LIMIT", d.ComplexityLimit), "highest complexity an operation may have; a page costs its size times its selection, a pull its limit, a push its rows (TIDEMARK_COMPLEXITY_LIMIT)")
	fs.IntVar(&l.MaxTokens, "max-tokens", errs.int("TIDEMARK_MAX_TOKENS", d.MaxTokens), "most lexical tokens in one GraphQL document (TIDEMARK_MAX_TOKENS)")
	fs.IntVar(&l.MaxFields, "max-fields", errs.int("TIDEMARK_MAX_FIELDS", d.MaxFields), "most fields one document selects with its fragments expanded (TIDEMARK_MAX_FIELDS)")
	fs.IntVar(&l.MaxAliases, "max-aliases", errs.int("TIDEMARK_MAX_ALIASES", d.MaxAliases), "most aliases in one document (TIDEMARK_MAX_ALIASES)")
	fs.IntVar(&l.MaxOperations, "max-operations", errs.int("TIDEMARK_MAX_OPERATIONS", d.MaxOperations), "most operations in one document (TIDEMARK_MAX_OPERATIONS)")
	fs.IntVar(&l.MaxErrors, "max-errors", errs.int("TIDEMARK_MAX_ERRORS", d.MaxErrors), "most errors in one response (TIDEMARK_MAX_ERRORS)")
	fs.Int64Var(&l.MaxResponseBytes, "max-response-bytes", errs.int64("TIDEMARK_MAX_RESPONSE_BYTES", d.MaxResponseBytes), "largest response data; a larger response is replaced by RESPONSE_TOO_LARGE (TIDEMARK_MAX_RESPONSE_BYTES)")
	fs.Float64Var(&l.AddressRate, "rate-per-address", errs.float64("TIDEMARK_RATE_PER_ADDRESS", d.AddressRate), "requests per second one client address may send to /graphql; negative: no limit (TIDEMARK_RATE_PER_ADDRESS)")
	fs.IntVar(&l.AddressBurst, "rate-per-address-burst", errs.int("TIDEMARK_RATE_PER_ADDRESS_BURST", d.AddressBurst), "requests one client address may send at once (TIDEMARK_RATE_PER_ADDRESS_BURST)")
	fs.Float64Var(&l.IdentityRate, "rate-per-user", errs.float64("TIDEMARK_RATE_PER_USER", d.IdentityRate), "requests per second one user (tenant and subject) may send; negative: no limit (TIDEMARK_RATE_PER_USER)")
	fs.IntVar(&l.IdentityBurst, "rate-per-user-burst", errs.int("TIDEMARK_RATE_PER_USER_BURST", d.IdentityBurst), "requests one user may send at once (TIDEMARK_RATE_PER_USER_BURST)")
	fs.IntVar(&l.RateLimitKeys, "rate-limit-keys", errs.int("TIDEMARK_RATE_LIMIT_KEYS", d.RateLimitKeys), "addresses and users each rate limiter remembers (TIDEMARK_RATE_LIMIT_KEYS)")
	fs.IntVar(&l.PushesInFlight, "pushes-in-flight", errs.int("TIDEMARK_PUSHES_IN_FLIGHT", d.PushesInFlight), "pushes one user may have running at once; negative: no limit (TIDEMARK_PUSHES_IN_FLIGHT)")
	fs.StringVar(&l.TrustedProxies, "trusted-proxies", env("TIDEMARK_TRUSTED_PROXIES", ""), "comma-separated addresses or CIDR blocks of proxies whose X-Forwarded-For names the client; empty trusts none (TIDEMARK_TRUSTED_PROXIES)")
}

// validate checks what the server cannot fix by defaulting.
func (l RequestLimits) validate() error {
	if _, err := server.ParseTrustedProxies(l.TrustedProxies); err != nil {
		return fmt.Errorf("TIDEMARK_TRUSTED_PROXIES: %w", err)
	}
	for name, v := range map[string]int{
		"TIDEMARK_MAX_DEPTH": l.MaxDepth, "TIDEMARK_COMPLEXITY_LIMIT": l.ComplexityLimit, "TIDEMARK_MAX_TOKENS": l.MaxTokens,
		"TIDEMARK_MAX_FIELDS": l.MaxFields, "TIDEMARK_MAX_ALIASES": l.MaxAliases, "TIDEMARK_MAX_OPERATIONS": l.MaxOperations,
		"TIDEMARK_MAX_ERRORS": l.MaxErrors,
	} {
		if v < 0 {
			return fmt.Errorf("%s must not be negative (got %d)", name, v)
		}
	}
	if l.MaxResponseBytes < 0 {
		return fmt.Errorf("TIDEMARK_MAX_RESPONSE_BYTES must not be negative (got %d)", l.MaxResponseBytes)
	}
	return nil
}

// into sets the limits on a server configuration.
func (l RequestLimits) into(c server.Config) server.Config {
	c.MaxDepth, c.ComplexityLimit = l.MaxDepth, l.ComplexityLimit
	c.MaxTokens, c.MaxFields, c.MaxAliases, c.MaxOperations = l.MaxTokens, l.MaxFields, l.MaxAliases, l.MaxOperations
	c.MaxErrors, c.MaxResponseBytes = l.MaxErrors, l.MaxResponseBytes
	c.AddressRate, c.AddressBurst = l.AddressRate, l.AddressBurst
	c.IdentityRate, c.IdentityBurst = l.IdentityRate, l.IdentityBurst
	c.RateLimitKeys, c.PushesInFlight = l.RateLimitKeys, l.PushesInFlight
	c.TrustedProxies, _ = server.ParseTrustedProxies(l.TrustedProxies) // validated at start
	return c
}
