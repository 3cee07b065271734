/**
 * Tour 4 — distillation, stage 1 (PAPER.md §3): the converted hybrid learns to match its teacher.
 *   npx tsx examples/04-distill-steps.ts
 *
 *   loss = kl_weight · KL(p_teacher ‖ p_student) + ce_weight · CE(next token)      (upstream's train_hybrid.py;
 *   KL is 'batchmean': summed over a sequence's tokens and vocabulary, averaged over sequences)
 *   only parameters whose name holds "mamba" train; the teacher's MLPs and norms stay frozen in the student;
 *   clip_grad_norm_ 0.1, Adam, cosine learning rate with warmup.
 *
 * What to look at: how few parameters train, the KL falling step by step, and the held-out perplexity of the
 * converted hybrid before and after 30 small steps (the shipped hybrid had 100 steps of 1024 tokens:
 * `npm run models`, docs/results.md).
 */
import { join } from 'node:path';
import { loadModel } from '../lib/model/load.js';
import { convert } from '../lib/model/convert.js';
import { BpeTokenizer } from '../lib/text/bpe.js';
import { corpusPart } from '../lib/data/corpus.js';
import { tokenStream } from '../lib/cli/train_cmds.js';
import { Trainer } from '../lib/train/trainer.js';
import { engineFor, evaluate } from '../lib/train/job.js';
import { SimdGemm } from '../lib/simd/gemm.js';

await SimdGemm.load(); // the linear layers' products on the wasm-simd kernels (float32); the rest float64
const models = join(import.meta.dirname, '..', 'models');
const tok = BpeTokenizer.load(join(models, 'tokenizer.json'));
const teacher = loadModel(join(models, 'teacher-small'));
const student = convert(teacher, { variant: 'mamba2', attentionFraction: 0.5, seed: 0 });
const train = tokenStream(corpusPart('sotu', 'train'), tok).slice(0, 60_000);
const test = tokenStream(corpusPart('sotu', 'test'), tok).slice(0, 2048);

const steps = 30;
const trainer = Trainer.create(
  student,
  train,
  {
    objective: 'distill',
    klWeight: 1,
    ceWeight: 0.1,
    optimizer: { kind: 'adam', lr: 3e-3, betas: [0.9, 0.98], eps: 1e-8, weightDecay: 0 },
    clip: 0.1,
    totalSteps: steps,
    warmupSteps: 3,
    batch: 2,
    seqLen: 128,
    seed: 0,
    train: 'mamba',
    engine: 'simd',
  },
  teacher,
);
// the trainer trains its own float64 copy of the student: trainer.model
const ppl = () => evaluate(trainer.model, test, { seqLen: 256, engine: engineFor('simd') }).ppl.toFixed(1);
const count = (names: string[]) => names.reduce((s, n) => s + trainer.model.weights.get(n).size, 0);
const all = trainer.model.weights.names();
const trainable = all.filter(trainer.trainable);
console.log(
  `student: teacher-small converted to a 50% Mamba-2 hybrid; ${count(trainable).toLocaleString('en')} of ${count(all).toLocaleString('en')} parameters train (names with "mamba")`,
);
console.log(
  `held-out perplexity before: ${ppl()} (the teacher's: ${evaluate(teacher, test, { seqLen: 256, engine: engineFor('simd') }).ppl.toFixed(1)})\n`,
);
console.log(' step   loss      KL      CE   grad-norm  lr');
for (let s = 0; s < steps; s++) {
  const r = await trainer.trainStep();
  if (s % 3 === 0 || s === steps - 1)
    console.log(
      `${String(r.step).padStart(5)} ${r.loss.toFixed(3).padStart(7)} ${r.kl!.toFixed(3).padStart(7)} ${r.ce.toFixed(3).padStart(7)} ${r.gradNorm.toFixed(2).padStart(9)}  ${r.lr.toExponential(1)}`,
    );
}
console.log(`\nheld-out perplexity after ${steps} steps of ${2 * 128} tokens: ${ppl()}`);
console.log('the full recipe (stepwise, SFT, DPO, the ablations): README "Distillation on real text", docs/results.md');
