//go:build linux

package pgcluster

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// needRoot skips a test that only root can run: only root runs PostgreSQL
// as another user, which is what leaves a folder out of PostgreSQL's reach.
// CI runs as root, so there such a test must run, never skip.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("CI runs as root, and this test needs root: running it as another user would skip it silently")
	}
	t.Skip("needs root: only root runs PostgreSQL as another user, whom a folder can keep out")
}

// logTo makes cfg log into the test output and into the returned buffer.
func logTo(t *testing.T, cfg *Config) *bytes.Buffer {
	var buf bytes.Buffer
	cfg.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), &buf), &slog.HandlerOptions{Level: slog.LevelDebug}))
	return &buf
}

func mkdir(t *testing.T, dir string, perm fs.FileMode) {
	t.Helper()
	if err := os.Mkdir(dir, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, perm); err != nil { // past the umask
		t.Fatal(err)
	}
}

func wantOwnerAndMode(t *testing.T, path string, uid int, perm fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, _, _ := fileOwner(fi); got != uid || fi.Mode().Perm() != perm {
		t.Errorf("%s: owner uid %d, mode %v; want uid %d, mode %v", path, got, fi.Mode().Perm(), uid, perm)
	}
}

func TestFallbackClusterDirIsTheSameForEverySpellingOfTheDataFolder(t *testing.T) {
	dir := t.TempDir()
	if err := os.Symlink(dir, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "clone", "tidemark-data")
	before := fallbackClusterDir("/var/lib/tidemark", data)
	if !regexp.MustCompile(`^/var/lib/tidemark/[0-9a-f]{16}$`).MatchString(before) {
		t.Fatalf("fallbackClusterDir = %q, want /var/lib/tidemark/<16 hex digits>", before)
	}
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, spelling := range []string{data, filepath.Join(dir, "link", "clone", "tidemark-data")} {
		if got := fallbackClusterDir("/var/lib/tidemark", spelling); got != before {
			t.Errorf("fallbackClusterDir(%s) = %q, want %q as before the folder existed", spelling, got, before)
		}
	}
	if other := fallbackClusterDir("/var/lib/tidemark", filepath.Join(dir, "clone2", "tidemark-data")); other == before {
		t.Errorf("another data folder gets the same cluster folder %s", other)
	}
}

// TestDataDirBelowAPrivateFolder is a newcomer's first run as root in a
// clone below /root (mode 0700): PostgreSQL's user cannot reach the data
// folder, so the cluster lives below FallbackDir, and every later start
// finds it there.
func TestDataDirBelowAPrivateFolder(t *testing.T) {
	needRoot(t)
	base := testDir(t)
	home := filepath.Join(base, "root")
	mkdir(t, home, 0o700)
	mkdir(t, filepath.Join(home, "tidemark"), 0o755)
	cfg := testConfig(t)
	cfg.DataDir = filepath.Join(home, "tidemark", "tidemark-data")
	cfg.FallbackDir = filepath.Join(base, "var", "lib", "tidemark")
	logs := logTo(t, &cfg)
	pgUID := expectedUID(t)

	c := startCluster(t, cfg)
	clusterDir := c.ClusterDir()
	if c.DataDir() != cfg.DataDir {
		t.Errorf("DataDir = %s, want %s", c.DataDir(), cfg.DataDir)
	}
	if want := fallbackClusterDir(cfg.FallbackDir, cfg.DataDir); clusterDir != want {
		t.Fatalf("ClusterDir = %s, want %s", clusterDir, want)
	}
	if !strings.Contains(logs.String(), "cluster_dir="+clusterDir) {
		t.Errorf("the start does not log the cluster folder %s", clusterDir)
	}
	pid, err := c.Pid()
	if err != nil {
		t.Fatal(err)
	}
	if uid := procUID(t, pid); uid != pgUID {
		t.Errorf("postmaster runs as uid %d, want %d", uid, pgUID)
	}
	// The data folder stays root's and holds no cluster; it names the
	// cluster folder, which is PostgreSQL's user's.
	wantOwnerAndMode(t, cfg.DataDir, 0, 0o700)
	if _, err := os.Stat(filepath.Join(cfg.DataDir, pgDataName)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the data folder holds a %s (stat: %v)", pgDataName, err)
	}
	if b, err := os.ReadFile(filepath.Join(cfg.DataDir, locationName)); err != nil || string(b) != clusterDir+"\n" {
		t.Errorf("%s = %q, %v; want the cluster folder", locationName, b, err)
	}
	if b, err := os.ReadFile(filepath.Join(clusterDir, dataFolderName)); err != nil || string(b) != cfg.DataDir+"\n" {
		t.Errorf("%s = %q, %v; want the data folder", dataFolderName, b, err)
	}
	wantOwnerAndMode(t, cfg.FallbackDir, 0, 0o755)
	wantOwnerAndMode(t, clusterDir, pgUID, 0o700)
	if c.LogFile() != filepath.Join(clusterDir, logName) {
		t.Errorf("LogFile = %s, want it in the cluster folder", c.LogFile())
	}

	conn := connect(t, c.URL("postgres"))
	exec1(t, conn, "CREATE TABLE notes (body text)")
	exec1(t, conn, "INSERT INTO notes VALUES ('found again')")
	conn.Close(t.Context())
	// The rest of the data folder (Tidemark's dev secret) is kept where it is.
	secret := filepath.Join(cfg.DataDir, "dev-jwt-secret")
	if err := os.WriteFile(secret, []byte("kept"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}

	wantSameCluster := func(name string) {
		t.Helper()
		c := startCluster(t, cfg)
		if c.ClusterDir() != clusterDir {
			t.Fatalf("%s: ClusterDir = %s, want %s as before", name, c.ClusterDir(), clusterDir)
		}
		conn := connect(t, c.URL("postgres"))
		if got := queryString(t, conn, "SELECT body FROM notes"); got != "found again" {
			t.Errorf("%s: body = %q", name, got)
		}
		conn.Close(t.Context())
		if err := c.Stop(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	wantSameCluster("restart")
	if b, err := os.ReadFile(secret); err != nil || string(b) != "kept" {
		t.Errorf("the data folder's other files: %q, %v", b, err)
	}
	// Once the data folder is reachable, its cluster stays where it is.
	if err := os.Chmod(home, 0o755); err != nil {
		t.Fatal(err)
	}
	wantSameCluster("restart with the data folder reachable")
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}

	// Removing the data folder removes its cluster, as when it holds it.
	if err := os.RemoveAll(cfg.DataDir); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	c = startCluster(t, cfg)
	if c.ClusterDir() != clusterDir {
		t.Fatalf("after removing the data folder: ClusterDir = %s, want %s", c.ClusterDir(), clusterDir)
	}
	if !strings.Contains(logs.String(), "removing the cluster of an earlier data folder") {
		t.Error("no word in the log about removing the earlier data folder's cluster")
	}
	conn = connect(t, c.URL("postgres"))
	if n := queryString(t, conn, "SELECT count(*)::text FROM pg_tables WHERE tablename = 'notes'"); n != "0" {
		t.Error("a new data folder finds the removed one's data")
	}
}

// TestPrivateDataDirWithItsOwnClusterStaysPut: a data folder that holds a
// cluster keeps it; when PostgreSQL's user can no longer reach it, Start
// says why instead of starting an empty cluster elsewhere.
func TestPrivateDataDirWithItsOwnClusterStaysPut(t *testing.T) {
	needRoot(t)
	base := testDir(t)
	home := filepath.Join(base, "home")
	mkdir(t, home, 0o755)
	cfg := testConfig(t)
	cfg.DataDir = filepath.Join(home, "data")
	cfg.FallbackDir = filepath.Join(base, "fallback")
	c := startCluster(t, cfg)
	if c.ClusterDir() != cfg.DataDir {
		t.Fatalf("ClusterDir = %s, want the reachable data folder %s", c.ClusterDir(), cfg.DataDir)
	}
	if err := c.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := Start(t.Context(), cfg)
	if err == nil {
		t.Fatal("Start of a cluster its user cannot reach succeeded")
	}
	t.Logf("error: %v", err)
	for _, want := range []string{home + " (mode -rwx------", "not traversable", `user "postgres"`, "holds a cluster already"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q", want)
		}
	}
	if _, err := os.Stat(cfg.FallbackDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a fallback folder was made anyway (stat: %v)", err)
	}
}

// TestMovedPrivateDataDirGetsItsOwnCluster: the cluster folder goes with the
// data folder's path, so a moved (or copied) data folder starts a cluster of
// its own, says so, and leaves the other one alone.
func TestMovedPrivateDataDirGetsItsOwnCluster(t *testing.T) {
	needRoot(t)
	base := testDir(t)
	home := filepath.Join(base, "root")
	mkdir(t, home, 0o700)
	cfg := testConfig(t)
	cfg.DataDir = filepath.Join(home, "data")
	cfg.FallbackDir = filepath.Join(base, "fallback")
	logs := logTo(t, &cfg)
	c := startCluster(t, cfg)
	first := c.ClusterDir()
	if err := c.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}

	moved := cfg
	moved.DataDir = filepath.Join(home, "moved")
	if err := os.Rename(cfg.DataDir, moved.DataDir); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	c = startCluster(t, moved)
	if c.ClusterDir() == first {
		t.Fatalf("the moved data folder uses the cluster folder of its old path %s", first)
	}
	if !strings.Contains(logs.String(), "named="+first) {
		t.Error("the start does not name the cluster folder of the data folder's old path")
	}
	if b, err := os.ReadFile(filepath.Join(moved.DataDir, locationName)); err != nil || string(b) != c.ClusterDir()+"\n" {
		t.Errorf("%s = %q, %v; want the new cluster folder", locationName, b, err)
	}
	if _, err := os.Stat(filepath.Join(first, pgDataName, "PG_VERSION")); err != nil {
		t.Errorf("the old path's cluster is gone: %v", err)
	}
}
