package server_test

// Live sync over websockets, end to end: the real handler with its hub and
// poller on a real PostgreSQL, a real listener, and a websocket client
// (streamclient_test.go) speaking graphql-transport-ws and the legacy
// graphql-ws. Changes are written with pushWorkOrders over HTTP, as a
// client would, and checked against pullWorkOrders.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/server"
	"github.com/tidemark/tidemark/testenv"
)

const (
	pushWorkOrdersMutation = `mutation($rows: [WorkOrderPushRow!]!) { pushWorkOrders(rows: $rows) { id } }`
	pullWorkOrdersQuery    = `query($cp: CheckpointInput, $limit: Int!) {
  pullWorkOrders(checkpoint: $cp, limit: $limit) { documents { id } checkpoint { cursor } }
}`
	streamWorkOrdersSubscription = `subscription($headers: StreamHeaders) {
  streamWorkOrders(headers: $headers) { documents { id description } checkpoint { cursor } }
}`

	// eventWait bounds the wait for an event that must come.
	eventWait = 5 * time.Second
)

// Close codes as clients see them.
const (
	closeForbidden     = 4403
	closeTryAgainLater = 1013
	closeAbnormal      = 1006 // no close frame: the socket just ended
)

func bearer(token string) string { return "Bearer " + token }

// workOrderAPI is one tenant's HTTP client for work orders.
type workOrderAPI struct {
	tb    testing.TB
	url   string
	token string
}

func newWorkOrderAPI(tb testing.TB, url, tenantID string) workOrderAPI {
	return workOrderAPI{tb: tb, url: url, token: testenv.Token(tb, tenantID, "user-1")}
}

// graphql posts one operation and returns its result, failing on errors.
func (a workOrderAPI) graphql(query string, vars map[string]any) json.RawMessage {
	a.tb.Helper()
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		a.tb.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, a.url+"/graphql", bytes.NewReader(body))
	if err != nil {
		a.tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", bearer(a.token))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.tb.Fatalf("POST /graphql: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.tb.Fatal(err)
	}
	var r result
	if err := json.Unmarshal(b, &r); err != nil || resp.StatusCode != http.StatusOK || len(r.Errors) > 0 || !r.hasData() {
		a.tb.Fatalf("POST /graphql: status %d: %.500s", resp.StatusCode, b)
	}
	return r.Data
}

// workOrder is a valid new work order.
func workOrder(id, description string) map[string]any {
	return map[string]any{
		"id": id, "siteId": "site-1", "title": "Fix pump " + id, "description": description,
		"status": "OPEN", "priority": 2, "deleted": false,
	}
}

// push writes new work orders in one push and returns how long it took.
func (a workOrderAPI) push(docs ...map[string]any) time.Duration {
	a.tb.Helper()
	rows := make([]map[string]any, len(docs))
	for i, d := range docs {
		rows[i] = map[string]any{"newDocumentState": d}
	}
	start := time.Now()
	data := a.graphql(pushWorkOrdersMutation, map[string]any{"rows": rows})
	took := time.Since(start)
	var r struct {
		PushWorkOrders []struct{ ID string } `json:"pushWorkOrders"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		a.tb.Fatal(err)
	}
	if len(r.PushWorkOrders) != 0 {
		a.tb.Fatalf("push of new documents returned conflicts: %s", data)
	}
	return took
}

func (a workOrderAPI) pushIDs(ids ...string) {
	a.tb.Helper()
	docs := make([]map[string]any, len(ids))
	for i, id := range ids {
		docs[i] = workOrder(id, "it leaks")
	}
	a.push(docs...)
}

// pull returns the ids of one page of changes after cursor ("" for the
// beginning) and the page's checkpoint cursor.
func (a workOrderAPI) pull(cursor string, limit int) ([]string, string) {
	a.tb.Helper()
	vars := map[string]any{"limit": limit}
	if cursor != "" {
		vars["cp"] = map[string]any{"cursor": cursor}
	}
	data := a.graphql(pullWorkOrdersQuery, vars)
	var r struct {
		PullWorkOrders bulk `json:"pullWorkOrders"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		a.tb.Fatal(err)
	}
	return r.PullWorkOrders.ids(), r.PullWorkOrders.Checkpoint.Cursor
}

// bulk is a WorkOrderPullBulk.
type bulk struct {
	Documents []struct {
		ID string `json:"id"`
	} `json:"documents"`
	Checkpoint struct {
		Cursor string `json:"cursor"`
	} `json:"checkpoint"`
}

func (b bulk) ids() []string {
	ids := make([]string, len(b.Documents))
	for i, d := range b.Documents {
		ids[i] = d.ID
	}
	return ids
}

// woEvent is one event of a work order stream.
type woEvent struct {
	ids    []string
	cursor string
	at     time.Time
}

// woStream is one streamWorkOrders subscription.
type woStream struct {
	c    *streamClient
	id   string
	last string // checkpoint cursor of the last event read
}

// subscribeWorkOrders starts streamWorkOrders on c; a non-empty
// authorization goes into the `headers` argument.
func subscribeWorkOrders(c *streamClient, id, authorization string) *woStream {
	c.tb.Helper()
	vars := map[string]any{}
	if authorization != "" {
		vars["headers"] = map[string]any{"Authorization": authorization}
	}
	c.subscribe(id, streamWorkOrdersSubscription, vars)
	return &woStream{c: c, id: id}
}

// parseEvent reads a stream event out of a message; anything else is an error.
func parseEvent(c *streamClient, id string, m wsMessage) (woEvent, error) {
	if m.Type != c.dataType() || m.ID != id {
		return woEvent{}, fmt.Errorf("got %s id=%q %.300s, want %s id=%q", m.Type, m.ID, m.Payload, c.dataType(), id)
	}
	var r struct {
		Data struct {
			StreamWorkOrders *bulk `json:"streamWorkOrders"`
		} `json:"data"`
		Errors []wireError `json:"errors"`
	}
	if err := json.Unmarshal(m.Payload, &r); err != nil {
		return woEvent{}, fmt.Errorf("event payload: %v: %.300s", err, m.Payload)
	}
	if len(r.Errors) > 0 || r.Data.StreamWorkOrders == nil {
		return woEvent{}, fmt.Errorf("event with errors or without data: %.300s", m.Payload)
	}
	b := r.Data.StreamWorkOrders
	if len(b.Documents) == 0 || b.Checkpoint.Cursor == "" {
		return woEvent{}, fmt.Errorf("event without documents or checkpoint: %.300s", m.Payload)
	}
	return woEvent{ids: b.ids(), cursor: b.Checkpoint.Cursor}, nil
}

// next returns the stream's next event, failing on anything else.
func (s *woStream) next(timeout time.Duration) woEvent {
	s.c.tb.Helper()
	m, at, err := s.c.readFrame(timeout)
	if err != nil {
		s.c.tb.Fatalf("waiting for an event of stream %s: %v", s.id, err)
	}
	ev, err := parseEvent(s.c, s.id, m)
	if err != nil {
		s.c.tb.Fatal(err)
	}
	ev.at = at
	s.last = ev.cursor
	return ev
}

// until reads events until one holds document id.
func (s *woStream) until(id string, timeout time.Duration) []woEvent {
	s.c.tb.Helper()
	deadline := time.Now().Add(timeout)
	var evs []woEvent
	for {
		ev := s.next(max(time.Until(deadline), time.Millisecond))
		evs = append(evs, ev)
		if slices.Contains(ev.ids, id) {
			return evs
		}
	}
}

var markerSeq atomic.Int64

// awaitLive makes sure every stream is live before a test counts events.
// A stream starts from the heads the server records when it accepts the
// connection's token, or the subscription's own (headers argument); a
// change committed before that moment is for the client's pull, not its
// stream, and the test cannot see when the subscribe message has been
// handled. So push marker documents until every stream has delivered the
// latest one: from then on, every change reaches every stream. It returns
// the markers pushed.
func awaitLive(tb testing.TB, api workOrderAPI, streams ...*woStream) []string {
	tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var markers []string
	for {
		if time.Now().After(deadline) {
			tb.Fatalf("streams not live after %d markers", len(markers))
		}
		// Unique in the test binary: a repeated id would be a no-op write.
		marker := fmt.Sprintf("marker-%d", markerSeq.Add(1))
		api.pushIDs(marker)
		markers = append(markers, marker)
		live := true
		for _, s := range streams {
			if !s.sees(marker, time.Second) {
				live = false
			}
		}
		if live {
			return markers
		}
	}
}

// sees reads events until one holds id; false if none came within timeout.
func (s *woStream) sees(id string, timeout time.Duration) bool {
	s.c.tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		m, at, err := s.c.readFrame(left)
		if errors.Is(err, errNoMessage) {
			return false
		}
		if err != nil {
			s.c.tb.Fatalf("stream %s ended while waiting for %s: %v", s.id, id, err)
		}
		ev, err := parseEvent(s.c, s.id, m)
		if err != nil {
			s.c.tb.Fatal(err)
		}
		ev.at = at
		s.last = ev.cursor
		if slices.Contains(ev.ids, id) {
			return true
		}
	}
}

// assertContiguous checks that events, in order, are exactly what pulls
// from cursor `from` return: each event holds the next page of changes and
// ends at that page's checkpoint, and nothing follows the last one.
func assertContiguous(tb testing.TB, api workOrderAPI, from string, events []woEvent) {
	tb.Helper()
	cursor := from
	for i, ev := range events {
		ids, next := api.pull(cursor, len(ev.ids))
		if !slices.Equal(ids, ev.ids) {
			tb.Fatalf("event %d holds %v; a pull from the previous checkpoint returns %v", i, ev.ids, ids)
		}
		if next != ev.cursor {
			tb.Fatalf("event %d ends at checkpoint %q; the pull of its documents ends at %q", i, ev.cursor, next)
		}
		cursor = ev.cursor
	}
	if ids, _ := api.pull(cursor, 1000); len(ids) != 0 {
		tb.Fatalf("changes after the last event's checkpoint never streamed: %v", ids)
	}
}

func eventIDs(evs []woEvent) []string {
	var ids []string
	for _, ev := range evs {
		ids = append(ids, ev.ids...)
	}
	return ids
}

func hasComplete(ms []wsMessage) bool {
	return slices.ContainsFunc(ms, func(m wsMessage) bool { return m.Type == "complete" })
}

// serveTracked serves env on a real listener, like env.Serve, and returns
// with its URL a function that gives, for a client's local address, a
// channel closed when the server closes its side of that connection.
func serveTracked(tb testing.TB, env *testenv.Env) (string, func(clientAddr string) <-chan struct{}) {
	tb.Helper()
	srv := httptest.NewUnstartedServer(env.Handler)
	l := &trackingListener{Listener: srv.Listener, closed: map[string]chan struct{}{}}
	srv.Listener = l
	srv.Start()
	tb.Cleanup(srv.Close)
	return srv.URL, func(addr string) <-chan struct{} { return l.closedChan(addr) }
}

// trackingListener keeps, by remote address, a channel for each accepted
// connection that closes with the server's side of it.
type trackingListener struct {
	net.Listener
	mu     sync.Mutex
	closed map[string]chan struct{}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &trackedConn{Conn: c, closed: l.closedChan(c.RemoteAddr().String())}, nil
}

func (l *trackingListener) closedChan(addr string) chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch, ok := l.closed[addr]
	if !ok {
		ch = make(chan struct{})
		l.closed[addr] = ch
	}
	return ch
}

type trackedConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.closed) })
	return err
}

// waitFor polls cond every 10ms until it holds or timeout passes. It is
// for what gives no signal (the hub's subscriber count); the wait is
// bounded, and the poll interval only sets how soon it notices.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

func TestStreamDeliversEveryChangeOnce(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	url := env.Serve(t)

	modes := []struct {
		name string
		// init is the connection_init payload for a token (nil: none).
		init func(token string) any
		// inArgument puts the token in the subscription's `headers` argument.
		inArgument bool
	}{
		{
			name: "token in connection_init",
			init: func(tok string) any { return map[string]any{"Authorization": bearer(tok)} },
		},
		{
			name: "token under headers in connection_init",
			init: func(tok string) any { return map[string]any{"headers": map[string]any{"Authorization": bearer(tok)}} },
		},
		{
			name:       "token in the headers argument of a connection without one",
			init:       func(string) any { return nil },
			inArgument: true,
		},
	}
	for _, proto := range streamProtocols {
		for _, mode := range modes {
			t.Run(proto+"/"+mode.name, func(t *testing.T) {
				api := newWorkOrderAPI(t, url, "tenant/"+t.Name())
				c := connectStream(t, url, proto, mode.init(api.token))
				var authorization string
				if mode.inArgument {
					authorization = bearer(api.token)
				}
				s := subscribeWorkOrders(c, "1", authorization)
				awaitLive(t, api, s)
				from := s.last

				api.pushIDs("wo-1")
				first := s.next(eventWait)
				if !slices.Equal(first.ids, []string{"wo-1"}) {
					t.Fatalf("event holds %v, want [wo-1]", first.ids)
				}
				if ids, cursor := api.pull(first.cursor, 1000); len(ids) != 0 || cursor != first.cursor {
					t.Fatalf("pull from the event's checkpoint = %v at %q, want nothing at the same checkpoint", ids, cursor)
				}

				api.pushIDs("wo-2")
				api.pushIDs("wo-3")
				events := append([]woEvent{first}, s.until("wo-3", eventWait)...)
				if got := eventIDs(events); !slices.Equal(got, []string{"wo-1", "wo-2", "wo-3"}) {
					t.Fatalf("streamed %v, want [wo-1 wo-2 wo-3] once each, in order", got)
				}
				assertContiguous(t, api, from, events)
			})
		}
	}
}

// A client pulls once its connection is accepted, and its subscription
// reaches the hub a moment later. A change committed in between must come
// in the stream, or the stream's checkpoints would carry the client past it.
func TestStreamStartsWhereTheConnectionWasAccepted(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	url := env.Serve(t)
	for _, proto := range streamProtocols {
		// The first subscriber of a scope; for a scope already running see
		// TestStreamJoiningARunningScopeGetsEachChangeOnce.
		t.Run(proto, func(t *testing.T) {
			api := newWorkOrderAPI(t, url, "tenant/"+t.Name())
			c := connectStream(t, url, proto, map[string]any{"Authorization": bearer(api.token)})
			_, from := api.pull("", 1000) // the client's first pull
			api.pushIDs("between")        // before its subscription
			s := subscribeWorkOrders(c, "1", "")
			api.pushIDs("after")
			events := s.until("after", eventWait)
			if got := eventIDs(events); !slices.Equal(got, []string{"between", "after"}) {
				t.Fatalf("streamed %v, want [between after]", got)
			}
			assertContiguous(t, api, from, events)
		})
	}
}

// A subscriber that joins while the running scope is reading a batch must
// get that batch once: either in the shared event or in what the hub reads
// for it alone to bring it up to date, not in both.
func TestStreamJoiningARunningScopeGetsEachChangeOnce(t *testing.T) {
	t.Parallel()
	const rounds = 25
	env := testenv.New(t, testenv.Options{})
	url := env.Serve(t)
	for _, proto := range streamProtocols {
		t.Run(proto, func(t *testing.T) {
			api := newWorkOrderAPI(t, url, "tenant/"+t.Name())
			initPayload := map[string]any{"Authorization": bearer(api.token)}
			other := subscribeWorkOrders(connectStream(t, url, proto, initPayload), "1", "")
			awaitLive(t, api, other) // keeps the scope running, and ahead

			var failures []string
			for i := range rounds {
				between, after := fmt.Sprintf("between-%d", i), fmt.Sprintf("after-%d", i)
				c := connectStream(t, url, proto, initPayload)
				_, from := api.pull("", 1000)
				// The push wakes the scope as it commits, so the subscription,
				// sent as the push returns, often reaches the hub while the
				// scope is reading this change.
				api.pushIDs(between)
				s := subscribeWorkOrders(c, "1", "")
				api.pushIDs(after)
				events := s.until(after, eventWait)
				if got := eventIDs(events); !slices.Equal(got, []string{between, after}) {
					failures = append(failures, fmt.Sprintf("round %d streamed %v", i, got))
				} else {
					assertContiguous(t, api, from, events)
				}
				other.until(after, eventWait)
				_ = c.conn.Close()
			}
			if len(failures) > 0 {
				t.Errorf("in %d of %d rounds a new subscriber did not get each change once:\n%s", len(failures), rounds, strings.Join(failures, "\n"))
			}
		})
	}
}

func TestStreamWithoutAValidTokenIsRefused(t *testing.T) {
	t.Parallel()
	expired, err := auth.Issue(testenv.Secret, "tenant-x", "user-1", time.Minute, time.Now().Add(-2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	otherSecret, err := auth.Issue([]byte("not-the-server-secret-not-the-server-secret"), "tenant-x", "user-1", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	refusals := []struct {
		name          string
		authorization string // in the headers argument; "" for no argument
	}{
		{"no token anywhere", ""},
		{"malformed token in headers", bearer("not-a-token")},
		{"token signed with another secret in headers", bearer(otherSecret)},
		{"expired token in headers", bearer(expired)},
		{"token past exp, within the verifier's leeway, in headers", bearer(pastExp(t, "tenant-x"))},
		{"another scheme in headers", "Basic dXNlcjpwYXNz"},
	}
	for _, proto := range streamProtocols {
		t.Run(proto, func(t *testing.T) {
			env := testenv.New(t, testenv.Options{})
			url := env.Serve(t)
			// A connection that brought no token is accepted…
			c := connectStream(t, url, proto, map[string]any{})

			for i, refusal := range refusals {
				id := fmt.Sprint(i + 1)
				subscribeWorkOrders(c, id, refusal.authorization)
				// …but its subscriptions get UNAUTHENTICATED and no data.
				m, err := c.read(eventWait)
				if err != nil {
					t.Fatalf("%s: waiting for the refusal: %v", refusal.name, err)
				}
				if m.Type != c.dataType() || m.ID != id {
					t.Fatalf("%s: got %s id=%q %s, want %s id=%q with errors", refusal.name, m.Type, m.ID, m.Payload, c.dataType(), id)
				}
				r := decodeResult(t, m)
				if r.hasData() {
					t.Errorf("%s: refused subscription got data: %s", refusal.name, m.Payload)
				}
				if len(r.Errors) != 1 || r.Errors[0].code() != "UNAUTHENTICATED" {
					t.Errorf("%s: errors = %+v, want one with extensions.code UNAUTHENTICATED", refusal.name, r.Errors)
				}
				// gqlgen ends an operation that produced only errors with complete.
				if m, err := c.read(eventWait); err != nil || m.Type != "complete" || m.ID != id {
					t.Errorf("%s: after the refusal got %s id=%q (%v), want complete id=%q", refusal.name, m.Type, m.ID, err, id)
				}
			}
			if st := env.Live.Stats(); st.Subscribers != 0 {
				t.Errorf("refused subscriptions reached the hub: %+v", st)
			}

			// The connection stays usable: a valid token in headers works on it.
			api := newWorkOrderAPI(t, url, "tenant/"+t.Name())
			s := subscribeWorkOrders(c, "valid", bearer(api.token))
			awaitLive(t, api, s)
		})
	}
}

func TestStreamRejectsABadTokenAtConnectionInit(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	url := env.Serve(t)
	expired, err := auth.Issue(testenv.Secret, "tenant-x", "user-1", time.Minute, time.Now().Add(-2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	stale := pastExp(t, "tenant-x")
	payloads := []struct {
		name    string
		payload any
		upgrade http.Header // upgrade request headers
	}{
		{name: "malformed token", payload: map[string]any{"Authorization": bearer("not-a-token")}},
		{name: "expired token", payload: map[string]any{"Authorization": bearer(expired)}},
		{name: "token past exp, within the verifier's leeway", payload: map[string]any{"Authorization": bearer(stale)}},
		{name: "another scheme", payload: map[string]any{"Authorization": "Basic dXNlcjpwYXNz"}},
		{name: "malformed token under headers", payload: map[string]any{"headers": map[string]any{"Authorization": bearer("not-a-token")}}},
		{name: "token past exp, within the leeway, with the upgrade request", upgrade: http.Header{"Authorization": {bearer(stale)}}},
	}
	for _, proto := range streamProtocols {
		for _, p := range payloads {
			t.Run(proto+"/"+p.name, func(t *testing.T) {
				c, _, err := dialStream(t, url, proto, streamDialOptions{header: p.upgrade})
				if err != nil {
					t.Fatal(err)
				}
				c.init(p.payload)
				ce, before := c.closeCode(eventWait)
				if ce.Code != closeForbidden {
					t.Errorf("close code = %d %q, want %d", ce.Code, ce.Text, closeForbidden)
				}
				switch proto {
				case protoTransportWS:
					// The close code is all this protocol has to say.
					if len(before) != 0 {
						t.Errorf("messages before the close: %s", describeMessages(before))
					}
				case protoLegacyWS:
					if len(before) != 1 || before[0].Type != "connection_error" {
						t.Fatalf("messages before the close: %s, want one connection_error", describeMessages(before))
					}
					var e wireError
					if err := json.Unmarshal(before[0].Payload, &e); err != nil || e.Message == "" {
						t.Errorf("connection_error payload = %s, want an error with a message", before[0].Payload)
					}
				}
			})
		}
	}
}

// pastExp returns a token of the tenant whose exp passed 10s ago: still
// inside the verifier's leeway for clock skew (auth.DefaultLeeway, 30s), so
// HTTP requests accept it, but a websocket must not: it would be closed at
// expiry, that is at once, and the client would reconnect with it in a loop.
func pastExp(tb testing.TB, tenantID string) string {
	tb.Helper()
	tok, err := auth.Issue(testenv.Secret, tenantID, "user-1", 10*time.Second, time.Now().Add(-20*time.Second))
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// shortToken returns a token of the tenant that expires in about ttl, and
// its expiry as the server reads it (JWT exp has whole seconds).
func shortToken(tb testing.TB, tenantID string, ttl time.Duration) (string, time.Time) {
	tb.Helper()
	now := time.Now()
	tok, err := auth.Issue(testenv.Secret, tenantID, "user-1", ttl, now)
	if err != nil {
		tb.Fatal(err)
	}
	return tok, now.Add(ttl).Truncate(time.Second)
}

func TestStreamClosesWhenTheTokenExpires(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	url := env.Serve(t)

	for _, proto := range streamProtocols {
		for _, where := range []string{"connection_init", "headers argument"} {
			t.Run(proto+"/token in "+where, func(t *testing.T) {
				t.Parallel()
				tenant := "tenant/" + t.Name()
				api := newWorkOrderAPI(t, url, tenant)
				tok, exp := shortToken(t, tenant, 3*time.Second)

				var s *woStream
				if where == "connection_init" {
					c := connectStream(t, url, proto, map[string]any{"Authorization": bearer(tok)})
					s = subscribeWorkOrders(c, "1", "")
				} else {
					c := connectStream(t, url, proto, nil)
					s = subscribeWorkOrders(c, "1", bearer(tok))
				}
				awaitLive(t, api, s)
				if time.Until(exp) < 500*time.Millisecond {
					t.Fatalf("set-up took too long: the token expires at %v", exp)
				}
				api.pushIDs("before-expiry")
				if !s.sees("before-expiry", eventWait) {
					t.Fatal("no event before the token expired")
				}

				ce, before := s.c.closeCode(time.Until(exp) + 3*time.Second)
				closedAt := time.Now()
				if ce.Code != closeForbidden || ce.Text != "token expired" {
					t.Errorf("close = %d %q, want %d \"token expired\"", ce.Code, ce.Text, closeForbidden)
				}
				if closedAt.Before(exp.Add(-100 * time.Millisecond)) {
					t.Errorf("closed at %v, before the token's exp %v", closedAt.Format(time.StampMilli), exp.Format(time.StampMilli))
				}
				if late := closedAt.Sub(exp); late > 2*time.Second {
					t.Errorf("closed %v after the token's exp", late)
				}
				if hasComplete(before) {
					t.Errorf("the server completed the stream instead of (only) closing: %s", describeMessages(before))
				}
			})
		}
	}
}

// A token may also come with the upgrade request itself (websocketInit:
// "or with the upgrade request itself"); that connection must end with
// 4403 at the token's expiry like the others.
func TestStreamClosesWhenTheUpgradeRequestTokenExpires(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	url := env.Serve(t)
	for _, proto := range streamProtocols {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			tenant := "tenant/" + t.Name()
			api := newWorkOrderAPI(t, url, tenant)
			tok, exp := shortToken(t, tenant, 3*time.Second)
			c, _, err := dialStream(t, url, proto, streamDialOptions{header: http.Header{"Authorization": {bearer(tok)}}})
			if err != nil {
				t.Fatal(err)
			}
			c.init(nil)
			c.expectAck()
			s := subscribeWorkOrders(c, "1", "")
			awaitLive(t, api, s) // the upgrade request's identity serves the stream

			m, err := c.read(time.Until(exp) + 3*time.Second)
			var ce *websocket.CloseError
			switch {
			case errors.As(err, &ce):
				if ce.Code != closeForbidden {
					t.Errorf("close = %d %q, want %d", ce.Code, ce.Text, closeForbidden)
				}
			case errors.Is(err, errNoMessage):
				t.Errorf("connection still open %v after its token (from the upgrade request) expired", time.Since(exp).Round(time.Millisecond))
			default:
				t.Errorf("got %s %s (%v), want a close with %d", m.Type, m.Payload, err, closeForbidden)
			}
		})
	}
}

func TestStreamKeepsTenantsApart(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	url := env.Serve(t)
	for _, proto := range streamProtocols {
		t.Run(proto, func(t *testing.T) {
			apiA := newWorkOrderAPI(t, url, "tenant-a/"+t.Name())
			apiB := newWorkOrderAPI(t, url, "tenant-b/"+t.Name())

			a := subscribeWorkOrders(connectStream(t, url, proto, map[string]any{"Authorization": bearer(apiA.token)}), "1", "")
			b := subscribeWorkOrders(connectStream(t, url, proto, map[string]any{"Authorization": bearer(apiB.token)}), "1", "")
			// Tenant A's connection, with tenant B's token in the argument:
			// the argument decides whose stream it is.
			bOnA := subscribeWorkOrders(connectStream(t, url, proto, map[string]any{"Authorization": bearer(apiA.token)}), "1", bearer(apiB.token))
			awaitLive(t, apiA, a)
			awaitLive(t, apiB, b, bOnA)

			apiA.pushIDs("only-a")
			if ev := a.next(eventWait); !slices.Equal(ev.ids, []string{"only-a"}) {
				t.Fatalf("tenant A's stream got %v, want [only-a]", ev.ids)
			}
			// Nothing of the other tenant's comes between: each stream's next
			// event is its own tenant's next change. A leak would come first,
			// as the leaked change was committed and delivered before it.
			apiB.pushIDs("only-b")
			for _, s := range []*woStream{b, bOnA} {
				if ev := s.next(eventWait); !slices.Equal(ev.ids, []string{"only-b"}) {
					t.Fatalf("tenant B's stream got %v after tenant A's push, want [only-b]", ev.ids)
				}
			}
			apiA.pushIDs("a-after-b")
			if ev := a.next(eventWait); !slices.Equal(ev.ids, []string{"a-after-b"}) {
				t.Fatalf("tenant A's stream got %v after tenant B's push, want [a-after-b]", ev.ids)
			}
		})
	}
}

// A subscriber that stops reading must not hold back the others or the
// writers: the hub drops it and the server closes its connection, so the
// client reconnects and resyncs from its checkpoint.
func TestStreamDropsASlowSubscriberWithoutHoldingBackOthers(t *testing.T) {
	t.Parallel()
	const (
		minPushes    = 200
		maxPushes    = 600
		rowsPerPush  = 3
		maxPushTime  = 2 * time.Second
		maxEventLag  = 3 * time.Second
		stalledBytes = 256 << 10 // client socket receive buffer of the two that stop reading
		// writeTimeout is the server's bound on a websocket write (10s in
		// production): shorter, so the stuck client is closed sooner, but
		// well above the time of the few pushes between a stalled write and
		// the hub's drop (seconds, on a loaded machine under -race), or the
		// lagging client's stalled write would time out before it reads
		// again, and it would be closed without its 1013.
		writeTimeout = 5 * time.Second
	)
	description := strings.Repeat("d", 10_000)

	for _, proto := range streamProtocols {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			env := testenv.New(t, testenv.Options{StreamBuffer: 2, Server: server.Config{WebsocketWriteTimeout: writeTimeout}})
			url, serverClosed := serveTracked(t, env)
			api := newWorkOrderAPI(t, url, "tenant/"+t.Name())
			initPayload := map[string]any{"Authorization": bearer(api.token)}

			// The fast client reads everything as it comes, parsing aside.
			fastConn, _, err := dialStream(t, url, proto, streamDialOptions{readAhead: 4096})
			if err != nil {
				t.Fatal(err)
			}
			fastConn.init(initPayload)
			fastConn.expectAck()
			fast := subscribeWorkOrders(fastConn, "1", "")
			// stuck never reads again; lagging resumes reading as soon as
			// the hub has dropped it.
			var stalled []*woStream
			for range 2 {
				c, _, err := dialStream(t, url, proto, streamDialOptions{readBuffer: stalledBytes})
				if err != nil {
					t.Fatal(err)
				}
				c.init(initPayload)
				c.expectAck()
				stalled = append(stalled, subscribeWorkOrders(c, "1", ""))
			}
			stuck, lagging := stalled[0], stalled[1]
			awaitLive(t, api, fast, stuck, lagging)
			fastFrom, stuckFrom, laggingFrom := fast.last, stuck.last, lagging.last

			// From here on only the fast client is read; nothing reads the
			// other two until the hub has dropped them.
			type ending struct {
				code   *websocket.CloseError
				before []wsMessage
				err    error
			}
			laggingEnd := make(chan ending, 1)
			var (
				pushed    []string
				pushedAt  = map[string]time.Time{}
				slowest   time.Duration
				droppedAt time.Time
			)
			// Each push waits for the fast client to have the one before, so
			// the fast client never has more than one event outstanding: with
			// StreamBuffer 2, unpaced pushes on a small machine under -race
			// saturate the CPUs and the hub then drops the reading client too
			// (rightly: it fell behind). The stalled two still get every event.
			var fastEvents []woEvent
			for i := 0; i < maxPushes && (i < minPushes || droppedAt.IsZero()); i++ {
				docs := make([]map[string]any, rowsPerPush)
				for j := range docs {
					id := fmt.Sprintf("big-%03d-%d", i, j)
					docs[j] = workOrder(id, description)
					pushed = append(pushed, id)
				}
				slowest = max(slowest, api.push(docs...))
				for _, d := range docs {
					pushedAt[d["id"].(string)] = time.Now()
				}
				fastEvents = append(fastEvents, fast.until(pushed[len(pushed)-1], eventWait)...)
				if droppedAt.IsZero() && env.Live.Stats().Subscribers == 1 {
					droppedAt = time.Now()
					t.Logf("hub dropped the stalled subscribers after push %d", i+1)
					go func() {
						ce, before, err := lagging.c.waitClose(20 * time.Second)
						laggingEnd <- ending{ce, before, err}
					}()
				}
			}
			if droppedAt.IsZero() {
				t.Fatalf("after %d pushes the hub still has %d subscribers; want the two stalled ones dropped", len(pushed)/rowsPerPush, env.Live.Stats().Subscribers)
			}
			if slowest > maxPushTime {
				t.Errorf("slowest push took %v; pushes must not wait for subscribers", slowest)
			}
			t.Logf("%d pushes of %d documents, slowest %v", len(pushed)/rowsPerPush, rowsPerPush, slowest)

			// The fast subscriber got every change, promptly, in order.
			if ids := eventIDs(fastEvents); !slices.Equal(ids, pushed) {
				t.Fatalf("fast subscriber got %d documents, not the %d pushed, in order", len(ids), len(pushed))
			}
			var lag time.Duration
			for _, ev := range fastEvents {
				for _, id := range ev.ids {
					// Negative when the event beat the push's response.
					lag = max(lag, ev.at.Sub(pushedAt[id]))
				}
			}
			t.Logf("fast subscriber: %d events, worst lag after a push %v", len(fastEvents), lag)
			if lag > maxEventLag {
				t.Errorf("fast subscriber got a change %v after its push", lag)
			}
			assertContiguous(t, api, fastFrom, fastEvents)

			// checkDropped: a dropped client got a gap-free prefix of the
			// changes, never a complete, and its checkpoint resumes the rest.
			checkDropped := func(name, from string, before []wsMessage, c *streamClient) {
				t.Helper()
				if hasComplete(before) {
					t.Errorf("%s: the server completed the stream: %s", name, describeMessages(before))
				}
				var evs []woEvent
				for _, m := range before {
					ev, err := parseEvent(c, "1", m)
					if err != nil {
						t.Errorf("%s: %v", name, err)
						return
					}
					evs = append(evs, ev)
				}
				ids := eventIDs(evs)
				if !slices.Equal(ids, pushed[:len(ids)]) {
					t.Errorf("%s got %v…, not a prefix of the pushes", name, ids[:min(len(ids), 5)])
					return
				}
				cursor := from
				if len(evs) > 0 {
					cursor = evs[len(evs)-1].cursor
				}
				rest, _ := api.pull(cursor, 1000)
				if !slices.Equal(rest, pushed[len(ids):]) {
					t.Errorf("%s: pull from its last checkpoint returns %d documents, want the %d it missed", name, len(rest), len(pushed)-len(ids))
				}
				t.Logf("%s: %d documents streamed before the close, %d left to pull", name, len(ids), len(rest))
			}

			// The lagging subscriber, reading again right after the drop,
			// finds the server's close 1013 after what was in flight.
			select {
			case end := <-laggingEnd:
				if end.err != nil {
					t.Fatalf("lagging subscriber: %v", end.err)
				}
				if end.code.Code != closeTryAgainLater {
					t.Errorf("lagging subscriber: close %d %q, want %d", end.code.Code, end.code.Text, closeTryAgainLater)
				}
				t.Logf("lagging subscriber: close %d %v after the drop", end.code.Code, time.Since(droppedAt).Round(time.Millisecond))
				checkDropped("lagging subscriber", laggingFrom, end.before, lagging.c)
			case <-time.After(25 * time.Second):
				t.Fatal("lagging subscriber: connection not closed 25s after the drop")
			}

			// The stuck subscriber reads only once the server has given up on
			// its stalled write and closed its side of the connection.
			select {
			case <-serverClosed(stuck.c.conn.LocalAddr().String()):
				t.Logf("server closed the stuck connection %v after the drop (write timeout %v)", time.Since(droppedAt).Round(time.Millisecond), writeTimeout)
			case <-time.After(writeTimeout + 20*time.Second):
				t.Fatalf("stuck subscriber: connection still open %v after the drop", time.Since(droppedAt).Round(time.Second))
			}
			ce, before := stuck.c.closeCode(15 * time.Second)
			t.Logf("stuck subscriber: close %d %q", ce.Code, ce.Text)
			if ce.Code != closeTryAgainLater && ce.Code != closeAbnormal {
				t.Errorf("stuck subscriber: close %d %q, want %d or %d", ce.Code, ce.Text, closeTryAgainLater, closeAbnormal)
			}
			checkDropped("stuck subscriber", stuckFrom, before, stuck.c)
		})
	}
}

func TestStreamAcrossInstancesOnOneDatabase(t *testing.T) {
	t.Parallel()
	for _, proto := range streamProtocols {
		t.Run(proto, func(t *testing.T) {
			envA := testenv.New(t, testenv.Options{})
			envB := testenv.New(t, testenv.Options{DB: envA.DB})
			urlA, urlB := envA.Serve(t), envB.Serve(t)
			tenant := "tenant/" + t.Name()
			apiA := newWorkOrderAPI(t, urlA, tenant)
			apiB := workOrderAPI{tb: t, url: urlB, token: apiA.token}
			initPayload := map[string]any{"Authorization": bearer(apiA.token)}

			// Instance B learns of A's commits only through its poller.
			c := connectStream(t, urlB, proto, initPayload)
			s := subscribeWorkOrders(c, "1", "")
			awaitLive(t, apiA, s)
			apiA.pushIDs("from-a-1")
			ev := s.next(eventWait)
			if !slices.Equal(ev.ids, []string{"from-a-1"}) {
				t.Fatalf("B streamed %v, want [from-a-1]", ev.ids)
			}
			checkpoint := ev.cursor

			// Offline: the client goes away, A takes three more changes.
			_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			_ = c.conn.Close()
			if !waitFor(5*time.Second, func() bool { return envB.Live.Stats().Subscribers == 0 }) {
				t.Fatalf("B's hub still serves the closed connection: %+v", envB.Live.Stats())
			}
			apiA.pushIDs("from-a-2")
			apiA.pushIDs("from-a-3")
			apiA.pushIDs("from-a-4")

			// Back online at B: subscribe, pull from the last event's checkpoint.
			s = subscribeWorkOrders(connectStream(t, urlB, proto, initPayload), "1", "")
			ids, resumed := apiB.pull(checkpoint, 1000)
			if !slices.Equal(ids, []string{"from-a-2", "from-a-3", "from-a-4"}) {
				t.Fatalf("pull from the last checkpoint = %v, want exactly [from-a-2 from-a-3 from-a-4]", ids)
			}
			markers := awaitLive(t, apiA, s)
			apiA.pushIDs("from-a-5")
			s.until("from-a-5", eventWait)
			// Pull and stream meet: nothing between them is lost.
			ids, cursor := apiB.pull(resumed, 1000)
			if want := append(markers, "from-a-5"); !slices.Equal(ids, want) || cursor != s.last {
				t.Fatalf("after the resumed pull: pull = %v at %q; want %v at the stream's checkpoint %q", ids, cursor, want, s.last)
			}
		})
	}
}

func TestStreamIsNeverCompletedByTheServer(t *testing.T) {
	t.Parallel()
	for _, proto := range streamProtocols {
		t.Run(proto, func(t *testing.T) {
			env := testenv.New(t, testenv.Options{}) // its own hub, for the stats
			url := env.Serve(t)
			api := newWorkOrderAPI(t, url, "tenant/"+t.Name())
			c := connectStream(t, url, proto, map[string]any{"Authorization": bearer(api.token)})
			s := subscribeWorkOrders(c, "1", "")
			awaitLive(t, api, s)
			api.pushIDs("wo-1")
			api.pushIDs("wo-2")
			s.until("wo-2", eventWait)

			// Quiet, but live: no complete (nor anything else).
			if m, err := c.read(time.Second); !errors.Is(err, errNoMessage) {
				t.Fatalf("got %s id=%q %.300s (%v) on a quiet stream, want nothing", m.Type, m.ID, m.Payload, err)
			}
			if st := env.Live.Stats(); st.Subscribers != 1 {
				t.Fatalf("hub stats %+v, want the one subscriber", st)
			}

			// The client ends it: gqlgen confirms with complete, the hub lets go.
			c.stop("1")
			if m, err := c.read(eventWait); err != nil || m.Type != "complete" || m.ID != "1" {
				t.Errorf("after the client's stop got %s id=%q (%v), want complete id=1", m.Type, m.ID, err)
			}
			if !waitFor(5*time.Second, func() bool { return env.Live.Stats().Subscribers == 0 }) {
				t.Errorf("hub still holds the stopped subscription: %+v", env.Live.Stats())
			}
		})
	}
}

func TestStreamOriginCheck(t *testing.T) {
	t.Parallel()
	allowing := testenv.New(t, testenv.Options{Server: server.Config{AllowedOrigins: []string{"https://app.example"}}}).Serve(t)
	defaults := testenv.New(t, testenv.Options{}).Serve(t)
	token := testenv.Token(t, "tenant-origin", "user-1")

	cases := []struct {
		name   string
		url    string
		origin string // "" sends none
		ok     bool
	}{
		{"allowed origin", allowing, "https://app.example", true},
		{"allowed origin in other case", allowing, "HTTPS://APP.example", true},
		{"other origin", allowing, "https://evil.example", false},
		{"allowed host on another scheme", allowing, "http://app.example", false},
		{"no origin (not a browser)", allowing, "", true},
		// Without AllowedOrigins no other browser origin may open a
		// websocket; the server's own pages (the Playground, the demo) may.
		{"default config, any origin", defaults, "https://app.example", false},
		{"default config, the server's own origin", defaults, defaults, true},
		{"default config, the server's host on another port", defaults, strings.Replace(defaults, "127.0.0.1:", "127.0.0.1:1", 1), false},
		{"default config, no origin", defaults, "", true},
	}
	for _, proto := range streamProtocols {
		for _, tc := range cases {
			t.Run(proto+"/"+tc.name, func(t *testing.T) {
				header := http.Header{}
				if tc.origin != "" {
					header.Set("Origin", tc.origin)
				}
				c, resp, err := dialStream(t, tc.url, proto, streamDialOptions{header: header})
				if !tc.ok {
					if err == nil {
						t.Fatal("upgrade accepted, want 403")
					}
					if resp == nil || resp.StatusCode != http.StatusForbidden {
						t.Fatalf("upgrade refused with %v (response %v), want 403", err, resp)
					}
					return
				}
				if err != nil {
					t.Fatalf("upgrade refused: %v", err)
				}
				c.init(map[string]any{"Authorization": bearer(token)})
				c.expectAck()
			})
		}
	}
}

// RxDB sends its token both in connection_init and in every subscription's
// headers argument, and pulls once connected. The stream must start where
// the connection was accepted, before that pull: a change committed after
// the pull read but before the subscription arrived is in neither the pull
// nor a stream that started at the subscription's arrival, and the next
// event's checkpoint jumps past it (seen once in nine failovers across
// three instances, e2e/regions_test.go).
func TestStreamAuthenticatedTwiceStartsWhereTheConnectionWasAccepted(t *testing.T) {
	t.Parallel()
	for _, proto := range streamProtocols {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			env := testenv.New(t, testenv.Options{})
			base := env.Serve(t)
			api := newWorkOrderAPI(t, base, "tenant-twice-"+proto)
			api.pushIDs("before")

			c := connectStream(t, base, proto, map[string]any{"Authorization": bearer(api.token)})
			// The client's pull after connecting, then a change it missed,
			// then its subscription.
			if ids, _ := api.pull("", 1000); !slices.Equal(ids, []string{"before"}) {
				t.Fatalf("pulled %v, want [before]", ids)
			}
			api.pushIDs("X")
			s := subscribeWorkOrders(c, "1", bearer(api.token))
			api.pushIDs("Y")
			var got []string
			for _, ev := range s.until("Y", eventWait) {
				got = append(got, ev.ids...)
			}
			if !slices.Contains(got, "X") {
				t.Fatalf("the stream delivered %v: X, committed after the pull and before the subscription, was skipped", got)
			}
		})
	}
}
