package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/db/dbtest"
)

// startMain runs Tidemark with cfg and closes it when the test ends.
func startMain(tb testing.TB, cfg Config) *Main {
	tb.Helper()
	log, _ := testLogger(tb)
	m := &Main{Config: cfg, Log: log}
	if err := m.Run(context.Background()); err != nil {
		tb.Fatalf("Run: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return m
}

func (m *Main) url() string { return "http://" + m.Addr() }

func get(tb testing.TB, url string) (int, http.Header, []byte) {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// wantViewer checks that token is the identity tenant/user on m.
func wantViewer(tb testing.TB, m *Main, token, tenant, user string) {
	tb.Helper()
	res := query(tb, m.url(), token, `{ viewer { userId tenantId } }`, nil)
	want := `{"viewer":{"userId":"` + user + `","tenantId":"` + tenant + `"}}`
	if res.Status != http.StatusOK || string(res.Data) != want {
		tb.Errorf("viewer: status %d body %s, want data %s", res.Status, res.Body, want)
	}
}

// wantRefused checks that nothing accepts connections at addr any more.
func wantRefused(tb testing.TB, addr string) {
	tb.Helper()
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		conn.Close()
		tb.Errorf("%s still accepts connections", addr)
	}
}

func TestMainServesWithAJWTSecret(t *testing.T) {
	cfg := defaultConfig(t)
	cfg.DatabaseURL = dbtest.URL(t)
	cfg.JWTSecret = testSecret
	m := startMain(t, cfg)
	if m.DevToken != "" {
		t.Errorf("DevToken is set outside dev mode")
	}

	token, err := auth.Issue([]byte(testSecret), "acme", "alice", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	wantViewer(t, m, token, "acme", "alice")

	res := query(t, m.url(), "", `{ viewer { userId tenantId } }`, nil)
	if res.Status != http.StatusUnauthorized || len(res.Errors) != 1 || res.Errors[0].Extensions["code"] != "UNAUTHENTICATED" {
		t.Errorf("without a token: status %d body %s, want 401 UNAUTHENTICATED", res.Status, res.Body)
	}
	other, _ := auth.Issue([]byte(strings.ToUpper(testSecret)), "acme", "alice", time.Hour, time.Now())
	if res := query(t, m.url(), other, `{ viewer { userId } }`, nil); res.Status != http.StatusUnauthorized {
		t.Errorf("token signed with another secret: status %d, want 401", res.Status)
	}

	// Outside dev mode, introspection defaults to off.
	if res := query(t, m.url(), token, `{ __schema { types { name } } }`, nil); len(res.Errors) == 0 {
		t.Errorf("introspection answered outside dev mode: %s", res.Body)
	}

	for _, path := range []string{"/healthz", "/readyz"} {
		if status, _, body := get(t, m.url()+path); status != http.StatusOK {
			t.Errorf("GET %s = %d %s, want 200", path, status, body)
		}
	}
	if _, _, body := get(t, m.url()+"/"); bytes.Contains(body, []byte("Bearer ")) {
		t.Errorf("the Playground prefills a token outside dev mode")
	}

	addr := m.Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wantRefused(t, addr)
	if err := m.Wait(ctx); err != nil {
		t.Errorf("Wait after Close: %v", err)
	}
}

func TestMainRefusesAnOutdatedDatabaseUntilMigrated(t *testing.T) {
	empty := dbtest.EmptyURL(t)

	outdated := dbtest.URL(t)
	conn, err := pgx.Connect(context.Background(), outdated)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(context.Background(), `DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)`)
	conn.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	for name, url := range map[string]string{"never migrated": empty, "one migration behind": outdated} {
		t.Run(name, func(t *testing.T) {
			cfg := defaultConfig(t)
			cfg.DatabaseURL = url
			cfg.JWTSecret = testSecret
			log, _ := testLogger(t)
			m := &Main{Config: cfg, Log: log}
			err := m.Run(context.Background())
			if err == nil {
				m.Close(context.Background())
				t.Fatal("Run served an outdated database")
			}
			if !strings.Contains(err.Error(), "tidemark migrate") {
				t.Errorf("Run error %q does not say to run `tidemark migrate`", err)
			}

			var stderr bytes.Buffer
			if err := run(context.Background(), []string{"migrate", "--database-url", url}, io.Discard, &stderr); err != nil {
				t.Fatalf("migrate: %v\n%s", err, stderr.String())
			}
			if !strings.Contains(stderr.String(), "database schema is current") {
				t.Errorf("migrate does not report the schema current:\n%s", stderr.String())
			}
			m = startMain(t, cfg)
			if status, _, body := get(t, m.url()+"/readyz"); status != http.StatusOK {
				t.Errorf("/readyz after migrate = %d %s", status, body)
			}
		})
	}
}

func TestDevModeWithADatabaseURL(t *testing.T) {
	cfg := defaultConfig(t)
	cfg.DatabaseURL = dbtest.EmptyURL(t) // dev mode migrates it
	m := startMain(t, cfg)

	if m.DevToken == "" {
		t.Fatal("no DevToken in dev mode")
	}
	wantViewer(t, m, m.DevToken, "dev", "dev-user")

	status, header, body := get(t, m.url()+"/")
	if status != http.StatusOK || !strings.HasPrefix(header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s", status, header.Get("Content-Type"))
	}
	if !bytes.Contains(body, []byte("Bearer "+m.DevToken)) {
		t.Errorf("the Playground does not prefill the dev token")
	}

	// Dev mode turns introspection on (the Playground needs it).
	res := query(t, m.url(), m.DevToken, `{ __schema { queryType { name } } }`, nil)
	if string(res.Data) != `{"__schema":{"queryType":{"name":"Query"}}}` {
		t.Errorf("introspection in dev mode: %s", res.Body)
	}
}

func TestDevModeWithTheEmbeddedDatabase(t *testing.T) {
	// Not t.TempDir: as root, PostgreSQL runs as the postgres user, who
	// must reach the data folder.
	parent, err := os.MkdirTemp("", "tidemark-main-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig(t)
	cfg.DataDir = filepath.Join(parent, "data")

	first := startMain(t, cfg)
	if first.cluster == nil {
		t.Fatal("no embedded PostgreSQL started")
	}
	token := first.DevToken
	wantViewer(t, first, token, "dev", "dev-user")
	push := query(t, first.url(), token, `mutation($rows: [SitePushRow!]!) { pushSites(rows: $rows) { id } }`, map[string]any{
		"rows": []any{map[string]any{"newDocumentState": map[string]any{
			"id": "site-1", "name": "Harbour depot", "address": "1 Quay St", "latitude": 51.5, "deleted": false,
		}}},
	})
	if len(push.Errors) != 0 || string(push.Data) != `{"pushSites":[]}` {
		t.Fatalf("pushSites: %s", push.Body)
	}
	if fi, err := os.Stat(filepath.Join(cfg.DataDir, devSecretFile)); err != nil {
		t.Errorf("no dev secret in the data folder: %v", err)
	} else if fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("dev secret mode %v is readable by others", fi.Mode().Perm())
	}

	addr, port := first.Addr(), first.cluster.Port()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := first.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wantRefused(t, addr)
	wantRefused(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))) // PostgreSQL stopped

	second := startMain(t, cfg)
	wantViewer(t, second, token, "dev", "dev-user") // the first run's token still works
	pull := query(t, second.url(), token, `{ pullSites(limit: 10) { documents { id name address latitude longitude deleted } } }`, nil)
	want := `{"pullSites":{"documents":[{"id":"site-1","name":"Harbour depot","address":"1 Quay St","latitude":51.5,"longitude":null,"deleted":false}]}}`
	if string(pull.Data) != want {
		t.Errorf("pull after restart: %s\nwant data %s", pull.Body, want)
	}
}

// holdSitesLock takes an exclusive lock on the sites table in its own
// transaction, so that any pull of Sites waits until release is called.
func holdSitesLock(tb testing.TB, url string) (release func()) {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE sites IN ACCESS EXCLUSIVE MODE"); err != nil {
		tb.Fatal(err)
	}
	var once bool
	release = func() {
		if once {
			return
		}
		once = true
		_ = tx.Rollback(ctx)
		_ = conn.Close(ctx)
	}
	tb.Cleanup(release)
	return release
}

// waitForLockWaiter returns once a session of the database behind url waits
// on a lock.
func waitForLockWaiter(tb testing.TB, url string) {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		if err != nil {
			tb.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatal("no request came to wait on the lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitRefused returns once nothing accepts connections at addr.
func waitRefused(tb testing.TB, addr string) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		conn.Close()
		if time.Now().After(deadline) {
			tb.Fatalf("%s still accepts connections", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCloseLetsARequestInFlightFinish(t *testing.T) {
	cfg := defaultConfig(t)
	cfg.DatabaseURL = dbtest.URL(t)
	cfg.JWTSecret = testSecret
	log, _ := testLogger(t)
	m := &Main{Config: cfg, Log: log}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	token, _ := auth.Issue([]byte(testSecret), "acme", "alice", time.Hour, time.Now())
	push := query(t, m.url(), token, `mutation { pushSites(rows: [{newDocumentState: {id: "s1", name: "n", address: "a", deleted: false}}]) { id } }`, nil)
	if len(push.Errors) != 0 {
		t.Fatalf("push: %s", push.Body)
	}

	release := holdSitesLock(t, cfg.DatabaseURL)
	pulled := make(chan gqlResult, 1)
	go func() {
		// query's t.Fatal must not run off the test goroutine; a failed
		// request shows as a missing or wrong result instead.
		pulled <- queryNoFatal(m.url(), token, `{ pullSites(limit: 10) { documents { id } } }`)
	}()
	waitForLockWaiter(t, cfg.DatabaseURL)

	closed := make(chan error, 1)
	go func() { closed <- m.Close(context.Background()) }()
	waitRefused(t, m.Addr()) // shutdown has begun: no new connections

	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a request was in flight", err)
	case res := <-pulled:
		t.Fatalf("the request ended before its query could run: %s", res.Body)
	case <-time.After(200 * time.Millisecond):
	}

	release()
	select {
	case res := <-pulled:
		if res.Status != http.StatusOK || string(res.Data) != `{"pullSites":{"documents":[{"id":"s1"}]}}` {
			t.Errorf("the request in flight got status %d body %s", res.Status, res.Body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request in flight did not finish")
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return after the request finished")
	}
}

// Shutdown waits for requests in flight only up to the shutdown timeout;
// after that Close must return even if a request is stuck (here on a lock),
// or an orchestrator's stop hangs until it kills the process.
func TestCloseIsBoundedByTheShutdownTimeout(t *testing.T) {
	cfg := defaultConfig(t)
	cfg.DatabaseURL = dbtest.URL(t)
	cfg.JWTSecret = testSecret
	cfg.ShutdownTimeout = 300 * time.Millisecond
	log, _ := testLogger(t)
	m := &Main{Config: cfg, Log: log}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	token, _ := auth.Issue([]byte(testSecret), "acme", "alice", time.Hour, time.Now())

	release := holdSitesLock(t, cfg.DatabaseURL)
	pulled := make(chan gqlResult, 1)
	go func() { pulled <- queryNoFatal(m.url(), token, `{ pullSites(limit: 10) { documents { id } } }`) }()
	waitForLockWaiter(t, cfg.DatabaseURL)

	closed := make(chan error, 1)
	start := time.Now()
	go func() { closed <- m.Close(context.Background()) }()
	select {
	case err := <-closed:
		// Canceling a stuck request at the timeout is the shutdown doing
		// its job: the process must exit with status 0.
		if err != nil {
			t.Errorf("Close: %v, want nil", err)
		}
		t.Logf("Close returned after %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Error("Close still blocks 5s after a 300ms shutdown timeout")
		release() // let Close finish
		<-closed
	}
	release()
	<-pulled
}

// queryNoFatal is query for goroutines other than the test's: it reports a
// failure in the result instead of stopping the test.
func queryNoFatal(base, token, q string) gqlResult {
	body, _ := json.Marshal(map[string]any{"query": q})
	req, err := http.NewRequest(http.MethodPost, base+"/graphql", bytes.NewReader(body))
	if err != nil {
		return gqlResult{Body: []byte(err.Error())}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return gqlResult{Body: []byte(err.Error())}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	res := gqlResult{Status: resp.StatusCode, Body: b}
	if err != nil {
		res.Body = []byte(err.Error())
		return res
	}
	if err := json.Unmarshal(b, &res); err != nil {
		res.Body = append(res.Body, []byte(" (not JSON)")...)
	}
	return res
}
