// List exported ONNX styles for the page: copies exported/<style>/<file>.onnx (+ its .contract.json) into
// <out>/models/<style>/ and writes <out>/models.json. Usage: node scripts/models.mjs [--exported DIR] [--out DIR]
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

export function listModels(exportedDir) {
  const models = [];
  if (!existsSync(exportedDir)) return models;
  for (const style of readdirSync(exportedDir).sort()) {
    const dir = join(exportedDir, style);
    if (!statSync(dir).isDirectory()) continue;
    for (const file of readdirSync(dir).sort()) {
      if (!file.endsWith('.onnx')) continue;
      const contractFile = join(dir, `${file}.contract.json`);
      if (!existsSync(contractFile)) {
        console.warn(`skipping ${join(dir, file)}: no ${file}.contract.json beside it (re-export it)`);
        continue;
      }
      const contract = JSON.parse(readFileSync(contractFile, 'utf8'));
      models.push({ style: contract.style, precision: contract.precision, src: join(dir, file), contractFile,
        file: `models/${style}/${file}`, bytes: statSync(join(dir, file)).size, contract });
    }
  }
  // fp32 first: the picker's default is the reference-quality artifact.
  const rank = { fp32: 0, fp16: 1, int8: 2 };
  return models.sort((a, b) => a.style.localeCompare(b.style) || (rank[a.precision] ?? 9) - (rank[b.precision] ?? 9));
}

export function writeModels(exportedDir, outDir) {
  const models = listModels(exportedDir);
  for (const m of models) {
    mkdirSync(dirname(join(outDir, m.file)), { recursive: true });
    copyFileSync(m.src, join(outDir, m.file));
  }
  const listing = models.map(({ style, precision, file, bytes, contract }) => ({ style, precision, file, bytes, contract }));
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'models.json'), JSON.stringify({ models: listing }, null, 2) + '\n');
  return listing;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(name);
    return i >= 0 ? process.argv[i + 1] : fallback;
  };
  const exportedDir = resolve(arg('--exported', join(here, '..', '..', 'exported')));
  const outDir = resolve(arg('--out', join(here, '..', 'dist')));
  const listing = writeModels(exportedDir, outDir);
  console.log(`models.json: ${listing.length} model(s) from ${exportedDir} -> ${outDir}`);
}
