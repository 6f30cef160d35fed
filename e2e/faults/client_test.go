package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tidemark/tidemark/auth"
)

// client posts GraphQL operations as one caller.
type client struct {
	url   string // GraphQL endpoint
	token string
	http  *http.Client
}

// clients numbers the users: each client is a user of its own, as each
// device is, so the per-user websocket cap does not bind the tests.
var clients atomic.Int64

func newClient(t *testing.T, s *server, secret []byte, tenant string) *client {
	t.Helper()
	tok, err := auth.Issue(secret, tenant, fmt.Sprintf("faults-%d", clients.Add(1)), 2*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &client{url: s.url() + "/graphql", token: tok, http: &http.Client{Timeout: 60 * time.Second}}
}

// opError is an operation that answered with GraphQL errors.
type opError struct {
	status int
	errs   []struct {
		Message    string
		Extensions struct{ Code string }
	}
}

func (e *opError) Error() string {
	var parts []string
	for _, x := range e.errs {
		parts = append(parts, fmt.Sprintf("%s (%s)", x.Message, x.Extensions.Code))
	}
	return fmt.Sprintf("HTTP %d: %s", e.status, strings.Join(parts, "; "))
}

// codeOf names an error's class: its first extensions.code, NO_CODE for a
// GraphQL error without one, or TRANSPORT when no GraphQL answer came.
func codeOf(err error) string {
	var oe *opError
	if errors.As(err, &oe) {
		if len(oe.errs) > 0 && oe.errs[0].Extensions.Code != "" {
			return oe.errs[0].Extensions.Code
		}
		return "NO_CODE"
	}
	return "TRANSPORT"
}

func (c *client) do(ctx context.Context, query string, vars map[string]any, out any) error {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	res, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	var r struct {
		Data   json.RawMessage
		Errors json.RawMessage
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("HTTP %d: %.300s", res.StatusCode, raw)
	}
	if len(r.Errors) > 0 && string(r.Errors) != "null" {
		oe := &opError{status: res.StatusCode}
		if err := json.Unmarshal(r.Errors, &oe.errs); err != nil {
			return fmt.Errorf("HTTP %d: %.300s", res.StatusCode, raw)
		}
		return oe
	}
	if out != nil {
		return json.Unmarshal(r.Data, out)
	}
	return nil
}

// doc is the part of a work order the checks compare.
type doc struct {
	ID        string    `json:"id"`
	Title     string    `json:"title"`
	Deleted   bool      `json:"deleted"`
	UpdatedAt time.Time `json:"updatedAt"`
}

const pushQuery = `mutation($rows: [WorkOrderPushRow!]!) { pushWorkOrders(rows: $rows) { id title } }`

const pullQuery = `query($cp: CheckpointInput, $limit: Int!) {
  pullWorkOrders(checkpoint: $cp, limit: $limit) { documents { id title deleted updatedAt } checkpoint { cursor } }
}`

const streamQuery = `subscription { streamWorkOrders { documents { id title deleted updatedAt } checkpoint { cursor } } }`

// push sends rows; conflicts (a non-empty result) are an error here, as
// every test's pushers own their documents.
func (c *client) push(ctx context.Context, rows []map[string]any) error {
	var out struct{ PushWorkOrders []doc }
	if err := c.do(ctx, pushQuery, map[string]any{"rows": rows}, &out); err != nil {
		return err
	}
	if len(out.PushWorkOrders) > 0 {
		return fmt.Errorf("unexpected conflicts: %v", out.PushWorkOrders)
	}
	return nil
}

// pullPage pulls one page after cursor ("" is the beginning).
func (c *client) pullPage(ctx context.Context, cursor string, limit int) ([]doc, string, error) {
	var cp any
	if cursor != "" {
		cp = map[string]any{"cursor": cursor}
	}
	var out struct {
		PullWorkOrders struct {
			Documents  []doc
			Checkpoint *struct{ Cursor string }
		}
	}
	if err := c.do(ctx, pullQuery, map[string]any{"cp": cp, "limit": limit}, &out); err != nil {
		return nil, cursor, err
	}
	if out.PullWorkOrders.Checkpoint != nil {
		cursor = out.PullWorkOrders.Checkpoint.Cursor
	}
	return out.PullWorkOrders.Documents, cursor, nil
}

// pullAll pulls from the beginning to the end and returns every document
// as often as the pull returned it.
func (c *client) pullAll(ctx context.Context) ([]doc, error) {
	var all []doc
	cursor := ""
	for {
		docs, next, err := c.pullPage(ctx, cursor, 1000)
		if err != nil {
			return nil, err
		}
		all = append(all, docs...)
		if len(docs) == 0 {
			return all, nil
		}
		cursor = next
	}
}

// ledger is what the pushers had acknowledged: each document's last
// acknowledged title.
type ledger struct {
	mu     sync.Mutex
	titles map[string]string
	acks   int
}

func newLedger() *ledger { return &ledger{titles: map[string]string{}} }

func (l *ledger) ack(rows []map[string]any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range rows {
		d := r["newDocumentState"].(map[string]any)
		l.titles[d["id"].(string)] = d["title"].(string)
	}
	l.acks++
}

func (l *ledger) pushes() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acks
}

func (l *ledger) snapshot() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := make(map[string]string, len(l.titles))
	for k, v := range l.titles {
		m[k] = v
	}
	return m
}

// diff describes how got differs from the ledger (empty when it does not).
func (l *ledger) diff(got map[string]string) string {
	want := l.snapshot()
	var missing, stale, extra []string
	for id, title := range want {
		switch g, ok := got[id]; {
		case !ok:
			missing = append(missing, id)
		case g != title:
			stale = append(stale, fmt.Sprintf("%s=%q want %q", id, g, title))
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			extra = append(extra, id)
		}
	}
	if len(missing)+len(stale)+len(extra) == 0 {
		return ""
	}
	slices.Sort(missing)
	slices.Sort(stale)
	slices.Sort(extra)
	short := func(xs []string) []string { return xs[:min(len(xs), 5)] }
	return fmt.Sprintf("%d of %d documents missing %v, %d stale %v, %d never acknowledged %v",
		len(missing), len(want), short(missing), len(stale), short(stale), len(extra), short(extra))
}

// checkFullPull pulls everything from the beginning and checks that each
// acknowledged document comes exactly once, at its last acknowledged state.
func checkFullPull(t *testing.T, c *client, l *ledger) {
	t.Helper()
	docs, err := c.pullAll(t.Context())
	if err != nil {
		t.Fatalf("full pull: %v", err)
	}
	got := map[string]string{}
	dup := 0
	for _, d := range docs {
		if _, ok := got[d.ID]; ok {
			dup++
		}
		got[d.ID] = d.Title
	}
	if dup > 0 {
		t.Errorf("a full pull returned %d documents more than once", dup)
	}
	if d := l.diff(got); d != "" {
		t.Errorf("full pull: %s", d)
	}
	t.Logf("full pull: %d documents, each once, all at their last acknowledged state", len(docs))
}

// replica is a client's copy of the tenant's work orders.
type replica struct {
	mu     sync.Mutex
	titles map[string]string
	at     map[string]time.Time
	cursor string
}

func newReplica() *replica { return &replica{titles: map[string]string{}, at: map[string]time.Time{}} }

// apply keeps, of two states of a document, the later one: a pull and a
// stream event of one client may arrive out of order.
func (r *replica) apply(docs []doc, cursor string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range docs {
		if d.UpdatedAt.Before(r.at[d.ID]) {
			continue
		}
		r.titles[d.ID], r.at[d.ID] = d.Title, d.UpdatedAt
	}
	if cursor != "" {
		r.cursor = cursor
	}
}

func (r *replica) copy() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[string]string, len(r.titles))
	for k, v := range r.titles {
		m[k] = v
	}
	return m
}

func (r *replica) checkpoint() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cursor
}

// catchUp pulls from the replica's checkpoint until nothing is left.
func (r *replica) catchUp(ctx context.Context, c *client) error {
	for {
		docs, next, err := c.pullPage(ctx, r.checkpoint(), 200)
		if err != nil {
			return err
		}
		r.apply(docs, next)
		if len(docs) == 0 {
			return nil
		}
	}
}

// streamer is a live client as RxDB runs one: connect, authenticate the
// connection, pull from its checkpoint until nothing is left, subscribe,
// and apply every event; when the connection ends, do all of that again.
// It never pulls while its subscription runs, so a change the stream skips
// stays missing.
type streamer struct {
	*replica
	c *client
	// subscribeFirst subscribes before the pull on connect and retries
	// that pull on the same connection until it succeeds: the sequence of
	// a client that connects while the database is down (issue 11).
	subscribeFirst bool

	mu         sync.Mutex
	reconnects int
	closes     []string // why each connection ended
	connected  bool
}

func (s *streamer) run(ctx context.Context) {
	wsURL := "ws" + strings.TrimPrefix(s.c.url, "http")
	d := &websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 10 * time.Second}
	for ctx.Err() == nil {
		err := s.session(ctx, d, wsURL)
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		s.connected = false
		s.reconnects++
		s.closes = append(s.closes, err.Error())
		s.mu.Unlock()
		select { // a client's reconnect pause
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (s *streamer) session(ctx context.Context, d *websocket.Dialer, wsURL string) error {
	conn, _, err := d.DialContext(ctx, wsURL, nil)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := conn.WriteJSON(map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + s.c.token}}); err != nil {
		return err
	}
	type message struct {
		ID      string `json:"id"`
		Type    string `json:"type"`
		Payload struct {
			Data struct {
				StreamWorkOrders struct {
					Documents  []doc
					Checkpoint *struct{ Cursor string }
				}
			}
			Errors json.RawMessage
		}
	}
	read := func() (message, error) {
		for {
			var m message
			if err := conn.ReadJSON(&m); err != nil {
				return m, err
			}
			if m.Type == "ping" {
				if err := conn.WriteJSON(map[string]string{"type": "pong"}); err != nil {
					return m, err
				}
				continue
			}
			return m, nil
		}
	}
	m, err := read()
	if err != nil {
		return fmt.Errorf("waiting for connection_ack: %w", err)
	}
	if m.Type != "connection_ack" {
		return fmt.Errorf("got %q, want connection_ack", m.Type)
	}
	subscribe := func() error {
		return conn.WriteJSON(map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{"query": streamQuery}})
	}
	if s.subscribeFirst {
		// The pull walks from where the replica stood at connect, on a
		// cursor of its own: the stream's events move the replica's.
		cursor := s.checkpoint()
		if err := subscribe(); err != nil {
			return err
		}
		go func() {
			for ctx.Err() == nil {
				docs, next, err := s.c.pullPage(ctx, cursor, 200)
				if err != nil {
					select {
					case <-ctx.Done():
					case <-time.After(100 * time.Millisecond): // a client's retry pause
					}
					continue
				}
				s.apply(docs, "")
				if len(docs) == 0 {
					return
				}
				cursor = next
			}
		}()
	} else {
		if err := s.catchUp(ctx, s.c); err != nil {
			return fmt.Errorf("pull on connect: %w", err)
		}
		if err := subscribe(); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.connected = true
	s.mu.Unlock()
	for {
		m, err := read()
		if err != nil {
			return err
		}
		switch m.Type {
		case "next":
			if len(m.Payload.Errors) > 0 && string(m.Payload.Errors) != "null" {
				return fmt.Errorf("stream error: %s", m.Payload.Errors)
			}
			ev := m.Payload.Data.StreamWorkOrders
			cursor := ""
			if ev.Checkpoint != nil {
				cursor = ev.Checkpoint.Cursor
			}
			s.apply(ev.Documents, cursor)
		case "error", "complete":
			return fmt.Errorf("the server sent %s: %s", m.Type, m.Payload.Errors)
		}
	}
}

// state says whether the streamer is subscribed, how often it reconnected
// and why its connections ended (each reason with its count).
func (s *streamer) state() (connected bool, reconnects int, closes map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	closes = map[string]int{}
	for _, c := range s.closes {
		closes[c]++
	}
	return s.connected, s.reconnects, closes
}
