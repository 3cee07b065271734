/**
 * The GPU training step's Mamba-2 parameter-gradient kernels, each on its own, against float64 references written
 * here as straight loops from the formulas of kernels/train_mamba.ts's header (lib/ref/norm.ts gatedRmsnormBackward
 * for the norm), on GPU.js's cpu backend and on webgpu — here Dawn's CPU adapter — on random shapes (fast-check,
 * numRuns in the titles; b ≤ 2, l ≤ 75, so N ≤ 150 rows and the default C = min(64, N) row chunks of the two-level
 * sums is both N and below N, dividing it or not; H ∈ {2, 3} heads of HW ∈ 2…4 channels, N_s ∈ 1…4):
 *   ∂ℓ/∂A_log  scanDalogTermsKernel (per row and channel Σ_s G_t Δ_t e_t h_{t−1}), then headSumKernels(terms, × A_h)
 *   ∂ℓ/∂D      headSumKernels(product) and the one-level scanDdKernel: Σ_{n,p} dy·x per head
 *   ∂ℓ/∂Δ      scanDdeltaTermsKernel (Σ_s G_t (A_h e_t h_{t−1} + B_t x_t)), then rowHeadSumKernel; the one-level
 *              scanDdeltaKernel likewise
 *   ∂ℓ/∂w      gatedRmsnormDwKernels' parts + dwFoldKernel, gate first (Mamba-2), norm first and no gate
 * The kernels are pure functions of their buffers, so the stored states h and the backward state G are random
 * arrays in the chain's (N, I, N_s) layout (lib/train/gpu_step.ts scanBack), not a scan's: the references read
 * them with the same meaning, h_{t−1} the row before within a sequence and 0 at its t = 0. Inputs are float32
 * values, the references run on them in float64, so what is measured is the kernels' own float32 arithmetic.
 * Tolerances: the per-(row, channel) terms (N·I values, sums of ≤ 4) by relative error (lib/tensor.ts relError)
 * ≤ FLOAT32_TOL = 1e-4; the sums (per head over N·HW·N_s terms, per row over HW·N_s, per column over N rows) by
 * ‖got − want‖₂ ≤ 1e-4·‖Σ|terms|‖₂ (helpers.ts expectCloseToTerms, Σ|terms| in float64 here): a relative bound
 * has none when the terms cancel — seen here, the norm's dw at d = 1 over 150 rows (an example below): relative
 * error 3.9e-4 with the error 4.6e-9 of Σ|terms|. Measured (100 runs a backend): terms ≤ 2.6e-7 relative; the
 * sums ≤ 1.6e-7 of Σ|terms| (relative 4.6e-6 at most, bar that example).
 * Mutations tried (each failed these tests, both backends, then restored): the head sum's parts leaving out the
 * last row (dAlog, dD: error 0.56 against Σ|terms| 254), its STEPS ⌊N/C⌋ in place of ⌈N/C⌉ (dAlog, dD at
 * N = 134), its fold over C − 1 parts and without × A_h (dAlog: 19 against 254); dAlog terms on h_t in place of
 * h_{t−1} (relative 1.4) or without Δ_t; h_{t−1} taken across sequences (n > 0 for t > 0: dAlog and dΔ terms,
 * 0.09 and 0.04); dΔ terms without B·x (0.20) or without e_t; rowHeadSumKernel over HW − 1 channels; scanDdKernel
 * leaving out the last row; the norm's dw without silu(z) after the norm, or with x for x·silu(z) before it, its
 * parts leaving out the last row or with ⌊N/C⌋ steps, dwFoldKernel over C − 1 parts.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { gatedRmsnormBackward } from '../lib/ref/norm.js';
import { getRuntime, type GpuRuntime, type KernelBackendName } from '../kernels/runtime.js';
import { runTrainKernel, type TrainKernel } from '../kernels/train_layers.js';
import {
  headSumKernels,
  rowHeadSumKernel,
  scanDalogTermsKernel,
  scanDdKernel,
  scanDdeltaKernel,
  scanDdeltaTermsKernel,
  type ScanRows,
} from '../kernels/train_mamba.js';
import { gatedRmsnormDwKernels } from '../kernels/gated_rmsnorm.js';
import { relError, Tensor } from '../lib/tensor.js';
import { FLOAT32_TOL, KERNEL_BACKENDS, Rng, expectCloseToTerms } from './helpers.js';

type F = Float64Array;
const dim = (max: number) => fc.integer({ min: 1, max });

/** n float32-representable normal values (as float64). */
function normal(r: Rng, n: number, mean = 0, std = 1): F {
  return Float64Array.from({ length: n }, () => Math.fround(r.normal(mean, std)));
}
const f32 = (a: ArrayLike<number>) => Float32Array.from(a);
const silu = (v: number) => v / (1 + Math.exp(-v));

function close(got: ArrayLike<number>, want: ArrayLike<number>, what: string, tol = FLOAT32_TOL): void {
  expect(got.length, `${what} length`).toBe(want.length);
  const e = relError(got, want);
  expect(e, `${what}: relative error ${e}`).toBeLessThanOrEqual(tol);
}

/** a sum's values against their float64 ones: ‖got − want‖₂ ≤ FLOAT32_TOL·‖Σ|terms|‖₂ (helpers.ts expectCloseToTerms) */
const vec = (a: ArrayLike<number>) => new Tensor(Float64Array.from(a), [a.length]);
const closeToTerms = (got: ArrayLike<number>, want: ArrayLike<number>, absTerms: ArrayLike<number>, what: string) =>
  expectCloseToTerms(vec(got), vec(want), absTerms, FLOAT32_TOL, what);

/**
 * A random Mamba-2 scan shape: b ≤ 2 sequences of l ≤ 75 (N ≤ 150 rows), H ∈ {2, 3} heads of HW ∈ 2…4 channels,
 * N_s a divisor ≤ 4 of I = H·HW (B's columns are read in groups of N_s, ScanRows), the chunk length (unused by
 * these kernels) 1…16.
 */
const scanShape = fc
  .record({
    batch: dim(2),
    L: dim(75),
    H: fc.integer({ min: 2, max: 3 }),
    HW: fc.integer({ min: 2, max: 4 }),
    ns: fc.nat(),
    chunk: dim(16),
  })
  .map(({ batch, L, H, HW, ns, chunk }): ScanRows => {
    const I = H * HW;
    const divisors = [1, 2, 3, 4].filter((d) => I % d === 0);
    return { batch, L, I, Ns: divisors[ns % divisors.length], HW, aPerState: false, chunk };
  });

/** the two-level sums' row chunks C: their default min(64, N), or 1 … 70 (the default when over N) */
const chunkCount = fc.oneof(fc.constant(undefined), dim(70));
const chunksFor = (C: number | undefined, N: number) => (C !== undefined && C <= N ? C : undefined);

/**
 * The scan kernels' inputs, in the chain's layouts (lib/train/gpu_step.ts scanBack): x (N, I); B (N, I) read in
 * groups of N_s; Δ (N, H) = softplus of a normal(−2, 1) (0.02 … 1 mostly); A_log (H) = log U(1, 16) (Mamba-2's
 * init); the stored states h and the backward state G (N, I, N_s), index ((n·I + c)·N_s + s), here any random
 * values (the kernels are pure functions of them); dy (N, I).
 */
function scanInputs(r: Rng, s: ScanRows) {
  const N = s.batch * s.L;
  const H = s.I / s.HW;
  return {
    x: normal(r, N * s.I),
    B: normal(r, N * s.I),
    dl: Float64Array.from({ length: N * H }, () => Math.fround(Math.log1p(Math.exp(r.normal(-2, 1))))),
    alog: Float64Array.from({ length: H }, () => Math.fround(Math.log(r.uniform(1, 16)))),
    h: normal(r, N * s.I * s.Ns),
    G: normal(r, N * s.I * s.Ns),
    dy: normal(r, N * s.I),
  };
}

/**
 * Float64 references of the scan's parameter gradients from the header of kernels/train_mamba.ts, straight loops
 * over sequence b, step t (row n = b·l + t), head h, channel p of the head (c = h·HW + p), state s:
 *   h_{t−1} = the stored state of row n − 1 for t > 0, 0 at t = 0 (each sequence starts from zero)
 *   dAlog terms[n, c] = Σ_s G_t Δ_t e_t h_{t−1},  e_t = exp(Δ_t A_h), A_h = −exp(A_log[h]);  ∂ℓ/∂A_log[h] = A_h Σ_{n,p} terms
 *   dΔ terms[n, c] = Σ_s G_t (A_h e_t h_{t−1} + B_t[s] x_t[p]);   ∂ℓ/∂Δ[n, h] = Σ_p terms
 *   ∂ℓ/∂D_h = Σ_{n,p} dy x
 * each with Σ|terms| beside it (for the sums' bounds).
 */
function scanReference(s: ScanRows, v: ReturnType<typeof scanInputs>) {
  const { L, I, Ns, HW } = s;
  const H = I / HW;
  const N = s.batch * L;
  const out = {
    alogTerms: new Float64Array(N * I),
    dAlog: new Float64Array(H),
    dAlogAbs: new Float64Array(H),
    deltaTerms: new Float64Array(N * I),
    dDelta: new Float64Array(N * H),
    dDeltaAbs: new Float64Array(N * H),
    dD: new Float64Array(H),
    dDAbs: new Float64Array(H),
  };
  for (let b = 0; b < s.batch; b++) {
    for (let t = 0; t < L; t++) {
      const n = b * L + t;
      for (let h = 0; h < H; h++) {
        const A = -Math.exp(v.alog[h]);
        const delta = v.dl[n * H + h];
        const e = Math.exp(delta * A);
        for (let p = 0; p < HW; p++) {
          const c = h * HW + p;
          const xv = v.x[n * I + c];
          const group = Math.floor(c / Ns) * Ns; // B's columns of channel c
          for (let st = 0; st < Ns; st++) {
            const prev = t === 0 ? 0 : v.h[((b * L + t - 1) * I + c) * Ns + st];
            const G = v.G[(n * I + c) * Ns + st];
            const ta = G * delta * e * prev;
            out.alogTerms[n * I + c] += ta;
            out.dAlog[h] += A * ta;
            out.dAlogAbs[h] += Math.abs(A * ta);
            const t1 = G * A * e * prev;
            const t2 = G * v.B[n * I + group + st] * xv;
            out.deltaTerms[n * I + c] += t1 + t2;
            out.dDelta[n * H + h] += t1 + t2;
            out.dDeltaAbs[n * H + h] += Math.abs(t1) + Math.abs(t2);
          }
          const td = v.dy[n * I + c] * xv;
          out.dD[h] += td;
          out.dDAbs[h] += Math.abs(td);
        }
      }
    }
  }
  return out;
}

const BACKENDS = KERNEL_BACKENDS.filter((b) => b.name === 'cpu' || b.name === 'webgpu');

/** the shapes every scan property runs besides its random draws: N = 134 rows (C = 64 ∤ N) with N_s = HW; N = 50 */
const SCAN_EXAMPLES: [ScanRows, number | undefined, number][] = [
  [{ batch: 2, L: 67, I: 6, Ns: 3, HW: 3, aPerState: false, chunk: 16 }, undefined, 1],
  [{ batch: 1, L: 50, I: 8, Ns: 4, HW: 4, aPerState: false, chunk: 8 }, 7, 2],
];

describe.each(BACKENDS)('Mamba-2 training kernels on $title', ({ name, available }) => {
  const run = available ? it : it.skip;
  let rt: GpuRuntime;
  const k = async (kernel: TrainKernel, args: ArrayLike<number>[]) => {
    rt ??= await getRuntime(name as KernelBackendName);
    return runTrainKernel(rt, kernel, args.map(f32));
  };

  run('∂ℓ/∂A_log: scanDalogTermsKernel, then headSumKernels terms × A_h = a float64 loop (numRuns 10)', async () => {
    await fc.assert(
      fc.asyncProperty(scanShape, chunkCount, fc.integer(), async (s, C, seed) => {
        const r = new Rng(seed);
        const v = scanInputs(r, s);
        const want = scanReference(s, v);
        const terms = await k(scanDalogTermsKernel(s), [v.dl, v.alog, v.h, v.G]);
        close(terms, want.alogTerms, 'dAlog terms');
        const [parts, fold] = headSumKernels(s, 'terms', true, chunksFor(C, s.batch * s.L));
        const got = await k(fold, [await k(parts, [terms]), v.alog]);
        closeToTerms(got, want.dAlog, want.dAlogAbs, 'dAlog');
      }),
      { numRuns: 10, examples: SCAN_EXAMPLES },
    );
  });

  run('∂ℓ/∂D: headSumKernels product (two levels) and scanDdKernel (one) = a float64 loop (numRuns 10)', async () => {
    await fc.assert(
      fc.asyncProperty(scanShape, chunkCount, fc.integer(), async (s, C, seed) => {
        const r = new Rng(seed);
        const v = scanInputs(r, s);
        const want = scanReference(s, v);
        const [parts, fold] = headSumKernels(s, 'product', false, chunksFor(C, s.batch * s.L));
        closeToTerms(await k(fold, [await k(parts, [v.dy, v.x])]), want.dD, want.dDAbs, 'dD');
        closeToTerms(await k(scanDdKernel(s), [v.dy, v.x]), want.dD, want.dDAbs, 'dD one level');
      }),
      { numRuns: 10, examples: SCAN_EXAMPLES },
    );
  });

  run(
    '∂ℓ/∂Δ: scanDdeltaTermsKernel, then rowHeadSumKernel (and scanDdeltaKernel) = a float64 loop (numRuns 10)',
    async () => {
      await fc.assert(
        fc.asyncProperty(scanShape, fc.integer(), async (s, seed) => {
          const r = new Rng(seed);
          const v = scanInputs(r, s);
          const want = scanReference(s, v);
          const args = [v.x, v.B, v.dl, v.alog, v.h, v.G];
          const terms = await k(scanDdeltaTermsKernel(s), args);
          close(terms, want.deltaTerms, 'dDelta terms');
          closeToTerms(await k(rowHeadSumKernel(s), [terms]), want.dDelta, want.dDeltaAbs, 'dDelta');
          closeToTerms(await k(scanDdeltaKernel(s), args), want.dDelta, want.dDeltaAbs, 'dDelta one level');
        }),
        { numRuns: 10, examples: SCAN_EXAMPLES.map(([s, , seed]): [ScanRows, number] => [s, seed]) },
      );
    },
  );

  run('gated RMSNorm ∂ℓ/∂w: gatedRmsnormDwKernels parts + dwFoldKernel = lib/ref/norm.ts (numRuns 10)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({ rows: dim(150), group: dim(5), groups: dim(3) }),
        fc.constantFrom('gate first', 'norm first', 'no gate'),
        chunkCount,
        fc.integer(),
        async ({ rows, group, groups }, mode, C, seed) => {
          const r = new Rng(seed);
          const d = group * groups;
          const eps = 1e-5;
          const hasZ = mode !== 'no gate';
          const normBeforeGate = mode === 'norm first';
          const x = normal(r, rows * d);
          const w = normal(r, d);
          const dy = normal(r, rows * d);
          const z = normal(r, rows * d, 0, 2);
          const T = (a: F, shape: number[]) => new Tensor(a, shape);
          const want = gatedRmsnormBackward(
            T(x, [rows, d]),
            T(w, [d]),
            hasZ ? T(z, [rows, d]) : undefined,
            T(dy, [rows, d]),
            { eps, groupSize: group, normBeforeGate },
          ).dweight.data;
          // Σ_rows |dy v r (· silu(z) after the norm)|, v = x (· silu(z) before the norm): a plain float64 loop
          const abs = new Float64Array(d);
          for (let n = 0; n < rows; n++) {
            const vv = (i: number) => x[n * d + i] * (hasZ && !normBeforeGate ? silu(z[n * d + i]) : 1);
            for (let col = 0; col < d; col++) {
              const g0 = col - (col % group);
              let ss = 0;
              for (let q = 0; q < group; q++) ss += vv(g0 + q) ** 2;
              const gate = hasZ && normBeforeGate ? silu(z[n * d + col]) : 1;
              abs[col] += Math.abs((dy[n * d + col] * vv(col) * gate) / Math.sqrt(ss / group + eps));
            }
          }
          const [parts, fold] = gatedRmsnormDwKernels(rows, d, group, eps, normBeforeGate, hasZ, chunksFor(C, rows));
          const got = await k(fold, [await k(parts, [x, w, dy, ...(hasZ ? [z] : [])])]);
          closeToTerms(got, want, abs, `norm dw ${mode}`);
        },
      ),
      {
        numRuns: 10,
        examples: [
          [{ rows: 134, group: 3, groups: 2 }, 'gate first', undefined, 1],
          [{ rows: 97, group: 4, groups: 2 }, 'norm first', undefined, 2],
          [{ rows: 70, group: 1, groups: 3 }, 'no gate', 9, 3],
          // d = 1: the one column's 150 terms cancel to 1/84,648 of Σ|terms|: relative error 3.9e-4 (cpu), 3.3e-4
          // (webgpu) > 1e-4, the error 4.6e-9·Σ|terms| (why sums are bounded by Σ|terms|: the header)
          [{ rows: 150, group: 1, groups: 1 }, 'gate first', undefined, 3785],
        ],
      },
    );
  });
});
