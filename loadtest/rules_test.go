package loadtest

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/db/dbtest"
	"github.com/tidemark/tidemark/testenv"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// rulesClient returns a client of a real server on a fresh database and
// a signer of its tokens.
func rulesClient(t *testing.T) (*Client, RoleToken) {
	t.Helper()
	env := testenv.New(t, testenv.Options{})
	c := &Client{URL: env.Serve(t) + "/graphql", HTTP: &http.Client{Timeout: time.Minute}}
	return c, func(tenant, user, role string) string {
		tok, err := auth.IssueWithRole(testenv.Secret, tenant, user, role, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
}

func TestRulesBenchmarkMeasuresEveryPhaseOfATinyTenant(t *testing.T) {
	c, token := rulesClient(t)
	cfg := RulesConfig{WorkOrders: 60, Technicians: 6, Sites: 15, Batch: 7, SeedClients: 2, FirstSyncs: 3,
		PullLimit: 4, PushClients: 2, PushRounds: 2, PushBatches: 3, Reassigns: 5}
	rep, err := Rules(context.Background(), c, token, cfg)
	if err != nil {
		t.Fatalf("%v\n%s", err, rep)
	}
	t.Log("\n" + rep.String())

	rows := 15 + 60 + 3*60
	if len(rep.Seed) != 2 || rep.Seed[0].Rows != rows || rep.Seed[1].Rows != rows {
		t.Errorf("seeded %+v, want two tenants of %d rows", rep.Seed, rows)
	}
	// Every pulled set was checked document by document against the model;
	// these are the counts of a technician of 10 work orders.
	if d := rep.FirstSync.Docs; d.WorkOrders != 10 || d.ChecklistItems != 30 || d.Notes != 0 || d.Sites < 1 || d.Sites > 10 {
		t.Errorf("a technician's first sync got %s, want 10 work orders, 30 checklist items and their sites", d)
	}
	if rep.FirstSync.Time.Count != 3 || rep.FirstSync.DocsPerSecond <= 0 {
		t.Errorf("first sync timed %d technicians at %.0f docs/s, want 3 and a rate", rep.FirstSync.Time.Count, rep.FirstSync.DocsPerSecond)
	}
	if w := rep.FirstSync.WholeDocs; w.WorkOrders != 60 || w.ChecklistItems != 180 || w.Sites != 15 {
		t.Errorf("a dispatcher's first sync got %s, want the whole tenant", w)
	}
	if len(rep.Push) != 3 {
		t.Fatalf("push variants %+v, want technician, dispatcher and whole tenant", rep.Push)
	}
	for _, p := range rep.Push {
		if len(p.RoundRates) != 2 || p.Push.Count != 2*2*3 || p.Median() <= 0 {
			t.Errorf("push %s: %d rounds, %d pushes, median %.0f; want 2 rounds of 2×3 pushes", p.Variant, len(p.RoundRates), p.Push.Count, p.Median())
		}
	}
	if rep.Reassign.Count != 5 || rep.Edit.Count != 5 || rep.Verified != 2 {
		t.Errorf("%d reassignments, %d edits, %d sets verified; want 5, 5, 2", rep.Reassign.Count, rep.Edit.Count, rep.Verified)
	}
}

// The control: the set check fails when a caller gets more than a
// technician's rows (a whole-tenant pull) or misses some of them.
func TestRulesBenchmarkSetCheckCatchesAWrongSet(t *testing.T) {
	c, token := rulesClient(t)
	cfg, err := RulesConfig{WorkOrders: 20, Technicians: 4, Sites: 5, Batch: 50, FirstSyncs: 2, PushClients: 2}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	r := newRulesRun(c, token, cfg)
	ctx := context.Background()
	if _, err := r.seedTenants(ctx); err != nil {
		t.Fatal(err)
	}
	want := r.expectedSet(1)

	tech, _, err := pullSet(ctx, r.as(rulesTenant, techID(1), "technician"), 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkSet(tech, want); err != nil {
		t.Fatalf("the technician's own set fails the check: %v", err)
	}

	whole, _, err := pullSet(ctx, r.as(rulesTenant, "office", "dispatcher"), 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkSet(whole, want); err == nil || !strings.Contains(err.Error(), "WorkOrders: 0 missing [], 15 extra") {
		t.Errorf("a dispatcher's whole tenant passed as technician 1's set: %v", err)
	}

	delete(tech["ChecklistItems"], "ci-1-2")
	if err := checkSet(tech, want); err == nil || !strings.Contains(err.Error(), "ChecklistItems: 1 missing [ci-1-2]") {
		t.Errorf("a set missing a checklist item passed: %v", err)
	}
}

func TestRulesBenchmarkRefusesAServerElsewhere(t *testing.T) {
	for _, u := range []string{"http://10.0.0.7:8080/graphql", "https://tidemark.example/graphql"} {
		_, err := Rules(context.Background(), &Client{URL: u}, nil, RulesConfig{WorkOrders: 10, Technicians: 2, Sites: 2})
		if err == nil || !strings.Contains(err.Error(), "not a loopback address") {
			t.Errorf("%s: err = %v, want a refusal", u, err)
		}
	}
	for _, u := range []string{"http://127.0.0.1:8080/graphql", "http://localhost:8080/graphql", "http://[::1]:8080/graphql"} {
		if err := checkLoopback(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}
