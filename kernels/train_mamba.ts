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
 * The SSD per head h with A_h = −exp(A_log[h]), e_t = exp(Δ_t A_h), on x (N, H·P), B, C (N, H·N_s):
 *   h_t[p, s] = e_t h_{t−1}[p, s] + Δ_t B_t[s] x_t[p],   y_t[p] = Σ_s C_t[s] h_t[p, s] + D_h x_t[p]
 * chunked as kernels/selective_scan.ts (chunks of CH steps: each chunk's state from zero, the state entering each
 * chunk, then a replay of ≤ CH steps), and back as kernels/selective_scan_backward.ts, with f_t = dy_t[p] C_t[s]:
 *   G_t = f_t + g_{t+1},  g_t = e_t G_t  (chunked the same way, from the right)
 *   ∂ℓ/∂Δ[n, h]   = Σ_{p,s} G_t (A_h e_t h_{t−1} + B_t x_t),  ∂ℓ/∂dt = ∂ℓ/∂Δ σ(dt + dt_bias)  (softplus'; 1 above 20)
 *   ∂ℓ/∂x_t[p]    = dy_t D_h + Σ_s G_t Δ_t B_t[s]      ∂ℓ/∂B_t[s] = Σ_p G_t Δ_t x_t[p]    ∂ℓ/∂C_t[s] = Σ_p dy_t h_t
 *   ∂ℓ/∂A_log[h]  = A_h Σ_{n,p,s} G_t Δ_t e_t h_{t−1}  ∂ℓ/∂D_h = Σ_{n,p} dy x       ∂ℓ/∂dt_bias = Σ_n ∂ℓ/∂dt
 *   repeat back:  ∂ℓ/∂xs[n, j] = Σ over the rep copies of piece ⌊j/w⌋ (the scatter-add of tape.ts repeatLayer)
 *
 * Symbols: b batch · l sequence length · N rows · H heads · P head width · N_s d_state (P = N_s) · d_in = H·P ·
 * d_xb · K conv width · CH chunk length · NC = ⌈l/CH⌉ chunks.
 */
import type { TrainKernel } from './train_layers.js';
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

/** The SSD's sizes: batch b, length l, heads H, head width P, d_state N_s, chunk length CH. */
export interface SsdRows {
  batch: number;
  L: number;
  H: number;
  P: number;
  Ns: number;
  chunk: number;
}

const ssdConsts = (s: SsdRows) => {
  const NC = Math.ceil(s.L / s.chunk);
  return {
    L: s.L,
    H: s.H,
    P: s.P,
    NS: s.Ns,
    CH: s.chunk,
    NC,
    NC1: NC + 1,
    I: s.H * s.P,
    HN: s.H * s.Ns,
    NR: s.batch * s.L,
  };
};

// index expressions of the row-major operands at row `n` (b·l + t), head h, channel p, state s
const X = (n: string) => `xr[(${n}) * ${K}.I + h * ${K}.P + p]`;
const Bx = (n: string) => `br[(${n}) * ${K}.HN + h * ${K}.NS + s]`;
const Cx = (n: string) => `cm[(${n}) * ${K}.HN + h * ${K}.NS + s]`;
const DL = (n: string) => `dl[(${n}) * ${K}.H + h]`;
const DY = (n: string) => `dy[(${n}) * ${K}.I + h * ${K}.P + p]`;
/** a per-chunk (b, c, h, p, s) buffer's index; `nc` the chunk count it has */
const chunkAt = (c: string, nc: string) => `((((b * ${nc} + ${c}) * ${K}.H + h) * ${K}.P + p) * ${K}.NS + s)`;
/** a per-row (n, h, p, s) buffer's index */
const rowAt = (n: string) => `((((${n}) * ${K}.H + h) * ${K}.P + p) * ${K}.NS + s)`;
const A = `const a = -Math.exp(alog[h]);`;
/** a chunk's Σ Δ (statements declaring `sum`) */
const chunkSum = (cc: string) => `let sum = 0.0;
      for (let k = 0; k < ${K}.CH; k++) {
        const t = ${cc} * ${K}.CH + k;
        if (t < ${K}.L) { sum += ${DL(`b * ${K}.L + t`)}; }
      }`;

/** Each chunk's state from zero: xr, br, dl, alog → (b, NC, H, P, N_s). */
export const ssdLocalKernel = (s: SsdRows): TrainKernel => {
  const k = ssdConsts(s);
  return {
    key: 'm2.ssd_local',
    source: `function (xr, br, dl, alog) {
    ${unflatten('this.thread.x', ['b', 'c', 'h', 'p', 's'], ['', `${K}.NC`, `${K}.H`, `${K}.P`, `${K}.NS`])}
    ${A}
    let st = 0.0;
    for (let k = 0; k < ${K}.CH; k++) {
      const t = c * ${K}.CH + k;
      if (t < ${K}.L) {
        const n = b * ${K}.L + t;
        st = Math.exp(${DL('n')} * a) * st + ${DL('n')} * ${Bx('n')} * ${X('n')};
      }
    }
    return st;
  }`,
    constants: k,
    size: s.batch * k.NC * k.I * s.Ns,
  };
};

/** The state entering each chunk c = 0 … NC: local, dl, alog → (b, NC + 1, H, P, N_s). */
export const ssdPassKernel = (s: SsdRows): TrainKernel => {
  const k = ssdConsts(s);
  return {
    key: 'm2.ssd_pass',
    source: `function (local, dl, alog) {
    ${unflatten('this.thread.x', ['b', 'c', 'h', 'p', 's'], ['', `${K}.NC1`, `${K}.H`, `${K}.P`, `${K}.NS`])}
    ${A}
    let st = 0.0;
    for (let cc = 0; cc < ${K}.NC; cc++) {
      if (cc < c) {
        ${chunkSum('cc')}
        st = Math.exp(a * sum) * st + local[${chunkAt('cc', `${K}.NC`)}];
      }
    }
    return st;
  }`,
    constants: k,
    size: s.batch * k.NC1 * k.I * s.Ns,
  };
};

/** h_t from the state entering t's chunk (statements declaring `st`, for row n = b·l + t, state s) */
const replay = `const c = Math.floor(t / ${K}.CH);
      let st = hs[${chunkAt('c', `${K}.NC1`)}];
      for (let k = 0; k < ${K}.CH; k++) {
        const tt = c * ${K}.CH + k;
        if (tt <= t) {
          const m = b * ${K}.L + tt;
          st = Math.exp(${DL('m')} * a) * st + ${DL('m')} * ${Bx('m')} * ${X('m')};
        }
      }`;

/** y = C·h + D x: xr, br, cm, dl, alog, hs, D → (N, H·P). */
export const ssdOutKernel = (s: SsdRows): TrainKernel => {
  const k = ssdConsts(s);
  return {
    key: 'm2.ssd_out',
    source: `function (xr, br, cm, dl, alog, hs, dd) {
    ${unflatten('this.thread.x', ['n', 'h', 'p'], ['', `${K}.H`, `${K}.P`])}
    const b = Math.floor(n / ${K}.L);
    const t = n - b * ${K}.L;
    ${A}
    let y = dd[h] * ${X('n')};
    for (let s = 0; s < ${K}.NS; s++) {
      ${replay}
      y += ${Cx('n')} * st;
    }
    return y;
  }`,
    constants: k,
    size: s.batch * s.L * k.I,
  };
};

/** h_t for every row: xr, br, dl, alog, hs → (N, H, P, N_s). */
export const ssdStatesKernel = (s: SsdRows): TrainKernel => {
  const k = ssdConsts(s);
  return {
    key: 'm2.ssd_states',
    source: `function (xr, br, dl, alog, hs) {
    ${unflatten('this.thread.x', ['n', 'h', 'p', 's'], ['', `${K}.H`, `${K}.P`, `${K}.NS`])}
    const b = Math.floor(n / ${K}.L);
    const t = n - b * ${K}.L;
    ${A}
    ${replay}
    return st;
  }`,
    constants: k,
    size: s.batch * s.L * k.I * s.Ns,
  };
};

const F = (n: string) => `${DY(n)} * ${Cx(n)}`;

/** g from zero at each chunk's end run back to its start: dy, cm, dl, alog → (b, NC, H, P, N_s). */
export const ssdGlocalKernel = (s: SsdRows): TrainKernel => {
  const k = ssdConsts(s);
  return {
    key: 'm2.ssd_glocal',
    source: `function (dy, cm, dl, alog) {
    ${unflatten('this.thread.x', ['b', 'c', 'h', 'p', 's'], ['', `${K}.NC`, `${K}.H`, `${K}.P`, `${K}.NS`])}
    ${A}
    let g = 0.0;
    for (let k = 0; k < ${K}.CH; k++) {
      const t = c * ${K}.CH + (${K}.CH - 1 - k);
      if (t < ${K}.L) {
        const n = b * ${K}.L + t;
        g = Math.exp(${DL('n')} * a) * (${F('n')} + g);
      }
    }
    return g;
  }`,
    constants: k,
    size: s.batch * k.NC * k.I * s.Ns,
  };
};

/** g entering each chunk from the right (through the chunks after it): glocal, dl, alog → (b, NC, H, P, N_s). */
export const ssdGinKernel = (s: SsdRows): TrainKernel => {
  const k = ssdConsts(s);
  return {
    key: 'm2.ssd_gin',
    source: `function (glocal, dl, alog) {
    ${unflatten('this.thread.x', ['b', 'c', 'h', 'p', 's'], ['', `${K}.NC`, `${K}.H`, `${K}.P`, `${K}.NS`])}
    ${A}
    let g = 0.0;
    for (let j = 0; j < ${K}.NC; j++) {
      const cc = ${K}.NC - 1 - j;
      if (cc > c) {
        ${chunkSum('cc')}
        g = Math.exp(a * sum) * g + glocal[${chunkAt('cc', `${K}.NC`)}];
      }
    }
    return g;
  }`,
    constants: k,
    size: s.batch * k.NC * k.I * s.Ns,
  };
};

/** G_t = f_t + g_{t+1} for every row: dy, cm, dl, alog, gin → (N, H, P, N_s). */
export const ssdGKernel = (s: SsdRows): TrainKernel => {
  const k = ssdConsts(s);
  return {
    key: 'm2.ssd_G',
    source: `function (dy, cm, dl, alog, gin) {
    ${unflatten('this.thread.x', ['n', 'h', 'p', 's'], ['', `${K}.H`, `${K}.P`, `${K}.NS`])}
    const b = Math.floor(n / ${K}.L);
    const t = n - b * ${K}.L;
    ${A}
    const c = Math.floor(t / ${K}.CH);
    let g = gin[${chunkAt('c', `${K}.NC`)}];
    for (let k = 0; k < ${K}.CH; k++) {
      const tt = c * ${K}.CH + (${K}.CH - 1 - k);
      if (tt < ${K}.L && tt > t) {
        const m = b * ${K}.L + tt;
        g = Math.exp(${DL('m')} * a) * (${F('m')} + g);
      }
    }
    return ${F('n')} + g;
  }`,
    constants: k,
    size: s.batch * s.L * k.I * s.Ns,
  };
};

/** h_{t−1} of row n at (h, p, s): the states buffer one row back, 0 at a sequence's start */
const hPrev = `(t > 0 ? hst[${rowAt('n - 1')}] : 0.0)`;

/** ∂ℓ/∂Δ: xr, br, dl, alog, hst, G → (N, H). */
export const ssdDdeltaKernel = (s: SsdRows): TrainKernel => {
  const k = ssdConsts(s);
  return {
    key: 'm2.ssd_ddelta',
    source: `function (xr, br, dl, alog, hst, gg) {
    const n = Math.floor(this.thread.x / ${K}.H);
    const h = this.thread.x - n * ${K}.H;
    const t = n - Math.floor(n / ${K}.L) * ${K}.L;
    ${A}
    const e = Math.exp(${DL('n')} * a);
    let v = 0.0;
    for (let p = 0; p < ${K}.P; p++) {
      for (let s = 0; s < ${K}.NS; s++) {
        v += gg[${rowAt('n')}] * (a * e * ${hPrev} + ${Bx('n')} * ${X('n')});
      }
    }
    return v;
  }`,
    constants: k,
    size: s.batch * s.L * s.H,
  };
};

/** ∂ℓ/∂dt = ∂ℓ/∂Δ · softplus'(dt + dt_bias) = · σ(dt + dt_bias) (1 above 20): dΔ, dt, dt_bias → (N, H). */
export const deltaBackKernel = (N: number, H: number): TrainKernel => ({
  key: 'm2.delta_back',
  source: `function (dd, dt, bias) {
    const h = this.thread.x - Math.floor(this.thread.x / ${K}.H) * ${K}.H;
    const u = dt[this.thread.x] + bias[h];
    let v = dd[this.thread.x];
    if (u <= 20.0) { v = v / (1.0 + Math.exp(-u)); }
    return v;
  }`,
  constants: { H },
  size: N * H,
});

/** ∂ℓ/∂x (the repeated x): dy, br, dl, G, D → (N, H·P). */
export const ssdDxKernel = (s: SsdRows): TrainKernel => {
  const k = ssdConsts(s);
  return {
    key: 'm2.ssd_dx',
    source: `function (dy, br, dl, gg, dd) {
    ${unflatten('this.thread.x', ['n', 'h', 'p'], ['', `${K}.H`, `${K}.P`])}
    let v = ${DY('n')} * dd[h];
    for (let s = 0; s < ${K}.NS; s++) { v += gg[${rowAt('n')}] * ${DL('n')} * ${Bx('n')}; }
    return v;
  }`,
    constants: k,
    size: s.batch * s.L * k.I,
  };
};

/** ∂ℓ/∂B (the repeated B): xr, dl, G → (N, H·N_s). */
export const ssdDbKernel = (s: SsdRows): TrainKernel => {
  const k = ssdConsts(s);
  return {
    key: 'm2.ssd_dB',
    source: `function (xr, dl, gg) {
    ${unflatten('this.thread.x', ['n', 'h', 's'], ['', `${K}.H`, `${K}.NS`])}
    let v = 0.0;
    for (let p = 0; p < ${K}.P; p++) { v += gg[${rowAt('n')}] * ${DL('n')} * ${X('n')}; }
    return v;
  }`,
    constants: k,
    size: s.batch * s.L * k.HN,
  };
};

/** ∂ℓ/∂C: dy, hst → (N, H·N_s). */
export const ssdDcKernel = (s: SsdRows): TrainKernel => {
  const k = ssdConsts(s);
  return {
    key: 'm2.ssd_dC',
    source: `function (dy, hst) {
    ${unflatten('this.thread.x', ['n', 'h', 's'], ['', `${K}.H`, `${K}.NS`])}
    let v = 0.0;
    for (let p = 0; p < ${K}.P; p++) { v += ${DY('n')} * hst[${rowAt('n')}]; }
    return v;
  }`,
    constants: k,
    size: s.batch * s.L * k.HN,
  };
};

/** ∂ℓ/∂A_log: dl, alog, hst, G → (H). */
export const ssdDalogKernel = (s: SsdRows): TrainKernel => {
  const k = ssdConsts(s);
  return {
    key: 'm2.ssd_dAlog',
    source: `function (dl, alog, hst, gg) {
    const h = this.thread.x;
    ${A}
    let v = 0.0;
    for (let n = 0; n < ${K}.NR; n++) {
      const t = n - Math.floor(n / ${K}.L) * ${K}.L;
      const de = ${DL('n')} * Math.exp(${DL('n')} * a);
      for (let p = 0; p < ${K}.P; p++) {
        for (let s = 0; s < ${K}.NS; s++) { v += gg[${rowAt('n')}] * de * ${hPrev}; }
      }
    }
    return v * a;
  }`,
    constants: k,
    size: s.H,
  };
};

/** ∂ℓ/∂D: dy, xr → (H). */
export const ssdDdKernel = (s: SsdRows): TrainKernel => {
  const k = ssdConsts(s);
  return {
    key: 'm2.ssd_dD',
    source: `function (dy, xr) {
    const h = this.thread.x;
    let v = 0.0;
    for (let n = 0; n < ${K}.NR; n++) {
      for (let p = 0; p < ${K}.P; p++) { v += ${DY('n')} * ${X('n')}; }
    }
    return v;
  }`,
    constants: k,
    size: s.H,
  };
};
