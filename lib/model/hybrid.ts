/**
 * The hybrid model's inference: a Llama whose layers are either kept attention or Mamba layers (PAPER.md §2),
 * read top to bottom like llama2.c's run.c — the caches, then the model. Each mixer's parameters and wiring
 * are in one file under ./mixers/ (attention.ts, mamba1.ts, mamba2.ts, mlp.ts), shared with the training path
 * (lib/train/model.ts); the block around them and the symbols are in ./mixers/block.ts.
 *
 *   h = embed(ids)                                               (b, l, d)
 *   for each layer i:   attention (i ∈ attn_layers, or a plain Llama):  h += attention(rmsnorm₁ h)
 *                       Mamba-1 / Mamba-2 (the others):                 h += mamba(rmsnorm₁ h)
 *                       then                                            h += mlp(rmsnorm₂ h)
 *   logits = lm_head(rmsnorm(h))                                 (b, l, V)
 *
 * Prefill (l > 1 tokens) uses the parallel/chunked ops (selective scan, SSD, conv1d) starting from the
 * cached states, so any prefix can be prefilled in pieces; decode (l = 1) uses the single-step ops (conv
 * update, state update). Every matrix product, scan, conv and gated norm goes through `ops` (the backend:
 * float64 reference or a GPU.js kernel); RMSNorm, RoPE, softmax attention and SwiGLU are plain TypeScript.
 *
 * Symbols: b batch · l tokens in this call · d hidden_size · V vocab (the mixers' own in ./mixers/block.ts).
 */
import { ArgumentError } from '../errors.js';
import type { Ops } from '../ops.js';
import { rmsnorm } from '../ref/norm.js';
import { Tensor } from '../tensor.js';
import { weightRow } from '../simd/packed_weight.js';
import { fusedStep, fusedStepApplies } from './fused_step.js';
import { attentionInfer } from './mixers/attention.js';
import {
  addInto,
  blockEps,
  blockNames,
  layerKinds,
  lmHeadName,
  type HybridModel,
  type LayerCache,
  type ModelCache,
} from './mixers/block.js';
import { mamba1Infer } from './mixers/mamba1.js';
import { mamba2Infer } from './mixers/mamba2.js';
import { mlpInfer } from './mixers/mlp.js';

// the names callers have always imported from here
export type { AttentionCache, HybridModel, Mamba1Cache, Mamba2Cache, ModelCache } from './mixers/block.js';
export { layerKinds } from './mixers/block.js';
export { cachedAttention, kvTensors, writeKv } from './mixers/attention.js';

// ---------------------------------------------------------------- caches

export function newCache(m: HybridModel, batch: number): ModelCache {
  const layers = layerKinds(m).map((kind): LayerCache => {
    if (kind === 'attention' || !m.mamba)
      return { kind: 'attention', k: new Float64Array(0), v: new Float64Array(0), cap: 0 };
    const c = m.mamba;
    if (kind === 'mamba1')
      return {
        kind,
        conv: Tensor.zeros([batch, c.dInner, c.dConv - 1]),
        ssm: Tensor.zeros([batch, c.dInner, c.dState]),
      }; // (b, d_in, K−1), (b, d_in, N)
    return {
      kind,
      conv: Tensor.zeros([batch, c.dInner + 2 * c.dXb, c.dConv - 1]),
      ssm: Tensor.zeros([batch, c.nHeads, c.dState, c.dState]),
    }; // (b, d_in + 2·d_xb, K−1), (b, H, P, N)
  });
  return { batch, length: 0, layers };
}

// ---------------------------------------------------------------- the model

/**
 * Run `ids` (batch × L token ids) through the model from the state in `cache` (which is advanced), and
 * return the logits (batch, L, vocab). L = 1 takes the decode path of the Mamba layers. A plain Llama
 * decoding one token on wasm-simd runs the fused step of ./fused_step.ts instead (same bits; `fused: false`
 * keeps this path, for comparing the two). `head: false` returns the final normed hidden states (b, l, d)
 * instead of the logits (the caller applies the head: `mil eval` takes only the next tokens' log-likelihoods).
 * `float32: true` (`mil eval`) runs attention's scores, softmax and weights·V in float32 where the backend
 * offers it (`ops.attention32`, wasm-simd): faster, not the bits the decode paths share (ATTN_F32_TOL apart);
 * and the RMSNorms, Mamba-2's conv and gated norm as float32 rows (`ops.rows32`: each value the float32 rounding
 * of the reference's, as the decode paths' ops give it, without their transposes and float64 copies).
 */
export async function forward(
  ops: Ops,
  m: HybridModel,
  ids: number[][],
  cache: ModelCache,
  opts: { fused?: boolean; head?: boolean; lastOnly?: boolean; float32?: boolean } = {},
): Promise<Tensor> {
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
  const kinds = layerKinds(m);
  if (cache.layers.length !== kinds.length || cache.layers.some((lc, i) => lc.kind !== kinds[i]))
    throw new ArgumentError(
      'cache',
      `one cache per layer, of its kind (${kinds.join(', ')})`,
      cache.layers.map((lc) => lc.kind),
    );
  // a Llama or a Mamba-2 hybrid decoding a token or a few on wasm-simd: fused steps, one token each, the same
  // arithmetic (./fused_step.ts)
  if (opts.fused !== false && opts.head !== false && fusedStepApplies(ops, m, cache, batch, L)) {
    const row = ids[0];
    row.forEach((id, t) => {
      if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize)
        throw new ArgumentError(`ids[0][${t}]`, `a token id in [0, ${c.vocabSize})`, id);
    });
    if (L === 1) return fusedStep(m, row[0], cache);
    const logits = new Float32Array(L * c.vocabSize); // (l, V)
    row.forEach((id, t) => logits.set(fusedStep(m, id, cache).data, t * c.vocabSize));
    return new Tensor(logits, [1, L, c.vocabSize], 'linear');
  }
  const emb = W.get('model.embed_tokens.weight'); // (V, d)
  const dModel = c.hiddenSize;
  const h = Tensor.zeros([batch, L, dModel], ops.dtype === 'float64' ? 'float64' : 'float32', 'hidden'); // (b, l, d)
  ids.forEach((row, b) =>
    row.forEach((id, t) => {
      if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize)
        throw new ArgumentError(`ids[${b}][${t}]`, `a token id in [0, ${c.vocabSize})`, id);
      weightRow(emb, id, h.data.subarray((b * L + t) * dModel, (b * L + t + 1) * dModel)); // a float array or bf16 panels
    }),
  );
  // evaluation's float32 rows (ops.rows32) where asked for and the hidden state is float32
  const rows32 = opts.float32 && h.data instanceof Float32Array ? ops.rows32 : undefined;
  const norm = (t: Tensor, w: Tensor, eps: number) => (rows32 ? rows32.rmsnorm(t, w, eps) : rmsnorm(t, w, eps));
  for (let i = 0; i < kinds.length; i++) {
    const { prefix: p, norm1, norm2 } = blockNames(i);
    const lc = cache.layers[i];
    const eps = blockEps(m, lc.kind);
    const x = norm(h, W.get(norm1), eps); // (b, l, d)
    const mixed = // (b, l, d)
      lc.kind === 'attention'
        ? await attentionInfer(ops, m, p, x, lc, cache.length, opts.float32)
        : lc.kind === 'mamba1'
          ? await mamba1Infer(ops, m, p, x, lc)
          : await mamba2Infer(ops, m, p, x, lc, rows32);
    addInto(h.data, mixed.data);
    addInto(h.data, (await mlpInfer(ops, m, p, norm(h, W.get(norm2), eps))).data);
  }
  cache.length += L;
  const final = norm(h, W.get('model.norm.weight'), c.rmsNormEps); // (b, l, d)
  if (opts.head === false) return final;
  if (opts.lastOnly && L > 1) {
    // a prompt's prefill needs only its last position's logits: the head on (b, 1, d), not a (b, l, V) array
    // (2,048 × 128,256 float32 = 1.05 GB for Llama-3.2-1B's vocabulary)
    const last = Tensor.zeros([batch, 1, dModel], final.dtype, 'hidden'); // (b, 1, d)
    for (let b = 0; b < batch; b++)
      last.data.set(final.data.subarray((b * L + L - 1) * dModel, (b * L + L) * dModel), b * dModel);
    return ops.linear(last, W.get(lmHeadName(m))); // (b, 1, V)
  }
  return ops.linear(final, W.get(lmHeadName(m))); // (b, l, d)·(V, d)ᵀ → (b, l, V)
}

/**
 * Prompt positions one forward of a prefill takes at most: a longer prompt goes through the cache in pieces of
 * this many (the same logits: spec/models.spec.ts), so what a forward holds for the moment — attention's scores
 * (H × piece × context), the MLP's (piece × F) — stays bounded however long the prompt. Llama-3.2-1B, 2,048-token
 * prompt in one piece: 537 MB of scores per layer, more than the bf16 checkpoint's 1.3× bound leaves
 * (bench/realsize.ts).
 */
const PREFILL_PIECE = 512;

/**
 * A prompt (one row) into `cache`, in pieces of `piece` positions, the head on the very last position only: the
 * logits after the prompt, (1, 1, V) — or (1, l, V) where a few tokens take the fused steps. What `generate` and
 * speculative decoding (lib/decode/speculative.ts prefillSpec) start from.
 */
export async function prefill(
  ops: Ops,
  m: HybridModel,
  prompt: number[],
  cache: ModelCache,
  piece = PREFILL_PIECE,
): Promise<Tensor> {
  if (!Number.isInteger(piece) || piece < 1) throw new ArgumentError('piece', 'a positive integer', piece);
  let a = 0;
  for (; prompt.length - a > piece; a += piece)
    await forward(ops, m, [prompt.slice(a, a + piece)], cache, { head: false }); // (1, piece, d), dropped
  return forward(ops, m, [prompt.slice(a)], cache, { lastOnly: true });
}
