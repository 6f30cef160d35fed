package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// maxProblems bounds the differences a convergence report spells out.
const maxProblems = 20

// serverView is a user's set as the server gives it: live documents by
// collection, canonical JSON by id.
type serverView [numFleetCollections]map[string]string

// pullView pulls a caller's whole set from a null checkpoint with a fresh
// token.
func (r *fleetRun) pullView(ctx context.Context, tenant, user, role string) (serverView, error) {
	c := r.as(tenant, user, role)
	var view serverView
	for col := range fleetCollections {
		docs := map[string]string{}
		var bad error
		_, err := pullPages(ctx, c, col, "", 1000, nil, func(raw json.RawMessage) {
			doc, err := parseDoc(raw)
			switch {
			case err != nil:
				bad = err
			case doc.deleted:
				delete(docs, doc.id)
			default:
				docs[doc.id] = doc.canonical
			}
		})
		if err == nil {
			err = bad
		}
		if err != nil {
			return view, err
		}
		view[col] = docs
	}
	return view, nil
}

// userView is user u's set, read with a fresh token of the same user and role.
func (r *fleetRun) userView(ctx context.Context, u int) (serverView, error) {
	cfg := r.cfg
	return r.pullView(ctx, cfg.tenantName(cfg.tenantOf(u)), fleetUserID(u), cfg.roleOf(u))
}

// tenantView is tenant t's whole set, read by a caller without a role.
func (r *fleetRun) tenantView(ctx context.Context, t int) (serverView, error) {
	return r.pullView(ctx, r.cfg.tenantName(t), "fleet-check", "none")
}

// diff says how the device's store differs from view ("" when it holds
// exactly the view's live documents, each in the same state).
func (d *device) diff(view serverView) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var problems []string
	for col, want := range view {
		var missing, extra, differ []string
		for id, doc := range want {
			e := d.store[col][id]
			switch {
			case e == nil:
				missing = append(missing, id)
			case e.local != doc:
				differ = append(differ, fmt.Sprintf("%s: device %s, server %s", id, e.local, doc))
			}
		}
		for id := range d.store[col] {
			if _, ok := want[id]; !ok {
				extra = append(extra, id)
			}
		}
		if len(missing)+len(extra)+len(differ) > 0 {
			problems = append(problems, fmt.Sprintf("%s: %d missing %s, %d extra %s, %d different %s", fleetCollections[col].plural,
				len(missing), firstFew(missing), len(extra), firstFew(extra), len(differ), firstFew(differ)))
		}
	}
	return strings.Join(problems, "; ")
}

// viewDiff says how got differs from want: the same live documents, each
// in the same state.
func viewDiff(want, got serverView) string {
	var problems []string
	for col := range want {
		var missing, extra, differ []string
		for id, doc := range want[col] {
			g, ok := got[col][id]
			switch {
			case !ok:
				missing = append(missing, id)
			case g != doc:
				differ = append(differ, id)
			}
		}
		for id := range got[col] {
			if _, ok := want[col][id]; !ok {
				extra = append(extra, id)
			}
		}
		if len(missing)+len(extra)+len(differ) > 0 {
			problems = append(problems, fmt.Sprintf("%s: %d missing %s, %d extra %s, %d different %s", fleetCollections[col].plural,
				len(missing), firstFew(missing), len(extra), firstFew(extra), len(differ), firstFew(differ)))
		}
	}
	return strings.Join(problems, "; ")
}

// idsDiff says how a view's live ids differ from want.
func idsDiff(want [numFleetCollections]map[string]bool, got serverView) string {
	var w serverView
	for col := range want {
		w[col] = map[string]string{}
		for id := range want[col] {
			w[col][id] = got[col][id] // content is not the model's to say
		}
	}
	return viewDiff(w, got)
}

func firstFew(xs []string) string {
	slices.Sort(xs)
	return fmt.Sprint(xs[:min(3, len(xs))])
}

// checkConvergence checks, for each tenant, that its whole view holds
// exactly the documents the run created; for each user, that its view is
// what the default sync rules give it from the tenant's whole view; and for
// each device, that its store equals its user's view. Within cfg.Settle
// (runs of several processes, whose last writes may land after this
// process's last pull), what differs is read again, and a device that
// differs pulls again from its checkpoint.
func (r *fleetRun) checkConvergence(ctx context.Context) ConvergenceReport {
	cfg := r.cfg
	byUser := map[int][]*device{}
	var users, tenants []int
	for _, d := range r.devices {
		if byUser[d.user] == nil {
			users = append(users, d.user)
			if t := cfg.tenantOf(d.user); !slices.Contains(tenants, t) {
				tenants = append(tenants, t)
			}
		}
		byUser[d.user] = append(byUser[d.user], d)
	}
	rep := ConvergenceReport{Devices: len(r.devices), Users: len(users), Tenants: len(tenants)}
	var mu sync.Mutex
	problem := func(format string, args ...any) {
		if len(rep.Problems) < maxProblems {
			rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...))
		}
	}
	deadline := time.Now().Add(cfg.Settle)
	again := func() bool {
		if !time.Now().Before(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(time.Second) // other processes' last pushes are still landing
		return true
	}
	workers := min(cfg.Workers, 32)

	wholes := map[int]serverView{}
	refs := &refCache{}
	_ = runPool(ctx, workers, len(tenants), func(i int) error {
		t := tenants[i]
		for {
			whole, err := r.tenantView(ctx, t)
			p := ""
			if err != nil {
				p = fmt.Sprintf("its whole view could not be read: %v", err)
			} else if d := idsDiff(cfg.tenantIDs(t), whole); d != "" {
				p = "its whole view differs from the documents the run created: " + d
			}
			if p != "" && again() {
				continue
			}
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				wholes[t] = whole
			}
			if p != "" {
				rep.TenantsMismatched++
				problem("%s: %s", cfg.tenantName(t), p)
			}
			return nil
		}
	})

	_ = runPool(ctx, workers, len(users), func(i int) error {
		u := users[i]
		t := cfg.tenantOf(u)
		devs := byUser[u]
		who := fmt.Sprintf("%s (%s) of %s", fleetUserID(u), cfg.roleOf(u), cfg.tenantName(t))
		mu.Lock()
		whole, ok := wholes[t]
		mu.Unlock()
		for attempt := 0; ; attempt++ {
			view, err := r.userView(ctx, u)
			if err != nil || !ok {
				mu.Lock()
				rep.Unsynced += len(devs)
				problem("%s: the server's view of it or of its tenant could not be read: %v", who, err)
				mu.Unlock()
				return nil
			}
			setProblem := viewDiff(cfg.rulesSet(u, whole, refs), view)
			var differ []string
			var unsynced int
			for _, d := range devs {
				if d.unsynced {
					unsynced++
				} else if p := d.diff(view); p != "" {
					differ = append(differ, fmt.Sprintf("device %d: %s", d.id, p))
				}
			}
			if (len(differ) > 0 || setProblem != "" || unsynced > 0) && again() {
				for _, d := range devs {
					d.finalPull(ctx)
				}
				if w, err := r.tenantView(ctx, t); err == nil {
					whole = w
				}
				continue
			}
			mu.Lock()
			rep.Unsynced += unsynced
			rep.Mismatched += len(differ)
			rep.Matched += len(devs) - len(differ) - unsynced
			if attempt > 0 && len(differ) == 0 {
				rep.Retries += len(devs)
			}
			for _, p := range differ {
				problem("%s, %s", who, p)
			}
			if setProblem != "" {
				rep.SetMismatched++
				problem("%s: the server's view differs from the set the sync rules give it from the tenant's: %s", who, setProblem)
			}
			mu.Unlock()
			return nil
		}
	})
	slices.Sort(rep.Problems)
	return rep
}
