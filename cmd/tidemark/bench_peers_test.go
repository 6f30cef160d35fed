package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/testenv"
)

// TestBenchPeerSeedsAndReadsTidemark runs the side-by-side driver as
// scripts/bench-peers.sh does: seed a tenant, read it in pages, and print
// the result line the script parses; a wrong --expect fails the run.
func TestBenchPeerSeedsAndReadsTidemark(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	url := env.Serve(t) + "/graphql"
	flags := []string{"--url", url, "--jwt-secret", string(testenv.Secret), "--tenant", "peers"}
	ctx := context.Background()
	var out, errs bytes.Buffer
	if err := bench(ctx, append([]string{"peer", "seed", "--work-orders", "120"}, flags...), &out, &errs); err != nil {
		t.Fatalf("seed: %v\n%s", err, errs.String())
	}
	out.Reset()
	if err := bench(ctx, append([]string{"peer", "pull", "--limit", "50", "--expect", "120"}, flags...), &out, &errs); err != nil {
		t.Fatalf("pull: %v\n%s", err, errs.String())
	}
	if !strings.Contains(out.String(), "\nresult docs=120 docs_per_s=") {
		t.Errorf("pull printed %q, want a result line with docs=120", out.String())
	}
	if err := bench(ctx, append([]string{"peer", "pull", "--limit", "50", "--expect", "121"}, flags...), &out, &errs); err == nil {
		t.Error("a pull that read 120 documents passed --expect 121")
	}
}

func TestBenchPeerRefusesAMissingTenantOrUnknownStep(t *testing.T) {
	var out, errs bytes.Buffer
	for _, args := range [][]string{
		{"peer"},
		{"peer", "read", "--jwt-secret", string(testenv.Secret)},
		{"peer", "sideways", "--jwt-secret", string(testenv.Secret), "--tenant", "t"},
	} {
		if err := bench(context.Background(), args, &out, &errs); err == nil {
			t.Errorf("bench %v passed", args)
		}
	}
}
