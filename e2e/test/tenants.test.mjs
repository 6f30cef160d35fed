// Tenants are walled off from each other.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { graphqlTypeByCollection, websocketUrl } from '../tidemark-rxdb.mjs';
import { env, newId, openClient, pullAll, push } from './helpers.mjs';

test('a client of another tenant sees none of the documents', { timeout: 60_000 }, async (t) => {
  // The first tenant gets a document in every collection.
  const ids = { sites: newId('site'), workOrders: newId('wo'), checklistItems: newId('item'), notes: newId('note') };
  const wo = ids.workOrders;
  await push(env.tokenA, 'Site', [{ newDocumentState: { id: ids.sites, name: 'Tenant one site', address: 'Somewhere', deleted: false } }]);
  await push(env.tokenA, 'WorkOrder', [{ newDocumentState: { id: wo, siteId: ids.sites, title: 'Tenant one order', status: 'OPEN', priority: 1, deleted: false } }]);
  await push(env.tokenA, 'ChecklistItem', [{ newDocumentState: { id: ids.checklistItems, workOrderId: wo, label: 'Secret step', done: false, position: 1, deleted: false } }]);
  await push(env.tokenA, 'Note', [{ newDocumentState: { id: ids.notes, workOrderId: wo, body: 'Secret note', deleted: false } }]);

  const other = await openClient('other', env.tokenOther);
  t.after(() => other.close());
  await other.sync();
  for (const [c, id] of Object.entries(ids)) {
    assert.equal(await other.get(c, id), null, `${c}: the other tenant does not get ${id}`);
    // Nor any other document of the first tenant (by id and write time; the
    // suite may share a server with earlier runs that gave tenant two documents).
    const first = await pullAll(env.tokenA, graphqlTypeByCollection[c]);
    assert.ok(first.size > 0);
    for (const doc of await other.db[c].find().exec()) {
      assert.notEqual(doc.updatedAt, first.get(doc.id)?.updatedAt, `${c} ${doc.id} leaked`);
    }
  }

  // The same id in the other tenant is a document of its own.
  await other.db.workOrders.insert({ id: wo, siteId: 'their-site', title: 'Tenant two order', status: 'DONE', priority: 5 });
  await other.sync();
  assert.deepEqual(other.conflicts, [], 'no conflict with the first tenant\'s document');
  assert.equal((await other.get('workOrders', wo)).title, 'Tenant two order');

  assert.equal((await pullAll(env.tokenOther, 'WorkOrder')).get(wo).title, 'Tenant two order');
  const ours = (await pullAll(env.tokenA, 'WorkOrder')).get(wo);
  assert.deepEqual([ours.title, ours.status, ours.priority], ['Tenant one order', 'OPEN', 1]);
  assert.deepEqual(other.errors, []);
});

test('a client with a bad token gets errors, and syncs once given a valid one', { timeout: 30_000 }, async (t) => {
  const wo = newId('wo');
  await push(env.tokenA, 'WorkOrder', [{ newDocumentState: { id: wo, siteId: 'site-x', title: 'Behind the login', status: 'OPEN', priority: 1, deleted: false } }]);

  const client = await openClient('badtoken', 'not-a-token', { collections: ['workOrders'] });
  t.after(() => client.close());
  await assert.rejects(client.sync(), /UNAUTHENTICATED/);
  assert.equal(await client.db.workOrders.count().exec(), 0);

  // RxDB keeps retrying the failed pull; with the new token it goes through.
  client.setToken(env.tokenB);
  client.errors.length = 0;
  await client.sync();
  assert.equal((await client.get('workOrders', wo)).title, 'Behind the login');
});

test('clients of two tenants on one shared websocket each get only their own changes live', { timeout: 30_000 }, async (t) => {
  // RxDB shares one websocket per URL in a process, opened with the first
  // replication's token; each subscription carries its own token, and the
  // server runs it as that subscription's user.
  const shared = `${websocketUrl(env.url)}?client=shared-${newId('ws')}`;
  const one = await openClient('one', env.tokenA, { collections: ['workOrders'], wsUrl: shared });
  t.after(() => one.close());
  const two = await openClient('two', env.tokenOther, { collections: ['workOrders'], wsUrl: shared });
  t.after(() => two.close());
  await one.awaitLive();
  await two.awaitLive();
  assert.equal(one.socket.connects + two.socket.connects, 1, 'one websocket for both clients');

  const [mine, theirs] = [newId('wo'), newId('wo')];
  await push(env.tokenA, 'WorkOrder', [{ newDocumentState: { id: mine, siteId: 's', title: 'Tenant one, live', status: 'OPEN', priority: 1, deleted: false } }]);
  await push(env.tokenOther, 'WorkOrder', [{ newDocumentState: { id: theirs, siteId: 's', title: 'Tenant two, live', status: 'OPEN', priority: 1, deleted: false } }]);
  await one.waitFor('workOrders', mine, (d) => d !== null);
  await two.waitFor('workOrders', theirs, (d) => d !== null);
  // Both tenants' changes are fanned out at once; give a leak time to show.
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await one.get('workOrders', theirs), null);
  assert.equal(await two.get('workOrders', mine), null);
  const leaked = (c, id) => c.streamed.workOrders.some((d) => d.id === id);
  assert.equal(leaked(one, theirs) || leaked(two, mine), false, 'no stream event crossed tenants');
  assert.deepEqual(one.errors, []);
  assert.deepEqual(two.errors, []);
});
