// Tidemark's demo app: a technician's work orders, kept in RxDB in the
// browser (IndexedDB through the free Dexie.js storage) and replicated with
// Tidemark's pull, push and stream by the same setup as the end-to-end
// tests and the guide (e2e/tidemark-rxdb.mjs). Every edit is written
// locally first; the replication pushes it when the app is online, and the
// server's answer to a conflicting push (a merge, its own version, or a
// removal) is adopted and listed under "Conflicts resolved".
//
// Elements the browser tests read carry data-testid attributes; the page
// also sets data-* state on <body> (data-ready, data-stream, data-pending).
import './style.css';
import { createRxDatabase, defaultConflictHandler } from 'rxdb';
import { getRxStorageDexie } from 'rxdb/plugins/storage-dexie';
import { combineLatest } from 'rxjs';
import { tidemarkCollections, replicateTidemark, workOrderStatuses } from '@tidemark/rxdb';
import { seedIfEmpty } from './seed.js';

const graphqlUrl = new URL('/graphql', location.href).toString();
const $ = (id) => document.getElementById(id);

const app = {
  identities: [], // from GET /demo/identities (dev mode)
  identity: null, // {user, name, role, token}
  db: null,
  replications: [],
  online: true,
  pending: new Map(), // "collection/id" -> sequence number of the local write
  writeSeq: 0,
  conflicts: [],
  subscriptions: [],
  generation: 0, // bumps on every identity switch; stale async work checks it
};

// ---- start-up -------------------------------------------------------------

async function start() {
  const params = new URLSearchParams(location.search);
  const res = await fetch('identities', { headers: { Accept: 'application/json' } });
  if (res.ok) {
    app.identities = (await res.json()).identities;
    const wanted = params.get('as') ?? localStorage.getItem('tidemark-demo-identity');
    const identity = app.identities.find((i) => i.user === wanted) ?? app.identities[0];
    const dispatcher = app.identities.find((i) => i.role === 'dispatcher');
    if (dispatcher) await seedIfEmpty(graphqlAs(dispatcher.token));
    renderIdentityPicker();
    await openAs(identity);
  } else {
    // Not dev mode: sync as the holder of a pasted token.
    $('identity').hidden = true;
    $('token-form').hidden = false;
    $('token-input-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      const token = $('token-input').value.trim().replace(/^Bearer\s+/i, '');
      if (token) await openAs({ user: 'token', name: 'pasted token', role: '', token });
    });
  }
  $('online').addEventListener('change', (e) => setOnline(e.target.checked));
}

function renderIdentityPicker() {
  const select = $('identity');
  select.replaceChildren(...app.identities.map((i) => new Option(i.name, i.user)));
  select.addEventListener('change', () => {
    const identity = app.identities.find((i) => i.user === select.value);
    localStorage.setItem('tidemark-demo-identity', identity.user);
    openAs(identity);
  });
}

function graphqlAs(token) {
  return async (query, variables) => {
    const res = await fetch(graphqlUrl, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
      body: JSON.stringify({ query, variables }),
    });
    const body = await res.json();
    if (body.errors?.length) throw new Error(body.errors.map((e) => `${e.extensions?.code}: ${e.message}`).join('; '));
    return body.data;
  };
}

// ---- the local database, one per identity -----------------------------------

async function openAs(identity) {
  const generation = ++app.generation;
  document.body.dataset.ready = 'false';
  await closeDatabase();
  app.identity = identity;
  app.pending.clear();
  app.conflicts = [];
  renderConflicts();
  $('identity').value = identity.user;
  $('orders-title').textContent = identity.role === 'technician' ? `${identity.name.split(' ')[0]}'s work orders` : 'All work orders';

  // A database per identity: each account keeps its own documents and
  // checkpoints, as a device shared by two users would.
  const db = await createRxDatabase({
    name: `tidemark-demo-${identity.user}`.toLowerCase().replace(/[^a-z0-9-]/g, '-'),
    storage: getRxStorageDexie(),
    multiInstance: true,
    closeDuplicates: true,
  });
  const collections = {};
  for (const [name, def] of Object.entries(tidemarkCollections)) {
    collections[name] = { ...def, conflictHandler: recordingConflictHandler(name) };
  }
  await db.addCollections(collections);
  if (generation !== app.generation) {
    await db.close();
    return;
  }
  app.db = db;
  watchDatabase(db);
  if (app.online) startReplications();
  document.body.dataset.ready = 'true';
}

async function closeDatabase() {
  await stopReplications();
  for (const s of app.subscriptions) s.unsubscribe();
  app.subscriptions = [];
  if (app.db) {
    const db = app.db;
    app.db = null;
    await db.close();
  }
}

// ---- replication ------------------------------------------------------------

function startReplications() {
  const { db, identity } = app;
  if (!db || app.replications.length) return;
  setStream('connecting');
  // One websocket per account (RxDB shares one per URL in a page).
  const wsUrl = `${graphqlUrl.replace(/^http/, 'ws')}?as=${encodeURIComponent(identity.user)}`;
  const on = {
    connecting: () => setStream('connecting'),
    connected: () => setStream('live'),
    closed: (event) => setStream(app.online ? `reconnecting (closed ${event?.code ?? ''})` : 'off'),
  };
  for (const name of Object.keys(tidemarkCollections)) {
    const replication = replicateTidemark(db[name], {
      url: graphqlUrl,
      token: identity.token,
      wsUrl,
      wsOptions: { on },
      replicationIdentifier: `tidemark-demo-${identity.user}-${name}`,
      retryTime: 1000,
    });
    replication.received$.subscribe(() => touchLastSync());
    replication.sent$.subscribe(() => touchLastSync());
    replication.error$.subscribe((err) => console.warn(`sync ${name}:`, err?.parameters?.errors ?? err));
    app.replications.push(replication);
  }
  settlePending();
}

async function stopReplications() {
  const replications = app.replications;
  app.replications = [];
  await Promise.all(replications.map((r) => r.cancel()));
  setStream('off');
}

function setOnline(online) {
  app.online = online;
  $('online').checked = online;
  $('online-label').textContent = online ? 'Online' : 'Offline';
  $('status-network').textContent = online ? 'online' : 'offline (edits stay on this device)';
  document.body.classList.toggle('offline', !online);
  if (online) startReplications();
  else stopReplications();
}

// Pushes are pending from a local write until the replications are in
// sync after it (awaitInSync waits for the push, and for what it brought).
async function settlePending() {
  const upTo = app.writeSeq;
  const replications = app.replications;
  if (!replications.length) return renderPending();
  try {
    await Promise.all(replications.map((r) => r.awaitInSync()));
  } catch {
    return; // cancelled: went offline or switched identity
  }
  if (replications !== app.replications && !app.replications.length) return;
  for (const [key, seq] of app.pending) if (seq <= upTo) app.pending.delete(key);
  touchLastSync();
  renderPending();
}

async function localWrite(collection, id, write) {
  app.pending.set(`${collection}/${id}`, ++app.writeSeq);
  renderPending();
  await write();
  settlePending();
}

function setStream(state) {
  $('status-stream').textContent = state;
  document.body.dataset.stream = state.split(' ')[0];
}

function touchLastSync() {
  $('status-last').textContent = new Date().toLocaleTimeString();
}

function renderPending() {
  $('status-pending').textContent = String(app.pending.size);
  document.body.dataset.pending = String(app.pending.size);
}

// ---- conflicts --------------------------------------------------------------

const serverOwned = new Set(['updatedAt', 'authorId', '_meta', '_rev', '_attachments', '_deleted']);

/**
 * RxDB's default resolution (adopt the server's document: Tidemark has
 * already merged), recording what happened to the local edit.
 */
function recordingConflictHandler(collection) {
  return {
    isEqual: defaultConflictHandler.isEqual,
    async resolve({ assumedMasterState: assumed, realMasterState: master, newDocumentState: mine }) {
      recordConflict(collection, assumed, master, mine);
      return master;
    },
  };
}

function fieldsOf(doc) {
  return Object.keys(doc ?? {}).filter((k) => !serverOwned.has(k));
}

function recordConflict(collection, assumed, master, mine) {
  const differs = (x, y, k) => JSON.stringify(x?.[k] ?? null) !== JSON.stringify(y?.[k] ?? null);
  const keys = [...new Set([...fieldsOf(mine), ...fieldsOf(master)])].filter((k) => k !== 'id');
  const changedHere = keys.filter((k) => (assumed ? differs(assumed, mine, k) : differs(master, mine, k)));
  const kept = changedHere.filter((k) => !differs(master, mine, k));
  const lost = changedHere.filter((k) => differs(master, mine, k));
  const fromServer = assumed ? keys.filter((k) => differs(assumed, master, k) && !changedHere.includes(k)) : [];
  const label = mine.title ?? mine.label ?? mine.name ?? mine.body ?? mine.id;
  let kind;
  let text;
  if (master._deleted && !mine._deleted) {
    kind = 'removed';
    text = `“${label}” left your set on the server (reassigned or deleted): your edit was not written and it is gone from this device.`;
  } else if (lost.length === 0) {
    kind = 'merged';
    text = `“${label}”: merged. Kept yours: ${show(kept, mine)}` + (fromServer.length ? `; from the server: ${show(fromServer, master)}.` : '.');
  } else {
    kind = 'server-kept';
    text = `“${label}”: changed on the server meanwhile, the server's version stands: ${show(lost, master)} (yours: ${show(lost, mine)} was not written).`;
  }
  app.conflicts.unshift({ collection, id: mine.id, kind, text, at: new Date() });
  renderConflicts();
}

function show(keys, doc) {
  return keys.length ? keys.map((k) => `${k} ${JSON.stringify(doc[k])}`).join(', ') : 'nothing';
}

function renderConflicts() {
  const list = $('conflicts');
  if (!app.conflicts.length) {
    list.replaceChildren(el('li', { class: 'none' }, 'none yet'));
    return;
  }
  list.replaceChildren(...app.conflicts.map((c) => el('li', {
    'data-testid': 'conflict', 'data-kind': c.kind, 'data-id': c.id, class: c.kind,
  }, `${c.at.toLocaleTimeString()} ${c.text}`)));
}

// ---- the work-order list ----------------------------------------------------

function watchDatabase(db) {
  // Sorted here: the Dexie storage sorts only by indexed fields.
  const by = (...keys) => (a, b) => {
    for (const k of keys) if (a[k] !== b[k]) return a[k] < b[k] ? -1 : 1;
    return 0;
  };
  const sub = combineLatest([
    db.workOrders.find().$, db.checklistItems.find().$, db.notes.find().$, db.sites.find().$,
  ]).subscribe(([orders, items, notes, sites]) => renderOrders(
    [...orders].sort(by('priority', 'id')), [...items].sort(by('position', 'id')), [...notes].sort(by('updatedAt', 'id')), sites));
  app.subscriptions.push(sub);
}

function renderOrders(orders, items, notes, sites) {
  const list = $('orders');
  // Keep what the user is typing across re-renders.
  const drafts = new Map([...list.querySelectorAll('input.note-input')].map((i) => [i.dataset.workOrder, i.value]));
  const focused = document.activeElement?.dataset?.workOrder;
  const siteName = new Map(sites.map((s) => [s.id, s.name]));
  $('orders-empty').hidden = orders.length > 0;
  list.replaceChildren(...orders.map((wo) => {
    const card = el('li', { class: `order status-${wo.status}`, 'data-testid': 'work-order', 'data-id': wo.id });
    card.append(
      el('h3', {}, wo.title),
      el('p', { class: 'meta' }, `${siteName.get(wo.siteId) ?? wo.siteId} · assigned to ${wo.assigneeId ?? 'nobody'}`),
    );
    if (wo.description) card.append(el('p', { class: 'description' }, wo.description));

    const status = el('select', { 'data-testid': 'status' }, ...workOrderStatuses.map((s) => new Option(s.replace('_', ' ').toLowerCase(), s)));
    status.value = wo.status;
    status.addEventListener('change', () => localWrite('workOrders', wo.id, () => wo.incrementalPatch({ status: status.value })));
    const priority = el('select', { 'data-testid': 'priority' }, ...[1, 2, 3, 4, 5].map((p) => new Option(`P${p}`, String(p))));
    priority.value = String(wo.priority);
    priority.addEventListener('change', () => localWrite('workOrders', wo.id, () => wo.incrementalPatch({ priority: Number(priority.value) })));
    card.append(el('div', { class: 'fields' }, el('label', {}, 'Status ', status), el('label', {}, 'Priority ', priority)));

    const checklist = el('ul', { class: 'checklist' });
    for (const item of items.filter((i) => i.workOrderId === wo.id)) {
      const box = el('input', { type: 'checkbox', 'data-testid': 'check', 'data-id': item.id });
      box.checked = item.done;
      box.addEventListener('change', () => localWrite('checklistItems', item.id, () => item.incrementalPatch({ done: box.checked })));
      checklist.append(el('li', { class: item.done ? 'done' : '' }, el('label', {}, box, ' ', item.label)));
    }
    card.append(checklist);

    const noteList = el('ul', { class: 'notes' });
    for (const note of notes.filter((n) => n.workOrderId === wo.id)) {
      noteList.append(el('li', { 'data-testid': 'note' }, note.body, el('span', { class: 'author' }, ` — ${note.authorId ?? 'you (not synced yet)'}`)));
    }
    const input = el('input', { class: 'note-input', placeholder: 'Add a note…', 'data-testid': 'note-input', 'data-work-order': wo.id, maxlength: '2000' });
    input.value = drafts.get(wo.id) ?? '';
    const form = el('form', { class: 'note-form' }, input, el('button', { 'data-testid': 'add-note' }, 'Add'));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const body = input.value.trim();
      if (!body) return;
      input.value = '';
      const id = crypto.randomUUID();
      localWrite('notes', id, () => app.db.notes.insert({ id, workOrderId: wo.id, body }));
    });
    card.append(noteList, form);
    return card;
  }));
  if (focused) list.querySelector(`input.note-input[data-work-order="${CSS.escape(focused)}"]`)?.focus();
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.append(...children);
  return node;
}

start().catch((err) => {
  console.error(err);
  document.body.dataset.error = String(err?.message ?? err);
  $('orders-empty').hidden = false;
  $('orders-empty').textContent = `The demo could not start: ${err?.message ?? err}`;
});
