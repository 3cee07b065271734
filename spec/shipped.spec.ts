/**
 * The shipped artefacts of models/ are what their commands make: each folder loads, its training.json
 * names the command (scripts/commands.ts) and seed, and re-running the first steps of that command from
 * scratch gives the recorded losses bit for bit — the teacher (a Llama from the seeded initialisation) and a
 * distilled hybrid (Algorithm 1 from the shipped teacher, then stage 1).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PRESETS, SHIPPED_TOKENIZER, stageModel, tokenStream } from '../lib/cli/train_cmds.js';
import { corpusPart } from '../lib/data/corpus.js';
import { loadModel } from '../lib/model/load.js';
import { randomLlama } from '../lib/model/random.js';
import { BpeTokenizer } from '../lib/text/bpe.js';
import { Trainer, type TrainerOptions } from '../lib/train/trainer.js';
import { SimdGemm } from '../lib/simd/gemm.js';
import { MODEL_COMMANDS } from '../scripts/commands.js';

const ROOT = join(import.meta.dirname, '..');
const tok = BpeTokenizer.load(SHIPPED_TOKENIZER);
const record = (dir: string) => JSON.parse(readFileSync(join(ROOT, dir, 'training.json'), 'utf8'));
const train = () => tokenStream(corpusPart('sotu', 'train'), tok);

describe('models/', () => {
  it('every artefact of scripts/commands.ts is there, loads, and records the command that made it', () => {
    for (const { out, args } of MODEL_COMMANDS) {
      expect(existsSync(join(ROOT, out)), out).toBe(true);
      if (out.endsWith('.json')) continue;
      const m = loadModel(join(ROOT, out));
      expect(m.llama.vocabSize).toBe(tok.vocabSize);
      expect(record(out).command, out).toBe(`mil ${args.join(' ')}`);
    }
  });
  it('the teacher: its first two steps, re-run from the seeded initialisation, give the recorded losses bit for bit', async () => {
    SimdGemm.sharedExact();
    const r = record('models/teacher-small');
    const p = PRESETS['teacher-small'];
    const m = randomLlama(
      {
        vocab: tok.vocabSize,
        hidden: p.hidden,
        intermediate: p.intermediate,
        layers: p.layers,
        heads: p.heads,
        kvHeads: p.kvHeads,
        maxPositions: p.context,
        init: 'train',
      },
      r.seed,
    );
    const t = Trainer.create(m, train(), r.options as TrainerOptions);
    for (let s = 0; s < 2; s++) expect((await t.trainStep()).loss, `step ${s + 1}`).toBe(r.history[s].loss);
  }, 60_000);
  it('the 50% Mamba-2 hybrid: Algorithm 1 on the shipped teacher, then its first stage-1 step, gives the recorded loss bit for bit', async () => {
    const r = record('models/hybrid-mamba2-50');
    const teacher = loadModel(join(ROOT, 'models/teacher-small'));
    const start = stageModel(teacher, undefined, [1, 3], { variant: 'mamba2', seed: r.seed, init: 'attention' });
    const t = Trainer.create(start, train(), r.options as TrainerOptions, teacher);
    expect((await t.trainStep()).loss).toBe(r.history[0].loss);
  }, 60_000);
});
