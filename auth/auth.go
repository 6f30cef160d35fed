// Package auth answers "who is calling?" for every request.
//
// Callers present a JWT as a bearer token: HS256-signed with the server's
// secret, or signed by the identity provider whose JWKS the server trusts
// (keys.go). A valid token carries the user id, the tenant and an expiry in
// "exp"; where the first two live is configurable (claims.go). The package knows nothing about GraphQL or SQL: it turns a token (or an
// Authorization header) into an Identity, stores that Identity in a
// context.Context, and offers an HTTP middleware that does both.
package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultLeeway is the clock skew tolerated when checking exp, nbf and iat.
const DefaultLeeway = 30 * time.Second

// maxTokenLen bounds the work done on a single token. Real tokens issued by
// this package are a few hundred bytes; identity providers' a few KB.
const maxTokenLen = 8 << 10

// signingMethod is the algorithm of tokens signed with the shared secret.
var signingMethod = jwt.SigningMethodHS256

// Sentinel errors. Every error returned by Verify and VerifyAuthorization
// satisfies errors.Is with exactly one of them.
var (
	// ErrNoCredentials means the caller presented no token at all.
	ErrNoCredentials = errors.New("missing bearer token")
	// ErrInvalidToken means a token was presented but cannot be trusted.
	ErrInvalidToken = errors.New("invalid token")
)

// Identity is the authenticated caller.
type Identity struct {
	UserID    string
	TenantID  string
	ExpiresAt time.Time
	// Claims are the token's string claims by name, for sync rules: every
	// top-level one, every nested one by its dotted path
	// ("app_metadata.region"), and "sub", "tenant_id" and "role" set to the
	// values the claim mapping found, wherever they live in the token.
	Claims map[string]string
}

// Claims is the JWT payload of tokens minted by Issue.
type Claims struct {
	jwt.RegisteredClaims
	TenantID string `json:"tenant_id"`
	Role     string `json:"role,omitempty"`
}

// authError carries a short, safe message (never the token) and unwraps to
// its sentinel kind and, when there is one, the underlying jwt error.
type authError struct {
	kind  error
	msg   string
	cause error
}

func (e *authError) Error() string { return e.msg }

func (e *authError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

func invalid(msg string, cause error) error {
	return &authError{kind: ErrInvalidToken, msg: msg, cause: cause}
}

// Option configures a Verifier.
type Option func(*Verifier)

// WithLeeway sets the tolerated clock skew for exp/nbf/iat (default
// DefaultLeeway). Negative values are treated as zero.
func WithLeeway(d time.Duration) Option {
	return func(v *Verifier) {
		if d < 0 {
			d = 0
		}
		v.leeway = d
	}
}

// WithClock replaces time.Now as the verifier's notion of the current time.
// Intended for tests.
func WithClock(now func() time.Time) Option {
	return func(v *Verifier) {
		if now != nil {
			v.now = now
		}
	}
}

// Verifier checks bearer tokens: HS256 tokens signed with the shared secret,
// and RS/PS/ES/EdDSA tokens signed by a key of the identity provider's JWKS
// (see New). It is immutable after construction and safe for concurrent use.
type Verifier struct {
	secret  []byte
	keys    keySource // nil without a JWKS
	leeway  time.Duration
	now     func() time.Time
	mapping ClaimMapping
	methods []string
	parser  *jwt.Parser
	stop    context.CancelFunc
}

// NewVerifier returns a Verifier for HS256 tokens signed with secret, with
// the default claim mapping and no issuer or audience check. The secret is
// copied. A Verifier built with an empty secret rejects every token.
func NewVerifier(secret []byte, opts ...Option) *Verifier {
	v := &Verifier{
		secret:  append([]byte(nil), secret...),
		leeway:  DefaultLeeway,
		now:     time.Now,
		mapping: ClaimMapping{}.withDefaults(),
		stop:    func() {},
	}
	for _, o := range opts {
		o(v)
	}
	v.methods = []string{signingMethod.Alg()}
	v.parser = v.newParser(nil)
	return v
}

func (v *Verifier) newParser(extra []jwt.ParserOption) *jwt.Parser {
	return jwt.NewParser(append([]jwt.ParserOption{
		// alg is pinned twice: to the algorithms some configured key allows
		// here, and to the one algorithm the chosen key allows in keyFor.
		jwt.WithValidMethods(v.methods),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(v.leeway),
		jwt.WithTimeFunc(v.now),
	}, extra...)...)
}

// Close stops the JWKS's background refresh, if any. The Verifier still
// verifies with the keys it holds.
func (v *Verifier) Close() { v.stop() }

// Verify checks a raw token (without the "Bearer " prefix) and returns the
// caller's Identity. An empty token yields ErrNoCredentials; anything else
// that is not acceptable yields an error wrapping ErrInvalidToken whose
// message is short and safe to show to the client.
func (v *Verifier) Verify(token string) (Identity, error) {
	if token == "" {
		return Identity{}, ErrNoCredentials
	}
	if len(v.secret) == 0 && v.keys == nil {
		return Identity{}, invalid("token verification not configured", nil)
	}
	if len(token) > maxTokenLen {
		return Identity{}, invalid("token too large", nil)
	}

	claims := jwt.MapClaims{}
	parsed, err := v.parser.ParseWithClaims(token, claims, v.keyFor)
	if err != nil {
		return Identity{}, v.classify(parsed, claims, err)
	}
	return v.identity(claims)
}

// classify maps a jwt parse error to a short human message.
func (v *Verifier) classify(tok *jwt.Token, claims jwt.MapClaims, err error) error {
	if errors.Is(err, jwt.ErrTokenMalformed) {
		return invalid("token malformed", err)
	}
	if tok != nil && tok.Header != nil {
		if alg, _ := tok.Header["alg"].(string); !slices.Contains(v.methods, alg) || errors.Is(err, errKeyMismatch) {
			return invalid("token algorithm not allowed", err)
		}
	}
	switch {
	case errors.Is(err, errUnknownKey):
		return invalid("token signed by an unknown key", err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return invalid("token signature invalid", err)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		// exp is always required; iss and aud when they are checked.
		for _, name := range []string{"exp", "iss", "aud"} {
			if _, ok := claims[name]; !ok {
				return invalid("token has no "+name, err)
			}
		}
		return invalid("token has an empty required claim", err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return invalid("token expired", err)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return invalid("token not valid yet", err)
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return invalid("token issued in the future", err)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return invalid("token issuer not accepted", err)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return invalid("token audience not accepted", err)
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return invalid("token unverifiable", err)
	default:
		return invalid("token invalid", err)
	}
}

// VerifyAuthorization checks an HTTP Authorization header value of the form
// "Bearer <token>" (scheme matched case-insensitively). An empty header
// yields ErrNoCredentials; another scheme yields ErrInvalidToken.
func (v *Verifier) VerifyAuthorization(header string) (Identity, error) {
	header = strings.TrimSpace(header)
	if header == "" {
		return Identity{}, ErrNoCredentials
	}
	scheme, token, _ := strings.Cut(header, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return Identity{}, invalid("authorization scheme must be Bearer", nil)
	}
	return v.Verify(strings.TrimSpace(token))
}

// Issue mints an HS256 token for userID in tenantID, valid for ttl from now
// (time.Now() if now is zero). Used by `tidemark token` and dev mode.
func Issue(secret []byte, tenantID, userID string, ttl time.Duration, now time.Time) (string, error) {
	return IssueWithRole(secret, tenantID, userID, "", ttl, now)
}

// IssueWithRole is Issue with a "role" claim (none when role is empty), the
// claim the default sync rules read.
func IssueWithRole(secret []byte, tenantID, userID, role string, ttl time.Duration, now time.Time) (string, error) {
	switch {
	case len(secret) == 0:
		return "", errors.New("auth: empty signing secret")
	case strings.TrimSpace(tenantID) == "":
		return "", errors.New("auth: empty tenant id")
	case strings.TrimSpace(userID) == "":
		return "", errors.New("auth: empty user id")
	case ttl <= 0:
		return "", errors.New("auth: ttl must be positive")
	}
	if now.IsZero() {
		now = time.Now()
	}
	claims := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   userID,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		TenantID: tenantID,
		Role:     role,
	}
	s, err := jwt.NewWithClaims(signingMethod, claims).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("auth: sign token: %w", err)
	}
	return s, nil
}

// GenerateSecret returns 32 cryptographically random bytes, for dev mode.
func GenerateSecret() ([]byte, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("auth: generate secret: %w", err)
	}
	return b, nil
}

type ctxKey struct{}

// WithIdentity returns a copy of ctx carrying id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the Identity stored by WithIdentity, if any.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}
