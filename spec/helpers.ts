/**
 * Shared test helpers: the backends to run every test body against (tfjs-style), tolerances, and
 * seeded random tensors. Tolerances (relative error ‖got − want‖₂/‖want‖₂):
 *   FLOAT64_TOL = 1e-10  two float64 implementations of the same math (different summation order)
 *   FLOAT32_TOL = 1e-4   a float32 kernel against the float64 reference, sequences up to ~2000 steps
 *                        (measured: 1e-8 … 1e-6; the bound leaves room for long scans and webgpu's exp)
 * Outputs that are sums (dot products, gradients of shared parameters) are bounded instead by tol·‖Σ|terms|‖
 * (expectCloseToTerms): a relative bound has no meaning when the terms cancel.
 */
import { expect } from 'vitest';
import { layerKinds, type HybridModel } from '../lib/model/mixers/block.js';
import { WeightStore } from '../lib/model/weights.js';
import { parseLlamaConfig } from '../lib/model/config.js';
import { backendStatus, type BackendName } from '../lib/ops.js';
import { Rng } from '../lib/rng.js';
import { Tensor, relError } from '../lib/tensor.js';

export const FLOAT64_TOL = 1e-10;
export const FLOAT32_TOL = 1e-4;

const STATUS = await backendStatus();
/** Every backend with whether it runs here; tests on unavailable ones are skipped with the reason in the title. */
export const ALL_BACKENDS = STATUS.map((s) => ({
  ...s,
  title: s.available ? s.name : `${s.name} (not available here: ${s.reason})`,
}));
/** The GPU.js backends only (compared against the float64 reference). */
export const KERNEL_BACKENDS = ALL_BACKENDS.filter((b) => b.name !== 'reference');

export function tolFor(name: BackendName): number {
  return name === 'reference' ? FLOAT64_TOL : FLOAT32_TOL;
}

export function expectClose(got: Tensor, want: Tensor, tol: number, what = got.name): void {
  expect(got.shape, `${what} shape`).toEqual(want.shape);
  const e = relError(got.data, want.data);
  expect(e, `${what}: relative error ${e}`).toBeLessThanOrEqual(tol);
}

/**
 * A result whose elements are float32 sums (dot products, a shared parameter's gradient summed over rows and
 * time) against its float64 reference: ‖got − want‖₂ ≤ tol·‖S‖₂ with S_i = Σ|terms of element i| computed in
 * float64 by the spec apart from the reference. This is the forward error bound of a float32 sum in any order,
 * |fl(Σ t) − Σ t| ≤ γ_n·Σ|t|; a relative bound ‖got − want‖/‖want‖ has none when the terms cancel (seen: a
 * 1×1 product of 11 terms at 6e-4, a conv bias gradient of 20 terms at 1.5e-4, both correct to ~1e-8·‖S‖).
 */
export function expectCloseToTerms(
  got: Tensor,
  want: Tensor,
  absTerms: ArrayLike<number>,
  tol: number,
  what = got.name,
): void {
  expect(got.shape, `${what} shape`).toEqual(want.shape);
  expect(absTerms.length, `${what} terms`).toBe(want.data.length);
  let err = 0;
  let scale = 0;
  for (let i = 0; i < want.data.length; i++) {
    err += (got.data[i] - want.data[i]) ** 2;
    scale += absTerms[i] ** 2;
  }
  [err, scale] = [Math.sqrt(err), Math.sqrt(scale)];
  expect(err, `${what}: error ${err} against Σ|terms| ${scale}`).toBeLessThanOrEqual(tol * scale);
}

export const rand = {
  normal: (r: Rng, shape: number[], std = 1) => Tensor.normal(r, shape, 0, std),
  uniform: (r: Rng, shape: number[], lo: number, hi: number) => Tensor.uniform(r, shape, lo, hi),
};

export { Rng, Tensor };

/**
 * `m` with attention biases (attention_bias: true): every attention layer's q/k/v/o projection gets a bias
 * drawn from normal(0, std) — (H·hd), (H_kv·hd), (H_kv·hd), (d) — in a new weight store (m is left as it is).
 */
export function withAttentionBias(m: HybridModel, seed: number, std = 0.5): HybridModel {
  const c = m.llama;
  const r = new Rng(seed);
  const tensors = new Map(m.weights.tensors);
  layerKinds(m).forEach((kind, i) => {
    if (kind !== 'attention') return;
    for (const [p, n] of [
      ['q', c.numHeads * c.headDim],
      ['k', c.numKvHeads * c.headDim],
      ['v', c.numKvHeads * c.headDim],
      ['o', c.hiddenSize],
    ] as const)
      tensors.set(`model.layers.${i}.self_attn.${p}_proj.bias`, Tensor.normal(r, [n], 0, std)); // (n)
  });
  return { ...m, llama: parseLlamaConfig({ ...c.raw, attention_bias: true }), weights: new WeightStore(tensors) };
}
