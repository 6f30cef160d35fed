package loadtest

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// Side-by-side drivers for scripts/bench-peers.sh: the same load, issued by
// the same code, against Tidemark and against PostGraphile 4 reading
// Tidemark's tables (loadtest/peers/postgraphile). Only the query text and
// where its connection sits in the response differ.

// Peer targets.
const (
	PeerTidemark     = "tidemark"
	PeerPostGraphile = "postgraphile"
)

// PeerNestedQuery is Tidemark's nested read of issue 12: a page of 100 work
// orders with each one's site and checklist, walked with its after cursor.
const PeerNestedQuery = `query ($after: String) {
  workOrders(first: 100, after: $after) {
    edges { node { title site { name } checklist { label done } } }
    pageInfo { hasNextPage endCursor }
  }
}`

// PostGraphileNestedQuery and PostGraphilePagedQuery are the same reads in
// PostGraphile's schema over Tidemark's tables.
var (
	//go:embed peers/postgraphile/nested.graphql
	PostGraphileNestedQuery string
	//go:embed peers/postgraphile/paged.graphql
	PostGraphilePagedQuery string
)

// PeerConfig sets a side-by-side read.
type PeerConfig struct {
	Target   string        // PeerTidemark or PeerPostGraphile
	Tenant   string        // the tenant read (PostGraphile filters by it; Tidemark's token names it)
	Clients  int           // concurrent clients of the nested read (default 16)
	Duration time.Duration // how long the nested read runs (default 20s)
	Limit    int           // page size of the paged read (default 1000)
}

// peerPage is one page of either target's response, reduced to what the
// drivers check and walk by.
type peerPage struct {
	rows        int
	children    int // checklist items over the page's rows (nested read)
	missingSite int // rows without a site name (nested read)
	next        any // the cursor of the next page; nil at the end
}

type peerConnection struct {
	Edges []struct {
		Node peerNode `json:"node"`
	} `json:"edges"`
	Nodes    []peerNode `json:"nodes"`
	PageInfo struct {
		HasNextPage bool    `json:"hasNextPage"`
		EndCursor   *string `json:"endCursor"`
	} `json:"pageInfo"`
}

type peerNode struct {
	Site *struct {
		Name string `json:"name"`
	} `json:"site"`
	Checklist json.RawMessage `json:"checklist"`
}

func (c peerConnection) page() (peerPage, error) {
	nodes := c.Nodes
	for _, e := range c.Edges {
		nodes = append(nodes, e.Node)
	}
	p := peerPage{rows: len(nodes)}
	for _, n := range nodes {
		if n.Site == nil || n.Site.Name == "" {
			p.missingSite++
		}
		if len(n.Checklist) == 0 {
			continue
		}
		// Tidemark: a list; PostGraphile: a connection with nodes.
		var list []json.RawMessage
		if err := json.Unmarshal(n.Checklist, &list); err != nil {
			var conn struct{ Nodes []json.RawMessage }
			if err := json.Unmarshal(n.Checklist, &conn); err != nil {
				return p, err
			}
			list = conn.Nodes
		}
		p.children += len(list)
	}
	if c.PageInfo.HasNextPage && c.PageInfo.EndCursor != nil {
		p.next = *c.PageInfo.EndCursor
	}
	return p, nil
}

// nestedPage fetches one page of the nested read.
func nestedPage(ctx context.Context, c *Client, cfg PeerConfig, after any) (peerPage, error) {
	var out struct {
		WorkOrders    *peerConnection `json:"workOrders"`
		AllWorkOrders *peerConnection `json:"allWorkOrders"`
	}
	var err error
	switch cfg.Target {
	case PeerTidemark:
		err = c.Do(ctx, PeerNestedQuery, map[string]any{"after": after}, &out)
	case PeerPostGraphile:
		err = c.Do(ctx, PostGraphileNestedQuery, map[string]any{"tenant": cfg.Tenant, "after": after}, &out)
	default:
		return peerPage{}, fmt.Errorf("unknown peer target %q (want %s or %s)", cfg.Target, PeerTidemark, PeerPostGraphile)
	}
	if err != nil {
		return peerPage{}, err
	}
	conn := out.WorkOrders
	if conn == nil {
		conn = out.AllWorkOrders
	}
	if conn == nil {
		return peerPage{}, fmt.Errorf("%s returned no connection", cfg.Target)
	}
	return conn.page()
}

// PeerNestedRead has cfg.Clients clients walk the tenant's work orders with
// the nested read (each starting over at the end) for cfg.Duration. Its
// first page must hold 100 work orders, each with its site and with
// checklist items, so that a target answering with less (a wrong tenant, a
// missing relation) fails instead of looking fast.
func PeerNestedRead(ctx context.Context, c *Client, cfg PeerConfig) (ReadReport, error) {
	if cfg.Clients == 0 {
		cfg.Clients = 16
	}
	if cfg.Duration == 0 {
		cfg.Duration = 20 * time.Second
	}
	first, err := nestedPage(ctx, c, cfg, nil)
	if err != nil {
		return ReadReport{}, err
	}
	if first.rows != 100 || first.missingSite != 0 || first.children < first.rows {
		return ReadReport{}, fmt.Errorf("%s: first page has %d work orders, %d without a site, %d checklist items; want 100 with sites and checklists (seed the tenant first)",
			cfg.Target, first.rows, first.missingSite, first.children)
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
				t0 := time.Now()
				p, err := nestedPage(ctx, c, cfg, after)
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
				after = p.next
			}
		}()
	}
	wg.Wait()
	return ReadReport{Requests: len(lat), Duration: time.Since(began), Latency: summarize(lat)}, firstErr
}

// PeerPagedReport is what a paged read measured.
type PeerPagedReport struct {
	Docs     int
	Duration time.Duration
	Latency  Latencies
}

func (r PeerPagedReport) String() string {
	return fmt.Sprintf("%d docs in %s = %.0f docs/s; %s", r.Docs, r.Duration.Round(time.Millisecond), float64(r.Docs)/r.Duration.Seconds(), r.Latency)
}

// PeerPagedRead reads every work order of the tenant from the beginning in
// pages of cfg.Limit, with one client: Tidemark's pull from no checkpoint
// (as a new device's initial sync), or PostGraphile's allWorkOrders by
// cursor. It returns how many documents it read.
func PeerPagedRead(ctx context.Context, c *Client, cfg PeerConfig) (PeerPagedReport, error) {
	if cfg.Limit == 0 {
		cfg.Limit = 1000
	}
	var rep PeerPagedReport
	var lat []time.Duration
	var after any
	began := time.Now()
	for {
		var n int
		t0 := time.Now()
		switch cfg.Target {
		case PeerTidemark:
			var out struct {
				PullWorkOrders struct {
					Documents  []json.RawMessage `json:"documents"`
					Checkpoint struct{ Cursor string }
				} `json:"pullWorkOrders"`
			}
			if err := c.Do(ctx, pullWorkOrders, map[string]any{"cp": after, "limit": cfg.Limit}, &out); err != nil {
				return rep, err
			}
			n = len(out.PullWorkOrders.Documents)
			after = map[string]any{"cursor": out.PullWorkOrders.Checkpoint.Cursor}
			if n < cfg.Limit {
				after = nil
			}
		case PeerPostGraphile:
			if cfg.Limit != 1000 {
				return rep, fmt.Errorf("postgraphile's paged query (loadtest/peers/postgraphile/paged.graphql) reads pages of 1000")
			}
			var out struct {
				AllWorkOrders struct {
					Nodes    []json.RawMessage
					PageInfo struct {
						HasNextPage bool
						EndCursor   *string
					}
				}
			}
			if err := c.Do(ctx, PostGraphilePagedQuery, map[string]any{"tenant": cfg.Tenant, "after": after}, &out); err != nil {
				return rep, err
			}
			n = len(out.AllWorkOrders.Nodes)
			after = nil
			if out.AllWorkOrders.PageInfo.HasNextPage && out.AllWorkOrders.PageInfo.EndCursor != nil {
				after = *out.AllWorkOrders.PageInfo.EndCursor
			}
		default:
			return rep, fmt.Errorf("unknown peer target %q (want %s or %s)", cfg.Target, PeerTidemark, PeerPostGraphile)
		}
		lat = append(lat, time.Since(t0))
		rep.Docs += n
		if after == nil {
			break
		}
	}
	rep.Duration = time.Since(began)
	rep.Latency = summarize(lat)
	return rep, nil
}
