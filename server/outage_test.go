package server_test

// Database outages played over real connections: the server's pool reaches
// its own PostgreSQL database through a TCP proxy (dbtest.Proxy) that a
// test cuts (the database is down) or hangs (it answers nothing), then
// restores.

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
	"github.com/tidemark/tidemark/server"
	"github.com/tidemark/tidemark/testenv"
)

// proxiedEnv is the real handler on a fresh database reached through a
// proxy, with everything (database, hub, server) logging into one buffer.
func proxiedEnv(tb testing.TB, pool db.PoolConfig) (string, *dbtest.Proxy, *logBuffer) {
	tb.Helper()
	dbURL, proxy := dbtest.ProxiedURL(tb)
	logs := &logBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if pool.MaxConns == 0 {
		pool.MaxConns = 4
	}
	d, err := db.Open(context.Background(), dbURL, pool, log)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(d.Close)
	env := testenv.New(tb, testenv.Options{DB: d, Server: server.Config{Logger: log}})
	return env.Serve(tb), proxy, logs
}

// countLogs counts the log records whose message starts with prefix.
func countLogs(tb testing.TB, logs *logBuffer, prefix string) int {
	tb.Helper()
	n := 0
	for _, l := range logs.lines(tb) {
		if msg, _ := l["msg"].(string); strings.HasPrefix(msg, prefix) {
			n++
		}
	}
	return n
}

// The reproduction (8 of 8 before the fix): a new tenant with one
// document; PostgreSQL stops; a client connects and subscribes; PostgreSQL
// comes back; the client pulls from null and pushes X at once. Before, the
// stream started wherever the hub first read the head after the outage,
// past X: X never came, and the next push's event jumped past it. Now the
// connection is refused with 1013 while the heads cannot be read, and the
// client, as graphql-ws does, reconnects; or, had it been accepted, its
// stream would have to deliver X. Either way X must reach the client
// before (or with) the change after it.
func TestStreamStartedDuringAnOutageSkipsNoChange(t *testing.T) {
	t.Parallel()
	for _, proto := range streamProtocols {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			base, proxy, _ := proxiedEnv(t, db.PoolConfig{})
			api := newWorkOrderAPI(t, base, "tenant/"+t.Name())
			api.pushIDs("first")

			proxy.Cut()
			c, _, err := dialStream(t, base, proto, streamDialOptions{})
			if err != nil {
				t.Fatalf("dial during the outage: %v", err)
			}
			c.init(map[string]any{"Authorization": bearer(api.token)})
			var s *woStream
			m, err := c.read(eventWait)
			if err == nil && m.Type == "connection_error" {
				// graphql-ws says why before it closes.
				if strings.Contains(string(m.Payload), "EOF") {
					t.Errorf("connection_error tells the client internals: %s", m.Payload)
				}
				m, err = c.read(eventWait)
			}
			switch {
			case err == nil && m.Type == "connection_ack":
				// Accepted without its heads: the stream must still miss
				// nothing. Wait for a read that meets the outage (the
				// hub's, or its poller's) before the database comes back.
				s = subscribeWorkOrders(c, "1", "")
				select {
				case <-proxy.Refusals():
				default:
				}
				select {
				case <-proxy.Refusals():
				case <-time.After(eventWait):
					t.Fatal("nothing tried the database during the outage")
				}
			case err != nil:
				var ce *websocket.CloseError
				if !errors.As(err, &ce) || ce.Code != closeTryAgainLater {
					t.Fatalf("connection_init during the outage ended with %v, want close %d", err, closeTryAgainLater)
				}
				t.Logf("refused during the outage: %d %q", ce.Code, ce.Text)
			default:
				t.Fatalf("got %s %s, want connection_ack or close %d", m.Type, m.Payload, closeTryAgainLater)
			}

			proxy.Restore()
			if s == nil {
				// What graphql-ws does after 1013: connect again (and RxDB
				// then pulls from its checkpoint, as below).
				c = reconnectAfter1013(t, base, proto, map[string]any{"Authorization": bearer(api.token)})
				s = subscribeWorkOrders(c, "1", "")
			}
			ids, _ := api.pull("", 1000)
			if !slices.Equal(ids, []string{"first"}) {
				t.Fatalf("pulled %v after the outage, want [first]", ids)
			}
			api.pushIDs("X")
			api.pushIDs("Y")
			// Read until Y comes or the stream goes quiet (then the hub
			// started past both: the same skip, seen sooner).
			var got []string
			for !slices.Contains(got, "Y") {
				m, err := c.read(eventWait)
				if errors.Is(err, errNoMessage) {
					break
				}
				if err != nil {
					t.Fatalf("stream ended: %v", err)
				}
				ev, err := parseEvent(c, s.id, m)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, ev.ids...)
			}
			if !slices.Contains(got, "X") || !slices.Contains(got, "Y") {
				t.Fatalf("the stream skipped changes: it delivered %v after the outage, want X and Y", got)
			}
		})
	}
}

// During an outage a push and a pull answer UNAVAILABLE (HTTP 200, as any
// GraphQL error), not INTERNAL; the log says "database unavailable" once for
// all of them and "database reachable again" once when it is back.
func TestOutageAnswersUnavailableAndLogsEachStateChangeOnce(t *testing.T) {
	t.Parallel()
	base, proxy, logs := proxiedEnv(t, db.PoolConfig{})
	api := newWorkOrderAPI(t, base, "tenant-outage")
	api.pushIDs("before")

	proxy.Cut()
	const requests = 10
	for i := range requests {
		var r reply
		if i%2 == 0 {
			r = post(t, base, api.token, pushWorkOrdersMutation, map[string]any{"rows": []map[string]any{{"newDocumentState": workOrder("during", "x")}}})
		} else {
			r = post(t, base, api.token, pullWorkOrdersQuery, map[string]any{"limit": 10})
		}
		if r.Status != 200 {
			t.Fatalf("request %d during the outage: status %d, want 200: %s", i, r.Status, r.Body)
		}
		e := onlyError(t, r)
		if code := e.Extensions["code"]; code != "UNAVAILABLE" {
			t.Fatalf("request %d during the outage: code %v (%q), want UNAVAILABLE", i, code, e.Message)
		}
	}
	if n := countLogs(t, logs, "database unavailable"); n != 1 {
		t.Errorf("%d \"database unavailable\" log lines for %d failed requests, want 1:\n%s", n, requests, logs)
	}
	if n := countLogs(t, logs, "internal error"); n != 0 {
		t.Errorf("%d \"internal error\" log lines during the outage, want none:\n%s", n, logs)
	}

	proxy.Restore()
	// The pool may still hold connections the outage broke; each is
	// dropped on its first use, so a client's few retries get through.
	ok := false
	for range 6 {
		r := post(t, base, api.token, pullWorkOrdersQuery, map[string]any{"limit": 10})
		if len(r.GQL.Errors) == 0 {
			ok = true
			break
		}
		if code := r.GQL.Errors[0].Extensions["code"]; code != "UNAVAILABLE" {
			t.Fatalf("after the outage: %s", r.Body)
		}
	}
	if !ok {
		t.Fatal("requests still fail after the database came back")
	}
	api.pushIDs("after")
	if ids, _ := api.pull("", 100); !slices.Equal(ids, []string{"before", "after"}) {
		t.Fatalf("pulled %v, want [before after]", ids)
	}
	if n := countLogs(t, logs, "database reachable again"); n != 1 {
		t.Errorf("%d \"database reachable again\" log lines, want 1:\n%s", n, logs)
	}
}

// A database that accepts connections and answers nothing (a network that
// drops its packets) must not hold requests for as long as it lasts: past
// the acquire and statement timeouts they answer UNAVAILABLE. The
// assertion is on the code; the timeouts are short so the test is quick.
func TestDatabaseHangAnswersUnavailable(t *testing.T) {
	t.Parallel()
	base, proxy, logs := proxiedEnv(t, db.PoolConfig{AcquireTimeout: 300 * time.Millisecond, StatementTimeout: 300 * time.Millisecond})
	api := newWorkOrderAPI(t, base, "tenant-hang")
	api.pushIDs("before")

	proxy.Hang()
	for i, req := range []struct {
		query string
		vars  map[string]any
	}{
		{pushWorkOrdersMutation, map[string]any{"rows": []map[string]any{{"newDocumentState": workOrder("during", "x")}}}},
		{pullWorkOrdersQuery, map[string]any{"limit": 10}},
		{pullWorkOrdersQuery, map[string]any{"limit": 10}},
	} {
		r := post(t, base, api.token, req.query, req.vars)
		e := onlyError(t, r)
		if code := e.Extensions["code"]; code != "UNAVAILABLE" {
			t.Fatalf("request %d during the hang: code %v (%q), want UNAVAILABLE", i, code, e.Message)
		}
	}
	if n := countLogs(t, logs, "internal error"); n != 0 {
		t.Errorf("%d \"internal error\" log lines during the hang, want none:\n%s", n, logs)
	}
	proxy.Restore()
	for range 6 {
		r := post(t, base, api.token, pullWorkOrdersQuery, map[string]any{"limit": 10})
		if len(r.GQL.Errors) == 0 {
			return
		}
	}
	t.Fatal("requests still fail after the hang ended")
}

// A stream authenticated by its `headers` argument reads its start when the
// subscription arrives; during an outage it is refused the same way: the
// connection is closed with 1013 and no event is sent.
func TestStreamAuthenticatedByHeadersDuringAnOutageIsRefused(t *testing.T) {
	t.Parallel()
	base, proxy, _ := proxiedEnv(t, db.PoolConfig{})
	api := newWorkOrderAPI(t, base, "tenant-headers-outage")
	for _, proto := range streamProtocols {
		c := connectStream(t, base, proto, nil) // no token at connection_init
		proxy.Cut()
		subscribeWorkOrders(c, "1", bearer(api.token))
		ce, before := c.closeCode(eventWait)
		proxy.Restore()
		if ce.Code != closeTryAgainLater {
			t.Errorf("%s: closed with %d %q, want %d", proto, ce.Code, ce.Text, closeTryAgainLater)
		}
		for _, m := range before {
			if m.Type == c.dataType() && decodeResult(t, m).hasData() {
				t.Errorf("%s: an event of a refused stream: %s", proto, m.Payload)
			}
		}
	}
}

// reconnectAfter1013 connects as graphql-ws does after a 1013: again, with
// a growing pause, while the server keeps answering 1013 (right after the
// database comes back, a pooled connection the outage broke may fail one
// more read before the pool replaces it).
func reconnectAfter1013(t *testing.T, base, proto string, payload any) *streamClient {
	t.Helper()
	pause := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		c, _, err := dialStream(t, base, proto, streamDialOptions{})
		if err != nil {
			t.Fatalf("dial %s: %v", proto, err)
		}
		c.init(payload)
		m, err := c.read(eventWait)
		if err == nil && m.Type == "connection_error" {
			m, err = c.read(eventWait)
		}
		if err == nil && m.Type == "connection_ack" {
			return c
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != closeTryAgainLater || attempt == 10 {
			t.Fatalf("reconnect %d after the outage: %v (message %s %s)", attempt, err, m.Type, m.Payload)
		}
		time.Sleep(pause) // the client's backoff between attempts, not a wait for a signal
		pause *= 2
	}
}
