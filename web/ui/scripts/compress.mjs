// Writes a gzip copy (`<file>.gz`, best compression) next to every compressible file of the
// build, for the node to serve to browsers that accept gzip. Usage: node scripts/compress.mjs dist
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { constants, gzipSync } from 'node:zlib';

/** Files smaller than this are served as they are (gzip would not pay for itself). */
const MIN_BYTES = 1024;
const COMPRESSIBLE = /\.(html|js|mjs|css|svg|json|txt|map|ttf|wasm)$/;

function walk(dir) {
  let raw = 0;
  let gz = 0;
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      const [r, g] = walk(path);
      raw += r;
      gz += g;
      continue;
    }
    if (!COMPRESSIBLE.test(name)) continue;
    const data = readFileSync(path);
    if (data.length < MIN_BYTES) continue;
    const packed = gzipSync(data, { level: constants.Z_BEST_COMPRESSION });
    if (packed.length >= data.length) continue;
    writeFileSync(`${path}.gz`, packed);
    raw += data.length;
    gz += packed.length;
  }
  return [raw, gz];
}

const dir = process.argv[2] ?? 'dist';
const [raw, gz] = walk(dir);
console.log(`compressed ${(raw / 1024).toFixed(0)} KiB to ${(gz / 1024).toFixed(0)} KiB (gzip)`);
