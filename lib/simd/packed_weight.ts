/**
 * A model weight held only as bf16 panels inside the wasm-simd module (lib/simd/gemm.ts `Bf16Panels`): what a
 * BF16 checkpoint's matrices become when it is loaded for the wasm-simd backend (lib/model/weights.ts), so a
 * Llama-3.2-1B-shaped model (2.5 GB of bf16, 5 GB as float32) fits the module's 4 GiB and decode reads 2 bytes
 * a weight.
 *
 *   W (N×K), bf16:   linear y = x·Wᵀ   by the wasm-simd backend's `linear` and the fused decode step, on the
 *                                      panels (each weight widened to float32 in registers: exact)
 *                    row(r)            W[r, :] as float32 (exact): the embedding lookup, E being the tied head
 *
 * It is a Tensor of shape [N, K] for everything that reads shapes (the load-time checks, the ops' shape
 * checks), but it has no float array: reading `data` (any backend or code path that needs the values as an
 * array: the reference ops, the GPU backends, training) is a DTypeError naming the weight — never a silent
 * copy of the model in float32. Load without the wasm-simd backend, or with MIL_SIMD_BF16=0, for float arrays.
 */
import { DTypeError } from '../errors.js';
import { Tensor, type DType, type FloatArray } from '../tensor.js';
import type { Bf16Panels } from './gemm.js';

export class PackedWeight extends Tensor {
  constructor(
    readonly panels: Bf16Panels,
    name: string,
  ) {
    super(new Float32Array(0), [0], name); // placeholders, replaced below: the shape is W's, the data absent
    Object.defineProperty(this, 'shape', { value: Object.freeze([panels.N, panels.K]) });
    Object.defineProperty(this, 'data', {
      get: (): FloatArray => {
        throw new DTypeError(
          name,
          'float32 or float64 values in an array',
          'bf16 panels held in the wasm-simd module only (read them through that backend, or load the model with MIL_SIMD_BF16=0 or for another backend)',
        );
      },
    });
  }

  /** its values are in the panels (checked finite when packed: lib/model/weights.ts) */
  override get packed(): boolean {
    return true;
  }
  override get size(): number {
    return this.panels.N * this.panels.K;
  }
  /** float32: every bf16 value is one exactly, and every product on the panels is a float32 product */
  override get dtype(): DType {
    return 'float32';
  }
  override named(name: string): PackedWeight {
    return new PackedWeight(this.panels, name);
  }

  /** W[r, :] as float32 into `out` (K floats), read from the panels. */
  row(r: number, out: Float32Array): Float32Array {
    return this.panels.gemm.rowBf16(this.panels, r, out);
  }
}

/** Row r of a weight matrix E (V×d) into `out` (d floats), from a float array or from bf16 panels: the embedding lookup. */
export function weightRow(E: Tensor, r: number, out: FloatArray): void {
  const d = E.shape[1];
  if (E instanceof PackedWeight) {
    if (out instanceof Float32Array) E.row(r, out);
    else out.set(E.row(r, new Float32Array(d)));
  } else out.set(E.data.subarray(r * d, (r + 1) * d));
}
