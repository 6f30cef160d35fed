package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tidemark/tidemark/loadtest"
)

// TestBaselineStreamsAPushToASubscriber opens one graphql-transport-ws
// subscription over a real socket and expects in its first message exactly
// the work order pushed over HTTP after the connection began (and before
// the subscribe message, which has no acknowledgement), stamped; not the
// one pushed before the connection.
func TestBaselineStreamsAPushToASubscriber(t *testing.T) {
	srv := httptest.NewServer(newHandler(newHub()))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	c := &loadtest.Client{URL: srv.URL + "/graphql", Token: "ignored", HTTP: http.DefaultClient}
	push := func(id string) {
		t.Helper()
		q := `mutation($rows: [WorkOrderPushRow!]!) { pushWorkOrders(rows: $rows) { id } }`
		rows := []map[string]any{{"newDocumentState": map[string]any{"id": id, "siteId": "s", "title": "Replace the filter", "status": "OPEN", "priority": 1, "deleted": false}}}
		if err := c.Do(ctx, q, map[string]any{"rows": rows}, nil); err != nil {
			t.Fatal(err)
		}
	}
	push("wo-before")

	d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}}
	conn, _, err := d.DialContext(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/graphql", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if err := conn.WriteJSON(map[string]any{"type": "connection_init"}); err != nil {
		t.Fatal(err)
	}
	var ack struct{ Type string }
	if err := conn.ReadJSON(&ack); err != nil || ack.Type != "connection_ack" {
		t.Fatalf("connection_init answered %q, %v", ack.Type, err)
	}
	before := time.Now()
	push("wo-after")
	sub := `subscription { streamWorkOrders { documents { id title updatedAt } checkpoint { cursor } } }`
	if err := conn.WriteJSON(map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{"query": sub}}); err != nil {
		t.Fatal(err)
	}

	var msg struct {
		ID      string
		Type    string
		Payload struct {
			Data struct {
				StreamWorkOrders struct {
					Documents []struct {
						ID, Title string
						UpdatedAt time.Time
					}
					Checkpoint struct{ Cursor string }
				}
			}
			Errors []any
		}
	}
	if err := conn.ReadJSON(&msg); err != nil {
		t.Fatal(err)
	}
	docs := msg.Payload.Data.StreamWorkOrders.Documents
	if msg.Type != "next" || msg.ID != "1" || len(msg.Payload.Errors) > 0 || len(docs) != 1 {
		t.Fatalf("got %+v, want one next message with one document", msg)
	}
	if docs[0].ID != "wo-after" || docs[0].Title != "Replace the filter" || docs[0].UpdatedAt.Before(before) {
		t.Errorf("got document %+v, want wo-after stamped after %s", docs[0], before)
	}
	if msg.Payload.Data.StreamWorkOrders.Checkpoint.Cursor != "2" {
		t.Errorf("checkpoint %q, want 2", msg.Payload.Data.StreamWorkOrders.Checkpoint.Cursor)
	}
}

// TestStreamBenchDrivesTheBaseline runs Tidemark's own stream load
// generator against the baseline, unchanged, as scripts/bench-peers.sh
// does: every push reaches every subscriber.
func TestStreamBenchDrivesTheBaseline(t *testing.T) {
	srv := httptest.NewServer(newHandler(newHub()))
	t.Cleanup(srv.Close)
	c := &loadtest.Client{URL: srv.URL + "/graphql", HTTP: http.DefaultClient}
	rep, err := loadtest.Stream(context.Background(), c, func(string) string { return "ignored" },
		loadtest.StreamConfig{Subscribers: 3, Rate: 50, Duration: 100 * time.Millisecond, Dialers: 3})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Pushes == 0 || rep.Lost != 0 || rep.Delivered != int64(3*rep.Pushes) {
		t.Errorf("%d pushes, %d delivered, %d lost; want every push delivered to 3 subscribers", rep.Pushes, rep.Delivered, rep.Lost)
	}
}
