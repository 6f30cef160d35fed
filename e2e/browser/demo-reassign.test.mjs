// A dispatcher reassigns a work order through the API; it leaves one
// technician's screen and appears on the other's, live, with its checklist
// and notes (docs/sync-rules.md: move-out and move-in).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { devIdentities, graphql, launchChromium, openDevice, screenshot } from './harness.mjs';

// Every field of a work order (as e2e/tidemark-rxdb.mjs's documentFields
// says; not imported, as that would need e2e's own node_modules).
const workOrderFields = 'id siteId title description status priority assigneeId dueAt updatedAt deleted';

let browser;
before(async () => { browser = await launchChromium(); });
after(async () => { await browser?.close(); });

test("a reassignment moves a work order from one technician's screen to the other's, live", async () => {
  const ana = await openDevice(browser, 'tech-ana', { name: 'ana' });
  await ana.order('wo-ana-3').waitFor();
  const ben = await openDevice(browser, 'tech-ben', { name: 'ben' });
  await ben.order('wo-ben-1').waitFor();
  assert.equal(await ben.order('wo-ana-3').count(), 0);
  await screenshot(ben.page, 'demo-before-reassign');

  // The dispatcher hands Ana's sensor job to Ben, as a dispatch console
  // would: a push whose assumed state is the one it pulled.
  const { 'dispatch-dana': dispatcher } = await devIdentities();
  const { pullWorkOrders } = await graphql(dispatcher.token,
    `{ pullWorkOrders(checkpoint: null, limit: 100) { documents { ${workOrderFields} } } }`);
  const job = pullWorkOrders.documents.find((d) => d.id === 'wo-ana-3');
  assert.equal(job.assigneeId, 'tech-ana');
  const { pushWorkOrders: conflicts } = await graphql(dispatcher.token,
    `mutation($rows: [WorkOrderPushRow!]!) { pushWorkOrders(rows: $rows) { id } }`,
    { rows: [{ assumedMasterState: job, newDocumentState: { ...job, assigneeId: 'tech-ben' } }] });
  assert.deepEqual(conflicts, [], 'the reassignment was written as sent');

  // No reload, no pull: the streams carry it.
  await ana.order('wo-ana-3').waitFor({ state: 'detached' });
  await ben.order('wo-ana-3').waitFor();
  await ben.page.waitForSelector('[data-testid="work-order"][data-id="wo-ana-3"] [data-id="wo-ana-3-item-2"]');
  assert.match(await ben.order('wo-ana-3').textContent(), /assigned to tech-ben/);
  assert.equal(await ana.page.locator('[data-testid="work-order"]').count(), 2);
  assert.equal(await ben.page.locator('[data-testid="work-order"]').count(), 3);
  await screenshot(ben.page, 'demo-reassigned');
  await ana.context.close();
  await ben.context.close();
});

test("switching identity on a device shows that identity's set", async () => {
  const device = await openDevice(browser, 'tech-ana', { name: 'shared tablet' });
  await device.order('wo-ana-1').waitFor();
  await device.page.getByTestId('identity').selectOption('tech-ben');
  await device.page.waitForSelector('body[data-ready="true"][data-stream="live"]');
  await device.order('wo-ben-1').waitFor();
  await device.order('wo-ana-3').waitFor(); // reassigned to Ben by the test above
  assert.equal(await device.order('wo-ana-1').count(), 0, "Ana's work orders are not Ben's");
  await device.page.getByTestId('identity').selectOption('dispatch-dana');
  await device.order('wo-open-1').waitFor(); // the dispatcher sees the unassigned one too
  await device.order('wo-ana-1').waitFor();
  assert.equal(await device.page.locator('[data-testid="work-order"]').count(), 6);
  await device.context.close();
});
