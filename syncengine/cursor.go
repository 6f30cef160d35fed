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
//
// Either may end with a floor: the purge horizon when the client's sync
// began from a null checkpoint (see Position). Cursors without one, which
// is every cursor issued before tombstones were purged, have floor 0.
const (
	cursorVersion    = "v1"
	setCursorVersion = "v2"
)

// Position is what a cursor holds: the change number after which the next
// pull starts, and the floor, below which purged entries never concerned
// this client (it started after they were purged).
type Position struct {
	Change int64
	Floor  int64
}

// EncodeCursor returns the cursor of position p in the tenant's collection
// c, in the caller's set.
func EncodeCursor(c *collections.Collection, tenantID string, set syncrules.CollectionAccess, p Position) string {
	parts := []string{cursorVersion, c.Name, tenantDigest(tenantID)}
	if set.Scope != syncrules.All {
		parts = []string{setCursorVersion, c.Name, tenantDigest(tenantID), setDigest(set)}
	}
	parts = append(parts, strconv.FormatInt(p.Change, 10))
	if p.Floor > p.Change {
		parts = append(parts, strconv.FormatInt(p.Floor, 10))
	}
	return base64.RawURLEncoding.EncodeToString([]byte(strings.Join(parts, ":")))
}

// DecodeCursor returns the position a cursor of the tenant's collection c,
// in the caller's set, holds.
func DecodeCursor(c *collections.Collection, tenantID string, set syncrules.CollectionAccess, cursor string) (Position, error) {
	invalid := apperr.Invalid("checkpoint.cursor", "is not a cursor this server issued for %s; start again from a null checkpoint", c.Name)
	if len(cursor) > 200 {
		return Position{}, invalid
	}
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return Position{}, invalid
	}
	parts := strings.Split(string(raw), ":")
	head := 3 // version, collection, tenant
	switch {
	case len(parts) > 0 && parts[0] == cursorVersion:
	case len(parts) > 0 && parts[0] == setCursorVersion:
		head = 4 // and the set
	default:
		return Position{}, invalid
	}
	if len(parts) < head+1 || len(parts) > head+2 || parts[1] != c.Name {
		return Position{}, invalid
	}
	if parts[2] != tenantDigest(tenantID) {
		return Position{}, apperr.Invalid("checkpoint.cursor", "belongs to another account; start again from a null checkpoint")
	}
	sameSet := set.Scope == syncrules.All && head == 3 ||
		set.Scope != syncrules.All && head == 4 && parts[3] == setDigest(set)
	if !sameSet {
		return Position{}, apperr.New(apperr.CheckpointExpired, "the checkpoint belongs to another sync set (the caller's role or user changed); start again from a null checkpoint")
	}
	var p Position
	if p.Change, err = strconv.ParseInt(parts[head], 10, 64); err != nil || p.Change < 0 {
		return Position{}, invalid
	}
	if len(parts) == head+2 {
		if p.Floor, err = strconv.ParseInt(parts[head+1], 10, 64); err != nil || p.Floor <= p.Change {
			return Position{}, invalid
		}
	}
	// Only the exact text this server issues is a cursor: "+5", "05" or
	// base64 with stray trailing bits would name the same position, but a
	// cursor that does not re-encode to itself was not issued here.
	if EncodeCursor(c, tenantID, set, p) != cursor {
		return Position{}, invalid
	}
	return p, nil
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
