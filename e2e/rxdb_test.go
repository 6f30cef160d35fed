// Package e2e runs Tidemark's end-to-end tests: the real server binary on a
// fresh database, driven by the real RxDB client in Node.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/db/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

func TestRxDB(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: builds the server and runs Node")
	}
	// Missing tools fail rather than skip, so that CI cannot pass by
	// quietly not running the client tests.
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed; it is needed for the RxDB end-to-end test (go test -short skips it)", tool)
		}
	}

	secret := randomHex(t, 20) // 40 characters
	bin, serverEnv, _ := buildAndMigrate(t, secret)
	// Two instances on one database: the tests may stop the first one and
	// start it again (on the same address); the second one stays up.
	first := startInstance(t, "first", bin, serverEnv)
	second := startInstance(t, "second", bin, serverEnv)
	control := httptest.NewServer(controlHandler(t, first, []byte(secret)))
	t.Cleanup(control.Close)
	installNodeModules(t)

	token := func(tenant, user string) string {
		tok, err := auth.Issue([]byte(secret), tenant, user, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	env := append(os.Environ(),
		"TIDEMARK_URL="+first.url()+"/graphql",
		"TIDEMARK_SECOND_URL="+second.url()+"/graphql",
		"TIDEMARK_CONTROL_URL="+control.URL,
		"TIDEMARK_TOKEN_A="+token("tenant-1", "user-a"),
		"TIDEMARK_TOKEN_B="+token("tenant-1", "user-b"),
		"TIDEMARK_TOKEN_OTHER="+token("tenant-2", "user-c"),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	files, err := filepath.Glob(filepath.Join("test", "*.test.mjs"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test/*.test.mjs files (%v)", err)
	}
	// One file at a time: the suites share the servers and their tenants,
	// and one of them restarts the first server.
	args := append([]string{"--test", "--test-reporter=spec", "--test-concurrency=1"}, files...)
	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Env = env
	out := &lineLogger{t: t, prefix: "node: "}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	err = cmd.Run()
	out.Flush()
	t.Logf("node --test took %s", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("node --test: %v", err)
	}
}

// buildAndMigrate builds the tidemark binary, makes a fresh database and
// migrates it. It returns the binary, the environment to serve with and the
// database's URL.
func buildAndMigrate(t *testing.T, secret string) (bin string, env []string, dbURL string) {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(t.TempDir(), "tidemark")
	build := exec.Command("go", "build", "-o", bin, "./cmd/tidemark")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/tidemark: %v\n%s", err, out)
	}
	dbURL = dbtest.URL(t)
	env = append(os.Environ(),
		"TIDEMARK_DATABASE_URL="+dbURL,
		"TIDEMARK_JWT_SECRET="+secret,
		"TIDEMARK_LOG_FORMAT=json",
		"TIDEMARK_DATA_DIR="+t.TempDir(),
	)
	migrate := exec.Command(bin, "migrate")
	migrate.Env = env
	if out, err := migrate.CombinedOutput(); err != nil {
		t.Fatalf("tidemark migrate: %v\n%s", err, out)
	}
	return bin, env, dbURL
}

// instance is one `tidemark serve` process, which can be stopped and
// started again on the same address.
type instance struct {
	name string
	bin  string
	env  []string

	mu   sync.Mutex
	addr string   // 127.0.0.1:0 until the first run has a port
	proc *process // nil while stopped
	logs []*serverLog
}

type process struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // of Wait, once exited is closed
}

// startInstance serves on a free loopback port until the test ends.
func startInstance(t *testing.T, name, bin string, env []string) *instance {
	t.Helper()
	s := &instance{name: name, bin: bin, env: env, addr: "127.0.0.1:0"}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Log(err)
		}
		if t.Failed() {
			for i, log := range s.logs {
				t.Logf("server log of the %s instance, run %d:\n%s", s.name, i+1, log.String())
			}
		}
	})
	return s
}

func (s *instance) url() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return "http://" + s.addr
}

// start starts the process, on the address of the previous run if there was
// one, and returns once it answers GET /readyz.
func (s *instance) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return fmt.Errorf("the %s instance is already running", s.name)
	}
	log := newServerLog()
	p := &process{cmd: exec.Command(s.bin, "serve"), exited: make(chan struct{})}
	p.cmd.Env = append(append([]string{}, s.env...), "TIDEMARK_ADDR="+s.addr)
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start the %s instance: %w", s.name, err)
	}
	s.logs = append(s.logs, log)
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	s.proc = p

	select {
	case s.addr = <-log.serving:
	case <-p.exited:
		s.proc = nil
		return fmt.Errorf("the %s instance exited before serving: %v", s.name, p.err)
	case <-time.After(60 * time.Second):
		return fmt.Errorf("the %s instance did not start serving within 60s", s.name)
	}
	url := "http://" + s.addr + "/readyz"
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("GET %s did not answer 200 within 30s (last: %v)", url, describe(res, err))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop interrupts the process, as an orchestrator does, and waits for it to
// exit (killing it after 20s).
func (s *instance) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	if p == nil {
		return nil
	}
	s.proc = nil
	select {
	case <-p.exited:
		return fmt.Errorf("the %s instance had exited: %v", s.name, p.err)
	default:
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
		return nil
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("the %s instance did not stop within 20s of an interrupt", s.name)
	}
}

// controlHandler lets the Node suites do what only the harness can:
//
//	POST /stop                         stop the first instance
//	POST /start                        start it again on the same address
//	POST /token?tenant=&user=&ttl=2s   a token with a short life
func controlHandler(t *testing.T, first *instance, secret []byte) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /stop", func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if err := first.stop(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		t.Logf("control: stopped the first instance in %s", time.Since(start).Round(time.Millisecond))
	})
	mux.HandleFunc("POST /start", func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if err := first.start(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		t.Logf("control: started the first instance again in %s", time.Since(start).Round(time.Millisecond))
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		ttl, err := time.ParseDuration(q.Get("ttl"))
		if err != nil {
			http.Error(w, "ttl: "+err.Error(), http.StatusBadRequest)
			return
		}
		tok, err := auth.Issue(secret, q.Get("tenant"), q.Get("user"), ttl, time.Now())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, tok)
	})
	return mux
}

func describe(res *http.Response, err error) string {
	if err != nil {
		return err.Error()
	}
	return res.Status
}

// installNodeModules runs `npm ci` when node_modules is missing or older
// than package-lock.json.
func installNodeModules(t *testing.T) {
	t.Helper()
	lock, err := os.Stat("package-lock.json")
	if err != nil {
		t.Fatal(err)
	}
	// npm writes node_modules/.package-lock.json on every install.
	installed, err := os.Stat(filepath.Join("node_modules", ".package-lock.json"))
	if err == nil && !installed.ModTime().Before(lock.ModTime()) {
		return
	}
	start := time.Now()
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
	out := &lineLogger{t: t, prefix: "npm: "}
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	out.Flush()
	if err != nil {
		t.Fatalf("npm ci: %v", err)
	}
	t.Logf("npm ci took %s", time.Since(start).Round(time.Millisecond))
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// lineLogger writes each complete line to the test log as it arrives.
type lineLogger struct {
	t      *testing.T
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.t.Log(l.prefix + string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
}

// Flush logs a last line that had no newline.
func (l *lineLogger) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.t.Log(l.prefix + string(l.buf))
		l.buf = nil
	}
}

// serverLog keeps the server's output and reports the address from its
// "tidemark is serving" line.
type serverLog struct {
	mu      sync.Mutex
	all     bytes.Buffer
	partial []byte
	serving chan string
	found   bool
}

func newServerLog() *serverLog { return &serverLog{serving: make(chan string, 1)} }

func (s *serverLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all.Write(p)
	if s.found {
		return len(p), nil
	}
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := s.partial[:i]
		s.partial = s.partial[i+1:]
		if addr, ok := servingAddr(line); ok {
			s.found = true
			s.partial = nil
			s.serving <- addr
			return len(p), nil
		}
	}
}

func (s *serverLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.all.String()
}

func servingAddr(line []byte) (string, bool) {
	var rec struct {
		Msg  string `json:"msg"`
		Addr string `json:"addr"`
	}
	if err := json.Unmarshal(line, &rec); err != nil || rec.Msg != "tidemark is serving" || rec.Addr == "" {
		return "", false
	}
	return rec.Addr, true
}
