package loadtest

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// fleetEventKind is what a device does when its event is due.
type fleetEventKind uint8

const (
	evToggle    fleetEventKind = iota // go online, or offline
	evEdit                            // edit a document; push it when online
	evPoll                            // a device without a stream pulls
	evReconnect                       // open the stream again and resync after it dropped or a sync failed
)

type fleetEvent struct {
	at      time.Time
	device  int32
	kind    fleetEventKind
	session int32 // evPoll and evReconnect: the device's session they belong to
}

type eventHeap []fleetEvent

func (h eventHeap) Len() int           { return len(h) }
func (h eventHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h eventHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)        { *h = append(*h, x.(fleetEvent)) }
func (h *eventHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// scheduler hands due events to workers, in time order, from one
// goroutine: thousands of devices cost a heap entry each, not a goroutine
// or a timer.
type scheduler struct {
	mu     sync.Mutex
	events eventHeap
	wake   chan struct{}
	queue  int
}

func newScheduler(workers int) *scheduler {
	return &scheduler{wake: make(chan struct{}, 1), queue: workers}
}

// add schedules an event; safe from any goroutine.
func (s *scheduler) add(ev fleetEvent) {
	s.mu.Lock()
	heap.Push(&s.events, ev)
	first := s.events[0].at.Equal(ev.at)
	s.mu.Unlock()
	if first {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// run returns the channel of due events, closed when ctx ends; events
// still waiting then are dropped.
func (s *scheduler) run(ctx context.Context) <-chan fleetEvent {
	out := make(chan fleetEvent, s.queue)
	go func() {
		defer close(out)
		timer := time.NewTimer(time.Hour)
		defer timer.Stop()
		for {
			s.mu.Lock()
			var due *fleetEvent
			wait := time.Hour
			if len(s.events) > 0 {
				if d := time.Until(s.events[0].at); d <= 0 {
					ev := heap.Pop(&s.events).(fleetEvent)
					due = &ev
				} else {
					wait = d
				}
			}
			s.mu.Unlock()
			if due != nil {
				select {
				case out <- *due:
				case <-ctx.Done():
					return
				}
				continue
			}
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
			case <-timer.C:
			}
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
	}()
	return out
}
