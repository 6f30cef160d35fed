//go:build linux

package pgcluster

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitFor polls cond (the cluster's own state, not the clock) until it
// holds, failing the test after a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSupervisedServerIsRestartedAfterKill: a supervised server killed with
// SIGKILL is restarted on the same port with its data; while a restart
// fails, Err says the server is down and why, and the supervisor keeps
// trying; Stop ends the supervision.
func TestSupervisedServerIsRestartedAfterKill(t *testing.T) {
	cfg := testConfig(t)
	cfg.Supervise = true
	cfg.WatchInterval = 20 * time.Millisecond
	cfg.RestartBackoff = 50 * time.Millisecond
	cfg.MaxRestartBackoff = 200 * time.Millisecond
	c := startCluster(t, cfg)
	if err := c.Err(); err != nil {
		t.Fatalf("Err of a running server = %v", err)
	}
	conn := connect(t, c.URL("postgres"))
	exec1(t, conn, "CREATE TABLE t (v text)")
	exec1(t, conn, "INSERT INTO t VALUES ('before the kill')")
	conn.Close(t.Context())
	port := c.Port()
	pid1, err := c.Pid()
	if err != nil {
		t.Fatal(err)
	}

	// A setting the server refuses makes the restarts fail until it is
	// removed (the running server read its settings at start).
	autoConf := filepath.Join(c.pgData, "postgresql.auto.conf")
	good, err := os.ReadFile(autoConf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(autoConf, append(append([]byte{}, good...), "shared_buffers = 'plenty'\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid1, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Err to report failed restarts", func() bool {
		err := c.Err()
		return err != nil && strings.Contains(err.Error(), "restarts failed")
	})
	err = c.Err()
	t.Logf("while down: %v", err)
	if !errors.Is(err, ErrDown) {
		t.Errorf("Err while down = %v, want it to wrap ErrDown", err)
	}
	if !strings.Contains(err.Error(), `"shared_buffers"`) {
		t.Errorf("Err while down = %v, want the server's reason (shared_buffers)", err)
	}
	if c.Restarts() != 0 {
		t.Errorf("Restarts = %d while every restart fails", c.Restarts())
	}

	if err := os.WriteFile(autoConf, good, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the restart", func() bool { return c.Restarts() == 1 })
	if err := c.Err(); err != nil {
		t.Errorf("Err after the restart = %v", err)
	}
	if c.Port() != port {
		t.Errorf("port after the restart = %d, want %d", c.Port(), port)
	}
	pid2, err := c.Pid()
	if err != nil || pid2 == pid1 || !processRunning(pid2) {
		t.Fatalf("after the restart: pid %d (%v), before %d", pid2, err, pid1)
	}
	conn = connect(t, c.URL("postgres"))
	if got := queryString(t, conn, "SELECT string_agg(v, ',') FROM t"); got != "before the kill" {
		t.Errorf("rows after the restart = %q", got)
	}
	conn.Close(t.Context())

	// A second crash, restarted at once.
	if err := syscall.Kill(pid2, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second restart", func() bool { return c.Restarts() == 2 })

	// Stop is final: the supervisor does not bring the server back.
	pid3, _ := c.Pid()
	if err := c.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if processRunning(pid3) {
		t.Errorf("server %d still runs after Stop", pid3)
	}
	if pid, err := c.Pid(); err == nil {
		t.Errorf("a server (pid %d) runs after Stop", pid)
	}
	if c.Err() == nil || errors.Is(c.Err(), ErrDown) {
		t.Errorf("Err after Stop = %v, want it to say stopped", c.Err())
	}
}

// TestUnsupervisedServerStaysDown is the control: without Supervise a
// killed server is not restarted, so the test above can fail.
func TestUnsupervisedServerStaysDown(t *testing.T) {
	cfg := testConfig(t)
	c := startCluster(t, cfg)
	pid, _ := c.Pid()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
	if c.super != nil || c.Restarts() != 0 {
		t.Errorf("an unsupervised cluster has a supervisor (%v) or restarts (%d)", c.super, c.Restarts())
	}
	if err := c.ping(t.Context()); err == nil {
		t.Error("the killed server still answers")
	}
}
