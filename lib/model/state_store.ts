/**
 * What a Mamba layer asks of the place its states live, when that is not the plain cache (conv window +
 * SSM state, advanced in place). Speculative decoding (PAPER.md §4, Algorithm 2) needs a store that can roll
 * back: lib/decode/lazy_state.ts implements this interface with one cached state and a circular conv buffer.
 * The model only calls the two methods below, so it never depends on how a store works — the dependency
 * runs from decode/ to model/, not back.
 *
 * Symbols as in the guide: x (the SSM input), Δ = `dt` raw (before dt_bias and softplus), B, C, z, A, D.
 */
import type { Ops } from '../ops.js';
import type { Tensor } from '../tensor.js';

/** A layer's new SSM steps in the multi-step layout (batch 1): x, raw Δ (1, L, dim); B, C (1, L, G, N). */
export interface SsmSteps {
  x: Tensor;
  delta: Tensor;
  B: Tensor;
  C: Tensor;
  z?: Tensor;
  A: Tensor; // (dim, N)
  D?: Tensor; // (dim)
  deltaBias?: Tensor; // (dim)
}

export interface MambaStateStore {
  /** The causal conv over L new pre-conv inputs (1, L, C) from the stored window; returns (1, L, C) post-conv. */
  convolve(ops: Ops, pre: Tensor, weight: Tensor, bias: Tensor | undefined, activation: 'silu' | null): Promise<Tensor>;
  /** The SSM over L new steps from the stored state; returns y (1, L, dim) (before the z gate's norm/out_proj). */
  scan(ops: Ops, steps: SsmSteps): Promise<Tensor>;
}
