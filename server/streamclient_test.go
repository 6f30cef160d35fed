package server_test

// A small GraphQL-over-websocket client for the stream tests. It speaks both
// subprotocols gqlgen serves, graphql-transport-ws and the legacy graphql-ws,
// over a real gorilla/websocket connection, and lets a test stop reading
// from the socket altogether (to play a slow subscriber).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

const (
	protoTransportWS = "graphql-transport-ws"
	protoLegacyWS    = "graphql-ws"
)

// streamProtocols are the subprotocols every stream test runs with.
var streamProtocols = []string{protoTransportWS, protoLegacyWS}

// wsMessage is one message of either subprotocol.
type wsMessage struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// wsFrame is what the reader hands over: a message, or the error that ended
// the connection, with the time it was read.
type wsFrame struct {
	msg wsMessage
	err error
	at  time.Time
}

// errNoMessage is returned by streamClient.read when nothing arrived in time.
var errNoMessage = errors.New("no message within the timeout")

// streamClient is one websocket connection to /graphql.
//
// A reader goroutine reads the socket and hands each message over a
// channel (unbuffered by default), so a test that stops calling read also
// stops the reading of the socket: the server's writes then back up in the
// TCP buffers as they would for a stalled phone.
type streamClient struct {
	tb     testing.TB
	proto  string
	conn   *websocket.Conn
	frames chan wsFrame
	done   chan struct{}

	writeMu sync.Mutex
	ended   error // the error that ended the connection, once read
}

// streamDialOptions adjust a connection.
type streamDialOptions struct {
	header http.Header // extra upgrade request headers (Origin, Authorization)
	// readBuffer, if set, is the client socket's SO_RCVBUF, so that a
	// client that stops reading backs the server up sooner (Linux autotunes
	// it up to tcp_rmem's maximum otherwise). Keep it well above the
	// loopback MSS (64 KiB): with less, a window that closed reopens only
	// through zero-window probes, seconds apart, once the client reads again.
	readBuffer int
	// readAhead is how many messages the reader may hold for the test
	// before it stops reading the socket (default 0: one).
	readAhead int
}

// dialStream opens a websocket to base (http://host:port) with the
// subprotocol proto. It returns the handshake's response too, for refused
// upgrades.
func dialStream(tb testing.TB, base, proto string, opts streamDialOptions) (*streamClient, *http.Response, error) {
	tb.Helper()
	dialer := websocket.Dialer{
		Subprotocols:     []string{proto},
		HandshakeTimeout: 5 * time.Second,
	}
	if opts.readBuffer > 0 {
		dialer.ReadBufferSize = opts.readBuffer
		dialer.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if tcp, ok := c.(*net.TCPConn); ok {
				if err := tcp.SetReadBuffer(opts.readBuffer); err != nil {
					_ = c.Close()
					return nil, err
				}
			}
			return c, nil
		}
	}
	url := "ws" + strings.TrimPrefix(base, "http") + "/graphql"
	conn, resp, err := dialer.Dial(url, opts.header)
	if err != nil {
		return nil, resp, err
	}
	if got := conn.Subprotocol(); got != proto {
		_ = conn.Close()
		tb.Fatalf("negotiated subprotocol %q, want %q", got, proto)
	}
	c := &streamClient{tb: tb, proto: proto, conn: conn, frames: make(chan wsFrame, opts.readAhead), done: make(chan struct{})}
	go c.readLoop()
	tb.Cleanup(func() {
		close(c.done)
		_ = conn.Close()
	})
	return c, resp, nil
}

// connectStream dials, sends connection_init with payload (nil for none)
// and waits for connection_ack.
func connectStream(tb testing.TB, base, proto string, payload any) *streamClient {
	tb.Helper()
	c, _, err := dialStream(tb, base, proto, streamDialOptions{})
	if err != nil {
		tb.Fatalf("dial %s: %v", proto, err)
	}
	c.init(payload)
	c.expectAck()
	return c
}

func (c *streamClient) readLoop() {
	for {
		_, data, err := c.conn.ReadMessage()
		f := wsFrame{err: err, at: time.Now()}
		if err == nil {
			if jerr := json.Unmarshal(data, &f.msg); jerr != nil {
				f.err = fmt.Errorf("message is not JSON: %v: %.200s", jerr, data)
			}
		}
		select {
		case c.frames <- f:
		case <-c.done:
			return
		}
		if f.err != nil {
			return
		}
	}
}

func (c *streamClient) send(m wsMessage) {
	c.tb.Helper()
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := c.conn.WriteJSON(m); err != nil {
		c.tb.Fatalf("send %s: %v", m.Type, err)
	}
}

// init sends connection_init; payload nil sends none.
func (c *streamClient) init(payload any) {
	c.tb.Helper()
	m := wsMessage{Type: "connection_init"}
	if payload != nil {
		b, err := json.Marshal(payload)
		if err != nil {
			c.tb.Fatal(err)
		}
		m.Payload = b
	}
	c.send(m)
}

func (c *streamClient) expectAck() {
	c.tb.Helper()
	m, err := c.read(5 * time.Second)
	if err != nil {
		c.tb.Fatalf("waiting for connection_ack: %v", err)
	}
	if m.Type != "connection_ack" {
		c.tb.Fatalf("got %s %s, want connection_ack", m.Type, m.Payload)
	}
}

// subscribe starts an operation: `subscribe` in graphql-transport-ws,
// `start` in graphql-ws.
func (c *streamClient) subscribe(id, query string, vars map[string]any) {
	c.tb.Helper()
	payload, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		c.tb.Fatal(err)
	}
	typ := "subscribe"
	if c.proto == protoLegacyWS {
		typ = "start"
	}
	c.send(wsMessage{ID: id, Type: typ, Payload: payload})
}

// stop ends an operation from the client side: `complete` in
// graphql-transport-ws, `stop` in graphql-ws.
func (c *streamClient) stop(id string) {
	c.tb.Helper()
	typ := "complete"
	if c.proto == protoLegacyWS {
		typ = "stop"
	}
	c.send(wsMessage{ID: id, Type: typ})
}

// dataType is the type of a result message in the client's subprotocol.
func (c *streamClient) dataType() string {
	if c.proto == protoLegacyWS {
		return "data"
	}
	return "next"
}

// readFrame returns the next message with the time it arrived. Keep-alives
// (ka, pong) are skipped and pings answered. Once the connection has ended,
// every call returns the error that ended it; errNoMessage means nothing
// arrived within timeout (and the connection is still usable).
func (c *streamClient) readFrame(timeout time.Duration) (wsMessage, time.Time, error) {
	if c.ended != nil {
		return wsMessage{}, time.Time{}, c.ended
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case f := <-c.frames:
			if f.err != nil {
				c.ended = f.err
				return wsMessage{}, f.at, f.err
			}
			switch f.msg.Type {
			case "ka", "pong":
				continue
			case "ping":
				c.send(wsMessage{Type: "pong"})
				continue
			}
			return f.msg, f.at, nil
		case <-timer.C:
			return wsMessage{}, time.Time{}, errNoMessage
		}
	}
}

func (c *streamClient) read(timeout time.Duration) (wsMessage, error) {
	m, _, err := c.readFrame(timeout)
	return m, err
}

// closeCode reads until the connection ends and returns its close error
// and every message that came before it. It fails the test if the
// connection is still open after timeout or ends without a close status.
func (c *streamClient) closeCode(timeout time.Duration) (*websocket.CloseError, []wsMessage) {
	c.tb.Helper()
	ce, before, err := c.waitClose(timeout)
	if err != nil {
		c.tb.Fatal(err)
	}
	return ce, before
}

// waitClose is closeCode for goroutines other than the test's: it returns
// what went wrong instead of failing the test.
func (c *streamClient) waitClose(timeout time.Duration) (*websocket.CloseError, []wsMessage, error) {
	deadline := time.Now().Add(timeout)
	var before []wsMessage
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, before, fmt.Errorf("connection still open after %v; messages meanwhile: %s", timeout, describeMessages(before))
		}
		m, err := c.read(left)
		if errors.Is(err, errNoMessage) {
			continue
		}
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				return nil, before, fmt.Errorf("connection ended with %v, not a close", err)
			}
			return ce, before, nil
		}
		before = append(before, m)
	}
}

// describeMessages lists messages briefly, for failure output.
func describeMessages(ms []wsMessage) string {
	if len(ms) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, m := range ms {
		if i == 10 {
			fmt.Fprintf(&b, "\n  … %d more", len(ms)-i)
			break
		}
		fmt.Fprintf(&b, "\n  %s id=%q %.120s", m.Type, m.ID, m.Payload)
	}
	return b.String()
}

// wireError is one GraphQL error as a websocket client reads it.
type wireError struct {
	Message    string         `json:"message"`
	Extensions map[string]any `json:"extensions"`
}

func (e wireError) code() string { s, _ := e.Extensions["code"].(string); return s }

// result is the payload of a next/data message.
type result struct {
	Data   json.RawMessage `json:"data"`
	Errors []wireError     `json:"errors"`
}

func decodeResult(tb testing.TB, m wsMessage) result {
	tb.Helper()
	var r result
	if err := json.Unmarshal(m.Payload, &r); err != nil {
		tb.Fatalf("%s payload is not a GraphQL result: %v: %s", m.Type, err, m.Payload)
	}
	return r
}

// hasData reports whether a result carries data (absent and null do not).
func (r result) hasData() bool { return len(r.Data) > 0 && string(r.Data) != "null" }
