/**
 * `npm run paper`'s GPU stages (scripts/commands.ts smallPaperRuns, tinyPaperRuns with backend 'webgpu'):
 *   - every small-scale run that trains on webgpu fits the GPU training step: each of its models (the teacher-20m
 *     and draft-20m presets' widths; the student its distill options make; the teacher it distils from) at the
 *     run's --batch × --len holds no buffer past 2^24 float32 elements
 *     (lib/train/gpu_step.ts gpuStepUnsupported, which refuses the run before any work otherwise). The sizes are
 *     computed from the models' real tensors and layer kinds (random weights, nothing runs on a GPU);
 *   - the tiny scale with --backend webgpu runs the small scale's kinds of GPU run end to end through `mil`
 *     (Dawn's CPU adapter here): a teacher, a stepwise Mamba-2 student (three stages, one-shot distillation's path
 *     each), a dropped-layers one and SFT of a Mamba-2 hybrid, each recording engine 'webgpu' in training.json
 *     (Mamba-1 distillation through mil on webgpu: spec/gpu_train.spec.ts's step tests; the whole tiny plan ran
 *     with --backend webgpu in 31 s on 2 cores when this was written).
 * Mutations tried: the distillation shape back to --batch 8 --len 1024 (the plan's old one) fails the first test
 * (a Mamba-2 layer's SSD states, 8·1024·384·64 = 201M elements); --backend webgpu dropped from the tiny runs fails
 * the second.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { main } from '../lib/cli/main.js';
import { EXIT } from '../lib/cli/exit.js';
import { PRESETS } from '../lib/cli/train_cmds.js';
import { attentionLayersFor } from '../lib/model/config.js';
import { convert, dropLayers } from '../lib/model/convert.js';
import type { HybridModel } from '../lib/model/hybrid.js';
import { randomLlama } from '../lib/model/random.js';
import { gpuStepUnsupported } from '../lib/train/gpu_step.js';
import { runAll, smallPaperRuns, tinyPaperRuns } from '../scripts/commands.js';
import { KERNEL_BACKENDS } from './helpers.js';
import { tmpFolder } from './tmp.js';

const webgpu = KERNEL_BACKENDS.find((b) => b.name === 'webgpu')!;
const run = webgpu.available ? it : it.skip;

/** The value of option `name` in `args`, or undefined. */
const opt = (args: string[], name: string) => {
  const i = args.indexOf(name);
  return i < 0 ? undefined : args[i + 1];
};

/** A corpus of 8 documents of 120 words (jsonl). */
function corpus(): string {
  const words = 'the union is strong and the people of the states have made it so by their law'.split(' ');
  const docs = Array.from({ length: 8 }, (_, d) =>
    JSON.stringify({ id: `d${d}`, text: Array.from({ length: 120 }, (_, i) => words[(i * 7 + d) % 16]).join(' ') }),
  );
  return docs.join('\n') + '\n';
}

describe('npm run paper on the GPU', () => {
  it('every small-scale webgpu run fits the GPU step: no buffer past 2^24 elements at its batch × length', () => {
    const made = new Map<string, HybridModel>();
    const preset = (name: 'teacher-20m' | 'draft-20m') => made.get(name) ?? made.set(name, llama(name)).get(name)!;
    const llama = (name: 'teacher-20m' | 'draft-20m') => {
      const p = PRESETS[name];
      // 2 layers, not 8: no buffer the check counts grows with depth (per-layer activations, scores and SSD states,
      // each weight), and 50% of 2 layers is a hybrid of both kinds of layer (0%: all Mamba). Vocabulary 256, not
      // 8,192 (random weights cost seconds): the logits go by chunks of ⌊2^24 / V⌋ rows at any V, and the
      // embedding and head at 8,192 are 8192·384 = 3.1M elements
      const spec = { vocab: 256, hidden: p.hidden, intermediate: p.intermediate, layers: 2 };
      return randomLlama({ ...spec, heads: p.heads, kvHeads: p.kvHeads, maxPositions: p.context }, 0);
    };
    const teacher = preset('teacher-20m');
    const students = new Map<string, HybridModel>(); // the model a run's options make, by those options
    const runs = Object.entries(smallPaperRuns('/runs', '/data', '/instruct')).filter(([, m]) =>
      m.args.includes('webgpu'),
    );
    expect(runs.length).toBeGreaterThan(25); // every run but DPO
    for (const [name, m] of runs) {
      const a = m.args;
      const cmd = a[0];
      let model: HybridModel;
      let teacherOf: HybridModel | undefined;
      if (cmd === 'train') {
        model = preset(opt(a, '--config') as 'teacher-20m' | 'draft-20m');
        teacherOf = opt(a, '--teacher') ? teacher : undefined;
      } else {
        // distill: its last stage has the most Mamba layers; sft: the 50% Mamba-2 hybrid it starts from
        const fractions = cmd === 'sft' ? ['0.5'] : (opt(a, '--stepwise') ?? opt(a, '--attention')!).split(',');
        const layers = attentionLayersFor(Number(fractions.at(-1)), teacher.llama.numLayers);
        const variant = (opt(a, '--variant') ?? 'mamba2') as 'mamba1' | 'mamba2';
        const key = a.includes('--drop-instead') ? `drop ${layers}` : `${variant} ${layers}`;
        if (!students.has(key))
          students.set(
            key,
            a.includes('--drop-instead')
              ? dropLayers(teacher, layers)
              : convert(teacher, { variant, attnLayers: layers, seed: 0 }),
          );
        model = students.get(key)!;
        teacherOf = cmd === 'distill' && !a.includes('--drop-instead') ? teacher : undefined;
      }
      const batch = Number(opt(a, '--batch'));
      const seqLen = Number(opt(a, '--len') ?? model.llama.maxPositionEmbeddings);
      expect(gpuStepUnsupported(model, { batch, seqLen }, teacherOf), `${name}: mil ${a.join(' ')}`).toBeNull();
    }
    // the check itself: the old plan's distillation shape is refused
    const m2 = students.get(`mamba2 ${attentionLayersFor(0, 2)}`)!;
    expect(gpuStepUnsupported(m2, { batch: 8, seqLen: 1024 }, teacher)).toMatch(/201326592 float32 elements/);
  });

  run(
    '--accumulate A: steps of A × batch × len tokens; a batch × length the GPU step cannot hold: exit 2 before any work',
    async () => {
      const dir = tmpFolder('paper-gpu-acc');
      const data = join(dir, 'corpus.jsonl');
      writeFileSync(data, corpus());
      const tiny = ['train', '--config', 'tiny', '--data', data, '--eval-tokens', '32', '--quiet'];
      const out = join(dir, 'acc');
      const log = vi.spyOn(console, 'log').mockImplementation(() => {});
      const err = vi.spyOn(console, 'error').mockImplementation(() => {});
      try {
        expect(
          await main([
            ...tiny,
            '--accumulate',
            '2',
            '--batch',
            '1',
            '--len',
            '16',
            '--tokens',
            '64',
            '--engine',
            'float64',
            '--out',
            out,
          ]),
        ).toBe(EXIT.ok);
        const t = JSON.parse(readFileSync(join(out, 'training.json'), 'utf8')) as {
          options: { accumulate: number; totalSteps: number };
          history: Array<{ tokens: number }>;
        };
        expect(t.options).toMatchObject({ accumulate: 2, totalSteps: 2 });
        expect(t.history.map((h) => h.tokens)).toEqual([32, 32]);
        const big = join(dir, 'big');
        expect(await main([...tiny, '--backend', 'webgpu', '--batch', '4096', '--steps', '1', '--out', big])).toBe(
          EXIT.usage,
        );
        expect(err.mock.calls.flat().join('\n')).toMatch(
          /--batch 4096 --len 64: a buffer of 33554432 float32 elements/,
        );
        expect(existsSync(big)).toBe(false);
      } finally {
        log.mockRestore();
        err.mockRestore();
      }
    },
  );

  run(
    'the tiny scale with --backend webgpu: teacher, stepwise Mamba-2 (3 stages), dropped layers and SFT of a hybrid through mil on webgpu',
    async () => {
      const dir = tmpFolder('paper-gpu');
      const data = join(dir, 'corpus.jsonl');
      writeFileSync(data, corpus());
      const plan = tinyPaperRuns(dir, data, 'webgpu');
      const names = ['teacher', 'mamba2-stepwise-0', 'drop-50'];
      for (const n of Object.keys(plan)) if (!n.startsWith('mamba2-50-')) expect(plan[n].args, n).toContain('webgpu');
      await runAll(
        dir,
        names.map((n) => plan[n]),
        1,
        () => {},
        true,
      );
      for (const n of names) {
        const t = JSON.parse(readFileSync(join(dir, n, 'training.json'), 'utf8')) as { options: { engine: string } };
        expect(t.options.engine, n).toBe('webgpu');
      }
    },
  );
});
