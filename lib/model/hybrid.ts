/**
 * The hybrid model: a Llama whose layers are either kept attention or Mamba layers (PAPER.md §2),
 * read top to bottom like llama2.c's run.c — weights, caches, the three kinds of layer, the model.
 *
 *   h = embed(ids)
 *   for each layer i:   attention (i ∈ attn_layers, or a plain Llama):  h += o(attn(rope(q), rope(k), v))(norm₁ h)
 *                       Mamba-1 / Mamba-2 (the others):                 h += mamba(norm₁ h)
 *                       then                                            h += mlp(norm₂ h),  mlp = down(silu(gate x) ⊙ up x)
 *   logits = lm_head(norm(h))
 *
 * Prefill (L > 1 tokens) uses the parallel/chunked ops (selective scan, SSD, conv1d) starting from the
 * cached states, so any prefix can be prefilled in pieces; decode (L = 1) uses the single-step ops (conv
 * update, state update). Every matrix product, scan, conv and gated norm goes through `ops` (the backend:
 * float64 reference or a GPU.js kernel); RMSNorm, RoPE, softmax attention and SwiGLU are plain TypeScript.
 *
 * Mamba-1 (mamba/hybrid_mamba_layer.py, Mamba.forward/step), per token o (after norm₁):
 *   x = repeat(W_x o) → conv1d (k = 4) → silu;  z = W_z o;  B = repeat(W_B o);  C = W_C o
 *   Δ = softplus(dt_proj(dt_proj_down o) + b)  where dt_proj already adds b: upstream adds the bias TWICE
 *   h_t = exp(Δ A) h_{t−1} + Δ B x,  y = C·h + D x,  out = out_proj(y · silu(z)),  A = −exp(A_log)
 *   repeat(): upstream cuts x and B into d_state-wide pieces and repeats each d_inner/d_xb times
 *   consecutively; `semantics: 'clean'` cuts x into head_dim-wide pieces (exact grouped-query pairing) and
 *   adds the bias once.
 * Mamba-2 (mamba2/hybrid_mamba_layer.py): in_proj rows [z | x | B | C | dt]; conv1d over [x, B, C]; x and B
 *   repeated per head exactly as grouped-query attention; SSD scan with dt_bias; gated RMSNorm
 *   (group head_dim, gate before norm); out_proj.
 */
import { ArgumentError } from '../errors.js';
import type { Ops } from '../ops.js';
import { rmsnorm } from '../ref/norm.js';
import { applyRope, ropeInvFreq } from '../ref/rope.js';
import { Tensor, markFinite } from '../tensor.js';
import type { LlamaConfig, MambaConfig } from './config.js';
import type { WeightStore } from './weights.js';
import type { MambaStateStore } from './state_store.js';
import { fusedStepApplies, llamaStep } from './llama_step.js';
import { markImmutable } from '../../kernels/runtime.js';

// ---------------------------------------------------------------- model description

export interface HybridModel {
  llama: LlamaConfig;
  /** absent for a plain Llama (every layer attention) */
  mamba?: MambaConfig;
  weights: WeightStore;
  /**
   * Ablations of the Mamba-2 layer, for analysis (never saved): `convActivation: false` drops the silu after
   * the conv, `gatedNorm: false` skips the gated RMSNorm. With both, A = 0, Δ = 1, an identity conv and D = 0,
   * a converted layer is exactly the teacher's linear attention (PAPER.md §1) — a property test checks it.
   */
  ablation?: { convActivation?: boolean; gatedNorm?: boolean };
}

export type LayerKind = 'attention' | 'mamba1' | 'mamba2';

export function layerKinds(m: HybridModel): LayerKind[] {
  return Array.from({ length: m.llama.numLayers }, (_, i) => (!m.mamba || m.mamba.attnLayers.includes(i) ? 'attention' : m.mamba.variant));
}

// ---------------------------------------------------------------- caches

/**
 * Keys and values of an attention layer, written in place: (batch, Hkv, cap, head_dim) float64 buffers whose
 * first `ModelCache.length` positions are valid. The capacity doubles when a forward needs more (up to
 * max_position_embeddings) instead of being allocated whole up front — a Llama 3 config's 131072
 * positions would be gigabytes per layer. Rolling back is just a shorter `length`.
 */
export interface AttentionCache {
  kind: 'attention';
  k: Float64Array;
  v: Float64Array;
  cap: number;
}
export interface Mamba1Cache {
  kind: 'mamba1';
  conv: Tensor; // (batch, d_inner, W−1): the last W−1 conv inputs
  ssm: Tensor; // (batch, d_inner, N)
  /** set for speculative decoding (batch 1): the states live in this store instead (./state_store.ts) */
  store?: MambaStateStore;
}
export interface Mamba2Cache {
  kind: 'mamba2';
  conv: Tensor; // (batch, d_inner + 2·d_xb, W−1)
  ssm: Tensor; // (batch, H, P, N)
  store?: MambaStateStore;
}
export type LayerCache = AttentionCache | Mamba1Cache | Mamba2Cache;

export interface ModelCache {
  batch: number;
  /** tokens already folded into the caches */
  length: number;
  layers: LayerCache[];
}

export function newCache(m: HybridModel, batch: number): ModelCache {
  const layers = layerKinds(m).map((kind): LayerCache => {
    if (kind === 'attention') return { kind, k: new Float64Array(0), v: new Float64Array(0), cap: 0 };
    const c = m.mamba!;
    if (kind === 'mamba1') return { kind, conv: Tensor.zeros([batch, c.dInner, c.dConv - 1]), ssm: Tensor.zeros([batch, c.dInner, c.dState]) };
    return { kind, conv: Tensor.zeros([batch, c.dInner + 2 * c.dXb, c.dConv - 1]), ssm: Tensor.zeros([batch, c.nHeads, c.dState, c.dState]) };
  });
  return { batch, length: 0, layers };
}

// ---------------------------------------------------------------- small helpers (dtype-agnostic)

/** h += d elementwise, in h's own precision (the float32 hidden state of a float32 backend rounds each sum). */
export function addInto(h: Float32Array | Float64Array, d: ArrayLike<number>): void {
  for (let i = 0; i < h.length; i++) h[i]! += d[i]!;
}

/** (B, L, C) → (B, C, L) and back. */
const toChannels = (t: Tensor) => t.transpose([0, 2, 1]);

/**
 * Repeat channels of x (…, d_xb) to (…, d_inner) in pieces of width w: output channel c reads
 * source channel ⌊⌊c/w⌋/rep⌋·w + c mod w, rep = d_inner/d_xb (each piece repeated rep times consecutively).
 */
export function repeatPieces(x: Tensor, dInner: number, w: number): Tensor {
  const dXb = x.shape[x.rank - 1]!;
  const rep = dInner / dXb;
  const rows = x.size / dXb;
  const out = Tensor.zeros([...x.shape.slice(0, -1), dInner], x.dtype, x.name);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < dInner; c++) out.data[r * dInner + c] = x.data[r * dXb + Math.floor(Math.floor(c / w) / rep) * w + (c % w)]!;
  return out;
}

/** Each value of t repeated `times` times consecutively (per-head parameters → per-channel), in `shape`. */
function repeatEach(t: Tensor, times: number, shape: number[]): Tensor {
  const out = new Float64Array(t.size * times);
  for (let i = 0; i < t.size; i++) out.fill(t.data[i]!, i * times, (i + 1) * times);
  return new Tensor(out, shape);
}

/**
 * repeatEach of a small per-head parameter (A, D, dt_bias), reused across decode steps: kept with a copy of
 * the values it was made from and rebuilt whenever they differ (a training step changes weights in place).
 */
const repeatMemo = new WeakMap<object, Map<string, { src: Float64Array; out: Tensor }>>();
function repeatEachOnce(key: object, t: Tensor, times: number, shape: number[]): Tensor {
  let m = repeatMemo.get(key);
  if (!m) repeatMemo.set(key, (m = new Map()));
  const k = `${times}:${shape.join(',')}`;
  const hit = m.get(k);
  if (hit && hit.src.length === t.size && hit.src.every((v, i) => v === t.data[i])) return hit.out;
  const out = repeatEach(t, times, shape);
  // copies of finite weights: marked, so the ops reading them at every step do not rescan them; and immutable
  // (never written: changed values make a new array), so a backend may keep its float32 copy of them
  if (out.data.every(Number.isFinite)) markFinite(out.data);
  markImmutable(out.data);
  m.set(k, { src: Float64Array.from(t.data), out });
  return out;
}

/** Split the last axis into consecutive blocks of the given widths. */
function splitLast(t: Tensor, widths: number[]): Tensor[] {
  let at = 0;
  return widths.map((w) => {
    const s = t.slice(t.rank - 1, at, at + w);
    at += w;
    return s;
  });
}

function mlp(ops: Ops, W: WeightStore, p: string, x: Tensor): Promise<Tensor> {
  return ops.gatedMlp(x, W.get(`${p}.mlp.gate_proj.weight`), W.get(`${p}.mlp.up_proj.weight`), W.get(`${p}.mlp.down_proj.weight`));
}

// ---------------------------------------------------------------- attention layer

async function attentionMixer(ops: Ops, m: HybridModel, p: string, x: Tensor, cache: AttentionCache, pos0: number): Promise<Tensor> {
  const c = m.llama;
  const W = m.weights;
  const [batch, L] = x.shape as [number, number, number];
  const heads = (t: Tensor, H: number) => t.reshape([batch, L, H, c.headDim]).transpose([0, 2, 1, 3]);
  const positions = Array.from({ length: L }, (_, i) => pos0 + i);
  const inv = ropeInvFreq(c.headDim, c.ropeTheta, c.ropeScaling);
  const proj = (n: string) => ({ weight: W.get(`${p}.self_attn.${n}_proj.weight`), bias: attnBias(c, W, `${p}.self_attn.${n}_proj.bias`) });
  const [qp, kp, vp] = (await ops.linears(x, [proj('q'), proj('k'), proj('v')])) as [Tensor, Tensor, Tensor];
  const q = applyRope(heads(qp, c.numHeads), positions, inv);
  const k = applyRope(heads(kp, c.numKvHeads), positions, inv);
  const v = heads(vp, c.numKvHeads);
  writeKv(cache, k, v, pos0, batch, c.numKvHeads, c.headDim, c.maxPositionEmbeddings);
  const y = cachedAttention(q, cache, pos0 + L, c.numKvHeads, ops); // query t sits at position pos0 + t
  return ops.linear(
    y.transpose([0, 2, 1, 3]).reshape([batch, L, c.numHeads * c.headDim]),
    W.get(`${p}.self_attn.o_proj.weight`),
    attnBias(c, W, `${p}.self_attn.o_proj.bias`),
  );
}

/** Write new keys and values (batch, Hkv, L, hd) at positions pos0 … pos0+L−1, growing the buffers if needed. */
export function writeKv(cache: AttentionCache, k: Tensor, v: Tensor, pos0: number, batch: number, Hkv: number, hd: number, maxPos: number): void {
  const L = k.shape[2]!;
  const need = pos0 + L;
  if (need > cache.cap) {
    const cap = Math.min(maxPos, Math.max(need, 2 * cache.cap, 64));
    const grow = (old: Float64Array) => {
      const n = new Float64Array(batch * Hkv * cap * hd);
      for (let bh = 0; bh < batch * Hkv; bh++) n.set(old.subarray(bh * cache.cap * hd, bh * cache.cap * hd + pos0 * hd), bh * cap * hd);
      return n;
    };
    cache.k = grow(cache.k);
    cache.v = grow(cache.v);
    cache.cap = cap;
  }
  for (let bh = 0; bh < batch * Hkv; bh++) {
    cache.k.set(k.data.subarray(bh * L * hd, (bh + 1) * L * hd), (bh * cache.cap + pos0) * hd);
    cache.v.set(v.data.subarray(bh * L * hd, (bh + 1) * L * hd), (bh * cache.cap + pos0) * hd);
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
 * add's latency per multiply-add). The same operations on the same values, so the same bits. For a window of
 * queries (verify, prefill) a backend with `ops.cachedAttention` (wasm-simd) runs the two products as SIMD
 * kernels around the same `softmaxPrefix`, again the same bits (spec/speculative.spec.ts compares the two).
 */
export function cachedAttention(q: Tensor, cache: AttentionCache, T: number, Hkv: number, ops?: Pick<Ops, 'cachedAttention'>): Tensor {
  const [batch, H, L, hd] = q.shape as [number, number, number, number];
  const qd = q.data instanceof Float64Array ? q.data : new Float64Array(q.data);
  // one query per head (decode): copying the keys and values into the kernel's memory costs what it saves
  if (ops?.cachedAttention && L > 1)
    return new Tensor(ops.cachedAttention(qd, { batch, H, L, hd, Hkv, cap: cache.cap, T }, cache.k, cache.v, softmaxPrefix), [batch, H, L, hd], 'attention');
  const K = cache.k;
  const V = cache.v;
  const out = new Float64Array(batch * H * L * hd);
  const s = new Float64Array(T);
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
export function softmaxPrefix(s: Float64Array, off: number, n: number): void {
  let mx = -Infinity;
  for (let j = off; j < off + n; j++) if (s[j]! > mx) mx = s[j]!;
  let z = 0;
  for (let j = off; j < off + n; j++) z += s[j] = Math.exp(s[j]! - mx);
  for (let j = off; j < off + n; j++) s[j] = s[j]! / z;
}

/** s_j = (q · k_j)·scale for keys j < n at K[kv + j·hd …], four keys at a time (four independent sums). */
function scores(q: Float64Array, qo: number, K: Float64Array, kv: number, hd: number, n: number, scale: number, s: Float64Array): void {
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
      const qi = q[qo + i]!;
      d0 += qi * K[k0 + i]!;
      d1 += qi * K[k1 + i]!;
      d2 += qi * K[k2 + i]!;
      d3 += qi * K[k3 + i]!;
    }
    s[j] = d0 * scale;
    s[j + 1] = d1 * scale;
    s[j + 2] = d2 * scale;
    s[j + 3] = d3 * scale;
  }
  for (; j < n; j++) {
    const k0 = kv + j * hd;
    let d = 0;
    for (let i = 0; i < hd; i++) d += q[qo + i]! * K[k0 + i]!;
    s[j] = d * scale;
  }
}

/** out[qo + i] = Σ_{j<n} w_j · V[kv + j·hd + i], summed over j in order, four channels i at a time. */
function weightedValues(w: Float64Array, V: Float64Array, kv: number, hd: number, n: number, out: Float64Array, qo: number): void {
  let i = 0;
  for (; i + 4 <= hd; i += 4) {
    let a0 = 0;
    let a1 = 0;
    let a2 = 0;
    let a3 = 0;
    for (let j = 0, vo = kv + i; j < n; j++, vo += hd) {
      const wj = w[j]!;
      a0 += wj * V[vo]!;
      a1 += wj * V[vo + 1]!;
      a2 += wj * V[vo + 2]!;
      a3 += wj * V[vo + 3]!;
    }
    out[qo + i] = a0;
    out[qo + i + 1] = a1;
    out[qo + i + 2] = a2;
    out[qo + i + 3] = a3;
  }
  for (; i < hd; i++) {
    let a = 0;
    for (let j = 0, vo = kv + i; j < n; j++, vo += hd) a += w[j]! * V[vo]!;
    out[qo + i] = a;
  }
}

/** The valid keys and values of an attention cache as (batch, Hkv, n, hd) tensors (for inspection and tests). */
export function kvTensors(cache: AttentionCache, n: number, batch: number, Hkv: number, hd: number): { k: Tensor; v: Tensor } {
  const cut = (buf: Float64Array) => {
    const o = new Float64Array(batch * Hkv * n * hd);
    for (let bh = 0; bh < batch * Hkv; bh++) o.set(buf.subarray(bh * cache.cap * hd, bh * cache.cap * hd + n * hd), bh * n * hd);
    return new Tensor(o, [batch, Hkv, n, hd]);
  };
  return { k: cut(cache.k), v: cut(cache.v) };
}

/** HF `attention_bias: true` puts a bias on each of q, k, v and o (required then, absent otherwise). */
function attnBias(c: LlamaConfig, W: WeightStore, name: string): Tensor | undefined {
  return c.attentionBias ? W.get(name) : undefined;
}

function opt(W: WeightStore, name: string): Tensor | undefined {
  return W.has(name) ? W.get(name) : undefined;
}

// ---------------------------------------------------------------- Mamba-1 layer

async function mamba1Mixer(ops: Ops, m: HybridModel, p: string, o: Tensor, cache: Mamba1Cache): Promise<Tensor> {
  const c = m.mamba!;
  const W = m.weights;
  const q = `${p}.mamba`;
  const [Bt, L] = o.shape as [number, number, number];
  const { dInner, dState: N } = c;
  const clean = c.semantics === 'clean';
  const w = clean ? m.llama.headDim : N; // repeat piece width
  if (clean && w % N !== 0) throw new ArgumentError('clean semantics', `head_dim (${w}) a multiple of d_state (${N})`, w);
  const G = dInner / N; // channel groups of the scan (= C heads)
  const A = W.get(`${q}.A_log`).map((a) => -Math.exp(a), 'float64');
  const D = W.get(`${q}.D`);
  const deltaBias = W.get(`${q}.dt_proj.bias`);
  const convW = W.get(`${q}.conv1d.weight`).reshape([dInner, c.dConv]);
  const convB = opt(W, `${q}.conv1d.bias`);

  const x = repeatPieces(await ops.linear(o, W.get(`${q}.in_proj_x.weight`)), dInner, w); // (B, L, d_inner)
  const z = await ops.linear(o, W.get(`${q}.in_proj_z.weight`));
  const Bsrc = await ops.linear(o, W.get(`${q}.B_proj.weight`)); // (B, L, d_xb)
  // repeated like x, channels g·N … g·N+N−1 of Bg are exactly the B piece that channel group g reads
  // (upstream: piece ⌊g/rep⌋; clean: the d_state-wide slice of its kv head) — so Bg viewed as (…, G, N) is B per group
  const Bg = repeatPieces(Bsrc, dInner, w); // (B, L, d_inner)
  const Cm = await ops.linear(o, W.get(`${q}.C_proj.weight`)); // (B, L, d_inner)
  const dtLow = await ops.linear(o, W.get(`${q}.dt_proj_down.weight`));
  const delta = await ops.linear(dtLow, W.get(`${q}.dt_proj.weight`), clean ? undefined : deltaBias); // upstream: bias here AND as delta_bias

  let y: Tensor; // (B, L, d_inner)
  if (cache.store) {
    // a state store (speculative decoding: circular conv buffer + MultiStep from one cached state, Algorithm 2)
    const xs = await cache.store.convolve(ops, x, convW, convB, 'silu');
    y = await cache.store.scan(ops, { x: xs, delta, B: Bg.reshape([1, L, G, N]), C: Cm.reshape([1, L, G, N]), z, A, D, deltaBias });
  } else if (L === 1) {
    // decode: conv window update, then one state update per channel group (multi-head layout, H = G, P = N)
    const conv = await ops.causalConv1dUpdate({ x: x.reshape([Bt, dInner, 1]), convState: cache.conv, weight: convW, bias: convB, activation: 'silu' });
    cache.conv = conv.convState.named('conv');
    const st = await ops.selectiveStateUpdate({
      state: cache.ssm.reshape([Bt, G, N, N]),
      x: conv.out.reshape([Bt, G, N]),
      delta: delta.reshape([Bt, G, N]),
      A: A.reshape([G, N, N]),
      B: Bg.reshape([Bt, G, N]),
      C: Cm.reshape([Bt, G, N]),
      D: D.reshape([G, N]),
      z: z.reshape([Bt, G, N]),
      deltaBias: deltaBias.reshape([G, N]),
      deltaSoftplus: true,
    });
    cache.ssm = st.state.reshape([Bt, dInner, N]).named('ssm');
    y = st.out.reshape([Bt, 1, dInner]);
  } else {
    const xc = toChannels(x);
    const conv = await ops.causalConv1d({ x: xc, weight: convW, bias: convB, activation: 'silu', initialStates: cache.conv });
    cache.conv = conv.finalStates.named('conv');
    // B: (B, G, N, L) grouped, group g = the N values of Bg at channels g·N…; C likewise from C_proj
    const Bgrp = Bg.reshape([Bt, L, G, N]).transpose([0, 2, 3, 1]);
    const Cgrp = Cm.reshape([Bt, L, G, N]).transpose([0, 2, 3, 1]);
    const scan = await ops.selectiveScan({
      u: conv.out,
      delta: toChannels(delta),
      A,
      B: Bgrp,
      C: Cgrp,
      D,
      z: toChannels(z),
      deltaBias: deltaBias,
      deltaSoftplus: true,
      initialState: cache.ssm,
    });
    cache.ssm = scan.lastState.named('ssm');
    y = toChannels(scan.out);
  }
  return ops.linear(y, W.get(`${q}.out_proj.weight`));
}

// ---------------------------------------------------------------- Mamba-2 layer

async function mamba2Mixer(ops: Ops, m: HybridModel, p: string, o: Tensor, cache: Mamba2Cache): Promise<Tensor> {
  const c = m.mamba!;
  const W = m.weights;
  const q = `${p}.mamba`;
  const [Bt, L] = o.shape as [number, number, number];
  const { dInner, dXb, dState: N, nHeads: H } = c;
  const P = N; // headdim = d_state
  const A = W.get(`${q}.A_log`).map((a) => -Math.exp(a), 'float64'); // (H)
  const D = W.get(`${q}.D`);
  const deltaBias = W.get(`${q}.dt_bias`);
  const convDim = dInner + 2 * dXb;
  const convW = W.get(`${q}.conv1d.weight`).reshape([convDim, c.dConv]);
  const convB = opt(W, `${q}.conv1d.bias`);
  const zxbcdt = await ops.linear(o, W.get(`${q}.in_proj.weight`), opt(W, `${q}.in_proj.bias`));
  const [z, xBC, delta] = splitLast(zxbcdt, [dInner, convDim, H]) as [Tensor, Tensor, Tensor];

  const act = m.ablation?.convActivation === false ? null : 'silu';
  let xs: Tensor; // after conv + silu, (B, L, convDim)
  if (cache.store) {
    xs = await cache.store.convolve(ops, xBC, convW, convB, act);
  } else if (L === 1) {
    const cu = await ops.causalConv1dUpdate({ x: xBC.reshape([Bt, convDim, 1]), convState: cache.conv, weight: convW, bias: convB, activation: act });
    cache.conv = cu.convState.named('conv');
    xs = cu.out.reshape([Bt, 1, convDim]);
  } else {
    const cv = await ops.causalConv1d({ x: toChannels(xBC), weight: convW, bias: convB, activation: act, initialStates: cache.conv });
    cache.conv = cv.finalStates.named('conv');
    xs = toChannels(cv.out);
  }
  const [x0, B0, C] = splitLast(xs, [dXb, dXb, dInner]) as [Tensor, Tensor, Tensor];
  const x = repeatPieces(x0, dInner, P).reshape([Bt, L, H, P]); // head h reads kv head ⌊h / (H/H_kv)⌋
  const Bh = repeatPieces(B0, dInner, N).reshape([Bt, L, H, N]);
  const Ch = C.reshape([Bt, L, H, N]);
  let y: Tensor;
  if (cache.store) {
    // channels (h, p) of the multi-step layout: per-head Δ, A, D, dt_bias repeated over p; B/C grouped per head
    y = await cache.store.scan(ops, {
      x: x.reshape([1, L, H * P]),
      delta: repeatEach(delta, P, [1, L, H * P]),
      B: Bh,
      C: Ch,
      A: repeatEachOnce(W.tensors.get(`${q}.A_log`)!.data, A, P * N, [H * P, N]),
      D: repeatEachOnce(D.data, D, P, [H * P]),
      deltaBias: repeatEachOnce(deltaBias.data, deltaBias, P, [H * P]),
    });
  } else if (L === 1) {
    const st = await ops.selectiveStateUpdate({
      state: cache.ssm,
      x: x.reshape([Bt, H, P]),
      delta: repeatEach(delta, P, [Bt, H, P]),
      A: repeatEachOnce(W.tensors.get(`${q}.A_log`)!.data, A, P * N, [H, P, N]),
      B: Bh.reshape([Bt, H, N]),
      C: Ch.reshape([Bt, H, N]),
      D: repeatEachOnce(D.data, D, P, [H, P]),
      deltaBias: repeatEachOnce(deltaBias.data, deltaBias, P, [H, P]),
      deltaSoftplus: true,
    });
    cache.ssm = st.state.named('ssm');
    y = st.out.reshape([Bt, 1, dInner]);
  } else {
    const r = await ops.ssdChunkScan({ x, delta: delta.reshape([Bt, L, H]), A, B: Bh, C: Ch, D, deltaBias, deltaSoftplus: true, initialState: cache.ssm }, 64);
    cache.ssm = r.finalState.astype('float64').named('ssm');
    y = r.out.reshape([Bt, L, dInner]);
  }
  const yn = m.ablation?.gatedNorm === false ? y : await ops.gatedRmsnorm(y, W.get(`${q}.norm.weight`), z, { eps: 1e-5, groupSize: P, normBeforeGate: false });
  return ops.linear(yn, W.get(`${q}.out_proj.weight`));
}

// ---------------------------------------------------------------- the model

/**
 * Run `ids` (batch × L token ids) through the model from the state in `cache` (which is advanced), and
 * return the logits (batch, L, vocab). L = 1 takes the decode path of the Mamba layers. A plain Llama
 * decoding one token on wasm-simd runs the fused step of ./llama_step.ts instead (same bits; `fused: false`
 * keeps this path, for comparing the two).
 */
export async function forward(ops: Ops, m: HybridModel, ids: number[][], cache: ModelCache, opts: { fused?: boolean } = {}): Promise<Tensor> {
  const c = m.llama;
  const W = m.weights;
  const batch = ids.length;
  const L = ids[0]?.length ?? 0;
  if (batch !== cache.batch) throw new ArgumentError('ids', `${cache.batch} rows (the cache's batch)`, batch);
  if (L === 0 || ids.some((r) => r.length !== L))
    throw new ArgumentError(
      'ids',
      'equal-length, non-empty rows',
      ids.map((r) => r.length),
    );
  if (cache.length + L > c.maxPositionEmbeddings)
    throw new ArgumentError(
      'ids',
      `at most max_position_embeddings = ${c.maxPositionEmbeddings} positions in all (${cache.length} already in the cache)`,
      cache.length + L,
    );
  // a plain Llama decoding a token or a few on wasm-simd: fused steps, one token each, the same arithmetic (./llama_step.ts)
  if (opts.fused !== false && fusedStepApplies(ops, m, batch, L)) {
    const row = ids[0]!;
    row.forEach((id, t) => {
      if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new ArgumentError(`ids[0][${t}]`, `a token id in [0, ${c.vocabSize})`, id);
    });
    if (L === 1) return llamaStep(m, row[0]!, cache);
    const logits = new Float32Array(L * c.vocabSize);
    row.forEach((id, t) => logits.set(llamaStep(m, id, cache).data, t * c.vocabSize));
    return new Tensor(logits, [1, L, c.vocabSize], 'linear');
  }
  const emb = W.get('model.embed_tokens.weight');
  const dModel = c.hiddenSize;
  const h = Tensor.zeros([batch, L, dModel], ops.dtype === 'float64' ? 'float64' : 'float32', 'hidden');
  ids.forEach((row, b) =>
    row.forEach((id, t) => {
      if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new ArgumentError(`ids[${b}][${t}]`, `a token id in [0, ${c.vocabSize})`, id);
      h.data.set(emb.data.subarray(id * dModel, (id + 1) * dModel), (b * L + t) * dModel);
    }),
  );
  const kinds = layerKinds(m);
  const eps = m.mamba?.rmsNormEps ?? c.rmsNormEps;
  for (let i = 0; i < kinds.length; i++) {
    const p = `model.layers.${i}`;
    const lc = cache.layers[i]!;
    const layerEps = kinds[i] === 'attention' ? c.rmsNormEps : eps;
    const x = rmsnorm(h, W.get(`${p}.input_layernorm.weight`), layerEps);
    const mixed =
      lc.kind === 'attention'
        ? await attentionMixer(ops, m, p, x, lc, cache.length)
        : lc.kind === 'mamba1'
          ? await mamba1Mixer(ops, m, p, x, lc)
          : await mamba2Mixer(ops, m, p, x, lc);
    addInto(h.data, mixed.data);
    addInto(h.data, (await mlp(ops, W, p, rmsnorm(h, W.get(`${p}.post_attention_layernorm.weight`), layerEps))).data);
  }
  cache.length += L;
  const head = c.tieWordEmbeddings && !W.has('lm_head.weight') ? emb : W.get('lm_head.weight');
  return ops.linear(rmsnorm(h, W.get('model.norm.weight'), c.rmsNormEps), head);
}
