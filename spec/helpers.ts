/**
 * Shared test helpers: the backends to run every test body against (tfjs-style), tolerances, and
 * seeded random tensors. Tolerances (relative error ‖got − want‖₂/‖want‖₂):
 *   FLOAT64_TOL = 1e-10  two float64 implementations of the same math (different summation order)
 *   FLOAT32_TOL = 1e-4   a float32 kernel against the float64 reference, sequences up to ~2000 steps
 *                        (measured: 1e-8 … 1e-6; the bound leaves room for long scans and webgpu's exp)
 */
import { expect } from 'vitest';
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

export const rand = {
  normal: (r: Rng, shape: number[], std = 1) => Tensor.normal(r, shape, 0, std),
  uniform: (r: Rng, shape: number[], lo: number, hi: number) => Tensor.uniform(r, shape, lo, hi),
};

export { Rng, Tensor };
