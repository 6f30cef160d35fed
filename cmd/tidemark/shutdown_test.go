package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/db/dbtest"
)

// probeReady GETs /readyz on a connection of its own (no keep-alive), so
// an answer proves the listener still accepts. err: it does not.
func probeReady(base string) (int, string, error) {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := client.Get(base + "/readyz")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// openWebsocket connects a graphql-transport-ws client, authenticated,
// and waits for connection_ack; with a subscription if subscribe is set.
func openWebsocket(tb testing.TB, base, token string, subscribe bool) *websocket.Conn {
	tb.Helper()
	dialer := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 5 * time.Second}
	conn, _, err := dialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/graphql", nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	send := func(m map[string]any) {
		if err := conn.WriteJSON(m); err != nil {
			tb.Fatal(err)
		}
	}
	send(map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + token}})
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var ack struct{ Type string }
	if err := conn.ReadJSON(&ack); err != nil || ack.Type != "connection_ack" {
		tb.Fatalf("connection_init: %v %q", err, ack.Type)
	}
	_ = conn.SetReadDeadline(time.Time{})
	if subscribe {
		send(map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{
			"query": `subscription { streamSites { documents { id } checkpoint { cursor } } }`,
		}})
	}
	return conn
}

// closeCodeOf reads conn until it ends and returns its close code (0: the
// socket ended without a close frame).
func closeCodeOf(tb testing.TB, conn *websocket.Conn) (int, string) {
	tb.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		_, data, err := conn.ReadMessage()
		if err == nil {
			var m struct{ Type string }
			if json.Unmarshal(data, &m) == nil && (m.Type == "ping" || m.Type == "pong") {
				continue
			}
			continue // stream events are not what this test is about
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, ce.Text
		}
		tb.Logf("websocket ended without a close frame: %v", err)
		return 0, ""
	}
}

// SIGTERM's path (Main.Shutdown): readiness turns false while the listener
// still accepts; after the drain delay the listener closes; websockets
// close with 1001, with or without a subscription, so graphql-ws clients
// reconnect elsewhere; a push waiting on a row lock finishes and its
// client gets its answer; Shutdown reports a clean stop.
func TestShutdownDrainsThenClosesTheListenerAndWebsockets(t *testing.T) {
	cfg := defaultConfig(t)
	cfg.DatabaseURL = dbtest.URL(t)
	cfg.JWTSecret = testSecret
	cfg.ShutdownTimeout = time.Minute
	// Long enough to see readiness false with the listener open on a busy
	// machine; the test does not time it.
	cfg.Resilience.DrainDelay = 2 * time.Second
	log, logs := testLogger(t)
	m := &Main{Config: cfg, Log: log}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	base := m.url()
	token, _ := auth.Issue([]byte(testSecret), "acme", "alice", time.Hour, time.Now())
	if status, body, err := probeReady(base); err != nil || status != http.StatusOK {
		t.Fatalf("/readyz before shutdown: %d %s %v", status, body, err)
	}
	idle := openWebsocket(t, base, token, false)
	streaming := openWebsocket(t, base, token, true)

	release := holdSitesLock(t, cfg.DatabaseURL)
	pushed := make(chan gqlResult, 1)
	go func() {
		pushed <- queryNoFatal(base, token, `mutation { pushSites(rows: [{newDocumentState: {id: "s1", name: "n", address: "a", deleted: false}}]) { id } }`)
	}()
	waitForLockWaiter(t, cfg.DatabaseURL)

	stopped := make(chan error, 1)
	go func() { stopped <- m.Shutdown(context.Background()) }()

	// Readiness turns false first, on a listener that still accepts.
	for {
		status, body, err := probeReady(base)
		if err != nil {
			t.Fatalf("the listener closed before /readyz turned false: %v", err)
		}
		if status == http.StatusServiceUnavailable {
			if !strings.Contains(body, "shutting down") {
				t.Errorf("/readyz during the drain: %s, want the reason \"shutting down\"", body)
			}
			break
		}
	}
	waitRefused(t, m.Addr())
	for name, conn := range map[string]*websocket.Conn{"without a subscription": idle, "with a subscription": streaming} {
		if code, text := closeCodeOf(t, conn); code != websocket.CloseGoingAway {
			t.Errorf("websocket %s closed with %d %q, want %d (going away)", name, code, text, websocket.CloseGoingAway)
		}
	}
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown returned (%v) while a push was in flight", err)
	default:
	}

	release()
	res := <-pushed
	if res.Status != http.StatusOK || len(res.Errors) != 0 || string(res.Data) != `{"pushSites":[]}` {
		t.Errorf("the push in flight got status %d body %s", res.Status, res.Body)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if !strings.Contains(logs.String(), "shutting down") {
		t.Errorf("the drain is not logged:\n%s", logs)
	}
}

// A push waiting on a row lock must not hold the shutdown past its
// timeout: its statement is canceled at the deadline and Shutdown reports
// a clean stop (the process exits 0, not 2 as before).
func TestShutdownCancelsAPushStuckOnARowLockAtTheTimeout(t *testing.T) {
	cfg := defaultConfig(t)
	cfg.DatabaseURL = dbtest.URL(t)
	cfg.JWTSecret = testSecret
	cfg.ShutdownTimeout = time.Second
	cfg.Resilience.DrainDelay = -1
	log, logs := testLogger(t)
	m := &Main{Config: cfg, Log: log}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	base := m.url()
	token, _ := auth.Issue([]byte(testSecret), "acme", "alice", time.Hour, time.Now())
	const pushSite = `mutation($name: String!) { pushSites(rows: [{newDocumentState: {id: "s1", name: $name, address: "a", deleted: false}}]) { id } }`
	if res := query(t, base, token, pushSite, map[string]any{"name": "first"}); len(res.Errors) != 0 {
		t.Fatalf("push: %s", res.Body)
	}

	// Another session holds the lock of the row every push of the tenant's
	// sites takes first (its change counter), as a long transaction would.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if tag, err := tx.Exec(ctx, `SELECT seq FROM change_counters WHERE tenant_id = 'acme' AND collection = 'Site' FOR UPDATE`); err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("lock the change counter: %v (%s)", err, tag)
	}
	pushed := make(chan gqlResult, 1)
	go func() {
		pushed <- queryNoFatal(base, token, `mutation { pushSites(rows: [{newDocumentState: {id: "s1", name: "second", address: "a", deleted: false}}]) { id } }`)
	}()
	waitForLockWaiter(t, cfg.DatabaseURL)

	if err := m.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v, want nil: canceling a stuck request is a clean stop", err)
	}
	res := <-pushed
	if len(res.Errors) == 0 && res.Status == http.StatusOK {
		t.Errorf("the stuck push succeeded (%s), want it canceled", res.Body)
	}
	t.Logf("the stuck push got: %d %.200s", res.Status, res.Body)
	if !strings.Contains(logs.String(), "canceling the requests still in flight") {
		t.Errorf("the cancellation is not logged:\n%s", logs)
	}
}
