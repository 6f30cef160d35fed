package faults

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// devServer starts tidemark in dev mode: no database URL (the embedded
// PostgreSQL in dataDir) and no secret (the dev secret, kept in dataDir).
func devServer(t *testing.T, dataDir string) *server {
	t.Helper()
	// Runs after the server's own cleanup: a PostgreSQL that a killed
	// tidemark left running is shut down (immediate mode) by its pid.
	t.Cleanup(func() {
		if pid := postmaster(t, dataDir); running(pid) {
			_ = syscall.Kill(pid, syscall.SIGQUIT)
		}
	})
	return startServer(t, append(cleanEnv(), "TIDEMARK_DATA_DIR="+dataDir))
}

func devSecret(t *testing.T, dataDir string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "dev-jwt-secret"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// postmaster returns the pid in the embedded cluster's postmaster.pid (0 if
// there is none), wherever pgcluster keeps the cluster.
func postmaster(t *testing.T, dataDir string) int {
	t.Helper()
	clusterDir := dataDir
	if b, err := os.ReadFile(filepath.Join(dataDir, "pgcluster.location")); err == nil {
		clusterDir = strings.TrimSpace(string(b))
	}
	b, err := os.ReadFile(filepath.Join(clusterDir, "pgdata", "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}

// running tells whether pid is a live process (not a zombie).
func running(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func newDoc(id, title string) []map[string]any {
	return []map[string]any{{"newDocumentState": map[string]any{
		"id": id, "siteId": "site-1", "title": title, "status": "OPEN", "priority": 1, "deleted": false}}}
}

// TestDevModeRestartsAKilledEmbeddedPostgres kills the embedded
// PostgreSQL's postmaster under a dev-mode server: requests recover by
// themselves, without restarting tidemark, and what was written before is
// there.
func TestDevModeRestartsAKilledEmbeddedPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test with real processes")
	}
	dataDir := filepath.Join(testDir(t), "data")
	srv := devServer(t, dataDir)
	c := newClient(t, srv, devSecret(t, dataDir), "dev-faults")
	l := newLedger()
	rows := newDoc("before", "written before the kill")
	if err := c.push(t.Context(), rows); err != nil {
		t.Fatal(err)
	}
	l.ack(rows)

	for kill := 1; kill <= 2; kill++ {
		pid := postmaster(t, dataDir)
		if !running(pid) {
			t.Fatalf("no running postmaster in %s (pid %d)", dataDir, pid)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		// Readiness follows the database: it may or may not catch the short
		// outage; it must be back to 200 once the database is.
		saw503 := false
		waitFor(t, 60*time.Second, "a restarted postmaster", func() bool {
			if srv.ready() == http.StatusServiceUnavailable {
				saw503 = true
			}
			p := postmaster(t, dataDir)
			return p != pid && running(p)
		})
		pushErrs := map[string]int{}
		waitFor(t, 60*time.Second, "a push to succeed after the kill", func() bool {
			id := "after-" + strconv.Itoa(kill)
			rows := newDoc(id, "written after kill "+strconv.Itoa(kill))
			err := c.push(t.Context(), rows)
			if err != nil {
				pushErrs[codeOf(err)]++
				return false
			}
			l.ack(rows)
			return true
		})
		waitFor(t, 60*time.Second, "/readyz to answer 200", func() bool { return srv.ready() == http.StatusOK })
		t.Logf("kill %d: postmaster %d killed; requests recovered %s later (/readyz 503 seen: %v; failed pushes meanwhile: %v)",
			kill, pid, time.Since(killed).Round(time.Millisecond), saw503, pushErrs)
		for code, n := range pushErrs {
			if code != "UNAVAILABLE" {
				t.Errorf("%d pushes during the embedded database's restart failed with %s, want UNAVAILABLE", n, code)
			}
		}
	}
	if !srv.alive() {
		t.Fatal("tidemark exited")
	}
	checkFullPull(t, c, l)
}

// TestDevModeRecoversTheEmbeddedPostgresOfAKilledTidemark SIGKILLs a
// dev-mode tidemark, which leaves its embedded PostgreSQL running as an
// orphan, and starts tidemark again on the same data folder; then kills
// both, leaving a stale postmaster.pid, and starts again. Each start serves
// the data written before.
func TestDevModeRecoversTheEmbeddedPostgresOfAKilledTidemark(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test with real processes")
	}
	dataDir := filepath.Join(testDir(t), "data")
	srv := devServer(t, dataDir)
	l := newLedger()
	push := func(id string) {
		t.Helper()
		c := newClient(t, srv, devSecret(t, dataDir), "dev-faults")
		rows := newDoc(id, "written as "+id)
		if err := c.push(t.Context(), rows); err != nil {
			t.Fatal(err)
		}
		l.ack(rows)
	}
	push("first-run")

	// 1. tidemark dies; its PostgreSQL lives on as an orphan.
	orphan := postmaster(t, dataDir)
	srv.kill()
	if !running(orphan) {
		t.Fatalf("the postmaster %d died with tidemark; this test needs it left running", orphan)
	}
	srv.start()
	if now := postmaster(t, dataDir); now == orphan || running(orphan) {
		t.Errorf("after the restart the postmaster is %d; the orphan %d still runs: %v", now, orphan, running(orphan))
	}
	checkFullPull(t, newClient(t, srv, devSecret(t, dataDir), "dev-faults"), l)
	push("second-run")

	// 2. Both die: postmaster.pid is left behind, naming a dead process.
	pm := postmaster(t, dataDir)
	srv.kill()
	if err := syscall.Kill(pm, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the killed postmaster to be gone", func() bool { return !running(pm) })
	if postmaster(t, dataDir) != pm {
		t.Fatal("postmaster.pid is gone; this test needs it left behind")
	}
	srv.start()
	checkFullPull(t, newClient(t, srv, devSecret(t, dataDir), "dev-faults"), l)
	push("third-run")

	// A graceful stop stops the embedded PostgreSQL too.
	pm = postmaster(t, dataDir)
	srv.interrupt()
	waitFor(t, 30*time.Second, "the embedded PostgreSQL to stop with tidemark", func() bool { return !running(pm) })
}
