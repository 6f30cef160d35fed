package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"runtime/debug"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/tidemark/tidemark/apperr"
)

// presentError maps every error a client sees to a stable extensions.code.
// Application errors keep their message and code; errors gqlgen raised while
// reading the request (parse, validation, argument coercion) are the
// client's; anything else is logged with the request id and reported as
// "internal error", so no internal detail leaks.
func presentError(log *slog.Logger, unavailable func(error) bool) graphql.ErrorPresenterFunc {
	return func(ctx context.Context, err error) *gqlerror.Error {
		err = classifyFieldError(ctx, err, unavailable)
		if appErr, ok := apperr.As(err); ok {
			if appErr.Code == apperr.Internal {
				return internalError(ctx, log, err)
			}
			gqlErr := graphql.DefaultErrorPresenter(ctx, err)
			gqlErr.Message = appErr.Message
			gqlErr.Extensions = map[string]any{"code": string(appErr.Code)}
			if appErr.Field != "" {
				gqlErr.Message = appErr.Field + ": " + appErr.Message
				gqlErr.Extensions["field"] = appErr.Field
			}
			return gqlErr
		}
		// Resolver errors never get here unwrapped (classifyFieldError makes
		// them application errors), so a gqlerror is gqlgen's own verdict:
		// on the request (a parse, validation or argument error), or, inside
		// a field but not on one of its arguments, on our own output (a NaN
		// that cannot be written, a null for a non-null field), which is
		// never the client's doing.
		var gqlErr *gqlerror.Error
		if errors.As(err, &gqlErr) {
			if fc := graphql.GetFieldContext(ctx); fc != nil && !onArgument(fc, gqlErr.Path) {
				return internalError(ctx, log, err)
			}
			if _, hasCode := gqlErr.Extensions["code"]; !hasCode {
				if gqlErr.Extensions == nil {
					gqlErr.Extensions = map[string]any{}
				}
				gqlErr.Extensions["code"] = string(apperr.BadUserInput)
			}
			return gqlErr
		}
		return internalError(ctx, log, err)
	}
}

// onArgument reports whether path leads into one of the field's arguments
// (where gqlgen reports a value it could not coerce) rather than to the
// field or its output.
func onArgument(fc *graphql.FieldContext, path ast.Path) bool {
	fieldPath := fc.Path()
	if len(path) <= len(fieldPath) || fc.Field.Definition == nil {
		return false
	}
	for i, el := range fieldPath {
		if path[i] != el {
			return false
		}
	}
	name, ok := path[len(fieldPath)].(ast.PathName)
	return ok && fc.Field.Definition.Arguments.ForName(string(name)) != nil
}

func internalError(ctx context.Context, log *slog.Logger, err error) *gqlerror.Error {
	if errors.Is(err, context.Canceled) {
		Logger(ctx, log).Info("request canceled", "err", err, "path", graphql.GetPath(ctx).String())
	} else {
		Logger(ctx, log).Error("internal error", "err", err, "path", graphql.GetPath(ctx).String())
	}
	internal := graphql.DefaultErrorPresenter(ctx, errors.New("internal error"))
	internal.Extensions = map[string]any{"code": string(apperr.Internal)}
	return internal
}

// classifyFieldError gives an error raised in a field, that is not an
// application error and not on one of the field's arguments, its code: an
// outage (unavailable(err)) is UNAVAILABLE, so the client retries;
// introspection's own refusals are the client's doing; anything else is
// internal, so the presenter logs it and hides it. gqlgen hands the
// presenter such an error wrapped in a gqlerror carrying the field's path
// and location, which are kept.
//
// This is done here, on the way out, rather than in a field middleware:
// gqlgen runs a field middleware around every field, resolved or not, at
// the cost of a closure and three calls per field of every response
// (about 1,500 for a page of 100 work orders with their checklists),
// while only the rare field that fails needs classifying.
func classifyFieldError(ctx context.Context, err error, unavailable func(error) bool) error {
	if _, ok := apperr.As(err); ok {
		return err
	}
	gqlErr, ok := errors.AsType[*gqlerror.Error](err)
	if !ok || gqlErr.Err == nil {
		return err // gqlgen's own error, or not raised in a field
	}
	if _, own := errors.AsType[*gqlerror.Error](gqlErr.Err); own {
		return err
	}
	fc := graphql.GetFieldContext(ctx)
	if fc == nil || onArgument(fc, gqlErr.Path) {
		return err
	}
	cause := gqlErr.Err
	switch {
	case strings.HasPrefix(fc.Field.Name, "__"):
		gqlErr.Err = apperr.Wrap(apperr.Forbidden, cause, "introspection is disabled")
	case unavailable != nil && unavailable(cause):
		gqlErr.Err = errUnavailable(cause)
	default:
		gqlErr.Err = apperr.Wrap(apperr.Internal, cause, "internal error")
	}
	return gqlErr
}

// errUnavailable is what a client is told during a database outage.
func errUnavailable(cause error) *apperr.Error {
	return apperr.Wrap(apperr.Unavailable, cause, "the database is unavailable: retry later")
}

// recoverPanic turns a resolver panic into an internal error, with the stack
// in the log rather than in the response.
func recoverPanic(log *slog.Logger) graphql.RecoverFunc {
	return func(ctx context.Context, p any) error {
		Logger(ctx, log).Error("panic in resolver", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		return apperr.New(apperr.Internal, "internal error")
	}
}

// writeGraphQLError answers a request refused before GraphQL ran (rate
// limit, malformed body, …) with a GraphQL-shaped body, as
// application/graphql-response+json when the client accepts it: clients
// such as Apollo Client 4 read extensions.code of a non-2xx response only
// then. Messages here are ours and short; they never echo the request.
func writeGraphQLError(w http.ResponseWriter, r *http.Request, status int, errs ...*gqlerror.Error) {
	w.Header().Set("Content-Type", responseContentType(r))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(graphql.Response{Errors: errs})
}

func badRequest(message string) *gqlerror.Error {
	return &gqlerror.Error{Message: message, Extensions: map[string]any{"code": string(apperr.BadRequest)}}
}

const graphQLResponseJSON = "application/graphql-response+json"

// responseContentType picks application/graphql-response+json when the
// client lists it before application/json (or alone) in Accept, as the
// GraphQL-over-HTTP spec says, and application/json otherwise.
func responseContentType(r *http.Request) string {
	for part := range strings.SplitSeq(r.Header.Get("Accept"), ",") {
		mediaType, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mediaType {
		case graphQLResponseJSON:
			return graphQLResponseJSON
		case "application/json":
			return "application/json"
		}
	}
	return "application/json"
}

// negotiatedErrors lets error bodies written as application/json by
// handlers that do not negotiate (auth's 401, the body limit's 413) go out
// as application/graphql-response+json when the client asked for it.
func negotiatedErrors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isUpgrade(r) || responseContentType(r) != graphQLResponseJSON {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(&contentTypeFixer{ResponseWriter: w}, r)
	})
}

type contentTypeFixer struct{ http.ResponseWriter }

func (c *contentTypeFixer) WriteHeader(status int) {
	if h := c.Header(); status >= 400 && strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		h.Set("Content-Type", graphQLResponseJSON)
	}
	c.ResponseWriter.WriteHeader(status)
}

func (c *contentTypeFixer) Unwrap() http.ResponseWriter { return c.ResponseWriter }
