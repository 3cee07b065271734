/**
 * Cached causal attention for the CPU, float64: the driver of asm/attention.ts (scores, softmax, weighted values,
 * all three in the module), with the bits of lib/model/mixers/attention.ts's loop: the same sums in the same
 * order, and a softmax whose exp is a port of V8's Math.exp (fdlibm) — spec/speculative.spec.ts compares the two
 * paths, spec/simd.spec.ts the exp with Math.exp. The wasm-simd backend offers it as `ops.cachedAttention` (one
 * query or a window); the fused decode step (mixers/attention.ts attentionStep) calls it directly.
 *
 * And a window's whole attention in float32 (`simdWindowAttention32`, asm/attention.ts attnWindowF32): what
 * evaluation (`mil eval`, lib/train/job.ts evaluateOn) runs as `ops.attention32` — not those bits, within
 * ATTN_F32_TOL of them (spec/simd.spec.ts).
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

/** The shape of one call: q (batch, H, L, hd) over the first T positions of a cache (batch, Hkv, cap, hd). */
type AttentionShape = { batch: number; H: number; L: number; hd: number; Hkv: number; cap: number; T: number };

/**
 * A window's causal attention in float32, out in rows (batch, L, H·hd) — what the output projection reads —, or
 * undefined where a row's scores overflowed float32 (the caller runs the float64 kernels): what `ops.attention32` is.
 */
export type WindowAttention32Fn = (
  q: Float64Array,
  sh: AttentionShape,
  K: Float64Array,
  V: Float64Array,
) => Float32Array | undefined;

/**
 * The arguments and result of `simdCachedAttention` (q (batch, H, L, hd), query t at position T − L + t, the
 * cache's first T positions, head h reading kv head ⌊h / (H/Hkv)⌋), computed in float32 by attnWindowF32 —
 * q, k and v rounded to float32 once, float32 sums, the float32 exp of asm/activations.ts — and returned as rows
 * (batch, L, H·hd), float32. Undefined where a row's max or sum is not finite (a score past float32's range).
 */
export function simdWindowAttention32(
  g: SimdGemm,
  q: Float64Array,
  sh: AttentionShape,
  K: Float64Array,
  V: Float64Array,
): Float32Array | undefined {
  const { batch, H, L, hd, Hkv, cap, T } = sh;
  const groups = H / Hkv;
  const R = groups * L;
  const R4 = (R + 3) & ~3;
  const T8 = (T + 7) & ~7;
  const hd8 = (hd + 7) & ~7;
  const pQ = g.scratchStart();
  const pKT = align(pQ + R4 * hd * 4);
  const pV = align(pKT + hd * T8 * 4);
  const pS = align(pV + T * hd8 * 4);
  const pN = align(pS + 4 * T8 * 4);
  const pO = align(pN + R4 * 4);
  g.ensure(pO + R4 * hd8 * 4);
  const mem = g.buffer;
  const mQ = new Float32Array(mem, pQ, R4 * hd); // (R4, hd)
  const mKT = new Float32Array(mem, pKT, hd * T8); // (hd, T8)
  const mV = new Float32Array(mem, pV, T * hd8); // (T, hd8)
  const mN = new Int32Array(mem, pN, R4);
  const mO = new Float32Array(mem, pO, R4 * hd8); // (R4, hd8)
  for (let r = 0; r < R4; r++) mN[r] = r < R ? T - L + (r % L) + 1 : 1; // pad rows: one key, outputs unused
  mQ.fill(0, R * hd); // pad rows
  mKT.fill(0); // the columns past T stay 0
  if (hd8 > hd) mV.fill(0); // the channels past hd stay 0
  const out = new Float32Array(batch * L * H * hd); // (b, l, H·hd)
  const scale = 1 / Math.sqrt(hd);
  for (let b = 0; b < batch; b++)
    for (let kvh = 0; kvh < Hkv; kvh++) {
      const src = (b * Hkv + kvh) * cap * hd;
      for (let j = 0; j < T; j++) for (let i = 0, k = src + j * hd; i < hd; i++) mKT[i * T8 + j] = K[k + i];
      if (hd8 === hd) mV.set(V.subarray(src, src + T * hd));
      else for (let j = 0; j < T; j++) mV.set(V.subarray(src + j * hd, src + (j + 1) * hd), j * hd8);
      // the group's R = groups·L query rows are consecutive in q: row r = g·L + t at q0 + r·hd
      const q0 = (b * H + kvh * groups) * L * hd;
      mQ.set(q.subarray(q0, q0 + R * hd));
      if (g.kernels.attnWindowF32(pQ, pKT, pV, pO, pS, pN, R4, hd, T8, scale) > 0) return undefined;
      for (let r = 0; r < R; r++) {
        const t = r % L;
        const h = kvh * groups + (r - t) / L;
        for (let i = 0, s = r * hd8, d = ((b * L + t) * H + h) * hd; i < hd; i++) out[d + i] = mO[s + i];
      }
    }
  return out;
}
