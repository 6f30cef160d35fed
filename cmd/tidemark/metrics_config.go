package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/tidemark/tidemark/metrics"
	"github.com/tidemark/tidemark/server"
)

// MetricsConfig is where Prometheus metrics are served (docs/operations.md).
// Both off by default: /metrics tells anyone who can reach it the traffic,
// the collections and the error rates of every tenant together.
type MetricsConfig struct {
	// Switch is TIDEMARK_METRICS: "on" serves /metrics on the main
	// listener, "off" or empty (the default) does not.
	Switch string
	// Addr is TIDEMARK_METRICS_ADDR: if set, /metrics is served on a
	// listener of its own at this address (e.g. 127.0.0.1:9090), which a
	// firewall can keep to the monitoring network.
	Addr string
}

func bindMetrics(fs *flag.FlagSet, c *MetricsConfig) {
	fs.StringVar(&c.Switch, "metrics", env("TIDEMARK_METRICS", ""), "on serves Prometheus metrics at /metrics on the main listener; off or empty does not (TIDEMARK_METRICS)")
	fs.StringVar(&c.Addr, "metrics-addr", env("TIDEMARK_METRICS_ADDR", ""), "if set, serve Prometheus metrics at /metrics on this separate address, e.g. 127.0.0.1:9090 (TIDEMARK_METRICS_ADDR)")
}

func (c MetricsConfig) validate() []error {
	switch strings.ToLower(c.Switch) {
	case "", "on", "off", "true", "false":
	default:
		return []error{fmt.Errorf("TIDEMARK_METRICS=%q must be on or off", c.Switch)}
	}
	if c.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			return []error{fmt.Errorf("TIDEMARK_METRICS_ADDR=%q is not a host:port address", c.Addr)}
		}
	}
	return nil
}

func (c MetricsConfig) onMain() bool {
	s := strings.ToLower(c.Switch)
	return s == "on" || s == "true"
}

// metricsEndpoint is the program's metrics: the registry, and the listener
// of its own when TIDEMARK_METRICS_ADDR is set. A nil one is metrics off.
type metricsEndpoint struct {
	metrics *metrics.Metrics
	onMain  bool
	srv     *http.Server
	addr    string
}

// startMetrics makes the registry when metrics are on anywhere, and takes
// and serves the metrics listener, before the database starts (as the main
// listener: a port in use fails at once).
func startMetrics(c MetricsConfig, log *slog.Logger) (*metricsEndpoint, error) {
	if !c.onMain() && c.Addr == "" {
		return nil, nil
	}
	e := &metricsEndpoint{metrics: metrics.New(), onMain: c.onMain()}
	if c.Addr == "" {
		log.Info("metrics served at /metrics on the main listener")
		return e, nil
	}
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener on %s: %w", c.Addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", e.metrics.Handler())
	e.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	e.addr = ln.Addr().String()
	go func() {
		if err := e.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener stopped", "err", err)
		}
	}()
	log.Info("metrics listener serving /metrics", "addr", e.addr)
	return e, nil
}

// serverConfig is the server's part: measure, and mount /metrics on the
// main listener only when TIDEMARK_METRICS=on.
func (e *metricsEndpoint) serverConfig() server.MetricsConfig {
	if e == nil {
		return server.MetricsConfig{}
	}
	return server.MetricsConfig{Metrics: e.metrics, Serve: e.onMain}
}

// Addr is the metrics listener's address, "" when it has none.
func (e *metricsEndpoint) Addr() string {
	if e == nil {
		return ""
	}
	return e.addr
}

func (e *metricsEndpoint) Close() {
	if e != nil && e.srv != nil {
		e.srv.Close()
	}
}
