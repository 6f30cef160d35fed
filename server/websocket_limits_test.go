package server_test

// Websocket limits and protocol rules, over real sockets against the real
// handler: each rejection with its exact close code (or HTTP status), the
// token shapes connection_init accepts, and the connection caps, enforced
// and freed again when connections close.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/server"
	"github.com/tidemark/tidemark/testenv"
)

// Close codes of the limits, as clients see them.
const (
	closeNormal           = 1000
	closeGoingAway        = 1001
	closeUnauthorized     = 4401
	closeInitTimeout      = 4408
	closeSubscriberExists = 4409
	closeTooManyInits     = 4429
)

// closeWait bounds the wait for a close that must come.
const closeWait = 5 * time.Second

// serveWithLimits starts a server with the websocket limits given, and
// without the request rate limits (upgrades count for them too): these
// tests open connections faster than a client would.
func serveWithLimits(t *testing.T, limits server.WebsocketLimits) string {
	t.Helper()
	env := testenv.New(t, testenv.Options{Server: server.Config{
		WebsocketLimits: limits,
		AddressRate:     -1,
		IdentityRate:    -1,
	}})
	return env.Serve(t)
}

// dial opens a websocket and fails the test if the upgrade is refused.
func dial(t *testing.T, url, proto string) *streamClient {
	t.Helper()
	c, resp, err := dialStream(t, url, proto, streamDialOptions{})
	if err != nil {
		t.Fatalf("dial: %v (%s)", err, statusOf(resp))
	}
	return c
}

func statusOf(resp *http.Response) string {
	if resp == nil {
		return "no response"
	}
	return resp.Status
}

// expectClose waits for the connection to close and checks its code and
// that its reason starts with reason.
func expectClose(t *testing.T, c *streamClient, code int, reason string) []wsMessage {
	t.Helper()
	ce, before := c.closeCode(closeWait)
	if ce.Code != code || !strings.HasPrefix(ce.Text, reason) {
		t.Fatalf("close = %d %q, want %d %q…; messages before: %s", ce.Code, ce.Text, code, reason, describeMessages(before))
	}
	return before
}

// firstErrorCode reads a subscription's answer, which must be an error
// (an error message, or a result with errors), and returns its code.
func firstErrorCode(t *testing.T, c *streamClient, id string) (string, string) {
	t.Helper()
	m, err := c.read(closeWait)
	if err != nil {
		t.Fatalf("waiting for the answer to subscription %s: %v", id, err)
	}
	if m.ID != id {
		t.Fatalf("got %s id=%q, want an answer to %q", m.Type, m.ID, id)
	}
	var errs []wireError
	switch m.Type {
	case "error":
		if err := json.Unmarshal(m.Payload, &errs); err != nil {
			t.Fatalf("error payload: %v: %s", err, m.Payload)
		}
	case c.dataType():
		r := decodeResult(t, m)
		if r.hasData() {
			t.Fatalf("subscription %s got data, want an error: %s", id, m.Payload)
		}
		errs = r.Errors
	default:
		t.Fatalf("got %s %s, want an error", m.Type, m.Payload)
	}
	if len(errs) == 0 {
		t.Fatalf("answer without errors: %s", m.Payload)
	}
	return errs[0].code(), errs[0].Message
}

func TestWebsocketProtocolRejections(t *testing.T) {
	t.Parallel()
	url := serveWithLimits(t, server.WebsocketLimits{
		InitTimeout: 300 * time.Millisecond,
		AuthTimeout: 300 * time.Millisecond,
	})
	tok := testenv.Token(t, "tenant/protocol", "user-1")
	for _, proto := range streamProtocols {
		t.Run(proto+"/no connection_init closes 4408", func(t *testing.T) {
			c := dial(t, url, proto)
			expectClose(t, c, closeInitTimeout, "Connection initialisation timeout")
		})
		t.Run(proto+"/a second connection_init closes 4429", func(t *testing.T) {
			c := connectStream(t, url, proto, map[string]any{"Authorization": bearer(tok)})
			c.init(map[string]any{"Authorization": bearer(tok)})
			expectClose(t, c, closeTooManyInits, "Too many initialisation requests")
		})
		t.Run(proto+"/a subscribe before connection_init closes 4401", func(t *testing.T) {
			c := dial(t, url, proto)
			subscribeWorkOrders(c, "1", bearer(tok))
			expectClose(t, c, closeUnauthorized, "Unauthorized")
		})
		t.Run(proto+"/a running subscription's id reused closes 4409", func(t *testing.T) {
			c := connectStream(t, url, proto, map[string]any{"Authorization": bearer(tok)})
			subscribeWorkOrders(c, "dup", "")
			subscribeWorkOrders(c, "dup", "")
			expectClose(t, c, closeSubscriberExists, "Subscriber for dup already exists")
		})
		t.Run(proto+"/a bad token in connection_init closes 4403", func(t *testing.T) {
			c := dial(t, url, proto)
			c.init(map[string]any{"Authorization": "Bearer not-a-token"})
			expectClose(t, c, closeForbidden, "Forbidden")
		})
		t.Run(proto+"/an expired token in connection_init closes 4403", func(t *testing.T) {
			expired, err := auth.Issue(testenv.Secret, "tenant/protocol", "user-1", time.Second, time.Now().Add(-time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			c := dial(t, url, proto)
			c.init(map[string]any{"authToken": expired})
			expectClose(t, c, closeForbidden, "Forbidden")
		})
		t.Run(proto+"/no token anywhere: the subscription is refused at once, the connection closes 4401", func(t *testing.T) {
			c := connectStream(t, url, proto, nil)
			subscribeWorkOrders(c, "1", "")
			if code, msg := firstErrorCode(t, c, "1"); code != "UNAUTHENTICATED" {
				t.Errorf("subscription without a token: code %q (%s), want UNAUTHENTICATED", code, msg)
			}
			expectClose(t, c, closeUnauthorized, "Unauthorized")
		})
		t.Run(proto+"/an empty connection_init closes 4401", func(t *testing.T) {
			c := connectStream(t, url, proto, map[string]any{})
			expectClose(t, c, closeUnauthorized, "Unauthorized")
		})
	}
}

// A token in a subscription's `headers` argument is checked even when the
// connection has one: a bad one is refused, not ignored.
func TestWebsocketBadTokenInHeadersArgumentIsRefused(t *testing.T) {
	t.Parallel()
	url := serveWithLimits(t, server.WebsocketLimits{})
	tok := testenv.Token(t, "tenant/headers", "user-1")
	expired, err := auth.Issue(testenv.Secret, "tenant/headers", "user-1", time.Second, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]string{
		"forged":       "Bearer forged.token.value",
		"forged, bare": "forged.token.value",
		"expired":      expired,
		"blank":        "   ",
		"other scheme": "Basic dXNlcjpwYXNz",
	}
	for _, proto := range streamProtocols {
		for name, value := range values {
			t.Run(proto+"/"+name, func(t *testing.T) {
				c := connectStream(t, url, proto, map[string]any{"Authorization": bearer(tok)})
				c.subscribe("1", streamWorkOrdersSubscription, map[string]any{
					"headers": map[string]any{"Authorization": value},
				})
				if code, msg := firstErrorCode(t, c, "1"); code != "UNAUTHENTICATED" {
					t.Errorf("code %q (%s), want UNAUTHENTICATED", code, msg)
				}
			})
		}
	}
}

// Apollo documents connectionParams: { authToken }; other clients send
// the bare token, or the header under a lowercase name.
func TestWebsocketTokenShapesInConnectionInit(t *testing.T) {
	t.Parallel()
	url := serveWithLimits(t, server.WebsocketLimits{AuthTimeout: 300 * time.Millisecond})
	shapes := []struct {
		name    string
		payload func(tok string) map[string]any
	}{
		{"authToken, bare", func(tok string) map[string]any { return map[string]any{"authToken": tok} }},
		{"authToken with Bearer", func(tok string) map[string]any { return map[string]any{"authToken": bearer(tok)} }},
		{"Authorization, bare", func(tok string) map[string]any { return map[string]any{"Authorization": tok} }},
		{"authorization, lowercase", func(tok string) map[string]any { return map[string]any{"authorization": bearer(tok)} }},
		{"headers.authorization, bare", func(tok string) map[string]any {
			return map[string]any{"headers": map[string]any{"authorization": tok}}
		}},
	}
	for _, proto := range streamProtocols {
		for _, shape := range shapes {
			t.Run(proto+"/"+shape.name, func(t *testing.T) {
				api := newWorkOrderAPI(t, url, "tenant/"+t.Name())
				c := connectStream(t, url, proto, shape.payload(api.token))
				s := subscribeWorkOrders(c, "1", "")
				awaitLive(t, api, s)
				// Accepted as authenticated: past the auth deadline the
				// connection still streams.
				deadline := time.Now().Add(400 * time.Millisecond)
				for time.Now().Before(deadline) {
					awaitLive(t, api, s)
				}
			})
		}
	}
}

// The control of the auth deadline: a connection without a token in
// connection_init that authenticates a subscription by its `headers`
// argument (as RxDB may) outlives the deadline.
func TestWebsocketAuthenticatedByHeadersArgumentOutlivesTheAuthDeadline(t *testing.T) {
	t.Parallel()
	url := serveWithLimits(t, server.WebsocketLimits{AuthTimeout: 200 * time.Millisecond})
	for _, proto := range streamProtocols {
		t.Run(proto, func(t *testing.T) {
			api := newWorkOrderAPI(t, url, "tenant/"+t.Name())
			c := connectStream(t, url, proto, nil)
			s := subscribeWorkOrders(c, "1", api.token) // bare token
			awaitLive(t, api, s)
			deadline := time.Now().Add(400 * time.Millisecond)
			for time.Now().Before(deadline) {
				awaitLive(t, api, s)
			}
		})
	}
}

// 10,000 subscribe messages on one connection used to all run.
func TestWebsocketSubscriptionsPerConnectionAreCapped(t *testing.T) {
	t.Parallel()
	const most = 3
	url := serveWithLimits(t, server.WebsocketLimits{MaxSubscriptions: most})
	for _, proto := range streamProtocols {
		t.Run(proto, func(t *testing.T) {
			api := newWorkOrderAPI(t, url, "tenant/"+t.Name())
			c := connectStream(t, url, proto, map[string]any{"Authorization": bearer(api.token)})
			var streams []*woStream
			for i := range most {
				streams = append(streams, subscribeWorkOrders(c, strconv.Itoa(i), ""))
			}
			const extra = 200
			for i := range extra {
				subscribeWorkOrders(c, fmt.Sprintf("extra-%d", i), "")
			}
			for i := range extra {
				id := fmt.Sprintf("extra-%d", i)
				if code, msg := firstErrorCode(t, c, id); code != "TOO_MANY_SUBSCRIPTIONS" {
					t.Fatalf("subscription %s over the cap: code %q (%s), want TOO_MANY_SUBSCRIPTIONS", id, code, msg)
				}
			}
			// A finished subscription frees its place.
			c.stop("0")
			if m, err := c.read(closeWait); err != nil || m.Type != "complete" || m.ID != "0" {
				t.Fatalf("after stopping 0: %s id=%q, %v; want complete", m.Type, m.ID, err)
			}
			streams = append(streams[1:], subscribeWorkOrders(c, "again", ""))
			awaitLiveOnOneConnection(t, api, streams)
		})
	}
}

// awaitLiveOnOneConnection is awaitLive for streams sharing a connection,
// whose events arrive interleaved: it pushes one marker and reads until
// every stream has delivered it (markers of the other streams skipped).
func awaitLiveOnOneConnection(t *testing.T, api workOrderAPI, streams []*woStream) {
	t.Helper()
	c := streams[0].c
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		marker := fmt.Sprintf("marker-%d", markerSeq.Add(1))
		api.pushIDs(marker)
		seen := map[string]bool{}
		for len(seen) < len(streams) {
			m, err := c.read(time.Second)
			if errors.Is(err, errNoMessage) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			ev, err := parseEvent(c, m.ID, m)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range ev.ids {
				if id == marker {
					seen[m.ID] = true
				}
			}
		}
		if len(seen) == len(streams) {
			for _, s := range streams {
				if !seen[s.id] {
					t.Fatalf("stream %s did not deliver %s; got %v", s.id, marker, seen)
				}
			}
			return
		}
	}
	t.Fatal("streams not live")
}

func TestWebsocketIdleConnectionIsClosed(t *testing.T) {
	t.Parallel()
	url := serveWithLimits(t, server.WebsocketLimits{IdleTimeout: 300 * time.Millisecond})
	for _, proto := range streamProtocols {
		t.Run(proto+"/without a subscription", func(t *testing.T) {
			api := newWorkOrderAPI(t, url, "tenant/"+t.Name())
			c := connectStream(t, url, proto, map[string]any{"Authorization": bearer(api.token)})
			expectClose(t, c, closeNormal, "idle for 300ms")
		})
		// The control: a connection with a subscription is not idle.
		t.Run(proto+"/with a subscription", func(t *testing.T) {
			api := newWorkOrderAPI(t, url, "tenant/"+t.Name())
			c := connectStream(t, url, proto, map[string]any{"Authorization": bearer(api.token)})
			s := subscribeWorkOrders(c, "1", "")
			deadline := time.Now().Add(time.Second)
			for time.Now().Before(deadline) {
				awaitLive(t, api, s)
			}
		})
	}
}

func TestWebsocketConnectionLifetimeEndsWith1001(t *testing.T) {
	t.Parallel()
	const lifetime = 500 * time.Millisecond
	url := serveWithLimits(t, server.WebsocketLimits{MaxLifetime: lifetime})
	for _, proto := range streamProtocols {
		t.Run(proto, func(t *testing.T) {
			api := newWorkOrderAPI(t, url, "tenant/"+t.Name())
			opened := time.Now()
			c := connectStream(t, url, proto, map[string]any{"Authorization": bearer(api.token)})
			subscribeWorkOrders(c, "1", "")
			expectClose(t, c, closeGoingAway, "connection lifetime reached, reconnect")
			if open := time.Since(opened); open < lifetime*8/10-50*time.Millisecond {
				t.Errorf("closed after %v, sooner than the lifetime less its jitter (%v)", open, lifetime*8/10)
			}
		})
	}
}

// expectRefused dials and checks that the upgrade is refused with status
// and a Retry-After between 1 and most seconds.
func expectRefused(t *testing.T, url string, status int, most int) {
	t.Helper()
	c, resp, err := dialStream(t, url, protoTransportWS, streamDialOptions{})
	if err == nil {
		_ = c.conn.Close()
		t.Fatalf("upgrade accepted, want %d", status)
	}
	if resp == nil || resp.StatusCode != status {
		t.Fatalf("upgrade refused with %s (%v), want %d", statusOf(resp), err, status)
	}
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > most {
		t.Fatalf("Retry-After %q, want 1..%d", resp.Header.Get("Retry-After"), most)
	}
}

// dialUntilAccepted dials until the server has freed a slot: it frees one
// when the closed connection's handler returns, which gives no signal.
func dialUntilAccepted(t *testing.T, url string) *streamClient {
	t.Helper()
	var c *streamClient
	ok := waitFor(closeWait, func() bool {
		var err error
		c, _, err = dialStream(t, url, protoTransportWS, streamDialOptions{})
		return err == nil
	})
	if !ok {
		t.Fatal("no slot freed after a connection closed")
	}
	return c
}

func TestWebsocketConnectionsPerAddressAndUser(t *testing.T) {
	t.Parallel()
	url := serveWithLimits(t, server.WebsocketLimits{
		MaxConnectionsPerAddress: 4,
		MaxConnectionsPerSubject: 2,
		RetryAfter:               7 * time.Second,
	})
	alice := testenv.Token(t, "tenant/caps", "alice")
	bob := testenv.Token(t, "tenant/caps", "bob")

	a1 := connectStream(t, url, protoTransportWS, map[string]any{"authToken": alice})
	connectStream(t, url, protoTransportWS, map[string]any{"authToken": alice})
	a3 := dial(t, url, protoTransportWS)
	a3.init(map[string]any{"authToken": alice})
	expectClose(t, a3, closeTryAgainLater, "too many connections for this user (at most 2); retry after ")

	// Bob is another user; the address holds four.
	connectStream(t, url, protoTransportWS, map[string]any{"authToken": bob})
	// Not authenticated yet, but counted for the address; dialled once the
	// server has let go of the connection it closed.
	dialUntilAccepted(t, url)
	expectRefused(t, url, http.StatusTooManyRequests, 7)

	// Closing frees the address's slot and the user's.
	_ = a1.conn.Close()
	again := dialUntilAccepted(t, url)
	again.init(map[string]any{"authToken": alice})
	again.expectAck()
}

func TestWebsocketConnectionsInTotal(t *testing.T) {
	t.Parallel()
	url := serveWithLimits(t, server.WebsocketLimits{MaxConnections: 2, RetryAfter: 3 * time.Second})
	first := dial(t, url, protoTransportWS)
	dial(t, url, protoTransportWS)
	expectRefused(t, url, http.StatusServiceUnavailable, 3)
	_ = first.conn.Close()
	dialUntilAccepted(t, url)
}

func TestWebsocketAcceptRate(t *testing.T) {
	t.Parallel()
	// One new connection per 100 s: the second within the test is over it.
	url := serveWithLimits(t, server.WebsocketLimits{AcceptRate: 0.01, RetryAfter: 5 * time.Second})
	dial(t, url, protoTransportWS)
	expectRefused(t, url, http.StatusServiceUnavailable, 5)
}

// A reconnect storm: a few hundred clients at once against low caps. The
// excess is shed with 503 and a spread of Retry-After values, the server
// keeps serving the connections it took and HTTP requests, and once the
// storm's connections close their slots are free again.
func TestWebsocketReconnectStormIsShed(t *testing.T) {
	t.Parallel()
	const (
		clients = 300
		most    = 40
	)
	url := serveWithLimits(t, server.WebsocketLimits{
		MaxConnections: most,
		AcceptRate:     -1,
		RetryAfter:     10 * time.Second,
	})
	api := newWorkOrderAPI(t, url, "tenant/storm")

	var (
		mu       sync.Mutex
		accepted []*streamClient
		refused  = map[int]int{} // status → count
		retries  = map[string]bool{}
		failures []error
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, resp, err := dialStream(t, url, protoTransportWS, streamDialOptions{})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				accepted = append(accepted, c)
			case resp != nil:
				refused[resp.StatusCode]++
				retries[resp.Header.Get("Retry-After")] = true
			default:
				failures = append(failures, err)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d clients in %v: %d accepted, refused %v, %d distinct Retry-After values, %d failed",
		clients, time.Since(start), len(accepted), refused, len(retries), len(failures))
	if len(failures) > 0 {
		t.Fatalf("%d dials failed without an HTTP answer, first: %v", len(failures), failures[0])
	}
	if len(accepted) != most || refused[http.StatusServiceUnavailable] != clients-most {
		t.Fatalf("accepted %d and refused %v, want %d accepted and %d refused with 503", len(accepted), refused, most, clients-most)
	}
	if len(retries) < 3 {
		t.Errorf("Retry-After values %v: not spread out", retries)
	}
	// The accepted connections work, and so does HTTP.
	// Each as its own user: a user holds at most 16 connections.
	accepted[0].init(map[string]any{"authToken": api.token})
	for i, c := range accepted[1:] {
		c.init(map[string]any{"authToken": testenv.Token(t, "tenant/storm", fmt.Sprintf("storm-%d", i))})
	}
	for _, c := range accepted {
		c.expectAck()
	}
	s := subscribeWorkOrders(accepted[0], "1", "")
	awaitLive(t, api, s)
	// Once they close, newcomers get in.
	for _, c := range accepted {
		_ = c.conn.Close()
	}
	for range most {
		dialUntilAccepted(t, url)
	}
}
