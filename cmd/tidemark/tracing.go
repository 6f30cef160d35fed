package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// tracingExporter decides whether traces are exported: "otlp" or "" (off).
// TIDEMARK_TRACING (setting) decides when set; otherwise OpenTelemetry's own
// variables do, as every OpenTelemetry SDK reads them: OTEL_SDK_DISABLED,
// OTEL_TRACES_EXPORTER, and an OTLP endpoint being set. Only OTLP over
// HTTP/protobuf is built in: the OTLP default, one HTTP client and no gRPC
// stack in the binary, and it passes any HTTP proxy.
func tracingExporter(setting string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(setting)) {
	case "otlp":
		return "otlp", checkOTLPProtocol()
	case "off", "none", "false":
		return "", nil
	case "":
	default:
		return "", fmt.Errorf("TIDEMARK_TRACING=%q: want otlp, off, or empty to follow OTEL_TRACES_EXPORTER and OTEL_EXPORTER_OTLP_ENDPOINT", setting)
	}
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return "", nil
	}
	switch exporter := strings.ToLower(os.Getenv("OTEL_TRACES_EXPORTER")); exporter {
	case "otlp":
		return "otlp", checkOTLPProtocol()
	case "none":
		return "", nil
	case "":
	default:
		return "", fmt.Errorf("OTEL_TRACES_EXPORTER=%q: Tidemark exports traces with otlp only (or none)", exporter)
	}
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
		return "otlp", checkOTLPProtocol()
	}
	return "", nil
}

func checkOTLPProtocol() error {
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := os.Getenv(name); p != "" && p != "http/protobuf" {
			return fmt.Errorf("%s=%q: Tidemark exports OTLP over http/protobuf only (port 4318 of a collector)", name, p)
		}
	}
	return nil
}

// tracing is the program's tracer provider; a nil *tracing is tracing off.
type tracing struct {
	provider *sdktrace.TracerProvider
}

// startTracing builds the tracer provider the settings ask for, or returns
// nil when tracing is off: then nothing is traced and no span is made.
// The exporter reads the standard OTEL_EXPORTER_OTLP_* variables
// (endpoint, headers, timeout, TLS), the sampler OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG (default: parentbased_always_on, so an incoming
// traceparent's sampling decision is kept), the resource OTEL_SERVICE_NAME
// (default tidemark) and OTEL_RESOURCE_ATTRIBUTES.
func startTracing(ctx context.Context, setting string, log *slog.Logger) (*tracing, error) {
	exporter, err := tracingExporter(setting)
	if err != nil || exporter == "" {
		return nil, err
	}
	// The SDK reports export failures through otel's global handler and
	// logger, whose default writes plain text to stderr: route both
	// through slog, so a JSON log stays JSON.
	otel.SetLogger(logr.FromSlogHandler(log.Handler()))
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("opentelemetry", "err", err)
	}))
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "tidemark"), attribute.String("service.version", moduleVersion())),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
		resource.WithTelemetrySDK(),
		resource.WithHost(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("OpenTelemetry resource (OTEL_RESOURCE_ATTRIBUTES): %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	log.Info("tracing on: OpenTelemetry spans go out over OTLP/HTTP", "endpoint", otlpEndpoint())
	return &tracing{provider: tp}, nil
}

// Provider is the tracer provider to hand to the server, the engine and
// the pool; nil when tracing is off.
func (t *tracing) Provider() trace.TracerProvider {
	if t == nil {
		return nil
	}
	return t.provider
}

// Close sends the spans still buffered and stops the exporter.
func (t *tracing) Close(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}

func otlpEndpoint() string {
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		if v := os.Getenv(name); v != "" {
			return v
		}
	}
	return "http://localhost:4318 (the OTLP default)"
}

func moduleVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		return info.Main.Version
	}
	return "unknown"
}
