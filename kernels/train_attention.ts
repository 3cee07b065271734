/**
 * Causal grouped-query attention for training (float32), forward saving what the backward needs and the
 * backward's dQ, dK, dV, as GPU.js kernel sources (kernels/train_layers.ts `TrainKernel`). Reference (float64):
 * lib/ref/attention.ts `causalAttention` / `causalAttentionBackward` (RoPE is applied before and after:
 * kernels/train_layers.ts `ropeKernel`).
 *
 * q rows (N, H·hd), k and v rows (N, H_kv·hd), N = b·l, query and key t at position t of their sequence; head h
 * reads kv head g = ⌊h/(H/H_kv)⌋; scale = 1/√hd:
 *   scores:   S[b,h,t,j] = scale · q_{b,t,h}·k_{b,j,g}   (j ≤ t; −3e38 above the diagonal, never read)     (b, H, l, l)
 *   lse:      λ[b,h,t] = m + log Σ_{j≤t} exp(S − m),  m = max_{j≤t} S                                    (b, H, l)
 *   y:        y_{b,t,h,c} = Σ_{j≤t} P[b,h,t,j] v_{b,j,g,c},  P = exp(S − λ)                            (N, H·hd)
 * backward from dy (N, H·hd):
 *   D:        D[b,h,t] = Σ_c dy_{b,t,h,c} y_{b,t,h,c}   (= Σ_j P dP: the softmax backward's row sum)
 *   dS:       dS[b,h,t,j] = scale · P (dy_{b,t,h}·v_{b,j,g} − D[b,h,t])   (j ≤ t, else 0)
 *   dq:       dq_{b,t,h,c} = Σ_{j≤t} dS[b,h,t,j] k_{b,j,g,c}
 *   dk:       dk_{b,j,g,c} = Σ_{h ∈ g} Σ_{t≥j} dS[b,h,t,j] q_{b,t,h,c}
 *   dv:       dv_{b,j,g,c} = Σ_{h ∈ g} Σ_{t≥j} P[b,h,t,j] dy_{b,t,h,c}
 * Every sum in a fixed order (deterministic); no workgroup memory (GPU.js's WGSL has none): one thread per output.
 */
import type { TrainKernel } from './train_layers.js';

/** Shape of one attention call. */
export interface AttnShape {
  batch: number;
  L: number;
  H: number;
  Hkv: number;
  hd: number;
}

const consts = (s: AttnShape) => ({
  L: s.L,
  H: s.H,
  HD: s.hd,
  QW: s.H * s.hd,
  KW: s.Hkv * s.hd,
  GROUPS: s.H / s.Hkv,
  SCALE: 1 / Math.sqrt(s.hd),
});

/** Split thread x of (b, h, t, j) with sizes (·, H, L, L). */
const bhtj = `const j = this.thread.x - Math.floor(this.thread.x / this.constants.L) * this.constants.L;
    const bht = Math.floor(this.thread.x / this.constants.L);
    const t = bht - Math.floor(bht / this.constants.L) * this.constants.L;
    const bh = Math.floor(bht / this.constants.L);
    const h = bh - Math.floor(bh / this.constants.H) * this.constants.H;
    const b = Math.floor(bh / this.constants.H);
    const g = Math.floor(h / this.constants.GROUPS);`;

/** Split thread x of rows (b·l, heads·hd) into n = b·l + t, head, channel c. */
const rowHead = (width: string) => `const n = Math.floor(this.thread.x / this.constants.${width});
    const hc = this.thread.x - n * this.constants.${width};
    const hh = Math.floor(hc / this.constants.HD);
    const c = hc - hh * this.constants.HD;
    const b = Math.floor(n / this.constants.L);
    const t = n - b * this.constants.L;`;

export const attnScoresKernel = (s: AttnShape): TrainKernel => ({
  key: 'tr.attn_scores',
  source: `function (q, k) {
    ${bhtj}
    let out = -3.0e38;
    if (j <= t) {
      const qo = (b * this.constants.L + t) * this.constants.QW + h * this.constants.HD;
      const ko = (b * this.constants.L + j) * this.constants.KW + g * this.constants.HD;
      let acc = 0.0;
      for (let i = 0; i < this.constants.HD; i++) { acc += q[qo + i] * k[ko + i]; }
      out = acc * this.constants.SCALE;
    }
    return out;
  }`,
  constants: consts(s),
  size: s.batch * s.H * s.L * s.L,
});

export const attnLseKernel = (s: AttnShape): TrainKernel => ({
  key: 'tr.attn_lse',
  source: `function (sc) {
    const t = this.thread.x - Math.floor(this.thread.x / this.constants.L) * this.constants.L;
    const row = this.thread.x * this.constants.L;
    let m = sc[row];
    for (let j = 1; j < this.constants.L; j++) {
      if (j > t) { break; }
      m = Math.max(m, sc[row + j]);
    }
    let z = 0.0;
    for (let j = 0; j < this.constants.L; j++) {
      if (j > t) { break; }
      z += Math.exp(sc[row + j] - m);
    }
    return m + Math.log(z);
  }`,
  constants: consts(s),
  size: s.batch * s.H * s.L,
});

export const attnValuesKernel = (s: AttnShape): TrainKernel => ({
  key: 'tr.attn_y',
  source: `function (sc, lse, v) {
    ${rowHead('QW')}
    const g = Math.floor(hh / this.constants.GROUPS);
    const bht = (b * this.constants.H + hh) * this.constants.L + t;
    const lam = lse[bht];
    let acc = 0.0;
    for (let j = 0; j < this.constants.L; j++) {
      if (j > t) { break; }
      acc += Math.exp(sc[bht * this.constants.L + j] - lam) * v[(b * this.constants.L + j) * this.constants.KW + g * this.constants.HD + c];
    }
    return acc;
  }`,
  constants: consts(s),
  size: s.batch * s.L * s.H * s.hd,
});

export const attnDeltaKernel = (s: AttnShape): TrainKernel => ({
  key: 'tr.attn_delta',
  source: `function (dy, y) {
    const t = this.thread.x - Math.floor(this.thread.x / this.constants.L) * this.constants.L;
    const bh = Math.floor(this.thread.x / this.constants.L);
    const h = bh - Math.floor(bh / this.constants.H) * this.constants.H;
    const b = Math.floor(bh / this.constants.H);
    const o = (b * this.constants.L + t) * this.constants.QW + h * this.constants.HD;
    let acc = 0.0;
    for (let c = 0; c < this.constants.HD; c++) { acc += dy[o + c] * y[o + c]; }
    return acc;
  }`,
  constants: consts(s),
  size: s.batch * s.H * s.L,
});

export const attnDsKernel = (s: AttnShape): TrainKernel => ({
  key: 'tr.attn_ds',
  source: `function (sc, lse, dy, v, dl) {
    ${bhtj}
    let out = 0.0;
    if (j <= t) {
      const yo = (b * this.constants.L + t) * this.constants.QW + h * this.constants.HD;
      const vo = (b * this.constants.L + j) * this.constants.KW + g * this.constants.HD;
      let dp = 0.0;
      for (let i = 0; i < this.constants.HD; i++) { dp += dy[yo + i] * v[vo + i]; }
      out = this.constants.SCALE * Math.exp(sc[this.thread.x] - lse[bht]) * (dp - dl[bht]);
    }
    return out;
  }`,
  constants: consts(s),
  size: s.batch * s.H * s.L * s.L,
});

export const attnDqKernel = (s: AttnShape): TrainKernel => ({
  key: 'tr.attn_dq',
  source: `function (ds, k) {
    ${rowHead('QW')}
    const g = Math.floor(hh / this.constants.GROUPS);
    const row = ((b * this.constants.H + hh) * this.constants.L + t) * this.constants.L;
    let acc = 0.0;
    for (let j = 0; j < this.constants.L; j++) {
      if (j > t) { break; }
      acc += ds[row + j] * k[(b * this.constants.L + j) * this.constants.KW + g * this.constants.HD + c];
    }
    return acc;
  }`,
  constants: consts(s),
  size: s.batch * s.L * s.H * s.hd,
});

/** dk (which = 'dk': from dS and q) or dv (which = 'dv': from P = exp(S − λ) and dy), rows (N, H_kv·hd). */
export const attnDkvKernel = (s: AttnShape, which: 'dk' | 'dv'): TrainKernel => ({
  key: `tr.attn_${which}`,
  source: `function (${which === 'dk' ? 'ds, q' : 'sc, lse, dy'}) {
    ${rowHead('KW')}
    let acc = 0.0;
    for (let r = 0; r < this.constants.GROUPS; r++) {
      const h = hh * this.constants.GROUPS + r;
      const bh = b * this.constants.H + h;
      for (let u = 0; u < this.constants.L; u++) {
        if (u >= t) {
          const at = (bh * this.constants.L + u) * this.constants.L + t;
          const src = (b * this.constants.L + u) * this.constants.QW + h * this.constants.HD + c;
          ${
            which === 'dk'
              ? 'acc += ds[at] * q[src];'
              : 'acc += Math.exp(sc[at] - lse[bh * this.constants.L + u]) * dy[src];'
          }
        }
      }
    }
    return acc;
  }`,
  constants: consts(s),
  size: s.batch * s.L * s.Hkv * s.hd,
});
