// Command gqlgenbase is the plain gqlgen baseline that scripts/bench-peers.sh
// measures Tidemark's stream against: gqlgen's default server setup and
// websocket transport, a subscription with the payload shape of Tidemark's
// streamWorkOrders, and a pushWorkOrders mutation that broadcasts from
// memory. No database, no auth, no sync rules: what is left is the cost of
// gqlgen executing and encoding a subscription event per subscriber and
// writing it, which is the floor Tidemark's fan-out is compared with.
//
//	go run ./loadtest/peers/gqlgenbase -addr 127.0.0.1:18490
//	tidemark bench stream --url http://127.0.0.1:18490/graphql --jwt-secret any-secret-of-32-characters-long
package main

//go:generate go tool gqlgen generate --config gqlgen.yml

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/tidemark/tidemark/loadtest/peers/gqlgenbase/graph"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18490", "listen address")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := &http.Server{Handler: newHandler(newHub())}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	fmt.Printf("gqlgen baseline listening on http://%s/graphql (pid %d)\n", ln.Addr(), os.Getpid())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// newHandler is gqlgen's default server (what handler.NewDefaultServer
// sets up, written out as gqlgen's docs now advise) on /graphql. The one
// addition is an InitFunc that notes when the connection began (see hub).
func newHandler(h *hub) http.Handler {
	srv := handler.New(graph.NewExecutableSchema(graph.Config{Resolvers: &resolver{hub: h}}))
	srv.AddTransport(transport.Websocket{
		KeepAlivePingInterval: 10 * time.Second,
		InitFunc: func(ctx context.Context, p transport.InitPayload) (context.Context, *transport.InitPayload, error) {
			return context.WithValue(ctx, connectedAtKey{}, time.Now()), nil, nil
		},
	})
	srv.AddTransport(transport.Options{})
	srv.AddTransport(transport.GET{})
	srv.AddTransport(transport.POST{})
	srv.AddTransport(transport.MultipartForm{})
	srv.SetQueryCache(lru.New[*ast.QueryDocument](1000))
	srv.Use(extension.Introspection{})
	srv.Use(extension.AutomaticPersistedQuery{Cache: lru.New[string](100)})
	mux := http.NewServeMux()
	mux.Handle("/graphql", srv)
	return mux
}

type connectedAtKey struct{}

// subscriberBuffer is how many events wait for a slow subscriber before
// further ones are dropped for it (the load generator counts them lost):
// the broadcast never blocks the publisher.
const subscriberBuffer = 64

// recentEvents is how many past events the hub keeps to replay.
const recentEvents = 256

// hub broadcasts each published bulk to every open subscription. As
// Tidemark's stream does, a subscription starts where its connection
// began: events published between connection_init and the subscribe
// message (which has no acknowledgement) are replayed to it, so a client
// that pushes once it is connected sees its push.
type hub struct {
	mu     sync.RWMutex
	subs   map[chan *graph.WorkOrderPullBulk]struct{}
	recent []event // the last recentEvents events, oldest first
	cursor int64
}

type event struct {
	at   time.Time
	bulk *graph.WorkOrderPullBulk
}

func newHub() *hub { return &hub{subs: map[chan *graph.WorkOrderPullBulk]struct{}{}} }

func (h *hub) subscribe(ctx context.Context) <-chan *graph.WorkOrderPullBulk {
	ch := make(chan *graph.WorkOrderPullBulk, subscriberBuffer)
	since, _ := ctx.Value(connectedAtKey{}).(time.Time)
	h.mu.Lock()
	if !since.IsZero() {
		for _, e := range h.recent {
			if !e.at.Before(since) && len(ch) < cap(ch) {
				ch <- e.bulk
			}
		}
	}
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	go func() {
		<-ctx.Done()
		h.mu.Lock()
		delete(h.subs, ch)
		h.mu.Unlock()
		close(ch)
	}()
	return ch
}

func (h *hub) publish(docs []*graph.WorkOrder, at time.Time) {
	h.mu.Lock()
	h.cursor++
	b := &graph.WorkOrderPullBulk{Documents: docs, Checkpoint: &graph.Checkpoint{Cursor: strconv.FormatInt(h.cursor, 10)}}
	if len(h.recent) == recentEvents {
		h.recent = append(h.recent[:0], h.recent[1:]...)
	}
	h.recent = append(h.recent, event{at: at, bulk: b})
	for ch := range h.subs {
		select {
		case ch <- b:
		default:
		}
	}
	h.mu.Unlock()
}

func (h *hub) count() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.subs)
}

type resolver struct{ hub *hub }

func (r *resolver) Mutation() graph.MutationResolver         { return r }
func (r *resolver) Query() graph.QueryResolver               { return r }
func (r *resolver) Subscription() graph.SubscriptionResolver { return r }

// PushWorkOrders stamps each row with the time now, as Tidemark sets
// updatedAt just before its commit, so the load generator's latency is
// measured from the same point.
func (r *resolver) PushWorkOrders(ctx context.Context, rows []*graph.WorkOrderPushRow) ([]*graph.WorkOrder, error) {
	now := time.Now()
	docs := make([]*graph.WorkOrder, len(rows))
	for i, row := range rows {
		n := row.NewDocumentState
		docs[i] = &graph.WorkOrder{ID: n.ID, SiteID: n.SiteID, Title: n.Title, Description: n.Description, Status: n.Status,
			Priority: n.Priority, AssigneeID: n.AssigneeID, DueAt: n.DueAt, UpdatedAt: now, Deleted: n.Deleted}
	}
	r.hub.publish(docs, now)
	return []*graph.WorkOrder{}, nil
}

func (r *resolver) Subscribers(ctx context.Context) (int, error) { return r.hub.count(), nil }

func (r *resolver) StreamWorkOrders(ctx context.Context) (<-chan *graph.WorkOrderPullBulk, error) {
	return r.hub.subscribe(ctx), nil
}
