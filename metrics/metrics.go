// Package metrics is Tidemark's Prometheus instrumentation: one registry
// per server, every collector in it, their names and help. The layers it
// measures (syncengine, livesync, doccache, db) know nothing of Prometheus:
// each offers a small observer (a struct of nil-safe funcs) or counters of
// its own, which this package implements or reads and wiring connects.
//
// No label takes a value from a client or a tenant: collections come from
// the schema, operations are root field names (the schema's, capped),
// codes are the server's own (capped too), SQLSTATEs a fixed alphabet.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/doccache"
	"github.com/tidemark/tidemark/livesync"
	"github.com/tidemark/tidemark/syncengine"
)

const namespace = "tidemark"

// Other is the label value every value past a label's cap folds into.
const Other = "other"

// Caps of the label values that are not fixed sets. The schema bounds
// root field names and the server the codes it sends; the caps only guard
// against a bug turning either into an unbounded series count.
const (
	maxOperations = 200
	maxCodes      = 50
	maxSQLStates  = 50
)

// Metrics holds the registry and every collector. Its methods are safe on a
// nil *Metrics and then do nothing, so callers need no checks.
type Metrics struct {
	registry *prometheus.Registry

	requestDuration *prometheus.HistogramVec
	rejections      *prometheus.CounterVec
	pushRows        *prometheus.CounterVec
	pulledDocuments *prometheus.CounterVec
	pullBehind      *prometheus.HistogramVec
	fanOutLag       *prometheus.HistogramVec
	streamDrops     *prometheus.CounterVec
	notifierCycle   prometheus.Histogram
	txRetries       *prometheus.CounterVec
	instanceInfo    *prometheus.GaugeVec

	operations, codes, sqlStates *capped

	sources *sources
	// collectors is everything in registry, for the dashboard's check.
	collectors []prometheus.Collector
}

// New returns the metrics of one server, with the Go runtime's and the
// process's collectors in its registry.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "graphql_request_duration_seconds",
			Help: "Time from reading a GraphQL request to its response, by root field (operation, the schema's field name; " +
				`"multiple" when an operation selects several) and verb (query, mutation, subscription). ` +
				"A subscription is measured to its start, not its whole life. Requests refused before they ran are not here, see tidemark_rejections_total.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"operation", "verb"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "rejections_total",
			Help: "Errors sent to clients, by extensions.code and the HTTP status of the response that carried them " +
				`("websocket" for errors sent on a websocket). Refusals before GraphQL ran (401, 413, 429, 503) count here too.`,
		}, []string{"code", "status"}),
		pushRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "push_rows_total",
			Help: "Rows of committed pushes by collection and outcome: written (as sent), retried (the server had that state already), " +
				"merged (three-way field merge written), conflict (nothing written, master returned), outside (refused by the sync rules, returned as a removal).",
		}, []string{"collection", "outcome"}),
		pulledDocuments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "pull_documents_total",
			Help: "Documents returned by pulls, by collection.",
		}, []string{"collection"}),
		pullBehind: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "pull_changes_behind",
			Help: "At each pull, how many change numbers of the collection lie between the pull's checkpoint and the head: " +
				"the head is the newest change the pull read or the instance's live sync knew of, whichever is later (no extra query), " +
				"so a full page of a device far behind, on an instance without a stream of that tenant, counts as its page.",
			Buckets: []float64{0, 1, 10, 100, 1000, 10_000, 100_000, 1_000_000},
		}, []string{"collection"}),
		fanOutLag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "stream_fanout_lag_seconds",
			Help: "Time from the moment live sync heard of a change to its hand-off to each subscriber's send buffer, by collection. " +
				"This instance's commits are heard right after COMMIT; other instances' when the notifier's poll sees them, so their lag excludes up to one poll interval.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"collection"}),
		streamDrops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "stream_subscribers_dropped_total",
			Help: "Stream subscribers live sync disconnected (close 1013, the client resyncs from its checkpoint), by collection and reason: " +
				"slow (its buffer was full) or read_failed (changes could not be read several times in a row).",
		}, []string{"collection", "reason"}),
		notifierCycle: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "notifier_cycle_seconds",
			Help:    "Time of one polling-notifier cycle that had tenants to poll: reading the change heads of the tenants with local subscribers and telling live sync and the cache.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		txRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "db_transaction_retries_total",
			Help: "Transactions run again because the database asked for a retry, by SQLSTATE (40001 serialization failure, 40P01 deadlock).",
		}, []string{"sqlstate"}),
		instanceInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "instance_info",
			Help: "Always 1, with the region this instance runs in (TIDEMARK_REGION; empty when not set): join on instance to see any series by region.",
		}, []string{"region"}),
		operations: newCapped(maxOperations),
		codes:      newCapped(maxCodes),
		sqlStates:  newCapped(maxSQLStates),
		sources:    &sources{},
	}
	m.collectors = []prometheus.Collector{
		m.requestDuration, m.rejections, m.pushRows, m.pulledDocuments, m.pullBehind,
		m.fanOutLag, m.streamDrops, m.notifierCycle, m.txRetries, m.instanceInfo, m.sources,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}
	m.registry.MustRegister(m.collectors...)
	return m
}

// Registry is the registry every collector is in (for tests and the handler).
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// Handler serves the registry in Prometheus' text (or OpenMetrics) format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry, EnableOpenMetrics: true})
}

// Request records one GraphQL operation's latency.
func (m *Metrics) Request(operation, verb string, d time.Duration) {
	if m == nil {
		return
	}
	m.requestDuration.WithLabelValues(m.operations.value(operation), verb).Observe(d.Seconds())
}

// StatusWebsocket is the status label of errors sent on a websocket.
const StatusWebsocket = "websocket"

// Rejected counts one error sent to a client with its code and the
// response's HTTP status (or StatusWebsocket).
func (m *Metrics) Rejected(code string, status string) {
	if m == nil {
		return
	}
	m.rejections.WithLabelValues(m.codes.value(code), status).Inc()
}

// RejectedHTTP is Rejected with a numeric HTTP status.
func (m *Metrics) RejectedHTTP(code string, status int) {
	m.Rejected(code, strconv.Itoa(status))
}

// SyncObserver is what the sync engine reports to; knownHead, if set, is
// live sync's newest head of a tenant's collection (Hub.KnownHead).
func (m *Metrics) SyncObserver(knownHead func(tenantID string, c *collections.Collection) (int64, bool)) syncengine.Observer {
	if m == nil {
		return syncengine.Observer{}
	}
	return syncengine.Observer{
		KnownHead: knownHead,
		Pulled: func(c *collections.Collection, documents int, behind int64) {
			m.pulledDocuments.WithLabelValues(c.Name).Add(float64(documents))
			m.pullBehind.WithLabelValues(c.Name).Observe(float64(behind))
		},
		Pushed: func(c *collections.Collection, o syncengine.PushOutcomes) {
			for _, oc := range []struct {
				name string
				n    int
			}{{"written", o.Written}, {"retried", o.Retried}, {"merged", o.Merged}, {"conflict", o.Conflicts}, {"outside", o.Outside}} {
				if oc.n > 0 {
					m.pushRows.WithLabelValues(c.Name, oc.name).Add(float64(oc.n))
				}
			}
		},
	}
}

// LiveObserver is what live sync's hub reports to.
func (m *Metrics) LiveObserver() livesync.Observer {
	if m == nil {
		return livesync.Observer{}
	}
	return livesync.Observer{
		FanOut: func(c *collections.Collection, lag time.Duration) {
			m.fanOutLag.WithLabelValues(c.Name).Observe(lag.Seconds())
		},
		Dropped: func(c *collections.Collection, why string) {
			reason := Other
			switch why {
			case livesync.DropSlow:
				reason = "slow"
			case livesync.DropReadFailed:
				reason = "read_failed"
			}
			m.streamDrops.WithLabelValues(c.Name, reason).Inc()
		},
	}
}

// NotifierCycle records one polling-notifier cycle (livesync.PollingNotifier.Cycle).
func (m *Metrics) NotifierCycle(d time.Duration) {
	if m == nil {
		return
	}
	m.notifierCycle.Observe(d.Seconds())
}

// SetRegion gives tidemark_instance_info its one series: the instance's
// region (one value per process, so the label stays bounded).
func (m *Metrics) SetRegion(region string) {
	if m == nil {
		return
	}
	m.instanceInfo.Reset()
	m.instanceInfo.WithLabelValues(region).Set(1)
}

// TxRetried counts one transaction retry (db.DB.ObserveRetries).
func (m *Metrics) TxRetried(sqlstate string) {
	if m == nil {
		return
	}
	if sqlstate == "" {
		sqlstate = "unknown"
	}
	m.txRetries.WithLabelValues(m.sqlStates.value(sqlstate)).Inc()
}

// WatchPool reports the pool's statistics at every scrape.
func (m *Metrics) WatchPool(p *pgxpool.Pool) {
	if m == nil {
		return
	}
	m.sources.set(func(s *sources) { s.pool = p })
}

// WatchCache reports the document cache's hits and misses at every scrape.
func (m *Metrics) WatchCache(stats func() doccache.Stats) {
	if m == nil {
		return
	}
	m.sources.set(func(s *sources) { s.cache = stats })
}

// WatchSubscribers reports live subscribers per collection at every scrape
// (Hub.SubscribersByCollection).
func (m *Metrics) WatchSubscribers(byCollection func() map[string]int) {
	if m == nil {
		return
	}
	m.sources.set(func(s *sources) { s.subscribers = byCollection })
}

// WatchWebsockets reports the websocket connections held at every scrape.
func (m *Metrics) WatchWebsockets(open func() int) {
	if m == nil {
		return
	}
	m.sources.set(func(s *sources) { s.websockets = open })
}

// capped hands out a label's values unchanged until it has seen max
// distinct ones, then folds every new one into Other.
type capped struct {
	mu   sync.RWMutex
	max  int
	seen map[string]struct{}
}

func newCapped(max int) *capped { return &capped{max: max, seen: map[string]struct{}{}} }

func (c *capped) value(v string) string {
	c.mu.RLock()
	_, ok := c.seen[v]
	c.mu.RUnlock()
	if ok {
		return v
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[v]; ok {
		return v
	}
	if len(c.seen) >= c.max {
		return Other
	}
	c.seen[v] = struct{}{}
	return v
}

// Connect makes the engine, the database, live sync and the cache report
// to m. Wiring calls it once the parts are built and before serving;
// on a nil *Metrics it does nothing, and the parts stay unobserved.
func (m *Metrics) Connect(d *db.DB, engine *syncengine.Engine, hub *livesync.Hub, cache *doccache.Cache) {
	if m == nil {
		return
	}
	engine.Observe(m.SyncObserver(hub.KnownHead))
	d.ObserveRetries(m.TxRetried)
	m.WatchPool(d.Pool)
	m.WatchCache(cache.Stats)
	m.WatchSubscribers(hub.SubscribersByCollection)
}

// NotifierCycleFunc is NotifierCycle for livesync.PollingNotifier.Cycle,
// nil on a nil *Metrics so that the notifier reads no clock.
func (m *Metrics) NotifierCycleFunc() func(time.Duration) {
	if m == nil {
		return nil
	}
	return m.NotifierCycle
}
