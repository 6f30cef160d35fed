// Hosts RxDB clients of a running Tidemark for a Go test that drives them
// step by step (rules_test.go): the Go side writes commands to stdin, one
// JSON object a line ({seq, op, client, ...}), and reads one answer line
// per command ({seq, result} or {seq, error}) on file descriptor 3, so that
// whatever RxDB or Node print on stdout and stderr (the test log) cannot
// garble the answers. Each client is an RxDB database of its own, with
// the four collections replicated live (pull, push and stream) by
// replicateTidemark, as openClient in test/helpers.mjs sets them up.
//
// Closing stdin closes every client and ends the process.

import { createWriteStream } from 'node:fs';
import { createInterface } from 'node:readline';

import { describeError, openClient } from './test/helpers.mjs';

const answers = createWriteStream(null, { fd: 3 });
const clients = new Map();

function client(name) {
  const c = clients.get(name);
  if (!c) throw new Error(`no client ${name}`);
  return c;
}

async function doc(c, collection, id) {
  const d = await client(c).db[collection].findOne(id).exec();
  if (!d) throw new Error(`${c}: no ${collection} ${id}`);
  return d;
}

const ops = {
  /** Opens a client: {client, token, stream?, checkpointReset?: {dropMissing}}. */
  async open({ client: name, token, stream = true, checkpointReset = {} }) {
    if (clients.has(name)) throw new Error(`client ${name} is already open`);
    clients.set(name, await openClient(name, token, { stream, checkpointReset }));
  },
  /** Writes new documents: {collection, docs}. */
  async insert({ client: c, collection, docs }) {
    const res = await client(c).db[collection].bulkInsert(docs);
    if (res.error.length > 0) throw new Error(`insert: ${JSON.stringify(res.error)}`);
  },
  /** Changes fields of one document: {collection, id, patch}. */
  async patch({ client: c, collection, id, patch }) {
    await (await doc(c, collection, id)).incrementalPatch(patch);
  },
  /** Deletes one document: {collection, id}. */
  async remove({ client: c, collection, id }) {
    await (await doc(c, collection, id)).incrementalRemove();
  },
  /** Stops replicating; local writes queue up. */
  async offline({ client: c }) {
    await client(c).goOffline();
  },
  async online({ client: c }) {
    await client(c).goOnline();
  },
  /** Pushes what is pending, then pulls until nothing is new. */
  async sync({ client: c }) {
    await client(c).sync();
  },
  /** Waits until every stream of the client delivers changes. */
  async awaitLive({ client: c }) {
    await client(c).awaitLive();
  },
  /**
   * The client's local state: its documents by collection (deleted ones
   * left out), and what its replications reported: conflicts (the push's
   * returned documents), errors and resyncs after CHECKPOINT_EXPIRED.
   */
  async state({ client: c }) {
    const cl = client(c);
    return {
      documents: await cl.snapshot(),
      conflicts: cl.conflicts.map(({ collection, input }) => {
        // RxDB's shape of the returned document; the server's says deleted.
        const { _deleted, ...fields } = input.realMasterState;
        return { collection, returned: { ...fields, deleted: _deleted } };
      }),
      errors: cl.errors.map((err) => ({
        message: describeError(err),
        codes: (err?.parameters?.errors ?? []).map((e) => e?.extensions?.code ?? null),
      })),
      resets: cl.resets,
    };
  },
  /**
   * Local documents by id, deleted ones included: {collection, ids} →
   * {id: {deleted, doc}}, absent ids left out.
   */
  async local({ client: c, collection, ids }) {
    const found = await client(c).db[collection].storageInstance.findDocumentsById(ids, true);
    const out = {};
    for (const d of found) {
      const { _deleted, _meta, _rev, _attachments, ...fields } = d;
      out[d.id] = { deleted: _deleted, doc: fields };
    }
    return out;
  },
  async close({ client: c }) {
    await client(c).close();
    clients.delete(c);
  },
};

function answer(msg) {
  answers.write(JSON.stringify(msg) + '\n');
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
let queue = Promise.resolve();
lines.on('line', (line) => {
  // One command at a time, in order: the Go side waits for each answer.
  queue = queue.then(async () => {
    let cmd;
    try {
      cmd = JSON.parse(line);
      const op = ops[cmd.op];
      if (!op) throw new Error(`unknown op ${cmd.op}`);
      const result = await op(cmd);
      answer({ seq: cmd.seq, result: result ?? null });
    } catch (err) {
      answer({ seq: cmd?.seq ?? null, error: describeError(err) });
    }
  });
});
lines.on('close', () => {
  queue = queue.then(async () => {
    await Promise.allSettled([...clients.values()].map((c) => c.close()));
    answers.end(() => process.exit(0));
  });
});
