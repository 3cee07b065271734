/**
 * The attention mixer of a Llama block (kept in the hybrids at attn_layers), described once: its parameters,
 * its wiring, and both paths derived from them — inference over a KV cache (`attentionInfer`, used by
 * lib/model/hybrid.ts and by the fused decode step of ../fused_step.ts) and training with its backward
 * (`attentionTrain`, used by lib/train/model.ts).
 *
 *   q = x W_qᵀ (+ b_q),  k = x W_kᵀ (+ b_k),  v = x W_vᵀ (+ b_v)       heads: q (b, H, l, hd), k and v (b, H_kv, l, hd)
 *   q ← rope(q, t),  k ← rope(k, t)                                    t = the absolute position of each token
 *   y_t = Σ_{j ≤ t} softmax_j(q_t·k_j / √hd) v_j                       head h reads kv head ⌊h/(H/H_kv)⌋ (grouped-query)
 *   out = y W_oᵀ (+ b_o)                                               (b, l, d)
 *
 * Symbols: x (b, l, d) the normed hidden state · W_q (H·hd, d) · W_k, W_v (H_kv·hd, d) · W_o (d, H·hd) ·
 * biases only with HF `attention_bias: true` · rope with θ = rope_theta and the config's rope_scaling.
 */
import type { Ops } from '../../ops.js';
import { applyRope, applyRopeBackward, ropeAngles, ropeInvFreq, ropeRows } from '../../ref/rope.js';
import { Tensor, assertFinite, type FloatArray } from '../../tensor.js';
import { addBiasRows, type Bf16Panels, type SimdGemm } from '../../simd/gemm.js';
import { simdCachedAttention } from '../../simd/attention.js';
import type { LlamaConfig } from '../config.js';
import { linearInto, type AttentionCache, type HybridModel } from './block.js';
import { add, linearLayer, type Ctx, type Layer } from './tape.js';

type F = Float64Array;

// ---------------------------------------------------------------- description (both paths)

/** The parameters of layer prefix p's attention: weight and (with `attention_bias`) bias of q, k, v, o. */
export function attentionNames(c: LlamaConfig, p: string) {
  const proj = (n: 'q' | 'k' | 'v' | 'o') => ({
    weight: `${p}.self_attn.${n}_proj.weight`,
    bias: c.attentionBias ? `${p}.self_attn.${n}_proj.bias` : undefined, // HF: a bias on each of q, k, v, o, or none
  });
  return { q: proj('q'), k: proj('k'), v: proj('v'), o: proj('o') };
}

/** RoPE's inverse frequencies (hd/2) and the positions pos0 … pos0+l−1 of a run of l tokens. */
export function attentionRope(c: LlamaConfig, pos0: number, L: number): { inv: Float64Array; positions: number[] } {
  return {
    inv: ropeInvFreq(c.headDim, c.ropeTheta, c.ropeScaling),
    positions: Array.from({ length: L }, (_, i) => pos0 + i),
  };
}

/** Rows (b, l, n·hd) → heads (b, n, l, hd). */
function toHeads(t: Tensor, batch: number, L: number, n: number, hd: number): Tensor {
  return t.reshape([batch, L, n, hd]).transpose([0, 2, 1, 3]);
}

/** Heads (b, n, l, hd) → rows (b, l, n·hd). */
function fromHeads(t: Tensor, batch: number, L: number, n: number, hd: number): Tensor {
  return t.transpose([0, 2, 1, 3]).reshape([batch, L, n * hd]);
}

// ---------------------------------------------------------------- inference (KV cache)

/**
 * x (b, l, d) at positions pos0 … → out (b, l, d); the keys and values are appended to `cache`. `attention32`
 * (evaluation's forward): on a backend with `ops.attention32` (wasm-simd) the scores, softmax and weights·V run
 * in float32 (not the decode paths' bits; see lib/simd/attention.ts simdWindowAttention32).
 */
export async function attentionInfer(
  ops: Ops,
  m: HybridModel,
  p: string,
  x: Tensor,
  cache: AttentionCache,
  pos0: number,
  attention32 = false,
): Promise<Tensor> {
  const c = m.llama;
  const W = m.weights;
  const n = attentionNames(c, p);
  const [batch, L] = x.shape as [number, number, number];
  const { inv, positions } = attentionRope(c, pos0, L);
  const proj = (w: { weight: string; bias?: string }) => ({
    weight: W.get(w.weight),
    bias: w.bias === undefined ? undefined : W.get(w.bias),
  });
  const [qp, kp, vp] = (await ops.linears(x, [proj(n.q), proj(n.k), proj(n.v)])) as [Tensor, Tensor, Tensor]; // (b, l, H·hd), (b, l, H_kv·hd) ×2
  // what applyRope(toHeads(·)), writeKv and fromHeads compute, in one pass each over the rows (no transposed
  // copies): q rotated into heads, k rotated and v copied straight into the cache, y back to rows in the dtype
  // the output projection rounds it to — the same operations on the same values
  assertFinite(qp, 'x'); // applyRope's check
  assertFinite(kp, 'x');
  const [H, Hkv, hd] = [c.numHeads, c.numKvHeads, c.headDim];
  growKv(cache, pos0, pos0 + L, batch, Hkv, hd, c.maxPositionEmbeddings);
  const q = new Float64Array(batch * H * L * hd); // (b, H, l, hd)
  const cos = new Float64Array(hd / 2); // (hd/2)
  const sin = new Float64Array(hd / 2); // (hd/2)
  for (let t = 0; t < L; t++) {
    ropeAngles(positions[t], inv, cos, sin);
    for (let b = 0; b < batch; b++) {
      const row = b * L + t;
      ropeRows(qp.data, q, H, (b * H * L + t) * hd, L * hd, cos, sin, row * H * hd, hd);
      const at = (b * Hkv * cache.cap + pos0 + t) * hd; // (b, kv head 0, position pos0 + t) in the cache
      ropeRows(kp.data, cache.k, Hkv, at, cache.cap * hd, cos, sin, row * Hkv * hd, hd);
      const vd = vp.data; // (b, l, H_kv·hd)
      for (let h = 0; h < Hkv; h++)
        for (let i = 0, src = (row * Hkv + h) * hd, dst = at + h * cache.cap * hd; i < hd; i++)
          cache.v[dst + i] = vd[src + i];
    }
  }
  const sh = { batch, H, L, hd, Hkv, cap: cache.cap, T: pos0 + L }; // query t sits at position pos0 + t
  const rows = // (b, l, H·hd)
    (attention32 && ops.attention32?.(q, sh, cache.k, cache.v)) ||
    headsToRows(ops, cachedAttention(new Tensor(q, [batch, H, L, hd]), cache, sh.T, Hkv, ops).data, batch, H, L, hd);
  const o = proj(n.o);
  return ops.linear(new Tensor(rows, [batch, L, H * hd]), o.weight, o.bias); // (b, l, d)
}

/** y (b, H, l, hd) → rows (b, l, H·hd) in the dtype the output projection rounds them to. */
function headsToRows(ops: Ops, y: FloatArray, batch: number, H: number, L: number, hd: number): FloatArray {
  const rows = ops.dtype === 'float64' ? new Float64Array(y.length) : new Float32Array(y.length); // (b, l, H·hd)
  for (let b = 0; b < batch; b++)
    for (let h = 0; h < H; h++)
      for (let t = 0; t < L; t++)
        for (let i = 0, src = ((b * H + h) * L + t) * hd, dst = ((b * L + t) * H + h) * hd; i < hd; i++)
          rows[dst + i] = y[src + i];
  return rows;
}

/** Write new keys and values (batch, Hkv, L, hd) at positions pos0 … pos0+L−1, growing the buffers if needed. */
export function writeKv(
  cache: AttentionCache,
  k: Tensor,
  v: Tensor,
  pos0: number,
  batch: number,
  Hkv: number,
  hd: number,
  maxPos: number,
): void {
  const L = k.shape[2];
  growKv(cache, pos0, pos0 + L, batch, Hkv, hd, maxPos);
  for (let bh = 0; bh < batch * Hkv; bh++) {
    cache.k.set(k.data.subarray(bh * L * hd, (bh + 1) * L * hd), (bh * cache.cap + pos0) * hd);
    cache.v.set(v.data.subarray(bh * L * hd, (bh + 1) * L * hd), (bh * cache.cap + pos0) * hd);
  }
}

/** Make the cache hold `need` positions, its first `valid` kept, growing it by a quarter at least (copies stay amortised). */
function growKv(
  cache: AttentionCache,
  valid: number,
  need: number,
  batch: number,
  Hkv: number,
  hd: number,
  maxPos: number,
): void {
  if (need > cache.cap) {
    // grown by a quarter (at least 64 positions), not doubled: a cache just past 2,048 positions takes 2,560, not
    // 4,096 (Llama-3.2-1B's 16 layers: 336 MB of float64 keys and values instead of 537); copies stay amortised
    const cap = Math.min(maxPos, Math.max(need, cache.cap + Math.max(64, Math.ceil(cache.cap / 4))));
    const grow = (old: Float64Array) => {
      const n = new Float64Array(batch * Hkv * cap * hd); // (b, H_kv, cap, hd)
      for (let bh = 0; bh < batch * Hkv; bh++)
        n.set(old.subarray(bh * cache.cap * hd, bh * cache.cap * hd + valid * hd), bh * cap * hd);
      return n;
    };
    cache.k = grow(cache.k);
    cache.v = grow(cache.v);
    cache.cap = cap;
  }
}

/**
 * Causal attention of q (batch, H, L, hd) — query t at position T − L + t — over the cache's first T
 * positions; lib/ref/attention.ts `causalAttention`'s math (grouped-query: head h reads kv head ⌊h/(H/Hkv)⌋),
 * on the in-place buffers, float64:
 *
 *   s_j = (q · k_j) / √hd  (j ≤ position of q),   w_j = exp(s_j − max s) / Σ exp(s − max s),   out = Σ_j w_j v_j
 *
 * Every sum runs in the plain order (q · k_j over i = 0 … hd−1, Σ exp over j, out_i over j from 0), but four
 * independent sums at a time — four keys' dot products, four output channels — so the loop is not bound by
 * the latency of one chain of additions (a verify window's attention ran at ~0.3 GFLOP/s as one chain, an
 * add's latency per multiply-add). The same operations on the same values, so the same bits. A backend with
 * `ops.cachedAttention` (wasm-simd) runs all three as SIMD kernels for one query or a window
 * (asm/attention.ts; its exp a port of V8's Math.exp), again the same bits (spec/speculative.spec.ts compares the two).
 */
export function cachedAttention(
  q: Tensor,
  cache: AttentionCache,
  T: number,
  Hkv: number,
  ops?: Pick<Ops, 'cachedAttention'>,
): Tensor {
  const [batch, H, L, hd] = q.shape as [number, number, number, number]; // q (b, H, l, hd)
  const qd = q.data instanceof Float64Array ? q.data : new Float64Array(q.data); // (b, H, l, hd)
  // the SIMD path for one query too: copying the cache into the module's memory costs less than the loop saves
  if (ops?.cachedAttention)
    return new Tensor(
      ops.cachedAttention(qd, { batch, H, L, hd, Hkv, cap: cache.cap, T }, cache.k, cache.v),
      [batch, H, L, hd],
      'attention',
    );
  const K = cache.k; // (b, H_kv, cap, hd)
  const V = cache.v; // (b, H_kv, cap, hd)
  const out = new Float64Array(batch * H * L * hd); // (b, H, l, hd)
  const s = new Float64Array(T); // (T): one query's scores, then weights
  const scale = 1 / Math.sqrt(hd);
  const groups = H / Hkv;
  for (let b = 0; b < batch; b++)
    for (let h = 0; h < H; h++) {
      const kv = (b * Hkv + Math.floor(h / groups)) * cache.cap * hd;
      for (let t = 0; t < L; t++) {
        const n = T - L + t + 1; // keys 0 … n−1 are visible to this query
        const qo = ((b * H + h) * L + t) * hd;
        scores(qd, qo, K, kv, hd, n, scale, s);
        softmaxPrefix(s, 0, n);
        weightedValues(s, V, kv, hd, n, out, qo);
      }
    }
  return new Tensor(out, [batch, H, L, hd], 'attention');
}

/** s[off … off+n−1] ← softmax of those scores, in place: exp(s_j − max s) / Σ exp(s − max s), sums in order. */
function softmaxPrefix(s: Float64Array, off: number, n: number): void {
  let mx = -Infinity;
  for (let j = off; j < off + n; j++) if (s[j] > mx) mx = s[j];
  let z = 0;
  for (let j = off; j < off + n; j++) z += s[j] = Math.exp(s[j] - mx);
  for (let j = off; j < off + n; j++) s[j] = s[j] / z;
}

/** s_j = (q · k_j)·scale for keys j < n at K[kv + j·hd …], four keys at a time (four independent sums). */
function scores(
  q: Float64Array,
  qo: number,
  K: Float64Array,
  kv: number,
  hd: number,
  n: number,
  scale: number,
  s: Float64Array,
): void {
  let j = 0;
  for (; j + 4 <= n; j += 4) {
    const k0 = kv + j * hd;
    const k1 = k0 + hd;
    const k2 = k1 + hd;
    const k3 = k2 + hd;
    let d0 = 0;
    let d1 = 0;
    let d2 = 0;
    let d3 = 0;
    for (let i = 0; i < hd; i++) {
      const qi = q[qo + i];
      d0 += qi * K[k0 + i];
      d1 += qi * K[k1 + i];
      d2 += qi * K[k2 + i];
      d3 += qi * K[k3 + i];
    }
    s[j] = d0 * scale;
    s[j + 1] = d1 * scale;
    s[j + 2] = d2 * scale;
    s[j + 3] = d3 * scale;
  }
  for (; j < n; j++) {
    const k0 = kv + j * hd;
    let d = 0;
    for (let i = 0; i < hd; i++) d += q[qo + i] * K[k0 + i];
    s[j] = d * scale;
  }
}

/** out[qo + i] = Σ_{j<n} w_j · V[kv + j·hd + i], summed over j in order, four channels i at a time. */
function weightedValues(
  w: Float64Array,
  V: Float64Array,
  kv: number,
  hd: number,
  n: number,
  out: Float64Array,
  qo: number,
): void {
  let i = 0;
  for (; i + 4 <= hd; i += 4) {
    let a0 = 0;
    let a1 = 0;
    let a2 = 0;
    let a3 = 0;
    for (let j = 0, vo = kv + i; j < n; j++, vo += hd) {
      const wj = w[j];
      a0 += wj * V[vo];
      a1 += wj * V[vo + 1];
      a2 += wj * V[vo + 2];
      a3 += wj * V[vo + 3];
    }
    out[qo + i] = a0;
    out[qo + i + 1] = a1;
    out[qo + i + 2] = a2;
    out[qo + i + 3] = a3;
  }
  for (; i < hd; i++) {
    let a = 0;
    for (let j = 0, vo = kv + i; j < n; j++, vo += hd) a += w[j] * V[vo];
    out[qo + i] = a;
  }
}

/** The valid keys and values of an attention cache as (batch, Hkv, n, hd) tensors (for inspection and tests). */
export function kvTensors(
  cache: AttentionCache,
  n: number,
  batch: number,
  Hkv: number,
  hd: number,
): { k: Tensor; v: Tensor } {
  const cut = (buf: Float64Array) => {
    const o = new Float64Array(batch * Hkv * n * hd); // (b, H_kv, n, hd)
    for (let bh = 0; bh < batch * Hkv; bh++)
      o.set(buf.subarray(bh * cache.cap * hd, bh * cache.cap * hd + n * hd), bh * n * hd);
    return new Tensor(o, [batch, Hkv, n, hd]);
  };
  return { k: cut(cache.k), v: cut(cache.v) };
}

// ---------------------------------------------------------------- inference, one token fused (../fused_step.ts, wasm-simd)

/**
 * An attention layer's projections as the fused decode step reads them (biases where the model has them): float
 * arrays, or a bf16 checkpoint's panels (lib/simd/packed_weight.ts).
 */
export interface AttentionStepWeights {
  q: FloatArray | Bf16Panels;
  k: FloatArray | Bf16Panels;
  v: FloatArray | Bf16Panels;
  o: FloatArray | Bf16Panels;
  bq?: FloatArray;
  bk?: FloatArray;
  bv?: FloatArray;
  bo?: FloatArray;
}

/**
 * One token's attention as the fused decode step runs it: the weights looked up once, float32 buffers
 * allocated once, every product and the attention over the cache a direct SIMD call — `attentionInfer`'s
 * operations on the same values, so the same bits (spec/models.spec.ts). x (d) normed row → buf.o (d); the key
 * and value appended to `cache`.
 */
export function attentionStep(
  g: SimdGemm,
  c: LlamaConfig,
  w: AttentionStepWeights,
  buf: {
    qkv: Float32Array; // [q | k | v]; q, k and v are its slices
    q: Float32Array;
    k: Float32Array;
    v: Float32Array;
    o: Float32Array;
    qr: Float64Array;
    kr: Float64Array;
  },
  x: Float64Array,
  cache: AttentionCache,
  pos: number,
  rope: { cos: Float64Array; sin: Float64Array },
): void {
  const { numHeads: H, numKvHeads: Hkv, headDim: hd } = c;
  // (H·hd + 2·H_kv·hd): q | k | v, one hand-off between the SIMD threads for the three (each product's own bits),
  // then each one's bias as linearInto adds it
  g.linearMany(
    x,
    1,
    x.length,
    [
      { w: w.q, N: buf.q.length },
      { w: w.k, N: buf.k.length },
      { w: w.v, N: buf.v.length },
    ],
    buf.qkv,
  );
  if (w.bq) addBiasRows(buf.q, 1, w.bq); // (H·hd)
  if (w.bk) addBiasRows(buf.k, 1, w.bk); // (H_kv·hd)
  if (w.bv) addBiasRows(buf.v, 1, w.bv); // (H_kv·hd)
  // one token: (1, 1, heads·hd) is already (1, heads, 1, hd); RoPE at pos (angles computed once a token, by the
  // caller) into float64 buffers, as applyRope returns them
  ropeRows(buf.q, buf.qr, H, 0, hd, rope.cos, rope.sin); // (H·hd)
  ropeRows(buf.k, buf.kr, Hkv, 0, hd, rope.cos, rope.sin); // (H_kv·hd)
  const k = new Tensor(buf.kr, [1, Hkv, 1, hd]); // (1, H_kv, 1, hd)
  writeKv(cache, k, new Tensor(buf.v, [1, Hkv, 1, hd]), pos, 1, Hkv, hd, c.maxPositionEmbeddings);
  // the SIMD module's scores, softmax and values, the loop's bits: the copy of the cache into its memory costs less
  // than the JavaScript loop saves (teacher-20m, one thread, before and after in one script: 7.5 → 4.2–4.6 ms a
  // token at 900 positions, no slower at 16)
  const sh = { batch: 1, H, L: 1, hd, Hkv, cap: cache.cap, T: pos + 1 };
  const att = simdCachedAttention(g, buf.qr, sh, cache.k, cache.v); // (1, H, 1, hd) = (1, 1, H·hd)
  linearInto(g, att, w.o, buf.o, w.bo); // (d)
}

// ---------------------------------------------------------------- training (forward with saved activations, backward)

/** x rows (b·l, d) from position 0 → out rows (b·l, d); back: ∂ℓ/∂x, gradients of W_q, W_k, W_v, W_o (and biases). */
export function attentionTrain(ctx: Ctx, p: string, x: F): Layer {
  const c = ctx.m.llama;
  const { batch, L } = ctx;
  const dModel = c.hiddenSize;
  const [H, Hkv, hd] = [c.numHeads, c.numKvHeads, c.headDim];
  const n = attentionNames(c, p);
  const { inv, positions } = attentionRope(c, 0, L);
  const q = linearLayer(ctx, x, dModel, H * hd, n.q.weight, n.q.bias); // (b·l, H·hd)
  const k = linearLayer(ctx, x, dModel, Hkv * hd, n.k.weight, n.k.bias); // (b·l, H_kv·hd)
  const v = linearLayer(ctx, x, dModel, Hkv * hd, n.v.weight, n.v.bias); // (b·l, H_kv·hd)
  const heads = (t: F, h: number) => toHeads(new Tensor(t, [batch, L, h * hd]), batch, L, h, hd); // (b, h, l, hd)
  const rows = (t: Tensor, h: number) => fromHeads(t, batch, L, h, hd).data as F; // (b·l, h·hd)
  const qr = applyRope(heads(q.y, H), positions, inv); // (b, H, l, hd)
  const kr = applyRope(heads(k.y, Hkv), positions, inv); // (b, H_kv, l, hd)
  const vh = heads(v.y, Hkv); // (b, H_kv, l, hd)
  const att = ctx.mm.attention(qr, kr, vh); // y (b, H, l, hd)
  const o = linearLayer(ctx, rows(att.y, H), H * hd, dModel, n.o.weight, n.o.bias); // (b·l, d)
  return {
    y: o.y,
    back(dy) {
      const datt = heads(o.back(dy), H); // (b, H, l, hd)
      const g = att.back(datt);
      const dq = rows(applyRopeBackward(g.dq, positions, inv), H); // (b·l, H·hd)
      const dk = rows(applyRopeBackward(g.dk, positions, inv), Hkv); // (b·l, H_kv·hd)
      return add(add(q.back(dq), k.back(dk)), v.back(rows(g.dv, Hkv))); // (b·l, d)
    },
  };
}
