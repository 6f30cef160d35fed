package syncengine_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
	"github.com/tidemark/tidemark/syncengine"
)

func workOrder(id, title string, priority int64) collections.Document {
	return collections.Document{ID: id, Fields: map[string]any{
		"siteId": "site-1", "title": title, "description": nil, "status": "OPEN",
		"priority": priority, "assigneeId": nil, "dueAt": nil,
	}}
}

// slowCommits holds some write transactions open (after their rows are
// written, before commit) while others run, the pattern that makes a cursor
// over timestamps or sequence values skip changes.
type slowCommits struct {
	syncengine.Store
}

func (s slowCommits) WriteDocuments(ctx context.Context, tenant string, c *collections.Collection, fn func(collections.Writer) error) error {
	return s.Store.WriteDocuments(ctx, tenant, c, func(w collections.Writer) error {
		if err := fn(w); err != nil {
			return err
		}
		if rand.IntN(3) == 0 {
			time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
		}
		return nil
	})
}

// naiveStore numbers changes from a sequence without the scope lock: the
// cursor design Tidemark must not have. The gap checker must catch it.
type naiveStore struct {
	*db.DB
}

func (n naiveStore) WriteDocuments(ctx context.Context, tenant string, c *collections.Collection, fn func(collections.Writer) error) error {
	return n.DB.RunTx(ctx, db.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx *db.Tx) error {
		return fn(naiveWriter{tx: tx, tenant: tenant, d: n.DB})
	})
}

type naiveWriter struct {
	// The membership methods are never called without sync rules.
	collections.Writer
	tx     *db.Tx
	tenant string
	d      *db.DB
}

func (w naiveWriter) Get(ctx context.Context, ids []string) (map[string]collections.Document, error) {
	return w.d.GetDocuments(ctx, w.tenant, collections.WorkOrder, ids)
}

func (w naiveWriter) Put(ctx context.Context, docs []collections.Document) ([]collections.Document, error) {
	out := make([]collections.Document, len(docs))
	for i, doc := range docs {
		if err := w.tx.QueryRow(ctx, "SELECT nextval('naive_changes')").Scan(&doc.Change); err != nil {
			return nil, err
		}
		doc.UpdatedAt = time.Now()
		_, err := w.tx.Exec(ctx, `INSERT INTO work_orders (tenant_id, id, change_seq, updated_at, deleted, site_id, title, status, priority)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (tenant_id, id) DO UPDATE SET change_seq = excluded.change_seq, title = excluded.title, priority = excluded.priority`,
			w.tenant, doc.ID, doc.Change, doc.UpdatedAt, doc.Deleted, doc.Fields["siteId"], doc.Fields["title"], doc.Fields["status"], doc.Fields["priority"])
		if err != nil {
			return nil, err
		}
		out[i] = doc
	}
	// Commit late and at random, as a busy server does.
	time.Sleep(time.Duration(rand.IntN(15)) * time.Millisecond)
	return out, nil
}

type gapRun struct {
	pushers int
	// engines the pushers are spread over, as over instances of the
	// server on one database: an engine runs the pushes of one scope that
	// meet in one transaction (group.go), and the scope's change lock
	// orders the transactions of different engines. At least 1.
	engines  int
	duration time.Duration
}

type gapReport struct {
	accepted   int64 // changes committed by pushers
	pulled     int64 // documents the puller received
	missing    []string
	wrongFinal []string
}

// runGapCheck has pushers write multi-row batches (new documents and
// rewrites of existing ones) while a puller pulls from its checkpoint in
// small pages. At the end the puller catches up once more; every document's
// final state must then be the one it pulled last.
func runGapCheck(t *testing.T, d *db.DB, store syncengine.Store, run gapRun) gapReport {
	t.Helper()
	ctx := context.Background()
	engines := make([]*syncengine.Engine, max(1, run.engines))
	for i := range engines {
		engines[i] = syncengine.New(store)
	}
	engine := engines[0] // the puller's
	caller := syncengine.Caller{TenantID: "gap", UserID: "u"}
	var rep gapReport
	var seq atomic.Int64
	deadline := time.Now().Add(run.duration)

	var wg sync.WaitGroup
	errs := make(chan error, run.pushers)
	for p := 0; p < run.pushers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				n := 1 + rand.IntN(5)
				rows := make([]syncengine.PushRow, n)
				for j := range rows {
					var id string
					if i > 0 && rand.IntN(3) == 0 {
						id = fmt.Sprintf("p%d-%d", p, rand.IntN(i)) // rewrite an older document (blindly: no assumed state)
					} else {
						id = fmt.Sprintf("p%d-%d-%d", p, i, j)
					}
					rows[j] = syncengine.PushRow{New: workOrder(id, fmt.Sprintf("v%d", seq.Add(1)), 1)}
				}
				// Rows rewriting an existing document without an assumed
				// state conflict (and are not written); new ones are written.
				res, err := engines[p%len(engines)].Push(ctx, caller, collections.WorkOrder, rows)
				if err != nil {
					errs <- err
					return
				}
				atomic.AddInt64(&rep.accepted, int64(n-len(res)))
			}
		}(p)
	}

	lastSeen := map[string]collections.Document{}
	var cursor *string
	pull := func() int {
		res, err := engine.Pull(ctx, caller, collections.WorkOrder, cursor, 50)
		if err != nil {
			t.Fatalf("pull: %v", err)
		}
		for _, doc := range res.Documents {
			lastSeen[doc.ID] = doc
		}
		rep.pulled += int64(len(res.Documents))
		cursor = &res.Cursor
		return len(res.Documents)
	}
	for time.Now().Before(deadline) {
		if pull() == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("push: %v", err)
	}
	for pull() > 0 {
	}

	final, err := d.ChangesSince(ctx, caller.TenantID, collections.WorkOrder, 0, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range final {
		seen, ok := lastSeen[doc.ID]
		switch {
		case !ok:
			rep.missing = append(rep.missing, doc.ID)
		case seen.Change != doc.Change || seen.Fields["title"] != doc.Fields["title"]:
			rep.wrongFinal = append(rep.wrongFinal, doc.ID)
		}
	}
	return rep
}

func gapDuration() time.Duration {
	if v := os.Getenv("TIDEMARK_GAP_TEST_DURATION"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return 3 * time.Second
}

// gapPushers is the number of concurrent pushers of the gap test: 8, or
// TIDEMARK_GAP_TEST_PUSHERS (CI's serializable step runs 16).
func gapPushers(t *testing.T) int {
	v := os.Getenv("TIDEMARK_GAP_TEST_PUSHERS")
	if v == "" {
		return 8
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 64 {
		t.Fatalf("TIDEMARK_GAP_TEST_PUSHERS=%q: want 1 to 64", v)
	}
	return n
}

// TestPullIsGapFreeUnderConcurrentPushes is the cursor's central promise:
// once a client has pulled past a position, nothing commits behind it.
// Run longer with TIDEMARK_GAP_TEST_DURATION=60s, wider with
// TIDEMARK_GAP_TEST_PUSHERS=16. Every push must succeed: a push that gives
// up fails the test.
func TestPullIsGapFreeUnderConcurrentPushes(t *testing.T) {
	pushers := gapPushers(t)
	d := dbtest.Open(t, db.PoolConfig{MaxConns: int32(max(16, pushers+2))})
	// Pushers share engines two by two (so pushes meet in groups) and the
	// engines share the database (so groups queue on the change lock).
	rep := runGapCheck(t, d, slowCommits{d}, gapRun{pushers: pushers, engines: max(1, pushers/2), duration: gapDuration()})
	t.Logf("checked %d accepted changes against %d pulled documents", rep.accepted, rep.pulled)
	if rep.accepted < 100 {
		t.Fatalf("only %d changes were accepted; the run checked too little", rep.accepted)
	}
	if len(rep.missing) > 0 || len(rep.wrongFinal) > 0 {
		t.Fatalf("pull skipped changes: %d documents never pulled (%v), %d pulled at a stale state (%v)",
			len(rep.missing), head(rep.missing), len(rep.wrongFinal), head(rep.wrongFinal))
	}
}

// TestGapCheckCatchesANaiveCursor proves the check above can fail: with
// change numbers from a sequence and no scope lock, transactions commit out
// of number order and the puller skips changes. Each pusher has its own
// engine, as if on its own instance: an engine runs one transaction of a
// scope at a time, which alone would hide the naive cursor's gaps.
func TestGapCheckCatchesANaiveCursor(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{MaxConns: 16})
	if _, err := d.Pool.Exec(context.Background(), "CREATE SEQUENCE naive_changes"); err != nil {
		t.Fatal(err)
	}
	rep := runGapCheck(t, d, naiveStore{d}, gapRun{pushers: 8, engines: 8, duration: 3 * time.Second})
	if len(rep.missing)+len(rep.wrongFinal) == 0 {
		t.Fatalf("a sequence-numbered cursor skipped nothing in %d changes; the gap check is not sensitive", rep.accepted)
	}
	t.Logf("naive cursor: %d of %d documents skipped or stale, as expected", len(rep.missing)+len(rep.wrongFinal), rep.accepted)
}

func head(ids []string) []string {
	if len(ids) > 5 {
		return ids[:5]
	}
	return ids
}

// TestNoLostUpdates: clients read a work order and push priority+1 with
// what they read as the assumed state, each push also setting a title of
// its own, so no push can pass for a retry of another. Whatever the
// interleaving, the final priority is the start plus the accepted pushes.
func TestNoLostUpdates(t *testing.T) {
	ctx := context.Background()
	d := dbtest.Open(t, db.PoolConfig{MaxConns: 16})
	engine := syncengine.New(d)
	caller := syncengine.Caller{TenantID: "lost", UserID: "u"}
	if _, err := engine.Push(ctx, caller, collections.WorkOrder, []syncengine.PushRow{{New: workOrder("wo", "start", 10)}}); err != nil {
		t.Fatal(err)
	}

	const clients, rounds = 12, 25
	var accepted, conflicts atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				docs, err := d.GetDocuments(ctx, caller.TenantID, collections.WorkOrder, []string{"wo"})
				if err != nil {
					errs <- err
					return
				}
				seen := docs["wo"]
				next := workOrder("wo", fmt.Sprintf("client %d round %d", c, r), seen.Fields["priority"].(int64)+1)
				res, err := engine.Push(ctx, caller, collections.WorkOrder, []syncengine.PushRow{{Assumed: &seen, New: next}})
				if err != nil {
					errs <- err
					return
				}
				if len(res) == 0 {
					accepted.Add(1)
				} else {
					conflicts.Add(1)
				}
			}
		}(c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	docs, err := d.GetDocuments(ctx, caller.TenantID, collections.WorkOrder, []string{"wo"})
	if err != nil {
		t.Fatal(err)
	}
	got := docs["wo"].Fields["priority"].(int64)
	t.Logf("%d pushes accepted, %d conflicts", accepted.Load(), conflicts.Load())
	if want := 10 + accepted.Load(); got != want {
		t.Fatalf("priority = %d; want %d (start 10 + %d accepted pushes): an update was lost", got, want, accepted.Load())
	}
	if conflicts.Load() == 0 {
		t.Fatalf("no push conflicted; the clients did not race, so the test proved nothing")
	}
}
