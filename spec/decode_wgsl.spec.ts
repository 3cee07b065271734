/**
 * The decoded token's hand-written WGSL kernels (kernels/decode_wgsl.ts), each run alone through the resident
 * chain's `wgsl` (the decoder's own recording API) on webgpu — here Dawn's CPU adapter (lavapipe) — against a
 * float64 reference computed here from the same float32 inputs (plain loops over the formulas in each kernel's
 * header, not the kernel's code), on random shapes (fast-check, numRuns in the titles) that are mostly not
 * multiples of the workgroup (256 threads), of a gemv's column block (4 or 8) or k-lanes (64 or 32), of the argmax's
 * 1024-id chunk or of ssm_y's 8 n-lanes, with reductions longer than the threads that share them (the strided
 * loops run more than once) as well as short ones. The output buffer starts as NaN (every value must be written).
 *
 * Tolerances, per element, u = 2⁻²⁴ (float32's unit roundoff), γ_n = n·u/(1 − n·u): a float32 sum of n terms in
 * any order (strided partial sums, then a tree) is within γ_{n−1} Σ|terms| of the exact sum (Higham, Accuracy and
 * Stability, §4.2), and each product adds one rounding, so
 *   gemv (K products, + the added value):   |ŷ − y| ≤ γ_{K+1} (Σ_k |w||x| + |a|)
 *   swiglu: the two sums as above, then silu(g)·u: silu' ≤ 1.1, and exp, the division and the products add
 *           relative (3 + 2|g|) ulp (WGSL's exp bound) + 4 ulp
 *   norms: Σh² has positive terms, so its relative error is ≤ γ_{GS+1}; the square root halves that, and
 *          mean, +ε, sqrt (inherited from inverseSqrt: ≤ 4.5 ulp), the division and two products add ≤ 10 ulp
 *   attention scores: γ_{hd+1} Σ_c |q||k| / √hd + 1 ulp (the scale)
 *   attention values: each e_j = exp(s_j − M) is off by ≤ (4 + 3|s_j − M|) ulp relatively (the subtraction's
 *          rounding, then exp); numerator and Σe_j add γ_n relatively to Σ e_j|v_j| and Σ e_j; then a division
 *   ssm_y: γ_{N+1} (|D x| + Σ_n |h||C|), times |silu(z)|, plus the gate's exp (as swiglu)
 *   window y (m2WindowYWgsl): as ssm_y with |h| replaced by the recurrence's magnitude M_t = Ā_t M_{t−1} + |Δ x B|,
 *          plus (t + 1)(ε_Ā + 4u)·Σ_n M_{t,n}|C_n| for row t's state (each step's Ā = exp(ΔA) off by ε_Ā ≤
 *          (4 + 2|ΔA|) ulp, ≤ 4 roundings in the update; Ā ≤ 1, so earlier errors do not grow)
 * and every bound is doubled (a margin for the CPU adapter's transcendental functions; the measured errors
 * sit far below: ≤ 0.22 of the doubled bound on these runs). The argmax is exact: the first maximum, ties to the lowest id (the
 * decoder's rule, lib/model/generate.ts `argmax`), checked on logits drawn from a few levels so ties are common,
 * including one planted on each side of a 1024-id chunk boundary.
 * Mutations tried, each failing the named test(s): gemv — the last strided k dropped, the tree's last step
 * dropped, swiglu's silu(−g), the residual indexed as a bias, a row block's last row dropped; norms — Σv²'s last
 * strided term dropped, the tree started at G/4, the mean over GS + 1 (both norm tests each); argmax — ties to the
 * highest id and the tree's last step (both argmax tests), a chunk's last strided pass or the final dispatch's
 * strided pass dropped (the planted test); scores — the causal bound j < pos + t, the last vec4 dropped; values —
 * the max's or the value loop's last strided key dropped, the j-lane tree striding by 1; ssm_y — the last strided
 * n dropped, the tree started at NL/4, silu(−z), D·x without the grouped-query repeat; window y — the state not
 * carried from row to row, Ā of head 0, the last strided n dropped, the tree started at NL/4, row 0's z for every
 * row, the last row not written, B without the repeat (each also fails at least one of spec/gpu_verify.spec.ts's
 * Mamba-2 tests).
 */
import fc from 'fast-check';
import { afterAll, describe, expect } from 'vitest';
import {
  argmaxChunks,
  argmaxChunksWgsl,
  argmaxFinalWgsl,
  attentionScoresWgsl,
  attentionValuesWgsl,
  attentionValuesWgslFits,
  gemvKernel,
  groupNormWgsl,
  m2WindowYWgsl,
  rmsnormWgsl,
  ssmYWgsl,
  type GemvEpilogue,
} from '../kernels/decode_wgsl.js';
import { ResidentChain, type ChainBuffer, type WgslKernel } from '../kernels/resident_chain.js';
import { Rng } from '../lib/rng.js';
import { webgpuIt as run } from './gpu_helpers.js';

const U = 2 ** -24;
const gamma = (n: number) => (n * U) / (1 - n * U);
/** every bound above, doubled */
const MARGIN = 2;

const silu = (v: number) => v / (1 + Math.exp(-v));
const normals = (r: Rng, n: number, std = 1) => Float32Array.from({ length: n }, () => r.normal(0, std));

/** |got − want| ≤ MARGIN · bound, element by element; returns the worst ratio (for the message). */
function expectWithin(got: Float32Array, want: Float64Array, bound: Float64Array, what: string): void {
  expect(got.length, what).toBe(want.length);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i] - want[i]) / (MARGIN * bound[i] + Number.MIN_VALUE);
    if (!(e <= worst)) {
      worst = Number.isNaN(e) ? Infinity : e;
      at = i;
    }
  }
  expect(worst, `${what}: worst |err|/bound at ${at}: got ${got[at]}, want ${want[at]}`).toBeLessThanOrEqual(1);
}

describe('decode WGSL kernels (kernels/decode_wgsl.ts), each alone, on webgpu', () => {
  let chain: ResidentChain | undefined;
  let programs = 0;
  afterAll(() => chain?.destroy());

  /**
   * Record `steps` into a fresh program of the one chain (inputs uploaded, each step's output NaN-filled), run it
   * and read every step's output.
   */
  const runSteps = async (
    inputs: Float32Array[],
    steps: ReadonlyArray<{ k: WgslKernel; args: number[] }>,
  ): Promise<Float32Array[]> => {
    const c = (chain ??= await ResidentChain.create());
    const bufs: ChainBuffer[] = inputs.map((v, j) => c.buffer(`in ${j}`, v.length, v));
    const outs: ChainBuffer[] = [];
    const name = `case ${programs++}`;
    c.record(name);
    for (const [i, s] of steps.entries()) {
      const out = c.buffer(`out ${i}`, s.k.size, new Float32Array(s.k.size).fill(NaN));
      // argument j < 0: the output of step −j − 1
      await c.wgsl(
        s.k.key,
        s.k,
        s.args.map((j) => (j >= 0 ? bufs[j] : outs[-j - 1])),
        out,
      );
      outs.push(out);
    }
    return c.run(
      { pos: 0 },
      outs.map((from) => ({ from })),
      name,
    );
  };
  const runOne = async (k: WgslKernel, inputs: Float32Array[]): Promise<Float32Array> => {
    const [out] = await runSteps(inputs, [{ k, args: inputs.map((_, j) => j) }]);
    return out;
  };

  // ---------------------------------------------------------------- gemv

  /** y_{t,r} = Σ_k Wᵀ[k, r] x_{t,k} (+ add_{(t·R + r) mod AN}) or swiglu's silu(Σ Wg x)·Σ Wu x, and the bound */
  function gemvRef(
    e: GemvEpilogue,
    K: number,
    R: number,
    T: number,
    x: Float32Array,
    w: Float32Array,
    third: Float32Array,
  ): { want: Float64Array; bound: Float64Array } {
    const want = new Float64Array(T * R);
    const bound = new Float64Array(T * R);
    const g = gamma(K + 1);
    for (let t = 0; t < T; t++)
      for (let r = 0; r < R; r++) {
        let [s, a, s2, a2] = [0, 0, 0, 0];
        for (let k = 0; k < K; k++) {
          const xv = x[t * K + k];
          s += w[k * R + r] * xv;
          a += Math.abs(w[k * R + r] * xv);
          if (e === 'swiglu') {
            s2 += third[k * R + r] * xv;
            a2 += Math.abs(third[k * R + r] * xv);
          }
        }
        const i = t * R + r;
        if (e === 'none') [want[i], bound[i]] = [s, g * a];
        else if (e === 'add') {
          const av = third[i % third.length];
          [want[i], bound[i]] = [s + av, g * (a + Math.abs(av))];
        } else {
          want[i] = silu(s) * s2;
          const eg = g * a;
          const eu = g * a2;
          bound[i] =
            1.1 * eg * (Math.abs(s2) + eu) + Math.abs(silu(s)) * eu + (7 + 2 * Math.abs(s)) * U * Math.abs(want[i]);
        }
      }
    return { want, bound };
  }

  const gemvCase = fc.record({
    epilogue: fc.constantFrom<GemvEpilogue>('none', 'add', 'swiglu'),
    // few distinct K-lane / column / row-block layouts (each a module to compile); K and R are uniforms
    K: fc.oneof(fc.integer({ min: 1, max: 70 }), fc.integer({ min: 200, max: 700 })),
    R: fc.oneof(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1024, max: 1100 })),
    // one row; a partial block; a block of 8 and a row (swiglu) or one block of 9; two blocks of 16 and a row (17)
    T: fc.constantFrom(1, 3, 9, 17),
    bias: fc.boolean(),
    seed: fc.nat(),
  });

  run(
    'gemv (none / add residual or bias / swiglu) = the float64 product within 2·γ_{K+1}·Σ|w||x| (numRuns 10)',
    async () => {
      await fc.assert(
        fc.asyncProperty(gemvCase, async ({ epilogue, K, R, T, bias, seed }) => {
          const r = new Rng(seed);
          const x = normals(r, T * K); // (T, K)
          const w = normals(r, K * R); // (K, R): Wᵀ
          const addLen = epilogue === 'add' ? (bias ? R : T * R) : 0;
          const third = epilogue === 'swiglu' ? normals(r, K * R) : normals(r, Math.max(1, addLen));
          const k = gemvKernel(K, R, T, epilogue, addLen);
          const got = await runOne(k, epilogue === 'none' ? [x, w] : [x, w, third]);
          const { want, bound } = gemvRef(epilogue, K, R, T, x, w, third);
          expectWithin(got, want, bound, JSON.stringify({ epilogue, K, R, T, bias, seed }));
        }),
        { numRuns: 10 },
      );
    },
  );

  // ---------------------------------------------------------------- norms

  /** y_c = v_c / √(Σ_{c' in c's group} v²/GS + ε) · w_{c mod W} in float64, and the bound (see the header) */
  function normRef(GS: number, eps: number, W: number, T: number, v: Float32Array, w: Float32Array) {
    const want = new Float64Array(T * W);
    const bound = new Float64Array(T * W);
    const rel = gamma(GS + 1) / 2 + 10 * U;
    for (let g0 = 0; g0 < T * W; g0 += GS) {
      let s = 0;
      for (let i = 0; i < GS; i++) s += v[g0 + i] * v[g0 + i];
      const inv = 1 / Math.sqrt(s / GS + eps);
      for (let i = g0; i < g0 + GS; i++) {
        want[i] = v[i] * inv * w[i % W];
        bound[i] = rel * Math.abs(want[i]);
      }
    }
    return { want, bound };
  }

  run(
    'rmsnormWgsl (one 256-thread group a row) = the float64 RMSNorm within 2·(γ_{d+1}/2 + 10u)·|y| (numRuns 8)',
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.record({
            d: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 257, max: 1300 })),
            T: fc.integer({ min: 1, max: 4 }),
            eps: fc.constantFrom(1e-5, 1e-6),
            seed: fc.nat(),
          }),
          async ({ d, T, eps, seed }) => {
            const r = new Rng(seed);
            const v = normals(r, T * d, 3); // (T, d)
            const w = normals(r, d); // (d)
            const got = await runOne(rmsnormWgsl(d, eps, T), [v, w]);
            const { want, bound } = normRef(d, eps, d, T, v, w);
            expectWithin(got, want, bound, JSON.stringify({ d, T, eps, seed }));
          },
        ),
        { numRuns: 8 },
      );
    },
  );

  run(
    'groupNormWgsl (Mamba-2 gated-norm groups, 64 threads a group) = the float64 group norm (numRuns 8)',
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.record({
            GS: fc.oneof(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 65, max: 300 })),
            groups: fc.integer({ min: 1, max: 5 }),
            T: fc.integer({ min: 1, max: 3 }),
            seed: fc.nat(),
          }),
          async ({ GS, groups, T, seed }) => {
            const W = GS * groups;
            const r = new Rng(seed);
            const v = normals(r, T * W, 2); // (T, W)
            const w = normals(r, W); // (W)
            const got = await runOne(groupNormWgsl(GS, 1e-5, W, T), [v, w]);
            const { want, bound } = normRef(GS, 1e-5, W, T, v, w);
            expectWithin(got, want, bound, JSON.stringify({ GS, groups, T, seed }));
          },
        ),
        { numRuns: 8 },
      );
    },
  );

  // ---------------------------------------------------------------- argmax

  /** the first maximum of each row (ties: the lowest id) */
  const firstMax = (l: Float32Array, V: number, t: number, lo = 0, hi = V): number => {
    let a = lo;
    for (let i = lo + 1; i < hi; i++) if (l[t * V + i] > l[t * V + a]) a = i;
    return a;
  };

  /** Both dispatches in one program: each chunk's first maximum, and each row's. */
  const checkArgmax = async (V: number, T: number, l: Float32Array, what: string) => {
    const [chunks, ids] = await runSteps(
      [l],
      [
        { k: argmaxChunksWgsl(V, T), args: [0] },
        { k: argmaxFinalWgsl(V, T), args: [0, -1] },
      ],
    );
    const G = argmaxChunks(V);
    const wantChunks = Array.from({ length: T * G }, (_, i) => {
      const [t, g] = [Math.floor(i / G), i % G];
      return firstMax(l, V, t, g * 1024, Math.min(V, g * 1024 + 1024));
    });
    expect(Array.from(chunks), `${what}: chunk ids`).toEqual(wantChunks);
    expect(Array.from(ids), `${what}: row ids`).toEqual(Array.from({ length: T }, (_, t) => firstMax(l, V, t)));
  };

  run(
    'argmax (chunks of 1024, then the rows) = the first maximum, ties to the lowest id, exactly (numRuns 8)',
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.record({
            V: fc.oneof(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1000, max: 5000 })),
            T: fc.integer({ min: 1, max: 3 }),
            levels: fc.integer({ min: 1, max: 6 }),
            seed: fc.nat(),
          }),
          async ({ V, T, levels, seed }) => {
            const r = new Rng(seed);
            // (T, V): a few levels (many ties), negative ones too
            const l = Float32Array.from({ length: T * V }, () => r.int(0, levels - 1) - 2);
            await checkArgmax(V, T, l, JSON.stringify({ V, T, levels, seed }));
          },
        ),
        { numRuns: 8 },
      );
    },
  );

  run('argmax ties across a chunk boundary and past 256 chunks (the final dispatch strided)', async () => {
    const r = new Rng(7);
    // the maximum at 1023 and 1024 (last of chunk 0, first of chunk 1), and at 1024 and 2047 (one chunk)
    for (const [a, b] of [
      [1023, 1024],
      [1024, 2047],
      [2047, 3000],
    ]) {
      const V = 3001;
      const l = Float32Array.from({ length: V }, () => r.normal(0, 1)); // (1, V)
      l[b] = l[a] = 9;
      await checkArgmax(V, 1, l, `max at ${a} and ${b}`);
    }
    // 300 chunks: the final dispatch's threads take chunks g and g + 256; the maximum in the last chunk,
    // then a tie of it in chunk 256·k + lane 0 (read in the strided step) and an earlier one
    const V = 300 * 1024 - 5;
    const T = 2;
    const l = Float32Array.from({ length: T * V }, () => r.normal(0, 1)); // (T, V)
    l[V - 1] = 50; // row 0: in chunk 299 (the second strided pass)
    l[V + 256 * 1024 + 3] = 50; // row 1: in chunk 256, and its tie further on
    l[V + 299 * 1024] = 50;
    await checkArgmax(V, T, l, '300 chunks');
  });

  // ---------------------------------------------------------------- attention

  const attnCase = fc.record({
    H: fc.integer({ min: 1, max: 4 }),
    group: fc.integer({ min: 1, max: 2 }),
    hd: fc.constantFrom(4, 8, 16),
    T: fc.integer({ min: 1, max: 3 }),
    pos: fc.oneof(fc.integer({ min: 0, max: 10 }), fc.integer({ min: 250, max: 600 })),
    seed: fc.nat(),
  });

  run('attentionScoresWgsl = q·k/√hd for j ≤ pos + t, −3e38 past it (numRuns 8)', async () => {
    await fc.assert(
      fc.asyncProperty(attnCase, async ({ H: Hkv, group, hd, T, pos, seed }) => {
        const H = Hkv * group;
        const cap = pos + T + 3;
        const r = new Rng(seed);
        const [Q, KV] = [H * hd, Hkv * hd];
        const qkv = normals(r, T * (Q + 2 * KV)); // [q (T, Q) | k | v]
        const kc = normals(r, cap * KV); // (cap, H_kv·hd)
        const mt = Float32Array.of(0, pos);
        const got = await runOne(attentionScoresWgsl(H, Hkv, hd, cap, T), [qkv, kc, mt]);
        const want = new Float64Array(T * H * cap);
        const bound = new Float64Array(T * H * cap);
        for (let t = 0; t < T; t++)
          for (let h = 0; h < H; h++)
            for (let j = 0; j < cap; j++) {
              const i = (t * H + h) * cap + j;
              if (j > pos + t) {
                want[i] = Math.fround(-3e38);
                continue;
              }
              const g = Math.floor(h / group);
              let [s, a] = [0, 0];
              for (let c = 0; c < hd; c++) {
                const p = qkv[t * Q + h * hd + c] * kc[j * KV + g * hd + c];
                s += p;
                a += Math.abs(p);
              }
              want[i] = s / Math.sqrt(hd);
              bound[i] = gamma(hd + 1) * (a / Math.sqrt(hd)) + U * Math.abs(want[i]);
            }
        expectWithin(got, want, bound, JSON.stringify({ H, Hkv, hd, T, pos, seed }));
      }),
      { numRuns: 8 },
    );
  });

  run('attentionValuesWgsl = softmax(scores)·v over j ≤ pos + t in float64 (numRuns 8)', async () => {
    await fc.assert(
      fc.asyncProperty(attnCase, async ({ H: Hkv, group, hd, T, pos, seed }) => {
        expect(attentionValuesWgslFits(hd)).toBe(true);
        const H = Hkv * group;
        const cap = pos + T + 3;
        const KV = Hkv * hd;
        const r = new Rng(seed);
        const scores = normals(r, T * H * cap, 2); // (T·H, cap)
        for (let t = 0; t < T; t++)
          for (let h = 0; h < H; h++) for (let j = pos + t + 1; j < cap; j++) scores[(t * H + h) * cap + j] = -3e38;
        const vc = normals(r, cap * KV); // (cap, H_kv·hd)
        const mt = Float32Array.of(0, pos);
        const got = await runOne(attentionValuesWgsl(H, Hkv, hd, cap, T), [scores, vc, mt]);
        const want = new Float64Array(T * H * hd);
        const bound = new Float64Array(T * H * hd);
        for (let t = 0; t < T; t++)
          for (let h = 0; h < H; h++) {
            const row = (t * H + h) * cap;
            const n = pos + t + 1;
            let M = -Infinity;
            for (let j = 0; j < n; j++) M = Math.max(M, scores[row + j]);
            let [Z, spread] = [0, 0];
            for (let j = 0; j < n; j++) {
              Z += Math.exp(scores[row + j] - M);
              spread = Math.max(spread, M - scores[row + j]);
            }
            const rel = (4 + 3 * spread) * U + gamma(n);
            const g = Math.floor(h / group);
            for (let c = 0; c < hd; c++) {
              let [y, a] = [0, 0];
              for (let j = 0; j < n; j++) {
                const e = Math.exp(scores[row + j] - M);
                y += e * vc[j * KV + g * hd + c];
                a += e * Math.abs(vc[j * KV + g * hd + c]);
              }
              const i = (t * H + h) * hd + c;
              want[i] = y / Z;
              bound[i] = rel * (a / Z + Math.abs(want[i])) + 3 * U * Math.abs(want[i]);
            }
          }
        expectWithin(got, want, bound, JSON.stringify({ H, Hkv, hd, T, pos, seed }));
      }),
      { numRuns: 8 },
    );
  });

  // ---------------------------------------------------------------- Mamba-2 y

  /** the Mamba-2 shapes: H heads of P channels, state N, x and B shared by REP heads (grouped-query repeat) */
  const ssmCase = fc.record({
    Hx: fc.integer({ min: 1, max: 3 }),
    REP: fc.integer({ min: 1, max: 3 }),
    P: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 30, max: 70 })),
    N: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 9, max: 70 })),
    gated: fc.boolean(),
    seed: fc.nat(),
  });

  run('ssmYWgsl = (D x + Σ_n h C)·silu(z) in float64 within 2·γ_{N+1}·(|D x| + Σ|h||C|) (numRuns 8)', async () => {
    await fc.assert(
      fc.asyncProperty(ssmCase, async ({ Hx, REP, P, N, gated, seed }) => {
        const H = Hx * REP;
        const [dInner, dXb] = [H * P, Hx * P];
        const r = new Rng(seed);
        const ssm = normals(r, dInner * N); // (H, P, N): h
        const xs = normals(r, 2 * dXb + H * N); // [x (d_xb) | B (d_xb) | C (H·N)]
        const zx = normals(r, dInner + 5); // [z (d_in) | …]
        const par = normals(r, 3 * H); // [A (H) | dt_bias (H) | D (H)]
        const got = await runOne(ssmYWgsl(H, P, N, dXb, dInner, gated), [ssm, xs, zx, par]);
        const want = new Float64Array(dInner);
        const bound = new Float64Array(dInner);
        for (let h = 0; h < H; h++)
          for (let p = 0; p < P; p++) {
            const c = h * P + p;
            const dx = par[2 * H + h] * xs[Math.floor(h / REP) * P + p];
            let [y, a] = [dx, Math.abs(dx)];
            for (let n = 0; n < N; n++) {
              const v = ssm[c * N + n] * xs[2 * dXb + h * N + n];
              y += v;
              a += Math.abs(v);
            }
            const gate = gated ? silu(zx[c]) : 1;
            want[c] = y * gate;
            bound[c] =
              gamma(N + 1) * a * Math.abs(gate) + (gated ? (7 + 2 * Math.abs(zx[c])) * U * Math.abs(want[c]) : 0);
          }
        expectWithin(got, want, bound, JSON.stringify({ H, REP, P, N, gated, seed }));
      }),
      { numRuns: 8 },
    );
  });

  run(
    'm2WindowYWgsl = the window replayed from the cached h in float64 (Algorithm 2), gated or not (numRuns 8)',
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.record({
            Hx: fc.integer({ min: 1, max: 3 }),
            REP: fc.integer({ min: 1, max: 3 }),
            // P = N as the hybrids have it, or P > N (x, B and C then read at distinct offsets)
            N: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 9, max: 70 })),
            Pextra: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 40 })),
            T: fc.oneof(fc.integer({ min: 1, max: 10 }), fc.constant(64)),
            gated: fc.boolean(),
            seed: fc.nat(),
          }),
          async ({ Hx, REP, N, Pextra, T, gated, seed }) => {
            const H = Hx * REP;
            const P = N + Pextra;
            const [dInner, dXb] = [H * P, Hx * P];
            const CD = dInner + 2 * dXb;
            const RZ = dInner + 3;
            const r = new Rng(seed);
            const ssm = normals(r, dInner * N); // (H, P, N): the cached h
            const xs = normals(r, T * CD); // (T, [x (d_xb) | B (d_xb) | C (d_in)])
            const zx = normals(r, T * RZ); // (T, [z (d_in) | …])
            const par = Float32Array.from({ length: 3 * H }, (_, i) => (i < H ? -r.uniform(0.05, 2) : r.normal(0, 1))); // [A | dt_bias | D]
            const delta = Float32Array.from({ length: T * H }, () => r.uniform(0.01, 1.5)); // (T, H): Δ = softplus(…) > 0
            const got = await runOne(m2WindowYWgsl(H, P, N, dXb, dInner, RZ, gated, T), [ssm, xs, zx, par, delta]);
            // float64: the recurrence per (channel, n) and, alongside, its magnitude M_t = Ā_t M_{t−1} + |Δ x B|;
            // each step's Ā is off by ≤ (4 + 2|ΔA|) ulp and the update rounds ≤ 4 times, and Ā ≤ 1 keeps the
            // errors from growing, so row t's h is within (t + 1)(ε_Ā + 4u)·M_t (see the file's header for the rest)
            const want = new Float64Array(T * dInner);
            const scale = new Float64Array(T * dInner);
            const epsA = new Float64Array(H);
            for (let h = 0; h < H; h++)
              for (let t = 0; t < T; t++)
                epsA[h] = Math.max(epsA[h], (4 + 2 * Math.abs(delta[t * H + h] * par[h])) * U);
            for (let c = 0; c < dInner; c++) {
              const h = Math.floor(c / P);
              const src = Math.floor(h / REP) * P;
              const p = c - h * P;
              for (let t = 0; t < T; t++) {
                const dx = par[2 * H + h] * xs[t * CD + src + p];
                want[t * dInner + c] = dx;
                scale[t * dInner + c] = Math.abs(dx);
              }
              for (let n = 0; n < N; n++) {
                let [hv, mag] = [ssm[c * N + n], Math.abs(ssm[c * N + n])];
                for (let t = 0; t < T; t++) {
                  const dl = delta[t * H + h];
                  const a = Math.exp(dl * par[h]);
                  const bx = dl * xs[t * CD + src + p] * xs[t * CD + dXb + src + n];
                  hv = a * hv + bx;
                  mag = a * mag + Math.abs(bx);
                  const C = xs[t * CD + 2 * dXb + h * N + n];
                  want[t * dInner + c] += hv * C;
                  scale[t * dInner + c] += mag * Math.abs(C);
                }
              }
            }
            const bound = new Float64Array(T * dInner);
            for (let t = 0; t < T; t++)
              for (let c = 0; c < dInner; c++) {
                const i = t * dInner + c;
                const z = zx[t * RZ + c];
                const gate = gated ? silu(z) : 1;
                const h = Math.floor(c / P);
                bound[i] =
                  (gamma(N + 1) + (t + 1) * (epsA[h] + 4 * U)) * scale[i] * Math.abs(gate) +
                  (gated ? (7 + 2 * Math.abs(z)) * U * Math.abs(want[i] * gate) : 0);
                want[i] *= gate;
              }
            expectWithin(got, want, bound, JSON.stringify({ H, REP, P, N, T, gated, seed }));
          },
        ),
        { numRuns: 8 },
      );
    },
  );
});
