package syncengine

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/tidemark/tidemark/apperr"
	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/syncrules"
)

// A cursor names a position in one tenant's collection: the change number
// of the last document a client has. It is encoded so that clients treat it
// as opaque; the version prefix lets the format change later. It carries
// the collection and a digest of the tenant, so a checkpoint kept from
// another collection, or from another account on the same device, is
// refused instead of silently skipping changes.
//
// A whole-tenant cursor (v1) is a position in the collection's change
// order; a cursor of a partial set (v2, under sync rules) is a position in
// the caller's bucket and also carries a digest of the bucket, so a caller
// whose set changed (another role, another user on the device) is told to
// start over instead of reading another set's positions.
const (
	cursorVersion    = "v1"
	setCursorVersion = "v2"
)

// EncodeCursor returns the cursor after position `change` of the tenant's
// collection c, in the caller's set.
func EncodeCursor(c *collections.Collection, tenantID string, set syncrules.CollectionAccess, change int64) string {
	raw := cursorVersion + ":" + c.Name + ":" + tenantDigest(tenantID) + ":" + strconv.FormatInt(change, 10)
	if set.Scope != syncrules.All {
		raw = setCursorVersion + ":" + c.Name + ":" + tenantDigest(tenantID) + ":" + setDigest(set) + ":" + strconv.FormatInt(change, 10)
	}
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// DecodeCursor returns the position a cursor of the tenant's collection c,
// in the caller's set, points after.
func DecodeCursor(c *collections.Collection, tenantID string, set syncrules.CollectionAccess, cursor string) (int64, error) {
	invalid := apperr.Invalid("checkpoint.cursor", "is not a cursor this server issued for %s; start again from a null checkpoint", c.Name)
	if len(cursor) > 200 {
		return 0, invalid
	}
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return 0, invalid
	}
	parts := strings.Split(string(raw), ":")
	if len(parts) < 4 || parts[1] != c.Name || (parts[0] == cursorVersion) != (len(parts) == 4) ||
		(parts[0] != cursorVersion && (parts[0] != setCursorVersion || len(parts) != 5)) {
		return 0, invalid
	}
	if parts[2] != tenantDigest(tenantID) {
		return 0, apperr.Invalid("checkpoint.cursor", "belongs to another account; start again from a null checkpoint")
	}
	wantSet := set.Scope == syncrules.All && parts[0] == cursorVersion ||
		set.Scope != syncrules.All && parts[0] == setCursorVersion && parts[3] == setDigest(set)
	if !wantSet {
		return 0, apperr.New(apperr.CheckpointExpired, "the checkpoint belongs to another sync set (the caller's role or user changed); start again from a null checkpoint")
	}
	change, err := strconv.ParseInt(parts[len(parts)-1], 10, 64)
	if err != nil || change < 0 {
		return 0, invalid
	}
	return change, nil
}

// setDigest names a partial set in a cursor without spelling out its id.
func setDigest(set syncrules.CollectionAccess) string {
	if set.Scope == syncrules.None {
		return "none"
	}
	return tenantDigest("bucket\x00" + set.BucketID)
}

// tenantDigest is short and one-way: enough to tell tenants apart, without
// putting the tenant id itself into every cursor.
func tenantDigest(tenantID string) string {
	sum := sha256.Sum256([]byte(tenantID))
	return hex.EncodeToString(sum[:6])
}
