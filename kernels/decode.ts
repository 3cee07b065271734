/**
 * Kernels of one decoded token (float32, batch 1), for the resident chain of lib/model/gpu_decode.ts — GPU.js
 * kernel sources (one thread per output value, every loop bound a constant) and the constants each takes.
 *
 *   embed:     h_c = E[id, c]                                      id = meta[0]
 *   rmsnorm:   n_c = h_c / √(mean(h²) + ε) · w_c                    each thread recomputes mean(h²) (d ≤ a few thousand)
 *   matvec:    y_r = Σ_i Wᵀ[i, r] x_i (+ h_r)                       Wᵀ (K, R): W stored transposed, so neighbouring
 *                                                                 threads read neighbouring addresses (coalesced)
 *   qkv+rope:  [q | k | v] = [W_q x | W_k x | W_v x], q and k rotated by RoPE at position pos = meta[1]:
 *              out_c = y_c cos θ − y_{c+hd/2} sin θ (c < hd/2),  y_c cos θ + y_{c−hd/2} sin θ (c ≥ hd/2)
 *              cos θ, sin θ from a float64-computed table (cap, hd): [cos_0 … cos_{hd/2−1} | sin_0 … sin_{hd/2−1}]
 *   attention: y_{h,c} = Σ_{j ≤ pos} softmax_j(q_h·k_{g,j}/√hd) v_{g,j,c}   g = ⌊h/(H/H_kv)⌋: scores (H, cap), then values
 *   swiglu:    a_f = silu(W_gate n)_f · (W_up n)_f
 *   argmax:    two steps: C threads each take the strided slice f ≡ c (mod C) (first maximum), then one thread
 *              the best of the C (ties: lowest id, as lib/model/generate.ts `argmax`)
 * The caches are laid out (cap, H_kv·hd): a token's keys (values) are one contiguous row, written by a buffer
 * copy at row pos (kernels/resident_chain.ts). Token ids and positions travel as float32 (exact below 2^24).
 * An index into a weight that may pass 2^24 elements (the embedding and head of a 128k vocabulary, a 3B model's
 * MLP) is computed by `imad` in 32-bit integers (kernels/idiv.ts): float32 arithmetic would round it.
 *
 * Mamba-2 one-step kernels (PAPER.md §2; lib/model/mixers/mamba2.ts), per token, conv state (convDim, K−1):
 *   conv:      xs_c = act(Σ_{k<K−1} s_{c,k} w_{c,k} + u_c w_{c,K−1} + b_c)    u = xBC of in_proj; s ← [s_{c,1:} | u_c]
 *   ssm:       Δ_h = softplus(dt_h + b_h),  h_{h,p,n} ← exp(Δ_h A_h) h_{h,p,n} + Δ_h x_{h,p} B_{h,n}
 *   y:         y_{h,p} = Σ_n h_{h,p,n} C_{h,n} + D_h x_{h,p},  then the gated RMSNorm (groups of P, gate first)
 * Mamba-1 (lib/model/mixers/mamba1.ts), per channel c of group g = ⌊c/N⌋: the same conv on the repeated x, then
 *   Δ_c = softplus(W_dt dt_low + b_Δ),  h_{c,n} ← exp(Δ_c A_{c,n}) h_{c,n} + Δ_c xc_c B_{g,n},  y_c = (h_c·C_g + D_c xc_c)·silu(z_c)
 */
import { siluExpr, softplusSnippet } from './snippets.js';

export interface DecodeKernel {
  key: string;
  source: string;
  constants: Record<string, number>;
}

/** Row t's token id is meta[IDOFF + t] (the one-token meta [id, pos]: IDOFF 0; a window's [s, pos₀, ids …]: 2). */
export const embedKernel = (d: number, T = 1, idOff = 0): DecodeKernel => ({
  key: 'dec.embed',
  source: `function (emb, meta) {
    const t = Math.floor(this.thread.x / this.constants.D);
    return emb[imad(meta[this.constants.IDOFF + t], this.constants.D, this.thread.x - t * this.constants.D)];
  }`,
  constants: { D: d, T, IDOFF: idOff },
});

export const rmsnormKernel = (d: number, eps: number, T = 1): DecodeKernel => ({
  key: 'dec.rmsnorm',
  source: `function (h, w) {
    const t = Math.floor(this.thread.x / this.constants.D);
    const o = t * this.constants.D;
    let ss = 0.0;
    for (let i = 0; i < this.constants.D; i++) { ss += h[o + i] * h[o + i]; }
    return h[this.thread.x] * (1.0 / Math.sqrt(ss / this.constants.D + this.constants.EPS)) * w[this.thread.x - o];
  }`,
  constants: { D: d, EPS: eps, T },
});

/** Index of `add` (AN floats: a residual of every output, or a bias of one row) for output this.thread.x. */
const addAt = 'this.thread.x - Math.floor(this.thread.x / this.constants.AN) * this.constants.AN';

/**
 * y = Wᵀ-stored matrix times x (K inputs, R outputs; T rows of x), plus h when `addLen` > 0: a residual (T·R)
 * or a bias (R), read at output mod addLen.
 */
export const matvecKernel = (K: number, R: number, addLen: number, T = 1): DecodeKernel => ({
  key: addLen ? 'dec.matvec+res' : 'dec.matvec',
  source: `function (x, wt${addLen ? ', h' : ''}) {
    const t = Math.floor(this.thread.x / this.constants.R);
    const r = this.thread.x - t * this.constants.R;
    const o = t * this.constants.K;
    let s = 0.0;
    for (let i = 0; i < this.constants.K; i++) { s += wt[imad(i, this.constants.R, r)] * x[o + i]; }
    return ${addLen ? `h[${addAt}] + s` : 's'};
  }`,
  constants: { K, R, T, AN: Math.max(addLen, 1) },
});

/**
 * Split-K matvec, for few outputs over a long input (o_proj, down_proj: R = d outputs, only R/64 workgroups of
 * one long loop each): S·T·R threads, thread (s, t, r) sums i ∈ [s·KC, min(K, (s+1)·KC)) of row t, KC = ⌈K/S⌉;
 * then `splitSumKernel` (over T·R outputs) adds the S partial sums (and the residual or bias). `splitsFor` picks S.
 */
export const matvecPartialKernel = (K: number, R: number, S: number, T = 1): DecodeKernel => ({
  key: 'dec.matvec_part',
  source: `function (x, wt) {
    const s = Math.floor(this.thread.x / this.constants.TR);
    const tr = this.thread.x - s * this.constants.TR;
    const t = Math.floor(tr / this.constants.R);
    const r = tr - t * this.constants.R;
    const o = t * this.constants.K;
    let acc = 0.0;
    for (let k = 0; k < this.constants.KC; k++) {
      const i = s * this.constants.KC + k;
      if (i < this.constants.K) { acc += wt[imad(i, this.constants.R, r)] * x[o + i]; }
    }
    return acc;
  }`,
  constants: { K, R, KC: Math.ceil(K / S), TR: T * R },
});

/** out_x = Σ_s part[s, x] (+ h as in matvecKernel) over R outputs (all rows of a window). */
export const splitSumKernel = (R: number, S: number, addLen: number): DecodeKernel => ({
  key: addLen ? 'dec.split_sum+res' : 'dec.split_sum',
  source: `function (part${addLen ? ', h' : ''}) {
    let acc = ${addLen ? `h[${addAt}]` : '0.0'};
    for (let s = 0; s < this.constants.S; s++) { acc += part[s * this.constants.R + this.thread.x]; }
    return acc;
  }`,
  constants: { R, S, AN: Math.max(addLen, 1) },
});

/** Splits of a K-long, R-output matvec: enough threads to fill a GPU (~8192), each summing ≥ 8 inputs. */
export const splitsFor = (K: number, R: number): number => Math.max(1, Math.min(Math.ceil(8192 / R), Math.ceil(K / 8)));

/**
 * Statements: output u of [q (T, Q) | k (T, KV) | v (T, KV)] → its row tt and its column t in one row of [q | k | v]
 * (qkvRopeKernel and ropeKernel; constants Q, KV, TQ = T·Q, TKV = T·KV).
 */
const QKV_OUTPUT = `const u = this.thread.x;
    let tt = 0;
    let t = u;
    if (u >= this.constants.TQ + this.constants.TKV) {
      const w = u - this.constants.TQ - this.constants.TKV;
      tt = Math.floor(w / this.constants.KV);
      t = this.constants.Q + this.constants.KV + w - tt * this.constants.KV;
    } else if (u >= this.constants.TQ) {
      const w = u - this.constants.TQ;
      tt = Math.floor(w / this.constants.KV);
      t = this.constants.Q + w - tt * this.constants.KV;
    } else {
      tt = Math.floor(u / this.constants.Q);
      t = u - tt * this.constants.Q;
    }`;

/**
 * Output [q (T, H·hd) | k (T, H_kv·hd) | v (T, H_kv·hd)]: q and k rotated at position meta[1] + t, then v. Each
 * block holds its T rows contiguously, so a window's keys (values) go into the cache with one copy.
 */
export const qkvRopeKernel = (d: number, H: number, Hkv: number, hd: number, T = 1): DecodeKernel => ({
  key: 'dec.qkv_rope',
  source: `function (x, wq, wk, wv, rope, meta) {
    ${QKV_OUTPUT}
    const xo = tt * this.constants.D;
    let out = 0.0;
    if (t >= this.constants.Q + this.constants.KV) {
      const r = t - this.constants.Q - this.constants.KV;
      for (let i = 0; i < this.constants.D; i++) { out += wv[i * this.constants.KV + r] * x[xo + i]; }
    } else {
      let r = t;
      let R = this.constants.Q;
      if (t >= this.constants.Q) { r = t - this.constants.Q; R = this.constants.KV; }
      const c = r - Math.floor(r / this.constants.HD) * this.constants.HD;
      let partner = r + this.constants.HALF;
      let sign = -1.0;
      let f = c;
      if (c >= this.constants.HALF) { partner = r - this.constants.HALF; sign = 1.0; f = c - this.constants.HALF; }
      let a = 0.0;
      let b = 0.0;
      if (t >= this.constants.Q) {
        for (let i = 0; i < this.constants.D; i++) { a += wk[i * R + r] * x[xo + i]; b += wk[i * R + partner] * x[xo + i]; }
      } else {
        for (let i = 0; i < this.constants.D; i++) { a += wq[i * R + r] * x[xo + i]; b += wq[i * R + partner] * x[xo + i]; }
      }
      const row = (meta[1] + tt) * this.constants.HD;
      out = a * rope[row + f] + sign * b * rope[row + this.constants.HALF + f];
    }
    return out;
  }`,
  constants: { D: d, Q: H * hd, KV: Hkv * hd, HD: hd, HALF: hd / 2, TQ: T * H * hd, TKV: T * Hkv * hd },
});

/**
 * RoPE after one product of the stacked [W_q | W_k | W_v] (kernels/decode_wgsl.ts gemvKernel): raw holds T rows of
 * Q + 2·KV outputs; the output is qkvRopeKernel's [q (T, Q) | k (T, KV) | v (T, KV)], q and k rotated at position
 * meta[1] + t — each thread reads its value and its rotation partner, no loop.
 */
export const ropeKernel = (H: number, Hkv: number, hd: number, T = 1): DecodeKernel => ({
  key: 'dec.rope',
  source: `function (raw, rope, meta) {
    ${QKV_OUTPUT}
    const o = tt * this.constants.RW;
    let out = raw[o + t];
    if (t < this.constants.Q + this.constants.KV) {
      let r = t;
      if (t >= this.constants.Q) { r = t - this.constants.Q; }
      const c = r - Math.floor(r / this.constants.HD) * this.constants.HD;
      let partner = t + this.constants.HALF;
      let sign = -1.0;
      let f = c;
      if (c >= this.constants.HALF) { partner = t - this.constants.HALF; sign = 1.0; f = c - this.constants.HALF; }
      const row = (meta[1] + tt) * this.constants.HD;
      out = raw[o + t] * rope[row + f] + sign * raw[o + partner] * rope[row + this.constants.HALF + f];
    }
    return out;
  }`,
  constants: {
    Q: H * hd,
    KV: Hkv * hd,
    HD: hd,
    HALF: hd / 2,
    TQ: T * H * hd,
    TKV: T * Hkv * hd,
    RW: H * hd + 2 * Hkv * hd,
    T,
  },
});

/**
 * Attention's scores, one thread per (row t, head h, key j): s_{t,h,j} = q_{t,h}·k_{g,j}/√hd for j ≤ pos + t
 * (row t sits at position pos + t, pos = meta[1]; the window's own keys are in the cache already), −3e38 past
 * it (never read: the weighted sum stops there). Two kernels rather than one thread per output channel looping
 * over every key (pos·hd steps each): this one is T·H·cap threads of hd steps, the next T·H·hd threads of 2·pos.
 */
export const attentionScoresKernel = (H: number, Hkv: number, hd: number, cap: number, T = 1): DecodeKernel => ({
  key: 'dec.attn_scores',
  source: `function (qkv, kc, meta) {
    const th = Math.floor(this.thread.x / this.constants.CAP);
    const j = this.thread.x - th * this.constants.CAP;
    const tt = Math.floor(th / this.constants.H);
    const h = th - tt * this.constants.H;
    const g = Math.floor(h / this.constants.GROUPS) * this.constants.HD;
    let s = -3.0e38;
    if (j <= meta[1] + tt) {
      s = 0.0;
      for (let i = 0; i < this.constants.HD; i++) {
        s += qkv[th * this.constants.HD + i] * kc[j * this.constants.KV + g + i];
      }
      s = s * this.constants.SCALE;
    }
    return s;
  }`,
  constants: { H, HD: hd, GROUPS: H / Hkv, KV: Hkv * hd, CAP: cap, SCALE: 1 / Math.sqrt(hd), T },
});

/**
 * y_{t,h,c} = Σ_{j ≤ pos+t} exp(s_{t,h,j} − max) v_{g,j,c} / Σ_{j ≤ pos+t} exp(s_{t,h,j} − max), one thread per
 * (t, h, c).
 */
export const attentionValuesKernel = (H: number, Hkv: number, hd: number, cap: number, T = 1): DecodeKernel => ({
  key: 'dec.attn_values',
  source: `function (scores, vc, meta) {
    const th = Math.floor(this.thread.x / this.constants.HD);
    const c = this.thread.x - th * this.constants.HD;
    const tt = Math.floor(th / this.constants.H);
    const h = th - tt * this.constants.H;
    const g = Math.floor(h / this.constants.GROUPS) * this.constants.HD;
    const pos = meta[1] + tt;
    const row = th * this.constants.CAP;
    let m = scores[row];
    for (let j = 1; j < this.constants.CAP; j++) {
      if (j > pos) { break; }
      m = Math.max(m, scores[row + j]);
    }
    let z = 0.0;
    let acc = 0.0;
    for (let j = 0; j < this.constants.CAP; j++) {
      if (j > pos) { break; }
      const e = Math.exp(scores[row + j] - m);
      z += e;
      acc += e * vc[j * this.constants.KV + g + c];
    }
    return acc / z;
  }`,
  constants: { H, HD: hd, GROUPS: H / Hkv, KV: Hkv * hd, CAP: cap, T },
});

export const swigluKernel = (d: number, F: number, T = 1): DecodeKernel => ({
  key: 'dec.swiglu',
  source: `function (x, wg, wu) {
    const t = Math.floor(this.thread.x / this.constants.F);
    const f = this.thread.x - t * this.constants.F;
    const o = t * this.constants.D;
    let g = 0.0;
    let u = 0.0;
    for (let i = 0; i < this.constants.D; i++) {
      g += wg[imad(i, this.constants.F, f)] * x[o + i]; // past 2^24 at Llama-3.2-3B (3,072 × 8,192)
      u += wu[imad(i, this.constants.F, f)] * x[o + i];
    }
    return ${siluExpr('g')} * u;
  }`,
  constants: { D: d, F, T },
});

/** The SwiGLU after split-K partial sums of gate and up (matvecPartialKernel each): a_f = silu(Σ_s g_s,f)·Σ_s u_s,f. */
export const swigluSumKernel = (F: number, S: number): DecodeKernel => ({
  key: 'dec.swiglu_sum',
  source: `function (pg, pu) {
    let g = 0.0;
    let u = 0.0;
    for (let s = 0; s < this.constants.S; s++) {
      g += pg[s * this.constants.F + this.thread.x];
      u += pu[s * this.constants.F + this.thread.x];
    }
    return ${siluExpr('g')} * u;
  }`,
  constants: { F, S },
});

/** Threads of the argmax's first step (each scans ⌈V/C⌉ strided logits). */
export const argmaxLanes = (V: number) => Math.min(256, V);

/** Lanes (T rows × C): lane c of row t holds the first maximum's id (within the row) over ids ≡ c (mod C). */
export const argmaxLanesKernel = (V: number, T = 1): DecodeKernel => ({
  key: 'dec.argmax1',
  source: `function (logits) {
    const t = Math.floor(this.thread.x / this.constants.C);
    const c = this.thread.x - t * this.constants.C;
    const o = t * this.constants.V;
    let best = c;
    let bv = logits[o + c];
    for (let k = 1; k < this.constants.PER; k++) {
      const i = c + k * this.constants.C;
      if (i < this.constants.V) {
        const v = logits[o + i];
        if (v > bv) { bv = v; best = i; }
      }
    }
    return best;
  }`,
  constants: { V, C: argmaxLanes(V), PER: Math.ceil(V / argmaxLanes(V)), T },
});

/** Row t's argmax (an id in [0, V)) from its C lanes; ties: the lowest id. */
export const argmaxFinalKernel = (V: number, T = 1): DecodeKernel => ({
  key: 'dec.argmax2',
  source: `function (logits, lanes) {
    const t = this.thread.x;
    const o = t * this.constants.V;
    const lo = t * this.constants.C;
    let best = lanes[lo];
    let bv = logits[o + best];
    for (let k = 1; k < this.constants.C; k++) {
      const i = lanes[lo + k];
      const v = logits[o + i];
      if (v > bv || (v == bv && i < best)) { bv = v; best = i; }
    }
    return best;
  }`,
  constants: { V, C: argmaxLanes(V), T },
});

// ---------------------------------------------------------------- Mamba-2 one step

/**
 * Conv channel c's new input: u_c = src[ZOFF + c], or through the grouped-query repeat (Mamba-1: x comes out of
 * its projection d_xb wide) src[ZOFF + ⌊⌊c/w⌋/rep⌋·w + c mod w] (lib/model/mixers/block.ts `repeatSources`).
 */
export interface ConvInput {
  zOff: number;
  repeat?: { piece: number; rep: number };
}
const convInput = (c: string, r: ConvInput) =>
  r.repeat
    ? `this.constants.ZOFF + Math.floor(Math.floor(${c} / this.constants.PIECE) / this.constants.REP) * this.constants.PIECE + ${c} - Math.floor(${c} / this.constants.PIECE) * this.constants.PIECE`
    : `this.constants.ZOFF + ${c}`;
const convConstants = (r: ConvInput) => ({
  ZOFF: r.zOff,
  ...(r.repeat ? { PIECE: r.repeat.piece, REP: r.repeat.rep } : {}),
});

/**
 * The depthwise conv's one step: xs_c (channels) from the old window s (channels, K−1), the new input u_c (see
 * ConvInput) and the conv weight (channels, K). A GPU.js kernel has one output, so the new window is its own
 * kernel (below).
 */
export const convStepKernel = (K: number, r: ConvInput, silu: boolean): DecodeKernel => ({
  key: `dec.conv${silu ? '+silu' : ''}${r.repeat ? '+repeat' : ''}`,
  source: `function (s, zxbcdt, w, b) {
    const c = this.thread.x;
    let acc = b[c];
    for (let k = 0; k < this.constants.KM1; k++) { acc += s[c * this.constants.KM1 + k] * w[c * this.constants.K + k]; }
    acc += zxbcdt[${convInput('c', r)}] * w[c * this.constants.K + this.constants.KM1];
    return ${silu ? siluExpr('acc') : 'acc'};
  }`,
  constants: { K, KM1: K - 1, ...convConstants(r) },
});

/** The new conv window (channels, K−1): shifted left by one, u appended. */
export const convShiftKernel = (K: number, r: ConvInput): DecodeKernel => ({
  key: `dec.conv_shift${r.repeat ? '+repeat' : ''}`,
  source: `function (s, zxbcdt) {
    const t = this.thread.x;
    const c = Math.floor(t / this.constants.KM1);
    const k = t - c * this.constants.KM1;
    let v = 0.0;
    if (k + 1 < this.constants.KM1) { v = s[t + 1]; } else { v = zxbcdt[${convInput('c', r)}]; }
    return v;
  }`,
  constants: { KM1: K - 1, ...convConstants(r) },
});

/**
 * The SSM state's step, one thread per (h, p, n): h' = exp(Δ_h A_h) h + Δ_h x_{h,p} B_{h,n}. x and B are read
 * from the conv output xs = [x (d_xb) | B (d_xb) | C (d_in)] through the grouped-query repeat: head h's
 * channel p of x is source channel ⌊h/REP⌋·P + p (REP = d_in/d_xb), the same for B with n.
 * params: [A (H) | dt_bias (H) | D (H)] with A = −exp(A_log) (float64, then float32).
 */
export const ssmStepKernel = (
  H: number,
  P: number,
  N: number,
  dXb: number,
  dInner: number,
  dtOff: number,
): DecodeKernel => ({
  key: 'dec.ssm_step',
  source: `function (ssm, xs, zxbcdt, par) {
    const t = this.thread.x;
    const h = Math.floor(t / this.constants.PN);
    const pn = t - h * this.constants.PN;
    const p = Math.floor(pn / this.constants.N);
    const n = pn - p * this.constants.N;
    const src = Math.floor(h / this.constants.REP) * this.constants.P;
    const dtv = zxbcdt[this.constants.DTOFF + h] + par[this.constants.H + h];
    ${softplusSnippet('dtv', 'delta')}
    const xv = xs[src + p];
    const bv = xs[this.constants.XB + src + n];
    return Math.exp(delta * par[h]) * ssm[t] + delta * xv * bv;
  }`,
  constants: { H, P, N, PN: P * N, REP: dInner / dXb, XB: dXb, DTOFF: dtOff },
});

/**
 * v_{h,p} = (Σ_n h_{h,p,n} C_{h,n} + D_h x_{h,p}) · silu(z_{h,p}) (the gate, when `gated`; else y as it is), one
 * thread per channel; then `groupNormKernel` for the gated RMSNorm (gate first). Two kernels, so no thread
 * recomputes its group's y (P·N steps each).
 */
export const ssmYKernel = (
  H: number,
  P: number,
  N: number,
  dXb: number,
  dInner: number,
  gated: boolean,
): DecodeKernel => ({
  key: gated ? 'dec.ssm_y+gate' : 'dec.ssm_y',
  source: `function (ssm, xs, zxbcdt, par) {
    const t = this.thread.x;
    const h = Math.floor(t / this.constants.P);
    const p = t - h * this.constants.P;
    const src = Math.floor(h / this.constants.REP) * this.constants.P;
    let y = par[this.constants.H2 + h] * xs[src + p];
    for (let n = 0; n < this.constants.N; n++) {
      y += ssm[t * this.constants.N + n] * xs[this.constants.XB2 + h * this.constants.N + n];
    }
    ${
      gated
        ? `const zv = zxbcdt[t];
    y = y * ${siluExpr('zv')};`
        : ''
    }
    return y;
  }`,
  constants: { H2: 2 * H, P, N, REP: dInner / dXb, XB2: 2 * dXb },
});

/** y_c = v_c / √(mean over c's group of GS of v² + ε) · w_{c mod W} (T rows of W channels). */
export const groupNormKernel = (GS: number, eps: number, W: number): DecodeKernel => ({
  key: 'dec.group_norm',
  source: `function (v, w) {
    const t = this.thread.x;
    const g0 = Math.floor(t / this.constants.GS) * this.constants.GS;
    let ss = 0.0;
    for (let k = 0; k < this.constants.GS; k++) { ss += v[g0 + k] * v[g0 + k]; }
    return v[t] / Math.sqrt(ss / this.constants.GS + this.constants.EPS) * w[t - Math.floor(t / this.constants.W) * this.constants.W];
  }`,
  constants: { GS, EPS: eps, W },
});

// ---------------------------------------------------------------- Mamba-1 one step

/** Statements: q = channel c's state index n within its group, bsrc = q through the repeat of piece PIECE (B's source). */
const m1Bsrc = `const q = Math.floor(c / this.constants.N) * this.constants.N + n;
      const bsrc = Math.floor(Math.floor(q / this.constants.PIECE) / this.constants.REP) * this.constants.PIECE + q - Math.floor(q / this.constants.PIECE) * this.constants.PIECE;`;

/**
 * Mamba-1's projections come out of one matvec as proj = [x (d_xb) | z (d_in) | B (d_xb) | C (d_in) | dt_low (R)].
 * The state step, one thread per (c, n), c = g·N + p a channel of group g:
 *   Δ_c = softplus(Σ_r W_dt[c, r] dt_low_r + b_c·TWICE + b_c)     (upstream adds b_Δ twice: TWICE = 1; clean: 0)
 *   h_{c,n} ← exp(Δ_c A_{c,n}) h_{c,n} + Δ_c xc_c B_{g,n}        B_{g,n} = B through the repeat of piece w
 * par = [b_Δ (d_in) | D (d_in)], A = −exp(A_log) (d_in, N), W_dt (d_in, R) as stored.
 */
export const mamba1StepKernel = (
  dInner: number,
  N: number,
  R: number,
  dXb: number,
  piece: number,
  twice: boolean,
): DecodeKernel => ({
  key: 'dec.m1_step',
  source: `function (ssm, xc, proj, wdt, A, par) {
    const t = this.thread.x;
    const c = Math.floor(t / this.constants.N);
    const n = t - c * this.constants.N;
    let dt = par[c] * this.constants.BIAS;
    for (let r = 0; r < this.constants.R; r++) { dt += wdt[c * this.constants.R + r] * proj[this.constants.DOWN + r]; }
    ${softplusSnippet('dt', 'delta')}
    ${m1Bsrc}
    return Math.exp(delta * A[t]) * ssm[t] + delta * xc[c] * proj[this.constants.BOFF + bsrc];
  }`,
  constants: {
    N,
    R,
    BIAS: twice ? 2 : 1,
    DOWN: 2 * dXb + 2 * dInner,
    BOFF: dXb + dInner,
    PIECE: piece,
    REP: dInner / dXb,
  },
});

/** y_c = (Σ_n h_{c,n} C_{g,n} + D_c xc_c) · silu(z_c), one thread per channel. */
export const mamba1OutKernel = (dInner: number, N: number, dXb: number): DecodeKernel => ({
  key: 'dec.m1_out',
  source: `function (ssm, xc, proj, par) {
    const c = this.thread.x;
    const g0 = Math.floor(c / this.constants.N) * this.constants.N;
    let y = par[this.constants.DIN + c] * xc[c];
    for (let n = 0; n < this.constants.N; n++) { y += ssm[c * this.constants.N + n] * proj[this.constants.COFF + g0 + n]; }
    const zv = proj[this.constants.ZOFF + c];
    return y * ${siluExpr('zv')};
  }`,
  constants: { N, DIN: dInner, COFF: 2 * dXb + dInner, ZOFF: dXb },
});

// ---------------------------------------------------------------- windows of T tokens (verify, prefill)

/**
 * A window's meta: [s, pos₀, id₀ … id_{T−1}, verify] — s ≤ T real rows at positions pos₀ … pos₀+s−1; ids
 * start at WINDOW_IDS; verify = 1 makes the acceptance greedy Algorithm 2, 0 commits all s rows (a prefill).
 */
export const WINDOW_IDS = 2;
export const windowMetaLength = (T: number) => T + 3;

/**
 * What the window commits, commit = [n, next]: verify — d_m = ids[m] (m ≥ 1) accepted while d_m = argmax of
 * row m−1 (the first mismatch stops it), n = 1 + accepted; prefill — n = s. next = argmax of row n−1 (the
 * correction, the bonus token, or the greedy id after a prompt). Thread 0 gives n, thread 1 next.
 */
export const acceptKernel = (T: number): DecodeKernel => ({
  key: 'dec.accept',
  source: `function (amax, meta) {
    const s = meta[0];
    let n = s;
    if (meta[this.constants.FLAG] > 0.5) {
      let a = 0;
      let go = 1.0;
      for (let m = 0; m < this.constants.T; m++) {
        if (m + 1 < s && go > 0.5) {
          if (amax[m] == meta[this.constants.IDOFF + m + 1]) { a += 1; } else { go = 0.0; }
        }
      }
      n = a + 1;
    }
    let out = n;
    if (this.thread.x > 0) { out = amax[n - 1]; }
    return out;
  }`,
  constants: { T, IDOFF: WINDOW_IDS, FLAG: WINDOW_IDS + T },
});

/** Statements setting `u` = input τ of conv channel c: the old window s (τ < 0: its column K−1+τ) or row τ of src. */
const convTap = (r: ConvInput) =>
  `let u = 0.0;
    if (tau < 0) { u = s[c * this.constants.KM1 + this.constants.KM1 + tau]; } else { u = src[tau * this.constants.RS + ${convInput('c', r)}]; }`;

/**
 * The depthwise conv over a window: xs_{t,c} = act(b_c + Σ_{k<K} w_{c,k} u_{t−K+1+k}) with u_τ (τ < 0) the old
 * window's inputs, u_τ (τ ≥ 0) row τ of src (RS floats a row), through ConvInput. Output (T, C).
 */
export const convWindowKernel = (
  K: number,
  r: ConvInput,
  silu: boolean,
  C: number,
  RS: number,
  T: number,
): DecodeKernel => ({
  key: `dec.conv_window${silu ? '+silu' : ''}${r.repeat ? '+repeat' : ''}`,
  source: `function (s, src, w, b) {
    const t = Math.floor(this.thread.x / this.constants.C);
    const c = this.thread.x - t * this.constants.C;
    let acc = b[c];
    for (let k = 0; k < this.constants.K; k++) {
      const tau = t - this.constants.KM1 + k;
      ${convTap(r)}
      acc += u * w[c * this.constants.K + k];
    }
    return ${silu ? siluExpr('acc') : 'acc'};
  }`,
  constants: { K, KM1: K - 1, C, RS, T, ...convConstants(r) },
});

/** The conv window after the n = commit[0] committed rows: s'_{c,k} = u_{n−K+1+k}. Output (C, K−1). */
export const convCommitKernel = (K: number, r: ConvInput, RS: number): DecodeKernel => ({
  key: `dec.conv_commit${r.repeat ? '+repeat' : ''}`,
  source: `function (s, src, commit) {
    const c = Math.floor(this.thread.x / this.constants.KM1);
    const tau = commit[0] - this.constants.KM1 + this.thread.x - c * this.constants.KM1;
    ${convTap(r)}
    return u;
  }`,
  constants: { KM1: K - 1, RS, ...convConstants(r) },
});

/** Mamba-2's Δ_{t,h} = softplus(dt_{t,h} + b_h) over a window (dt at DTOFF of each RZ-float row). Output (T, H). */
export const m2DeltaKernel = (H: number, RZ: number, dtOff: number): DecodeKernel => ({
  key: 'dec.m2_delta',
  source: `function (zxbcdt, par) {
    const t = Math.floor(this.thread.x / this.constants.H);
    const h = this.thread.x - t * this.constants.H;
    const dtv = zxbcdt[t * this.constants.RZ + this.constants.DTOFF + h] + par[this.constants.H + h];
    ${softplusSnippet('dtv', 'delta')}
    return delta;
  }`,
  constants: { H, RZ, DTOFF: dtOff },
});

/**
 * Mamba-2's MultiStep outputs over a window (lib/ref/multistep.ts): from the one cached state h_j, row t's state
 * h_{j+t+1} is replayed per n (h ← exp(Δ_τ A_h) h + Δ_τ x_τ B_τ, τ ≤ t) and never stored;
 * y_{t,h,p} = Σ_n C_{t,n} h_{t,n} + D_h x_{t,p}, times silu(z_{t,h,p}) when gated. Output (T, d_in).
 */
export const m2WindowYKernel = (
  H: number,
  P: number,
  N: number,
  dXb: number,
  dInner: number,
  RZ: number,
  gated: boolean,
  T: number,
): DecodeKernel => ({
  key: gated ? 'dec.m2_window_y+gate' : 'dec.m2_window_y',
  source: `function (ssm, xs, zxbcdt, par, delta) {
    const t = Math.floor(this.thread.x / this.constants.DIN);
    const ch = this.thread.x - t * this.constants.DIN;
    const h = Math.floor(ch / this.constants.P);
    const p = ch - h * this.constants.P;
    const src = Math.floor(h / this.constants.REP) * this.constants.P;
    const A = par[h];
    let y = par[this.constants.H2 + h] * xs[t * this.constants.CD + src + p];
    for (let n = 0; n < this.constants.N; n++) {
      let hn = ssm[ch * this.constants.N + n];
      for (let tau = 0; tau < this.constants.T; tau++) {
        if (tau > t) { break; }
        const dl = delta[tau * this.constants.H + h];
        const ro = tau * this.constants.CD;
        hn = Math.exp(dl * A) * hn + dl * xs[ro + src + p] * xs[ro + this.constants.XB + src + n];
      }
      y += hn * xs[t * this.constants.CD + this.constants.XB2 + h * this.constants.N + n];
    }
    ${
      gated
        ? `const zv = zxbcdt[t * this.constants.RZ + ch];
    y = y * ${siluExpr('zv')};`
        : ''
    }
    return y;
  }`,
  constants: { H, H2: 2 * H, P, N, DIN: dInner, REP: dInner / dXb, XB: dXb, XB2: 2 * dXb, CD: dInner + 2 * dXb, RZ, T },
});

/** Mamba-2's state after the n = commit[0] committed rows: MultiStep's replay from h_j. Output (H, P, N). */
export const m2CommitKernel = (
  H: number,
  P: number,
  N: number,
  dXb: number,
  dInner: number,
  T: number,
): DecodeKernel => ({
  key: 'dec.m2_commit',
  source: `function (ssm, xs, par, delta, commit) {
    const x = this.thread.x;
    const h = Math.floor(x / this.constants.PN);
    const pn = x - h * this.constants.PN;
    const p = Math.floor(pn / this.constants.N);
    const n = pn - p * this.constants.N;
    const src = Math.floor(h / this.constants.REP) * this.constants.P;
    let hn = ssm[x];
    for (let tau = 0; tau < this.constants.T; tau++) {
      if (tau >= commit[0]) { break; }
      const dl = delta[tau * this.constants.H + h];
      const ro = tau * this.constants.CD;
      hn = Math.exp(dl * par[h]) * hn + dl * xs[ro + src + p] * xs[ro + this.constants.XB + src + n];
    }
    return hn;
  }`,
  constants: { H, P, N, PN: P * N, REP: dInner / dXb, XB: dXb, CD: dInner + 2 * dXb, T },
});

/** Mamba-1's Δ_{t,c} = softplus(Σ_r W_dt[c, r] dt_low_{t,r} + b_c·(1 + TWICE)) over a window. Output (T, d_in). */
export const m1DeltaKernel = (dInner: number, R: number, RT: number, dXb: number, twice: boolean): DecodeKernel => ({
  key: 'dec.m1_delta',
  source: `function (proj, wdt, par) {
    const t = Math.floor(this.thread.x / this.constants.DIN);
    const c = this.thread.x - t * this.constants.DIN;
    let dt = par[c] * this.constants.BIAS;
    for (let r = 0; r < this.constants.R; r++) { dt += wdt[c * this.constants.R + r] * proj[t * this.constants.RT + this.constants.DOWN + r]; }
    ${softplusSnippet('dt', 'delta')}
    return delta;
  }`,
  constants: { DIN: dInner, R, RT, BIAS: twice ? 2 : 1, DOWN: 2 * dXb + 2 * dInner },
});

/**
 * Mamba-1's MultiStep outputs over a window: y_{t,c} = (Σ_n C_{t,g,n} h_{t,c,n} + D_c xc_{t,c}) · silu(z_{t,c}),
 * h_{t,c,n} replayed from the cached state (h ← exp(Δ_τ A_{c,n}) h + Δ_τ xc_τ B_{τ,g,n}, τ ≤ t). Output (T, d_in).
 */
export const m1WindowOutKernel = (
  dInner: number,
  N: number,
  dXb: number,
  piece: number,
  RT: number,
  T: number,
): DecodeKernel => ({
  key: 'dec.m1_window_out',
  source: `function (ssm, xc, proj, A, par, delta) {
    const t = Math.floor(this.thread.x / this.constants.DIN);
    const c = this.thread.x - t * this.constants.DIN;
    const g0 = Math.floor(c / this.constants.N) * this.constants.N;
    let y = par[this.constants.DIN + c] * xc[this.thread.x];
    for (let n = 0; n < this.constants.N; n++) {
      ${m1Bsrc}
      let hn = ssm[c * this.constants.N + n];
      for (let tau = 0; tau < this.constants.T; tau++) {
        if (tau > t) { break; }
        const dl = delta[tau * this.constants.DIN + c];
        hn = Math.exp(dl * A[c * this.constants.N + n]) * hn + dl * xc[tau * this.constants.DIN + c] * proj[tau * this.constants.RT + this.constants.BOFF + bsrc];
      }
      y += hn * proj[t * this.constants.RT + this.constants.COFF + g0 + n];
    }
    const zv = proj[t * this.constants.RT + this.constants.ZOFF + c];
    return y * ${siluExpr('zv')};
  }`,
  constants: {
    DIN: dInner,
    N,
    RT,
    T,
    BOFF: dXb + dInner,
    COFF: 2 * dXb + dInner,
    ZOFF: dXb,
    PIECE: piece,
    REP: dInner / dXb,
  },
});

/** Mamba-1's state after the n = commit[0] committed rows (MultiStep's replay from h_j). Output (d_in, N). */
export const m1CommitKernel = (
  dInner: number,
  N: number,
  dXb: number,
  piece: number,
  RT: number,
  T: number,
): DecodeKernel => ({
  key: 'dec.m1_commit',
  source: `function (ssm, xc, proj, A, delta, commit) {
    const x = this.thread.x;
    const c = Math.floor(x / this.constants.N);
    const n = x - c * this.constants.N;
    ${m1Bsrc}
    let hn = ssm[x];
    for (let tau = 0; tau < this.constants.T; tau++) {
      if (tau >= commit[0]) { break; }
      const dl = delta[tau * this.constants.DIN + c];
      hn = Math.exp(dl * A[x]) * hn + dl * xc[tau * this.constants.DIN + c] * proj[tau * this.constants.RT + this.constants.BOFF + bsrc];
    }
    return hn;
  }`,
  constants: { DIN: dInner, N, RT, T, BOFF: dXb + dInner, PIECE: piece, REP: dInner / dXb },
});

// ---------------------------------------------------------------- sampling (lib/model/generate.ts's sampler)

/**
 * The one-token meta with sampling: [id, pos, u, T, k, p] — u a uniform in [0, 1) drawn on the host from the
 * seeded generator, T the temperature (0: greedy), k the top-k (≥ V: none), p the top-p (≥ 1: none).
 */
export const SAMPLE_META = 6;

/**
 * q_i = exp((ℓ_i − max)/T) when id i is kept, else 0 (unnormalised): kept = rank(i) < k and the mass of the ids
 * ranked before it < p·z — the sampler's order (probability descending, ties by lower id), without sorting:
 * thread i counts its rank and the mass before it over all V ids (V steps; skipped when neither cut is set).
 * max = ℓ at the argmax. T = 0 (greedy): 0 everywhere (the draw returns the argmax).
 */
export const sampleWeightsKernel = (V: number): DecodeKernel => ({
  key: 'dec.sample_weights',
  source: `function (logits, amax, meta) {
    const T = meta[3];
    let q = 0.0;
    if (T > 0.0) {
      const i = this.thread.x;
      const mx = logits[amax[0]];
      const pi = Math.exp((logits[i] - mx) / T);
      q = pi;
      if (meta[4] < this.constants.V || meta[5] < 1.0) {
        let rank = 0.0;
        let before = 0.0;
        let z = 0.0;
        for (let j = 0; j < this.constants.V; j++) {
          const pj = Math.exp((logits[j] - mx) / T);
          z += pj;
          if (pj > pi || (pj == pi && j < i)) { rank += 1.0; before += pj; }
        }
        if (rank >= meta[4]) { q = 0.0; }
        if (before >= meta[5] * z) { q = 0.0; }
      }
    }
    return q;
  }`,
  constants: { V },
});

/**
 * Sums of the sampling weights over C contiguous chunks of ⌈V/C⌉ ids (the draw's first step); greedy (meta's T = 0:
 * every weight 0, the draw returns the argmax) skips the ⌈V/C⌉ loads of each thread.
 */
export const sampleChunksKernel = (V: number): DecodeKernel => ({
  key: 'dec.sample_chunks',
  source: `function (q, meta) {
    let s = 0.0;
    if (meta[3] > 0.0) {
      for (let k = 0; k < this.constants.CH; k++) {
        const i = this.thread.x * this.constants.CH + k;
        if (i < this.constants.V) { s += q[i]; }
      }
    }
    return s;
  }`,
  constants: { V, CH: Math.ceil(V / argmaxLanes(V)) },
});

/**
 * The draw (one thread), as lib/model/generate.ts drawFrom: the first id (in id order) whose cumulative weight
 * exceeds u·Σq — the chunk first, then within it; the last id of positive weight if rounding leaves none. T = 0:
 * the argmax.
 */
export const sampleDrawKernel = (V: number): DecodeKernel => ({
  key: 'dec.sample_draw',
  source: `function (q, chunks, meta, amax) {
    let out = amax[0];
    if (meta[3] > 0.0) {
      let S = 0.0;
      for (let c = 0; c < this.constants.C; c++) { S += chunks[c]; }
      const target = meta[2] * S;
      let acc = 0.0;
      let chunk = -1;
      for (let c = 0; c < this.constants.C; c++) {
        if (chunk < 0) {
          if (target < acc + chunks[c]) { chunk = c; } else { acc += chunks[c]; }
        }
      }
      let found = -1;
      if (chunk >= 0) {
        for (let k = 0; k < this.constants.CH; k++) {
          const i = chunk * this.constants.CH + k;
          if (found < 0 && i < this.constants.V) {
            acc += q[i];
            if (target < acc) { found = i; }
          }
        }
      }
      if (found < 0) {
        for (let i = 0; i < this.constants.V; i++) { if (q[i] > 0.0) { found = i; } }
      }
      out = found;
    }
    return out;
  }`,
  constants: { V, C: argmaxLanes(V), CH: Math.ceil(V / argmaxLanes(V)) },
});
