package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/tidemark/tidemark/apperr"
)

// presentError maps every error a client sees to a stable extensions.code.
// Application errors keep their message and code; errors gqlgen raised while
// reading the request (parse, validation, argument coercion) are the
// client's; anything else is logged with the request id and reported as
// "internal error", so no internal detail leaks.
func presentError(log *slog.Logger) graphql.ErrorPresenterFunc {
	return func(ctx context.Context, err error) *gqlerror.Error {
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
		// Resolver errors never get here unwrapped (classifyFieldErrors makes
		// them application errors), so a gqlerror is gqlgen's own verdict on
		// the request: a parse, validation or argument error.
		var gqlErr *gqlerror.Error
		if errors.As(err, &gqlErr) {
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

// classifyFieldErrors runs around every resolver. An error a resolver
// returns that is not an application error is internal: it is wrapped so
// the presenter logs it and hides it, however gqlgen wraps it on the way.
// Introspection's own refusals are the client's doing, not ours.
func classifyFieldErrors(ctx context.Context, next graphql.Resolver) (any, error) {
	res, err := next(ctx)
	if err == nil {
		return res, nil
	}
	if _, ok := apperr.As(err); ok {
		return res, err
	}
	if fc := graphql.GetFieldContext(ctx); fc != nil && strings.HasPrefix(fc.Field.Name, "__") {
		return res, apperr.Wrap(apperr.Forbidden, err, "introspection is disabled")
	}
	return res, apperr.Wrap(apperr.Internal, err, "internal error")
}

// recoverPanic turns a resolver panic into an internal error, with the stack
// in the log rather than in the response.
func recoverPanic(log *slog.Logger) graphql.RecoverFunc {
	return func(ctx context.Context, p any) error {
		Logger(ctx, log).Error("panic in resolver", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		return apperr.New(apperr.Internal, "internal error")
	}
}
