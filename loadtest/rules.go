package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// RulesConfig sets the sizes of a partial-replication benchmark
// (`tidemark bench rules`). Zero values take the defaults.
type RulesConfig struct {
	WorkOrders  int // work orders of the tenant, 3 checklist items each (default 100,000)
	Technicians int // work order w is assigned to technician w mod Technicians (default 1,000)
	Sites       int // each work order is on a pseudo-random one of them (default 2,000)
	Batch       int // rows per push, seeding and edits (default 100)
	SeedClients int // concurrent seeding pushers (default 4)
	FirstSyncs  int // technicians whose first sync is timed, one after another (default 20)
	PullLimit   int // documents per pull page (default 1000)
	PushClients int // concurrent pushers of each push variant (default 4)
	PushRounds  int // alternating rounds of the push comparison (default 7)
	PushBatches int // batches each pusher sends per round and variant (default 16)
	Reassigns   int // reassignments timed, each followed by an ordinary edit (default 200)
	RunID       string
	// Log, if set, gets a line as each phase starts, to line profiles up with phases.
	Log io.Writer
}

// Bounds of one run: the benchmark is for a server on this machine, not a
// way to fill a database.
const (
	maxRulesWorkOrders = 1_000_000
	maxRulesRounds     = 50
	maxRulesReassigns  = 10_000
	maxRulesFirstSyncs = 1_000
)

func (cfg RulesConfig) withDefaults() (RulesConfig, error) {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.WorkOrders, 100_000)
	def(&cfg.Technicians, 1_000)
	def(&cfg.Sites, 2_000)
	def(&cfg.Batch, 100)
	def(&cfg.SeedClients, 4)
	def(&cfg.FirstSyncs, 20)
	def(&cfg.PullLimit, 1000)
	def(&cfg.PushClients, 4)
	def(&cfg.PushRounds, 7)
	def(&cfg.PushBatches, 16)
	def(&cfg.Reassigns, 200)
	if cfg.RunID == "" {
		cfg.RunID = fmt.Sprint(time.Now().UnixNano())
	}
	switch {
	case cfg.WorkOrders < 1 || cfg.WorkOrders > maxRulesWorkOrders:
		return cfg, fmt.Errorf("work orders must be between 1 and %d", maxRulesWorkOrders)
	case cfg.Technicians < 2 || cfg.Technicians > cfg.WorkOrders:
		return cfg, errors.New("technicians must be at least 2 and at most the work orders")
	case cfg.Sites < 1 || cfg.Sites > cfg.WorkOrders:
		return cfg, errors.New("sites must be at least 1 and at most the work orders")
	case cfg.Batch < 1 || cfg.Batch > 1000 || cfg.PullLimit < 1 || cfg.PullLimit > 1000:
		return cfg, errors.New("batch and pull limit must be between 1 and 1000")
	case cfg.PushClients < 1 || cfg.PushClients > cfg.Technicians/2 || cfg.SeedClients < 1 || cfg.SeedClients > 64:
		return cfg, errors.New("push clients must be between 1 and half the technicians; seed clients between 1 and 64")
	case cfg.FirstSyncs < 1 || cfg.FirstSyncs > min(cfg.Technicians, maxRulesFirstSyncs):
		return cfg, fmt.Errorf("first syncs must be between 1 and min(technicians, %d)", maxRulesFirstSyncs)
	case cfg.PushRounds < 1 || cfg.PushRounds > maxRulesRounds || cfg.PushBatches < 1 || cfg.PushBatches > 1000:
		return cfg, fmt.Errorf("push rounds must be between 1 and %d, push batches between 1 and 1000", maxRulesRounds)
	case cfg.Reassigns < 1 || cfg.Reassigns > maxRulesReassigns:
		return cfg, fmt.Errorf("reassignments must be between 1 and %d", maxRulesReassigns)
	}
	return cfg, nil
}

// RoleToken signs a token for a user of a tenant with a role claim (none
// when role is empty).
type RoleToken func(tenant, user, role string) string

// RulesReport is what a partial-replication benchmark measured.
type RulesReport struct {
	Config      RulesConfig
	RulesTenant string // assigned work orders, seeded by a dispatcher
	WholeTenant string // the same documents with no assignee, seeded by a caller without a role
	Seed        []SeedFigure
	FirstSync   FirstSyncFigure
	Push        []PushFigure // technician, dispatcher, whole tenant
	Reassign    Latencies    // one-row push that moves a work order to another technician
	Edit        Latencies    // one-row push that edits a work order, assignment unchanged
	// SiteLeft and SiteEntered count the reassignments after which the old
	// technician no longer syncs the work order's site, and the new one
	// newly does.
	SiteLeft, SiteEntered int
	// Verified counts the technicians whose whole set was pulled after the
	// reassignments and matched the model.
	Verified int
}

// SeedFigure is the seeding of one tenant.
type SeedFigure struct {
	Tenant   string
	Who      string
	Rows     int
	Duration time.Duration
	Push     Latencies
	Parts    []SeedPart // sites, work orders, checklist items, in that order
}

// SeedPart is the seeding of one collection.
type SeedPart struct {
	Collection string
	Rows       int
	Duration   time.Duration
}

// FirstSyncFigure is the first sync of several technicians, one after another.
type FirstSyncFigure struct {
	Technicians   int
	Time          Latencies // per technician: every collection pulled from a null checkpoint
	DocsPerSecond float64   // median over technicians
	Requests      int       // pull requests per technician (median), empty last pages included
	Docs          SetCounts // median technician's set
	// Whole is one dispatcher's first sync of the whole tenant, for scale.
	Whole     time.Duration
	WholeDocs SetCounts
}

// SetCounts counts the documents of each collection in one caller's set.
type SetCounts struct {
	WorkOrders, ChecklistItems, Notes, Sites int
	Deleted                                  int // removals received (none are expected from a null checkpoint before any move)
}

func (s SetCounts) total() int { return s.WorkOrders + s.ChecklistItems + s.Notes + s.Sites }

func (s SetCounts) String() string {
	return fmt.Sprintf("%d work orders, %d checklist items, %d notes, %d sites", s.WorkOrders, s.ChecklistItems, s.Notes, s.Sites)
}

// PushFigure is one variant of the push comparison.
type PushFigure struct {
	Variant    string
	Rows       int       // per round
	RoundRates []float64 // rows/s of each round
	Push       Latencies // every push of the variant
}

// Median is the median of the rounds' rows/s.
func (p PushFigure) Median() float64 { return median(p.RoundRates) }

func (r RulesReport) String() string {
	var b strings.Builder
	cfg := r.Config
	fmt.Fprintf(&b, "%d work orders (%d checklist items each) over %d technicians and %d sites; batches of %d\n",
		cfg.WorkOrders, 3, cfg.Technicians, cfg.Sites, cfg.Batch)
	for _, s := range r.Seed {
		fmt.Fprintf(&b, "seed %s (%s, %d clients): %d rows in %s = %.0f rows/s; %s\n", s.Tenant, s.Who, cfg.SeedClients,
			s.Rows, s.Duration.Round(time.Millisecond), float64(s.Rows)/s.Duration.Seconds(), s.Push)
		parts := make([]string, len(s.Parts))
		for i, p := range s.Parts {
			parts[i] = fmt.Sprintf("%s %.0f rows/s", p.Collection, float64(p.Rows)/p.Duration.Seconds())
		}
		fmt.Fprintf(&b, "    by collection: %s\n", strings.Join(parts, ", "))
	}
	f := r.FirstSync
	fmt.Fprintf(&b, "first sync of %d technicians (pages of %d, %d requests each): %s; median %.0f docs/s; the median one got %s\n",
		f.Technicians, cfg.PullLimit, f.Requests, f.Time.brief(), f.DocsPerSecond, f.Docs)
	fmt.Fprintf(&b, "first sync of a dispatcher (the whole tenant): %s = %.0f docs/s; %s\n",
		f.Whole.Round(time.Millisecond), float64(f.WholeDocs.total())/f.Whole.Seconds(), f.WholeDocs)
	for _, p := range r.Push {
		rates := make([]string, len(p.RoundRates))
		for i, x := range p.RoundRates {
			rates[i] = fmt.Sprintf("%.0f", x)
		}
		fmt.Fprintf(&b, "push %-13s %d clients: median %.0f rows/s (rounds of %d rows: %s); %s\n",
			p.Variant+":", cfg.PushClients, p.Median(), p.Rows, strings.Join(rates, ", "), p.Push)
	}
	fmt.Fprintf(&b, "reassignment (1 work order, 3 checklist items, site left %d/%d, entered %d/%d): %s\n",
		r.SiteLeft, r.Reassign.Count, r.SiteEntered, r.Reassign.Count, r.Reassign)
	fmt.Fprintf(&b, "ordinary edit of a work order:                                               %s\n", r.Edit)
	fmt.Fprintf(&b, "after the reassignments, %d technicians' sets pulled again match the model", r.Verified)
	return b.String()
}

// Rules measures partial replication on a server on this machine, in one
// run: seeding a tenant whose work orders are assigned to technicians (and
// a copy without assignees, which every caller syncs whole); the first
// sync of several technicians; push rows/s of technicians editing their own
// documents next to a dispatcher making the same edits and to the same
// edits in the whole-tenant copy, in alternating rounds; and the cost of
// reassigning a work order next to an ordinary edit. Every pulled set is
// checked against the generator's model of the tenant.
func Rules(ctx context.Context, base *Client, token RoleToken, cfg RulesConfig) (RulesReport, error) {
	if err := checkLoopback(base.URL); err != nil {
		return RulesReport{}, err
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return RulesReport{}, fmt.Errorf("bench rules: %w", err)
	}
	r := newRulesRun(base, token, cfg)
	rep := RulesReport{Config: cfg, RulesTenant: r.tenants[rulesTenant], WholeTenant: r.tenants[wholeTenant]}

	if rep.Seed, err = r.seedTenants(ctx); err != nil {
		return rep, err
	}

	r.logf("first sync of %d technicians", cfg.FirstSyncs)
	if rep.FirstSync, err = r.firstSyncs(ctx); err != nil {
		return rep, fmt.Errorf("first sync: %w", err)
	}

	r.logf("push comparison: %d rounds", cfg.PushRounds)
	if rep.Push, err = r.pushComparison(ctx); err != nil {
		return rep, fmt.Errorf("push: %w", err)
	}

	r.logf("%d reassignments and %d ordinary edits", cfg.Reassigns, cfg.Reassigns)
	if err := r.reassignments(ctx, &rep); err != nil {
		return rep, fmt.Errorf("reassign: %w", err)
	}
	r.logf("done")
	return rep, nil
}

// checkLoopback refuses a server that is not on this machine.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("bench rules: %w", err)
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return nil
	}
	return fmt.Errorf("bench rules: %q is not a loopback address: this benchmark writes hundreds of thousands of documents and only loads a server on this machine", host)
}

type tenantKind int

const (
	rulesTenant tenantKind = iota // work orders assigned to technicians
	wholeTenant                   // the same documents, no assignees
)

// rulesRun is one run: the clients and the generator's model of the data.
// The model is what every pull is checked against and what every edit
// assumes as the server's state (so an edit is never a conflict).
type rulesRun struct {
	cfg     RulesConfig
	base    *Client
	token   RoleToken
	tenants [2]string
	// assignee[w] is work order w's technician in the rules tenant.
	assignee []int
	// woRev and ciRev count the edits of each work order and checklist
	// item (index w*3+i), per tenant.
	woRev, ciRev [2][]int
	// techSites[t][s] is how many of technician t's work orders are on site s.
	techSites []map[int]int
}

func newRulesRun(base *Client, token RoleToken, cfg RulesConfig) *rulesRun {
	r := &rulesRun{cfg: cfg, base: base, token: token,
		tenants:   [2]string{"rules-" + cfg.RunID, "whole-" + cfg.RunID},
		assignee:  make([]int, cfg.WorkOrders),
		techSites: make([]map[int]int, cfg.Technicians),
	}
	for t := range r.techSites {
		r.techSites[t] = map[int]int{}
	}
	for w := range r.assignee {
		r.assignee[w] = w % cfg.Technicians
		r.techSites[r.assignee[w]][r.siteOf(w)]++
	}
	for k := range r.tenants {
		r.woRev[k] = make([]int, cfg.WorkOrders)
		r.ciRev[k] = make([]int, 3*cfg.WorkOrders)
	}
	return r
}

func (r *rulesRun) logf(format string, args ...any) {
	if r.cfg.Log != nil {
		fmt.Fprintf(r.cfg.Log, "%s bench rules: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
}

// as returns a client of the tenant signed for user with role.
func (r *rulesRun) as(t tenantKind, user, role string) *Client {
	c := *r.base
	c.Token = r.token(r.tenants[t], user, role)
	return &c
}

// siteOf spreads work orders over sites pseudo-randomly (splitmix64), so
// a technician's work orders are on many sites and each site has the
// work orders of many technicians.
func (r *rulesRun) siteOf(w int) int {
	z := uint64(w) + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return int(z % uint64(r.cfg.Sites))
}

func techID(t int) string { return fmt.Sprintf("tech-%d", t) }

// workOrder is work order w of the tenant as the model holds it.
func (r *rulesRun) workOrder(t tenantKind, w int) map[string]any {
	return r.workOrderAt(t, w, r.assignee[w], r.woRev[t][w])
}

// workOrderAt is work order w assigned to technician tech (none in the
// whole-tenant copy) after rev edits.
func (r *rulesRun) workOrderAt(t tenantKind, w, tech, rev int) map[string]any {
	var assignee any
	if t == rulesTenant {
		assignee = techID(tech)
	}
	desc := "Replace the filter and check the pressure."
	if n := rev; n > 0 {
		desc = fmt.Sprintf("Edit %d: replace the filter and check the pressure.", n)
	}
	return map[string]any{"id": fmt.Sprintf("wo-%d", w), "siteId": fmt.Sprintf("site-%d", r.siteOf(w)),
		"title": fmt.Sprintf("Work order %d", w), "description": desc, "status": "OPEN", "priority": w % 5,
		"assigneeId": assignee, "dueAt": nil, "deleted": false}
}

// checklistItemAt is checklist item i of work order w after rev edits.
func checklistItemAt(w, i, rev int) map[string]any {
	n := rev
	label := fmt.Sprintf("Step %d", i)
	if n > 0 {
		label = fmt.Sprintf("Step %d (edit %d)", i, n)
	}
	return map[string]any{"id": fmt.Sprintf("ci-%d-%d", w, i), "workOrderId": fmt.Sprintf("wo-%d", w),
		"label": label, "done": n%2 == 1, "position": i, "deleted": false}
}

func site(s int) map[string]any {
	return map[string]any{"id": fmt.Sprintf("site-%d", s), "name": fmt.Sprintf("Site %d", s),
		"address": fmt.Sprintf("%d Harbour Road", s), "latitude": 51.5, "longitude": -0.125, "deleted": false}
}

// pushRowsResult pushes rows and fails unless every row was written as sent.
func pushRowsResult(ctx context.Context, c *Client, typ, plural string, rows []map[string]any) error {
	q := fmt.Sprintf(`mutation($rows: [%sPushRow!]!) { r: push%s(rows: $rows) { id } }`, typ, plural)
	var out struct {
		R []struct{ ID string } `json:"r"`
	}
	if err := c.Do(ctx, q, map[string]any{"rows": rows}, &out); err != nil {
		return err
	}
	if len(out.R) != 0 {
		return fmt.Errorf("push%s: %d of %d rows were not written as sent (first: %s)", plural, len(out.R), len(rows), out.R[0].ID)
	}
	return nil
}

// seedTenants pushes both tenants' sites, then work orders, then
// checklist items, in batches from concurrent clients: a dispatcher in the
// rules tenant, a caller without a role in the whole-tenant copy. The
// tenants take turns collection by collection, so both see a database of
// about the same size and freshness of statistics.
func (r *rulesRun) seedTenants(ctx context.Context) ([]SeedFigure, error) {
	cfg := r.cfg
	figs := []SeedFigure{{Tenant: r.tenants[rulesTenant], Who: "dispatcher"}, {Tenant: r.tenants[wholeTenant], Who: "no role"}}
	clients := []*Client{r.as(rulesTenant, "seeder", "dispatcher"), r.as(wholeTenant, "seeder", "")}
	lats := make([][]time.Duration, len(figs))
	type part struct {
		typ, plural string
		n           int
		doc         func(t tenantKind, i int) map[string]any
	}
	parts := []part{
		{"Site", "Sites", cfg.Sites, func(_ tenantKind, s int) map[string]any { return site(s) }},
		{"WorkOrder", "WorkOrders", cfg.WorkOrders, r.workOrder},
		{"ChecklistItem", "ChecklistItems", 3 * cfg.WorkOrders, func(t tenantKind, i int) map[string]any { return checklistItemAt(i/3, i%3, r.ciRev[t][i]) }},
	}
	for _, p := range parts {
		for _, t := range []tenantKind{rulesTenant, wholeTenant} {
			fig := &figs[t]
			r.logf("seeding %s as %s: %d %s", fig.Tenant, fig.Who, p.n, p.plural)
			t0 := time.Now()
			l, err := pushConcurrently(ctx, cfg.SeedClients, p.n, cfg.Batch, func(start, n int) error {
				rows := make([]map[string]any, n)
				for i := range rows {
					rows[i] = map[string]any{"newDocumentState": p.doc(t, start+i)}
				}
				return pushRowsResult(ctx, clients[t], p.typ, p.plural, rows)
			})
			d := time.Since(t0)
			fig.Duration += d
			lats[t] = append(lats[t], l...)
			if err != nil {
				return figs, fmt.Errorf("seed %s %s: %w", fig.Tenant, p.plural, err)
			}
			fig.Rows += p.n
			fig.Parts = append(fig.Parts, SeedPart{Collection: p.plural, Rows: p.n, Duration: d})
		}
	}
	for t := range figs {
		figs[t].Push = summarize(lats[t])
	}
	return figs, nil
}

// pushConcurrently calls push for every batch of n items from clients
// goroutines and returns each call's duration.
func pushConcurrently(ctx context.Context, clients, n, batch int, push func(start, n int) error) ([]time.Duration, error) {
	starts := make(chan int)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(starts)
		for s := 0; s < n; s += batch {
			select {
			case starts <- s:
			case <-ctx.Done():
				return
			}
		}
	}()
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range starts {
				t0 := time.Now()
				err := push(s, min(batch, n-s))
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				if err != nil && firstErr == nil {
					firstErr = err
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return lat, firstErr
}

// pullQueries select every field of each collection, as a client's replica does.
var pullQueries = map[string]string{
	"WorkOrders":     "id siteId title description status priority assigneeId dueAt updatedAt deleted",
	"ChecklistItems": "id workOrderId label done position updatedAt deleted",
	"Notes":          "id workOrderId body authorId updatedAt deleted",
	"Sites":          "id name address latitude longitude updatedAt deleted",
}

// pulledSet is a caller's whole set, by collection: id → deleted.
type pulledSet map[string]map[string]bool

// pullSet pulls every collection from a null checkpoint in pages of limit
// until a page comes back empty (as RxDB does), and returns what it got
// and how many requests it took.
func pullSet(ctx context.Context, c *Client, limit int) (pulledSet, int, error) {
	set := pulledSet{}
	requests := 0
	for _, plural := range []string{"WorkOrders", "ChecklistItems", "Notes", "Sites"} {
		q := fmt.Sprintf(`query($cp: CheckpointInput, $limit: Int!) {
  r: pull%s(checkpoint: $cp, limit: $limit) { documents { %s } checkpoint { cursor } }
}`, plural, pullQueries[plural])
		got := map[string]bool{}
		var cp map[string]any
		for {
			var out struct {
				R struct {
					Documents []struct {
						ID      string `json:"id"`
						Deleted bool   `json:"deleted"`
					} `json:"documents"`
					Checkpoint struct{ Cursor string } `json:"checkpoint"`
				} `json:"r"`
			}
			requests++
			if err := c.Do(ctx, q, map[string]any{"cp": cp, "limit": limit}, &out); err != nil {
				return nil, requests, fmt.Errorf("pull%s: %w", plural, err)
			}
			if len(out.R.Documents) == 0 {
				break
			}
			for _, d := range out.R.Documents {
				got[d.ID] = d.Deleted // a later entry of the same document wins
			}
			cp = map[string]any{"cursor": out.R.Checkpoint.Cursor}
		}
		set[plural] = got
	}
	return set, requests, nil
}

// counts counts the documents of a set, live and removed.
func (s pulledSet) counts() SetCounts {
	live := func(plural string) (n int) {
		for _, deleted := range s[plural] {
			if !deleted {
				n++
			}
		}
		return n
	}
	out := SetCounts{WorkOrders: live("WorkOrders"), ChecklistItems: live("ChecklistItems"), Notes: live("Notes"), Sites: live("Sites")}
	for _, docs := range s {
		for _, deleted := range docs {
			if deleted {
				out.Deleted++
			}
		}
	}
	return out
}

// expectedSet is technician t's set in the model: live document ids by collection.
func (r *rulesRun) expectedSet(t int) map[string][]string {
	want := map[string][]string{"WorkOrders": {}, "ChecklistItems": {}, "Notes": {}, "Sites": {}}
	for w, a := range r.assignee {
		if a != t {
			continue
		}
		want["WorkOrders"] = append(want["WorkOrders"], fmt.Sprintf("wo-%d", w))
		for i := range 3 {
			want["ChecklistItems"] = append(want["ChecklistItems"], fmt.Sprintf("ci-%d-%d", w, i))
		}
	}
	for s, n := range r.techSites[t] {
		if n > 0 {
			want["Sites"] = append(want["Sites"], fmt.Sprintf("site-%d", s))
		}
	}
	return want
}

// checkSet compares a pulled set's live documents with the expected ids,
// naming the first difference of each collection.
func checkSet(got pulledSet, want map[string][]string) error {
	var problems []string
	for _, plural := range []string{"WorkOrders", "ChecklistItems", "Notes", "Sites"} {
		live := map[string]bool{}
		for id, deleted := range got[plural] {
			if !deleted {
				live[id] = true
			}
		}
		var missing []string
		for _, id := range want[plural] {
			if !live[id] {
				missing = append(missing, id)
			}
			delete(live, id)
		}
		extra := make([]string, 0, len(live))
		for id := range live {
			extra = append(extra, id)
		}
		slices.Sort(missing)
		slices.Sort(extra)
		if len(missing)+len(extra) > 0 {
			problems = append(problems, fmt.Sprintf("%s: %d missing %v, %d extra %v", plural,
				len(missing), missing[:min(3, len(missing))], len(extra), extra[:min(3, len(extra))]))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// firstSyncs times the first sync of cfg.FirstSyncs technicians spread
// over the tenant, one after another, each checked against the model.
func (r *rulesRun) firstSyncs(ctx context.Context) (FirstSyncFigure, error) {
	n := r.cfg.FirstSyncs
	fig := FirstSyncFigure{Technicians: n}
	times := make([]time.Duration, 0, n)
	rates := make([]float64, 0, n)
	requests := make([]int, 0, n)
	var counts []SetCounts
	for i := range n {
		t := i * r.cfg.Technicians / n
		c := r.as(rulesTenant, techID(t), "technician")
		t0 := time.Now()
		got, reqs, err := pullSet(ctx, c, r.cfg.PullLimit)
		d := time.Since(t0)
		if err != nil {
			return fig, fmt.Errorf("%s: %w", techID(t), err)
		}
		if err := checkSet(got, r.expectedSet(t)); err != nil {
			return fig, fmt.Errorf("%s's first sync differs from its set: %w", techID(t), err)
		}
		cnt := got.counts()
		if cnt.Deleted != 0 {
			return fig, fmt.Errorf("%s's first sync, before any move, returned %d removals", techID(t), cnt.Deleted)
		}
		times = append(times, d)
		rates = append(rates, float64(cnt.total())/d.Seconds())
		requests = append(requests, reqs)
		counts = append(counts, cnt)
	}
	fig.Time = summarize(times)
	fig.DocsPerSecond = median(rates)
	slices.Sort(requests)
	fig.Requests = requests[len(requests)/2]
	slices.SortFunc(counts, func(a, b SetCounts) int { return a.total() - b.total() })
	fig.Docs = counts[len(counts)/2]

	t0 := time.Now()
	whole, _, err := pullSet(ctx, r.as(rulesTenant, "dispatcher-first-sync", "dispatcher"), r.cfg.PullLimit)
	fig.Whole = time.Since(t0)
	if err != nil {
		return fig, fmt.Errorf("dispatcher: %w", err)
	}
	fig.WholeDocs = whole.counts()
	want := SetCounts{WorkOrders: r.cfg.WorkOrders, ChecklistItems: 3 * r.cfg.WorkOrders, Sites: r.cfg.Sites}
	if fig.WholeDocs != want {
		return fig, fmt.Errorf("a dispatcher's first sync got %s (%d removed), want %s", fig.WholeDocs, fig.WholeDocs.Deleted, want)
	}
	return fig, nil
}

// editBatch is one push of edits: work orders or checklist items (index w*3+i).
type editBatch struct {
	checklist bool
	items     []int
}

// pushVariant is one side of the push comparison.
type pushVariant struct {
	name    string
	tenant  tenantKind
	clients []*Client // one per pusher, each editing batches[i]
}

// pushComparison alternates rounds of three variants of the same edits:
// technicians pushing edits to their own work orders and checklist items,
// a dispatcher pushing the same edits to those documents (bucket rows
// maintained, no per-row access check), and the same edits in the tenant
// copy without assignees (no bucket rows: the whole-tenant cost). The
// variants run one after another, never at once, in an order that rotates
// each round.
func (r *rulesRun) pushComparison(ctx context.Context) ([]PushFigure, error) {
	cfg := r.cfg
	batches := make([][]editBatch, cfg.PushClients)
	techs := make([]int, cfg.PushClients)
	for i := range techs {
		techs[i] = cfg.Technicians - 1 - i*(cfg.Technicians/cfg.PushClients) // clear of the first-sync technicians at 0, T/n, …
		var wos, cis []int
		for w, a := range r.assignee {
			if a == techs[i] {
				wos = append(wos, w)
				cis = append(cis, 3*w, 3*w+1, 3*w+2)
			}
		}
		for s := 0; s < len(wos); s += cfg.Batch {
			batches[i] = append(batches[i], editBatch{items: wos[s:min(len(wos), s+cfg.Batch)]})
		}
		for s := 0; s < len(cis); s += cfg.Batch {
			batches[i] = append(batches[i], editBatch{checklist: true, items: cis[s:min(len(cis), s+cfg.Batch)]})
		}
	}
	variants := []pushVariant{{name: "technician", tenant: rulesTenant}, {name: "dispatcher", tenant: rulesTenant}, {name: "whole tenant", tenant: wholeTenant}}
	for i, t := range techs {
		variants[0].clients = append(variants[0].clients, r.as(rulesTenant, techID(t), "technician"))
		variants[1].clients = append(variants[1].clients, r.as(rulesTenant, fmt.Sprintf("dispatcher-%d", i), "dispatcher"))
		variants[2].clients = append(variants[2].clients, r.as(wholeTenant, fmt.Sprintf("office-%d", i), ""))
	}
	figs := make([]PushFigure, len(variants))
	lats := make([][]time.Duration, len(variants))
	for round := range cfg.PushRounds {
		for k := range variants {
			v := (round + k) % len(variants)
			rows, d, lat, err := r.pushRound(ctx, variants[v], batches, round*cfg.PushBatches)
			if err != nil {
				return figs, fmt.Errorf("%s, round %d: %w", variants[v].name, round+1, err)
			}
			figs[v].Variant, figs[v].Rows = variants[v].name, rows
			figs[v].RoundRates = append(figs[v].RoundRates, float64(rows)/d.Seconds())
			lats[v] = append(lats[v], lat...)
		}
	}
	for v := range figs {
		figs[v].Push = summarize(lats[v])
	}
	return figs, nil
}

// pushRound has each pusher of v send cfg.PushBatches of its batches of
// edits, starting at batch first, all pushers at once, and returns the rows
// written, the round's wall time and every push's duration. The variants of
// a round edit the same documents (in the whole-tenant copy, its own).
func (r *rulesRun) pushRound(ctx context.Context, v pushVariant, batches [][]editBatch, first int) (int, time.Duration, []time.Duration, error) {
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	rows := 0
	var wg sync.WaitGroup
	began := time.Now()
	for i, c := range v.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pos := first
			for range r.cfg.PushBatches {
				b := batches[i][pos%len(batches[i])]
				pos++
				t0 := time.Now()
				err := r.pushEdits(ctx, c, v.tenant, b)
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				rows += len(b.items)
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
	d := time.Since(began)
	return rows, d, lat, firstErr
}

// pushEdits pushes one edit of every document of b, assuming the model's
// state, and advances the model once the push is written as sent.
func (r *rulesRun) pushEdits(ctx context.Context, c *Client, t tenantKind, b editBatch) error {
	rows := make([]map[string]any, len(b.items))
	for i, item := range b.items {
		var before, after map[string]any
		if b.checklist {
			rev := r.ciRev[t][item]
			before, after = checklistItemAt(item/3, item%3, rev), checklistItemAt(item/3, item%3, rev+1)
		} else {
			rev := r.woRev[t][item]
			before, after = r.workOrderAt(t, item, r.assignee[item], rev), r.workOrderAt(t, item, r.assignee[item], rev+1)
		}
		rows[i] = map[string]any{"assumedMasterState": before, "newDocumentState": after}
	}
	typ, plural := "WorkOrder", "WorkOrders"
	if b.checklist {
		typ, plural = "ChecklistItem", "ChecklistItems"
	}
	if err := pushRowsResult(ctx, c, typ, plural, rows); err != nil {
		return err
	}
	for _, item := range b.items {
		if b.checklist {
			r.ciRev[t][item]++
		} else {
			r.woRev[t][item]++
		}
	}
	return nil
}

// reassignments times, as a dispatcher, one-row pushes that move a random
// work order to another random technician, each followed by a one-row push
// that edits another random work order without moving it. Then it pulls the
// whole set of the last reassignment's two technicians and checks it.
func (r *rulesRun) reassignments(ctx context.Context, rep *RulesReport) error {
	cfg := r.cfg
	c := r.as(rulesTenant, "dispatcher-reassign", "dispatcher")
	rng := rand.New(rand.NewPCG(uint64(cfg.WorkOrders), uint64(cfg.Technicians)))
	var moveLat, editLat []time.Duration
	var lastFrom, lastTo int
	for range cfg.Reassigns {
		w := rng.IntN(cfg.WorkOrders)
		from := r.assignee[w]
		to := (from + 1 + rng.IntN(cfg.Technicians-1)) % cfg.Technicians
		before := r.workOrder(rulesTenant, w)
		after := r.workOrderAt(rulesTenant, w, to, r.woRev[rulesTenant][w])
		t0 := time.Now()
		err := pushRowsResult(ctx, c, "WorkOrder", "WorkOrders", []map[string]any{{"assumedMasterState": before, "newDocumentState": after}})
		moveLat = append(moveLat, time.Since(t0))
		if err != nil {
			return fmt.Errorf("move wo-%d from %s to %s: %w", w, techID(from), techID(to), err)
		}
		s := r.siteOf(w)
		r.assignee[w] = to
		if r.techSites[from][s]--; r.techSites[from][s] == 0 {
			rep.SiteLeft++
		}
		if r.techSites[to][s]++; r.techSites[to][s] == 1 {
			rep.SiteEntered++
		}
		lastFrom, lastTo = from, to

		e := rng.IntN(cfg.WorkOrders)
		t0 = time.Now()
		err = r.pushEdits(ctx, c, rulesTenant, editBatch{items: []int{e}})
		editLat = append(editLat, time.Since(t0))
		if err != nil {
			return fmt.Errorf("edit wo-%d: %w", e, err)
		}
	}
	rep.Reassign, rep.Edit = summarize(moveLat), summarize(editLat)
	for _, t := range []int{lastFrom, lastTo} {
		got, _, err := pullSet(ctx, r.as(rulesTenant, techID(t), "technician"), cfg.PullLimit)
		if err != nil {
			return fmt.Errorf("%s: %w", techID(t), err)
		}
		if err := checkSet(got, r.expectedSet(t)); err != nil {
			return fmt.Errorf("%s's set after the reassignments differs: %w", techID(t), err)
		}
		rep.Verified++
	}
	return nil
}

// brief is l without p99, for a handful of samples.
func (l Latencies) brief() string {
	r := func(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }
	return fmt.Sprintf("p50 %s  p95 %s  max %s  (%d samples)", r(l.P50), r(l.P95), r(l.Max), l.Count)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
