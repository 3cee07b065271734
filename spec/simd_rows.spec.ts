/**
 * Evaluation's row kernels on wasm-simd (lib/simd/rows.ts, offered as `ops.rows32`, asked for only by
 * lib/model/hybrid.ts forward's `float32` option, which `mil eval` sets) against their float64 references
 * (lib/ref/norm.ts rmsnorm and gatedRmsnorm, lib/ref/conv1d.ts causalConv1d) on random shapes.
 * Tolerance: none beyond float32's rounding — the kernels do the references' float64 arithmetic in the
 * references' order and round each result once, so every value is exactly fround(reference) (at most half a
 * float32 ulp from the float64 value); after the SIMD SiLU (asm/activations.ts, ≤ 2 ulp of its float32 input)
 * exactly what the wasm-simd backend's own `causalConv1d` / `gatedRmsnorm` give, and within
 * SILU_TOL·(1 + |reference|) of the float64 reference.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { getOps } from '../lib/ops.js';
import { causalConv1d } from '../lib/ref/conv1d.js';
import { gatedRmsnorm, rmsnorm } from '../lib/ref/norm.js';
import { Rng } from '../lib/rng.js';
import { Tensor } from '../lib/tensor.js';
import { repeatPieces, splitLast, splitRepeat } from '../lib/model/mixers/block.js';

/** float32 SiLU (a few ulp) of a float32-rounded argument against the float64 SiLU, relative to 1 + |value| */
const SILU_TOL = 1e-6;
const rnd = (r: Rng, n: number, a = 1) => Float32Array.from({ length: n }, () => r.uniform(-a, a));
const fround32 = (a: ArrayLike<number>) => Float32Array.from(a);

describe('ops.rows32 (wasm-simd, mil eval): float32 rows of the float64 references', () => {
  it('rmsnorm: every value is fround of lib/ref/norm.ts rmsnorm (random rows 1–13, widths 1–200, scales 1e-3–1e3, ε 1e-6–1e-2; numRuns 80)', async () => {
    const ops = await getOps('wasm-simd');
    const rows32 = ops.rows32;
    expect(rows32).toBeDefined();
    if (!rows32) return;
    fc.assert(
      fc.property(
        fc.record({
          N: fc.integer({ min: 1, max: 13 }),
          d: fc.oneof(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 10, max: 200 })),
          scale: fc.constantFrom(1e-3, 1, 1e3),
          eps: fc.constantFrom(1e-6, 1e-5, 1e-2),
          seed: fc.integer({ min: 0, max: 1e6 }),
        }),
        ({ N, d, scale, eps, seed }) => {
          const r = new Rng(seed);
          const x = new Tensor(rnd(r, N * d, scale), [N, d]); // (N, d)
          const w = new Tensor(rnd(r, d, 2), [d]); // (d)
          const got = rows32.rmsnorm(x, w, eps); // (N, d)
          expect(got.data).toBeInstanceOf(Float32Array);
          expect(got.shape).toEqual([N, d]);
          expect(got.data).toEqual(fround32(rmsnorm(x, w, eps).data));
        },
      ),
      { numRuns: 80 },
    );
  });

  it('causalConv1d on rows: before the activation every value is fround of lib/ref/conv1d.ts causalConv1d, the final states its own; with SiLU the wasm-simd op`s bits, within SILU_TOL of the float64 reference (random batch 1–3, windows 1–20, 1–40 channels at an offset in wider rows, widths 1–5, bias or not, initial states or not; numRuns 80)', async () => {
    const ops = await getOps('wasm-simd');
    const rows32 = ops.rows32;
    expect(rows32).toBeDefined();
    if (!rows32) return;
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          batch: fc.integer({ min: 1, max: 3 }),
          L: fc.integer({ min: 1, max: 20 }),
          C: fc.integer({ min: 1, max: 40 }),
          before: fc.integer({ min: 0, max: 7 }),
          after: fc.integer({ min: 0, max: 7 }),
          W: fc.integer({ min: 1, max: 5 }),
          bias: fc.boolean(),
          init: fc.boolean(),
          seed: fc.integer({ min: 0, max: 1e6 }),
        }),
        async ({ batch, L, C, before, after, W, bias, init, seed }) => {
          const r = new Rng(seed);
          const width = before + C + after;
          const rows = new Tensor(rnd(r, batch * L * width, 3), [batch, L, width]); // (b, l, width)
          const weight = new Tensor(rnd(r, C * W), [C, W]); // (C, W)
          const b = bias ? new Tensor(rnd(r, C), [C]) : undefined; // (C)
          const s0 = init ? new Tensor(rnd(r, batch * C * (W - 1), 3), [batch, C, W - 1]) : undefined; // (b, C, W−1)
          const x = new Tensor(new Float64Array(batch * C * L), [batch, C, L]); // (b, C, l): the reference's layout
          for (let bb = 0; bb < batch; bb++)
            for (let t = 0; t < L; t++)
              for (let c = 0; c < C; c++) x.data[(bb * C + c) * L + t] = rows.data[(bb * L + t) * width + before + c];
          /** (b, C, l) → (b, l, C) */
          const toRows = (t: Tensor) => {
            const o = new Float64Array(batch * L * C); // (b, l, C)
            for (let bb = 0; bb < batch; bb++)
              for (let tt = 0; tt < L; tt++)
                for (let c = 0; c < C; c++) o[(bb * L + tt) * C + c] = t.data[(bb * C + c) * L + tt];
            return o;
          };
          const want = causalConv1d({ x, weight, bias: b, initialStates: s0, activation: null });
          const pre = rows32.causalConv1d(rows, before, C, weight, b, s0, null);
          expect(pre.out.shape).toEqual([batch, L, C]);
          expect(pre.out.data).toEqual(fround32(toRows(want.out)));
          expect(pre.finalStates.shape).toEqual([batch, C, W - 1]);
          expect(pre.finalStates.data).toEqual(fround32(want.finalStates.data));
          const act = rows32.causalConv1d(rows, before, C, weight, b, s0, 'silu');
          const op = await ops.causalConv1d({ x, weight, bias: b, initialStates: s0, activation: 'silu' });
          expect(act.out.data).toEqual(fround32(toRows(op.out))); // the backend's op, the same bits
          const exact = toRows(causalConv1d({ x, weight, bias: b, initialStates: s0, activation: 'silu' }).out);
          exact.forEach((v, i) => {
            const err = Math.abs(act.out.data[i] - v) / (1 + Math.abs(v));
            if (!(err <= SILU_TOL)) expect(err, `value ${i}`).toBeLessThanOrEqual(SILU_TOL);
          });
        },
      ),
      { numRuns: 80 },
    );
  });

  it('gatedRmsnorm (gate before the norm, groups): the wasm-simd op`s bits, within SILU_TOL·(1 + |value|)·… of lib/ref/norm.ts gatedRmsnorm (random rows 1–9, 1–6 groups of 1–40, ε 1e-6–1e-2; numRuns 80)', async () => {
    const ops = await getOps('wasm-simd');
    const rows32 = ops.rows32;
    expect(rows32).toBeDefined();
    if (!rows32) return;
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          N: fc.integer({ min: 1, max: 9 }),
          groups: fc.integer({ min: 1, max: 6 }),
          g: fc.integer({ min: 1, max: 40 }),
          eps: fc.constantFrom(1e-6, 1e-5, 1e-2),
          seed: fc.integer({ min: 0, max: 1e6 }),
        }),
        async ({ N, groups, g, eps, seed }) => {
          const r = new Rng(seed);
          const d = groups * g;
          const x = new Tensor(rnd(r, N * d, 3), [N, d]); // (N, d)
          const z = new Tensor(rnd(r, N * d, 4), [N, d]); // (N, d)
          const w = new Tensor(rnd(r, d, 2), [d]); // (d)
          const opts = { eps, groupSize: g, normBeforeGate: false };
          const got = rows32.gatedRmsnorm(x, w, z, opts); // (N, d)
          expect(got.shape).toEqual([N, d]);
          expect(got.data).toEqual((await ops.gatedRmsnorm(x, w, z, opts)).data);
          // the float32 gate moves each gated value by a few 2⁻²⁴ relatively; the norm divides by the group's rms
          const want = gatedRmsnorm(x, w, z, opts).data;
          want.forEach((v, i) => {
            const err = Math.abs(got.data[i] - v) / (1 + Math.abs(v));
            if (!(err <= 4 * SILU_TOL)) expect(err, `value ${i}`).toBeLessThanOrEqual(4 * SILU_TOL);
          });
        },
      ),
      { numRuns: 80 },
    );
  });
});

describe("splitRepeat (Mamba-2's eval forward): the conv rows split and repeated per head in one pass", () => {
  it('= splitLast, then repeatPieces of x (pieces of P) and B (pieces of N), C as it is (random leading shapes, P and N 1–6, d_xb a multiple of both, d_in 1–3 times d_xb; numRuns 60)', () => {
    const gcd = (a: number, b: number): number => (b ? gcd(b, a % b) : a);
    fc.assert(
      fc.property(
        fc.record({
          lead: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 2 }),
          P: fc.integer({ min: 1, max: 6 }),
          N: fc.integer({ min: 1, max: 6 }),
          m: fc.integer({ min: 1, max: 3 }),
          rep: fc.integer({ min: 1, max: 3 }),
          seed: fc.integer({ min: 0, max: 1e6 }),
        }),
        ({ lead, P, N, m, rep, seed }) => {
          const dXb = (m * P * N) / gcd(P, N); // (kv heads' channels: whole pieces of P and of N)
          const dInner = rep * dXb;
          const width = 2 * dXb + dInner;
          const r = new Rng(seed);
          const rows = lead.reduce((a, b) => a * b, 1);
          const xs = Tensor.from(
            Float32Array.from({ length: rows * width }, () => r.normal()),
            [...lead, width],
          ); // (…, 2·d_xb + d_in)
          const [x0, B0, C] = splitLast(xs, [dXb, dXb, dInner]); // (…, d_xb) ×2, (…, d_in)
          const [x, B, C2] = splitRepeat(xs, dXb, dInner, P, N); // (…, d_in) ×3
          for (const t of [x, B, C2]) expect(t.shape).toEqual([...lead, dInner]);
          expect(Array.from(x.data)).toEqual(Array.from(repeatPieces(x0, dInner, P).data));
          expect(Array.from(B.data)).toEqual(Array.from(repeatPieces(B0, dInner, N).data));
          expect(Array.from(C2.data)).toEqual(Array.from(C.data));
        },
      ),
      { numRuns: 60 },
    );
  });
});
