// Package faults tests Tidemark against faults of real processes: the real
// tidemark binary, built once per run, and a real PostgreSQL started by the
// tests (pgcluster, with the machine's PostgreSQL server binaries), which
// the tests stop, start and kill. scripts/faults.sh runs the same tests with
// the full counts.
package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tidemark/tidemark/pgcluster"
)

// EnvBinary names a tidemark binary to test instead of building
// ./cmd/tidemark.
const EnvBinary = "TIDEMARK_FAULT_BINARY"

var (
	buildOnce sync.Once
	buildDir  string
	buildPath string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// binary returns the tidemark binary under test, building it once per run.
func binary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(EnvBinary); p != "" {
		return p
	}
	buildOnce.Do(func() {
		root, err := filepath.Abs(filepath.Join("..", ".."))
		if err != nil {
			buildErr = err
			return
		}
		if buildDir, buildErr = os.MkdirTemp("", "tidemark-faults-bin-"); buildErr != nil {
			return
		}
		buildPath = filepath.Join(buildDir, "tidemark")
		cmd := exec.Command("go", "build", "-o", buildPath, "./cmd/tidemark")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/tidemark: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// envInt reads a count from the environment (the scripts' full counts).
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration", name, v)
	}
	return d
}

// testDir is a fresh folder PostgreSQL's user can reach (t.TempDir is 0700,
// which it cannot when the tests run as root).
func testDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tidemark-faults-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// waitFor polls cond until it holds, failing the test after limit. What is
// polled is the system under test's state, never the clock.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// database is a PostgreSQL server of the test's own, which it can stop and
// start again on the same port and data.
type database struct {
	t   *testing.T
	cfg pgcluster.Config
	c   *pgcluster.Cluster
}

func startDatabase(t *testing.T) *database {
	t.Helper()
	d := &database{t: t, cfg: pgcluster.Config{
		DataDir: filepath.Join(testDir(t), "pg"),
		// No OS crash is simulated, so fsync buys nothing here: killed
		// processes leave their writes in the page cache.
		Settings: map[string]string{"fsync": "off", "full_page_writes": "off", "max_connections": "100", "shared_buffers": "32MB"},
	}}
	d.start()
	if err := d.c.CreateDatabase(t.Context(), "tidemark"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if d.c != nil {
			if err := d.c.Stop(context.Background()); err != nil {
				t.Errorf("stop PostgreSQL: %v", err)
			}
		}
	})
	return d
}

func (d *database) url() string { return d.c.URL("tidemark") }

// stop shuts the server down (fast: sessions are cut, as in an outage).
func (d *database) stop() {
	d.t.Helper()
	if err := d.c.Stop(d.t.Context()); err != nil {
		d.t.Fatal(err)
	}
}

// start starts it (again, on the port of the first start).
func (d *database) start() {
	d.t.Helper()
	c, err := pgcluster.Start(d.t.Context(), d.cfg)
	if err != nil {
		d.t.Fatal(err)
	}
	d.c = c
	d.cfg.Port = c.Port()
}

// cleanEnv is the test process's environment without TIDEMARK_*
// variables, so that a developer's settings do not leak into the servers.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TIDEMARK_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"TIDEMARK_LOG_FORMAT=json",
		// One address sends all the load; the limits have tests of their own.
		"TIDEMARK_RATE_PER_ADDRESS=-1", "TIDEMARK_RATE_PER_USER=-1", "TIDEMARK_PUSHES_IN_FLIGHT=-1",
	)
}

// server is one `tidemark serve` process, started again on the same
// address after it was killed.
type server struct {
	t    *testing.T
	bin  string
	env  []string
	addr string // 127.0.0.1:0 until the first run has a port

	cmd    *exec.Cmd
	exited chan struct{}
	logs   []*serverLog
}

func startServer(t *testing.T, env []string) *server {
	t.Helper()
	s := &server{t: t, bin: binary(t), env: env, addr: "127.0.0.1:0"}
	t.Cleanup(func() {
		s.interrupt()
		if t.Failed() {
			for i, l := range s.logs {
				t.Logf("server log, run %d:\n%s", i+1, l.String())
			}
		}
	})
	s.start()
	return s
}

// run runs a tidemark command to its end (migrate).
func run(t *testing.T, env []string, args ...string) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tidemark %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (s *server) url() string { return "http://" + s.addr }

// start starts the process and returns once /readyz answers 200.
func (s *server) start() {
	s.t.Helper()
	log := &serverLog{serving: make(chan string, 1)}
	s.logs = append(s.logs, log)
	s.cmd = exec.Command(s.bin, "serve")
	s.cmd.Env = append(append([]string{}, s.env...), "TIDEMARK_ADDR="+s.addr)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	exited := make(chan struct{})
	s.exited = exited
	cmd := s.cmd
	go func() { _ = cmd.Wait(); close(exited) }()
	select {
	case s.addr = <-log.serving:
	case <-exited:
		s.t.Fatalf("tidemark exited before serving:\n%s", log.String())
	case <-time.After(90 * time.Second):
		s.t.Fatalf("tidemark did not serve within 90s:\n%s", log.String())
	}
	waitFor(s.t, 60*time.Second, "GET /readyz to answer 200", func() bool { return s.ready() == http.StatusOK })
}

// ready returns /readyz's status, or 0 when it cannot be reached.
func (s *server) ready() int {
	c := http.Client{Timeout: 10 * time.Second}
	res, err := c.Get(s.url() + "/readyz")
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

func (s *server) alive() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// kill sends SIGKILL and waits for the process to be gone.
func (s *server) kill() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		s.t.Fatal(err)
	}
	<-s.exited
}

// interrupt stops the process as an orchestrator does (SIGKILL after 30 s).
func (s *server) interrupt() {
	if s.cmd == nil || !s.alive() {
		return
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// serverLog keeps a run's output and reports the address it serves on.
type serverLog struct {
	mu      sync.Mutex
	all     bytes.Buffer
	partial []byte
	serving chan string
	found   bool
}

func (l *serverLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all.Write(p)
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := l.partial[:i]
		l.partial = l.partial[i+1:]
		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if !l.found && json.Unmarshal(line, &rec) == nil && rec.Msg == "tidemark is serving" && rec.Addr != "" {
			l.found = true
			l.serving <- rec.Addr
		}
	}
}

func (l *serverLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.String()
}

// count returns how many log lines have level.
func (l *serverLog) count(level string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		var rec struct{ Level string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Level == level {
			n++
		}
	}
	return n
}
