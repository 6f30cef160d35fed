package server_test

// Prometheus metrics through the real handler: traffic of every kind (a
// push with a merge and a conflict, a pull, a stream event, by-id reads,
// refusals), then a real GET of /metrics, checked series by series.

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tidemark/tidemark/metrics"
	"github.com/tidemark/tidemark/server"
	"github.com/tidemark/tidemark/syncengine"
	"github.com/tidemark/tidemark/testenv"
)

// Ids no label value may contain.
const (
	metricsTenant = "tenant-metrics-5e1d"
	metricsUser   = "user-metrics-c07a"
	// A client's operation name and alias, which must not become labels.
	metricsOpName = "tenantMetrics5e1dOp"
	metricsAlias  = "userMetricsC07a"
)

// scrape GETs /metrics and parses it.
func scrape(tb testing.TB, url string) (map[string]*dto.MetricFamily, string) {
	tb.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		tb.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET /metrics: status %d: %.300s", resp.StatusCode, body)
	}
	return parseExposition(tb, body), string(body)
}

func parseExposition(tb testing.TB, body []byte) map[string]*dto.MetricFamily {
	tb.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		tb.Fatalf("/metrics is not the text format: %v", err)
	}
	return families
}

// series is one sample to look for: a family, its labels, and the least
// value it must have reached (a histogram's count).
type series struct {
	name   string
	labels map[string]string
	least  float64
}

func (s series) String() string {
	keys := slices.Sorted(maps.Keys(s.labels))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + s.labels[k]
	}
	return s.name + "{" + strings.Join(parts, ",") + "}"
}

// value finds a series' value (a histogram's sample count); false when
// the family or the series is absent.
func value(families map[string]*dto.MetricFamily, s series) (float64, bool) {
	f, ok := families[s.name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range s.labels {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// unmoved lists the series that are absent or below their least value.
func unmoved(families map[string]*dto.MetricFamily, want []series) []string {
	var out []string
	for _, s := range want {
		v, ok := value(families, s)
		if !ok || v < s.least {
			out = append(out, fmt.Sprintf("%s = %v (present %v), want at least %v", s, v, ok, s.least))
		}
	}
	return out
}

// metricsTraffic runs one of everything against url as metricsTenant.
func metricsTraffic(t *testing.T, url string) {
	t.Helper()
	token := testenv.Token(t, metricsTenant, metricsUser)
	api := workOrderAPI{tb: t, url: url, token: token}

	// A stream, live before the pushes: its events carry fan-out lag.
	c := connectStream(t, url, protoTransportWS, map[string]any{"Authorization": bearer(token)})
	stream := subscribeWorkOrders(c, "1", "")
	awaitLive(t, api, stream)

	// A push written as sent, then one whose description changed on the
	// server, then a merge (the client changed the title) and a conflict
	// (the client changed the description too).
	orig := workOrder("wo-metrics", "as created")
	api.push(orig)
	onServer := workOrder("wo-metrics", "changed on the server")
	pushRows(t, url, token, []map[string]any{{"assumedMasterState": orig, "newDocumentState": onServer}}, 0)
	merged := workOrder("wo-metrics", "as created")
	merged["title"] = "retitled by the client"
	pushRows(t, url, token, []map[string]any{{"assumedMasterState": orig, "newDocumentState": merged}}, 1)
	conflicting := workOrder("wo-metrics", "changed by the client")
	pushRows(t, url, token, []map[string]any{{"assumedMasterState": orig, "newDocumentState": conflicting}}, 1)
	stream.until("wo-metrics", eventWait)

	// A pull from the beginning, then by-id reads: a miss, then a hit.
	if ids, _ := api.pull("", 100); !slices.Contains(ids, "wo-metrics") {
		t.Fatalf("pull did not return wo-metrics: %v", ids)
	}
	for range 2 {
		r := post(t, url, token, `{ node(id: "wo-metrics") { id } }`, nil)
		if r.Status != http.StatusOK || len(r.GQL.Errors) > 0 {
			t.Fatalf("node(id): status %d: %s", r.Status, r.Body)
		}
	}

	// Refusals: no token (401 before GraphQL), an invalid document (422),
	// and an operation whose client-chosen name must not become a label.
	if r := post(t, url, "", pullSitesQuery, nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("no token: status %d, want 401", r.Status)
	}
	if r := post(t, url, token, `{ noSuchField }`, nil); r.Status != http.StatusUnprocessableEntity {
		t.Fatalf("invalid document: status %d, want 422: %s", r.Status, r.Body)
	}
	if r := post(t, url, token, `query `+metricsOpName+` { `+metricsAlias+`: pullSites(limit: 1) { checkpoint { cursor } } }`, nil); r.Status != http.StatusOK || len(r.GQL.Errors) > 0 {
		t.Fatalf("named operation: status %d: %s", r.Status, r.Body)
	}
}

// pushRows pushes rows of work orders and checks how many documents the
// push returns for the client to adopt.
func pushRows(tb testing.TB, url, token string, rows []map[string]any, adopt int) {
	tb.Helper()
	r := post(tb, url, token, pushWorkOrdersMutation, map[string]any{"rows": rows})
	if r.Status != http.StatusOK || len(r.GQL.Errors) > 0 {
		tb.Fatalf("push: status %d: %s", r.Status, r.Body)
	}
	if n := strings.Count(string(r.GQL.Data), `"id"`); n != adopt {
		tb.Fatalf("push returned %d documents to adopt, want %d: %s", n, adopt, r.GQL.Data)
	}
}

// movedByTraffic is what metricsTraffic must move, whatever else ran.
func movedByTraffic() []series {
	wo := map[string]string{"collection": "WorkOrder"}
	return []series{
		{"tidemark_graphql_request_duration_seconds", map[string]string{"operation": "pushWorkOrders", "verb": "mutation"}, 4},
		{"tidemark_graphql_request_duration_seconds", map[string]string{"operation": "pullWorkOrders", "verb": "query"}, 1},
		{"tidemark_graphql_request_duration_seconds", map[string]string{"operation": "streamWorkOrders", "verb": "subscription"}, 1},
		{"tidemark_graphql_request_duration_seconds", map[string]string{"operation": "node", "verb": "query"}, 2},
		{"tidemark_graphql_request_duration_seconds", map[string]string{"operation": "pullSites", "verb": "query"}, 1},
		{"tidemark_push_rows_total", map[string]string{"collection": "WorkOrder", "outcome": "written"}, 2},
		{"tidemark_push_rows_total", map[string]string{"collection": "WorkOrder", "outcome": "merged"}, 1},
		{"tidemark_push_rows_total", map[string]string{"collection": "WorkOrder", "outcome": "conflict"}, 1},
		{"tidemark_pull_documents_total", wo, 1},
		{"tidemark_pull_changes_behind", wo, 1},
		{"tidemark_stream_fanout_lag_seconds", wo, 1},
		{"tidemark_stream_subscribers", wo, 1},
		{"tidemark_websocket_connections", nil, 1},
		{"tidemark_document_cache_misses_total", nil, 1},
		{"tidemark_document_cache_hits_total", nil, 1},
		{"tidemark_rejections_total", map[string]string{"code": "UNAUTHENTICATED", "status": "401"}, 1},
		{"tidemark_rejections_total", map[string]string{"code": "GRAPHQL_VALIDATION_FAILED", "status": "422"}, 1},
		{"tidemark_db_pool_acquires_total", nil, 1},
		{"tidemark_db_pool_max_connections", nil, 1},
		{"tidemark_db_pool_connections", nil, 1},
		{"tidemark_notifier_cycle_seconds", nil, 1},
	}
}

func TestMetricsCountPushesPullsStreamsAndRefusals(t *testing.T) {
	m := metrics.New()
	_, url, _ := start(t, server.Config{Metrics: server.MetricsConfig{Metrics: m, Serve: true}})
	metricsTraffic(t, url)

	// The notifier polls on its own clock: wait for its first cycle with
	// the stream open, by scraping until it shows (a condition, not a time).
	deadline := time.Now().Add(10 * time.Second)
	var families map[string]*dto.MetricFamily
	var text string
	for {
		families, text = scrape(t, url)
		if v, _ := value(families, series{name: "tidemark_notifier_cycle_seconds"}); v > 0 || time.Now().After(deadline) {
			break
		}
	}
	if missing := unmoved(families, movedByTraffic()); len(missing) > 0 {
		t.Errorf("series that did not move:\n%s", strings.Join(missing, "\n"))
	}
	// Rows written as sent are the first push and the server-side change;
	// the merge is counted as merged, not written.
	if v, _ := value(families, series{name: "tidemark_push_rows_total", labels: map[string]string{"collection": "WorkOrder", "outcome": "merged"}}); v != 1 {
		t.Errorf("merged rows = %v, want 1", v)
	}

	for _, secret := range []string{metricsTenant, metricsUser, "wo-metrics", metricsOpName, metricsAlias} {
		if strings.Contains(text, secret) {
			t.Errorf("/metrics mentions %q", secret)
		}
	}
	for name, f := range families {
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if strings.Contains(l.GetValue(), "tenant") || strings.Contains(l.GetValue(), "user-") {
					t.Errorf("%s has label %s=%q", name, l.GetName(), l.GetValue())
				}
			}
		}
	}

	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// The control: with the sync engine's hook unwired, the same traffic and
// the same checks report exactly the engine's series unmoved. Were any hook
// not wired, the test above would fail the same way.
func TestMetricsCheckCatchesAnUnwiredHook(t *testing.T) {
	m := metrics.New()
	env := testenv.New(t, testenv.Options{Server: server.Config{Metrics: server.MetricsConfig{Metrics: m, Serve: true}}})
	env.Sync.Observe(syncengine.Observer{}) // before serving: no request reads it yet
	url := env.Serve(t)
	metricsTraffic(t, url)

	families, _ := scrape(t, url)
	var engines []string
	for _, s := range movedByTraffic() {
		if strings.HasPrefix(s.name, "tidemark_push_") || strings.HasPrefix(s.name, "tidemark_pull_") {
			engines = append(engines, s.String())
		}
	}
	var got []string
	for _, s := range movedByTraffic() {
		if s.name == "tidemark_notifier_cycle_seconds" {
			continue // on the poller's own clock; the test above waits for it
		}
		if v, ok := value(families, s); !ok || v < s.least {
			got = append(got, s.String())
		}
	}
	if !slices.Equal(got, engines) {
		t.Fatalf("unmoved series with the engine unwired:\n%s\nwant the engine's:\n%s", strings.Join(got, "\n"), strings.Join(engines, "\n"))
	}
}

func TestMetricsEndpointOnlyWhenSwitchedOn(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  server.MetricsConfig
		want int
	}{
		{"metrics off", server.MetricsConfig{}, http.StatusNotFound},
		{"measured but served elsewhere", server.MetricsConfig{Metrics: metrics.New()}, http.StatusNotFound},
		{"served on the main listener", server.MetricsConfig{Metrics: metrics.New(), Serve: true}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, url, _ := start(t, server.Config{Metrics: tc.cfg})
			resp, err := http.Get(url + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("GET /metrics: status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

// Refusals before GraphQL ran are counted from their own bodies: a
// websocket upgrade over the connection cap is a 503 RATE_LIMITED.
func TestMetricsCountShedWebsocketUpgrades(t *testing.T) {
	m := metrics.New()
	_, url, _ := start(t, server.Config{
		Metrics:         server.MetricsConfig{Metrics: m, Serve: true},
		WebsocketLimits: server.WebsocketLimits{MaxConnections: 1},
	})
	token := testenv.Token(t, metricsTenant, metricsUser)
	connectStream(t, url, protoTransportWS, map[string]any{"Authorization": bearer(token)})
	if _, resp, err := dialStream(t, url, protoTransportWS, streamDialOptions{}); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second websocket: err %v, want a 503 refusal", err)
	}
	families, _ := scrape(t, url)
	want := []series{
		{"tidemark_rejections_total", map[string]string{"code": "RATE_LIMITED", "status": "503"}, 1},
		{"tidemark_websocket_connections", nil, 1},
	}
	if missing := unmoved(families, want); len(missing) > 0 {
		t.Fatalf("series that did not move:\n%s", strings.Join(missing, "\n"))
	}
}
