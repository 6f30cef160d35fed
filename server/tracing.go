package server

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2/ast"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tidemark/tidemark/collections"
)

// tracerName is the instrumentation scope of the server's spans.
const tracerName = "github.com/tidemark/tidemark/server"

// Span attributes of a GraphQL operation. The graphql.* names are
// OpenTelemetry's semantic conventions; tidemark.* are ours.
const (
	attrOperationType = attribute.Key("graphql.operation.type")
	attrOperationName = attribute.Key("graphql.operation.name")
	attrVerb          = attribute.Key("tidemark.verb")       // pull, push, stream or read
	attrCollection    = attribute.Key("tidemark.collection") // e.g. WorkOrder
	attrErrorCode     = attribute.Key("tidemark.error.code") // extensions.code of an error
	attrErrorCodes    = attribute.Key("tidemark.error.codes")
)

// propagator reads (and would write) W3C traceparent/tracestate headers.
// It is the server's own rather than otel's global one, so a handler built
// in a test does not depend on process-wide state.
var propagator = propagation.TraceContext{}

// requestSpanKey marks the span withRequestLogging started for a plain HTTP
// request: the GraphQL operation that request carries takes it over
// (renames it) instead of adding a second span for the same work.
type requestSpanKey struct{}

// baseLoggerKey holds the request's logger before any trace ids were added,
// so an operation span of its own (one per subscription on a websocket) can
// log with its ids without repeating keys.
type baseLoggerKey struct{}

// startRequestSpan continues the caller's trace (traceparent) and, for a
// GraphQL request over plain HTTP, starts its server span. A websocket
// upgrade gets no span of its own (it lives for hours); each of its
// operations starts one under the caller's trace. tracer nil: tracing is
// off and nothing is done.
func startRequestSpan(tracer trace.Tracer, r *http.Request) (*http.Request, trace.Span) {
	if tracer == nil {
		return r, nil
	}
	ctx := propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	if r.URL.Path != "/graphql" || websocket.IsWebSocketUpgrade(r) {
		return r.WithContext(ctx), nil
	}
	ctx, span := tracer.Start(ctx, r.Method+" /graphql", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
	ctx = context.WithValue(ctx, requestSpanKey{}, span)
	return r.WithContext(ctx), span
}

// endRequestSpan records the status the client got and ends the span.
func endRequestSpan(span trace.Span, status int) {
	if span == nil {
		return
	}
	span.SetAttributes(attribute.Int("http.response.status_code", status))
	if status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
	span.End()
}

// traceIDs are the log attributes of the span in ctx, none when it has no
// valid span context (tracing off, and no traceparent came in).
func traceIDs(ctx context.Context) []any {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return nil
	}
	return []any{"trace_id", sc.TraceID().String(), "span_id", sc.SpanID().String()}
}

// traceOperations gives every GraphQL operation a span: the request's span,
// renamed, over plain HTTP; a span of its own under the connection's trace
// on a websocket, where the operation's log lines then carry its ids. The
// span is named after the operation (or its first root field) and records
// the verb and collection of a sync field and the code of every error.
//
// A subscription's span covers its start (authentication, the stream's
// start position, subscribing) and records its refusal, if it is refused;
// each event it then sends is a "stream event" span under it.
func traceOperations(tracer trace.Tracer, syncFields map[string]string) graphql.OperationMiddleware {
	return func(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
		oc := graphql.GetOperationContext(ctx)
		if oc == nil || oc.Operation == nil {
			return next(ctx)
		}
		d := describeOperation(oc, syncFields)
		attrs := d.attributes()
		span, _ := ctx.Value(requestSpanKey{}).(trace.Span)
		if span != nil && trace.SpanFromContext(ctx) == span {
			span.SetName(d.name)
			span.SetAttributes(attrs...)
			// withRequestLogging ends it, after the response is written.
			h := next(ctx)
			return func(ctx context.Context) *graphql.Response {
				resp := h(ctx)
				recordErrors(span, resp)
				return resp
			}
		}
		ctx, span = tracer.Start(ctx, d.name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
		if base, ok := ctx.Value(baseLoggerKey{}).(*slog.Logger); ok {
			ctx = context.WithValue(ctx, loggerKey{}, base.With(traceIDs(ctx)...))
		}
		h := next(ctx)
		if oc.Operation.Operation != ast.Subscription {
			return func(ctx context.Context) *graphql.Response {
				resp := h(ctx)
				recordErrors(span, resp)
				span.End()
				return resp
			}
		}
		// The subscription's span ends where its start did; it is ended
		// (and so exported) at its first response, which says whether the
		// start failed (an error and no data: a bad token, a refused
		// subscribe) or the stream runs.
		setupDone, open := time.Now(), true
		opSpan := span
		eventName := "stream event " + d.rootField
		return func(ctx context.Context) *graphql.Response {
			resp := h(ctx)
			if open {
				open = false
				if resp == nil || !hasData(resp) {
					recordErrors(opSpan, resp)
					opSpan.End(trace.WithTimestamp(setupDone))
					return resp
				}
				opSpan.End(trace.WithTimestamp(setupDone))
			}
			if resp == nil {
				return nil
			}
			// The handler waits for the next event before it builds the
			// response; the event's span starts once it has been built, so it
			// marks the send, not the wait.
			_, ev := tracer.Start(trace.ContextWithSpan(ctx, opSpan), eventName, trace.WithAttributes(attrs...))
			recordErrors(ev, resp)
			ev.End()
			return resp
		}
	}
}

func hasData(resp *graphql.Response) bool {
	return len(resp.Data) > 0 && string(resp.Data) != "null"
}

// recordErrors adds each error of resp to span with its extensions.code.
func recordErrors(span trace.Span, resp *graphql.Response) {
	if resp == nil || len(resp.Errors) == 0 {
		return
	}
	var codeList []string
	for i, e := range resp.Errors {
		if i == 10 {
			break // a response carries up to MaxErrors; ten tell the story
		}
		code, _ := e.Extensions["code"].(string)
		if code == "" {
			code = "UNKNOWN"
		}
		codeList = append(codeList, code)
		span.AddEvent("exception", trace.WithAttributes(
			attribute.String("exception.message", e.Message),
			attrErrorCode.String(code),
		))
	}
	span.SetAttributes(attrErrorCodes.StringSlice(codeList))
	span.SetStatus(codes.Error, codeList[0])
}

// operationDescription is what a span says of an operation.
type operationDescription struct {
	name       string // span name: the operation's name, or its first root field
	opType     string // query, mutation or subscription
	opName     string
	rootField  string
	verb       string
	collection string
}

func (d operationDescription) attributes() []attribute.KeyValue {
	attrs := []attribute.KeyValue{attrOperationType.String(d.opType), attrVerb.String(d.verb)}
	if d.opName != "" {
		attrs = append(attrs, attrOperationName.String(d.opName))
	}
	if d.collection != "" {
		attrs = append(attrs, attrCollection.String(d.collection))
	}
	return attrs
}

func describeOperation(oc *graphql.OperationContext, syncFields map[string]string) operationDescription {
	op := oc.Operation
	d := operationDescription{opType: string(op.Operation), opName: op.Name, verb: "read"}
	for _, sel := range op.SelectionSet {
		if f, ok := sel.(*ast.Field); ok {
			d.rootField = f.Name
			break
		}
	}
	d.name = d.opName
	if d.name == "" {
		d.name = d.rootField
	}
	if d.name == "" {
		d.name = d.opType
	}
	object := map[ast.Operation]string{ast.Query: "Query", ast.Mutation: "Mutation", ast.Subscription: "Subscription"}[op.Operation]
	verb := syncFields[object+"."+d.rootField]
	if verb == "" && op.Operation == ast.Subscription && strings.HasPrefix(d.rootField, "stream") {
		verb = "stream"
	}
	if verb != "" {
		d.verb = verb
		d.collection = collectionOf(strings.TrimPrefix(d.rootField, verb))
	}
	return d
}

// collectionOf finds the collection a sync field's plural names
// ("WorkOrders" in pullWorkOrders): the one whose name it starts with,
// the longest if several do.
func collectionOf(plural string) string {
	best := ""
	for _, c := range collections.All() {
		if strings.HasPrefix(plural, c.Name) && len(c.Name) > len(best) {
			best = c.Name
		}
	}
	return best
}
