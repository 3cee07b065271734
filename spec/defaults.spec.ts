/**
 * The commands run on the fastest backend here unless told otherwise (issue #28 item 5): `mil generate`
 * (plain and speculative) and `mil eval` on wasm-simd, the float64 reference only with `--backend reference`
 * (`--engine float64` for eval), and every output names the backend it ran on.
 */
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { main } from '../lib/cli/main.js';
import { defaultBackend } from '../lib/ops.js';
import { lastOf } from '../lib/checked.js';

const MODELS = join(import.meta.dirname, '..', 'models');

/** Run `mil ARGS` in this process; its exit status and what it printed (stdout writes and console.log). */
async function mil(...args: string[]): Promise<{ status: number; out: string }> {
  const lines: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((...xs: unknown[]) => void lines.push(xs.join(' ')));
  const write = vi
    .spyOn(process.stdout, 'write')
    .mockImplementation((s: string | Uint8Array) => (lines.push(String(s)), true));
  const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    const status = await main(args);
    return { status, out: lines.join('\n') };
  } finally {
    log.mockRestore();
    write.mockRestore();
    err.mockRestore();
  }
}
const lastJson = (out: string) => JSON.parse(lastOf(out.trim().split('\n')));

describe('the default backend', () => {
  it('is wasm-simd where it loads (here, in Node)', () => {
    expect(defaultBackend()).toBe('wasm-simd');
  });

  it('mil generate runs on wasm-simd unless --backend reference, names it, and both give the same greedy tokens', async () => {
    const args = [
      'generate',
      '--model',
      join(MODELS, 'teacher-small'),
      '--prompt-ids',
      '1,2,3,4',
      '--max-new-tokens',
      '4',
    ];
    const fast = await mil(...args, '--json');
    expect(fast.status).toBe(0);
    const f = lastJson(fast.out);
    expect(f.backend).toBe('wasm-simd');
    const ref = lastJson((await mil(...args, '--json', '--backend', 'reference')).out);
    expect(ref.backend).toBe('reference');
    expect(f.tokens).toEqual(ref.tokens); // float32 against float64: the same argmax on this prompt
    const text = await mil(...args);
    expect(text.out).toMatch(/\[wasm-simd\] 4 tokens/);
  });

  it('speculative decoding runs on wasm-simd by default and says so', async () => {
    const r = await mil(
      'generate',
      ...['--model', join(MODELS, 'hybrid-mamba2-50'), '--prompt-ids', '1,2,3', '--max-new-tokens', '4'],
      ...['--speculative', '--draft', join(MODELS, 'draft-small'), '-k', '2'],
    );
    expect(r.status).toBe(0);
    expect(r.out).toMatch(/\[wasm-simd, speculative K=2, lazy\]/);
  });

  it('mil eval names its backend: wasm-simd by default, reference with --engine float64', async () => {
    const args = ['eval', '--model', join(MODELS, 'teacher-small'), '--tokens', '64', '--len', '32', '--json'];
    const fast = lastJson((await mil(...args)).out);
    expect(fast.backend).toBe('wasm-simd');
    const ref = lastJson((await mil(...args, '--engine', 'float64')).out);
    expect(ref.backend).toBe('reference');
    expect(Math.abs(fast.nll - ref.nll)).toBeLessThan(1e-4 * Math.abs(ref.nll)); // the float32 tolerance of wasm-simd
    expect((await mil(...args.slice(0, -1))).out).toMatch(/^\[wasm-simd\] /m);
  });
});
