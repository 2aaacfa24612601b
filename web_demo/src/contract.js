// Image pre/post-processing driven by the model contract (<artifact>.contract.json, see
// toolkit/export/contract.py). Same field names as the Python contract and the Kotlin/Swift demos.
//   pre:  value = (pixel * scale - mean[c]) / std[c]
//   post: pixel = clamp(round((value - range[0]) / (range[1] - range[0]) * 255), 0, 255)

export const CONTRACT_VERSION = 1;

export function checkContract(c) {
  if (c.contract !== CONTRACT_VERSION) throw new Error(`contract version ${c.contract}, expected ${CONTRACT_VERSION}`);
  for (const t of [c.input, c.output]) {
    if (t.layout !== 'NCHW' && t.layout !== 'NHWC') throw new Error(`layout ${t.layout} is not a tensor layout`);
    if (t.dtype !== 'float32') throw new Error(`dtype ${t.dtype}: this demo feeds float32 tensors`);
    if (t.color !== 'RGB') throw new Error(`colour ${t.color}: this demo feeds RGB`);
  }
  return c;
}

// The size (h, w) the model will run at for a source of srcH x srcW, no side above maxSide.
export function inferenceSize(c, srcH, srcW, maxSide = 512) {
  const inp = c.input;
  if (!inp.dynamic) {
    // Fixed-size artifacts: the listed size whose aspect ratio is closest to the source's.
    const ar = srcW / srcH;
    return inp.sizes.reduce((best, s) =>
      Math.abs(Math.log(s[1] / s[0] / ar)) < Math.abs(Math.log(best[1] / best[0] / ar)) ? s : best);
  }
  const m = inp.size_multiple;
  const k = Math.min(1, maxSide / Math.max(srcH, srcW));
  const snap = (v) => Math.max(m, Math.floor((v * k) / m) * m);
  return [snap(srcH), snap(srcW)];
}

// RGBA bytes (ImageData.data) of h x w -> Float32Array in the contract's input layout.
export function preprocess(c, rgba, h, w) {
  const { scale, mean, std, layout } = c.input;
  const n = h * w;
  const out = new Float32Array(3 * n);
  const a = [scale / std[0], scale / std[1], scale / std[2]];
  const b = [-mean[0] / std[0], -mean[1] / std[1], -mean[2] / std[2]];
  if (layout === 'NCHW') {
    for (let i = 0; i < n; i++) {
      out[i] = rgba[4 * i] * a[0] + b[0];
      out[n + i] = rgba[4 * i + 1] * a[1] + b[1];
      out[2 * n + i] = rgba[4 * i + 2] * a[2] + b[2];
    }
  } else {
    for (let i = 0; i < n; i++) {
      out[3 * i] = rgba[4 * i] * a[0] + b[0];
      out[3 * i + 1] = rgba[4 * i + 1] * a[1] + b[1];
      out[3 * i + 2] = rgba[4 * i + 2] * a[2] + b[2];
    }
  }
  return out;
}

// Float32Array in the contract's output layout -> RGBA bytes (opaque).
export function postprocess(c, values, h, w, rgba = new Uint8ClampedArray(4 * h * w)) {
  const [lo, hi] = c.output.range;
  const k = 255 / (hi - lo);
  const n = h * w;
  const nchw = c.output.layout === 'NCHW';
  for (let i = 0; i < n; i++) {
    for (let ch = 0; ch < 3; ch++) {
      const v = nchw ? values[ch * n + i] : values[3 * i + ch];
      rgba[4 * i + ch] = Math.round((v - lo) * k); // Uint8ClampedArray clamps to 0..255
    }
    rgba[4 * i + 3] = 255;
  }
  return rgba;
}

export function inputDims(c, h, w) {
  return c.input.layout === 'NCHW' ? [1, 3, h, w] : [1, h, w, 3];
}
