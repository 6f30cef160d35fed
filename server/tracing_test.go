package server_test

import (
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/server"
	"github.com/tidemark/tidemark/testenv"
)

// spans records the spans of one test's server in memory (tracetest) and
// lets the test wait for one to end: a request's span ends after its
// response is written, so the client may read the response first.
type spans struct {
	*tracetest.SpanRecorder
	mu    sync.Mutex
	ended *sync.Cond
}

func newSpans() *spans {
	s := &spans{SpanRecorder: tracetest.NewSpanRecorder()}
	s.ended = sync.NewCond(&s.mu)
	return s
}

func (s *spans) OnEnd(span sdktrace.ReadOnlySpan) {
	s.SpanRecorder.OnEnd(span)
	s.mu.Lock()
	s.ended.Broadcast()
	s.mu.Unlock()
}

// waitFor returns the first ended span named name, waiting for it (and
// failing the test after 30 s, long past any sane request).
func (s *spans) waitFor(tb testing.TB, name string) sdktrace.ReadOnlySpan {
	tb.Helper()
	timer := time.AfterFunc(30*time.Second, func() {
		s.mu.Lock()
		s.ended.Broadcast()
		s.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(30 * time.Second)
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		for _, sp := range s.Ended() {
			if sp.Name() == name {
				return sp
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no span %q ended; ended: %v", name, spanNames(s.Ended()))
		}
		s.ended.Wait()
	}
}

func spanNames(list []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range list {
		out = append(out, s.Name())
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

// startTraced runs the real handler, traced into an in-memory recorder,
// database spans included, and logging JSON.
func startTraced(tb testing.TB) (*spans, string, *logBuffer) {
	tb.Helper()
	rec := newSpans()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tb.Cleanup(func() { _ = tp.Shutdown(tb.Context()) })
	logs := &logBuffer{}
	env := testenv.New(tb, testenv.Options{
		Pool: db.PoolConfig{TracerProvider: tp},
		Server: server.Config{
			TracerProvider: tp,
			Logger:         slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		},
	})
	return rec, env.Serve(tb), logs
}

const pushOneSite = `mutation PushOneSite { pushSites(rows: [{newDocumentState: {id: "s1", name: "n", address: "a", latitude: 1.5, deleted: false}}]) { id } }`

func TestPushIsOneTraceOfOperationEngineAndDatabaseSpans(t *testing.T) {
	rec, url, _ := startTraced(t)
	r := post(t, url, testenv.Token(t, "t1", "u1"), pushOneSite, nil)
	if r.Status != http.StatusOK || len(r.GQL.Errors) != 0 {
		t.Fatalf("push: %d %s", r.Status, r.Body)
	}
	op := rec.waitFor(t, "PushOneSite")
	if op.SpanKind() != trace.SpanKindServer || attr(op, "tidemark.verb") != "push" || attr(op, "tidemark.collection") != "Site" ||
		attr(op, "graphql.operation.type") != "mutation" || attr(op, "http.response.status_code") != "200" {
		t.Errorf("operation span: kind %v attributes %v", op.SpanKind(), op.Attributes())
	}
	engine := rec.waitFor(t, "syncengine.Push")
	if engine.Parent().SpanID() != op.SpanContext().SpanID() || engine.SpanContext().TraceID() != op.SpanContext().TraceID() {
		t.Errorf("engine span's parent %v, want the operation span %v", engine.Parent(), op.SpanContext())
	}
	if attr(engine, "tidemark.collection") != "Site" || attr(engine, "tidemark.push.rows") != "1" {
		t.Errorf("engine span attributes: %v", engine.Attributes())
	}
	var statements int
	for _, s := range rec.Ended() {
		if s.Parent().SpanID() != engine.SpanContext().SpanID() {
			continue
		}
		statements++
		if s.SpanContext().TraceID() != op.SpanContext().TraceID() || attr(s, "db.system.name") != "postgresql" {
			t.Errorf("database span %q: trace %v attributes %v", s.Name(), s.SpanContext().TraceID(), s.Attributes())
		}
	}
	if statements == 0 {
		t.Errorf("no database span under the engine's; ended: %v", spanNames(rec.Ended()))
	}
}

func TestAnErrorIsRecordedWithItsCode(t *testing.T) {
	rec, url, _ := startTraced(t)
	r := post(t, url, testenv.Token(t, "t1", "u1"), `query TooMany { pullSites(limit: 0) { checkpoint { cursor } } }`, nil)
	if code := onlyError(t, r).Extensions["code"]; code != "BAD_USER_INPUT" {
		t.Fatalf("pull with limit 0: %s", r.Body)
	}
	for _, name := range []string{"TooMany", "syncengine.Pull"} {
		s := rec.waitFor(t, name)
		if s.Status().Description != "BAD_USER_INPUT" {
			t.Errorf("span %s: status %v, want an error BAD_USER_INPUT", name, s.Status())
		}
		var recorded bool
		for _, ev := range s.Events() {
			for _, kv := range ev.Attributes {
				recorded = recorded || (kv.Key == "tidemark.error.code" && kv.Value.AsString() == "BAD_USER_INPUT")
			}
		}
		if !recorded {
			t.Errorf("span %s: no event with the error's code: %v", name, s.Events())
		}
	}
	// Control: a pull that succeeds records no error.
	post(t, url, testenv.Token(t, "t1", "u1"), `query Fine { pullSites(limit: 1) { checkpoint { cursor } } }`, nil)
	if s := rec.waitFor(t, "Fine"); len(s.Events()) != 0 || s.Status().Description != "" {
		t.Errorf("a pull that worked: status %v events %v", s.Status(), s.Events())
	}
}

func TestATraceparentIsContinued(t *testing.T) {
	rec, url, logs := startTraced(t)
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req, _ := http.NewRequest(http.MethodPost, url+"/graphql", strings.NewReader(`{"query":"query Traced { pullSites(limit: 1) { checkpoint { cursor } } }"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testenv.Token(t, "t1", "u1"))
	req.Header.Set("Traceparent", "00-"+traceID+"-"+parentID+"-01")
	if r := do(t, req); r.Status != http.StatusOK {
		t.Fatalf("pull: %d %s", r.Status, r.Body)
	}
	op := rec.waitFor(t, "Traced")
	if op.SpanContext().TraceID().String() != traceID || op.Parent().SpanID().String() != parentID || !op.Parent().IsRemote() {
		t.Errorf("operation span: trace %s parent %s, want the caller's %s and %s", op.SpanContext().TraceID(), op.Parent().SpanID(), traceID, parentID)
	}
	// The request's access-log line carries the trace and the span.
	var found bool
	for _, line := range logs.lines(t) {
		if line["msg"] != "request" {
			continue
		}
		found = true
		if line["trace_id"] != traceID || line["span_id"] != op.SpanContext().SpanID().String() {
			t.Errorf("access log line %v, want trace_id %s span_id %s", line, traceID, op.SpanContext().SpanID())
		}
	}
	if !found {
		t.Errorf("no access log line: %s", logs)
	}
}

func TestWithoutTracingLogLinesCarryNoTraceID(t *testing.T) {
	_, url, logs := start(t, server.Config{})
	post(t, url, testenv.Token(t, "t1", "u1"), pullSitesQuery, nil)
	for _, line := range logs.lines(t) {
		if _, ok := line["trace_id"]; ok {
			t.Errorf("a trace id with tracing off: %v", line)
		}
	}
}

func TestASubscriptionIsTracedUnderTheUpgradesTrace(t *testing.T) {
	rec, url, logs := startTraced(t)
	token := testenv.Token(t, "tenant-traced", "user-1")
	const traceID = "0af7651916cd43dd8448eb211c80319c"
	header := http.Header{}
	header.Set("Traceparent", "00-"+traceID+"-b7ad6b7169203331-01")
	for _, proto := range streamProtocols[:1] {
		c, _, err := dialStream(t, url, proto, streamDialOptions{header: header})
		if err != nil {
			t.Fatal(err)
		}
		c.init(map[string]any{"Authorization": bearer(token)})
		c.expectAck()
		c.subscribe("1", streamWorkOrdersSubscription, nil)
		// The subscription's span is ended at its first event.
		if r := post(t, url, token, pushWorkOrdersMutation, map[string]any{"rows": []map[string]any{{"newDocumentState": workOrder("w1", "d")}}}); len(r.GQL.Errors) != 0 {
			t.Fatalf("push: %s", r.Body)
		}
		if _, err := c.read(30 * time.Second); err != nil {
			t.Fatalf("no stream event: %v", err)
		}
		sub := rec.waitFor(t, "streamWorkOrders")
		if sub.SpanContext().TraceID().String() != traceID || attr(sub, "tidemark.verb") != "stream" || attr(sub, "tidemark.collection") != "WorkOrder" || sub.Status().Code != codes.Unset {
			t.Errorf("subscription span: trace %s status %v attributes %v", sub.SpanContext().TraceID(), sub.Status(), sub.Attributes())
		}
		ev := rec.waitFor(t, "stream event streamWorkOrders")
		if ev.Parent().SpanID() != sub.SpanContext().SpanID() {
			t.Errorf("stream event span's parent %v, want the subscription's %v", ev.Parent(), sub.SpanContext())
		}
	}
	_ = logs.lines(t) // every line JSON
}

func TestASubscriptionsLogLinesCarryItsSpan(t *testing.T) {
	rec, url, logs := startTraced(t)
	// No traceparent: the subscription starts a trace of its own.
	c, _, err := dialStream(t, url, streamProtocols[0], streamDialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.init(nil)
	c.expectAck()
	c.subscribe("1", streamWorkOrdersSubscription, map[string]any{"headers": map[string]any{"Authorization": "Bearer not-a-token"}})
	sub := rec.waitFor(t, "streamWorkOrders")
	if sub.Status().Description != "UNAUTHENTICATED" || sub.Parent().IsValid() {
		t.Errorf("subscription span: status %v parent %v, want UNAUTHENTICATED in a trace of its own", sub.Status(), sub.Parent())
	}
	var found bool
	for _, line := range logs.lines(t) {
		if line["msg"] != "subscription token refused" {
			continue
		}
		found = true
		if line["trace_id"] != sub.SpanContext().TraceID().String() || line["span_id"] != sub.SpanContext().SpanID().String() {
			t.Errorf("log line %v, want the subscription's trace %s and span %s", line, sub.SpanContext().TraceID(), sub.SpanContext().SpanID())
		}
	}
	if !found {
		t.Errorf("no log line of the refused token: %s", logs)
	}
}
