package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/db/dbtest"
)

func TestMetricsSettingsAreChecked(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  MetricsConfig
		bad  string
	}{
		{"off by default", MetricsConfig{}, ""},
		{"on", MetricsConfig{Switch: "on"}, ""},
		{"a listener of its own", MetricsConfig{Addr: "127.0.0.1:9090"}, ""},
		{"a switch that is neither on nor off", MetricsConfig{Switch: "yes please"}, "TIDEMARK_METRICS"},
		{"an address without a port", MetricsConfig{Addr: "127.0.0.1"}, "TIDEMARK_METRICS_ADDR"},
	} {
		errs := tc.cfg.validate()
		switch {
		case tc.bad == "" && len(errs) > 0:
			t.Errorf("%s: refused: %v", tc.name, errs)
		case tc.bad != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.bad)):
			t.Errorf("%s: errors %v, want one naming %s", tc.name, errs, tc.bad)
		}
	}
}

// With TIDEMARK_METRICS_ADDR the metrics have a listener of their own and
// stay off the public one; the program's parts report to them.
func TestMetricsOnTheirOwnListener(t *testing.T) {
	cfg := defaultConfig(t)
	cfg.DatabaseURL = dbtest.URL(t)
	cfg.JWTSecret = testSecret
	cfg.Metrics = MetricsConfig{Addr: "127.0.0.1:0"}
	m := startMain(t, cfg)

	if status, _, _ := get(t, m.url()+"/metrics"); status != http.StatusNotFound {
		t.Errorf("GET /metrics on the main listener = %d, want 404", status)
	}
	if res := query(t, m.url(), "", `{ viewer { userId } }`, nil); res.Status != http.StatusUnauthorized {
		t.Fatalf("without a token: status %d, want 401", res.Status)
	}
	status, _, body := get(t, "http://"+m.metrics.Addr()+"/metrics")
	if status != http.StatusOK {
		t.Fatalf("GET /metrics on the metrics listener = %d", status)
	}
	for _, want := range []string{
		`tidemark_rejections_total{code="UNAUTHENTICATED",status="401"} 1`,
		"tidemark_db_pool_max_connections ",
		"tidemark_document_cache_hits_total ",
		"go_goroutines ",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
