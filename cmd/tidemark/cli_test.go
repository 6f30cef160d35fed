package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/db/dbtest"
)

// flagsIn lists the flags a help text names ("  -addr string" lines).
func flagsIn(help string) map[string]bool {
	out := map[string]bool{}
	for _, line := range strings.Split(help, "\n") {
		if name, ok := strings.CutPrefix(line, "  -"); ok {
			name, _, _ = strings.Cut(name, " ")
			out[name] = true
		}
	}
	return out
}

func TestEachCommandsHelpListsOnlyItsOwnFlags(t *testing.T) {
	tests := []struct {
		command string
		want    []string
		wantNot []string
	}{
		{"serve", []string{"addr", "database-url", "data-dir", "sync-rules", "log-level", "log-format", "jwt-secret", "tracing", "allowed-origins", "ws-max-connections"}, []string{"tenant", "user"}},
		{"migrate", []string{"database-url", "data-dir", "sync-rules", "log-level", "log-format"}, []string{"addr", "jwt-secret", "tracing", "allowed-origins", "db-max-conns", "tenant"}},
		{"token", []string{"tenant", "user", "ttl", "jwt-secret", "data-dir"}, []string{"addr", "database-url", "log-level"}},
	}
	for _, tt := range tests {
		t.Run(tt.command, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), []string{tt.command, "-h"}, &stdout, &stderr)
			if !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("%s -h: err = %v, want flag.ErrHelp (exit 0)", tt.command, err)
			}
			help := stderr.String()
			if !strings.HasPrefix(help, "Usage: tidemark "+tt.command+" [flags]\n") {
				t.Errorf("%s -h does not start with its usage line:\n%s", tt.command, help)
			}
			flags := flagsIn(help)
			for _, f := range tt.want {
				if !flags[f] {
					t.Errorf("%s -h does not list -%s", tt.command, f)
				}
			}
			for _, f := range tt.wantNot {
				if flags[f] {
					t.Errorf("%s -h lists -%s, which it does not read", tt.command, f)
				}
			}
		})
	}
	// Every flag migrate lists, serve takes too, with the same variable.
	var migrateHelp, serveHelp bytes.Buffer
	_ = run(context.Background(), []string{"migrate", "-h"}, io.Discard, &migrateHelp)
	_ = run(context.Background(), []string{"serve", "-h"}, io.Discard, &serveHelp)
	for f := range flagsIn(migrateHelp.String()) {
		if !flagsIn(serveHelp.String())[f] {
			t.Errorf("serve does not take migrate's -%s", f)
		}
	}
	for _, command := range []string{"bench", "version"} {
		var stderr bytes.Buffer
		if err := run(context.Background(), []string{command, "-h"}, io.Discard, &stderr); !errors.Is(err, flag.ErrHelp) || !strings.HasPrefix(stderr.String(), "Usage: tidemark "+command) {
			t.Errorf("%s -h: err %v, help %q", command, err, stderr.String())
		}
	}
}

func TestMigrateRefusesAServerFlag(t *testing.T) {
	err := run(context.Background(), []string{"migrate", "--addr", ":9000"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "addr") {
		t.Errorf("migrate --addr: err = %v, want an unknown flag", err)
	}
}

func TestAPortInUseFailsBeforeTheEmbeddedDatabaseStarts(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dataDir := filepath.Join(t.TempDir(), "data")

	err = run(context.Background(), []string{"serve", "--addr", taken.Addr().String(), "--data-dir", dataDir}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), taken.Addr().String()) || !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), "TIDEMARK_ADDR") {
		t.Fatalf("serve on a taken port: err = %v, want one naming the address, that it is in use, and TIDEMARK_ADDR", err)
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the data folder exists (%v): the embedded PostgreSQL was started before the port was taken", err)
	}
}

func TestTracingIsOffUnlessAskedFor(t *testing.T) {
	tests := []struct {
		name    string
		setting string
		env     map[string]string
		want    string
		wantErr string
	}{
		{"nothing set", "", nil, "", ""},
		{"TIDEMARK_TRACING=otlp", "otlp", nil, "otlp", ""},
		{"TIDEMARK_TRACING=off wins over an endpoint", "off", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, "", ""},
		{"an OTLP endpoint", "", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, "otlp", ""},
		{"a traces endpoint", "", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, "otlp", ""},
		{"OTEL_TRACES_EXPORTER=otlp", "", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, "otlp", ""},
		{"OTEL_TRACES_EXPORTER=none wins over an endpoint", "", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, "", ""},
		{"OTEL_SDK_DISABLED", "", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, "", ""},
		{"an exporter we do not have", "", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, "", "OTEL_TRACES_EXPORTER"},
		{"gRPC", "otlp", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "", "http/protobuf"},
		{"a setting we do not know", "jaeger", nil, "", "TIDEMARK_TRACING"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, name := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"} {
				t.Setenv(name, tt.env[name])
			}
			got, err := tracingExporter(tt.setting)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("exporter %q, err %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestTracesGoOutOverOTLPHTTP(t *testing.T) {
	// A collector's OTLP/HTTP receiver, on loopback.
	var mu sync.Mutex
	var posts []string
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		posts = append(posts, fmt.Sprintf("%s %s %s %d bytes", r.Method, r.URL.Path, r.Header.Get("Content-Type"), len(body)))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	cfg := defaultConfig(t)
	cfg.DatabaseURL = dbtest.URL(t)
	cfg.JWTSecret = testSecret
	log, _ := testLogger(t)
	m := &Main{Config: cfg, Log: log}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m.tracing == nil {
		m.Close(context.Background())
		t.Fatal("tracing off with OTEL_EXPORTER_OTLP_ENDPOINT set")
	}
	token, _ := auth.Issue([]byte(testSecret), "acme", "alice", time.Hour, time.Now())
	wantViewer(t, m, token, "acme", "alice")
	// Close flushes the spans still batched.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(posts) == 0 || !strings.HasPrefix(posts[0], "POST /v1/traces application/x-protobuf") {
		t.Errorf("the collector got %q, want the spans POSTed to /v1/traces as protobuf", posts)
	}
}

// The program's whole log, in JSON, through requests that used to put
// other lines in it (a refused websocket origin) and shutdown, parses line
// by line; nothing goes to the standard logger.
func TestTheJSONLogOfARealServerIsAllJSON(t *testing.T) {
	var std syncBuffer
	out, flags := log.Writer(), log.Flags()
	log.SetOutput(&std)
	t.Cleanup(func() { log.SetOutput(out); log.SetFlags(flags) })

	var logs syncBuffer
	cfg := defaultConfig(t)
	cfg.DatabaseURL = dbtest.URL(t)
	cfg.JWTSecret = testSecret
	cfg.AllowedOrigins = "https://app.example"
	m := &Main{Config: cfg, Log: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			m.Close(context.Background())
		}
	})

	header := http.Header{}
	header.Set("Origin", "https://evil.example")
	_, resp, err := websocket.DefaultDialer.Dial("ws://"+m.Addr()+"/graphql", header)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("upgrade from another origin: err %v response %v, want 403", err, resp)
	}
	if res := query(t, m.url(), "", `{ viewer { userId } }`, nil); res.Status != http.StatusUnauthorized {
		t.Errorf("no token: status %d", res.Status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	closed = true
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}

	var refused, access403 bool
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	for sc.Scan() {
		var r map[string]any
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Errorf("not JSON: %s", sc.Bytes())
			continue
		}
		refused = refused || (r["msg"] == "websocket upgrade refused" && r["origin"] == "https://evil.example")
		access403 = access403 || (r["msg"] == "request" && r["status"] == float64(http.StatusForbidden))
	}
	if !refused || !access403 {
		t.Errorf("refusal logged with its origin: %v; access line with 403: %v\n%s", refused, access403, logs.String())
	}
	if std.String() != "" {
		t.Errorf("printed outside the JSON log:\n%s", std.String())
	}
}
