package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// rotateLogAt is the log size above which Start moves the log aside.
const rotateLogAt = 16 << 20

// clearLeftovers deals with what an earlier run of this folder left: a
// server still running, a stale postmaster.pid, or server processes that
// have not exited yet.
func (c *Cluster) clearLeftovers(ctx context.Context) error {
	pidFile := filepath.Join(c.pgData, "postmaster.pid")
	if pid := readPid(pidFile); pid > 0 && processRunning(pid) {
		same, known := processCwdIs(pid, c.pgData)
		switch {
		case !known:
			return fmt.Errorf("%s names process %d, which is running; cannot tell whether it is a PostgreSQL server of this folder: "+
				"stop it (`pg_ctl stop -D %s`), or remove postmaster.pid if that process is something else", pidFile, pid, c.pgData)
		case same:
			c.log.Warn("a PostgreSQL server from an earlier run of this folder is still running; stopping it", "pid", pid)
			if err := c.pgctlStop(ctx, "fast"); err != nil {
				return fmt.Errorf("stopping the PostgreSQL server (pid %d) left running by an earlier run: %w", pid, err)
			}
		default:
			// The pid was reused by an unrelated process after a crash or
			// reboot; PostgreSQL itself would refuse to start.
			c.log.Warn("removing stale postmaster.pid", "pid", pid)
			if err := os.Remove(pidFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("removing stale %s: %w", pidFile, err)
			}
		}
	}
	// After a crash of the postmaster its children exit on their own, soon.
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids, ok := processesIn(c.pgData)
		if !ok {
			// Without /proc, leave a stale postmaster.pid to PostgreSQL,
			// which checks it (and its shared memory) itself.
			return nil
		}
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("processes %v of an earlier PostgreSQL server are still running in %s; stop them", pids, c.pgData)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// No process of an earlier server is left, so a remaining postmaster.pid
	// is stale. PostgreSQL would remove it itself unless its pid is a zombie
	// (a crashed postmaster not yet reaped, as happens in containers whose
	// init does not reap promptly), which it takes for a live postmaster.
	if pid := readPid(pidFile); pid > 0 && !processRunning(pid) {
		c.log.Warn("removing stale postmaster.pid of a crashed server", "pid", pid)
		if err := os.Remove(pidFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing stale %s: %w", pidFile, err)
		}
	}
	return nil
}

// readPid returns the pid on the first line of a postmaster.pid, or 0.
func readPid(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}

// rotateLog moves a large log aside, keeping one earlier log.
func (c *Cluster) rotateLog() {
	if fi, err := os.Stat(c.logFile); err == nil && fi.Size() > rotateLogAt {
		_ = os.Rename(c.logFile, c.logFile+".1")
	}
}

// startServer runs pg_ctl start, retrying with another port when a picked
// free port was taken in the meantime.
func (c *Cluster) startServer(ctx context.Context, cfg Config) error {
	for attempt := 1; ; attempt++ {
		port := cfg.Port
		if port == 0 {
			var err error
			if port, err = freePort(); err != nil {
				return fmt.Errorf("picking a free port: %w", err)
			}
		}
		if err := c.writeConf(port, cfg.Settings); err != nil {
			return fmt.Errorf("writing server settings: %w", err)
		}
		var offset int64
		if fi, err := os.Stat(c.logFile); err == nil {
			offset = fi.Size()
		}
		out, err := c.command(ctx, "", "pg_ctl", "start", "-D", c.pgData, "-l", c.logFile, "-w", "-t", timeoutSecs(ctx)).CombinedOutput()
		if err == nil {
			c.port = port
			return nil
		}
		tail := c.logTailSince(offset)
		c.stopQuietly() // pg_ctl may have given up on a server that still starts
		if cfg.Port == 0 && attempt < 3 && ctx.Err() == nil &&
			(strings.Contains(tail, "could not bind") || strings.Contains(tail, "could not create any TCP/IP sockets")) {
			c.log.Warn("port taken, retrying with another", "port", port)
			continue
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		}
		return fmt.Errorf("starting PostgreSQL on 127.0.0.1:%d failed: %w\n%s%s", port, err, bytes.TrimSpace(out), tail)
	}
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// timeoutSecs renders the context's remaining time for pg_ctl -t.
func timeoutSecs(ctx context.Context) string {
	secs := int(DefaultStartTimeout / time.Second)
	if d, ok := ctx.Deadline(); ok {
		secs = max(1, int(time.Until(d).Seconds()))
	}
	return strconv.Itoa(secs)
}

// waitReady waits until the server answers a query over TCP.
func (c *Cluster) waitReady(ctx context.Context) error {
	for {
		err := c.ping(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Cluster) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

// logTailSince returns the end of what the server logged after offset,
// formatted for an error message.
func (c *Cluster) logTailSince(offset int64) string {
	const maxTail = 8 << 10
	f, err := os.Open(c.logFile)
	if err != nil {
		return fmt.Sprintf("\n(no server log: %v)", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	if fi.Size() < offset { // rotated or truncated
		offset = 0
	}
	if fi.Size()-offset > maxTail {
		offset = fi.Size() - maxTail
	}
	b, _ := io.ReadAll(io.NewSectionReader(f, offset, fi.Size()-offset))
	if len(bytes.TrimSpace(b)) == 0 {
		return fmt.Sprintf("\n(the server log %s has nothing new)", c.logFile)
	}
	return fmt.Sprintf("\n--- end of server log %s ---\n%s", c.logFile, lastLines(b, 30))
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// pgctlStop stops the server with pg_ctl stop -m mode and waits for it. A
// server that is not running counts as stopped.
func (c *Cluster) pgctlStop(ctx context.Context, mode string) error {
	pidFile := filepath.Join(c.pgData, "postmaster.pid")
	if !processRunning(readPid(pidFile)) {
		return nil
	}
	pid := readPid(pidFile)
	out, err := c.command(ctx, "", "pg_ctl", "stop", "-D", c.pgData, "-m", mode, "-w", "-t", timeoutSecs(ctx)).CombinedOutput()
	if err != nil && processRunning(readPid(pidFile)) {
		return fmt.Errorf("pg_ctl stop -m %s: %w: %s", mode, err, bytes.TrimSpace(out))
	}
	// pg_ctl returns once postmaster.pid is gone, which the postmaster
	// removes just before it exits: wait for the exit too, so that the port
	// and shared memory are free when Stop returns.
	for deadline := time.Now().Add(5 * time.Second); processRunning(pid) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// stopQuietly makes sure no server of this cluster is left running after a
// failed start.
func (c *Cluster) stopQuietly() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.pgctlStop(ctx, "immediate"); err != nil {
		c.log.Warn("stopping PostgreSQL after a failed start", "err", err)
	}
}

// Stop shuts the server down (fast shutdown: clients are disconnected,
// open transactions rolled back) and waits until it has exited. Calling
// Stop again does nothing.
func (c *Cluster) Stop(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	// First the supervisor, which would otherwise restart what we stop.
	c.stopSupervisor()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultStartTimeout)
		defer cancel()
	}
	if err := c.pgctlStop(ctx, "fast"); err != nil {
		return fmt.Errorf("pgcluster: stopping PostgreSQL: %w", err)
	}
	c.stopped = true
	c.releaseLock()
	c.log.Info("PostgreSQL stopped")
	return nil
}
