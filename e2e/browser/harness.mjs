// Shared helpers of the browser tests: Debian's Chromium through
// playwright-core, and the Tidemark that browser_test.go started for this
// file (a dev-mode server on a fresh database, at TIDEMARK_URL).
//
// A new test file needs only these two:
//
//   import { launchChromium, tidemark } from './harness.mjs';
//   const browser = await launchChromium();          // t.after(() => browser.close())
//   const page = await (await browser.newContext()).newPage();
//   await page.goto(tidemark.url + '/');             // the Playground, /demo, ...
//
// and the rest is optional (devices of the demo app, the dev identities,
// GraphQL calls, screenshots into docs/img/).
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const chromiumPath = process.env.TIDEMARK_CHROMIUM ?? '/usr/bin/chromium';

/**
 * The Tidemark under test. url is its base (http://127.0.0.1:PORT); it
 * runs in dev mode, so it serves /demo and hands out dev identities.
 */
export const tidemark = {
  url: requiredEnv('TIDEMARK_URL').replace(/\/$/, ''),
  get graphqlUrl() { return `${this.url}/graphql`; },
};

/** Launches Debian's Chromium, headless. Close it when the test ends. */
export function launchChromium(options = {}) {
  return chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    ...options,
  });
}

/**
 * A browser context logs its console errors and page errors to the test's
 * output, so a failing test says what the page said.
 */
export function logPage(page, name) {
  page.on('console', (msg) => {
    if (msg.text().includes('RxDB Open Core RxStorage')) return; // RxDB's notice of its premium storages
    if (msg.type() === 'error' || msg.type() === 'warning') console.log(`[${name} console.${msg.type()}] ${msg.text()}`);
  });
  page.on('pageerror', (err) => console.log(`[${name} pageerror] ${err.stack ?? err}`));
}

/** The dev identities (GET /demo/identities), by user id. */
export async function devIdentities() {
  const res = await fetch(`${tidemark.url}/demo/identities`);
  if (!res.ok) throw new Error(`GET /demo/identities: ${res.status} ${await res.text()}`);
  const { identities } = await res.json();
  return Object.fromEntries(identities.map((i) => [i.user, i]));
}

/** Runs a GraphQL operation with a bearer token; throws on errors. */
export async function graphql(token, query, variables = {}) {
  const res = await fetch(tidemark.graphqlUrl, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = await res.json();
  if (body.errors?.length) throw new Error(`GraphQL: ${JSON.stringify(body.errors)}`);
  return body.data;
}

/**
 * Opens the demo app as one device: a browser context of its own (its own
 * IndexedDB), signed in as the dev identity `as`. Resolves once the app has
 * opened its database and is live (its stream acknowledged).
 */
export async function openDevice(browser, as, { name = as, viewport = { width: 1100, height: 820 } } = {}) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  logPage(page, name);
  await page.goto(`${tidemark.url}/demo/?as=${encodeURIComponent(as)}`);
  await page.waitForSelector('body[data-ready="true"]');
  await page.waitForSelector('body[data-stream="live"]');
  return {
    name, context, page,
    /** The card of one work order. */
    order: (id) => page.locator(`[data-testid="work-order"][data-id="${id}"]`),
    /** Offline as a device is: no network, and the app's switch off. */
    async goOffline() {
      await context.setOffline(true);
      await page.locator('[data-testid="online-switch"]').setChecked(false);
      await page.waitForSelector('body[data-stream="off"]');
    },
    async goOnline() {
      await context.setOffline(false);
      await page.locator('[data-testid="online-switch"]').setChecked(true);
      await page.waitForSelector('body[data-stream="live"]');
    },
    /** Waits until every local write is pushed. */
    async synced() {
      await page.waitForSelector('body[data-pending="0"]');
    },
    async pending() {
      return Number(await page.locator('body').getAttribute('data-pending'));
    },
  };
}

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * Saves a screenshot as docs/img/NAME.png, only when TIDEMARK_SCREENSHOTS=1
 * (so that CI's runs leave the committed pictures alone).
 */
export async function screenshot(page, name) {
  if (process.env.TIDEMARK_SCREENSHOTS !== '1') return;
  const path = join(repoRoot, 'docs', 'img', `${name}.png`);
  await mkdir(dirname(path), { recursive: true });
  await page.screenshot({ path, fullPage: false });
  console.log(`screenshot: ${path}`);
}

function requiredEnv(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through \`go test ./e2e/ -run TestBrowser\` (see README.md here)`);
  return value;
}
