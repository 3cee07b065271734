/**
 * Training kernels of the Mamba-2 mixer (float32), forward and backward, for the GPU training step's resident
 * chain (lib/train/gpu_step.ts), in the chain's row-major (N, width) layout, N = b·l rows, row n = b·l + t.
 * References (float64): lib/model/mixers/mamba2.ts `mamba2Train` over lib/ref/conv1d.ts and lib/ref/ssd.ts; the
 * gated RMSNorm's kernels are kernels/gated_rmsnorm.ts's own sources. One thread per output value; every loop
 * bound a constant.
 *
 *   columns:   y[n, j] = x[n, at + j]                        (the in_proj split [z | xBC | dt], the conv split)
 *   join:      y = [a | b | c] side by side                 (∂ℓ/∂in_proj's output from ∂z, ∂xBC, ∂dt)
 *   repeat:    y[n, c] = x[n, at + src(c)],  src(c) = ⌊⌊c/w⌋/rep⌋·w + c mod w,  rep = d_in/d_xb   (x, B per head)
 *   Δ:         Δ[n, h] = softplus(dt[n, h] + dt_bias[h])
 *   conv:      s[n, c] = bias[c] + Σ_k w[c, k] x[n + k − (K−1), c]  (terms before the row's start left out),
 *              xs = silu(s);  back: ds = dxs silu'(s), dx[n, c] = Σ_k w[c, k] ds[n + K−1−k, c] (within the row),
 *              dw[c, k] = Σ_n ds[n, c] x[n + k − (K−1), c], dbias = Σ_n ds (kernels/train_layers.ts linearDbKernel)
 * The scan (ScanRows: the Mamba-2 SSD's channels are (head h, p), Δ, A, D per head; Mamba-1's are its d_in
 * channels, Δ and D per channel, A per (channel, state)), written here for the SSD per head h with
 * A_h = −exp(A_log[h]), e_t = exp(Δ_t A_h), on x (N, H·P), B, C (N, H·N_s):
 *   h_t[p, s] = e_t h_{t−1}[p, s] + Δ_t B_t[s] x_t[p],   y_t[p] = Σ_s C_t[s] h_t[p, s] + D_h x_t[p]
 * chunked as kernels/selective_scan.ts (chunks of CH steps: each chunk's state from zero, the state entering each
 * chunk, then a replay of ≤ CH steps), and back as kernels/selective_scan_backward.ts, with f_t = dy_t[p] C_t[s]:
 *   G_t = f_t + g_{t+1},  g_t = e_t G_t  (chunked the same way, from the right)
 *   ∂ℓ/∂Δ[n, h]   = Σ_{p,s} G_t (A_h e_t h_{t−1} + B_t x_t),  ∂ℓ/∂dt = ∂ℓ/∂Δ σ(dt + dt_bias)  (softplus'; 1 above 20)
 *   ∂ℓ/∂x_t[p]    = dy_t D_h + Σ_s G_t Δ_t B_t[s]      ∂ℓ/∂B_t[s] = Σ_p G_t Δ_t x_t[p]    ∂ℓ/∂C_t[s] = Σ_p dy_t h_t
 *   ∂ℓ/∂A_log[h]  = A_h Σ_{n,p,s} G_t Δ_t e_t h_{t−1}  ∂ℓ/∂D_h = Σ_{n,p} dy x       ∂ℓ/∂dt_bias = Σ_n ∂ℓ/∂dt
 *                   (the two sums per head in two levels of many short loops: headSumKernels)
 *   repeat back:  ∂ℓ/∂xs[n, j] = Σ over the rep copies of piece ⌊j/w⌋ (the scatter-add of tape.ts repeatLayer)
 *
 * Symbols: b batch · l sequence length · N rows · H heads · P head width · N_s d_state (P = N_s) · d_in = H·P ·
 * d_xb · K conv width · CH chunk length · NC = ⌈l/CH⌉ chunks.
 */
import type { TrainKernel } from './train_layers.js';
import { ArgumentError } from '../lib/errors.js';
import { siluExpr, softplusSnippet, unflatten } from './snippets.js';

const K = 'this.constants';

/** Columns [at, at + w) of x (N, width) → (N, w). */
export const colsKernel = (N: number, width: number, at: number, w: number): TrainKernel => ({
  key: 'm2.cols',
  source: `function (x) {
    const n = Math.floor(this.thread.x / ${K}.W);
    return x[n * ${K}.WIDTH + ${K}.AT + this.thread.x - n * ${K}.W];
  }`,
  constants: { W: w, WIDTH: width, AT: at },
  size: N * w,
});

/** [a | b | c]: a (N, W0), b (N, W1), c (N, W2) → (N, W0 + W1 + W2). */
export const join3Kernel = (N: number, w: readonly [number, number, number]): TrainKernel => ({
  key: 'm2.join3',
  source: `function (a, b, c) {
    const n = Math.floor(this.thread.x / ${K}.WIDTH);
    const j = this.thread.x - n * ${K}.WIDTH;
    let v = 0.0;
    if (j < ${K}.W0) { v = a[n * ${K}.W0 + j]; }
    else if (j < ${K}.W0 + ${K}.W1) { v = b[n * ${K}.W1 + j - ${K}.W0]; }
    else { v = c[n * ${K}.W2 + j - ${K}.W0 - ${K}.W1]; }
    return v;
  }`,
  constants: { W0: w[0], W1: w[1], W2: w[2], WIDTH: w[0] + w[1] + w[2] },
  size: N * (w[0] + w[1] + w[2]),
});

/** The repeat of `from` source columns at [at, at + from) of x (N, width) to `to` columns in pieces of `piece`. */
export const repeatKernel = (
  N: number,
  width: number,
  at: number,
  from: number,
  to: number,
  piece: number,
): TrainKernel => ({
  key: 'm2.repeat',
  source: `function (x) {
    const n = Math.floor(this.thread.x / ${K}.TO);
    const c = this.thread.x - n * ${K}.TO;
    const j = Math.floor(c / ${K}.PIECE);
    const src = Math.floor(j / ${K}.REP) * ${K}.PIECE + c - j * ${K}.PIECE;
    return x[n * ${K}.WIDTH + ${K}.AT + src];
  }`,
  constants: { TO: to, PIECE: piece, REP: to / from, WIDTH: width, AT: at },
  size: N * to,
});

/**
 * ∂ℓ/∂xs (N, 2·d_xb + d_in) from the repeated x's and B's gradients (N, d_in) (each summed over its rep copies)
 * and C's (N, d_in) as it is: args dx, dB, dC.
 */
export const repeatBackKernel = (N: number, dXb: number, dIn: number, P: number, Ns: number): TrainKernel => ({
  key: 'm2.repeat_back',
  source: `function (dx, db, dc) {
    const n = Math.floor(this.thread.x / ${K}.WIDTH);
    const c = this.thread.x - n * ${K}.WIDTH;
    let v = 0.0;
    if (c < 2 * ${K}.X) {
      let w = ${K}.P;
      let cc = c;
      if (c >= ${K}.X) { w = ${K}.NS; cc = c - ${K}.X; }
      const j = Math.floor(cc / w);
      const q = cc - j * w;
      for (let r = 0; r < ${K}.REP; r++) {
        const at = n * ${K}.I + (j * ${K}.REP + r) * w + q;
        if (c < ${K}.X) { v += dx[at]; } else { v += db[at]; }
      }
    } else {
      v = dc[n * ${K}.I + c - 2 * ${K}.X];
    }
    return v;
  }`,
  constants: { X: dXb, I: dIn, P, NS: Ns, REP: dIn / dXb, WIDTH: 2 * dXb + dIn },
  size: N * (2 * dXb + dIn),
});

/** Δ = softplus(dt + dt_bias[h]): dt (N, H), dt_bias (H) → (N, H). */
export const deltaKernel = (N: number, H: number): TrainKernel => ({
  key: 'm2.delta',
  source: `function (dt, bias) {
    const h = this.thread.x - Math.floor(this.thread.x / ${K}.H) * ${K}.H;
    const v = dt[this.thread.x] + bias[h];
    ${softplusSnippet('v', 'r')}
    return r;
  }`,
  constants: { H },
  size: N * H,
});

/** The conv's shape: rows N = b·l of sequences of l, C channels, width K. */
export interface ConvRows {
  N: number;
  L: number;
  C: number;
  K: number;
}

/** s[n, c] (the pre-activation) as statements, for the forward and ds. */
const convSum = (bias: boolean) => `const n = Math.floor(this.thread.x / ${K}.C);
    const c = this.thread.x - n * ${K}.C;
    const t = n - Math.floor(n / ${K}.L) * ${K}.L;
    let s = ${bias ? 'bias[c]' : '0.0'};
    for (let k = 0; k < ${K}.K; k++) {
      const j = t + k - (${K}.K - 1);
      if (j >= 0) { s += w[c * ${K}.K + k] * x[(n + k - (${K}.K - 1)) * ${K}.C + c]; }
    }`;

/** xs = silu(conv(x)) (or the conv alone): x (N, C), w (C, K) (, bias (C)) → (N, C). */
export const convRowsKernel = (s: ConvRows, bias: boolean, silu: boolean): TrainKernel => ({
  key: `m2.conv${bias ? '+b' : ''}${silu ? '+silu' : ''}`,
  source: `function (x, w${bias ? ', bias' : ''}) {
    ${convSum(bias)}
    return ${silu ? siluExpr('s') : 's'};
  }`,
  constants: { C: s.C, L: s.L, K: s.K },
  size: s.N * s.C,
});

/** ds = dout·silu'(s) (or dout): x, w, dout (, bias) → (N, C). */
export const convDsKernel = (s: ConvRows, bias: boolean, silu: boolean): TrainKernel => ({
  key: `m2.conv_ds${bias ? '+b' : ''}${silu ? '+silu' : ''}`,
  source: `function (x, w, dout${bias ? ', bias' : ''}) {
    ${silu ? convSum(bias) : ''}
    ${silu ? 'const sg = 1.0 / (1.0 + Math.exp(-s)); return dout[this.thread.x] * sg * (1.0 + s * (1.0 - sg));' : 'return dout[this.thread.x];'}
  }`,
  constants: { C: s.C, L: s.L, K: s.K },
  size: s.N * s.C,
});

/** ∂ℓ/∂x of the conv: w, ds → (N, C). */
export const convDxKernel = (s: ConvRows): TrainKernel => ({
  key: 'm2.conv_dx',
  source: `function (w, ds) {
    const n = Math.floor(this.thread.x / ${K}.C);
    const c = this.thread.x - n * ${K}.C;
    const t = n - Math.floor(n / ${K}.L) * ${K}.L;
    let v = 0.0;
    for (let k = 0; k < ${K}.K; k++) {
      const tt = t + ${K}.K - 1 - k;
      if (tt < ${K}.L) { v += w[c * ${K}.K + k] * ds[(n + ${K}.K - 1 - k) * ${K}.C + c]; }
    }
    return v;
  }`,
  constants: { C: s.C, L: s.L, K: s.K },
  size: s.N * s.C,
});

/** ∂ℓ/∂w of the conv: x, ds → (C, K). */
export const convDwKernel = (s: ConvRows): TrainKernel => ({
  key: 'm2.conv_dw',
  source: `function (x, ds) {
    const c = Math.floor(this.thread.x / ${K}.K);
    const k = this.thread.x - c * ${K}.K;
    let v = 0.0;
    for (let n = 0; n < ${K}.N; n++) {
      const t = n - Math.floor(n / ${K}.L) * ${K}.L;
      if (t + k - (${K}.K - 1) >= 0) { v += ds[n * ${K}.C + c] * x[(n + k - (${K}.K - 1)) * ${K}.C + c]; }
    }
    return v;
  }`,
  constants: { N: s.N, C: s.C, L: s.L, K: s.K },
  size: s.C * s.K,
});

/**
 * The scan's sizes: batch b, length l, I channels, d_state N_s, chunk length CH; HW channels share one Δ, D (and,
 * unless `aPerState`, one A): Mamba-2 HW = P (a head's channels), Mamba-1 HW = 1. B and C are (N, I) rows read in
 * groups of N_s: channel c reads columns ⌊c/N_s⌋·N_s + s (Mamba-2: its head's, since P = N_s; Mamba-1: its group's).
 * A_log is (I/HW) per group of channels, or (I, N_s) with `aPerState` (Mamba-1).
 */
export interface ScanRows {
  batch: number;
  L: number;
  I: number;
  Ns: number;
  HW: number;
  aPerState: boolean;
  chunk: number;
}

const scanConsts = (s: ScanRows) => {
  const NC = Math.ceil(s.L / s.chunk);
  return { L: s.L, I: s.I, NS: s.Ns, HW: s.HW, DW: s.I / s.HW, CH: s.chunk, NC, NC1: NC + 1, NR: s.batch * s.L };
};

// index expressions of the row-major operands at row `n` (b·l + t), channel c (j = ⌊c/HW⌋ its Δ), state s
const X = (n: string) => `xr[(${n}) * ${K}.I + c]`;
const Bx = (n: string) => `br[(${n}) * ${K}.I + Math.floor(c / ${K}.NS) * ${K}.NS + s]`;
const Cx = (n: string) => `cm[(${n}) * ${K}.I + Math.floor(c / ${K}.NS) * ${K}.NS + s]`;
const DL = (n: string) => `dl[(${n}) * ${K}.DW + Math.floor(c / ${K}.HW)]`;
const DY = (n: string) => `dy[(${n}) * ${K}.I + c]`;
/** a per-chunk (b, chunk, c, s) buffer's index; `nc` the chunk count it has */
const chunkAt = (cc: string, nc: string) => `(((b * ${nc} + ${cc}) * ${K}.I + c) * ${K}.NS + s)`;
/** a per-row (n, c, s) buffer's index */
const rowAt = (n: string) => `(((${n}) * ${K}.I + c) * ${K}.NS + s)`;
/** a = A of channel c, state s */
const A = (s: ScanRows) => `const a = -Math.exp(alog[${s.aPerState ? `c * ${K}.NS + s` : `Math.floor(c / ${K}.HW)`}]);`;
/** a chunk's Σ Δ (statements declaring `sum`) */
const chunkSum = (cc: string) => `let sum = 0.0;
      for (let k = 0; k < ${K}.CH; k++) {
        const t = ${cc} * ${K}.CH + k;
        if (t < ${K}.L) { sum += ${DL(`b * ${K}.L + t`)}; }
      }`;
const tag = (s: ScanRows) => (s.aPerState ? '/As' : '');

/** Each chunk's state from zero: xr, br, dl, alog → (b, NC, I, N_s). */
export const scanLocalKernel = (s: ScanRows): TrainKernel => {
  const k = scanConsts(s);
  return {
    key: `m2.scan_local${tag(s)}`,
    source: `function (xr, br, dl, alog) {
    ${unflatten('this.thread.x', ['b', 'cc', 'c', 's'], ['', `${K}.NC`, `${K}.I`, `${K}.NS`])}
    ${A(s)}
    let st = 0.0;
    for (let k = 0; k < ${K}.CH; k++) {
      const t = cc * ${K}.CH + k;
      if (t < ${K}.L) {
        const n = b * ${K}.L + t;
        st = Math.exp(${DL('n')} * a) * st + ${DL('n')} * ${Bx('n')} * ${X('n')};
      }
    }
    return st;
  }`,
    constants: k,
    size: s.batch * k.NC * s.I * s.Ns,
  };
};

/** The state entering each chunk 0 … NC: local, dl, alog → (b, NC + 1, I, N_s). */
export const scanPassKernel = (s: ScanRows): TrainKernel => {
  const k = scanConsts(s);
  return {
    key: `m2.scan_pass${tag(s)}`,
    source: `function (local, dl, alog) {
    ${unflatten('this.thread.x', ['b', 'ci', 'c', 's'], ['', `${K}.NC1`, `${K}.I`, `${K}.NS`])}
    ${A(s)}
    let st = 0.0;
    for (let cc = 0; cc < ${K}.NC; cc++) {
      if (cc < ci) {
        ${chunkSum('cc')}
        st = Math.exp(a * sum) * st + local[${chunkAt('cc', `${K}.NC`)}];
      }
    }
    return st;
  }`,
    constants: k,
    size: s.batch * k.NC1 * s.I * s.Ns,
  };
};

/** h_t from the state entering t's chunk (statements declaring `st`, for row n = b·l + t, channel c, state s) */
const replay = `const ci = Math.floor(t / ${K}.CH);
      let st = hs[${chunkAt('ci', `${K}.NC1`)}];
      for (let k = 0; k < ${K}.CH; k++) {
        const tt = ci * ${K}.CH + k;
        if (tt <= t) {
          const m = b * ${K}.L + tt;
          st = Math.exp(${DL('m')} * a) * st + ${DL('m')} * ${Bx('m')} * ${X('m')};
        }
      }`;

/** y = C·h + D x: xr, br, cm, dl, alog, hs, D → (N, I). */
export const scanOutKernel = (s: ScanRows): TrainKernel => {
  const k = scanConsts(s);
  return {
    key: `m2.scan_out${tag(s)}`,
    source: `function (xr, br, cm, dl, alog, hs, dd) {
    ${unflatten('this.thread.x', ['n', 'c'], ['', `${K}.I`])}
    const b = Math.floor(n / ${K}.L);
    const t = n - b * ${K}.L;
    let y = dd[Math.floor(c / ${K}.HW)] * ${X('n')};
    for (let s = 0; s < ${K}.NS; s++) {
      ${A(s)}
      ${replay}
      y += ${Cx('n')} * st;
    }
    return y;
  }`,
    constants: k,
    size: k.NR * s.I,
  };
};

/** h_t for every row: xr, br, dl, alog, hs → (N, I, N_s). */
export const scanStatesKernel = (s: ScanRows): TrainKernel => {
  const k = scanConsts(s);
  return {
    key: `m2.scan_states${tag(s)}`,
    source: `function (xr, br, dl, alog, hs) {
    ${unflatten('this.thread.x', ['n', 'c', 's'], ['', `${K}.I`, `${K}.NS`])}
    const b = Math.floor(n / ${K}.L);
    const t = n - b * ${K}.L;
    ${A(s)}
    ${replay}
    return st;
  }`,
    constants: k,
    size: k.NR * s.I * s.Ns,
  };
};

const F = (n: string) => `${DY(n)} * ${Cx(n)}`;

/** g from zero at each chunk's end run back to its start: dy, cm, dl, alog → (b, NC, I, N_s). */
export const scanGlocalKernel = (s: ScanRows): TrainKernel => {
  const k = scanConsts(s);
  return {
    key: `m2.scan_glocal${tag(s)}`,
    source: `function (dy, cm, dl, alog) {
    ${unflatten('this.thread.x', ['b', 'cc', 'c', 's'], ['', `${K}.NC`, `${K}.I`, `${K}.NS`])}
    ${A(s)}
    let g = 0.0;
    for (let k = 0; k < ${K}.CH; k++) {
      const t = cc * ${K}.CH + (${K}.CH - 1 - k);
      if (t < ${K}.L) {
        const n = b * ${K}.L + t;
        g = Math.exp(${DL('n')} * a) * (${F('n')} + g);
      }
    }
    return g;
  }`,
    constants: k,
    size: s.batch * k.NC * s.I * s.Ns,
  };
};

/** g entering each chunk from the right (through the chunks after it): glocal, dl, alog → (b, NC, I, N_s). */
export const scanGinKernel = (s: ScanRows): TrainKernel => {
  const k = scanConsts(s);
  return {
    key: `m2.scan_gin${tag(s)}`,
    source: `function (glocal, dl, alog) {
    ${unflatten('this.thread.x', ['b', 'ci', 'c', 's'], ['', `${K}.NC`, `${K}.I`, `${K}.NS`])}
    ${A(s)}
    let g = 0.0;
    for (let j = 0; j < ${K}.NC; j++) {
      const cc = ${K}.NC - 1 - j;
      if (cc > ci) {
        ${chunkSum('cc')}
        g = Math.exp(a * sum) * g + glocal[${chunkAt('cc', `${K}.NC`)}];
      }
    }
    return g;
  }`,
    constants: k,
    size: s.batch * k.NC * s.I * s.Ns,
  };
};

/** G_t = f_t + g_{t+1} for every row: dy, cm, dl, alog, gin → (N, I, N_s). */
export const scanGKernel = (s: ScanRows): TrainKernel => {
  const k = scanConsts(s);
  return {
    key: `m2.scan_G${tag(s)}`,
    source: `function (dy, cm, dl, alog, gin) {
    ${unflatten('this.thread.x', ['n', 'c', 's'], ['', `${K}.I`, `${K}.NS`])}
    const b = Math.floor(n / ${K}.L);
    const t = n - b * ${K}.L;
    ${A(s)}
    const ci = Math.floor(t / ${K}.CH);
    let g = gin[${chunkAt('ci', `${K}.NC`)}];
    for (let k = 0; k < ${K}.CH; k++) {
      const tt = ci * ${K}.CH + (${K}.CH - 1 - k);
      if (tt < ${K}.L && tt > t) {
        const m = b * ${K}.L + tt;
        g = Math.exp(${DL('m')} * a) * (${F('m')} + g);
      }
    }
    return ${F('n')} + g;
  }`,
    constants: k,
    size: k.NR * s.I * s.Ns,
  };
};

/** h_{t−1} of row n at (c, s): the states buffer one row back, 0 at a sequence's start */
const hPrev = `(t > 0 ? hst[${rowAt('n - 1')}] : 0.0)`;

/** ∂ℓ/∂Δ: xr, br, dl, alog, hst, G → (N, I/HW). */
export const scanDdeltaKernel = (s: ScanRows): TrainKernel => {
  const k = scanConsts(s);
  return {
    key: `m2.scan_ddelta${tag(s)}`,
    source: `function (xr, br, dl, alog, hst, gg) {
    ${unflatten('this.thread.x', ['n', 'j'], ['', `${K}.DW`])}
    const t = n - Math.floor(n / ${K}.L) * ${K}.L;
    let v = 0.0;
    for (let q = 0; q < ${K}.HW; q++) {
      const c = j * ${K}.HW + q;
      for (let s = 0; s < ${K}.NS; s++) {
        ${A(s)}
        v += gg[${rowAt('n')}] * (a * Math.exp(${DL('n')} * a) * ${hPrev} + ${Bx('n')} * ${X('n')});
      }
    }
    return v;
  }`,
    constants: k,
    size: k.NR * k.DW,
  };
};

/**
 * ∂ℓ/∂Δ of Mamba-2 (Δ per head) in two steps of short loops: each row and channel's Σ_s G_t (A_h e_t h_{t−1} + B_t x_t)
 * (xr, br, dl, alog, hst, G → (N, I)), then `rowHeadSumKernel` adds a head's HW channels per row. One thread per
 * (row, head) over HW·N_s = 4,096 terms took ~1 ms a call at the #25 scale on the H200 (bench/gpu_train.ts --profile).
 */
export const scanDdeltaTermsKernel = (s: ScanRows): TrainKernel => {
  const k = scanConsts(s);
  return {
    key: 'm2.scan_ddelta_terms',
    source: `function (xr, br, dl, alog, hst, gg) {
    ${unflatten('this.thread.x', ['n', 'c'], ['', `${K}.I`])}
    const t = n - Math.floor(n / ${K}.L) * ${K}.L;
    ${A(s)}
    const ae = a * Math.exp(${DL('n')} * a);
    const x = ${X('n')};
    let v = 0.0;
    for (let s = 0; s < ${K}.NS; s++) { v += gg[${rowAt('n')}] * (ae * ${hPrev} + ${Bx('n')} * x); }
    return v;
  }`,
    constants: k,
    size: k.NR * s.I,
  };
};

/** Per row, the sum of each head's HW channels: m (N, I) → (N, I/HW). */
export const rowHeadSumKernel = (s: ScanRows): TrainKernel => {
  const k = scanConsts(s);
  return {
    key: 'm2.row_head_sum',
    source: `function (m) {
    ${unflatten('this.thread.x', ['n', 'j'], ['', `${K}.DW`])}
    let v = 0.0;
    for (let q = 0; q < ${K}.HW; q++) { v += m[n * ${K}.I + j * ${K}.HW + q]; }
    return v;
  }`,
    constants: k,
    size: k.NR * k.DW,
  };
};

/** ∂ℓ/∂dt = ∂ℓ/∂Δ · softplus'(dt + dt_bias) = · σ(dt + dt_bias) (1 above 20): dΔ, dt, dt_bias → (N, W). */
export const deltaBackKernel = (N: number, W: number): TrainKernel => ({
  key: 'm2.delta_back',
  source: `function (dd, dt, bias) {
    const j = this.thread.x - Math.floor(this.thread.x / ${K}.W) * ${K}.W;
    const u = dt[this.thread.x] + bias[j];
    let v = dd[this.thread.x];
    if (u <= 20.0) { v = v / (1.0 + Math.exp(-u)); }
    return v;
  }`,
  constants: { W },
  size: N * W,
});

/** ∂ℓ/∂x: dy, br, dl, G, D → (N, I). */
export const scanDxKernel = (s: ScanRows): TrainKernel => {
  const k = scanConsts(s);
  return {
    key: 'm2.scan_dx',
    source: `function (dy, br, dl, gg, dd) {
    ${unflatten('this.thread.x', ['n', 'c'], ['', `${K}.I`])}
    let v = ${DY('n')} * dd[Math.floor(c / ${K}.HW)];
    for (let s = 0; s < ${K}.NS; s++) { v += gg[${rowAt('n')}] * ${DL('n')} * ${Bx('n')}; }
    return v;
  }`,
    constants: k,
    size: k.NR * s.I,
  };
};

/** ∂ℓ/∂B (B: xr, dl, G) or ∂ℓ/∂C (C: dy, hst) in B's and C's (N, I) layout: a sum over the group's N_s channels. */
export const scanDbcKernel = (s: ScanRows, which: 'B' | 'C'): TrainKernel => {
  const k = scanConsts(s);
  return {
    key: `m2.scan_d${which}`,
    source: `function (${which === 'B' ? 'xr, dl, gg' : 'dy, hst'}) {
    ${unflatten('this.thread.x', ['n', 'col'], ['', `${K}.I`])}
    const g0 = col - (col - Math.floor(col / ${K}.NS) * ${K}.NS);
    const s = col - g0;
    let v = 0.0;
    for (let q = 0; q < ${K}.NS; q++) {
      const c = g0 + q;
      v += ${which === 'B' ? `gg[${rowAt('n')}] * ${DL('n')} * ${X('n')}` : `${DY('n')} * hst[${rowAt('n')}]`};
    }
    return v;
  }`,
    constants: k,
    size: k.NR * s.I,
  };
};

/** ∂ℓ/∂A_log of Mamba-1 (`aPerState`: A per (channel, state)): dl, alog, hst, G → (I, N_s). */
export const scanDalogKernel = (s: ScanRows): TrainKernel => {
  if (!s.aPerState)
    throw new ArgumentError('aPerState', 'true (Mamba-2: scanDalogTermsKernel and headSumKernels)', s.aPerState);
  const k = scanConsts(s);
  return {
    key: 'm2.scan_dAlog/As',
    source: `function (dl, alog, hst, gg) {
    ${unflatten('this.thread.x', ['c', 's'], ['', `${K}.NS`])}
    ${A(s)}
    let v = 0.0;
    for (let n = 0; n < ${K}.NR; n++) {
      const t = n - Math.floor(n / ${K}.L) * ${K}.L;
      v += gg[${rowAt('n')}] * ${DL('n')} * Math.exp(${DL('n')} * a) * ${hPrev};
    }
    return v * a;
  }`,
    constants: k,
    size: s.I * s.Ns,
  };
};

/**
 * ∂ℓ/∂A_log of Mamba-2 (A per head), first step: each row and channel's Σ_s G_t Δ_t e_t h_{t−1}[c, s]:
 * dl, alog, hst, G → (N, I); headSumKernels(…, scaleByA) then sums a head's rows and channels and multiplies by A_h.
 */
export const scanDalogTermsKernel = (s: ScanRows): TrainKernel => {
  const k = scanConsts(s);
  return {
    key: 'm2.scan_dAlog_terms',
    source: `function (dl, alog, hst, gg) {
    ${unflatten('this.thread.x', ['n', 'c'], ['', `${K}.I`])}
    const t = n - Math.floor(n / ${K}.L) * ${K}.L;
    ${A(s)}
    const d = ${DL('n')};
    const e = Math.exp(d * a);
    let v = 0.0;
    for (let s = 0; s < ${K}.NS; s++) { v += gg[${rowAt('n')}] * ${hPrev}; }
    return v * d * e;
  }`,
    constants: k,
    size: k.NR * s.I,
  };
};

/** Row chunks of `headSumKernels`' first level. */
const HEAD_SUM_CHUNKS = 64;

/**
 * Per head j < I/HW, the sum over every row n and the head's HW channels of an (N, I) matrix (`terms`: args m) or
 * of dy ⊙ xr (`product`: args dy, xr — ∂ℓ/∂D_h), in two levels as kernels/train_layers.ts rmsnormDwKernels: thread
 * (p, j) sums the rows n ≡ p (mod C), C = min(64, N), into (C, I/HW); then thread j adds its C parts in a fixed
 * order (deterministic), times A_j = −exp(A_log[j]) with `scaleByA` (∂ℓ/∂A_log; args parts, alog). One level of
 * I/HW threads over all N·HW·N_s terms (6 threads at the #25 scale, 2.1M terms each) made a 16 × 512-row
 * distillation step ~16 s on the H200; a GPU wants many short loops.
 */
export const headSumKernels = (
  s: ScanRows,
  what: 'terms' | 'product',
  scaleByA: boolean,
  C = Math.min(HEAD_SUM_CHUNKS, s.batch * s.L),
): [TrainKernel, TrainKernel] => {
  const k = { ...scanConsts(s), C, STEPS: Math.ceil((s.batch * s.L) / C) };
  return [
    {
      key: `m2.head_sum_parts/${what}`,
      source: `function (${what === 'terms' ? 'm' : 'dy, xr'}) {
    ${unflatten('this.thread.x', ['p', 'j'], ['', `${K}.DW`])}
    let v = 0.0;
    for (let i = 0; i < ${K}.STEPS; i++) {
      const n = i * ${K}.C + p;
      if (n < ${K}.NR) {
        for (let q = 0; q < ${K}.HW; q++) {
          const c = j * ${K}.HW + q;
          v += ${what === 'terms' ? `m[n * ${K}.I + c]` : `${DY('n')} * ${X('n')}`};
        }
      }
    }
    return v;
  }`,
      constants: k,
      size: C * k.DW,
    },
    {
      key: `m2.head_sum_fold${scaleByA ? '*A' : ''}`,
      source: `function (parts${scaleByA ? ', alog' : ''}) {
    let v = 0.0;
    for (let p = 0; p < ${K}.C; p++) { v += parts[p * ${K}.DW + this.thread.x]; }
    return ${scaleByA ? `-Math.exp(alog[this.thread.x]) * v` : 'v'};
  }`,
      constants: k,
      size: k.DW,
    },
  ];
};

/** ∂ℓ/∂D: dy, xr → (I/HW). */
export const scanDdKernel = (s: ScanRows): TrainKernel => {
  const k = scanConsts(s);
  return {
    key: 'm2.scan_dD',
    source: `function (dy, xr) {
    const j = this.thread.x;
    let v = 0.0;
    for (let n = 0; n < ${K}.NR; n++) {
      for (let q = 0; q < ${K}.HW; q++) { const c = j * ${K}.HW + q; v += ${DY('n')} * ${X('n')}; }
    }
    return v;
  }`,
    constants: k,
    size: k.DW,
  };
};
