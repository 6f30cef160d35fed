package loadtest

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// A fleet of 50 devices, five per user, on a short schedule in which every
// edit hits a document other devices edit too: the server merges and
// refuses edits, and every store ends up equal to its user's view.
func TestFleetWithFullOverlapMergesRefusesAndConverges(t *testing.T) {
	c, token := rulesClient(t)
	// Which of conflicts, merges, reassignments and removals a 3 s schedule
	// brings depends on how the devices' random steps fall, and a slow
	// machine (-race) takes fewer steps: a fresh run (its own tenants) goes
	// on until all four have happened, each run checked whole.
	var k FleetCounts
	for run := 1; ; run++ {
		var progress strings.Builder
		rep, err := Fleet(t.Context(), c, token, FleetConfig{
			Devices: 50, Tenants: 2, DevicesPerUser: 5, Roles: map[string]int{"technician": 4, "dispatcher": 1},
			Shared: 2, Sites: 4, Overlap: 1, OverlapSet: true, Reassign: 0.3, Stream: 0.5, StreamSet: true,
			OnlineMean: 400 * time.Millisecond, OfflineMean: 300 * time.Millisecond, Ramp: 100 * time.Millisecond,
			Duration: 3 * time.Second, EditRate: 3, PollEvery: 200 * time.Millisecond, PullLimit: 7, Workers: 16,
			Progress: &progress, ProgressEvery: 500 * time.Millisecond,
		})
		t.Logf("run %d:\n%s%s", run, progress.String(), rep.String())
		if err != nil {
			t.Fatal(err)
		}
		if n := rep.Counts; n.Pulls == 0 || n.Pushes == 0 || n.StreamEvents == 0 || rep.StreamingDevices == 0 || rep.StreamingDevices == 50 {
			t.Errorf("some sync did not run: %+v, %d streaming devices", n, rep.StreamingDevices)
		}
		if v := rep.Convergence; v.Matched != 50 || v.Users != 10 || !v.Converged() {
			t.Errorf("convergence %+v, want 50 devices of 10 users matched", v)
		}
		if !strings.Contains(progress.String(), "online ") || !strings.Contains(progress.String(), "conflicts ") {
			t.Errorf("no progress lines:\n%s", progress.String())
		}
		if _, err := json.Marshal(rep); err != nil {
			t.Errorf("the report does not encode as JSON: %v", err)
		}
		k.Conflicts += rep.Counts.Conflicts
		k.Merges += rep.Counts.Merges
		k.Reassigned += rep.Counts.Reassigned
		k.Dropped += rep.Counts.Dropped
		if t.Failed() || k.Conflicts > 0 && k.Merges > 0 && k.Reassigned > 0 && k.Dropped > 0 {
			return
		}
		if run == 4 {
			t.Fatalf("after %d runs: %d conflicts, %d merges, %d reassignments, %d documents dropped on removals; with every edit on a shared document, want all four",
				run, k.Conflicts, k.Merges, k.Reassigned, k.Dropped)
		}
	}
}

// The control: the convergence check fails when a device's store differs
// from the server (a document changed, one dropped) and when the server's
// view differs from the model's set.
func TestFleetConvergenceCheckCatchesATamperedStore(t *testing.T) {
	c, token := rulesClient(t)
	cfg, err := FleetConfig{Devices: 8, DevicesPerUser: 2, Roles: map[string]int{"technician": 1, "dispatcher": 1},
		Shared: 2, Sites: 3, Duration: time.Second, OnlineMean: 300 * time.Millisecond, OfflineMean: 200 * time.Millisecond,
		Ramp: 50 * time.Millisecond, EditRate: 4, Overlap: 0.5, Stream: 0.5, PollEvery: 100 * time.Millisecond, Workers: 4}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	r, err := newFleetRun(c, token, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := r.seed(ctx); err != nil {
		t.Fatal(err)
	}
	r.runSchedule(ctx)
	r.settle(ctx)
	if v := r.checkConvergence(ctx); v.Matched != 8 || !v.Converged() {
		t.Fatalf("the untampered fleet did not converge: %+v", v)
	}

	d := r.devices[3]
	own := d.store[colWorkOrders][ownWorkOrderID(d.id)]
	var doc map[string]any
	if err := decodeDoc(own.local, &doc); err != nil {
		t.Fatal(err)
	}
	doc["title"] = "changed on the device alone"
	own.local, own.master = canonicalDoc(doc), canonicalDoc(doc)
	for id := range d.store[colSites] {
		delete(d.store[colSites], id)
		break
	}
	v := r.checkConvergence(ctx)
	if v.Mismatched != 1 || v.Matched != 7 {
		t.Fatalf("a tampered store passed: %+v", v)
	}
	p := strings.Join(v.Problems, "\n")
	if !strings.Contains(p, "device 3:") || !strings.Contains(p, "WorkOrders: 0 missing [], 0 extra [], 1 different") || !strings.Contains(p, "Sites: 1 missing") {
		t.Errorf("the problems do not name the tampered documents:\n%s", p)
	}

	r.cfg.Shared = 3 // the model now expects a shared work order the server never had
	if v := r.checkConvergence(ctx); v.TenantsMismatched != 1 || !strings.Contains(strings.Join(v.Problems, "\n"), "differs from the documents the run created: WorkOrders: 4 missing") {
		t.Errorf("a tenant that lacks documents of the model passed: %+v", v)
	}
	r.cfg.Shared = 2

	// A technician's view against the rules applied to the tenant's view:
	// equal, and not once one of its work orders is given to someone else.
	whole, err := r.tenantView(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	tech := 1 // devices 2 and 3
	if cfg.roleOf(tech) != "technician" {
		t.Fatalf("user %d is a %s", tech, cfg.roleOf(tech))
	}
	view, err := r.userView(ctx, tech)
	if err != nil {
		t.Fatal(err)
	}
	if p := viewDiff(cfg.rulesSet(tech, whole, nil), view); p != "" || len(view[colWorkOrders]) == 0 {
		t.Fatalf("technician u1's view differs from its set: %s (%d work orders)", p, len(view[colWorkOrders]))
	}
	for id, doc := range whole[colWorkOrders] {
		if !strings.Contains(doc, `"assigneeId":"u1"`) {
			continue
		}
		whole[colWorkOrders][id] = strings.Replace(doc, `"assigneeId":"u1"`, `"assigneeId":"u3"`, 1)
		p := viewDiff(cfg.rulesSet(tech, whole, nil), view)
		if !strings.Contains(p, "WorkOrders: 0 missing [], 1 extra ["+id+"]") {
			t.Errorf("a work order the rules do not give u1 passed in its view: %q", p)
		}
		break
	}
}

func TestFleetRefusesAServerElsewhereAndABadMix(t *testing.T) {
	_, err := Fleet(context.Background(), &Client{URL: "http://10.0.0.7:8080/graphql"}, nil, FleetConfig{})
	if err == nil || !strings.Contains(err.Error(), "not on a loopback address") {
		t.Errorf("a server elsewhere: err = %v, want a refusal", err)
	}
	for _, cfg := range []FleetConfig{
		{Roles: map[string]int{"auditor": 1}},
		{Roles: map[string]int{"technician": 0}},
		{Processes: 2, Devices: 10}, // no run id
		{Processes: 2, Devices: 10, RunID: "x", ProcessIndex: 2},
		{DevicesPerUser: 17},
		{DevicesPerUser: 2, DeviceOffset: 3},
		{Overlap: 1.5},
	} {
		if _, err := cfg.withDefaults(); err == nil {
			t.Errorf("%+v was accepted", cfg)
		}
	}
}

// The model gives each user its role by weight and its set under the
// default rules: a technician its own work orders, checklist items and
// their sites; a dispatcher every user's documents of its tenant.
func TestFleetModelSpreadsRolesAndSets(t *testing.T) {
	cfg, err := FleetConfig{Devices: 12, Tenants: 2, DevicesPerUser: 2, Shared: 1, Sites: 3,
		Roles: map[string]int{"technician": 2, "dispatcher": 1}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	// users 0..5; tenant u%2; within a tenant the k-th user (u/2) is a
	// dispatcher when k%3 == 0 (roles in name order: dispatcher first).
	want := []string{"dispatcher", "dispatcher", "technician", "technician", "technician", "technician"}
	for u, role := range want {
		if got := cfg.roleOf(u); got != role {
			t.Errorf("user %d: role %s, want %s", u, got, role)
		}
	}
	ids := cfg.tenantIDs(0) // users 0, 2 and 4
	if len(ids[colWorkOrders]) != 3*(1+2) || !ids[colWorkOrders]["wo-d4"] || !ids[colWorkOrders]["wo-u2-0"] || len(ids[colChecklistItems]) != 3*2 || len(ids[colSites]) != 3 {
		t.Errorf("tenant 0's documents: %v", ids)
	}
	if techs := cfg.techniciansOf(0); len(techs) != 2 || techs[0] != 2 || techs[1] != 4 {
		t.Errorf("tenant 0's technicians: %v, want u2 and u4", techs)
	}
}
