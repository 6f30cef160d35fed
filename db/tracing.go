package db

import (
	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/multitracer"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
)

// withTracing adds to the pool's tracer (tests count statements with one)
// an OpenTelemetry tracer of tp, whose spans (one per statement, batch and
// pool acquire, named by the SQL operation, with the statement's text but
// never its arguments) sit under the span of the request that ran them. A
// statement outside any recording span (the poller, the purge) gets none.
// tp nil: tracing is off and the pool's tracer is left as it was.
func withTracing(tracer pgx.QueryTracer, tp trace.TracerProvider) pgx.QueryTracer {
	if tp == nil {
		return tracer
	}
	otel := otelpgx.NewTracer(
		otelpgx.WithTracerProvider(tp),
		// Metrics are Prometheus's business here (package metrics).
		otelpgx.WithMeterProvider(noop.NewMeterProvider()),
	)
	if tracer == nil {
		return otel
	}
	return multitracer.New(tracer, otel)
}
