/**
 * Training kernels of the Llama block's simple layers (float32), forward and backward, as GPU.js kernel sources
 * with their constants and output size: run one at a time on any GPU.js backend (`runTrainKernel`) or recorded
 * into a resident chain (kernels/resident_chain.ts) by the GPU training step (lib/train/gpu_step.ts). One thread
 * per output value; every loop bound a constant. References (float64): lib/ref/layers.ts and lib/ref/rope.ts.
 *
 * Activations are row-major (N, width) with N = b·l rows, exactly as lib/train/model.ts keeps them.
 *
 *   linear:    y[n,o] = Σ_i x[n,i] W[o,i] (+ b[o]) (+ r[n,o])          W (O, I) as stored; r a residual added in
 *   dX:        dx[n,i] = Σ_k Σ_o dy_k[n,o] W_k[o,i]                   k over up to 3 (dy, W) pairs (q, k, v share x)
 *   dW:        dW[o,i] = Σ_n dy[n,o] x[n,i]                           db[o] = Σ_n dy[n,o]
 *   rstd:      r_n = 1/√(mean_i x[n,i]² + ε)                          rmsnorm: y[n,i] = x[n,i] r_n w_i
 *   rms dX:    with x̂ = x r, g = dy ⊙ w:  dx_i = r (ε r² g_i + mean_j x̂_j (g_i x̂_j − x̂_i g_j)) (+ a residual grad)
 *              — the same as r (g_i − x̂_i mean(g x̂)) since mean x̂² = 1 − ε r², without its cancellation
 *              (kernels/gated_rmsnorm.ts explains: at d = 1 the plain form loses every float32 digit). The j-sum is
 *              g_i Σ_j x̂_j² − x̂_i Σ_j x̂_j g_j: two sums per row (`rmsnormRowSumsKernel`, spread over S threads),
 *              then O(1) per value; at d = 1 it is empty (its j = i term is 0) and left out: dx = ε r³ g
 *   rms dw:    dw_i = Σ_n dy[n,i] x[n,i] r_n  (two levels: row chunks, then their sum)
 *   swiglu:    a = silu(g) u;  dg = da u σ(g)(1 + g(1 − σ(g))),  du = da silu(g)
 *   rope:      per head of hd, position t = n mod l, θ_i = t·inv_freq_i (cos, sin from a float64 table (l, hd)):
 *              out_c = x_c cos θ − x_{c+hd/2} sin θ (c < hd/2),  x_c cos θ + x_{c−hd/2} sin θ;  backward: θ → −θ
 *   embedding: h[n,c] = E[id_n, c];  dE[v,c] = Σ_{n: id_n = v} dh[n,c] (+ a tied head's dW) — deterministic, no
 *              atomics: the host sorts the positions by id (stable) into `order` (N) and `start` (V+1), so thread
 *              (v, c) sums its own positions in increasing order
 *   add:       y = a + b
 */
import type { GpuRuntime } from './runtime.js';
import type { DecodeKernel } from './decode.js';
import { siluExpr } from './snippets.js';

/** A kernel source, its constants and how many values it writes (one per thread). */
export interface TrainKernel extends DecodeKernel {
  size: number;
}

/** Run one kernel on a runtime's backend (tests; the training step records them into a chain instead). */
export function runTrainKernel(rt: GpuRuntime, k: TrainKernel, args: Float32Array[]): Promise<Float32Array> {
  return rt.run(k.key, k.source, k.constants, k.size, args);
}

/** y = x·Wᵀ (+ b) (+ r): x (N, I), W (O, I) → (N, O). */
export const linearKernel = (N: number, I: number, O: number, bias: boolean, residual: boolean): TrainKernel => ({
  key: `tr.linear${bias ? '+b' : ''}${residual ? '+r' : ''}`,
  source: `function (x, w${bias ? ', b' : ''}${residual ? ', r' : ''}) {
    const n = Math.floor(this.thread.x / this.constants.O);
    const o = this.thread.x - n * this.constants.O;
    let s = 0.0;
    for (let i = 0; i < this.constants.I; i++) { s += x[n * this.constants.I + i] * w[o * this.constants.I + i]; }
    ${bias ? 's += b[o];' : ''}
    ${residual ? 's += r[this.thread.x];' : ''}
    return s;
  }`,
  constants: { I, O },
  size: N * O,
});

/** dx = Σ_k dy_k·W_k: pairs (dy_k (N, O_k), W_k (O_k, I)), args dy0, w0, dy1, w1, … → (N, I). */
export const linearDxKernel = (N: number, I: number, Os: readonly number[]): TrainKernel => {
  const names = Os.map((_, k) => `dy${k}, w${k}`).join(', ');
  const sums = Os.map(
    (_, k) => `for (let o = 0; o < this.constants.O${k}; o++) {
      s += dy${k}[n * this.constants.O${k} + o] * w${k}[o * this.constants.I + i];
    }`,
  ).join('\n    ');
  return {
    key: `tr.linear_dx${Os.length}`,
    source: `function (${names}) {
    const n = Math.floor(this.thread.x / this.constants.I);
    const i = this.thread.x - n * this.constants.I;
    let s = 0.0;
    ${sums}
    return s;
  }`,
    constants: { I, ...Object.fromEntries(Os.map((o, k) => [`O${k}`, o])) },
    size: N * I,
  };
};

/** dW = dyᵀ·x (+ prev, a sum over row chunks): dy (N, O), x (N, I) → (O, I). */
export const linearDwKernel = (N: number, I: number, O: number, acc = false): TrainKernel => ({
  key: `tr.linear_dw${acc ? '+acc' : ''}`,
  source: `function (dy, x${acc ? ', prev' : ''}) {
    const o = Math.floor(this.thread.x / this.constants.I);
    const i = this.thread.x - o * this.constants.I;
    let s = ${acc ? 'prev[this.thread.x]' : '0.0'};
    for (let n = 0; n < this.constants.N; n++) { s += dy[n * this.constants.O + o] * x[n * this.constants.I + i]; }
    return s;
  }`,
  constants: { N, I, O },
  size: O * I,
});

/** db = Σ_n dy[n, ·]: dy (N, O) → (O). */
export const linearDbKernel = (N: number, O: number): TrainKernel => ({
  key: 'tr.linear_db',
  source: `function (dy) {
    let s = 0.0;
    for (let n = 0; n < this.constants.N; n++) { s += dy[n * this.constants.O + this.thread.x]; }
    return s;
  }`,
  constants: { N, O },
  size: O,
});

/** r_n = 1/√(mean x² + ε): x (N, d) → (N). */
export const rstdKernel = (N: number, d: number, eps: number): TrainKernel => ({
  key: 'tr.rstd',
  source: `function (x) {
    let ss = 0.0;
    for (let i = 0; i < this.constants.D; i++) { const v = x[this.thread.x * this.constants.D + i]; ss += v * v; }
    return 1.0 / Math.sqrt(ss / this.constants.D + this.constants.EPS);
  }`,
  constants: { D: d, EPS: eps },
  size: N,
});

/** y = x r w: x (N, d), r (N), w (d) → (N, d). */
export const rmsnormKernel = (N: number, d: number): TrainKernel => ({
  key: 'tr.rmsnorm',
  source: `function (x, r, w) {
    const n = Math.floor(this.thread.x / this.constants.D);
    return x[this.thread.x] * r[n] * w[this.thread.x - n * this.constants.D];
  }`,
  constants: { D: d },
  size: N * d,
});

/** How many parts `rmsnormRowSumsKernel` splits a row of d values into by default: 16, or d when smaller. */
const rmsnormParts = (d: number): number => Math.min(16, d);

/**
 * Partial sums per row for the RMSNorm dX, thread (n, q, s) for q ∈ {0, 1} and s < S: over j ≡ s (mod S),
 *   q = 0:  Σ x̂_j²          q = 1:  Σ x̂_j g_j          (x̂ = x r_n, g = dy ⊙ w)
 * so a row's two sums are spread over S threads of ⌈d/S⌉ terms each (adjacent threads read adjacent values), and
 * `rmsnormDxKernel` adds the S parts. One thread per row, d terms each, took 0.6 ms per call at N = 2048, d = 512
 * on the H200 with the dX kernel summing O(d) per value (bench/gpu_train.ts --profile); this takes O(d/S).
 * dy, x (N, d), r (N), w (d) → (N, 2, S).
 */
export const rmsnormRowSumsKernel = (N: number, d: number, S = rmsnormParts(d)): TrainKernel => ({
  key: 'tr.rmsnorm_sums',
  source: `function (dy, x, r, w) {
    const row = Math.floor(this.thread.x / this.constants.S2);
    const qs = this.thread.x - row * this.constants.S2;
    const q = Math.floor(qs / this.constants.S);
    const s0 = qs - q * this.constants.S;
    const n = row * this.constants.D;
    const rn = r[row];
    let acc = 0.0;
    for (let k = 0; k < this.constants.STEPS; k++) {
      const j = k * this.constants.S + s0;
      if (j < this.constants.D) {
        const xj = x[n + j] * rn;
        if (q == 0) { acc += xj * xj; } else { acc += xj * (dy[n + j] * w[j]); }
      }
    }
    return acc;
  }`,
  constants: { D: d, S, S2: 2 * S, STEPS: Math.ceil(d / S) },
  size: N * 2 * S,
});

/**
 * ∂ℓ/∂x of the RMSNorm (the form above, its j-sum written with the row's two sums S2 = Σ x̂_j², Sxg = Σ x̂_j g_j
 * from `rmsnormRowSumsKernel`): dx_i = r (ε r² g_i + (g_i S2 − x̂_i Sxg)/d), plus `res` (a residual stream's
 * gradient) when given. The j = i term of the j-sum is 0 and so is its share here, up to rounding: at d = 1 the
 * sum is empty and left out (a constant), so dx = ε r³ g exactly as the form says; at d ≥ 2 the rounding of the
 * sums is γ_d (|g_i| S2 + |x̂_i| Σ|x̂ g|), the same order as the O(d)-per-value loop this replaces.
 * args dy, x, r, w, sums (N, 2, S)[, res] → (N, d); S as given to `rmsnormRowSumsKernel`.
 */
export const rmsnormDxKernel = (
  N: number,
  d: number,
  eps: number,
  residual: boolean,
  S = rmsnormParts(d),
): TrainKernel => {
  return {
    key: `tr.rmsnorm_dx${residual ? '+r' : ''}${d === 1 ? '1' : ''}`,
    source: `function (dy, x, r, w, sums${residual ? ', res' : ''}) {
    const n = Math.floor(this.thread.x / this.constants.D);
    const i = this.thread.x - n * this.constants.D;
    const rn = r[n];
    const gi = dy[this.thread.x] * w[i];
    let acc = 0.0;
    ${
      d === 1
        ? ''
        : `const xi = x[this.thread.x] * rn;
    let s2 = 0.0;
    let sxg = 0.0;
    for (let s = 0; s < this.constants.S; s++) {
      s2 += sums[n * 2 * this.constants.S + s];
      sxg += sums[(n * 2 + 1) * this.constants.S + s];
    }
    acc = gi * s2 - xi * sxg;`
    }
    let out = rn * (this.constants.EPS * rn * rn * gi + acc / this.constants.D);
    ${residual ? 'out += res[this.thread.x];' : ''}
    return out;
  }`,
    constants: { D: d, EPS: eps, S },
    size: N * d,
  };
};

/** Row chunks of `rmsnormDwKernels`' first level (and gated_rmsnorm.ts gatedRmsnormDwKernels'). */
export const DW_CHUNKS = 64;

/**
 * dw_i = Σ_n dy[n,i] x[n,i] r_n → (d), in two levels: thread (c, i) sums the rows n ≡ c (mod C), C = min(64, N) by default,
 * into (C, d), then thread i adds its C parts (a fixed order: deterministic). One level — d threads of N rows
 * each — took 0.47 ms per call at N = 2048, d = 512 on the H200. Args of the first: dy, x (N, d), r (N).
 */
export const rmsnormDwKernels = (N: number, d: number, C = Math.min(DW_CHUNKS, N)): [TrainKernel, TrainKernel] => {
  return [
    {
      key: 'tr.rmsnorm_dw_parts',
      source: `function (dy, x, r) {
    const c = Math.floor(this.thread.x / this.constants.D);
    const i = this.thread.x - c * this.constants.D;
    let s = 0.0;
    for (let k = 0; k < this.constants.STEPS; k++) {
      const n = k * this.constants.C + c;
      if (n < this.constants.N) {
        const at = n * this.constants.D + i;
        s += dy[at] * x[at] * r[n];
      }
    }
    return s;
  }`,
      constants: { N, D: d, C, STEPS: Math.ceil(N / C) },
      size: C * d,
    },
    dwFoldKernel(C, d),
  ];
};

/**
 * The second level of a weight gradient summed in row chunks (rmsnormDwKernels, gated_rmsnorm.ts
 * gatedRmsnormDwKernels): thread i adds the C parts (C, d) of its column, in a fixed order (deterministic).
 */
export const dwFoldKernel = (C: number, d: number): TrainKernel => ({
  key: 'tr.rmsnorm_dw_fold',
  source: `function (parts) {
    let s = 0.0;
    for (let c = 0; c < this.constants.C; c++) { s += parts[c * this.constants.D + this.thread.x]; }
    return s;
  }`,
  constants: { D: d, C },
  size: d,
});

/** a = silu(g) u, elementwise over `size` values. */
export const swigluKernel = (size: number): TrainKernel => ({
  key: 'tr.swiglu',
  source: `function (g, u) { return ${siluExpr('g[this.thread.x]')} * u[this.thread.x]; }`,
  constants: {},
  size,
});

/** dg (which = 'dg') or du (which = 'du') of the SwiGLU, elementwise. */
export const swigluBackKernel = (size: number, which: 'dg' | 'du'): TrainKernel => ({
  key: `tr.swiglu_${which}`,
  source:
    which === 'du'
      ? `function (da, g) { return da[this.thread.x] * ${siluExpr('g[this.thread.x]')}; }`
      : `function (da, g, u) {
    const gv = g[this.thread.x];
    const s = 1.0 / (1.0 + Math.exp(-gv));
    return da[this.thread.x] * u[this.thread.x] * s * (1.0 + gv * (1.0 - s));
  }`,
  constants: {},
  size,
});

/** RoPE on rows x (b·l, heads·hd), position t = row mod l; `sign` −1: the backward (rotation by −θ). */
export const ropeKernel = (N: number, L: number, heads: number, hd: number, sign: 1 | -1): TrainKernel => ({
  key: 'tr.rope',
  source: `function (x, table) {
    const n = Math.floor(this.thread.x / this.constants.W);
    const r = this.thread.x - n * this.constants.W;
    const c = r - Math.floor(r / this.constants.HD) * this.constants.HD;
    const t = n - Math.floor(n / this.constants.L) * this.constants.L;
    let partner = this.thread.x + this.constants.HALF;
    let rot = -1.0;
    let f = c;
    if (c >= this.constants.HALF) { partner = this.thread.x - this.constants.HALF; rot = 1.0; f = c - this.constants.HALF; }
    const row = t * this.constants.HD;
    return x[this.thread.x] * table[row + f] + rot * this.constants.SIGN * x[partner] * table[row + this.constants.HALF + f];
  }`,
  constants: { W: heads * hd, HD: hd, HALF: hd / 2, L, SIGN: sign },
  size: N * heads * hd,
});

/** h[n,c] = E[id_n, c]: ids (N) as floats, E (V, d) → (N, d). */
export const embeddingKernel = (N: number, d: number): TrainKernel => ({
  key: 'tr.embed',
  source: `function (ids, e) {
    const n = Math.floor(this.thread.x / this.constants.D);
    return e[ids[n] * this.constants.D + this.thread.x - n * this.constants.D];
  }`,
  constants: { D: d },
  size: N * d,
});

/** The positions of `ids` grouped by id, stably: `order` (N) and `start` (V+1) for `embeddingDwKernel`. */
export function embeddingIndex(ids: readonly number[], V: number): { order: Float32Array; start: Float32Array } {
  const start = new Float32Array(V + 1);
  for (const id of ids) start[id + 1]++;
  for (let v = 0; v < V; v++) start[v + 1] += start[v];
  const next = start.slice(0, V);
  const order = new Float32Array(ids.length);
  ids.forEach((id, n) => (order[next[id]++] = n));
  return { order, start };
}

/** dE[v,c] = Σ_{n: id_n = v} dh[n,c] (+ tied[v,c]): dh (N, d), order (N), start (V+1) → (V, d). */
export const embeddingDwKernel = (N: number, V: number, d: number, tied: boolean): TrainKernel => ({
  key: `tr.embed_dw${tied ? '+tied' : ''}`,
  source: `function (dh, order, start${tied ? ', tied' : ''}) {
    const v = Math.floor(this.thread.x / this.constants.D);
    const c = this.thread.x - v * this.constants.D;
    const a = start[v];
    const cnt = start[v + 1] - a;
    let s = ${tied ? 'tied[this.thread.x]' : '0.0'};
    for (let k = 0; k < this.constants.N; k++) {
      if (k >= cnt) { break; }
      s += dh[order[a + k] * this.constants.D + c];
    }
    return s;
  }`,
  constants: { N, D: d },
  size: V * d,
});

/** y = a + b elementwise. */
export const addKernel = (size: number): TrainKernel => ({
  key: 'tr.add',
  source: `function (a, b) { return a[this.thread.x] + b[this.thread.x]; }`,
  constants: {},
  size,
});
