package metrics

import (
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/doccache"
)

// sources is one collector over state other packages already keep (the
// pool's statistics, the cache's counters, live sync's subscribers, the
// websocket slots), read at scrape time: nothing on their hot paths.
type sources struct {
	mu          sync.Mutex
	pool        *pgxpool.Pool
	cache       func() doccache.Stats
	subscribers func() map[string]int
	websockets  func() int
}

func (s *sources) set(f func(*sources)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
}

var (
	poolAcquired = desc("db_pool_acquired_connections", "Connections of the pgx pool in use now.")
	poolIdle     = desc("db_pool_idle_connections", "Idle connections of the pgx pool now.")
	poolTotal    = desc("db_pool_connections", "Connections of the pgx pool now (in use, idle and being opened).")
	poolMax      = desc("db_pool_max_connections", "The pgx pool's maximum number of connections.")
	poolAcquires = desc("db_pool_acquires_total", "Successful acquisitions of a pool connection.")
	poolWait     = desc("db_pool_acquire_duration_seconds_total", "Total time spent acquiring pool connections (successful acquisitions).")
	poolEmpty    = desc("db_pool_empty_acquires_total", "Acquisitions that had to wait because the pool had no idle connection.")
	poolCanceled = desc("db_pool_canceled_acquires_total", "Acquisitions given up because their context ended.")
	cacheHits    = desc("document_cache_hits_total", "By-id document lookups answered from the cache (found or known absent).")
	cacheMisses  = desc("document_cache_misses_total", "By-id document lookups that needed a database read.")
	subscribers  = desc("stream_subscribers", "Live stream subscriptions on this instance, by collection.", "collection")
	websockets   = desc("websocket_connections", "Websocket connections this instance holds (admitted upgrades, the count the connection caps apply to).")
)

func (s *sources) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolAcquired, poolIdle, poolTotal, poolMax, poolAcquires, poolWait, poolEmpty, poolCanceled, cacheHits, cacheMisses, subscribers, websockets} {
		ch <- d
	}
}

func (s *sources) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	pool, cache, subs, ws := s.pool, s.cache, s.subscribers, s.websockets
	s.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	if pool != nil {
		st := pool.Stat()
		gauge(poolAcquired, float64(st.AcquiredConns()))
		gauge(poolIdle, float64(st.IdleConns()))
		gauge(poolTotal, float64(st.TotalConns()))
		gauge(poolMax, float64(st.MaxConns()))
		counter(poolAcquires, float64(st.AcquireCount()))
		counter(poolWait, st.AcquireDuration().Seconds())
		counter(poolEmpty, float64(st.EmptyAcquireCount()))
		counter(poolCanceled, float64(st.CanceledAcquireCount()))
	}
	if cache != nil {
		st := cache()
		counter(cacheHits, float64(st.Hits))
		counter(cacheMisses, float64(st.Misses))
	}
	if subs != nil {
		// Every collection of the schema, so that none vanishes at zero and
		// no name from elsewhere becomes a label.
		counts := subs()
		for _, c := range collections.All() {
			gauge(subscribers, float64(counts[c.Name]), c.Name)
		}
	}
	if ws != nil {
		gauge(websockets, float64(ws()))
	}
}
