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

export const embedKernel = (d: number): DecodeKernel => ({
  key: 'dec.embed',
  source: `function (emb, meta) { return emb[meta[0] * this.constants.D + this.thread.x]; }`,
  constants: { D: d },
});

export const rmsnormKernel = (d: number, eps: number): DecodeKernel => ({
  key: 'dec.rmsnorm',
  source: `function (h, w) {
    let ss = 0.0;
    for (let i = 0; i < this.constants.D; i++) { ss += h[i] * h[i]; }
    return h[this.thread.x] * (1.0 / Math.sqrt(ss / this.constants.D + this.constants.EPS)) * w[this.thread.x];
  }`,
  constants: { D: d, EPS: eps },
});

/** y = Wᵀ-stored matrix times x (K inputs, R outputs), plus the residual h when `residual`. */
export const matvecKernel = (K: number, R: number, residual: boolean): DecodeKernel => ({
  key: residual ? 'dec.matvec+res' : 'dec.matvec',
  source: `function (x, wt${residual ? ', h' : ''}) {
    let s = 0.0;
    for (let i = 0; i < this.constants.K; i++) { s += wt[i * this.constants.R + this.thread.x] * x[i]; }
    return ${residual ? 'h[this.thread.x] + s' : 's'};
  }`,
  constants: { K, R },
});

/**
 * Split-K matvec, for few outputs over a long input (o_proj, down_proj: R = d outputs, only R/64 workgroups of
 * one long loop each): S·R threads, thread (s, r) sums i ∈ [s·KC, min(K, (s+1)·KC)), KC = ⌈K/S⌉; then
 * `splitSumKernel` adds the S partial sums (and the residual or bias). `splitsFor` picks S.
 */
export const matvecPartialKernel = (K: number, R: number, S: number): DecodeKernel => ({
  key: 'dec.matvec_part',
  source: `function (x, wt) {
    const s = Math.floor(this.thread.x / this.constants.R);
    const r = this.thread.x - s * this.constants.R;
    let acc = 0.0;
    for (let k = 0; k < this.constants.KC; k++) {
      const i = s * this.constants.KC + k;
      if (i < this.constants.K) { acc += wt[i * this.constants.R + r] * x[i]; }
    }
    return acc;
  }`,
  constants: { K, R, KC: Math.ceil(K / S) },
});

export const splitSumKernel = (R: number, S: number, residual: boolean): DecodeKernel => ({
  key: residual ? 'dec.split_sum+res' : 'dec.split_sum',
  source: `function (part${residual ? ', h' : ''}) {
    let acc = ${residual ? 'h[this.thread.x]' : '0.0'};
    for (let s = 0; s < this.constants.S; s++) { acc += part[s * this.constants.R + this.thread.x]; }
    return acc;
  }`,
  constants: { R, S },
});

/** Splits of a K-long, R-output matvec: enough threads to fill a GPU (~8192), each summing ≥ 8 inputs. */
export const splitsFor = (K: number, R: number): number => Math.max(1, Math.min(Math.ceil(8192 / R), Math.ceil(K / 8)));

/** Output (H·hd + 2·H_kv·hd): q and k rotated, then v. */
export const qkvRopeKernel = (d: number, H: number, Hkv: number, hd: number): DecodeKernel => ({
  key: 'dec.qkv_rope',
  source: `function (x, wq, wk, wv, rope, meta) {
    const t = this.thread.x;
    let out = 0.0;
    if (t >= this.constants.Q + this.constants.KV) {
      const r = t - this.constants.Q - this.constants.KV;
      for (let i = 0; i < this.constants.D; i++) { out += wv[i * this.constants.KV + r] * x[i]; }
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
        for (let i = 0; i < this.constants.D; i++) { a += wk[i * R + r] * x[i]; b += wk[i * R + partner] * x[i]; }
      } else {
        for (let i = 0; i < this.constants.D; i++) { a += wq[i * R + r] * x[i]; b += wq[i * R + partner] * x[i]; }
      }
      const row = meta[1] * this.constants.HD;
      out = a * rope[row + f] + sign * b * rope[row + this.constants.HALF + f];
    }
    return out;
  }`,
  constants: { D: d, Q: H * hd, KV: Hkv * hd, HD: hd, HALF: hd / 2 },
});

/**
 * Attention's scores, one thread per (head h, key j): s_{h,j} = q_h·k_{g,j}/√hd for j ≤ pos, −3e38 past it
 * (never read: the weighted sum stops at pos). Two kernels rather than one thread per output channel looping
 * over every key (pos·hd steps each): this one is cap·H threads of hd steps, the next H·hd threads of 2·pos.
 */
export const attentionScoresKernel = (H: number, Hkv: number, hd: number, cap: number): DecodeKernel => ({
  key: 'dec.attn_scores',
  source: `function (qkv, kc, meta) {
    const t = this.thread.x;
    const h = Math.floor(t / this.constants.CAP);
    const j = t - h * this.constants.CAP;
    const g = Math.floor(h / this.constants.GROUPS) * this.constants.HD;
    let s = -3.0e38;
    if (j <= meta[1]) {
      s = 0.0;
      for (let i = 0; i < this.constants.HD; i++) {
        s += qkv[h * this.constants.HD + i] * kc[j * this.constants.KV + g + i];
      }
      s = s * this.constants.SCALE;
    }
    return s;
  }`,
  constants: { HD: hd, GROUPS: H / Hkv, KV: Hkv * hd, CAP: cap, SCALE: 1 / Math.sqrt(hd) },
});

/** y_{h,c} = Σ_{j ≤ pos} exp(s_{h,j} − max) v_{g,j,c} / Σ_{j ≤ pos} exp(s_{h,j} − max), one thread per (h, c). */
export const attentionValuesKernel = (H: number, Hkv: number, hd: number, cap: number): DecodeKernel => ({
  key: 'dec.attn_values',
  source: `function (scores, vc, meta) {
    const t = this.thread.x;
    const h = Math.floor(t / this.constants.HD);
    const c = t - h * this.constants.HD;
    const g = Math.floor(h / this.constants.GROUPS) * this.constants.HD;
    const pos = meta[1];
    const row = h * this.constants.CAP;
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
  constants: { HD: hd, GROUPS: H / Hkv, KV: Hkv * hd, CAP: cap },
});

export const swigluKernel = (d: number, F: number): DecodeKernel => ({
  key: 'dec.swiglu',
  source: `function (x, wg, wu) {
    let g = 0.0;
    let u = 0.0;
    for (let i = 0; i < this.constants.D; i++) {
      g += wg[i * this.constants.F + this.thread.x] * x[i];
      u += wu[i * this.constants.F + this.thread.x] * x[i];
    }
    return ${siluExpr('g')} * u;
  }`,
  constants: { D: d, F },
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

export const argmaxLanesKernel = (V: number): DecodeKernel => ({
  key: 'dec.argmax1',
  source: `function (logits) {
    const c = this.thread.x;
    let best = c;
    let bv = logits[c];
    for (let k = 1; k < this.constants.PER; k++) {
      const i = c + k * this.constants.C;
      if (i < this.constants.V) {
        const v = logits[i];
        if (v > bv) { bv = v; best = i; }
      }
    }
    return best;
  }`,
  constants: { V, C: argmaxLanes(V), PER: Math.ceil(V / argmaxLanes(V)) },
});

export const argmaxFinalKernel = (V: number): DecodeKernel => ({
  key: 'dec.argmax2',
  source: `function (logits, lanes) {
    let best = lanes[0];
    let bv = logits[best];
    for (let k = 1; k < this.constants.C; k++) {
      const i = lanes[k];
      const v = logits[i];
      if (v > bv || (v == bv && i < best)) { bv = v; best = i; }
    }
    return best;
  }`,
  constants: { C: argmaxLanes(V) },
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

/** y_c = v_c / √(mean over c's group of GS of v² + ε) · w_c. */
export const groupNormKernel = (GS: number, eps: number): DecodeKernel => ({
  key: 'dec.group_norm',
  source: `function (v, w) {
    const t = this.thread.x;
    const g0 = Math.floor(t / this.constants.GS) * this.constants.GS;
    let ss = 0.0;
    for (let k = 0; k < this.constants.GS; k++) { ss += v[g0 + k] * v[g0 + k]; }
    return v[t] / Math.sqrt(ss / this.constants.GS + this.constants.EPS) * w[t];
  }`,
  constants: { GS, EPS: eps },
});

// ---------------------------------------------------------------- Mamba-1 one step

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
    const q = Math.floor(c / this.constants.N) * this.constants.N + n;
    const bsrc = Math.floor(Math.floor(q / this.constants.PIECE) / this.constants.REP) * this.constants.PIECE + q - Math.floor(q / this.constants.PIECE) * this.constants.PIECE;
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
