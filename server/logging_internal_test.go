package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// lineLog is a JSON log whose lines a test can wait for.
type lineLog struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines chan struct{}
}

func newLineLog() *lineLog { return &lineLog{lines: make(chan struct{}, 1000)} }

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.buf.Write(p)
	l.lines <- struct{}{}
	return n, err
}

func (l *lineLog) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// records parses every line; a line that is not JSON fails the test.
func (l *lineLog) records(tb testing.TB) []map[string]any {
	tb.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			tb.Fatalf("log line is not JSON: %s", sc.Bytes())
		}
		out = append(out, m)
	}
	return out
}

// waitFor waits for a record with msg, failing the test after 30 s.
func (l *lineLog) waitFor(tb testing.TB, msg string) map[string]any {
	tb.Helper()
	timeout := time.After(30 * time.Second)
	for {
		for _, r := range l.records(tb) {
			if r["msg"] == msg {
				return r
			}
		}
		select {
		case <-l.lines:
		case <-timeout:
			tb.Fatalf("no log record %q", msg)
		}
	}
}

// serveLogged serves h behind withRequestLogging on a real listener whose
// http.Server logs through HTTPErrorLog, as the program's does.
func serveLogged(tb testing.TB, h http.HandlerFunc, tls bool) (*httptest.Server, *lineLog) {
	tb.Helper()
	logs := newLineLog()
	srv := httptest.NewUnstartedServer(withRequestLogging(logs.logger(), nil, h))
	srv.Config.ErrorLog = HTTPErrorLog(logs.logger())
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	tb.Cleanup(srv.Close)
	return srv, logs
}

func TestTheAccessLogRecordsTheStatusTheClientGot(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    int
	}{
		{"a second WriteHeader changes nothing", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusForbidden)
			w.WriteHeader(http.StatusBadRequest)
		}, http.StatusForbidden},
		{"a body without WriteHeader is 200", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("ok"))
			w.WriteHeader(http.StatusInternalServerError)
		}, http.StatusOK},
		{"an informational status comes before the real one", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusTeapot)
		}, http.StatusTeapot},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, logs := serveLogged(t, tt.handler, false)
			resp, err := http.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("client got %d, want %d", resp.StatusCode, tt.want)
			}
			if got := logs.waitFor(t, "request")["status"]; got != float64(tt.want) {
				t.Errorf("access log says %v, the client got %d", got, tt.want)
			}
			srv.Close() // net/http has logged whatever it would by now
			for _, r := range logs.records(t) {
				if s, _ := r["err"].(string); strings.Contains(s, "superfluous") {
					t.Errorf("net/http complained: %v", r)
				}
			}
		})
	}
}

func TestNetHTTPsOwnLinesGoThroughSlog(t *testing.T) {
	srv, logs := serveLogged(t, func(http.ResponseWriter, *http.Request) {}, true)
	// Plain HTTP to a TLS listener: net/http logs a TLS handshake error.
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	r := logs.waitFor(t, "http server")
	if r["level"] != "DEBUG" || r["source"] != "net/http" || !strings.Contains(r["err"].(string), "TLS handshake error") {
		t.Errorf("TLS handshake error logged as %v, want a DEBUG record from net/http", r)
	}
}
