// Package wsgorilla lets gqlgen's websocket transport run over
// github.com/gorilla/websocket.
//
// gqlgen (since v0.17.92) talks to websockets only through
// transport.WebsocketImplementation. This package provides that
// implementation for gorilla, keeping the semantics of gqlgen's own coder
// adapter (a normal close is reported as transport.ErrWebsocketClosed, read
// limits and read deadlines are enforced) and adding what a long-lived sync
// connection needs: bounded writes, small per-connection buffers and a socket
// that never outlives its handler.
//
// Wiring:
//
//	srv.AddTransport(transport.Websocket{
//		Implementation: wsgorilla.Implementation{
//			CheckOrigin: wsgorilla.OriginAllowList(cfg.AllowedOrigins),
//		},
//		PingPongInterval: 20 * time.Second,
//	})
package wsgorilla

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"
)

// Defaults applied when the matching Implementation field is zero.
const (
	DefaultReadBufferSize   = 1024
	DefaultWriteBufferSize  = 1024
	DefaultWriteTimeout     = 10 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
)

// graphqlTransportWS is the maintained GraphQL-over-websocket protocol; it is
// preferred when a client offers both, because only it carries the
// ping/pong that gqlgen's PingPongInterval uses to drop dead peers.
const graphqlTransportWS = "graphql-transport-ws"

// compressThreshold is the message size below which a negotiated
// permessage-deflate is skipped: deflating a 60-byte "next" costs CPU and
// usually makes it larger.
const compressThreshold = 512

// maxCloseReason is the most a close reason may take: a control frame carries
// at most 125 bytes, two of which are the close code.
const maxCloseReason = 123

// Implementation accepts websocket upgrades for gqlgen with gorilla/websocket.
//
// The zero value is ready to use: same-origin upgrades only, 1 KiB buffers,
// a shared write-buffer pool and a 10 s bound on every write.
type Implementation struct {
	// CheckOrigin decides cross-origin upgrades; nil = same-origin only
	// (gorilla's default). See OriginAllowList.
	CheckOrigin func(r *http.Request) bool

	// HandshakeTimeout bounds writing the 101 response; 0 means
	// DefaultHandshakeTimeout, a negative value means no bound.
	HandshakeTimeout time.Duration

	// ReadBufferSize and WriteBufferSize size the per-connection I/O buffers;
	// they do not limit message size (gqlgen's PayloadReadLimit does that).
	// 0 means DefaultReadBufferSize / DefaultWriteBufferSize: small, so that
	// thousands of idle connections cost little.
	ReadBufferSize, WriteBufferSize int

	// WriteBufferPool lends write buffers to connections only while they
	// write. nil means a process-wide pool per WriteBufferSize, so an idle
	// connection holds no write buffer.
	WriteBufferPool websocket.BufferPool

	// EnableCompression negotiates permessage-deflate when the client offers
	// it. Messages under 512 bytes are still sent uncompressed.
	EnableCompression bool

	// WriteTimeout bounds every write, so a peer that stops reading cannot
	// block a writer (and with it gqlgen's connection lock) forever. A write
	// that times out closes the connection. 0 means DefaultWriteTimeout, a
	// negative value means no bound.
	WriteTimeout time.Duration

	// InitTimeout is how long a connection may take to send connection_init
	// before it is closed with 4408 (CloseInitTimeout). gqlgen's own
	// InitTimeout closes with 1002, so leave that one zero. 0 means
	// DefaultInitTimeout, a negative value means no bound.
	InitTimeout time.Duration

	// MaxSubscriptions caps the subscriptions one connection runs at once;
	// one more is answered with an error whose extensions.code is
	// ErrorCodeTooManySubscriptions, and the others keep running. 0 means
	// DefaultMaxSubscriptions, a negative value means no cap.
	MaxSubscriptions int

	// IdleTimeout closes (CloseIdle) a connection that runs no subscription
	// and has sent nothing but pings and pongs for this long. 0: no timeout.
	IdleTimeout time.Duration

	// MaxLifetime closes (CloseLifetime) a connection after this long, less
	// up to a fifth at random so that connections opened together do not
	// reconnect together. 0: no limit.
	MaxLifetime time.Duration

	// OnAccept, if set, sees every accepted connection with its request,
	// so the server can close it later with a code of its own choosing
	// (gqlgen itself only closes with 1000 when a connection's context ends).
	OnAccept func(r *http.Request, c transport.WebsocketConn)
}

var _ transport.WebsocketImplementation = Implementation{}

// Accept upgrades r to a websocket and returns it as a gqlgen connection.
//
// On a refused upgrade (bad origin, not a websocket handshake) Accept has
// already written the HTTP error (403, 400, ...) with a JSON body in gqlgen's
// error format; the error gqlgen then tries to write is discarded.
func (i Implementation) Accept(w http.ResponseWriter, r *http.Request, opts transport.WebsocketAcceptOptions) (transport.WebsocketConn, error) {
	writeTimeout := durationOr(i.WriteTimeout, DefaultWriteTimeout)
	upgrader := websocket.Upgrader{
		HandshakeTimeout:  durationOr(i.HandshakeTimeout, DefaultHandshakeTimeout),
		ReadBufferSize:    sizeOr(i.ReadBufferSize, DefaultReadBufferSize),
		WriteBufferSize:   sizeOr(i.WriteBufferSize, DefaultWriteBufferSize),
		WriteBufferPool:   i.WriteBufferPool,
		Subprotocols:      preferredSubprotocols(opts.Subprotocols),
		CheckOrigin:       i.CheckOrigin,
		EnableCompression: i.EnableCompression,
	}
	if upgrader.WriteBufferPool == nil {
		upgrader.WriteBufferPool = sharedWriteBufferPool(upgrader.WriteBufferSize)
	}
	refused := 0
	upgrader.Error = func(w http.ResponseWriter, r *http.Request, status int, reason error) {
		refused = status
		writeHandshakeError(w, r, status, reason)
	}

	ws, err := upgrader.Upgrade(w, r, upgradeResponseHeader(w.Header(), opts.ResponseHeader))
	if err != nil {
		if refused != 0 {
			return nil, &HandshakeError{Status: refused, Err: err}
		}
		return nil, err
	}
	// The http.Server's ReadTimeout/WriteTimeout deadlines must not reach a
	// connection meant to live for hours. net/http and gorilla both clear them
	// on hijack today; clearing here keeps that true whatever sits in between.
	if err := ws.NetConn().SetDeadline(time.Time{}); err != nil {
		_ = ws.Close()
		return nil, err
	}

	c := &conn{ws: ws, writeTimeout: writeTimeout}
	c.guard = newGuard(c, i.guardLimits())
	// gqlgen keeps a connection only while its handler runs, and on a few
	// paths (a connection_init whose payload is not an object) returns
	// without closing it. The request context ends when the handler returns,
	// so close anything still open then, after giving gqlgen's own teardown
	// one write's time to send its close frame.
	grace := writeTimeout
	if grace <= 0 {
		grace = DefaultWriteTimeout
	}
	c.stopWatch = context.AfterFunc(r.Context(), func() {
		if c.closed.Load() {
			return
		}
		time.AfterFunc(grace, c.closeAbandoned)
	})
	if i.OnAccept != nil {
		i.OnAccept(r, c)
	}
	return c, nil
}

// conn adapts *websocket.Conn to gqlgen's WebsocketConn, WebsocketReadLimiter
// and WebsocketReadDeadliner.
//
// gorilla allows one concurrent reader and one concurrent writer. gqlgen reads
// from one goroutine, and today also serialises its writes under its own
// mutex, but that is not part of the WebsocketConn contract: writeMu makes
// concurrent WriteJSON calls safe regardless. Close and the control frames
// written by WriteClose are safe concurrently in gorilla itself.
type conn struct {
	ws           *websocket.Conn
	writeTimeout time.Duration
	writeMu      sync.Mutex
	closed       atomic.Bool
	stopWatch    func() bool
	guard        *guard
}

var (
	_ transport.WebsocketConn          = (*conn)(nil)
	_ transport.WebsocketReadLimiter   = (*conn)(nil)
	_ transport.WebsocketReadDeadliner = (*conn)(nil)
)

// NextReader returns the next data message. A close by the peer with 1000
// (normal), 1001 (going away: a tab closed or navigated) or without a status
// is reported as transport.ErrWebsocketClosed, which gqlgen treats as a clean
// end rather than handing it to ErrorFunc. Other close codes come back as
// *websocket.CloseError, a missed read deadline as a net.Error with
// Timeout() true, an oversized message as websocket.ErrReadLimit (gorilla
// has then already sent close 1009 to the peer).
//
// Each message is read whole and checked against the protocol limits
// (see guard) before gqlgen sees it. A message that breaks one closes the
// connection with its own code, and NextReader then reports
// transport.ErrWebsocketClosed.
//
// The loop sits here rather than in a helper: a connection spends its life
// blocked in this call, and every frame above the read adds to the stack
// each idle connection keeps.
func (c *conn) NextReader() (int, io.Reader, error) {
	for {
		messageType, r, err := c.ws.NextReader()
		if err != nil {
			return messageType, nil, c.readError(err)
		}
		data, err := io.ReadAll(r)
		if err != nil {
			return messageType, nil, c.readError(err)
		}
		switch c.guard.incoming(data) {
		case pass:
			return messageType, bytes.NewReader(data), nil
		case closed:
			return messageType, nil, transport.ErrWebsocketClosed
		}
	}
}

func (c *conn) readError(err error) error {
	if websocket.IsCloseError(err,
		websocket.CloseNormalClosure,
		websocket.CloseGoingAway,
		websocket.CloseNoStatusReceived,
	) {
		return transport.ErrWebsocketClosed
	}
	return err
}

// WriteJSON sends v as one text message within the write timeout. Once the
// connection is closing (a close frame went out, or the socket is closed) it
// returns transport.ErrWebsocketClosed, so an ErrorFunc can tell late writes
// of a finished connection from real failures. Any other write error leaves
// gorilla's writer unusable, so the socket is closed, which also ends
// gqlgen's read loop and with it the connection.
func (c *conn) WriteJSON(v any) error {
	c.guard.outgoing(messageTypeAndID(v))
	return c.write(v)
}

func (c *conn) write(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}

	c.writeMu.Lock()
	defer c.writeMu.Unlock()

	c.ws.EnableWriteCompression(len(data) >= compressThreshold)
	if err := c.ws.SetWriteDeadline(c.deadline()); err != nil {
		return err
	}
	err = c.ws.WriteMessage(websocket.TextMessage, data)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, websocket.ErrCloseSent), errors.Is(err, net.ErrClosed):
		return transport.ErrWebsocketClosed
	default:
		_ = c.ws.Close()
		return err
	}
}

// WriteClose sends a close frame with closeCode and message, the message cut
// to the 123 bytes a close frame can carry (gorilla would otherwise refuse
// the whole frame). A close frame already sent, by gqlgen or by gorilla
// itself (1009 for an oversized message, the echo of a peer's close), is not
// an error: the peer has its close code.
//
// gqlgen's own init timeout (transport.Websocket.InitTimeout) closes with
// 1002; it is sent as 4408, the code graphql-transport-ws gives it.
func (c *conn) WriteClose(closeCode int, message string) error {
	if closeCode == transport.WebsocketCloseProtocolError && message == "connection initialisation timeout" {
		closeCode, message = CloseInitTimeout, "Connection initialisation timeout"
	}
	payload := websocket.FormatCloseMessage(closeCode, closeReason(message))
	err := c.ws.WriteControl(websocket.CloseMessage, payload, c.deadline())
	if errors.Is(err, websocket.ErrCloseSent) {
		return nil
	}
	return err
}

// Close closes the socket without a close handshake; gqlgen calls WriteClose
// first when it has something to say.
func (c *conn) Close() error {
	c.closed.Store(true)
	c.stopWatch()
	c.guard.stop()
	if err := c.ws.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// Subprotocol returns the negotiated subprotocol, "" when none was.
func (c *conn) Subprotocol() string { return c.ws.Subprotocol() }

// SetReadLimit caps the size of one incoming message. gqlgen sets it from
// PayloadReadLimit (1 MiB by default) before reading anything.
func (c *conn) SetReadLimit(limit int64) { c.ws.SetReadLimit(limit) }

// SetReadDeadline is how gqlgen's PingPongInterval drops a peer that stops
// answering pings; the zero time clears it. After a missed deadline the
// connection cannot be read again, which is what gqlgen expects.
func (c *conn) SetReadDeadline(t time.Time) error { return c.ws.SetReadDeadline(t) }

func (c *conn) deadline() time.Time {
	if c.writeTimeout <= 0 {
		return time.Time{}
	}
	return time.Now().Add(c.writeTimeout)
}

// closeWith closes the connection with a code and reason of the guard's;
// gqlgen's read loop then ends with the socket.
func (c *conn) closeWith(code int, reason string) {
	if c.closed.Load() {
		return
	}
	_ = c.WriteClose(code, reason)
	_ = c.Close()
}

func (c *conn) isClosed() bool { return c.closed.Load() }

// closeAbandoned closes a connection gqlgen left open when its handler
// returned. The one known cause is a connection_init payload that is valid
// JSON but not an object, so the close code is a protocol error.
func (c *conn) closeAbandoned() {
	if c.closed.Load() {
		return
	}
	_ = c.WriteClose(transport.WebsocketCloseProtocolError, "invalid message")
	_ = c.Close()
}

// preferredSubprotocols orders gqlgen's subprotocols for gorilla, which picks
// the first one in this list that the client offers.
func preferredSubprotocols(offered []string) []string {
	out := make([]string, 0, len(offered))
	if containsString(offered, graphqlTransportWS) {
		out = append(out, graphqlTransportWS)
	}
	for _, p := range offered {
		if !containsString(out, p) {
			out = append(out, p)
		}
	}
	return out
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// handshakeHeaders are written by gorilla itself (or must not appear in a 101
// response); copies from elsewhere would duplicate or contradict them, and
// gorilla refuses to upgrade when Sec-Websocket-Extensions is passed in.
var handshakeHeaders = map[string]bool{
	"Connection":               true,
	"Content-Length":           true,
	"Sec-Websocket-Accept":     true,
	"Sec-Websocket-Extensions": true,
	"Sec-Websocket-Protocol":   true,
	"Transfer-Encoding":        true,
	"Upgrade":                  true,
}

// upgradeResponseHeader merges the headers that middleware already set on w
// (cookies, CORS, request ids) with gqlgen's ResponseHeader. gorilla writes
// the 101 response straight to the hijacked socket and would otherwise drop
// w.Header(), unlike gqlgen's default coder adapter.
func upgradeResponseHeader(fromWriter, fromGqlgen http.Header) http.Header {
	h := http.Header{}
	for _, src := range []http.Header{fromWriter, fromGqlgen} {
		for k, vs := range src {
			k = http.CanonicalHeaderKey(k)
			if handshakeHeaders[k] {
				continue
			}
			h[k] = append(h[k], vs...)
		}
	}
	return h
}

// HandshakeError is the error of an upgrade Accept refused: it has already
// answered the request with Status (403 for an origin CheckOrigin refused,
// 400 for a request that is not a websocket handshake). gqlgen's transport
// would print it with the standard logger and try to answer again; callers
// that log through slog accept the upgrade themselves first (see server's
// loggedUpgrades).
type HandshakeError struct {
	Status int
	Err    error
}

func (e *HandshakeError) Error() string { return e.Err.Error() }
func (e *HandshakeError) Unwrap() error { return e.Err }

// writeHandshakeError answers a refused upgrade in gqlgen's error format.
// Should gqlgen write its own 400 "unable to upgrade" after Accept fails,
// Content-Length set here makes net/http reject that second body instead
// of appending it to this one.
func writeHandshakeError(w http.ResponseWriter, _ *http.Request, status int, reason error) {
	body, err := json.Marshal(map[string]any{
		"errors": []map[string]string{{"message": reason.Error()}},
	})
	if err != nil {
		body = []byte(`{"errors":[{"message":"websocket upgrade refused"}]}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Sec-Websocket-Version", "13")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// closeReason makes message fit a close frame: valid UTF-8 (peers reject
// anything else) of at most maxCloseReason bytes, cut between runes.
func closeReason(message string) string {
	message = strings.ToValidUTF8(message, "")
	if len(message) <= maxCloseReason {
		return message
	}
	cut := maxCloseReason
	for cut > 0 && !utf8.RuneStart(message[cut]) {
		cut--
	}
	return message[:cut]
}

var writeBufferPools sync.Map // int (WriteBufferSize) -> *sync.Pool

// sharedWriteBufferPool returns the process-wide pool for one buffer size;
// gorilla expects every buffer in a pool to have the same size.
func sharedWriteBufferPool(size int) websocket.BufferPool {
	if p, ok := writeBufferPools.Load(size); ok {
		return p.(*sync.Pool)
	}
	p, _ := writeBufferPools.LoadOrStore(size, &sync.Pool{})
	return p.(*sync.Pool)
}

func durationOr(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	default:
		return d
	}
}

func sizeOr(n, def int) int {
	if n <= 0 {
		return def
	}
	return n
}
