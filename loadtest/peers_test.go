package loadtest

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/tidemark/tidemark/db/dbtest"
	"github.com/tidemark/tidemark/testenv"
)

// TestPeerFilesExist checks what scripts/bench-peers.sh needs from the
// repository: PostGraphile's pinned install, its smart tags and queries
// (which must parse as GraphQL), and pgbench's scripts.
func TestPeerFilesExist(t *testing.T) {
	for _, f := range []string{"package.json", "package-lock.json", "postgraphile.tags.json5", "nested.graphql", "paged.graphql"} {
		if _, err := os.Stat(filepath.Join("peers/postgraphile", f)); err != nil {
			t.Error(err)
		}
	}
	lock, err := os.ReadFile("peers/postgraphile/package-lock.json")
	if err == nil && !strings.Contains(string(lock), `"node_modules/postgraphile": {`+"\n"+`      "version": "4.`) {
		t.Error("package-lock.json does not pin PostGraphile 4")
	}
	for name, q := range map[string]string{"nested.graphql": PostGraphileNestedQuery, "paged.graphql": PostGraphilePagedQuery, "PeerNestedQuery": PeerNestedQuery} {
		if _, err := parser.ParseQuery(&ast.Source{Name: name, Input: q}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, f := range []string{"setup.sql", "insert100.sql"} {
		if _, err := os.Stat(filepath.Join("peers/pgbench", f)); err != nil {
			t.Error(err)
		}
	}
}

// pgbenchBinary finds pgbench on PATH or in Debian's PostgreSQL folders.
func pgbenchBinary() string {
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p
	}
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
	if len(m) > 0 {
		return m[len(m)-1]
	}
	return ""
}

// TestPgbenchScriptInserts100RowBatches runs the push peer's pgbench script
// for three transactions on a migrated database: its scratch table takes
// exactly 300 rows and Tidemark's own work_orders none.
func TestPgbenchScriptInserts100RowBatches(t *testing.T) {
	bin := pgbenchBinary()
	if bin == "" {
		t.Skip("pgbench not installed")
	}
	url := dbtest.URL(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	setup, err := os.ReadFile("peers/pgbench/setup.sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, string(setup)); err != nil {
		t.Fatalf("setup.sql: %v", err)
	}
	out, err := exec.CommandContext(ctx, bin, "-n", "-c", "1", "-t", "3", "-f", "peers/pgbench/insert100.sql", url).CombinedOutput()
	if err != nil {
		t.Fatalf("pgbench: %v\n%s", err, out)
	}
	var scratch, tidemark int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM peers_pgbench.work_orders), (SELECT count(*) FROM public.work_orders)`).Scan(&scratch, &tidemark); err != nil {
		t.Fatal(err)
	}
	if scratch != 300 || tidemark != 0 {
		t.Errorf("scratch table has %d rows, Tidemark's %d; want 300 and 0", scratch, tidemark)
	}
}

// TestPeerDriversReadTidemark runs the side-by-side drivers against
// Tidemark itself: the nested read checks its first page, and the paged
// read returns every work order of the tenant. An unseeded tenant fails
// the nested read's check instead of looking fast.
func TestPeerDriversReadTidemark(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	url := env.Serve(t) + "/graphql"
	ctx := context.Background()
	client := func(tenant string) *Client {
		return &Client{URL: url, Token: testenv.Token(t, tenant, "bench"), HTTP: http.DefaultClient}
	}
	if err := SeedRead(ctx, client("peers"), ReadConfig{WorkOrders: 150}); err != nil {
		t.Fatal(err)
	}

	rep, err := PeerNestedRead(ctx, client("peers"), PeerConfig{Target: PeerTidemark, Tenant: "peers", Clients: 2, Duration: 100 * time.Millisecond})
	if err != nil || rep.Requests == 0 {
		t.Fatalf("nested read: %v after %d requests", err, rep.Requests)
	}
	paged, err := PeerPagedRead(ctx, client("peers"), PeerConfig{Target: PeerTidemark, Tenant: "peers", Limit: 40})
	if err != nil || paged.Docs != 150 {
		t.Fatalf("paged read: %d documents, %v; want 150", paged.Docs, err)
	}

	if _, err := PeerNestedRead(ctx, client("empty"), PeerConfig{Target: PeerTidemark, Tenant: "empty", Clients: 1, Duration: time.Millisecond}); err == nil {
		t.Error("nested read of an empty tenant passed its first-page check")
	}
}
