// Package apperr is Tidemark's one application error type. Every error a
// client may see carries a Code; anything without one is an internal error
// that is logged and shown to the client as "internal error".
package apperr

import (
	"errors"
	"fmt"
)

// Code is a stable, machine-readable error class. Clients switch on it
// (it is sent as extensions.code), so the values are part of the API.
type Code string

const (
	BadUserInput    Code = "BAD_USER_INPUT"
	Unauthenticated Code = "UNAUTHENTICATED"
	Forbidden       Code = "FORBIDDEN"
	NotFound        Code = "NOT_FOUND"
	Conflict        Code = "CONFLICT"
	// Unavailable: the server cannot serve the request now, through no
	// fault of it (the database is out or did not answer in time, or the
	// caller holds too many connections); the same request may succeed
	// later: retry with backoff. A websocket refused or dropped for such a
	// reason closes with 1013.
	Unavailable Code = "UNAVAILABLE"
	Internal    Code = "INTERNAL"
	// CheckpointExpired: the checkpoint is older than what the server keeps
	// (tombstones are purged after a retention period) or belongs to
	// another sync set; the client starts again from a null checkpoint,
	// keeping its unsynced edits.
	CheckpointExpired Code = "CHECKPOINT_EXPIRED"
	// RateLimited: too many requests, or too many pushes in flight, for
	// this caller or client address. Over HTTP it comes with status 429 and
	// Retry-After; extensions.retryAfter says the same, in seconds.
	RateLimited Code = "RATE_LIMITED"
	// BadRequest: the HTTP request is not a GraphQL request this server
	// takes (malformed or batched body, wrong content type, a subscription
	// sent over plain HTTP).
	BadRequest Code = "BAD_REQUEST"
)

// Error is an error meant for the client: its Message is safe to show.
type Error struct {
	Code    Code
	Message string
	// Field optionally names the offending input, e.g. "rows[3].newDocumentState.title".
	Field string
	// Err is an optional cause; it is logged, never shown.
	Err error
}

func (e *Error) Error() string {
	msg := e.Message
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	if e.Err != nil {
		return msg + ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an error with a code and a formatted, client-safe message.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid reports bad input in the named field.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Code: BadUserInput, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Wrap attaches a client-safe message and code to a cause that stays private.
func Wrap(code Code, err error, message string) *Error {
	return &Error{Code: code, Message: message, Err: err}
}

// As finds the application error in err's chain.
func As(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

// CodeOf returns the code of err, or Internal when err carries none.
func CodeOf(err error) Code {
	if e, ok := As(err); ok {
		return e.Code
	}
	return Internal
}
