package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/tidemark/tidemark/metrics"
)

// MetricsConfig turns on Prometheus metrics (Config.Metrics).
type MetricsConfig struct {
	// Metrics, when set, is where the server counts requests, rejections
	// and websockets (and wiring connects the engine, live sync, the cache
	// and the pool to it). Nil measures nothing.
	Metrics *metrics.Metrics
	// Serve mounts GET /metrics on this handler (TIDEMARK_METRICS=on). Off,
	// the metrics can still be served on a listener of their own.
	Serve bool
}

// requestMetrics is the gqlgen extension that times every operation by its
// root field and verb, and counts the code of every error in its responses.
// It is the outermost extension, so it sees the whole operation and each
// response as it goes out.
type requestMetrics struct{ m *metrics.Metrics }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationInterceptor
	graphql.ResponseInterceptor
} = requestMetrics{}

func (requestMetrics) ExtensionName() string                   { return "RequestMetrics" }
func (requestMetrics) Validate(graphql.ExecutableSchema) error { return nil }

func (e requestMetrics) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	oc := graphql.GetOperationContext(ctx)
	start := oc.Stats.OperationStart
	if start.IsZero() {
		start = time.Now()
	}
	op, verb := operationLabels(oc)
	responses := next(ctx)
	if verb == string(ast.Subscription) {
		// A subscription's life is its client's choice: time its start (the
		// stream resolver has run by now), not its events.
		e.m.Request(op, verb, time.Since(start))
		return responses
	}
	var once sync.Once
	return func(ctx context.Context) *graphql.Response {
		resp := responses(ctx)
		once.Do(func() { e.m.Request(op, verb, time.Since(start)) })
		return resp
	}
}

func (e requestMetrics) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	resp := next(ctx)
	if resp == nil || len(resp.Errors) == 0 {
		return resp
	}
	ex := exchangeFrom(ctx)
	for _, err := range resp.Errors {
		code, _ := err.Extensions["code"].(string)
		if code == "" {
			code = "NONE"
		}
		switch {
		case ex == nil: // a handler built without countRejections (NewGraphQL)
			e.m.Rejected(code, "unknown")
		case ex.websocket:
			e.m.Rejected(code, metrics.StatusWebsocket)
		default:
			ex.add(code)
		}
	}
	return resp
}

// operationLabels names an operation by its root field (the schema's name,
// never an alias or the client's operation name, so the label is bounded
// by the schema), "multiple" when it selects several, and its verb.
func operationLabels(oc *graphql.OperationContext) (operation, verb string) {
	if oc == nil || oc.Operation == nil {
		return "unknown", "unknown"
	}
	names := map[string]struct{}{}
	var walk func(ast.SelectionSet, int)
	walk = func(set ast.SelectionSet, depth int) {
		if depth > 10 {
			return
		}
		for _, sel := range set {
			switch s := sel.(type) {
			case *ast.Field:
				if s.Name != "__typename" {
					names[s.Name] = struct{}{}
				}
			case *ast.InlineFragment:
				walk(s.SelectionSet, depth+1)
			case *ast.FragmentSpread:
				if f := oc.Doc.Fragments.ForName(s.Name); f != nil {
					walk(f.SelectionSet, depth+1)
				}
			}
		}
	}
	walk(oc.Operation.SelectionSet, 0)
	verb = string(oc.Operation.Operation)
	switch len(names) {
	case 0:
		return "__typename", verb
	case 1:
		for n := range names {
			return n, verb
		}
	}
	return "multiple", verb
}

// exchange is what one HTTP request to /graphql collects for the
// rejection count: the codes of its GraphQL errors, counted with the
// response's status once it is known.
type exchange struct {
	websocket bool

	mu    sync.Mutex
	codes []string
}

func (ex *exchange) add(code string) {
	ex.mu.Lock()
	ex.codes = append(ex.codes, code)
	ex.mu.Unlock()
}

type exchangeKey struct{}

func exchangeFrom(ctx context.Context) *exchange {
	ex, _ := ctx.Value(exchangeKey{}).(*exchange)
	return ex
}

// maxRefusalBody bounds what countRejections keeps of a refusal's body to
// read its codes: refusals written before GraphQL runs are short.
const maxRefusalBody = 4 << 10

// countRejections counts, in one place, every error code /graphql sends:
// those of GraphQL responses (from requestMetrics, with the HTTP status
// they went out with) and those of refusals written before GraphQL ran
// (401 from auth, 413 from the body limit, 429 and 503 from the rate limits
// and the websocket caps, 400 from the transport), read from their body.
func countRejections(m *metrics.Metrics, next http.Handler) http.Handler {
	if m == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ex := &exchange{websocket: websocket.IsWebSocketUpgrade(r)}
		rec := &refusalRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), exchangeKey{}, ex)))
		if rec.hijacked {
			return
		}
		ex.mu.Lock()
		codes := ex.codes
		ex.mu.Unlock()
		if len(codes) == 0 && rec.status >= 400 {
			codes = refusalCodes(rec.body.Bytes())
		}
		for _, code := range codes {
			m.RejectedHTTP(code, rec.status)
		}
	})
}

// refusalCodes reads the extensions.code of each error of a refusal's
// GraphQL-shaped body; "NONE" when it has none.
func refusalCodes(body []byte) []string {
	var parsed struct {
		Errors []struct {
			Extensions struct {
				Code string `json:"code"`
			} `json:"extensions"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(body, &parsed); err != nil || len(parsed.Errors) == 0 {
		return []string{"NONE"}
	}
	out := make([]string, 0, len(parsed.Errors))
	for _, e := range parsed.Errors {
		code := e.Extensions.Code
		if code == "" {
			code = "NONE"
		}
		out = append(out, code)
	}
	return out
}

// refusalRecorder keeps the status and, for an error status, the start of
// the body. It forwards Flush and Hijack (gorilla/websocket asserts
// http.Hijacker directly).
type refusalRecorder struct {
	http.ResponseWriter
	status   int
	wrote    bool
	hijacked bool
	body     bytes.Buffer
}

func (r *refusalRecorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *refusalRecorder) Write(b []byte) (int, error) {
	if !r.wrote {
		r.status, r.wrote = http.StatusOK, true
	}
	if r.status >= 400 && r.body.Len() < maxRefusalBody {
		r.body.Write(b[:min(len(b), maxRefusalBody-r.body.Len())])
	}
	return r.ResponseWriter.Write(b)
}

func (r *refusalRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *refusalRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *refusalRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := r.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("response writer cannot be hijacked")
	}
	r.hijacked = true
	return h.Hijack()
}

// open is the number of websocket connections held, for the metrics.
func (c *connectionCounts) open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}
