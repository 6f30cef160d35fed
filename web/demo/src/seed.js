// The dev tenant's sample data: two sites, work orders for both
// technicians (and one for nobody yet), their checklists and a note. The
// app pushes it through the ordinary push API, as the dispatcher, when the
// tenant has no work orders. Fixed ids make the seed idempotent: a second
// seeding (two tabs opened at once) pushes rows whose assumed state is null
// against documents that exist, which the server answers as conflicts
// without writing anything.
import { pullQuery, pushMutation } from '@tidemark/rxdb';

const sites = [
  { id: 'site-harbor', name: 'Harbor pumping station', address: '1 Quay Road', latitude: 51.5072, longitude: -0.1276 },
  { id: 'site-north', name: 'North substation', address: '48 Ridge Lane', latitude: 51.53, longitude: -0.1 },
];

const workOrders = [
  { id: 'wo-ana-1', siteId: 'site-harbor', title: 'Replace pump seal', description: 'Pump 2 leaks at the shaft seal.', priority: 2, assigneeId: 'tech-ana' },
  { id: 'wo-ana-2', siteId: 'site-harbor', title: 'Inspect backflow valve', description: 'Annual inspection.', priority: 3, assigneeId: 'tech-ana' },
  { id: 'wo-ana-3', siteId: 'site-north', title: 'Calibrate pressure sensor', description: 'Sensor P-7 reads 4% high.', priority: 3, assigneeId: 'tech-ana' },
  { id: 'wo-ben-1', siteId: 'site-north', title: 'Swap transformer fan', description: 'Fan bearing is noisy.', priority: 2, assigneeId: 'tech-ben' },
  { id: 'wo-ben-2', siteId: 'site-north', title: 'Thermal scan of switchgear', description: null, priority: 4, assigneeId: 'tech-ben' },
  { id: 'wo-open-1', siteId: 'site-harbor', title: 'Repaint safety markings', description: 'Not assigned yet.', priority: 5, assigneeId: null },
].map((wo) => ({ status: 'OPEN', dueAt: null, ...wo }));

const checklists = {
  'wo-ana-1': ['Isolate pump', 'Drain casing', 'Fit new seal', 'Test run 10 min'],
  'wo-ana-2': ['Check test cocks', 'Record differential pressure'],
  'wo-ana-3': ['Connect reference gauge', 'Adjust zero and span'],
  'wo-ben-1': ['Lock out transformer', 'Replace fan', 'Check rotation'],
  'wo-ben-2': ['Open panels', 'Scan busbars', 'Write report'],
  'wo-open-1': ['Buy paint'],
};

const checklistItems = Object.entries(checklists).flatMap(([workOrderId, labels]) =>
  labels.map((label, i) => ({ id: `${workOrderId}-item-${i + 1}`, workOrderId, label, done: false, position: i + 1 })));

const notes = [
  { id: 'note-ana-1', workOrderId: 'wo-ana-1', body: 'Seal kit is in the van.' },
];

/** Seeds the tenant through the API when it has no work orders yet. */
export async function seedIfEmpty(graphql) {
  const pulled = await graphql(pullQuery('WorkOrder'), { checkpoint: null, limit: 1 });
  if (pulled.pullWorkOrders.documents.length > 0) return false;
  const push = (type, docs) => graphql(pushMutation(type), {
    rows: docs.map((doc) => ({ assumedMasterState: null, newDocumentState: { ...doc, deleted: false } })),
  });
  // Parents first, so every technician's bucket fills in one go.
  await push('Site', sites);
  await push('WorkOrder', workOrders);
  await push('ChecklistItem', checklistItems);
  await push('Note', notes);
  return true;
}
