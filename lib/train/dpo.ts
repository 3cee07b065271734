/**
 * Stage 3 of PAPER.md §3: Direct Preference Optimisation with the sigmoid loss, the SFT model as the
 * frozen reference (what the paper's code does).
 *
 *   log π(y | x) = Σ_{t ∈ continuation} log softmax(z_t)[y_{t+1}]         (the sequence log-likelihood)
 *   Δ = (log π(y_c|x) − log π_ref(y_c|x)) − (log π(y_r|x) − log π_ref(y_r|x))
 *   ℓ = −(1/n) Σ_pairs log σ(β·Δ)
 *   ∂ℓ/∂ log π(y_c|x) = −β·σ(−β·Δ)/n,   ∂ℓ/∂ log π(y_r|x) = +β·σ(−β·Δ)/n
 *   ∂ log π(y|x)/∂z_t = onehot(y_{t+1}) − softmax(z_t)   for t in the continuation
 *
 * Preference pairs from a plain corpus (`preferencePairs`): a prompt of P tokens at a random place of
 * the training stream; chosen = the C tokens that really follow it; rejected = C tokens taken from another
 * random place of the stream (fluent text, but not this text's continuation). Seeded.
 *
 * Symbols: x the prompt · y_c, y_r the chosen and rejected continuations · π the policy being trained, π_ref the
 * frozen SFT model · z_t (V) the logits at position t · β the DPO temperature · σ the logistic function ·
 * n the number of pairs.
 */
import { ArgumentError } from '../errors.js';
import type { HybridModel } from '../model/hybrid.js';
import { Rng } from '../rng.js';
import { logSoftmax } from '../ref/layers.js';
import { trainForward, type Grads, type MatmulEngine } from './model.js';
import { adamStep, clipGradNorm, cosineLr, newAdamState, type AdamOptions } from './optim.js';
import { float64Model } from './trainer.js';
import { GpuTrainStep, gpuMicroBatch } from './gpu_step.js';
import { markChanged } from '../weight_registry.js';
import { lookup } from '../checked.js';

export interface Pair {
  prompt: number[];
  chosen: number[];
  rejected: number[];
}

export function preferencePairs(
  stream: readonly number[],
  n: number,
  promptLen: number,
  contLen: number,
  seed: number,
): Pair[] {
  const L = promptLen + contLen;
  if (stream.length < 2 * L)
    throw new ArgumentError('pairs', `a token stream of at least ${2 * L} tokens`, stream.length);
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => {
    const a = rng.int(0, stream.length - L);
    let b = rng.int(0, stream.length - contLen);
    while (Math.abs(b - (a + promptLen)) < contLen) b = rng.int(0, stream.length - contLen);
    return {
      prompt: stream.slice(a, a + promptLen),
      chosen: stream.slice(a + promptLen, a + L),
      rejected: stream.slice(b, b + contLen),
    };
  });
}

/**
 * A preference of a set (`mil dpo --preferences`, lib/data/instruct.ts) as a Pair of the fixed lengths a batch needs:
 * the prompt's last `promptLen` tokens, left-padded with `pad` (the end-of-text token: what precedes a document in
 * training); each continuation's first `contLen` tokens, right-padded with `pad` (an answer, then end of text).
 */
export function fitPair(
  p: { prompt: number[]; chosen: number[]; rejected: number[] },
  promptLen: number,
  contLen: number,
  pad: number,
): Pair {
  const left = (ids: number[]) => [
    ...Array<number>(Math.max(0, promptLen - ids.length)).fill(pad),
    ...ids.slice(-promptLen),
  ];
  const right = (ids: number[]) => [
    ...ids.slice(0, contLen),
    ...Array<number>(Math.max(0, contLen - ids.length)).fill(pad),
  ];
  return { prompt: left(p.prompt), chosen: right(p.chosen), rejected: right(p.rejected) };
}

/** Rows [prompt + chosen] for every pair, then [prompt + rejected]. */
function rows(pairs: Pair[]): number[][] {
  return [...pairs.map((p) => [...p.prompt, ...p.chosen]), ...pairs.map((p) => [...p.prompt, ...p.rejected])];
}

/** Σ log-probabilities of each row's continuation (positions ≥ promptLen), from logits (rows·L, V). */
function sequenceLogps(
  logits: Float64Array,
  ids: number[][],
  promptLen: number,
  V: number,
): { logps: number[]; lp: Float64Array } {
  const L = ids[0].length;
  const lp = logSoftmax(logits, ids.length * L, V); // (b·l, V) log-probabilities
  const logps = ids.map((row, b) => {
    let s = 0;
    for (let t = promptLen - 1; t + 1 < L; t++) s += lp[(b * L + t) * V + row[t + 1]];
    return s;
  });
  return { logps, lp };
}

const sigmoid = (x: number) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)));

/** ℓ and ∂ℓ/∂(log π of each row), rows ordered as `rows`: n chosen then n rejected. */
export function dpoLoss(
  policy: number[],
  reference: number[],
  beta: number,
): { loss: number; dlogp: number[]; margins: number[] } {
  const n = policy.length / 2;
  let loss = 0;
  const dlogp = new Array<number>(2 * n).fill(0);
  const margins: number[] = [];
  for (let i = 0; i < n; i++) {
    const delta = policy[i] - reference[i] - (policy[n + i] - reference[n + i]);
    margins.push(delta);
    // −log σ(βΔ) = softplus(−βΔ), computed stably
    const x = -beta * delta;
    loss += (x > 0 ? x + Math.log1p(Math.exp(-x)) : Math.log1p(Math.exp(x))) / n;
    const g = (beta * sigmoid(x)) / n;
    dlogp[i] = -g;
    dlogp[n + i] = g;
  }
  return { loss, dlogp, margins };
}

/** The reference model's sequence log-probabilities of a batch of pairs (no gradients). */
export function referenceLogps(ref: HybridModel, pairs: Pair[], engine: MatmulEngine): number[] {
  const ids = rows(pairs);
  return sequenceLogps(
    trainForward(ref, ids, () => false, engine).logits,
    ids,
    pairs[0].prompt.length,
    ref.llama.vocabSize,
  ).logps;
}

/** Loss and gradients of one batch of pairs for the policy `m` (every parameter `trainable` says). */
export function dpoLossAndGrads(
  m: HybridModel,
  pairs: Pair[],
  refLogps: number[],
  beta: number,
  trainable: (n: string) => boolean,
  engine: MatmulEngine,
): { loss: number; grads: Grads; margins: number[]; accuracy: number } {
  const ids = rows(pairs);
  const V = m.llama.vocabSize;
  const P = pairs[0].prompt.length;
  const L = ids[0].length;
  const f = trainForward(m, ids, trainable, engine);
  const { logps, lp } = sequenceLogps(f.logits, ids, P, V);
  const { loss, dlogp, margins } = dpoLoss(logps, refLogps, beta);
  const dlogits = new Float64Array(f.logits.length); // (b·l, V)
  ids.forEach((row, b) => {
    for (let t = P - 1; t + 1 < L; t++) {
      const o = (b * L + t) * V;
      for (let v = 0; v < V; v++) dlogits[o + v] = -dlogp[b] * Math.exp(lp[o + v]);
      dlogits[o + row[t + 1]] += dlogp[b];
    }
  });
  f.back(dlogits);
  return { loss, grads: f.grads, margins, accuracy: margins.filter((d) => d > 0).length / margins.length };
}

/**
 * How often a pair's chosen continuation wins, in batches of `batch` pairs: with a policy, by the implicit
 * reward (log π − log π_ref of chosen > that of rejected); without one, by the reference's own likelihood.
 */
export function preferenceAccuracy(
  ref: HybridModel,
  pairs: Pair[],
  batch: number,
  engine: MatmulEngine,
  policy?: HybridModel,
): number {
  let right = 0;
  for (let i = 0; i < pairs.length; i += batch) {
    const b = pairs.slice(i, i + batch);
    const n = b.length;
    const r = referenceLogps(ref, b, engine);
    const p = policy ? referenceLogps(policy, b, engine) : undefined;
    for (let k = 0; k < n; k++) if (p ? p[k] - r[k] > p[n + k] - r[n + k] : r[k] > r[n + k]) right++;
  }
  return right / pairs.length;
}

export interface DpoStep {
  step: number;
  loss: number;
  accuracy: number;
  margin: number;
  lr: number;
  /** the gradient's norm before clipping */
  gradNorm: number;
}

/** A step's record: the batch accuracy is the share of pairs whose margin Δ is positive, the margin their mean. */
function stepRow(step: number, loss: number, margins: number[], lr: number, gradNorm: number): DpoStep {
  const accuracy = margins.filter((d) => d > 0).length / margins.length;
  return { step, loss, accuracy, margin: margins.reduce((a, x) => a + x, 0) / margins.length, lr, gradNorm };
}

/** What a DPO run takes on either engine: β, pairs per step, the optimizer, a callback per step. */
export interface DpoOptions {
  beta: number;
  batch: number;
  optimizer: AdamOptions;
  onStep?: (s: DpoStep, steps: number) => void;
}

/**
 * `trainDpo` on the GPU (engine 'webgpu'): the same steps, losses and AdamW, in float32. DPO's gradient is the
 * cross-entropy's weighted per row, ∂ℓ/∂z_t = w_b (softmax(z_t) − onehot(y_{t+1})) with w_b = −∂ℓ/∂ log π(row b)
 * on the continuation and 0 on the prompt, so each step is three submissions of lib/train/gpu_step.ts:
 *   1. the frozen reference's per-row −log p (a second GPU step that never steps: `nll`, its forward only);
 *   2. the policy's, at its current parameters (`nll`);
 *   3. on the host: log π, Δ, ℓ and w (`dpoLoss`); then the policy's step with those row weights (forward, backward,
 *      clip 1, AdamW: `step(rows, lr, t, w)`).
 * The step's shape is fixed, so a last batch of fewer pairs is filled up with copies of its first pair, their rows
 * weighted 0 and left out of ℓ (1/n over the real pairs, as on the CPU). Reference: `trainDpo` (float64).
 */
export async function trainDpoGpu(
  ref: HybridModel,
  pairs: Pair[],
  o: DpoOptions & {
    /** the most float32 elements a buffer may hold before a step runs as micro-batches (default 2^24; tests) */
    bufferLimit?: number;
  },
): Promise<{ policy: HybridModel; history: DpoStep[] }> {
  const B = o.batch;
  const P = pairs[0].prompt.length;
  const L = P + pairs[0].chosen.length;
  // 2B rows a step, as micro-batches of `micro` rows where the whole batch's buffers pass 2^24 elements (the
  // small plan's 16 rows × 80 tokens of a 50% Mamba-2 hybrid: 31M SSD states); the step averages micro-batches
  const micro = gpuMicroBatch(ref, { batch: 2 * B, seqLen: L }, o.bufferLimit);
  const A = (2 * B) / micro;
  const shape = { batch: micro, seqLen: L, optimizer: o.optimizer };
  const refStep = await GpuTrainStep.create(ref, { ...shape, trainable: () => false });
  const policy = float64Model(ref);
  let step: GpuTrainStep | undefined;
  try {
    step = await GpuTrainStep.create(policy, {
      ...shape,
      accumulate: A,
      clip: 1,
      rowWeights: true,
      trainable: () => true,
    });
    /** −log p of every row, `micro` rows per submission */
    const nll = async (s: GpuTrainStep, ids: number[][]) => {
      const out = new Float32Array(ids.length * L); // (2B·L)
      for (let k = 0; k < A; k++) out.set(await s.nll(ids.slice(k * micro, (k + 1) * micro)), k * micro * L);
      return out;
    };
    /** log π of each row's continuation from per-row −log p: Σ_{t = P−1}^{L−2} −nll[b·L + t] */
    const logps = (nll: Float32Array) =>
      Array.from({ length: 2 * B }, (_, b) => {
        let s = 0;
        for (let t = P - 1; t + 1 < L; t++) s -= nll[b * L + t];
        return s;
      });
    const steps = Math.ceil(pairs.length / B);
    const history: DpoStep[] = [];
    for (let s = 0; s < steps; s++) {
      const real = pairs.slice(s * B, (s + 1) * B);
      const n = real.length;
      const ids = rows([...real, ...Array.from({ length: B - n }, () => real[0])]); // (2B, L): B chosen, B rejected
      const [rl, pl] = [logps(await nll(refStep, ids)), logps(await nll(step, ids))];
      const pick = (x: number[]) => [...x.slice(0, n), ...x.slice(B, B + n)]; // the real pairs' rows
      const r = dpoLoss(pick(pl), pick(rl), o.beta);
      const w = new Float32Array(2 * B * L); // (2B·L): −∂ℓ/∂ log π on the continuation
      for (let k = 0; k < 2 * n; k++) {
        const b = k < n ? k : B + k - n;
        w.fill(-A * r.dlogp[k], b * L + P - 1, b * L + L - 1); // × A: the step averages its A micro-batches
      }
      const lr = cosineLr(o.optimizer.lr, s, steps, Math.max(1, Math.round(steps * 0.1)));
      const g = await step.step(ids, lr, s + 1, w);
      if (!g.ok) throw new ArgumentError('DPO step', 'a finite gradient', `not finite at step ${s + 1}`);
      const row = stepRow(s + 1, r.loss, r.margins, lr, g.gradNorm);
      history.push(row);
      o.onStep?.(row, steps);
    }
    for (const [name, t] of await step.read()) {
      const p = lookup(policy.weights.tensors, name).data as Float64Array; // (the parameter's shape)
      p.set(t.p);
      markChanged(p);
    }
    return { policy, history };
  } finally {
    refStep.destroy();
    step?.destroy();
  }
}

/**
 * Stage 3: one pass over `pairs` in batches — DPO loss and gradients of every parameter against the frozen
 * `ref`, clip_grad_norm 1, AdamW, cosine with 10% warmup. Returns the trained policy (float64) and each step.
 */
export function trainDpo(
  ref: HybridModel,
  pairs: Pair[],
  o: DpoOptions & { engine: MatmulEngine },
): { policy: HybridModel; history: DpoStep[] } {
  const policy = float64Model(ref);
  const params = new Map(
    policy.weights.names().map((n) => [n, lookup(policy.weights.tensors, n).data as Float64Array]),
  );
  const opt = newAdamState();
  const steps = Math.ceil(pairs.length / o.batch);
  const history: DpoStep[] = [];
  for (let s = 0; s < steps; s++) {
    const b = pairs.slice(s * o.batch, (s + 1) * o.batch);
    const r = dpoLossAndGrads(policy, b, referenceLogps(ref, b, o.engine), o.beta, () => true, o.engine);
    const gradNorm = clipGradNorm(r.grads, 1);
    const lr = cosineLr(o.optimizer.lr, s, steps, Math.max(1, Math.round(steps * 0.1)));
    adamStep(params, r.grads, opt, o.optimizer, lr);
    for (const n of r.grads.keys()) markChanged(lookup(params, n)); // kernels must not reuse a stale packed copy
    const row = stepRow(s + 1, r.loss, r.margins, lr, gradNorm);
    history.push(row);
    o.onStep?.(row, steps);
  }
  return { policy, history };
}
