/**
 * Mamba-1 selective scan with the discretisation fused in (float32). Reference: lib/ref/selective_scan.ts.
 *
 *   Δ_t = softplus(delta_t + delta_bias),  Ā_t = exp(Δ_t A),  h_t = Ā_t ⊙ h_{t−1} + Δ_t B_t u_t,
 *   y_t = C_t·h_t + D u_t,  out_t = y_t·silu(z_t)
 *
 * Ā and B̄u are never stored. A thread owns one scalar, so the scan over L runs in chunks of CH steps
 * (c = 0 … C−1, C = ⌈L/CH⌉), in four passes:
 *   1. Δ[b, d, t]                       softplus(delta + bias) (or not)
 *   2. ΣΔ[b, d, c], local[b, d, n, c]    chunk sums of Δ, and each chunk's state started from zero
 *   3. hs[b, d, n, c] for c = 0 … C      state entering chunk c: hs_{c+1} = exp(A·ΣΔ_c)·hs_c + local_c,
 *                                        hs_0 = initial state; hs_C is last_state
 *   4. out[b, d, t]                      from hs of t's chunk, re-run ≤ CH steps per state index n and
 *                                        accumulate C_t·h_t; then + D u, · silu(z)
 * Every loop bound is a constant, so lengths of thousands are not capped.
 */
import type { GpuRuntime } from './runtime.js';
import { siluExpr, softplusSnippet, unflatten } from './snippets.js';

type ProjKind = 'time' | 'grouped' | 'invariant';

export interface ScanShape {
  batch: number;
  dim: number;
  L: number;
  N: number;
  bKind: ProjKind;
  bGroups: number;
  cKind: ProjKind;
  cGroups: number;
  chunk: number;
}

export interface ScanArgs {
  u: Float32Array;
  delta: Float32Array;
  A: Float32Array;
  B: Float32Array;
  C: Float32Array;
  D?: Float32Array;
  z?: Float32Array;
  deltaBias?: Float32Array;
  deltaSoftplus: boolean;
  initialState?: Float32Array;
}

/** Index expression of B or C at (b, d, n, t) in the kernel's variables; `per` names the dim/G constant. */
function projIndex(kind: ProjKind, groups: number, per: string, t: string): string {
  const c = 'this.constants';
  if (kind === 'invariant') return `d * ${c}.N + n`;
  if (kind === 'time') return `(b * ${c}.N + n) * ${c}.L + ${t}`;
  return `((b * ${groups} + Math.floor(d / ${c}.${per})) * ${c}.N + n) * ${c}.L + ${t}`;
}

/** Default chunk length: balances the per-chunk replay (∝ CH) against state passing (∝ L/CH). */
export function defaultScanChunk(L: number): number {
  return Math.max(1, Math.min(L, Math.round(Math.cbrt(2 * L))));
}

/** What passes 1–3 leave behind (the backward in selective_scan_backward.ts builds on them). */
export interface ScanStates {
  /** Δ (b, dim, L) */
  dl: Float32Array;
  /** chunk sums of Δ (b, dim, NC) */
  dsum: Float32Array;
  /** state entering each chunk (b, dim, N, NC + 1); the last is last_state */
  hs: Float32Array;
  consts: Record<string, number>;
  /** index expressions of B and C at (b, d, n, t) */
  bIdx: (t: string) => string;
  cIdx: (t: string) => string;
  /** kernel-cache key part for the B/C layouts */
  key: string;
  NC: number;
}

/** Passes 1–3: Δ, the chunk sums of Δ and the state entering each chunk. */
export async function scanChunkStates(rt: GpuRuntime, s: ScanShape, a: ScanArgs): Promise<ScanStates> {
  const C = Math.ceil(s.L / s.chunk);
  const k = {
    B: s.batch,
    DIM: s.dim,
    L: s.L,
    N: s.N,
    CH: s.chunk,
    NC: C,
    NC1: C + 1,
  };
  // grouped layouts need dim/G; B and C may have different G, so each gets its own constant
  const bIdx = (t: string) => projIndex(s.bKind, s.bGroups, 'DIM_PER_GB', t);
  const cIdx = (t: string) => projIndex(s.cKind, s.cGroups, 'DIM_PER_GC', t);
  const consts = { ...k, DIM_PER_GB: s.dim / s.bGroups, DIM_PER_GC: s.dim / s.cGroups };
  const key = `${s.bKind}${s.bGroups}/${s.cKind}${s.cGroups}`;

  // 1. Δ
  const deltaSrc = `function (delta${a.deltaBias ? ', bias' : ''}) {
    ${unflatten('this.thread.x', ['bd', 't'], ['', 'this.constants.L'])}
    const d = bd - Math.floor(bd / this.constants.DIM) * this.constants.DIM;
    const v = delta[this.thread.x]${a.deltaBias ? ' + bias[d]' : ''};
    ${a.deltaSoftplus ? softplusSnippet('v', 'r') : 'const r = v;'}
    return r;
  }`;
  const dl = await rt.run(
    `scan.delta${a.deltaBias ? '+bias' : ''}${a.deltaSoftplus ? '+sp' : ''}`,
    deltaSrc,
    consts,
    s.batch * s.dim * s.L,
    a.deltaBias ? [a.delta, a.deltaBias] : [a.delta],
  );

  // 2a. chunk sums of Δ
  const dsumSrc = `function (dl) {
    ${unflatten('this.thread.x', ['bd', 'c'], ['', 'this.constants.NC'])}
    let s = 0.0;
    for (let k = 0; k < this.constants.CH; k++) {
      const t = c * this.constants.CH + k;
      if (t < this.constants.L) { s += dl[bd * this.constants.L + t]; }
    }
    return s;
  }`;
  const dsum = await rt.run('scan.dsum', dsumSrc, consts, s.batch * s.dim * C, [dl]);

  // 2b. chunk-local states from zero
  const localSrc = `function (u, dl, A, Bm) {
    ${unflatten('this.thread.x', ['b', 'd', 'n', 'c'], ['', 'this.constants.DIM', 'this.constants.N', 'this.constants.NC'])}
    const a = A[d * this.constants.N + n];
    let h = 0.0;
    for (let k = 0; k < this.constants.CH; k++) {
      const t = c * this.constants.CH + k;
      if (t < this.constants.L) {
        const i = (b * this.constants.DIM + d) * this.constants.L + t;
        h = Math.exp(dl[i] * a) * h + dl[i] * Bm[${bIdx('t')}] * u[i];
      }
    }
    return h;
  }`;
  const local = await rt.run(`scan.local/${key}`, localSrc, consts, s.batch * s.dim * s.N * C, [a.u, dl, a.A, a.B]);

  // 3. states entering each chunk (c = 0 … C)
  const passSrc = `function (local, dsum, A${a.initialState ? ', h0' : ''}) {
    ${unflatten('this.thread.x', ['b', 'd', 'n', 'c'], ['', 'this.constants.DIM', 'this.constants.N', 'this.constants.NC1'])}
    const a = A[d * this.constants.N + n];
    const bd = b * this.constants.DIM + d;
    let h = ${a.initialState ? 'h0[bd * this.constants.N + n]' : '0.0'};
    for (let cc = 0; cc < this.constants.NC; cc++) {
      if (cc < c) {
        h = Math.exp(a * dsum[bd * this.constants.NC + cc]) * h + local[(bd * this.constants.N + n) * this.constants.NC + cc];
      }
    }
    return h;
  }`;
  const passArgs = [local, dsum, a.A];
  if (a.initialState) passArgs.push(a.initialState);
  const hs = await rt.run(
    `scan.pass${a.initialState ? '+h0' : ''}`,
    passSrc,
    consts,
    s.batch * s.dim * s.N * (C + 1),
    passArgs,
  );
  return { dl, dsum, hs, consts, bIdx, cIdx, key, NC: C };
}

export async function selectiveScanKernel(
  rt: GpuRuntime,
  s: ScanShape,
  a: ScanArgs,
): Promise<{ out: Float32Array; lastState: Float32Array }> {
  const { dl, hs, consts, bIdx, cIdx, key, NC: C } = await scanChunkStates(rt, s, a);
  // 4. outputs
  const outArgs: Float32Array[] = [a.u, dl, a.A, a.B, a.C, hs];
  const outNames = ['u', 'dl', 'A', 'Bm', 'Cm', 'hs'];
  if (a.D) {
    outArgs.push(a.D);
    outNames.push('Dv');
  }
  if (a.z) {
    outArgs.push(a.z);
    outNames.push('z');
  }
  const outSrc = `function (${outNames.join(', ')}) {
    ${unflatten('this.thread.x', ['b', 'd', 't'], ['', 'this.constants.DIM', 'this.constants.L'])}
    const bd = b * this.constants.DIM + d;
    const c = Math.floor(t / this.constants.CH);
    let y = 0.0;
    for (let n = 0; n < this.constants.N; n++) {
      const a = A[d * this.constants.N + n];
      let h = hs[(bd * this.constants.N + n) * this.constants.NC1 + c];
      for (let k = 0; k < this.constants.CH; k++) {
        const tt = c * this.constants.CH + k;
        if (tt <= t) {
          const i = bd * this.constants.L + tt;
          h = Math.exp(dl[i] * a) * h + dl[i] * Bm[${bIdx('tt')}] * u[i];
        }
      }
      y += Cm[${cIdx('t')}] * h;
    }
    ${a.D ? 'y += Dv[d] * u[this.thread.x];' : ''}
    ${a.z ? `y = y * ${siluExpr('z[this.thread.x]')};` : ''}
    return y;
  }`;
  const out = await rt.run(
    `scan.out/${key}${a.D ? '+D' : ''}${a.z ? '+z' : ''}`,
    outSrc,
    consts,
    s.batch * s.dim * s.L,
    outArgs,
  );

  // last_state = hs at c = C (a strided gather of data already computed)
  const lastState = new Float32Array(s.batch * s.dim * s.N);
  for (let i = 0; i < lastState.length; i++) lastState[i] = hs[i * (C + 1) + C];
  return { out, lastState };
}
