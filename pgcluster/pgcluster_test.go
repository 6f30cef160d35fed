//go:build linux

package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// testDir returns a fresh folder that the PostgreSQL user can traverse
// (t.TempDir makes 0700 folders, which it could not when we are root).
func testDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgcluster-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// testConfig is a cheap cluster configuration for tests.
func testConfig(t *testing.T) Config {
	return Config{
		DataDir: filepath.Join(testDir(t), "data"),
		Logger:  slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
		Settings: map[string]string{
			"fsync":            "off",
			"full_page_writes": "off",
			"shared_buffers":   "16MB",
			"max_connections":  "20",
		},
	}
}

// startCluster starts a cluster and stops it when the test ends.
func startCluster(t *testing.T, cfg Config) *Cluster {
	t.Helper()
	c, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return c
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connecting to %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func exec1(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func queryString(t *testing.T, conn *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(t.Context(), sql, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// procUID returns the effective uid of a running process.
func procUID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading status of process %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "Uid:" {
			uid, _ := strconv.Atoi(f[2])
			return uid
		}
	}
	t.Fatalf("no Uid line in /proc/%d/status", pid)
	return -1
}

// expectedUID is the uid PostgreSQL should run as in this test process.
func expectedUID(t *testing.T) int {
	t.Helper()
	if os.Geteuid() != 0 {
		return os.Geteuid()
	}
	u, err := user.Lookup(DefaultRunAs)
	if err != nil {
		t.Fatalf("running as root but user %q is missing: %v", DefaultRunAs, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	return uid
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); processRunning(pid); {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still running", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestFindBinDir(t *testing.T) {
	dir, err := FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	if !hasServerBinaries(dir) {
		t.Fatalf("FindBinDir returned %s, which lacks the server programs", dir)
	}
	if real, _ := filepath.EvalSymlinks(dir); real != dir {
		t.Errorf("FindBinDir returned %s, want the resolved folder %s", dir, real)
	}
}

func TestFindBinDirNotFound(t *testing.T) {
	empty := t.TempDir()
	_, err := findBinDir(empty, []string{filepath.Join(empty, "lib/postgresql/*/bin")})
	if !errors.Is(err, ErrNoPostgres) {
		t.Fatalf("error = %v, want ErrNoPostgres", err)
	}
	for _, want := range []string{"install the PostgreSQL server package", "apt-get install postgresql", "TIDEMARK_DATABASE_URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// A bin folder lacking a server program does not count.
	bin := filepath.Join(empty, "bin")
	fakeBinaries(t, bin, "postgres", "pg_ctl")
	if _, err := findBinDir(bin, nil); !errors.Is(err, ErrNoPostgres) {
		t.Fatalf("with initdb missing: error = %v, want ErrNoPostgres", err)
	}
}

func fakeBinaries(t *testing.T, dir string, names ...string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFindBinDirSearchOrder(t *testing.T) {
	root := t.TempDir()
	glob := filepath.Join(root, "lib/postgresql/*/bin")
	dir := func(v string) string { return filepath.Join(root, "lib/postgresql", v, "bin") }
	fakeBinaries(t, dir("9.6"), serverBinaries...)
	fakeBinaries(t, dir("15"), serverBinaries...)
	fakeBinaries(t, dir("16"), "postgres", "initdb") // incomplete: no pg_ctl

	// Highest complete version wins (15 > 9.6 numerically, 16 is incomplete).
	got, err := findBinDir("", []string{glob})
	if err != nil || got != dir("15") {
		t.Fatalf("findBinDir = %q, %v; want %q", got, err, dir("15"))
	}

	// postgres on PATH wins over the well-known folders; symlinks resolved.
	pathDir := filepath.Join(root, "path")
	if err := os.MkdirAll(pathDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir("9.6"), "postgres"), filepath.Join(pathDir, "postgres")); err != nil {
		t.Fatal(err)
	}
	got, err = findBinDir(pathDir, []string{glob})
	if err != nil || got != dir("9.6") {
		t.Fatalf("findBinDir with PATH = %q, %v; want %q", got, err, dir("9.6"))
	}
}

func TestSettingsConf(t *testing.T) {
	got, err := settingsConf(map[string]string{"work_mem": "4MB", "search_path": `it's \ here`})
	if err != nil {
		t.Fatal(err)
	}
	want := "search_path = 'it''s \\\\ here'\nwork_mem = '4MB'\n"
	if got != want {
		t.Errorf("settingsConf = %q, want %q", got, want)
	}
	for _, bad := range []string{"port", "Listen_Addresses", "unix_socket_directories", "bad name", "x=1"} {
		if _, err := settingsConf(map[string]string{bad: "1"}); err == nil {
			t.Errorf("setting %q accepted", bad)
		}
	}
}

// TestStartStopRestart is the main life cycle: initdb, start, use, stop,
// start again on the same folder and find the data.
func TestStartStopRestart(t *testing.T) {
	cfg := testConfig(t)
	c := startCluster(t, cfg)

	wantURL := fmt.Sprintf("postgres://tidemark@127.0.0.1:%d/app?sslmode=disable", c.Port())
	if got := c.URL("app"); got != wantURL {
		t.Errorf("URL = %q, want %q", got, wantURL)
	}
	if c.DataDir() != cfg.DataDir || !filepath.IsAbs(c.DataDir()) {
		t.Errorf("DataDir = %q, want %q", c.DataDir(), cfg.DataDir)
	}

	// The server runs as the expected user, and owns the data folder.
	pid, err := c.Pid()
	if err != nil {
		t.Fatal(err)
	}
	if uid, want := procUID(t, pid), expectedUID(t); uid != want {
		t.Errorf("postmaster %d runs as uid %d, want %d", pid, uid, want)
	}
	fi, err := os.Stat(c.DataDir())
	if err != nil {
		t.Fatal(err)
	}
	if uid, _, _ := fileOwner(fi); uid != expectedUID(t) {
		t.Errorf("data folder owned by uid %d, want %d", uid, expectedUID(t))
	}

	if err := c.CreateDatabase(t.Context(), "app"); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateDatabase(t.Context(), "app"); err != nil {
		t.Fatalf("CreateDatabase of an existing database: %v", err)
	}
	conn := connect(t, c.URL("app"))
	for setting, want := range map[string]string{
		"fsync":                   "off",
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": "",
		"server_encoding":         "UTF8",
		"lc_collate":              "C",
		"is_superuser":            "on",
		"shared_buffers":          "16MB",
	} {
		if got := queryString(t, conn, "SELECT current_setting($1)", setting); got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
	exec1(t, conn, "CREATE TABLE notes (id int PRIMARY KEY, body text)")
	exec1(t, conn, "INSERT INTO notes VALUES (1, 'survives restarts')")
	conn.Close(t.Context())

	if err := c.Stop(t.Context()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	waitGone(t, pid)
	if err := c.Stop(t.Context()); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := c.ping(t.Context()); err == nil {
		t.Fatal("server still answers after Stop")
	}

	c2 := startCluster(t, cfg)
	conn = connect(t, c2.URL("app"))
	if got := queryString(t, conn, "SELECT body FROM notes WHERE id = 1"); got != "survives restarts" {
		t.Errorf("after restart: body = %q", got)
	}
	conn.Close(t.Context())

	if err := c2.DropDatabase(t.Context(), "app"); err != nil {
		t.Fatal(err)
	}
	conn = connect(t, c2.URL("postgres"))
	if n := queryString(t, conn, "SELECT count(*)::text FROM pg_database WHERE datname = 'app'"); n != "0" {
		t.Errorf("database app still exists after DropDatabase")
	}
	if fi, err := os.Stat(c2.LogFile()); err != nil || fi.Size() == 0 {
		t.Errorf("server log %s missing or empty: %v", c2.LogFile(), err)
	}
}

// TestInUse: a second Start on a folder that is running fails clearly.
func TestInUse(t *testing.T) {
	cfg := testConfig(t)
	c := startCluster(t, cfg)
	_, err := Start(t.Context(), cfg)
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("second Start: error = %v, want ErrInUse", err)
	}
	if !strings.Contains(err.Error(), strconv.Itoa(os.Getpid())) {
		t.Errorf("error %q does not name the process holding the folder (%d)", err, os.Getpid())
	}
	if err := c.ping(t.Context()); err != nil {
		t.Errorf("first cluster broken by the second Start: %v", err)
	}
}

// TestLeftoversFromEarlierRuns: a server left running by a run that ended,
// a postmaster killed by a crash, and a stale postmaster.pid naming a live
// unrelated process must none of them prevent a start.
func TestLeftoversFromEarlierRuns(t *testing.T) {
	cfg := testConfig(t)
	c1, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn := connect(t, c1.URL("postgres"))
	exec1(t, conn, "CREATE TABLE t (v text)")
	exec1(t, conn, "INSERT INTO t VALUES ('one')")
	conn.Close(t.Context())
	pid1, _ := c1.Pid()

	// 1. The owning process ended without stopping the server (its lock is
	// released, as the kernel does at exit).
	c1.releaseLock()
	c1.stopped = true
	c2 := startCluster(t, cfg)
	pid2, _ := c2.Pid()
	if pid2 == pid1 {
		t.Fatalf("the old server (pid %d) was reused; want it restarted", pid1)
	}
	if processRunning(pid1) {
		t.Errorf("old server %d still running", pid1)
	}

	// 2. The postmaster crashes (kill -9) and the owning process dies.
	conn = connect(t, c2.URL("postgres"))
	exec1(t, conn, "INSERT INTO t VALUES ('two')")
	conn.Close(t.Context())
	if err := syscall.Kill(pid2, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid2)
	c2.releaseLock()
	c2.stopped = true
	c3 := startCluster(t, cfg)
	conn = connect(t, c3.URL("postgres"))
	if got := queryString(t, conn, "SELECT string_agg(v, ',' ORDER BY v) FROM t"); got != "one,two" {
		t.Errorf("after crash recovery: rows = %q, want one,two", got)
	}
	conn.Close(t.Context())
	if err := c3.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}

	// 3. After a reboot the pid in a stale postmaster.pid belongs to some
	// other live process (here: this test).
	pidFile := filepath.Join(cfg.DataDir, pgDataName, "postmaster.pid")
	stale := fmt.Sprintf("%d\n%s\n0\n5432\n\n127.0.0.1\n0 0\nready\n", os.Getpid(), filepath.Join(cfg.DataDir, pgDataName))
	if err := os.WriteFile(pidFile, []byte(stale), 0o600); err != nil {
		t.Fatal(err)
	}
	c4 := startCluster(t, cfg)
	if pid, _ := c4.Pid(); pid == os.Getpid() {
		t.Fatal("postmaster.pid still names the test process")
	}
	conn = connect(t, c4.URL("postgres"))
	if got := queryString(t, conn, "SELECT count(*)::text FROM t"); got != "2" {
		t.Errorf("rows = %s, want 2", got)
	}
}

// TestStartFailureShowsLog: when the server cannot start, the error holds
// the end of the server log.
func TestStartFailureShowsLog(t *testing.T) {
	cfg := testConfig(t)
	cfg.Settings["shared_buffers"] = "plenty"
	_, err := Start(t.Context(), cfg)
	if err == nil {
		t.Fatal("Start with a bad setting succeeded")
	}
	t.Logf("error: %v", err)
	for _, want := range []string{"server log", `invalid value for parameter "shared_buffers"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q", want)
		}
	}
	// The failed start left the folder usable.
	cfg.Settings["shared_buffers"] = "16MB"
	c := startCluster(t, cfg)
	if err := c.ping(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestRunAsMissingUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("RunAs only matters when root")
	}
	cfg := testConfig(t)
	cfg.RunAs = "no-such-user-pgcluster"
	_, err := Start(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "no-such-user-pgcluster") || !strings.Contains(err.Error(), "Config.RunAs") {
		t.Fatalf("error = %v, want one naming the user and Config.RunAs", err)
	}
}

const childEnv = "PGCLUSTER_TEST_NONROOT_CHILD"

// TestNonRoot proves that Start works for a normal user, running
// PostgreSQL as that user. When the test process is root it re-executes
// the test binary as the "postgres" user to do so.
func TestNonRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		testNonRoot(t)
		return
	}
	if os.Getenv(childEnv) != "" {
		t.Fatal("the child test runs as root")
	}
	u, err := user.Lookup(DefaultRunAs)
	if err != nil {
		t.Fatalf("user %q is needed to test the non-root path: %v", DefaultRunAs, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)

	// The test binary lives in a 0700 build folder: copy it where the user
	// can run it, and give the user its own temporary folder.
	dir := testDir(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "pgcluster.test")
	copyFile(t, self, bin)
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(tmp, uid, gid); err != nil {
		t.Fatal(err)
	}

	cmd := exec.CommandContext(t.Context(), bin, "-test.run=^TestNonRoot$", "-test.v", "-test.count=1", "-test.timeout=2m")
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), childEnv+"=1", "TMPDIR="+tmp, "HOME="+tmp)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	out, err := cmd.CombinedOutput()
	t.Logf("child test as user %q:\n%s", u.Username, out)
	if err != nil {
		t.Fatalf("child test failed: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: TestNonRoot") {
		t.Fatal("child test did not run")
	}
}

func testNonRoot(t *testing.T) {
	cfg := testConfig(t)
	cfg.RunAs = "ignored-when-not-root"
	c := startCluster(t, cfg)
	pid, err := c.Pid()
	if err != nil {
		t.Fatal(err)
	}
	if uid := procUID(t, pid); uid != os.Geteuid() {
		t.Errorf("postmaster runs as uid %d, want the current user %d", uid, os.Geteuid())
	}
	if err := c.CreateDatabase(t.Context(), "Mixed Case"); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, c.URL("Mixed Case"))
	if got := queryString(t, conn, "SELECT current_database() || ' as ' || current_user"); got != "Mixed Case as tidemark" {
		t.Errorf("got %q", got)
	}
	conn.Close(t.Context())
	if err := c.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
