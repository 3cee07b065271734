/**
 * The package's main entry, `import … from 'mamba-in-llama'`: tensors, the seeded generator, the typed errors
 * and the ops on a backend chosen by name. Each area has its own entry beside this one:
 * `mamba-in-llama/ops` (every op, its inputs and the float64 references), `/models` (configs, checkpoints,
 * Algorithm 1, the hybrid forward, generation), `/decode` (speculative decoding, Algorithm 2), `/conform`
 * (the conformance harness and the property suite for ports), `/golden` (the golden-vector oracle) and
 * `/train` (losses, backward, optimiser, trainer, DPO).
 *
 *   const ops = await getOps('reference');
 *   const y = await ops.matmul(Tensor.from([1, 2, 3, 4], [2, 2]), Tensor.from([1, 0, 0, 1], [2, 2]));
 *
 * @module
 */

/** The tensor layer: a dense float32/float64 array with a shape, and the error measures the tests use. */
export { Tensor, relError, maxAbsError, sizeOf, type DType, type FloatArray } from './tensor.js';
/** The seeded generator every random draw of the project goes through (same seed, same numbers). */
export { Rng } from './rng.js';
/** The typed errors: every one a `MilError` naming the option, tensor or key, the expected and the actual value. */
export * from './errors.js';
/** The ops on a backend chosen by name: `getOps('reference' | 'wasm-simd' | 'cpu' | …)`. */
export { getOps, backendStatus, defaultBackend, isBackendName, BACKENDS, type BackendName, type Ops } from './ops.js';
/** The GPU.js backends' names (part of `BackendName`). */
export type { KernelBackendName } from '../kernels/runtime.js';
