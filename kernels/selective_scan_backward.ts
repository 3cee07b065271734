/**
 * Backward of the Mamba-1 selective scan (float32). Reference: lib/ref/selective_scan.ts
 * `selectiveScanBackward`. Forward, per channel (b, d) and state index n, with e_t = exp(Δ_t A):
 *
 *   h_t = e_t h_{t−1} + Δ_t B_t u_t,   y_t = Σ_n C_t h_t + D u_t,   out_t = y_t silu(z_t)
 *
 * Backward, with dy_t = dout_t silu(z_t) and f_t = dy_t C_t (∂ℓ/∂h_t from y_t alone):
 *
 *   G_t = ∂ℓ/∂h_t = f_t + g_{t+1},   g_t = e_t G_t  (what reaches h_{t−1}),   g_L = dlast_state
 *   ∂ℓ/∂Δ_t  = Σ_n G_t (A e_t h_{t−1} + B_t u_t)      (· softplus'(delta_t + bias) when softplus)
 *   ∂ℓ/∂A    = Σ_{b,t} G_t Δ_t e_t h_{t−1}             ∂ℓ/∂B_t = Σ_d G_t Δ_t u_t   (over the channels reading it)
 *   ∂ℓ/∂u_t  = dy_t D + Σ_n G_t Δ_t B_t               ∂ℓ/∂C_t = Σ_d dy_t h_t
 *   ∂ℓ/∂z_t  = dout_t y_t silu'(z_t)                   ∂ℓ/∂D = Σ_{b,t} dy_t u_t
 *   ∂ℓ/∂h_0  = g_0 = e_0 G_0                           ∂ℓ/∂delta_bias = Σ_{b,t} ∂ℓ/∂delta_t
 *
 * g runs backwards in time as the same kind of linear recurrence as h forwards (g_t = e_t g_{t+1} + e_t f_t),
 * so it is chunked the same way: each chunk's g from zero at its end, g entering each chunk from the right
 * (Π_{t∈c} e_t = exp(A ΣΔ_c), the forward's chunk sums), then every G_t by a replay of ≤ CH steps. h_t for every
 * t comes from the forward's chunk states the same way. Everything else is a sum a thread loops over.
 */
import type { GpuRuntime } from './runtime.js';
import { scanChunkStates, type ScanArgs, type ScanShape } from './selective_scan.js';
import { siluExpr, unflatten } from './snippets.js';

export interface ScanGradArgs extends ScanArgs {
  dout: Float32Array;
  dLastState?: Float32Array;
}

export interface ScanGrads {
  out: Float32Array;
  lastState: Float32Array;
  du: Float32Array;
  ddelta: Float32Array;
  dA: Float32Array;
  dB: Float32Array;
  dC: Float32Array;
  dD?: Float32Array;
  dz?: Float32Array;
  ddeltaBias?: Float32Array;
  dInitialState?: Float32Array;
}

/** silu'(v) = σ(v)(1 + v(1 − σ(v))) as an expression. */
const siluGradExpr = (v: string) =>
  `((1.0 / (1.0 + Math.exp(-(${v})))) * (1.0 + (${v}) * (1.0 - 1.0 / (1.0 + Math.exp(-(${v}))))))`;

export async function selectiveScanBackwardKernel(rt: GpuRuntime, s: ScanShape, a: ScanGradArgs): Promise<ScanGrads> {
  const st = await scanChunkStates(rt, s, a);
  const { dl, dsum, hs, consts, bIdx, cIdx, key, NC } = st;
  const K = 'this.constants';
  const BDNT = ['b', 'd', 'n', 't'];
  const BDNT_SIZES = ['', `${K}.DIM`, `${K}.N`, `${K}.L`];
  const nBD = s.batch * s.dim;

  // h_t for every t (b, d, n, t): a replay of ≤ CH steps from the state entering t's chunk
  const H = await rt.run(
    `scanb.h/${key}`,
    `function (u, dl, A, Bm, hs) {
    ${unflatten('this.thread.x', BDNT, BDNT_SIZES)}
    const bd = b * ${K}.DIM + d;
    const a = A[d * ${K}.N + n];
    const c = Math.floor(t / ${K}.CH);
    let h = hs[(bd * ${K}.N + n) * ${K}.NC1 + c];
    for (let k = 0; k < ${K}.CH; k++) {
      const tt = c * ${K}.CH + k;
      if (tt <= t) {
        const i = bd * ${K}.L + tt;
        h = Math.exp(dl[i] * a) * h + dl[i] * Bm[${bIdx('tt')}] * u[i];
      }
    }
    return h;
  }`,
    consts,
    nBD * s.N * s.L,
    [a.u, dl, a.A, a.B, hs],
  );

  // dy = dout · silu(z)
  const dy = a.z
    ? await rt.run(
        'scanb.dy',
        `function (dout, z) { return dout[this.thread.x] * ${siluExpr('z[this.thread.x]')}; }`,
        consts,
        nBD * s.L,
        [a.dout, a.z],
      )
    : a.dout;

  // g from zero at the end of each chunk, run back to the chunk's start (b, d, n, c)
  const fExpr = (t: string) => `dy[bd * ${K}.L + ${t}] * Cm[${cIdx(t)}]`;
  const glocal = await rt.run(
    `scanb.glocal/${key}`,
    `function (dy, dl, A, Cm) {
    ${unflatten('this.thread.x', ['b', 'd', 'n', 'c'], ['', `${K}.DIM`, `${K}.N`, `${K}.NC`])}
    const bd = b * ${K}.DIM + d;
    const a = A[d * ${K}.N + n];
    let g = 0.0;
    for (let k = 0; k < ${K}.CH; k++) {
      const t = c * ${K}.CH + (${K}.CH - 1 - k);
      if (t < ${K}.L) {
        g = Math.exp(dl[bd * ${K}.L + t] * a) * (${fExpr('t')} + g);
      }
    }
    return g;
  }`,
    consts,
    nBD * s.N * NC,
    [dy, dl, a.A, a.C],
  );

  // g entering each chunk from the right (b, d, n, c): from dlast_state, through the chunks after c
  const gin = await rt.run(
    `scanb.gin${a.dLastState ? '+dlast' : ''}`,
    `function (glocal, dsum, A${a.dLastState ? ', dlast' : ''}) {
    ${unflatten('this.thread.x', ['b', 'd', 'n', 'c'], ['', `${K}.DIM`, `${K}.N`, `${K}.NC`])}
    const bd = b * ${K}.DIM + d;
    const a = A[d * ${K}.N + n];
    let g = ${a.dLastState ? `dlast[bd * ${K}.N + n]` : '0.0'};
    for (let k = 0; k < ${K}.NC; k++) {
      const cc = ${K}.NC - 1 - k;
      if (cc > c) {
        g = Math.exp(a * dsum[bd * ${K}.NC + cc]) * g + glocal[(bd * ${K}.N + n) * ${K}.NC + cc];
      }
    }
    return g;
  }`,
    consts,
    nBD * s.N * NC,
    a.dLastState ? [glocal, dsum, a.A, a.dLastState] : [glocal, dsum, a.A],
  );

  // G_t = f_t + g_{t+1} for every t (b, d, n, t)
  const G = await rt.run(
    `scanb.G/${key}`,
    `function (dy, dl, A, Cm, gin) {
    ${unflatten('this.thread.x', BDNT, BDNT_SIZES)}
    const bd = b * ${K}.DIM + d;
    const a = A[d * ${K}.N + n];
    const c = Math.floor(t / ${K}.CH);
    let g = gin[(bd * ${K}.N + n) * ${K}.NC + c];
    for (let k = 0; k < ${K}.CH; k++) {
      const tt = c * ${K}.CH + (${K}.CH - 1 - k);
      if (tt < ${K}.L && tt > t) {
        g = Math.exp(dl[bd * ${K}.L + tt] * a) * (${fExpr('tt')} + g);
      }
    }
    return ${fExpr('t')} + g;
  }`,
    consts,
    nBD * s.N * s.L,
    [dy, dl, a.A, a.C, gin],
  );

  // h_{t−1} at (b, d, n, t): H one step back, or the initial state (or 0) at t = 0
  const hPrev = `(t > 0 ? H[((bd * ${K}.N) + n) * ${K}.L + t - 1] : ${a.initialState ? `h0[bd * ${K}.N + n]` : '0.0'})`;
  const h0Arg = a.initialState ? ', h0' : '';
  const h0Val = a.initialState ? [a.initialState] : [];

  // ∂ℓ/∂delta (b, d, t), through softplus
  const ddelta = await rt.run(
    `scanb.ddelta/${key}${a.initialState ? '+h0' : ''}${a.deltaSoftplus ? '+sp' : ''}${a.deltaBias ? '+bias' : ''}`,
    `function (u, dl, A, Bm, H, G, delta${a.deltaBias ? ', bias' : ''}${h0Arg}) {
    ${unflatten('this.thread.x', ['b', 'd', 't'], ['', `${K}.DIM`, `${K}.L`])}
    const bd = b * ${K}.DIM + d;
    const i = bd * ${K}.L + t;
    let s = 0.0;
    for (let n = 0; n < ${K}.N; n++) {
      const a = A[d * ${K}.N + n];
      s += G[(bd * ${K}.N + n) * ${K}.L + t] * (a * Math.exp(dl[i] * a) * ${hPrev} + Bm[${bIdx('t')}] * u[i]);
    }
    ${a.deltaSoftplus ? `const v = delta[i]${a.deltaBias ? ' + bias[d]' : ''}; if (v <= 20.0) { s = s / (1.0 + Math.exp(-v)); }` : ''}
    return s;
  }`,
    consts,
    nBD * s.L,
    [a.u, dl, a.A, a.B, H, G, a.delta, ...(a.deltaBias ? [a.deltaBias] : []), ...h0Val],
  );

  // ∂ℓ/∂u (b, d, t)
  const du = await rt.run(
    `scanb.du/${key}${a.D ? '+D' : ''}`,
    `function (dl, Bm, G, dy${a.D ? ', Dv' : ''}) {
    ${unflatten('this.thread.x', ['b', 'd', 't'], ['', `${K}.DIM`, `${K}.L`])}
    const bd = b * ${K}.DIM + d;
    const i = bd * ${K}.L + t;
    let s = ${a.D ? 'dy[i] * Dv[d]' : '0.0'};
    for (let n = 0; n < ${K}.N; n++) {
      s += G[(bd * ${K}.N + n) * ${K}.L + t] * dl[i] * Bm[${bIdx('t')}];
    }
    return s;
  }`,
    consts,
    nBD * s.L,
    a.D ? [dl, a.B, G, dy, a.D] : [dl, a.B, G, dy],
  );

  // ∂ℓ/∂A (d, n): over batch and time
  const dA = await rt.run(
    `scanb.dA${a.initialState ? '+h0' : ''}`,
    `function (dl, A, H, G${h0Arg}) {
    ${unflatten('this.thread.x', ['d', 'n'], ['', `${K}.N`])}
    const a = A[d * ${K}.N + n];
    let s = 0.0;
    for (let b = 0; b < ${K}.B; b++) {
      const bd = b * ${K}.DIM + d;
      for (let t = 0; t < ${K}.L; t++) {
        const i = bd * ${K}.L + t;
        s += G[(bd * ${K}.N + n) * ${K}.L + t] * dl[i] * Math.exp(dl[i] * a) * ${hPrev};
      }
    }
    return s;
  }`,
    consts,
    s.dim * s.N,
    [dl, a.A, H, G, ...h0Val],
  );

  // ∂ℓ/∂B and ∂ℓ/∂C in their own layouts: each element sums over the (b, d, t) that read it
  const projGrad = async (which: 'B' | 'C', kind: ScanShape['bKind'], groups: number) => {
    const term =
      which === 'B'
        ? `G[(bd * ${K}.N + n) * ${K}.L + t] * dl[bd * ${K}.L + t] * u[bd * ${K}.L + t]`
        : `dy[bd * ${K}.L + t] * H[(bd * ${K}.N + n) * ${K}.L + t]`;
    const args = which === 'B' ? [G, dl, a.u] : [dy, H];
    const names = which === 'B' ? 'G, dl, u' : 'dy, H';
    let src: string;
    let n: number;
    if (kind === 'invariant') {
      n = s.dim * s.N;
      src = `function (${names}) {
    ${unflatten('this.thread.x', ['d', 'n'], ['', `${K}.N`])}
    let s = 0.0;
    for (let b = 0; b < ${K}.B; b++) {
      const bd = b * ${K}.DIM + d;
      for (let t = 0; t < ${K}.L; t++) { s += ${term}; }
    }
    return s;
  }`;
    } else {
      const per = s.dim / groups; // channels reading one group
      n = s.batch * groups * s.N * s.L;
      src = `function (${names}) {
    ${unflatten('this.thread.x', ['b', 'g', 'n', 't'], ['', String(groups), `${K}.N`, `${K}.L`])}
    let s = 0.0;
    for (let k = 0; k < ${per}; k++) {
      const bd = b * ${K}.DIM + g * ${per} + k;
      s += ${term};
    }
    return s;
  }`;
    }
    return rt.run(`scanb.d${which}/${kind}${groups}`, src, consts, n, args);
  };
  const dB = await projGrad('B', s.bKind, s.bKind === 'grouped' ? s.bGroups : 1);
  const dC = await projGrad('C', s.cKind, s.cKind === 'grouped' ? s.cGroups : 1);

  // per-channel sums over batch and time: ∂ℓ/∂D = Σ dy u, ∂ℓ/∂delta_bias = Σ ∂ℓ/∂delta
  const channelSum = (name: string, expr: string, args: Float32Array[], names: string) =>
    rt.run(
      `scanb.${name}`,
      `function (${names}) {
    const d = this.thread.x;
    let s = 0.0;
    for (let b = 0; b < ${K}.B; b++) {
      for (let t = 0; t < ${K}.L; t++) { const i = (b * ${K}.DIM + d) * ${K}.L + t; s += ${expr}; }
    }
    return s;
  }`,
      consts,
      s.dim,
      args,
    );
  const r: ScanGrads = { out: new Float32Array(0), lastState: new Float32Array(nBD * s.N), du, ddelta, dA, dB, dC };
  if (a.D) r.dD = await channelSum('dD', 'dy[i] * u[i]', [dy, a.u], 'dy, u');
  if (a.deltaBias) r.ddeltaBias = await channelSum('dbias', 'ddelta[i]', [ddelta], 'ddelta');

  // out and ∂ℓ/∂z from y_t = Σ_n C_t h_t + D u_t
  const yExpr = `let y = ${a.D ? 'Dv[d] * u[i]' : '0.0'};
    for (let n = 0; n < ${K}.N; n++) { y += Cm[${cIdx('t')}] * H[(bd * ${K}.N + n) * ${K}.L + t]; }`;
  const yArgs = [a.u, a.C, H, ...(a.D ? [a.D] : [])];
  const yNames = `u, Cm, H${a.D ? ', Dv' : ''}`;
  const outKernel = (name: string, ret: string, extra: Float32Array[], extraNames: string) =>
    rt.run(
      `scanb.${name}/${key}${a.D ? '+D' : ''}`,
      `function (${yNames}${extraNames}) {
    ${unflatten('this.thread.x', ['b', 'd', 't'], ['', `${K}.DIM`, `${K}.L`])}
    const bd = b * ${K}.DIM + d;
    const i = bd * ${K}.L + t;
    ${yExpr}
    return ${ret};
  }`,
      consts,
      nBD * s.L,
      [...yArgs, ...extra],
    );
  r.out = a.z ? await outKernel('outz', `y * ${siluExpr('z[i]')}`, [a.z], ', z') : await outKernel('out', 'y', [], '');
  if (a.z) r.dz = await outKernel('dz', `dout[i] * y * ${siluGradExpr('z[i]')}`, [a.z, a.dout], ', z, dout');

  // last_state (the forward's last chunk state) and ∂ℓ/∂h_0 = e_0 G_0
  for (let i = 0; i < nBD * s.N; i++) r.lastState[i] = hs[i * (NC + 1) + NC];
  if (a.initialState) {
    r.dInitialState = new Float32Array(nBD * s.N);
    for (let bd = 0; bd < nBD; bd++)
      for (let n = 0; n < s.N; n++) {
        const d = bd % s.dim;
        r.dInitialState[bd * s.N + n] = Math.fround(
          Math.exp(dl[bd * s.L] * a.A[d * s.N + n]) * G[(bd * s.N + n) * s.L],
        );
      }
  }
  return r;
}
