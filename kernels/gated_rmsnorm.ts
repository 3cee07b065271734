/**
 * Gated RMSNorm (float32), one thread per element; each thread recomputes its group's mean square
 * (group size g ≤ a few hundred). Reference: lib/ref/norm.ts (gatedRmsnorm).
 *   gate first: v = x·silu(z); y = v / sqrt(mean_group(v²) + ε)·w      (Mamba-2)
 *   norm first: y = x / sqrt(mean_group(x²) + ε)·w·silu(z)
 */
import type { GpuRuntime } from './runtime.js';
import { siluExpr } from './snippets.js';
import { DW_CHUNKS, dwFoldKernel, type TrainKernel } from './train_layers.js';

/**
 * The forward as a kernel description (args x, w (and z)): the one source of `gatedRmsnormKernel` and of the GPU
 * training step's chain (lib/train/gpu_step.ts), where rows are its (b·l, d_in) activations.
 */
export function gatedRmsnormSource(
  rows: number,
  d: number,
  group: number,
  eps: number,
  normBeforeGate: boolean,
  hasZ: boolean,
): TrainKernel {
  const { gateFirst, gateAfter, v } = sourceParts(normBeforeGate, hasZ);
  const source = `function (x, w${hasZ ? ', z' : ''}) {
    const i = this.thread.x;
    const col = i - Math.floor(i / this.constants.D) * this.constants.D;
    const g0 = i - (col - Math.floor(col / this.constants.GS) * this.constants.GS);
    let ss = 0.0;
    for (let k = 0; k < this.constants.GS; k++) { const vk = ${v('g0 + k')}; ss += vk * vk; }
    let y = ${v('i')} / Math.sqrt(ss / this.constants.GS + this.constants.EPS) * w[col];
    ${gateAfter ? `y = y * ${siluExpr('z[i]')};` : ''}
    return y;
  }`;
  return {
    key: `grms${gateFirst ? '+gatefirst' : ''}${gateAfter ? '+gateafter' : ''}`,
    source,
    constants: { D: d, GS: group, EPS: eps },
    size: rows * d,
  };
}

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
  const k = gatedRmsnormSource(rows, d, group, eps, normBeforeGate, !!z);
  return rt.run(k.key, k.source, k.constants, k.size, z ? [x, w, z] : [x, w]);
}

/**
 * Backward of the gated RMSNorm (float32). Reference: lib/ref/norm.ts `gatedRmsnormBackward`. Per group of GS:
 *   r = (mean v² + ε)^{−1/2},  n = v r,  y = n w (· silu(z) when the norm comes first)
 *   dn_i = dy_i w_i (· silu(z_i)),   ∂ℓ/∂v_i = r (dn_i − n_i mean_j(dn_j n_j)),   ∂ℓ/∂w_i = Σ_rows dy_i n_i (· silu(z_i))
 *   computed as r (ε r² dn_i + mean_j n_j (dn_i n_j − n_i dn_j)), the same since mean_j n_j² = 1 − ε r²: the
 *   plain form cancels (at group size 1 it is r dn (1 − n²) with 1 − n² ≈ ε/v², all of float32's digits
 *   lost for |v| ≫ √ε: 1.5e-2 relative seen), this one leaves the j = i term out (it is 0).
 *   gate first (v = x silu(z)):  ∂ℓ/∂x = ∂ℓ/∂v silu(z),  ∂ℓ/∂z = ∂ℓ/∂v x silu'(z)
 *   norm first:                  ∂ℓ/∂x = ∂ℓ/∂v,          ∂ℓ/∂z = dy n w silu'(z)
 * One thread per element of dx or dz (each re-reads its group), one per column of dweight (each loops the rows).
 */
/** The backward as kernel descriptions (args x, w, dy (and z)): dx, dz (with z), dweight. */
export function gatedRmsnormBackwardSources(
  rows: number,
  d: number,
  group: number,
  eps: number,
  normBeforeGate: boolean,
  hasZ: boolean,
): { dx: TrainKernel; dz?: TrainKernel; dweight: TrainKernel } {
  const { gateFirst, gateAfter, v, post, names, tag, dwColumn, dwRow } = sourceParts(normBeforeGate, hasZ);
  const sig = (e: string) => `(1.0 / (1.0 + Math.exp(-(${e}))))`;
  const constants = { D: d, GS: group, EPS: eps, ROWS: rows };
  // per element i: its group's r and mean(dn·n), then ∂ℓ/∂v_i
  const head = `const i = this.thread.x;
    const col = i - Math.floor(i / this.constants.D) * this.constants.D;
    const g0 = i - (col - Math.floor(col / this.constants.GS) * this.constants.GS);
    const c0 = col - (i - g0);
    let ss = 0.0;
    for (let k = 0; k < this.constants.GS; k++) { const vk = ${v('g0 + k')}; ss += vk * vk; }
    const r = 1.0 / Math.sqrt(ss / this.constants.GS + this.constants.EPS);
    const dni = dy[i] * w[col]${post('i')};
    const ni = ${v('i')} * r;
    let cross = 0.0;
    for (let k = 0; k < this.constants.GS; k++) {
      if (g0 + k !== i) {
        const nk = ${v('g0 + k')} * r;
        cross += nk * (dni * nk - ni * (dy[g0 + k] * w[c0 + k]${post('g0 + k')}));
      }
    }
    const dv = r * (this.constants.EPS * r * r * dni + cross / this.constants.GS);`;
  const elementwise = (name: string, ret: string): TrainKernel => ({
    key: `grmsb.${name}${tag}`,
    source: `function (${names}) {\n    ${head}\n    return ${ret};\n  }`,
    constants,
    size: rows * d,
  });
  const siluGrad = (e: string) => `(${sig(e)} * (1.0 + (${e}) * (1.0 - ${sig(e)})))`;
  return {
    dx: elementwise('dx', `dv${gateFirst ? ` * ${siluExpr('z[i]')}` : ''}`),
    dz: gateFirst
      ? elementwise('dz', `dv * x[i] * ${siluGrad('z[i]')}`)
      : gateAfter
        ? elementwise('dz', `dy[i] * x[i] * r * w[col] * ${siluGrad('z[i]')}`)
        : undefined,
    dweight: {
      key: `grmsb.dw${tag}`,
      source: `function (${names}) {
    const col = this.thread.x;
    ${dwColumn}
    for (let row = 0; row < this.constants.ROWS; row++) {
      ${dwRow}
    }
    return s;
  }`,
      constants,
      size: d,
    },
  };
}

/**
 * ∂ℓ/∂w of the gated RMSNorm (`gatedRmsnormBackwardSources`' dweight) in two levels, as train_layers.ts
 * rmsnormDwKernels: thread (c, col) sums the rows ≡ c (mod C), C = min(64, rows), into (C, d); then dwFoldKernel
 * adds each column's C parts (fixed order). The GPU training step's form: its one level — d threads, each over every
 * row and its group — was 3.4 ms a call, 30% of a 512-token distillation micro-batch of the #25 hybrid on the H200
 * (bench/gpu_train.ts --profile). Args of the first: x, w, dy (and z).
 */
export function gatedRmsnormDwKernels(
  rows: number,
  d: number,
  group: number,
  eps: number,
  normBeforeGate: boolean,
  hasZ: boolean,
  C = Math.min(DW_CHUNKS, rows),
): [TrainKernel, TrainKernel] {
  const { names, tag, dwColumn, dwRow } = sourceParts(normBeforeGate, hasZ);
  return [
    {
      key: `grmsb.dw_parts${tag}`,
      source: `function (${names}) {
    const p = Math.floor(this.thread.x / this.constants.D);
    const col = this.thread.x - p * this.constants.D;
    ${dwColumn}
    for (let q = 0; q < this.constants.STEPS; q++) {
      const row = q * this.constants.C + p;
      if (row < this.constants.ROWS) {
        ${dwRow}
      }
    }
    return s;
  }`,
      constants: { D: d, GS: group, EPS: eps, ROWS: rows, C, STEPS: Math.ceil(rows / C) },
      size: C * d,
    },
    dwFoldKernel(C, d),
  ];
}

/**
 * The shared pieces of the forward's and backward's sources: where the gate goes, v (the normed value: x, or
 * x·silu(z) gate first) and the gate after the norm as source text, the argument names, the key's tag, and ∂ℓ/∂w's:
 * the column's start of group `c0` (with `let s`) and one row's term added to s (for `row` and `col`): dy_i n_i
 * (· silu(z_i) when the norm comes first).
 */
function sourceParts(normBeforeGate: boolean, hasZ: boolean) {
  const gateFirst = hasZ && !normBeforeGate;
  const gateAfter = hasZ && normBeforeGate;
  const v = (idx: string) => (gateFirst ? `(x[${idx}] * ${siluExpr(`z[${idx}]`)})` : `x[${idx}]`);
  const post = (idx: string) => (gateAfter ? ` * ${siluExpr(`z[${idx}]`)}` : '');
  return {
    gateFirst,
    gateAfter,
    v,
    post,
    names: `x, w, dy${hasZ ? ', z' : ''}`,
    tag: `${gateFirst ? '+gatefirst' : ''}${gateAfter ? '+gateafter' : ''}`,
    dwColumn: `const c0 = col - (col - Math.floor(col / this.constants.GS) * this.constants.GS);
    let s = 0.0;`,
    dwRow: `const g0 = row * this.constants.D + c0;
      const i = row * this.constants.D + col;
      let ss = 0.0;
      for (let k = 0; k < this.constants.GS; k++) { const vk = ${v('g0 + k')}; ss += vk * vk; }
      s += dy[i] * ${v('i')} / Math.sqrt(ss / this.constants.GS + this.constants.EPS)${post('i')};`,
  };
}

export async function gatedRmsnormBackwardKernel(
  rt: GpuRuntime,
  rows: number,
  d: number,
  group: number,
  eps: number,
  normBeforeGate: boolean,
  x: Float32Array,
  w: Float32Array,
  z: Float32Array | undefined,
  dy: Float32Array,
): Promise<{ dx: Float32Array; dweight: Float32Array; dz?: Float32Array }> {
  const k = gatedRmsnormBackwardSources(rows, d, group, eps, normBeforeGate, !!z);
  const args = z ? [x, w, dy, z] : [x, w, dy];
  const go = (t: TrainKernel) => rt.run(t.key, t.source, t.constants, t.size, args);
  return { dx: await go(k.dx), dz: k.dz && (await go(k.dz)), dweight: await go(k.dweight) };
}
