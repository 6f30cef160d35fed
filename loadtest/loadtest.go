// Package loadtest drives a running Tidemark over real HTTP and measures
// it: initial-sync pull throughput and push throughput, with latency
// percentiles. `tidemark bench sync` wires it to flags; docs/benchmarks.md
// records its figures.
package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Client posts GraphQL operations to one endpoint with one token.
type Client struct {
	URL   string
	Token string
	HTTP  *http.Client
}

type gqlResponse struct {
	Data   json.RawMessage `json:"data"`
	Errors []struct {
		Message string `json:"message"`
	} `json:"errors"`
}

// Do posts one operation and decodes its data into out.
func (c *Client) Do(ctx context.Context, query string, vars map[string]any, out any) error {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	return c.Post(ctx, body, out)
}

// Post posts an encoded request body ({"query": ..., "variables": ...})
// and decodes its data into out.
func (c *Client) Post(ctx context.Context, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var r gqlResponse
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, raw)
	}
	if len(r.Errors) > 0 {
		return fmt.Errorf("graphql: %s", r.Errors[0].Message)
	}
	if out != nil {
		return json.Unmarshal(r.Data, out)
	}
	return nil
}

// Latencies summarizes request durations.
type Latencies struct {
	Count         int
	P50, P95, P99 time.Duration
	Max           time.Duration
}

func summarize(d []time.Duration) Latencies {
	if len(d) == 0 {
		return Latencies{}
	}
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }
	return Latencies{Count: len(d), P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: d[len(d)-1]}
}

func (l Latencies) String() string {
	return fmt.Sprintf("p50 %s  p95 %s  p99 %s  max %s  (%d requests)",
		l.P50.Round(time.Microsecond*100), l.P95.Round(time.Microsecond*100), l.P99.Round(time.Microsecond*100), l.Max.Round(time.Microsecond*100), l.Count)
}

// SyncConfig sets the sizes of a sync benchmark.
type SyncConfig struct {
	Documents   int // work orders pushed, then pulled back (default 100k)
	PushBatch   int // rows per push (default 100)
	PushClients int // concurrent pushers (default 4)
	PullLimit   int // documents per pull page (default 1000)
	RunID       string
	// PushOnly skips the pull: the report has the push alone.
	PushOnly bool
	// EncodeDuring builds each push's request body as it is sent, as the
	// tool did before; by default every body is encoded before the clock
	// starts, so the pushers spend their time waiting on the server (as
	// pgbench's clients do), not encoding JSON on the same cores.
	EncodeDuring bool
}

// SyncReport is what a sync benchmark measured.
type SyncReport struct {
	PushRows     int
	PushDuration time.Duration
	Push         Latencies
	PullDocs     int
	PullDuration time.Duration
	Pull         Latencies
}

func (r SyncReport) String() string {
	if r.PullDocs == 0 && r.PullDuration == 0 {
		return fmt.Sprintf("push: %d rows in %s = %.0f rows/s; %s",
			r.PushRows, r.PushDuration.Round(time.Millisecond), float64(r.PushRows)/r.PushDuration.Seconds(), r.Push)
	}
	return fmt.Sprintf("push: %d rows in %s = %.0f rows/s; %s\npull: %d docs in %s = %.0f docs/s; %s",
		r.PushRows, r.PushDuration.Round(time.Millisecond), float64(r.PushRows)/r.PushDuration.Seconds(), r.Push,
		r.PullDocs, r.PullDuration.Round(time.Millisecond), float64(r.PullDocs)/r.PullDuration.Seconds(), r.Pull)
}

const pushWorkOrders = `mutation($rows: [WorkOrderPushRow!]!) { pushWorkOrders(rows: $rows) { id } }`

const pullWorkOrders = `query($cp: CheckpointInput, $limit: Int!) {
  pullWorkOrders(checkpoint: $cp, limit: $limit) {
    documents { id siteId title description status priority assigneeId dueAt updatedAt deleted }
    checkpoint { cursor }
  }
}`

// Sync pushes cfg.Documents new work orders in batches from concurrent
// clients, then pulls the whole collection from the beginning, as a new
// device's initial sync does. Use a tenant with no other work orders, so
// the pull counts exactly what was pushed.
func Sync(ctx context.Context, c *Client, cfg SyncConfig) (SyncReport, error) {
	if cfg.Documents == 0 {
		cfg.Documents = 100_000
	}
	if cfg.PushBatch == 0 {
		cfg.PushBatch = 100
	}
	if cfg.PushClients == 0 {
		cfg.PushClients = 4
	}
	if cfg.PullLimit == 0 {
		cfg.PullLimit = 1000
	}
	if cfg.RunID == "" {
		cfg.RunID = fmt.Sprint(time.Now().UnixNano())
	}
	var rep SyncReport

	batchRows := func(start int) []map[string]any {
		n := min(cfg.PushBatch, cfg.Documents-start)
		rows := make([]map[string]any, n)
		for i := range rows {
			rows[i] = map[string]any{"newDocumentState": map[string]any{
				"id": fmt.Sprintf("bench-%s-%d", cfg.RunID, start+i), "siteId": "bench-site",
				"title": fmt.Sprintf("Work order %d", start+i), "description": "Replace the filter and check the pressure.",
				"status": "OPEN", "priority": (start + i) % 5, "deleted": false,
			}}
		}
		return rows
	}
	body := func(start int) []byte {
		b, _ := json.Marshal(map[string]any{"query": pushWorkOrders, "variables": map[string]any{"rows": batchRows(start)}})
		return b
	}
	var bodies map[int][]byte
	if !cfg.EncodeDuring {
		bodies = make(map[int][]byte, cfg.Documents/cfg.PushBatch+1)
		for start := 0; start < cfg.Documents; start += cfg.PushBatch {
			bodies[start] = body(start)
		}
	}

	batches := make(chan int)
	go func() {
		defer close(batches)
		for start := 0; start < cfg.Documents; start += cfg.PushBatch {
			select {
			case batches <- start:
			case <-ctx.Done():
				return
			}
		}
	}()
	var mu sync.Mutex
	var pushLat []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	began := time.Now()
	for w := 0; w < cfg.PushClients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for start := range batches {
				b, ok := bodies[start]
				if !ok {
					b = body(start)
				}
				t0 := time.Now()
				var out struct {
					PushWorkOrders []struct{ ID string } `json:"pushWorkOrders"`
				}
				err := c.Post(ctx, b, &out)
				d := time.Since(t0)
				mu.Lock()
				pushLat = append(pushLat, d)
				if err == nil && len(out.PushWorkOrders) != 0 {
					err = fmt.Errorf("push of new documents returned %d conflicts", len(out.PushWorkOrders))
				}
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	rep.PushDuration = time.Since(began)
	if firstErr != nil {
		return rep, fmt.Errorf("push: %w", firstErr)
	}
	rep.PushRows = cfg.Documents
	rep.Push = summarize(pushLat)
	if cfg.PushOnly {
		return rep, nil
	}

	var pullLat []time.Duration
	var cp map[string]any
	began = time.Now()
	for {
		var out struct {
			PullWorkOrders struct {
				Documents  []json.RawMessage `json:"documents"`
				Checkpoint struct{ Cursor string }
			} `json:"pullWorkOrders"`
		}
		t0 := time.Now()
		vars := map[string]any{"cp": cp, "limit": cfg.PullLimit}
		if err := c.Do(ctx, pullWorkOrders, vars, &out); err != nil {
			return rep, fmt.Errorf("pull: %w", err)
		}
		pullLat = append(pullLat, time.Since(t0))
		rep.PullDocs += len(out.PullWorkOrders.Documents)
		cp = map[string]any{"cursor": out.PullWorkOrders.Checkpoint.Cursor}
		if len(out.PullWorkOrders.Documents) < cfg.PullLimit {
			break
		}
	}
	rep.PullDuration = time.Since(began)
	rep.Pull = summarize(pullLat)
	if rep.PullDocs != cfg.Documents {
		return rep, fmt.Errorf("pulled %d documents; pushed %d (use a tenant with no other work orders)", rep.PullDocs, cfg.Documents)
	}
	return rep, nil
}
