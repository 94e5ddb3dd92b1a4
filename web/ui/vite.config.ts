// Vite build of the Chorus pages: one HTML entry (the node serves it for `/` and `/d/*`),
// hashed assets under /assets/ (served with a long immutable cache), Monaco's editor worker as
// an ES module worker. `npm run dev` serves the pages with hot reload and forwards `/ws` to a
// node on 127.0.0.1:8080 (CHORUS_NODE overrides).
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    target: 'es2022',
    sourcemap: false,
    // Monaco is big by nature; the editor chunk is loaded only on /d/ pages.
    chunkSizeWarningLimit: 4096,
    reportCompressedSize: false,
  },
  worker: { format: 'es' },
  server: {
    proxy: {
      '/ws': { target: process.env.CHORUS_NODE ?? 'http://127.0.0.1:8080', ws: true },
    },
  },
});
