package db

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// SQLSTATEs of a database that is out rather than of a statement that is
// wrong: the server shut down, crashed, or is starting; a statement cut
// off by statement_timeout is in query_canceled.
const (
	sqlstateAdminShutdown = "57P01"
	sqlstateCrashShutdown = "57P02"
	sqlstateCannotConnect = "57P03"
	sqlstateQueryCanceled = "57014"
	sqlstateTooManyConns  = "53300"
)

// IsUnavailable reports whether err means the database cannot be reached or
// did not answer in time, rather than that the request was wrong: a
// connection refused, reset or lost; a server shutting down, crashing or
// starting (SQLSTATE class 08, 57P01-57P03, 53300 too many connections); a
// statement cut off by statement_timeout (57014); a pool acquire or a
// statement past its deadline. Such a request may succeed if retried
// later, so the client is told UNAVAILABLE, not "internal error". It reads
// SQLSTATEs and error types, never message text, and a request canceled by
// its caller (context.Canceled) is not an outage.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		code := pgErr.Code
		return strings.HasPrefix(code, "08") || code == sqlstateAdminShutdown || code == sqlstateCrashShutdown ||
			code == sqlstateCannotConnect || code == sqlstateTooManyConns || code == sqlstateQueryCanceled
	}
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return true
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		// A connect error that carries a server's verdict was handled
		// above; what is left is the network or the server's absence.
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	// A connection that broke mid-statement: pgconn reports the lost
	// connection as an unexpected EOF, or as a closed connection.
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, net.ErrClosed)
}
