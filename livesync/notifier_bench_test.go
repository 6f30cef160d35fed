package livesync_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
	"github.com/tidemark/tidemark/livesync"
)

// byteCount is a TCP proxy on 127.0.0.1 in front of the test's database
// that counts the bytes each way, so a benchmark can report what one poll
// costs on the wire.
type byteCount struct {
	ln       net.Listener
	target   string
	sent     atomic.Int64 // client → database
	received atomic.Int64 // database → client
}

func newByteCount(tb testing.TB, dbURL string) (string, *byteCount) {
	tb.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &byteCount{ln: ln, target: u.Host}
	var wg sync.WaitGroup
	tb.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			upstream, err := net.Dial("tcp", p.target)
			if err != nil {
				client.Close()
				continue
			}
			wg.Add(2)
			go p.copy(&wg, upstream, client, &p.sent)
			go p.copy(&wg, client, upstream, &p.received)
		}
	}()
	u.Host = ln.Addr().String()
	return u.String(), p
}

func (p *byteCount) copy(wg *sync.WaitGroup, dst, src net.Conn, n *atomic.Int64) {
	defer wg.Done()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		k, err := src.Read(buf)
		if k > 0 {
			n.Add(int64(k))
			if _, werr := dst.Write(buf[:k]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *byteCount) total() int64 { return p.sent.Load() + p.received.Load() }

// BenchmarkNotifierPoll measures one poll of each notifier with every
// tenant's every collection holding a change counter (scopes = 4 × tenants),
// every tenant with local subscribers, and `changed` scopes changed within
// the last poll's window:
//
//	heads:   PollingNotifier's query, the heads of every tenant listened to
//	changes: ChangesNotifier's query, the scopes changed since the last poll
//
// It reports per poll: the rows the query returned and the bytes on the
// wire (both ways, through a counting proxy). Run it with
//
//	go test ./livesync -run '^$' -bench NotifierPoll -benchtime 20x
func BenchmarkNotifierPoll(b *testing.B) {
	const changed = 100
	for _, tenants := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("tenants=%d", tenants), func(b *testing.B) {
			dbURL, wire := newByteCount(b, dbtest.URL(b))
			d, err := db.Open(context.Background(), dbURL, db.PoolConfig{MaxConns: 1}, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(d.Close)
			ids := seedTenants(b, d, tenants, changed)
			ctx := context.Background()

			b.Run("heads", func(b *testing.B) {
				var rows, bytes int64
				b.ResetTimer()
				for range b.N {
					before := wire.total()
					heads, err := d.ScopeHeads(ctx, ids)
					if err != nil {
						b.Fatal(err)
					}
					rows += int64(len(heads))
					bytes += wire.total() - before
				}
				b.ReportMetric(float64(rows)/float64(b.N), "rows/poll")
				b.ReportMetric(float64(bytes)/float64(b.N), "wire-bytes/poll")
			})
			b.Run("changes", func(b *testing.B) {
				counted := &changedScopesCount{DB: d}
				// An overlap of a minute keeps the seeded changes in
				// every poll's window: the steady state of `changed`
				// scopes changing per window.
				n := &livesync.ChangesNotifier{Changes: counted, Heads: d, Overlap: time.Minute,
					Listeners: []livesync.HeadListener{newHeadLog(ids...)}}
				if err := n.Poll(ctx); err != nil { // the catch-up
					b.Fatal(err)
				}
				var rows, bytes int64
				b.ResetTimer()
				for range b.N {
					before := wire.total()
					if err := n.Poll(ctx); err != nil {
						b.Fatal(err)
					}
					rows += counted.last.Load()
					bytes += wire.total() - before
				}
				b.ReportMetric(float64(rows)/float64(b.N), "rows/poll")
				b.ReportMetric(float64(bytes)/float64(b.N), "wire-bytes/poll")
			})
			logPlan(b, d, "heads", `EXPLAIN (ANALYZE, BUFFERS) SELECT tenant_id, collection, seq FROM change_counters WHERE tenant_id = ANY($1)`, ids)
			logPlan(b, d, "changes", `EXPLAIN (ANALYZE, BUFFERS) SELECT n.db_now, c.tenant_id, c.collection, c.seq
FROM (SELECT now() AS db_now) AS n
LEFT JOIN change_counters AS c ON c.changed_at > $1::TIMESTAMPTZ`, time.Now().Add(-time.Minute))
		})
	}
}

// seedTenants gives n tenants (ids the length of a UUID) a change counter
// in every collection, last changed an hour ago, except `changed` scopes
// changed just now; it returns the tenants' ids.
func seedTenants(tb testing.TB, d *db.DB, n, changed int) []string {
	tb.Helper()
	ctx := context.Background()
	var names []string
	for _, c := range collections.All() {
		names = append(names, c.Name)
	}
	_, err := d.Pool.Exec(ctx, `INSERT INTO change_counters (tenant_id, collection, seq, changed_at)
SELECT md5(g::text)::uuid::text, c, 1000 + g, now() - interval '1 hour'
FROM generate_series(1, $1) AS g, unnest($2::text[]) AS c`, n, names)
	if err != nil {
		tb.Fatal(err)
	}
	_, err = d.Pool.Exec(ctx, `UPDATE change_counters SET seq = seq + 1, changed_at = clock_timestamp()
WHERE (tenant_id, collection) IN (SELECT tenant_id, collection FROM change_counters ORDER BY tenant_id LIMIT $1)`, changed)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := d.Pool.Exec(ctx, `ANALYZE change_counters`); err != nil {
		tb.Fatal(err)
	}
	rows, err := d.Pool.Query(ctx, `SELECT DISTINCT tenant_id FROM change_counters`)
	if err != nil {
		tb.Fatal(err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			tb.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return ids
}

// logPlan logs PostgreSQL's plan of a notifier's query, with its timing
// and buffers, for docs/benchmarks.md.
func logPlan(tb testing.TB, d *db.DB, name, explain string, arg any) {
	tb.Helper()
	rows, err := d.Pool.Query(context.Background(), explain, arg)
	if err != nil {
		tb.Fatal(err)
	}
	var lines []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			tb.Fatal(err)
		}
		if len(line) > 160 { // the tenants' array
			line = line[:160] + "..."
		}
		lines = append(lines, line)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("plan of %s:\n%s", name, strings.Join(lines, "\n"))
}
