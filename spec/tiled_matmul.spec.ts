/**
 * The tiled WGSL product (kernels/tiled_matmul.ts, recorded by ResidentChain.wgsl) on webgpu — here Dawn's CPU
 * adapter (lavapipe) — against a float64 product of the same float32 inputs, on random shapes (fast-check, numRuns
 * in the titles) that are mostly not multiples of the 64×64 tile or the K-step of 16, plus the 1-row, 1-column and
 * K = 1 edges, in four forms (every A 'mk'/'km' × B 'nk'/'kn' pairing, 1–3 pairs, bias, addend) and the three the trainer uses.
 * Tolerance: the float32 recursive-summation bound, per element
 *   |got − want| ≤ γ_{K+2} · (Σ_p Σ_k |A_p(m,k)| |B_p(k,n)| + |bias_n| + |D_mn|),  γ_n = n u/(1 − n u), u = 2⁻²⁴,
 * K = Σ_p K_p (measured: at most ~0.05 of the bound). Every output is written (the buffer is first filled with
 * NaN) and two runs give identical bits (a fixed summation order). Split-K (K cut into slices of whole K-steps, the
 * partial sums added in slice order by a second dispatch that also adds bias and D) is checked the same way.
 * Mutations tried (each failed these tests): the tile's row offset m0 = wid.y·TM + 1; the k < K guard of A's load
 * left out (only the non-finite test catches it: a finite neighbour times B's guarded 0 is 0); the bias added twice.
 */
import fc from 'fast-check';
import { afterAll, describe, expect } from 'vitest';
import { ResidentChain } from '../kernels/resident_chain.js';
import {
  tiledLinear,
  tiledLinearDw,
  tiledLinearDx,
  tiledMatmul,
  type MatmulForm,
  type TileName,
} from '../kernels/tiled_matmul.js';
import { Rng } from '../lib/rng.js';
import { webgpuIt } from './gpu_helpers.js';

const U = 2 ** -24;
const gamma = (n: number) => (n * U) / (1 - n * U);

interface Case {
  f: MatmulForm;
  M: number;
  N: number;
  Ks: number[];
  seed: number;
  /** split-K slices (tiledMatmul's `parts`); absent: its own choice (none at these sizes) */
  parts?: number;
  /** tile shape (default 'c') */
  tile?: TileName;
}

/** The float64 product and its error scale Σ|A||B| + |bias| + |D| of `c` on inputs `x` (the kernel's arguments). */
function reference(c: Case, x: Float32Array[]): { want: Float64Array; scale: Float64Array } {
  const { f, M, N, Ks } = c;
  const want = new Float64Array(M * N);
  const scale = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      let a = 0;
      Ks.forEach((K, p) => {
        const [A, B] = [x[2 * p], x[2 * p + 1]];
        for (let k = 0; k < K; k++) {
          const v = (f.a === 'mk' ? A[m * K + k] : A[k * M + m]) * (f.b === 'nk' ? B[n * K + k] : B[k * N + n]);
          s += v;
          a += Math.abs(v);
        }
      });
      let at = 2 * Ks.length;
      if (f.bias) {
        s += x[at][n];
        a += Math.abs(x[at++][n]);
      }
      if (f.add) {
        s += x[at][m * N + n];
        a += Math.abs(x[at][m * N + n]);
      }
      want[m * N + n] = s;
      scale[m * N + n] = a;
    }
  return { want, scale };
}

describe('tiled WGSL product (kernels/tiled_matmul.ts) on webgpu', () => {
  let chain: ResidentChain | undefined;
  let program = 0;
  afterAll(() => chain?.destroy());

  /** Runs case `c` twice in one chain program; returns the worst |err| / bound (≤ 1: within tolerance). */
  const check = async (
    c: Case,
    kernel = tiledMatmul(c.f, c.M, c.N, c.Ks, c.parts, c.tile),
    poke?: (x: Float32Array[]) => void,
  ): Promise<number> => {
    chain ??= await ResidentChain.create();
    const r = new Rng(c.seed);
    const sizes = c.Ks.flatMap((K) => [c.M * K, K * c.N]);
    if (c.f.bias) sizes.push(c.N);
    if (c.f.add) sizes.push(c.M * c.N);
    const x = sizes.map((n) => Float32Array.from({ length: n }, () => r.normal(0, 1)));
    poke?.(x);
    const args = x.map((v, j) => chain!.buffer(`arg ${j}`, v.length, v));
    const out = chain.buffer('C', c.M * c.N, new Float32Array(c.M * c.N).fill(NaN));
    chain.record(`case ${program++}`);
    await chain.wgsl('mm', kernel, args, out);
    const name = `case ${program - 1}`;
    const [got] = await chain.run({ pos: 0 }, [{ from: out }], name);
    const [again] = await chain.run({ pos: 0 }, [{ from: out }], name);
    expect(Buffer.from(again.buffer).equals(Buffer.from(got.buffer)), 'two runs, the same bits').toBe(true);
    const { want, scale } = reference(c, x);
    const g = gamma(c.Ks.reduce((s, k) => s + k, 0) + 2);
    let worst = 0;
    for (let i = 0; i < want.length; i++) {
      const e = Number.isFinite(want[i])
        ? Math.abs(got[i] - want[i]) / (g * scale[i] + Number.MIN_VALUE)
        : Number.isFinite(got[i])
          ? Infinity
          : 0;
      worst = Math.max(worst, Number.isNaN(e) ? Infinity : e);
    }
    return worst;
  };

  const dim = fc.oneof(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 140 }));
  /**
   * The forms tried (each a module compiled once per chain: ~1.5 s on lavapipe, so not all 48): the trainer's
   * forward with bias and residual, its dX over 3 pairs, its dW accumulating, and the fourth layout pair.
   */
  const FORMS: MatmulForm[] = [
    { a: 'mk', b: 'nk', pairs: 1, bias: true, add: true },
    { a: 'mk', b: 'kn', pairs: 3, bias: false, add: false },
    { a: 'km', b: 'kn', pairs: 1, bias: false, add: true },
    { a: 'km', b: 'nk', pairs: 2, bias: true, add: false },
  ];

  webgpuIt('every layout on random shapes = the float64 product within γ_{K+2}·Σ|A||B| (numRuns 10)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...FORMS).chain((f) =>
          fc.record({
            f: fc.constant(f),
            M: dim,
            N: dim,
            Ks: fc.array(dim, { minLength: f.pairs, maxLength: f.pairs }),
            seed: fc.nat(),
          }),
        ),
        async (c) => {
          expect(await check(c), JSON.stringify(c)).toBeLessThanOrEqual(1);
        },
      ),
      { numRuns: 10 },
    );
  });

  webgpuIt(
    'split-K (partials, then their sum in order with bias and addend) = the same product (numRuns 6)',
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.record({
            f: fc.constant(FORMS[0]),
            M: dim,
            N: dim,
            Ks: fc.tuple(fc.integer({ min: 17, max: 140 })),
            seed: fc.nat(),
            parts: fc.integer({ min: 2, max: 5 }),
          }),
          async (c) => {
            expect(tiledMatmul(c.f, c.M, c.N, c.Ks, c.parts).split, 'split').toBeDefined();
            expect(await check(c), JSON.stringify(c)).toBeLessThanOrEqual(1);
          },
        ),
        { numRuns: 6 },
      );
    },
  );

  webgpuIt(
    "the other tile shapes ('a' 64×64 / 4×4 / K-step 16, 'b' 128×128 / 8×8 / 8; the default is 'c') (numRuns 4)",
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.record({
            f: fc.constant(FORMS[0]),
            M: fc.integer({ min: 1, max: 200 }),
            N: fc.integer({ min: 1, max: 200 }),
            Ks: fc.tuple(dim),
            seed: fc.nat(),
            tile: fc.constantFrom('a' as const, 'b' as const),
          }),
          async (c) => {
            expect(await check(c), JSON.stringify(c)).toBeLessThanOrEqual(1);
          },
        ),
        { numRuns: 4 },
      );
    },
  );

  webgpuIt('edges: 1 row, 1 column, K = 1, exact tiles, one past a tile', async () => {
    for (const f of [FORMS[0], FORMS[2]])
      for (const [M, N, K] of [
        [1, 1, 1],
        [1, 97, 33],
        [97, 1, 33],
        [64, 64, 16],
        [65, 129, 17],
      ])
        expect(await check({ f, M, N, Ks: [K], seed: M + N + K }), `${M}×${N}, K ${K}`).toBeLessThanOrEqual(1);
  });

  webgpuIt(
    'a non-finite input reaches only its own row and column (the edge loads read 0, not a neighbour)',
    async () => {
      // A (M, K) row 1 and B (N, K) row 1 start with ∞: with K = 5 the K-step's loads past k = 4 would read them for
      // rows / columns 0 (0·∞ = NaN) were they not guarded
      const c: Case = { f: FORMS[0], M: 3, N: 3, Ks: [5], seed: 7 };
      const poke = (x: Float32Array[]) => {
        x[0][5] = Infinity;
        x[1][5] = -Infinity;
      };
      expect(await check(c, undefined, poke)).toBeLessThanOrEqual(1);
    },
  );

  webgpuIt("the trainer's three products (x·Wᵀ + b + r, dX over 3 pairs, dW + prev)", async () => {
    const [N, I, O] = [70, 24, 50];
    const fw: MatmulForm = { a: 'mk', b: 'nk', pairs: 1, bias: true, add: true };
    expect(await check({ f: fw, M: N, N: O, Ks: [I], seed: 1 }, tiledLinear(N, I, O, true, true))).toBeLessThanOrEqual(
      1,
    );
    const dx: MatmulForm = { a: 'mk', b: 'kn', pairs: 3, bias: false, add: false };
    const Os = [O, 20, 20];
    expect(await check({ f: dx, M: N, N: I, Ks: Os, seed: 2 }, tiledLinearDx(N, I, Os))).toBeLessThanOrEqual(1);
    const dw: MatmulForm = { a: 'km', b: 'kn', pairs: 1, bias: false, add: true };
    expect(await check({ f: dw, M: O, N: I, Ks: [N], seed: 3 }, tiledLinearDw(N, I, O, true))).toBeLessThanOrEqual(1);
  });
});
