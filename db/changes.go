package db

import (
	"context"
	"fmt"
	"time"

	"github.com/tidemark/tidemark/collections"
)

// stmtChangedScopes is the notifier's poll: the database's clock and the
// head of every scope whose counter advanced after $1 (by the clock
// stamped at the advance, stmtAdvanceScope), read from the
// change_counters_by_changed_at index. The outer row carries the clock even
// when nothing changed (the join then yields one row of NULLs); with $1 NULL
// it reads the clock alone.
const stmtChangedScopes = `SELECT n.db_now, c.tenant_id, c.collection, c.seq
FROM (SELECT now() AS db_now) AS n
LEFT JOIN change_counters AS c ON c.changed_at > $1::TIMESTAMPTZ`

// ChangedScopes returns, in one statement, the heads of the scopes (of
// every tenant) whose change counter advanced after since by the database's
// clock, and that clock (now: the next call's since, less the caller's
// margin). A zero since reads the clock alone.
//
// The stamp is taken before the writer commits, so a scope can commit a
// little after a read that did not see it with a stamp before that read's
// clock: a caller must ask again from a margin before now (the notifier's
// Overlap), and will then see some scopes twice.
func (d *DB) ChangedScopes(ctx context.Context, since time.Time) (now time.Time, heads []collections.ScopeHead, err error) {
	var arg any // NULL: no scope matches
	if !since.IsZero() {
		arg = since
	}
	rows, err := d.Pool.Query(ctx, stmtChangedScopes, arg)
	if err != nil {
		return time.Time{}, nil, fmt.Errorf("read changed scopes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			tenantID, collection *string
			seq                  *int64
		)
		if err := rows.Scan(&now, &tenantID, &collection, &seq); err != nil {
			return time.Time{}, nil, fmt.Errorf("read changed scopes: %w", err)
		}
		if tenantID == nil || collection == nil || seq == nil {
			continue // the clock's row when nothing changed
		}
		heads = append(heads, collections.ScopeHead{TenantID: *tenantID, Collection: *collection, Change: *seq})
	}
	if err := rows.Err(); err != nil {
		return time.Time{}, nil, fmt.Errorf("read changed scopes: %w", err)
	}
	return now, heads, nil
}
