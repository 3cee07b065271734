/**
 * Global-norm gradient clipping and Adam/AdamW on the GPU (float32), as GPU.js kernel sources
 * (kernels/train_layers.ts `TrainKernel`), with parameters, moments and gradients kept in device buffers by the
 * training step (lib/train/gpu_step.ts). Reference (float64): lib/train/optim.ts `clipGradNorm`, `adamStep` —
 * the same formula, term for term:
 *
 *   parts:  S partial sums of g² per parameter (thread s: Σ_{i ≡ s mod S} g_i²; a large parameter in two levels,
 *           `sumSquaresKernels`), gathered into one buffer
 *   norm:   out = [n, c, ok]:  n = √Σ parts,  c = min(1, max_norm/(n + 1e-6)) (1 without clipping),
 *           ok = 1 when n is finite (n < 3e38; NaN compares false), else 0
 *   moment: ĝ = c·g (+ λ p for 'adam', L2 decay);  m' = β₁ m + (1 − β₁) ĝ;  v' = β₂ v + (1 − β₂) ĝ²
 *   param:  p' = p·(1 − lr λ) ['adamw'] − (lr/(1 − β₁ᵗ)) · m'/(√v'/√(1 − β₂ᵗ) + ε)
 * Each of m', v', p' is its own kernel (one value per thread) reading the old m, v, p — so all three read the
 * same state and may be written to temporaries and copied back; with ok = 0 each returns its input unchanged
 * (a non-finite step changes nothing, as on the CPU). Per-step scalars live in a 4-float buffer written before
 * the step: hyper = [lr, lr/(1 − β₁ᵗ), √(1 − β₂ᵗ), 1 − lr λ] (float64 on the host, then float32).
 */
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
 * The NORM_PARTS partial sums of g² for one parameter of `size` values, as one or two kernels run in order (each
 * reads the one before): a parameter of more than NORM_PARTS · `perThread` values first sums g² over NORM_PARTS·2^m
 * threads of about `perThread` values each, then folds those into NORM_PARTS sums (thread s: the parts ≡ s mod
 * NORM_PARTS). One level of 64 threads over a 16M-value head took 100 ms on the H200 (bench/gpu_train.ts --profile);
 * two levels give every thread ≤ ~1,024 values. A fixed summation order either way (deterministic).
 */
export const sumSquaresKernels = (size: number, perThread = 1024): TrainKernel[] => {
  const wide = NORM_PARTS * 2 ** Math.max(0, Math.ceil(Math.log2(size / (NORM_PARTS * perThread))));
  if (wide <= NORM_PARTS) return [partialSumKernel(size, NORM_PARTS, true)];
  return [partialSumKernel(size, wide, true), partialSumKernel(wide, NORM_PARTS, false)];
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
