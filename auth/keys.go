package auth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// Defaults of the JWKS settings.
const (
	// DefaultJWKSRefreshInterval is how often the JWKS is fetched anew in
	// the background, so removed keys stop being trusted.
	DefaultJWKSRefreshInterval = time.Hour
	// DefaultJWKSUnknownKIDInterval is the least time between two fetches
	// caused by a token whose kid is not in the cached JWKS: a provider's
	// new key is picked up at once, but a flood of made-up kids costs the
	// provider at most one request per interval.
	DefaultJWKSUnknownKIDInterval = time.Minute
	// jwksFetchTimeout bounds one fetch of the JWKS.
	jwksFetchTimeout = 10 * time.Second
	// maxJWKSBytes bounds the JWKS document read from the provider.
	maxJWKSBytes = 1 << 20
	// minRSABits is the smallest RSA key trusted.
	minRSABits = 2048
)

// Config configures a Verifier built by New. The zero value of every
// setting but the key sources means its default.
type Config struct {
	// Secret verifies HS256 tokens. With a JWKS as well, both kinds of
	// token are accepted, each only with its own kind of key.
	Secret []byte
	// JWKSURL is the identity provider's JWKS endpoint
	// (…/.well-known/jwks.json). JWKSFile is a local file holding either a
	// JWKS (JSON) or PEM public keys or certificates, for deployments that
	// cannot reach the provider. At most one of the two.
	JWKSURL  string
	JWKSFile string
	// Issuer and Audience, when set, must match the token's iss and be
	// one of its aud; they apply to every token, HS256 ones included.
	Issuer   string
	Audience string
	// Claims says where the tenant, user and role live in a token.
	Claims ClaimMapping
	// Leeway is the clock skew tolerated on exp, nbf and iat (default
	// DefaultLeeway; negative means none).
	Leeway time.Duration
	// JWKSRefreshInterval and JWKSUnknownKIDInterval tune the fetching of
	// JWKSURL (defaults DefaultJWKSRefreshInterval and
	// DefaultJWKSUnknownKIDInterval).
	JWKSRefreshInterval    time.Duration
	JWKSUnknownKIDInterval time.Duration
	// HTTPClient fetches the JWKS (default: one with a 10s timeout).
	HTTPClient *http.Client
	// Logger receives failed background refreshes; nil discards them.
	Logger *slog.Logger
	// Now replaces time.Now (tests).
	Now func() time.Time
}

// New returns a Verifier for cfg. With a JWKSURL it fetches the JWKS before
// returning, and fails if the JWKS cannot be read or holds no usable key:
// a server that cannot verify any token should not start. The background
// refresh runs until ctx ends or Close is called.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	if cfg.JWKSURL != "" && cfg.JWKSFile != "" {
		return nil, errors.New("auth: set a JWKS URL or a JWKS file, not both")
	}
	if len(cfg.Secret) == 0 && cfg.JWKSURL == "" && cfg.JWKSFile == "" {
		return nil, errors.New("auth: no secret and no JWKS: nothing to verify tokens with")
	}
	opts := []Option{WithClock(cfg.Now)}
	if cfg.Leeway != 0 {
		opts = append(opts, WithLeeway(cfg.Leeway))
	}
	v := NewVerifier(cfg.Secret, opts...)
	v.mapping = cfg.Claims.withDefaults()
	if len(cfg.Secret) == 0 {
		v.methods = nil
	}

	ctx, stop := context.WithCancel(ctx)
	v.stop = stop
	var err error
	switch {
	case cfg.JWKSURL != "":
		v.keys, err = remoteKeys(ctx, cfg)
	case cfg.JWKSFile != "":
		v.keys, err = fileKeys(cfg.JWKSFile)
	}
	if err != nil {
		stop()
		return nil, err
	}
	if v.keys != nil {
		v.methods = append(v.methods, asymmetricMethods...)
	}

	var extra []jwt.ParserOption
	if cfg.Issuer != "" {
		extra = append(extra, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		extra = append(extra, jwt.WithAudience(cfg.Audience))
	}
	v.parser = v.newParser(extra)
	return v, nil
}

var (
	// errUnknownKey: no key of the JWKS has the token's kid (or, for a
	// token without kid, none fits its algorithm).
	errUnknownKey = errors.New("no key for this token")
	// errKeyMismatch: the key named by kid is of another kind than the
	// token's alg asks for.
	errKeyMismatch = errors.New("key does not allow this algorithm")
)

// asymmetricMethods are the algorithms accepted with a JWKS key, each only
// with a key of its own kind (keyFits). HS256 is never among them: a public
// key is never used as an HMAC secret.
var asymmetricMethods = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"}

// keyFits reports whether key may verify a token signed with alg.
func keyFits(alg string, key any) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return (strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")) && k.N.BitLen() >= minRSABits
	case *ecdsa.PublicKey:
		return (alg == "ES256" && k.Curve == elliptic.P256()) || (alg == "ES384" && k.Curve == elliptic.P384())
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// keySource returns the key (or jwt.VerificationKeySet) for a token that
// is not HS256.
type keySource func(*jwt.Token) (any, error)

// keyFor is the jwt.Keyfunc: the secret for HS256, a JWKS key of the right
// kind for anything else. jwt has already refused algorithms outside
// v.methods.
func (v *Verifier) keyFor(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	if alg == signingMethod.Alg() {
		if len(v.secret) == 0 {
			return nil, errKeyMismatch
		}
		return v.secret, nil
	}
	if v.keys == nil {
		return nil, errKeyMismatch
	}
	key, err := v.keys(t)
	if errors.Is(err, errKeyMismatch) || errors.Is(err, errUnknownKey) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUnknownKey, err)
	}
	if set, ok := key.(jwt.VerificationKeySet); ok {
		var fit jwt.VerificationKeySet
		for _, k := range set.Keys {
			if keyFits(alg, k) {
				fit.Keys = append(fit.Keys, k)
			}
		}
		if len(fit.Keys) == 0 {
			return nil, errUnknownKey
		}
		return fit, nil
	}
	if !keyFits(alg, key) {
		return nil, errKeyMismatch
	}
	return key, nil
}

// remoteKeys fetches the JWKS at cfg.JWKSURL with keyfunc's storage
// (github.com/MicahParks/keyfunc/v3 over jwkset): keys cached by kid,
// refreshed in the background, and fetched anew on an unknown kid at most
// once per JWKSUnknownKIDInterval.
func remoteKeys(ctx context.Context, cfg Config) (keySource, error) {
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: jwksFetchTimeout}
	}
	limited := *client
	limited.Transport = limitedBody{next: client.Transport}
	refresh := cfg.JWKSRefreshInterval
	if refresh <= 0 {
		refresh = DefaultJWKSRefreshInterval
	}
	unknownKID := cfg.JWKSUnknownKIDInterval
	if unknownKID <= 0 {
		unknownKID = DefaultJWKSUnknownKIDInterval
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	failFirst := false
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{cfg.JWKSURL}, keyfunc.Override{
		Client:                    &limited,
		HTTPTimeout:               jwksFetchTimeout,
		NoErrorReturnFirstHTTPReq: &failFirst,
		RefreshInterval:           refresh,
		RefreshUnknownKID:         rate.NewLimiter(rate.Every(unknownKID), 1),
		// A token with an unknown kid waits for the limiter only when the
		// next refresh is due within this time; otherwise it is refused at
		// once. The same deadline bounds the refresh's own fetch.
		RateLimitWaitMax: jwksFetchTimeout,
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				log.Warn("fetching the JWKS failed; the cached keys stay in use", "url", u, "err", err)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("auth: read the JWKS at %s: %w", cfg.JWKSURL, err)
	}
	if err := hasUsableKey(ctx, kf.Storage()); err != nil {
		return nil, fmt.Errorf("auth: the JWKS at %s: %w", cfg.JWKSURL, err)
	}
	return storageKeys(ctx, kf.Storage()), nil
}

// storageKeys finds a token's key in a JWK storage: by kid (a kid the
// storage lacks makes keyfunc's storage fetch the JWKS anew, rate limited),
// or, for a token without kid, every key that may sign with its alg. A
// JWK's own alg, when it has one, must be the token's; keys meant for
// encryption are never used.
func storageKeys(ctx context.Context, store jwkset.Storage) keySource {
	return func(t *jwt.Token) (any, error) {
		alg := t.Method.Alg()
		kidValue, hasKID := t.Header["kid"]
		if !hasKID {
			all, err := store.KeyReadAll(ctx)
			if err != nil {
				return nil, err
			}
			var set jwt.VerificationKeySet
			for _, jwk := range all {
				if a := jwk.Marshal().ALG; signingKey(jwk) && (a == "" || string(a) == alg) {
					set.Keys = append(set.Keys, publicKey(jwk.Key()))
				}
			}
			return set, nil
		}
		kid, ok := kidValue.(string)
		if !ok {
			return nil, errUnknownKey
		}
		jwk, err := store.KeyRead(ctx, kid)
		if err != nil {
			return nil, err
		}
		if !signingKey(jwk) {
			return nil, errUnknownKey
		}
		if a := jwk.Marshal().ALG; a != "" && string(a) != alg {
			return nil, errKeyMismatch
		}
		return publicKey(jwk.Key()), nil
	}
}

func signingKey(jwk jwkset.JWK) bool {
	use := jwk.Marshal().USE
	return use == jwkset.UseSig || use == ""
}

// publicKey is key's public half, if key is a private key (a JWKS file
// may hold them).
func publicKey(key any) any {
	if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
		return pk.Public()
	}
	return key
}

func hasUsableKey(ctx context.Context, store jwkset.Storage) error {
	all, err := store.KeyReadAll(ctx)
	if err != nil {
		return err
	}
	for _, k := range all {
		if signingKey(k) {
			return nil
		}
	}
	return errors.New("no signing key in it")
}

// fileKeys reads path: a JWKS (JSON), or PEM public keys and certificates.
func fileKeys(path string) (keySource, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: read the JWKS file: %w", err)
	}
	if trimmed := bytes.TrimSpace(raw); len(trimmed) > 0 && trimmed[0] == '{' {
		var set jwkset.JWKSMarshal
		if err := json.Unmarshal(trimmed, &set); err != nil {
			return nil, fmt.Errorf("auth: JWKS file %s: %w", path, err)
		}
		store, err := set.ToStorage()
		if err != nil {
			return nil, fmt.Errorf("auth: JWKS file %s: %w", path, err)
		}
		if err := hasUsableKey(context.Background(), store); err != nil {
			return nil, fmt.Errorf("auth: JWKS file %s: %w", path, err)
		}
		return storageKeys(context.Background(), store), nil
	}
	keys, err := pemKeys(raw)
	if err != nil {
		return nil, fmt.Errorf("auth: JWKS file %s: %w", path, err)
	}
	// PEM keys have no kid: a token is tried against each key of its kind.
	return func(*jwt.Token) (any, error) { return jwt.VerificationKeySet{Keys: keys}, nil }, nil
}

// pemKeys parses every PUBLIC KEY, RSA PUBLIC KEY and CERTIFICATE block.
func pemKeys(raw []byte) ([]jwt.VerificationKey, error) {
	var keys []jwt.VerificationKey
	for {
		var block *pem.Block
		block, raw = pem.Decode(raw)
		if block == nil {
			break
		}
		var key any
		var err error
		switch block.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				key = cert.PublicKey
			}
		default:
			return nil, fmt.Errorf("PEM block %q is not a public key or certificate", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %q: %w", block.Type, err)
		}
		if !slices.ContainsFunc(asymmetricMethods, func(alg string) bool { return keyFits(alg, key) }) {
			return nil, fmt.Errorf("PEM block %q: %T is not a key Tidemark verifies with (RSA of 2048 bits or more, ECDSA P-256/P-384, Ed25519)", block.Type, key)
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, errors.New("no JWKS and no PEM public key in it")
	}
	return keys, nil
}

// limitedBody caps what a JWKS response may make us read.
type limitedBody struct{ next http.RoundTripper }

func (l limitedBody) RoundTrip(r *http.Request) (*http.Response, error) {
	next := l.next
	if next == nil {
		next = http.DefaultTransport
	}
	resp, err := next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.LimitReader(resp.Body, maxJWKSBytes), resp.Body}
	return resp, nil
}
