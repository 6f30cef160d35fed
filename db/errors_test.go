package db_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
)

// IsUnavailable tells an outage (retry later: UNAVAILABLE) from a failed
// request (INTERNAL or the request's own error) by SQLSTATE and error
// type. The false rows are the control: a checker that said true to
// everything would fail them.
func TestIsUnavailable(t *testing.T) {
	// A real connect error: nothing listens on port 1 of loopback.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, refused := pgx.Connect(ctx, "postgres://tidemark@127.0.0.1:1/tidemark?sslmode=disable&connect_timeout=2")
	if refused == nil {
		t.Fatal("connected to port 1")
	}
	pg := func(code string) error { return fmt.Errorf("query: %w", &pgconn.PgError{Code: code}) }
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", refused, true},
		{"connection failure (08006)", pg("08006"), true},
		{"server shutting down (57P01)", pg("57P01"), true},
		{"server crashed (57P02)", pg("57P02"), true},
		{"server starting (57P03)", pg("57P03"), true},
		{"too many connections (53300)", pg("53300"), true},
		{"statement_timeout (57014)", pg("57014"), true},
		{"deadline of an acquire or a statement", fmt.Errorf("acquire: %w", context.DeadlineExceeded), true},
		{"connection lost mid-statement", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"connection closed", fmt.Errorf("exec: %w", pgconn.ErrConnClosed), true},

		{"nil", nil, false},
		{"canceled by the caller", fmt.Errorf("query: %w", context.Canceled), false},
		{"unique violation (23505)", pg("23505"), false},
		{"serialization failure (40001)", pg("40001"), false},
		{"undefined table (42P01)", pg("42P01"), false},
		{"a bug of ours", errors.New("index out of range"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := db.IsUnavailable(tc.err); got != tc.want {
				t.Errorf("IsUnavailable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// The statement timeout is every session's statement_timeout, so the
// database itself cancels a statement (a lock wait included) past it, and
// the error is an outage to the client, not an internal error.
func TestStatementTimeoutIsTheSessionsAndAnswersUnavailable(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{MaxConns: 2, StatementTimeout: 200 * time.Millisecond})
	ctx := context.Background()
	var setting string
	if err := d.Pool.QueryRow(ctx, "SHOW statement_timeout").Scan(&setting); err != nil {
		t.Fatal(err)
	}
	if setting != "200ms" {
		t.Errorf("statement_timeout = %q, want 200ms", setting)
	}
	_, err := d.Pool.Exec(ctx, "SELECT pg_sleep(5)")
	if db.SQLState(err) != "57014" || !db.IsUnavailable(err) {
		t.Errorf("a statement past the timeout: %v (SQLSTATE %q), want 57014 and IsUnavailable", err, db.SQLState(err))
	}
	// A pool without the bound lets the same statement run.
	free := dbtest.Open(t, db.PoolConfig{MaxConns: 1, StatementTimeout: -1})
	if _, err := free.Pool.Exec(ctx, "SELECT pg_sleep(0.3)"); err != nil {
		t.Errorf("without a statement timeout: %v", err)
	}
}

// A pool whose every connection is busy past the acquire timeout answers
// an outage error (the client retries), but it is load, not an outage:
// nothing says "database unavailable".
func TestBusyPoolIsNotLoggedAsAnOutage(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	d, err := db.Open(context.Background(), dbtest.URL(t), db.PoolConfig{MaxConns: 1, AcquireTimeout: 200 * time.Millisecond}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	held, err := d.Pool.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Pool.Exec(context.Background(), "SELECT 1")
	held.Release()
	if !db.IsUnavailable(err) {
		t.Errorf("an acquire past its timeout: %v, want an outage error", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(logs.String(), "database unavailable") {
		t.Errorf("a busy pool was logged as an outage:\n%s", logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
