package syncengine_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/apperr"
	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/syncengine"
	"github.com/tidemark/tidemark/syncrules"
)

func TestCursorRoundTrip(t *testing.T) {
	for _, change := range []int64{0, 1, 1 << 40} {
		cur := syncengine.EncodeCursor(collections.WorkOrder, "tenant-a", wholeTenant, syncengine.Position{Change: change})
		got, err := syncengine.DecodeCursor(collections.WorkOrder, "tenant-a", wholeTenant, cur)
		if err != nil || got.Change != change {
			t.Fatalf("decode(encode(%d)) = %v, %v", change, got, err)
		}
		if strings.Contains(cur, "tenant-a") {
			t.Fatalf("cursor %q shows the tenant id", cur)
		}
	}
}

func TestCursorIsRefusedOutsideItsScope(t *testing.T) {
	cur := syncengine.EncodeCursor(collections.WorkOrder, "tenant-a", wholeTenant, syncengine.Position{Change: 42})
	tests := []struct {
		name, tenant string
		c            *collections.Collection
		want         string
	}{
		{"another tenant (an account switch on the device)", "tenant-b", collections.WorkOrder, "another account"},
		{"another collection", "tenant-a", collections.Site, "not a cursor this server issued for Site"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := syncengine.DecodeCursor(tc.c, tc.tenant, wholeTenant, cur)
			if apperr.CodeOf(err) != apperr.BadUserInput || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want BAD_USER_INPUT mentioning %q", err, tc.want)
			}
		})
	}
}

func TestCursorIsOpaqueAndURLSafe(t *testing.T) {
	for _, tenant := range []string{"tenant-a", "a:b/c d", "ü"} {
		cur := syncengine.EncodeCursor(collections.Note, tenant, wholeTenant, syncengine.Position{Change: 1 << 62})
		if strings.ContainsAny(cur, "+/=: ") {
			t.Errorf("cursor %q for tenant %q is not plain base64url", cur, tenant)
		}
		got, err := syncengine.DecodeCursor(collections.Note, tenant, wholeTenant, cur)
		if err != nil || got.Change != 1<<62 {
			t.Errorf("tenant %q: decode = %v, %v", tenant, got, err)
		}
	}
}

func TestCursorsOfTwoTenantsAtOneChangeDiffer(t *testing.T) {
	a := syncengine.EncodeCursor(collections.Site, "tenant-a", wholeTenant, syncengine.Position{Change: 5})
	b := syncengine.EncodeCursor(collections.Site, "tenant-b", wholeTenant, syncengine.Position{Change: 5})
	if a == b {
		t.Fatalf("two tenants' cursors at the same change are equal: %q", a)
	}
}

func TestMalformedCursorIsRefused(t *testing.T) {
	raw := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	good := syncengine.EncodeCursor(collections.Site, "tenant-a", wholeTenant, syncengine.Position{Change: 42})
	decoded, _ := base64.RawURLEncoding.DecodeString(good)
	parts := strings.Split(string(decoded), ":")
	digest := parts[2]
	tests := []struct{ name, cursor string }{
		{"the empty string", ""},
		{"not base64", "!!!"},
		{"padded base64", base64.URLEncoding.EncodeToString(decoded)},
		{"too long", strings.Repeat("A", 201)},
		{"too few parts", raw("v1:Site:" + digest)},
		{"too many parts", raw("v1:Site:" + digest + ":42:50:1")},
		{"a floor not past the change", raw("v1:Site:" + digest + ":42:1")},
		{"another version", raw("v3:Site:" + digest + ":42")},
		{"a change that is not a number", raw("v1:Site:" + digest + ":forty-two")},
		{"a negative change", raw("v1:Site:" + digest + ":-1")},
		{"a change past int64", raw("v1:Site:" + digest + ":9223372036854775808")},
		{"a pull checkpoint of another server's format", raw(`{"id":"x","updatedAt":"2024-01-01T00:00:00Z"}`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := syncengine.DecodeCursor(collections.Site, "tenant-a", wholeTenant, tc.cursor)
			if apperr.CodeOf(err) != apperr.BadUserInput {
				t.Fatalf("DecodeCursor(%q) = %v, %v; want BAD_USER_INPUT", tc.cursor, got, err)
			}
			if !strings.Contains(err.Error(), "start again from a null checkpoint") {
				t.Errorf("error %q does not tell the client how to recover", err)
			}
		})
	}
	// The same text with a good change decodes: the cases above fail for
	// the reason their names give.
	if got, err := syncengine.DecodeCursor(collections.Site, "tenant-a", wholeTenant, raw("v1:Site:"+digest+":42")); err != nil || got.Change != 42 {
		t.Fatalf("control cursor: %d, %v", got, err)
	}
}

// wholeTenant is the set of a caller without sync rules.
var wholeTenant = syncrules.CollectionAccess{Scope: syncrules.All}

// A cursor of one set (a technician's bucket) is refused in another set,
// and a whole-tenant cursor in a bucket, with CHECKPOINT_EXPIRED so the
// client starts over; within its set it keeps its position and floor.
func TestCursorBelongsToItsSet(t *testing.T) {
	alice := syncrules.CollectionAccess{Scope: syncrules.InBucket, BucketID: "technician:alice"}
	bob := syncrules.CollectionAccess{Scope: syncrules.InBucket, BucketID: "technician:bob"}
	p := syncengine.Position{Change: 7, Floor: 12}
	cur := syncengine.EncodeCursor(collections.WorkOrder, "t", alice, p)
	if got, err := syncengine.DecodeCursor(collections.WorkOrder, "t", alice, cur); err != nil || got != p {
		t.Fatalf("in its own set: %v, %v; want %v", got, err, p)
	}
	for name, set := range map[string]syncrules.CollectionAccess{"another bucket": bob, "the whole tenant": wholeTenant} {
		if _, err := syncengine.DecodeCursor(collections.WorkOrder, "t", set, cur); apperr.CodeOf(err) != apperr.CheckpointExpired {
			t.Errorf("a bucket cursor in %s: %v, want CHECKPOINT_EXPIRED", name, err)
		}
	}
	whole := syncengine.EncodeCursor(collections.WorkOrder, "t", wholeTenant, syncengine.Position{Change: 7})
	if _, err := syncengine.DecodeCursor(collections.WorkOrder, "t", alice, whole); apperr.CodeOf(err) != apperr.CheckpointExpired {
		t.Errorf("a whole-tenant cursor in a bucket: %v, want CHECKPOINT_EXPIRED", err)
	}
}
