/**
 * Cached causal attention's two products for the CPU, float64: the driver of asm/attention.ts (scores, then
 * weighted values), with the model's own JavaScript softmax between them, so the result has the bits of
 * lib/model/mixers/attention.ts's loop (spec/speculative.spec.ts compares them). The wasm-simd backend offers it as
 * `ops.cachedAttention`; the model uses it for a window of queries.
 */
import type { SimdGemm } from './gemm.js';
import { align } from './gemm.js';

/** A cached attention with the model's loop's bits: what `ops.cachedAttention` is (g bound). */
export type CachedAttentionFn = (
  q: Float64Array,
  sh: { batch: number; H: number; L: number; hd: number; Hkv: number; cap: number; T: number },
  K: Float64Array,
  V: Float64Array,
  softmax: (s: Float64Array, off: number, n: number) => void,
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
  softmax: (s: Float64Array, off: number, n: number) => void,
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
  const [mK, mV, mQ, mS, mO] = [pK, pV, pQ, pS, pO].map(
    (p, i) => new Float64Array(mem, p, [kv, kv, hd * R2, R * T, R * hd][i]),
  );
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
      for (let r = 0; r < R; r++) {
        const qo = ((b * H + kvh * groups + Math.floor(r / L)) * L + (r % L)) * hd;
        for (let i = 0; i < hd; i++) mQ[i * R2 + r] = q[qo + i];
      }
      g.kernels.attnScores(pQ, R2, pK, hd, pN, R, scale, pS, T);
      for (let r = 0; r < R; r++) softmax(mS, r * T, mN[r]);
      g.kernels.attnValues(pS, T, pV, hd, pN, R, pO);
      for (let r = 0; r < R; r++) {
        const qo = ((b * H + kvh * groups + Math.floor(r / L)) * L + (r % L)) * hd;
        out.set(mO.subarray(r * hd, (r + 1) * hd), qo);
      }
    }
  return out;
}
