package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// FleetConfig sets a device-fleet run (`tidemark bench fleet`). Zero values
// take the defaults.
type FleetConfig struct {
	Devices int // simulated devices in this process (default 100)
	// DeviceOffset is the global id of this process's first device, so that
	// several processes share one run without colliding (default
	// ProcessIndex*Devices). It must be a multiple of DevicesPerUser.
	DeviceOffset int
	Processes    int // processes sharing the run, each with Devices devices (default 1)
	ProcessIndex int // this process, 0..Processes-1
	Tenants      int // users are spread round-robin over this many tenants (default 1)
	// DevicesPerUser is how many devices each user has (a phone and a
	// tablet): they sync the same set and edit the same documents (default 2).
	DevicesPerUser int
	// Roles is the mix of users' roles, as weights: technician (syncs the
	// work orders assigned to it, under the default sync rules), dispatcher
	// (the whole tenant) and none (no role claim: the whole tenant).
	// Default {technician: 9, dispatcher: 1}.
	Roles map[string]int
	// Shared is how many work orders (two checklist items each) every user
	// has in the tenant, seeded at the start; the edits that overlap pick
	// from them (default 3). Sites is how many sites each tenant has (default 10).
	Shared, Sites int

	OnlineMean  time.Duration // mean time a device stays online (exponential; default 20s)
	OfflineMean time.Duration // mean time a device stays offline (default 10s)
	// Ramp spreads the devices' first transition over this long, so that
	// they do not all connect in the same instant (default 10s).
	Ramp     time.Duration
	Duration time.Duration // how long the schedule runs before the convergence check (default 60s)
	EditRate float64       // edits per device per second, online and offline (default 0.05)
	// Overlap is the probability that an edit hits a document that other
	// devices also edit (a shared work order or checklist item of its set),
	// rather than one only this device edits (default 0.3; 0 is allowed
	// through OverlapSet).
	Overlap    float64
	OverlapSet bool
	// Reassign is the probability that an edit of a shared work order by a
	// user who syncs the whole tenant moves it to a random technician of
	// the tenant, so that sets change: the work order, its checklist items
	// and perhaps its site leave one technician's devices and enter
	// another's (default 0.2).
	Reassign    float64
	ReassignSet bool
	// Stream is the fraction of devices that hold a live stream while
	// online; the others pull every PollEvery (default 0.5).
	Stream    float64
	StreamSet bool
	PollEvery time.Duration // default 10s
	PullLimit int           // documents per pull page (default 200, RxDB's batch size in tidemark-rxdb.mjs)
	Workers   int           // concurrent device actions (default 128)
	// Settle is how long the convergence check keeps re-pulling devices
	// that differ from the server's view, for runs shared by several
	// processes whose last pushes may land after this one's last pull
	// (default 0 with one process, 60s with several).
	Settle time.Duration
	RunID  string // names the tenants; the same in every process of a run
	// Progress, if set, gets a line every ProgressEvery (default 1s).
	Progress      io.Writer `json:"-"`
	ProgressEvery time.Duration
}

// Bounds of one process's fleet: 20,000 open files per process here, and
// each online streaming device is one websocket.
const (
	maxFleetDevices = 50_000
	maxFleetWorkers = 4096
)

// Fleet roles and whether each syncs the whole tenant under the default rules.
var fleetRoles = map[string]bool{"technician": false, "dispatcher": true, "none": true}

func (cfg FleetConfig) withDefaults() (FleetConfig, error) {
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
	def(&cfg.Devices, 100)
	def(&cfg.Processes, 1)
	def(&cfg.Tenants, 1)
	def(&cfg.DevicesPerUser, 2)
	def(&cfg.Shared, 3)
	def(&cfg.Sites, 10)
	def(&cfg.PullLimit, 200)
	def(&cfg.Workers, 128)
	defDur(&cfg.OnlineMean, 20*time.Second)
	defDur(&cfg.OfflineMean, 10*time.Second)
	defDur(&cfg.Ramp, 10*time.Second)
	defDur(&cfg.Duration, 60*time.Second)
	defDur(&cfg.PollEvery, 10*time.Second)
	defDur(&cfg.ProgressEvery, time.Second)
	if cfg.Roles == nil {
		cfg.Roles = map[string]int{"technician": 9, "dispatcher": 1}
	}
	if cfg.EditRate == 0 {
		cfg.EditRate = 0.05
	}
	if !cfg.OverlapSet && cfg.Overlap == 0 {
		cfg.Overlap = 0.3
	}
	if !cfg.ReassignSet && cfg.Reassign == 0 {
		cfg.Reassign = 0.2
	}
	if !cfg.StreamSet && cfg.Stream == 0 {
		cfg.Stream = 0.5
	}
	if cfg.DeviceOffset == 0 {
		cfg.DeviceOffset = cfg.ProcessIndex * cfg.Devices
	}
	if cfg.Settle == 0 && cfg.Processes > 1 {
		cfg.Settle = 60 * time.Second
	}
	if cfg.RunID == "" {
		if cfg.Processes > 1 {
			return cfg, errors.New("several processes share a run only under one run id: set it in each")
		}
		cfg.RunID = strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	weights := 0
	for role, w := range cfg.Roles {
		if _, ok := fleetRoles[role]; !ok || w < 0 {
			return cfg, fmt.Errorf("role %q: the fleet knows technician, dispatcher and none (the default sync rules), with weights of 0 or more", role)
		}
		weights += w
	}
	switch {
	case weights == 0:
		return cfg, errors.New("the roles' weights add up to 0")
	case cfg.Devices < 1 || cfg.Devices > maxFleetDevices:
		return cfg, fmt.Errorf("devices must be between 1 and %d per process", maxFleetDevices)
	case cfg.Processes < 1 || cfg.ProcessIndex < 0 || cfg.ProcessIndex >= cfg.Processes:
		return cfg, errors.New("process index must be between 0 and processes-1")
	case cfg.DevicesPerUser < 1 || cfg.DevicesPerUser > 16:
		return cfg, errors.New("devices per user must be between 1 and 16 (the server's websocket connections per user)")
	case cfg.DeviceOffset < 0 || cfg.DeviceOffset%cfg.DevicesPerUser != 0:
		return cfg, errors.New("the device offset must be a multiple of the devices per user, so that a user's devices are in one process")
	case cfg.Tenants < 1 || cfg.Shared < 1 || cfg.Shared > 100 || cfg.Sites < 1 || cfg.Sites > 1000:
		return cfg, errors.New("tenants must be at least 1, shared work orders between 1 and 100, sites between 1 and 1000")
	case cfg.Overlap < 0 || cfg.Overlap > 1 || cfg.Stream < 0 || cfg.Stream > 1 || cfg.Reassign < 0 || cfg.Reassign > 1:
		return cfg, errors.New("overlap, reassign and stream are fractions between 0 and 1")
	case cfg.EditRate < 0 || cfg.EditRate > 100:
		return cfg, errors.New("the edit rate must be between 0 and 100 per device per second")
	case cfg.PullLimit < 1 || cfg.PullLimit > 1000:
		return cfg, errors.New("the pull limit must be between 1 and 1000")
	case cfg.Workers < 1 || cfg.Workers > maxFleetWorkers:
		return cfg, fmt.Errorf("workers must be between 1 and %d", maxFleetWorkers)
	case cfg.OnlineMean < 0 || cfg.OfflineMean < 0 || cfg.Ramp < 0 || cfg.Duration < 0 || cfg.PollEvery < 0:
		return cfg, errors.New("durations must not be negative")
	}
	return cfg, nil
}

// total is the number of devices in the whole run, all processes.
func (cfg FleetConfig) total() int {
	return max(cfg.Processes*cfg.Devices, cfg.DeviceOffset+cfg.Devices)
}

// The fleet's model: which user, tenant and role each global device id
// has, and which documents each user's set holds under the default rules.
// Every process of a run computes the same model.

func (cfg FleetConfig) userOf(device int) int { return device / cfg.DevicesPerUser }
func (cfg FleetConfig) tenantOf(user int) int { return user % cfg.Tenants }

// roleOf spreads the roles over each tenant's users by their weights, in
// the order of the role names.
func (cfg FleetConfig) roleOf(user int) string {
	names := make([]string, 0, len(cfg.Roles))
	sum := 0
	for r, w := range cfg.Roles {
		if w > 0 {
			names = append(names, r)
			sum += w
		}
	}
	slices.Sort(names)
	k := (user / cfg.Tenants) % sum
	for _, r := range names {
		if k < cfg.Roles[r] {
			return r
		}
		k -= cfg.Roles[r]
	}
	return names[len(names)-1]
}

func (cfg FleetConfig) tenantName(t int) string { return fmt.Sprintf("fleet-%s-%d", cfg.RunID, t) }
func fleetUserID(u int) string                  { return fmt.Sprintf("u%d", u) }
func sharedWorkOrderID(u, k int) string         { return fmt.Sprintf("wo-u%d-%d", u, k) }
func sharedChecklistID(u, k, i int) string      { return fmt.Sprintf("ci-u%d-%d-%d", u, k, i) }
func ownWorkOrderID(device int) string          { return fmt.Sprintf("wo-d%d", device) }
func fleetSiteID(s int) string                  { return fmt.Sprintf("site-%d", s) }

// siteOfDoc puts each work order on a pseudo-random site of its tenant.
func (cfg FleetConfig) siteOfDoc(id string) string {
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h = (h ^ uint64(id[i])) * 1099511628211
	}
	return fleetSiteID(int(h % uint64(cfg.Sites)))
}

// assigneeOf is who the user's work orders are assigned to: a technician's
// own, nobody's for users who see the whole tenant.
func (cfg FleetConfig) assigneeOf(user int) any {
	if cfg.roleOf(user) == "technician" {
		return fleetUserID(user)
	}
	return nil
}

func (cfg FleetConfig) sharedWorkOrder(u, k int) map[string]any {
	id := sharedWorkOrderID(u, k)
	return map[string]any{"id": id, "siteId": cfg.siteOfDoc(id), "title": fmt.Sprintf("Shared work order %d of %s", k, fleetUserID(u)),
		"description": nil, "status": "OPEN", "priority": k % 5, "assigneeId": cfg.assigneeOf(u), "dueAt": nil, "deleted": false}
}

func sharedChecklistItem(u, k, i int) map[string]any {
	return map[string]any{"id": sharedChecklistID(u, k, i), "workOrderId": sharedWorkOrderID(u, k),
		"label": fmt.Sprintf("Step %d", i), "done": false, "position": i, "deleted": false}
}

func (cfg FleetConfig) ownWorkOrder(device int) map[string]any {
	id := ownWorkOrderID(device)
	return map[string]any{"id": id, "siteId": cfg.siteOfDoc(id), "title": fmt.Sprintf("Work order of device %d", device),
		"description": nil, "status": "OPEN", "priority": 1, "assigneeId": cfg.assigneeOf(cfg.userOf(device)), "dueAt": nil, "deleted": false}
}

func fleetSite(s int) map[string]any {
	return map[string]any{"id": fleetSiteID(s), "name": fmt.Sprintf("Site %d", s), "address": fmt.Sprintf("%d Quay Street", s),
		"latitude": 51.5, "longitude": -0.125, "deleted": false}
}

// checklistPerWorkOrder is how many checklist items each shared work order has.
const checklistPerWorkOrder = 2

// tenantIDs is the live document ids of tenant t at the end of the run,
// by collection: documents are created, never deleted.
func (cfg FleetConfig) tenantIDs(t int) [numFleetCollections]map[string]bool {
	var set [numFleetCollections]map[string]bool
	for c := range set {
		set[c] = map[string]bool{}
	}
	for s := range cfg.Sites {
		set[colSites][fleetSiteID(s)] = true
	}
	for _, v := range cfg.usersOf(t) {
		for k := range cfg.Shared {
			set[colWorkOrders][sharedWorkOrderID(v, k)] = true
			for i := range checklistPerWorkOrder {
				set[colChecklistItems][sharedChecklistID(v, k, i)] = true
			}
		}
		for d := v * cfg.DevicesPerUser; d < (v+1)*cfg.DevicesPerUser && d < cfg.total(); d++ {
			set[colWorkOrders][ownWorkOrderID(d)] = true
		}
	}
	return set
}

// usersOf lists the users of tenant t in the whole run.
func (cfg FleetConfig) usersOf(t int) []int {
	var users []int
	for v := t; v*cfg.DevicesPerUser < cfg.total(); v += cfg.Tenants {
		users = append(users, v)
	}
	return users
}

// techniciansOf lists the technicians of tenant t in the whole run, whom
// dispatchers reassign work orders to.
func (cfg FleetConfig) techniciansOf(t int) []int {
	var techs []int
	for _, v := range cfg.usersOf(t) {
		if cfg.roleOf(v) == "technician" {
			techs = append(techs, v)
		}
	}
	return techs
}

// rulesSet applies the default sync rules to the tenant's whole view: what
// user u's set must hold. A technician gets the work orders assigned to it,
// their checklist items and notes, and the sites they are on; the other
// roles get the whole tenant. refs caches the documents' references across
// the users of a tenant (nil: no cache).
func (cfg FleetConfig) rulesSet(u int, whole serverView, refs *refCache) serverView {
	if fleetRoles[cfg.roleOf(u)] {
		return whole
	}
	var set serverView
	for c := range set {
		set[c] = map[string]string{}
	}
	for id, doc := range whole[colWorkOrders] {
		if r := refs.of(doc); r.assigneeID == fleetUserID(u) {
			set[colWorkOrders][id] = doc
			if s, ok := whole[colSites][r.siteID]; ok {
				set[colSites][r.siteID] = s
			}
		}
	}
	for _, c := range []int{colChecklistItems, colNotes} {
		for id, doc := range whole[c] {
			if _, ok := set[colWorkOrders][refs.of(doc).workOrderID]; ok {
				set[c][id] = doc
			}
		}
	}
	return set
}

// docRefs are the fields of a document the sync rules follow.
type docRefs struct{ assigneeID, siteID, workOrderID string }

// refCache remembers each document's references by its canonical JSON:
// the technicians of a tenant read the same documents.
type refCache struct{ m sync.Map }

func (c *refCache) of(doc string) docRefs {
	if c != nil {
		if r, ok := c.m.Load(doc); ok {
			return r.(docRefs)
		}
	}
	var m struct {
		AssigneeID  *string `json:"assigneeId"`
		SiteID      string  `json:"siteId"`
		WorkOrderID string  `json:"workOrderId"`
	}
	_ = json.Unmarshal([]byte(doc), &m)
	r := docRefs{siteID: m.SiteID, workOrderID: m.WorkOrderID}
	if m.AssigneeID != nil {
		r.assigneeID = *m.AssigneeID
	}
	if c != nil {
		c.m.Store(doc, r)
	}
	return r
}

// Fleet runs cfg.Devices simulated devices against a server for
// cfg.Duration, as RxDB's GraphQL replication drives one: each keeps a
// local store with its checkpoints and pending edits, goes online and
// offline on a random schedule, edits documents online and offline (with
// cfg.Overlap of the edits on documents other devices edit too, so the
// server merges and refuses edits), and while online pulls from its
// checkpoints until caught up, pushes its pending edits with their
// assumed states, adopts what the server returns, and streams or polls.
// Then every device goes online and syncs until nothing is pending, and
// each store is compared with the server's view of its user and with the
// model's set of that user. The report says what differed; Fleet returns
// an error when anything did.
func Fleet(ctx context.Context, base *Client, token RoleToken, cfg FleetConfig) (FleetReport, error) {
	if checkLoopback(base.URL) != nil {
		return FleetReport{}, fmt.Errorf("bench fleet: %s is not on a loopback address: the fleet loads only a server on this machine", base.URL)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return FleetReport{}, fmt.Errorf("bench fleet: %w", err)
	}
	r, err := newFleetRun(base, token, cfg)
	if err != nil {
		return FleetReport{}, err
	}
	rep := FleetReport{Config: cfg}
	r.logf("seeding %d tenant(s)", cfg.Tenants)
	if err := r.seed(ctx); err != nil {
		return rep, fmt.Errorf("bench fleet: seeding: %w", err)
	}
	r.logf("%d devices (%d to %d of %d), %d streaming when online; schedule runs %s", cfg.Devices,
		cfg.DeviceOffset, cfg.DeviceOffset+cfg.Devices-1, cfg.total(), r.streamingDevices(), cfg.Duration)
	r.runSchedule(ctx)
	r.logf("schedule over: every device goes online and syncs")
	began := time.Now()
	r.settle(ctx)
	rep.Convergence = r.checkConvergence(ctx)
	rep.Convergence.Duration = time.Since(began)
	r.fillReport(&rep)
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}
	if c := rep.Convergence; !c.Converged() {
		return rep, fmt.Errorf("bench fleet: not converged: %d of %d devices differ from the server's view, %d users' views differ from their sets, %d tenants from the model, %d devices could not sync",
			c.Mismatched, c.Devices, c.SetMismatched, c.TenantsMismatched, c.Unsynced)
	}
	return rep, nil
}

// fleetRun is one process's share of a run.
type fleetRun struct {
	cfg     FleetConfig
	base    *Client
	token   RoleToken
	wsURL   string
	dialer  *websocket.Dialer
	devices []*device
	techs   map[int][]int // technicians of each tenant, by user
	stats   *fleetStats
	sched   *scheduler
	readers sync.WaitGroup // stream readers
	began   time.Time
}

func newFleetRun(base *Client, token RoleToken, cfg FleetConfig) (*fleetRun, error) {
	wsURL, err := websocketURL(base.URL)
	if err != nil {
		return nil, err
	}
	r := &fleetRun{cfg: cfg, base: base, token: token, wsURL: wsURL, stats: newFleetStats(),
		dialer: &websocket.Dialer{
			Subprotocols:     []string{"graphql-transport-ws"},
			HandshakeTimeout: 30 * time.Second,
			ReadBufferSize:   1024,
			WriteBufferSize:  1024,
			WriteBufferPool:  &sync.Pool{},
		},
	}
	r.devices = make([]*device, cfg.Devices)
	r.techs = map[int][]int{}
	for i := range r.devices {
		r.devices[i] = newDevice(r, i)
		if t := cfg.tenantOf(r.devices[i].user); r.techs[t] == nil {
			r.techs[t] = cfg.techniciansOf(t)
		}
	}
	return r, nil
}

func (r *fleetRun) logf(format string, args ...any) {
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, "%s bench fleet: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
}

func (r *fleetRun) streamingDevices() int {
	n := 0
	for _, d := range r.devices {
		if d.streams {
			n++
		}
	}
	return n
}

// as returns a client signed for a user of a tenant.
func (r *fleetRun) as(tenant, user, role string) *Client {
	c := *r.base
	if role == "none" {
		role = ""
	}
	c.Token = r.token(tenant, user, role)
	return &c
}

// seed writes the tenants' sites and the shared work orders and checklist
// items of this process's users, as a caller that syncs the whole tenant.
// A document that is already there (another process's sites, a run
// restarted under the same id) is left as it is.
func (r *fleetRun) seed(ctx context.Context) error {
	cfg := r.cfg
	users := map[int][]int{} // tenant → this process's users
	for _, d := range r.devices {
		u := cfg.userOf(d.id)
		if d.id%cfg.DevicesPerUser == 0 {
			users[cfg.tenantOf(u)] = append(users[cfg.tenantOf(u)], u)
		}
	}
	tenants := make([]int, 0, len(users))
	for t := range users {
		tenants = append(tenants, t)
	}
	slices.Sort(tenants)
	return runPool(ctx, min(8, len(tenants)), len(tenants), func(i int) error {
		t := tenants[i]
		c := r.as(cfg.tenantName(t), "fleet-seed", "none")
		var sites, wos, cis []map[string]any
		for s := range cfg.Sites {
			sites = append(sites, map[string]any{"newDocumentState": fleetSite(s)})
		}
		for _, u := range users[t] {
			for k := range cfg.Shared {
				wos = append(wos, map[string]any{"newDocumentState": cfg.sharedWorkOrder(u, k)})
				for i := range checklistPerWorkOrder {
					cis = append(cis, map[string]any{"newDocumentState": sharedChecklistItem(u, k, i)})
				}
			}
		}
		for _, p := range []struct {
			col  int
			rows []map[string]any
		}{{colSites, sites}, {colWorkOrders, wos}, {colChecklistItems, cis}} {
			for s := 0; s < len(p.rows); s += 1000 {
				q := fleetCollections[p.col].pushMutation
				if err := c.Do(ctx, q, map[string]any{"rows": p.rows[s:min(len(p.rows), s+1000)]}, nil); err != nil {
					return fmt.Errorf("%s: %s: %w", cfg.tenantName(t), fleetCollections[p.col].plural, err)
				}
			}
		}
		return nil
	})
}

// runPool calls f(0..n-1) from workers goroutines and returns the first error.
func runPool(ctx context.Context, workers, n int, f func(i int) error) error {
	if n == 0 {
		return nil
	}
	next := make(chan int)
	var once sync.Once
	var firstErr error
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range max(1, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					once.Do(func() { firstErr = err; cancel() })
				}
			}
		}()
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = context.Cause(ctx)
	}
	return firstErr
}

// runSchedule runs the devices' schedule for cfg.Duration: a scheduler
// hands each device's due actions (go online, go offline, edit, poll,
// reconnect) to a pool of workers, so a device costs a goroutine only
// while it streams (its websocket reader).
func (r *fleetRun) runSchedule(ctx context.Context) {
	cfg := r.cfg
	r.began = time.Now()
	r.sched = newScheduler(cfg.Workers)
	for _, d := range r.devices {
		d.startSchedule(r.began)
	}
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	work := r.sched.run(runCtx)
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ev := range work {
				r.stats.observe("late", time.Since(ev.at))
				r.devices[ev.device].handle(ctx, ev)
			}
		}()
	}
	stop := r.progress(runCtx)
	wg.Wait()
	stop()
}

// progress writes a line every cfg.ProgressEvery until ctx ends; the
// returned function waits for it to stop.
func (r *fleetRun) progress(ctx context.Context) func() {
	done := make(chan struct{})
	if r.cfg.Progress == nil {
		close(done)
		return func() {}
	}
	go func() {
		defer close(done)
		tick := time.NewTicker(r.cfg.ProgressEvery)
		defer tick.Stop()
		last := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				fmt.Fprintln(r.cfg.Progress, r.stats.line(now.Sub(r.began), now.Sub(last),
					int(r.stats.online.Load()), int(r.stats.streaming.Load()), len(r.devices)))
				last = now
			}
		}
	}()
	return func() { <-done }
}

// expRand is an exponentially distributed duration of mean m.
func expRand(m time.Duration) time.Duration {
	if m <= 0 {
		return 0
	}
	return time.Duration(math.Min(rand.ExpFloat64(), 20) * float64(m))
}

// settle ends the run as the issue asks: every device goes online (its
// stream closed, so what it holds comes from pulls alone), pushes what it
// has pending, and once every device has pushed, pulls until caught up.
// Pushes settle nothing after the first round unless they failed, so the
// pulls see the final state.
func (r *fleetRun) settle(ctx context.Context) {
	workers := r.cfg.Workers
	_ = runPool(ctx, workers, len(r.devices), func(i int) error {
		r.devices[i].goOfflineForCheck()
		return nil
	})
	r.readers.Wait()
	for round := 0; round < 3; round++ {
		_ = runPool(ctx, workers, len(r.devices), func(i int) error {
			r.devices[i].finalPush(ctx)
			return nil
		})
	}
	_ = runPool(ctx, workers, len(r.devices), func(i int) error {
		r.devices[i].finalPull(ctx)
		return nil
	})
}

func (r *fleetRun) fillReport(rep *FleetReport) {
	s := r.stats
	rep.Elapsed = time.Since(r.began)
	rep.Devices = len(r.devices)
	rep.StreamingDevices = r.streamingDevices()
	rep.Counts = s.counts()
	rep.Latency = map[string]LatencySummary{}
	for _, v := range fleetVerbs {
		rep.Latency[v] = s.total[v].summary()
	}
	rep.CloseCodes = s.closeCodes()
	rep.FirstError = s.firstError()
}

// fleetCollection is one synced collection as the fleet speaks to it.
type fleetCollection struct {
	plural, pullQuery, pushMutation, streamSubscription string
}

const (
	colSites = iota
	colWorkOrders
	colChecklistItems
	colNotes
	numFleetCollections
)

var fleetCollections = func() [numFleetCollections]fleetCollection {
	var out [numFleetCollections]fleetCollection
	for i, p := range []struct{ typ, plural string }{{"Site", "Sites"}, {"WorkOrder", "WorkOrders"}, {"ChecklistItem", "ChecklistItems"}, {"Note", "Notes"}} {
		fields := pullQueries[p.plural]
		out[i] = fleetCollection{
			plural: p.plural,
			pullQuery: fmt.Sprintf(`query($cp: CheckpointInput, $limit: Int!) { r: pull%s(checkpoint: $cp, limit: $limit) { documents { %s } checkpoint { cursor } } }`,
				p.plural, fields),
			pushMutation:       fmt.Sprintf(`mutation($rows: [%sPushRow!]!) { r: push%s(rows: $rows) { %s } }`, p.typ, p.plural, fields),
			streamSubscription: fmt.Sprintf(`subscription { r: stream%s { documents { %s } checkpoint { cursor } } }`, p.plural, fields),
		}
	}
	return out
}()

// collectionByName is a stream subscription's id back to its collection.
func collectionByName(id string) (int, bool) {
	for i, c := range fleetCollections {
		if strings.EqualFold(c.plural, id) {
			return i, true
		}
	}
	return 0, false
}
