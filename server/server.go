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
	"net/http"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/rs/cors"
	"github.com/vektah/gqlparser/v2/ast"

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

	// Heads, if set, lets streams start from the moment their connection
	// was accepted (see livesync.WithStart).
	Heads livesync.HeadReader

	// ResponseContext, if set, prepares the context of every response (each
	// query, and each event of a subscription): the per-response dataloaders.
	ResponseContext func(ctx context.Context) context.Context

	// QueryCacheBytes bounds the parsed-query cache and APQBytes the
	// automatic persisted queries (defaults 32 MiB and 16 MiB).
	QueryCacheBytes int64
	APQBytes        int64

	MaxBodyBytes    int64 // default 16 MiB
	MaxDepth        int   // default 15
	ComplexityLimit int   // default 20000: a full 500-item page passes, a 500×500 nesting does not
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 16 << 20
	}
	if c.MaxDepth == 0 {
		c.MaxDepth = 15
	}
	if c.ComplexityLimit == 0 {
		c.ComplexityLimit = 20_000
	}
	if c.QueryCacheBytes == 0 {
		c.QueryCacheBytes = 32 << 20
	}
	if c.APQBytes == 0 {
		c.APQBytes = 16 << 20
	}
	if c.WebsocketPing == 0 {
		c.WebsocketPing = 20 * time.Second
	}
	if c.WebsocketWriteTimeout == 0 {
		c.WebsocketWriteTimeout = wsgorilla.DefaultWriteTimeout
	}
	return c
}

// NewGraphQL builds the GraphQL handler with explicit transports and
// extensions (never gqlgen's NewDefaultServer, whose defaults we would not
// choose).
func NewGraphQL(cfg Config) (*handler.Server, error) {
	cfg = cfg.withDefaults()
	queryCache, err := newRistrettoCache(cfg.QueryCacheBytes, func(key string, _ *ast.QueryDocument) int64 {
		return 8 * int64(len(key)) // a parsed document is several times its text
	})
	if err != nil {
		return nil, err
	}
	apqCache, err := newRistrettoCache(cfg.APQBytes, func(key, query string) int64 {
		return int64(len(key) + len(query))
	})
	if err != nil {
		return nil, err
	}
	srv := handler.New(cfg.Schema)
	// The websocket transport first: it claims upgrade requests.
	srv.AddTransport(websocketTransport(cfg))
	srv.AddTransport(transport.Options{})
	srv.AddTransport(transport.GET{})
	srv.AddTransport(transport.POST{})
	srv.SetQueryCache(queryCache)
	srv.Use(extension.AutomaticPersistedQuery{Cache: apqCache})
	if cfg.Introspection {
		srv.Use(extension.Introspection{})
	}
	srv.Use(newDepthLimit(cfg.MaxDepth))
	srv.Use(extension.FixedComplexityLimit(cfg.ComplexityLimit))
	srv.AroundOperations(authenticateSubscriptions(cfg.Verifier, cfg.Heads, cfg.Logger))
	srv.AroundFields(classifyFieldErrors)
	srv.SetErrorPresenter(presentError(cfg.Logger))
	srv.SetRecoverFunc(recoverPanic(cfg.Logger))
	if cfg.ResponseContext != nil {
		srv.AroundResponses(func(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
			return next(cfg.ResponseContext(ctx))
		})
	}
	return srv, nil
}

// New returns Tidemark's whole HTTP handler.
func New(cfg Config) (http.Handler, error) {
	cfg = cfg.withDefaults()
	gql, err := NewGraphQL(cfg)
	if err != nil {
		return nil, err
	}

	mux := http.NewServeMux()
	mux.Handle("/graphql", withWebsocketSlot(cfg.Verifier.Middleware(limitBody(cfg.MaxBodyBytes, gql), auth.MiddlewareOptions{})))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if cfg.Ready != nil {
			if err := cfg.Ready(r.Context()); err != nil {
				Logger(r.Context(), cfg.Logger).Warn("not ready", "err", err)
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": err.Error()})
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
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
	return withRequestLogging(cfg.Logger, corsOnlyOn("/graphql", corsHandler, mux)), nil
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
