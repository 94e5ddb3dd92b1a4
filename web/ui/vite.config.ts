// Vite build of the Chorus pages: one HTML entry (the node serves it for `/` and `/d/*`),
// hashed assets under /assets/ (served with a long immutable cache), Monaco's editor worker as
// an ES module worker.
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
});
