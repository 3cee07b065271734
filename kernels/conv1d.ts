/**
 * Causal depthwise conv1d and its decode update (float32), one thread per output (b, d, t).
 * Reference: lib/ref/conv1d.ts.
 *
 *   out[d, t] = bias[d] + Σ_{k<W} w[d, k]·x̃[d, t + k],  x̃ = [past (W−1 values) ; x],  then silu if asked
 * conv1d:  past = initial_states or zeros.
 * update:  past[k] = conv_state[S − (W−1) + k] (shift) or conv_state[(c_b − (W−1) + k) mod S] (circular buffer;
 *          `start[b]` = (c_b − (W−1)) mod S is computed on the host, the wrap-around inside the kernel).
 * The new state (a copy of inputs, no arithmetic) is assembled on the host.
 */
import type { GpuRuntime } from './runtime.js';
import { siluExpr, unflatten } from './snippets.js';

export interface ConvShape {
  batch: number;
  dim: number;
  L: number;
  W: number;
}

/**
 * One source for both kernels: out[b, d, t] = bias + Σ_k w[d, k]·x̃[t + k]; `past(j)` is the kernel
 * expression of the input j < 0 steps before the first one (initial state, zeros, or the cached window).
 */
function convSource(names: string[], bias: boolean, silu: boolean, past: string): string {
  return `function (${names.join(', ')}) {
    ${unflatten('this.thread.x', ['b', 'd', 't'], ['', 'this.constants.DIM', 'this.constants.L'])}
    const bd = b * this.constants.DIM + d;
    let s = ${bias ? 'bias[d]' : '0.0'};
    for (let k = 0; k < this.constants.W; k++) {
      const j = t + k - (this.constants.W - 1);
      if (j >= 0) {
        s += w[d * this.constants.W + k] * x[bd * this.constants.L + j];
      } else {
        ${past}
      }
    }
    ${silu ? `s = ${siluExpr('s')};` : ''}
    return s;
  }`;
}

export function conv1dKernel(
  rt: GpuRuntime,
  s: ConvShape,
  x: Float32Array,
  w: Float32Array,
  bias: Float32Array | undefined,
  init: Float32Array | undefined,
  silu: boolean,
): Promise<Float32Array> {
  const names = ['x', 'w'];
  const args = [x, w];
  if (bias) {
    names.push('bias');
    args.push(bias);
  }
  if (init) {
    names.push('init');
    args.push(init);
  }
  const past = init
    ? 's += w[d * this.constants.W + k] * init[bd * (this.constants.W - 1) + j + this.constants.W - 1];'
    : '';
  const src = convSource(names, !!bias, silu, past);
  return rt.run(
    `conv${bias ? '+bias' : ''}${init ? '+init' : ''}${silu ? '+silu' : ''}`,
    src,
    { DIM: s.dim, L: s.L, W: s.W },
    s.batch * s.dim * s.L,
    args,
  );
}

export function conv1dUpdateKernel(
  rt: GpuRuntime,
  s: ConvShape & { S: number },
  x: Float32Array,
  state: Float32Array,
  w: Float32Array,
  bias: Float32Array | undefined,
  start: Float32Array,
  silu: boolean,
): Promise<Float32Array> {
  const names = ['x', 'st', 'w', 'start'];
  const args = [x, state, w, start];
  if (bias) {
    names.push('bias');
    args.push(bias);
  }
  const past = `let pos = start[b] + j + this.constants.W - 1;
        if (pos >= this.constants.S) { pos = pos - this.constants.S; }
        s += w[d * this.constants.W + k] * st[bd * this.constants.S + pos];`;
  const src = convSource(names, !!bias, silu, past);
  return rt.run(
    `convupd${bias ? '+bias' : ''}${silu ? '+silu' : ''}`,
    src,
    { DIM: s.dim, L: s.L, W: s.W, S: s.S },
    s.batch * s.dim * s.L,
    args,
  );
}
