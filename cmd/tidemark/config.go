package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/server"
	"github.com/tidemark/tidemark/syncengine"
	"github.com/tidemark/tidemark/tombstones"
	"github.com/tidemark/tidemark/wiring"
)

// Config is every setting of `tidemark serve` and `tidemark migrate`. Each has
// a flag and a TIDEMARK_* environment variable; a flag wins over the variable,
// and the variable over the default.
type Config struct {
	Addr        string // empty: DefaultAddr, or DevAddr in dev mode (see ListenAddr)
	DatabaseURL string
	DataDir     string
	JWTSecret   string

	// Identity-provider tokens (docs/security.md, "Identity providers").
	JWKSURL                string // the provider's JWKS endpoint
	JWKSFile               string // or a local JWKS (JSON) or PEM file
	JWTIssuer              string // required iss, if set
	JWTAudience            string // required aud, if set
	JWTTenantClaim         string // claim name or dotted path of the tenant id
	JWTUserClaim           string // … of the user id
	JWTRoleClaim           string // … of the role the sync rules read
	JWKSRefreshInterval    time.Duration
	JWKSUnknownKIDInterval time.Duration // least time between fetches caused by an unknown kid

	LogLevel        string
	LogFormat       string
	Introspection   string // "auto" (on in dev mode), "true" or "false"
	Demo            string // the demo app at /demo: "auto" (on in dev mode), "on" or "off" (demo.go)
	AllowedOrigins  string // comma-separated; "*" allows any origin
	DBMaxConns      int
	MaxBodyBytes    int64
	ShutdownTimeout time.Duration
	PollInterval    time.Duration // how often live sync looks for other instances' commits
	Notifier        string        // how it looks: TIDEMARK_NOTIFIER (notifier_config.go)
	NotifierOverlap time.Duration // TIDEMARK_NOTIFIER_OVERLAP (notifier_config.go)
	DebugAddr       string        // if set, a separate listener serves /debug/pprof
	Tracing         string        // "otlp", "off", or "" (from the OTEL_* variables); tracing.go
	NoCache         bool          // serve by-id lookups from the database alone (for comparison)
	NoCacheChildren bool          // keep nested lists by parent out of the document cache
	CacheDocuments  int64         // capacity of the by-id document cache
	CacheTTL        time.Duration // longest a cached document is served
	SyncRules       string        // path of the sync rules file; empty means the default rules
	// TombstoneRetention is how long deleted documents and removals are
	// kept for offline devices; TombstonePurgeInterval how often they are purged.
	TombstoneRetention     time.Duration
	TombstonePurgeInterval time.Duration
	// WebsocketLimits: TIDEMARK_WS_* (websocket_config.go).
	WebsocketLimits server.WebsocketLimits
	// RequestLimits: TIDEMARK_MAX_*, TIDEMARK_RATE_*, TIDEMARK_PUSHES_IN_FLIGHT
	// and TIDEMARK_TRUSTED_PROXIES (limits_config.go).
	RequestLimits RequestLimits
	// PushLimits: TIDEMARK_MAX_ROW_BYTES, TIDEMARK_MAX_PUSH_BYTES (push_config.go).
	PushLimits syncengine.PushLimits
	Metrics    MetricsConfig // TIDEMARK_METRICS, TIDEMARK_METRICS_ADDR (metrics_config.go)
	Region     string        // TIDEMARK_REGION (region_config.go); empty: not set
	// TIDEMARK_REGIONS, TIDEMARK_SURVIVAL_GOAL (region_config.go): applied
	// where migrations run (migrate, and serve when it migrates itself).
	Placement PlacementConfig
	// Resilience: TIDEMARK_DB_ACQUIRE_TIMEOUT, TIDEMARK_DB_STATEMENT_TIMEOUT,
	// TIDEMARK_DRAIN_DELAY (resilience_config.go).
	Resilience ResilienceConfig
}

// minSecretLen is the shortest JWT secret accepted: HS256 wants at least
// 256 bits of key.
const minSecretLen = 32

// Listen addresses when none is set: every interface, except in dev mode,
// whose server hands out a token to whoever asks and so stays on loopback.
const (
	DefaultAddr = ":8080"
	DevAddr     = "127.0.0.1:8080"
)

// defaults are the settings of a Tidemark started with no flags and no
// environment: the flags' defaults, and what withDefaults fills in. The
// settings that reach wiring.Build take its defaults.
var defaults = Config{
	DataDir:         "./tidemark-data",
	LogLevel:        "info",
	LogFormat:       "text",
	Introspection:   "auto",
	DBMaxConns:      16,
	MaxBodyBytes:    wiring.DefaultMaxBodyBytes,
	ShutdownTimeout: 15 * time.Second,
	PollInterval:    wiring.DefaultPollInterval,
	Notifier:        wiring.NotifierChanges,
	NotifierOverlap: wiring.DefaultNotifierOverlap,
	CacheDocuments:  wiring.DefaultCacheDocuments,
	CacheTTL:        wiring.DefaultCacheTTL,

	TombstoneRetention:     tombstones.DefaultRetention,
	TombstonePurgeInterval: tombstones.DefaultInterval,
	RequestLimits:          defaultRequestLimits,
	WebsocketLimits:        websocketLimitsWithDefaults(server.WebsocketLimits{}),
	PushLimits:             defaultPushLimits,
	Resilience:             defaultResilience,

	JWTTenantClaim:         auth.DefaultTenantClaim,
	JWTUserClaim:           auth.DefaultUserClaim,
	JWTRoleClaim:           auth.DefaultRoleClaim,
	JWKSRefreshInterval:    auth.DefaultJWKSRefreshInterval,
	JWKSUnknownKIDInterval: auth.DefaultJWKSUnknownKIDInterval,
}

// withDefaults fills settings left zero (a Config built in code rather
// than from flags) with the defaults.
func (c Config) withDefaults() Config {
	fill(&c.DataDir, defaults.DataDir)
	fill(&c.LogLevel, defaults.LogLevel)
	fill(&c.LogFormat, defaults.LogFormat)
	fill(&c.Introspection, defaults.Introspection)
	fill(&c.DBMaxConns, defaults.DBMaxConns)
	fill(&c.MaxBodyBytes, defaults.MaxBodyBytes)
	fill(&c.ShutdownTimeout, defaults.ShutdownTimeout)
	fill(&c.PollInterval, defaults.PollInterval)
	fill(&c.Notifier, defaults.Notifier)
	fill(&c.NotifierOverlap, defaults.NotifierOverlap)
	fill(&c.CacheDocuments, defaults.CacheDocuments)
	fill(&c.CacheTTL, defaults.CacheTTL)
	fill(&c.TombstoneRetention, defaults.TombstoneRetention)
	fill(&c.TombstonePurgeInterval, defaults.TombstonePurgeInterval)
	c.RequestLimits = c.RequestLimits.withDefaults()
	c.WebsocketLimits = websocketLimitsWithDefaults(c.WebsocketLimits)
	c.Resilience = c.Resilience.withDefaults()
	fill(&c.PushLimits.MaxRowBytes, defaults.PushLimits.MaxRowBytes)
	fill(&c.PushLimits.MaxPushBytes, defaults.PushLimits.MaxPushBytes)
	fill(&c.JWTTenantClaim, defaults.JWTTenantClaim)
	fill(&c.JWTUserClaim, defaults.JWTUserClaim)
	fill(&c.JWTRoleClaim, defaults.JWTRoleClaim)
	fill(&c.JWKSRefreshInterval, defaults.JWKSRefreshInterval)
	fill(&c.JWKSUnknownKIDInterval, defaults.JWKSUnknownKIDInterval)
	return c
}

// fill sets *v to def when it is the zero value.
func fill[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// validate checks the settings that need no database.
func (c Config) validate() error {
	var errs []error
	if c.JWTSecret != "" && len(c.JWTSecret) < minSecretLen {
		errs = append(errs, fmt.Errorf("TIDEMARK_JWT_SECRET must be at least %d characters", minSecretLen))
	}
	errs = append(errs, c.validateIdentityProvider()...)
	errs = append(errs, c.validateDemo()...)
	errs = append(errs, validatePushLimits(c.PushLimits)...)
	errs = append(errs, validateNotifier(c.Notifier, c.NotifierOverlap)...)
	errs = append(errs, c.Metrics.validate()...)
	errs = append(errs, validateRegion(c.Region)...)
	errs = append(errs, c.Placement.validate()...)
	if c.DBMaxConns < 1 || c.DBMaxConns > 10_000 {
		errs = append(errs, fmt.Errorf("TIDEMARK_DB_MAX_CONNS must be between 1 and 10000 (got %d)", c.DBMaxConns))
	}
	if c.MaxBodyBytes < 1024 {
		errs = append(errs, fmt.Errorf("TIDEMARK_MAX_BODY_BYTES must be at least 1024 (got %d)", c.MaxBodyBytes))
	}
	if c.CacheDocuments < 1 || c.CacheTTL < 0 {
		errs = append(errs, fmt.Errorf("TIDEMARK_CACHE_DOCUMENTS must be positive and TIDEMARK_CACHE_TTL not negative"))
	}
	if c.PollInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("TIDEMARK_POLL_INTERVAL must be at least 10ms (got %s)", c.PollInterval))
	}
	if c.TombstoneRetention < time.Minute {
		errs = append(errs, fmt.Errorf("TIDEMARK_TOMBSTONE_RETENTION must be at least 1m (got %s)", c.TombstoneRetention))
	}
	if c.TombstonePurgeInterval < time.Second {
		errs = append(errs, fmt.Errorf("TIDEMARK_TOMBSTONE_PURGE_INTERVAL must be at least 1s (got %s)", c.TombstonePurgeInterval))
	}
	if err := c.RequestLimits.validate(); err != nil {
		errs = append(errs, err)
	}
	if _, err := tracingExporter(c.Tracing); err != nil {
		errs = append(errs, err)
	}
	if c.ShutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("TIDEMARK_SHUTDOWN_TIMEOUT must not be negative"))
	}
	return errors.Join(errs...)
}

// validateIdentityProvider checks the JWKS and claim settings.
func (c Config) validateIdentityProvider() []error {
	var errs []error
	if c.JWKSURL != "" && c.JWKSFile != "" {
		errs = append(errs, errors.New("set TIDEMARK_JWKS_URL or TIDEMARK_JWKS_FILE, not both"))
	}
	if c.JWKSURL != "" {
		if u, err := url.Parse(c.JWKSURL); err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
			errs = append(errs, fmt.Errorf("TIDEMARK_JWKS_URL=%q must be an https URL (plain http only on loopback)", c.JWKSURL))
		}
	}
	if c.DevMode() && (c.JWTIssuer != "" || c.JWTAudience != "") {
		errs = append(errs, errors.New("TIDEMARK_JWT_ISSUER and TIDEMARK_JWT_AUDIENCE need TIDEMARK_JWKS_URL, TIDEMARK_JWKS_FILE or TIDEMARK_JWT_SECRET: dev mode's token has neither"))
	}
	if c.JWTTenantClaim == "" || c.JWTUserClaim == "" || c.JWTRoleClaim == "" {
		errs = append(errs, errors.New("TIDEMARK_JWT_TENANT_CLAIM, TIDEMARK_JWT_USER_CLAIM and TIDEMARK_JWT_ROLE_CLAIM must not be empty"))
	}
	if c.JWKSRefreshInterval < time.Second || c.JWKSUnknownKIDInterval < time.Second {
		errs = append(errs, fmt.Errorf("TIDEMARK_JWKS_REFRESH_INTERVAL and TIDEMARK_JWKS_UNKNOWN_KID_INTERVAL must be at least 1s (got %s and %s)", c.JWKSRefreshInterval, c.JWKSUnknownKIDInterval))
	}
	return errs
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// DevMode is true when no JWT secret and no JWKS is configured: the server
// then makes a dev secret and tenant, logs a token, fills it into the
// Playground, and listens on loopback unless given an address.
func (c Config) DevMode() bool { return c.JWTSecret == "" && c.JWKSURL == "" && c.JWKSFile == "" }

// ListenAddr is Addr, or when it is empty DevAddr in dev mode and
// DefaultAddr otherwise.
func (c Config) ListenAddr() string {
	switch {
	case c.Addr != "":
		return c.Addr
	case c.DevMode():
		return DevAddr
	}
	return DefaultAddr
}

// AuthConfig is the token verification the settings ask for, given the
// HS256 secret in use (the configured one, or dev mode's).
func (c Config) AuthConfig(secret []byte, log *slog.Logger) auth.Config {
	if c.DevMode() {
		// Dev mode's token is minted with the default claims.
		return auth.Config{Secret: secret, Logger: log}
	}
	return auth.Config{
		Secret:   secret,
		JWKSURL:  c.JWKSURL,
		JWKSFile: c.JWKSFile,
		Issuer:   c.JWTIssuer,
		Audience: c.JWTAudience,
		Claims:   auth.ClaimMapping{Tenant: c.JWTTenantClaim, User: c.JWTUserClaim, Role: c.JWTRoleClaim},

		JWKSRefreshInterval:    c.JWKSRefreshInterval,
		JWKSUnknownKIDInterval: c.JWKSUnknownKIDInterval,
		Logger:                 log,
	}
}

// IntrospectionEnabled resolves "auto" by mode.
func (c Config) IntrospectionEnabled() bool {
	switch strings.ToLower(c.Introspection) {
	case "true", "1", "on":
		return true
	case "false", "0", "off":
		return false
	}
	return c.DevMode()
}

// Origins returns the CORS allow-list; dev mode defaults to any origin.
func (c Config) Origins() []string {
	var out []string
	for _, o := range strings.Split(c.AllowedOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			out = append(out, o)
		}
	}
	if len(out) == 0 && c.DevMode() {
		return []string{"*"}
	}
	return out
}

// bindMigrateConfig registers the flags of `tidemark migrate`, which serve
// takes too: the database, the data folder, the sync rules and the log.
// Defaults come from the environment.
func bindMigrateConfig(fs *flag.FlagSet, c *Config) error {
	fs.StringVar(&c.DatabaseURL, "database-url", env("TIDEMARK_DATABASE_URL", ""), "PostgreSQL or CockroachDB URL; empty starts the embedded PostgreSQL (TIDEMARK_DATABASE_URL)")
	fs.StringVar(&c.DataDir, "data-dir", env("TIDEMARK_DATA_DIR", defaults.DataDir), "folder of the embedded PostgreSQL and dev secret (TIDEMARK_DATA_DIR)")
	fs.StringVar(&c.SyncRules, "sync-rules", env("TIDEMARK_SYNC_RULES", ""), "sync rules file (docs/sync-rules.md); empty means the default rules (TIDEMARK_SYNC_RULES)")
	fs.StringVar(&c.LogLevel, "log-level", env("TIDEMARK_LOG_LEVEL", defaults.LogLevel), "debug, info, warn or error (TIDEMARK_LOG_LEVEL)")
	fs.StringVar(&c.LogFormat, "log-format", env("TIDEMARK_LOG_FORMAT", defaults.LogFormat), "text or json (TIDEMARK_LOG_FORMAT)")
	bindPlacement(fs, &c.Placement)
	return nil
}

// bindConfig registers every flag of `tidemark serve` on fs (migrate's and
// the server's), with defaults taken from the environment. It fails on an
// environment variable it cannot read, rather than silently running with a
// default the operator did not choose.
func bindConfig(fs *flag.FlagSet, c *Config) error {
	var errs envErrors
	if err := bindMigrateConfig(fs, c); err != nil {
		errs = append(errs, err)
	}
	fs.StringVar(&c.Addr, "addr", env("TIDEMARK_ADDR", defaults.Addr), "listen address; empty means "+DefaultAddr+", or "+DevAddr+" (loopback only) in dev mode (TIDEMARK_ADDR)")
	fs.StringVar(&c.JWTSecret, "jwt-secret", env("TIDEMARK_JWT_SECRET", ""), "HS256 secret for bearer tokens; with no JWKS either, empty means dev mode (TIDEMARK_JWT_SECRET)")
	fs.StringVar(&c.JWKSURL, "jwks-url", env("TIDEMARK_JWKS_URL", ""), "identity provider's JWKS endpoint; its RS/PS/ES/EdDSA tokens are accepted (TIDEMARK_JWKS_URL)")
	fs.StringVar(&c.JWKSFile, "jwks-file", env("TIDEMARK_JWKS_FILE", ""), "file of JWKS JSON or PEM public keys, instead of a JWKS URL (TIDEMARK_JWKS_FILE)")
	fs.StringVar(&c.JWTIssuer, "jwt-issuer", env("TIDEMARK_JWT_ISSUER", ""), "if set, the iss every token must carry (TIDEMARK_JWT_ISSUER)")
	fs.StringVar(&c.JWTAudience, "jwt-audience", env("TIDEMARK_JWT_AUDIENCE", ""), "if set, an aud every token must carry (TIDEMARK_JWT_AUDIENCE)")
	fs.StringVar(&c.JWTTenantClaim, "jwt-tenant-claim", env("TIDEMARK_JWT_TENANT_CLAIM", defaults.JWTTenantClaim), "claim name or dotted path of the tenant id (TIDEMARK_JWT_TENANT_CLAIM)")
	fs.StringVar(&c.JWTUserClaim, "jwt-user-claim", env("TIDEMARK_JWT_USER_CLAIM", defaults.JWTUserClaim), "claim name or dotted path of the user id (TIDEMARK_JWT_USER_CLAIM)")
	fs.StringVar(&c.JWTRoleClaim, "jwt-role-claim", env("TIDEMARK_JWT_ROLE_CLAIM", defaults.JWTRoleClaim), "claim name or dotted path of the role the sync rules read (TIDEMARK_JWT_ROLE_CLAIM)")
	fs.DurationVar(&c.JWKSRefreshInterval, "jwks-refresh-interval", errs.duration("TIDEMARK_JWKS_REFRESH_INTERVAL", defaults.JWKSRefreshInterval), "how often the JWKS is fetched anew (TIDEMARK_JWKS_REFRESH_INTERVAL)")
	fs.DurationVar(&c.JWKSUnknownKIDInterval, "jwks-unknown-kid-interval", errs.duration("TIDEMARK_JWKS_UNKNOWN_KID_INTERVAL", defaults.JWKSUnknownKIDInterval), "least time between JWKS fetches caused by tokens with an unknown kid (TIDEMARK_JWKS_UNKNOWN_KID_INTERVAL)")
	fs.StringVar(&c.Introspection, "introspection", env("TIDEMARK_INTROSPECTION", defaults.Introspection), "auto (on in dev mode), true or false (TIDEMARK_INTROSPECTION)")
	fs.StringVar(&c.Demo, "demo", env("TIDEMARK_DEMO", ""), "serve the demo app at /demo: on, off, or auto (empty: on in dev mode only) (TIDEMARK_DEMO)")
	fs.StringVar(&c.AllowedOrigins, "allowed-origins", env("TIDEMARK_ALLOWED_ORIGINS", ""), "comma-separated browser origins allowed to call the API; dev mode allows any (TIDEMARK_ALLOWED_ORIGINS)")
	fs.IntVar(&c.DBMaxConns, "db-max-conns", errs.int("TIDEMARK_DB_MAX_CONNS", defaults.DBMaxConns), "database pool size (TIDEMARK_DB_MAX_CONNS)")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", errs.int64("TIDEMARK_MAX_BODY_BYTES", defaults.MaxBodyBytes), "largest request body accepted (TIDEMARK_MAX_BODY_BYTES)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", errs.duration("TIDEMARK_SHUTDOWN_TIMEOUT", defaults.ShutdownTimeout), "how long shutdown waits for requests in flight (TIDEMARK_SHUTDOWN_TIMEOUT)")
	fs.DurationVar(&c.PollInterval, "poll-interval", errs.duration("TIDEMARK_POLL_INTERVAL", defaults.PollInterval), "how often live sync checks the database for other instances' changes (TIDEMARK_POLL_INTERVAL)")
	fs.BoolVar(&c.NoCache, "no-cache", env("TIDEMARK_NO_CACHE", "") == "true", "turn the by-id document cache off (TIDEMARK_NO_CACHE=true)")
	fs.BoolVar(&c.NoCacheChildren, "no-cache-children", env("TIDEMARK_NO_CACHE_CHILDREN", "") == "true", "cache by-id lookups only, not nested lists by parent (TIDEMARK_NO_CACHE_CHILDREN=true)")
	fs.Int64Var(&c.CacheDocuments, "cache-documents", errs.int64("TIDEMARK_CACHE_DOCUMENTS", defaults.CacheDocuments), "documents the by-id cache holds (TIDEMARK_CACHE_DOCUMENTS)")
	fs.DurationVar(&c.CacheTTL, "cache-ttl", errs.duration("TIDEMARK_CACHE_TTL", defaults.CacheTTL), "longest a cached document is served, a backstop to invalidation (TIDEMARK_CACHE_TTL)")
	fs.DurationVar(&c.TombstoneRetention, "tombstone-retention", errs.duration("TIDEMARK_TOMBSTONE_RETENTION", defaults.TombstoneRetention), "how long deleted documents and removals are kept for offline devices (TIDEMARK_TOMBSTONE_RETENTION)")
	fs.DurationVar(&c.TombstonePurgeInterval, "tombstone-purge-interval", errs.duration("TIDEMARK_TOMBSTONE_PURGE_INTERVAL", defaults.TombstonePurgeInterval), "how often tombstones older than the retention are purged (TIDEMARK_TOMBSTONE_PURGE_INTERVAL)")
	fs.StringVar(&c.Tracing, "tracing", env("TIDEMARK_TRACING", ""), "otlp sends OpenTelemetry traces over OTLP/HTTP (to OTEL_EXPORTER_OTLP_ENDPOINT); off never does; empty: on when OTEL_TRACES_EXPORTER=otlp or an OTLP endpoint is set (TIDEMARK_TRACING)")
	fs.StringVar(&c.DebugAddr, "debug-addr", env("TIDEMARK_DEBUG_ADDR", ""), "if set, serve Go's /debug/pprof profiles on this separate address, e.g. 127.0.0.1:6060 (TIDEMARK_DEBUG_ADDR)")
	bindWebsocketLimits(fs, &c.WebsocketLimits, &errs)
	bindRequestLimits(fs, &c.RequestLimits, &errs)
	bindPushLimits(fs, &c.PushLimits, &errs)
	bindNotifier(fs, &c.Notifier, &c.NotifierOverlap, &errs)
	bindResilience(fs, &c.Resilience, &errs)
	bindMetrics(fs, &c.Metrics)
	bindRegion(fs, &c.Region)
	return errors.Join(errs...)
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

type envErrors []error

func (e *envErrors) int(name string, def int) int {
	v, ok := os.LookupEnv(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		*e = append(*e, fmt.Errorf("%s=%q is not a whole number", name, v))
		return def
	}
	return n
}

func (e *envErrors) int64(name string, def int64) int64 {
	v, ok := os.LookupEnv(name)
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		*e = append(*e, fmt.Errorf("%s=%q is not a whole number", name, v))
		return def
	}
	return n
}

func (e *envErrors) duration(name string, def time.Duration) time.Duration {
	v, ok := os.LookupEnv(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		*e = append(*e, fmt.Errorf("%s=%q is not a duration such as 15s", name, v))
		return def
	}
	return d
}
