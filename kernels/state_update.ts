/**
 * One decode step of the selective SSM (float32), flat or multi-head with groups.
 * Reference: lib/ref/state_update.ts.
 *
 *   pass 1, one thread per (b, h, p, n):  h'[n] = exp(Δ·A[n])·h[n] + Δ·B[g, n]·x,   Δ = softplus(dt + dt_bias)
 *   pass 2, one thread per (b, h, p):     out = (Σ_n C[g, n]·h'[n] + D·x)·silu(z)
 * (flat layout = one head with P = dim channels and one group.)
 */
import type { GpuRuntime, PlanArg } from './runtime.js';
import { siluExpr, softplusSnippet, unflatten } from './snippets.js';

export interface StateUpdateShape {
  batch: number;
  H: number;
  P: number;
  N: number;
  G: number;
}

export interface StateUpdateArgs {
  state: Float32Array;
  x: Float32Array;
  dt: Float32Array;
  A: Float32Array;
  B: Float32Array;
  C: Float32Array;
  D?: Float32Array;
  z?: Float32Array;
  deltaBias?: Float32Array;
  deltaSoftplus: boolean;
}

export async function stateUpdateKernel(
  rt: GpuRuntime,
  s: StateUpdateShape,
  a: StateUpdateArgs,
): Promise<{ out: Float32Array; state: Float32Array }> {
  const consts = { H: s.H, P: s.P, N: s.N, G: s.G, HPG: s.H / s.G };
  const stateSrc = `function (state, x, dt, A, Bm${a.deltaBias ? ', bias' : ''}) {
    ${unflatten('this.thread.x', ['b', 'h', 'p', 'n'], ['', 'this.constants.H', 'this.constants.P', 'this.constants.N'])}
    const ch = h * this.constants.P + p;
    const xi = (b * this.constants.H + h) * this.constants.P + p;
    const g = Math.floor(h / this.constants.HPG);
    const v = dt[xi]${a.deltaBias ? ' + bias[ch]' : ''};
    ${a.deltaSoftplus ? softplusSnippet('v', 'dl') : 'const dl = v;'}
    return Math.exp(dl * A[ch * this.constants.N + n]) * state[this.thread.x] + dl * Bm[(b * this.constants.G + g) * this.constants.N + n] * x[xi];
  }`;
  // inputs 0–4: state, x, dt, B, C (5: z); A, dt_bias and D are weights (a model's: captured by the plan)
  const inputs = [a.state, a.x, a.dt, a.B, a.C];
  if (a.z) inputs.push(a.z);
  const stateArgs: PlanArg[] = [{ input: 0 }, { input: 1 }, { input: 2 }, { weight: a.A }, { input: 3 }];
  if (a.deltaBias) stateArgs.push({ weight: a.deltaBias });
  const outArgs: PlanArg[] = [{ step: 0 }, { input: 1 }, { input: 4 }];
  const names = ['st', 'x', 'Cm'];
  if (a.D) {
    outArgs.push({ weight: a.D });
    names.push('Dv');
  }
  if (a.z) {
    outArgs.push({ input: 5 });
    names.push('z');
  }
  const outSrc = `function (${names.join(', ')}) {
    ${unflatten('this.thread.x', ['b', 'h', 'p'], ['', 'this.constants.H', 'this.constants.P'])}
    const g = Math.floor(h / this.constants.HPG);
    let y = 0.0;
    for (let n = 0; n < this.constants.N; n++) {
      y += Cm[(b * this.constants.G + g) * this.constants.N + n] * st[this.thread.x * this.constants.N + n];
    }
    ${a.D ? 'y += Dv[h * this.constants.P + p] * x[this.thread.x];' : ''}
    ${a.z ? `y = y * ${siluExpr('z[this.thread.x]')};` : ''}
    return y;
  }`;
  const stateKey = `su.state${a.deltaBias ? '+bias' : ''}${a.deltaSoftplus ? '+sp' : ''}`;
  const outKey = `su.out${a.D ? '+D' : ''}${a.z ? '+z' : ''}`;
  // both passes as one plan (on webgpu one submit and one readback of the new state and the output)
  const [out, state] = await rt.runPlan(
    `su|${stateKey}|${outKey}|${s.batch},${s.H},${s.P},${s.N},${s.G}`,
    [
      { key: stateKey, source: stateSrc, constants: consts, outputSize: s.batch * s.H * s.P * s.N, args: stateArgs },
      { key: outKey, source: outSrc, constants: consts, outputSize: s.batch * s.H * s.P, args: outArgs },
    ],
    inputs,
    [1, 0],
  );
  return { out: out, state: state };
}
