// Two devices of the demo app go offline and edit, one work order on both;
// back online they converge, and the device whose push came second shows
// how the server settled it (docs/sync-protocol.md, "Push"): a merge where
// the two changed different fields, the server's version where both
// changed the same field.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { devIdentities, graphql, launchChromium, openDevice, screenshot } from './harness.mjs';

let browser;
before(async () => { browser = await launchChromium(); });
after(async () => { await browser?.close(); });

const selected = (locator) => locator.evaluate((select) => select.value);

test('two devices edit offline, reconnect and converge; the conflicts are settled as the protocol says', async () => {
  // Ana (a technician) on her tablet, Dana (the dispatcher) on her laptop.
  // Ana's device opens first and seeds the dev tenant.
  const ana = await openDevice(browser, 'tech-ana', { name: 'ana' });
  await ana.order('wo-ana-1').waitFor();
  const dana = await openDevice(browser, 'dispatch-dana', { name: 'dana' });
  await dana.order('wo-ana-1').waitFor();
  await dana.order('wo-ben-1').waitFor();
  assert.equal(await ana.order('wo-ben-1').count(), 0, "Ana's device holds only her own work orders");

  await ana.goOffline();
  await dana.goOffline();

  // Ana: starts the pump job, ticks its first step, finishes the valve
  // inspection and leaves a note on the sensor job.
  await ana.order('wo-ana-1').getByTestId('status').selectOption('IN_PROGRESS');
  await ana.order('wo-ana-1').locator('[data-testid="check"][data-id="wo-ana-1-item-1"]').click();
  await ana.order('wo-ana-2').getByTestId('status').selectOption('DONE');
  await ana.order('wo-ana-3').getByTestId('note-input').fill('Reference gauge borrowed from depot B.');
  await ana.order('wo-ana-3').getByTestId('add-note').click();
  // Dana: raises the pump job's priority (another field of the same work
  // order), cancels the valve inspection (the same field Ana changed) and
  // ticks a step of Ben's job.
  await dana.order('wo-ana-1').getByTestId('priority').selectOption('1');
  await dana.order('wo-ana-2').getByTestId('status').selectOption('CANCELLED');
  await dana.order('wo-ben-1').locator('[data-testid="check"][data-id="wo-ben-1-item-1"]').click();

  await ana.page.waitForSelector('body[data-pending="4"]');
  await dana.page.waitForSelector('body[data-pending="3"]');
  assert.equal(await ana.page.getByTestId('status-stream').textContent(), 'off');
  await screenshot(ana.page, 'demo-offline');

  // Ana comes back first: her edits are written as sent.
  await ana.goOnline();
  await ana.synced();
  await ana.page.waitForSelector('[data-testid="note"]:has-text("Reference gauge borrowed")');
  assert.equal(await ana.page.getByTestId('conflict').count(), 0, "Ana's pushes met no conflict");

  // Then Dana: the pump job merges (her priority, Ana's status); the valve
  // inspection keeps the status that reached the server first, Ana's.
  await dana.goOnline();
  await dana.synced();
  const merged = dana.page.locator('[data-testid="conflict"][data-id="wo-ana-1"]');
  const serverKept = dana.page.locator('[data-testid="conflict"][data-id="wo-ana-2"]');
  await merged.waitFor();
  await serverKept.waitFor();
  assert.equal(await merged.getAttribute('data-kind'), 'merged');
  assert.match(await merged.textContent(), /Kept yours: priority 1; from the server: status "IN_PROGRESS"/);
  assert.equal(await serverKept.getAttribute('data-kind'), 'server-kept');
  assert.match(await serverKept.textContent(), /status "DONE" \(yours: status "CANCELLED" was not written\)/);

  // Both screens converge on the server's state, Ana's over her stream.
  for (const device of [ana, dana]) {
    await device.page.waitForFunction(() => {
      const card = (id) => document.querySelector(`[data-testid="work-order"][data-id="${id}"]`);
      const value = (id, field) => card(id)?.querySelector(`[data-testid="${field}"]`)?.value;
      return value('wo-ana-1', 'status') === 'IN_PROGRESS' && value('wo-ana-1', 'priority') === '1'
        && value('wo-ana-2', 'status') === 'DONE'
        && card('wo-ana-1').querySelector('[data-id="wo-ana-1-item-1"]').checked
        && card('wo-ana-3').textContent.includes('Reference gauge borrowed');
    }, null, { polling: 100 });
  }
  assert.equal(await selected(dana.order('wo-ana-2').getByTestId('status')), 'DONE');
  assert.ok(await dana.order('wo-ben-1').locator('[data-id="wo-ben-1-item-1"]').isChecked());

  // And the server holds exactly that.
  const { 'dispatch-dana': dispatcher } = await devIdentities();
  const { pullWorkOrders } = await graphql(dispatcher.token, `{ pullWorkOrders(checkpoint: null, limit: 100) { documents { id status priority } } }`);
  const byId = Object.fromEntries(pullWorkOrders.documents.map((d) => [d.id, d]));
  assert.deepEqual(byId['wo-ana-1'], { id: 'wo-ana-1', status: 'IN_PROGRESS', priority: 1 });
  assert.deepEqual(byId['wo-ana-2'], { id: 'wo-ana-2', status: 'DONE', priority: 3 });
  const { pullChecklistItems } = await graphql(dispatcher.token, `{ pullChecklistItems(checkpoint: null, limit: 100) { documents { id done } } }`);
  const done = pullChecklistItems.documents.filter((d) => d.done).map((d) => d.id).sort();
  assert.deepEqual(done, ['wo-ana-1-item-1', 'wo-ben-1-item-1']);

  await screenshot(dana.page, 'demo-conflicts');
  await screenshot(ana.page, 'demo-technician');
  await ana.context.close();
  await dana.context.close();
});
