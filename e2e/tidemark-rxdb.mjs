// A complete RxDB client setup for Tidemark: the schemas of the four synced
// collections and replicateTidemark(), which replicates one RxDB collection
// with the server's pull/push GraphQL API.
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

import { replicateGraphQL } from 'rxdb/plugins/replication-graphql';

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
 * Replicates an RxDB collection with a Tidemark server.
 *
 * options:
 *   url        the GraphQL endpoint, e.g. http://localhost:8080/graphql (required)
 *   token      bearer token; when it expires, give the replication a new one with
 *              replication.setHeaders({ Authorization: `Bearer ${token}` });
 *              failed requests are retried (every retryTime ms) with it
 *   type       GraphQL type (Site, WorkOrder, ChecklistItem, Note); by default
 *              taken from the collection's name as in tidemarkCollections
 *   batchSize  documents per pull request and rows per push request (server
 *              maximum 1000); default 200
 *   live       keep pushing local writes as they happen (default true); pulls
 *              happen at start and on replication.reSync()
 *   pull, push set to false for a one-way replication
 *   replicationIdentifier  defaults to one per server and type; use a separate
 *              database (or identifier) per signed-in account
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
    headers = {},
    replicationIdentifier,
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
  return replicateGraphQL({
    collection,
    url: { http: url },
    headers: token ? { ...headers, Authorization: `Bearer ${token}` } : headers,
    replicationIdentifier: replicationIdentifier ?? `tidemark-${type}-${url}`,
    // Tidemark's tombstone field; RxDB maps it to and from _deleted.
    deletedField: 'deleted',
    pull: pull && {
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
      // The response is already {documents, checkpoint: {cursor}}.
      dataPath: ['data', `pull${type}s`],
    },
    push: push && {
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
  });
}
