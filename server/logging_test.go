package server_test

import (
	"bytes"
	"encoding/json"
	"log"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/server"
	"github.com/tidemark/tidemark/testenv"
)

// watchedLog is a JSON log a test can wait on: every record is parsed
// (a line that is not JSON fails the test) and waitFor returns once one
// matches, so no test sleeps for a line to appear.
type watchedLog struct {
	mu      sync.Mutex
	changed *sync.Cond
	buf     bytes.Buffer
}

func newWatchedLog() *watchedLog {
	w := &watchedLog{}
	w.changed = sync.NewCond(&w.mu)
	return w
}

func (w *watchedLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.changed.Broadcast()
	return w.buf.Write(p)
}

func (w *watchedLog) records(tb testing.TB) []map[string]any {
	tb.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(w.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			tb.Fatalf("log line is not JSON: %s", line)
		}
		out = append(out, m)
	}
	return out
}

// waitFor returns the first record for which match is true, waiting for
// it; after 30 s it fails the test.
func (w *watchedLog) waitFor(tb testing.TB, what string, match func(map[string]any) bool) map[string]any {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	timer := time.AfterFunc(30*time.Second, func() {
		w.mu.Lock()
		w.changed.Broadcast()
		w.mu.Unlock()
	})
	defer timer.Stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		for _, r := range w.records(tb) {
			if match(r) {
				return r
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no log record %s in:\n%s", what, w.buf.String())
		}
		w.changed.Wait()
	}
}

// captureStandardLog collects what the standard logger prints while the
// test runs: a library that prints there bypasses slog and puts plain text
// in a JSON log. Tests using it must not run in parallel.
func captureStandardLog(tb testing.TB) *bytes.Buffer {
	tb.Helper()
	var buf syncBytes
	out, flags := log.Writer(), log.Flags()
	log.SetOutput(&buf)
	tb.Cleanup(func() { log.SetOutput(out); log.SetFlags(flags) })
	return &buf.Buffer
}

type syncBytes struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *syncBytes) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

func TestARefusedOriginIsLoggedThroughSlogWithTheStatusTheClientGot(t *testing.T) {
	stdlog := captureStandardLog(t)
	logs := newWatchedLog()
	env := testenv.New(t, testenv.Options{Server: server.Config{
		AllowedOrigins: []string{"https://app.example"},
		Logger:         slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}})
	url := env.Serve(t)

	for _, proto := range streamProtocols {
		header := http.Header{}
		header.Set("Origin", "https://evil.example")
		_, resp, err := dialStream(t, url, proto, streamDialOptions{header: header})
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s: upgrade from another origin: err %v response %v, want 403", proto, err, resp)
		}
	}
	refused := logs.waitFor(t, "of the refused upgrade", func(r map[string]any) bool { return r["msg"] == "websocket upgrade refused" })
	if refused["origin"] != "https://evil.example" || refused["status"] != float64(403) || refused["level"] != "WARN" || refused["request_id"] == nil {
		t.Errorf("refusal logged as %v, want the origin, status 403, WARN and the request id", refused)
	}
	access := logs.waitFor(t, "of the refused upgrade's request", func(r map[string]any) bool { return r["msg"] == "request" && r["path"] == "/graphql" })
	if access["status"] != float64(http.StatusForbidden) {
		t.Errorf("access log says status %v; the client got 403", access["status"])
	}
	// Control: an upgrade from the allowed origin is logged as switched.
	header := http.Header{}
	header.Set("Origin", "https://app.example")
	c, _, err := dialStream(t, url, streamProtocols[0], streamDialOptions{header: header})
	if err != nil {
		t.Fatal(err)
	}
	c.init(map[string]any{"Authorization": bearer(testenv.Token(t, "t1", "u1"))})
	c.expectAck()
	_ = c.conn.Close()
	logs.waitFor(t, "of the accepted upgrade", func(r map[string]any) bool {
		return r["msg"] == "request" && r["status"] == float64(http.StatusSwitchingProtocols)
	})

	if stdlog.Len() > 0 {
		t.Errorf("printed with the standard logger, outside the JSON log:\n%s", stdlog)
	}
	logs.mu.Lock()
	defer logs.mu.Unlock()
	logs.records(t) // every line JSON
}
