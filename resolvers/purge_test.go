package resolvers_test

import (
	"context"
	"testing"
	"time"

	"github.com/tidemark/tidemark/testenv"
	"github.com/tidemark/tidemark/tombstones"
)

// After the retention, tombstones and removals are purged; a checkpoint
// from before a purged entry gets CHECKPOINT_EXPIRED (never a silent gap),
// while a checkpoint after it, and a null one, pull as before.
func TestPurgedTombstonesExpireOlderCheckpoints(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	tenant := tenantOf(t)
	dispatcher := withRole(t, env, tenant, "d-1", "dispatcher")
	alice := withRole(t, env, tenant, "alice", "technician")
	dispatcher.create(siteFixture, siteFixture.valid("site-a"))
	wo := func(id string) doc {
		return with(workOrderFixture.valid(id), edit{"siteId", "site-a"}, edit{"assigneeId", "alice"})
	}
	dispatcher.create(workOrderFixture, wo("wo-1"), wo("wo-2"), wo("wo-3"))

	_, oldWhole := dispatcher.pullAll(workOrderFixture, "", 100)
	_, oldAlice := alice.pullAll(workOrderFixture, "", 100)

	// wo-1 is deleted (a tombstone for everyone), wo-2 moves to bob (a
	// removal in alice's bucket).
	current := dispatcher.latest(workOrderFixture, "wo-1")
	dispatcher.push(workOrderFixture, row{assumed: clientState(current), next: with(clientState(current), edit{"deleted", true})})
	current = dispatcher.latest(workOrderFixture, "wo-2")
	dispatcher.push(workOrderFixture, row{assumed: clientState(current), next: with(clientState(current), edit{"assigneeId", "bob"})})
	_, afterWhole := dispatcher.pullAll(workOrderFixture, oldWhole, 100)
	_, afterAlice := alice.pullAll(workOrderFixture, oldAlice, 100)

	purger := &tombstones.Purger{Store: env.DB, Retention: time.Hour, Batch: 1, Now: func() time.Time { return time.Now().Add(2 * time.Hour) }}
	res, err := purger.PurgeOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped || res.Tombstones < 1 || res.Removals < 1 {
		t.Fatalf("purge result %+v: want the tombstone and alice's removal purged", res)
	}

	for _, c := range []struct {
		name   string
		client *api
		cursor string
	}{{"whole tenant", dispatcher, oldWhole}, {"alice's bucket", alice, oldAlice}} {
		_, errs := c.client.pullRaw(workOrderFixture, c.cursor, 100)
		if len(errs) != 1 || errs[0].code() != "CHECKPOINT_EXPIRED" {
			t.Fatalf("%s: a checkpoint older than the purge got %v, want CHECKPOINT_EXPIRED", c.name, errs)
		}
	}
	if got := dispatcher.pull(workOrderFixture, afterWhole, 100); len(got.docs) != 0 {
		t.Fatalf("a checkpoint after the purged tombstone pulled %v", idsOf(got.docs))
	}
	alice.pull(workOrderFixture, afterAlice, 100)
	all, _ := dispatcher.pullAll(workOrderFixture, "", 100)
	assertSet(t, "the whole tenant from a null checkpoint after the purge", all, "wo-2", "wo-3")
	mine, _ := alice.pullAll(workOrderFixture, "", 100)
	assertSet(t, "alice from a null checkpoint after the purge", mine, "wo-3")
}

// One instance purges at a time: while one holds the lease, another skips.
func TestOnlyOneInstancePurgesAtATime(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	held, err := env.DB.TakeLease(ctx, "tombstone-purge", "other-instance", time.Hour)
	if err != nil || !held {
		t.Fatalf("take lease: %v, %v", held, err)
	}
	res, err := (&tombstones.Purger{Store: env.DB}).PurgeOnce(ctx)
	if err != nil || !res.Skipped {
		t.Fatalf("purge while another instance holds the lease: %+v, %v; want skipped", res, err)
	}
	if err := env.DB.ReleaseLease(ctx, "tombstone-purge", "other-instance"); err != nil {
		t.Fatal(err)
	}
	if res, err := (&tombstones.Purger{Store: env.DB}).PurgeOnce(ctx); err != nil || res.Skipped {
		t.Fatalf("purge once the lease is free: %+v, %v", res, err)
	}
}
