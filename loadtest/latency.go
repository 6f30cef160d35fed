package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/server"
	"github.com/tidemark/tidemark/wiring"
)

// DelayProxy is a TCP proxy on 127.0.0.1 that holds every chunk of bytes
// for a fixed one-way delay before passing it on, in each direction, in
// the order it was read: a round trip through it costs twice the delay, as
// a database that far away does. It stands in for tc netem where the
// kernel has no netem qdisc; for request/response traffic the two are the
// same (no loss, no jitter, no bandwidth limit: only the wait).
type DelayProxy struct {
	ln     net.Listener
	target string
	delay  time.Duration

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// NewDelayProxy starts a proxy to target (host:port) adding delay each way.
func NewDelayProxy(target string, delay time.Duration) (*DelayProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &DelayProxy{ln: ln, target: target, delay: delay, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's address (127.0.0.1:port).
func (p *DelayProxy) Addr() string { return p.ln.Addr().String() }

// Close stops accepting and closes every connection.
func (p *DelayProxy) Close() error {
	err := p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *DelayProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *DelayProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(c)
		}()
	}
}

func (p *DelayProxy) serve(client net.Conn) {
	defer client.Close()
	upstream, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer upstream.Close()
	if !p.track(client) || !p.track(upstream) {
		return
	}
	defer func() {
		p.mu.Lock()
		delete(p.conns, client)
		delete(p.conns, upstream)
		p.mu.Unlock()
	}()
	// Each direction ends on its own (a half-close is passed on), so an
	// answer still in flight is delivered after the request side ended.
	done := make(chan struct{}, 2)
	go func() { delayCopy(upstream, client, p.delay); done <- struct{}{} }()
	go func() { delayCopy(client, upstream, p.delay); done <- struct{}{} }()
	<-done
	<-done
}

// chunk is bytes read at one moment, due for writing delay later.
type chunk struct {
	b   []byte
	due time.Time
}

// delayCopy copies src to dst, each chunk written delay after it was read
// and never before the chunks read earlier. Everything read before src
// ended is written before dst is half-closed; a failed write closes both,
// which ends the other direction too.
func delayCopy(dst, src net.Conn, delay time.Duration) {
	queue := make(chan chunk, 4096)
	go func() {
		defer close(queue)
		buf := make([]byte, 64<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				queue <- chunk{b: append([]byte(nil), buf[:n]...), due: time.Now().Add(delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	failed := false
	for c := range queue {
		if failed {
			continue // keep draining, so the reader never blocks
		}
		if wait := time.Until(c.due); wait > 0 {
			time.Sleep(wait)
		}
		if _, err := dst.Write(c.b); err != nil {
			failed = true
			dst.Close()
			src.Close()
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok && !failed {
		_ = tc.CloseWrite()
	}
}

// LatencyConfig sets a latency benchmark: an in-process Tidemark on
// DatabaseURL, reached through a DelayProxy at each delay in turn.
type LatencyConfig struct {
	DatabaseURL string          // PostgreSQL (or CockroachDB) URL, direct; it is migrated
	Delays      []time.Duration // one-way delays to the database (default 0, 25ms, 75ms)
	Requests    int             // requests per verb, per delay and cache setting (default 50)
	Warmup      int             // unmeasured requests per verb first (default 5)
	Log         io.Writer       // progress lines; nil: none
}

// LatencyVerb is one verb's latencies at one delay and cache setting.
type LatencyVerb struct {
	Name    string
	Latency Latencies
	// RoundTrips is (p50 − p50 with no delay) ÷ the round-trip time: the
	// database round trips one request waits for. Zero at no delay; when
	// no delay of 0 runs first, the p50 alone is divided.
	RoundTrips float64
}

// LatencyRun is every verb at one delay, with the cache on or off.
type LatencyRun struct {
	Delay   time.Duration // one way
	NoCache bool
	Verbs   []LatencyVerb
}

// LatencyReport is what a latency benchmark measured.
type LatencyReport struct {
	Requests int
	Runs     []LatencyRun
}

func (r LatencyReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-8s %-6s %-12s %10s %10s %12s\n", "RTT", "cache", "verb", "p50", "p99", "round trips")
	for _, run := range r.Runs {
		cache := "on"
		if run.NoCache {
			cache = "off"
		}
		for _, v := range run.Verbs {
			rt := "-"
			if run.Delay > 0 {
				rt = fmt.Sprintf("%.1f", v.RoundTrips)
			}
			fmt.Fprintf(&b, "%-8s %-6s %-12s %10s %10s %12s\n", (2 * run.Delay).String(), cache, v.Name,
				v.Latency.P50.Round(100*time.Microsecond), v.Latency.P99.Round(100*time.Microsecond), rt)
		}
	}
	fmt.Fprintf(&b, "(%d requests per verb and row, one client, one at a time)", r.Requests)
	return b.String()
}

// The verbs measured, in order.
const (
	VerbPush   = "push"
	VerbPull   = "pull"
	VerbStream = "stream"
	VerbNested = "nested read"
	VerbSites  = "sites only"
)

// LatencyNestedQuery is the nested read measured: a page of 100 work
// orders with each one's site and checklist.
const LatencyNestedQuery = `{ workOrders(first: 100) { edges { node { title site { name } checklist { label done } } } } }`

// LatencySitesQuery is the nested read without the checklist: its only
// nested load is by id (each work order's site), which the document cache
// serves from memory; the checklist is a list by parent, which the cache
// holds too when it caches children (wiring.Config.CacheChildren, on here
// whenever the cache is).
const LatencySitesQuery = `{ workOrders(first: 100) { edges { node { title site { name } } } } }`

const latencyPull = `query { pullWorkOrders(limit: 100) { documents { id title status updatedAt } checkpoint { cursor } } }`

var latencySecret = []byte("tidemark-bench-latency-secret-0123456789")

// Latency measures, for each delay and with the document cache on and off,
// the latency of a one-row push, a pull of a 100-document page, a stream
// event (from sending a push to its event on a websocket subscriber), the
// nested read and the nested read of sites only, each request alone. The server is this process's own,
// wired as the program wires it (wiring.Build), so only the database is
// far away: the client's round trip to the server is loopback.
func Latency(ctx context.Context, cfg LatencyConfig) (LatencyReport, error) {
	if cfg.Delays == nil {
		cfg.Delays = []time.Duration{0, 25 * time.Millisecond, 75 * time.Millisecond}
	}
	if cfg.Requests == 0 {
		cfg.Requests = 50
	}
	if cfg.Warmup == 0 {
		cfg.Warmup = 5
	}
	logf := func(format string, args ...any) {
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, format+"\n", args...)
		}
	}
	rep := LatencyReport{Requests: cfg.Requests}
	u, err := url.Parse(cfg.DatabaseURL)
	if err != nil || u.Host == "" {
		return rep, fmt.Errorf("database URL %q: want postgres://host:port/name", cfg.DatabaseURL)
	}
	run := time.Now().UnixNano()
	readTenant := fmt.Sprintf("latency-read-%d", run)

	// Migrate and seed directly, without the delay.
	direct, err := db.Open(ctx, cfg.DatabaseURL, db.PoolConfig{MaxConns: 4}, nil)
	if err != nil {
		return rep, err
	}
	if err := direct.Migrate(ctx); err != nil {
		direct.Close()
		return rep, err
	}
	err = withServer(direct, false, func(base string) error {
		c := latencyClient(base, readTenant)
		return SeedRead(ctx, c, ReadConfig{WorkOrders: 100})
	})
	direct.Close()
	if err != nil {
		return rep, fmt.Errorf("seed: %w", err)
	}
	logf("seeded tenant %s: 100 work orders, 3 checklist items each", readTenant)

	baseline := map[[2]any]time.Duration{} // (noCache, verb) → p50 with no delay
	for _, delay := range cfg.Delays {
		proxy, err := NewDelayProxy(u.Host, delay)
		if err != nil {
			return rep, err
		}
		pu := *u
		pu.Host = proxy.Addr()
		for _, noCache := range []bool{false, true} {
			d, err := db.Open(ctx, pu.String(), db.PoolConfig{MaxConns: 8}, nil)
			if err != nil {
				proxy.Close()
				return rep, err
			}
			var verbs []LatencyVerb
			err = withServer(d, noCache, func(base string) error {
				var err error
				verbs, err = measureVerbs(ctx, base, readTenant, fmt.Sprintf("latency-push-%d-%d-%t", run, delay, noCache), cfg)
				return err
			})
			d.Close()
			if err != nil {
				proxy.Close()
				return rep, fmt.Errorf("delay %s, no cache %t: %w", delay, noCache, err)
			}
			for i, v := range verbs {
				key := [2]any{noCache, v.Name}
				if delay == 0 {
					baseline[key] = v.Latency.P50
				} else {
					verbs[i].RoundTrips = float64(v.Latency.P50-baseline[key]) / float64(2*delay)
				}
			}
			rep.Runs = append(rep.Runs, LatencyRun{Delay: delay, NoCache: noCache, Verbs: verbs})
			logf("RTT %s, no cache %t: done", 2*delay, noCache)
		}
		proxy.Close()
	}
	return rep, nil
}

// withServer serves a Tidemark wired on d on 127.0.0.1:0 while fn runs.
func withServer(d *db.DB, noCache bool, fn func(base string) error) error {
	// The request rate limits are off (as in testenv): one client sending
	// requests back to back on loopback is not the load they guard against,
	// and a refusal would end the run.
	built, err := wiring.Build(d, wiring.Config{
		Secret: latencySecret, NoCache: noCache, CacheChildren: !noCache, // as the program does
		Logger: slog.New(slog.DiscardHandler),
		Server: server.Config{AddressRate: -1, IdentityRate: -1, PushesInFlight: -1},
	})
	if err != nil {
		return err
	}
	defer built.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: built.Handler, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	return fn("http://" + ln.Addr().String())
}

func latencyClient(base, tenant string) *Client {
	tok, err := auth.Issue(latencySecret, tenant, "bench", 2*time.Hour, time.Now())
	if err != nil {
		panic(err) // only for an empty tenant
	}
	return &Client{URL: base + "/graphql", Token: tok, HTTP: &http.Client{Timeout: time.Minute}}
}

// measureVerbs times each verb cfg.Requests times, one request at a time,
// after cfg.Warmup unmeasured ones (statements prepared, connections open).
func measureVerbs(ctx context.Context, base, readTenant, pushTenant string, cfg LatencyConfig) ([]LatencyVerb, error) {
	reader := latencyClient(base, readTenant)
	pusher := latencyClient(base, pushTenant)
	seq := 0
	push := func() error {
		seq++
		return pushWorkOrder(ctx, pusher, pusher.Token, fmt.Sprintf("wo-%d", seq))
	}
	var nestedOut struct {
		WorkOrders struct{ Edges []json.RawMessage }
	}
	nested := func() error {
		if err := reader.Do(ctx, LatencyNestedQuery, nil, &nestedOut); err != nil {
			return err
		}
		if n := len(nestedOut.WorkOrders.Edges); n != 100 {
			return fmt.Errorf("nested read returned %d work orders, want 100", n)
		}
		return nil
	}
	sites := func() error {
		if err := reader.Do(ctx, LatencySitesQuery, nil, &nestedOut); err != nil {
			return err
		}
		if n := len(nestedOut.WorkOrders.Edges); n != 100 {
			return fmt.Errorf("sites-only read returned %d work orders, want 100", n)
		}
		return nil
	}
	var pullOut struct {
		PullWorkOrders struct{ Documents []json.RawMessage }
	}
	pull := func() error {
		if err := reader.Do(ctx, latencyPull, nil, &pullOut); err != nil {
			return err
		}
		if n := len(pullOut.PullWorkOrders.Documents); n != 100 {
			return fmt.Errorf("pull returned %d documents, want 100", n)
		}
		return nil
	}
	sub, err := openLatencyStream(ctx, base, pusher.Token)
	if err != nil {
		return nil, err
	}
	defer sub.conn.Close()
	stream := func() error {
		seq++
		id := fmt.Sprintf("wo-%d", seq)
		if err := pushWorkOrder(ctx, pusher, pusher.Token, id); err != nil {
			return err
		}
		return sub.await(id)
	}
	// The subscription has no acknowledgement: a first event proves it runs.
	if err := stream(); err != nil {
		return nil, fmt.Errorf("stream: %w", err)
	}
	verbs := []struct {
		name string
		op   func() error
	}{{VerbPush, push}, {VerbPull, pull}, {VerbStream, stream}, {VerbNested, nested}, {VerbSites, sites}}
	var out []LatencyVerb
	for _, v := range verbs {
		var lat []time.Duration
		for i := range cfg.Warmup + cfg.Requests {
			t0 := time.Now()
			if err := v.op(); err != nil {
				return nil, fmt.Errorf("%s: %w", v.name, err)
			}
			if i >= cfg.Warmup {
				lat = append(lat, time.Since(t0))
			}
		}
		out = append(out, LatencyVerb{Name: v.name, Latency: summarize(lat)})
	}
	return out, nil
}

// latencyStream is one websocket subscription to streamWorkOrders.
type latencyStream struct{ conn *websocket.Conn }

func openLatencyStream(ctx context.Context, base, token string) (*latencyStream, error) {
	wsURL, err := websocketURL(base + "/graphql")
	if err != nil {
		return nil, err
	}
	d := &websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 30 * time.Second}
	s := &streamSub{seen: map[string]bool{}}
	if err := s.open(ctx, d, wsURL, token); err != nil {
		if s.conn != nil {
			s.conn.Close()
		}
		return nil, err
	}
	return &latencyStream{conn: s.conn}, nil
}

// await reads events until one carries id.
func (s *latencyStream) await(id string) error {
	s.conn.SetReadDeadline(time.Now().Add(time.Minute))
	defer s.conn.SetReadDeadline(time.Time{})
	for {
		var m streamMessage
		if err := s.conn.ReadJSON(&m); err != nil {
			return err
		}
		switch m.Type {
		case "next":
			if len(m.Payload.Errors) > 0 {
				return fmt.Errorf("stream error: %s", m.Payload.Errors)
			}
			for _, d := range m.Payload.Data.StreamWorkOrders.Documents {
				if d.ID == id {
					return nil
				}
			}
		case "ping":
			if err := s.conn.WriteJSON(map[string]string{"type": "pong"}); err != nil {
				return err
			}
		case "complete", "error":
			return errors.New("stream ended by the server: " + m.Type)
		}
	}
}
