package syncengine

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/tidemark/tidemark/apperr"
	"github.com/tidemark/tidemark/collections"
)

// Span attributes of pulls and pushes.
const (
	attrCollection = attribute.Key("tidemark.collection")
	attrRows       = attribute.Key("tidemark.push.rows")       // rows a push sent
	attrDocuments  = attribute.Key("tidemark.documents")       // documents pulled, or a push's to adopt
	attrErrorCode  = attribute.Key("tidemark.error.code")      // the apperr code of a failure
	tracerName     = "github.com/tidemark/tidemark/syncengine" // instrumentation scope
)

// noopTracer is the tracer of an engine without a tracer provider: its
// spans cost a context lookup and nothing else.
var noopTracer = noop.NewTracerProvider().Tracer(tracerName)

// SetTracerProvider makes pulls and pushes spans of tp, under the caller's
// span (the GraphQL operation's), with the database's spans under them.
// Call it before serving; nil turns tracing off.
func (e *Engine) SetTracerProvider(tp trace.TracerProvider) {
	if tp == nil {
		e.tracer = noopTracer
		return
	}
	e.tracer = tp.Tracer(tracerName)
}

func (e *Engine) startSpan(ctx context.Context, name string, c *collections.Collection, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		// Untraced callers (a request not sampled, tracing off, a rebuild)
		// get no span of their own either.
		return ctx, trace.SpanFromContext(ctx)
	}
	return e.tracer.Start(ctx, name, trace.WithAttributes(append(attrs, attrCollection.String(c.Name))...))
}

// endSpan ends a span startSpan started; on a span it did not start (the
// caller's, not recording) it does nothing.
func endSpan(span trace.Span, documents int, err error) {
	if !span.IsRecording() {
		return
	}
	if err != nil {
		code := apperr.Internal
		if appErr, ok := apperr.As(err); ok {
			code = appErr.Code
		}
		span.RecordError(err, trace.WithAttributes(attrErrorCode.String(string(code))))
		span.SetStatus(codes.Error, string(code))
	} else {
		span.SetAttributes(attrDocuments.Int(documents))
	}
	span.End()
}
