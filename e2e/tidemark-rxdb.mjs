// A complete RxDB client setup for Tidemark: the schemas of the four synced
// collections and replicateTidemark(), which replicates one RxDB collection
// with the server's pull/push GraphQL API and, while live, its stream
// subscriptions over a websocket.
//
//   import { addRxPlugin, createRxDatabase } from 'rxdb';
//   import { getRxStorageMemory } from 'rxdb/plugins/storage-memory';
//   import { tidemarkCollections, replicateTidemark } from './tidemark-rxdb.mjs';
//
//   const db = await createRxDatabase({ name: 'fieldapp', storage: getRxStorageMemory() });
//   await db.addCollections(tidemarkCollections);
//   const replication = replicateTidemark(db.workOrders, {
//     url: 'http://localhost:8080/graphql',
//     token: '<bearer token>',
//   });
//   await replication.awaitInitialReplication();
//
// The server settles conflicts itself (WorkOrder and ChecklistItem by a
// field-level three-way merge, Site and Note by keeping the server's state)
// and returns, for each push row it did not write exactly as sent, the
// document as it now stands. RxDB's default conflict handler adopts that
// document, which is what a Tidemark client should do, so no custom
// conflictHandler is needed.
//
// Documents carry two fields the server sets: updatedAt on all of them and
// authorId on notes. A client leaves them out when it creates a document and
// sends them back unchanged afterwards; the server ignores them on input.
//
// Live pulls (RxDB 17.6's replicateGraphQL, as read in its source):
//
// - RxDB keeps one graphql-ws client per websocket URL in a JavaScript
//   process and shares it among all replications with that URL, so the four
//   collections of an app use one connection. Each replication adds its own
//   subscription (streamWorkOrders, ...) to it. The connection connects
//   lazily, with the first subscription, and closes when the last
//   replication using it is cancelled (which needs the start() fix below).
// - Every time the socket connects (the first time and after each
//   reconnect), RxDB runs a RESYNC: it pulls over HTTP from its checkpoint,
//   so whatever changed while the socket was down arrives without a
//   reSync() from the app.
// - Each stream event is a pull bulk whose checkpoint RxDB takes as its
//   own; the server makes each event start where the one before ended. The
//   first event of a subscription starts where the server's fan-out stands
//   when the subscription arrives, which it does not acknowledge; a change
//   committed between a client's pull and that moment is skipped by the
//   stream, and once a later event has moved the checkpoint past it, by
//   later pulls too. The window is the few milliseconds after each connect.
// - Close codes: the server closes with 4403 when the token of the
//   connection or of a subscription expires (or connection_init carried a
//   bad one), and with 1013 when it drops a subscriber that fell behind or
//   cannot read changes; on shutdown it closes with 1000. graphql-ws, as
//   RxDB configures it, reconnects after all of these (after 1000 only
//   because subscriptions are still open, and at once); a reconnect
//   authenticates with the replication's current headers (see below) and
//   is followed by the RESYNC above. RxDB itself sets no limit on tries,
//   but graphql-ws gives up after retryAttempts (5 by default) failed
//   reconnects in a row, after which the stream is dead for good, so
//   replicateTidemark retries forever with a capped backoff instead.
// - Auth: RxDB sends no connection_init payload unless pull.includeWsHeaders
//   is set, and then the headers as they were when the replication started
//   ({"headers": {"Authorization": ...}}), never the ones given later with
//   setHeaders(). replicateTidemark instead reads the replication's current
//   Authorization each time it connects, and also puts it in the
//   subscription's `headers` argument (read each time the subscription is
//   sent), so a token refreshed with setHeaders() is used on the next
//   reconnect, and each subscription runs as its own replication's user
//   even on a connection another replication opened.
// - An error message on a subscription (say the server refused its token)
//   ends that replication's live pulls for good: RxDB reports it on error$
//   and does not subscribe again; pushes and reSync() keep working. Refresh
//   tokens before they expire: the server closes the connection at expiry
//   and the reconnect must carry a valid token.
// - Signed-in accounts: replications of several accounts may share a URL
//   (each subscription runs as its own user), but the connection is
//   authenticated with the token of the replication that opened it and is
//   closed when that token expires. Give each account its own wsUrl (any
//   query string will do) to keep them apart.
// - A pull refused with CHECKPOINT_EXPIRED (the server purged deletes newer
//   than the checkpoint, or the caller's sync set changed) starts over from a
//   null checkpoint, keeping unsynced local changes, and drops the local
//   documents the server no longer has: see checkpoint-expired.mjs.
// - replicateTidemark also works around three faults of RxDB 17.6 (see
//   inOrderAfterPushes, guardDispose and the start() wrapper): stream events
//   skipped for good while a resync pushes, an unhandled rejection when a
//   replication is cancelled while its socket reconnects, and a second
//   subscription (and a socket that never closes) after pause() and start().

import { GRAPHQL_WEBSOCKET_BY_URL } from 'rxdb/plugins/replication-graphql';

import { replicateGraphQLWithReset, upstreamIdle } from './checkpoint-expired.mjs';

const idProperty = { type: 'string', maxLength: 128 };
// Set by the server on every accepted write (RFC 3339, microseconds).
const updatedAtProperty = { type: 'string' };

export const siteSchema = {
  title: 'Tidemark Site',
  version: 0,
  primaryKey: 'id',
  type: 'object',
  properties: {
    id: idProperty,
    name: { type: 'string', maxLength: 500 },
    address: { type: 'string', maxLength: 2000 },
    latitude: { type: ['number', 'null'] },
    longitude: { type: ['number', 'null'] },
    updatedAt: updatedAtProperty,
  },
  required: ['id', 'name', 'address'],
};

export const workOrderStatuses = ['OPEN', 'IN_PROGRESS', 'DONE', 'CANCELLED'];

export const workOrderSchema = {
  title: 'Tidemark WorkOrder',
  version: 0,
  primaryKey: 'id',
  type: 'object',
  properties: {
    id: idProperty,
    siteId: { type: 'string', maxLength: 128 },
    title: { type: 'string', maxLength: 500 },
    description: { type: ['string', 'null'] },
    status: { type: 'string', enum: workOrderStatuses },
    priority: { type: 'integer' },
    assigneeId: { type: ['string', 'null'], maxLength: 128 },
    // RFC 3339; the server keeps microseconds and answers in its own
    // spelling (2026-01-02T03:04:05Z for 2026-01-02T03:04:05.000Z).
    dueAt: { type: ['string', 'null'] },
    updatedAt: updatedAtProperty,
  },
  required: ['id', 'siteId', 'title', 'status', 'priority'],
};

export const checklistItemSchema = {
  title: 'Tidemark ChecklistItem',
  version: 0,
  primaryKey: 'id',
  type: 'object',
  properties: {
    id: idProperty,
    workOrderId: { type: 'string', maxLength: 128 },
    label: { type: 'string', maxLength: 1000 },
    done: { type: 'boolean' },
    position: { type: 'integer' },
    updatedAt: updatedAtProperty,
  },
  required: ['id', 'workOrderId', 'label', 'done', 'position'],
};

export const noteSchema = {
  title: 'Tidemark Note',
  version: 0,
  primaryKey: 'id',
  type: 'object',
  properties: {
    id: idProperty,
    workOrderId: { type: 'string', maxLength: 128 },
    body: { type: 'string', maxLength: 20000 },
    // The user who last wrote the note; set by the server.
    authorId: { type: 'string', maxLength: 128 },
    updatedAt: updatedAtProperty,
  },
  required: ['id', 'workOrderId', 'body'],
};

/** The collections to pass to db.addCollections(), by their usual names. */
export const tidemarkCollections = {
  sites: { schema: siteSchema },
  workOrders: { schema: workOrderSchema },
  checklistItems: { schema: checklistItemSchema },
  notes: { schema: noteSchema },
};

/** The GraphQL type that each collection of tidemarkCollections syncs with. */
export const graphqlTypeByCollection = {
  sites: 'Site',
  workOrders: 'WorkOrder',
  checklistItems: 'ChecklistItem',
  notes: 'Note',
};

const schemaByType = {
  Site: siteSchema,
  WorkOrder: workOrderSchema,
  ChecklistItem: checklistItemSchema,
  Note: noteSchema,
};

/** The selection set of a document of the given GraphQL type. */
export function documentFields(type) {
  const schema = schemaByType[type];
  if (!schema) throw new Error(`tidemark: unknown type ${type}`);
  return [...Object.keys(schema.properties), 'deleted'].join(' ');
}

/** The pull query of a type: the changes after a checkpoint ({cursor}, or null for all). */
export function pullQuery(type) {
  return `query Pull${type}s($checkpoint: CheckpointInput, $limit: Int!) {
  pull${type}s(checkpoint: $checkpoint, limit: $limit) {
    documents { ${documentFields(type)} }
    checkpoint { cursor }
  }
}`;
}

/** The push mutation of a type: rows of {assumedMasterState, newDocumentState}. */
export function pushMutation(type) {
  return `mutation Push${type}s($rows: [${type}PushRow!]!) {
  push${type}s(rows: $rows) { ${documentFields(type)} }
}`;
}

/**
 * The stream subscription of a type: live changes, each event shaped like a
 * pull bulk. $headers authenticates this one subscription.
 */
export function streamSubscription(type) {
  return `subscription Stream${type}s($headers: StreamHeaders) {
  stream${type}s(headers: $headers) {
    documents { ${documentFields(type)} }
    checkpoint { cursor }
  }
}`;
}

/**
 * Replicates an RxDB collection with a Tidemark server.
 *
 * options:
 *   url        the GraphQL endpoint, e.g. http://localhost:8080/graphql (required)
 *   token      bearer token; when it expires, give the replication a new one with
 *              replication.setHeaders({ Authorization: `Bearer ${token}` }):
 *              failed requests are retried (every retryTime ms) with it, and
 *              the websocket uses it from its next (re)connect
 *   type       GraphQL type (Site, WorkOrder, ChecklistItem, Note); by default
 *              taken from the collection's name as in tidemarkCollections
 *   batchSize  documents per pull request and rows per push request (server
 *              maximum 1000); default 200
 *   live       keep replicating (default true): local writes are pushed as
 *              they happen and the server's changes arrive over a websocket
 *              as they are committed; with false, sync once and stop
 *   wsUrl      the websocket endpoint of the stream subscriptions; by default
 *              url with ws: for http: (wss: for https:); false to pull only at
 *              start and on replication.reSync()
 *   wsOptions  options for graphql-ws's createClient (retryAttempts,
 *              retryWait, keepAlive, on: {connected, closed, ...}); they apply
 *              to the connection of wsUrl when this replication opens it
 *   pull, push false for a one-way replication, or an object of more RxDB
 *              options for that direction (modifier, responseModifier, ...)
 *   replicationIdentifier  defaults to one per server and type; use a separate
 *              database (or identifier) per signed-in account
 *   checkpointReset  options of replicateGraphQLWithReset (checkpoint-expired.mjs):
 *              onReset, pushWait, dropMissing
 *   any other option (retryTime, waitForLeadership, autoStart, fetch, ...) is
 *   passed to RxDB's replicateGraphQL.
 */
export function replicateTidemark(collection, options) {
  const {
    url,
    token,
    type = graphqlTypeByCollection[collection.name],
    batchSize = 200,
    pull = true,
    push = true,
    live = true,
    headers = {},
    wsUrl = websocketUrl(url),
    wsOptions = {},
    replicationIdentifier,
    checkpointReset = {},
    ...rest
  } = options;
  if (!url) throw new Error('tidemark: url is required');
  if (!(batchSize >= 1 && batchSize <= 1000)) {
    throw new Error(`tidemark: batchSize must be 1..1000 (the server's limit), got ${batchSize}`);
  }
  if (!schemaByType[type]) {
    throw new Error(`tidemark: no GraphQL type for collection ${collection.name}; pass options.type`);
  }
  const pullText = pullQuery(type);
  const pushText = pushMutation(type);
  const streamText = streamSubscription(type);
  const streaming = Boolean(pull && live && wsUrl);

  let replication;
  const pullOptions = typeof pull === 'object' ? pull : {};
  const afterPushes = inOrderAfterPushes(() => replication);
  // Read at every (re)connect and every (re)subscribe rather than once, so
  // that a token given with setHeaders() is the one the websocket sends.
  const authorization = () => headerValue(replication?.clientState.headers, 'Authorization');

  replication = replicateGraphQLWithReset({
    collection,
    url: streaming ? { http: url, ws: wsUrl } : { http: url },
    headers: token ? { ...headers, Authorization: `Bearer ${token}` } : headers,
    replicationIdentifier: replicationIdentifier ?? `tidemark-${type}-${url}`,
    // Tidemark's tombstone field; RxDB maps it to and from _deleted.
    deletedField: 'deleted',
    live,
    pull: pull && {
      ...pullOptions,
      // The plugin asks for batchSize documents and the replication takes a
      // shorter page as the end; both read this one number. Always set it:
      // left unset, the two use different defaults (20 and 100) and every
      // pull stops after the first page.
      batchSize,
      queryBuilder: (checkpoint, limit) => ({
        query: pullText,
        operationName: `Pull${type}s`,
        variables: { checkpoint: checkpoint ? { cursor: checkpoint.cursor } : null, limit },
      }),
      // The response is already {documents, checkpoint: {cursor}}, and so
      // is each stream event: nothing to reshape.
      dataPath: ['data', `pull${type}s`],
      ...(streaming && {
        responseModifier: async (data, origin, checkpoint) => {
          if (origin === 'stream') await afterPushes();
          return pullOptions.responseModifier ? pullOptions.responseModifier(data, origin, checkpoint) : data;
        },
        // graphql-ws serializes this payload each time it (re)subscribes,
        // so the getter hands the server the current token every time.
        streamQueryBuilder: () => ({
          query: streamText,
          operationName: `Stream${type}s`,
          variables: {
            get headers() {
              const value = authorization();
              return value ? { Authorization: value } : null;
            },
          },
        }),
        wsOptions: {
          connectionParams: () => {
            const value = authorization();
            return value ? { headers: { Authorization: value } } : {};
          },
          // RxDB retries on every close, but graphql-ws stops after
          // retryAttempts failures in a row and then ends the stream.
          retryAttempts: Infinity,
          retryWait: reconnectBackoff,
          ...wsOptions,
        },
      }),
    },
    push: push && {
      ...(typeof push === 'object' && push),
      batchSize,
      // Rows hold exactly the schema's fields plus `deleted`; RxDB strips its
      // own _meta, _rev and _attachments before they get here.
      queryBuilder: (rows) => ({
        query: pushText,
        operationName: `Push${type}s`,
        variables: { rows },
      }),
      dataPath: ['data', `push${type}s`],
    },
    ...rest,
  }, checkpointReset);

  if (streaming) {
    // RxDB's GraphQL start() subscribes and takes a reference on the shared
    // websocket every time it runs, and cancel() gives back only one. So a
    // start() after pause() would add a second subscription and keep the
    // socket open after cancel(). After the first start, resume as the base
    // replication does: unpause and reSync().
    const startWithStream = replication.start;
    const resume = Object.getPrototypeOf(replication).start;
    let subscribed = false;
    replication.start = () => {
      if (subscribed) return resume.call(replication);
      subscribed = true;
      const started = startWithStream();
      guardDispose(wsUrl);
      return started;
    };
  }
  return replication;
}

/**
 * Returns a function that resolves, in the order of its calls, once the
 * replication has no push under way.
 *
 * RxDB 17.6 holds stream events back while a push of a local write is under
 * way, but not while it pushes in its "initial sync" of the upstream, which
 * is also how it pushes after start() and after every resync (reconnect,
 * resume, reSync()). An event that comes in then, holding a document whose
 * local edit is being pushed, is skipped (RxDB counts on the push to
 * conflict), yet its checkpoint is taken. When the push was written before
 * the event's change (another client's later edit, merged by the server),
 * it does not conflict, and the client keeps its own version for good.
 * Holding each stream event until the pushes are done closes that window;
 * the events stay in order.
 */
function inOrderAfterPushes(getReplication) {
  let last = Promise.resolve();
  return () => {
    const next = last.then(() => upstreamIdle(getReplication()));
    last = next.catch(() => {});
    return next;
  };
}

const guarded = new WeakSet();

/**
 * RxDB disposes of the websocket client when the last replication using it
 * is cancelled, without handling the promise dispose() returns. That promise
 * rejects when a connection attempt is under way and then fails (say the
 * server is down, or refuses the token), which in Node is an unhandled
 * rejection and ends the process. Nothing is left to do with that failure.
 */
function guardDispose(wsUrl) {
  const client = GRAPHQL_WEBSOCKET_BY_URL.get(wsUrl)?.socket;
  if (!client || guarded.has(client)) return;
  guarded.add(client);
  const dispose = client.dispose.bind(client);
  client.dispose = () => Promise.resolve(dispose()).catch(() => {});
}

/** ws: for http:, wss: for https:, keeping host, port, path and query. */
export function websocketUrl(httpUrl) {
  if (!httpUrl) return undefined;
  const u = new URL(httpUrl);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  return u.toString();
}

function headerValue(headers, name) {
  if (!headers) return undefined;
  const key = Object.keys(headers).find((k) => k.toLowerCase() === name.toLowerCase());
  return key === undefined ? undefined : headers[key];
}

/**
 * Waits before reconnect number `retries` (0 for the first): doubling from
 * half a second up to half a minute, with jitter so that clients dropped
 * together do not all come back at once.
 */
export async function reconnectBackoff(retries) {
  const ceiling = Math.min(500 * 2 ** retries, 30_000);
  await new Promise((resolve) => setTimeout(resolve, ceiling / 2 + Math.random() * (ceiling / 2)));
}
