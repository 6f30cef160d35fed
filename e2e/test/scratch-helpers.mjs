// Test helpers: RxDB clients of a running Tidemark and a plain GraphQL client.

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
} from '../scratch-mod.mjs';

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
};

export function newId(prefix) {
  return `${prefix}-${randomUUID()}`;
}

/**
 * An RxDB database with its own in-memory storage and one replication per
 * collection. Pulls happen at start and on sync() (there is no pull stream
 * yet); with live replication local writes are pushed as they happen.
 *
 * A replication error fails a sync() in progress (RxDB itself only retries),
 * and every error is kept in client.errors for the test to check.
 */
export async function openClient(name, token, options = {}) {
  const {
    collections = Object.keys(tidemarkCollections),
    live = true,
    fetch: customFetch,
    batchSize,
  } = options;
  const db = await createRxDatabase({
    name: `${name}-${randomUUID()}`.toLowerCase(),
    storage: wrappedValidateAjvStorage({ storage: getRxStorageMemory() }),
    multiInstance: false,
  });
  await db.addCollections(Object.fromEntries(collections.map((c) => [c, tidemarkCollections[c]])));

  const errors = [];
  const conflicts = [];
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

  const replications = {};
  for (const c of collections) {
    const r = replicateTidemark(db[c], {
      url: env.url,
      token,
      live,
      batchSize,
      retryTime: 500,
      waitForLeadership: false,
      fetch: customFetch,
    });
    r.error$.subscribe((err) => {
      errors.push(err);
      for (const listener of errorListeners) listener(err, c);
    });
    r.conflict$.subscribe((conflict) => conflicts.push({ collection: c, ...conflict }));
    replications[c] = r;
  }

  const client = {
    name,
    db,
    replications,
    errors,
    // Conflicts RxDB resolved for pushes of this client (the server returned a
    // document other than the one sent).
    conflicts,

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
    setToken(token) {
      for (const r of Object.values(replications)) r.setHeaders({ Authorization: `Bearer ${token}` });
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

function describeError(err) {
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
export async function graphql(token, query, variables = {}) {
  const res = await fetch(env.url, {
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
export async function push(token, type, rows) {
  const data = await graphql(
    token,
    `mutation($rows: [${type}PushRow!]!) { push${type}s(rows: $rows) { ${documentFields(type)} } }`,
    { rows },
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
