/**
 * The hybrid model's description shared by inference (lib/model/hybrid.ts) and training (lib/train/model.ts):
 * what a model is, which mixer each layer has, the caches of the inference path, and the block around a mixer.
 * Each mixer's own parameters and wiring live in one file beside this one: attention.ts, mamba1.ts, mamba2.ts,
 * mlp.ts — each with its inference path (caches) and its training path (saved activations, backward).
 *
 * Symbols (PAPER.md's notation; shapes as in the comments of every file here):
 *   b batch · l sequence length · d d_model (hidden_size) · V vocab
 *   H attention heads (numHeads; Mamba-2: nHeads) · H_kv kv heads · hd head_dim
 *   d_in d_inner (= H·hd) · d_xb the width of x and B before their repeat (= H_kv·hd) · N d_state · P = N (Mamba-2 head width)
 *   K conv width (d_conv) · R dt_rank · G = d_in/N channel groups of the Mamba-1 scan
 *
 * One block (both paths):
 *   h ← h + mixer(rmsnorm₁(h))          mixer = attention | Mamba-1 | Mamba-2, by layerKinds
 *   h ← h + mlp(rmsnorm₂(h))            mlp = down(silu(gate n) ⊙ up n)
 * and around the blocks: h = embed(ids), logits = lm_head(rmsnorm(h)).
 */
import { ArgumentError } from '../../errors.js';
import type { LlamaConfig, MambaConfig } from '../config.js';
import type { WeightStore } from '../weights.js';
import type { MambaStateStore } from '../state_store.js';
import { Tensor, type FloatArray } from '../../tensor.js';
import { addBiasRows, type Bf16Panels, type SimdGemm } from '../../simd/gemm.js';

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
  return Array.from({ length: m.llama.numLayers }, (_, i) =>
    !m.mamba || m.mamba.attnLayers.includes(i) ? 'attention' : m.mamba.variant,
  );
}

/** The Mamba settings of a model that has Mamba layers (a mixer of those layers calls this). */
export function mambaOf(m: HybridModel): MambaConfig {
  if (!m.mamba) throw new ArgumentError('mamba', 'a Mamba config (the model has a Mamba layer)', m.mamba); // layerKinds never makes one
  return m.mamba;
}

// ---------------------------------------------------------------- the block around a mixer (both paths)

/** The parameter names of block i: its two norms (the mixer's and the MLP's own are in their files). */
export const blockNames = (i: number) => {
  const p = `model.layers.${i}`;
  return { prefix: p, norm1: `${p}.input_layernorm.weight`, norm2: `${p}.post_attention_layernorm.weight` };
};

/** ε of a block's two norms: the Llama's for attention blocks, the Mamba config's (when set) for Mamba blocks. */
export function blockEps(m: HybridModel, kind: LayerKind): number {
  return kind === 'attention' ? m.llama.rmsNormEps : (m.mamba?.rmsNormEps ?? m.llama.rmsNormEps);
}

/** The output projection (V, d): lm_head, or the embedding when the config ties them and no lm_head is stored. */
export function lmHeadName(m: HybridModel): string {
  return m.llama.tieWordEmbeddings && !m.weights.has('lm_head.weight') ? 'model.embed_tokens.weight' : 'lm_head.weight';
}

// ---------------------------------------------------------------- caches of the inference path

/**
 * Keys and values of an attention layer, written in place: (b, H_kv, cap, hd) float64 buffers whose
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
  conv: Tensor; // (b, d_in, K−1): the last K−1 conv inputs
  ssm: Tensor; // (b, d_in, N)
  /** set for speculative decoding (batch 1): the states live in this store instead (../state_store.ts) */
  store?: MambaStateStore;
}
export interface Mamba2Cache {
  kind: 'mamba2';
  conv: Tensor; // (b, d_in + 2·d_xb, K−1)
  ssm: Tensor; // (b, H, P, N)
  store?: MambaStateStore;
}
export type LayerCache = AttentionCache | Mamba1Cache | Mamba2Cache;

export interface ModelCache {
  batch: number;
  /** tokens already folded into the caches */
  length: number;
  layers: LayerCache[];
}

// ---------------------------------------------------------------- small helpers of both paths

/** h += d elementwise, in h's own precision (the float32 hidden state of a float32 backend rounds each sum). */
export function addInto(h: Float32Array | Float64Array, d: ArrayLike<number>): void {
  for (let i = 0; i < h.length; i++) h[i] += d[i];
}

/**
 * The channel repeat of x and B (…, d_xb) → (…, d_in) in pieces of width w: output channel c reads source
 * channel src[c] = ⌊⌊c/w⌋/rep⌋·w + c mod w, rep = d_in/d_xb (each piece repeated rep times consecutively).
 */
export function repeatSources(dXb: number, dInner: number, w: number): Int32Array {
  const rep = dInner / dXb;
  return Int32Array.from({ length: dInner }, (_, c) => Math.floor(Math.floor(c / w) / rep) * w + (c % w));
}

/** x (…, d_xb) repeated to (…, d_in) by `repeatSources` (inference; the training path is tape.ts `repeatLayer`). */
export function repeatPieces(x: Tensor, dInner: number, w: number): Tensor {
  const dXb = x.shape[x.rank - 1];
  const src = repeatSources(dXb, dInner, w);
  const rows = x.size / dXb;
  const out = Tensor.zeros([...x.shape.slice(0, -1), dInner], x.dtype, x.name); // (…, d_in)
  for (let r = 0; r < rows; r++) for (let c = 0; c < dInner; c++) out.data[r * dInner + c] = x.data[r * dXb + src[c]];
  return out;
}

/**
 * The conv's output rows [x | B | C] (…, 2·d_xb + d_in) → x, B repeated (repeatPieces, pieces of P and N) and C,
 * each (…, d_in): splitLast and repeatPieces in one pass over the rows.
 */
export function splitRepeat(xs: Tensor, dXb: number, dInner: number, P: number, N: number): [Tensor, Tensor, Tensor] {
  const width = xs.shape[xs.rank - 1];
  const rows = xs.size / width;
  const lead = xs.shape.slice(0, -1);
  const sx = repeatSources(dXb, dInner, P);
  const sb = repeatSources(dXb, dInner, N);
  const [x, B, C] = [0, 1, 2].map(() => Tensor.zeros([...lead, dInner], xs.dtype, xs.name)); // (…, d_in) each
  const [xd, bd, cd, s] = [x.data, B.data, C.data, xs.data];
  for (let r = 0; r < rows; r++) {
    const i = r * width;
    const o = r * dInner;
    for (let c = 0; c < dInner; c++) {
      xd[o + c] = s[i + sx[c]];
      bd[o + c] = s[i + dXb + sb[c]];
      cd[o + c] = s[i + 2 * dXb + c];
    }
  }
  return [x, B, C];
}

/** (b, l, C) → (b, C, l) and back. */
export const toChannels = (t: Tensor) => t.transpose([0, 2, 1]);

/** Split the last axis into consecutive blocks of the given widths. */
export function splitLast(t: Tensor, widths: number[]): Tensor[] {
  let at = 0;
  return widths.map((w) => {
    const s = t.slice(t.rank - 1, at, at + w); // (…, w)
    at += w;
    return s;
  });
}

/** A weight the model may lack (an optional bias). */
export function optional(W: WeightStore, name: string): Tensor | undefined {
  return W.has(name) ? W.get(name) : undefined;
}

/**
 * One token through a Mamba layer's causal conv, as the fused decode step runs it (mamba1Step, mamba2Step): for
 * each channel c < C, pre[c] = bias[c] + Σ_k w[c, k]·[window ; x][c, k] with the sums in float64 in lib/ref/conv1d.ts
 * causalConv1dUpdate's order (the same bits), x[c] = xs[at + c]; returns the window moved on by one input,
 * (C, K−1) float32, as conv1dStateAfter leaves it.
 */
export function convWindowStep(
  win: FloatArray, // (C, K−1)
  xs: Float32Array, // x at xs[at …]
  at: number,
  w: FloatArray, // (C, K)
  bias: FloatArray | undefined, // (C)
  K: number,
  pre: Float64Array, // (C): out
): Float32Array {
  const C = pre.length;
  const next = new Float32Array(C * (K - 1)); // (C, K−1)
  for (let c = 0; c < C; c++) {
    const v = xs[at + c];
    let acc = bias ? bias[c] : 0;
    for (let k = 0; k < K - 1; k++) acc += w[c * K + k] * win[c * (K - 1) + k];
    acc += w[c * K + K - 1] * v;
    pre[c] = acc;
    for (let k = 0; k < K - 2; k++) next[c * (K - 1) + k] = win[c * (K - 1) + k + 1];
    next[c * (K - 1) + K - 2] = v;
  }
  return next;
}

/** Whether a Mamba layer's fused step takes its cache: the plain one (no state store), its conv window K − 1 wide. */
export function fusedStepTakes(K: number, cache: Mamba1Cache | Mamba2Cache): boolean {
  return !cache.store && cache.conv.shape.length === 3 && cache.conv.shape[2] === K - 1;
}

/** y = x·Wᵀ (+ b) into y, one row: the wasm-simd backend's `linear` (x rounded to float32; bias added in float32). */
export function linearInto(
  g: SimdGemm,
  x: FloatArray,
  W: FloatArray | Bf16Panels,
  y: Float32Array,
  b?: FloatArray,
): void {
  g.linear(x, 1, x.length, W, y.length, true, y);
  if (b) addBiasRows(y, 1, b);
}
