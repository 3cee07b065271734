/**
 * `npm run web:screenshots`: the screenshots the README shows (docs/web-*.png), taken in headless Chromium
 * (/usr/bin/chromium) on the webgpu backend, after generating with both models and stepping three speculative rounds.
 */
import { join } from 'node:path';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { chromium } from 'playwright-core';
import { buildWeb } from './build.js';
import { CHROMIUM_ARGS, serveStatic } from './serve.js';
import { writeFile } from '../lib/io/writer.js';

const ROOT = join(import.meta.dirname, '..');
const tmp = mkdtempSync(join(tmpdir(), 'mil-web-'));
const dir = join(tmp, 'site');
await buildWeb(dir);
const { server, url } = await serveStatic(dir, 0);
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: CHROMIUM_ARGS,
});
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  await page.goto(`${url}?backend=webgpu`); // GPU.js's WGSL kernels (Chromium's SwiftShader adapter where there is no GPU)
  await page.waitForSelector('body[data-ready="1"]', { timeout: 60_000 });
  await page.fill('#prompt', 'We have every reason to believe that'); // a prompt whose first round has a rejection
  await page.click('#generate');
  await page.waitForSelector('body[data-generated="1"]', { timeout: 120_000 });
  await page.click('#spec-start');
  for (let r = 1; r <= 3; r++) {
    await page.waitForSelector(`body[data-rounds="${r}"]`, { timeout: 60_000 });
    if (r < 3) await page.click('#spec-step');
  }
  const shot = join(tmp, 'page.png');
  await page.screenshot({ path: shot, fullPage: true });
  writeFile(join(ROOT, 'docs', 'web-page.png'), readFileSync(shot)); // through the one writer
  console.log('wrote docs/web-page.png');
} finally {
  await browser.close();
  server.close();
  rmSync(tmp, { recursive: true, force: true });
}
