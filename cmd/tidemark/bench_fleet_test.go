package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/db/dbtest"
	"github.com/tidemark/tidemark/loadtest"
)

func TestBenchFleetConvergesAndWritesItsReportAsJSON(t *testing.T) {
	cfg := defaultConfig(t)
	cfg.DatabaseURL = dbtest.URL(t)
	cfg.JWTSecret = testSecret
	m := startMain(t, cfg)
	file := filepath.Join(t.TempDir(), "fleet.json")
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"bench", "fleet", "--url", m.url() + "/graphql", "--jwt-secret", testSecret,
		"--devices", "6", "--roles", "technician=1,none=1", "--duration", "1s", "--ramp", "100ms", "--online-fraction", "0.5",
		"--online-mean", "300ms", "--edit-rate", "2", "--poll-every", "200ms", "--json", file}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "CONVERGED: 6 of 6 devices") {
		t.Errorf("the report does not say the fleet converged:\n%s", stdout.String())
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var rep loadtest.FleetReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Convergence.Matched != 6 || rep.Counts.Edits == 0 || rep.Config.OfflineMean != rep.Config.OnlineMean {
		t.Errorf("JSON report: %d matched, %d edits, offline mean %s; want 6, some, and the online mean (--online-fraction 0.5)",
			rep.Convergence.Matched, rep.Counts.Edits, rep.Config.OfflineMean)
	}
}

func TestBenchFleetRefusesARoleItHasNoModelOf(t *testing.T) {
	for _, roles := range []string{"auditor=1", "technician", "technician=-1"} {
		err := run(context.Background(), []string{"bench", "fleet", "--url", "http://127.0.0.1:1/graphql", "--jwt-secret", testSecret, "--roles", roles}, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "role") {
			t.Errorf("--roles %s: err = %v, want a refusal naming the role", roles, err)
		}
	}
}
