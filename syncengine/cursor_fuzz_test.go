package syncengine_test

import (
	"encoding/base64"
	"testing"

	"github.com/tidemark/tidemark/apperr"
	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/syncengine"
	"github.com/tidemark/tidemark/syncrules"
)

// fuzzSets are the sets a pull cursor may be read in: the whole tenant
// (v1 cursors), a bucket and no access (v2).
var fuzzSets = []syncrules.CollectionAccess{
	wholeTenant,
	{Scope: syncrules.InBucket, BucketID: "technician:alice"},
	{Scope: syncrules.None},
}

// A cursor that names its position in another way than the server writes
// it ("+5", "05", stray base64 bits) was not issued here and is refused.
func TestCursorIsAcceptedOnlyAsIssued(t *testing.T) {
	raw := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	cur := syncengine.EncodeCursor(collections.Site, "tenant-a", wholeTenant, syncengine.Position{Change: 5})
	decoded, _ := base64.RawURLEncoding.DecodeString(cur)
	head := string(decoded[:len(decoded)-1]) // "v1:Site:<digest>:"
	for name, c := range map[string]string{
		"a plus sign":       raw(head + "+5"),
		"a leading zero":    raw(head + "05"),
		"a floor of zero":   raw(head + "5:0"),
		"a trailing colon":  raw(head + "5:"),
		"a NUL in the text": raw(head + "5\x00"),
	} {
		if _, err := syncengine.DecodeCursor(collections.Site, "tenant-a", wholeTenant, c); apperr.CodeOf(err) != apperr.BadUserInput {
			t.Errorf("%s: %v, want BAD_USER_INPUT", name, err)
		}
	}
	if got, err := syncengine.DecodeCursor(collections.Site, "tenant-a", wholeTenant, raw(head+"5")); err != nil || got.Change != 5 {
		t.Fatalf("control, the cursor as issued: %v, %v", got, err)
	}
}

// FuzzPullCursor feeds arbitrary text as a pull checkpoint of every
// collection in every kind of set: decoding never panics, every refusal
// is a coded error (BAD_USER_INPUT on checkpoint.cursor, or
// CHECKPOINT_EXPIRED for another set's cursor), and every accepted cursor
// holds a valid position and re-encodes to itself.
func FuzzPullCursor(f *testing.F) {
	for _, c := range collections.All() {
		for _, set := range fuzzSets {
			for _, p := range []syncengine.Position{{}, {Change: 42}, {Change: 7, Floor: 12}, {Change: 1 << 62}} {
				f.Add(syncengine.EncodeCursor(c, "tenant-a", set, p))
			}
		}
	}
	f.Add("")
	f.Add("djE6U2l0ZTo")
	f.Add(base64.RawURLEncoding.EncodeToString([]byte("v1:Site:000000000000:-1")))
	f.Add(base64.RawURLEncoding.EncodeToString([]byte("v2:Site:000000000000:none:5:3")))

	f.Fuzz(func(t *testing.T, cursor string) {
		for _, c := range collections.All() {
			for _, set := range fuzzSets {
				p, err := syncengine.DecodeCursor(c, "tenant-a", set, cursor)
				if err != nil {
					e, ok := apperr.As(err)
					switch {
					case ok && e.Code == apperr.BadUserInput && e.Field == "checkpoint.cursor":
					case ok && e.Code == apperr.CheckpointExpired:
					default:
						t.Fatalf("%s %q: refused with %v (%s); want a coded refusal", c.Name, cursor, err, apperr.CodeOf(err))
					}
					continue
				}
				if p.Change < 0 || (p.Floor != 0 && p.Floor <= p.Change) {
					t.Fatalf("%s %q: accepted an impossible position %+v", c.Name, cursor, p)
				}
				if again := syncengine.EncodeCursor(c, "tenant-a", set, p); again != cursor {
					t.Fatalf("%s %q re-encodes to %q", c.Name, cursor, again)
				}
			}
		}
	})
}
