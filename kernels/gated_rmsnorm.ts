/**
 * Gated RMSNorm (float32), one thread per element; each thread recomputes its group's mean square
 * (group size g ≤ a few hundred). Reference: lib/ref/norm.ts (gatedRmsnorm).
 *   gate first: v = x·silu(z); y = v / sqrt(mean_group(v²) + ε)·w      (Mamba-2)
 *   norm first: y = x / sqrt(mean_group(x²) + ε)·w·silu(z)
 */
import type { GpuRuntime } from './runtime.js';
import { siluExpr } from './snippets.js';

export function gatedRmsnormKernel(
  rt: GpuRuntime,
  rows: number,
  d: number,
  group: number,
  eps: number,
  normBeforeGate: boolean,
  x: Float32Array,
  w: Float32Array,
  z: Float32Array | undefined,
): Promise<Float32Array> {
  const gateFirst = !!z && !normBeforeGate;
  const gateAfter = !!z && normBeforeGate;
  const v = (idx: string) => (gateFirst ? `(x[${idx}] * ${siluExpr(`z[${idx}]`)})` : `x[${idx}]`);
  const src = `function (x, w${z ? ', z' : ''}) {
    const i = this.thread.x;
    const col = i - Math.floor(i / this.constants.D) * this.constants.D;
    const g0 = i - (col - Math.floor(col / this.constants.GS) * this.constants.GS);
    let ss = 0.0;
    for (let k = 0; k < this.constants.GS; k++) { const vk = ${v('g0 + k')}; ss += vk * vk; }
    let y = ${v('i')} / Math.sqrt(ss / this.constants.GS + this.constants.EPS) * w[col];
    ${gateAfter ? `y = y * ${siluExpr('z[i]')};` : ''}
    return y;
  }`;
  return rt.run(`grms${gateFirst ? '+gatefirst' : ''}${gateAfter ? '+gateafter' : ''}`, src, { D: d, GS: group, EPS: eps }, rows * d, z ? [x, w, z] : [x, w]);
}
