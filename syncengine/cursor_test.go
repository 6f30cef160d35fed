package syncengine_test

import (
	"strings"
	"testing"

	"github.com/tidemark/tidemark/apperr"
	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/syncengine"
)

func TestCursorRoundTrip(t *testing.T) {
	for _, change := range []int64{0, 1, 1 << 40} {
		cur := syncengine.EncodeCursor(collections.WorkOrder, "tenant-a", change)
		got, err := syncengine.DecodeCursor(collections.WorkOrder, "tenant-a", cur)
		if err != nil || got != change {
			t.Fatalf("decode(encode(%d)) = %d, %v", change, got, err)
		}
		if strings.Contains(cur, "tenant-a") {
			t.Fatalf("cursor %q shows the tenant id", cur)
		}
	}
}

func TestCursorIsRefusedOutsideItsScope(t *testing.T) {
	cur := syncengine.EncodeCursor(collections.WorkOrder, "tenant-a", 42)
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
			_, err := syncengine.DecodeCursor(tc.c, tc.tenant, cur)
			if apperr.CodeOf(err) != apperr.BadUserInput || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want BAD_USER_INPUT mentioning %q", err, tc.want)
			}
		})
	}
}
