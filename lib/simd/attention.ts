/**
 * Cached causal attention for the CPU, float64: the driver of asm/attention.ts (scores, softmax, weighted values,
 * all three in the module), with the bits of lib/model/mixers/attention.ts's loop: the same sums in the same
 * order, and a softmax whose exp is a port of V8's Math.exp (fdlibm) — spec/speculative.spec.ts compares the two
 * paths, spec/simd.spec.ts the exp with Math.exp. The wasm-simd backend offers it as `ops.cachedAttention` (one
 * query or a window); the fused decode step (mixers/attention.ts attentionStep) calls it directly.
 */
import type { SimdGemm } from './gemm.js';
import { align } from './gemm.js';

/** A cached attention with the model's loop's bits: what `ops.cachedAttention` is (g bound). */
export type CachedAttentionFn = (
  q: Float64Array,
  sh: { batch: number; H: number; L: number; hd: number; Hkv: number; cap: number; T: number },
  K: Float64Array,
  V: Float64Array,
) => Float64Array;

/**
 * q (batch, H, L, hd), query t at position T − L + t; K and V the cache buffers
 * (batch, Hkv, cap, hd) whose first T positions are valid; head h reads kv head ⌊h / (H/Hkv)⌋. The same
 * sums in the same order as lib/model/mixers/attention.ts's loop, so the same bits. Returns (batch, H, L, hd).
 */
export function simdCachedAttention(
  g: SimdGemm,
  q: Float64Array,
  sh: { batch: number; H: number; L: number; hd: number; Hkv: number; cap: number; T: number },
  K: Float64Array,
  V: Float64Array,
): Float64Array {
  const { batch, H, L, hd, Hkv, cap, T } = sh;
  const groups = H / Hkv;
  const R = groups * L;
  const R2 = R + (R % 2);
  const kv = T * hd;
  const pK = g.scratchStart();
  const pV = align(pK + kv * 8);
  const pQ = align(pV + kv * 8);
  const pN = align(pQ + hd * R2 * 8);
  const pS = align(pN + R * 4);
  const pO = align(pS + R * T * 8);
  g.ensure(pO + R * hd * 8);
  const mem = g.buffer;
  const [mK, mV, mQ, mO] = [pK, pV, pQ, pO].map((p, i) => new Float64Array(mem, p, [kv, kv, hd * R2, R * hd][i]));
  const mN = new Int32Array(mem, pN, R);
  for (let r = 0; r < R; r++) mN[r] = T - L + (r % L) + 1;
  if (R2 > R) for (let i = 0; i < hd; i++) mQ[i * R2 + R] = 0;
  const out = new Float64Array(batch * H * L * hd);
  const scale = 1 / Math.sqrt(hd);
  for (let b = 0; b < batch; b++)
    for (let kvh = 0; kvh < Hkv; kvh++) {
      const src = (b * Hkv + kvh) * cap * hd;
      mK.set(K.subarray(src, src + kv));
      mV.set(V.subarray(src, src + kv));
      // the group's R = groups·L query rows are consecutive in q: row r = g·L + t at q0 + r·hd
      const q0 = (b * H + kvh * groups) * L * hd;
      for (let r = 0; r < R; r++) for (let i = 0, qo = q0 + r * hd; i < hd; i++) mQ[i * R2 + r] = q[qo + i];
      g.kernels.attnScores(pQ, R2, pK, hd, pN, R, scale, pS, T);
      g.kernels.attnSoftmax(pS, T, pN, R);
      g.kernels.attnValues(pS, T, pV, hd, pN, R, pO);
      out.set(mO, q0); // (R, hd) is the group's rows of out, in order
    }
  return out;
}
