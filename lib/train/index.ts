/**
 * `import … from 'mamba-in-llama/train'`: training in float64 with hand-written backwards (PAPER.md §3) —
 * the objective `kl_weight·KL(teacher ‖ student) + ce_weight·CE` over next tokens, torch-exact
 * `clip_grad_norm_` and Adam/AdamW, a cosine schedule with warmup, the trainer with resumable checkpoints, and
 * DPO (sigmoid loss against a frozen reference).
 *
 *   const { loss, grads } = lossAndGrads(model, [[1, 5, 9, 2]], { objective: 'lm', trainable: trainableBy('all') });
 *
 * @module
 */

/** The whole model's loss and gradients, which parameters train, and the product engines. */
export {
  lossAndGrads,
  trainForward,
  trainableBy,
  mambaOnly,
  simdEngine,
  type TrainForward,
  FLOAT64_ENGINE,
  type Grads,
  type MatmulEngine,
  type LossOptions,
  type LossResult,
  type TrainRule,
} from './model.js';
/** The wasm-simd matrix products `simdEngine` runs the linear layers on (`SimdGemm.load(threads)`). */
export { SimdGemm, type Bf16Panels } from '../simd/gemm.js';
/** Adam/AdamW, gradient clipping and the learning-rate schedule. */
export { adamStep, newAdamState, clipGradNorm, cosineLr, type AdamOptions, type AdamState } from './optim.js';
/** The training loop with checkpoints that resume bit for bit. */
export {
  Trainer,
  float64Model,
  NonFiniteGradientError,
  CheckpointError,
  type TrainerOptions,
  type StepInfo,
} from './trainer.js';
/** Direct preference optimisation (stage 3). */
export { trainDpo, dpoLoss, preferencePairs, preferenceAccuracy, type Pair, type DpoStep } from './dpo.js';
/** Perplexity on a split. */
export { evaluate, type EvalOptions, type EvalResult } from './job.js';
