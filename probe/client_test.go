package probe_test

// The probes' client: plain HTTP and websocket requests as an attacker would
// send them, with every answer kept so a test can search all of them.

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// answer is one HTTP exchange with the server.
type answer struct {
	Status int
	Header http.Header
	Body   []byte
	Errors []wireError
	Data   map[string]any
}

type wireError struct {
	Message    string         `json:"message"`
	Extensions map[string]any `json:"extensions"`
}

func (e wireError) code() string { s, _ := e.Extensions["code"].(string); return s }

// transcript keeps every body the server sent to one caller, so a probe can
// check that none of them carries another tenant's data.
type transcript struct {
	mu     sync.Mutex
	bodies [][]byte
}

func (t *transcript) add(b []byte) {
	t.mu.Lock()
	t.bodies = append(t.bodies, append([]byte(nil), b...))
	t.mu.Unlock()
}

// mustNotContain fails the test if any body holds one of the markers.
func (t *transcript) mustNotContain(tb testing.TB, markers ...string) {
	tb.Helper()
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.bodies) == 0 {
		tb.Fatal("transcript is empty: the probe sent nothing")
	}
	for _, b := range t.bodies {
		for _, m := range markers {
			if bytes.Contains(b, []byte(m)) {
				tb.Fatalf("a response carried %q, another tenant's data:\n%s", m, b)
			}
		}
	}
}

// caller is one identity probing the server.
type caller struct {
	base  string
	token string // without "Bearer "; empty sends no Authorization
	seen  *transcript
}

func (c caller) post(tb testing.TB, query string, vars map[string]any) answer {
	tb.Helper()
	return c.postBody(tb, map[string]any{"query": query, "variables": vars})
}

func (c caller) postBody(tb testing.TB, body any) answer {
	tb.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		tb.Fatal(err)
	}
	return c.raw(tb, http.MethodPost, "/graphql", "application/json", b, nil)
}

// raw sends any request; headers may override the Authorization.
func (c caller) raw(tb testing.TB, method, path, contentType string, body []byte, headers map[string]string) answer {
	tb.Helper()
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	if c.seen != nil {
		c.seen.add(got)
	}
	a := answer{Status: resp.StatusCode, Header: resp.Header, Body: got}
	ct := resp.Header.Get("Content-Type")
	if strings.Contains(ct, "json") {
		var env struct {
			Data   map[string]any `json:"data"`
			Errors []wireError    `json:"errors"`
		}
		if err := json.Unmarshal(got, &env); err != nil {
			tb.Fatalf("%s %s answered %d with a body that is not JSON: %v\n%.500s", method, path, resp.StatusCode, err, got)
		}
		a.Data, a.Errors = env.Data, env.Errors
	}
	return a
}

// --- websockets -------------------------------------------------------------

type wsMessage struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// socket is a graphql-transport-ws connection.
type socket struct {
	conn *websocket.Conn
	in   chan wsMessage
	done chan struct{}
	err  error // set before done closes
	seen *transcript
}

func dial(tb testing.TB, base string, seen *transcript) *socket {
	tb.Helper()
	d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 5 * time.Second}
	conn, resp, err := d.Dial("ws"+strings.TrimPrefix(base, "http")+"/graphql", nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		tb.Fatalf("dial: %v (HTTP %d)", err, status)
	}
	s := &socket{conn: conn, in: make(chan wsMessage, 64), done: make(chan struct{}), seen: seen}
	go s.readLoop()
	tb.Cleanup(func() { _ = conn.Close() })
	return s
}

func (s *socket) readLoop() {
	defer close(s.done)
	for {
		_, b, err := s.conn.ReadMessage()
		if err != nil {
			s.err = err
			return
		}
		if s.seen != nil {
			s.seen.add(b)
		}
		var m wsMessage
		if json.Unmarshal(b, &m) == nil {
			s.in <- m
		}
	}
}

func (s *socket) send(tb testing.TB, m any) {
	tb.Helper()
	if err := s.conn.WriteJSON(m); err != nil {
		tb.Fatalf("websocket write: %v", err)
	}
}

// next returns the next message that is not a ping or pong.
func (s *socket) next(tb testing.TB) wsMessage {
	tb.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-s.in:
			if m.Type == "ping" || m.Type == "pong" {
				continue
			}
			return m
		case <-s.done:
			tb.Fatalf("websocket closed while a message was awaited: %v", s.err)
		case <-timeout:
			tb.Fatal("no websocket message within 10s")
		}
	}
}

// closed waits for the server to close the connection and returns its code.
func (s *socket) closed(tb testing.TB) int {
	tb.Helper()
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		tb.Fatal("the server did not close the websocket within 15s")
	}
	var ce *websocket.CloseError
	if errors.As(s.err, &ce) {
		return ce.Code
	}
	tb.Fatalf("websocket ended without a close frame: %v", s.err)
	return 0
}
