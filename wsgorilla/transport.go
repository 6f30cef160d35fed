package wsgorilla

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/tidemark/tidemark/livesync"
)

// Transport is a gqlgen transport for GraphQL over websockets, on gorilla,
// that speaks graphql-transport-ws and the legacy graphql-ws
// (subscriptions-transport-ws) as gqlgen's transport.Websocket does, with
// the limits of Implementation, and costs an idle connection little:
//
//   - The HTTP handler returns once the connection is upgraded, so net/http
//     keeps neither its goroutine nor its buffers; one goroutine reads.
//   - Pings, keep-alives and every timeout are time.AfterFunc timers.
//   - Writes go through a per-connection queue drained by a goroutine that
//     exists only while there is something to write, and each drain sends
//     everything queued in one write (batchConn).
//   - A stream subscription (one whose resolver takes the livesync.Sink put
//     in its context) has no goroutine at all: the hub calls the sink, the
//     event is queued, and the writer executes the subscription's selection
//     for it once per (event, StreamKey): every subscriber with the same key
//     gets the same payload bytes in its own envelope (Event.Encoded).
//
// Queries, mutations and other subscriptions run through gqlgen's executor
// as they do in transport.Websocket. Unlike there, an operation's
// OperationContext.Headers is nil: nothing here reads the upgrade request's
// headers after the upgrade, and keeping them would cost every idle
// connection a kilobyte or more.
type Transport struct {
	// Implementation holds the upgrade settings and the protocol limits
	// (init timeout, subscriptions per connection, idle timeout, lifetime).
	// Its OnAccept is not called; see OnUpgrade.
	Implementation

	InitFunc  transport.WebsocketInitFunc
	ErrorFunc transport.WebsocketErrorFunc
	// PingPongInterval: graphql-transport-ws pings this often, and drops a
	// peer that sends no pong for two intervals. 0: no pings.
	PingPongInterval time.Duration
	// KeepAlivePingInterval: graphql-ws sends "ka" this often. 0: none.
	KeepAlivePingInterval time.Duration
	// ReadLimit bounds one incoming message (0: 1 MiB, negative: none);
	// a larger one closes the connection with 1009.
	ReadLimit int64
	// MaxQueuedEvents bounds the stream events queued for one connection
	// and not yet written (0: DefaultMaxQueuedEvents), and each
	// subscription's own buffer (livesync.Sink.Buffer) those of one
	// subscription. An event beyond either is
	// refused to the hub, which drops the subscriber and closes the
	// connection through its Disconnector: the client resyncs from its
	// checkpoint rather than miss anything. Negative: no bound.
	MaxQueuedEvents int

	// OnUpgrade, if set, sees every accepted connection with its upgrade
	// request; the function it returns, if any, is called once when the
	// connection has ended.
	OnUpgrade func(r *http.Request, c Closer) (ended func())
	// OnRefused, if set, hears of every upgrade refused (status 0 when no
	// HTTP answer could be given).
	OnRefused func(r *http.Request, status int, err error)
	// StreamKey names what a stream subscription's result depends on
	// besides its event: subscriptions with equal keys share each event's
	// execution and encoding. ok false: the subscription shares with none.
	StreamKey func(ctx context.Context, oc *graphql.OperationContext) (key string, ok bool)

	// executions holds the prepared executions of stream subscriptions,
	// one per (StreamKey, hub scope), shared by their subscribers.
	executionsMu sync.Mutex
	executions   map[executionKey]*execution
}

// executionKey: subscribers whose operations have the same StreamKey and
// whose events come from the same hub scope get the same bytes for every
// event, so one prepared execution serves them all.
type executionKey struct {
	key   string
	scope any
}

// execution is one stream subscription's prepared execution (its
// response handler over gqlgen's operation and execution contexts, and
// the sink that primes it), kept while any subscriber shares it. Only the
// first subscriber's is kept: a later one with the same key lets its own
// go once dispatched, which is most of what an idle subscription cost.
type execution struct {
	key       executionKey
	refs      int // under Transport.executionsMu
	shared    bool
	cancel    context.CancelFunc
	mu        sync.Mutex // one event at a time through the handler
	ended     bool       // under mu
	prime     *livesync.Sink
	responses graphql.ResponseHandler
	rctx      context.Context
}

// adopt returns the execution sub shares for key: an existing one (and
// sub's own is cancelled), or sub's own, kept for those that follow.
func (t *Transport) adopt(key executionKey, shared bool, sub *subscription, responses graphql.ResponseHandler, rctx context.Context) *execution {
	if !shared {
		key.key = fmt.Sprintf("\x00unshared %p", sub)
	}
	if shared {
		t.executionsMu.Lock()
		if e := t.executions[key]; e != nil {
			e.refs++
			t.executionsMu.Unlock()
			sub.cancel()
			sub.cancel = func() {} // its closure would keep the operation's context
			return e
		}
	}
	e := &execution{key: key, refs: 1, shared: shared, cancel: sub.cancel, prime: &sub.sink, responses: responses, rctx: rctx}
	sub.cancel = func() {} // the execution's now
	if shared {
		if t.executions == nil {
			t.executions = map[executionKey]*execution{}
		}
		t.executions[key] = e
		t.executionsMu.Unlock()
	}
	return e
}

// release lets go of one subscriber's share of e; the last one ends it.
func (t *Transport) release(e *execution) {
	if e.shared {
		t.executionsMu.Lock()
		e.refs--
		last := e.refs == 0
		if last && t.executions[e.key] == e {
			delete(t.executions, e.key)
		}
		t.executionsMu.Unlock()
		if !last {
			return
		}
	}
	e.mu.Lock()
	e.ended = true
	e.responses, e.rctx, e.prime = nil, nil, nil
	e.mu.Unlock()
	e.cancel()
}

// DefaultMaxQueuedEvents is the default of Transport.MaxQueuedEvents.
const DefaultMaxQueuedEvents = 256

// DefaultTransportReadBufferSize is a Transport's default ReadBufferSize:
// half of Implementation's, since every idle connection keeps its read
// buffer; a message larger than it is read in pieces.
const DefaultTransportReadBufferSize = 512

// defaultReadLimit is gqlgen's default PayloadReadLimit.
const defaultReadLimit = 1 << 20

// Closer closes a connection with a close code and reason, and returns once
// the close frame is written (within the write timeout) or the connection
// is gone.
type Closer interface {
	Close(code int, reason string)
}

var _ graphql.Transport = (*Transport)(nil)

// Supports claims upgrade requests, as gqlgen's transport does.
func (t *Transport) Supports(r *http.Request) bool { return r.Header.Get("Upgrade") != "" }

// hijacker hands gorilla the socket wrapped in a batchConn.
// With readSize set, it hands gorilla a read buffer of that size for the
// connection (br), so the reader can see whether a message waits there.
type hijacker struct {
	http.ResponseWriter
	bc       *batchConn
	readSize int
	br       *bufio.Reader
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.bc = &batchConn{Conn: nc}
	if h.readSize == 0 || brw.Reader.Buffered() > 0 {
		return h.bc, brw, nil // gorilla refuses the latter
	}
	h.br = bufio.NewReaderSize(h.bc, h.readSize)
	return h.bc, bufio.NewReadWriter(h.br, brw.Writer), nil
}

// parkThreshold: gorilla reuses a hijacked read buffer only when it holds
// more than 256 bytes.
const parkThreshold = 256

// Do upgrades the request and returns: the connection lives on in its
// reader goroutine.
func (t *Transport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	upgrader := websocket.Upgrader{
		HandshakeTimeout:  durationOr(t.HandshakeTimeout, DefaultHandshakeTimeout),
		ReadBufferSize:    sizeOr(t.ReadBufferSize, DefaultTransportReadBufferSize),
		WriteBufferSize:   sizeOr(t.WriteBufferSize, DefaultWriteBufferSize),
		WriteBufferPool:   t.WriteBufferPool,
		Subprotocols:      []string{graphqlTransportWS, graphqlWS},
		CheckOrigin:       t.CheckOrigin,
		EnableCompression: t.EnableCompression,
	}
	if upgrader.WriteBufferPool == nil {
		upgrader.WriteBufferPool = sharedWriteBufferPool(upgrader.WriteBufferSize)
	}
	refused := 0
	upgrader.Error = func(w http.ResponseWriter, r *http.Request, status int, reason error) {
		refused = status
		writeHandshakeError(w, r, status, reason)
	}
	h := &hijacker{ResponseWriter: w}
	if upgrader.ReadBufferSize > parkThreshold {
		h.readSize, upgrader.ReadBufferSize = upgrader.ReadBufferSize, 0
	}
	ws, err := upgrader.Upgrade(h, r, upgradeResponseHeader(w.Header(), nil))
	if err != nil {
		if t.OnRefused != nil {
			t.OnRefused(r, refused, err)
		}
		return
	}
	if err := ws.NetConn().SetDeadline(time.Time{}); err != nil {
		_ = ws.Close()
		return
	}
	readLimit := t.ReadLimit
	if readLimit == 0 {
		readLimit = defaultReadLimit
	}
	if readLimit > 0 {
		ws.SetReadLimit(readLimit)
	}

	// The request's context ends as this handler returns; the connection
	// keeps its values (logger, request id, the upgrade's identity).
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	s := &session{
		t:            t,
		ws:           ws,
		bc:           h.bc,
		br:           h.br,
		raw:          rawConnOf(h.bc),
		exec:         exec,
		legacy:       ws.Subprotocol() != graphqlTransportWS,
		writeTimeout: durationOr(t.WriteTimeout, DefaultWriteTimeout),
		ctx:          ctx,
		base:         ctx,
		cancel:       cancel,
		gone:         make(chan struct{}),
		subs:         map[string]*subscription{},
	}
	s.guard = newGuard(s, t.guardLimits())
	if t.OnUpgrade != nil {
		s.ended = t.OnUpgrade(r, s)
	}
	go s.read()
}

// graphqlWS is the legacy subprotocol (subscriptions-transport-ws).
const graphqlWS = "graphql-ws"

// session is one connection of a Transport.
type session struct {
	t            *Transport
	ws           *websocket.Conn
	bc           *batchConn
	br           *bufio.Reader   // gorilla's read buffer, if ours (hijacker)
	raw          syscall.RawConn // the socket's, for park; nil if none
	exec         graphql.GraphExecutor
	legacy       bool // graphql-ws rather than graphql-transport-ws
	writeTimeout time.Duration
	guard        *guard
	ended        func()

	// ctx is the connection's (InitFunc's once initialised); cancel ends
	// it and every subscription with it. Only the reader sets ctx, before
	// any subscription runs; other goroutines use base, the context of
	// the upgrade.
	ctx    context.Context
	base   context.Context
	cancel context.CancelFunc

	closed   atomic.Bool   // a close frame is on its way, or the socket failed
	gone     chan struct{} // closed with the socket
	goneOnce sync.Once

	mu          sync.Mutex
	subs        map[string]*subscription
	queue       []outgoing
	events      int  // stream events in queue and pending
	writing     bool // a drain goroutine runs
	closeQueued bool // the queue ends with the close frame
	pingTimer   *time.Timer
	pongSeen    bool
}

// outgoing is one queued message: encoded bytes, a close frame, or an event
// of a stream subscription, encoded as it is written.
type outgoing struct {
	data  []byte
	ping  bool   // data is a ping: see pinged
	close []byte // a close frame's payload
	sub   *subscription
	ev    *livesync.Event
}

// subscription is one running operation of a connection.
type subscription struct {
	s       *session
	id      string
	cancel  context.CancelFunc // the operation's context
	endLife context.CancelFunc // sink.Life

	// Of a stream subscription (sink attached): the execution its events
	// are encoded with. Set once ready; read by the writer after.
	sink     livesync.Sink
	exec     *execution
	released atomic.Bool
	ready    bool       // under s.mu: dispatched, events may be written
	queued   int        // under s.mu: its events waiting to be written
	pending  []outgoing // under s.mu: events delivered before ready
	done     atomic.Bool
}

// read is the connection's one permanent goroutine. Where it can park
// (park), it does nothing else on its own stack: reading a message,
// decoding it and handling it run aside, since they take deeper stacks
// than a 2 KiB stack has room for, and Go never shrinks a grown reader's
// stack back to 2 KiB (it halves a stack at GC only while the stack in use
// plus 800 bytes is under a quarter of it).
func (s *session) read() {
	defer s.teardown()
	initialised := false
	for {
		if s.park() {
			stop := false
			s.aside(func() { stop = s.step(&initialised) })
			if stop {
				return
			}
			continue
		}
		if s.step(&initialised) {
			return
		}
	}
}

// step reads and handles the client's next message; true: the connection
// is ending and the reader must stop.
func (s *session) step(initialised *bool) (stop bool) {
	data, err := s.next()
	if err != nil {
		s.readFailed(err)
		return true
	}
	var m clientMessage
	known := json.Unmarshal(data, &m) == nil && s.validType(m.Type)
	if !*initialised {
		switch {
		case !known:
			s.connectionError("invalid json")
			s.closeWith(transport.WebsocketCloseProtocolError, "decoding error")
			return true
		case m.Type == "connection_init":
			ok := false
			s.aside(func() { ok = s.init(m.Payload) })
			if !ok {
				return true
			}
			*initialised = true
		case m.Type == "connection_terminate":
			s.closeWith(transport.WebsocketCloseNormalClosure, "terminated")
			return true
		default:
			s.connectionError("unexpected message " + m.Type)
			s.closeWith(transport.WebsocketCloseProtocolError, "unexpected message")
			return true
		}
		return false
	}
	switch {
	case !known:
		s.closeWith(transport.WebsocketCloseNormalClosure, "terminated")
		return true
	case m.Type == "subscribe" || m.Type == "start":
		s.aside(func() { s.subscribe(m) })
	case m.Type == "complete" || m.Type == "stop":
		s.stop(m.ID)
	case m.Type == "connection_terminate":
		s.closeWith(transport.WebsocketCloseNormalClosure, "terminated")
		return true
	case m.Type == "ping":
		s.send(wireMessage{Type: "pong", Payload: m.Payload})
	case m.Type == "pong":
		s.mu.Lock()
		s.pongSeen = true
		s.mu.Unlock()
		_ = s.ws.SetReadDeadline(time.Time{})
	default:
		s.connectionError("unexpected message " + m.Type)
		s.closeWith(transport.WebsocketCloseProtocolError, "unexpected message")
		return true
	}
	return false
}

// park waits until the client has sent something, in a shallower stack
// than gorilla's read takes (NextReader → advanceFrame → bufio → net →
// poll: over 1 KiB, more than a 2 KiB stack leaves above its guard). It
// returns at once when gorilla's buffer holds data already, and on any
// error, which the read that follows reports. false: it cannot wait so
// (no socket of its own under the connection, as behind TLS, or a read
// buffer gorilla did not take from us), and the reader reads itself.
func (s *session) park() bool {
	if s.raw == nil || s.br == nil {
		return false
	}
	if s.br.Buffered() == 0 {
		_ = s.raw.Read(readable)
	}
	return true
}

// rawConnOf is the socket under c, if it has one.
func rawConnOf(c net.Conn) syscall.RawConn {
	if bc, ok := c.(*batchConn); ok {
		c = bc.Conn
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// aside runs f on a goroutine of its own and waits for it. Authenticating,
// reading heads from the database and running gqlgen's operation
// middleware take deep stacks; on the reader, each idle connection would
// keep that stack for its life (stacks shrink only by half per GC), where
// the reader alone needs a few KiB.
func (s *session) aside(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}

// clientMessage is a message of either subprotocol as a client sends it.
type clientMessage struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

// validType: the message types a client may send in the negotiated
// subprotocol (gqlgen refuses any other as undecodable).
func (s *session) validType(t string) bool {
	if s.legacy {
		switch t {
		case "connection_init", "connection_terminate", "start", "stop":
			return true
		}
		return false
	}
	switch t {
	case "connection_init", "subscribe", "complete", "ping", "pong":
		return true
	}
	return false
}

// next returns the next data message that passes the guard. The loop sits
// here rather than in a helper: a connection spends its life blocked in
// this call, and every frame above the read adds to the stack each idle
// connection keeps.
func (s *session) next() ([]byte, error) {
	for {
		_, r, err := s.ws.NextReader()
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(r)
		if err != nil {
			return nil, err
		}
		switch s.guard.incoming(data) {
		case pass:
			return data, nil
		case closed:
			return nil, transport.ErrWebsocketClosed
		}
	}
}

func (s *session) readFailed(err error) {
	quiet := errors.Is(err, transport.ErrWebsocketClosed) || errors.Is(err, net.ErrClosed) ||
		websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived)
	if !quiet && !s.closed.Load() && s.t.ErrorFunc != nil {
		s.t.ErrorFunc(s.ctx, transport.WebsocketError{Err: err, IsReadError: true})
	}
	s.closeWith(transport.WebsocketCloseNormalClosure, "terminated")
}

// init handles connection_init.
func (s *session) init(raw json.RawMessage) bool {
	var payload transport.InitPayload
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &payload); err != nil {
			s.closeWith(transport.WebsocketCloseProtocolError, "invalid message")
			return false
		}
	}
	var ack *transport.InitPayload
	if s.t.InitFunc != nil {
		ctx, a, err := s.t.InitFunc(s.ctx, payload)
		if err != nil {
			s.connectionError(err.Error())
			code, reason := closeFor(ctx)
			s.closeWith(code, reason)
			return false
		}
		s.ctx, ack = ctx, a
	}
	msg := wireMessage{Type: "connection_ack"}
	if ack != nil {
		b, err := json.Marshal(*ack)
		if err != nil {
			s.closeWith(transport.WebsocketCloseProtocolError, "invalid ack payload")
			return false
		}
		msg.Payload = b
	}
	s.send(msg)
	if s.legacy {
		s.send(wireMessage{Type: "ka"})
		if d := s.t.KeepAlivePingInterval; d > 0 {
			s.startTimer(d, s.keepAlive)
		}
	} else if d := s.t.PingPongInterval; d > 0 {
		_ = s.ws.SetReadDeadline(time.Now().Add(2 * d))
		s.startTimer(d, s.ping)
	}
	return true
}

func (s *session) startTimer(d time.Duration, tick func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pingTimer = time.AfterFunc(d, tick)
}

// ping queues graphql-transport-ws's ping; once it is written (pinged),
// the peer has two intervals to answer. As with gqlgen's PingPongInterval,
// a ping that cannot be written (the peer reads nothing) sets no deadline:
// the write timeout deals with that peer.
func (s *session) ping() {
	if s.closed.Load() {
		return
	}
	s.enqueue(outgoing{data: pingMessage, ping: true})
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed.Load() {
		s.pingTimer.Reset(s.t.PingPongInterval)
	}
}

var pingMessage = []byte(`{"type":"ping"}`)

// pinged runs once a ping is written: when the peer answered the ping
// before (a pong clears the deadline), it must answer this one within two
// intervals.
func (s *session) pinged() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pongSeen {
		_ = s.ws.SetReadDeadline(time.Now().Add(2 * s.t.PingPongInterval))
	}
	s.pongSeen = false
}

func (s *session) keepAlive() {
	if s.closed.Load() {
		return
	}
	s.send(wireMessage{Type: "ka"})
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed.Load() {
		s.pingTimer.Reset(s.t.KeepAlivePingInterval)
	}
}

// subscribe runs a subscribe (start) message, as gqlgen's transport does.
func (s *session) subscribe(m clientMessage) {
	start := graphql.Now()
	// The operation has the connection's values but not its cancellation:
	// a stream's execution may serve other connections' subscribers after
	// this one ends (execution); teardown ends each operation instead.
	ctx := graphql.StartOperationTrace(context.WithoutCancel(s.ctx))
	params := &graphql.RawParams{}
	dec := json.NewDecoder(bytes.NewReader(m.Payload))
	dec.UseNumber()
	if err := dec.Decode(params); err != nil {
		s.sendError(m.ID, &gqlerror.Error{Message: "invalid json"})
		s.complete(m.ID)
		return
	}
	params.ReadTime = graphql.TraceTiming{Start: start, End: graphql.Now()}

	rc, errs := s.exec.CreateOperationContext(ctx, params)
	if errs != nil {
		resp := s.exec.DispatchError(graphql.WithOperationContext(ctx, rc), errs)
		if errcode.GetErrorKind(errs) == errcode.KindProtocol {
			s.sendError(m.ID, resp.Errors...)
		} else {
			s.sendResponse(m.ID, &graphql.Response{Errors: errs})
		}
		s.complete(m.ID)
		return
	}
	ctx = graphql.WithOperationContext(ctx, rc)
	ctx, cancel := context.WithCancel(ctx)
	sub := &subscription{s: s, id: m.ID, cancel: cancel}
	sub.sink.Deliver = sub.deliver
	// The sink's Life ends with the subscription or the connection, and
	// holds the connection's values only, none of the operation's.
	sub.sink.Life, sub.endLife = context.WithCancel(s.base)
	s.mu.Lock()
	s.subs[m.ID] = sub
	s.mu.Unlock()

	// Every operation gets a sink; a stream resolver takes it. Dispatching
	// here, on the reader, keeps the connection's messages in order.
	responses, rctx, ok := s.dispatch(livesync.WithSink(ctx, &sub.sink), rc, sub)
	if !ok {
		return
	}
	if !sub.sink.Attached() {
		go s.run(sub, responses, rctx)
		return
	}
	key, shared := "", false
	if s.t.StreamKey != nil {
		key, shared = s.t.StreamKey(rctx, rc)
	}
	e := s.t.adopt(executionKey{key: key, scope: sub.sink.Scope()}, shared, sub, responses, rctx)
	s.mu.Lock()
	sub.exec = e
	sub.ready = true
	s.queue = append(s.queue, sub.pending...)
	sub.pending = nil
	startDrain := s.startDrainLocked()
	s.mu.Unlock()
	if startDrain {
		go s.drain()
	}
}

// dispatch runs the operation's middleware and resolvers; a panic there
// ends the subscription with an error, as in gqlgen's transport.
func (s *session) dispatch(ctx context.Context, rc *graphql.OperationContext, sub *subscription) (responses graphql.ResponseHandler, rctx context.Context, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			s.sendError(sub.id, recovered(ctx, rc, r))
			s.finish(sub)
			ok = false
		}
	}()
	responses, rctx = s.exec.DispatchOperation(ctx, rc)
	return responses, rctx, true
}

func recovered(ctx context.Context, rc *graphql.OperationContext, r any) *gqlerror.Error {
	err := rc.Recover(ctx, r)
	var gqlerr *gqlerror.Error
	if !errors.As(err, &gqlerr) {
		gqlerr = &gqlerror.Error{}
		if err != nil {
			gqlerr.Message = err.Error()
		}
	}
	return gqlerr
}

// run serves an operation through gqlgen's executor on a goroutine of its
// own: queries, mutations, subscriptions other than streams, and errors.
func (s *session) run(sub *subscription, responses graphql.ResponseHandler, ctx context.Context) {
	defer func() {
		if r := recover(); r != nil {
			s.sendError(sub.id, recovered(ctx, graphql.GetOperationContext(ctx), r))
			s.finish(sub)
			return
		}
		if s.ctx.Err() == nil {
			s.complete(sub.id)
		}
		s.finish(sub)
	}()
	for {
		resp := responses(ctx)
		if resp == nil {
			return
		}
		s.sendResponse(sub.id, resp)
	}
}

// finish forgets a subscription and ends its context.
func (s *session) finish(sub *subscription) {
	sub.done.Store(true)
	s.mu.Lock()
	if s.subs[sub.id] == sub {
		delete(s.subs, sub.id)
	}
	e := sub.exec
	s.mu.Unlock()
	sub.end()
	if e != nil && sub.released.CompareAndSwap(false, true) {
		s.t.release(e)
	}
}

// end ends the subscription's contexts: the operation's and (for the hub)
// its sink's Life.
func (sub *subscription) end() {
	sub.cancel()
	sub.endLife()
}

// stop ends a subscription the client completed (stopped). A stream
// subscription is answered with complete here, as gqlgen answers every
// one; the others when their loop ends.
func (s *session) stop(id string) {
	s.mu.Lock()
	sub := s.subs[id]
	s.mu.Unlock()
	if sub == nil {
		return
	}
	if sub.sink.Attached() && sub.responsesReady() {
		s.finish(sub)
		s.complete(id)
		return
	}
	sub.end()
}

func (sub *subscription) responsesReady() bool {
	sub.s.mu.Lock()
	defer sub.s.mu.Unlock()
	return sub.ready
}

// deliver is the hub's way in (livesync.Deliver): it queues the event
// without blocking, and refuses it when the connection already has
// MaxQueuedEvents waiting, so the hub drops the subscriber and closes the
// connection (1013) instead of this connection holding the fan-out back
// or missing the event.
func (sub *subscription) deliver(ev *livesync.Event) bool {
	s := sub.s
	if sub.done.Load() || s.closed.Load() {
		return true // going: nothing more to write
	}
	limit := s.t.MaxQueuedEvents
	if limit == 0 {
		limit = DefaultMaxQueuedEvents
	}
	buffer := sub.sink.Buffer()
	s.mu.Lock()
	if limit > 0 && s.events >= limit || buffer > 0 && sub.queued >= buffer {
		s.mu.Unlock()
		return false
	}
	s.events++
	sub.queued++
	o := outgoing{sub: sub, ev: ev}
	if !sub.ready {
		sub.pending = append(sub.pending, o)
		s.mu.Unlock()
		return true
	}
	s.queue = append(s.queue, o)
	start := s.startDrainLocked()
	s.mu.Unlock()
	if start {
		go s.drain()
	}
	return true
}

// errSubscriptionGone: the subscriber whose execution was to encode an
// event is ending; the next subscriber with its key encodes it.
var errSubscriptionGone = errors.New("subscription ended")

// encoded returns the event's message payload for sub: the response of
// one execution of its selection, shared by every subscriber with its key.
func (sub *subscription) encoded(ev *livesync.Event) ([]byte, error) {
	e := sub.exec
	return ev.Encoded(e.key.key, func() ([]byte, error) {
		if sub.done.Load() {
			return nil, errSubscriptionGone
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.ended || !e.prime.Prime(ev) {
			return nil, errSubscriptionGone
		}
		resp := e.responses(e.rctx)
		if resp == nil {
			return nil, errSubscriptionGone
		}
		return json.Marshal(resp)
	})
}

// send queues a message of the protocol.
func (s *session) send(m wireMessage) {
	if err := s.write(m); err != nil && s.t.ErrorFunc != nil {
		s.t.ErrorFunc(s.base, transport.WebsocketError{Err: err})
	}
}

// write queues v as one text message (for the guard as well); nothing is
// queued once the connection is closing.
func (s *session) write(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	s.enqueue(outgoing{data: data})
	return nil
}

func (s *session) enqueue(o outgoing) {
	s.mu.Lock()
	if s.closeQueued || s.closed.Load() && o.close == nil {
		s.mu.Unlock()
		return
	}
	if o.close != nil {
		s.closeQueued = true
	}
	s.queue = append(s.queue, o)
	start := s.startDrainLocked()
	s.mu.Unlock()
	if start {
		go s.drain()
	}
}

func (s *session) startDrainLocked() bool {
	if s.writing || len(s.queue) == 0 {
		return false
	}
	s.writing = true
	return true
}

func (s *session) sendResponse(id string, resp *graphql.Response) {
	b, err := json.Marshal(resp)
	if err != nil {
		panic(err)
	}
	s.send(wireMessage{ID: id, Type: s.dataType(), Payload: b})
}

func (s *session) dataType() string {
	if s.legacy {
		return "data"
	}
	return "next"
}

func (s *session) sendError(id string, errs ...*gqlerror.Error) {
	list := make([]error, len(errs))
	for i, e := range errs {
		list[i] = e
	}
	b, err := json.Marshal(list)
	if err != nil {
		panic(err)
	}
	s.guard.outgoing("error", id)
	s.send(wireMessage{ID: id, Type: "error", Payload: b})
}

func (s *session) complete(id string) {
	s.guard.outgoing("complete", id)
	s.send(wireMessage{ID: id, Type: "complete"})
}

// connectionError is graphql-ws's connection_error; graphql-transport-ws
// has none (the close reason says it).
func (s *session) connectionError(message string) {
	if !s.legacy {
		return
	}
	b, _ := json.Marshal(&gqlerror.Error{Message: message})
	s.send(wireMessage{Type: "connection_error", Payload: b})
}

// drain writes the queue until it is empty, each round in one write.
func (s *session) drain() {
	var scratch []byte
	for {
		s.mu.Lock()
		batch := s.queue
		s.queue = nil
		if len(batch) == 0 {
			s.writing = false
			s.mu.Unlock()
			return
		}
		for _, o := range batch {
			if o.ev != nil {
				s.events--
				o.sub.queued--
			}
		}
		s.mu.Unlock()

		s.bc.begin()
		closing, pinged := false, false
		for _, o := range batch {
			if closing {
				break
			}
			switch {
			case o.close != nil:
				_ = s.ws.WriteControl(websocket.CloseMessage, o.close, s.deadline())
				closing = true
			case o.ev != nil:
				if o.sub.done.Load() {
					continue
				}
				payload, err := o.sub.encoded(o.ev)
				if err != nil {
					if !errors.Is(err, errSubscriptionGone) && s.t.ErrorFunc != nil {
						s.t.ErrorFunc(s.base, fmt.Errorf("encoding a stream event: %w", err))
					}
					continue
				}
				scratch = s.envelope(scratch[:0], o.sub.id, payload)
				_ = s.writeMessage(scratch)
			default:
				_ = s.writeMessage(o.data)
				pinged = pinged || o.ping
			}
		}
		err := s.bc.flush(s.deadline())
		if err == nil && pinged {
			s.pinged()
		}
		if err != nil && !s.closed.Load() && s.t.ErrorFunc != nil {
			s.t.ErrorFunc(s.base, transport.WebsocketError{Err: err})
		}
		if closing || err != nil {
			s.closed.Store(true)
			s.closeSocket()
			s.mu.Lock()
			s.queue = nil
			s.writing = false
			s.mu.Unlock()
			return
		}
	}
}

func (s *session) writeMessage(data []byte) error {
	if s.t.EnableCompression {
		s.ws.EnableWriteCompression(len(data) >= compressThreshold)
	}
	return s.ws.WriteMessage(websocket.TextMessage, data)
}

// envelope frames a shared payload for one subscription.
func (s *session) envelope(b []byte, id string, payload []byte) []byte {
	b = append(b, `{"id":`...)
	idJSON, _ := json.Marshal(id)
	b = append(b, idJSON...)
	b = append(b, `,"type":"`...)
	b = append(b, s.dataType()...)
	b = append(b, `","payload":`...)
	b = append(b, payload...)
	return append(b, '}')
}

func (s *session) deadline() time.Time {
	if s.writeTimeout <= 0 {
		return time.Time{}
	}
	return time.Now().Add(s.writeTimeout)
}

// closeWith queues a close frame with code and reason behind what is
// queued; the socket closes once it is written.
func (s *session) closeWith(code int, reason string) {
	if s.closed.Swap(true) {
		return
	}
	s.enqueue(outgoing{close: websocket.FormatCloseMessage(code, closeReason(reason))})
}

// Close closes the connection with code and reason, and waits until the
// close frame is written or the socket is gone.
func (s *session) Close(code int, reason string) {
	if code == transport.WebsocketCloseProtocolError && reason == "connection initialisation timeout" {
		code, reason = CloseInitTimeout, "Connection initialisation timeout"
	}
	s.closeWith(code, reason)
	<-s.gone
}

func (s *session) isClosed() bool { return s.closed.Load() }

func (s *session) closeSocket() {
	s.goneOnce.Do(func() {
		_ = s.ws.Close()
		close(s.gone)
	})
}

// teardown ends the connection once its reader returns: every subscription
// ends (the hub forgets them), the timers stop, and the server hears of it.
func (s *session) teardown() {
	s.closeWith(transport.WebsocketCloseNormalClosure, "terminated")
	s.cancel()
	s.guard.stop()
	s.mu.Lock()
	if s.pingTimer != nil {
		s.pingTimer.Stop()
	}
	writing := s.writing
	var left []*subscription
	for _, sub := range s.subs {
		left = append(left, sub)
	}
	s.mu.Unlock()
	for _, sub := range left {
		s.finish(sub)
	}
	if !writing {
		// Nothing left to write (the close frame, if any, went out).
		s.closeSocket()
	}
	if s.ended != nil {
		s.ended()
	}
}

// CloseCode and reason for a refused connection_init, as InitFunc's
// context says (WithCloseCode); gqlgen's own context values are read by
// its transport alone.
type closeCodeKey struct{}

type closeCode struct {
	code   int
	reason string
}

// WithCloseCode tells the Transport to close a connection whose InitFunc
// returns an error with code and reason (default 1000, "terminated").
func WithCloseCode(ctx context.Context, code int, reason string) context.Context {
	return context.WithValue(ctx, closeCodeKey{}, closeCode{code, reason})
}

func closeFor(ctx context.Context) (int, string) {
	if ctx != nil {
		if c, ok := ctx.Value(closeCodeKey{}).(closeCode); ok {
			reason := c.reason
			if reason == "" {
				reason = "terminated"
			}
			return c.code, reason
		}
	}
	return transport.WebsocketCloseNormalClosure, "terminated"
}
