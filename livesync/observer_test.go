package livesync_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
	"github.com/tidemark/tidemark/livesync"
	"github.com/tidemark/tidemark/syncengine"
)

// observed records what the hub reports to its Observer.
type observed struct {
	mu      sync.Mutex
	fanOuts []time.Duration
	drops   []string
}

func (o *observed) observer() livesync.Observer {
	return livesync.Observer{
		FanOut: func(c *collections.Collection, lag time.Duration) {
			o.mu.Lock()
			defer o.mu.Unlock()
			if c == collections.Note {
				o.fanOuts = append(o.fanOuts, lag)
			}
		},
		Dropped: func(c *collections.Collection, why string) {
			o.mu.Lock()
			defer o.mu.Unlock()
			o.drops = append(o.drops, c.Name+": "+why)
		},
	}
}

// A fast and a slow subscriber: every event handed to the fast one is a
// fan-out with a lag no longer than the test itself, and the slow one's drop
// is reported with its reason. The hub's heads and subscriber counts, read
// at scrape time, follow.
func TestHubReportsFanOutLagDropsHeadsAndSubscribers(t *testing.T) {
	began := time.Now()
	d := dbtest.Open(t, db.PoolConfig{})
	obs := &observed{}
	store := newCountingStore(d)
	hub := livesync.New(store, livesync.Options{Observer: obs.observer()})
	t.Cleanup(hub.Close)
	engine := syncengine.New(d)
	engine.OnCommit(func(tenant string, c *collections.Collection, head int64, _ []collections.Document) {
		hub.Notify(tenant, c, head)
	})
	if _, ok := hub.KnownHead("t", collections.Note); ok {
		t.Fatal("a hub without subscribers knows a head")
	}

	disconnected := make(chan string, 1)
	slowCtx, cancelSlow := context.WithCancel(livesync.WithDisconnector(context.Background(), func(reason string) { disconnected <- reason }))
	defer cancelSlow()
	var slowAccepted atomic.Int32
	slow := func(*livesync.Event) bool { return slowAccepted.Add(1) <= 1 }
	fast := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := hub.Subscribe(slowCtx, "t", collections.Note, wholeTenant, slow); err != nil {
		t.Fatal(err)
	}
	if err := hub.Subscribe(ctx, "t", collections.Note, wholeTenant, fast.deliver); err != nil {
		t.Fatal(err)
	}
	if got := hub.SubscribersByCollection(); got[collections.Note.Name] != 2 || len(got) != 1 {
		t.Fatalf("SubscribersByCollection = %v, want Note: 2", got)
	}
	store.waitScopesStarted(t, 1)
	for i := range 3 {
		push(t, engine, "t", note(fmt.Sprintf("n%d", i), "x"))
		fast.waitFor(t, i+1)
	}
	select {
	case <-disconnected:
	case <-time.After(5 * time.Second):
		t.Fatal("the slow subscriber was not disconnected")
	}

	obs.mu.Lock()
	fanOuts, drops := slices.Clone(obs.fanOuts), slices.Clone(obs.drops)
	obs.mu.Unlock()
	// Three events to the fast subscriber, one to the slow one before it filled.
	if len(fanOuts) < 3 {
		t.Errorf("fan-outs observed = %d, want at least 3", len(fanOuts))
	}
	for _, lag := range fanOuts {
		if lag < 0 || lag > time.Since(began) {
			t.Errorf("fan-out lag %v is not within the test's own run", lag)
		}
	}
	if want := []string{"Note: " + livesync.DropSlow}; !slices.Equal(drops, want) {
		t.Errorf("drops = %v, want %v", drops, want)
	}
	head, ok := hub.KnownHead("t", collections.Note)
	if !ok || head < 3 {
		t.Errorf("KnownHead = %d, %v; want at least the third push's change", head, ok)
	}
	if got := hub.SubscribersByCollection(); got[collections.Note.Name] != 1 {
		t.Errorf("SubscribersByCollection after the drop = %v, want Note: 1", got)
	}
}
