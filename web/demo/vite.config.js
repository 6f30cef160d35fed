// Builds the demo app into dist/, which web/demo/embed.go embeds in the
// tidemark binary (served at /demo). Rebuild after any change here, in
// src/ or in e2e/tidemark-rxdb.mjs (whose replication setup the app uses):
//
//   npm --prefix web/demo ci && npm --prefix web/demo run build
//
// CI rebuilds and fails when dist/ differs from what is committed.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));

export default defineConfig({
  base: '/demo/',
  resolve: {
    alias: {
      // The RxDB client setup of the end-to-end tests and docs/sync-protocol.md,
      // so the demo syncs exactly as the tested recipe does.
      '@tidemark/rxdb': here('../../e2e/tidemark-rxdb.mjs'),
      // RxDB imports `ws` for Node; a browser has its own WebSocket.
      ws: here('src/ws-browser.js'),
    },
    // e2e/*.mjs import rxdb too: resolve it from here, one copy.
    dedupe: ['rxdb', 'rxjs', 'graphql-ws'],
  },
  server: { fs: { allow: ['../..'] } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // Reproducible output, so CI can compare a rebuild with dist/.
    sourcemap: false,
    chunkSizeWarningLimit: 2000,
  },
});
