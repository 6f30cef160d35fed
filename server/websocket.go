package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/tidemark/tidemark/apperr"
	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/livesync"
	"github.com/tidemark/tidemark/wsgorilla"
)

// Close codes Tidemark sends on websockets. Clients of the graphql-ws
// library reconnect after both; after 4403 they authenticate anew.
const (
	// closeForbidden: a bad token at connection_init, or the token expired.
	closeForbidden = 4403
	// closeTryAgainLater: the server dropped the subscriber (too slow, or
	// its own trouble). Reconnect and resync from the checkpoint.
	closeTryAgainLater = 1013
)

// wsConn holds the websocket of one upgrade request so that the server can
// close it with a code of its own: gqlgen only ever closes with 1000.
type wsConn struct {
	mu   sync.Mutex
	conn transport.WebsocketConn
}

type wsConnKey struct{}

func (h *wsConn) close(code int, reason string) {
	h.mu.Lock()
	c := h.conn
	h.mu.Unlock()
	if c != nil {
		_ = c.WriteClose(code, reason)
		_ = c.Close()
	}
}

// withWebsocketSlot gives every upgrade request a slot for its connection,
// which wsgorilla fills on accept.
func withWebsocketSlot(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if websocket.IsWebSocketUpgrade(r) {
			r = r.WithContext(context.WithValue(r.Context(), wsConnKey{}, &wsConn{}))
		}
		next.ServeHTTP(w, r)
	})
}

func wsConnFrom(ctx context.Context) *wsConn {
	h, _ := ctx.Value(wsConnKey{}).(*wsConn)
	return h
}

func websocketTransport(cfg Config) transport.Websocket {
	readLimit := int64(256 << 10)
	return transport.Websocket{
		Implementation: wsgorilla.Implementation{
			CheckOrigin:  wsgorilla.OriginAllowList(cfg.AllowedOrigins),
			WriteTimeout: cfg.WebsocketWriteTimeout,
			OnAccept: func(r *http.Request, c transport.WebsocketConn) {
				if h := wsConnFrom(r.Context()); h != nil {
					h.mu.Lock()
					h.conn = c
					h.mu.Unlock()
				}
			},
		},
		InitFunc:    websocketInit(cfg.Verifier, cfg.Heads, cfg.Logger),
		InitTimeout: 10 * time.Second,
		// graphql-transport-ws: ping, and drop a peer that misses two pongs.
		PingPongInterval: cfg.WebsocketPing,
		// Legacy graphql-ws has no pong; its keep-alive at least keeps
		// proxies from closing idle connections.
		KeepAlivePingInterval: cfg.WebsocketPing,
		PayloadReadLimit:      &readLimit,
		ErrorFunc: func(ctx context.Context, err error) {
			if errors.Is(err, transport.ErrWebsocketClosed) {
				return
			}
			// Mobile peers vanish all the time: not worth more than debug.
			Logger(ctx, cfg.Logger).Debug("websocket closed with an error", "err", err)
		},
	}
}

// websocketInit authenticates a connection at connection_init. A token may
// come as {"Authorization": "Bearer …"} or {"headers": {"Authorization":
// "Bearer …"}} (as RxDB sends it), or with the upgrade request itself. A
// bad token rejects the connection with 4403. A connection without one is
// accepted, but may only run subscriptions whose `headers` argument carries
// a valid token (see authenticateSubscriptions).
func websocketInit(v *auth.Verifier, heads livesync.HeadReader, log *slog.Logger) transport.WebsocketInitFunc {
	return func(ctx context.Context, payload transport.InitPayload) (context.Context, *transport.InitPayload, error) {
		conn := wsConnFrom(ctx)
		ctx = livesync.WithDisconnector(ctx, func(reason string) {
			if conn != nil {
				conn.close(closeTryAgainLater, reason)
			}
		})
		header := initAuthorization(payload)
		if header == "" {
			// The upgrade request's identity, if it brought one, stays; its
			// token expires like any other.
			if id, ok := auth.FromContext(ctx); ok {
				if err := stillValid(id); err != nil {
					return reject(ctx), nil, err
				}
				closeAtExpiry(ctx, conn, id)
				ctx = withStreamStart(ctx, heads, id, log)
			}
			return ctx, nil, nil
		}
		id, err := verifyLive(v, header)
		if err != nil {
			return reject(ctx), nil, err
		}
		closeAtExpiry(ctx, conn, id)
		return withStreamStart(auth.WithIdentity(ctx, id), heads, id, log), nil, nil
	}
}

// withStreamStart records the tenant's heads as the connection (or
// subscription) is accepted, before the client pulls, so its streams start
// there (livesync.WithStart). Without them streams start where the hub
// stands, which is only a little later.
func withStreamStart(ctx context.Context, heads livesync.HeadReader, id auth.Identity, log *slog.Logger) context.Context {
	if heads == nil {
		return ctx
	}
	hs, err := heads.ScopeHeads(ctx, []string{id.TenantID})
	if err != nil {
		Logger(ctx, log).Warn("reading change heads for a new stream failed", "err", err)
		return ctx
	}
	return livesync.WithStart(ctx, id.TenantID, hs)
}

func reject(ctx context.Context) context.Context {
	return transport.AppendCloseReason(transport.WithWebsocketCloseCode(ctx, closeForbidden), "Forbidden")
}

// verifyLive verifies a token for a websocket. The verifier's leeway for
// clock skew must not apply here: a connection accepted with a token that
// has already expired would be closed at once by closeAtExpiry, and the
// client would reconnect with the same token, again and again.
func verifyLive(v *auth.Verifier, header string) (auth.Identity, error) {
	id, err := v.VerifyAuthorization(header)
	if err != nil {
		return id, apperr.New(apperr.Unauthenticated, "%s", err.Error())
	}
	return id, stillValid(id)
}

func stillValid(id auth.Identity) error {
	if !id.ExpiresAt.IsZero() && !time.Now().Before(id.ExpiresAt) {
		return apperr.New(apperr.Unauthenticated, "token expired")
	}
	return nil
}

func initAuthorization(p transport.InitPayload) string {
	if a := p.Authorization(); a != "" {
		return a
	}
	if headers, ok := p["headers"].(map[string]any); ok {
		for k, v := range headers {
			if s, ok := v.(string); ok && strings.EqualFold(k, "Authorization") {
				return s
			}
		}
	}
	return ""
}

// closeAtExpiry closes the connection with 4403 when the token expires, so
// the client reconnects with a fresh one; the timer ends with the connection.
func closeAtExpiry(ctx context.Context, conn *wsConn, id auth.Identity) {
	if conn == nil || id.ExpiresAt.IsZero() {
		return
	}
	timer := time.AfterFunc(time.Until(id.ExpiresAt), func() { conn.close(closeForbidden, "token expired") })
	context.AfterFunc(ctx, func() { timer.Stop() })
}

// authenticateSubscriptions reads the `headers` argument of a subscription
// and, when it carries an Authorization, authenticates the subscription
// with it: a bad token gets UNAUTHENTICATED and no data.
func authenticateSubscriptions(v *auth.Verifier, heads livesync.HeadReader, log *slog.Logger) graphql.OperationMiddleware {
	return func(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
		oc := graphql.GetOperationContext(ctx)
		if oc == nil || oc.Operation == nil || oc.Operation.Operation != ast.Subscription {
			return next(ctx)
		}
		header := subscriptionAuthorization(oc)
		if header == "" {
			return next(ctx)
		}
		id, err := verifyLive(v, header)
		if err != nil {
			Logger(ctx, log).Debug("subscription token refused", "err", err)
			return graphql.OneShot(&graphql.Response{Errors: gqlerror.List{{
				Message:    err.Error(),
				Extensions: map[string]any{"code": string(apperr.Unauthenticated)},
			}}})
		}
		closeAtExpiry(ctx, wsConnFrom(ctx), id)
		return next(withStreamStart(auth.WithIdentity(ctx, id), heads, id, log))
	}
}

func subscriptionAuthorization(oc *graphql.OperationContext) string {
	for _, sel := range oc.Operation.SelectionSet {
		field, ok := sel.(*ast.Field)
		if !ok {
			continue
		}
		headers, ok := field.ArgumentMap(oc.Variables)["headers"].(map[string]any)
		if !ok {
			continue
		}
		if s, ok := headers["Authorization"].(string); ok && s != "" {
			return s
		}
	}
	return ""
}
