// Build the static site into dist/: the page, its modules, onnxruntime-web's wasm assets (so it works offline)
// and models.json from ../exported. Usage: npm run build [-- --exported DIR --out DIR]
import { cpSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeModels } from './models.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const dist = resolve(arg('--out', join(root, 'dist')));
const ortDist = join(root, 'node_modules', 'onnxruntime-web', 'dist');
// The wasm-only build: the ES module, its emscripten loader and the SIMD (+ threads when isolated) binary.
export const ORT_ASSETS = ['ort.wasm.min.mjs', 'ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm'];

if (!existsSync(ortDist)) {
  console.error('node_modules/onnxruntime-web is missing: run `npm ci` in web_demo/ first');
  process.exit(2);
}
rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, 'ort'), { recursive: true });
cpSync(join(root, 'index.html'), join(dist, 'index.html'));
cpSync(join(root, 'src'), join(dist, 'src'), { recursive: true });
for (const f of ORT_ASSETS) cpSync(join(ortDist, f), join(dist, 'ort', f));
const exportedDir = resolve(arg('--exported', join(root, '..', 'exported')));
const listing = writeModels(exportedDir, dist);
console.log(`built ${dist}: ${listing.length} style model(s) from ${exportedDir}`);
