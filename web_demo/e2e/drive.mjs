// Drive the demo page in headless Debian chromium (playwright-core, no bundled browser): load it, upload an image,
// read back the pixels it fed the model and the pixels it drew, run its benchmark; print one JSON object.
// Usage: node e2e/drive.mjs '{"url": "...", "image": "/path.png", "runs": 20, "chromium": "/usr/bin/chromium"}'
// "images": [...] instead of "image" uploads each in turn: "frames" holds every one (the top level repeats the first).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const opts = JSON.parse(process.argv[2]);
export const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const userDataDir = mkdtempSync(join(tmpdir(), 'web-demo-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: opts.chromium ?? '/usr/bin/chromium', headless: true, args: CHROMIUM_FLAGS, timeout: 60000,
});
const logs = [];
try {
  const page = context.pages()[0] ?? await context.newPage();
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  await page.goto(opts.url, { waitUntil: 'load' });
  const waitFor = async (expr) => {
    await page.waitForFunction(`(${expr}) || (window.demo && window.demo.error)`, null, { timeout: 60000 });
    const error = await page.evaluate('window.demo.error');
    if (error) throw new Error(`page error: ${error}`);
  };
  await waitFor('window.demo && window.demo.ready');
  const frames = [];
  for (const [i, image] of (opts.images ?? [opts.image]).entries()) {
    await page.setInputFiles('#file', image);
    await waitFor(`window.demo.stylised >= ${i + 1}`);
    frames.push(await page.evaluate(() => {
      const b64 = (bytes) => {
        let s = '';
        for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
        return btoa(s);
      };
      const { h, w, input, output } = window.demo.last;
      const drawn = document.getElementById('output').getContext('2d').getImageData(0, 0, w, h).data;
      return { height: h, width: w, input: b64(input), output: b64(drawn), computed: b64(output) };
    }));
  }
  const bench = await page.evaluate((runs) => window.demo.benchmark(runs), opts.runs ?? 20);
  const env = await page.evaluate(() => ({ userAgent: navigator.userAgent, crossOriginIsolated: self.crossOriginIsolated,
    cores: navigator.hardwareConcurrency, status: document.getElementById('status').textContent,
    styles: [...document.querySelectorAll('#style option')].map((o) => o.textContent) }));
  process.stdout.write(JSON.stringify({ ok: true, ...frames[0], frames, bench, env, logs }) + '\n');
} catch (err) {
  process.stdout.write(JSON.stringify({ ok: false, error: String(err.message ?? err), logs }) + '\n');
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
