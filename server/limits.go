package server

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/lexer"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator/core"
	"github.com/vektah/gqlparser/v2/validator/rules"

	"github.com/tidemark/tidemark/apperr"
	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/ratelimit"
)

// The extensions.code of each per-document limit, named after the limit
// like gqlgen's COMPLEXITY_LIMIT_EXCEEDED. They are part of the API. Over
// plain HTTP a refused document answers 422 (400 with
// application/graphql-response+json), before anything runs.
const (
	tokenLimitCode     = "TOKEN_LIMIT_EXCEEDED"
	fieldLimitCode     = "FIELD_LIMIT_EXCEEDED"
	aliasLimitCode     = "ALIAS_LIMIT_EXCEEDED"
	operationLimitCode = "OPERATION_LIMIT_EXCEEDED"
	syncFieldLimitCode = "SYNC_FIELD_LIMIT_EXCEEDED"
	// errorLimitCode marks the last error of a response whose errors were
	// cut at MaxErrors; responseSizeCode replaces a response larger than
	// MaxResponseBytes (execution has run: HTTP 200).
	errorLimitCode   = "ERROR_LIMIT_EXCEEDED"
	responseSizeCode = "RESPONSE_TOO_LARGE"
)

var registerLimitCodes sync.Once

// Defaults of the per-request limits and rate limits (Config).
const (
	DefaultMaxDepth         = 15
	DefaultComplexityLimit  = 20_000
	DefaultMaxTokens        = 10_000
	DefaultMaxFields        = 1_000
	DefaultMaxAliases       = 30
	DefaultMaxOperations    = 10
	DefaultMaxErrors        = 100
	DefaultMaxResponseBytes = 64 << 20

	// One client address is often many devices: mobile carriers put
	// thousands of phones behind one address (CGNAT), offices put a
	// crew behind one. The address limit stops floods before a token is
	// verified; the per-user limit is what bounds one device.
	DefaultAddressRate   = 1000
	DefaultAddressBurst  = 2000
	DefaultIdentityRate  = 30
	DefaultIdentityBurst = 100
	// RxDB pushes each collection's batches one at a time: a user with
	// two devices syncing four collections has up to eight in flight.
	DefaultPushesInFlight = 8
)

// documentLimits refuses documents too big to validate cheaply, before
// gqlgen's validation runs: validation is where a small document turns
// expensive (2,000 repeats of one alias with different arguments made a
// 479 MB error body; a fragment spread twice per level costs 2ⁿ). It lexes
// and parses the document once more, which is linear and bounded by the
// token limit; a document already in the query cache passed before.
//
// After validation it allows at most one sync root field (a pull or a
// push) per operation; see MutateOperationContext.
type documentLimits struct {
	maxTokens, maxFields, maxAliases, maxOperations int
	checked                                         graphql.Cache[*ast.QueryDocument]
	syncFields                                      map[string]string
	schema                                          *ast.Schema
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationParameterMutator
	graphql.OperationContextMutator
} = &documentLimits{}

func newDocumentLimits(cfg Config, checked graphql.Cache[*ast.QueryDocument]) *documentLimits {
	registerLimitCodes.Do(func() {
		for _, code := range []string{tokenLimitCode, fieldLimitCode, aliasLimitCode, operationLimitCode, syncFieldLimitCode} {
			errcode.RegisterErrorType(code, errcode.KindProtocol)
		}
	})
	return &documentLimits{
		maxTokens: cfg.MaxTokens, maxFields: cfg.MaxFields, maxAliases: cfg.MaxAliases,
		maxOperations: cfg.MaxOperations, checked: checked, syncFields: cfg.SyncFields,
	}
}

func (*documentLimits) ExtensionName() string { return "DocumentLimits" }

func (d *documentLimits) Validate(es graphql.ExecutableSchema) error {
	d.schema = es.Schema()
	return nil
}

func limitError(code, format string, args ...any) *gqlerror.Error {
	err := gqlerror.Errorf(format, args...)
	errcode.Set(err, code)
	return err
}

func (d *documentLimits) MutateOperationParameters(ctx context.Context, params *graphql.RawParams) *gqlerror.Error {
	if params.Query == "" {
		return nil
	}
	if _, ok := d.checked.Get(ctx, params.Query); ok {
		return nil
	}
	src := &ast.Source{Input: params.Query}
	lex := lexer.New(src)
	for tokens := 0; ; tokens++ {
		tok, err := lex.ReadToken()
		if err != nil {
			return nil // gqlgen's parser reports the syntax error
		}
		if tok.Kind == lexer.EOF {
			break
		}
		if tokens >= d.maxTokens {
			return limitError(tokenLimitCode, "document has more than %d tokens", d.maxTokens)
		}
	}
	doc, err := parser.ParseQuery(src)
	if err != nil {
		return nil
	}
	if n := len(doc.Operations); n > d.maxOperations {
		return limitError(operationLimitCode, "document has %d operations; the limit is %d", n, d.maxOperations)
	}
	c := fieldCounter{fragments: map[string]*ast.FragmentDefinition{}, expanded: map[string]int{}, cap: d.maxFields + 1}
	for _, f := range doc.Fragments {
		c.fragments[f.Name] = f
	}
	fields := 0
	for _, op := range doc.Operations {
		fields = c.add(fields, c.count(op.SelectionSet))
	}
	for _, f := range doc.Fragments {
		fields = c.add(fields, c.fragment(f.Name))
	}
	if c.aliases > d.maxAliases {
		return limitError(aliasLimitCode, "document has %d aliases; the limit is %d", c.aliases, d.maxAliases)
	}
	if fields > d.maxFields {
		return limitError(fieldLimitCode, "document selects more than %d fields once its fragments are expanded", d.maxFields)
	}
	return nil
}

// fieldCounter counts the fields a document selects with every fragment
// spread expanded (what validation and execution walk), each fragment's
// count computed once, sums saturating at cap; and the aliases as written.
type fieldCounter struct {
	fragments map[string]*ast.FragmentDefinition
	expanded  map[string]int
	visiting  map[string]bool
	cap       int
	aliases   int
}

func (c *fieldCounter) add(a, b int) int { return min(a+b, c.cap) }

func (c *fieldCounter) count(set ast.SelectionSet) int {
	n := 0
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			if s.Alias != "" && s.Alias != s.Name {
				c.aliases++
			}
			n = c.add(n, c.add(1, c.count(s.SelectionSet)))
		case *ast.InlineFragment:
			n = c.add(n, c.count(s.SelectionSet))
		case *ast.FragmentSpread:
			n = c.add(n, c.fragment(s.Name))
		}
	}
	return n
}

// fragment is a fragment's expanded count; an unknown fragment or a cycle
// counts nothing here, validation refuses both.
func (c *fieldCounter) fragment(name string) int {
	if n, ok := c.expanded[name]; ok {
		return n
	}
	def, ok := c.fragments[name]
	if !ok || c.visiting[name] {
		return 0
	}
	if c.visiting == nil {
		c.visiting = map[string]bool{}
	}
	c.visiting[name] = true
	n := c.count(def.SelectionSet)
	delete(c.visiting, name)
	c.expanded[name] = n
	return n
}

// MutateOperationContext allows one sync root field per operation. A pull
// may return up to 1,000 documents and a push write 1,000 rows in its own
// transaction; aliased, one small request did sixty of either (640 MB of
// response, 50,000 rows written). Pricing them in the complexity limit
// (resolvers.Complexity) keeps a pull mixed with read fields honest, but a
// budget that admits one full pull would still admit many small pushes,
// each a transaction. RxDB, the client we serve, sends one pull or push per
// request, so the rule costs real clients nothing, and a client that wants
// several collections sends several requests (HTTP/2 multiplexes them).
func (d *documentLimits) MutateOperationContext(_ context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	if n := len(syncRootFields(oc, d.schema, d.syncFields, "")); n > 1 {
		return limitError(syncFieldLimitCode, "an operation may hold one pull or push field, this one holds %d: send one per request", n)
	}
	return nil
}

// syncRootFields are the operation's root fields that are sync fields of
// the given verb ("" for any), with @skip/@include and fragments applied.
func syncRootFields(oc *graphql.OperationContext, schema *ast.Schema, syncFields map[string]string, verb string) []graphql.CollectedField {
	if oc == nil || oc.Operation == nil || schema == nil || len(syncFields) == 0 {
		return nil
	}
	var root *ast.Definition
	switch oc.Operation.Operation {
	case ast.Query:
		root = schema.Query
	case ast.Mutation:
		root = schema.Mutation
	default:
		return nil
	}
	if root == nil {
		return nil
	}
	var out []graphql.CollectedField
	for _, f := range graphql.CollectFields(oc, oc.Operation.SelectionSet, []string{root.Name}) {
		if v, ok := syncFields[root.Name+"."+f.Name]; ok && (verb == "" || v == verb) {
			out = append(out, f)
		}
	}
	return out
}

// cappedValidationRules returns gqlgen's default validation rules, each
// reporting through one counter per document, so that a document makes at
// most maxErrors validation errors however many conflicts it holds (the
// last says so): the rest are dropped before their messages are even
// formatted. Without
// suggestions, the rules that suggest field names are swapped for their
// silent variants and "Did you mean …" is cut from the rest (enum values),
// so a schema with introspection off does not leak through its errors.
func cappedValidationRules(maxErrors int, suggestions bool) func() *rules.Rules {
	return func() *rules.Rules {
		base := rules.NewDefaultRules()
		if !suggestions {
			base.RemoveRule(rules.FieldsOnCorrectTypeRule.Name)
			base.RemoveRule(rules.ScalarLeafsRule.Name)
			base.AddRule(rules.FieldsOnCorrectTypeRuleWithoutSuggestions.Name, rules.FieldsOnCorrectTypeRuleWithoutSuggestions.RuleFunc)
			base.AddRule(rules.ScalarLeafsRuleWithoutSuggestions.Name, rules.ScalarLeafsRuleWithoutSuggestions.RuleFunc)
		}
		reported := 0
		out := rules.NewRules()
		for name, rule := range base.GetInner() {
			out.AddRule(name, func(observers *core.Events, addError core.AddErrFunc) {
				rule(observers, func(options ...core.ErrorOption) {
					reported++
					switch {
					case reported < maxErrors:
						if !suggestions {
							options = append(options, withoutSuggestion)
						}
						addError(options...)
					case reported == maxErrors:
						addError(core.Message("too many validation errors; only the first %d are reported", maxErrors-1))
					}
				})
			})
		}
		return out
	}
}

func withoutSuggestion(err *gqlerror.Error) {
	if before, _, found := strings.Cut(err.Message, " Did you mean"); found {
		err.Message = before
	}
}

// limitResponse caps what one response may carry: at most maxErrors
// errors (the last one says how many were left out) and at most maxBytes
// of data. The size check comes after execution, as a backstop to the
// document limits and the complexity limit that refuse big work up front.
func limitResponse(maxErrors int, maxBytes int64) graphql.ResponseMiddleware {
	return func(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
		resp := next(ctx)
		if resp == nil {
			return nil
		}
		if int64(len(resp.Data)) > maxBytes {
			resp.Data = nil
			resp.Errors = gqlerror.List{{
				Message:    fmt.Sprintf("response larger than %d bytes; ask for fewer documents (a smaller limit or page)", maxBytes),
				Extensions: map[string]any{"code": responseSizeCode},
			}}
		}
		if n := len(resp.Errors); n > maxErrors {
			resp.Errors = append(resp.Errors[:maxErrors:maxErrors], &gqlerror.Error{
				Message:    fmt.Sprintf("%d more errors left out", n-maxErrors),
				Extensions: map[string]any{"code": errorLimitCode},
			})
		}
		return resp
	}
}

// requestLimits are the rate limits of the HTTP path.
type requestLimits struct {
	byAddress  *ratelimit.Keyed
	byIdentity *ratelimit.Keyed
	pushes     *ratelimit.Concurrency
	trusted    []netip.Prefix
	syncFields map[string]string
	schema     *ast.Schema
}

func newRequestLimits(cfg Config) *requestLimits {
	keyed := func(rate float64, burst int) *ratelimit.Keyed {
		return ratelimit.NewKeyed(ratelimit.Options{Rate: rate, Burst: burst, MaxKeys: cfg.RateLimitKeys, Now: cfg.Now})
	}
	return &requestLimits{
		byAddress:  keyed(cfg.AddressRate, cfg.AddressBurst),
		byIdentity: keyed(cfg.IdentityRate, cfg.IdentityBurst),
		pushes:     ratelimit.NewConcurrency(cfg.PushesInFlight),
		trusted:    cfg.TrustedProxies,
		syncFields: cfg.SyncFields,
	}
}

// byAddressMiddleware limits every request to /graphql by client address,
// before the token is verified, so a flood of bad tokens costs us little.
// Websocket upgrades pass it too; how many connections are held and how
// fast new ones are let in is the websocket side's (WebsocketLimits).
func (l *requestLimits) byAddressMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ok, wait := l.byAddress.Allow(addressKey(clientAddressBehind(r, l.trusted))); !ok {
			writeRateLimited(w, r, wait)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// byIdentityMiddleware limits authenticated requests per caller (tenant and
// user), wherever they come from. It runs after authentication.
func (l *requestLimits) byIdentityMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, ok := auth.FromContext(r.Context()); ok {
			if ok, wait := l.byIdentity.Allow(identityKey(id)); !ok {
				writeRateLimited(w, r, wait)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func identityKey(id auth.Identity) string { return id.TenantID + "\x00" + id.UserID }

// limitPushes allows each caller PushesInFlight pushes at a time, over any
// transport; one more is refused with RATE_LIMITED before it runs (over
// HTTP with 429 and Retry-After).
func (l *requestLimits) limitPushes(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	oc := graphql.GetOperationContext(ctx)
	id, authenticated := auth.FromContext(ctx)
	if l.pushes == nil || !authenticated || len(syncRootFields(oc, l.schema, l.syncFields, "push")) == 0 {
		return next(ctx)
	}
	release, ok := l.pushes.Acquire(identityKey(id))
	if !ok {
		return graphql.OneShot(&graphql.Response{Errors: gqlerror.List{rateLimitedError(ratelimit.Jitter(time.Second))}})
	}
	// The response handler of a query or mutation is called once; should
	// it never be, the slot comes back with the request.
	stop := context.AfterFunc(ctx, release)
	handler := next(ctx)
	return func(ctx context.Context) *graphql.Response {
		defer func() {
			stop()
			release()
		}()
		return handler(ctx)
	}
}

// pushLimit runs limitPushes around every operation.
type pushLimit struct{ l *requestLimits }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationInterceptor
} = pushLimit{}

func (pushLimit) ExtensionName() string { return "PushLimit" }
func (p pushLimit) Validate(es graphql.ExecutableSchema) error {
	p.l.schema = es.Schema()
	return nil
}
func (p pushLimit) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	return p.l.limitPushes(ctx, next)
}

func retrySeconds(wait time.Duration) int {
	return max(1, int(math.Ceil(wait.Seconds())))
}

func rateLimitedError(wait time.Duration) *gqlerror.Error {
	s := retrySeconds(wait)
	return &gqlerror.Error{
		Message:    fmt.Sprintf("too many requests; retry after %d seconds", s),
		Extensions: map[string]any{"code": string(apperr.RateLimited), "retryAfter": s},
	}
}

func writeRateLimited(w http.ResponseWriter, r *http.Request, wait time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(retrySeconds(wait)))
	writeGraphQLError(w, r, http.StatusTooManyRequests, rateLimitedError(wait))
}

func isUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet && r.Header.Get("Upgrade") != ""
}

// clientAddressBehind is the address of the client: the connection's peer, or,
// when that peer is a trusted proxy, the right-most address in
// X-Forwarded-For that is not itself a trusted proxy (the left-most ones
// are whatever the client chose to send).
func clientAddressBehind(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer := parseAddr(r.RemoteAddr)
	if !isTrusted(peer, trusted) {
		return peer
	}
	hops := r.Header.Values("X-Forwarded-For")
	addr := peer
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return addr // a garbled hop: trust nothing further left
			}
			addr = a.Unmap()
			if !isTrusted(addr, trusted) {
				return addr
			}
		}
	}
	return addr
}

func parseAddr(hostport string) netip.Addr {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// addressKey keys IPv6 clients by their /64, the block one subscriber
// gets, so that a client cannot walk its own block for fresh buckets.
func addressKey(a netip.Addr) string {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// ParseTrustedProxies reads a comma-separated list of addresses and CIDR
// blocks (TIDEMARK_TRUSTED_PROXIES); an empty list trusts no proxy.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if strings.Contains(part, "/") {
			p, err := netip.ParsePrefix(part)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q is not an address or CIDR block", part)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(part)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q is not an address or CIDR block", part)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
