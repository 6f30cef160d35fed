package livesync_test

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/livesync"
)

// endlessStore serves an endless run of one-document changes from memory,
// so a scope told of a far head reads and fans out without pause.
type endlessStore struct{}

func (endlessStore) ScopeHead(ctx context.Context, _ string, _ *collections.Collection) (int64, error) {
	return 0, ctx.Err()
}

func (endlessStore) ChangesSince(ctx context.Context, _ string, _ *collections.Collection, after int64, _ int) ([]collections.Document, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return []collections.Document{{ID: fmt.Sprint("n", after+1), Change: after + 1}}, nil
}

// A subscriber that joins a running scope with a start of its own (a
// connection's heads) is the scope's to update from the moment it is added.
// Under -race this catches Subscribe touching the subscriber's state after
// that moment without the scope's lock: the busy scope takes the lock
// between Subscribe adding the newcomer and returning, again and again.
func TestJoiningABusyScopeWithAStartIsRaceFree(t *testing.T) {
	hub := livesync.New(endlessStore{}, livesync.Options{})
	t.Cleanup(hub.Close)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	busy := make(chan struct{})
	var once atomic.Bool
	keepsScopeRunning := func(*livesync.Event) bool {
		if once.CompareAndSwap(false, true) {
			close(busy)
		}
		return true
	}
	if err := hub.Subscribe(ctx, "t", collections.Note, wholeTenant, keepsScopeRunning); err != nil {
		t.Fatal(err)
	}
	hub.Notify("t", collections.Note, math.MaxInt64) // work without end
	select {
	case <-busy:
	case <-time.After(10 * time.Second):
		t.Fatal("the scope delivered nothing")
	}

	// Each newcomer's start is ahead of the scope, so the scope takes it
	// into step first thing on its next round (nothing to read for it
	// alone). All but the last leave at once; the last must get the events
	// that follow.
	join := func(deliver livesync.Deliver) context.CancelFunc {
		t.Helper()
		subCtx, leave := context.WithCancel(ctx)
		ahead := []collections.ScopeHead{{TenantID: "t", Collection: collections.Note.Name, Change: math.MaxInt64}}
		if err := hub.Subscribe(livesync.WithStart(subCtx, "t", ahead), "t", collections.Note, wholeTenant, deliver); err != nil {
			t.Fatal(err)
		}
		return leave
	}
	for range 10000 {
		join(func(*livesync.Event) bool { return true })()
	}
	got := make(chan struct{}, 1)
	defer join(func(*livesync.Event) bool {
		select {
		case got <- struct{}{}:
		default:
		}
		return true
	})()
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("a newcomer got no event from the running scope")
	}
}

func (endlessStore) BucketChangesSince(ctx context.Context, _ string, _ *collections.Collection, _ string, after int64, _ int) ([]collections.Document, int64, error) {
	return nil, after, nil
}
