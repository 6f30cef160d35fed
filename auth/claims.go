package auth

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// Default claim paths: where tokens minted by Issue keep the caller.
const (
	DefaultTenantClaim = "tenant_id"
	DefaultUserClaim   = "sub"
	DefaultRoleClaim   = "role"
)

// ClaimMapping says where in a token the tenant id, the user id and the role
// live: each a claim name or a dotted path into nested objects, such as
// "app_metadata.tenant_id". A claim whose own name contains dots (the
// namespaced claims of Auth0, "https://example.com/tenant_id") is found by
// its whole name first. Empty fields take the defaults.
type ClaimMapping struct {
	Tenant string
	User   string
	Role   string
}

func (m ClaimMapping) withDefaults() ClaimMapping {
	if m.Tenant == "" {
		m.Tenant = DefaultTenantClaim
	}
	if m.User == "" {
		m.User = DefaultUserClaim
	}
	if m.Role == "" {
		m.Role = DefaultRoleClaim
	}
	return m
}

// maxClaimDepth bounds how deep nested claims are flattened for sync rules.
const maxClaimDepth = 4

// identity reads the caller out of a verified token's claims.
func (v *Verifier) identity(claims jwt.MapClaims) (Identity, error) {
	m := v.mapping
	user, userOK := claimString(claims, m.User)
	tenant, tenantOK := claimString(claims, m.Tenant)
	switch {
	case !userOK && claimPresent(claims, m.User):
		return Identity{}, invalid("token's "+m.User+" is not a string", nil)
	case !tenantOK && claimPresent(claims, m.Tenant):
		return Identity{}, invalid("token's "+m.Tenant+" is not a string", nil)
	case strings.TrimSpace(user) == "":
		return Identity{}, invalid("token has no "+m.User, nil)
	case strings.TrimSpace(tenant) == "":
		return Identity{}, invalid("token has no "+m.Tenant, nil)
	case !usableID(user):
		return Identity{}, invalid("token's "+m.User+" is not a usable id", nil)
	case !usableID(tenant):
		return Identity{}, invalid("token's "+m.Tenant+" is not a usable id", nil)
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil { // unreachable with WithExpirationRequired; kept as a guard
		return Identity{}, invalid("token has no exp", err)
	}
	flat := make(map[string]string, len(claims))
	flatten(flat, "", map[string]any(claims), 0)
	// The mapped values are what sync rules see as sub, tenant_id and
	// role (syncrules reads the role claim by name, "role" by default),
	// whatever the provider calls them.
	flat[DefaultUserClaim] = user
	flat[DefaultTenantClaim] = tenant
	if role, ok := claimString(claims, m.Role); ok {
		flat[DefaultRoleClaim] = role
	} else if m.Role != DefaultRoleClaim {
		delete(flat, DefaultRoleClaim)
	}
	return Identity{UserID: user, TenantID: tenant, ExpiresAt: exp.Time, Claims: flat}, nil
}

// maxIDBytes bounds a tenant or user id taken from a token.
const maxIDBytes = 256

// usableID reports whether a tenant or user id can key the caller's data:
// valid UTF-8 without control characters (a NUL would fail in the database
// as an internal error, on every write of that caller), and short. A
// signed token is still input: the provider's data may be odd.
func usableID(id string) bool {
	if len(id) > maxIDBytes || !utf8.ValidString(id) {
		return false
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// claimString finds path's value when it is a string. Only a string is a
// value: a number or an object where an id should be is refused, not
// converted.
func claimString(claims map[string]any, path string) (string, bool) {
	v, _ := lookup(claims, path)
	s, ok := v.(string)
	return s, ok
}

// claimPresent reports whether path holds any value at all.
func claimPresent(claims map[string]any, path string) bool {
	v, ok := lookup(claims, path)
	return ok && v != nil
}

// lookup finds path in claims: the whole path as one claim name first,
// then as a dotted path through nested objects.
func lookup(claims map[string]any, path string) (any, bool) {
	if v, ok := claims[path]; ok {
		return v, true
	}
	var cur any = claims
	for part := range strings.SplitSeq(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// flatten copies the string claims of obj into out, nested ones under
// their dotted path.
func flatten(out map[string]string, prefix string, obj map[string]any, depth int) {
	for k, v := range obj {
		name := k
		if prefix != "" {
			name = prefix + "." + k
		}
		switch v := v.(type) {
		case string:
			out[name] = v
		case map[string]any:
			if depth < maxClaimDepth {
				flatten(out, name, v, depth+1)
			}
		}
	}
}
