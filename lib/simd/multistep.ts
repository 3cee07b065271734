/**
 * Algorithm 2's MultiStep (PAPER.md §4) on the CPU: the driver of asm/multistep.ts, one call for every channel
 * of a layer on the calling thread. From the cached state h_i, r replayed steps without output (→ h_j), then s
 * steps with outputs (→ h_k); float32 state, like the GPU.js kernel. Reference: lib/ref/multistep.ts (the
 * wasm-simd backend's `multistep` is this, checked against it by the every-backend properties).
 */
import type { SimdGemm } from './gemm.js';
import { align, copyOut } from './gemm.js';
import { f32, isImmutable } from '../weight_registry.js';

type FloatArray = Float32Array | Float64Array;

/** MultiStep's inputs, each any float array (rounded to float32 on the way in); see asm/multistep.ts. */
export interface SimdMultistepArgs {
  hI: FloatArray;
  xCache: FloatArray;
  deltaCache: FloatArray;
  BCache: FloatArray;
  x: FloatArray;
  delta: FloatArray;
  B: FloatArray;
  C: FloatArray;
  z?: FloatArray;
  A: FloatArray;
  D?: FloatArray;
  deltaBias?: FloatArray;
  deltaSoftplus: boolean;
}

/** Sizes as lib/ref/multistep.ts `multistepDims` returns them (the shapes are checked there, not here). */
export function simdMultistep(
  g: SimdGemm,
  a: SimdMultistepArgs,
  sh: { batch: number; dim: number; N: number; K1: number; r: number; s: number; G: number },
  readJ = true,
): { out: Float32Array; hJ: Float32Array; hK: Float32Array } {
  const { batch, dim, N, K1, r, s, G } = sh;
  let at = g.scratchStart();
  const place = (v: FloatArray | undefined): number => {
    if (!v) return 0; // absent
    const p = at;
    g.put(isImmutable(v) ? f32(v) : v, p); // a per-head parameter copy (immutable): its cached float32 copy, copied as is
    at = align(p + v.length * 4);
    return p;
  };
  const ins = [a.hI, a.xCache, a.deltaCache, a.BCache, a.x, a.delta, a.B, a.C, a.z, a.A, a.D, a.deltaBias].map(place);
  const states = batch * dim * N;
  const out = at;
  const hJ = align(out + batch * s * dim * 4);
  const hK = align(hJ + states * 4);
  g.ensure(hK + states * 4);
  g.kernels.multistep(...ins, batch, dim, N, K1, r, s, G, a.deltaSoftplus ? 1 : 0, out, hJ, hK);
  const read = (p: number, n: number) => copyOut(new Float32Array(g.buffer, p, n));
  // `readJ` false: h_j left in the module (a decode step, nothing replayed: h_j is h_i) and returned empty
  return { out: read(out, batch * s * dim), hJ: readJ ? read(hJ, states) : new Float32Array(0), hK: read(hK, states) };
}
