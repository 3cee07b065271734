/**
 * Causal linear attention, parallel form (float32), three passes:
 *   1. lc[bh, t]   = Σ_{r≤t} log g_r                  (log cumulative decay; 0 without decay; needs g > 0)
 *   2. S[bh, t, s] = exp(lc_t − lc_s)·(q_t·k_s) for s ≤ t, else 0     (masked, decayed scores)
 *   3. y[bh, t, j] = Σ_s S[bh, t, s]·v_s[j]
 * Reference: lib/ref/linear_attention.ts (linearAttentionParallel, linearAttentionRecurrent).
 */
import type { GpuRuntime } from './runtime.js';
import { unflatten } from './snippets.js';

const LOGCUM = `function (g) {
  ${unflatten('this.thread.x', ['bh', 't'], ['this.constants.BH', 'this.constants.L'])}
  let s = 0.0;
  for (let r = 0; r < this.constants.L; r++) {
    if (r <= t) { s += Math.log(g[bh * this.constants.L + r]); }
  }
  return s;
}`;

const SCORES = (decay: boolean) => `function (q, k${decay ? ', lc' : ''}) {
  ${unflatten('this.thread.x', ['bh', 't', 's'], ['this.constants.BH', 'this.constants.L', 'this.constants.L'])}
  let r = 0.0;
  if (s <= t) {
    for (let i = 0; i < this.constants.DK; i++) {
      r += q[(bh * this.constants.L + t) * this.constants.DK + i] * k[(bh * this.constants.L + s) * this.constants.DK + i];
    }
    ${decay ? 'r = r * Math.exp(lc[bh * this.constants.L + t] - lc[bh * this.constants.L + s]);' : ''}
  }
  return r;
}`;

const APPLY = `function (sc, v) {
  ${unflatten('this.thread.x', ['bh', 't', 'j'], ['this.constants.BH', 'this.constants.L', 'this.constants.DV'])}
  let y = 0.0;
  for (let s = 0; s < this.constants.L; s++) {
    if (s <= t) { y += sc[(bh * this.constants.L + t) * this.constants.L + s] * v[(bh * this.constants.L + s) * this.constants.DV + j]; }
  }
  return y;
}`;

export async function linearAttentionKernel(
  rt: GpuRuntime,
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  g: Float32Array | undefined,
  BH: number,
  L: number,
  DK: number,
  DV: number,
): Promise<Float32Array> {
  const c = { BH, L, DK, DV };
  const args = [q, k];
  if (g) args.push(await rt.run('linattn.logcum', LOGCUM, c, BH * L, [g]));
  const sc = await rt.run(`linattn.scores${g ? '+decay' : ''}`, SCORES(!!g), c, BH * L * L, args);
  return rt.run('linattn.apply', APPLY, c, BH * L * DV, [sc, v]);
}
