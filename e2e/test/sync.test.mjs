// Two RxDB clients of one tenant (users A and B) editing the same documents.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { env, newId, openClient, pullAll, serverSnapshot, withoutNulls } from './helpers.mjs';

const timeout = 60_000;

/** Snapshots with null fields dropped: a locally created document has no key where the server sends null. */
function normalized(snapshot) {
  return Object.fromEntries(Object.entries(snapshot).map(([c, docs]) => [c, docs.map(withoutNulls)]));
}

/** Syncs both clients until they hold the same documents; returns that state. */
async function converge(a, b, rounds = 5) {
  let sa;
  let sb;
  for (let i = 0; i < rounds; i++) {
    await a.sync();
    await b.sync();
    await a.sync();
    sa = normalized(await a.snapshot());
    sb = normalized(await b.snapshot());
    if (JSON.stringify(sa) === JSON.stringify(sb)) return sa;
  }
  assert.deepEqual(sb, sa, `clients did not converge in ${rounds} rounds`);
  return sa;
}

function find(snapshot, collection, id) {
  return snapshot[collection].find((d) => d.id === id);
}

test('two clients converge after concurrent edits and deletes', { timeout }, async (t) => {
  // No live pulls: B must make its edits without having seen A's, so that
  // its pushes conflict.
  const a = await openClient('a', env.tokenA, { stream: false });
  t.after(() => a.close());
  const b = await openClient('b', env.tokenB, { stream: false });
  t.after(() => b.close());

  const [s1, s2] = [newId('site'), newId('site')];
  const [w1, w2, w3, w4] = [newId('wo'), newId('wo'), newId('wo'), newId('wo')];
  const [c1, c2, c3] = [newId('item'), newId('item'), newId('item')];
  const [n1, n2, n3] = [newId('note'), newId('note'), newId('note')];

  await a.db.sites.bulkInsert([
    { id: s1, name: 'Harbour depot', address: '1 Quay Street', latitude: 51.9, longitude: 4.48 },
    { id: s2, name: 'North yard', address: '9 Dock Road' },
  ]);
  await a.db.workOrders.bulkInsert([
    { id: w1, siteId: s1, title: 'Replace pump', status: 'OPEN', priority: 1, dueAt: '2026-12-01T10:00:00.000Z' },
    { id: w2, siteId: s1, title: 'Paint fence', status: 'OPEN', priority: 2, description: 'Green' },
    { id: w3, siteId: s2, title: 'Fix gate', status: 'OPEN', priority: 3, assigneeId: 'user-a' },
    { id: w4, siteId: s2, title: 'Clear drain', status: 'OPEN', priority: 4 },
  ]);
  await a.db.checklistItems.bulkInsert([
    { id: c1, workOrderId: w1, label: 'Isolate power', done: false, position: 1 },
    { id: c2, workOrderId: w1, label: 'Drain line', done: false, position: 2 },
    { id: c3, workOrderId: w1, label: 'Swap pump', done: false, position: 3 },
  ]);
  await a.db.notes.bulkInsert([
    { id: n1, workOrderId: w1, body: 'Pump is noisy' },
    { id: n2, workOrderId: w1, body: 'Spare in van' },
    { id: n3, workOrderId: w3, body: 'Hinge rusted' },
  ]);

  await a.sync();
  await b.sync();
  const before = normalized(await b.snapshot());
  assert.deepEqual(before, normalized(await a.snapshot()), 'B starts from what A created');
  assert.equal(find(before, 'notes', n1).authorId, 'user-a', 'the server sets a note\'s author');

  // A edits and pushes; B, not having pulled, edits the same documents.
  const aDoc = async (c, id) => a.db[c].findOne(id).exec();
  const bDoc = async (c, id) => b.db[c].findOne(id).exec();
  await (await aDoc('workOrders', w1)).incrementalPatch({ title: 'Replace main pump' });
  await (await aDoc('workOrders', w3)).incrementalPatch({ status: 'DONE' });
  await (await aDoc('workOrders', w4)).incrementalRemove();
  await (await aDoc('checklistItems', c1)).incrementalPatch({ done: true });
  await (await aDoc('checklistItems', c2)).incrementalPatch({ label: 'Drain and flush line' });
  await (await aDoc('sites', s1)).incrementalPatch({ name: 'Harbour depot (east)' });
  await (await aDoc('notes', n1)).incrementalPatch({ body: 'Pump is noisy (A)' });
  await a.awaitPushed();

  await (await bDoc('workOrders', w1)).incrementalPatch({ priority: 9 }); // other field: merged
  await (await bDoc('workOrders', w2)).incrementalRemove(); // untouched by A
  await (await bDoc('workOrders', w3)).incrementalPatch({ status: 'CANCELLED' }); // same field: A's wins
  await (await bDoc('workOrders', w4)).incrementalPatch({ title: 'Clear both drains' }); // deleted by A
  await (await bDoc('checklistItems', c1)).incrementalPatch({ label: 'Isolate mains power' });
  await (await bDoc('checklistItems', c2)).incrementalRemove(); // A changed its label
  await (await bDoc('sites', s1)).incrementalPatch({ address: '2 Quay Street' }); // Site: server wins
  await (await bDoc('sites', s2)).incrementalRemove();
  await (await bDoc('notes', n1)).incrementalPatch({ body: 'Pump is noisy (B)' }); // Note: server wins
  await (await bDoc('notes', n2)).incrementalRemove();
  await (await bDoc('notes', n3)).incrementalPatch({ body: 'Hinge rusted through' }); // A left it alone
  await b.awaitPushed();

  const state = await converge(a, b);
  assert.deepEqual(state, normalized(await serverSnapshot(env.tokenA)), 'the server holds what the clients hold');

  // Merged collections keep both sides' edits to different fields.
  const wo1 = find(state, 'workOrders', w1);
  assert.equal(wo1.title, 'Replace main pump');
  assert.equal(wo1.priority, 9);
  assert.equal(wo1.dueAt, '2026-12-01T10:00:00Z');
  assert.equal(find(state, 'workOrders', w3).status, 'DONE', 'the first push of a field wins a same-field conflict');
  const item1 = find(state, 'checklistItems', c1);
  assert.deepEqual([item1.label, item1.done], ['Isolate mains power', true]);
  assert.equal(find(state, 'checklistItems', c3).label, 'Swap pump');
  // Site and Note keep the server's state on conflict.
  const site1 = find(state, 'sites', s1);
  assert.deepEqual([site1.name, site1.address], ['Harbour depot (east)', '1 Quay Street']);
  assert.equal(find(state, 'notes', n1).body, 'Pump is noisy (A)');
  assert.equal(find(state, 'notes', n1).authorId, 'user-a');
  assert.deepEqual(pick(find(state, 'notes', n3), ['body', 'authorId']), { body: 'Hinge rusted through', authorId: 'user-b' },
    'the last writer becomes the author, also on the client that wrote it');

  // Deletes reach both clients and the server, also where the other side edited.
  for (const [c, id] of [['workOrders', w2], ['workOrders', w4], ['checklistItems', c2], ['sites', s2], ['notes', n2]]) {
    assert.equal(find(state, c, id), undefined, `${c} ${id} is deleted on both clients`);
    assert.equal(await a.get(c, id), null);
    assert.equal(await b.get(c, id), null);
  }
  const serverWorkOrders = await pullAll(env.tokenA, 'WorkOrder');
  assert.equal(serverWorkOrders.get(w2).deleted, true);
  assert.equal(serverWorkOrders.get(w4).deleted, true);
  assert.equal(serverWorkOrders.get(w4).title, 'Clear both drains', 'B\'s edit is merged into the tombstone');
  assert.equal((await pullAll(env.tokenA, 'ChecklistItem')).get(c2).label, 'Drain and flush line');

  // Only B pushed against changes it had not seen.
  assert.deepEqual(a.conflicts, []);
  assert.ok(b.conflicts.length >= 5, `B resolved ${b.conflicts.length} conflicts`);
  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
});

test('offline edits to different fields of one work order are both kept', { timeout }, async (t) => {
  const a = await openClient('a', env.tokenA, { collections: ['workOrders', 'checklistItems'] });
  t.after(() => a.close());
  const b = await openClient('b', env.tokenB, { collections: ['workOrders', 'checklistItems'] });
  t.after(() => b.close());

  const wo = newId('wo');
  const item = newId('item');
  await a.db.workOrders.insert({ id: wo, siteId: 'site-x', title: 'Inspect roof', status: 'OPEN', priority: 2 });
  await a.db.checklistItems.insert({ id: item, workOrderId: wo, label: 'Ladder', done: false, position: 1 });
  await a.sync();
  await b.sync();
  assert.equal((await b.get('workOrders', wo)).title, 'Inspect roof');

  await a.goOffline();
  await b.goOffline();
  await (await a.db.workOrders.findOne(wo).exec()).incrementalPatch({ status: 'IN_PROGRESS' });
  await (await b.db.workOrders.findOne(wo).exec()).incrementalPatch({ priority: 7, description: 'Leak above door' });
  await (await a.db.checklistItems.findOne(item).exec()).incrementalPatch({ done: true });
  await (await b.db.checklistItems.findOne(item).exec()).incrementalPatch({ label: 'Long ladder', position: 3 });

  const offline = (await pullAll(env.tokenA, 'WorkOrder')).get(wo);
  assert.deepEqual([offline.status, offline.priority], ['OPEN', 2], 'nothing is pushed while offline');

  await a.goOnline();
  await b.goOnline();
  const state = await converge(a, b);
  const want = { status: 'IN_PROGRESS', priority: 7, description: 'Leak above door', title: 'Inspect roof' };
  const got = find(state, 'workOrders', wo);
  assert.deepEqual(pick(got, Object.keys(want)), want);
  const server = (await pullAll(env.tokenA, 'WorkOrder')).get(wo);
  assert.deepEqual(pick(server, Object.keys(want)), want);
  const gotItem = find(state, 'checklistItems', item);
  assert.deepEqual(pick(gotItem, ['label', 'done', 'position']), { label: 'Long ladder', done: true, position: 3 });
  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
});

test('two quick edits of one document end as the second edit', { timeout }, async (t) => {
  // A delays each push request until released, so a test can write while a
  // push is in flight.
  let pushStarted = () => {};
  let releasePush = Promise.resolve();
  const gatedFetch = async (req) => {
    const body = await req.clone().text();
    if (body.includes('"operationName":"PushWorkOrders"')) {
      pushStarted();
      await releasePush;
    }
    return fetch(req);
  };
  const a = await openClient('a', env.tokenA, { collections: ['workOrders'], fetch: gatedFetch });
  t.after(() => a.close());

  const wo = newId('wo');
  await a.db.workOrders.insert({ id: wo, siteId: 'site-x', title: 'v0', status: 'OPEN', priority: 1 });
  await a.sync();
  const doc = await a.db.workOrders.findOne(wo).exec();

  // Two patches with no await between them.
  const first = doc.incrementalPatch({ title: 'first', status: 'IN_PROGRESS' });
  const second = doc.incrementalPatch({ title: 'second', priority: 5 });
  await Promise.all([first, second]);
  await a.sync();
  const want1 = { title: 'second', status: 'IN_PROGRESS', priority: 5 };
  assert.deepEqual(pick(await a.get('workOrders', wo), Object.keys(want1)), want1);
  assert.deepEqual(pick((await pullAll(env.tokenA, 'WorkOrder')).get(wo), Object.keys(want1)), want1);

  // A second edit while the first one's push is on the wire.
  let release;
  releasePush = new Promise((r) => { release = r; });
  const started = new Promise((r) => { pushStarted = r; });
  // The due time is in another spelling than the server's: the next push's
  // assumed state carries it as sent, and must still match the server's.
  await doc.incrementalPatch({ title: 'third', assigneeId: 'user-a', dueAt: '2027-02-03T06:05:06.789+02:00' });
  await started;
  await doc.incrementalPatch({ title: 'fourth', status: 'DONE' });
  pushStarted = () => {};
  release();
  await a.sync();
  const want2 = { title: 'fourth', status: 'DONE', priority: 5, assigneeId: 'user-a', dueAt: '2027-02-03T04:05:06.789Z' };
  assert.deepEqual(pick(await a.get('workOrders', wo), Object.keys(want2)), want2);
  assert.deepEqual(pick((await pullAll(env.tokenA, 'WorkOrder')).get(wo), Object.keys(want2)), want2);

  // A fresh client of another user sees the same.
  const b = await openClient('b', env.tokenB, { collections: ['workOrders'] });
  t.after(() => b.close());
  await b.sync();
  assert.deepEqual(pick(await b.get('workOrders', wo), Object.keys(want2)), want2);

  assert.deepEqual(a.conflicts, [], 'a client never conflicts with its own edits');
  assert.deepEqual(a.errors, []);
});

function pick(doc, keys) {
  assert.ok(doc, 'document exists');
  return Object.fromEntries(keys.map((k) => [k, doc[k]]));
}
