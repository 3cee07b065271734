/**
 * kernels/idiv.ts: GPU.js kernels' index divisions made exact on real GPUs (the H200 divides x / R as x·(1/R),
 * so floor(388 / 388) came out 0 there — bench/gpu_check.ts). Here: the source rewrite (pure text), idivFloor's
 * arithmetic, and a rewritten kernel on the webgpu backend (Dawn's CPU adapter divides exactly, so this checks that
 * the rewrite compiles and keeps the meaning; the H200 figure is gpu_check's).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { exactDivision, idivFloor } from '../kernels/idiv.js';
import { getRuntime } from '../kernels/runtime.js';
import { webgpuIt } from './gpu_helpers.js';

describe('exact index division (kernels/idiv.ts)', () => {
  it('rewrites Math.floor(X / Y) at the top level of the argument, and nothing else', () => {
    expect(exactDivision('const t = Math.floor(this.thread.x / this.constants.R);')).toBe(
      'const t = idivFloor(this.thread.x, this.constants.R);',
    );
    expect(exactDivision('Math.floor((a + b) / c[Math.floor(i / 2)])')).toBe('idivFloor((a + b), c[idivFloor(i, 2)])');
    expect(exactDivision('x - Math.floor(x / N) * N + Math.floor(y / M)')).toBe(
      'x - idivFloor(x, N) * N + idivFloor(y, M)',
    );
    // no division, or two at the top level (a / b / c): left as they are
    expect(exactDivision('Math.floor(a * 2.5)')).toBe('Math.floor(a * 2.5)');
    expect(exactDivision('Math.floor(a / b / c)')).toBe('Math.floor(a / b / c)');
    expect(exactDivision('Math.floor((a / b) * c)')).toBe('Math.floor((a / b) * c)');
  });

  it('idivFloor(a, b) = floor(a / b) for index-sized integers (fast-check)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 24 - 1 }), fc.integer({ min: 1, max: 1 << 16 }), (a, b) => {
        expect(idivFloor(a, b)).toBe(Math.floor(a / b));
      }),
      { numRuns: 2000 },
    );
  });

  webgpuIt(
    'a kernel using Math.floor(x / R) gives x mod R for every x on webgpu (rewritten to idivFloor)',
    async () => {
      const rt = await getRuntime('webgpu');
      for (const R of [3, 97, 388, 1408]) {
        const got = await rt.run(
          'idiv.spec',
          'function () { const x = this.thread.x; return x - Math.floor(x / this.constants.R) * this.constants.R; }',
          { R },
          1 << 14,
          [],
        );
        expect(
          got.every((v, x) => v === x % R),
          `R = ${R}`,
        ).toBe(true);
      }
    },
  );
});
