// Package dbtest gives tests a real PostgreSQL: one server per test process
// (an embedded cluster in a temporary folder, or TIDEMARK_TEST_DATABASE_URL
// when set), one migrated template database, and a fresh database per test
// made from it.
//
// A package that uses it runs its tests through Main:
//
//	func TestMain(m *testing.M) { dbtest.Main(m) }
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/pgcluster"
)

// EnvURL names a PostgreSQL server to use instead of an embedded one. Its
// user must be allowed to create databases.
const EnvURL = "TIDEMARK_TEST_DATABASE_URL"

// EnvDefaultIsolation, if set (e.g. "serializable"), becomes the default
// transaction isolation of the template and of every test database, so the
// suite can prove that Tidemark states the isolation it relies on instead
// of inheriting the server's (CI's serializable step).
const EnvDefaultIsolation = "TIDEMARK_TEST_DEFAULT_ISOLATION"

var (
	setupOnce sync.Once
	setupErr  error
	cluster   *pgcluster.Cluster
	adminURL  string
	template  string
	tmpDir    string
)

// Main runs the package's tests and then stops the embedded server.
func Main(m *testing.M) {
	code := m.Run()
	if cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := cluster.Stop(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "dbtest: stop PostgreSQL:", err)
		}
		cancel()
	}
	if tmpDir != "" {
		os.RemoveAll(tmpDir)
	}
	os.Exit(code)
}

func setup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	adminURL = os.Getenv(EnvURL)
	if adminURL == "" {
		// Not t.TempDir: when tests run as root, PostgreSQL runs as an
		// unprivileged user, who must be able to reach the folder.
		dir, err := os.MkdirTemp("", "tidemark-test-pg-")
		if err != nil {
			return err
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			return err
		}
		tmpDir = dir
		cluster, err = pgcluster.Start(ctx, pgcluster.Config{
			DataDir: dir,
			Settings: map[string]string{
				"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
				"max_connections": "300", "shared_buffers": "128MB",
			},
		})
		if err != nil {
			return err
		}
		adminURL = cluster.URL("postgres")
	}
	template = "tidemark_template_" + randomSuffix()
	if err := exec(ctx, adminURL, "CREATE DATABASE "+template); err != nil {
		return fmt.Errorf("create template: %w", err)
	}
	if err := setDefaultIsolation(ctx, template); err != nil {
		return err
	}
	d, err := db.Open(ctx, withDatabase(adminURL, template), db.PoolConfig{MaxConns: 2}, nil)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Migrate(ctx)
}

// URL returns the URL of a fresh, migrated database of its own for this
// test; it is dropped when the test ends.
func URL(tb testing.TB) string {
	tb.Helper()
	setupOnce.Do(func() { setupErr = setup() })
	if setupErr != nil {
		tb.Fatalf("test database server: %v", setupErr)
	}
	name := "tidemark_test_" + randomSuffix()
	ctx := context.Background()
	if err := exec(ctx, adminURL, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, template)); err != nil {
		tb.Fatalf("create test database: %v", err)
	}
	if err := setDefaultIsolation(ctx, name); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := exec(context.Background(), adminURL, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name)); err != nil {
			tb.Logf("drop test database %s: %v", name, err)
		}
	})
	return withDatabase(adminURL, name)
}

// EmptyURL returns the URL of a fresh database that was never migrated.
func EmptyURL(tb testing.TB) string {
	tb.Helper()
	setupOnce.Do(func() { setupErr = setup() })
	if setupErr != nil {
		tb.Fatalf("test database server: %v", setupErr)
	}
	name := "tidemark_empty_" + randomSuffix()
	if err := exec(context.Background(), adminURL, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("create empty database: %v", err)
	}
	if err := setDefaultIsolation(context.Background(), name); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = exec(context.Background(), adminURL, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name))
	})
	return withDatabase(adminURL, name)
}

// Open returns a pool on a fresh, migrated database; it closes when the test ends.
func Open(tb testing.TB, cfg db.PoolConfig) *db.DB {
	tb.Helper()
	d, err := db.Open(context.Background(), URL(tb), cfg, nil)
	if err != nil {
		tb.Fatalf("open test database: %v", err)
	}
	tb.Cleanup(d.Close)
	return d
}

// setDefaultIsolation applies EnvDefaultIsolation to a database. A
// database's settings do not pass to the databases made from it as a
// template, so each one gets them.
func setDefaultIsolation(ctx context.Context, database string) error {
	level := os.Getenv(EnvDefaultIsolation)
	if level == "" {
		return nil
	}
	return SetDefaultIsolation(ctx, withDatabase(adminURL, database), level)
}

// SetDefaultIsolation makes level (e.g. "serializable") the default
// transaction isolation of the database at url, for connections opened
// after it.
func SetDefaultIsolation(ctx context.Context, dbURL, level string) error {
	u, err := url.Parse(dbURL)
	if err != nil {
		return err
	}
	name := strings.TrimPrefix(u.Path, "/")
	stmt := fmt.Sprintf("ALTER DATABASE %s SET default_transaction_isolation = %s",
		pgx.Identifier{name}.Sanitize(), quoteLiteral(level))
	if err := exec(ctx, dbURL, stmt); err != nil {
		return fmt.Errorf("set default isolation %q: %w", level, err)
	}
	return nil
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func exec(ctx context.Context, connURL, sql string) error {
	conn, err := pgx.Connect(ctx, connURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

func withDatabase(connURL, name string) string {
	u, err := url.Parse(connURL)
	if err != nil {
		panic(fmt.Sprintf("dbtest: bad URL: %v", err))
	}
	u.Path = "/" + name
	return u.String()
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
