/**
 * The multi-step verify kernel of speculative decoding (PAPER.md §4, Algorithm 2), float64 — mirrors
 * itsdaniele/speculative_mamba selective_state_update_multi_cached_fused.py::selective_state_update_multi_cached_ref.
 *
 * One cached state h_i is kept; the steps accepted in the last round but not yet folded into it are kept
 * as raw (x, dt, B) rows. MultiStep(h_i, r, s):
 *   replay  (no output):  for t = 0..r−1:  h ← exp(Δ(dt_cache_t)·A) ⊙ h + Δ(dt_cache_t)·B_cache_t·x_cache_t    → h_j
 *   new     (outputs):    for t = 0..s−1:  h ← exp(Δ(dt_t)·A) ⊙ h + Δ(dt_t)·B_t·x_t;  y_t = C_t·h + D·x_t;
 *                                          out_t = y_t·silu(z_t)                                             → h_k
 * with Δ(v) = softplus(v + dt_bias) if dt_softplus. Per-step states are never stored.
 *
 * Layouts: h_i (batch, dim, N); x_cache, dt_cache (batch, K₁, dim), B_cache (batch, K₁, N) with r ≤ K₁;
 * x, dt, z (batch, s, dim); B, C (batch, s, N); A (dim, N); D, dt_bias (dim); out (batch, s, dim).
 * Grouped (this project's extension, for hybrids): B_cache (batch, K₁, G, N), B and C (batch, s, G, N),
 * channel d using group ⌊d / (dim/G)⌋ — as selective_state_update's multi-head layout does.
 */
import { ArgumentError } from '../errors.js';
import { Tensor, dims } from '../tensor.js';
import { silu } from './activations.js';
import { discretizeA, discretizeBx, discretizeDelta } from './discretize.js';

export interface MultistepInputs {
  hI: Tensor;
  xCache: Tensor;
  deltaCache: Tensor;
  BCache: Tensor;
  recomputeSteps: number;
  x: Tensor;
  delta: Tensor;
  B: Tensor;
  C: Tensor;
  z?: Tensor;
  A: Tensor;
  D?: Tensor;
  deltaBias?: Tensor;
  deltaSoftplus?: boolean;
}

export interface MultistepOutputs {
  out: Tensor;
  hJ: Tensor;
  hK: Tensor;
}

export interface MultistepDims {
  batch: number;
  dim: number;
  N: number;
  K1: number;
  r: number;
  s: number;
  /** B/C groups (1 in upstream's layout) */
  G: number;
}

export function multistepDims(inp: MultistepInputs): MultistepDims {
  const grouped = inp.B.rank === 4;
  const bc = (rows: string) => (grouped ? ['batch', rows, 'G', 'N'] : ['batch', rows, 'N']);
  const d = dims({
    h_i: [inp.hI, ['batch', 'dim', 'N']],
    x_cache: [inp.xCache, ['batch', 'K1', 'dim']],
    dt_cache: [inp.deltaCache, ['batch', 'K1', 'dim']],
    B_cache: [inp.BCache, bc('K1')],
    x: [inp.x, ['batch', 's', 'dim']],
    delta: [inp.delta, ['batch', 's', 'dim']],
    B: [inp.B, bc('s')],
    C: [inp.C, bc('s')],
    z: [inp.z, ['batch', 's', 'dim']],
    A: [inp.A, ['dim', 'N']],
    D: [inp.D, ['dim']],
    dt_bias: [inp.deltaBias, ['dim']],
  });
  const r = inp.recomputeSteps;
  if (!Number.isInteger(r) || r < 0 || r > d.K1)
    throw new ArgumentError('recomputeSteps', `an integer in [0, ${d.K1}] (cached rows)`, r);
  const G = grouped ? d.G : 1;
  if (G === 0 || d.dim % G !== 0) throw new ArgumentError('B groups', `a divisor of dim=${d.dim}`, G);
  return { batch: d.batch, dim: d.dim, N: d.N, K1: d.K1, r, s: d.s, G };
}

/**
 * One step h = Ā ⊙ h + B̄x of one channel (A row at `ao`, B row at `bo`). A top-level function, not a
 * closure: called with float32 and float64 B rows, it stays one small function V8 inlines at both sites.
 */
function step(
  h: Float64Array,
  A: ArrayLike<number>,
  ao: number,
  N: number,
  sameA: boolean,
  deltaT: number,
  xv: number,
  Bs: ArrayLike<number>,
  bo: number,
): void {
  if (sameA) {
    const e0 = discretizeA(deltaT, A[ao]);
    for (let n = 0; n < N; n++) h[n] = e0 * h[n] + discretizeBx(deltaT, Bs[bo + n], xv);
  } else
    for (let n = 0; n < N; n++) h[n] = discretizeA(deltaT, A[ao + n]) * h[n] + discretizeBx(deltaT, Bs[bo + n], xv);
}

export function multistep(inp: MultistepInputs): MultistepOutputs {
  const { batch, dim, N, K1, r, s, G } = multistepDims(inp);
  const per = dim / G;
  const out = Tensor.zeros([batch, s, dim], 'float64', 'out');
  const hJ = Tensor.zeros([batch, dim, N], 'float64', 'h_j');
  const hK = Tensor.zeros([batch, dim, N], 'float64', 'h_k');
  // the arrays, read once (the loops below touch every state element r + s times)
  const [A, hI, xC, deltaC, BC] = [inp.A.data, inp.hI.data, inp.xCache.data, inp.deltaCache.data, inp.BCache.data];
  const [X, deltaIn, Bd, Cd] = [inp.x.data, inp.delta.data, inp.B.data, inp.C.data];
  const [Dd, Zd, bias, sp] = [inp.D?.data, inp.z?.data, inp.deltaBias?.data, inp.deltaSoftplus === true];
  const h = new Float64Array(N);
  for (let b = 0; b < batch; b++) {
    for (let d = 0; d < dim; d++) {
      const g = Math.floor(d / per);
      const bd = bias ? bias[d] : 0;
      // Mamba-2 rows hold one A for every n: exp(Δ·A) is then the same number for all n, computed once
      let sameA = true;
      for (let n = 1; n < N; n++) sameA &&= A[d * N + n] === A[d * N];
      for (let n = 0; n < N; n++) h[n] = hI[(b * dim + d) * N + n];
      for (let t = 0; t < r; t++) {
        const i = (b * K1 + t) * dim + d;
        step(
          h,
          A,
          d * N,
          N,
          sameA,
          discretizeDelta(deltaC[i] + (bias ? bd : 0), sp),
          xC[i],
          BC,
          ((b * K1 + t) * G + g) * N,
        );
      }
      hJ.data.set(h, (b * dim + d) * N);
      for (let t = 0; t < s; t++) {
        const i = (b * s + t) * dim + d;
        const xv = X[i];
        const bo = ((b * s + t) * G + g) * N;
        step(h, A, d * N, N, sameA, discretizeDelta(deltaIn[i] + (bias ? bd : 0), sp), xv, Bd, bo);
        let y = 0;
        for (let n = 0; n < N; n++) y += Cd[bo + n] * h[n];
        if (Dd) y += Dd[d] * xv;
        if (Zd) y *= silu(Zd[i]);
        out.data[i] = y;
      }
      hK.data.set(h, (b * dim + d) * N);
    }
  }
  return { out, hJ, hK };
}
