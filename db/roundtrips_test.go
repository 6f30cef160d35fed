package db_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
	"github.com/tidemark/tidemark/testenv"
)

// tripCounter is a TCP proxy on 127.0.0.1 in front of the test's database
// that counts round trips: each time a client sends after the database has
// answered (or first), it waited for an answer, and that is one trip.
// Statements pipelined in one batch are one trip; a statement that waits
// for the answer of another is a trip of its own, however fast loopback is.
type tripCounter struct {
	ln     net.Listener
	target string
	trips  atomic.Int64
}

func newTripCounter(tb testing.TB, target string) *tripCounter {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &tripCounter{ln: ln, target: target}
	var wg sync.WaitGroup
	tb.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.serve(client)
			}()
		}
	}()
	return p
}

func (p *tripCounter) serve(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer server.Close()
	var mu sync.Mutex
	answered := true // the client's first bytes start a trip
	done := make(chan struct{}, 2)
	go func() { // client → database
		defer func() { server.Close(); done <- struct{}{} }()
		buf := make([]byte, 32<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				mu.Lock()
				if answered {
					p.trips.Add(1)
					answered = false
				}
				mu.Unlock()
				if _, werr := server.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	go func() { // database → client
		defer func() { client.Close(); done <- struct{}{} }()
		buf := make([]byte, 32<<10)
		for {
			n, err := server.Read(buf)
			if n > 0 {
				// Marked before the client can read it, so a request
				// that depends on this answer starts a new trip.
				mu.Lock()
				answered = true
				mu.Unlock()
				if _, werr := client.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	<-done
	<-done
}

// fewest runs op n times and returns the fewest trips one run took: extra
// trips (a pool's ping of an idle connection, a statement prepared on a
// connection for the first time) only ever add.
func (p *tripCounter) fewest(n int, op func()) int64 {
	best := int64(-1)
	for range n {
		before := p.trips.Load()
		op()
		if got := p.trips.Load() - before; best < 0 || got < best {
			best = got
		}
	}
	return best
}

type roundTripAPI struct {
	tb      testing.TB
	handler http.Handler
}

func (a roundTripAPI) do(token, query string, vars map[string]any) map[string]any {
	a.tb.Helper()
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		a.tb.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	a.handler.ServeHTTP(rec, req)
	raw, _ := io.ReadAll(rec.Body)
	var resp struct {
		Data   map[string]any  `json:"data"`
		Errors json.RawMessage `json:"errors"`
	}
	if err := json.Unmarshal(raw, &resp); err != nil {
		a.tb.Fatalf("decode %s: %v", raw, err)
	}
	if len(resp.Errors) > 0 && string(resp.Errors) != "null" {
		a.tb.Fatalf("%s: %s", query, resp.Errors)
	}
	return resp.Data
}

const (
	pushWorkOrders = `mutation($rows: [WorkOrderPushRow!]!) { pushWorkOrders(rows: $rows) { id } }`
	pushSites      = `mutation($rows: [SitePushRow!]!) { pushSites(rows: $rows) { id } }`
	pullWorkOrders = `query($cp: CheckpointInput) { pullWorkOrders(checkpoint: $cp, limit: 100) { documents { id } checkpoint { cursor } } }`
	nestedRead     = `{ workOrders(first: 20) { edges { node { id site { id name } checklist { id } notes { id } } } } }`
)

func workOrderInput(id, title string, assignee any) map[string]any {
	return map[string]any{"id": id, "siteId": "site-1", "title": title, "status": "OPEN", "priority": 1,
		"assigneeId": assignee, "deleted": false}
}

// TestRoundTripsPerVerb counts the round trips to the database of each
// verb through the real handler: a one-row push (new and update, whole
// tenant and under a technician's bucket), a pull, and the nested read.
// The figures are docs/deploy.md's "Round trips per verb"; a push that
// moves no bucket rows must take 2 (BEGIN, lock and reads; writes and
// COMMIT), and no verb may take more than it does today.
func TestRoundTripsPerVerb(t *testing.T) {
	ctx := context.Background()
	u, err := url.Parse(dbtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	counter := newTripCounter(t, u.Host)
	u.Host = counter.ln.Addr().String()
	d, err := db.Open(ctx, u.String(), db.PoolConfig{MaxConns: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	env := testenv.New(t, testenv.Options{DB: d})
	api := roundTripAPI{tb: t, handler: env.Handler}
	dispatcher := testenv.Token(t, "rt", "dispatcher")
	tech := testenv.TokenWithRole(t, "rt", "tech-1", "technician")

	api.do(dispatcher, pushSites, map[string]any{"rows": []any{map[string]any{"newDocumentState": map[string]any{
		"id": "site-1", "name": "Depot", "address": "1 Quay St", "deleted": false}}}})
	seq := 0
	newRow := func(assignee any) []any {
		seq++
		return []any{map[string]any{"newDocumentState": workOrderInput(fmt.Sprintf("wo-%d", seq), "new", assignee)}}
	}
	// Warm the connections: statements prepared, the pool full.
	for range 4 {
		api.do(dispatcher, pushWorkOrders, map[string]any{"rows": newRow("tech-1")})
		api.do(dispatcher, pullWorkOrders, nil)
		api.do(dispatcher, nestedRead, nil)
		api.do(tech, pushWorkOrders, map[string]any{"rows": newRow("tech-1")})
		api.do(tech, pullWorkOrders, nil)
	}
	verbs := []struct {
		name string
		max  int64
		op   func()
	}{
		{"push, one new work order, whole tenant", 2, func() {
			api.do(dispatcher, pushWorkOrders, map[string]any{"rows": newRow(nil)})
		}},
		// A new work order in the technician's bucket brings its site (and
		// any checklist items and notes pushed before it) along: its
		// children (all collections at once), then the site's bucket rows
		// and document, are reads of their own.
		{"push, one new work order, technician's own", 4, func() {
			api.do(tech, pushWorkOrders, map[string]any{"rows": newRow("tech-1")})
		}},
		// The purge horizon, the page and the horizon again, pipelined.
		{"pull, whole tenant", 1, func() { api.do(dispatcher, pullWorkOrders, nil) }},
		{"pull, technician's bucket", 1, func() { api.do(tech, pullWorkOrders, nil) }},
		{"nested read (work orders with site, checklist, notes)", 3, func() { api.do(dispatcher, nestedRead, nil) }},
	}
	for _, v := range verbs {
		got := counter.fewest(5, v.op)
		t.Logf("%-55s %d round trips", v.name, got)
		if got > v.max {
			t.Errorf("%s took %d round trips; want at most %d", v.name, got, v.max)
		}
	}
}
