package wsgorilla_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"

	"github.com/tidemark/tidemark/wsgorilla"
)

// gqlgen's own init timeout closes with 1002; the client must see 4408.
func TestGqlgenInitTimeoutClosesWith4408(t *testing.T) {
	t.Parallel()
	_, srv := newServer(t, transport.Websocket{
		// wsgorilla's own deadline out of the way, to see gqlgen's.
		Implementation: wsgorilla.Implementation{InitTimeout: -1},
		InitTimeout:    200 * time.Millisecond,
	}, nil)
	c := mustDial(t, wsURL(srv), transportWS)
	ce, _ := readUntilClose(t, c, readWait)
	if ce.Code != wsgorilla.CloseInitTimeout || ce.Text != "Connection initialisation timeout" {
		t.Fatalf("close = %d %q, want 4408", ce.Code, ce.Text)
	}
}

// A subscription's id and its place under the cap are free again once the
// server completes it: the control of the 4409 and cap checks.
func TestCompletedSubscriptionFreesItsIDAndPlace(t *testing.T) {
	t.Parallel()
	gql, srv := newServer(t, transport.Websocket{
		Implementation: wsgorilla.Implementation{MaxSubscriptions: 1},
	}, nil)
	c := initTransportWS(t, srv)
	send(t, c, wireMsg{ID: "a", Type: "subscribe", Payload: json.RawMessage(subscriptionQuery)})
	send(t, c, wireMsg{ID: "b", Type: "subscribe", Payload: json.RawMessage(subscriptionQuery)})
	refused := expect(t, c, "error")
	var errs []struct {
		Extensions map[string]any `json:"extensions"`
	}
	if err := json.Unmarshal(refused.Payload, &errs); err != nil || refused.ID != "b" || len(errs) != 1 ||
		errs[0].Extensions["code"] != wsgorilla.ErrorCodeTooManySubscriptions {
		t.Fatalf("second subscription answered %+v, want error %s for b", refused, wsgorilla.ErrorCodeTooManySubscriptions)
	}

	gql.SendCompleteSubscriptionMessage()
	if done := expect(t, c, "complete"); done.ID != "a" {
		t.Fatalf("complete for %q, want a", done.ID)
	}
	send(t, c, wireMsg{ID: "a", Type: "subscribe", Payload: json.RawMessage(subscriptionQuery)})
	gql.SendNextSubscriptionMessage()
	if next := expect(t, c, "next"); next.ID != "a" {
		t.Fatalf("next for %q, want a", next.ID)
	}
}

// Pings and pongs keep a connection open through proxies, but do not make
// it busy: a connection that only pings is idle.
func TestConnectionThatOnlyPingsIsIdle(t *testing.T) {
	t.Parallel()
	_, srv := newServer(t, transport.Websocket{
		Implementation: wsgorilla.Implementation{IdleTimeout: 300 * time.Millisecond},
	}, nil)
	c := initTransportWS(t, srv)
	// Ping until the server closes: ten times the idle timeout at most.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if err := c.WriteJSON(wireMsg{Type: "ping"}); err != nil {
			break // closed meanwhile: the close frame is still to be read
		}
		_ = c.SetReadDeadline(time.Now().Add(readWait))
		var m wireMsg
		err := c.ReadJSON(&m)
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			if ce.Code != wsgorilla.CloseIdle || ce.Text != "idle for 300ms" {
				t.Fatalf("close = %d %q, want %d \"idle for 300ms\"", ce.Code, ce.Text, wsgorilla.CloseIdle)
			}
			return
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
	}
	ce, _ := readUntilClose(t, c, readWait)
	if ce.Code != wsgorilla.CloseIdle {
		t.Fatalf("close = %d %q, want %d", ce.Code, ce.Text, wsgorilla.CloseIdle)
	}
	if time.Now().After(deadline) {
		t.Fatal("a connection that kept pinging was never idle")
	}
}

func TestConnectionEndsAtItsLifetime(t *testing.T) {
	t.Parallel()
	_, srv := newServer(t, transport.Websocket{
		Implementation: wsgorilla.Implementation{MaxLifetime: 300 * time.Millisecond},
	}, nil)
	c := initTransportWS(t, srv)
	send(t, c, wireMsg{ID: "a", Type: "subscribe", Payload: json.RawMessage(subscriptionQuery)})
	ce, _ := readUntilClose(t, c, readWait)
	if ce.Code != wsgorilla.CloseLifetime {
		t.Fatalf("close = %d %q, want %d", ce.Code, ce.Text, wsgorilla.CloseLifetime)
	}
}
