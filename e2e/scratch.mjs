import { openClient, env, newId } from './test/helpers.mjs';
let inflight = 0, max = 0, pushes = 0;
const f = async (req) => { const b = await req.clone().text(); const isPush = b.includes('PushWorkOrders'); if (isPush) { pushes++; inflight++; max = Math.max(max, inflight); } try { return await fetch(req); } finally { if (isPush) inflight--; } };
const w = await openClient('w', env.tokenA, { collections: ['workOrders'], batchSize: 200, fetch: f });
await w.goOffline();
await w.db.workOrders.bulkInsert(Array.from({ length: 2000 }, (_, i) => ({ id: newId('o'), siteId: 's', title: 't' + i, status: 'OPEN', priority: 1 })));
await w.goOnline(); await w.sync();
console.log({ pushes, max });
await w.close();
