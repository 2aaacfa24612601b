// The demo page: pick a style (models.json), feed the webcam or an image, show the stylised frame and the fps.
// Everything it loads is local (ort wasm assets in ./ort/, models in ./models/), so it works offline.
import * as ort from '../ort/ort.wasm.min.mjs';
import { checkContract, inferenceSize, inputDims, postprocess, preprocess } from './contract.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = { styles: [], session: null, contract: null, source: null, running: false, busy: false };

// Threads need SharedArrayBuffer, which browsers only give to cross-origin isolated pages (COOP + COEP headers).
ort.env.wasm.wasmPaths = new URL('../ort/', import.meta.url).href;
ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
ort.env.wasm.simd = true;

function setStatus(text) { $('status').textContent = text; }

class FpsMeter {
  constructor(window = 30) { this.times = []; this.window = window; }
  tick(now = performance.now()) {
    this.times.push(now);
    if (this.times.length > this.window) this.times.shift();
    const n = this.times.length;
    return n < 2 ? 0 : ((n - 1) * 1000) / (this.times[n - 1] - this.times[0]);
  }
}
const meter = new FpsMeter();

async function loadStyles() {
  const url = params.get('models') || 'models.json';
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status} (run \`npm run models\` to list exported styles)`);
  const list = (await res.json()).models;
  const base = new URL(url, location.href);
  state.styles = list.map((m) => ({ ...m, url: new URL(m.file, base).href, contract: checkContract(m.contract) }));
  const select = $('style');
  select.replaceChildren(...state.styles.map((m, i) => new Option(`${m.style} (${m.precision})`, i)));
  if (!state.styles.length) throw new Error('models.json lists no styles: export one (toolkit export) and rebuild');
}

async function selectStyle(index) {
  const m = state.styles[index];
  setStatus(`loading ${m.style}…`);
  state.session?.release?.();
  state.session = await ort.InferenceSession.create(m.url, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
  state.contract = m.contract;
  setStatus(`${m.style} ready`);
  $('backend').textContent = `onnxruntime-web ${ort.env.versions?.web ?? ''} · wasm · threads ${ort.env.wasm.numThreads}` +
    ` · crossOriginIsolated ${self.crossOriginIsolated}`;
  if (state.source) await stylise();
}

// Draw the source into the input canvas at the inference size and read its pixels.
function grabInput() {
  const src = state.source;
  const [srcH, srcW] = src instanceof HTMLVideoElement ? [src.videoHeight, src.videoWidth] : [src.height, src.width];
  const [h, w] = inferenceSize(state.contract, srcH, srcW, Number($('maxside').value));
  const canvas = $('input');
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(src, 0, 0, w, h);
  return { h, w, rgba: ctx.getImageData(0, 0, w, h).data };
}

async function run(rgba, h, w) {
  const c = state.contract;
  const input = new ort.Tensor('float32', preprocess(c, rgba, h, w), inputDims(c, h, w));
  const results = await state.session.run({ [c.input.name]: input });
  const out = results[c.output.name];
  const pixels = postprocess(c, out.data, h, w);
  input.dispose?.(); out.dispose?.();
  return pixels;
}

async function stylise() {
  if (!state.session || state.busy) return;
  state.busy = true;
  try {
    const { h, w, rgba } = grabInput();
    const pixels = await run(rgba, h, w);
    const canvas = $('output');
    canvas.width = w; canvas.height = h;
    canvas.getContext('2d').putImageData(new ImageData(pixels, w, h), 0, 0);
    window.demo.last = { h, w, input: rgba, output: pixels };
    $('fps').textContent = `${meter.tick().toFixed(1)} fps`;
  } finally {
    state.busy = false;
  }
}

async function useImage(file) {
  const bitmap = await createImageBitmap(file, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  stopCamera();
  state.source = bitmap;
  await stylise();
  $('bench').disabled = false;
  window.demo.stylised += 1;
}

async function startCamera() {
  const video = $('video');
  video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'user' }, audio: false });
  await video.play();
  state.source = video;
  state.running = true;
  $('bench').disabled = true;
  const loop = async () => {
    if (!state.running) return;
    await stylise();
    requestAnimationFrame(loop);
  };
  loop();
}

function stopCamera() {
  state.running = false;
  const stream = $('video').srcObject;
  stream?.getTracks().forEach((t) => t.stop());
  $('video').srcObject = null;
}

// fps of the whole frame path (pre-process, inference, post-process) on the current input, after warm-up.
async function benchmark(runs = 20, warmup = 3) {
  const { h, w, rgba } = grabInput();
  for (let i = 0; i < warmup; i++) await run(rgba, h, w);
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await run(rgba, h, w);
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  const p = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))];
  const result = { runs, warmup, height: h, width: w, ms_p50: p(0.5), ms_p90: p(0.9), fps: 1000 / p(0.5),
    threads: ort.env.wasm.numThreads, crossOriginIsolated: self.crossOriginIsolated, ort: ort.env.versions?.web ?? null };
  $('fps').textContent = `${result.fps.toFixed(1)} fps (p50)`;
  return result;
}

window.demo = { ready: false, error: null, stylised: 0, last: null, benchmark, useImage, selectStyle };

$('style').addEventListener('change', (e) => selectStyle(Number(e.target.value)).catch(fail));
$('file').addEventListener('change', (e) => e.target.files[0] && useImage(e.target.files[0]).catch(fail));
$('camera').addEventListener('click', () => startCamera().catch(fail));
$('maxside').addEventListener('change', () => stylise().catch(fail));
$('bench').addEventListener('click', () => benchmark().catch(fail));

function fail(err) {
  console.error(err);
  window.demo.error = String(err?.message ?? err);
  setStatus(`error: ${window.demo.error}`);
}

loadStyles().then(() => selectStyle(0)).then(() => { window.demo.ready = true; }).catch(fail);
