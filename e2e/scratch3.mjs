import { createRxDatabase } from 'rxdb';
import { getRxStorageMemory } from 'rxdb/plugins/storage-memory';
import { wrappedValidateAjvStorage } from 'rxdb/plugins/validate-ajv';
import { tidemarkCollections, replicateTidemark } from './tidemark-rxdb.mjs';
import { env, newId, push } from './test/helpers.mjs';
const closes = [];
async function open(name, token) {
  const db = await createRxDatabase({ name: name + Math.random().toString(36).slice(2), storage: wrappedValidateAjvStorage({ storage: getRxStorageMemory() }), multiInstance: false });
  await db.addCollections({ workOrders: tidemarkCollections.workOrders });
  const r = replicateTidemark(db.workOrders, { url: env.url, token, retryTime: 500, waitForLeadership: false,
    wsOptions: { on: { closed: (e) => closes.push([name, e.code, e.reason]), connected: () => closes.push([name, 'connected']) } } });
  r.error$.subscribe((e) => console.log(name, 'error', e.code, JSON.stringify(e.parameters?.errors ?? e).slice(0, 150)));
  await r.awaitInitialReplication();
  return { db, r };
}
const a = await open('a', env.tokenA);      // opens the shared socket as tenant 1
const o = await open('other', env.tokenOther); // shares it
await new Promise((r) => setTimeout(r, 300));
const id = newId('wo');
await push(env.tokenA, 'WorkOrder', [{ newDocumentState: { id, siteId: 's', title: 't1', status: 'OPEN', priority: 1, deleted: false } }]);
await new Promise((r) => setTimeout(r, 1000));
console.log('a has it', !!(await a.db.workOrders.findOne(id).exec()), 'other has it', !!(await o.db.workOrders.findOne(id).exec()));
console.log('now restart the server');
await new Promise((r) => setTimeout(r, 8000));
console.log(closes);
await a.r.cancel(); await o.r.cancel();
