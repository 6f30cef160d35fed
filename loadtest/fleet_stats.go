package loadtest

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// The verbs whose latencies a fleet run records: one pull request, one
// push request, a websocket connect (dial to connection_ack), a device's
// whole sync on going online (connect, pulls until caught up, push), stream
// lag (a streamed document's updatedAt to its arrival; the server and the
// fleet must share a clock: run both on one machine), and late: how long a
// due device action waited for a worker, which says whether this process
// kept up with its schedule (if not, add workers or processes).
var fleetVerbs = []string{"pull", "push", "connect", "sync", "lag", "late"}

// histogram counts durations in buckets 5% wide from 50µs, without
// keeping samples: a run of 10k devices makes millions of requests.
type histogram struct {
	buckets [histBuckets]atomic.Int64
	max     atomic.Int64
}

const (
	histBuckets = 400
	histMin     = 50 * time.Microsecond
	histRatio   = 1.05
)

func bucketOf(d time.Duration) int {
	if d <= histMin {
		return 0
	}
	b := int(math.Log(float64(d)/float64(histMin))/math.Log(histRatio)) + 1
	return min(b, histBuckets-1)
}

// upper is the largest duration bucket b holds.
func upper(b int) time.Duration {
	return time.Duration(float64(histMin) * math.Pow(histRatio, float64(b)))
}

func (h *histogram) observe(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.buckets[bucketOf(d)].Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// LatencySummary is a verb's latencies; P50 and P99 are within 5%.
type LatencySummary struct {
	Count         int64
	P50, P99, Max time.Duration
}

func (l LatencySummary) String() string {
	if l.Count == 0 {
		return "-"
	}
	return fmt.Sprintf("%s/%s", roundLatency(l.P50), roundLatency(l.P99))
}

func roundLatency(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(time.Millisecond)
	default:
		return d.Round(10 * time.Microsecond)
	}
}

// summary reads h; with reset, it also empties it (a progress window).
func (h *histogram) summary(reset ...bool) LatencySummary {
	var counts [histBuckets]int64
	var n int64
	for i := range h.buckets {
		if len(reset) > 0 {
			counts[i] = h.buckets[i].Swap(0)
		} else {
			counts[i] = h.buckets[i].Load()
		}
		n += counts[i]
	}
	s := LatencySummary{Count: n, Max: time.Duration(h.max.Load())}
	if len(reset) > 0 {
		h.max.Store(0)
	}
	if n == 0 {
		return s
	}
	at := func(q float64) time.Duration {
		want := int64(math.Ceil(q * float64(n)))
		var seen int64
		for i, c := range counts {
			if seen += c; seen >= want {
				return min(upper(i), s.Max)
			}
		}
		return s.Max
	}
	s.P50, s.P99 = at(0.50), at(0.99)
	return s
}

// fleetStats are a run's counters, shared by the workers and stream readers.
type fleetStats struct {
	online, streaming atomic.Int64

	edits, pushes, pushRows, pulls, pulledDocs    atomic.Int64
	streamEvents, streamDocs, skipped             atomic.Int64
	conflicts, merges, removed, errors, reconnect atomic.Int64
	reassigned, removalsIn                        atomic.Int64

	total, window map[string]*histogram

	mu       sync.Mutex
	firstErr string
	codes    map[string]int
	last     FleetCounts
}

func newFleetStats() *fleetStats {
	s := &fleetStats{total: map[string]*histogram{}, window: map[string]*histogram{}, codes: map[string]int{}}
	for _, v := range fleetVerbs {
		s.total[v], s.window[v] = &histogram{}, &histogram{}
	}
	return s
}

func (s *fleetStats) observe(verb string, d time.Duration) {
	s.total[verb].observe(d)
	s.window[verb].observe(d)
}

func (s *fleetStats) fail(what string, err error) {
	s.errors.Add(1)
	s.mu.Lock()
	if s.firstErr == "" {
		s.firstErr = what + ": " + err.Error()
	}
	s.mu.Unlock()
}

// dropped counts a stream the server (or the network) ended, by close code.
func (s *fleetStats) dropped(err error) {
	key := "no close frame"
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		key = strconv.Itoa(ce.Code)
	}
	s.mu.Lock()
	s.codes[key]++
	s.mu.Unlock()
}

func (s *fleetStats) closeCodes() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.codes))
	for k, v := range s.codes {
		out[k] = v
	}
	return out
}

func (s *fleetStats) firstError() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.firstErr
}

// FleetCounts are the totals of a run.
type FleetCounts struct {
	Edits        int64 // local edits made
	Reassigned   int64 // of which reassignments of a work order to a technician
	Pushes       int64 // push requests that succeeded
	PushRows     int64
	Pulls        int64 // pull requests that succeeded
	PulledDocs   int64
	StreamEvents int64
	StreamDocs   int64
	Skipped      int64 // pulled or streamed documents not applied: the device had an unpushed edit of them (RxDB does the same)
	Conflicts    int64 // pushed rows the server refused, returning its document
	Merges       int64 // pushed rows the server merged with other edits
	Removed      int64 // pushed rows outside the caller's set, returned as removals
	Dropped      int64 // documents a device held and dropped when a pull or stream brought their removal (or delete)
	Errors       int64
	Reconnects   int64 // streams opened again after a drop, or syncs retried after a failure
}

func (s *fleetStats) counts() FleetCounts {
	return FleetCounts{Edits: s.edits.Load(), Reassigned: s.reassigned.Load(), Pushes: s.pushes.Load(), PushRows: s.pushRows.Load(), Pulls: s.pulls.Load(),
		PulledDocs: s.pulledDocs.Load(), StreamEvents: s.streamEvents.Load(), StreamDocs: s.streamDocs.Load(),
		Skipped: s.skipped.Load(), Conflicts: s.conflicts.Load(), Merges: s.merges.Load(), Removed: s.removed.Load(), Dropped: s.removalsIn.Load(),
		Errors: s.errors.Load(), Reconnects: s.reconnect.Load()}
}

// line is one progress line: devices online, requests and stream events
// per second, p50/p99 of each verb over the last interval, and totals.
func (s *fleetStats) line(elapsed, interval time.Duration, online, streaming, devices int) string {
	c := s.counts()
	s.mu.Lock()
	last := s.last
	s.last = c
	s.mu.Unlock()
	ops := float64(c.Pulls+c.Pushes+c.StreamEvents-last.Pulls-last.Pushes-last.StreamEvents) / interval.Seconds()
	var b strings.Builder
	fmt.Fprintf(&b, "%6.1fs online %d/%d (%d streaming)  ops/s %.0f", elapsed.Seconds(), online, devices, streaming, ops)
	for _, v := range fleetVerbs {
		fmt.Fprintf(&b, "  %s %s", v, s.window[v].summary(true))
	}
	fmt.Fprintf(&b, "  edits %d  conflicts %d  merges %d  errors %d", c.Edits, c.Conflicts, c.Merges, c.Errors)
	return b.String()
}

// FleetReport is what a fleet run did and whether it converged.
type FleetReport struct {
	Config           FleetConfig
	Elapsed          time.Duration // the schedule and the convergence check
	Devices          int
	StreamingDevices int // devices that stream when online; the others poll
	Counts           FleetCounts
	Latency          map[string]LatencySummary // by verb: pull, push, connect, sync, lag, late
	CloseCodes       map[string]int            // streams ended by the server, by close code
	FirstError       string
	Convergence      ConvergenceReport
}

// ConvergenceReport is the check at the end of a run.
type ConvergenceReport struct {
	Devices       int
	Users         int
	Tenants       int
	Matched       int // devices whose store equals their user's server view
	Mismatched    int // devices whose store differs from it
	SetMismatched int // users whose server view differs from what the sync rules give them from the tenant's whole view
	// TenantsMismatched counts the tenants whose whole view does not hold
	// exactly the documents the run created.
	TenantsMismatched int
	Unsynced          int      // devices whose last push or pull failed, or whose user's view could not be read
	Retries           int      // devices pulled again within the settle time before they matched
	Problems          []string // the first few differences, in words
	Duration          time.Duration
}

// Converged says whether every check passed.
func (v ConvergenceReport) Converged() bool {
	return v.Mismatched+v.SetMismatched+v.TenantsMismatched+v.Unsynced == 0
}

func (r FleetReport) String() string {
	var b strings.Builder
	c, k := r.Config, r.Counts
	roles := make([]string, 0, len(c.Roles))
	for role, w := range c.Roles {
		roles = append(roles, fmt.Sprintf("%s=%d", role, w))
	}
	sort.Strings(roles)
	fmt.Fprintf(&b, "fleet run %s: %d devices (ids %d-%d of %d) over %d tenant(s), %d per user, roles %s; %d stream when online\n",
		c.RunID, r.Devices, c.DeviceOffset, c.DeviceOffset+r.Devices-1, c.total(), c.Tenants, c.DevicesPerUser, strings.Join(roles, ","), r.StreamingDevices)
	fmt.Fprintf(&b, "schedule %s: online %s / offline %s on average, %.3f edits per device per second, overlap %.2f, reassign %.2f\n",
		c.Duration, c.OnlineMean, c.OfflineMean, c.EditRate, c.Overlap, c.Reassign)
	fmt.Fprintf(&b, "edits %d (%d reassignments); pushes %d (%d rows); pulls %d (%d documents); stream events %d (%d documents); skipped while pending %d\n",
		k.Edits, k.Reassigned, k.Pushes, k.PushRows, k.Pulls, k.PulledDocs, k.StreamEvents, k.StreamDocs, k.Skipped)
	fmt.Fprintf(&b, "conflicts %d, merges %d, pushes returned as removals %d; documents dropped on a removal %d; errors %d; reconnects %d",
		k.Conflicts, k.Merges, k.Removed, k.Dropped, k.Errors, k.Reconnects)
	if len(r.CloseCodes) > 0 {
		codes := make([]string, 0, len(r.CloseCodes))
		for code, n := range r.CloseCodes {
			codes = append(codes, fmt.Sprintf("%s×%d", code, n))
		}
		sort.Strings(codes)
		fmt.Fprintf(&b, "; streams closed by the server: %s", strings.Join(codes, ", "))
	}
	b.WriteByte('\n')
	if r.FirstError != "" {
		fmt.Fprintf(&b, "first error: %s\n", r.FirstError)
	}
	for _, v := range fleetVerbs {
		l := r.Latency[v]
		fmt.Fprintf(&b, "%-8s p50 %-9s p99 %-9s max %-9s (%d)\n", v, roundLatency(l.P50), roundLatency(l.P99), roundLatency(l.Max), l.Count)
	}
	v := r.Convergence
	verdict := "CONVERGED"
	if !v.Converged() {
		verdict = "NOT CONVERGED"
	}
	fmt.Fprintf(&b, "convergence (%s): %s: %d of %d devices hold exactly their user's server view (%d users), %d differ, %d could not sync; %d users' views differ from their sets, %d of %d tenants from the model; %d devices matched after pulling again",
		v.Duration.Round(time.Millisecond), verdict, v.Matched, v.Devices, v.Users, v.Mismatched, v.Unsynced, v.SetMismatched, v.TenantsMismatched, v.Tenants, v.Retries)
	for _, p := range v.Problems {
		fmt.Fprintf(&b, "\n  %s", p)
	}
	return b.String()
}
