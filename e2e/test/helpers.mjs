// Test helpers: RxDB clients of a running Tidemark, a plain GraphQL client,
// and the harness's control of the server.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { addRxPlugin, createRxDatabase } from 'rxdb';
import { RxDBDevModePlugin, disableWarnings } from 'rxdb/plugins/dev-mode';
import { getRxStorageMemory } from 'rxdb/plugins/storage-memory';
import { wrappedValidateAjvStorage } from 'rxdb/plugins/validate-ajv';

import {
  documentFields,
  graphqlTypeByCollection,
  replicateTidemark,
  tidemarkCollections,
  websocketUrl,
} from '../tidemark-rxdb.mjs';
import { expiredCheckpoint } from '../checkpoint-expired.mjs';

// Dev-mode checks schemas and queries, and with the validator every document
// the server sends must fit the client schema.
disableWarnings();
addRxPlugin(RxDBDevModePlugin);

function required(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set; run this suite through \`go test ./e2e/\``);
  return v;
}

export const env = {
  url: required('TIDEMARK_URL'),
  tokenA: required('TIDEMARK_TOKEN_A'),
  tokenB: required('TIDEMARK_TOKEN_B'),
  tokenOther: required('TIDEMARK_TOKEN_OTHER'),
  // Set by the Go harness; tests that need them are skipped without.
  // A second server instance on the same database:
  secondUrl: process.env.TIDEMARK_SECOND_URL,
  // Stops and starts the instance of TIDEMARK_URL, and issues tokens:
  controlUrl: process.env.TIDEMARK_CONTROL_URL,
};

export function newId(prefix) {
  return `${prefix}-${randomUUID()}`;
}

/**
 * An RxDB database with its own in-memory storage and one replication per
 * collection. With live replication (the default) local writes are pushed
 * as they happen and, with `stream` (the default), the server's changes
 * arrive over a websocket of this client's own; without it, pulls happen
 * only at start and on sync().
 *
 * A replication error fails a sync() in progress (RxDB itself only retries),
 * but for CHECKPOINT_EXPIRED, which replicateTidemark handles by resyncing;
 * every error is kept in client.errors for the test to check, and each
 * resync after CHECKPOINT_EXPIRED in client.resets.
 */
export async function openClient(name, token, options = {}) {
  const {
    collections = Object.keys(tidemarkCollections),
    live = true,
    stream = true,
    url = env.url,
    // Each client has a websocket of its own unless told to share one.
    wsUrl,
    fetch: customFetch,
    batchSize,
    // Options of the CHECKPOINT_EXPIRED recipe (checkpoint-expired.mjs).
    checkpointReset = {},
  } = options;
  const dbName = `${name}-${randomUUID()}`.toLowerCase();
  const db = await createRxDatabase({
    name: dbName,
    storage: wrappedValidateAjvStorage({ storage: getRxStorageMemory() }),
    multiInstance: false,
  });
  await db.addCollections(Object.fromEntries(collections.map((c) => [c, tidemarkCollections[c]])));

  const errors = [];
  const conflicts = [];
  const resets = [];
  const errorListeners = new Set();
  // Races a wait on the replications against their next error, which a
  // replication otherwise only retries.
  const failOnError = (promise) => {
    let listener;
    const failed = new Promise((_, reject) => {
      listener = (err, c) => reject(new Error(`${name}: ${c} replication: ${describeError(err)}`));
    });
    errorListeners.add(listener);
    return Promise.race([promise, failed]).finally(() => errorListeners.delete(listener));
  };

  // The websocket of this client: RxDB shares one per URL in a process, and
  // here each client stands for a device of its own.
  const socket = { connects: 0, closes: [], listeners: new Set() };
  const socketChanged = () => { for (const l of socket.listeners) l(); };
  const wsOptions = {
    on: {
      connected: () => { socket.connects++; socketChanged(); },
      closed: (event) => { socket.closes.push({ code: event.code, reason: event.reason }); socketChanged(); },
    },
  };
  // The documents of each stream event (not of pulls), by collection.
  const streamed = Object.fromEntries(collections.map((c) => [c, []]));
  const streamListeners = new Set();

  const replications = {};
  for (const c of collections) {
    const r = replicateTidemark(db[c], {
      url,
      token,
      live,
      batchSize,
      wsUrl: stream && (wsUrl ?? `${websocketUrl(url)}?client=${dbName}`),
      wsOptions,
      pull: stream ? {
        responseModifier: (data, origin) => {
          if (origin === 'stream') {
            streamed[c].push(...data.documents);
            for (const l of streamListeners) l(c, data.documents);
          }
          return data;
        },
      } : true,
      retryTime: 500,
      waitForLeadership: false,
      fetch: customFetch,
      checkpointReset: {
        ...checkpointReset,
        onReset: (reset) => {
          resets.push(reset);
          checkpointReset.onReset?.(reset);
        },
      },
    });
    r.error$.subscribe((err) => {
      errors.push(err);
      if (expiredCheckpoint(err) !== undefined) return;
      for (const listener of errorListeners) listener(err, c);
    });
    r.conflict$.subscribe((conflict) => conflicts.push({ collection: c, ...conflict }));
    replications[c] = r;
  }

  /** Resolves true once a stream event of the collection holds the id, false after ms. */
  const streamedWithin = (c, id, ms) => new Promise((resolve) => {
    if (streamed[c].some((d) => d.id === id)) return resolve(true);
    const listener = (col, docs) => {
      if (col === c && docs.some((d) => d.id === id)) done(true);
    };
    const timer = setTimeout(() => done(false), ms);
    function done(v) {
      clearTimeout(timer);
      streamListeners.delete(listener);
      resolve(v);
    }
    streamListeners.add(listener);
  });

  const client = {
    name,
    db,
    url,
    token,
    replications,
    errors,
    // Conflicts RxDB resolved for pushes of this client (the server returned a
    // document other than the one sent).
    conflicts,
    /** {collection, dropped} of each full resync after CHECKPOINT_EXPIRED. */
    resets,
    /** connects: how often the websocket connected; closes: {code, reason} of each close. */
    socket,
    /** The documents each collection received in stream events, in order. */
    streamed,

    /** Pushes what is pending, then pulls until nothing is new. */
    async sync() {
      await client.awaitPushed();
      await failOnError(Promise.all(Object.values(replications).map(async (r) => {
        r.reSync();
        await r.awaitInSync();
      })));
    },

    /** Waits until every local write has been pushed. */
    async awaitPushed() {
      await failOnError(Promise.all(Object.values(replications).map((r) => r.awaitInSync())));
    },

    /**
     * Waits until every collection's stream subscription is registered on
     * the server, so that every later change reaches this client as a
     * stream event. The server does not acknowledge a subscription, and
     * RxDB subscribes while its first pulls run, so a change made right
     * after awaitInitialReplication() may fall between the two: it is
     * pulled late or not at all (see the README). Instead, write a probe (a
     * new, deleted document, which stays out of queries) through the API
     * until one comes back in a stream event.
     */
    async awaitLive({ timeout = 15_000 } = {}) {
      assert.ok(stream && live, `${name}: not a streaming client`);
      await failOnError(Promise.all(Object.values(replications).map((r) => r.awaitInitialReplication())));
      const deadline = Date.now() + timeout;
      await Promise.all(collections.map(async (c) => {
        for (;;) {
          const id = newId('probe');
          await push(client.token, graphqlTypeByCollection[c], [{ newDocumentState: probe(c, id) }], { url });
          if (await streamedWithin(c, id, 1000)) return;
          if (Date.now() > deadline) throw new Error(`${name}: the ${c} stream did not go live within ${timeout} ms`);
        }
      }));
    },

    /**
     * Waits, without pulling, until the document (null when absent or
     * deleted) satisfies want; returns it. Fails after timeout ms.
     */
    async waitFor(collection, id, want, { timeout = 10_000 } = {}) {
      let last;
      let sub;
      let timer;
      try {
        return await new Promise((resolve, reject) => {
          timer = setTimeout(
            () => reject(new Error(`${name}: ${collection} ${id} did not get there within ${timeout} ms; last seen: ${JSON.stringify(last)}`)),
            timeout,
          );
          sub = db[collection].findOne(id).$.subscribe({
            next: (doc) => {
              last = doc ? doc.toJSON() : null;
              if (want(last)) resolve(last);
            },
            error: reject,
          });
        });
      } finally {
        clearTimeout(timer);
        sub?.unsubscribe();
      }
    },

    /** Resolves once test(socket) holds; fails after timeout ms. */
    async waitForSocket(test, { timeout = 10_000, what = 'the socket condition' } = {}) {
      if (test(socket)) return;
      let listener;
      let timer;
      try {
        await new Promise((resolve, reject) => {
          timer = setTimeout(() => reject(new Error(`${name}: ${what} within ${timeout} ms: ${JSON.stringify(socket)}`)), timeout);
          listener = () => { if (test(socket)) resolve(); };
          socket.listeners.add(listener);
        });
      } finally {
        clearTimeout(timer);
        socket.listeners.delete(listener);
      }
    },

    /** Stops talking to the server; local writes queue up. */
    async goOffline() {
      await Promise.all(Object.values(replications).map((r) => r.pause()));
    },

    async goOnline() {
      await Promise.all(Object.values(replications).map((r) => r.start()));
    },

    /** Every non-deleted document, by collection, sorted by id. */
    async snapshot() {
      const out = {};
      for (const c of collections) {
        const docs = await db[c].find().exec();
        out[c] = docs.map((d) => d.toJSON()).sort(byId);
      }
      return out;
    },

    /** Gives every replication a new bearer token, as an app does when its token expires. */
    setToken(newToken) {
      client.token = newToken;
      for (const r of Object.values(replications)) r.setHeaders({ Authorization: `Bearer ${newToken}` });
    },

    async get(collection, id) {
      const doc = await db[collection].findOne(id).exec();
      return doc ? doc.toJSON() : null;
    },

    async close() {
      await Promise.all(Object.values(replications).map((r) => r.cancel()));
      await db.close();
    },
  };
  return client;
}

/** A new document of the collection, already deleted. */
function probe(collection, id) {
  const fields = {
    sites: { name: 'probe', address: 'probe' },
    workOrders: { siteId: 'probe', title: 'probe', status: 'OPEN', priority: 0 },
    checklistItems: { workOrderId: 'probe', label: 'probe', done: false, position: 0 },
    notes: { workOrderId: 'probe', body: 'probe' },
  }[collection];
  return { id, ...fields, deleted: true };
}

export function describeError(err) {
  if (!err) return String(err);
  const parts = [err.message ?? String(err)];
  if (err.parameters) {
    try {
      parts.push(JSON.stringify(err.parameters.errors ?? err.parameters).slice(0, 2000));
    } catch {
      // parameters are best effort
    }
  }
  return parts.join(' ');
}

export function byId(a, b) {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** Runs a GraphQL operation over plain fetch; throws on any GraphQL error. */
export async function graphql(token, query, variables = {}, { url = env.url } = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`HTTP ${res.status}: ${text.slice(0, 500)}`);
  }
  if (body.errors) throw new Error(`GraphQL errors: ${JSON.stringify(body.errors)}`);
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${text.slice(0, 500)}`);
  return body.data;
}

/** Pushes rows of one type; returns the documents the server sent back. */
export async function push(token, type, rows, { url = env.url } = {}) {
  const data = await graphql(
    token,
    `mutation($rows: [${type}PushRow!]!) { push${type}s(rows: $rows) { ${documentFields(type)} } }`,
    { rows },
    { url },
  );
  return data[`push${type}s`];
}

/** Every document of one type on the server, deleted ones included, by id. */
export async function pullAll(token, type) {
  const docs = new Map();
  let checkpoint = null;
  for (;;) {
    const data = await graphql(
      token,
      `query($checkpoint: CheckpointInput, $limit: Int!) {
        pull${type}s(checkpoint: $checkpoint, limit: $limit) {
          documents { ${documentFields(type)} } checkpoint { cursor }
        }
      }`,
      { checkpoint, limit: 1000 },
    );
    const page = data[`pull${type}s`];
    for (const d of page.documents) docs.set(d.id, d);
    if (page.documents.length === 0) return docs;
    checkpoint = page.checkpoint;
  }
}

/** The server's non-deleted documents of every collection, shaped like Client.snapshot(). */
export async function serverSnapshot(token, collections = Object.keys(tidemarkCollections)) {
  const out = {};
  for (const c of collections) {
    const docs = await pullAll(token, graphqlTypeByCollection[c]);
    out[c] = [...docs.values()]
      .filter((d) => !d.deleted)
      .map(({ deleted, ...rest }) => withoutNulls(rest))
      .sort(byId);
  }
  return out;
}

/** Drops null fields, which RxDB keeps and the server sends; for comparisons only. */
export function withoutNulls(doc) {
  return Object.fromEntries(Object.entries(doc).filter(([, v]) => v !== null));
}

/** POSTs to the harness's control endpoint; returns the answer's text. */
async function control(path) {
  if (!env.controlUrl) throw new Error('TIDEMARK_CONTROL_URL is not set; run this suite through `go test ./e2e/`');
  const res = await fetch(env.controlUrl + path, { method: 'POST' });
  const text = await res.text();
  if (!res.ok) throw new Error(`control ${path}: HTTP ${res.status}: ${text}`);
  return text;
}

/** Stops the server of TIDEMARK_URL, as an orchestrator stops a pod. */
export const stopServer = () => control('/stop');

/** Starts it again on the same address; resolves once it is ready. */
export const startServer = () => control('/start');

/** A token of the given life, e.g. issueToken('tenant-1', 'user-b', '3s'). */
export const issueToken = (tenant, user, ttl) =>
  control(`/token?${new URLSearchParams({ tenant, user, ttl })}`);

/**
 * Tokens of users A and B of a new tenant of their own, so that a client
 * starts without the documents of other suites; without the harness's
 * control endpoint, the tokens of env (tenant-1).
 */
export async function newTenant() {
  if (!env.controlUrl) return { tenant: 'tenant-1', tokenA: env.tokenA, tokenB: env.tokenB };
  const tenant = newId('tenant');
  const [tokenA, tokenB] = await Promise.all([
    issueToken(tenant, 'user-a', '1h'),
    issueToken(tenant, 'user-b', '1h'),
  ]);
  return { tenant, tokenA, tokenB };
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
