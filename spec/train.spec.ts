/**
 * Backward passes against central finite differences of their float64 forwards (lib/train/layers.ts).
 * For a scalar ℓ(x) and the analytic gradient g, every element is checked:
 *   |g_i − (ℓ(x + h e_i) − ℓ(x − h e_i)) / 2h| ≤ 1e-6 · max(1, |g|∞),  h = 1e-5
 * (central differences err by O(h²)·ℓ''' ≈ 1e-10 here, float64 rounding by ≈ ε·|ℓ|/h ≈ 1e-11).
 * Layers with a tensor output are reduced to ℓ = Σ⟨y, dy⟩ with a random dy, which makes their backward
 * (given dy) exactly ∂ℓ/∂x.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { crossEntropy, embedding, klDivergence, linear, logSoftmax, rmsnorm, swiglu } from '../lib/train/layers.js';
import { Rng } from '../lib/rng.js';

const H = 1e-5;
const TOL = 1e-6;

function randn(r: Rng, n: number, std = 1): Float64Array {
  return Float64Array.from({ length: n }, () => r.normal(0, std));
}
const dot = (a: Float64Array, b: Float64Array) => a.reduce((s, v, i) => s + v * b[i]!, 0);

/** Compare `grad` with central differences of `loss` over every element of `x` (x is restored). */
function expectGrad(loss: () => number, x: Float64Array, grad: Float64Array, what: string): void {
  expect(grad.length, what).toBe(x.length);
  const scale = Math.max(1, ...Array.from(grad, Math.abs));
  let worst = 0;
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    x[i] = v + H;
    const up = loss();
    x[i] = v - H;
    const dn = loss();
    x[i] = v;
    worst = Math.max(worst, Math.abs((up - dn) / (2 * H) - grad[i]!));
  }
  expect(worst / scale, `${what}: worst |analytic − numeric| / scale`).toBeLessThanOrEqual(TOL);
}

const dimsArb = fc.record({ N: fc.integer({ min: 1, max: 4 }), I: fc.integer({ min: 1, max: 6 }), O: fc.integer({ min: 1, max: 5 }), seed: fc.integer({ min: 0, max: 1e6 }) });

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
      { numRuns: 30 },
    );
  });

  it('swiglu: dgate, dup, large |gate| included (numRuns 30)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 0, max: 1e6 }), fc.constantFrom(1, 8), (n, seed, std) => {
        const r = new Rng(seed);
        const [gt, u, da] = [randn(r, n, std), randn(r, n), randn(r, n)];
        const loss = () => dot(swiglu.forward(gt, u), da);
        const g = swiglu.backward(da, gt, u);
        expectGrad(loss, gt, g.dg, 'dgate');
        expectGrad(loss, u, g.du, 'dup');
      }),
      { numRuns: 30 },
    );
  });

  it('embedding: repeated ids accumulate into one row (numRuns 20)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: 1e6 }), (V, D, seed) => {
        const r = new Rng(seed);
        const ids = Array.from({ length: r.int(1, 8) }, () => r.int(0, V - 1));
        const E = randn(r, V * D);
        const dh = randn(r, ids.length * D);
        expectGrad(() => dot(embedding.forward(ids, E, V, D), dh), E, embedding.backward(dh, ids, V, D), 'dE');
      }),
      { numRuns: 20 },
    );
  });

  it('cross-entropy (mean) and KL(teacher ‖ student) batchmean: d student logits; logits up to ±30 (numRuns 30)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 2, max: 7 }), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 0, max: 1e6 }), fc.constantFrom(1, 10), (N, V, batch, seed, std) => {
        const r = new Rng(seed);
        const z = randn(r, N * V, std);
        const zt = randn(r, N * V, std);
        const t = Array.from({ length: N }, () => r.int(0, V - 1));
        expectGrad(() => crossEntropy.forward(z, t, N, V), z, crossEntropy.backward(z, t, N, V), 'CE dz');
        expectGrad(() => klDivergence.forward(z, zt, N, V, batch), z, klDivergence.backward(z, zt, N, V, batch), 'KL dz');
      }),
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
