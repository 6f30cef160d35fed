package db

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migration is one numbered schema step: exactly one DDL statement, since
// CockroachDB cannot mix DDL with other statements in a transaction. Steps
// are written to be idempotent (IF NOT EXISTS), so a step that ran but was
// not recorded, because the process died in between, runs again harmlessly.
type Migration struct {
	Version   int64
	Name      string
	Statement string
	// Only, when set, is the one dialect the step runs on (a file named
	// NNNN_name.cockroachdb.sql or NNNN_name.postgresql.sql). On the other
	// dialect the step is recorded without running, so both keep one
	// numbering and the schema version means the same on each.
	Only *Dialect
}

// RunsOn reports whether the step's statement runs on dialect d.
func (m Migration) RunsOn(d Dialect) bool { return m.Only == nil || *m.Only == d }

var migrationName = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)(\.cockroachdb|\.postgresql)?\.sql$`)

// Migrations returns the embedded migrations in version order.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %q: name must be NNNN_name.sql, NNNN_name.cockroachdb.sql or NNNN_name.postgresql.sql", e.Name())
		}
		version, _ := strconv.ParseInt(m[1], 10, 64)
		body, err := migrationFiles.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, err
		}
		stmt := strings.TrimSpace(stripComments(string(body)))
		stmt = strings.TrimSuffix(stmt, ";")
		if stmt == "" || strings.Contains(stmt, ";") {
			return nil, fmt.Errorf("migration %s must hold exactly one statement", e.Name())
		}
		mig := Migration{Version: version, Name: m[2], Statement: stmt}
		switch m[3] {
		case ".cockroachdb":
			only := CockroachDB
			mig.Only = &only
		case ".postgresql":
			only := PostgreSQL
			mig.Only = &only
		}
		out = append(out, mig)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	// Numbers are handed out in blocks (0030-0039 to one change, 0040-0049
	// to another) so that work in parallel does not collide: gaps between
	// blocks are allowed, a number used twice is not.
	for i := range out {
		if i > 0 && out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("migration %04d is numbered twice (%s and %s)", out[i].Version, out[i-1].Name, out[i].Name)
		}
		if out[i].Version < 1 {
			return nil, fmt.Errorf("migration %s: numbers start at 0001", out[i].Name)
		}
	}
	return out, nil
}

func stripComments(sql string) string {
	var b strings.Builder
	for _, line := range strings.Split(sql, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// RequiredSchemaVersion is the schema version this binary needs: its newest migration.
func RequiredSchemaVersion() (int64, error) {
	ms, err := Migrations()
	if err != nil {
		return 0, err
	}
	if len(ms) == 0 {
		return 0, nil
	}
	return ms[len(ms)-1].Version, nil
}

// Migrate applies every pending migration, one statement at a time.
// Several instances may run it at once: steps are idempotent and recording
// a step twice is a no-op.
func (d *DB) Migrate(ctx context.Context) error {
	ms, err := Migrations()
	if err != nil {
		return err
	}
	if _, err := d.Pool.Exec(ctx, stmtCreateMigrationsTable); err != nil {
		return fmt.Errorf("create migrations table: %w", err)
	}
	applied, err := d.appliedVersions(ctx)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		if !m.RunsOn(d.Dialect) {
			d.log.Info("migration skipped: not for this dialect", "version", m.Version, "name", m.Name, "dialect", d.Dialect.String())
		} else if _, err := d.Pool.Exec(ctx, m.Statement); err != nil {
			return fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
		}
		err := d.RunTx(ctx, TxOptions{IsoLevel: d.isolation()}, func(tx *Tx) error {
			_, err := tx.Exec(ctx, stmtRecordMigration, m.Version, m.Name)
			return err
		})
		if err != nil {
			return fmt.Errorf("record migration %04d: %w", m.Version, err)
		}
		d.log.Info("migration applied", "version", m.Version, "name", m.Name)
	}
	return nil
}

func (d *DB) appliedVersions(ctx context.Context) (map[int64]bool, error) {
	rows, err := d.Pool.Query(ctx, stmtAppliedMigrations)
	if err != nil {
		return nil, fmt.Errorf("read applied migrations: %w", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("read applied migrations: %w", err)
	}
	applied := make(map[int64]bool, len(versions))
	for _, v := range versions {
		applied[v] = true
	}
	return applied, nil
}

// SchemaVersion returns the newest migration recorded in the database, 0 for
// a database Tidemark never migrated.
func (d *DB) SchemaVersion(ctx context.Context) (int64, error) {
	var v int64
	err := d.Pool.QueryRow(ctx, stmtSchemaVersion).Scan(&v)
	if SQLState(err) == sqlstateUndefinedTable {
		return 0, nil
	}
	return v, err
}

// CheckSchema fails with ErrSchemaOutdated when the database lacks
// migrations this binary needs. A newer schema is accepted, so that during a
// rolling upgrade old instances keep serving after new ones migrated.
func (d *DB) CheckSchema(ctx context.Context) error {
	want, err := RequiredSchemaVersion()
	if err != nil {
		return err
	}
	have, err := d.SchemaVersion(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if have < want {
		return fmt.Errorf("%w (database at version %d, server needs %d): run `tidemark migrate`", ErrSchemaOutdated, have, want)
	}
	return nil
}
