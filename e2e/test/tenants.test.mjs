// Tenants are walled off from each other.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { tidemarkCollections } from '../tidemark-rxdb.mjs';
import { env, newId, openClient, pullAll, push } from './helpers.mjs';

test('a client of another tenant sees none of the documents', { timeout: 60_000 }, async (t) => {
  // Make sure the first tenant has documents in every collection.
  const site = newId('site');
  const wo = newId('wo');
  await push(env.tokenA, 'Site', [{ newDocumentState: { id: site, name: 'Tenant one site', address: 'Somewhere', deleted: false } }]);
  await push(env.tokenA, 'WorkOrder', [{ newDocumentState: { id: wo, siteId: site, title: 'Tenant one order', status: 'OPEN', priority: 1, deleted: false } }]);
  await push(env.tokenA, 'ChecklistItem', [{ newDocumentState: { id: newId('item'), workOrderId: wo, label: 'Secret step', done: false, position: 1, deleted: false } }]);
  await push(env.tokenA, 'Note', [{ newDocumentState: { id: newId('note'), workOrderId: wo, body: 'Secret note', deleted: false } }]);

  const other = await openClient('other', env.tokenOther);
  t.after(() => other.close());
  await other.sync();
  for (const c of Object.keys(tidemarkCollections)) {
    assert.equal(await other.db[c].count().exec(), 0, `${c} of the other tenant`);
  }

  // The same id in the other tenant is a document of its own.
  await other.db.workOrders.insert({ id: wo, siteId: 'their-site', title: 'Tenant two order', status: 'DONE', priority: 5 });
  await other.sync();
  assert.deepEqual(other.conflicts, [], 'no conflict with the first tenant\'s document');
  assert.equal((await other.get('workOrders', wo)).title, 'Tenant two order');
  assert.equal(await other.db.workOrders.count().exec(), 1);

  const theirs = await pullAll(env.tokenOther, 'WorkOrder');
  assert.deepEqual([...theirs.keys()], [wo]);
  const ours = (await pullAll(env.tokenA, 'WorkOrder')).get(wo);
  assert.deepEqual([ours.title, ours.status, ours.priority], ['Tenant one order', 'OPEN', 1]);
  assert.deepEqual(other.errors, []);
});
