/**
 * Causal grouped-query attention for training (float32), forward saving what the backward needs and the
 * backward's dQ, dK, dV: the five products as batched tiled WGSL (`attnProducts`, kernels/tiled_matmul.ts
 * `batchedMatmul`: workgroup memory, operands read in place) and the row-wise steps as GPU.js kernels
 * (kernels/train_layers.ts `TrainKernel`). Reference (float64): lib/ref/attention.ts `causalAttention` /
 * `causalAttentionBackward` (RoPE is applied before and after: kernels/train_layers.ts `ropeKernel`).
 *
 * q rows (N, H·hd), k and v rows (N, H_kv·hd), N = b·l, query and key t at position t of their sequence; head h
 * reads kv head g = ⌊h/(H/H_kv)⌋; scale = 1/√hd:
 *   scores:   S[b,h,t,j] = scale · q_{b,t,h}·k_{b,j,g}   (j ≤ t; above the diagonal whatever was there: never read) (b, H, l, l)
 *   lse:      λ[b,h,t] = m + log Σ_{j≤t} exp(S − m),  m = max_{j≤t} S                                    (b, H, l)
 *   P:        P[b,h,t,j] = exp(S − λ) for j ≤ t, else 0                                                (b, H, l, l)
 *   y:        y_{b,t,h,c} = Σ_{j≤t} P[b,h,t,j] v_{b,j,g,c}                                             (N, H·hd)
 * backward from dy (N, H·hd), with P saved:
 *   D:        D[b,h,t] = Σ_c dy_{b,t,h,c} y_{b,t,h,c}   (= Σ_j P dP: the softmax backward's row sum)
 *   dP:       dP[b,h,t,j] = dy_{b,t,h}·v_{b,j,g}   (j ≤ t read)
 *   dS:       dS[b,h,t,j] = scale · P (dP − D[b,h,t])   (j ≤ t, else 0)
 *   dq:       dq_{b,t,h,c} = Σ_{j≤t} dS[b,h,t,j] k_{b,j,g,c}
 *   dk:       dk_{b,j,g,c} = Σ_{h ∈ g} Σ_{t≥j} dS[b,h,t,j] q_{b,t,h,c}
 *   dv:       dv_{b,j,g,c} = Σ_{h ∈ g} Σ_{t≥j} P[b,h,t,j] dy_{b,t,h,c}
 * Every sum in a fixed order (deterministic). One thread per output for the GPU.js kernels; the products read each
 * operand value once per tile (on the H200 the one-thread-per-score GPU.js kernels took 0.3–0.6 ms each per d512
 * layer at 8 × 256 tokens: bench/results/h200/gpu-train.jsonl).
 */
import type { TrainKernel } from './train_layers.js';
import type { WgslKernel } from './resident_chain.js';
import { batchedMatmul, type BatchOperand } from './tiled_matmul.js';

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

/** P[b,h,t,j] = exp(S − λ[b,h,t]) for j ≤ t, else 0 (what the products after it read): sc, lse → (b, H, l, l). */
export const attnProbKernel = (s: AttnShape): TrainKernel => ({
  key: 'tr.attn_p',
  source: `function (sc, lse) {
    ${bhtj}
    let out = 0.0;
    if (j <= t) { out = Math.exp(sc[this.thread.x] - lse[bht]); }
    return out;
  }`,
  constants: consts(s),
  size: s.batch * s.H * s.L * s.L,
});

/** dS = scale · P (dP − D[b,h,t]) for j ≤ t, else 0: p, dp (b, H, l, l), dl (b, H, l) → (b, H, l, l). */
export const attnDsKernel = (s: AttnShape): TrainKernel => ({
  key: 'tr.attn_ds',
  source: `function (p, dp, dl) {
    ${bhtj}
    let out = 0.0;
    if (j <= t) { out = this.constants.SCALE * p[this.thread.x] * (dp[this.thread.x] - dl[bht]); }
    return out;
  }`,
  constants: consts(s),
  size: s.batch * s.H * s.L * s.L,
});

/**
 * The five products as batched tiled WGSL (kernels/tiled_matmul.ts `batchedMatmul`), one per (batch, head) — or per
 * (batch, kv head), adding its group's heads, for dk and dv — reading q, k, v, dy rows in place:
 *   scores  S = scale·q·kᵀ          (tiles above the diagonal skipped: never read)      args q, k → (b, H, l, l)
 *   y       y = P·v                 (j ≤ t only)                                         args P, v → rows (N, H·hd)
 *   dP      dP = dy·vᵀ              (tiles above the diagonal skipped)                   args dy, v → (b, H, l, l)
 *   dq      dq = dS·k               (j ≤ t only)                                         args dS, k → rows (N, H·hd)
 *   dk, dv  Σ_{h∈g} dSᵀ·q, Pᵀ·dy     (t ≥ j only)                                         args dS, q / P, dy → (N, H_kv·hd)
 */
export function attnProducts(s: AttnShape): Record<'scores' | 'y' | 'dP' | 'dq' | 'dk' | 'dv', WgslKernel> {
  const { batch, L, H, Hkv, hd } = s;
  const G = H / Hkv;
  const [QW, KW, LL] = [H * hd, Hkv * hd, L * L];
  const rowsQ: BatchOperand = { sb: L * QW, sh: hd, ld: QW }; // q, dy, y, dq: head h's columns of its rows
  const rowsK: BatchOperand = { sb: L * KW, sh: hd, div: G, ld: KW }; // k, v read by query head h
  const sq: BatchOperand = { sb: H * LL, sh: LL, ld: L }; // S, P, dP, dS of head h
  const perHead = { outer: batch, inner: H };
  const perKv = { outer: batch, inner: Hkv, rep: G, causal: 'k≥m' as const };
  const groupQ: BatchOperand = { sb: L * QW, sh: G * hd, ld: QW, sr: hd }; // q, dy of kv head g's r-th head
  const groupS: BatchOperand = { sb: H * LL, sh: G * LL, ld: L, sr: LL };
  const outK: BatchOperand = { sb: L * KW, sh: hd, ld: KW };
  const [nS, nQ, nK] = [batch * H * LL, batch * L * QW, batch * L * KW];
  const dot = { a: 'mk', b: 'nk' } as const;
  const mix = { a: 'mk', b: 'kn' } as const;
  const back = { a: 'km', b: 'kn' } as const;
  return {
    scores: batchedMatmul(
      dot,
      [L, L, hd],
      { ...perHead, alpha: 1 / Math.sqrt(hd), causal: 'lower' },
      { A: rowsQ, B: rowsK, C: sq },
      nS,
    ),
    y: batchedMatmul(mix, [L, hd, L], { ...perHead, causal: 'k≤m' }, { A: sq, B: rowsK, C: rowsQ }, nQ),
    dP: batchedMatmul(dot, [L, L, hd], { ...perHead, causal: 'lower' }, { A: rowsQ, B: rowsK, C: sq }, nS),
    dq: batchedMatmul(mix, [L, hd, L], { ...perHead, causal: 'k≤m' }, { A: sq, B: rowsK, C: rowsQ }, nQ),
    dk: batchedMatmul(back, [L, hd, L], perKv, { A: groupS, B: groupQ, C: outK }, nK),
    dv: batchedMatmul(back, [L, hd, L], perKv, { A: groupS, B: groupQ, C: outK }, nK),
  };
}
