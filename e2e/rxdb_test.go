// Package e2e runs Tidemark's end-to-end tests: the real server binary on a
// fresh database, driven by the real RxDB client in Node.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
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
	srv := startServer(t, secret)
	installNodeModules(t)

	token := func(tenant, user string) string {
		tok, err := auth.Issue([]byte(secret), tenant, user, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	env := append(os.Environ(),
		"TIDEMARK_URL="+srv.url+"/graphql",
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
	// One file at a time: the suites share the server and its tenants.
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

type server struct {
	url string
}

// startServer builds the tidemark binary, migrates a fresh database and
// serves it on a free loopback port until the test ends.
func startServer(t *testing.T, secret string) *server {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "tidemark")
	build := exec.Command("go", "build", "-o", bin, "./cmd/tidemark")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/tidemark: %v\n%s", err, out)
	}

	env := append(os.Environ(),
		"TIDEMARK_DATABASE_URL="+dbtest.URL(t),
		"TIDEMARK_JWT_SECRET="+secret,
		"TIDEMARK_ADDR=127.0.0.1:0",
		"TIDEMARK_LOG_FORMAT=json",
		"TIDEMARK_DATA_DIR="+t.TempDir(),
	)
	migrate := exec.Command(bin, "migrate")
	migrate.Env = env
	if out, err := migrate.CombinedOutput(); err != nil {
		t.Fatalf("tidemark migrate: %v\n%s", err, out)
	}

	log := newServerLog()
	cmd := exec.Command(bin, "serve")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start tidemark: %v", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Signal(os.Interrupt)
			select {
			case <-exited:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
		}
		if t.Failed() {
			t.Logf("server log:\n%s", log.String())
		}
	})

	var addr string
	select {
	case addr = <-log.serving:
	case <-exited:
		t.Fatalf("tidemark exited before serving: %v", waitErr)
	case <-time.After(60 * time.Second):
		t.Fatal("tidemark did not start serving within 60s")
	}
	s := &server{url: "http://" + addr}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(s.url + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /readyz did not answer 200 within 30s (last: %v)", describe(res, err))
		}
		time.Sleep(100 * time.Millisecond)
	}
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
