package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/db/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// testSecret is a production-mode JWT secret (40 characters).
const testSecret = "0123456789abcdefghij0123456789abcdefghij"

// defaultConfig is the configuration `tidemark serve` builds with no flags
// and no TIDEMARK_* variables, listening on a free port of 127.0.0.1.
func defaultConfig(tb testing.TB) Config {
	tb.Helper()
	var cfg Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	if err := bindConfig(fs, &cfg); err != nil {
		tb.Fatalf("defaults: %v", err)
	}
	if err := fs.Parse(nil); err != nil {
		tb.Fatal(err)
	}
	cfg.Addr = "127.0.0.1:0"
	return cfg
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testLogger returns a logger whose output is shown when the test fails.
func testLogger(tb testing.TB) (*slog.Logger, *syncBuffer) {
	tb.Helper()
	buf := &syncBuffer{}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("log:\n%s", buf)
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// gqlResult is a GraphQL response with its HTTP status.
type gqlResult struct {
	Status int
	Body   []byte
	Data   json.RawMessage `json:"data"`
	Errors []struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
}

// query posts a GraphQL request to base (http://host:port) with a bearer
// token ("" for none).
func query(tb testing.TB, base, token, q string, vars map[string]any) gqlResult {
	tb.Helper()
	body, err := json.Marshal(map[string]any{"query": q, "variables": vars})
	if err != nil {
		tb.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, base+"/graphql", bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("POST /graphql: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	res := gqlResult{Status: resp.StatusCode, Body: b}
	if err := json.Unmarshal(b, &res); err != nil {
		tb.Fatalf("response is not JSON (status %d): %s", resp.StatusCode, b)
	}
	return res
}

func TestTokenCommand(t *testing.T) {
	t.Setenv("TIDEMARK_JWT_SECRET", testSecret)
	var stdout, stderr bytes.Buffer
	before := time.Now()
	if err := run(context.Background(), []string{"token", "--tenant", "t1", "--user", "u1", "--ttl", "1h"}, &stdout, &stderr); err != nil {
		t.Fatalf("token: %v (stderr %s)", err, stderr.String())
	}
	id, err := auth.NewVerifier([]byte(testSecret)).Verify(strings.TrimSpace(stdout.String()))
	if err != nil {
		t.Fatalf("the printed token does not verify: %v (stdout %q)", err, stdout.String())
	}
	if id.TenantID != "t1" || id.UserID != "u1" {
		t.Errorf("identity = %+v, want tenant t1 user u1", id)
	}
	if want := before.Add(time.Hour); id.ExpiresAt.Before(want.Add(-2*time.Second)) || id.ExpiresAt.After(want.Add(5*time.Second)) {
		t.Errorf("expires at %v, want about %v", id.ExpiresAt, want)
	}
	if strings.Count(strings.TrimSpace(stdout.String()), "\n") != 0 {
		t.Errorf("stdout holds more than the token: %q", stdout.String())
	}
	if _, err := auth.NewVerifier([]byte(strings.ToUpper(testSecret))).Verify(strings.TrimSpace(stdout.String())); err == nil {
		t.Error("the token verifies with another secret")
	}
}

func TestTokenCommandRefusesIncompleteRequests(t *testing.T) {
	t.Setenv("TIDEMARK_JWT_SECRET", testSecret)
	tests := []struct {
		name string
		args []string
	}{
		{"no tenant", []string{"token", "--user", "u1"}},
		{"no user", []string{"token", "--tenant", "t1"}},
		{"non-positive ttl", []string{"token", "--tenant", "t1", "--user", "u1", "--ttl", "0s"}},
		{"unknown flag", []string{"token", "--tenant", "t1", "--user", "u1", "--tennant", "t2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout bytes.Buffer
			if err := run(context.Background(), tt.args, &stdout, io.Discard); err == nil {
				t.Errorf("no error; printed %q", stdout.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("printed %q despite the error", stdout.String())
			}
		})
	}
}

func TestTokenCommandSignsWithTheDevSecretOfTheDataFolder(t *testing.T) {
	dir := t.TempDir()
	secret := bytes.Repeat([]byte{7}, 32)
	if err := os.WriteFile(filepath.Join(dir, devSecretFile), secret, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TIDEMARK_JWT_SECRET", "")
	var stdout bytes.Buffer
	if err := run(context.Background(), []string{"token", "--tenant", "dev", "--user", "dev-user", "--data-dir", dir}, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.NewVerifier(secret).Verify(strings.TrimSpace(stdout.String())); err != nil {
		t.Errorf("the token is not signed with the dev secret: %v", err)
	}

	empty := t.TempDir()
	if err := run(context.Background(), []string{"token", "--tenant", "t", "--user", "u", "--data-dir", empty}, io.Discard, io.Discard); err == nil {
		t.Error("token without a secret or a dev secret: no error")
	}
}

func TestConfigFlagWinsOverEnvironmentOverDefault(t *testing.T) {
	t.Setenv("TIDEMARK_ADDR", "127.0.0.1:9999")
	t.Setenv("TIDEMARK_DB_MAX_CONNS", "12")

	cfg, _, err := parseConfig("serve", []string{"--addr", "127.0.0.1:7777", "--db-max-conns", "3"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:7777" || cfg.DBMaxConns != 3 {
		t.Errorf("with flags: addr %q max conns %d, want the flags' 127.0.0.1:7777 and 3", cfg.Addr, cfg.DBMaxConns)
	}

	cfg, _, err = parseConfig("serve", nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:9999" || cfg.DBMaxConns != 12 {
		t.Errorf("without flags: addr %q max conns %d, want the environment's 127.0.0.1:9999 and 12", cfg.Addr, cfg.DBMaxConns)
	}
	if cfg.ShutdownTimeout != 15*time.Second || cfg.LogLevel != "info" || cfg.MaxBodyBytes != 16<<20 {
		t.Errorf("defaults: %+v", cfg)
	}
}

func TestConfigRefusesBadValues(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		mention string
	}{
		{"max conns not a number", map[string]string{"TIDEMARK_DB_MAX_CONNS": "lots"}, nil, "TIDEMARK_DB_MAX_CONNS"},
		{"body limit not a number", map[string]string{"TIDEMARK_MAX_BODY_BYTES": "16MB"}, nil, "TIDEMARK_MAX_BODY_BYTES"},
		{"shutdown timeout without a unit", map[string]string{"TIDEMARK_SHUTDOWN_TIMEOUT": "15"}, nil, "TIDEMARK_SHUTDOWN_TIMEOUT"},
		{"log level from the environment", map[string]string{"TIDEMARK_LOG_LEVEL": "loud"}, nil, "loud"},
		{"log level from a flag", nil, []string{"--log-level", "verbose"}, "verbose"},
		{"log format", nil, []string{"--log-format", "xml"}, "xml"},
		{"max conns flag not a number", nil, []string{"--db-max-conns", "lots"}, "lots"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			_, _, err := parseConfig("serve", tt.args, io.Discard)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not mention %q", err, tt.mention)
			}
		})
	}
}

func TestRunRefusesUnknownCommandsAndAnswersHelp(t *testing.T) {
	if err := run(context.Background(), []string{"serv"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "serv") {
		t.Errorf("unknown command: err = %v", err)
	}
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"serve", "-h"}, io.Discard, &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Errorf("serve -h: err = %v, want flag.ErrHelp", err)
	}
	if !strings.Contains(stderr.String(), "TIDEMARK_DATABASE_URL") {
		t.Errorf("help does not list the environment variables:\n%s", stderr.String())
	}
}

func TestTopLevelHelpListsEveryCommand(t *testing.T) {
	for _, arg := range []string{"-h", "--help", "help"} {
		var stdout bytes.Buffer
		if err := run(context.Background(), []string{arg}, &stdout, io.Discard); err != nil {
			t.Fatalf("tidemark %s: %v", arg, err)
		}
		for _, command := range []string{"serve", "migrate", "token", "bench", "version"} {
			if !strings.Contains(stdout.String(), "\n  "+command+" ") {
				t.Errorf("tidemark %s does not list %s:\n%s", arg, command, stdout.String())
			}
		}
	}
}

func TestVersionPrintsTheBuild(t *testing.T) {
	var stdout bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stdout.String(), "tidemark ") || !strings.Contains(stdout.String(), "go        go1.") {
		t.Errorf("version output:\n%s", stdout.String())
	}
}

func TestServeRefusesAShortJWTSecret(t *testing.T) {
	url := dbtest.URL(t)
	err := run(context.Background(), []string{"serve", "--addr", "127.0.0.1:0", "--database-url", url, "--jwt-secret", "too-short-a-secret"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "32") {
		t.Errorf("err = %v, want the 32-character minimum", err)
	}
}

// A setting that can be checked on its own is checked before Tidemark opens
// (or starts, or migrates) a database: an operator with a typo in the secret
// learns of it at once, not after the database retries time out.
func TestServeRefusesAShortJWTSecretBeforeOpeningTheDatabase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	unreachable := "postgres://tidemark@127.0.0.1:1/tidemark?sslmode=disable&connect_timeout=1"
	err := run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--database-url", unreachable, "--jwt-secret", "too-short-a-secret"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "32") {
		t.Errorf("err = %v, want the 32-character minimum", err)
	}
}
