/**
 * Memory a training step needs, computed from the options before anything is allocated (issue #27,
 * defect 4): a batch × length too large for the machine is refused by name (exit 2), never met as an
 * internal `WebAssembly.Memory.grow` RangeError in the middle of the first step.
 *
 * Symbols: T = batch·len tokens per step, l = len, per model: weights W_i (N_i × K_i), V vocab, d hidden,
 * hd head_dim, H heads, L_a attention layers, L layers, I intermediate width.
 *
 *   wasm-simd (lib/simd/gemm.ts, one memory of at most wasmSimdMaxBytes(), lib/simd/limits.ts: the 4 GiB a
 *   wasm32 memory addresses where the engine allows a shared memory that large — Node ≥ 16, Chrome — else
 *   2 GiB; the module is made with that maximum, so the plan holds a step against the same limit): the
 *   packed weights of every model in the step stay resident, Σ_i ⌈N_i/8⌉·8·K_i floats; on top, one product
 *   at a time is staged. A product of T rows with a weight N × K (forward y = x·Wᵀ, backward dx = dy·W,
 *   dW = dyᵀ·x) stages at most its packed operand, the two row operands and the result:
 *       stage(T, N, K) = 2·T·(N + K) + 2·⌈N/8⌉·8·K floats,
 *   and causal attention stages per (batch, head) the l × l scores: stage(l, l, hd). The bound is
 *       wasm = initial memory (16 pages: the module's static data and slack) + 4 · (Σ resident + max over
 *              the products of stage) + 4 pages for alignment.
 *   (spec/memory.spec.ts checks it against the memory a real step grows to.)
 *
 *   JavaScript (float64 activations kept for the backward pass, lib/train/model.ts): at least the logits,
 *   their gradient and the loss's copy, 3·T·V (5·T·V with a teacher's logits and the KL), each layer's
 *   residual stream, norms and mixer outputs, ≥ 6·T·d + 3·T·I, and the attention probabilities
 *   H·batch·l² (float32) per attention layer — a lower bound, held against the machine's memory.
 */
import { totalmem } from 'node:os';
import { ArgumentError } from '../errors.js';
import type { HybridModel } from '../model/hybrid.js';
import { WASM_PAGE_BYTES, WASM_SIMD_INITIAL_PAGES, packedColumns, wasmSimdMaxBytes } from '../simd/limits.js';

const panels = packedColumns;
const stage = (T: number, N: number, K: number) => 2 * T * (N + K) + 2 * panels(N) * K;

export interface StepMemory {
  /** upper bound of the wasm-simd memory, bytes */
  wasm: number;
  /** lower bound of the float64 activations kept in JavaScript, bytes */
  js: number;
}

/** The memory one training step of `models` (the trained one first, then any frozen teacher) needs. */
export function stepMemory(models: HybridModel[], batch: number, len: number, withTeacherLogits = false): StepMemory {
  const T = batch * len;
  let resident = 0;
  let peak = 0;
  let js = 0;
  for (const [i, m] of models.entries()) {
    const c = m.llama;
    for (const n of m.weights.names()) {
      const s = m.weights.get(n).shape;
      if (s.length !== 2) continue;
      const [N, K] = s as [number, number];
      resident += panels(N) * K;
      peak = Math.max(peak, stage(T, N, K));
    }
    peak = Math.max(peak, stage(T, c.vocabSize, c.hiddenSize)); // the LM head, tied or not
    const attn = m.mamba ? m.mamba.attnLayers.length : c.numLayers;
    if (attn > 0) peak = Math.max(peak, stage(len, len, c.headDim));
    if (i === 0)
      js +=
        8 * T * c.vocabSize * (withTeacherLogits ? 5 : 3) +
        8 * T * c.numLayers * (6 * c.hiddenSize + 3 * c.intermediateSize) +
        4 * attn * c.numHeads * batch * len * len;
  }
  return { wasm: WASM_SIMD_INITIAL_PAGES * WASM_PAGE_BYTES + 4 * (resident + peak) + 4 * WASM_PAGE_BYTES, js };
}

const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;

/**
 * Refuse (ArgumentError naming --batch and --len, exit 2) a step that cannot fit: the wasm-simd memory
 * limit (engine 'simd': `o.wasmLimit`, default wasmSimdMaxBytes(), the module's real maximum here) or the
 * machine's memory. `machineBytes` defaults to os.totalmem().
 */
export function checkStepMemory(
  models: HybridModel[],
  o: {
    batch: number;
    seqLen: number;
    engine?: 'simd' | 'float64' | 'webgpu';
    teacherLogits?: boolean;
    batchOption?: string;
    /** the wasm-simd memory's limit in bytes (default wasmSimdMaxBytes(): 4 GiB where the engine allows) */
    wasmLimit?: number;
  },
  machineBytes = totalmem(),
): StepMemory {
  const need = (b: number) => stepMemory(models, b, o.seqLen, o.teacherLogits);
  const limit = o.wasmLimit ?? wasmSimdMaxBytes();
  const noWasm = o.engine === 'float64' || o.engine === 'webgpu'; // webgpu: the GPU step checks its device's limits
  const fits = (n: StepMemory) => (noWasm || n.wasm <= limit) && n.js <= machineBytes;
  const got = need(o.batch);
  if (fits(got)) return got;
  let lo = 0; // the largest batch that fits at this length
  for (let hi = o.batch; lo < hi;) {
    const mid = Math.ceil((lo + hi) / 2);
    if (fits(need(mid))) lo = mid;
    else hi = mid - 1;
  }
  const b = o.batchOption ?? '--batch';
  const wasmOver = !noWasm && got.wasm > limit;
  throw new ArgumentError(
    `${b} × --len`,
    `a step that fits ${wasmOver ? `the wasm-simd memory limit of ${gib(limit)} (lib/simd/limits.ts)` : `this machine's ${gib(machineBytes)} of memory`}${lo > 0 ? ` (at --len ${o.seqLen}: ${b} ${lo} at most)` : ` (--len ${o.seqLen} alone is too long)`}`,
    `${b} ${o.batch} × --len ${o.seqLen} = ${o.batch * o.seqLen} tokens per step, needing ${wasmOver ? `${gib(got.wasm)} of wasm-simd memory` : `at least ${gib(got.js)} for the activations kept for the backward pass`}`,
  );
}
