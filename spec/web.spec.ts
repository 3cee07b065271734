/**
 * The browser page (web/) end to end in headless Chromium (Debian's `chromium`, driven by playwright-core;
 * skipped with the reason where /usr/bin/chromium is absent — .ci/run installs it): it loads the shipped
 * models, generates exactly the CLI's tokens for the same prompt (`mil generate --backend reference --json`; on
 * wasm-simd, the SIMD module fetched into the cross-origin isolated page, `mil generate`'s default: wasm-simd),
 * steps speculative decoding round by round (each round showing its drafts, the state kept and the conv
 * position) to the same text as plain greedy decoding, and shows Algorithm 1's copied weights equal; on wasm-simd
 * it measures speculative against plain decoding in the tab (a speedup shown, the output identical). The static
 * build's `_headers` names the cross-origin isolation headers the server sends.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { chromium } from 'playwright-core';
import { RESPONSE_HEADERS, buildWeb } from '../web/build.js';
import { CHROMIUM_ARGS, serveStatic } from '../web/serve.js';
import { tmpFolder } from './tmp.js';

const ROOT = join(import.meta.dirname, '..');
const CHROMIUM = '/usr/bin/chromium';
const PROMPT = 'Fellow-Citizens of the Senate and House of Representatives: The state of the Union';
const N = 12;

/** The CLI's greedy continuation on `backend` (the float64 reference, or `mil generate`'s default: wasm-simd). */
function cliTokens(model: string, backend: 'reference' | 'default' = 'reference'): number[] {
  const r = spawnSync(
    process.execPath,
    [
      join(ROOT, 'bin', 'mil.js'),
      'generate',
      '--model',
      join(ROOT, 'models', model),
      '--prompt',
      PROMPT,
      '--max-new-tokens',
      String(N),
      ...(backend === 'reference' ? ['--backend', 'reference'] : []),
      '--json',
    ],
    { encoding: 'utf8' },
  );
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout).tokens;
}

describe('the browser page', () => {
  it.skipIf(!existsSync(CHROMIUM))(
    `in headless Chromium, cross-origin isolated: on the float64 reference and on GPU.js's webgpu: loads the models, generates the CLI's tokens, steps speculative rounds to plain decoding's text, shows Algorithm 1; on wasm-simd: mil generate's tokens, speculative measured against plain in the tab, identical; on webgl2, webasm and cpu: the same tokens (skipped where ${CHROMIUM} is absent: apt-get install chromium)`,
    async () => {
      const dir = join(tmpFolder('web'), 'site');
      await buildWeb(dir);
      const { server, url } = await serveStatic(dir, 0);
      const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
      const reference = { teacher: cliTokens('teacher-small'), hybrid: cliTokens('hybrid-mamba2-50') };
      const simd = { teacher: cliTokens('teacher-small', 'default'), hybrid: cliTokens('hybrid-mamba2-50', 'default') };
      // the static build names the cross-origin isolation headers for a static host
      const headers = readFileSync(join(dir, '_headers'), 'utf8');
      for (const [k, v] of Object.entries(RESPONSE_HEADERS)) expect(headers).toContain(`  ${k}: ${v}\n`);
      try {
        for (const backend of ['reference', 'wasm-simd', 'webgpu', 'webgl2', 'webasm', 'cpu']) {
          const want = backend === 'wasm-simd' ? simd : reference; // wasm-simd: what `mil generate` gives by default
          const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
          const errors: string[] = [];
          page.on('pageerror', (e) => errors.push(e.message));
          page.on('console', (m) => void (m.type() === 'error' && errors.push(m.text())));
          await page.goto(`${url}?backend=${backend}`);
          await page.waitForSelector('body[data-ready="1"]', { timeout: 60_000 });
          expect(await page.getAttribute('body', 'data-backend'), `the page runs on ${backend}`).toBe(backend);
          // COOP + COEP from the server: SharedArrayBuffer exists, which wasm-simd's shared memory needs
          expect(await page.getAttribute('body', 'data-cross-origin-isolated')).toBe('true');

          await page.fill('#prompt', PROMPT);
          await page.fill('#n', String(N));
          await page.click('#generate', { timeout: 120_000 }); // the click waits while a slow backend's generate holds the page's thread
          await page.waitForSelector('body[data-generated="1"]', { timeout: 120_000 });
          const shown = async (sel: string) => (await page.getAttribute(sel, 'data-tokens'))!.split(',').map(Number);
          const hybrid = await shown('#out-hybrid');
          expect(await shown('#out-teacher'), `teacher on ${backend}`).toEqual(want.teacher);
          expect(hybrid, `hybrid on ${backend}`).toEqual(want.hybrid);
          expect(await page.textContent('#out-hybrid-time')).toMatch(
            new RegExp(`^${N} tokens in [\\d.]+ s on ${backend}`),
          );
          // the GPU.js kernels ran as the backend's own class (the runtime refuses a fallback, and the page shows it)
          const classes = {
            reference: null,
            'wasm-simd': null,
            webgpu: 'WebGPUKernel',
            webgl2: 'WebGL2Kernel',
            webasm: 'WebAssemblyKernel',
            cpu: 'CPUKernel',
          }[backend];
          expect(await page.getAttribute('body', 'data-kernel-class')).toBe(classes);

          if (backend === 'reference' || backend === 'webgpu') {
            await page.click('#spec-start');
            await page.waitForSelector('body[data-rounds="1"]', { timeout: 60_000 });
            const first = page.locator('#rounds tbody tr').first();
            expect(['h_j', 'h_k']).toContain(await first.getAttribute('data-kept'));
            const cell = async (n: number) => first.locator('td').nth(n).textContent();
            expect(await cell(1)).toBe(await cell(2)); // round 1: i = j (nothing pending yet)
            for (let r = 1; r < 64 && !(await page.$('body[data-spec-done="1"]')); r++) {
              await page.click('#spec-step');
              await page.waitForSelector(`body[data-rounds="${r + 1}"], body[data-spec-done="1"]`, { timeout: 60_000 });
            }
            expect(await shown('#spec-text')).toEqual(hybrid); // greedy speculative decoding = plain greedy decoding
            const kept = await page
              .locator('#rounds tbody tr')
              .evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.kept));
            expect(kept.length).toBeGreaterThan(1);
          }
          if (backend === 'wasm-simd') {
            // speculative decoding measured against plain decoding in this tab: the speedup shown, the output identical
            await page.click('#spec-measure', { timeout: 120_000 });
            await page.waitForSelector('body[data-measured="1"]', { timeout: 120_000 });
            expect(await page.getAttribute('#spec-speed', 'data-identical')).toBe('true');
            expect(Number(await page.getAttribute('#spec-speed', 'data-speedup'))).toBeGreaterThan(0);
            expect(await page.textContent('#spec-speed')).toMatch(
              /^on wasm-simd, K = 3: .* ×[\d.]+; .*output identical to plain/,
            );
          }
          const diffs = await page
            .locator('#alg1 td[data-diff]')
            .evaluateAll((cells) => cells.map((c) => (c as HTMLElement).dataset.diff));
          expect(diffs).toEqual(['0', '0', '0', '0']);
          expect(errors, backend).toEqual([]);
          await page.close();
        }
      } finally {
        await browser.close();
        server.close();
      }
    },
    300_000,
  );
});
