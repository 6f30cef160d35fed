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

// serverView pulls user u's whole set from a null checkpoint with a fresh
// token of the same user and role.
func (r *fleetRun) serverView(ctx context.Context, u int) (serverView, error) {
	cfg := r.cfg
	c := r.as(cfg.tenantName(cfg.tenantOf(u)), fleetUserID(u), cfg.roleOf(u))
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

// setDiff says how a user's server view differs from the model's set: the
// same live ids, no more, no fewer.
func (cfg FleetConfig) setDiff(u int, view serverView) string {
	want := cfg.expectedSet(u)
	var problems []string
	for col := range view {
		var missing, extra []string
		for id := range want[col] {
			if _, ok := view[col][id]; !ok {
				missing = append(missing, id)
			}
		}
		for id := range view[col] {
			if !want[col][id] {
				extra = append(extra, id)
			}
		}
		if len(missing)+len(extra) > 0 {
			problems = append(problems, fmt.Sprintf("%s: %d missing %s, %d extra %s", fleetCollections[col].plural,
				len(missing), firstFew(missing), len(extra), firstFew(extra)))
		}
	}
	return strings.Join(problems, "; ")
}

func firstFew(xs []string) string {
	slices.Sort(xs)
	return fmt.Sprint(xs[:min(3, len(xs))])
}

// checkConvergence compares every device's store with its user's server
// view, and every view with the model's set. Within cfg.Settle (runs of
// several processes, whose last writes may land after this process's last
// pull), a device that differs pulls again from its checkpoint and is
// compared with a fresh view.
func (r *fleetRun) checkConvergence(ctx context.Context) ConvergenceReport {
	cfg := r.cfg
	byUser := map[int][]*device{}
	var users []int
	for _, d := range r.devices {
		if byUser[d.user] == nil {
			users = append(users, d.user)
		}
		byUser[d.user] = append(byUser[d.user], d)
	}
	rep := ConvergenceReport{Devices: len(r.devices), Users: len(users)}
	var mu sync.Mutex
	problem := func(format string, args ...any) {
		if len(rep.Problems) < maxProblems {
			rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...))
		}
	}
	deadline := time.Now().Add(cfg.Settle)
	_ = runPool(ctx, min(cfg.Workers, 32), len(users), func(i int) error {
		u := users[i]
		devs := byUser[u]
		who := fmt.Sprintf("%s (%s) of %s", fleetUserID(u), cfg.roleOf(u), cfg.tenantName(cfg.tenantOf(u)))
		for attempt := 0; ; attempt++ {
			view, err := r.serverView(ctx, u)
			if err != nil {
				mu.Lock()
				rep.Unsynced += len(devs)
				problem("%s: the server's view could not be read: %v", who, err)
				mu.Unlock()
				return nil
			}
			setProblem := cfg.setDiff(u, view)
			var differ []string
			var unsynced int
			for _, d := range devs {
				if d.unsynced {
					unsynced++
				} else if p := d.diff(view); p != "" {
					differ = append(differ, fmt.Sprintf("device %d: %s", d.id, p))
				}
			}
			if (len(differ) > 0 || setProblem != "") && time.Now().Before(deadline) && ctx.Err() == nil {
				time.Sleep(time.Second) // other processes' last pushes are still landing
				for _, d := range devs {
					d.finalPull(ctx)
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
				problem("%s: the server's view differs from the set the sync rules give it: %s", who, setProblem)
			}
			mu.Unlock()
			return nil
		}
	})
	slices.Sort(rep.Problems)
	return rep
}
