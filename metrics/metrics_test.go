package metrics

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/livesync"
	"github.com/tidemark/tidemark/syncengine"
)

const dashboardPath = "../deploy/grafana/tidemark-dashboard.json"

// described lists the names of every series the registry can expose, a
// histogram's _bucket, _sum and _count included.
func described(m *Metrics) map[string]bool {
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	ch := make(chan *prometheus.Desc, 1000)
	for _, c := range m.collectors {
		c.Describe(ch)
	}
	close(ch)
	names := map[string]bool{}
	for d := range ch {
		match := fqName.FindStringSubmatch(d.String())
		if match == nil {
			continue
		}
		for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
			names[match[1]+suffix] = true
		}
	}
	return names
}

type dashboard struct {
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
}

type panel struct {
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

var metricName = regexp.MustCompile(`\b(?:tidemark|go|process)_[a-z0-9_]+\b`)

// unknownMetrics lists the metric names the expressions query that the
// registry does not describe.
func unknownMetrics(exprs []string, known map[string]bool) []string {
	var out []string
	for _, e := range exprs {
		for _, name := range metricName.FindAllString(e, -1) {
			if !known[name] && !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
	}
	return out
}

func TestDashboardIsValidAndQueriesOnlyRegisteredMetrics(t *testing.T) {
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s is not valid JSON: %v", dashboardPath, err)
	}
	var rows, exprs []string
	for _, p := range d.Panels {
		if p.Type == "row" {
			rows = append(rows, p.Title)
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q has an empty query", p.Title)
			}
			exprs = append(exprs, tg.Expr)
		}
	}
	if want := []string{"Traffic", "Sync", "Streams", "Database", "Errors"}; !slices.Equal(rows, want) {
		t.Errorf("rows %v, want %v", rows, want)
	}
	known := described(New())
	if unknown := unknownMetrics(exprs, known); len(unknown) > 0 {
		t.Errorf("the dashboard queries metrics the registry does not have: %v", unknown)
	}
	// And every metric of ours has a panel.
	all := strings.Join(exprs, "\n")
	for name := range known {
		if strings.HasPrefix(name, namespace+"_") && !strings.HasSuffix(name, "_bucket") && !strings.HasSuffix(name, "_sum") && !strings.HasSuffix(name, "_count") &&
			!strings.Contains(all, name) {
			t.Errorf("no panel queries %s", name)
		}
	}
}

// The control: the check finds a name the registry lacks.
func TestDashboardCheckCatchesAnUnknownMetric(t *testing.T) {
	exprs := []string{`rate(tidemark_push_rows_total[5m])`, `sum(tidemark_pushed_rowz_total)`}
	if got := unknownMetrics(exprs, described(New())); !slices.Equal(got, []string{"tidemark_pushed_rowz_total"}) {
		t.Fatalf("unknownMetrics = %v, want the misspelt name alone", got)
	}
}

func TestLabelValuesPastTheCapFoldIntoOther(t *testing.T) {
	c := newCapped(3)
	for i := range 3 {
		if got := c.value(fmt.Sprint("op", i)); got != fmt.Sprint("op", i) {
			t.Fatalf("value %d under the cap = %q", i, got)
		}
	}
	if got := c.value("op-new"); got != Other {
		t.Fatalf("a fourth value = %q, want %q", got, Other)
	}
	if got := c.value("op1"); got != "op1" {
		t.Fatalf("a value seen before the cap = %q, want it kept", got)
	}
}

func TestNilMetricsMeasuresNothing(t *testing.T) {
	var m *Metrics
	m.Request("pullSites", "query", time.Millisecond)
	m.Rejected("INTERNAL", "200")
	m.TxRetried("40001")
	m.NotifierCycle(time.Millisecond)
	if m.NotifierCycleFunc() != nil {
		t.Fatal("a nil Metrics hands the notifier a func")
	}
	if o := m.SyncObserver(nil); o.Pulled != nil || o.Pushed != nil {
		t.Fatal("a nil Metrics observes the engine")
	}
	if m.LiveObserver().FanOut != nil {
		t.Fatal("a nil Metrics observes live sync")
	}
	m.Connect(nil, nil, nil, nil)
}

func TestObserversCountByCollectionAndOutcome(t *testing.T) {
	m := New()
	o := m.SyncObserver(nil)
	o.Pushed(collections.WorkOrder, syncengine.PushOutcomes{Written: 3, Conflicts: 2, Merged: 1})
	o.Pulled(collections.Site, 7, 40)
	m.TxRetried("40P01")
	m.TxRetried("")
	m.LiveObserver().Dropped(collections.Note, livesync.DropSlow)
	m.LiveObserver().Dropped(collections.Note, "a reason no one declared")
	for _, tc := range []struct {
		c    prometheus.Collector
		want float64
	}{
		{m.pushRows.WithLabelValues("WorkOrder", "written"), 3},
		{m.pushRows.WithLabelValues("WorkOrder", "conflict"), 2},
		{m.pushRows.WithLabelValues("WorkOrder", "merged"), 1},
		{m.pulledDocuments.WithLabelValues("Site"), 7},
		{m.txRetries.WithLabelValues("40P01"), 1},
		{m.txRetries.WithLabelValues("unknown"), 1},
		{m.streamDrops.WithLabelValues("Note", "slow"), 1},
		{m.streamDrops.WithLabelValues("Note", Other), 1},
	} {
		if got := testutil.ToFloat64(tc.c); got != tc.want {
			t.Errorf("%v = %v, want %v", tc.c, got, tc.want)
		}
	}
	// Outcomes that did not happen make no series.
	if n := testutil.CollectAndCount(m.pushRows); n != 3 {
		t.Errorf("push rows series = %d, want 3", n)
	}
	if n := testutil.CollectAndCount(m.pullBehind); n != 1 {
		t.Errorf("pull behind series = %d, want 1", n)
	}
}
