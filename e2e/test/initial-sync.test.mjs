// A fresh client's first sync of a few thousand documents.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { env, newId, openClient, push } from './helpers.mjs';

const total = 3000;
const pushBatch = 500;
const statuses = ['OPEN', 'IN_PROGRESS', 'DONE', 'CANCELLED'];

test(`initial sync brings all ${total} work orders created through the API`, { timeout: 90_000 }, async (t) => {
  const run = newId('bulk');
  const site = newId('site');
  const made = [];
  for (let i = 0; i < total; i++) {
    made.push({
      id: `${run}-${String(i).padStart(4, '0')}`,
      siteId: site,
      title: `Bulk work order ${i}`,
      description: i % 3 === 0 ? `Made by the bulk test, number ${i}` : null,
      status: statuses[i % statuses.length],
      priority: i % 5,
      assigneeId: i % 7 === 0 ? 'user-b' : null,
      dueAt: i % 2 === 0 ? `2027-01-${String((i % 28) + 1).padStart(2, '0')}T08:30:00Z` : null,
      deleted: false,
    });
  }
  for (let i = 0; i < total; i += pushBatch) {
    const rows = made.slice(i, i + pushBatch).map((doc) => ({ newDocumentState: doc }));
    const returned = await push(env.tokenA, 'WorkOrder', rows);
    assert.deepEqual(returned, [], 'new documents are written as sent');
  }

  const client = await openClient('fresh', env.tokenB, { collections: ['workOrders'], batchSize: 500 });
  t.after(() => client.close());
  const started = performance.now();
  await client.sync();
  t.diagnostic(`initial sync took ${Math.round(performance.now() - started)} ms`);

  const mine = await client.db.workOrders.find({ selector: { siteId: site } }).exec();
  assert.equal(mine.length, total);
  assert.equal(new Set(mine.map((d) => d.id)).size, total);
  for (const i of [0, 1, 2, 777, 1499, 2998, total - 1]) {
    const { deleted, ...want } = made[i];
    const got = (await client.db.workOrders.findOne(want.id).exec()).toMutableJSON();
    assert.match(got.updatedAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    delete got.updatedAt;
    assert.deepEqual(got, want, `work order ${i}`);
  }
  assert.deepEqual(client.errors, []);
});

test('a client that created 2000 work orders offline pushes them all on its first sync', { timeout: 90_000 }, async (t) => {
  const site = newId('site');
  const writer = await openClient('writer', env.tokenA, { collections: ['workOrders'], batchSize: 200 });
  t.after(() => writer.close());
  await writer.goOffline();
  const docs = Array.from({ length: 2000 }, (_, i) => ({
    id: newId('offline'), siteId: site, title: `Offline order ${i}`, status: 'OPEN', priority: i % 10,
  }));
  await writer.db.workOrders.bulkInsert(docs);
  // RxDB sends the 10 push batches of 200 at the same time.
  await writer.goOnline();
  await writer.sync();
  assert.deepEqual(writer.conflicts, []);
  assert.deepEqual(writer.errors, []);

  const reader = await openClient('reader', env.tokenB, { collections: ['workOrders'], batchSize: 1000 });
  t.after(() => reader.close());
  await reader.sync();
  const got = await reader.db.workOrders.find({ selector: { siteId: site } }).exec();
  assert.equal(got.length, docs.length);
  const byTitle = new Map(got.map((d) => [d.id, d.title]));
  for (const d of docs) assert.equal(byTitle.get(d.id), d.title);
});
