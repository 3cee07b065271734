/**
 * The training-step benchmarks' models and batch (bench/train.ts against PyTorch, bench/train-breakdown.ts for
 * where the time goes): a random d256, 4-layer Llama teacher (vocabulary 2048, 4 heads / 2 kv heads) and its
 * 50% Mamba-1 and Mamba-2 hybrids, and a seeded batch of token ids.
 */
import { randomLlama } from '../lib/model/random.js';
import { convert } from '../lib/model/convert.js';
import type { HybridModel } from '../lib/model/hybrid.js';
import { Rng } from '../lib/rng.js';

const VOCAB = 2048;

/** [name, model, distilled from the teacher (else trained as a language model)] */
export function trainBenchModels(): { teacher: HybridModel; models: Array<[string, HybridModel]> } {
  const teacher = randomLlama({ vocab: VOCAB, hidden: 256, intermediate: 688, layers: 4, heads: 4, kvHeads: 2 }, 1);
  return {
    teacher,
    models: [
      ['teacher (Llama, lm)', teacher],
      ['Mamba-1 50% (distill, stage 1)', convert(teacher, { variant: 'mamba1', attentionFraction: 0.5, seed: 1 })],
      ['Mamba-2 50% (distill, stage 1)', convert(teacher, { variant: 'mamba2', attentionFraction: 0.5, seed: 1 })],
    ],
  };
}

/** batch × L token ids (seed 7). */
export function trainBenchIds(batch: number, L: number): number[][] {
  const r = new Rng(7);
  return Array.from({ length: batch }, () => Array.from({ length: L }, () => r.int(0, VOCAB - 1)));
}
