/**
 * Global-norm gradient clipping and Adam/AdamW on the GPU (float32), as GPU.js kernel sources
 * (kernels/train_layers.ts `TrainKernel`), with parameters, moments and gradients kept in device buffers by the
 * training step (lib/train/gpu_step.ts). Reference (float64): lib/train/optim.ts `clipGradNorm`, `adamStep` —
 * the same formula, term for term:
 *
 *   parts:  S partial sums of g² per parameter (thread s: Σ_{i ≡ s mod S} g_i²; a large parameter in levels of
 *           short sums, `sumSquaresKernels`), gathered into one buffer
 *   norm:   out = [n, c, ok]:  n = √Σ parts,  c = min(1, max_norm/(n + 1e-6)) (1 without clipping),
 *           ok = 1 when n is finite (n < 3e38; NaN compares false), else 0
 *   moment: ĝ = c·g (+ λ p for 'adam', L2 decay);  m' = β₁ m + (1 − β₁) ĝ;  v' = β₂ v + (1 − β₂) ĝ²
 *   param:  p' = p·(1 − lr λ) ['adamw'] − (lr/(1 − β₁ᵗ)) · m'/(√v'/√(1 − β₂ᵗ) + ε)
 * Each of m', v', p' is its own kernel (one value per thread) reading the old m, v, p — so all three read the
 * same state and may be written to temporaries and copied back; with ok = 0 each returns its input unchanged
 * (a non-finite step changes nothing, as on the CPU). Per-step scalars live in a 4-float buffer written before
 * the step: hyper = [lr, lr/(1 − β₁ᵗ), √(1 − β₂ᵗ), 1 − lr λ] (float64 on the host, then float32).
 */
import { ArgumentError } from '../lib/errors.js';
import type { TrainKernel } from './train_layers.js';

/** The optimizer settings the kernels read (lib/train/optim.ts AdamOptions has these fields). */
interface AdamOptions {
  betas: [number, number];
  eps: number;
  weightDecay: number;
  kind: 'adam' | 'adamw';
}

/** Partial sums per parameter (the norm kernel reads PARTS of them per parameter). */
export const NORM_PARTS = 64;

/** Thread s of `parts`: Σ_{i ≡ s mod parts, i < size} x_i² (`square`) or x_i — adjacent threads read adjacent values. */
const partialSumKernel = (size: number, parts: number, square: boolean): TrainKernel => ({
  key: square ? 'tr.sumsq' : 'tr.sum_parts',
  source: `function (g) {
    let acc = 0.0;
    for (let k = 0; k < this.constants.STEPS; k++) {
      const i = k * this.constants.S + this.thread.x;
      if (i < this.constants.SIZE) { acc += ${square ? 'g[i] * g[i]' : 'g[i]'}; }
    }
    return acc;
  }`,
  constants: { S: parts, SIZE: size, STEPS: Math.ceil(size / parts) },
  size: parts,
});

/**
 * The NORM_PARTS partial sums of g² for one parameter of `size` values, as kernels run in order (each reads the one
 * before): while more than NORM_PARTS · `perThread` values are left, a level of ⌈values/perThread⌉ threads (a
 * multiple of NORM_PARTS) each sums about `perThread` of them (thread s: the values ≡ s mod threads; the first
 * level squares them), and a last level folds what is left into NORM_PARTS sums. Few threads with long loops are
 * slow on a GPU: one level of 64 threads over a 16M-value head took 100 ms on the H200, two levels of ≤ 1,024
 * values per thread still 0.2–0.3 ms per 131k–262k-value matrix (bench/gpu_train.ts --profile); with 32 values
 * per thread every level is short. A fixed summation order (deterministic).
 */
export const sumSquaresKernels = (size: number, perThread = 32): TrainKernel[] => {
  // each level must shrink what is left: 2 values per thread at least
  if (!Number.isInteger(perThread) || perThread < 2) throw new ArgumentError('perThread', 'an integer ≥ 2', perThread);
  const out: TrainKernel[] = [];
  let values = size;
  while (values > NORM_PARTS * perThread) {
    const threads = NORM_PARTS * Math.ceil(values / (NORM_PARTS * perThread));
    out.push(partialSumKernel(values, threads, out.length === 0));
    values = threads;
  }
  out.push(partialSumKernel(values, NORM_PARTS, out.length === 0));
  return out;
};

/** [norm, clip coefficient, ok] from `count` gathered partial sums; clip 0: no clipping. */
export const gradNormKernel = (count: number, clip: number): TrainKernel => ({
  key: 'tr.grad_norm',
  source: `function (parts) {
    let ss = 0.0;
    for (let i = 0; i < this.constants.COUNT; i++) { ss += parts[i]; }
    const n = Math.sqrt(ss);
    let out = n;
    if (this.thread.x == 1) {
      out = 1.0;
      if (this.constants.CLIP > 0.0) { out = Math.min(1.0, this.constants.CLIP / (n + 0.000001)); }
    }
    if (this.thread.x == 2) {
      out = 0.0;
      if (n < 3.0e38) { out = 1.0; }
    }
    return out;
  }`,
  constants: { COUNT: count, CLIP: clip },
  size: 3,
});

/** Per-step scalars of `adamKernel` for step t (1-based) at learning rate lr. */
export function adamHyper(o: AdamOptions, t: number, lr: number): Float32Array {
  const [b1, b2] = o.betas;
  return Float32Array.from([
    lr,
    lr / (1 - b1 ** t),
    Math.sqrt(1 - b2 ** t),
    o.kind === 'adamw' ? 1 - lr * o.weightDecay : 1,
  ]);
}

/** m' (which 'm'), v' ('v') or p' ('p') of one parameter of `size` values: args g, p, m, v, norm, hyper. */
export const adamKernel = (size: number, o: AdamOptions, which: 'm' | 'v' | 'p'): TrainKernel => {
  const mNew = 'this.constants.B1 * m[i] + this.constants.OMB1 * gh';
  const vNew = 'this.constants.B2 * v[i] + this.constants.OMB2 * gh * gh';
  const keep = which === 'm' ? 'm[i]' : which === 'v' ? 'v[i]' : 'p[i]';
  const body =
    which === 'm'
      ? `out = ${mNew};`
      : which === 'v'
        ? `out = ${vNew};`
        : `const mn = ${mNew};
      const vn = ${vNew};
      out = p[i] * hyper[3] - hyper[1] * (mn / (Math.sqrt(vn) / hyper[2] + this.constants.EPS));`;
  return {
    key: `tr.adam_${which}`,
    source: `function (g, p, m, v, norm, hyper) {
    const i = this.thread.x;
    let out = ${keep};
    if (norm[2] > 0.5) {
      const gh = g[i] * norm[1] + this.constants.L2 * p[i];
      ${body}
    }
    return out;
  }`,
    constants: {
      B1: o.betas[0],
      B2: o.betas[1],
      OMB1: 1 - o.betas[0],
      OMB2: 1 - o.betas[1],
      EPS: o.eps,
      L2: o.kind === 'adam' ? o.weightDecay : 0,
    },
    size,
  };
};
