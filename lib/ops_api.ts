/**
 * `import … from 'mamba-in-llama/ops'`: the ops of the paper's primitives on a backend chosen by name, the
 * types of their inputs and outputs, and the float64 references they are checked against.
 *
 *   const ops = await getOps('wasm-simd');      // or 'reference', 'cpu', 'webasm', 'webasm-threaded', 'webgpu'
 *   const { out, lastState } = await ops.selectiveScan({ u, delta, A, B, C, D, z, deltaBias, deltaSoftplus: true });
 *
 * Every backend validates its inputs the same way (shapes, typed errors) before it runs; 'reference' returns
 * float64, the GPU.js and SIMD backends float32. The references (`selectiveScan`, `causalConv1d`, …) are the
 * plain float64 functions: selective scan h_t = exp(Δ_t A) h_{t−1} + Δ_t B_t x_t, y_t = C_t h_t + D x_t
 * (PAPER.md §2), the causal depthwise conv, the SSD (Mamba-2's chunked scan), the gated RMSNorm and Algorithm
 * 2's MultiStep, each with its backward where the project has one.
 *
 * @module
 */

/** The ops on a backend, and what each backend is. */
export {
  getOps,
  backendStatus,
  defaultBackend,
  isBackendName,
  BACKENDS,
  type BackendName,
  type Ops,
  type Rows32,
} from './ops.js';
/**
 * The GPU.js backends' names, and wasm-simd's fast cached attention (`Ops.cachedAttention`, `Ops.attention32`;
 * evaluation's float32 rows: `Ops.rows32`).
 */
export type { KernelBackendName } from '../kernels/runtime.js';
export type { CachedAttentionFn, WindowAttention32Fn } from './simd/attention.js';
/** The backward ops every backend has (scan, conv, SSD, gated norm) and their results. */
export type { GradOps, ConvGrads, NormGrads } from './ops_grad.js';
/** The float64 selective scan (Mamba-1, Algorithm 1's target), its backward, inputs and outputs. */
export {
  selectiveScan,
  selectiveScanBackward,
  type SelectiveScanInputs,
  type SelectiveScanOutputs,
  type SelectiveScanGrads,
} from './ref/selective_scan.js';
/** The float64 one-token state update of a Mamba layer in decode. */
export { selectiveStateUpdate, type StateUpdateInputs, type StateUpdateOutputs } from './ref/state_update.js';
/** The float64 causal depthwise conv1d, its one-step update and backward. */
export {
  causalConv1d,
  causalConv1dUpdate,
  causalConv1dBackward,
  type Activation,
  type Conv1dInputs,
  type Conv1dUpdateInputs,
} from './ref/conv1d.js';
/** The float64 SSD (Mamba-2): sequential, chunked, the minimal discrete form, and the backward. */
export {
  ssdSequential,
  ssdChunked,
  ssdMinimalDiscrete,
  ssdBackward,
  type SsdInputs,
  type SsdOutputs,
  type SsdGrads,
} from './ref/ssd.js';
/** The float64 RMSNorm and Mamba-2's gated RMSNorm with its backward. */
export { rmsnorm, gatedRmsnorm, gatedRmsnormBackward, type GatedRmsnormOptions } from './ref/norm.js';
/** Algorithm 2's MultiStep in float64: replay r pending steps, then k new ones with outputs. */
export { multistep, type MultistepInputs, type MultistepOutputs } from './ref/multistep.js';
/** The reference backend as an `Ops` object (what `getOps('reference')` returns). */
export { referenceOps } from './ops_reference.js';
