package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// ReadConfig sets the sizes of a read-API benchmark.
type ReadConfig struct {
	WorkOrders int           // seeded work orders (default 10,000), over WorkOrders/50 sites
	Clients    int           // concurrent clients (default 16)
	Duration   time.Duration // how long they query (default 20s)
	RunID      string
	// WithoutNotes reads ReadQueryWithoutNotes (issue 12's nested read,
	// the one PostGraphile is compared on) instead of ReadQuery.
	WithoutNotes bool
}

// ReadReport is what a read benchmark measured.
type ReadReport struct {
	Requests int
	Duration time.Duration
	Latency  Latencies
}

func (r ReadReport) String() string {
	return fmt.Sprintf("%d requests in %s = %.0f requests/s; %s",
		r.Requests, r.Duration.Round(time.Millisecond), float64(r.Requests)/r.Duration.Seconds(), r.Latency)
}

// ReadQuery is the benchmarked query: a page of work orders with their
// site, checklist and notes, walking the pages with its after cursor.
const ReadQuery = `query ($after: String) {
  workOrders(first: 100, after: $after) {
    edges { node { title site { name } checklist { label done } notes { body } } }
    pageInfo { hasNextPage endCursor }
  }
}`

// ReadQueryWithoutNotes is ReadQuery without the notes: a page of work
// orders with their site and checklist, as issue 12 compares it.
const ReadQueryWithoutNotes = `query ($after: String) {
  workOrders(first: 100, after: $after) {
    edges { node { title site { name } checklist { label done } } }
    pageInfo { hasNextPage endCursor }
  }
}`

// SeedRead fills the client's tenant with cfg.WorkOrders work orders, each
// with three checklist items and two notes, over one site per 50 orders.
func SeedRead(ctx context.Context, c *Client, cfg ReadConfig) error {
	cfg = cfg.withDefaults()
	sites := max(1, cfg.WorkOrders/50)
	push := func(mutation, typ string, rows []map[string]any) error {
		q := fmt.Sprintf(`mutation($rows: [%sPushRow!]!) { %s(rows: $rows) { id } }`, typ, mutation)
		return c.Do(ctx, q, map[string]any{"rows": rows}, nil)
	}
	var rows []map[string]any
	flush := func(mutation, typ string) error {
		if len(rows) == 0 {
			return nil
		}
		err := push(mutation, typ, rows)
		rows = rows[:0]
		return err
	}
	add := func(mutation, typ string, doc map[string]any) error {
		doc["deleted"] = false
		rows = append(rows, map[string]any{"newDocumentState": doc})
		if len(rows) == 500 {
			return flush(mutation, typ)
		}
		return nil
	}
	for s := 0; s < sites; s++ {
		if err := add("pushSites", "Site", map[string]any{"id": fmt.Sprintf("site-%d", s), "name": fmt.Sprintf("Site %d", s), "address": "1 Harbour Road"}); err != nil {
			return err
		}
	}
	if err := flush("pushSites", "Site"); err != nil {
		return err
	}
	for w := 0; w < cfg.WorkOrders; w++ {
		if err := add("pushWorkOrders", "WorkOrder", map[string]any{"id": fmt.Sprintf("wo-%d", w), "siteId": fmt.Sprintf("site-%d", w%sites),
			"title": fmt.Sprintf("Work order %d", w), "status": "OPEN", "priority": w % 5}); err != nil {
			return err
		}
	}
	if err := flush("pushWorkOrders", "WorkOrder"); err != nil {
		return err
	}
	for w := 0; w < cfg.WorkOrders; w++ {
		for i := 0; i < 3; i++ {
			if err := add("pushChecklistItems", "ChecklistItem", map[string]any{"id": fmt.Sprintf("ci-%d-%d", w, i), "workOrderId": fmt.Sprintf("wo-%d", w),
				"label": fmt.Sprintf("Step %d", i), "done": i == 0, "position": i}); err != nil {
				return err
			}
		}
	}
	if err := flush("pushChecklistItems", "ChecklistItem"); err != nil {
		return err
	}
	for w := 0; w < cfg.WorkOrders; w++ {
		for i := 0; i < 2; i++ {
			if err := add("pushNotes", "Note", map[string]any{"id": fmt.Sprintf("note-%d-%d", w, i), "workOrderId": fmt.Sprintf("wo-%d", w),
				"body": "Checked the valve; pressure nominal."}); err != nil {
				return err
			}
		}
	}
	return flush("pushNotes", "Note")
}

func (cfg ReadConfig) withDefaults() ReadConfig {
	if cfg.WorkOrders == 0 {
		cfg.WorkOrders = 10_000
	}
	if cfg.Clients == 0 {
		cfg.Clients = 16
	}
	if cfg.Duration == 0 {
		cfg.Duration = 20 * time.Second
	}
	return cfg
}

// Read has cfg.Clients clients page through the work orders with ReadQuery
// (each starting over at the end) for cfg.Duration.
func Read(ctx context.Context, c *Client, cfg ReadConfig) (ReadReport, error) {
	cfg = cfg.withDefaults()
	query := ReadQuery
	if cfg.WithoutNotes {
		query = ReadQueryWithoutNotes
	}
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	deadline := time.Now().Add(cfg.Duration)
	began := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < cfg.Clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var after any
			for time.Now().Before(deadline) {
				var out struct {
					WorkOrders struct {
						Edges    []json.RawMessage
						PageInfo struct {
							HasNextPage bool
							EndCursor   *string
						}
					}
				}
				t0 := time.Now()
				err := c.Do(ctx, query, map[string]any{"after": after}, &out)
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				if err != nil {
					return
				}
				after = nil
				if out.WorkOrders.PageInfo.HasNextPage && out.WorkOrders.PageInfo.EndCursor != nil {
					after = *out.WorkOrders.PageInfo.EndCursor
				}
			}
		}()
	}
	wg.Wait()
	rep := ReadReport{Requests: len(lat), Duration: time.Since(began), Latency: summarize(lat)}
	return rep, firstErr
}
