package syncengine

import (
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/tidemark/tidemark/apperr"
	"github.com/tidemark/tidemark/collections"
)

// A cursor names a position in one collection's change order: the change
// number of the last document a client has. It is encoded so that clients
// treat it as opaque; the version prefix lets the format change later.
const cursorVersion = "v1"

// EncodeCursor returns the cursor after change number `change` of collection c.
func EncodeCursor(c *collections.Collection, change int64) string {
	raw := cursorVersion + ":" + c.Name + ":" + strconv.FormatInt(change, 10)
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// DecodeCursor returns the change number a cursor of collection c points after.
func DecodeCursor(c *collections.Collection, cursor string) (int64, error) {
	invalid := apperr.Invalid("checkpoint.cursor", "is not a cursor this server issued for %s", c.Name)
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(cursor) > 200 {
		return 0, invalid
	}
	parts := strings.Split(string(raw), ":")
	if len(parts) != 3 || parts[0] != cursorVersion || parts[1] != c.Name {
		return 0, invalid
	}
	change, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || change < 0 {
		return 0, invalid
	}
	return change, nil
}
