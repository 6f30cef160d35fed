package server

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/tidemark/tidemark/apperr"
	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/wsgorilla"
)

// WebsocketLimits bound what websocket clients may hold. Zero fields take
// the defaults below; a negative count or duration turns that limit off.
type WebsocketLimits struct {
	// MaxConnections is the most websockets the server holds at once
	// (default 10,000). An upgrade beyond it is answered 503 with a
	// jittered Retry-After.
	MaxConnections int
	// MaxConnectionsPerAddress is the most websockets one client address
	// holds (default 500: phones behind one carrier NAT share an address).
	// An upgrade beyond it is answered 429 with a jittered Retry-After.
	MaxConnectionsPerAddress int
	// MaxConnectionsPerSubject is the most websockets one user (tenant and
	// subject of the token) holds (default 16). One more is closed with
	// 1013 and a retry hint in the reason once it authenticates.
	MaxConnectionsPerSubject int
	// AcceptRate is how many new websockets the server accepts per second
	// (default 200, bursts of twice that), so that thousands of clients
	// reconnecting at once after a deploy are let in over seconds instead of
	// all authenticating and reading their heads at once. An upgrade over
	// the rate is answered 503 with a jittered Retry-After.
	AcceptRate float64
	// RetryAfter is the longest Retry-After (and close-reason retry hint)
	// given to a client shed for load (default 30s); each client gets a
	// random one between 1s and this, so shed clients come back spread out.
	RetryAfter time.Duration

	// MaxSubscriptions caps the subscriptions of one connection (default
	// 100); one more is answered with TOO_MANY_SUBSCRIPTIONS.
	MaxSubscriptions int
	// MaxMessageBytes bounds one incoming message (default 256 KiB);
	// a larger one closes the connection with 1009.
	MaxMessageBytes int64
	// InitTimeout is how long a client may take to send connection_init
	// (default 10s; closed with 4408).
	InitTimeout time.Duration
	// AuthTimeout is how long a connection whose connection_init carried no
	// token may wait for a subscription that brings one in its `headers`
	// argument (default 10s; closed with 4401).
	AuthTimeout time.Duration
	// IdleTimeout closes a connection that runs no subscription and sends
	// nothing for this long (default 5m; closed with 1000).
	IdleTimeout time.Duration
	// MaxLifetime closes every connection after this long, less up to a
	// fifth at random (default 1h; closed with 1001, and clients reconnect).
	MaxLifetime time.Duration
	// MaxQueuedEvents bounds the stream events waiting to be written to one
	// connection (default 256). A connection that falls further behind is
	// closed with 1013 and its client resyncs from its checkpoint: nothing
	// is dropped silently, and a slow connection never holds back others.
	MaxQueuedEvents int
}

// Defaults of WebsocketLimits.
const (
	DefaultWebsocketMaxConnections           = 10_000
	DefaultWebsocketMaxConnectionsPerAddress = 500
	DefaultWebsocketMaxConnectionsPerSubject = 16
	DefaultWebsocketAcceptRate               = 200
	DefaultWebsocketRetryAfter               = 30 * time.Second
	DefaultWebsocketMaxSubscriptions         = wsgorilla.DefaultMaxSubscriptions
	DefaultWebsocketMaxMessageBytes          = 256 << 10
	DefaultWebsocketInitTimeout              = wsgorilla.DefaultInitTimeout
	DefaultWebsocketAuthTimeout              = 10 * time.Second
	DefaultWebsocketIdleTimeout              = 5 * time.Minute
	DefaultWebsocketMaxLifetime              = time.Hour
	DefaultWebsocketMaxQueuedEvents          = wsgorilla.DefaultMaxQueuedEvents
)

func (l WebsocketLimits) withDefaults() WebsocketLimits {
	orInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	orDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	orInt(&l.MaxConnections, DefaultWebsocketMaxConnections)
	orInt(&l.MaxConnectionsPerAddress, DefaultWebsocketMaxConnectionsPerAddress)
	orInt(&l.MaxConnectionsPerSubject, DefaultWebsocketMaxConnectionsPerSubject)
	orInt(&l.MaxSubscriptions, DefaultWebsocketMaxSubscriptions)
	orInt(&l.MaxQueuedEvents, DefaultWebsocketMaxQueuedEvents)
	if l.AcceptRate == 0 {
		l.AcceptRate = DefaultWebsocketAcceptRate
	}
	if l.MaxMessageBytes == 0 {
		l.MaxMessageBytes = DefaultWebsocketMaxMessageBytes
	}
	orDur(&l.RetryAfter, DefaultWebsocketRetryAfter)
	orDur(&l.InitTimeout, DefaultWebsocketInitTimeout)
	orDur(&l.AuthTimeout, DefaultWebsocketAuthTimeout)
	orDur(&l.IdleTimeout, DefaultWebsocketIdleTimeout)
	orDur(&l.MaxLifetime, DefaultWebsocketMaxLifetime)
	return l
}

// Close codes of the connection limits kept here (the protocol's own are in
// wsgorilla).
const (
	// closeUnauthorized: no credentials by AuthTimeout. graphql-ws does not
	// retry 4401, which is right: without a token a retry cannot succeed.
	closeUnauthorized = wsgorilla.CloseUnauthorized
)

// connectionCounts holds the websockets of one server by client address and
// by user, and the rate at which new ones are let in.
type connectionCounts struct {
	limits WebsocketLimits
	accept *rate.Limiter // nil: no rate

	mu        sync.Mutex
	total     int
	byAddress map[string]int
	bySubject map[string]int
}

func newConnectionCounts(l WebsocketLimits) *connectionCounts {
	c := &connectionCounts{
		limits:    l.withDefaults(),
		byAddress: map[string]int{},
		bySubject: map[string]int{},
	}
	if r := c.limits.AcceptRate; r > 0 {
		c.accept = rate.NewLimiter(rate.Limit(r), max(1, int(2*r)))
	}
	return c
}

// refusal is an upgrade turned away for load.
type refusal struct {
	status int
	reason string
}

// admit counts a new connection from address, or says why not.
func (c *connectionCounts) admit(address string) *refusal {
	c.mu.Lock()
	defer c.mu.Unlock()
	if max := c.limits.MaxConnections; max > 0 && c.total >= max {
		return &refusal{http.StatusServiceUnavailable, "the server holds its most websocket connections"}
	}
	if max := c.limits.MaxConnectionsPerAddress; max > 0 && c.byAddress[address] >= max {
		return &refusal{http.StatusTooManyRequests, fmt.Sprintf("too many websocket connections from this address (at most %d)", max)}
	}
	// Counted last, so that a refused upgrade does not spend a token.
	if c.accept != nil && !c.accept.Allow() {
		return &refusal{http.StatusServiceUnavailable, "too many new websocket connections at once"}
	}
	c.total++
	c.byAddress[address]++
	return nil
}

func (c *connectionCounts) release(address, subject string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total--
	decrement(c.byAddress, address)
	if subject != "" {
		decrement(c.bySubject, subject)
	}
}

// claimSubject counts a connection for a user; false when the user holds
// MaxConnectionsPerSubject already.
func (c *connectionCounts) claimSubject(subject string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if max := c.limits.MaxConnectionsPerSubject; max > 0 && c.bySubject[subject] >= max {
		return false
	}
	c.bySubject[subject]++
	return true
}

func decrement(m map[string]int, key string) {
	if m[key] <= 1 {
		delete(m, key)
		return
	}
	m[key]--
}

// retryAfter is a random wait between 1s and the configured RetryAfter, in
// whole seconds, so that clients shed together come back spread out.
func (c *connectionCounts) retryAfter() int {
	most := int(c.limits.RetryAfter / time.Second)
	if most <= 1 {
		return 1
	}
	return 1 + rand.IntN(most)
}

func subjectKey(id auth.Identity) string { return id.TenantID + "\x00" + id.UserID }

// writeShed answers an upgrade refused for load: a GraphQL error with
// extensions.code RATE_LIMITED and a jittered Retry-After. A browser's
// WebSocket sees neither (only a failed connection, which graphql-ws retries
// with its own randomised backoff); native clients can honour the header.
func writeShed(w http.ResponseWriter, ref *refusal, retryAfter int) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	writeJSON(w, ref.status, map[string]any{"errors": []map[string]any{{
		"message":    ref.reason + "; retry after " + strconv.Itoa(retryAfter) + "s",
		"extensions": map[string]any{"code": string(apperr.RateLimited), "retryAfter": retryAfter},
	}}})
}
