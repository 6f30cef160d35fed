// The Playground at / as a new user meets it, in Chromium: served whole
// from the binary (no other origin is ever asked for anything), the schema
// loaded with the page (the Docs panel shows it without a re-fetch), a query
// run, and a stream, started right after a token was pasted into the
// Headers editor, running over graphql-ws (never as an HTTP POST) and
// receiving a push made meanwhile.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { graphql, launchChromium, logPage, screenshot, tidemark } from './harness.mjs';

test('the Playground loads offline with its schema, runs a query and streams a push', async (t) => {
  const browser = await launchChromium();
  t.after(() => browser.close());
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  logPage(page, 'playground');

  // Offline: every request to another origin fails, and is recorded.
  const origin = new URL(tidemark.url).origin;
  const elsewhere = [];
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (new URL(url).origin === origin) return route.continue();
    elsewhere.push(url);
    return route.abort('internetdisconnected');
  });

  // Every HTTP request to /graphql, with its headers and body.
  const posts = [];
  page.on('request', (req) => {
    if (new URL(req.url()).pathname === '/graphql' && req.method() === 'POST') {
      posts.push({ headers: req.headers(), body: req.postDataJSON() });
    }
  });
  // What the page sends and receives over websockets; until(condition)
  // resolves once a frame makes the condition true.
  const sockets = [];
  const waiters = new Set();
  const frame = (list, payload) => {
    list.push(JSON.parse(payload));
    for (const w of [...waiters]) {
      if (w.condition()) {
        waiters.delete(w);
        w.resolve();
      }
    }
  };
  const until = (condition) => (condition() ? Promise.resolve() : new Promise((resolve) => waiters.add({ condition, resolve })));
  page.on('websocket', (ws) => {
    const socket = { url: ws.url(), sent: [], received: [] };
    sockets.push(socket);
    ws.on('framesent', (f) => frame(socket.sent, f.payload));
    ws.on('framereceived', (f) => frame(socket.received, f.payload));
  });

  await page.goto(`${tidemark.url}/`);
  const config = JSON.parse(await page.locator('#tidemark-config').textContent());
  const devAuthorization = config.headers?.Authorization;
  assert.match(devAuthorization ?? '', /^Bearer ./, 'dev mode fills in the dev token for a loopback request');

  // The schema loads with the page: the first request (the introspection)
  // carries the token, and the Docs panel shows the schema.
  await page.locator('.graphiql-query-editor .CodeMirror').waitFor();
  await page.locator('button[aria-label*="Documentation Explorer"]').click();
  await page.locator('.graphiql-doc-explorer-root-type', { hasText: 'Query' }).first().waitFor();
  assert.equal(await page.getByText('Error fetching schema').count(), 0);
  assert.ok(posts.length >= 1, 'the page fetched the schema');
  assert.match(posts[0].body.query, /__schema/, 'the first request is the introspection');
  assert.equal(posts[0].headers.authorization, devAuthorization, 'the introspection carries the token');

  // The example document has a pull, a push and a stream.
  const editor = async (selector, fn, arg) =>
    page.evaluate(([sel, body, a]) => new Function('cm', 'arg', body)(document.querySelector(sel).CodeMirror, a), [selector, fn, arg]);
  const queryEditor = '.graphiql-query-editor .CodeMirror';
  const document_ = await editor(queryEditor, 'return cm.getValue();');
  for (const op of ['query Pull', 'pullWorkOrders', 'mutation Push', 'pushWorkOrders', 'subscription Stream', 'streamWorkOrders']) {
    assert.ok(document_.includes(op), `the example document has ${op}`);
  }
  const result = () => editor('.result-window .CodeMirror', 'return cm.getValue();');
  // Runs the operation whose text holds `word`, as a user does: cursor in
  // it, Ctrl-Enter.
  const runOperation = async (word) => {
    await editor(queryEditor, `
      const line = cm.getValue().split('\\n').findIndex((l) => l.includes(arg));
      cm.focus();
      cm.setCursor({ line, ch: 4 });
    `, word);
    await page.keyboard.press('Control+Enter');
  };

  // A query, over HTTP.
  await runOperation('pullWorkOrders(');
  await page.waitForFunction(() => {
    const cm = document.querySelector('.result-window .CodeMirror')?.CodeMirror;
    return cm && cm.getValue().includes('"checkpoint"');
  });
  assert.match(await result(), /"pullWorkOrders"/);
  await screenshot(page, 'playground');

  // Paste a token into the Headers editor (first emptied, as a user with
  // their own token does), then at once start the stream.
  const token = devAuthorization.slice('Bearer '.length);
  await page.getByText('Headers', { exact: true }).click();
  // The Headers editor is the editor tool not hidden after the click.
  const headersEditor = '.graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror';
  await editor(headersEditor, 'cm.setValue("{}");');
  await editor(headersEditor, 'cm.focus(); cm.execCommand("selectAll");');
  await page.keyboard.insertText(`{"Authorization": "Bearer ${token}"}`);
  assert.equal(JSON.parse(await editor(headersEditor, 'return cm.getValue();')).Authorization, `Bearer ${token}`);

  const postsBefore = posts.length;
  await runOperation('streamWorkOrders');
  // The stream goes out over graphql-ws: wait for the connection's ack and
  // the subscribe message.
  await until(() => sockets.some((s) => s.received.some((m) => m.type === 'connection_ack')
    && s.sent.some((m) => m.type === 'subscribe' && /streamWorkOrders/.test(m.payload.query))));
  const socket = sockets.find((s) => s.sent.some((m) => m.type === 'subscribe'));
  assert.equal(new URL(socket.url).pathname, '/graphql');
  const init = socket.sent.find((m) => m.type === 'connection_init');
  assert.equal(init.payload.Authorization, `Bearer ${token}`, 'the pasted token goes in connection_init');
  assert.ok(
    posts.slice(postsBefore).every((p) => !/subscription|streamWorkOrders/.test(p.body.query)),
    'no subscription goes out as an HTTP POST',
  );

  // A push from another client reaches the running stream.
  const id = `wo-playground-${randomUUID()}`;
  await graphql(token, `mutation ($rows: [WorkOrderPushRow!]!) { pushWorkOrders(rows: $rows) { id } }`, {
    rows: [{ newDocumentState: { id, siteId: `site-${randomUUID()}`, title: 'Pushed while the Playground streams', status: 'OPEN', priority: 1, deleted: false } }],
  });
  await page.waitForFunction((wanted) => {
    const cm = document.querySelector('.result-window .CodeMirror')?.CodeMirror;
    return cm && cm.getValue().includes(wanted);
  }, id);
  assert.match(await result(), /Pushed while the Playground streams/);
  await screenshot(page, 'playground-stream');

  assert.deepEqual(elsewhere, [], 'the Playground asks no other origin for anything');
});
