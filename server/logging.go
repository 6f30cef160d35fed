package server

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
)

type loggerKey struct{}

// Logger returns the request-scoped logger (every line carries the request
// id), or the fallback when ctx has none.
func Logger(ctx context.Context, fallback *slog.Logger) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok {
		return l
	}
	return fallback
}

// RequestIDHeader carries the request id in and out. An incoming id from a
// proxy is kept when it looks sane, so one id follows a request end to end.
const RequestIDHeader = "X-Request-Id"

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func saneRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// withRequestLogging gives every request an id, a logger carrying it (and,
// when tracing is on or a traceparent came in, the trace and span ids), a
// span for a GraphQL request when tracing is on, and one access-log line
// when it ends, with the status the client got. tracer nil: tracing off.
func withRequestLogging(base *slog.Logger, tracer trace.Tracer, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(RequestIDHeader)
		if !saneRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set(RequestIDHeader, id)
		r, span := startRequestSpan(tracer, r)
		reqLog := base.With("request_id", id)
		log := reqLog
		ctx := r.Context()
		if tracer != nil {
			// An operation with a span of its own logs with its ids.
			ctx = context.WithValue(ctx, baseLoggerKey{}, reqLog)
		}
		if ids := traceIDs(ctx); ids != nil {
			log = reqLog.With(ids...)
		}
		ctx = context.WithValue(ctx, loggerKey{}, log)
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK, log: log}
		next.ServeHTTP(rec, r.WithContext(ctx))
		endRequestSpan(span, rec.status)
		log.Info("request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
			"duration_ms", float64(time.Since(start).Microseconds())/1000)
	})
}

// statusRecorder remembers the status the client got, for the access log:
// the first one written (a later WriteHeader cannot change what was sent),
// 200 on a first Write, 101 on a hijack. A second WriteHeader is dropped
// here, with a debug line, rather than reaching net/http, which would
// print its "superfluous WriteHeader" line. It forwards Flush and Hijack
// (gorilla/websocket asserts http.Hijacker directly) so streaming and
// websockets still work.
type statusRecorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	log         *slog.Logger
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.wroteHeader {
		s.log.Debug("response status already sent; a later one is dropped", "status", s.status, "dropped", code)
		return
	}
	if code >= 200 || code == http.StatusSwitchingProtocols {
		// 1xx informational responses (103 Early Hints) come before the real one.
		s.status, s.wroteHeader = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wroteHeader = true
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) Flush() {
	s.wroteHeader = true
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := s.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("response writer cannot be hijacked")
	}
	conn, rw, err := h.Hijack()
	if err == nil && !s.wroteHeader {
		s.status, s.wroteHeader = http.StatusSwitchingProtocols, true
	}
	return conn, rw, err
}

// HTTPErrorLog is the http.Server.ErrorLog that sends net/http's own lines
// (a handler that panicked, a failed accept, a TLS handshake that failed)
// to log as records of their own, so a JSON log holds only JSON. TLS
// handshake errors, which every scanner and dropped mobile connection
// causes, are debug lines; the rest are warnings.
func HTTPErrorLog(log *slog.Logger) *stdlog.Logger {
	return stdlog.New(httpErrorWriter{log}, "", 0)
}

type httpErrorWriter struct{ log *slog.Logger }

func (w httpErrorWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelWarn
	if strings.HasPrefix(line, "http: TLS handshake error") {
		level = slog.LevelDebug
	}
	w.log.Log(context.Background(), level, "http server", "source", "net/http", "err", line)
	return len(p), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
