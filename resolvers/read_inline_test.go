package resolvers_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/99designs/gqlgen/client"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/transport"

	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/dataloader"
	"github.com/tidemark/tidemark/graph"
	"github.com/tidemark/tidemark/readapi"
	"github.com/tidemark/tidemark/resolvers"
	"github.com/tidemark/tidemark/server"
)

// gatedSources serve the loaders from the real database, except that a
// read of a site (not node(id)'s probe of the sites) waits until a checklist read has begun: it proves the two
// were queued together, whatever the scheduling.
type gatedSources struct {
	dataloader.DocumentReader
	dataloader.ListReader
	once             sync.Once
	checklistStarted chan struct{}
}

func (g *gatedSources) GetDocuments(ctx context.Context, tenantID string, c *collections.Collection, ids []string) (map[string]collections.Document, error) {
	if c == collections.Site && slices.ContainsFunc(ids, func(id string) bool { return strings.HasPrefix(id, "site-") }) {
		select {
		case <-g.checklistStarted:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.DocumentReader.GetDocuments(ctx, tenantID, c, ids)
}

func (g *gatedSources) ListDocuments(ctx context.Context, tenantID string, c *collections.Collection, q readapi.ListQuery) ([]collections.Document, error) {
	if c == collections.ChecklistItem {
		g.once.Do(func() { close(g.checklistStarted) })
	}
	return g.ListReader.ListDocuments(ctx, tenantID, c, q)
}

// A work order no page primed (node(id)) has its relations resolved on one
// goroutine, one after another (collectiongen turns gqlgen's goroutine per
// field off for WorkOrder); the first relation queues the others, so its
// site is read while its checklist read is under way, in one batch window
// as before, instead of the checklist waiting for the site's window to
// end. The gate blocks the site read until the checklist read begins:
// without the queueing the request waits for its deadline and fails.
func TestUnprimedWorkOrderQueuesItsRelationsTogether(t *testing.T) {
	t.Parallel()
	env := newReadEnv(t, server.Config{})
	tenant := tenantOf(t)
	seedNestedPage(newAPI(t, env, tenant, "alice"), 3)

	gate := &gatedSources{DocumentReader: env.DB, ListReader: env.DB, checklistStarted: make(chan struct{})}
	srv := handler.New(graph.NewExecutableSchema(graph.Config{
		Resolvers:  &resolvers.Resolver{Sync: env.Sync, Read: readapi.New(env.DB), Sources: gate.sources()},
		Complexity: resolvers.Complexity(),
	}))
	srv.AddTransport(transport.POST{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a deadlock's bound, not a measurement
	defer cancel()
	c := client.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rctx := auth.WithIdentity(ctx, auth.Identity{UserID: "alice", TenantID: tenant, ExpiresAt: time.Now().Add(time.Hour)})
		srv.ServeHTTP(w, r.WithContext(dataloader.With(rctx, dataloader.New(gate.sources(), tenant))))
	}))
	var got struct {
		Node struct {
			Site      *struct{ Name string }
			Checklist []struct{ Label string }
		}
	}
	err := c.Post(`{ node(id: "wo-001") { ... on WorkOrder { site { name } checklist { label } } } }`, &got)
	if err != nil {
		t.Fatalf("node(id) with site and checklist: %v", err)
	}
	if got.Node.Site == nil || len(got.Node.Checklist) != 3 {
		t.Fatalf("site %v, %d checklist items; want a site and 3", got.Node.Site, len(got.Node.Checklist))
	}
}

func (g *gatedSources) sources() dataloader.Sources {
	return dataloader.Sources{Documents: g, Lists: g}
}

// The work orders of a pull page are marshalled one after another on one
// goroutine when they select only plain fields and relations (graph's
// marshalList); the first element's relation queues the relations of the
// whole page, so the page's checklists are one statement however many
// work orders it holds. Queueing only each element's own would send one
// statement per work order.
func TestUnprimedListQueuesTheRelationsOfEveryElement(t *testing.T) {
	t.Parallel()
	env := newReadEnv(t, server.Config{})
	a := newAPI(t, env, tenantOf(t), "alice")
	seedNestedPage(a, 20)
	data, stmts := a.countStatements(`{ pullWorkOrders(checkpoint: null, limit: 20) { documents { id site { name } checklist { label } } } }`, nil)
	var got struct {
		PullWorkOrders struct {
			Documents []struct {
				Site      *struct{ Name string }
				Checklist []struct{ Label string }
			}
		}
	}
	decodeInto(t, data, &got)
	if len(got.PullWorkOrders.Documents) != 20 {
		t.Fatalf("%d work orders, want 20", len(got.PullWorkOrders.Documents))
	}
	for i, d := range got.PullWorkOrders.Documents {
		if d.Site == nil || len(d.Checklist) != 3 {
			t.Fatalf("work order %d: site %v, %d checklist items; want a site and 3", i, d.Site, len(d.Checklist))
		}
	}
	checklists := 0
	for _, s := range stmts {
		if strings.Contains(s, "FROM checklist_items") {
			checklists++
		}
	}
	if checklists != 1 {
		t.Fatalf("a pull page of 20 work orders with checklists sent %d checklist statements, want 1:\n%s", checklists, strings.Join(stmts, "\n"))
	}
}
