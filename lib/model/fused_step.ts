/**
 * One decode step of a Llama or of its hybrid with Mamba layers, batch 1, one token, on the wasm-simd
 * backend — fused in the manner of llama2.c's run.c: the weights are looked up and the buffers allocated once
 * per model, every product is a direct call into the SIMD kernels (lib/simd/gemm.ts), and nothing between them
 * builds a tensor or re-checks a shape (`forward` has checked the token and the cache before coming here).
 *
 *   h = embed(id)
 *   for each layer:   x = rmsnorm(h)·w₁
 *                     attention:  [q | k | v] = x·[W_q; W_k; W_v]ᵀ;  q, k = rope(q, k);  append k, v to the cache
 *                                 h += attention(q, K, V)·W_oᵀ
 *                     Mamba-2:    [z | xBC | dt] = x·W_inᵀ;  [x | B | C] = silu(conv(window, xBC))
 *                                 h_t = exp(Δ A) h_{t−1} + Δ B x,  y = C·h_t + D x  (one MultiStep step)
 *                                 h += rmsnorm_gated(y, z)·W_outᵀ
 *                     Mamba-1:    [x | z | B | C | Δ↓] = x·[W_x; W_z; W_B; W_C; W_Δ↓]ᵀ;  Δ = Δ↓·W_Δᵀ;  x = silu(conv(window, x))
 *                                 h_t = exp(Δ A) h_{t−1} + Δ B x,  y = (C·h_t + D x)·silu(z);  h += y·W_outᵀ
 *                     x = rmsnorm(h)·w₂;  [g | u] = x·[W_gate; W_up]ᵀ;  h += (silu(g) ⊙ u)·W_downᵀ
 *   logits = rmsnorm(h)·w · W_headᵀ
 *
 * It is lib/model/hybrid.ts `forward` on that backend operation for operation — the same float64 norm,
 * RoPE and attention, the same conv sums and SSM step on the same float32 values, the same products, the same
 * roundings into the float32 hidden state — so the logits and the caches are the same to the bit
 * (spec/models.spec.ts compares the two on random Llamas and on hybrids of both Mamba variants). `forward` takes this path by itself when
 * it applies (`fusedStepApplies`); a speculative draft, the teacher's generation, a hybrid's plain decoding and
 * the demo all decode through it. Per token it removes most of what is not arithmetic (tensor objects, per-op
 * checks, awaits, name lookups): on the d512 / 8-layer bench models (bench/models.ts) a pure Mamba-2 hybrid's
 * token took ~1.6× the Llama's before its layers came here.
 *
 * Products that read the same row run as one hand-off between the SIMD threads (lib/simd/gemm.ts `linearMany`:
 * each weight packed where `linear` packs it, no copy; each product's own bits): q/k/v, the MLP's gate/up,
 * Mamba-1's five products of x (Mamba-2's in_proj is one matrix already) — a d512 Llama token makes 33 hand-offs
 * instead of 57. (Measured with the stacked-copy version of the same grouping, 2026-12-05, d512 / 8-layer Llama,
 * vocab 32000, one process, alternated, 15 rounds of 32 tokens, medians, this 2-core VM: 2 threads 3.42 → 3.20
 * ms/token, 1 thread 5.14 → 5.22 (noise); its 50% Mamba-1 hybrid, 9 rounds: 2 threads 5.52 → 4.54.)
 *
 * Symbols: d hidden_size · V vocab · H, H_kv attention and kv heads · hd head_dim · F intermediate_size ·
 * pos the token's position. This file is the plan and the loop; a layer's parts are the mixers' own fused
 * steps (`attentionStep` in ./mixers/attention.ts, `mamba1Step` and `mamba2Step` in ./mixers/mamba1.ts and
 * mamba2.ts, `mlpStep` in ./mixers/mlp.ts), beside their other paths and reading the same weight names. A cache
 * whose Mamba layers hold a speculative state store (Algorithm 2's) takes the generic forward.
 */
import { SimdGemm } from '../simd/gemm.js';
import { rmsnormRows } from '../ref/norm.js';
import { ropeAngles } from '../ref/rope.js';
import { Tensor } from '../tensor.js';
import type { Ops } from '../ops.js';
import { attentionNames, attentionRope, attentionStep, type AttentionStepWeights } from './mixers/attention.js';
import {
  addInto,
  blockEps,
  blockNames,
  fusedStepTakes,
  layerKinds,
  linearInto,
  lmHeadName,
  type AttentionCache,
  type HybridModel,
  type Mamba1Cache,
  type Mamba2Cache,
  type ModelCache,
} from './mixers/block.js';
import { mamba1Step, mamba1StepPlan, type Mamba1StepPlan } from './mixers/mamba1.js';
import { mamba2Step, mamba2StepPlan, type Mamba2StepPlan } from './mixers/mamba2.js';
import { mlpNames, mlpStep } from './mixers/mlp.js';
import { lookup } from '../checked.js';
import { PackedWeight, weightRow } from '../simd/packed_weight.js';
import type { Bf16Panels } from '../simd/gemm.js';

type FloatArray = Float32Array | Float64Array;

/**
 * The step applies to a Llama or a hybrid of attention and Mamba layers, one row, on wasm-simd, its Mamba
 * layers' caches plain (no speculative state store), and `forward` takes it for up to FUSED_MAX_TOKENS tokens,
 * one step each: per row the products, the norms, RoPE, attention and the SSM step do the same arithmetic
 * whether the rows come together or one by one (a speculative draft catching up on two accepted tokens); past
 * that, the products over several rows at once win.
 */
const FUSED_MAX_TOKENS = 3;
export function fusedStepApplies(ops: Ops, m: HybridModel, cache: ModelCache, batch: number, L: number): boolean {
  if (ops.name !== 'wasm-simd' || batch !== 1 || L < 1 || L > FUSED_MAX_TOKENS) return false;
  const K = m.mamba?.dConv ?? 0;
  return cache.layers.every((lc) => lc.kind === 'attention' || fusedStepTakes(K, lc));
}

/** A matrix as the products take it: a float array, or a bf16 checkpoint's panels (lib/simd/packed_weight.ts). */
type Matrix = FloatArray | Bf16Panels;

interface LayerPlan {
  ln1: FloatArray;
  ln2: FloatArray;
  eps: number; // the block's norms' ε (a Mamba layer's may differ from the Llama's)
  attention?: AttentionStepWeights; // an attention layer's projections
  mamba1?: Mamba1StepPlan; // a Mamba-1 layer's weights and buffers
  mamba2?: Mamba2StepPlan; // a Mamba-2 layer's weights and buffers
  gate: Matrix;
  up: Matrix;
  down: Matrix;
}

/** Weights looked up once and buffers allocated once, for one model (rebuilt when a weight tensor is replaced). */
interface Plan {
  /** every weight tensor the plan holds, by name: a replaced one (`tensors.set`) makes a new plan */
  held: Array<[string, Tensor]>;
  layers: LayerPlan[];
  emb: Tensor; // (V, d): its rows read by weightRow (a float array or bf16 panels)
  norm: FloatArray; // (d)
  head: Matrix; // (V, d)
  inv: Float64Array; // (hd/2): RoPE's inverse frequencies
  rope: { cos: Float64Array; sin: Float64Array }; // (hd/2) each: this token's RoPE angles, computed once for every layer
  h: Float32Array; // (d): the hidden state, float32 as on every float32 backend
  x: Float64Array; // (d): a normed row
  qkv: Float32Array; // (H·hd + 2·H_kv·hd): [q | k | v], one product's output (q, k, v are its slices)
  q: Float32Array; // (H·hd)
  qr: Float64Array; // (H·hd): q after RoPE
  kr: Float64Array; // (H_kv·hd): k after RoPE
  k: Float32Array; // (H_kv·hd)
  v: Float32Array; // (H_kv·hd)
  o: Float32Array; // (d): the attention's or the MLP's output
  gu: Float32Array; // (2F): [g | u], one product's output
  g: Float32Array; // (F): gate
  u: Float32Array; // (F): up
  a: Float32Array; // (F): silu(gate) ⊙ up
}

const plans = new WeakMap<HybridModel, Plan>();

function planOf(m: HybridModel): Plan {
  const W = m.weights;
  const old = plans.get(m);
  if (old && old.held.every(([name, t]) => W.tensors.get(name) === t)) return old;
  const c = m.llama;
  const held: Array<[string, Tensor]> = [];
  const tensor = (name: string): Tensor => {
    const t = W.get(name); // marks the array immutable (so its packed copy stays resident) and finite
    held.push([name, lookup(W.tensors, name)]);
    return t;
  };
  const get = (name: string): FloatArray => tensor(name).data; // a vector (norms, biases)
  const matrix = (name: string): Matrix => {
    const t = tensor(name); // (out, in)
    return t instanceof PackedWeight ? t.panels : t.data;
  };
  const bias = (name: string | undefined) => (name === undefined ? undefined : get(name));
  // the parameter names of ./mixers/ (the one description of the attention, MLP and block)
  const kinds = layerKinds(m);
  const d = c.hiddenSize;
  const layers = Array.from({ length: c.numLayers }, (_, i): LayerPlan => {
    const { prefix: p, norm1, norm2 } = blockNames(i);
    const a = attentionNames(c, p);
    const f = mlpNames(p);
    return {
      ln1: get(norm1),
      eps: blockEps(m, kinds[i]),
      attention:
        kinds[i] === 'attention'
          ? {
              q: matrix(a.q.weight),
              k: matrix(a.k.weight),
              v: matrix(a.v.weight),
              o: matrix(a.o.weight),
              bq: bias(a.q.bias),
              bk: bias(a.k.bias),
              bv: bias(a.v.bias),
              bo: bias(a.o.bias),
            }
          : undefined,
      mamba1: kinds[i] === 'mamba1' ? mamba1StepPlan(m, p, tensor, matrix) : undefined,
      mamba2: kinds[i] === 'mamba2' ? mamba2StepPlan(m, p, tensor, matrix) : undefined,
      ln2: get(norm2),
      gate: matrix(f.gate),
      up: matrix(f.up),
      down: matrix(f.down),
    };
  });
  const emb = tensor('model.embed_tokens.weight'); // (V, d)
  const [nq, nkv, F] = [c.numHeads * c.headDim, c.numKvHeads * c.headDim, c.intermediateSize];
  const qkv = new Float32Array(nq + 2 * nkv); // (H·hd + 2·H_kv·hd): [q | k | v]
  const gu = new Float32Array(2 * F); // (2F): [gate | up]
  const plan: Plan = {
    held,
    layers,
    emb,
    norm: get('model.norm.weight'),
    head: matrix(lmHeadName(m)),
    inv: attentionRope(c, 0, 1).inv, // RoPE as ./mixers/attention.ts applies it
    h: new Float32Array(d),
    x: new Float64Array(d),
    rope: { cos: new Float64Array(c.headDim / 2), sin: new Float64Array(c.headDim / 2) },
    qr: new Float64Array(c.numHeads * c.headDim),
    kr: new Float64Array(c.numKvHeads * c.headDim),
    qkv,
    q: qkv.subarray(0, nq),
    k: qkv.subarray(nq, nq + nkv),
    v: qkv.subarray(nq + nkv),
    o: new Float32Array(d),
    gu,
    g: gu.subarray(0, F),
    u: gu.subarray(F),
    a: new Float32Array(F),
  };
  plans.set(m, plan);
  return plan;
}

/** x ← rmsnorm(h)·w, written into x (lib/ref/norm.ts, one row). */
function rmsnormInto(h: Float32Array, w: FloatArray, eps: number, x: Float64Array): void {
  rmsnormRows(h, w, 1, h.length, eps, x);
}

/** One token through the model from `cache` (advanced by one position); the logits (1, 1, vocab), float32. */
export function fusedStep(m: HybridModel, id: number, cache: ModelCache): Tensor {
  const c = m.llama;
  const g = SimdGemm.shared();
  const P = planOf(m);
  const { h, x } = P;
  const pos = cache.length;
  weightRow(P.emb, id, h);
  ropeAngles(pos, P.inv, P.rope.cos, P.rope.sin);
  for (let i = 0; i < P.layers.length; i++) {
    const Lw = P.layers[i];
    rmsnormInto(h, Lw.ln1, Lw.eps, x);
    const lc = cache.layers[i];
    if (Lw.mamba2)
      mamba2Step(g, Lw.mamba2, x, lc as Mamba2Cache, P.o); // P.o (d)
    else if (Lw.mamba1) mamba1Step(g, Lw.mamba1, x, lc as Mamba1Cache, P.o);
    else if (Lw.attention) attentionStep(g, c, Lw.attention, P, x, lc as AttentionCache, pos, P.rope);
    else throw new Error(`layer ${i}: no fused step for it (fusedStepApplies admits attention, Mamba-1 and Mamba-2)`);
    addInto(h, P.o);
    rmsnormInto(h, Lw.ln2, Lw.eps, x);
    mlpStep(g, Lw, P, x); // P.o (d)
    addInto(h, P.o);
  }
  cache.length += 1;
  rmsnormInto(h, P.norm, c.rmsNormEps, x);
  const logits = new Float32Array(c.vocabSize); // (V)
  linearInto(g, x, P.head, logits);
  return new Tensor(logits, [1, 1, c.vocabSize], 'linear');
}
