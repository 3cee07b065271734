/**
 * Training forward and backward of the whole model — the Llama teacher and both hybrids — in float64.
 * Each mixer's training path sits in its own file under lib/model/mixers/ beside its inference path, both
 * read from the one description of its parameters and wiring (attention.ts, mamba1.ts, mamba2.ts, mlp.ts;
 * the tape of saved activations is mixers/tape.ts). This file strings the blocks together, as
 * lib/model/hybrid.ts does for inference (a property test checks the logits agree):
 *
 *   h = embed(ids)                                                        (b·l, d)
 *   per layer:  h += mixer(rmsnorm₁ h);  h += mlp(rmsnorm₂ h)             (b·l, d)
 *   logits = lm_head(rmsnorm(h))                                          (b·l, V)
 *
 * and back in reverse order, each layer's `back` beside its forward (llm.c's train_gpt2.c).
 * Frozen parameters (`trainable(name)` false) get no gradient buffer; gradients still flow through them.
 *
 * Symbols: b batch · l sequence length · d hidden_size · V vocab · H, H_kv heads · hd head_dim (the mixers'
 * own in lib/model/mixers/block.ts). Activations are row-major (b·l, width) Float64Arrays.
 */
import { ArgumentError } from '../errors.js';
import { Tensor } from '../tensor.js';
import { attentionTrain } from '../model/mixers/attention.js';
import { blockEps, blockNames, layerKinds, lmHeadName, type HybridModel } from '../model/mixers/block.js';
import { mamba1Train } from '../model/mixers/mamba1.js';
import { mamba2Train } from '../model/mixers/mamba2.js';
import { mlpTrain } from '../model/mixers/mlp.js';
import {
  FLOAT64_ENGINE,
  add,
  addGrad,
  linearLayer,
  rmsLayer,
  weight,
  type Ctx,
  type Grads,
  type Layer,
  type MatmulEngine,
} from '../model/mixers/tape.js';
import { crossEntropy, embedding, klDivergence, logSoftmax } from '../ref/layers.js';
import type { SimdGemm } from '../simd/gemm.js';
import { isImmutable } from '../weight_registry.js';

export { FLOAT64_ENGINE, type Grads, type MatmulEngine } from '../model/mixers/tape.js';

type F = Float64Array;

/**
 * The float32 SIMD engine over one SimdGemm (weights packed once while they are unchanged). Each product's float32
 * result lands in one scratch buffer the engine keeps (fresh memory is slow to touch here: a new array per product
 * cost more than the product at small batches), and is widened from it into the float64 array the caller keeps.
 */
export function simdEngine(g: SimdGemm): MatmulEngine {
  let scratch = new Float32Array(0); // (the largest product so far: M·N)
  const out = (n: number): Float32Array => {
    if (scratch.length < n) scratch = new Float32Array(n);
    return scratch.subarray(0, n); // (n)
  };
  return {
    forward(x, W, b, N, I, O) {
      const y = g.linear(x, N, I, W, O, isImmutable(W), out(N * O)); // (N, O) float32
      return b ? widenAddRows(y, N, b) : widen(y); // (N, O)
    },
    backward(dy, x, W, N, I, O, needW, needB) {
      const dx = widen(g.matmul(dy, N, O, W, I, out(N * I))); // (N, I)
      const dW = needW ? widen(g.matmulTN(dy, N, O, x, I, out(O * I))) : undefined; // (O, I)
      let db: F | undefined;
      if (needB) {
        db = new Float64Array(O); // (O)
        for (let r = 0; r < N; r++) for (let o = 0; o < O; o++) db[o] += dy[r * O + o];
      }
      return { dx, dW, db };
    },
    attention: (q, k, v) => simdAttention(g, q, k, v),
  };
}

/** A float32 result as float64 (a plain loop: TypedArray.from and .set across element types are far slower in V8). */
function widen(y: Float32Array): F {
  const out = new Float64Array(y.length); // (y's shape)
  for (let i = 0; i < y.length; i++) out[i] = y[i];
  return out;
}

/** y (N, O) float32 + b (O) on every row, as float64. */
function widenAddRows(y: Float32Array, N: number, b: F): F {
  const O = b.length;
  const out = new Float64Array(N * O); // (N, O)
  for (let r = 0; r < N; r++) for (let o = 0; o < O; o++) out[r * O + o] = y[r * O + o] + b[o];
  return out;
}

/**
 * Causal attention with its products on the SIMD kernels, per (batch, head), the softmax in between:
 *   S = scale·Q·Kᵀ (causal mask), P = softmax_rows(S), Y = P·V;
 *   back: dP = dY·Vᵀ, dV = Pᵀ·dY, dS = P ∘ (dP − rowsum(P ∘ dP)), dQ = scale·dS·K, dK = scale·dSᵀ·Q
 * (the same math as lib/ref/attention.ts, in float32 products; the masked half is computed and zeroed).
 */
function simdAttention(g: SimdGemm, q: Tensor, k: Tensor, v: Tensor): ReturnType<MatmulEngine['attention']> {
  const [batch, H, L, d] = q.shape as [number, number, number, number]; // q (b, H, l, hd)
  const [, Hkv] = k.shape as [number, number, number, number]; // k (b, H_kv, l, hd)
  const [, , , dv] = v.shape as [number, number, number, number]; // v (b, H_kv, l, dv)
  const groups = H / Hkv;
  const scale = 1 / Math.sqrt(d);
  const qd = q.data as F; // (b, H, l, hd)
  const kd = k.data as F; // (b, H_kv, l, hd)
  const vd = v.data as F; // (b, H_kv, l, dv)
  const y = new Float64Array(batch * H * L * dv); // (b, H, l, dv)
  const probs: Float32Array[] = []; // per (b, h): P (l, l)
  const at = (b: number, h: number, n: number, w: number) => (b * n + h) * L * w;
  for (let b = 0; b < batch; b++)
    for (let h = 0; h < H; h++) {
      const kh = Math.floor(h / groups);
      // P (l, l): the scores Q·Kᵀ, then softmax rows in place
      const P = g.linear(
        qd.subarray(at(b, h, H, d), at(b, h, H, d) + L * d),
        L,
        d,
        kd.subarray(at(b, kh, Hkv, d), at(b, kh, Hkv, d) + L * d),
        L,
        false,
      );
      for (let t = 0; t < L; t++) {
        const r = t * L;
        let mx = -Infinity;
        for (let j = 0; j <= t; j++) mx = Math.max(mx, P[r + j] * scale);
        let z = 0;
        for (let j = 0; j <= t; j++) z += P[r + j] = Math.exp(P[r + j] * scale - mx);
        for (let j = 0; j <= t; j++) P[r + j] /= z;
        P.fill(0, r + t + 1, r + L);
      }
      probs.push(P);
      y.set(g.matmul(P, L, L, vd.subarray(at(b, kh, Hkv, dv), at(b, kh, Hkv, dv) + L * dv), dv), at(b, h, H, dv));
    }
  return {
    y: new Tensor(y, [batch, H, L, dv], 'attention'),
    back(dy) {
      const dyd = dy.data as F; // (b, H, l, dv)
      const dq = new Float64Array(qd.length); // (b, H, l, hd)
      const dk = new Float64Array(kd.length); // (b, H_kv, l, hd)
      const dV = new Float64Array(vd.length); // (b, H_kv, l, dv)
      for (let b = 0; b < batch; b++)
        for (let h = 0; h < H; h++) {
          const kh = Math.floor(h / groups);
          const P = probs[b * H + h]; // (l, l)
          const dys = dyd.subarray(at(b, h, H, dv), at(b, h, H, dv) + L * dv); // (l, dv)
          const vs = vd.subarray(at(b, kh, Hkv, dv), at(b, kh, Hkv, dv) + L * dv); // (l, dv)
          const dP = g.linear(dys, L, dv, vs, L, false); // (l, l): dP, then dS in place
          const gv = g.matmulTN(P, L, L, dys, dv); // (l, dv)
          for (let i = 0, o = at(b, kh, Hkv, dv); i < gv.length; i++) dV[o + i] += gv[i];
          for (let t = 0; t < L; t++) {
            const r = t * L;
            let sum = 0;
            for (let j = 0; j <= t; j++) sum += P[r + j] * dP[r + j];
            for (let j = 0; j <= t; j++) dP[r + j] = P[r + j] * (dP[r + j] - sum) * scale;
            dP.fill(0, r + t + 1, r + L);
          }
          dq.set(g.matmul(dP, L, L, kd.subarray(at(b, kh, Hkv, d), at(b, kh, Hkv, d) + L * d), d), at(b, h, H, d));
          const gk = g.matmulTN(dP, L, L, qd.subarray(at(b, h, H, d), at(b, h, H, d) + L * d), d); // (l, hd)
          for (let i = 0, o = at(b, kh, Hkv, d); i < gk.length; i++) dk[o + i] += gk[i];
        }
      return {
        dq: new Tensor(dq, q.shape, 'dq'),
        dk: new Tensor(dk, k.shape, 'dk'),
        dv: new Tensor(dV, v.shape, 'dv'),
      };
    },
  };
}

// ---------------------------------------------------------------- the model

export interface TrainForward {
  /** (batch·L, vocab) */
  logits: F;
  /** run the backward from ∂ℓ/∂logits; fills `grads` */
  back(dlogits: F): void;
  grads: Grads;
}

/** The whole model on `ids` (batch × L), keeping what the backward needs. */
export function trainForward(
  m: HybridModel,
  ids: number[][],
  trainable: (name: string) => boolean,
  mm: MatmulEngine = FLOAT64_ENGINE,
): TrainForward {
  const batch = ids.length;
  const L = ids[0]?.length ?? 0;
  if (L === 0 || ids.some((r) => r.length !== L))
    throw new ArgumentError(
      'ids',
      'equal-length, non-empty rows',
      ids.map((r) => r.length),
    );
  const c = m.llama;
  if (L > c.maxPositionEmbeddings)
    throw new ArgumentError('ids', `at most max_position_embeddings = ${c.maxPositionEmbeddings} positions`, L);
  const ctx: Ctx = { m, batch, L, trainable, grads: new Map(), mm };
  const dModel = c.hiddenSize;
  const V = c.vocabSize;
  const flat = ids.flat();
  const E = weight(ctx, 'model.embed_tokens.weight'); // (V, d)
  let h = embedding.forward(flat, E, V, dModel); // (b·l, d)
  const kinds = layerKinds(m);
  const blocks: Array<{ n1: Layer; mix: Layer; n2: Layer; mlp: Layer }> = [];
  for (const [i, kind] of kinds.entries()) {
    const { prefix: p, norm1, norm2 } = blockNames(i);
    const eps = blockEps(m, kind);
    const n1 = rmsLayer(ctx, h, dModel, norm1, eps); // (b·l, d)
    const mix =
      kind === 'attention'
        ? attentionTrain(ctx, p, n1.y)
        : kind === 'mamba1'
          ? mamba1Train(ctx, p, n1.y)
          : mamba2Train(ctx, p, n1.y); // (b·l, d)
    const h1 = add(h, mix.y); // (b·l, d)
    const n2 = rmsLayer(ctx, h1, dModel, norm2, eps); // (b·l, d)
    const mlp = mlpTrain(ctx, p, n2.y); // (b·l, d)
    h = add(h1, mlp.y);
    blocks.push({ n1, mix, n2, mlp });
  }
  const nf = rmsLayer(ctx, h, dModel, 'model.norm.weight', c.rmsNormEps); // (b·l, d)
  const head = linearLayer(ctx, nf.y, dModel, V, lmHeadName(m)); // logits (b·l, V)
  return {
    logits: head.y,
    grads: ctx.grads,
    back(dlogits) {
      let dh = nf.back(head.back(dlogits)); // (b·l, d)
      for (const b of [...blocks].reverse()) {
        const dh1 = add(dh, b.n2.back(b.mlp.back(dh))); // (b·l, d)
        dh = add(dh1, b.n1.back(b.mix.back(dh1)));
      }
      addGrad(ctx, 'model.embed_tokens.weight', embedding.backward(dh, flat, V, dModel));
    },
  };
}

/**
 * Which parameters train: every one, upstream's stage 1 — only those whose name holds 'mamba' — or stage 1 with
 * every layer's MLP (gate, up, down projections: '.mlp.') training too, the paper's Table 8 arm (`mil distill
 * --train-mlp`).
 */
export type TrainRule = 'all' | 'mamba' | 'mamba+mlp';
export const mambaOnly = (name: string): boolean => name.includes('mamba');
const mambaAndMlp = (name: string): boolean => mambaOnly(name) || name.includes('.mlp.');
export function trainableBy(rule: TrainRule): (name: string) => boolean {
  return rule === 'all' ? () => true : rule === 'mamba+mlp' ? mambaAndMlp : mambaOnly;
}

export interface LossOptions {
  /** 'lm': cross-entropy on the next token; 'distill': klWeight·KL(teacher ‖ student) + ceWeight·CE */
  objective: 'lm' | 'distill';
  /** (batch·L, vocab) teacher logits, for 'distill' */
  teacherLogits?: F;
  klWeight?: number;
  ceWeight?: number;
  trainable: (name: string) => boolean;
  /** where the linear layers' products run (default: float64) */
  engine?: MatmulEngine;
}

export interface LossResult {
  loss: number;
  ce: number;
  kl?: number;
  grads: Grads;
  logits: F;
}

/**
 * One loss and its gradients, as FORMAT.md's training cases (and upstream's train_hybrid.py) define it:
 *   CE = mean over batch·(L−1) positions of −log p(ids[t+1] | ids[≤t])   (labels = ids, shifted by one)
 *   KL = Σ over all batch·L positions and the vocabulary of p_t (log p_t − log p_s), divided by batch only
 *   loss = ce_weight·CE (+ kl_weight·KL)
 */
export function lossAndGrads(m: HybridModel, ids: number[][], o: LossOptions): LossResult {
  const batch = ids.length;
  const L = ids[0]?.length ?? 0;
  if (L < 2) throw new ArgumentError('ids', 'rows of at least 2 tokens (the loss predicts the next one)', L);
  const V = m.llama.vocabSize;
  const f = trainForward(m, ids, o.trainable, o.engine);
  // rows (b, t < L−1) predict ids[b][t+1]
  const rows: number[] = [];
  const targets: number[] = [];
  ids.forEach((row, b) => {
    for (let t = 0; t < L - 1; t++) rows.push(b * L + t);
    targets.push(...row.slice(1));
  });
  // log-probabilities once (logSoftmax works row by row: a row's values do not depend on the others)
  const ls = logSoftmax(f.logits, batch * L, V); // (b·l, V)
  const sub = new Float64Array(rows.length * V); // (b·(l−1), V): the rows that have a next token
  rows.forEach((r, k) => sub.set(ls.subarray(r * V, (r + 1) * V), k * V));
  const ceW = o.ceWeight ?? 1;
  const { loss: ce, dz: dsub } = crossEntropy.fromLogProbs(sub, targets, rows.length, V); // dsub (b·(l−1), V)
  const dlogits = new Float64Array(batch * L * V); // (b·l, V)
  rows.forEach((r, k) => {
    for (let v = 0; v < V; v++) dlogits[r * V + v] = ceW * dsub[k * V + v];
  });
  let loss = ceW * ce;
  let kl: number | undefined;
  if (o.objective === 'distill') {
    if (!o.teacherLogits || o.teacherLogits.length !== batch * L * V)
      throw new ArgumentError('teacherLogits', `(batch·L, vocab) = ${batch * L * V} values`, o.teacherLogits?.length);
    const klW = o.klWeight ?? 1;
    const k = klDivergence.fromLogProbs(ls, logSoftmax(o.teacherLogits, batch * L, V), batch); // dz (b·l, V)
    kl = k.loss;
    for (let i = 0; i < dlogits.length; i++) dlogits[i] += klW * k.dz[i];
    loss += klW * kl;
  }
  f.back(dlogits);
  return { loss, ce, kl, grads: f.grads, logits: f.logits };
}
