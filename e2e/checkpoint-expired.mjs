// What an RxDB client does when Tidemark answers a pull with
// CHECKPOINT_EXPIRED. docs/sync-protocol.md quotes this file whole, and the
// end-to-end test TestRxDBCheckpointExpired runs it (through
// replicateTidemark in tidemark-rxdb.mjs).
//
// Tidemark purges deleted documents and removals after a retention period.
// A pull from a checkpoint older than what was purged, or from a checkpoint
// of another sync set (the user's role changed), fails with extensions.code
// CHECKPOINT_EXPIRED. RxDB has no API to reset a replication's checkpoint
// and retries a failed pull from the same checkpoint forever, so
// replicateGraphQLWithReset() does it in the pull's queryBuilder:
//
// 1. error$ reports the refused checkpoint, which is remembered.
// 2. When RxDB retries the pull from it (after retryTime), the queryBuilder
//    first waits until the local writes are pushed (unsynced changes are
//    kept and pushed as usual, never thrown away), then asks the server from
//    a null checkpoint instead: a full resync of the caller's set. RxDB
//    stores it as usual; a document with unpushed local changes is not
//    overwritten.
// 3. A full resync returns what the server has, not what it deleted and
//    purged. So on the resync's last page the responseModifier adds a
//    removal ({...doc, deleted: true}) for each local document the resync
//    did not return and that was not written locally since the resync
//    began: the server no longer has it in this caller's set. RxDB applies
//    these like any pulled delete, locally, without pushing them.
//
// Usage: the options of replicateGraphQL, with pull.batchSize set.
//
//   const replication = replicateGraphQLWithReset(options, {
//     onReset: ({ collection, dropped }) => console.log('resynced', collection, dropped),
//   });

import { replicateGraphQL } from 'rxdb/plugins/replication-graphql';

/** The refused checkpoint's cursor if err is a pull refused with CHECKPOINT_EXPIRED. */
export function expiredCheckpoint(err) {
  const p = err?.parameters;
  const expired = p?.direction === 'pull' && p.errors?.some((e) => e?.extensions?.code === 'CHECKPOINT_EXPIRED');
  return expired ? p.checkpoint?.cursor : undefined;
}

/**
 * replicateGraphQL(options), starting over from a null checkpoint when the
 * server refuses the stored one.
 *
 *   onReset     called after each full resync with {collection, dropped}:
 *               the ids of the local documents it removed
 *   pushWait    ms to wait for pending pushes before resyncing (default
 *               30 s); when they take longer, the resync drops nothing
 *   dropMissing false to keep local documents the resync did not return
 */
export function replicateGraphQLWithReset(options, { onReset = () => {}, pushWait = 30_000, dropMissing = true } = {}) {
  const { collection, pull, deletedField = '_deleted' } = options;
  if (!pull) return replicateGraphQL(options);
  if (!pull.batchSize) throw new Error('replicateGraphQLWithReset: set pull.batchSize');
  let replication;
  let refused; // the cursor of the checkpoint the server refused
  let reset; // the full resync under way: {since, seen, drop}

  const queryBuilder = async (checkpoint, limit) => {
    if (checkpoint && checkpoint.cursor === refused) {
      reset ??= await beginReset();
      checkpoint = null;
    }
    return pull.queryBuilder(checkpoint, limit);
  };

  async function beginReset() {
    // Once every earlier local write is pushed, a document the resync does
    // not return is one the server has lost, not one it has yet to get.
    const pushed = await Promise.race([
      upstreamIdle(replication).then(() => true),
      new Promise((resolve) => setTimeout(resolve, pushWait, false)),
    ]);
    return { since: Date.now(), seen: new Set(), drop: dropMissing && pushed };
  }

  const responseModifier = async (data, origin, checkpoint) => {
    if (pull.responseModifier) data = await pull.responseModifier(data, origin, checkpoint);
    if (!reset) return data;
    const primary = collection.schema.primaryPath;
    for (const doc of data.documents) reset.seen.add(doc[primary]);
    // A page shorter than the batch is the resync's last.
    if (origin !== 'handler' || data.documents.length >= pull.batchSize) return data;
    const { since, seen, drop } = reset;
    reset = undefined;
    const local = drop ? await collection.find().exec() : [];
    const removals = local
      .filter((doc) => !seen.has(doc.primary) && doc.toJSON(true)._meta.lwt < since)
      .map((doc) => ({ ...doc.toMutableJSON(), [deletedField]: true }));
    onReset({ collection: collection.name, dropped: removals.map((doc) => doc[primary]) });
    return { ...data, documents: [...data.documents, ...removals] };
  };

  replication = replicateGraphQL({ ...options, pull: { ...pull, queryBuilder, responseModifier } });
  replication.error$.subscribe((err) => {
    refused = expiredCheckpoint(err) ?? refused;
  });
  return replication;
}

/** Resolves once the replication has no push under way or queued. */
export async function upstreamIdle(replication) {
  const state = replication?.internalReplicationState;
  if (!state) return;
  for (;;) {
    const up = state.streamQueue.up;
    await up.catch(() => {});
    if (up === state.streamQueue.up) return;
  }
}
