package server_test

// The shared fan-out, end to end: subscribers whose stream operations are
// alike share each event's execution and encoding (wsgorilla.Transport,
// livesync.Event.Encoded); these tests show that each still gets exactly
// the payload an execution of its own operation, for itself, produces. The
// oracle is a pull over HTTP with the same selection, as the same user, from
// the subscriber's previous checkpoint: an event holds what that pull
// returns. A control shows the check fails when subscribers that differ are
// made to share.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/gorilla/websocket"

	"github.com/tidemark/tidemark/server"
	"github.com/tidemark/tidemark/testenv"
)

// sharedSub is one stream subscription of the sharing tests.
type sharedSub struct {
	name   string
	c      *streamClient
	id     string
	user   *rulesClient
	sel    string // the selection of each document
	vars   map[string]any
	cursor string // checkpoint of the last event (or the pull before it)
}

const (
	sharedStream = `subscription%s { r: streamWorkOrders { documents { %s } checkpoint { cursor } } }`
	sharedPull   = `query($cp: CheckpointInput, $limit: Int!%s) {
  r: pullWorkOrders(checkpoint: $cp, limit: $limit) { documents { %s } checkpoint { cursor } } }`
)

// withD declares $d for a selection that uses it.
func withD(sel, decl string) string {
	if strings.Contains(sel, "$d") {
		return decl
	}
	return ""
}

// openShared subscribes on c (already connected as user) with the
// selection sel, after reading where user's view of the data stands.
func openShared(tb testing.TB, name string, c *streamClient, id string, user *rulesClient, sel string, d bool) *sharedSub {
	tb.Helper()
	_, cursor := user.pullAll(rulesWorkOrders, "")
	vars := map[string]any{}
	if strings.Contains(sel, "$d") {
		vars["d"] = d
	}
	c.subscribe(id, fmt.Sprintf(sharedStream, withD(sel, "($d: Boolean!)"), sel), vars)
	return &sharedSub{name: name, c: c, id: id, user: user, sel: sel, vars: vars, cursor: cursor}
}

// pending holds messages read for other subscriptions of a connection.
var pending = map[*streamClient][]wsMessage{}

// nextOf returns the next message of sub's subscription on its connection.
func (s *sharedSub) nextOf(timeout time.Duration) (wsMessage, error) {
	for i, m := range pending[s.c] {
		if m.ID == s.id {
			pending[s.c] = append(pending[s.c][:i:i], pending[s.c][i+1:]...)
			return m, nil
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		m, err := s.c.read(max(time.Until(deadline), time.Millisecond))
		if err != nil {
			return m, err
		}
		if m.ID == s.id {
			return m, nil
		}
		pending[s.c] = append(pending[s.c], m)
	}
}

// checkEvent reads sub's next event and compares it with what a pull of
// its own selection, as its own user, from its last checkpoint returns.
func (s *sharedSub) checkEvent() error {
	m, err := s.nextOf(eventWait)
	if err != nil {
		return fmt.Errorf("%s: waiting for an event: %v", s.name, err)
	}
	if m.Type != s.c.dataType() {
		return fmt.Errorf("%s: got %s %.300s, want %s", s.name, m.Type, m.Payload, s.c.dataType())
	}
	var got struct {
		Data struct {
			R struct {
				Documents  []any `json:"documents"`
				Checkpoint struct {
					Cursor string `json:"cursor"`
				} `json:"checkpoint"`
			} `json:"r"`
		} `json:"data"`
		Errors []wireError `json:"errors"`
	}
	if err := json.Unmarshal(m.Payload, &got); err != nil || len(got.Errors) > 0 {
		return fmt.Errorf("%s: event %.300s: %v", s.name, m.Payload, err)
	}
	vars := map[string]any{"limit": 1000}
	if d, ok := s.vars["d"]; ok {
		vars["d"] = d
	}
	if s.cursor != "" {
		vars["cp"] = map[string]any{"cursor": s.cursor}
	}
	var want struct {
		Documents []any `json:"documents"`
	}
	if err := json.Unmarshal(s.user.do(fmt.Sprintf(sharedPull, withD(s.sel, ", $d: Boolean!"), s.sel), vars), &want); err != nil {
		return fmt.Errorf("%s: pull: %v", s.name, err)
	}
	if !reflect.DeepEqual(got.Data.R.Documents, want.Documents) {
		return fmt.Errorf("%s: event documents %v, but its own pull from its checkpoint returns %v", s.name, got.Data.R.Documents, want.Documents)
	}
	if got.Data.R.Checkpoint.Cursor == "" {
		return fmt.Errorf("%s: event without a checkpoint: %.300s", s.name, m.Payload)
	}
	s.cursor = got.Data.R.Checkpoint.Cursor
	return nil
}

// sharingScenario runs the subscribers that may and may not share, with
// edits each must see or not, and returns every mismatch found.
func sharingScenario(t *testing.T) []error {
	t.Helper()
	env := testenv.New(t, testenv.Options{})
	url := env.Serve(t)
	tenant, other := "tenant/"+t.Name(), "tenant/"+t.Name()+"/other"
	disp1 := newRulesClient(t, url, tenant, "disp1", "dispatcher")
	disp2 := newRulesClient(t, url, tenant, "disp2", "dispatcher")
	alice := newRulesClient(t, url, tenant, "alice", "technician")
	otherDisp := newRulesClient(t, url, other, "disp1", "dispatcher")

	disp1.create(rulesSites, rulesSite("site-a"), rulesSite("site-b"))
	disp1.create(rulesWorkOrders, rulesWorkOrder("wo-a1", "site-a", "alice"), rulesWorkOrder("wo-b1", "site-b", "bob"))
	otherDisp.create(rulesSites, rulesSite("site-o"))
	otherDisp.create(rulesWorkOrders, rulesWorkOrder("wo-o1", "site-o", "olive"))

	connect := func(u *rulesClient, proto string) *streamClient {
		return connectStream(t, url, proto, map[string]any{"Authorization": bearer(u.token)})
	}
	const (
		plain    = "id title description"
		narrow   = "id status priority"
		optional = "id title description @include(if: $d)"
		relation = "id site { name }"
	)
	d1a, d1b, d1c := connect(disp1, protoTransportWS), connect(disp1, protoLegacyWS), connect(disp1, protoTransportWS)
	d2 := connect(disp2, protoLegacyWS)
	al := connect(alice, protoTransportWS)
	ot := connect(otherDisp, protoTransportWS)
	tenantSubs := []*sharedSub{
		// Alike: one key, one execution per event.
		openShared(t, "disp1 plain", d1a, "a", disp1, plain, false),
		openShared(t, "disp1 plain, legacy protocol", d1b, "1", disp1, plain, false),
		openShared(t, "disp2 plain", d2, "x", disp2, plain, false),
		// Two subscriptions on one connection, with other selections.
		openShared(t, "disp1 narrow, same connection", d1a, "b", disp1, narrow, false),
		openShared(t, "disp1 optional field left out", d1c, "o1", disp1, optional, false),
		openShared(t, "disp1 optional field included", d1c, "o2", disp1, optional, true),
		// A relation is read for the caller: shared per user only.
		openShared(t, "disp1 relation", d1b, "2", disp1, relation, false),
		openShared(t, "disp2 relation", d2, "y", disp2, relation, false),
	}
	aliceSub := openShared(t, "alice (her set) plain", al, "a", alice, plain, false)
	otherSub := openShared(t, "other tenant plain", ot, "a", otherDisp, plain, false)

	var errs []error
	check := func(subs ...*sharedSub) {
		for _, s := range subs {
			if err := s.checkEvent(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	latest := func(u *rulesClient, id string) jdoc { return u.latest(rulesWorkOrders, id) }

	// In alice's set: every subscriber of the tenant.
	disp1.edit(rulesWorkOrders, latest(disp1, "wo-a1"), jdoc{"description": "first", "priority": 3})
	check(tenantSubs...)
	check(aliceSub)
	// Outside her set: the dispatchers only.
	disp1.edit(rulesWorkOrders, latest(disp1, "wo-b1"), jdoc{"description": "second", "status": "DONE"})
	check(tenantSubs...)
	// The other tenant: its subscriber only; its first event must be this.
	otherDisp.edit(rulesWorkOrders, latest(otherDisp, "wo-o1"), jdoc{"description": "elsewhere"})
	check(otherSub)
	// Alice's next event is this one, not the edit outside her set.
	disp1.edit(rulesWorkOrders, latest(disp1, "wo-a1"), jdoc{"title": "third"})
	check(tenantSubs...)
	check(aliceSub)
	return errs
}

func TestStreamSharedFanOutGivesEachSubscriberItsOwnPayload(t *testing.T) {
	// Not parallel: TestStreamSharingCheckCatchesWrongSharing swaps a
	// package variable, and parallel tests run after the others.
	for _, err := range sharingScenario(t) {
		t.Error(err)
	}
}

// The control: with every stream subscriber made to share one key, the
// subscribers that differ get another's payload, and the check says so.
func TestStreamSharingCheckCatchesWrongSharing(t *testing.T) {
	undo := server.SetStreamKeyForTest(func(context.Context, *graphql.OperationContext) (string, bool) {
		return "everyone", true
	})
	defer undo()
	errs := sharingScenario(t)
	if len(errs) == 0 {
		t.Fatal("every subscriber shared one key, yet the check found no wrong payload")
	}
	t.Logf("the check found %d wrong payloads, e.g. %v", len(errs), errs[0])
}

// An idle connection with a stream subscription costs the server one
// goroutine (its reader) and nothing per subscription: no goroutine per
// connection for pings, timeouts, writes or the HTTP handler.
func TestStreamIdleConnectionsCostOneGoroutineEach(t *testing.T) {
	const conns = 200
	env := testenv.New(t, testenv.Options{Server: server.Config{
		WebsocketLimits: server.WebsocketLimits{MaxConnectionsPerSubject: -1, AcceptRate: -1},
	}})
	url := env.Serve(t)
	api := newWorkOrderAPI(t, url, "tenant/"+t.Name())
	// Warm up: the hub's scope and the pool's connections exist before
	// the count starts.
	warm := connectStream(t, url, protoTransportWS, map[string]any{"Authorization": bearer(api.token)})
	stream := subscribeWorkOrders(warm, "1", "")
	awaitLive(t, api, stream)

	before := runtime.NumGoroutine()
	wsURL := "ws" + strings.TrimPrefix(url, "http") + "/graphql"
	// Raw clients with no reader goroutine, so the count is the server's.
	var clients []*websocket.Conn
	dialer := websocket.Dialer{Subprotocols: []string{protoTransportWS}}
	for i := range conns {
		c, _, err := dialer.Dial(wsURL, nil)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		clients = append(clients, c)
		t.Cleanup(func() { _ = c.Close() })
		if err := c.WriteJSON(wsMessage{Type: "connection_init", Payload: json.RawMessage(fmt.Sprintf(`{"Authorization":%q}`, bearer(api.token)))}); err != nil {
			t.Fatal(err)
		}
		var ack wsMessage
		if err := c.ReadJSON(&ack); err != nil || ack.Type != "connection_ack" {
			t.Fatalf("connection %d: %v %v", i, ack, err)
		}
		sub, _ := json.Marshal(map[string]any{"query": streamWorkOrdersSubscription})
		if err := c.WriteJSON(wsMessage{ID: "1", Type: "subscribe", Payload: sub}); err != nil {
			t.Fatal(err)
		}
	}
	// Every subscription has reached the hub once it counts them all.
	if !waitFor(10*time.Second, func() bool { return env.Live.Stats().Subscribers == conns+1 }) {
		t.Fatalf("hub has %d subscribers, want %d", env.Live.Stats().Subscribers, conns+1)
	}
	// Let the goroutines of finished writes and timers end: the count can
	// only fall meanwhile, so take the lowest of a few readings.
	after := runtime.NumGoroutine()
	for range 20 {
		runtime.Gosched()
		after = min(after, runtime.NumGoroutine())
	}
	perConn := float64(after-before) / conns
	t.Logf("%d idle connections with a stream each: %d goroutines more (%.2f per connection)", conns, after-before, perConn)
	if after-before > conns+20 {
		t.Errorf("%d connections cost %d goroutines; want at most one each (+20)", conns, after-before)
	}
	// And they are live: one change reaches a connection that only now reads.
	api.pushIDs("after-count")
	c := clients[conns-1]
	_ = c.SetReadDeadline(time.Now().Add(eventWait))
	for {
		var m wsMessage
		if err := c.ReadJSON(&m); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("no event on an idle connection after a push")
			}
			t.Fatal(err)
		}
		if m.Type == "next" && strings.Contains(string(m.Payload), "after-count") {
			break
		}
	}
}

// Subscribers that share one prepared execution keep getting their own
// payloads after the subscriber whose execution it was leaves (its
// connection closed), a newcomer joins the execution after that, and one
// of them stops: the execution lives while any subscriber shares it.
func TestStreamSharedExecutionOutlivesTheSubscriberThatPreparedIt(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	url := env.Serve(t)
	disp := newRulesClient(t, url, "tenant/"+t.Name(), "disp1", "dispatcher")
	disp.create(rulesSites, rulesSite("site-a"))
	disp.create(rulesWorkOrders, rulesWorkOrder("wo-a1", "site-a", "alice"))
	connect := func(proto string) *streamClient {
		return connectStream(t, url, proto, map[string]any{"Authorization": bearer(disp.token)})
	}
	const plain = "id title description"
	first := openShared(t, "first", connect(protoTransportWS), "a", disp, plain, false)
	second := openShared(t, "second", connect(protoLegacyWS), "1", disp, plain, false)
	check := func(subs ...*sharedSub) {
		t.Helper()
		for _, s := range subs {
			if err := s.checkEvent(); err != nil {
				t.Fatal(err)
			}
		}
	}
	edit := func(change jdoc) { disp.edit(rulesWorkOrders, disp.latest(rulesWorkOrders, "wo-a1"), change) }

	edit(jdoc{"description": "one"})
	check(first, second)
	if err := first.c.conn.Close(); err != nil {
		t.Fatal(err)
	}
	edit(jdoc{"description": "two"})
	check(second)
	late := openShared(t, "late", connect(protoTransportWS), "z", disp, plain, false)
	edit(jdoc{"description": "three"})
	check(second, late)
	second.c.stop(second.id)
	edit(jdoc{"description": "four"})
	check(late)
}

// heldConn holds a client's writes while hold is set and sends them in one
// write on flush, so that several websocket messages reach the server in
// one segment.
type heldConn struct {
	net.Conn
	hold bool
	buf  []byte
}

func (c *heldConn) Write(p []byte) (int, error) {
	if c.hold {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *heldConn) flush() error {
	c.hold = false
	_, err := c.Conn.Write(c.buf)
	c.buf = nil
	return err
}

// The transport's reader waits for the socket to have data while it idles
// (a shallow park instead of gorilla's read); messages that arrive in one
// segment end up in the read buffer together, and each must be handled
// without more data arriving.
func TestStreamMessagesArrivingTogetherAreEachHandled(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	url := env.Serve(t)
	api := newWorkOrderAPI(t, url, "tenant/"+t.Name())
	var held *heldConn
	dialer := websocket.Dialer{
		Subprotocols: []string{protoTransportWS},
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			held = &heldConn{Conn: c}
			return held, nil
		},
	}
	c, _, err := dialer.Dial("ws"+strings.TrimPrefix(url, "http")+"/graphql", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	held.hold = true
	for _, m := range []any{
		map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": bearer(api.token)}},
		map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{"query": streamWorkOrdersSubscription}},
		map[string]any{"type": "ping"},
	} {
		if err := c.WriteJSON(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := held.flush(); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(eventWait)); err != nil {
		t.Fatal(err)
	}
	var got []string
	pushed := false
	for {
		var m wsMessage
		if err := c.ReadJSON(&m); err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		got = append(got, m.Type)
		if m.Type == "pong" && !pushed {
			// connection_init and subscribe were handled before the ping.
			api.pushIDs("wo-together")
			pushed = true
		}
		if m.Type == "next" && m.ID == "1" && strings.Contains(string(m.Payload), "wo-together") {
			break
		}
	}
	if got[0] != "connection_ack" {
		t.Fatalf("messages %v, want connection_ack first", got)
	}
	// Two small messages fit the server's read buffer together: the second
	// is there once the first is read, with nothing left on the socket.
	held.hold = true
	for _, n := range []int{1, 2} {
		if err := c.WriteJSON(map[string]any{"type": "ping", "payload": map[string]any{"n": n}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := held.flush(); err != nil {
		t.Fatal(err)
	}
	for pongs := 0; pongs < 2; {
		var m wsMessage
		if err := c.ReadJSON(&m); err != nil {
			t.Fatalf("after %d pongs: %v", pongs, err)
		}
		if m.Type == "pong" {
			pongs++
		}
	}
}
