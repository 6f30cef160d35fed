package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// SoakConfig sets the load and the sampling of a soak run.
type SoakConfig struct {
	Duration    time.Duration // how long the load runs (default 30m)
	Pushers     int           // clients pushing batches of edits (default 2)
	PushEvery   time.Duration // pause between one pusher's pushes (default 200ms)
	PushBatch   int           // rows per push (default 10)
	Documents   int           // work orders each pusher cycles through (default 500)
	Pullers     int           // clients pulling from their checkpoint (default 2)
	PullEvery   time.Duration // pause between one puller's pulls (default 500ms)
	Streams     int           // websocket subscriptions held open (default 10)
	Readers     int           // clients paging the read API (default 1)
	ReadEvery   time.Duration // pause between one reader's pages (default 500ms)
	SampleEvery time.Duration // sampling interval (default 10s)

	// ServerPID, if set, is the server's process: its resident memory and
	// open files are read from /proc (Linux, same machine).
	ServerPID int
	// DebugURL, if set, is the server's debug listener (TIDEMARK_DEBUG_ADDR,
	// e.g. http://127.0.0.1:6060): Go heap and goroutines are read from its
	// /debug/pprof profiles.
	DebugURL string
	// Samples, if set, gets each sample as a line as soon as it is taken.
	Samples io.Writer
	RunID   string
}

func (cfg SoakConfig) withDefaults() SoakConfig {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defDur(&cfg.Duration, 30*time.Minute)
	def(&cfg.Pushers, 2)
	defDur(&cfg.PushEvery, 200*time.Millisecond)
	def(&cfg.PushBatch, 10)
	def(&cfg.Documents, 500)
	def(&cfg.Pullers, 2)
	defDur(&cfg.PullEvery, 500*time.Millisecond)
	def(&cfg.Streams, 10)
	def(&cfg.Readers, 1)
	defDur(&cfg.ReadEvery, 500*time.Millisecond)
	defDur(&cfg.SampleEvery, 10*time.Second)
	if cfg.RunID == "" {
		cfg.RunID = strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	return cfg
}

// SoakSample is one reading of the server's resources. A value that could
// not be read is -1.
type SoakSample struct {
	At         time.Duration // since the load started
	RSS        int64         // resident memory, bytes
	HeapAlloc  int64         // live Go heap after a forced GC, bytes
	Goroutines int64
	OpenFiles  int64
	Pushes     int64 // counters so far
	Pulls      int64
	Streamed   int64 // documents received over the streams
	Reads      int64
	Errors     int64
	Stopped    bool // taken after the load stopped; left out of the trends
}

func (s SoakSample) String() string {
	return fmt.Sprintf("%7.0fs  rss %7.1f MiB  heap %6.1f MiB  goroutines %5d  files %4d  pushes %7d  pulls %6d  streamed %8d  reads %6d  errors %d",
		s.At.Seconds(), mib(s.RSS), mib(s.HeapAlloc), s.Goroutines, s.OpenFiles, s.Pushes, s.Pulls, s.Streamed, s.Reads, s.Errors) +
		map[bool]string{true: "  (load stopped)"}[s.Stopped]
}

func mib(b int64) float64 {
	if b < 0 {
		return -1
	}
	return float64(b) / (1 << 20)
}

// SoakReport is what a soak run measured.
type SoakReport struct {
	Config     SoakConfig
	Samples    []SoakSample
	FirstError string
}

// Trend summarizes one sampled quantity.
type Trend struct {
	Start, End, Min, Max int64
	// PerHour is the least-squares slope over the samples after the first
	// tenth of the run (warm-up: caches, pools and buffers fill), per hour.
	PerHour float64
}

func trend(all []SoakSample, get func(SoakSample) int64) Trend {
	samples := make([]SoakSample, 0, len(all))
	for _, s := range all {
		if !s.Stopped {
			samples = append(samples, s)
		}
	}
	if len(samples) == 0 {
		return Trend{}
	}
	t := Trend{Start: get(samples[0]), End: get(samples[len(samples)-1]), Min: get(samples[0]), Max: get(samples[0])}
	for _, s := range samples {
		t.Min, t.Max = min(t.Min, get(s)), max(t.Max, get(s))
	}
	warm := samples[len(samples)/10:]
	if len(warm) < 2 {
		return t
	}
	var sx, sy, sxx, sxy float64
	for _, s := range warm {
		x, y := s.At.Hours(), float64(get(s))
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	n := float64(len(warm))
	if d := n*sxx - sx*sx; d != 0 {
		t.PerHour = (n*sxy - sx*sy) / d
	}
	return t
}

func (r SoakReport) String() string {
	var b strings.Builder
	c := r.Config
	fmt.Fprintf(&b, "soak: %s; %d pushers (%d rows every %s over %d documents each), %d pullers (every %s), %d streams, %d readers (every %s); a sample every %s\n",
		c.Duration, c.Pushers, c.PushBatch, c.PushEvery, c.Documents, c.Pullers, c.PullEvery, c.Streams, c.Readers, c.ReadEvery, c.SampleEvery)
	if len(r.Samples) == 0 {
		b.WriteString("no samples\n")
		return b.String()
	}
	last := r.Samples[len(r.Samples)-1]
	fmt.Fprintf(&b, "load: %d pushes, %d pulls, %d documents streamed, %d reads, %d errors in %s\n",
		last.Pushes, last.Pulls, last.Streamed, last.Reads, last.Errors, last.At.Round(time.Second))
	if r.FirstError != "" {
		fmt.Fprintf(&b, "first error: %s\n", r.FirstError)
	}
	row := func(name string, scale float64, unit string, get func(SoakSample) int64) {
		t := trend(r.Samples, get)
		if t.Min < 0 {
			fmt.Fprintf(&b, "%-11s not read\n", name)
			return
		}
		fmt.Fprintf(&b, "%-11s start %8.1f  end %8.1f  min %8.1f  max %8.1f  slope after warm-up %+8.1f %s/h\n",
			name, float64(t.Start)/scale, float64(t.End)/scale, float64(t.Min)/scale, float64(t.Max)/scale, t.PerHour/scale, unit)
	}
	row("RSS MiB", 1<<20, "MiB", func(s SoakSample) int64 { return s.RSS })
	row("heap MiB", 1<<20, "MiB", func(s SoakSample) int64 { return s.HeapAlloc })
	row("goroutines", 1, "", func(s SoakSample) int64 { return s.Goroutines })
	row("open files", 1, "", func(s SoakSample) int64 { return s.OpenFiles })
	b.WriteString("samples:\n")
	for _, s := range r.Samples {
		b.WriteString(s.String())
		b.WriteByte('\n')
	}
	return b.String()
}

type soakRun struct {
	cfg    SoakConfig
	c      *Client
	tenant string
	token  string

	pushes, pulls, streamed, reads, errors atomic.Int64
	firstErr                               atomic.Value
}

func (r *soakRun) fail(what string, err error) {
	r.errors.Add(1)
	r.firstErr.CompareAndSwap(nil, what+": "+err.Error())
}

// Soak runs a mixed load against one tenant for cfg.Duration: pushers edit
// their own work orders (new ones first, then edits with the state they
// assume), pullers follow the changes from their checkpoint and start over
// now and then as a new device would, websocket streams stay open, and
// readers page the read API. Every cfg.SampleEvery it samples the server's
// memory, goroutines and open files. Errors are counted, not fatal: a soak
// measures what a long run does to the server.
func Soak(ctx context.Context, c *Client, token func(tenant string) string, cfg SoakConfig) (SoakReport, error) {
	cfg = cfg.withDefaults()
	r := &soakRun{cfg: cfg, c: c, tenant: "soak-" + cfg.RunID}
	r.token = token(r.tenant)
	rep := SoakReport{Config: cfg}
	tc := *c
	tc.Token = r.token
	r.c = &tc
	if err := r.c.Do(ctx, `mutation($rows: [SitePushRow!]!) { pushSites(rows: $rows) { id } }`, map[string]any{"rows": []map[string]any{
		{"newDocumentState": map[string]any{"id": "soak-site", "name": "Soak site", "address": "1 Soak Road", "deleted": false}},
	}}, nil); err != nil {
		return rep, fmt.Errorf("seeding the site: %w", err)
	}

	// Samples are taken with the caller's context, not the load's: a
	// sample due as the load's time runs out must still be read.
	sampleCtx := ctx
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	began := time.Now()
	var wg sync.WaitGroup
	spawn := func(n int, f func(ctx context.Context, i int)) {
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() { defer wg.Done(); f(ctx, i) }()
		}
	}
	spawn(cfg.Pushers, r.pusher)
	spawn(cfg.Pullers, r.puller)
	spawn(cfg.Streams, r.stream)
	spawn(cfg.Readers, r.reader)

	sample := func() {
		s := r.sample(sampleCtx, time.Since(began))
		rep.Samples = append(rep.Samples, s)
		if cfg.Samples != nil {
			fmt.Fprintln(cfg.Samples, s)
		}
	}
	sample()
	tick := time.NewTicker(cfg.SampleEvery)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
			sample()
		}
	}
	tick.Stop()
	wg.Wait()
	// The last sample, with the load stopped, from a fresh context.
	last := r.sample(context.WithoutCancel(ctx), time.Since(began))
	last.Stopped = true
	rep.Samples = append(rep.Samples, last)
	if cfg.Samples != nil {
		fmt.Fprintln(cfg.Samples, last)
	}
	if e, _ := r.firstErr.Load().(string); e != "" {
		rep.FirstError = e
	}
	return rep, nil
}

func pace(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (r *soakRun) pusher(ctx context.Context, i int) {
	cfg := r.cfg
	states := make([]map[string]any, cfg.Documents)
	rev := 0
	for next := 0; ctx.Err() == nil; {
		rows := make([]map[string]any, 0, cfg.PushBatch)
		for range cfg.PushBatch {
			d := next % cfg.Documents
			next++
			rev++
			doc := map[string]any{
				"id": fmt.Sprintf("soak-%d-%d", i, d), "siteId": "soak-site", "title": fmt.Sprintf("soak %d/%d rev %d", i, d, rev),
				"description": strings.Repeat("x", rand.IntN(200)), "status": "OPEN", "priority": rev % 5, "deleted": false,
			}
			row := map[string]any{"newDocumentState": doc}
			if states[d] != nil {
				row["assumedMasterState"] = states[d]
			}
			rows = append(rows, row)
			states[d] = doc
		}
		err := r.c.Do(ctx, pushWorkOrders, map[string]any{"rows": rows}, nil)
		switch {
		case err == nil:
			r.pushes.Add(1)
		case ctx.Err() == nil:
			r.fail("push", err)
		}
		if !pace(ctx, cfg.PushEvery) {
			return
		}
	}
}

func (r *soakRun) puller(ctx context.Context, _ int) {
	var cp any
	for n := 1; ctx.Err() == nil; n++ {
		var out struct {
			PullWorkOrders struct {
				Documents  []json.RawMessage
				Checkpoint *struct{ Cursor string }
			}
		}
		err := r.c.Do(ctx, pullWorkOrders, map[string]any{"cp": cp, "limit": 200}, &out)
		switch {
		case err == nil:
			r.pulls.Add(1)
			if c := out.PullWorkOrders.Checkpoint; c != nil {
				cp = map[string]any{"cursor": c.Cursor}
			}
		case ctx.Err() == nil:
			r.fail("pull", err)
		}
		if n%200 == 0 {
			cp = nil // a new device: the whole tenant again
		}
		if !pace(ctx, r.cfg.PullEvery) {
			return
		}
	}
}

func (r *soakRun) reader(ctx context.Context, _ int) {
	var after any
	for ctx.Err() == nil {
		var out struct {
			WorkOrders struct {
				PageInfo struct {
					HasNextPage bool
					EndCursor   *string
				}
			}
		}
		err := r.c.Do(ctx, ReadQuery, map[string]any{"after": after}, &out)
		after = nil
		switch {
		case err == nil:
			r.reads.Add(1)
			if p := out.WorkOrders.PageInfo; p.HasNextPage && p.EndCursor != nil {
				after = *p.EndCursor
			}
		case ctx.Err() == nil:
			r.fail("read", err)
		}
		if !pace(ctx, r.cfg.ReadEvery) {
			return
		}
	}
}

// stream holds one subscription open, reconnecting if the server closes
// it (a counted error), until ctx ends.
func (r *soakRun) stream(ctx context.Context, _ int) {
	wsURL, err := websocketURL(r.c.URL)
	if err != nil {
		r.fail("stream", err)
		return
	}
	d := &websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 30 * time.Second}
	for ctx.Err() == nil {
		s := &streamSub{seen: map[string]bool{}}
		if err := s.open(ctx, d, wsURL, r.token); err != nil {
			if ctx.Err() == nil {
				r.fail("stream connect", err)
				pace(ctx, time.Second)
			}
			continue
		}
		stop := context.AfterFunc(ctx, func() { s.conn.Close() })
		for {
			var m streamMessage
			if err := s.conn.ReadJSON(&m); err != nil {
				if ctx.Err() == nil {
					r.fail("stream", err)
				}
				break
			}
			switch m.Type {
			case "next":
				r.streamed.Add(int64(len(m.Payload.Data.StreamWorkOrders.Documents)))
			case "ping":
				_ = s.conn.WriteJSON(map[string]string{"type": "pong"})
			}
		}
		stop()
		s.conn.Close()
	}
}

func (r *soakRun) sample(ctx context.Context, at time.Duration) SoakSample {
	s := SoakSample{At: at, RSS: -1, HeapAlloc: -1, Goroutines: -1, OpenFiles: -1,
		Pushes: r.pushes.Load(), Pulls: r.pulls.Load(), Streamed: r.streamed.Load(), Reads: r.reads.Load(), Errors: r.errors.Load()}
	if pid := r.cfg.ServerPID; pid > 0 {
		if rss := residentMemory(pid); rss > 0 {
			s.RSS = rss
		}
		if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
			s.OpenFiles = int64(len(fds))
		}
	}
	if u := r.cfg.DebugURL; u != "" {
		u = strings.TrimRight(u, "/")
		// gc=1: the heap after a collection, so garbage does not read as growth.
		s.HeapAlloc = profileValue(ctx, u+"/debug/pprof/heap?gc=1&debug=1", "# HeapAlloc = ")
		s.Goroutines = profileValue(ctx, u+"/debug/pprof/goroutine?debug=1", "goroutine profile: total ")
	}
	return s
}

// profileValue fetches a text profile and returns the number after prefix
// on the first line that starts with it, or -1.
func profileValue(ctx context.Context, url, prefix string) int64 {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return -1
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}
