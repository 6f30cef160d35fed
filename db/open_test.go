package db_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
)

// An error no retry can change fails Open at once with what to fix; it is
// not retried until the start-up timeout runs out. The context's deadline
// is shorter than the start-up timeout, so a retried error would surface as
// a deadline instead of the hint.
func TestOpenFailsAtOnceOnPermanentErrors(t *testing.T) {
	good, err := url.Parse(dbtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	missingDB := *good
	missingDB.Path = "/no_such_database_here"
	unknownUser := *good
	unknownUser.User = url.User("no_such_role_here")

	for _, tt := range []struct {
		name, url, hint string
	}{
		{"database does not exist", missingDB.String(), "does not exist"},
		{"login refused", unknownUser.String(), "refused the login"},
		{"not a PostgreSQL URL", "mysql://root@localhost/app", "want postgres://"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			d, err := db.Open(ctx, tt.url, db.PoolConfig{StartupTimeout: time.Minute}, nil)
			if err == nil {
				d.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.hint) {
				t.Fatalf("err = %v, want it to say %q", err, tt.hint)
			}
		})
	}
}
