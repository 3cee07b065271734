/**
 * The fused multi-step verify kernel of Algorithm 2 (float32), ONE dispatch. Reference: lib/ref/multistep.ts.
 *
 * From the single cached state h_i, replay r cached steps (x, raw dt, B) without output, then s new steps
 * with outputs. The output buffer holds [out (b, s, dim) | h_j (b, dim, N) | h_k (b, dim, N)]; each thread
 * recomputes its own short prefix (r + s ≤ K + 1 steps, K ≈ 4–8) instead of storing per-step states:
 *   out thread (b, t, d):   Σ_n C_t[n]·h_{r+t}[n] + D x_t, · silu(z_t)   (runs r + t + 1 steps for each n)
 *   h_j thread (b, d, n):   r steps;      h_k thread (b, d, n):  r + s steps
 * Δ = softplus(dt + dt_bias); step: h ← exp(Δ·A[d, n])·h + Δ·B[n]·x.
 */
import type { GpuRuntime } from './runtime.js';
import { siluExpr, softplusSnippet } from './snippets.js';
import type { MultistepDims } from '../lib/ref/multistep.js';

/** Sizes: batch, dim, N, K1 cached rows, r replayed steps, s new steps (validated by multistepDims). */
export type MultistepShape = MultistepDims;

export interface MultistepArgs {
  hI: Float32Array;
  xCache: Float32Array;
  deltaCache: Float32Array;
  BCache: Float32Array;
  x: Float32Array;
  dt: Float32Array;
  B: Float32Array;
  C: Float32Array;
  z?: Float32Array;
  A: Float32Array;
  D?: Float32Array;
  deltaBias?: Float32Array;
  deltaSoftplus: boolean;
}

export async function multistepKernel(
  rt: GpuRuntime,
  sh: MultistepShape,
  a: MultistepArgs,
): Promise<{ out: Float32Array; hJ: Float32Array; hK: Float32Array }> {
  const { batch, dim, N, K1, r, s, G } = sh;
  const nOut = batch * s * dim;
  const nState = batch * dim * N;
  const consts = { DIM: dim, N, K1, R: r, S: s, NOUT: nOut, NSTATE: nState, G, PER: dim / G };
  const names = ['hI', 'xc', 'dtc', 'Bc', 'x', 'dt', 'Bm', 'Cm', 'A'];
  const args = [a.hI, a.xCache, a.deltaCache, a.BCache, a.x, a.dt, a.B, a.C, a.A];
  if (a.deltaBias) {
    names.push('bias');
    args.push(a.deltaBias);
  }
  if (a.D) {
    names.push('Dv');
    args.push(a.D);
  }
  if (a.z) {
    names.push('z');
    args.push(a.z);
  }
  const delta = (raw: string, out: string) =>
    `const ${out}_v = ${raw}${a.deltaBias ? ' + bias[d]' : ''};\n${a.deltaSoftplus ? softplusSnippet(`${out}_v`, out) : `const ${out} = ${out}_v;`}`;
  // one step of channel d, state index n on variable h
  const replay = (nVar: string) => `
      for (let k = 0; k < this.constants.R; k++) {
        const ci = (b * this.constants.K1 + k) * this.constants.DIM + d;
        ${delta('dtc[ci]', 'dr')}
        h = Math.exp(dr * A[d * this.constants.N + ${nVar}]) * h + dr * Bc[((b * this.constants.K1 + k) * this.constants.G + g) * this.constants.N + ${nVar}] * xc[ci];
      }`;
  const fresh = (nVar: string, upto: string) => `
      for (let k = 0; k < this.constants.S; k++) {
        if (k <= ${upto}) {
          const ni = (b * this.constants.S + k) * this.constants.DIM + d;
          ${delta('dt[ni]', 'dn')}
          h = Math.exp(dn * A[d * this.constants.N + ${nVar}]) * h + dn * Bm[((b * this.constants.S + k) * this.constants.G + g) * this.constants.N + ${nVar}] * x[ni];
        }
      }`;
  const src = `function (${names.join(', ')}) {
    const i = this.thread.x;
    let result = 0.0;
    if (i < this.constants.NOUT) {
      const d = i - Math.floor(i / this.constants.DIM) * this.constants.DIM;
      const bt = Math.floor(i / this.constants.DIM);
      const t = bt - Math.floor(bt / this.constants.S) * this.constants.S;
      const b = Math.floor(bt / this.constants.S);
      const g = Math.floor(d / this.constants.PER);
      let y = 0.0;
      for (let n = 0; n < this.constants.N; n++) {
        let h = hI[(b * this.constants.DIM + d) * this.constants.N + n];
        ${replay('n')}
        ${fresh('n', 't')}
        y += Cm[((b * this.constants.S + t) * this.constants.G + g) * this.constants.N + n] * h;
      }
      ${a.D ? 'y += Dv[d] * x[i];' : ''}
      ${a.z ? `y = y * ${siluExpr('z[i]')};` : ''}
      result = y;
    } else {
      let j = i - this.constants.NOUT;
      let last = -1;
      if (j >= this.constants.NSTATE) { j = j - this.constants.NSTATE; last = this.constants.S - 1; }
      const nn = j - Math.floor(j / this.constants.N) * this.constants.N;
      const bd = Math.floor(j / this.constants.N);
      const d = bd - Math.floor(bd / this.constants.DIM) * this.constants.DIM;
      const b = Math.floor(bd / this.constants.DIM);
      const g = Math.floor(d / this.constants.PER);
      let h = hI[j];
      ${replay('nn')}
      ${fresh('nn', 'last')}
      result = h;
    }
    return result;
  }`;
  const all = await rt.run(
    `multistep${a.deltaBias ? '+bias' : ''}${a.deltaSoftplus ? '+sp' : ''}${a.D ? '+D' : ''}${a.z ? '+z' : ''}`,
    src,
    consts,
    nOut + 2 * nState,
    args,
  );
  return { out: all.slice(0, nOut), hJ: all.slice(nOut, nOut + nState), hK: all.slice(nOut + nState) };
}
