/**
 * The runnable tours (examples/0*.ts) run as a learner runs them (`npx tsx examples/…`), exit 0, and print
 * what their header promises: the three scans agreeing, every copied matrix equal to its attention source,
 * speculative text identical to plain decoding, and the hybrid's perplexity falling as it distils.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const tour = (name: string) =>
  execFileSync(process.execPath, ['--import', 'tsx', join(ROOT, 'examples', name)], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 120_000,
  });

describe('the tours run and show what they promise', () => {
  it('01: the parallel scan, L state updates and the written-out loop agree exactly', () => {
    const out = tour('01-selective-scan.ts');
    expect(out.match(/max \|Δ[yh]\| = 0\.0e\+0/g)).toHaveLength(3);
  }, 120_000);
  it('02: Algorithm 1 copies V, K, Q, O into x, B, C, out_proj (difference 0); distillation brings the perplexity back', () => {
    const out = tour('02-algorithm1.ts');
    expect(out.match(/max \|difference\| = 0$/gm)).toHaveLength(10);
    const [teacher, converted, distilled] = [
      /teacher \(all attention\) +([\d.]+)/,
      /no training +([\d.]+)/,
      /distilled \(models\/hybrid-mamba2-50\) +([\d.]+)/,
    ].map((re) => Number(re.exec(out)![1]));
    expect(converted).toBeGreaterThan(5 * teacher);
    expect(distilled).toBeLessThan(1.2 * teacher);
  }, 120_000);
  it('03: speculative rounds name i, j, k and the state kept; the text equals plain greedy decoding', () => {
    const out = tour('03-speculative-round.ts');
    expect(out).toMatch(/kept h_k/);
    expect(out).toMatch(/kept h_j/);
    expect(out).toMatch(/identical: true/);
  }, 120_000);
  it('04: stage-1 distillation trains only the Mamba parameters and lowers the held-out perplexity', () => {
    const out = tour('04-distill-steps.ts');
    const before = Number(/perplexity before: ([\d.]+)/.exec(out)![1]);
    const after = Number(/after 30 steps of 256 tokens: ([\d.]+)/.exec(out)![1]);
    expect(after).toBeLessThan(before / 2);
  }, 180_000);
});
