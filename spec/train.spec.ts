/**
 * Backward passes against central finite differences of their float64 forwards (lib/ref/layers.ts).
 * For a scalar ℓ(x) and the analytic gradient g, every element is checked against central differences
 * refined by one Richardson step, D = (4·D(h/2) − D(h)) / 3 with D(h) = (ℓ(x + h e_i) − ℓ(x − h e_i)) / 2h:
 *   |g_i − D| ≤ 1e-6 · max(1, |g|∞) + 16·ε_mach·|ℓ|/h,  h = 1e-5
 * The plain central difference errs by O(h²)·ℓ''', which is not small where ℓ curves sharply: RMSNorm of a
 * width-1 row with x ≈ √ε (found by the property: x = 0.005, ε = 1e-5 gives an error of 1.8e-4). With the
 * Richardson step the truncation error is O(h⁴); float64 rounding adds ≈ ε_mach·|ℓ|/h — ≈ 1e-11 for most
 * cases, but ~1e-5 where ℓ ~ 1e6 (a scan whose state grows), hence the second term of the bound.
 * Layers with a tensor output are reduced to ℓ = Σ⟨y, dy⟩ with a random dy, which makes their backward
 * (given dy) exactly ∂ℓ/∂x.
 */
import fc from 'fast-check';
import { writeFileSync as wfs } from 'node:fs';
import { join as pjoin } from 'node:path';
import { describe, expect, it } from 'vitest';
import { crossEntropy, embedding, klDivergence, linear, logSoftmax, rmsnorm, swiglu } from '../lib/ref/layers.js';
import { Rng } from '../lib/rng.js';
import { selectiveScan, selectiveScanBackward, type SelectiveScanInputs } from '../lib/ref/selective_scan.js';
import { causalConv1d, causalConv1dBackward } from '../lib/ref/conv1d.js';
import { ssdBackward, ssdChunked, ssdSequential, type SsdInputs } from '../lib/ref/ssd.js';
import { selectiveStateUpdate } from '../lib/ref/state_update.js';
import { gatedRmsnorm, gatedRmsnormBackward } from '../lib/ref/norm.js';
import { Tensor, relError } from '../lib/tensor.js';
import { lossAndGrads, mambaOnly, simdEngine, trainForward } from '../lib/train/model.js';
import { randomLlama } from '../lib/model/random.js';
import { convert } from '../lib/model/convert.js';
import { forward, newCache, type HybridModel } from '../lib/model/hybrid.js';
import { getOps } from '../lib/ops.js';
import { adamStep, clipGradNorm, cosineLr, newAdamState } from '../lib/train/optim.js';
import { CheckpointError, NonFiniteGradientError, Trainer, type TrainerOptions } from '../lib/train/trainer.js';
import { tmpFolder } from './tmp.js';
import { withAttentionBias } from './helpers.js';
import { SimdGemm } from '../lib/simd/gemm.js';
import { lastOf, lookup } from '../lib/checked.js';

const H = 1e-5;
const TOL = 1e-6;

function randn(r: Rng, n: number, std = 1): Float64Array {
  return Float64Array.from({ length: n }, () => r.normal(0, std));
}
const dot = (a: Float64Array, b: Float64Array) => a.reduce((s, v, i) => s + v * b[i], 0);

/**
 * Compare `grad` with central differences of `loss` over every element of `x` (x is restored).
 * Allowed error: TOL relative to the gradient's scale, plus the rounding floor of the differences themselves —
 * two losses of size |ℓ| differ by at least ε·|ℓ|, divided by 2h and amplified 5/3 by the Richardson step
 * (16·ε·|ℓ|/h with margin). Without it a case whose state grows (softplus off, Δ·A > 0: ℓ ~ 1e6) failed at
 * 1.2e-5 on a correct gradient (CI, seed −7764618).
 */
function expectGrad(loss: () => number, x: Float64Array, grad: Float64Array, what: string): void {
  expect(grad.length, what).toBe(x.length);
  const scale = Math.max(1, ...Array.from(grad, Math.abs));
  const floor = (16 * Number.EPSILON * Math.abs(loss())) / H;
  let worst = 0;
  const central = (i: number, h: number) => {
    const v = x[i];
    x[i] = v + h;
    const up = loss();
    x[i] = v - h;
    const dn = loss();
    x[i] = v;
    return (up - dn) / (2 * h);
  };
  for (let i = 0; i < x.length; i++)
    worst = Math.max(worst, Math.abs((4 * central(i, H / 2) - central(i, H)) / 3 - grad[i]));
  expect(
    worst,
    `${what}: worst |analytic − numeric| (scale ${scale.toPrecision(3)}, rounding floor ${floor.toPrecision(2)})`,
  ).toBeLessThanOrEqual(TOL * scale + floor);
}

/** Every input of a selective scan given, against its gradient. */
function expectScanGrads(
  loss: () => number,
  inp: SelectiveScanInputs,
  g: ReturnType<typeof selectiveScanBackward>,
): void {
  const pairs: Array<[Tensor | undefined, Tensor | undefined, string]> = [
    [inp.u, g.du, 'du'],
    [inp.delta, g.ddelta, 'ddelta'],
    [inp.A, g.dA, 'dA'],
    [inp.B, g.dB, 'dB'],
    [inp.C, g.dC, 'dC'],
    [inp.D, g.dD, 'dD'],
    [inp.z, g.dz, 'dz'],
    [inp.deltaBias, g.ddeltaBias, 'ddelta_bias'],
    [inp.initialState, g.dInitialState, 'dinitial_state'],
  ];
  for (const [x, dx, what] of pairs) if (x) expectGrad(loss, x.data as Float64Array, dx!.data as Float64Array, what);
}

/** Every input of an SSD given, against its gradient. */
function expectSsdGrads(loss: () => number, inp: SsdInputs, g: ReturnType<typeof ssdBackward>): void {
  const pairs: Array<[Tensor | undefined, Tensor | undefined, string]> = [
    [inp.x, g.dx, 'dx'],
    [inp.delta, g.ddelta, 'ddt'],
    [inp.A, g.dA, 'dA'],
    [inp.B, g.dB, 'dB'],
    [inp.C, g.dC, 'dC'],
    [inp.D, g.dD, 'dD'],
    [inp.z, g.dz, 'dz'],
    [inp.deltaBias, g.ddeltaBias, 'ddt_bias'],
    [inp.initialState, g.dInitialState, 'dinitial_state'],
  ];
  for (const [x, dx, what] of pairs) if (x) expectGrad(loss, x.data as Float64Array, dx!.data as Float64Array, what);
}

const dimsArb = fc.record({
  N: fc.integer({ min: 1, max: 4 }),
  I: fc.integer({ min: 1, max: 6 }),
  O: fc.integer({ min: 1, max: 5 }),
  seed: fc.integer({ min: 0, max: 1e6 }),
});

describe('backward = finite differences of the forward (float64)', () => {
  it('linear: dx, dW, db, with and without bias (numRuns 30)', () => {
    fc.assert(
      fc.property(dimsArb, fc.boolean(), ({ N, I, O, seed }, bias) => {
        const r = new Rng(seed);
        const [x, W, b, dy] = [randn(r, N * I), randn(r, O * I), bias ? randn(r, O) : undefined, randn(r, N * O)];
        const loss = () => dot(linear.forward(x, W, b, N, I, O), dy);
        const g = linear.backward(dy, x, W, N, I, O);
        expectGrad(loss, x, g.dx, 'dx');
        expectGrad(loss, W, g.dW, 'dW');
        if (b) expectGrad(loss, b, g.db, 'db');
      }),
      { numRuns: 30 },
    );
  });

  it('rmsnorm: dx, dw; rows of width 1 included (numRuns 30)', () => {
    fc.assert(
      fc.property(dimsArb, fc.constantFrom(1e-5, 1e-6, 0.1), ({ N, I: d, seed }, eps) => {
        const r = new Rng(seed);
        const [x, w, dy] = [randn(r, N * d), randn(r, d), randn(r, N * d)];
        const loss = () => dot(rmsnorm.forward(x, w, N, d, eps).y, dy);
        const { rstd } = rmsnorm.forward(x, w, N, d, eps);
        const g = rmsnorm.backward(dy, x, w, rstd, N, d);
        expectGrad(loss, x, g.dx, 'dx');
        expectGrad(loss, w, g.dw, 'dw');
      }),
      { numRuns: 30, examples: [[{ N: 2, I: 1, O: 1, seed: 12 }, 1e-5]] }, // x = 0.005 ≈ 1.6·√ε: sharp curvature
    );
  });

  it('swiglu: dgate, dup, large |gate| included (numRuns 30)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 0, max: 1e6 }),
        fc.constantFrom(1, 8),
        (n, seed, std) => {
          const r = new Rng(seed);
          const [gt, u, da] = [randn(r, n, std), randn(r, n), randn(r, n)];
          const loss = () => dot(swiglu.forward(gt, u), da);
          const g = swiglu.backward(da, gt, u);
          expectGrad(loss, gt, g.dg, 'dgate');
          expectGrad(loss, u, g.du, 'dup');
        },
      ),
      { numRuns: 30 },
    );
  });

  it('embedding: repeated ids accumulate into one row (numRuns 20)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 0, max: 1e6 }),
        (V, D, seed) => {
          const r = new Rng(seed);
          const ids = Array.from({ length: r.int(1, 8) }, () => r.int(0, V - 1));
          const E = randn(r, V * D);
          const dh = randn(r, ids.length * D);
          expectGrad(() => dot(embedding.forward(ids, E, V, D), dh), E, embedding.backward(dh, ids, V, D), 'dE');
        },
      ),
      { numRuns: 20 },
    );
  });

  it('cross-entropy (mean) and KL(teacher ‖ student) batchmean: d student logits; logits up to ±30 (numRuns 30)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 2, max: 7 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 0, max: 1e6 }),
        fc.constantFrom(1, 10),
        (N, V, batch, seed, std) => {
          const r = new Rng(seed);
          const z = randn(r, N * V, std);
          const zt = randn(r, N * V, std);
          const t = Array.from({ length: N }, () => r.int(0, V - 1));
          expectGrad(() => crossEntropy.forward(z, t, N, V), z, crossEntropy.backward(z, t, N, V), 'CE dz');
          expectGrad(
            () => klDivergence.forward(z, zt, N, V, batch),
            z,
            klDivergence.backward(z, zt, N, V, batch),
            'KL dz',
          );
        },
      ),
      { numRuns: 30 },
    );
  });

  it('closed forms computed independently: CE of uniform logits = log V; KL of equal logits = 0; log-softmax stable at 1e4', () => {
    expect(crossEntropy.forward(new Float64Array(6), [0, 2], 2, 3)).toBeCloseTo(Math.log(3), 14);
    const z = Float64Array.from([1, -2, 0.5, 3]);
    expect(klDivergence.forward(z, z, 1, 4, 1)).toBe(0);
    const ls = logSoftmax(Float64Array.from([1e4, 0]), 1, 2);
    expect(ls[0]).toBe(0);
    expect(ls[1]).toBe(-1e4);
  });
});

// ------------------------------------------------------------------ the Mamba primitives' backwards

const T = (r: Rng, shape: number[], std = 1) => Tensor.normal(r, shape, 0, std);

describe('Mamba primitives: backward = finite differences (float64, every option on and off)', () => {
  it('selective scan: u, Δ, A, B, C, D, z, Δ bias, initial state; B/C per time, grouped or time-invariant; softplus on/off (numRuns 25)', () => {
    fc.assert(
      fc.property(
        fc.record({
          b: fc.integer({ min: 1, max: 2 }),
          dim: fc.constantFrom(1, 2, 4),
          L: fc.integer({ min: 1, max: 5 }),
          N: fc.integer({ min: 1, max: 3 }),
          layout: fc.constantFrom('time', 'grouped', 'invariant'),
          D: fc.boolean(),
          z: fc.boolean(),
          bias: fc.boolean(),
          sp: fc.boolean(),
          init: fc.boolean(),
          seed: fc.integer({ min: 0, max: 1e6 }),
        }),
        (o) => {
          const r = new Rng(o.seed);
          const G = o.dim >= 2 ? 2 : 1;
          const bc = () =>
            o.layout === 'time'
              ? T(r, [o.b, o.N, o.L])
              : o.layout === 'grouped'
                ? T(r, [o.b, G, o.N, o.L])
                : T(r, [o.dim, o.N]);
          const inp: SelectiveScanInputs = {
            u: T(r, [o.b, o.dim, o.L]),
            delta: T(r, [o.b, o.dim, o.L], 0.5),
            A: Tensor.uniform(r, [o.dim, o.N], -2, -0.2),
            B: bc(),
            C: bc(),
            D: o.D ? T(r, [o.dim]) : undefined,
            z: o.z ? T(r, [o.b, o.dim, o.L]) : undefined,
            deltaBias: o.bias ? T(r, [o.dim], 0.5) : undefined,
            deltaSoftplus: o.sp,
            initialState: o.init ? T(r, [o.b, o.dim, o.N]) : undefined,
          };
          const dout = T(r, [o.b, o.dim, o.L]);
          const dlast = T(r, [o.b, o.dim, o.N]);
          const loss = () => {
            const f = selectiveScan(inp);
            return (
              dot(f.out.data as Float64Array, dout.data as Float64Array) +
              dot(f.lastState.data as Float64Array, dlast.data as Float64Array)
            );
          };
          const g = selectiveScanBackward(inp, dout, dlast);
          expectScanGrads(loss, inp, g);
        },
      ),
      { numRuns: 25 },
    );
  });

  it('the scan backward = the gradient of the same sequence run as repeated single-step state updates (selective_state_update), by central differences (numRuns 15)', () => {
    fc.assert(
      fc.property(
        fc.record({
          b: fc.integer({ min: 1, max: 2 }),
          dim: fc.integer({ min: 1, max: 3 }),
          L: fc.integer({ min: 1, max: 5 }),
          N: fc.integer({ min: 1, max: 3 }),
          D: fc.boolean(),
          z: fc.boolean(),
          bias: fc.boolean(),
          sp: fc.boolean(),
          seed: fc.integer({ min: 0, max: 1e6 }),
        }),
        (o) => {
          const r = new Rng(o.seed);
          const inp: SelectiveScanInputs = {
            u: T(r, [o.b, o.dim, o.L]),
            delta: T(r, [o.b, o.dim, o.L], 0.5),
            A: Tensor.uniform(r, [o.dim, o.N], -2, -0.2),
            B: T(r, [o.b, o.N, o.L]),
            C: T(r, [o.b, o.N, o.L]),
            D: o.D ? T(r, [o.dim]) : undefined,
            z: o.z ? T(r, [o.b, o.dim, o.L]) : undefined,
            deltaBias: o.bias ? T(r, [o.dim], 0.5) : undefined,
            deltaSoftplus: o.sp,
            initialState: T(r, [o.b, o.dim, o.N]),
          };
          const dout = T(r, [o.b, o.dim, o.L]);
          const dlast = T(r, [o.b, o.dim, o.N]);
          // the forward as L calls of the decode kernel's reference, each consuming one time step
          const at = (t: Tensor, w: number, tt: number) =>
            Tensor.from(
              Array.from({ length: t.size / o.L }, (_, i) => t.data[i * o.L + tt]),
              [o.b, w],
            );
          const loss = () => {
            let state = inp.initialState!;
            let s = 0;
            for (let t = 0; t < o.L; t++) {
              const st = selectiveStateUpdate({
                state,
                x: at(inp.u, o.dim, t),
                delta: at(inp.delta, o.dim, t),
                A: inp.A,
                B: at(inp.B, o.N, t),
                C: at(inp.C, o.N, t),
                D: inp.D,
                z: inp.z && at(inp.z, o.dim, t),
                deltaBias: inp.deltaBias,
                deltaSoftplus: o.sp,
              });
              state = st.state;
              for (let i = 0; i < o.b * o.dim; i++) s += st.out.data[i] * dout.data[i * o.L + t];
            }
            return s + dot(state.data as Float64Array, dlast.data as Float64Array);
          };
          const g = selectiveScanBackward(inp, dout, dlast);
          expectScanGrads(loss, inp, g);
        },
      ),
      { numRuns: 15 },
    );
  });

  it('the SSD backward (the recurrence run backwards) = the gradient of the chunked forward, every chunk size, lengths not a multiple of it (numRuns 15)', () => {
    fc.assert(
      fc.property(
        fc.record({
          L: fc.integer({ min: 1, max: 7 }),
          chunk: fc.integer({ min: 1, max: 4 }),
          H: fc.constantFrom(1, 2),
          P: fc.integer({ min: 1, max: 2 }),
          N: fc.integer({ min: 1, max: 2 }),
          D: fc.boolean(),
          z: fc.boolean(),
          init: fc.boolean(),
          seed: fc.integer({ min: 0, max: 1e6 }),
        }),
        (o) => {
          const r = new Rng(o.seed);
          const inp: SsdInputs = {
            x: T(r, [1, o.L, o.H, o.P]),
            delta: T(r, [1, o.L, o.H], 0.5),
            A: Tensor.uniform(r, [o.H], -2, -0.2),
            B: T(r, [1, o.L, 1, o.N]),
            C: T(r, [1, o.L, 1, o.N]),
            D: o.D ? T(r, [o.H]) : undefined,
            z: o.z ? T(r, [1, o.L, o.H, o.P]) : undefined,
            deltaBias: T(r, [o.H], 0.5),
            deltaSoftplus: true,
            initialState: o.init ? T(r, [1, o.H, o.P, o.N]) : undefined,
          };
          const dout = T(r, [1, o.L, o.H, o.P]);
          const dfin = T(r, [1, o.H, o.P, o.N]);
          const loss = () => {
            const f = ssdChunked(inp, o.chunk);
            return (
              dot(f.out.data as Float64Array, dout.data as Float64Array) +
              dot(f.finalState.data as Float64Array, dfin.data as Float64Array)
            );
          };
          const g = ssdBackward(inp, dout, dfin);
          expectSsdGrads(loss, inp, g);
        },
      ),
      { numRuns: 15 },
    );
  });

  it('causal conv1d: x, weight, bias, initial states, d final states; silu on/off; widths 1..4 (numRuns 25)', () => {
    fc.assert(
      fc.property(
        fc.record({
          b: fc.integer({ min: 1, max: 2 }),
          dim: fc.integer({ min: 1, max: 3 }),
          L: fc.integer({ min: 1, max: 6 }),
          W: fc.integer({ min: 1, max: 4 }),
          bias: fc.boolean(),
          init: fc.boolean(),
          silu: fc.boolean(),
          seed: fc.integer({ min: 0, max: 1e6 }),
        }),
        (o) => {
          const r = new Rng(o.seed);
          const inp = {
            x: T(r, [o.b, o.dim, o.L]),
            weight: T(r, [o.dim, o.W]),
            bias: o.bias ? T(r, [o.dim]) : undefined,
            initialStates: o.init ? T(r, [o.b, o.dim, o.W - 1]) : undefined,
            activation: o.silu ? ('silu' as const) : null,
          };
          const dout = T(r, [o.b, o.dim, o.L]);
          const dfin = T(r, [o.b, o.dim, o.W - 1]);
          const loss = () => {
            const f = causalConv1d(inp);
            return (
              dot(f.out.data as Float64Array, dout.data as Float64Array) +
              dot(f.finalStates.data as Float64Array, dfin.data as Float64Array)
            );
          };
          const g = causalConv1dBackward(inp, dout, dfin);
          expectGrad(loss, inp.x.data as Float64Array, g.dx.data as Float64Array, 'dx');
          expectGrad(loss, inp.weight.data as Float64Array, g.dweight.data as Float64Array, 'dweight');
          if (inp.bias) expectGrad(loss, inp.bias.data as Float64Array, g.dbias!.data as Float64Array, 'dbias');
          if (inp.initialStates)
            expectGrad(
              loss,
              inp.initialStates.data as Float64Array,
              g.dinitialStates!.data as Float64Array,
              'dinitial_states',
            );
        },
      ),
      { numRuns: 25 },
    );
  });

  it('SSD: x, dt, A, B, C, D, z, dt bias, initial state, d final state; groups; softplus on/off (numRuns 20)', () => {
    fc.assert(
      fc.property(
        fc.record({
          b: fc.integer({ min: 1, max: 2 }),
          L: fc.integer({ min: 1, max: 5 }),
          H: fc.constantFrom(1, 2, 4),
          P: fc.integer({ min: 1, max: 3 }),
          N: fc.integer({ min: 1, max: 3 }),
          D: fc.boolean(),
          z: fc.boolean(),
          bias: fc.boolean(),
          sp: fc.boolean(),
          init: fc.boolean(),
          seed: fc.integer({ min: 0, max: 1e6 }),
        }),
        (o) => {
          const r = new Rng(o.seed);
          const G = o.H >= 2 ? 2 : 1;
          const inp: SsdInputs = {
            x: T(r, [o.b, o.L, o.H, o.P]),
            delta: T(r, [o.b, o.L, o.H], 0.5),
            A: Tensor.uniform(r, [o.H], -2, -0.2),
            B: T(r, [o.b, o.L, G, o.N]),
            C: T(r, [o.b, o.L, G, o.N]),
            D: o.D ? T(r, [o.H]) : undefined,
            z: o.z ? T(r, [o.b, o.L, o.H, o.P]) : undefined,
            deltaBias: o.bias ? T(r, [o.H], 0.5) : undefined,
            deltaSoftplus: o.sp,
            initialState: o.init ? T(r, [o.b, o.H, o.P, o.N]) : undefined,
          };
          const dout = T(r, [o.b, o.L, o.H, o.P]);
          const dfin = T(r, [o.b, o.H, o.P, o.N]);
          const loss = () => {
            const f = ssdSequential(inp);
            return (
              dot(f.out.data as Float64Array, dout.data as Float64Array) +
              dot(f.finalState.data as Float64Array, dfin.data as Float64Array)
            );
          };
          const g = ssdBackward(inp, dout, dfin);
          expectSsdGrads(loss, inp, g);
        },
      ),
      { numRuns: 20 },
    );
  });

  it('gated RMSNorm: x, weight, z; gate before/after the norm; no gate; group sizes (numRuns 25)', () => {
    fc.assert(
      fc.property(
        fc.record({
          rows: fc.integer({ min: 1, max: 3 }),
          groups: fc.integer({ min: 1, max: 3 }),
          g: fc.integer({ min: 1, max: 4 }),
          z: fc.boolean(),
          before: fc.boolean(),
          seed: fc.integer({ min: 0, max: 1e6 }),
        }),
        (o) => {
          const r = new Rng(o.seed);
          const d = o.groups * o.g;
          const [x, w, z, dy] = [T(r, [o.rows, d]), T(r, [d]), o.z ? T(r, [o.rows, d]) : undefined, T(r, [o.rows, d])];
          const opts = { eps: 1e-5, groupSize: o.g, normBeforeGate: o.before };
          const loss = () => dot(gatedRmsnorm(x, w, z, opts).data as Float64Array, dy.data as Float64Array);
          const g = gatedRmsnormBackward(x, w, z, dy, opts);
          expectGrad(loss, x.data as Float64Array, g.dx.data as Float64Array, 'dx');
          expectGrad(loss, w.data as Float64Array, g.dweight.data as Float64Array, 'dweight');
          if (z) expectGrad(loss, z.data as Float64Array, g.dz!.data as Float64Array, 'dz');
        },
      ),
      { numRuns: 25 },
    );
  });

  it('split a sequence anywhere: the backward of the two halves (d last state of the first = d initial state of the second) = the backward of the whole (numRuns 15)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 9 }), fc.integer({ min: 0, max: 1e6 }), (L, seed) => {
        const r = new Rng(seed);
        const cut = r.int(1, L - 1);
        const [b, dim, N] = [2, 3, 2];
        const whole: SelectiveScanInputs = {
          u: T(r, [b, dim, L]),
          delta: T(r, [b, dim, L], 0.5),
          A: Tensor.uniform(r, [dim, N], -2, -0.2),
          B: T(r, [b, N, L]),
          C: T(r, [b, N, L]),
          D: T(r, [dim]),
          z: T(r, [b, dim, L]),
          deltaBias: T(r, [dim]),
          deltaSoftplus: true,
        };
        const dout = T(r, [b, dim, L]);
        const dlast = T(r, [b, dim, N]);
        const part = (t: Tensor, lo: number, hi: number) => t.slice(t.rank - 1, lo, hi);
        const first: SelectiveScanInputs = {
          ...whole,
          u: part(whole.u, 0, cut),
          delta: part(whole.delta, 0, cut),
          B: part(whole.B, 0, cut),
          C: part(whole.C, 0, cut),
          z: part(whole.z!, 0, cut),
        };
        const h = selectiveScan(first).lastState;
        const second: SelectiveScanInputs = {
          ...whole,
          u: part(whole.u, cut, L),
          delta: part(whole.delta, cut, L),
          B: part(whole.B, cut, L),
          C: part(whole.C, cut, L),
          z: part(whole.z!, cut, L),
          initialState: h,
        };
        const g2 = selectiveScanBackward(second, part(dout, cut, L), dlast);
        const g1 = selectiveScanBackward(first, part(dout, 0, cut), g2.dInitialState);
        const gw = selectiveScanBackward(whole, dout, dlast);
        const close = (a: Tensor, bb: Tensor, what: string) =>
          expect(Math.max(...Array.from(a.data, (v, i) => Math.abs(v - bb.data[i]))), what).toBeLessThan(
            1e-12 * Math.max(1, ...Array.from(bb.data, Math.abs)),
          );
        close(Tensor.concat([g1.du, g2.du], 2), gw.du, 'du');
        close(Tensor.concat([g1.dB, g2.dB], 2), gw.dB, 'dB');
        close(
          g1.dA.zip(g2.dA, (x, y) => x + y),
          gw.dA,
          'dA',
        );
        close(
          g1.ddeltaBias!.zip(g2.ddeltaBias!, (x, y) => x + y),
          gw.ddeltaBias!,
          'ddelta_bias',
        );
      }),
      { numRuns: 15 },
    );
  });
});

// ------------------------------------------------------------------ whole models

const REF = await getOps('reference');

/** Tiny models: a Llama with attention biases and tied embeddings, and its hybrids of every kind. */
function tinyModels(seed: number): Record<string, HybridModel> {
  const base = randomLlama(
    { vocab: 13, hidden: 8, intermediate: 12, layers: 2, heads: 2, kvHeads: 1, headDim: 4, tie: true },
    seed,
  );
  const llama = withAttentionBias(base, seed + 1, 0.3);
  const plain = randomLlama(
    { vocab: 13, hidden: 16, intermediate: 12, layers: 2, heads: 4, kvHeads: 2, headDim: 4 },
    seed + 2,
  );
  return {
    llama,
    mamba1: convert(plain, { variant: 'mamba1', attnLayers: [1], seed, dState: 2 }),
    'mamba1-clean': convert(plain, { variant: 'mamba1', attnLayers: [1], seed, dState: 2, semantics: 'clean' }),
    mamba2: convert(plain, { variant: 'mamba2', attnLayers: [1], seed }),
  };
}

describe('whole models: training forward = inference forward; gradients = finite differences', () => {
  for (const kind of ['llama', 'mamba1', 'mamba1-clean', 'mamba2']) {
    it(`${kind}: logits equal hybrid.ts's forward; ∂loss/∂(every parameter) = central differences on sampled elements (numRuns 3)`, async () => {
      for (let run = 0; run < 3; run++) {
        const m = lookup(tinyModels(100 + run), kind);
        const r = new Rng(run);
        const ids = [0, 1].map(() => Array.from({ length: 5 }, () => r.int(0, 12)));
        const inf = await forward(REF, m, ids, newCache(m, 2));
        const tr = trainForward(m, ids, () => false).logits;
        expect(Math.max(...Array.from(tr, (v, i) => Math.abs(v - inf.data[i])))).toBeLessThan(1e-12);
        const distill = kind !== 'llama';
        const teacherLogits = distill ? Float64Array.from({ length: tr.length }, () => r.normal(0, 2)) : undefined;
        const o = {
          objective: distill ? ('distill' as const) : ('lm' as const),
          teacherLogits,
          klWeight: 0.3,
          ceWeight: 0.7,
          trainable: () => true,
        };
        const res = lossAndGrads(m, ids, o);
        for (const [name, g] of res.grads) {
          const p = lookup(m.weights.tensors, name).data as Float64Array;
          const scale = Math.max(1, ...Array.from(g, Math.abs));
          const central = (i: number, h: number) => {
            const v = p[i];
            p[i] = v + h;
            const up = lossAndGrads(m, ids, { ...o, trainable: () => false }).loss;
            p[i] = v - h;
            const dn = lossAndGrads(m, ids, { ...o, trainable: () => false }).loss;
            p[i] = v;
            return (up - dn) / (2 * h);
          };
          for (let s = 0; s < 4; s++) {
            const i = r.int(0, p.length - 1);
            expect(
              Math.abs((4 * central(i, H / 2) - central(i, H)) / 3 - g[i]) / scale,
              `${name}[${i}]`,
            ).toBeLessThanOrEqual(TOL);
          }
        }
        const names = [...m.weights.tensors.keys()];
        expect([...res.grads.keys()].sort()).toEqual(names.filter((n) => !n.endsWith('rotary_emb.inv_freq')).sort());
      }
    });
  }

  it('frozen parameters receive nothing: stage 1 (names holding "mamba") gets gradients for exactly the Mamba parameters', () => {
    const m = tinyModels(5).mamba2;
    const ids = [[1, 2, 3, 4]];
    const res = lossAndGrads(m, ids, {
      objective: 'distill',
      teacherLogits: new Float64Array(4 * 13),
      trainable: mambaOnly,
    });
    const names = [...m.weights.tensors.keys()];
    expect([...res.grads.keys()].sort()).toEqual(names.filter((n) => n.includes('mamba')).sort());
    expect(res.grads.has('model.layers.0.mlp.up_proj.weight')).toBe(false);
  });
});

// ------------------------------------------------------------------ optimizer, schedule, loop, checkpoints

describe('optimizer and schedule against closed forms computed here', () => {
  it('clip_grad_norm: returns the norm before clipping, scales by max/(norm + 1e-6) only when above', () => {
    const g = new Map([
      ['a', Float64Array.from([3, 0])],
      ['b', Float64Array.from([4])],
    ]);
    expect(clipGradNorm(g, 1)).toBe(5);
    expect(Array.from(lookup(g, 'a'))).toEqual([3 / (5 + 1e-6), 0]);
    expect(lookup(g, 'b')[0]).toBe(4 / (5 + 1e-6));
    const small = new Map([['a', Float64Array.from([0.3, 0.4])]]);
    expect(clipGradNorm(small, 1)).toBeCloseTo(0.5, 15);
    expect(Array.from(lookup(small, 'a'))).toEqual([0.3, 0.4]);
  });
  it('Adam, two steps; AdamW with decoupled decay; Adam with L2 decay — element by element', () => {
    const [lr, b1, b2, eps] = [0.01, 0.9, 0.98, 1e-8];
    const p0 = 0.5;
    const [g1, g2] = [0.2, -0.1];
    // by hand: m1 = 0.1·g1, v1 = 0.02·g1², p1 = p0 − lr/(1−b1)·m1/(√v1/√(1−b2) + eps); step 2 likewise
    const m1 = (1 - b1) * g1,
      v1 = (1 - b2) * g1 * g1;
    const p1 = p0 - (lr / (1 - b1)) * (m1 / (Math.sqrt(v1) / Math.sqrt(1 - b2) + eps));
    const m2 = b1 * m1 + (1 - b1) * g2,
      v2 = b2 * v1 + (1 - b2) * g2 * g2;
    const p2 = p1 - (lr / (1 - b1 ** 2)) * (m2 / (Math.sqrt(v2) / Math.sqrt(1 - b2 ** 2) + eps));
    const params = new Map([['w', Float64Array.from([p0])]]);
    const st = newAdamState();
    const o = { kind: 'adam' as const, lr, betas: [b1, b2] as [number, number], eps, weightDecay: 0 };
    adamStep(params, new Map([['w', Float64Array.from([g1])]]), st, o);
    expect(lookup(params, 'w')[0]).toBe(p1);
    adamStep(params, new Map([['w', Float64Array.from([g2])]]), st, o);
    expect(lookup(params, 'w')[0]).toBe(p2);
    const wd = 0.1;
    const pw = new Map([['w', Float64Array.from([p0])]]);
    adamStep(pw, new Map([['w', Float64Array.from([g1])]]), newAdamState(), { ...o, kind: 'adamw', weightDecay: wd });
    expect(lookup(pw, 'w')[0]).toBeCloseTo(
      p0 * (1 - lr * wd) - (lr / (1 - b1)) * (m1 / (Math.sqrt(v1) / Math.sqrt(1 - b2) + eps)),
      15,
    );
    const pl = new Map([['w', Float64Array.from([p0])]]);
    adamStep(pl, new Map([['w', Float64Array.from([g1])]]), newAdamState(), { ...o, weightDecay: wd });
    const gl = g1 + wd * p0;
    expect(lookup(pl, 'w')[0]).toBeCloseTo(
      p0 - (lr / (1 - b1)) * (((1 - b1) * gl) / (Math.sqrt((1 - b2) * gl * gl) / Math.sqrt(1 - b2) + eps)),
      15,
    );
  });
  it('cosine with warmup: 0 → lr linearly over the warmup, lr/2 halfway through the decay, 0 at the end', () => {
    expect(cosineLr(1, 0, 110, 10)).toBe(0);
    expect(cosineLr(1, 5, 110, 10)).toBe(0.5);
    expect(cosineLr(1, 10, 110, 10)).toBe(1);
    expect(cosineLr(1, 60, 110, 10)).toBeCloseTo(0.5, 15);
    expect(cosineLr(1, 110, 110, 10)).toBeCloseTo(0, 15);
  });
});

describe('the training loop', () => {
  const stream = (() => {
    const r = new Rng(42);
    // a learnable stream: mostly "count up modulo 13", some noise
    return Array.from({ length: 400 }, (_, i) => (r.next() < 0.9 ? i % 13 : r.int(0, 12)));
  })();
  const opts = (o: Partial<TrainerOptions> = {}): TrainerOptions => ({
    objective: 'lm',
    optimizer: { kind: 'adamw', lr: 0.02, betas: [0.9, 0.98], eps: 1e-8, weightDecay: 0.01 },
    clip: 1,
    totalSteps: 12,
    warmupSteps: 2,
    batch: 2,
    seqLen: 9,
    accumulate: 2,
    seed: 7,
    train: 'all',
    ...o,
  });
  const weightsOf = (t: Trainer) =>
    [...t.model.weights.names()].map((n) => Array.from(lookup(t.model.weights.tensors, n).data));

  it('a few steps lower the loss on the data; the same seed gives bit-identical weights', async () => {
    const m = tinyModels(9).llama;
    const a = Trainer.create(m, stream, opts());
    const b = Trainer.create(m, stream, opts());
    const first = await a.trainStep();
    let last = first;
    for (let i = 1; i < 12; i++) last = await a.trainStep();
    for (let i = 0; i < 12; i++) await b.trainStep();
    expect(last.loss).toBeLessThan(first.loss * 0.8);
    expect(weightsOf(a)).toEqual(weightsOf(b));
    expect(Array.from(lookup(m.weights.tensors, 'model.norm.weight').data)).not.toEqual(weightsOf(a)[0]); // the input model is untouched
  });

  it('N steps = k steps + save + resume + (N − k) steps, bit for bit (weights, moments, data order, generator); distill with frozen non-Mamba parameters', async () => {
    const models = tinyModels(3);
    const teacher = models.llama;
    const student = convert(
      randomLlama({ vocab: 13, hidden: 8, intermediate: 12, layers: 2, heads: 2, kvHeads: 1, headDim: 4 }, 4),
      {
        variant: 'mamba2',
        attnLayers: [1],
        seed: 1,
      },
    );
    const short = stream.slice(0, 70); // 10 windows: 6 steps of 4 windows cross two epochs (new permutations)
    const o = opts({ objective: 'distill', klWeight: 0.5, ceWeight: 1, train: 'mamba', totalSteps: 6, seqLen: 7 });
    const straight = Trainer.create(student, short, o, teacher);
    for (let i = 0; i < 6; i++) await straight.trainStep();
    const split = Trainer.create(student, short, o, teacher);
    for (let i = 0; i < 2; i++) await split.trainStep();
    const dir = pjoin(tmpFolder('ckpt'), 'step2');
    split.save(dir);
    const resumed = Trainer.resume(dir, short, teacher);
    expect(resumed.step).toBe(2);
    for (let i = 0; i < 4; i++) await resumed.trainStep();
    expect(weightsOf(resumed)).toEqual(weightsOf(straight));
    expect([...resumed.opt.m.keys()].sort()).toEqual([...straight.opt.m.keys()].sort());
    for (const [n, m] of straight.opt.m) expect(Array.from(lookup(resumed.opt.m, n)), n).toEqual(Array.from(m));
    expect([...straight.opt.m.keys()].every((n) => n.includes('mamba'))).toBe(true); // frozen: no optimizer state
    const frozen = 'model.layers.0.mlp.up_proj.weight';
    expect(Array.from(lookup(straight.model.weights.tensors, frozen).data)).toEqual(
      Array.from(lookup(student.weights.tensors, frozen).data, (v) => v),
    );
  });

  it('bad checkpoints and non-finite steps: typed errors, nothing changed', async () => {
    const m = tinyModels(4).llama;
    const t = Trainer.create(m, stream, opts());
    await t.trainStep();
    const dir = pjoin(tmpFolder('ckpt'), 'c');
    t.save(dir);
    expect(() => Trainer.resume(dir, stream.slice(0, 300))).toThrow(/made on a stream of 400 tokens, this one has 300/);
    wfs(pjoin(dir, 'optimizer.safetensors'), 'truncated');
    expect(() => Trainer.resume(dir, stream)).toThrow(/optimizer.safetensors/);
    expect(() => Trainer.resume(tmpFolder('ckpt'), stream)).toThrow(CheckpointError);
    const before = weightsOf(t);
    const bad = lookup(t.params, 'model.layers.0.mlp.up_proj.weight');
    const keep = bad[0];
    bad[0] = Infinity;
    await expect(t.trainStep()).rejects.toThrow(NonFiniteGradientError);
    bad[0] = keep;
    expect(weightsOf(t)).toEqual(before);
    expect(t.step).toBe(1);
  });
});

// ------------------------------------------------------------------ the float32 SIMD engine

describe('the SIMD training engine (float32 products on the wasm-simd kernels)', () => {
  it('loss and every gradient agree with the float64 engine to float32 precision, for all four model kinds', () => {
    const engine = simdEngine(SimdGemm.sharedExact());
    for (const [kind, m] of Object.entries(tinyModels(21))) {
      const r = new Rng(5);
      const ids = [0, 1].map(() => Array.from({ length: 6 }, () => r.int(0, 12)));
      const distill = kind !== 'llama';
      const teacherLogits = distill ? Float64Array.from({ length: 2 * 6 * 13 }, () => r.normal(0, 2)) : undefined;
      const o = {
        objective: distill ? ('distill' as const) : ('lm' as const),
        teacherLogits,
        klWeight: 0.3,
        ceWeight: 1,
        trainable: () => true,
      };
      const a = lossAndGrads(m, ids, o);
      const b = lossAndGrads(m, ids, { ...o, engine });
      expect(Math.abs(a.loss - b.loss) / Math.abs(a.loss), kind).toBeLessThan(1e-5);
      for (const [n, g] of a.grads) expect(relError(lookup(b.grads, n), g), `${kind} ${n}`).toBeLessThan(1e-4);
    }
  });
  it('a Trainer on the SIMD engine lowers the loss like the float64 one; a step changes weights, whose packed copies are then dropped', async () => {
    const stream = Array.from({ length: 300 }, (_, i) => i % 13);
    const base = {
      objective: 'lm' as const,
      optimizer: {
        kind: 'adamw' as const,
        lr: 0.02,
        betas: [0.9, 0.98] as [number, number],
        eps: 1e-8,
        weightDecay: 0,
      },
      totalSteps: 10,
      warmupSteps: 1,
      batch: 2,
      seqLen: 9,
      seed: 3,
      train: 'all' as const,
    };
    const f64 = Trainer.create(tinyModels(8).llama, stream, base);
    const f32 = Trainer.create(tinyModels(8).llama, stream, { ...base, engine: 'simd' });
    const l64: number[] = [];
    const l32: number[] = [];
    for (let i = 0; i < 10; i++) {
      l64.push((await f64.trainStep()).loss);
      l32.push((await f32.trainStep()).loss);
    }
    expect(lastOf(l32)).toBeLessThan(l32[0] * 0.7);
    for (let i = 0; i < 10; i++) expect(Math.abs(l32[i] - l64[i]) / l64[i], `step ${i}`).toBeLessThan(1e-3);
  });
});
