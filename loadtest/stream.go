package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// StreamConfig sets the sizes of a stream benchmark.
type StreamConfig struct {
	Subscribers int           // websocket subscriptions to open (default 1000)
	Tenants     int           // subscribers are spread over this many tenants (default 1: the widest fan-out)
	Rate        float64       // pushes per second, each one new work order (default 20)
	Duration    time.Duration // how long to push (default 20s)
	Dialers     int           // connections opened at once (default 64)
	ServerPID   int           // if set, the server's resident memory is read from /proc
	RunID       string
	// Idle, if set, measures idle connections instead of a run of pushes:
	// Idle connections each with one stream subscription, no events, and
	// the server's resident memory (ServerPID) before and after, read once
	// Settle (default 10s) has passed; then one push per tenant proves
	// every subscription live. See StreamIdle.
	Idle   int
	Settle time.Duration
}

// StreamReport is what a stream benchmark measured.
type StreamReport struct {
	Subscribers   int
	ConnectTime   time.Duration
	Pushes        int
	Delivered     int64 // documents received, summed over subscribers
	Lost          int64 // documents pushed to a subscriber's tenant that it never received
	Latency       Latencies
	ServerRSSIdle int64 // bytes, before connecting
	ServerRSSConn int64 // bytes, with every subscription open and idle
	// Of an idle run (StreamConfig.Idle): the subscriptions that got the
	// probe pushed after the memory was read, and the server's memory then.
	IdleRun       bool
	Live          int
	ServerRSSLive int64
}

func (r StreamReport) String() string {
	if r.IdleRun {
		s := fmt.Sprintf("%d idle connections, each with one stream subscription, connected in %s; %d of them live (got the probe pushed after the reading)",
			r.Subscribers, r.ConnectTime.Round(time.Millisecond), r.Live)
		if r.ServerRSSIdle > 0 {
			s += fmt.Sprintf("\nserver memory: %.1f MiB before, %.1f MiB with the connections idle: %.1f KiB per idle connection; %.1f MiB after one event to each",
				float64(r.ServerRSSIdle)/(1<<20), float64(r.ServerRSSConn)/(1<<20),
				float64(r.ServerRSSConn-r.ServerRSSIdle)/float64(r.Subscribers)/1024, float64(r.ServerRSSLive)/(1<<20))
		}
		return s
	}
	s := fmt.Sprintf("%d subscribers connected in %s; %d pushes, %d documents delivered, %d lost\ncommit→client latency: %s",
		r.Subscribers, r.ConnectTime.Round(time.Millisecond), r.Pushes, r.Delivered, r.Lost, r.Latency)
	if r.ServerRSSIdle > 0 {
		s += fmt.Sprintf("\nserver memory: %.1f MiB before, %.1f MiB with the subscriptions open: %.1f KiB per connection",
			float64(r.ServerRSSIdle)/(1<<20), float64(r.ServerRSSConn)/(1<<20),
			float64(r.ServerRSSConn-r.ServerRSSIdle)/float64(r.Subscribers)/1024)
	}
	return s
}

const streamWorkOrders = `subscription { streamWorkOrders { documents { id updatedAt } checkpoint { cursor } } }`

type streamSub struct {
	tenant  int
	conn    *websocket.Conn
	mu      sync.Mutex
	seen    map[string]bool
	latency []time.Duration
	err     error
	closing atomic.Bool
}

// Stream opens cfg.Subscribers websocket subscriptions to streamWorkOrders
// (graphql-transport-ws), pushes new work orders at a fixed rate and
// measures, for every delivered document, the time from its commit (its
// updatedAt, set by the server just before commit) to its arrival. The
// server and this process must share a clock: run both on one machine.
func Stream(ctx context.Context, c *Client, token func(tenant string) string, cfg StreamConfig) (StreamReport, error) {
	if cfg.Subscribers == 0 {
		cfg.Subscribers = 1000
	}
	if cfg.Tenants == 0 {
		cfg.Tenants = 1
	}
	if cfg.Rate == 0 {
		cfg.Rate = 20
	}
	if cfg.Duration == 0 {
		cfg.Duration = 20 * time.Second
	}
	if cfg.Dialers == 0 {
		cfg.Dialers = 64
	}
	if cfg.Idle > 0 {
		cfg.Subscribers = cfg.Idle
		if cfg.Settle == 0 {
			cfg.Settle = 10 * time.Second
		}
	}
	if cfg.RunID == "" {
		cfg.RunID = strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	tenant := func(i int) string { return fmt.Sprintf("stream-%s-%d", cfg.RunID, i) }
	rep := StreamReport{Subscribers: cfg.Subscribers}
	if cfg.ServerPID > 0 {
		rep.ServerRSSIdle = residentMemory(cfg.ServerPID)
	}

	wsURL, err := websocketURL(c.URL)
	if err != nil {
		return rep, err
	}
	dialer := &websocket.Dialer{
		Subprotocols:     []string{"graphql-transport-ws"},
		HandshakeTimeout: 30 * time.Second,
		ReadBufferSize:   1024,
		WriteBufferSize:  1024,
		WriteBufferPool:  &sync.Pool{},
	}
	subs := make([]*streamSub, cfg.Subscribers)
	began := time.Now()
	var dialErr atomic.Value
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < cfg.Dialers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				s := &streamSub{tenant: i % cfg.Tenants, seen: map[string]bool{}}
				if err := s.open(ctx, dialer, wsURL, token(tenant(s.tenant))); err != nil {
					dialErr.CompareAndSwap(nil, fmt.Errorf("subscriber %d: %w", i, err))
					continue
				}
				subs[i] = s
			}
		}()
	}
	for i := 0; i < cfg.Subscribers; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	rep.ConnectTime = time.Since(began)
	defer func() {
		for _, s := range subs {
			if s != nil {
				s.closing.Store(true)
				s.conn.Close()
			}
		}
	}()
	if err, _ := dialErr.Load().(error); err != nil {
		return rep, err
	}
	for _, s := range subs {
		go s.read()
	}
	if cfg.Idle > 0 {
		return streamIdle(ctx, c, token, tenant, cfg, subs, rep)
	}

	// A probe per tenant proves every subscription is registered before
	// anything is measured (a subscribe message has no acknowledgement).
	for t := 0; t < cfg.Tenants; t++ {
		if err := pushWorkOrder(ctx, c, token(tenant(t)), "probe-"+tenant(t)); err != nil {
			return rep, fmt.Errorf("probe push: %w", err)
		}
	}
	if err := waitDelivered(ctx, subs, func(s *streamSub) []string { return []string{"probe-" + tenant(s.tenant)} }, 60*time.Second); err != nil {
		return rep, fmt.Errorf("subscriptions did not all start: %w", err)
	}
	if cfg.ServerPID > 0 {
		time.Sleep(2 * time.Second) // let the server's allocations settle
		rep.ServerRSSConn = residentMemory(cfg.ServerPID)
	}
	for _, s := range subs {
		s.mu.Lock()
		s.latency = s.latency[:0]
		s.mu.Unlock()
	}

	pushed := make([][]string, cfg.Tenants)
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	tick := time.NewTicker(interval)
	deadline := time.Now().Add(cfg.Duration)
	for n := 0; time.Now().Before(deadline); n++ {
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-tick.C:
		}
		t := n % cfg.Tenants
		id := fmt.Sprintf("wo-%s-%d", cfg.RunID, n)
		if err := pushWorkOrder(ctx, c, token(tenant(t)), id); err != nil {
			return rep, fmt.Errorf("push: %w", err)
		}
		pushed[t] = append(pushed[t], id)
		rep.Pushes++
	}
	tick.Stop()
	_ = waitDelivered(ctx, subs, func(s *streamSub) []string { return pushed[s.tenant] }, 30*time.Second)

	var all []time.Duration
	for _, s := range subs {
		s.mu.Lock()
		for _, id := range pushed[s.tenant] {
			if s.seen[id] {
				rep.Delivered++
			} else {
				rep.Lost++
			}
		}
		all = append(all, s.latency...)
		if s.err != nil && err == nil {
			err = s.err
		}
		s.mu.Unlock()
	}
	rep.Latency = summarize(all)
	return rep, err
}

// streamIdle is the rest of an idle run: the connections are open and
// subscribed, and nothing has been pushed. A subscribe message has no
// acknowledgement, so the memory is read after cfg.Settle; the probe pushed
// after it shows which subscriptions were live.
func streamIdle(ctx context.Context, c *Client, token func(string) string, tenant func(int) string, cfg StreamConfig, subs []*streamSub, rep StreamReport) (StreamReport, error) {
	rep.IdleRun = true
	select {
	case <-ctx.Done():
		return rep, ctx.Err()
	case <-time.After(cfg.Settle):
	}
	if cfg.ServerPID > 0 {
		rep.ServerRSSConn = residentMemory(cfg.ServerPID)
	}
	for t := 0; t < cfg.Tenants; t++ {
		if err := pushWorkOrder(ctx, c, token(tenant(t)), "probe-"+tenant(t)); err != nil {
			return rep, fmt.Errorf("probe push: %w", err)
		}
	}
	err := waitDelivered(ctx, subs, func(s *streamSub) []string { return []string{"probe-" + tenant(s.tenant)} }, 60*time.Second)
	for _, s := range subs {
		s.mu.Lock()
		if s.seen["probe-"+tenant(s.tenant)] {
			rep.Live++
		}
		s.mu.Unlock()
	}
	if cfg.ServerPID > 0 {
		rep.ServerRSSLive = residentMemory(cfg.ServerPID)
	}
	return rep, err
}

func (s *streamSub) open(ctx context.Context, d *websocket.Dialer, wsURL, token string) error {
	conn, resp, err := d.DialContext(ctx, wsURL, nil)
	if err != nil {
		if resp != nil {
			return fmt.Errorf("%w (HTTP %d)", err, resp.StatusCode)
		}
		return err
	}
	s.conn = conn
	if err := conn.WriteJSON(map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + token}}); err != nil {
		return err
	}
	var ack struct{ Type string }
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if err := conn.ReadJSON(&ack); err != nil {
		return err
	}
	conn.SetReadDeadline(time.Time{})
	if ack.Type != "connection_ack" {
		return fmt.Errorf("expected connection_ack, got %q", ack.Type)
	}
	return conn.WriteJSON(map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{"query": streamWorkOrders}})
}

type streamMessage struct {
	Type    string `json:"type"`
	Payload struct {
		Data struct {
			StreamWorkOrders struct {
				Documents []struct {
					ID        string    `json:"id"`
					UpdatedAt time.Time `json:"updatedAt"`
				} `json:"documents"`
			} `json:"streamWorkOrders"`
		} `json:"data"`
		Errors json.RawMessage `json:"errors"`
	} `json:"payload"`
}

func (s *streamSub) read() {
	for {
		var m streamMessage
		if err := s.conn.ReadJSON(&m); err != nil {
			s.fail(err)
			return
		}
		switch m.Type {
		case "next":
			now := time.Now()
			s.mu.Lock()
			for _, d := range m.Payload.Data.StreamWorkOrders.Documents {
				s.seen[d.ID] = true
				s.latency = append(s.latency, now.Sub(d.UpdatedAt))
			}
			s.mu.Unlock()
			if len(m.Payload.Errors) > 0 {
				s.fail(fmt.Errorf("stream error: %s", m.Payload.Errors))
			}
		case "ping":
			_ = s.conn.WriteJSON(map[string]string{"type": "pong"})
		case "complete", "error":
			s.fail(fmt.Errorf("stream ended by the server: %s", m.Type))
			return
		}
	}
}

func (s *streamSub) fail(err error) {
	if s.closing.Load() {
		return // our own close at the end of the run
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

func waitDelivered(ctx context.Context, subs []*streamSub, want func(*streamSub) []string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		missing := 0
		for _, s := range subs {
			s.mu.Lock()
			for _, id := range want(s) {
				if !s.seen[id] {
					missing++
				}
			}
			if s.err != nil {
				err := s.err
				s.mu.Unlock()
				return err
			}
			s.mu.Unlock()
		}
		if missing == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d deliveries still missing after %s", missing, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func pushWorkOrder(ctx context.Context, c *Client, token, id string) error {
	tc := *c
	tc.Token = token
	rows := []map[string]any{{"newDocumentState": map[string]any{
		"id": id, "siteId": "bench-site", "title": "Stream bench " + id, "status": "OPEN", "priority": 1, "deleted": false,
	}}}
	return tc.Do(ctx, pushWorkOrders, map[string]any{"rows": rows}, nil)
}

func websocketURL(httpURL string) (string, error) {
	u, err := url.Parse(httpURL)
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	}
	return u.String(), nil
}

// residentMemory reads a process's resident set size from /proc (Linux).
func residentMemory(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}
