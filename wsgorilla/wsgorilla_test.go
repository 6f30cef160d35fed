package wsgorilla_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/99designs/gqlgen/graphql/handler/testserver"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"

	"github.com/tidemark/tidemark/wsgorilla"
)

const (
	transportWS = "graphql-transport-ws"
	legacyWS    = "graphql-ws"

	subscriptionQuery = `{"query":"subscription { name }"}`
	readWait          = 5 * time.Second
)

// wireMsg is one GraphQL-over-websocket message, for both subprotocols.
type wireMsg struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// events records what gqlgen reports through ErrorFunc and CloseFunc.
type events struct {
	mu         sync.Mutex
	errs       []error
	closeCodes chan int
}

func newEvents() *events { return &events{closeCodes: make(chan int, 16)} }

func (e *events) errorFunc(_ context.Context, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.errs = append(e.errs, err)
}

func (e *events) closeFunc(_ context.Context, code int) { e.closeCodes <- code }

func (e *events) errors() []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]error(nil), e.errs...)
}

// waitClose returns the code gqlgen passed to CloseFunc.
func (e *events) waitClose(tb testing.TB) int {
	tb.Helper()
	select {
	case code := <-e.closeCodes:
		return code
	case <-time.After(readWait):
		tb.Fatal("CloseFunc was not called")
		return 0
	}
}

// newServer serves gqlgen's test schema (a `subscription { name }` driven by
// SendNextSubscriptionMessage / SendCompleteSubscriptionMessage) over a real
// listener with ws as its only transport; configure, if set, may adjust the
// http.Server and the listener before it starts.
func newServer(tb testing.TB, ws transport.Websocket, configure func(*httptest.Server)) (*testserver.TestServer, *httptest.Server) {
	tb.Helper()
	gql := testserver.New()
	gql.AddTransport(ws)
	srv := httptest.NewUnstartedServer(gql)
	if configure != nil {
		configure(srv)
	}
	srv.Start()
	tb.Cleanup(srv.Close)
	return gql, srv
}

func wsURL(srv *httptest.Server) string { return "ws" + strings.TrimPrefix(srv.URL, "http") }

func dial(tb testing.TB, url string, header http.Header, subprotocols ...string) (*websocket.Conn, *http.Response, error) {
	tb.Helper()
	d := websocket.Dialer{Subprotocols: subprotocols, HandshakeTimeout: readWait}
	c, resp, err := d.Dial(url, header)
	if c != nil {
		tb.Cleanup(func() { _ = c.Close() })
	}
	return c, resp, err
}

func mustDial(tb testing.TB, url string, subprotocols ...string) *websocket.Conn {
	tb.Helper()
	c, _, err := dial(tb, url, nil, subprotocols...)
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	return c
}

func send(tb testing.TB, c *websocket.Conn, m wireMsg) {
	tb.Helper()
	if err := c.WriteJSON(m); err != nil {
		tb.Fatalf("send %s: %v", m.Type, err)
	}
}

func read(tb testing.TB, c *websocket.Conn) wireMsg {
	tb.Helper()
	_ = c.SetReadDeadline(time.Now().Add(readWait))
	var m wireMsg
	if err := c.ReadJSON(&m); err != nil {
		tb.Fatalf("read: %v", err)
	}
	return m
}

func expect(tb testing.TB, c *websocket.Conn, typ string) wireMsg {
	tb.Helper()
	m := read(tb, c)
	if m.Type != typ {
		tb.Fatalf("got message %q (payload %s), want %q", m.Type, m.Payload, typ)
	}
	return m
}

// readUntilClose reads until the connection ends and returns the close frame
// the server sent; it fails if the connection ended any other way.
func readUntilClose(tb testing.TB, c *websocket.Conn, within time.Duration) (*websocket.CloseError, []wireMsg) {
	tb.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	var seen []wireMsg
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				tb.Fatalf("connection ended without a close frame: %v (messages: %v)", err, seen)
			}
			return ce, seen
		}
		var m wireMsg
		_ = json.Unmarshal(data, &m)
		seen = append(seen, m)
	}
}

// initTransportWS opens a graphql-transport-ws connection up to connection_ack.
func initTransportWS(tb testing.TB, srv *httptest.Server) *websocket.Conn {
	tb.Helper()
	c := mustDial(tb, wsURL(srv), transportWS)
	send(tb, c, wireMsg{Type: "connection_init"})
	expect(tb, c, "connection_ack")
	return c
}

func TestGraphQLTransportWSSubscriptionRunsToComplete(t *testing.T) {
	t.Parallel()
	gql, srv := newServer(t, transport.Websocket{Implementation: wsgorilla.Implementation{}}, nil)

	c, resp, err := dial(t, wsURL(srv), nil, transportWS)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if got := resp.Header.Get("Sec-Websocket-Protocol"); got != transportWS {
		t.Fatalf("101 carries subprotocol %q, want %q", got, transportWS)
	}

	send(t, c, wireMsg{Type: "connection_init"})
	expect(t, c, "connection_ack")
	send(t, c, wireMsg{ID: "sub-1", Type: "subscribe", Payload: json.RawMessage(subscriptionQuery)})

	for range 2 {
		gql.SendNextSubscriptionMessage()
		next := expect(t, c, "next")
		if next.ID != "sub-1" || string(next.Payload) != `{"data":{"name":"test"}}` {
			t.Fatalf("next = %+v", next)
		}
	}

	// The resolver's stream ending (in generated code: its channel closing)
	// is reported to the client as complete.
	gql.SendCompleteSubscriptionMessage()
	if done := expect(t, c, "complete"); done.ID != "sub-1" {
		t.Fatalf("complete for %q, want sub-1", done.ID)
	}
}

func TestGraphQLWSLegacySubscriptionRunsToStop(t *testing.T) {
	t.Parallel()
	gql, srv := newServer(t, transport.Websocket{Implementation: wsgorilla.Implementation{}}, nil)

	c, resp, err := dial(t, wsURL(srv), nil, legacyWS)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if got := resp.Header.Get("Sec-Websocket-Protocol"); got != legacyWS {
		t.Fatalf("101 carries subprotocol %q, want %q", got, legacyWS)
	}

	send(t, c, wireMsg{Type: "connection_init"})
	expect(t, c, "connection_ack")
	expect(t, c, "ka") // the legacy protocol always sends one keep-alive after the ack
	send(t, c, wireMsg{ID: "1", Type: "start", Payload: json.RawMessage(subscriptionQuery)})

	gql.SendNextSubscriptionMessage()
	data := expect(t, c, "data")
	if data.ID != "1" || string(data.Payload) != `{"data":{"name":"test"}}` {
		t.Fatalf("data = %+v", data)
	}

	send(t, c, wireMsg{ID: "1", Type: "stop"})
	if done := expect(t, c, "complete"); done.ID != "1" {
		t.Fatalf("complete for %q, want 1", done.ID)
	}
}

func TestSubprotocolNegotiation(t *testing.T) {
	t.Parallel()
	_, srv := newServer(t, transport.Websocket{Implementation: wsgorilla.Implementation{}}, nil)

	tests := []struct {
		name    string
		offered []string
		want    string // in the 101 response
		speaks  string // the protocol gqlgen then speaks
	}{
		{"graphql-transport-ws alone is chosen", []string{transportWS}, transportWS, transportWS},
		{"graphql-ws alone is chosen", []string{legacyWS}, legacyWS, legacyWS},
		{"graphql-transport-ws is preferred when offered second", []string{legacyWS, transportWS}, transportWS, transportWS},
		{"graphql-transport-ws is preferred when offered first", []string{transportWS, legacyWS}, transportWS, transportWS},
		{"no offer negotiates none and speaks graphql-ws", nil, "", legacyWS},
		{"unknown offer negotiates none and speaks graphql-ws", []string{"mqtt"}, "", legacyWS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, resp, err := dial(t, wsURL(srv), nil, tt.offered...)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			if got := resp.Header.Get("Sec-Websocket-Protocol"); got != tt.want {
				t.Fatalf("101 carries subprotocol %q, want %q", got, tt.want)
			}
			if c.Subprotocol() != tt.want {
				t.Fatalf("client sees subprotocol %q, want %q", c.Subprotocol(), tt.want)
			}

			send(t, c, wireMsg{Type: "connection_init"})
			expect(t, c, "connection_ack")
			switch tt.speaks {
			case transportWS:
				send(t, c, wireMsg{Type: "ping"})
				expect(t, c, "pong")
			case legacyWS:
				expect(t, c, "ka")
			}
		})
	}
}

func TestOriginCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		checkOrigin func(*http.Request) bool
		origin      string // "" sends none; "SELF" sends the server's own origin
		wantUpgrade bool
	}{
		{"allow-list accepts a listed origin", wsgorilla.OriginAllowList([]string{"https://app.example.com"}), "https://app.example.com", true},
		{"allow-list ignores case", wsgorilla.OriginAllowList([]string{"https://app.example.com"}), "HTTPS://App.Example.COM", true},
		{"allow-list refuses another host", wsgorilla.OriginAllowList([]string{"https://app.example.com"}), "https://evil.example.com", false},
		{"allow-list refuses another scheme", wsgorilla.OriginAllowList([]string{"https://app.example.com"}), "http://app.example.com", false},
		{"allow-list refuses another port", wsgorilla.OriginAllowList([]string{"https://app.example.com"}), "https://app.example.com:8443", false},
		{"allow-list accepts a request without origin", wsgorilla.OriginAllowList([]string{"https://app.example.com"}), "", true},
		{"star accepts any origin", wsgorilla.OriginAllowList([]string{"*"}), "https://anything.example.org", true},
		{"nil check accepts the same origin", nil, "SELF", true},
		{"nil check refuses another origin", nil, "https://app.example.com", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := newServer(t, transport.Websocket{
				Implementation: wsgorilla.Implementation{CheckOrigin: tt.checkOrigin},
			}, func(s *httptest.Server) {
				s.Config.ErrorLog = quietLog() // gqlgen's second WriteHeader after a refusal
			})
			header := http.Header{}
			switch tt.origin {
			case "":
			case "SELF":
				header.Set("Origin", srv.URL)
			default:
				header.Set("Origin", tt.origin)
			}

			c, resp, err := dial(t, wsURL(srv), header, transportWS)
			if tt.wantUpgrade {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				send(t, c, wireMsg{Type: "connection_init"})
				expect(t, c, "connection_ack")
				return
			}

			if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil {
				t.Fatalf("dial error = %v, want a refused handshake", err)
			}
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("status = %d, want 403", resp.StatusCode)
			}
			body, _ := io.ReadAll(resp.Body)
			var gqlErr struct {
				Errors []struct{ Message string }
			}
			if err := json.Unmarshal(body, &gqlErr); err != nil || len(gqlErr.Errors) != 1 {
				t.Fatalf("body %q is not one gqlgen error: %v", body, err)
			}
			if !strings.Contains(gqlErr.Errors[0].Message, "origin not allowed") {
				t.Fatalf("error message = %q", gqlErr.Errors[0].Message)
			}
		})
	}
}

func TestOriginAllowList(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		allowed []string
		origins []string // Origin header values; none means the header is absent
		want    bool
	}{
		{"listed origin", []string{"https://a.example"}, []string{"https://a.example"}, true},
		{"listed origin with port", []string{"http://localhost:5173"}, []string{"http://localhost:5173"}, true},
		{"configured with trailing slash and spaces", []string{" https://a.example/ "}, []string{"https://a.example"}, true},
		{"configured in upper case", []string{"HTTPS://A.EXAMPLE"}, []string{"https://a.example"}, true},
		{"unlisted origin", []string{"https://a.example"}, []string{"https://b.example"}, false},
		{"listed host with a different port", []string{"http://localhost:5173"}, []string{"http://localhost:3000"}, false},
		{"origin with a path is not an origin", []string{"https://a.example"}, []string{"https://a.example/x"}, false},
		{"opaque origin null", []string{"https://a.example"}, []string{"null"}, false},
		{"two Origin headers", []string{"https://a.example"}, []string{"https://a.example", "https://b.example"}, false},
		{"empty list refuses browsers", nil, []string{"https://a.example"}, false},
		{"empty list accepts non-browser clients", nil, nil, true},
		{"star among others accepts anything", []string{"https://a.example", "*"}, []string{"https://z.example"}, true},
		// httptest.NewRequest's Host is example.com.
		{"the server's own origin", nil, []string{"http://example.com"}, true},
		{"the server's own origin over https", []string{"https://a.example"}, []string{"https://EXAMPLE.com"}, true},
		{"the server's host on another port", nil, []string{"http://example.com:8443"}, false},
		{"the server's host with a path", nil, []string{"http://example.com/x"}, false},
		{"the server's host on another scheme", nil, []string{"ws://example.com"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/query", nil)
			for _, o := range tt.origins {
				r.Header.Add("Origin", o)
			}
			if got := wsgorilla.OriginAllowList(tt.allowed)(r); got != tt.want {
				t.Fatalf("allowed = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPayloadReadLimit(t *testing.T) {
	t.Parallel()
	limit := int64(256)
	oversized := wireMsg{Type: "ping", Payload: json.RawMessage(`"` + strings.Repeat("x", 1024) + `"`)}
	fits := wireMsg{Type: "ping", Payload: json.RawMessage(`"` + strings.Repeat("x", 150) + `"`)}

	t.Run("message over the limit after init closes with 1009", func(t *testing.T) {
		t.Parallel()
		ev := newEvents()
		_, srv := newServer(t, transport.Websocket{
			Implementation:   wsgorilla.Implementation{},
			PayloadReadLimit: &limit,
			ErrorFunc:        ev.errorFunc,
			CloseFunc:        ev.closeFunc,
		}, nil)
		c := initTransportWS(t, srv)

		send(t, c, fits)
		expect(t, c, "pong")

		send(t, c, oversized)
		ce, _ := readUntilClose(t, c, readWait)
		if ce.Code != websocket.CloseMessageTooBig {
			t.Fatalf("close code = %d, want 1009", ce.Code)
		}
		// gorilla sent 1009 itself; gqlgen's later close(1000) finds the
		// close frame already sent, so CloseFunc reports 1000.
		if code := ev.waitClose(t); code != websocket.CloseNormalClosure {
			t.Fatalf("CloseFunc code = %d, want 1000", code)
		}
		errs := ev.errors()
		if len(errs) != 1 || !errors.Is(errs[0], websocket.ErrReadLimit) {
			t.Fatalf("ErrorFunc got %v, want one websocket.ErrReadLimit", errs)
		}
		var wsErr transport.WebsocketError
		if !errors.As(errs[0], &wsErr) || !wsErr.IsReadError {
			t.Fatalf("ErrorFunc error %v is not a read WebsocketError", errs[0])
		}
	})

	t.Run("first message over the limit closes with 1009 before init", func(t *testing.T) {
		t.Parallel()
		ev := newEvents()
		_, srv := newServer(t, transport.Websocket{
			Implementation:   wsgorilla.Implementation{},
			PayloadReadLimit: &limit,
			ErrorFunc:        ev.errorFunc,
			CloseFunc:        ev.closeFunc,
		}, nil)
		c := mustDial(t, wsURL(srv), transportWS)

		send(t, c, wireMsg{Type: "connection_init", Payload: json.RawMessage(`{"token":"` + strings.Repeat("t", 1024) + `"}`)})
		ce, seen := readUntilClose(t, c, readWait)
		if ce.Code != websocket.CloseMessageTooBig || len(seen) != 0 {
			t.Fatalf("close code = %d after %v, want 1009 and no messages", ce.Code, seen)
		}
		// During init gqlgen closes with 1002 "decoding error" (not sent:
		// the 1009 went first) and does not call ErrorFunc.
		if code := ev.waitClose(t); code != transport.WebsocketCloseProtocolError {
			t.Fatalf("CloseFunc code = %d, want 1002", code)
		}
		if errs := ev.errors(); len(errs) != 0 {
			t.Fatalf("ErrorFunc got %v during init, want nothing", errs)
		}
	})
}

// deadlineConn is the server's side of a connection, recording the
// deadlines set on it. With keepWriteDeadline it ignores requests to clear
// the write deadline, as a stack that let a deadline of the request (the
// http.Server's, or the handshake's) through to the websocket would.
type deadlineConn struct {
	net.Conn
	keepWriteDeadline bool

	mu                sync.Mutex
	read, write       time.Time // the deadlines in force
	sawRead, sawWrite bool      // some deadline was ever set
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.read, c.sawRead = t, c.sawRead || !t.IsZero()
	return c.Conn.SetReadDeadline(t)
}

func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.IsZero() && c.keepWriteDeadline {
		return nil
	}
	c.write, c.sawWrite = t, c.sawWrite || !t.IsZero()
	return c.Conn.SetWriteDeadline(t)
}

// check reports a deadline still in force, which would end the connection
// when it passes. The http.Server must have set both before the upgrade,
// or there was nothing to clear.
func (c *deadlineConn) check() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case !c.sawRead || !c.sawWrite:
		return fmt.Errorf("the http.Server set no deadlines (read %v, write %v): the test proves nothing", c.sawRead, c.sawWrite)
	case !c.read.IsZero() || !c.write.IsZero():
		return fmt.Errorf("deadlines still in force after the upgrade: read %v, write %v", c.read, c.write)
	}
	return nil
}

// deadlineListener hands out each accepted connection as a deadlineConn.
type deadlineListener struct {
	net.Listener
	keepWriteDeadline bool
	accepted          chan *deadlineConn
}

func (l deadlineListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	dc := &deadlineConn{Conn: c, keepWriteDeadline: l.keepWriteDeadline}
	l.accepted <- dc
	return dc, nil
}

// websocketUnderHTTPTimeouts opens a subscription through an http.Server
// with read, write and idle timeouts, exchanges a message each way, and
// returns the server's side of the connection. The websocket has no write
// timeout of its own, so any deadline left on the socket came from the
// http.Server's.
func websocketUnderHTTPTimeouts(t *testing.T, keepWriteDeadline bool) *deadlineConn {
	t.Helper()
	accepted := make(chan *deadlineConn, 1)
	gql, srv := newServer(t, transport.Websocket{Implementation: wsgorilla.Implementation{WriteTimeout: -1}}, func(s *httptest.Server) {
		s.Config.ReadTimeout = time.Second
		s.Config.WriteTimeout = time.Second
		s.Config.IdleTimeout = time.Second
		s.Listener = deadlineListener{Listener: s.Listener, keepWriteDeadline: keepWriteDeadline, accepted: accepted}
	})
	c := initTransportWS(t, srv)
	send(t, c, wireMsg{ID: "s", Type: "subscribe", Payload: json.RawMessage(subscriptionQuery)})
	gql.SendNextSubscriptionMessage() // a server write
	expect(t, c, "next")
	send(t, c, wireMsg{Type: "ping"}) // a server read
	expect(t, c, "pong")
	return <-accepted
}

// The http.Server's deadlines are for requests; once upgraded, nothing of
// them may remain on the socket of a connection meant to live for hours.
// Checked on the socket itself instead of by waiting for them to pass.
func TestHTTPServerTimeoutsDoNotEndWebsocket(t *testing.T) {
	t.Parallel()
	if err := websocketUnderHTTPTimeouts(t, false).check(); err != nil {
		t.Fatal(err)
	}
}

// The control: a write deadline that outlives the upgrade is caught.
func TestHTTPServerDeadlineCheckCatchesALeftoverDeadline(t *testing.T) {
	t.Parallel()
	err := websocketUnderHTTPTimeouts(t, true).check()
	if err == nil || !strings.Contains(err.Error(), "still in force") {
		t.Fatalf("a write deadline was kept on the socket, and the check said %v", err)
	}
	t.Log(err)
}

func TestConcurrentSubscriptionEventsArriveIntact(t *testing.T) {
	t.Parallel()
	gql, srv := newServer(t, transport.Websocket{Implementation: wsgorilla.Implementation{}}, nil)
	c := initTransportWS(t, srv)

	const subscriptions, senders, perSender = 16, 8, 50
	for i := range subscriptions {
		send(t, c, wireMsg{ID: fmt.Sprint("s", i), Type: "subscribe", Payload: json.RawMessage(subscriptionQuery)})
	}
	// Each event wakes one of the subscriptions; they all write at once.
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for range perSender {
				gql.SendNextSubscriptionMessage()
			}
		})
	}

	got := 0
	for got < senders*perSender {
		m := expect(t, c, "next")
		if !strings.HasPrefix(m.ID, "s") || string(m.Payload) != `{"data":{"name":"test"}}` {
			t.Fatalf("garbled message %+v", m)
		}
		got++
	}
	wg.Wait()
}

// acceptDirect serves one websocket through the adapter alone and hands the
// server side of it to the test; the handler stays running until the test
// ends, as gqlgen's does while a connection lives.
func acceptDirect(tb testing.TB, impl wsgorilla.Implementation) (transport.WebsocketConn, *websocket.Conn) {
	tb.Helper()
	conns := make(chan transport.WebsocketConn, 1)
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := impl.Accept(w, r, transport.WebsocketAcceptOptions{
			ResponseHeader: http.Header{},
			Subprotocols:   []string{legacyWS, transportWS},
		})
		if err != nil {
			return
		}
		conns <- c
		<-done
	}))
	tb.Cleanup(srv.Close)
	tb.Cleanup(func() { close(done) })

	client := mustDial(tb, wsURL(srv), transportWS)
	select {
	case c := <-conns:
		tb.Cleanup(func() { _ = c.Close() })
		return c, client
	case <-time.After(readWait):
		tb.Fatal("server did not accept")
		return nil, nil
	}
}

func TestConcurrentWriteJSONIsSerialised(t *testing.T) {
	t.Parallel()
	server, client := acceptDirect(t, wsgorilla.Implementation{})

	const writers, perWriter = 32, 64
	type event struct{ W, I int }
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				if err := server.WriteJSON(event{w, i}); err != nil {
					t.Errorf("WriteJSON: %v", err)
					return
				}
			}
		})
	}

	seen := map[event]bool{}
	_ = client.SetReadDeadline(time.Now().Add(readWait))
	for len(seen) < writers*perWriter {
		var e event
		if err := client.ReadJSON(&e); err != nil {
			t.Fatalf("after %d messages: %v", len(seen), err)
		}
		if seen[e] {
			t.Fatalf("duplicate message %+v", e)
		}
		seen[e] = true
	}
	wg.Wait()

	if err := server.WriteClose(websocket.CloseNormalClosure, "bye"); err != nil {
		t.Fatalf("WriteClose: %v", err)
	}
	if _, _, err := client.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Fatalf("client read %v, want close 1000", err)
	}
	if err := server.WriteJSON(event{}); !errors.Is(err, transport.ErrWebsocketClosed) {
		t.Fatalf("WriteJSON after close = %v, want ErrWebsocketClosed", err)
	}
}

func TestStuckPeerTimesOutWriteAndClosesConnection(t *testing.T) {
	t.Parallel()
	server, _ := acceptDirect(t, wsgorilla.Implementation{WriteTimeout: 200 * time.Millisecond})

	// gqlgen's read loop, blocked in NextReader as on any quiet connection.
	readErr := make(chan error, 1)
	go func() {
		_, _, err := server.NextReader()
		readErr <- err
	}()

	// The client never reads: writes succeed until the socket buffers fill.
	chunk := strings.Repeat("x", 64<<10)
	start := time.Now()
	var err error
	for err == nil && time.Since(start) < 20*time.Second {
		err = server.WriteJSON(chunk)
	}
	var netErr net.Error
	if !errors.As(err, &netErr) || !netErr.Timeout() {
		t.Fatalf("write error = %v, want a timeout", err)
	}

	select {
	case err := <-readErr:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("reader ended with %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("reader still blocked after the write timed out: connection not closed")
	}
}

func TestDeadPeerIsDroppedByPingPong(t *testing.T) {
	t.Parallel()
	const interval = 100 * time.Millisecond

	t.Run("peer that stops answering pings is closed after two intervals", func(t *testing.T) {
		t.Parallel()
		ev := newEvents()
		_, srv := newServer(t, transport.Websocket{
			Implementation:   wsgorilla.Implementation{},
			PingPongInterval: interval,
			ErrorFunc:        ev.errorFunc,
			CloseFunc:        ev.closeFunc,
		}, nil)
		c := initTransportWS(t, srv)
		start := time.Now()

		ce, seen := readUntilClose(t, c, 20*interval)
		elapsed := time.Since(start)
		if elapsed < interval || elapsed > 10*interval {
			t.Fatalf("closed after %v, want about %v", elapsed, 2*interval)
		}
		if len(seen) == 0 || seen[0].Type != "ping" {
			t.Fatalf("messages before close = %v, want pings", seen)
		}
		if ce.Code != websocket.CloseNormalClosure {
			t.Fatalf("close code = %d, want 1000", ce.Code)
		}
		ev.waitClose(t)
		errs := ev.errors()
		var netErr net.Error
		if len(errs) == 0 || !errors.As(errs[0], &netErr) || !netErr.Timeout() {
			t.Fatalf("ErrorFunc got %v, want a read timeout first", errs)
		}
		// A ping gqlgen was about to write when the read timed out may
		// report the closed connection too; nothing else may follow.
		for _, err := range errs[1:] {
			if !errors.Is(err, transport.ErrWebsocketClosed) {
				t.Fatalf("ErrorFunc got %v after the read timeout, want only writes to the closed connection", errs)
			}
		}
	})

	t.Run("peer that answers pings stays connected", func(t *testing.T) {
		t.Parallel()
		_, srv := newServer(t, transport.Websocket{
			Implementation:   wsgorilla.Implementation{},
			PingPongInterval: interval,
		}, nil)
		c := initTransportWS(t, srv)

		pings := 0
		for until := time.Now().Add(10 * interval); time.Now().Before(until); {
			m := read(t, c)
			if m.Type == "ping" {
				pings++
				send(t, c, wireMsg{Type: "pong"})
			}
		}
		send(t, c, wireMsg{Type: "ping"})
		for expect := true; expect; {
			m := read(t, c)
			expect = m.Type != "pong"
		}
		if pings < 5 {
			t.Fatalf("answered %d pings in %v, want about 10", pings, 10*interval)
		}
	})
}

func TestPeerCloseReporting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		close     func(*websocket.Conn) error
		wantError func(error) bool // nil: ErrorFunc must not be called
	}{
		{"normal closure is not an error", closeWith(websocket.CloseNormalClosure), nil},
		{"going away is not an error", closeWith(websocket.CloseGoingAway), nil},
		{"close without status is not an error", func(c *websocket.Conn) error {
			return c.WriteControl(websocket.CloseMessage, nil, time.Now().Add(time.Second))
		}, nil},
		{"application close code is reported", closeWith(4000), func(err error) bool {
			return closeCodeOf(err) == 4000
		}},
		{"dropped TCP connection is reported as 1006", func(c *websocket.Conn) error {
			return c.NetConn().Close()
		}, func(err error) bool {
			return closeCodeOf(err) == websocket.CloseAbnormalClosure
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev := newEvents()
			_, srv := newServer(t, transport.Websocket{
				Implementation: wsgorilla.Implementation{},
				ErrorFunc:      ev.errorFunc,
				CloseFunc:      ev.closeFunc,
			}, nil)
			c := initTransportWS(t, srv)

			if err := tt.close(c); err != nil {
				t.Fatalf("close: %v", err)
			}
			// gqlgen reports the code it closed with, not the peer's.
			if code := ev.waitClose(t); code != websocket.CloseNormalClosure {
				t.Fatalf("CloseFunc code = %d, want 1000", code)
			}
			errs := ev.errors()
			if tt.wantError == nil {
				if len(errs) != 0 {
					t.Fatalf("ErrorFunc got %v, want nothing", errs)
				}
				return
			}
			var wsErr transport.WebsocketError
			if len(errs) != 1 || !tt.wantError(errs[0]) || !errors.As(errs[0], &wsErr) || !wsErr.IsReadError {
				t.Fatalf("ErrorFunc got %v", errs)
			}
		})
	}
}

// closeCodeOf digs the peer's close code out of an ErrorFunc error;
// websocket.IsCloseError does not unwrap, so it never matches there.
func closeCodeOf(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

func closeWith(code int) func(*websocket.Conn) error {
	return func(c *websocket.Conn) error {
		return c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, "bye"), time.Now().Add(time.Second))
	}
}

func TestInitFuncRejection(t *testing.T) {
	t.Parallel()
	forbidden := func(reason string) transport.WebsocketInitFunc {
		return func(ctx context.Context, _ transport.InitPayload) (context.Context, *transport.InitPayload, error) {
			ctx = transport.WithWebsocketCloseCode(ctx, 4403)
			if reason != "" {
				ctx = transport.AppendCloseReason(ctx, reason)
			}
			return ctx, nil, errors.New("token expired")
		}
	}
	longReason := strings.Repeat("é", 100) // 200 bytes

	tests := []struct {
		name       string
		initFunc   transport.WebsocketInitFunc
		protocol   string
		wantCode   int
		wantReason string
		wantMsgs   []wireMsg
	}{
		{
			name:       "graphql-transport-ws closes with the context's code and reason only",
			initFunc:   forbidden("Forbidden"),
			protocol:   transportWS,
			wantCode:   4403,
			wantReason: "Forbidden",
		},
		{
			name:       "graphql-ws sends connection_error with the error text, then closes",
			initFunc:   forbidden("Forbidden"),
			protocol:   legacyWS,
			wantCode:   4403,
			wantReason: "Forbidden",
			wantMsgs:   []wireMsg{{Type: "connection_error", Payload: json.RawMessage(`{"message":"token expired"}`)}},
		},
		{
			name: "without a close code in the context the close is a normal 1000",
			initFunc: func(ctx context.Context, _ transport.InitPayload) (context.Context, *transport.InitPayload, error) {
				return ctx, nil, errors.New("token expired")
			},
			protocol:   transportWS,
			wantCode:   websocket.CloseNormalClosure,
			wantReason: "terminated",
		},
		{
			name:       "a reason longer than a close frame holds is cut between runes",
			initFunc:   forbidden(longReason),
			protocol:   transportWS,
			wantCode:   4403,
			wantReason: longReason[:122], // 61 two-byte runes: 123 would split one
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev := newEvents()
			_, srv := newServer(t, transport.Websocket{
				Implementation: wsgorilla.Implementation{},
				InitFunc:       tt.initFunc,
				ErrorFunc:      ev.errorFunc,
				CloseFunc:      ev.closeFunc,
			}, nil)
			c := mustDial(t, wsURL(srv), tt.protocol)
			send(t, c, wireMsg{Type: "connection_init", Payload: json.RawMessage(`{"Authorization":"Bearer x"}`)})

			ce, seen := readUntilClose(t, c, readWait)
			if ce.Code != tt.wantCode || ce.Text != tt.wantReason || !utf8.ValidString(ce.Text) {
				t.Fatalf("close = %d %q, want %d %q", ce.Code, ce.Text, tt.wantCode, tt.wantReason)
			}
			if len(seen) != len(tt.wantMsgs) {
				t.Fatalf("messages before close = %+v, want %+v", seen, tt.wantMsgs)
			}
			for i := range seen {
				if seen[i].Type != tt.wantMsgs[i].Type || string(seen[i].Payload) != string(tt.wantMsgs[i].Payload) {
					t.Fatalf("message %d = %+v, want %+v", i, seen[i], tt.wantMsgs[i])
				}
			}
			if code := ev.waitClose(t); code != tt.wantCode {
				t.Fatalf("CloseFunc code = %d, want %d", code, tt.wantCode)
			}
			if errs := ev.errors(); len(errs) != 0 {
				t.Fatalf("ErrorFunc got %v, want nothing", errs)
			}
		})
	}
}

func TestConnectionAbandonedByGqlgenIsClosed(t *testing.T) {
	t.Parallel()
	ev := newEvents()
	_, srv := newServer(t, transport.Websocket{
		Implementation: wsgorilla.Implementation{WriteTimeout: 200 * time.Millisecond},
		CloseFunc:      ev.closeFunc,
	}, nil)
	c := mustDial(t, wsURL(srv), transportWS)

	// Valid JSON but not an object: gqlgen's handler returns without closing
	// the socket or calling CloseFunc.
	send(t, c, wireMsg{Type: "connection_init", Payload: json.RawMessage(`[1]`)})
	ce, seen := readUntilClose(t, c, 3*time.Second)
	if ce.Code != websocket.CloseProtocolError || len(seen) != 0 {
		t.Fatalf("close = %d after %v, want 1002 and no messages", ce.Code, seen)
	}
	select {
	case code := <-ev.closeCodes:
		t.Fatalf("CloseFunc called with %d; gqlgen no longer abandons this connection, revisit the adapter's safety net", code)
	default:
	}
}

func TestUpgradeResponseKeepsMiddlewareHeaders(t *testing.T) {
	t.Parallel()
	gql := testserver.New()
	gql.AddTransport(transport.Websocket{Implementation: wsgorilla.Implementation{}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", "req-42")
		w.Header().Set("Sec-Websocket-Protocol", "must-not-leak")
		gql.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	c, resp, err := dial(t, wsURL(srv), nil, transportWS)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if got := resp.Header.Get("X-Request-Id"); got != "req-42" {
		t.Fatalf("X-Request-Id = %q, want req-42", got)
	}
	if got := resp.Header.Values("Sec-Websocket-Protocol"); len(got) != 1 || got[0] != transportWS {
		t.Fatalf("Sec-Websocket-Protocol = %q, want only %q", got, transportWS)
	}
	send(t, c, wireMsg{Type: "connection_init"})
	expect(t, c, "connection_ack")
}

func TestCompressionIsNegotiated(t *testing.T) {
	t.Parallel()
	_, srv := newServer(t, transport.Websocket{Implementation: wsgorilla.Implementation{EnableCompression: true}}, nil)

	d := websocket.Dialer{Subprotocols: []string{transportWS}, EnableCompression: true, HandshakeTimeout: readWait}
	c, resp, err := d.Dial(wsURL(srv), nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if got := resp.Header.Get("Sec-Websocket-Extensions"); !strings.Contains(got, "permessage-deflate") {
		t.Fatalf("Sec-Websocket-Extensions = %q, want permessage-deflate", got)
	}

	send(t, c, wireMsg{Type: "connection_init"})
	expect(t, c, "connection_ack") // small: sent uncompressed
	big := json.RawMessage(`"` + strings.Repeat("compressible ", 200) + `"`)
	send(t, c, wireMsg{Type: "ping", Payload: big})
	if pong := expect(t, c, "pong"); string(pong.Payload) != string(big) { // large: sent compressed
		t.Fatalf("pong payload of %d bytes, want %d", len(pong.Payload), len(big))
	}
}

func quietLog() *log.Logger { return log.New(io.Discard, "", 0) }
