import { env, newId, openClient, push } from './test/helpers.mjs';
const a = await openClient('a', env.tokenA, { collections: ['workOrders'] });
const b = await openClient('b', env.tokenB, { collections: ['workOrders'] });
const r = b.replications.workOrders;
await r.awaitInitialReplication();
await new Promise((r) => setTimeout(r, 300));
const id = newId('wo');
const t0 = performance.now();
await a.db.workOrders.insert({ id, siteId: 's', title: 'live', status: 'OPEN', priority: 1 });
await new Promise((resolve) => {
  const sub = b.db.workOrders.findOne(id).$.subscribe((d) => { if (d) { sub.unsubscribe(); resolve(); } });
});
console.log('B saw it after', Math.round(performance.now() - t0), 'ms');
console.log('errors', a.errors, b.errors);
// pause/start
await b.goOffline(); await b.goOnline();
await a.close(); await b.close();
console.log('closed');
