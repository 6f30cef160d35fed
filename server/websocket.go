package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
// library reconnect after both; after 4403 they authenticate anew. (The
// protocol's own codes, and those of the connection limits, are in
// wsgorilla and websocket_limits.go.)
const (
	// closeForbidden: a bad token at connection_init, or the token expired.
	// graphql-ws retries 4403 (its connectionParams function can then hand
	// over a fresh token), unlike 4401, which it treats as final.
	closeForbidden = 4403
	// closeTryAgainLater: the server dropped the subscriber (too slow, or
	// its own trouble). Reconnect and resync from the checkpoint.
	closeTryAgainLater = 1013
	// closeGoingAway: the server is shutting down (Websockets.GoAway).
	// Reconnect, to another instance; unlike 1000, graphql-ws retries it
	// even when the connection has no subscription.
	closeGoingAway = 1001
)

// wsConn holds the websocket of one upgrade request so that the server can
// close it with a code of its own (gqlgen only ever closes with 1000), and
// what the connection counts against the limits.
type wsConn struct {
	counts  *connectionCounts
	address string

	mu        sync.Mutex
	conn      wsgorilla.Closer
	upgraded  bool        // the connection outlives its upgrade request
	subject   string      // the user the connection counts for, once known
	authTimer *time.Timer // closes a connection that never authenticates
	registry  *Websockets // Config.Websockets, if set
}

const reasonGoingAway = "server shutting down: reconnect"

// accepted records the connection of an accepted upgrade; one accepted
// after Websockets.GoAway is closed at once.
func (h *wsConn) accepted(c wsgorilla.Closer) {
	h.mu.Lock()
	h.conn = c
	h.upgraded = true
	h.mu.Unlock()
	if h.registry != nil && h.registry.goneAway() {
		h.close(closeGoingAway, reasonGoingAway)
	}
}

// Websockets is the set of a server's open websocket connections, for its
// program's shutdown (Config.Websockets).
type Websockets struct {
	mu    sync.Mutex
	conns map[*wsConn]struct{}
	gone  bool
}

// NewWebsockets returns an empty set.
func NewWebsockets() *Websockets { return &Websockets{conns: map[*wsConn]struct{}{}} }

func (w *Websockets) add(c *wsConn) {
	w.mu.Lock()
	w.conns[c] = struct{}{}
	w.mu.Unlock()
}

func (w *Websockets) remove(c *wsConn) {
	w.mu.Lock()
	delete(w.conns, c)
	w.mu.Unlock()
}

func (w *Websockets) goneAway() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gone
}

// GoAway closes every websocket with 1001 (going away), and any accepted
// later at once, and returns when each close frame is written (each write
// is bounded by the write timeout) or ctx ends. Clients reconnect, to
// another instance: graphql-ws retries 1001 even on a connection without
// subscriptions, unlike the 1000 a canceled connection gets from gqlgen.
func (w *Websockets) GoAway(ctx context.Context) {
	w.mu.Lock()
	w.gone = true
	conns := make([]*wsConn, 0, len(w.conns))
	for c := range w.conns {
		conns = append(conns, c)
	}
	w.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.close(closeGoingAway, reasonGoingAway)
		}()
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

type wsConnKey struct{}

func (h *wsConn) close(code int, reason string) {
	h.mu.Lock()
	c := h.conn
	h.mu.Unlock()
	if c != nil {
		c.Close(code, reason)
	}
}

// withWebsocketSlot gives every upgrade request a slot for its connection,
// which wsgorilla fills on accept, after counting it against the total and
// per-address caps and the accept rate: an upgrade over them is refused
// before any websocket work, with 429 or 503 and a jittered Retry-After.
// The slot is freed when the connection ends (the transport returns from
// the handler once the connection is upgraded). The client
// address is the one the request rate limits use (behind a trusted proxy,
// from X-Forwarded-For; IPv6 by /64), so a proxy does not count as one
// client with everyone's connections.
func withWebsocketSlot(cfg Config, next http.Handler) http.Handler {
	counts := newConnectionCounts(cfg.WebsocketLimits)
	cfg.Metrics.Metrics.WatchWebsockets(counts.open)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !websocket.IsWebSocketUpgrade(r) {
			next.ServeHTTP(w, r)
			return
		}
		slot := &wsConn{counts: counts, address: addressKey(clientAddressBehind(r, cfg.TrustedProxies))}
		if ref := counts.admit(slot.address); ref != nil {
			writeShed(w, ref, counts.retryAfter())
			return
		}
		if cfg.Websockets != nil {
			slot.registry = cfg.Websockets
			cfg.Websockets.add(slot)
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), wsConnKey{}, slot)))
		slot.mu.Lock()
		upgraded := slot.upgraded
		slot.mu.Unlock()
		if !upgraded {
			slot.ended()
		}
	})
}

// ended frees the slot of a connection that has ended (or of an upgrade
// that never became one).
func (h *wsConn) ended() {
	h.release()
	if h.registry != nil {
		h.registry.remove(h)
	}
}

func (h *wsConn) release() {
	h.mu.Lock()
	subject := h.subject
	if h.authTimer != nil {
		h.authTimer.Stop()
	}
	h.mu.Unlock()
	h.counts.release(h.address, subject)
}

// authenticated records that the connection (or one of its subscriptions)
// has an identity: the auth deadline no longer applies, and the
// connection counts for the user, once. false: the user already holds
// its most connections.
func (h *wsConn) authenticated(id auth.Identity) bool {
	if h == nil {
		return true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.authTimer != nil {
		h.authTimer.Stop()
		h.authTimer = nil
	}
	if h.subject != "" {
		return true
	}
	key := subjectKey(id)
	if !h.counts.claimSubject(key) {
		return false
	}
	h.subject = key
	return true
}

// awaitAuthentication closes the connection with 4401 unless it
// authenticates within d.
func (h *wsConn) awaitAuthentication(d time.Duration) {
	if h == nil || d <= 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subject != "" || h.authTimer != nil {
		return
	}
	h.authTimer = time.AfterFunc(d, func() {
		h.close(closeUnauthorized, "Unauthorized: no token in connection_init or a subscription's headers")
	})
}

// tooManyForSubject is the close reason (with its retry hint) of a
// connection over MaxConnectionsPerSubject.
func (h *wsConn) tooManyForSubject() string {
	return fmt.Sprintf("too many connections for this user (at most %d); retry after %ds",
		h.counts.limits.MaxConnectionsPerSubject, h.counts.retryAfter())
}

func wsConnFrom(ctx context.Context) *wsConn {
	h, _ := ctx.Value(wsConnKey{}).(*wsConn)
	return h
}

func websocketTransport(cfg Config) *wsgorilla.Transport {
	limits := cfg.WebsocketLimits.withDefaults()
	return &wsgorilla.Transport{
		Implementation: wsgorilla.Implementation{
			CheckOrigin:      wsgorilla.OriginAllowList(cfg.AllowedOrigins),
			WriteTimeout:     cfg.WebsocketWriteTimeout,
			InitTimeout:      limits.InitTimeout,
			MaxSubscriptions: limits.MaxSubscriptions,
			IdleTimeout:      limits.IdleTimeout,
			MaxLifetime:      limits.MaxLifetime,
		},
		OnUpgrade: func(r *http.Request, c wsgorilla.Closer) func() {
			h := wsConnFrom(r.Context())
			if h == nil {
				return nil
			}
			h.accepted(c)
			return h.ended
		},
		OnRefused: func(r *http.Request, status int, err error) {
			level := slog.LevelInfo
			if status == http.StatusForbidden {
				// Often an app whose origin is missing from TIDEMARK_ALLOWED_ORIGINS.
				level = slog.LevelWarn
			}
			Logger(r.Context(), cfg.Logger).Log(r.Context(), level, "websocket upgrade refused",
				"origin", truncate(r.Header.Get("Origin"), 200), "status", status, "err", err)
		},
		InitFunc: websocketInit(cfg.Verifier, cfg.Heads, cfg.Logger, limits.AuthTimeout),
		// graphql-transport-ws: ping, and drop a peer that misses two pongs.
		PingPongInterval: cfg.WebsocketPing,
		// Legacy graphql-ws has no pong; its keep-alive at least keeps
		// proxies from closing idle connections.
		KeepAlivePingInterval: cfg.WebsocketPing,
		ReadLimit:             limits.MaxMessageBytes,
		MaxQueuedEvents:       limits.MaxQueuedEvents,
		StreamKey:             streamKeyFunc,
		ErrorFunc: func(ctx context.Context, err error) {
			if errors.Is(err, transport.ErrWebsocketClosed) {
				return
			}
			// Mobile peers vanish all the time: not worth more than debug.
			Logger(ctx, cfg.Logger).Debug("websocket closed with an error", "err", err)
		},
	}
}

// streamKeyFunc is streamKey; tests swap it for a wrong one to show that
// the sharing tests catch subscribers sharing what they must not.
var streamKeyFunc = streamKey

// streamKey names what the events of a stream subscription encode to
// besides the event itself (whose scope already fixes the tenant and the
// visible set): the selection under the root field, with its arguments and
// directives resolved against the variables, and, when the selection
// reaches past the documents' own fields into relations that resolvers read
// for the caller (a work order's site, say), the caller. The root field's
// `headers` argument is left out: it only authenticates, and carries each
// client's own token. Subscribers with equal keys share each event's
// execution and encoding.
func streamKey(ctx context.Context, oc *graphql.OperationContext) (string, bool) {
	if oc == nil || oc.Operation == nil || oc.Operation.Operation != ast.Subscription || len(oc.Operation.SelectionSet) != 1 {
		return "", false
	}
	root, ok := oc.Operation.SelectionSet[0].(*ast.Field)
	if !ok || !strings.HasPrefix(root.Name, "stream") {
		return "", false
	}
	var b strings.Builder
	b.WriteString(root.Alias)
	b.WriteByte(':')
	b.WriteString(root.Name)
	// Any root argument but headers would change what the stream sends, so
	// it is part of the key (today the stream fields take none).
	if args := root.ArgumentMap(oc.Variables); len(args) > 0 {
		delete(args, "headers")
		if len(args) > 0 {
			j, err := json.Marshal(args)
			if err != nil {
				return "", false
			}
			b.Write(j)
		}
	}
	if !writeDirectives(&b, root.Directives, oc.Variables) {
		return "", false
	}
	perCaller, ok := writeSelection(&b, oc, root.SelectionSet, 1)
	if !ok {
		return "", false
	}
	if perCaller {
		id, ok := auth.FromContext(ctx)
		if !ok {
			return "", false
		}
		claims, err := json.Marshal(id.Claims)
		if err != nil {
			return "", false
		}
		b.WriteString("\x00caller\x00")
		b.WriteString(id.TenantID)
		b.WriteByte(0)
		b.WriteString(id.UserID)
		b.WriteByte(0)
		b.Write(claims)
	}
	return b.String(), true
}

// writeSelection writes a canonical form of set (fragments expanded,
// arguments and directives resolved) and reports whether a field below the
// documents (depth 2) has a selection of its own: a relation, read by a
// resolver for the caller. ok false: something could not be written.
func writeSelection(b *strings.Builder, oc *graphql.OperationContext, set ast.SelectionSet, depth int) (perCaller, ok bool) {
	b.WriteByte('{')
	for _, sel := range set {
		var inner ast.SelectionSet
		nextDepth := depth
		switch sel := sel.(type) {
		case *ast.Field:
			b.WriteString(sel.Alias)
			b.WriteByte(':')
			b.WriteString(sel.Name)
			if len(sel.Arguments) > 0 {
				args, err := json.Marshal(sel.ArgumentMap(oc.Variables))
				if err != nil {
					return false, false
				}
				b.Write(args)
			}
			if !writeDirectives(b, sel.Directives, oc.Variables) {
				return false, false
			}
			if len(sel.SelectionSet) > 0 && depth >= 2 {
				perCaller = true
			}
			inner, nextDepth = sel.SelectionSet, depth+1
		case *ast.InlineFragment:
			b.WriteString("...on ")
			b.WriteString(sel.TypeCondition)
			if !writeDirectives(b, sel.Directives, oc.Variables) {
				return false, false
			}
			inner = sel.SelectionSet
		case *ast.FragmentSpread:
			def := oc.Doc.Fragments.ForName(sel.Name)
			if def == nil {
				return false, false
			}
			b.WriteString("...on ")
			b.WriteString(def.TypeCondition)
			if !writeDirectives(b, sel.Directives, oc.Variables) {
				return false, false
			}
			inner = def.SelectionSet
		default:
			return false, false
		}
		if len(inner) > 0 {
			p, ok := writeSelection(b, oc, inner, nextDepth)
			if !ok {
				return false, false
			}
			perCaller = perCaller || p
		}
		b.WriteByte(' ')
	}
	b.WriteByte('}')
	return perCaller, true
}

func writeDirectives(b *strings.Builder, ds ast.DirectiveList, vars map[string]any) bool {
	for _, d := range ds {
		b.WriteByte('@')
		b.WriteString(d.Name)
		args, err := json.Marshal(d.ArgumentMap(vars))
		if err != nil {
			return false
		}
		b.Write(args)
	}
	return true
}

// websocketInit authenticates a connection at connection_init. A token may
// come as {"Authorization": "Bearer …"}, {"headers": {"Authorization":
// "Bearer …"}} (as RxDB sends it), {"authToken": "…"} (Apollo's documented
// connectionParams), bare or with "Bearer ", or with the upgrade request
// itself. A bad or expired token rejects the connection with 4403
// (graphql-ws then retries, with a fresh token if its connectionParams is a
// function). A connection without any token is accepted, for clients that
// send it in each subscription's `headers` argument instead (see
// authenticateSubscriptions), but is closed with 4401 unless one of its
// subscriptions authenticates within authTimeout; a subscription with no
// token anywhere gets UNAUTHENTICATED at once.
func websocketInit(v *auth.Verifier, heads livesync.HeadReader, log *slog.Logger, authTimeout time.Duration) transport.WebsocketInitFunc {
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
			id, ok := auth.FromContext(ctx)
			if !ok {
				conn.awaitAuthentication(authTimeout)
				return ctx, nil, nil
			}
			if err := stillValid(id); err != nil {
				return reject(ctx), nil, err
			}
			if !conn.authenticated(id) {
				return shed(ctx, conn)
			}
			closeAtExpiry(ctx, conn, id)
			return startStreams(ctx, heads, id, log)
		}
		id, err := verifyLive(v, header)
		if err != nil {
			return reject(ctx), nil, err
		}
		if !conn.authenticated(id) {
			return shed(ctx, conn)
		}
		closeAtExpiry(ctx, conn, id)
		return startStreams(auth.WithIdentity(ctx, id), heads, id, log)
	}
}

// startStreams accepts a connection_init once the tenant's heads are read
// (withStreamStart). When they cannot be read (the database is out), the
// connection is refused with 1013: a stream started without them would
// start wherever the hub first reads the heads after the outage, past
// changes the client has not pulled, and skip them for good. graphql-ws
// retries 1013 with its backoff, and clients such as RxDB pull from their
// checkpoint on every reconnect.
func startStreams(ctx context.Context, heads livesync.HeadReader, id auth.Identity, log *slog.Logger) (context.Context, *transport.InitPayload, error) {
	ctx, err := withStreamStart(ctx, heads, id, log)
	if err != nil {
		return refuseUnavailable(ctx), nil, err
	}
	return ctx, nil, nil
}

// reasonUnavailable is the close reason of a connection refused or
// dropped because the database is out.
const reasonUnavailable = "database unavailable: reconnect and pull from your checkpoint"

func refuseUnavailable(ctx context.Context) context.Context {
	return wsgorilla.WithCloseCode(ctx, closeTryAgainLater, reasonUnavailable)
}

// shed refuses a connection_init of a user over MaxConnectionsPerSubject
// with 1013 (try again later), which graphql-ws retries with its backoff,
// and a retry hint in the reason.
func shed(ctx context.Context, conn *wsConn) (context.Context, *transport.InitPayload, error) {
	reason := conn.tooManyForSubject()
	ctx = wsgorilla.WithCloseCode(ctx, closeTryAgainLater, reason)
	return ctx, nil, apperr.New(apperr.Unavailable, "%s", reason)
}

// withStreamStart records the tenant's heads as the connection (or
// subscription) is accepted, before the client pulls, so its streams start
// there (livesync.WithStart). Without a HeadReader (some tests) streams
// start where the hub stands. An error means the heads could not be read:
// the caller refuses the stream rather than start it at a position the
// client has not seen.
func withStreamStart(ctx context.Context, heads livesync.HeadReader, id auth.Identity, log *slog.Logger) (context.Context, error) {
	if heads == nil {
		return ctx, nil
	}
	hs, err := heads.ScopeHeads(ctx, []string{id.TenantID})
	if err != nil {
		// The client is told only that; the cause stays in the log (the
		// database logs an outage once, so this line is debug).
		Logger(ctx, log).Debug("reading change heads for a new stream failed; refusing it", "err", err)
		return ctx, apperr.New(apperr.Unavailable, "%s", reasonUnavailable)
	}
	return livesync.WithStart(ctx, id.TenantID, hs), nil
}

func reject(ctx context.Context) context.Context {
	return wsgorilla.WithCloseCode(ctx, closeForbidden, "Forbidden")
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

// initAuthorization finds the token of a connection_init payload, as an
// Authorization header value.
func initAuthorization(p transport.InitPayload) string {
	if a := tokenIn(p); a != "" {
		return a
	}
	if headers, ok := p["headers"].(map[string]any); ok {
		return tokenIn(headers)
	}
	return ""
}

// tokenKeys are the names a token goes by in a connection_init payload or
// a `headers` argument, matched without regard to case: the header's, and
// authToken from Apollo's documentation of connectionParams.
var tokenKeys = []string{"Authorization", "authToken"}

// tokenIn returns the token among m's values as an Authorization header
// value: a bare token (a JWT has no spaces) gets "Bearer " put in front.
func tokenIn(m map[string]any) string {
	for _, name := range tokenKeys {
		for k, v := range m {
			s, ok := v.(string)
			if !ok || !strings.EqualFold(k, name) {
				continue
			}
			if s == "" {
				continue
			}
			// Blanks are not "no token": they fail verification.
			if t := strings.TrimSpace(s); t != "" {
				s = t
			}
			if !strings.Contains(s, " ") {
				return "Bearer " + s
			}
			return s
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
// and, when it carries a token, authenticates the subscription with it: a
// bad token gets UNAUTHENTICATED and no data. A subscription with no token
// anywhere (connection_init, upgrade request, `headers`) gets
// UNAUTHENTICATED at once.
func authenticateSubscriptions(v *auth.Verifier, heads livesync.HeadReader, log *slog.Logger) graphql.OperationMiddleware {
	return func(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
		oc := graphql.GetOperationContext(ctx)
		if oc == nil || oc.Operation == nil || oc.Operation.Operation != ast.Subscription {
			return next(ctx)
		}
		header := subscriptionAuthorization(oc)
		if header == "" {
			if _, ok := auth.FromContext(ctx); !ok {
				return unauthenticated("no token: send one in connection_init or in the subscription's headers argument")
			}
			return next(ctx)
		}
		id, err := verifyLive(v, header)
		if err != nil {
			Logger(ctx, log).Debug("subscription token refused", "err", err)
			return unauthenticated(err.Error())
		}
		conn := wsConnFrom(ctx)
		if !conn.authenticated(id) {
			conn.close(closeTryAgainLater, conn.tooManyForSubject())
			return graphql.OneShot(&graphql.Response{Errors: gqlerror.List{{
				Message:    "too many connections for this user",
				Extensions: map[string]any{"code": string(apperr.Unavailable)},
			}}})
		}
		closeAtExpiry(ctx, conn, id)
		if livesync.HasStart(ctx, id.TenantID) {
			// connection_init authenticated this tenant and took its
			// start then, before the client's pull: keep it (RxDB sends
			// its token both there and here).
			return next(auth.WithIdentity(ctx, id))
		}
		ctx, err = withStreamStart(auth.WithIdentity(ctx, id), heads, id, log)
		if err != nil {
			// As at connection_init: no stream without its start; the
			// client reconnects and pulls.
			if conn != nil {
				conn.close(closeTryAgainLater, reasonUnavailable)
			}
			return graphql.OneShot(&graphql.Response{Errors: gqlerror.List{{
				Message:    reasonUnavailable,
				Extensions: map[string]any{"code": string(apperr.Unavailable)},
			}}})
		}
		return next(ctx)
	}
}

func unauthenticated(message string) graphql.ResponseHandler {
	return graphql.OneShot(&graphql.Response{Errors: gqlerror.List{{
		Message:    message,
		Extensions: map[string]any{"code": string(apperr.Unauthenticated)},
	}}})
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
		if s := tokenIn(headers); s != "" {
			return s
		}
	}
	return ""
}
