// Live replication: the server's changes reach a client over its websocket
// while the test never pulls (no sync(), no reSync()).
//
// Each test has a tenant of its own, so its clients start empty, and waits
// for the receiving client's awaitLive() before it writes:
// the server does not acknowledge a subscription, and a change committed
// between a client's first pull and its subscription would arrive only
// with the next resync (see the README).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import WebSocket from 'ws';

import { websocketUrl } from '../tidemark-rxdb.mjs';
import {
  env, issueToken, newId, newTenant, openClient, sleep, startServer, stopServer,
} from './helpers.mjs';

const timeout = 60_000;

/** The field values of doc, for comparing a few fields. */
function pick(doc, keys) {
  assert.ok(doc, 'document exists');
  return Object.fromEntries(keys.map((k) => [k, doc[k]]));
}

/** Asserts that the client got the document's given state in a stream event. */
function assertStreamed(client, collection, id, want = {}) {
  const got = client.streamed[collection].filter((d) => d.id === id);
  assert.ok(
    got.some((d) => Object.entries(want).every(([k, v]) => d[k] === v)),
    `${client.name}: no stream event of ${collection} ${id} with ${JSON.stringify(want)}; got ${JSON.stringify(got)}`,
  );
}

test('a work order written on one client reaches the other live', { timeout }, async (t) => {
  const { tokenA, tokenB } = await newTenant();
  const a = await openClient('a', tokenA, { collections: ['workOrders'] });
  t.after(() => a.close());
  const b = await openClient('b', tokenB, { collections: ['workOrders'] });
  t.after(() => b.close());
  await b.awaitLive();

  const wo = newId('wo');
  let started = performance.now();
  await a.db.workOrders.insert({ id: wo, siteId: 'site-live', title: 'Check valves', status: 'OPEN', priority: 2 });
  await b.waitFor('workOrders', wo, (d) => d?.title === 'Check valves');
  const created = performance.now() - started;

  started = performance.now();
  await (await a.db.workOrders.findOne(wo).exec()).incrementalPatch({ status: 'IN_PROGRESS', assigneeId: 'user-a' });
  const got = await b.waitFor('workOrders', wo, (d) => d?.status === 'IN_PROGRESS');
  const edited = performance.now() - started;
  t.diagnostic(`B saw the new work order after ${Math.round(created)} ms and the edit after ${Math.round(edited)} ms`);

  assert.deepEqual(pick(got, ['title', 'status', 'priority', 'assigneeId']),
    { title: 'Check valves', status: 'IN_PROGRESS', priority: 2, assigneeId: 'user-a' });
  assertStreamed(b, 'workOrders', wo, { status: 'IN_PROGRESS' });
  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
});

test('notes and checklist items arrive live, each in its own collection', { timeout }, async (t) => {
  const { tokenA, tokenB } = await newTenant();
  const collections = ['workOrders', 'checklistItems', 'notes'];
  const a = await openClient('a', tokenA, { collections });
  t.after(() => a.close());
  const b = await openClient('b', tokenB, { collections });
  t.after(() => b.close());
  await b.awaitLive();

  const wo = newId('wo');
  const item = newId('item');
  const note = newId('note');
  await a.db.workOrders.insert({ id: wo, siteId: 'site-live', title: 'Service boiler', status: 'OPEN', priority: 1 });
  await a.db.checklistItems.insert({ id: item, workOrderId: wo, label: 'Bleed radiators', done: false, position: 1 });
  await a.db.notes.insert({ id: note, workOrderId: wo, body: 'Key under the mat' });
  await b.waitFor('checklistItems', item, (d) => d?.label === 'Bleed radiators');
  const gotNote = await b.waitFor('notes', note, (d) => d?.body === 'Key under the mat');
  assert.equal(gotNote.authorId, 'user-a', 'the note arrives with the author the server set');

  await (await a.db.checklistItems.findOne(item).exec()).incrementalPatch({ done: true });
  await (await a.db.notes.findOne(note).exec()).incrementalPatch({ body: 'Key is with the caretaker' });
  await b.waitFor('checklistItems', item, (d) => d?.done === true);
  await b.waitFor('notes', note, (d) => d?.body === 'Key is with the caretaker');

  assertStreamed(b, 'checklistItems', item, { done: true });
  assertStreamed(b, 'notes', note, { body: 'Key is with the caretaker' });
  assert.equal(b.streamed.workOrders.some((d) => d.id === item || d.id === note), false,
    'a collection\'s stream carries only its own documents');
  await b.waitFor('workOrders', wo, (d) => d?.title === 'Service boiler');
  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
});

test('deletes arrive live', { timeout }, async (t) => {
  const { tokenA, tokenB } = await newTenant();
  const collections = ['workOrders', 'notes'];
  const a = await openClient('a', tokenA, { collections });
  t.after(() => a.close());
  const b = await openClient('b', tokenB, { collections });
  t.after(() => b.close());

  const wo = newId('wo');
  const note = newId('note');
  await a.db.workOrders.insert({ id: wo, siteId: 'site-live', title: 'Remove scaffolding', status: 'OPEN', priority: 3 });
  await a.db.notes.insert({ id: note, workOrderId: wo, body: 'Booked for Monday' });
  await a.awaitPushed();
  await b.awaitLive();
  await b.waitFor('workOrders', wo, (d) => d !== null);
  await b.waitFor('notes', note, (d) => d !== null);

  await (await a.db.notes.findOne(note).exec()).incrementalRemove();
  await (await a.db.workOrders.findOne(wo).exec()).incrementalRemove();
  await b.waitFor('notes', note, (d) => d === null);
  await b.waitFor('workOrders', wo, (d) => d === null);

  assertStreamed(b, 'notes', note, { deleted: true });
  assertStreamed(b, 'workOrders', wo, { deleted: true });
  assert.equal(await b.db.workOrders.count({ selector: { id: wo } }).exec(), 0);
  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
});

test('a change written through another server instance arrives live', { timeout, skip: !env.secondUrl && 'needs TIDEMARK_SECOND_URL' }, async (t) => {
  // The instances share the database: B's instance learns of the other's
  // commits by polling the change heads.
  const { tokenA, tokenB } = await newTenant();
  const a = await openClient('a', tokenA, { collections: ['workOrders'], url: env.secondUrl });
  t.after(() => a.close());
  const b = await openClient('b', tokenB, { collections: ['workOrders'] });
  t.after(() => b.close());
  await b.awaitLive();

  const wo = newId('wo');
  await a.db.workOrders.insert({ id: wo, siteId: 'site-live', title: 'Written elsewhere', status: 'OPEN', priority: 1 });
  await b.waitFor('workOrders', wo, (d) => d?.title === 'Written elsewhere');
  assertStreamed(b, 'workOrders', wo);
  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
});

test('after its server restarts, a client catches up with what changed meanwhile, then streams again', {
  timeout,
  skip: (!env.secondUrl || !env.controlUrl) && 'needs TIDEMARK_SECOND_URL and TIDEMARK_CONTROL_URL',
}, async (t) => {
  const { tokenA, tokenB } = await newTenant();
  const collections = ['workOrders', 'notes'];
  // A writes through the second instance, which stays up.
  const a = await openClient('a', tokenA, { collections, url: env.secondUrl });
  t.after(() => a.close());
  const b = await openClient('b', tokenB, { collections });
  t.after(() => b.close());
  t.after(() => startServer().catch(() => {})); // should the test fail while it is down
  const wo = newId('wo');
  await a.db.workOrders.insert({ id: wo, siteId: 'site-live', title: 'Before the restart', status: 'OPEN', priority: 1 });
  await b.awaitLive();
  await b.waitFor('workOrders', wo, (d) => d?.title === 'Before the restart');
  assert.equal(b.socket.connects, 1);

  await stopServer();
  await b.waitForSocket((s) => s.closes.length > 0, { what: 'the websocket did not close' });
  const note = newId('note');
  await (await a.db.workOrders.findOne(wo).exec()).incrementalPatch({ title: 'Changed while B was cut off' });
  await a.db.notes.insert({ id: note, workOrderId: wo, body: 'Written while B was cut off' });
  await a.awaitPushed();
  const streamedBefore = b.streamed.workOrders.length + b.streamed.notes.length;
  await sleep(300);
  assert.equal((await b.get('workOrders', wo)).title, 'Before the restart', 'B cannot know yet');

  const started = performance.now();
  await startServer();
  // No reSync() here: RxDB resyncs when its websocket connects again.
  await b.waitFor('workOrders', wo, (d) => d?.title === 'Changed while B was cut off', { timeout: 30_000 });
  await b.waitFor('notes', note, (d) => d?.body === 'Written while B was cut off', { timeout: 30_000 });
  t.diagnostic(`B caught up ${Math.round(performance.now() - started)} ms after the server was back; ` +
    `socket closes: ${JSON.stringify(b.socket.closes.map((c) => c.code))}`);
  assert.ok(b.socket.connects >= 2, 'B reconnected');
  assert.equal(b.streamed.workOrders.length + b.streamed.notes.length, streamedBefore,
    'the missed changes came with the resync after the reconnect, not in stream events');

  // Live again after the reconnect.
  await b.awaitLive();
  await (await a.db.workOrders.findOne(wo).exec()).incrementalPatch({ status: 'DONE' });
  await b.waitFor('workOrders', wo, (d) => d?.status === 'DONE');
  assertStreamed(b, 'workOrders', wo, { status: 'DONE' });
  assert.deepEqual(a.errors, []);
});

test('a token renewed with setHeaders keeps a client live when the old one expires', {
  timeout,
  skip: !env.controlUrl && 'needs TIDEMARK_CONTROL_URL',
}, async (t) => {
  const { tenant, tokenA } = await newTenant();
  const a = await openClient('a', tokenA, { collections: ['workOrders'] });
  t.after(() => a.close());
  const b = await openClient('b', await issueToken(tenant, 'user-b', '3s'), { collections: ['workOrders'] });
  t.after(() => b.close());
  await b.awaitLive();

  // As an app does shortly before expiry; the websocket keeps the old token
  // until the server closes it at expiry.
  b.setToken(await issueToken(tenant, 'user-b', '1h'));
  await b.waitForSocket((s) => s.closes.some((c) => c.code === 4403), { what: 'no 4403 close at expiry' });
  await b.waitForSocket((s) => s.connects >= 2, { what: 'no reconnect after 4403' });

  await b.awaitLive();
  const wo = newId('wo');
  await a.db.workOrders.insert({ id: wo, siteId: 'site-live', title: 'After the new token', status: 'OPEN', priority: 1 });
  await b.waitFor('workOrders', wo, (d) => d?.title === 'After the new token');
  assertStreamed(b, 'workOrders', wo);
  await sleep(500);
  assert.deepEqual(b.socket.closes.map((c) => c.code), [4403], 'one close, at expiry');
  assert.deepEqual(b.errors, []);
});

test('the server does not accept a websocket with an expired token only to close it at once', {
  timeout,
  skip: !env.controlUrl && 'needs TIDEMARK_CONTROL_URL',
}, async () => {
  // When a token expires the server closes its websocket with 4403, and
  // graphql-ws reconnects with the token it has. The server should then
  // either refuse the connection (no connection_ack) or keep it open while
  // it still accepts the token (tokens pass for 30 s past exp, the clock-skew
  // leeway). Acknowledging it and closing it straight away makes a client
  // reconnect over and over, without backing off (graphql-ws starts its
  // backoff afresh after every acknowledged connection), and RxDB pulls on
  // every connect.
  const { tenant } = await newTenant();
  const token = await issueToken(tenant, 'user-b', '1s');
  await sleep(1100); // exp is whole seconds: expired now, within the leeway
  const attempts = [];
  for (let i = 0; i < 10; i++) {
    const attempt = await connectionInit(websocketUrl(env.url), token);
    attempts.push(attempt);
    if (attempt.acked && attempt.code === null) break; // kept open: fine
  }
  const flapped = attempts.filter((a) => a.acked && a.code !== null);
  assert.deepEqual(flapped, [],
    `${flapped.length} of ${attempts.length} connections with a token past its exp were acknowledged and then ` +
    `closed within a second: ${JSON.stringify(attempts)}`);
});

/**
 * Opens a graphql-transport-ws connection and sends connection_init with the
 * token. Resolves with whether the server acknowledged it and the close code
 * (null when it was still open after a second).
 */
function connectionInit(url, token) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, 'graphql-transport-ws');
    let acked = false;
    const timer = setTimeout(() => {
      ws.close(1000);
      resolve({ acked, code: null });
    }, 1000);
    ws.on('open', () => ws.send(JSON.stringify({ type: 'connection_init', payload: { Authorization: `Bearer ${token}` } })));
    ws.on('message', (data) => {
      if (JSON.parse(String(data)).type === 'connection_ack') acked = true;
    });
    ws.on('close', (code, reason) => {
      clearTimeout(timer);
      resolve({ acked, code, reason: String(reason) });
    });
    ws.on('error', () => {}); // a close follows
  });
}
