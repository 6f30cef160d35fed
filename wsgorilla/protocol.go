package wsgorilla

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
)

// Close codes of the GraphQL over websocket protocol (graphql-transport-ws,
// github.com/enisdenjo/graphql-ws PROTOCOL.md) that gqlgen does not send
// itself, and the ones this package chose for its own limits.
//
// How graphql-ws's client (the one RxDB, Apollo's GraphQLWsLink and urql use)
// reacts: it never retries 4400, 4401, 4409, 4429, 4500 and 1002–1011 (but
// for 1006), whatever retryAttempts says; it retries 4403, 4408, 1001, 1012,
// 1013 and other 4xxx codes with its randomised backoff; after 1000 it
// reconnects only while subscriptions are open.
const (
	// CloseUnauthorized (4401): a subscribe before connection_init, or a
	// connection that presented no credentials at all. Retrying without
	// credentials cannot help, and graphql-ws does not.
	CloseUnauthorized = 4401
	// CloseInitTimeout (4408): no connection_init within InitTimeout.
	CloseInitTimeout = 4408
	// CloseSubscriberExists (4409): a subscribe reused the id of a
	// subscription that is still running.
	CloseSubscriberExists = 4409
	// CloseTooManyInits (4429): a second connection_init.
	CloseTooManyInits = 4429
	// CloseIdle (1000): nothing ran and nothing was said for IdleTimeout. A
	// normal closure: a lazy client reconnects when it next subscribes.
	CloseIdle = 1000
	// CloseLifetime (1001, going away): the connection reached MaxLifetime.
	// 1001 is in RFC 6455 itself, so every websocket client and proxy knows
	// it as "reconnect"; graphql-ws and subscriptions-transport-ws both
	// reconnect after it at once (and graphql-ws resubscribes), unlike after
	// 1000. 4403 would send clients through a re-authentication they do not
	// need, and a private 4xxx code means nothing to other clients.
	CloseLifetime = 1001
)

// Defaults of the protocol limits, applied when the matching Implementation
// field is zero.
const (
	DefaultInitTimeout      = 10 * time.Second
	DefaultMaxSubscriptions = 100
)

// ErrorCodeTooManySubscriptions is the extensions.code of the error a
// subscribe gets when its connection already runs MaxSubscriptions.
const ErrorCodeTooManySubscriptions = "TOO_MANY_SUBSCRIPTIONS"

// lifetimeJitter is the share of MaxLifetime by which a connection's end is
// brought forward at random, so that connections opened together (after a
// deploy, or a network outage) do not all reconnect together.
const lifetimeJitter = 0.2

// guard enforces, per connection, the parts of the protocol gqlgen leaves
// out: the init deadline, one connection_init, unique subscription ids, a cap
// on subscriptions, an idle timeout and a maximum lifetime. It reads each
// incoming message's type and id (the message is then handed to gqlgen
// unchanged) and the type and id of each outgoing one. Its timers are
// time.AfterFunc timers: no goroutine per connection.
type guard struct {
	c                guardConn
	maxSubscriptions int
	idleTimeout      time.Duration

	initSeen atomic.Bool
	// lastActive is the UnixNano of the last message other than a ping or
	// pong, or of the end of the last subscription.
	lastActive atomic.Int64

	mu        sync.Mutex
	active    map[string]struct{}
	initTimer *time.Timer
	idleTimer *time.Timer
	lifeTimer *time.Timer
}

// guardConn is what the guard needs of a connection: gqlgen's adapter
// (conn) or this package's own transport (session).
type guardConn interface {
	closeWith(code int, reason string)
	isClosed() bool
	write(v any) error
}

// limits of the guard, resolved from Implementation.
type guardLimits struct {
	initTimeout      time.Duration
	maxSubscriptions int
	idleTimeout      time.Duration
	maxLifetime      time.Duration
}

func (i Implementation) guardLimits() guardLimits {
	l := guardLimits{
		initTimeout:      durationOr(i.InitTimeout, DefaultInitTimeout),
		maxSubscriptions: i.MaxSubscriptions,
		idleTimeout:      i.IdleTimeout,
		maxLifetime:      i.MaxLifetime,
	}
	if l.maxSubscriptions == 0 {
		l.maxSubscriptions = DefaultMaxSubscriptions
	}
	return l
}

func newGuard(c guardConn, l guardLimits) *guard {
	g := &guard{c: c, maxSubscriptions: l.maxSubscriptions, idleTimeout: l.idleTimeout}
	g.lastActive.Store(time.Now().UnixNano())
	g.mu.Lock()
	defer g.mu.Unlock()
	if l.initTimeout > 0 {
		g.initTimer = time.AfterFunc(l.initTimeout, func() {
			if !g.initSeen.Load() {
				c.closeWith(CloseInitTimeout, "Connection initialisation timeout")
			}
		})
	}
	if l.idleTimeout > 0 {
		g.idleTimer = time.AfterFunc(l.idleTimeout, g.checkIdle)
	}
	if l.maxLifetime > 0 {
		d := l.maxLifetime - time.Duration(rand.Float64()*lifetimeJitter*float64(l.maxLifetime))
		g.lifeTimer = time.AfterFunc(d, func() {
			c.closeWith(CloseLifetime, "connection lifetime reached, reconnect")
		})
	}
	return g
}

// stop ends the guard's timers; the connection is closed.
func (g *guard) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, t := range []*time.Timer{g.initTimer, g.idleTimer, g.lifeTimer} {
		if t != nil {
			t.Stop()
		}
	}
}

// checkIdle runs at most once per IdleTimeout and closes the connection if
// it runs no subscription and has been quiet for IdleTimeout; otherwise it
// looks again when that could first be true.
func (g *guard) checkIdle() {
	g.mu.Lock()
	running := len(g.active)
	g.mu.Unlock()
	next := g.idleTimeout
	if running == 0 {
		quiet := time.Since(time.Unix(0, g.lastActive.Load()))
		if quiet >= g.idleTimeout {
			g.c.closeWith(CloseIdle, fmt.Sprintf("idle for %s", g.idleTimeout))
			return
		}
		next = g.idleTimeout - quiet
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.c.isClosed() {
		g.idleTimer.Reset(next)
	}
}

// envelope is what the guard reads of a message of either subprotocol.
type envelope struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// verdict is what the guard decides about one incoming message.
type verdict int

const (
	pass   verdict = iota // hand it to gqlgen
	refuse                // answered here; read the next message
	closed                // the connection was closed
)

// incoming judges one message from the client. A message that is not JSON
// passes: gqlgen answers it.
func (g *guard) incoming(data []byte) verdict {
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return pass
	}
	switch env.Type {
	case "ping", "pong":
		return pass
	}
	g.lastActive.Store(time.Now().UnixNano())
	switch env.Type {
	case "connection_init":
		if g.initSeen.Swap(true) {
			g.c.closeWith(CloseTooManyInits, "Too many initialisation requests")
			return closed
		}
		return pass
	case "subscribe", "start":
		if !g.initSeen.Load() {
			g.c.closeWith(CloseUnauthorized, "Unauthorized")
			return closed
		}
		g.mu.Lock()
		_, exists := g.active[env.ID]
		full := g.maxSubscriptions > 0 && len(g.active) >= g.maxSubscriptions
		if !exists && !full {
			if g.active == nil {
				g.active = make(map[string]struct{})
			}
			g.active[env.ID] = struct{}{}
		}
		g.mu.Unlock()
		if exists {
			g.c.closeWith(CloseSubscriberExists, "Subscriber for "+env.ID+" already exists")
			return closed
		}
		if full {
			g.refuseSubscription(env.ID)
			return refuse
		}
	case "complete", "stop":
		g.end(env.ID)
	}
	return pass
}

// outgoing notes the end of a subscription in a message gqlgen sends.
func (g *guard) outgoing(typ, id string) {
	if id != "" && (typ == "complete" || typ == "error") {
		g.end(id)
	}
}

func (g *guard) end(id string) {
	g.mu.Lock()
	delete(g.active, id)
	g.mu.Unlock()
	g.lastActive.Store(time.Now().UnixNano())
}

func (g *guard) refuseSubscription(id string) {
	payload, _ := json.Marshal([]map[string]any{{
		"message":    fmt.Sprintf("too many subscriptions on this connection (at most %d)", g.maxSubscriptions),
		"extensions": map[string]any{"code": ErrorCodeTooManySubscriptions},
	}})
	_ = g.c.write(wireMessage{ID: id, Type: "error", Payload: payload})
}

// wireMessage is a message of either subprotocol as the guard writes it.
type wireMessage struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// messageTypeAndID reads the Type and ID fields of gqlgen's outgoing message
// structs (unexported types of both subprotocols, with exported fields).
func messageTypeAndID(v any) (typ, id string) {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.Struct {
		return "", ""
	}
	if f := rv.FieldByName("Type"); f.IsValid() && f.Kind() == reflect.String {
		typ = f.String()
	}
	if f := rv.FieldByName("ID"); f.IsValid() && f.Kind() == reflect.String {
		id = f.String()
	}
	return typ, id
}
