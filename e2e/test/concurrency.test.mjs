// Clients pushing to the same documents at the same moment, while another
// client pulls and yet another listens to the stream.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { env, newId, openClient, pullAll } from './helpers.mjs';

const count = 40;

test('simultaneous pushes to the same work orders keep both edits and reach a pulling and a listening client', { timeout: 60_000 }, async (t) => {
  const open = async (name, token, stream) => {
    const c = await openClient(name, token, { collections: ['workOrders'], batchSize: 500, stream });
    t.after(() => c.close());
    return c;
  };
  // A and B pull only when told to, so that each edits without having seen
  // the other's edits; the watcher pulls in a loop, and the listener only
  // streams.
  const a = await open('a', env.tokenA, false);
  const b = await open('b', env.tokenB, false);
  const watcher = await open('watcher', env.tokenB, false);
  const listener = await open('listener', env.tokenB, true);
  await listener.awaitLive();

  const site = newId('site');
  const ids = Array.from({ length: count }, () => newId('wo'));
  await a.db.workOrders.bulkInsert(ids.map((id, i) => ({ id, siteId: site, title: `Order ${i}`, status: 'OPEN', priority: 0 })));
  await a.sync();
  await b.sync();
  await watcher.sync();

  // A sets every status while B sets every priority; the watcher keeps pulling.
  const edit = async (client, patch) => {
    for (const id of ids) {
      const doc = await client.db.workOrders.findOne(id).exec();
      await doc.incrementalPatch(patch(id));
    }
    await client.awaitPushed();
  };
  let editing = true;
  const watching = (async () => {
    while (editing) await watcher.sync();
  })();
  await Promise.all([
    edit(a, () => ({ status: 'DONE' })),
    edit(b, (id) => ({ priority: ids.indexOf(id) + 1 })),
  ]);
  editing = false;
  await watching;

  for (let round = 0; round < 5; round++) {
    await a.sync();
    await b.sync();
  }
  const server = await pullAll(env.tokenA, 'WorkOrder');
  for (const [i, id] of ids.entries()) {
    const doc = server.get(id);
    assert.deepEqual([doc.status, doc.priority], ['DONE', i + 1], `server: order ${i} keeps both edits`);
  }
  await watcher.sync();
  const mine = (c) => c.db.workOrders.find({ selector: { siteId: site } }).exec()
    .then((docs) => docs.map((d) => d.toJSON()).sort((x, y) => x.id.localeCompare(y.id)));
  const want = await mine(a);
  assert.deepEqual(await mine(b), want, 'B holds what A holds');
  assert.deepEqual(await mine(watcher), want, 'a client that pulled during the writes missed nothing');
  // The listener never pulls after its initial replication: everything
  // since came live.
  const deadline = Date.now() + 10_000;
  let heard = await mine(listener);
  while (JSON.stringify(heard) !== JSON.stringify(want) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    heard = await mine(listener);
  }
  assert.deepEqual(heard, want, 'a client that only listened to the stream missed nothing');
  for (const doc of want) assert.equal(doc.updatedAt, server.get(doc.id).updatedAt);
  // Each order was pushed by both before either pulled, so the second push of
  // each came back merged.
  assert.ok(a.conflicts.length + b.conflicts.length >= count, `${a.conflicts.length} + ${b.conflicts.length} merges`);
  for (const c of [a, b, watcher, listener]) assert.deepEqual(c.errors, []);
});
