package db_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
)

func openEmpty(t *testing.T) *db.DB {
	t.Helper()
	d, err := db.Open(context.Background(), dbtest.EmptyURL(t), db.PoolConfig{MaxConns: 4}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

func TestMigrateEmptyDatabase(t *testing.T) {
	ctx := context.Background()
	d := openEmpty(t)

	if v, err := d.SchemaVersion(ctx); err != nil || v != 0 {
		t.Fatalf("schema version of a new database = %d, %v; want 0", v, err)
	}
	if err := d.CheckSchema(ctx); !errors.Is(err, db.ErrSchemaOutdated) {
		t.Fatalf("CheckSchema on a new database = %v; want ErrSchemaOutdated", err)
	}
	if err := d.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	want, _ := db.RequiredSchemaVersion()
	if v, err := d.SchemaVersion(ctx); err != nil || v != want {
		t.Fatalf("schema version after migrate = %d, %v; want %d", v, err, want)
	}
	if err := d.CheckSchema(ctx); err != nil {
		t.Fatalf("CheckSchema after migrate: %v", err)
	}
	// Every collection's table exists and answers its own statements.
	for _, c := range collections.All() {
		if _, err := d.ChangesSince(ctx, "t", c, 0, 10); err != nil {
			t.Errorf("%s table unusable after migrate: %v", c.Name, err)
		}
	}
	// Migrating again is a no-op.
	if err := d.Migrate(ctx); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
}

func TestMigrateRerunsAStepThatWasNotRecorded(t *testing.T) {
	ctx := context.Background()
	d := openEmpty(t)
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	// As if the process died after the last DDL ran but before it was recorded.
	if _, err := d.Pool.Exec(ctx, "DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)"); err != nil {
		t.Fatal(err)
	}
	if err := d.Migrate(ctx); err != nil {
		t.Fatalf("migrate after an unrecorded step: %v", err)
	}
	if err := d.CheckSchema(ctx); err != nil {
		t.Fatalf("CheckSchema: %v", err)
	}
}

func TestCheckSchemaRefusesAnOlderSchema(t *testing.T) {
	ctx := context.Background()
	d := openEmpty(t)
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Pool.Exec(ctx, "DELETE FROM schema_migrations WHERE version > 2"); err != nil {
		t.Fatal(err)
	}
	err := d.CheckSchema(ctx)
	if !errors.Is(err, db.ErrSchemaOutdated) {
		t.Fatalf("CheckSchema on an old schema = %v; want ErrSchemaOutdated", err)
	}
	if !strings.Contains(err.Error(), "tidemark migrate") {
		t.Errorf("error %q does not tell the operator to run `tidemark migrate`", err)
	}
}

func TestCheckSchemaAcceptsANewerSchema(t *testing.T) {
	ctx := context.Background()
	d := dbtest.Open(t, db.PoolConfig{})
	// A newer binary migrated already (rolling upgrade): old instances keep serving.
	if _, err := d.Pool.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES (9999, 'from_the_future')"); err != nil {
		t.Fatal(err)
	}
	if err := d.CheckSchema(ctx); err != nil {
		t.Fatalf("CheckSchema with a newer schema: %v", err)
	}
}

func TestMigrationsAreOneStatementEach(t *testing.T) {
	ms, err := db.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < len(collections.All())+1 {
		t.Fatalf("%d migrations; want at least one per collection plus the change counters", len(ms))
	}
	for _, m := range ms {
		if strings.Contains(m.Statement, ";") {
			t.Errorf("migration %d holds more than one statement", m.Version)
		}
		if !strings.Contains(m.Statement, "IF NOT EXISTS") && !strings.HasPrefix(m.Statement, "DROP INDEX IF EXISTS") {
			t.Errorf("migration %d is not idempotent (no IF NOT EXISTS)", m.Version)
		}
	}
}
