/**
 * Backward of the causal depthwise conv1d (float32). Reference: lib/ref/conv1d.ts `causalConv1dBackward`.
 * Per channel (b, d), over the padded row r = [initial_states (W−1) ; x (L)]:
 *
 *   s_t = bias + Σ_k w_k r_{t+k},   out_t = silu(s_t) (or s_t),   final_states = r_{L … L+W−2}
 *   ds_t = dout_t silu'(s_t) (or dout_t)
 *   ∂ℓ/∂r_j = Σ_{k : 0 ≤ j−k < L} w_k ds_{j−k}  (+ dfinal_{j−L} when j ≥ L)
 *   ∂ℓ/∂x_t = ∂ℓ/∂r_{t+W−1},  ∂ℓ/∂initial_j = ∂ℓ/∂r_j,  ∂ℓ/∂w_k = Σ_{b,t} ds_t r_{t+k},  ∂ℓ/∂bias = Σ_{b,t} ds_t
 */
import type { GpuRuntime } from './runtime.js';
import { unflatten } from './snippets.js';

export interface Conv1dShape {
  batch: number;
  dim: number;
  L: number;
  W: number;
}

export interface Conv1dGradArgs {
  x: Float32Array;
  weight: Float32Array;
  bias?: Float32Array;
  initialStates?: Float32Array;
  silu: boolean;
  dout: Float32Array;
  dFinalStates?: Float32Array;
}

export async function conv1dBackwardKernel(
  rt: GpuRuntime,
  s: Conv1dShape,
  a: Conv1dGradArgs,
): Promise<{ dx: Float32Array; dweight: Float32Array; dbias?: Float32Array; dinitialStates?: Float32Array }> {
  const K = 'this.constants';
  const consts = { B: s.batch, DIM: s.dim, L: s.L, W: s.W, P: s.W - 1 };
  // r_j of channel bd: x at j − (W−1), else the initial state (or 0)
  const row = (j: string) =>
    `(${j} >= ${K}.P ? x[bd * ${K}.L + ${j} - ${K}.P] : ${a.initialStates ? `init[bd * ${K}.P + ${j}]` : '0.0'})`;
  const init = a.initialStates ? [a.initialStates] : [];
  const initName = a.initialStates ? ', init' : '';
  const tag = `${a.bias ? '+bias' : ''}${a.initialStates ? '+init' : ''}${a.silu ? '+silu' : ''}`;

  // ds (b, d, t)
  const ds = await rt.run(
    `convb.ds${tag}`,
    `function (x, w, dout${a.bias ? ', bias' : ''}${initName}) {
    ${unflatten('this.thread.x', ['bd', 't'], ['', `${K}.L`])}
    const d = bd - Math.floor(bd / ${K}.DIM) * ${K}.DIM;
    let s = ${a.bias ? 'bias[d]' : '0.0'};
    for (let k = 0; k < ${K}.W; k++) { const j = t + k; s += w[d * ${K}.W + k] * ${row('j')}; }
    ${a.silu ? 'const sg = 1.0 / (1.0 + Math.exp(-s)); return dout[this.thread.x] * sg * (1.0 + s * (1.0 - sg));' : 'return dout[this.thread.x];'}
  }`,
    consts,
    s.batch * s.dim * s.L,
    [a.x, a.weight, a.dout, ...(a.bias ? [a.bias] : []), ...init],
  );

  // ∂ℓ/∂r_j for j = 0 … L+W−2 (b, d, j)
  const R = s.L + s.W - 1;
  const drow = await rt.run(
    `convb.drow${a.dFinalStates ? '+dfin' : ''}`,
    `function (w, ds${a.dFinalStates ? ', dfin' : ''}) {
    ${unflatten('this.thread.x', ['bd', 'j'], ['', String(R)])}
    const d = bd - Math.floor(bd / ${K}.DIM) * ${K}.DIM;
    let s = 0.0;
    for (let k = 0; k < ${K}.W; k++) {
      const t = j - k;
      if (t >= 0 && t < ${K}.L) { s += w[d * ${K}.W + k] * ds[bd * ${K}.L + t]; }
    }
    ${a.dFinalStates ? `if (j >= ${K}.L) { s += dfin[bd * ${K}.P + j - ${K}.L]; }` : ''}
    return s;
  }`,
    consts,
    s.batch * s.dim * R,
    a.dFinalStates ? [a.weight, ds, a.dFinalStates] : [a.weight, ds],
  );

  const dweight = await rt.run(
    `convb.dw${a.initialStates ? '+init' : ''}`,
    `function (x, ds${initName}) {
    ${unflatten('this.thread.x', ['d', 'k'], ['', `${K}.W`])}
    let s = 0.0;
    for (let b = 0; b < ${K}.B; b++) {
      const bd = b * ${K}.DIM + d;
      for (let t = 0; t < ${K}.L; t++) { const j = t + k; s += ds[bd * ${K}.L + t] * ${row('j')}; }
    }
    return s;
  }`,
    consts,
    s.dim * s.W,
    [a.x, ds, ...init],
  );

  // the row's gradient split into x and the initial states (a copy, no arithmetic)
  const P = s.W - 1;
  const dx = new Float32Array(s.batch * s.dim * s.L);
  const dinit = a.initialStates ? new Float32Array(s.batch * s.dim * P) : undefined;
  for (let bd = 0; bd < s.batch * s.dim; bd++) {
    dx.set(drow.subarray(bd * R + P, (bd + 1) * R), bd * s.L);
    dinit?.set(drow.subarray(bd * R, bd * R + P), bd * P);
  }
  const r: { dx: Float32Array; dweight: Float32Array; dbias?: Float32Array; dinitialStates?: Float32Array } = {
    dx,
    dweight,
    dinitialStates: dinit,
  };
  if (a.bias) {
    r.dbias = await rt.run(
      'convb.dbias',
      `function (ds) {
    const d = this.thread.x;
    let s = 0.0;
    for (let b = 0; b < ${K}.B; b++) { for (let t = 0; t < ${K}.L; t++) { s += ds[(b * ${K}.DIM + d) * ${K}.L + t]; } }
    return s;
  }`,
      consts,
      s.dim,
      [ds],
    );
  }
  return r;
}
