package syncengine

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/tidemark/tidemark/apperr"
	"github.com/tidemark/tidemark/collections"
)

// A cursor names a position in one tenant's collection: the change number
// of the last document a client has. It is encoded so that clients treat it
// as opaque; the version prefix lets the format change later. It carries
// the collection and a digest of the tenant, so a checkpoint kept from
// another collection, or from another account on the same device, is
// refused instead of silently skipping changes.
const cursorVersion = "v1"

// EncodeCursor returns the cursor after change number `change` of the
// tenant's collection c.
func EncodeCursor(c *collections.Collection, tenantID string, change int64) string {
	raw := cursorVersion + ":" + c.Name + ":" + tenantDigest(tenantID) + ":" + strconv.FormatInt(change, 10)
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// DecodeCursor returns the change number a cursor of the tenant's
// collection c points after.
func DecodeCursor(c *collections.Collection, tenantID, cursor string) (int64, error) {
	invalid := apperr.Invalid("checkpoint.cursor", "is not a cursor this server issued for %s; start again from a null checkpoint", c.Name)
	if len(cursor) > 200 {
		return 0, invalid
	}
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return 0, invalid
	}
	parts := strings.Split(string(raw), ":")
	if len(parts) != 4 || parts[0] != cursorVersion || parts[1] != c.Name {
		return 0, invalid
	}
	if parts[2] != tenantDigest(tenantID) {
		return 0, apperr.Invalid("checkpoint.cursor", "belongs to another account; start again from a null checkpoint")
	}
	change, err := strconv.ParseInt(parts[3], 10, 64)
	if err != nil || change < 0 {
		return 0, invalid
	}
	return change, nil
}

// tenantDigest is short and one-way: enough to tell tenants apart, without
// putting the tenant id itself into every cursor.
func tenantDigest(tenantID string) string {
	sum := sha256.Sum256([]byte(tenantID))
	return hex.EncodeToString(sum[:6])
}
