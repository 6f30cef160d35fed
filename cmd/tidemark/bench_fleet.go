package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/loadtest"
)

// benchFleet runs simulated devices against a running server and checks
// at the end that every device holds exactly its user's server view
// (docs/benchmarks.md, "Device fleet"). It exits non-zero when any does not.
func benchFleet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tidemark bench fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var target benchTarget
	target.bind(fs)
	var cfg loadtest.FleetConfig
	fs.IntVar(&cfg.Devices, "devices", 100, "simulated devices in this process")
	fs.IntVar(&cfg.Tenants, "tenants", 1, "tenants the users are spread over")
	fs.IntVar(&cfg.DevicesPerUser, "devices-per-user", 2, "devices of each user (1 to 16): they sync the same set and edit the same documents")
	roles := fs.String("roles", "technician=9,dispatcher=1", "users' roles by weight: technician (its assigned work orders, under the default sync rules), dispatcher and none (the whole tenant)")
	fs.IntVar(&cfg.Shared, "shared", 3, "work orders (2 checklist items each) of every user, seeded; overlapping edits pick from them")
	fs.IntVar(&cfg.Sites, "sites", 10, "sites of each tenant")
	fs.DurationVar(&cfg.OnlineMean, "online-mean", 20*time.Second, "mean time a device stays online (exponential)")
	fs.DurationVar(&cfg.OfflineMean, "offline-mean", 10*time.Second, "mean time a device stays offline (exponential)")
	onlineFraction := fs.Float64("online-fraction", 0, "if set (0 to 1), the share of the time a device is online: sets --offline-mean from --online-mean")
	fs.DurationVar(&cfg.Ramp, "ramp", 10*time.Second, "the devices' first transitions are spread over this long")
	fs.DurationVar(&cfg.Duration, "duration", 60*time.Second, "how long the schedule runs before every device syncs and the stores are checked")
	fs.Float64Var(&cfg.EditRate, "edit-rate", 0.05, "edits per device per second, online and offline")
	fs.Float64Var(&cfg.Overlap, "overlap", 0.3, "probability that an edit hits a document other devices edit too (conflicts and merges)")
	fs.Float64Var(&cfg.Reassign, "reassign", 0.2, "probability that a dispatcher's edit of a shared work order reassigns it to another technician (sets change; removals)")
	fs.Float64Var(&cfg.Stream, "stream", 0.5, "fraction of devices that hold a live stream (one websocket) while online; the others poll")
	fs.DurationVar(&cfg.PollEvery, "poll-every", 10*time.Second, "how often an online device without a stream pulls")
	fs.IntVar(&cfg.PullLimit, "pull-limit", 200, "documents per pull page")
	fs.IntVar(&cfg.Workers, "workers", 128, "device actions run at once")
	fs.IntVar(&cfg.Processes, "processes", 1, "processes sharing this run (same --run-id, each with --devices devices)")
	fs.IntVar(&cfg.ProcessIndex, "process-index", 0, "this process, 0 to --processes-1: its devices are ids index×devices onwards")
	fs.IntVar(&cfg.DeviceOffset, "device-offset", 0, "global id of this process's first device, instead of --process-index×--devices (a multiple of --devices-per-user)")
	fs.StringVar(&cfg.RunID, "run-id", "", "names the run's tenants; required with --processes > 1, the same in every process")
	fs.DurationVar(&cfg.Settle, "settle", 0, "how long the check pulls again devices that differ, while other processes finish (default 60s with --processes > 1)")
	jsonFile := fs.String("json", "", "also write the report as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.OverlapSet, cfg.StreamSet, cfg.ReassignSet = true, true, true
	mix, err := parseRoles(*roles)
	if err != nil {
		return fmt.Errorf("bench fleet: --roles: %w", err)
	}
	cfg.Roles = mix
	if f := *onlineFraction; f != 0 {
		if f <= 0 || f >= 1 {
			return fmt.Errorf("bench fleet: --online-fraction must be between 0 and 1, exclusive")
		}
		cfg.OfflineMean = time.Duration(float64(cfg.OnlineMean) * (1 - f) / f)
	}
	sign, err := target.roleSigner(cfg.Duration + cfg.Settle + 2*time.Hour)
	if err != nil {
		return err
	}
	cfg.Progress = stderr
	// One idle connection kept per worker, so that the workers do not
	// open and close connections (and leave TIME_WAIT sockets) all run.
	client := target.client()
	client.HTTP.Transport = &http.Transport{MaxIdleConnsPerHost: max(64, cfg.Workers)}
	rep, runErr := loadtest.Fleet(ctx, client, sign, cfg)
	fmt.Fprintln(stdout, rep)
	if *jsonFile != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err == nil {
			err = os.WriteFile(*jsonFile, append(b, '\n'), 0o644)
		}
		if err != nil && runErr == nil {
			runErr = fmt.Errorf("bench fleet: --json: %w", err)
		}
	}
	return runErr
}

// parseRoles reads "technician=9,dispatcher=1".
func parseRoles(s string) (map[string]int, error) {
	out := map[string]int{}
	for _, part := range strings.Split(s, ",") {
		name, weight, ok := strings.Cut(strings.TrimSpace(part), "=")
		w, err := strconv.Atoi(weight)
		if !ok || err != nil || w < 0 || name == "" {
			return nil, fmt.Errorf("%q is not role=weight", part)
		}
		out[name] = w
	}
	return out, nil
}

// roleSigner returns a function signing tokens for a user of a tenant with
// a role claim (none when role is empty), valid for ttl.
func (b *benchTarget) roleSigner(ttl time.Duration) (loadtest.RoleToken, error) {
	key, err := b.key()
	if err != nil {
		return nil, err
	}
	return func(tenant, user, role string) string {
		tok, err := auth.IssueWithRole(key, tenant, user, role, ttl, time.Now())
		if err != nil {
			panic(err) // only for an empty tenant or user, which the fleet never uses
		}
		return tok
	}, nil
}
