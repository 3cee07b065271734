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
import { markChanged, onArrayChanged } from '../weight_registry.js';
import { Bf16Panels, type SimdGemm } from './gemm.js';
import { PANEL_GROUP, packedColumns } from './limits.js';

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

/**
 * Weights that read the same input, stacked by rows for the fused decode step's one-row products (its q/k/v,
 * the MLP's gate/up, Mamba-1's five products of x): y = x·[W_1; W_2; …]ᵀ = [x·W_1ᵀ | x·W_2ᵀ | …], as few
 * products as their storage allows — each product is one hand-off between the SIMD threads, and a larger one
 * reads memory faster on two (lib/simd/gemm.ts). Every output column's arithmetic is its own row's (the
 * kernels sum over k for each column alone, whatever its neighbours), so the bits are the separate products'.
 *
 *   float arrays   one stacked float32 copy (rounded as packing rounds: the same float32 weights), packed
 *                  resident on first use; shared by every plan stacking the same arrays (a draft made of the
 *                  target's layers), rewritten when a member changes in place (weight_registry markChanged)
 *   bf16 panels    one view of panels that lie end to end in the module, in the stack's order, each but the
 *                  last a whole number of 32-column groups (then the panels of the stack are theirs side by
 *                  side: no copy); others stay separate products (never a second copy of a bf16 model's panels)
 *
 * A d512 decode's q/k/v and gate/up (8 layers, 40 → 16 products; 2026-12-05, this 2-core VM, one process,
 * interleaved, medians of 15): 1 thread 1.72 → 1.63 ms a token, 2 threads 1.12 → 0.96.
 */
export type RowStack = ReadonlyArray<{ w: FloatArray | Bf16Panels; n0: number; n1: number }>;

/** Stacked float copies by their first member: the members, the copy, and where each member's rows start. */
const stacked = new WeakMap<object, Array<{ members: FloatArray[]; copy: Float32Array }>>();
/** The stacked copies holding a member, and the float offset of its rows there. */
const holders = new WeakMap<object, Array<{ copy: Float32Array; at: number }>>();
let listening = false;

function stackFloats(members: FloatArray[]): Float32Array {
  const known = stacked
    .get(members[0])
    ?.find((s) => s.members.every((a, i) => a === members[i]) && s.members.length === members.length);
  if (known) return known.copy;
  const copy = new Float32Array(members.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of members) {
    copy.set(a, at); // float64 weights round to float32 here, as packing would round them
    holders.set(a, [...(holders.get(a) ?? []), { copy, at }]);
    at += a.length;
  }
  stacked.set(members[0], [...(stacked.get(members[0]) ?? []), { members, copy }]);
  if (!listening) {
    listening = true;
    onArrayChanged((a) => {
      for (const h of holders.get(a) ?? []) {
        h.copy.set(a, h.at);
        markChanged(h.copy); // its packed copy is dropped (packed again at the next product)
      }
    });
  }
  return copy;
}

/** Bytes of bf16 panels of an N×K weight (asm/gemm.ts: whole 32-column groups). */
const panelBytes = (p: Bf16Panels) => packedColumns(p.N) * p.K * 2;

/** `ws` (each N_i × K, in order) as a RowStack: consecutive float arrays as one copy, consecutive adjacent panels as one view. */
export function stackRows(ws: ReadonlyArray<FloatArray | Bf16Panels>, K: number): RowStack {
  const out: Array<{ w: FloatArray | Bf16Panels; n0: number; n1: number }> = [];
  let run: Array<FloatArray | Bf16Panels> = [];
  let n0 = 0;
  const close = () => {
    if (run.length === 0) return;
    const rows = run.reduce((n, w) => n + (w instanceof Bf16Panels ? w.N : w.length / K), 0);
    const first = run[0];
    const w =
      run.length === 1
        ? first
        : first instanceof Bf16Panels
          ? new Bf16Panels(first.gemm, first.ptr, rows, K, first.epoch)
          : stackFloats(run as FloatArray[]);
    out.push({ w, n0, n1: n0 + rows });
    n0 += rows;
    run = [];
  };
  for (const w of ws) {
    const last = run[run.length - 1];
    const joins =
      last === undefined ||
      (w instanceof Bf16Panels
        ? last instanceof Bf16Panels &&
          w.gemm === last.gemm &&
          w.epoch === last.epoch &&
          w.K === K &&
          last.N % PANEL_GROUP === 0 &&
          w.ptr === last.ptr + panelBytes(last)
        : !(last instanceof Bf16Panels));
    if (!joins) close();
    run.push(w);
  }
  close();
  return out;
}

/** y (ΣN_i) = x (K) · [W_1; W_2; …]ᵀ: one product per piece of the stack, each into its slice of y. */
export function linearStack(g: SimdGemm, x: FloatArray, s: RowStack, y: Float32Array): void {
  for (const p of s) g.linear(x, 1, x.length, p.w, p.n1 - p.n0, true, y.subarray(p.n0, p.n1));
}
