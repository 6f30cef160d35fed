import { defineConfig } from 'vite';

// The server (server/playground.go) serves dist/index.html at / and the
// rest of dist/ under /playground/, from the binary (web/playground/embed.go).
export default defineConfig({
  base: '/playground/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // Hashed names only: the server caches assets for a year.
    assetsDir: 'assets',
    chunkSizeWarningLimit: 4096,
  },
});
