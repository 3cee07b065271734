/**
 * SiLU on the CPU, float32: the driver of asm/activations.ts (silu(a) = a / (1 + exp(−a)) with a SIMD exp,
 * ≤ 2 ulp from the float32 rounding of the exact value). The wasm-simd backend uses it in its gated MLP
 * (silu(gate)·up), the fused Llama step, the convolutions' activation and the gated norm's gate.
 */
import type { SimdGemm } from './gemm.js';
import { align, copyOut } from './gemm.js';
import { ArgumentError } from '../errors.js';

type FloatArray = Float32Array | Float64Array;

/** out = silu(a) ⊙ b, or silu(a) without b (each rounded to float32 on the way in); into `out` when given. */
export function simdSiluMul(g: SimdGemm, a: FloatArray, b?: FloatArray, out?: Float32Array): Float32Array {
  const n = a.length;
  if (b && b.length !== n) throw new ArgumentError('b', `${n} values (as many as a)`, b.length);
  if (out && out.length !== n) throw new ArgumentError('out', `${n} floats (as many as a)`, out.length);
  const n4 = (n + 3) & ~3; // whole f32x4 lanes; the pad is zero
  const pa = g.scratchStart();
  const pb = align(pa + n4 * 4);
  const po = align(pb + (b ? n4 * 4 : 0));
  g.ensure(po + n4 * 4);
  const mem = new Float32Array(g.buffer);
  const f = (p: number) => p / 4; // a byte address (64-aligned, maybe past 2³¹: no >>) as a float index
  mem.set(a, f(pa));
  mem.fill(0, f(pa) + n, f(pa) + n4);
  if (b) {
    mem.set(b, f(pb));
    mem.fill(0, f(pb) + n, f(pb) + n4);
  }
  g.kernels.siluMul(pa, b ? pb : 0, po, n4);
  const y = mem.subarray(f(po), f(po) + n);
  if (!out) return copyOut(y);
  out.set(y);
  return out;
}
