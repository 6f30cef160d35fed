// Shared by the client guide tests: the server's addresses and tokens, a
// fresh work order, and one run of a guide's pull, push and stream. The Go
// test e2e/clients_test.go starts the server and sets TIDEMARK_URL,
// TIDEMARK_WS_URL and TIDEMARK_TOKENS (a JSON object of bearer tokens, each
// of a tenant of its own, so no test sees another's writes).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

export const url = process.env.TIDEMARK_URL;
export const wsUrl = process.env.TIDEMARK_WS_URL;
const tokens = JSON.parse(process.env.TIDEMARK_TOKENS || '{}');
if (!url || !wsUrl) throw new Error('set TIDEMARK_URL and TIDEMARK_WS_URL (go test ./e2e -run TestClientGuides does)');

export function tokenFor(name) {
  const token = tokens[name];
  if (!token) throw new Error(`no token "${name}" in TIDEMARK_TOKENS`);
  return token;
}

function newWorkOrder(title) {
  return {
    id: `wo-${randomUUID()}`,
    siteId: `site-${randomUUID()}`,
    title,
    description: null,
    status: 'OPEN',
    priority: 2,
    assigneeId: null,
    dueAt: null,
    updatedAt: null,
    deleted: false,
  };
}

// connected resolves once the websocket client's connection is
// acknowledged, and fails if the connection closes first (a refused token).
// Tidemark records where a connection's streams start when it accepts an
// authenticated connection, so whatever commits afterwards reaches the
// stream.
function connected(wsClient) {
  return new Promise((resolve, reject) => {
    const offs = [
      wsClient.on('connected', () => {
        offs.forEach((off) => off());
        resolve();
      }),
      wsClient.on('closed', (event) => {
        offs.forEach((off) => off());
        reject(new Error(`the websocket closed before it was acknowledged: ${event.code} ${event.reason}`));
      }),
    ];
  });
}

// exercise runs one guide's pull, push and stream.
export async function exercise(t, { client, wsClient, pullWorkOrders, pushWorkOrders, streamWorkOrders }) {
  let stop = () => {};
  t.after(() => stop());

  const isUp = connected(wsClient);
  const doc = newWorkOrder(`pushed by ${t.name}`);
  const received = new Promise((resolve, reject) => {
    stop = streamWorkOrders(
      client,
      (event) => {
        assert.ok(event.checkpoint && typeof event.checkpoint.cursor === 'string', 'an event carries a checkpoint');
        const mine = event.documents.find((d) => d.id === doc.id);
        if (mine) resolve(mine);
      },
      (err) => reject(err instanceof Error ? err : new Error(JSON.stringify(err))),
    );
  });
  await Promise.race([isUp, received]);

  const first = await pullWorkOrders(client, null, 100);
  assert.deepEqual(first.documents, [], 'a fresh tenant has no work orders');
  assert.equal(typeof first.checkpoint.cursor, 'string');

  const conflicts = await pushWorkOrders(client, [{ assumedMasterState: null, newDocumentState: doc }]);
  assert.deepEqual(conflicts, [], 'a new document is written as sent');

  const streamed = await received;
  assert.equal(streamed.title, doc.title);
  assert.equal(streamed.deleted, false);

  const next = await pullWorkOrders(client, { cursor: first.checkpoint.cursor }, 100);
  assert.deepEqual(
    next.documents.map((d) => [d.id, d.title, d.status]),
    [[doc.id, doc.title, 'OPEN']],
  );
  assert.ok(next.documents[0].updatedAt, 'the server sets updatedAt');
}
