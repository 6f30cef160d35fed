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

// ChangedScopes is one answer of DB.ChangedScopes.
type ChangedScopes struct {
	// Now is the database's clock when it read them: the next call's
	// since, less the notifier's margin for commits still in flight.
	Now time.Time
	// Heads are the scopes whose counter advanced after since.
	Heads []collections.ScopeHead
}

// ChangedScopes returns, in one statement, the heads of the scopes (of
// every tenant) whose change counter advanced after since by the database's
// clock, and that clock. A zero since reads the clock alone.
//
// The stamp is taken before the writer commits, so a scope can commit a
// little after a read that did not see it with a stamp before that read's
// clock: a caller must ask again from a margin before Now (the notifier's
// Overlap), and will then see some scopes twice.
func (d *DB) ChangedScopes(ctx context.Context, since time.Time) (ChangedScopes, error) {
	var arg any // NULL: no scope matches
	if !since.IsZero() {
		arg = since
	}
	rows, err := d.Pool.Query(ctx, stmtChangedScopes, arg)
	if err != nil {
		return ChangedScopes{}, fmt.Errorf("read changed scopes: %w", err)
	}
	defer rows.Close()
	var out ChangedScopes
	for rows.Next() {
		var (
			tenantID, collection *string
			seq                  *int64
		)
		if err := rows.Scan(&out.Now, &tenantID, &collection, &seq); err != nil {
			return ChangedScopes{}, fmt.Errorf("read changed scopes: %w", err)
		}
		if tenantID == nil || collection == nil || seq == nil {
			continue // the clock's row when nothing changed
		}
		out.Heads = append(out.Heads, collections.ScopeHead{TenantID: *tenantID, Collection: *collection, Change: *seq})
	}
	if err := rows.Err(); err != nil {
		return ChangedScopes{}, fmt.Errorf("read changed scopes: %w", err)
	}
	return out, nil
}
