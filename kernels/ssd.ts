/**
 * Mamba-2 SSD, chunked (float32). Reference: lib/ref/ssd.ts (ssdChunked, ssdDiscreteChunked, ssdSequential).
 *
 * Core on discretised inputs, per head h (group g), chunk c = [t0, t0 + CH):
 *   1. cum[b, t, h]        = Σ_{r=t0..t} a_r                    (a = Δ·A_h, or given; within-chunk log decay)
 *   2. S[b, h, p, n, c]    = Σ_{s∈c} exp(cum_last − cum_s)·X̃_s[p]·B_s[n]       (chunk state from zero)
 *   3. Hs[b, h, p, n, c]   state entering chunk c: Hs_{c+1} = exp(cum_last(c))·Hs_c + S_c, Hs_0 = initial; Hs_C final
 *   4. y[b, t, h, p]       = exp(cum_t)·Σ_n Hs_c[p, n]·C_t[n] + Σ_{s∈c, s≤t} exp(cum_t − cum_s)·(C_t·B_s)·X̃_s[p]
 *                            then + D_h·x, · silu(z)  (ssd_chunk_scan only)
 * with X̃ = Δ·x. Prep (ssd_chunk_scan): Δ = softplus(dt + dt_bias). ssd_minimal_discrete passes X̃ and a directly.
 */
import type { GpuRuntime } from './runtime.js';
import { siluExpr, softplusSnippet, unflatten } from './snippets.js';
import type { SsdDims } from '../lib/ref/ssd.js';

/** The SSD sizes (validated by ssdDims) plus the chunk length. */
export type SsdShape = SsdDims & { chunk: number };

export interface SsdCoreArgs {
  x: Float32Array; // (b, L, H, P) raw x (scaled by xScale inside) or X̃
  /** Δ (b, L, H): X̃ = Δ·x and a = Δ·A_h. Absent: x is X̃ and `a` holds the log decays. */
  delta?: Float32Array;
  A: Float32Array; // (H) with delta; (b, L, H) without
  B: Float32Array;
  C: Float32Array;
  D?: Float32Array;
  z?: Float32Array;
  initialState?: Float32Array;
}

export async function ssdDeltaKernel(
  rt: GpuRuntime,
  s: SsdShape,
  dt: Float32Array,
  bias: Float32Array | undefined,
  softplus: boolean,
): Promise<Float32Array> {
  const src = `function (dt${bias ? ', bias' : ''}) {
    const h = this.thread.x - Math.floor(this.thread.x / this.constants.H) * this.constants.H;
    const v = dt[this.thread.x]${bias ? ' + bias[h]' : ''};
    ${softplus ? softplusSnippet('v', 'r') : 'const r = v;'}
    return r;
  }`;
  return rt.run(
    `ssd.delta${bias ? '+bias' : ''}${softplus ? '+sp' : ''}`,
    src,
    { H: s.H },
    s.batch * s.L * s.H,
    bias ? [dt, bias] : [dt],
  );
}

export async function ssdCoreKernel(
  rt: GpuRuntime,
  s: SsdShape,
  a: SsdCoreArgs,
): Promise<{ y: Float32Array; finalState: Float32Array }> {
  const NC = Math.ceil(s.L / s.chunk);
  const K = { L: s.L, H: s.H, P: s.P, G: s.G, N: s.N, CH: s.chunk, NC, NC1: NC + 1, HPG: s.H / s.G };
  const withDelta = !!a.delta;
  const tag = withDelta ? 'dA' : 'a';
  // log decay of step (b, r, h) and X̃ at (b, r, h, p), as kernel expressions
  const decay = (r: string) =>
    withDelta
      ? `dl[(b * this.constants.L + ${r}) * this.constants.H + h] * A[h]`
      : `A[(b * this.constants.L + ${r}) * this.constants.H + h]`;
  const xt = (r: string) =>
    withDelta
      ? `x[((b * this.constants.L + ${r}) * this.constants.H + h) * this.constants.P + p] * dl[(b * this.constants.L + ${r}) * this.constants.H + h]`
      : `x[((b * this.constants.L + ${r}) * this.constants.H + h) * this.constants.P + p]`;
  const bc = (m: string, r: string) =>
    `${m}[((b * this.constants.L + ${r}) * this.constants.G + g) * this.constants.N + n]`;
  const dlArg = withDelta ? [a.delta!] : [];
  const dlName = withDelta ? ['dl'] : [];

  // 1. within-chunk cumulative log decay
  const cumSrc = `function (A${withDelta ? ', dl' : ''}) {
    ${unflatten('this.thread.x', ['b', 't', 'h'], ['', 'this.constants.L', 'this.constants.H'])}
    const t0 = Math.floor(t / this.constants.CH) * this.constants.CH;
    let s = 0.0;
    for (let k = 0; k < this.constants.CH; k++) {
      const r = t0 + k;
      if (r <= t) { s += ${decay('r')}; }
    }
    return s;
  }`;
  const cum = await rt.run(`ssd.cum/${tag}`, cumSrc, K, s.batch * s.L * s.H, [a.A, ...dlArg]);
  const cumAt = (r: string) => `cum[(b * this.constants.L + ${r}) * this.constants.H + h]`;

  // 2. chunk states from zero
  const localSrc = `function (x, Bm, cum${withDelta ? ', dl' : ''}) {
    ${unflatten('this.thread.x', ['b', 'h', 'p', 'n', 'c'], ['', 'this.constants.H', 'this.constants.P', 'this.constants.N', 'this.constants.NC'])}
    const g = Math.floor(h / this.constants.HPG);
    const t0 = c * this.constants.CH;
    let last = t0 + this.constants.CH - 1;
    if (last >= this.constants.L) { last = this.constants.L - 1; }
    const cl = ${cumAt('last')};
    let s = 0.0;
    for (let k = 0; k < this.constants.CH; k++) {
      const r = t0 + k;
      if (r <= last) { s += Math.exp(cl - ${cumAt('r')}) * ${xt('r')} * ${bc('Bm', 'r')}; }
    }
    return s;
  }`;
  const local = await rt.run(`ssd.local/${tag}`, localSrc, K, s.batch * s.H * s.P * s.N * NC, [
    a.x,
    a.B,
    cum,
    ...dlArg,
  ]);

  // 3. state passing
  const passSrc = `function (local, cum${a.initialState ? ', h0' : ''}) {
    ${unflatten('this.thread.x', ['b', 'h', 'p', 'n', 'c'], ['', 'this.constants.H', 'this.constants.P', 'this.constants.N', 'this.constants.NC1'])}
    const si = ((b * this.constants.H + h) * this.constants.P + p) * this.constants.N + n;
    let st = ${a.initialState ? 'h0[si]' : '0.0'};
    for (let cc = 0; cc < this.constants.NC; cc++) {
      if (cc < c) {
        let last = cc * this.constants.CH + this.constants.CH - 1;
        if (last >= this.constants.L) { last = this.constants.L - 1; }
        st = Math.exp(${cumAt('last')}) * st + local[si * this.constants.NC + cc];
      }
    }
    return st;
  }`;
  const hs = await rt.run(
    `ssd.pass${a.initialState ? '+h0' : ''}`,
    passSrc,
    K,
    s.batch * s.H * s.P * s.N * (NC + 1),
    a.initialState ? [local, cum, a.initialState] : [local, cum],
  );

  // 4. outputs
  const names = ['x', 'Bm', 'Cm', 'cum', 'hs', ...dlName];
  const args = [a.x, a.B, a.C, cum, hs, ...dlArg];
  if (a.D) {
    names.push('Dv');
    args.push(a.D);
  }
  if (a.z) {
    names.push('z');
    args.push(a.z);
  }
  const xRaw = `x[this.thread.x]`;
  const outSrc = `function (${names.join(', ')}) {
    ${unflatten('this.thread.x', ['b', 't', 'h', 'p'], ['', 'this.constants.L', 'this.constants.H', 'this.constants.P'])}
    const g = Math.floor(h / this.constants.HPG);
    const c = Math.floor(t / this.constants.CH);
    const t0 = c * this.constants.CH;
    const ct = ${cumAt('t')};
    let y = 0.0;
    for (let n = 0; n < this.constants.N; n++) {
      y += hs[(((b * this.constants.H + h) * this.constants.P + p) * this.constants.N + n) * this.constants.NC1 + c] * ${bc('Cm', 't')};
    }
    y = y * Math.exp(ct);
    for (let k = 0; k < this.constants.CH; k++) {
      const r = t0 + k;
      if (r <= t) {
        let cb = 0.0;
        for (let n = 0; n < this.constants.N; n++) { cb += ${bc('Cm', 't')} * ${bc('Bm', 'r')}; }
        y += Math.exp(ct - ${cumAt('r')}) * cb * ${xt('r')};
      }
    }
    ${a.D ? `y += Dv[h] * ${xRaw};` : ''}
    ${a.z ? `y = y * ${siluExpr('z[this.thread.x]')};` : ''}
    return y;
  }`;
  const y = await rt.run(
    `ssd.out/${tag}${a.D ? '+D' : ''}${a.z ? '+z' : ''}`,
    outSrc,
    K,
    s.batch * s.L * s.H * s.P,
    args,
  );

  const finalState = new Float32Array(s.batch * s.H * s.P * s.N);
  for (let i = 0; i < finalState.length; i++) finalState[i] = hs[i * (NC + 1) + NC];
  return { y, finalState };
}
