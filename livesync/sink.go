package livesync

import (
	"context"
	"sync"
)

// A Sink receives a stream's events from the hub in place of a channel, so
// that a transport can serve thousands of subscriptions without a goroutine
// blocked on each one's channel, and execute and encode each event once per
// group of subscribers that would get the same bytes (Event.Encoded).
//
// The transport puts a Sink in the subscription's context (WithSink) with
// Deliver set; the stream resolver attaches, with Attach, the function that
// makes the subscription's next execution return a given event, and
// subscribes with Deliver. To encode an event for a subscriber the
// transport calls Prime and then runs the subscription's response handler
// once.
type Sink struct {
	// Deliver is what the hub calls with each event (see Deliver): it
	// must not block, and returns false when the subscriber cannot take
	// the event, so the hub drops it.
	Deliver Deliver
	// Life, if set, ends with the subscription and carries none of the
	// operation's values: the hub's unsubscribe hangs on it
	// (SubscribeContext) rather than on the operation's context, so a transport may let go of the operation's
	// state (gqlgen's operation and execution contexts) while the
	// subscription lives, and share one execution between subscribers.
	Life context.Context

	mu     sync.Mutex
	prime  func(*Event)
	buffer int
	scope  any
}

// SubscribeContext is the context a stream resolver subscribes the hub
// with: ctx itself without a Life, else Life with only what the hub reads
// of ctx (the connection's Disconnector and start heads), so the hub's
// subscriber keeps none of the operation's context alive.
func (s *Sink) SubscribeContext(ctx context.Context) context.Context {
	if s.Life == nil {
		return ctx
	}
	lean := s.Life
	if d := disconnectorFrom(ctx); d != nil {
		lean = context.WithValue(lean, disconnectorKey{}, d)
	}
	if st, ok := ctx.Value(startKey{}).(start); ok {
		lean = context.WithValue(lean, startKey{}, st)
	}
	return lean
}

// SetScope records which of the hub's scopes the subscription's events
// come from (a comparable value; equal for subscribers of the same
// tenant, collection and set). A transport shares one prepared execution
// only between subscribers with equal StreamKeys and scopes: each
// execution was prepared with one subscriber's context.
func (s *Sink) SetScope(scope any) {
	s.mu.Lock()
	s.scope = scope
	s.mu.Unlock()
}

// Scope is what SetScope recorded, nil if nothing.
func (s *Sink) Scope() any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.scope
}

type sinkKey struct{}

// WithSink makes a stream subscribed with ctx deliver to s.
func WithSink(ctx context.Context, s *Sink) context.Context {
	return context.WithValue(ctx, sinkKey{}, s)
}

// SinkFrom returns the Sink of ctx, nil without one.
func SinkFrom(ctx context.Context) *Sink {
	s, _ := ctx.Value(sinkKey{}).(*Sink)
	return s
}

// Attach records how to make the subscription's next execution return an
// event, and how many events the subscriber may have waiting (buffer; 0:
// the transport's own bound) before the hub must drop it. A resolver
// attaches before it subscribes, and detaches (nil) when the subscription
// fails.
func (s *Sink) Attach(prime func(*Event), buffer int) {
	s.mu.Lock()
	s.prime, s.buffer = prime, buffer
	s.mu.Unlock()
}

// Buffer is the number of events the subscriber may have waiting (0: no
// bound of its own).
func (s *Sink) Buffer() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buffer
}

// Attached reports whether a stream resolver took the sink.
func (s *Sink) Attached() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.prime != nil
}

// Prime makes the subscription's next execution return ev; false when no
// resolver is attached.
func (s *Sink) Prime(ev *Event) bool {
	s.mu.Lock()
	prime := s.prime
	s.mu.Unlock()
	if prime == nil {
		return false
	}
	prime(ev)
	return true
}

// encoding is one memo entry of Event.Encoded.
type encoding struct {
	mu   sync.Mutex
	done bool
	data []byte
}

// Encoded returns encode's result for key, computing it at most once per
// event and key while it succeeds: every subscriber whose operation has
// the same key gets the same bytes. A failed encode is not kept (the
// subscriber that ran it may have been leaving); the next caller runs its
// own. Callers with the same key wait for the one computing.
func (e *Event) Encoded(key string, encode func() ([]byte, error)) ([]byte, error) {
	e.encMu.Lock()
	if e.encoded == nil {
		e.encoded = make(map[string]*encoding, 1)
	}
	enc := e.encoded[key]
	if enc == nil {
		enc = &encoding{}
		e.encoded[key] = enc
	}
	e.encMu.Unlock()

	enc.mu.Lock()
	defer enc.mu.Unlock()
	if enc.done {
		return enc.data, nil
	}
	data, err := encode()
	if err != nil {
		return nil, err
	}
	enc.data, enc.done = data, true
	return data, nil
}
