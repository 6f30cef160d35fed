package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"

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
		if appErr, ok := apperr.As(err); ok && appErr.Code != apperr.Internal {
			gqlErr := graphql.DefaultErrorPresenter(ctx, err)
			gqlErr.Message = appErr.Message
			if appErr.Field != "" {
				gqlErr.Message = appErr.Field + ": " + appErr.Message
			}
			gqlErr.Extensions = map[string]any{"code": string(appErr.Code)}
			if appErr.Field != "" {
				gqlErr.Extensions["field"] = appErr.Field
			}
			return gqlErr
		}
		var gqlErr *gqlerror.Error
		if errors.As(err, &gqlErr) && !errors.Is(err, context.Canceled) {
			if _, hasCode := gqlErr.Extensions["code"]; !hasCode {
				if gqlErr.Extensions == nil {
					gqlErr.Extensions = map[string]any{}
				}
				gqlErr.Extensions["code"] = string(apperr.BadUserInput)
			}
			return gqlErr
		}
		Logger(ctx, log).Error("internal error", "err", err, "path", graphql.GetPath(ctx).String())
		internal := graphql.DefaultErrorPresenter(ctx, errors.New("internal error"))
		internal.Extensions = map[string]any{"code": string(apperr.Internal)}
		return internal
	}
}

// recoverPanic turns a resolver panic into an internal error, with the stack
// in the log rather than in the response.
func recoverPanic(log *slog.Logger) graphql.RecoverFunc {
	return func(ctx context.Context, p any) error {
		Logger(ctx, log).Error("panic in resolver", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		return apperr.New(apperr.Internal, "internal error")
	}
}
