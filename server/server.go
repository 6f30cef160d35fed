// Package server assembles Tidemark's HTTP surface: the GraphQL handler with
// its transports, limits and error presenter, the Playground, health
// endpoints and the middleware every request passes (request id, logging,
// CORS, body limit, authentication). It builds handlers; cmd/tidemark wires
// them to configuration and a listener.
package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/rs/cors"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"go.opentelemetry.io/otel/trace"

	"github.com/tidemark/tidemark/apperr"
	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/livesync"
	"github.com/tidemark/tidemark/wsgorilla"
)

// Config is what the HTTP surface needs. Zero limits take the defaults.
type Config struct {
	Schema   graphql.ExecutableSchema
	Verifier *auth.Verifier
	Logger   *slog.Logger

	// Ready reports whether the server can serve (database reachable, schema
	// current); /readyz answers 503 with its error otherwise.
	Ready func(ctx context.Context) error
	// Region is the region this instance runs in (TIDEMARK_REGION), shown
	// in /readyz's body; empty: not shown.
	Region string

	// Introspection lets clients (and the Playground) read the schema.
	Introspection bool
	// PlaygroundToken, when set, is filled into the Playground's
	// Authorization header (dev mode), so a newcomer can run a query at once.
	PlaygroundToken string
	// AllowedOrigins for cross-origin browser requests; ["*"] allows any
	// origin (dev mode). Credentials are never allowed: auth is a bearer token.
	AllowedOrigins []string

	// Demo serves the demo app (web/demo) at /demo. DevTokens, when set (dev
	// mode only), issues the tokens of its dev identities (DevIdentities),
	// which GET /demo/identities hands to loopback requests.
	Demo      bool
	DevTokens func(userID, role string) (string, error)

	// WebsocketPing is the keep-alive interval of websocket connections;
	// a graphql-transport-ws peer that misses two pongs is dropped (default 20s).
	WebsocketPing time.Duration
	// WebsocketWriteTimeout bounds every websocket write: a connection whose
	// peer stops reading is closed once a write has waited this long
	// (default wsgorilla.DefaultWriteTimeout, 10s; negative: no bound).
	WebsocketWriteTimeout time.Duration
	// WebsocketLimits bound websocket connections: how many (in total, per
	// client address, per user), how fast new ones are let in, subscriptions
	// per connection, message size, init and auth deadlines, idle timeout
	// and maximum lifetime. Zero fields take the defaults listed there.
	WebsocketLimits WebsocketLimits

	// Heads, if set, lets streams start from the moment their connection
	// was accepted (see livesync.WithStart).
	Heads livesync.HeadReader

	// Unavailable, if set, reports whether an error means the database is
	// out or did not answer in time (db.IsUnavailable): such an error
	// answers UNAVAILABLE, which clients retry, and is not logged one by
	// one (the database logs each outage once).
	Unavailable func(error) bool

	// Draining, if set, ends when the program begins to shut down: from
	// then on /readyz answers 503 "shutting down", so load balancers stop
	// sending new clients while requests are still served.
	Draining context.Context
	// Websockets, if set, holds the open websocket connections, so that
	// the program can close them all with 1001 as its listener closes
	// (Websockets.GoAway).
	Websockets *Websockets

	// ResponseContext, if set, prepares the context of every response (each
	// query, and each event of a subscription): the per-response dataloaders.
	ResponseContext func(ctx context.Context) context.Context

	// TracerProvider, when set, traces every GraphQL operation (a span per
	// operation, continuing an incoming W3C traceparent) and puts the trace
	// and span ids in the request's log lines; nil: tracing is off.
	TracerProvider trace.TracerProvider

	// QueryCacheBytes bounds the parsed-query cache and APQBytes the
	// automatic persisted queries (defaults 32 MiB and 16 MiB).
	QueryCacheBytes int64
	APQBytes        int64

	MaxBodyBytes    int64 // default 16 MiB
	MaxDepth        int   // default 15
	ComplexityLimit int   // default 20000: a full 500-item page passes, a 500×500 nesting does not

	// Per-document limits, checked before validation (see documentLimits).
	// MaxTokens bounds the lexical tokens of a document (default 10,000),
	// MaxFields the fields it selects with its fragments expanded (1,000),
	// MaxAliases its aliases (30) and MaxOperations its operations (10).
	MaxTokens     int
	MaxFields     int
	MaxAliases    int
	MaxOperations int
	// MaxErrors bounds the errors of one response, validation included
	// (default 100); MaxResponseBytes the data of one response (64 MiB).
	MaxErrors        int
	MaxResponseBytes int64

	// Request rates to /graphql as token buckets (requests per second and
	// burst), per client address, before authentication (defaults 100/s,
	// burst 300; generous, as phones behind carrier NAT share addresses;
	// websocket upgrades count too), and per caller (tenant and user; 30/s,
	// burst 100). A negative rate turns that limit off. RateLimitKeys
	// bounds the addresses and callers each tracks (default 100,000).
	AddressRate   float64
	AddressBurst  int
	IdentityRate  float64
	IdentityBurst int
	RateLimitKeys int
	// PushesInFlight is how many pushes one caller may have running at
	// once (default 4, one per collection); negative: no limit.
	PushesInFlight int
	// TrustedProxies are the proxies whose X-Forwarded-For names the client
	// (ParseTrustedProxies); none by default, so the header is ignored.
	TrustedProxies []netip.Prefix
	// SyncFields names the root fields that pull or push ("Query.pullSites":
	// "pull", "Mutation.pushSites": "push"), for the one-sync-field rule and
	// PushesInFlight; wiring fills it from the generated resolvers.
	SyncFields map[string]string
	// Now is the rate limiters' clock (default time.Now), for tests.
	Now func() time.Time
	// Metrics turns on Prometheus metrics and, with Serve, GET /metrics (metrics.go).
	Metrics MetricsConfig
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 16 << 20
	}
	fillDefault(&c.MaxDepth, DefaultMaxDepth)
	fillDefault(&c.ComplexityLimit, DefaultComplexityLimit)
	if c.QueryCacheBytes == 0 {
		c.QueryCacheBytes = 32 << 20
	}
	if c.APQBytes == 0 {
		c.APQBytes = 16 << 20
	}
	fillDefault(&c.MaxTokens, DefaultMaxTokens)
	fillDefault(&c.MaxFields, DefaultMaxFields)
	fillDefault(&c.MaxAliases, DefaultMaxAliases)
	fillDefault(&c.MaxOperations, DefaultMaxOperations)
	fillDefault(&c.MaxErrors, DefaultMaxErrors)
	fillDefault(&c.MaxResponseBytes, DefaultMaxResponseBytes)
	fillDefault(&c.AddressRate, DefaultAddressRate)
	fillDefault(&c.AddressBurst, DefaultAddressBurst)
	fillDefault(&c.IdentityRate, DefaultIdentityRate)
	fillDefault(&c.IdentityBurst, DefaultIdentityBurst)
	fillDefault(&c.PushesInFlight, DefaultPushesInFlight)
	if c.WebsocketPing == 0 {
		c.WebsocketPing = 20 * time.Second
	}
	if c.WebsocketWriteTimeout == 0 {
		c.WebsocketWriteTimeout = wsgorilla.DefaultWriteTimeout
	}
	return c
}

func fillDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// NewGraphQL builds the GraphQL handler with explicit transports and
// extensions (never gqlgen's NewDefaultServer, whose defaults we would not
// choose).
func NewGraphQL(cfg Config) (*handler.Server, error) {
	cfg = cfg.withDefaults()
	queryCache, apqCache, err := newCaches(cfg)
	if err != nil {
		return nil, err
	}
	return newGraphQL(cfg, newRequestLimits(cfg), queryCache, apqCache), nil
}

func newCaches(cfg Config) (graphql.Cache[*ast.QueryDocument], graphql.Cache[string], error) {
	queryCache, err := newRistrettoCache(cfg.QueryCacheBytes, func(key string, _ *ast.QueryDocument) int64 {
		return 8 * int64(len(key)) // a parsed document is several times its text
	})
	if err != nil {
		return nil, nil, err
	}
	apqCache, err := newRistrettoCache(cfg.APQBytes, func(key, query string) int64 {
		return int64(len(key) + len(query))
	})
	if err != nil {
		return nil, nil, err
	}
	return queryCache, apqCache, nil
}

func newGraphQL(cfg Config, limits *requestLimits, queryCache graphql.Cache[*ast.QueryDocument], apqCache graphql.Cache[string]) *handler.Server {
	srv := handler.New(cfg.Schema)
	// The websocket transport first: it claims upgrade requests.
	srv.AddTransport(websocketTransport(cfg))
	srv.AddTransport(transport.Options{})
	srv.AddTransport(httpTransport{log: cfg.Logger})
	if cfg.TracerProvider != nil {
		// The first extension is the outermost: the operation's span covers
		// every other one, refusals included, and they log with its ids.
		srv.AroundOperations(traceOperations(cfg.TracerProvider.Tracer(tracerName), cfg.SyncFields))
	}
	if cfg.Metrics.Metrics != nil {
		srv.Use(requestMetrics{cfg.Metrics.Metrics}) // first: outermost, it sees what goes out
	}
	srv.SetQueryCache(queryCache)
	srv.SetParserTokenLimit(cfg.MaxTokens)
	srv.SetDisableSuggestion(!cfg.Introspection)
	srv.SetValidationRulesFn(cappedValidationRules(cfg.MaxErrors, cfg.Introspection))
	// APQ first: it turns a hash into the document the limits then check.
	srv.Use(extension.AutomaticPersistedQuery{Cache: apqCache})
	srv.Use(newDocumentLimits(cfg, queryCache))
	if cfg.Introspection {
		srv.Use(extension.Introspection{})
	}
	srv.Use(newDepthLimit(cfg.MaxDepth))
	srv.Use(extension.FixedComplexityLimit(cfg.ComplexityLimit))
	srv.AroundOperations(authenticateSubscriptions(cfg.Verifier, cfg.Heads, cfg.Logger))
	srv.Use(pushLimit{limits})
	srv.AroundResponses(limitResponse(cfg.MaxErrors, cfg.MaxResponseBytes))
	// Errors are classified by the presenter, not a field middleware (see
	// classifyFieldError): no per-field cost on the way.
	srv.SetErrorPresenter(presentError(cfg.Logger, cfg.Unavailable))
	srv.SetRecoverFunc(recoverPanic(cfg.Logger))
	if cfg.ResponseContext != nil {
		srv.AroundResponses(func(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
			return next(cfg.ResponseContext(ctx))
		})
	}
	return srv
}

// New returns Tidemark's whole HTTP handler.
func New(cfg Config) (http.Handler, error) {
	cfg = cfg.withDefaults()
	limits := newRequestLimits(cfg)
	queryCache, apqCache, err := newCaches(cfg)
	if err != nil {
		return nil, err
	}
	gql := newGraphQL(cfg, limits, queryCache, apqCache)

	// In order: the rate limit by client address (cheap, before any token
	// is verified; upgrades too), authentication (no token, no parsing: a
	// 401 before the body is read), the rate limit by caller, the body
	// limit, GraphQL.
	mux := http.NewServeMux()
	mux.Handle("/graphql", countRejections(cfg.Metrics.Metrics, negotiatedErrors(limits.byAddressMiddleware(withWebsocketSlot(cfg,
		cfg.Verifier.Middleware(limits.byIdentityMiddleware(limitBody(cfg.MaxBodyBytes, gql)), auth.MiddlewareOptions{}))))))
	if cfg.Metrics.Serve && cfg.Metrics.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics.Metrics.Handler())
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		body := func(kv ...string) map[string]string {
			m := map[string]string{}
			if cfg.Region != "" {
				m["region"] = cfg.Region
			}
			for i := 0; i+1 < len(kv); i += 2 {
				m[kv[i]] = kv[i+1]
			}
			return m
		}
		if cfg.Draining != nil && cfg.Draining.Err() != nil {
			writeJSON(w, http.StatusServiceUnavailable, body("status", "unavailable", "reason", "shutting down"))
			return
		}
		if cfg.Ready != nil {
			if err := cfg.Ready(r.Context()); err != nil {
				Logger(r.Context(), cfg.Logger).Warn("not ready", "err", err)
				writeJSON(w, http.StatusServiceUnavailable, body("status", "unavailable", "reason", err.Error()))
				return
			}
		}
		writeJSON(w, http.StatusOK, body("status", "ready"))
	})
	pg, err := newPlayground(cfg.PlaygroundToken)
	if err != nil {
		return nil, err
	}
	mux.HandleFunc("GET /{$}", pg.servePage)
	mux.HandleFunc("GET "+PlaygroundAssetsPath, pg.serveAsset)
	mountDemo(mux, cfg)

	corsOptions := cors.Options{
		AllowedOrigins: cfg.AllowedOrigins,
		AllowedMethods: []string{http.MethodGet, http.MethodPost, http.MethodOptions},
		AllowedHeaders: []string{"Authorization", "Content-Type", RequestIDHeader},
		ExposedHeaders: []string{RequestIDHeader},
		MaxAge:         600,
	}
	if len(cfg.AllowedOrigins) == 0 {
		// rs/cors would read an empty list as "any origin"; an empty list
		// means none here, as it does for websocket upgrades.
		corsOptions.AllowOriginFunc = func(string) bool { return false }
	}
	corsHandler := cors.New(corsOptions)
	var tracer trace.Tracer
	if cfg.TracerProvider != nil {
		tracer = cfg.TracerProvider.Tracer(tracerName)
	}
	return withRequestLogging(cfg.Logger, tracer, corsOnlyOn("/graphql", corsHandler, mux)), nil
}

// limitBody bounds what a client may upload in one request. A body of
// unknown length (chunked) is read here, through the limit, so an oversized
// one gets the same 413 as one that declares its length; gqlgen reads whole
// bodies anyway.
func limitBody(limit int64, next http.Handler) http.Handler {
	tooLarge := func(w http.ResponseWriter) {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]any{"errors": []map[string]any{{
			"message":    fmt.Sprintf("request body larger than %d bytes", limit),
			"extensions": map[string]string{"code": "BAD_USER_INPUT"},
		}}})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			tooLarge(w)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		if r.ContentLength < 0 && r.Method == http.MethodPost {
			body, err := io.ReadAll(r.Body)
			var maxErr *http.MaxBytesError
			if errors.As(err, &maxErr) {
				tooLarge(w)
				return
			}
			if err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]any{"errors": []map[string]any{{
					"message":    "could not read request body",
					"extensions": map[string]string{"code": "BAD_USER_INPUT"},
				}}})
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// httpTransport serves GraphQL over plain HTTP GET and POST in place of
// gqlgen's transport.GET and transport.POST, which echo a body they cannot
// decode (with Go type names) back to the client, take a batched (JSON
// array) request for garbage, and hold a subscription sent over HTTP open
// until its first event. Everything it refuses is a short BAD_REQUEST.
type httpTransport struct{ log *slog.Logger }

var _ graphql.Transport = httpTransport{}

func (httpTransport) Supports(r *http.Request) bool {
	return r.Header.Get("Upgrade") == "" && (r.Method == http.MethodGet || r.Method == http.MethodPost)
}

func (t httpTransport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	ctx := r.Context()
	start := graphql.Now()
	params, status, refusal := readGraphQLRequest(r)
	if refusal != "" {
		writeGraphQLError(w, r, status, badRequest(refusal))
		return
	}
	params.Headers = r.Header
	params.ReadTime = graphql.TraceTiming{Start: start, End: graphql.Now()}

	contentType := responseContentType(r)
	oc, errs := exec.CreateOperationContext(ctx, params)
	if errs != nil {
		// As gqlgen's transports: a request refused before it ran is 422,
		// or 400 for clients that read application/graphql-response+json.
		status = http.StatusOK
		if errcode.GetErrorKind(errs) == errcode.KindProtocol {
			status = http.StatusUnprocessableEntity
			if contentType == graphQLResponseJSON {
				status = http.StatusBadRequest
			}
		}
		t.write(w, r, status, exec.DispatchError(graphql.WithOperationContext(ctx, oc), errs))
		return
	}
	switch op := oc.Operation.Operation; {
	case op == ast.Subscription:
		writeGraphQLError(w, r, http.StatusBadRequest, badRequest(
			"subscriptions run over a websocket: connect to /graphql with the graphql-transport-ws protocol"))
		return
	case op == ast.Mutation && r.Method == http.MethodGet:
		w.Header().Set("Allow", http.MethodPost)
		writeGraphQLError(w, r, http.StatusMethodNotAllowed, badRequest("mutations are sent with POST"))
		return
	}
	responses, opCtx := exec.DispatchOperation(ctx, oc)
	resp := responses(opCtx)
	status = http.StatusOK
	if wait, refused := rateLimited(resp); refused {
		w.Header().Set("Retry-After", strconv.Itoa(wait))
		status = http.StatusTooManyRequests
	}
	t.write(w, r, status, resp)
}

func (t httpTransport) write(w http.ResponseWriter, r *http.Request, status int, resp *graphql.Response) {
	body, err := json.Marshal(resp)
	if err != nil {
		// Data is already JSON; only a broken marshaler gets here.
		Logger(r.Context(), t.log).Error("internal error: response not encodable", "err", err)
		writeGraphQLError(w, r, http.StatusInternalServerError, &gqlerror.Error{
			Message: "internal error", Extensions: map[string]any{"code": string(apperr.Internal)},
		})
		return
	}
	w.Header().Set("Content-Type", responseContentType(r))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// rateLimited reports whether a response is only a RATE_LIMITED refusal
// (a push over the caller's pushes in flight), and its retry hint.
func rateLimited(resp *graphql.Response) (retryAfter int, ok bool) {
	if resp == nil || len(resp.Errors) == 0 || (len(resp.Data) > 0 && string(resp.Data) != "null") {
		return 0, false
	}
	for _, e := range resp.Errors {
		if e.Extensions["code"] != string(apperr.RateLimited) {
			return 0, false
		}
		if s, ok := e.Extensions["retryAfter"].(int); ok {
			retryAfter = max(retryAfter, s)
		}
	}
	return max(retryAfter, 1), true
}

const requestShape = `the request must be a JSON object: {"query": "…", "operationName": "…", "variables": {…}, "extensions": {…}}`

// readGraphQLRequest reads a GET query string or a POST JSON body. On a
// request it cannot take it returns the status and a short message, which
// never repeats the request.
func readGraphQLRequest(r *http.Request) (params *graphql.RawParams, status int, refusal string) {
	params = &graphql.RawParams{}
	if r.Method == http.MethodGet {
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return nil, http.StatusBadRequest, "the query string could not be read"
		}
		params.Query, params.OperationName = q.Get("query"), q.Get("operationName")
		if v := q.Get("variables"); v != "" {
			if err := decodeJSON([]byte(v), &params.Variables); err != nil {
				return nil, http.StatusBadRequest, "variables must be a JSON object"
			}
		}
		if v := q.Get("extensions"); v != "" {
			if err := decodeJSON([]byte(v), &params.Extensions); err != nil {
				return nil, http.StatusBadRequest, "extensions must be a JSON object"
			}
		}
		return params, 0, ""
	}
	if mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mediaType != "application/json" {
		return nil, http.StatusUnsupportedMediaType, "send the request as Content-Type: application/json"
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return nil, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", maxErr.Limit)
		}
		return nil, http.StatusBadRequest, "could not read request body"
	}
	switch trimmed := bytes.TrimLeft(body, " \t\r\n"); {
	case len(trimmed) > 0 && trimmed[0] == '[':
		return nil, http.StatusBadRequest, "batched requests are not supported: send one operation per request"
	case len(trimmed) == 0 || trimmed[0] != '{':
		return nil, http.StatusBadRequest, requestShape
	}
	if err := decodeJSON(body, params); err != nil {
		return nil, http.StatusBadRequest, requestShape
	}
	return params, 0, ""
}

// decodeJSON decodes exactly one JSON value, numbers kept as json.Number
// (as gqlgen does, so large integers keep their digits).
func decodeJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}
