package db_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/cockroachdb-parser/pkg/sql/parser"

	"github.com/tidemark/tidemark/db"
)

// parseAsCockroachDB reports whether sql is exactly one statement CockroachDB's
// parser accepts. It only checks syntax: names, types and functions are not
// resolved, so a statement can pass here and still fail on a real cluster.
func parseAsCockroachDB(sql string) error {
	stmts, err := parser.Parse(sql)
	if err != nil {
		return err
	}
	if len(stmts) != 1 {
		return fmt.Errorf("parsed as %d statements, want exactly 1", len(stmts))
	}
	return nil
}

// statementName is a short subtest name: the position in the list and the
// first words of the statement, punctuation dropped so -run patterns stay simple.
func statementName(i int, sql string) string {
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			return r
		}
		return ' '
	}, sql)
	words := strings.Fields(clean)
	if len(words) > 6 {
		words = words[:6]
	}
	return fmt.Sprintf("%02d_%s", i, strings.Join(words, "_"))
}

func TestStatementsParseAsCockroachDB(t *testing.T) {
	stmts, err := db.Statements()
	if err != nil {
		t.Fatalf("db.Statements: %v", err)
	}
	if len(stmts) == 0 {
		t.Fatal("db.Statements returned no statements")
	}

	// Every migration must be among the statements checked, so the test
	// fails if Statements() stops returning them.
	migrations, err := db.Migrations()
	if err != nil {
		t.Fatalf("db.Migrations: %v", err)
	}
	if len(migrations) == 0 {
		t.Fatal("db.Migrations returned no migrations")
	}
	listed := make(map[string]bool, len(stmts))
	for _, s := range stmts {
		listed[s] = true
	}
	found := 0
	for _, m := range migrations {
		if listed[m.Statement] {
			found++
		} else {
			t.Errorf("migration %04d_%s is missing from db.Statements()", m.Version, m.Name)
		}
	}
	if found < len(migrations) {
		t.Errorf("db.Statements() holds %d of %d migrations", found, len(migrations))
	}

	shapes := db.ListStatementShapes()
	if len(shapes) == 0 {
		t.Fatal("db.ListStatementShapes returned no statements")
	}
	// The multi-region placement, generated for an example region list
	// with each survival goal (names as CockroachDB's docs and our
	// deploy/compose localities spell them), and the tenants' statements.
	var placement []string
	for _, goal := range []string{db.SurviveZone, db.SurviveRegion} {
		p, err := db.ParsePlacement("us-east1,europe-west1,australia-southeast1", goal)
		if err != nil {
			t.Fatalf("ParsePlacement: %v", err)
		}
		placement = append(placement, db.PlacementStatements("tidemark", p)...)
	}
	if want := 2 * (3 + 1 + 1 + 2*len(db.TenantScopedTables())); len(placement) != want {
		t.Errorf("%d placement statements for 3 regions and two goals, want %d", len(placement), want)
	}
	tenants := db.TenantStatements()
	all := append(append(append(append([]string{}, stmts...), shapes...), placement...), tenants...)
	t.Logf("parsing %d statements: %d fixed, per collection and transaction control, %d list shapes, %d of multi-region placement, %d of tenants",
		len(all), len(stmts), len(shapes), len(placement), len(tenants))
	for i, sql := range all {
		t.Run(statementName(i, sql), func(t *testing.T) {
			if err := parseAsCockroachDB(sql); err != nil {
				t.Errorf("CockroachDB parser rejects statement:\n%s\nerror: %v", sql, err)
			}
		})
	}
}

// TestParseAsCockroachDBRejects proves the checker can fail: statements
// CockroachDB's parser does not accept, or that are not a single statement.
func TestParseAsCockroachDBRejects(t *testing.T) {
	for _, sql := range []string{
		"LISTEN tidemark", // PostgreSQL only
		"ALTER DATABASE tidemark SURVIVE CONTINENT FAILURE",                 // no such goal
		"ALTER TABLE notes SET LOCALITY REGIONAL BY ROW AS",                 // AS names no column
		"CREATE INDEX i ON change_counters (changed_at) USING HASH BUCKETS", // not the hash-sharding syntax
		"SELECT 1; SELECT 2",
		"",
	} {
		if err := parseAsCockroachDB(sql); err == nil {
			t.Errorf("parseAsCockroachDB(%q) = nil, want an error", sql)
		} else {
			t.Logf("%q rejected: %v", sql, err)
		}
	}
}
