package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"

	"github.com/tidemark/tidemark/server"
)

// bindWebsocketLimits registers the websocket limits' flags and variables
// (docs/security.md); each default is server's. A negative count or
// duration turns that limit off.
func bindWebsocketLimits(fs *flag.FlagSet, l *server.WebsocketLimits, errs *envErrors) {
	fs.IntVar(&l.MaxConnections, "ws-max-connections", errs.int("TIDEMARK_WS_MAX_CONNECTIONS", server.DefaultWebsocketMaxConnections), "most websocket connections the server holds; more get 503 (TIDEMARK_WS_MAX_CONNECTIONS)")
	fs.IntVar(&l.MaxConnectionsPerAddress, "ws-max-connections-per-address", errs.int("TIDEMARK_WS_MAX_CONNECTIONS_PER_ADDRESS", server.DefaultWebsocketMaxConnectionsPerAddress), "most websocket connections from one client address; more get 429 (TIDEMARK_WS_MAX_CONNECTIONS_PER_ADDRESS)")
	fs.IntVar(&l.MaxConnectionsPerSubject, "ws-max-connections-per-user", errs.int("TIDEMARK_WS_MAX_CONNECTIONS_PER_USER", server.DefaultWebsocketMaxConnectionsPerSubject), "most websocket connections of one user; more are closed with 1013 (TIDEMARK_WS_MAX_CONNECTIONS_PER_USER)")
	fs.Float64Var(&l.AcceptRate, "ws-accept-rate", errs.float64("TIDEMARK_WS_ACCEPT_RATE", server.DefaultWebsocketAcceptRate), "new websocket connections accepted per second, bursts of twice that; more get 503 (TIDEMARK_WS_ACCEPT_RATE)")
	fs.DurationVar(&l.RetryAfter, "ws-retry-after", errs.duration("TIDEMARK_WS_RETRY_AFTER", server.DefaultWebsocketRetryAfter), "longest jittered Retry-After given to websocket clients shed for load (TIDEMARK_WS_RETRY_AFTER)")
	fs.IntVar(&l.MaxSubscriptions, "ws-max-subscriptions", errs.int("TIDEMARK_WS_MAX_SUBSCRIPTIONS", server.DefaultWebsocketMaxSubscriptions), "most subscriptions one websocket connection runs at once (TIDEMARK_WS_MAX_SUBSCRIPTIONS)")
	fs.Int64Var(&l.MaxMessageBytes, "ws-max-message-bytes", errs.int64("TIDEMARK_WS_MAX_MESSAGE_BYTES", server.DefaultWebsocketMaxMessageBytes), "largest websocket message accepted; larger closes with 1009 (TIDEMARK_WS_MAX_MESSAGE_BYTES)")
	fs.DurationVar(&l.InitTimeout, "ws-init-timeout", errs.duration("TIDEMARK_WS_INIT_TIMEOUT", server.DefaultWebsocketInitTimeout), "time a websocket client has to send connection_init; then 4408 (TIDEMARK_WS_INIT_TIMEOUT)")
	fs.DurationVar(&l.AuthTimeout, "ws-auth-timeout", errs.duration("TIDEMARK_WS_AUTH_TIMEOUT", server.DefaultWebsocketAuthTimeout), "time a websocket without a token in connection_init has to authenticate a subscription; then 4401 (TIDEMARK_WS_AUTH_TIMEOUT)")
	fs.DurationVar(&l.IdleTimeout, "ws-idle-timeout", errs.duration("TIDEMARK_WS_IDLE_TIMEOUT", server.DefaultWebsocketIdleTimeout), "a websocket with no subscription and no message for this long is closed with 1000 (TIDEMARK_WS_IDLE_TIMEOUT)")
	fs.DurationVar(&l.MaxLifetime, "ws-max-lifetime", errs.duration("TIDEMARK_WS_MAX_LIFETIME", server.DefaultWebsocketMaxLifetime), "websockets are closed with 1001 after this, less up to a fifth at random, and clients reconnect (TIDEMARK_WS_MAX_LIFETIME)")
	fs.IntVar(&l.MaxQueuedEvents, "ws-max-queued-events", errs.int("TIDEMARK_WS_MAX_QUEUED_EVENTS", server.DefaultWebsocketMaxQueuedEvents), "stream events that may wait to be written to one websocket; a connection further behind is closed with 1013 and its client resyncs (TIDEMARK_WS_MAX_QUEUED_EVENTS)")
}

// websocketLimitsWithDefaults fills the limits left zero (a Config built
// in code) with the flags' defaults, which are server's.
func websocketLimitsWithDefaults(l server.WebsocketLimits) server.WebsocketLimits {
	fill(&l.MaxConnections, server.DefaultWebsocketMaxConnections)
	fill(&l.MaxConnectionsPerAddress, server.DefaultWebsocketMaxConnectionsPerAddress)
	fill(&l.MaxConnectionsPerSubject, server.DefaultWebsocketMaxConnectionsPerSubject)
	fill(&l.AcceptRate, server.DefaultWebsocketAcceptRate)
	fill(&l.RetryAfter, server.DefaultWebsocketRetryAfter)
	fill(&l.MaxSubscriptions, server.DefaultWebsocketMaxSubscriptions)
	fill(&l.MaxMessageBytes, server.DefaultWebsocketMaxMessageBytes)
	fill(&l.InitTimeout, server.DefaultWebsocketInitTimeout)
	fill(&l.AuthTimeout, server.DefaultWebsocketAuthTimeout)
	fill(&l.IdleTimeout, server.DefaultWebsocketIdleTimeout)
	fill(&l.MaxLifetime, server.DefaultWebsocketMaxLifetime)
	fill(&l.MaxQueuedEvents, server.DefaultWebsocketMaxQueuedEvents)
	return l
}

func (e *envErrors) float64(name string, def float64) float64 {
	v, ok := os.LookupEnv(name)
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		*e = append(*e, fmt.Errorf("%s=%q is not a number", name, v))
		return def
	}
	return f
}
