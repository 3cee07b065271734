/**
 * The commands that make every trained artefact: `npm run models` (models/, shipped in the repo) and
 * `npm run paper` (runs/paper/, the tables of docs/results.md; `--scale tiny`: tinyPaperRuns, seconds in all).
 * Each is a `mil` command line; the same line is recorded in the artefact's training.json.
 */

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/** Tokens each distillation run sees (batch 4 × 256 per step: 100 steps); learning rate 3e-3. */
export const DISTILL_TOKENS = 102400;
const distillArgs = [
  '--tokens',
  String(DISTILL_TOKENS),
  '--batch',
  '4',
  '--len',
  '256',
  '--lr',
  '3e-3',
  '--seed',
  '0',
  '--threads',
  '1',
];

export interface Made {
  /** the folder (or file) the command writes */
  out: string;
  args: string[];
}

const hybrid = (variant: string, pct: number): Made => ({
  out: `models/hybrid-${variant}-${pct}`,
  args: [
    'distill',
    '--teacher',
    'models/teacher-small',
    '--variant',
    variant,
    '--attention',
    String(pct / 100),
    ...distillArgs,
    '--out',
    `models/hybrid-${variant}-${pct}`,
  ],
});

export const MODEL_COMMANDS: Made[] = [
  {
    out: 'models/tokenizer.json',
    args: ['tokenizer', 'train', '--data', 'sotu', '--vocab', '2048', '--out', 'models/tokenizer.json'],
  },
  {
    out: 'models/teacher-small',
    args: ['train', '--config', 'teacher-small', '--data', 'sotu', '--out', 'models/teacher-small'],
  },
  // the draft learns the teacher's next-token distributions (KL only), not the text: what a draft is for is
  // agreeing with the models that descend from the teacher
  {
    out: 'models/draft-small',
    args: [
      'train',
      '--config',
      'draft-small',
      '--data',
      'sotu',
      '--teacher',
      'models/teacher-small',
      '--kl-weight',
      '1',
      '--ce-weight',
      '0',
      '--out',
      'models/draft-small',
    ],
  },
  hybrid('mamba2', 50),
  hybrid('mamba1', 50),
  hybrid('mamba2', 0),
];

const run = (name: string, extra: string[]): Made => ({
  out: `runs/paper/${name}`,
  args: [
    'distill',
    '--teacher',
    'models/teacher-small',
    ...extra,
    ...distillArgs,
    '--quiet',
    '--out',
    `runs/paper/${name}`,
  ],
});

/**
 * The distillation runs of the paper's tables, name → the options that make each differ (scale's options apart):
 * Table 6 (variant × attention fraction), Tables 7/8 (random init), Table 9 (dropping layers), stepwise.
 */
const DISTILL_RUNS: Record<string, string[]> = {
  'mamba2-50': ['--variant', 'mamba2', '--attention', '0.5'],
  'mamba2-25': ['--variant', 'mamba2', '--attention', '0.25'],
  'mamba2-0': ['--variant', 'mamba2', '--attention', '0'],
  'mamba1-50': ['--variant', 'mamba1', '--attention', '0.5'],
  'mamba1-25': ['--variant', 'mamba1', '--attention', '0.25'],
  'mamba1-0': ['--variant', 'mamba1', '--attention', '0'],
  'mamba2-50-random': ['--variant', 'mamba2', '--attention', '0.5', '--init', 'random'],
  'mamba2-0-random': ['--variant', 'mamba2', '--attention', '0', '--init', 'random'],
  'drop-50': ['--drop-instead', '--attention', '0.5'],
  'drop-25': ['--drop-instead', '--attention', '0.25'],
  'mamba2-stepwise-0': ['--variant', 'mamba2', '--stepwise', '0.5,0.25,0'],
};
/** what the DPO stage's runs share (β 0.1, seed 0), at every scale */
const DPO_OPTIONS = ['--beta', '0.1', '--seed', '0'];
/** the distillation runs that are shipped hybrids of models/ (made by the same options), reused */
const SHIPPED_RUNS: Record<string, Made> = {
  'mamba2-50': hybrid('mamba2', 50),
  'mamba2-0': hybrid('mamba2', 0),
  'mamba1-50': hybrid('mamba1', 50),
};

/** name → how it is made; the three shipped hybrids are reused from models/. */
export const PAPER_RUNS: Record<string, Made> = {
  ...Object.fromEntries(
    Object.entries(DISTILL_RUNS).map(([name, extra]) => [name, SHIPPED_RUNS[name] ?? run(name, extra)]),
  ),
  'mamba2-50-sft': {
    out: 'runs/paper/mamba2-50-sft',
    args: [
      'sft',
      '--model',
      'models/hybrid-mamba2-50',
      '--tokens',
      String(DISTILL_TOKENS / 4),
      '--batch',
      '4',
      '--len',
      '256',
      '--lr',
      '3e-4',
      '--seed',
      '0',
      '--threads',
      '1',
      '--quiet',
      '--out',
      'runs/paper/mamba2-50-sft',
    ],
  },
  'mamba2-50-dpo': {
    out: 'runs/paper/mamba2-50-dpo',
    args: [
      'dpo',
      '--model',
      'runs/paper/mamba2-50-sft',
      '--pairs',
      '256',
      '--batch',
      '8',
      ...DPO_OPTIONS,
      '--threads',
      '1',
      '--quiet',
      '--out',
      'runs/paper/mamba2-50-dpo',
    ],
  },
};

/** A draft trained on `teacher`'s next-token distributions alone (KL only): preset `config`, then `tail`. */
const draftOf = (config: string, teacher: string, tail: string[]) => [
  'train',
  '--config',
  config,
  '--teacher',
  teacher,
  '--kl-weight',
  '1',
  '--ce-weight',
  '0',
  ...tail,
];

/** A distillation command of `teacher` on `data` for `tokens` tokens: the run's `extra` options, then `tail`. */
const distillOn = (teacher: string, data: string, extra: string[], tokens: number, tail: string[]) => [
  'distill',
  '--teacher',
  teacher,
  '--data',
  data,
  ...extra,
  '--tokens',
  String(tokens),
  ...tail,
];

/** Tokens each distillation run sees at `--scale tiny` (batch 1 × 16 per step: 6 steps). */
export const TINY_TOKENS = 96;

/**
 * `npm run paper -- --scale tiny`: PAPER_RUNS' runs at a size that takes seconds, all in `dir` (absolute), on the
 * corpus `data` — and the teacher and draft too, trained there for 4 steps (toy scale uses the shipped ones):
 * the `tiny` config (d_model 32, 2 layers) for teacher and draft, the toy runs' options, batch 1 × 16, evaluation on 32 tokens.
 * `backend` 'webgpu': every run the small scale trains on the GPU (teacher, draft, distillation, SFT, DPO) with
 * `--backend webgpu` too — the small scale's wiring, checked in seconds (on Dawn's CPU adapter where there is no GPU).
 */
export function tinyPaperRuns(
  dir: string,
  data: string,
  backend: 'wasm-simd' | 'webgpu' = 'wasm-simd',
): Record<string, Made> {
  const at = (name: string) => join(dir, name);
  const made = (name: string, args: string[]): Made => ({ out: at(name), args: [...args, '--out', at(name)] });
  // no --threads: the runs share this process's SIMD instances, on every core (one thread count per process)
  const gpu = backend === 'webgpu' ? ['--backend', 'webgpu'] : [];
  const small = ['--batch', '1', '--len', '16', '--eval-tokens', '32', '--seed', '0', '--quiet'];
  const trainArgs = ['--data', data, '--steps', '4', ...small, ...gpu];
  const distill = (name: string, extra: string[]) =>
    made(name, distillOn(at('teacher'), data, extra, TINY_TOKENS, ['--lr', '3e-3', ...small, ...gpu]));
  return {
    teacher: made('teacher', ['train', '--config', 'tiny', ...trainArgs]),
    draft: made('draft', draftOf('tiny', at('teacher'), trainArgs)),
    ...Object.fromEntries(Object.entries(DISTILL_RUNS).map(([name, extra]) => [name, distill(name, extra)])),
    'mamba2-50-sft': made('mamba2-50-sft', [
      'sft',
      '--model',
      at('mamba2-50'),
      '--data',
      data,
      '--tokens',
      '32',
      '--lr',
      '3e-4',
      ...small,
      ...gpu,
    ]),
    'mamba2-50-dpo': made('mamba2-50-dpo', [
      'dpo',
      '--model',
      at('mamba2-50-sft'),
      '--data',
      data,
      '--pairs',
      '4',
      '--batch',
      '2',
      '--prompt-len',
      '4',
      '--cont-len',
      '4',
      ...DPO_OPTIONS,
      '--quiet',
      ...gpu,
    ]),
  };
}

/**
 * Run `mil` commands as child processes, `jobs` at a time (each on one thread: two single-threaded runs
 * use two cores better than one run on both), skipping those whose output exists. A command waits for
 * the commands whose outputs it reads (`--teacher`/`--model` naming another command's output).
 * `inProcess`: each command runs in this process instead (lib/cli/main.ts `main`, one at a time; what tiny runs
 * cost is mostly a process's start-up). A command that fails throws an Error whose `exitCode` is its exit status.
 * Returns minutes per command run.
 */
export async function runAll(
  root: string,
  list: Made[],
  jobs: number,
  log: (s: string) => void,
  inProcess = false,
): Promise<Record<string, number>> {
  const minutes: Record<string, number> = {};
  const pending = list.filter((m) => !existsSync(resolve(root, m.out)));
  for (const m of list) if (!pending.includes(m)) log(`${m.out}: exists, kept`);
  const done = new Set(list.filter((m) => !pending.includes(m)).map((m) => m.out));
  const needs = (m: Made) =>
    m.args
      .filter((_, i) => ['--teacher', '--model'].includes(m.args[i - 1] ?? ''))
      .filter((p) => list.some((x) => x.out === p));
  const running = new Set<Promise<void>>();
  while (pending.length > 0 || running.size > 0) {
    const i = pending.findIndex((m) => needs(m).every((p) => done.has(p)));
    if (i >= 0 && running.size < (inProcess ? 1 : jobs)) {
      const m = pending.splice(i, 1)[0];
      log(`mil ${m.args.join(' ')}`);
      const t0 = performance.now();
      const failed = (code: number | null) =>
        Object.assign(new Error(`mil ${m.args.join(' ')} exited ${code}`), { exitCode: code ?? undefined });
      const ran: Promise<void> = inProcess
        ? import('../lib/cli/main.js')
            .then(({ main }) => main(m.args))
            .then((code) => {
              if (code !== 0) throw failed(code);
            })
        : new Promise<void>((resolve, reject) => {
            const c = spawn(process.execPath, [join(root, 'bin', 'mil.js'), ...m.args], {
              cwd: root,
              stdio: ['ignore', 'pipe', 'pipe'],
            });
            const fwd = (b: Buffer) =>
              b
                .toString('utf8')
                .split('\n')
                .filter(Boolean)
                .forEach((l) => log(`  [${m.out}] ${l}`));
            c.stdout.on('data', fwd);
            c.stderr.on('data', fwd);
            c.on('close', (code) => (code === 0 ? resolve() : reject(failed(code))));
          });
      const p: Promise<void> = ran.then(() => {
        minutes[m.out] = (performance.now() - t0) / 60000;
        done.add(m.out);
        running.delete(p);
      });
      running.add(p);
      continue;
    }
    if (running.size === 0) throw new Error(`cannot start ${pending.map((m) => m.out).join(', ')}: inputs missing`);
    await Promise.race(running);
  }
  return minutes;
}

/** Tokens each distillation run sees at `--scale small` (the same for both arms of every comparison). */
export const SMALL_TOKENS = 4_194_304;
/** The seeds of the small-scale comparisons whose difference may be small (random init, replace vs drop, stepwise). */
const SMALL_SEEDS = [0, 1, 2];

/**
 * The micro-batches of the small scale's GPU runs (lib/train/gpu_step.ts holds no buffer past 2^24 float32
 * elements: gpuStepUnsupported). The teacher and draft at length 1024: attention scores b·H·l² = 2·6·1024² = 12.6M,
 * so 2 rows a micro-batch, 4 of them a step (8 × 1024 tokens, the preset's batch). Distillation at length 512: a
 * Mamba-2 layer's SSD states per row l·d_inner·d_state = 512·384·64 = 12.6M a row (25.2M at 1024, refused at any
 * batch), so 1 row a micro-batch, 16 a step (8,192 tokens, as 8 × 1024) — every arm of every table the same. SFT:
 * 2 rows of 256 (12.6M), 4 a step.
 */
const SMALL_SHAPES = {
  train: ['--batch', '2', '--accumulate', '4'],
  distill: ['--batch', '1', '--len', '512', '--accumulate', '16'],
  sft: ['--batch', '2', '--len', '256', '--accumulate', '4'],
};

/**
 * `npm run paper -- --scale small` (issue #25): the teacher (teacher-20m, 20M tokens) and draft (draft-20m, KL to the
 * teacher) trained on the GPU (--backend webgpu) on `data` (a folder made by mil data build), then every
 * distillation run of the tables at SMALL_TOKENS each (8,192 tokens a step: SMALL_SHAPES; Table 6 also at 12.5%: 1 of
 * 8 layers), the comparisons of Tables 7/8/9 (Table 8: --train-mlp beside the frozen MLPs) and stepwise at SMALL_SEEDS, SFT on `instruct`/sft.jsonl and DPO on
 * `instruct`'s pairs, every one on the GPU.
 */
export function smallPaperRuns(
  dir: string,
  data: string,
  instruct: string,
  retrieval = join(dirname(instruct), 'retrieval'),
): Record<string, Made> {
  const at = (name: string) => join(dir, name);
  const made = (name: string, args: string[]): Made => ({ out: at(name), args: [...args, '--out', at(name)] });
  const gpu = ['--backend', 'webgpu', '--quiet'];
  const distill = (name: string, extra: string[], seed: number, times = 1) =>
    made(
      name,
      distillOn(at('teacher'), data, extra, times * SMALL_TOKENS, [
        ...[...SMALL_SHAPES.distill, '--lr', '1e-3', '--seed', String(seed), ...gpu],
      ]),
    );
  const train = [...SMALL_SHAPES.train, ...gpu];
  const runs: Record<string, Made> = {
    teacher: made('teacher', ['train', '--config', 'teacher-20m', '--data', data, '--seed', '0', ...train]),
    draft: made('draft', draftOf('draft-20m', at('teacher'), ['--data', data, '--seed', '0', ...train])),
  };
  const SMALL_DISTILL: Record<string, string[]> = {
    ...DISTILL_RUNS,
    'mamba2-12': ['--variant', 'mamba2', '--attention', '0.125'],
    'mamba1-12': ['--variant', 'mamba1', '--attention', '0.125'],
    // Table 8: the MLPs trained in stage 1 too, beside their frozen twins mamba2-50 and mamba2-0 (same tokens, seeds)
    'mamba2-50-mlp': ['--variant', 'mamba2', '--attention', '0.5', '--train-mlp'],
    'mamba2-0-mlp': ['--variant', 'mamba2', '--attention', '0', '--train-mlp'],
    // stepwise as the paper schedules it: each stage the one-shot arm's whole budget (3× its tokens in all), beside
    // mamba2-stepwise-0, whose stages split that budget (the same tokens in all as the one-shot arm)
    'mamba2-stepwise-0-full': ['--variant', 'mamba2', '--stepwise', '0.5,0.25,0', '--per-stage'],
    // and one-shot on as many tokens as that stepwise run in all (SMALL_TIMES): is stepwise better, or only longer?
    'mamba2-0-3x': ['--variant', 'mamba2', '--attention', '0'],
  };
  /** runs on a multiple of SMALL_TOKENS (scripts/device_train.sh's TOKENS keeps the multiple) */
  const SMALL_TIMES: Record<string, number> = { 'mamba2-0-3x': 3 };
  const seeded = new Set([
    'mamba2-50',
    'mamba2-0',
    'mamba2-50-random',
    'mamba2-0-random',
    'mamba2-50-mlp',
    'mamba2-0-mlp',
    'drop-50',
    'drop-25',
    'mamba2-stepwise-0',
  ]);
  for (const [name, extra] of Object.entries(SMALL_DISTILL))
    for (const seed of seeded.has(name) ? SMALL_SEEDS : [0])
      runs[seed === 0 ? name : `${name}-s${seed}`] = distill(
        seed === 0 ? name : `${name}-s${seed}`,
        extra,
        seed,
        SMALL_TIMES[name] ?? 1,
      );
  // SFT on the instruction set's training split, 1M tokens (TOKENS on the GPU machine rewrites it too)
  const sft = (model: string) => [
    'sft',
    '--model',
    model,
    '--data',
    join(instruct, 'sft.jsonl'),
    '--tokens',
    '1048576',
    ...SMALL_SHAPES.sft,
    '--lr',
    '1e-4',
    '--seed',
    '0',
    ...gpu,
  ];
  runs['mamba2-50-sft'] = made('mamba2-50-sft', sft(at('mamba2-50')));
  // the teacher through the same SFT: the row the paper's comparisons have (its students against an instruct-tuned
  // teacher), on the same instruction set and budget
  runs['teacher-sft'] = made('teacher-sft', sft(at('teacher')));
  runs['mamba2-50-dpo'] = made('mamba2-50-dpo', [
    'dpo',
    '--model',
    at('mamba2-50-sft'),
    '--data',
    data,
    '--preferences',
    instruct,
    '--pairs',
    '4096',
    '--batch',
    '8',
    '--prompt-len',
    '32',
    '--cont-len',
    '48',
    // lr 5e-6: at the CLI's 1e-4 the first GPU run (2026-12-05) over-optimised — the mean reward margin past 40 by
    // step 385, the held-out answers' perplexity doubled (docs/results/paper-small.md, stages 2 and 3)
    '--lr',
    '5e-6',
    ...DPO_OPTIONS,
    ...gpu,
  ]);
  // the passkey test (issue #25 item 4) needs a teacher that retrieves: the teacher fine-tuned on the retrieval
  // curriculum (`mil data retrieval --corpus DATA --out RETRIEVAL`: copy-a-number documents in wordings the test
  // never uses, alternating with the corpus's prose), then the hybrids distilled from it on the same documents, in
  // the distillation arms' windows of 512 tokens, the curriculum's longest document (`--context 512`), so that a
  // document's needle and question mostly share a window (the GPU step refuses one sequence much longer: 768 needs a
  // buffer of 3 · 768 · 8,192 elements > 2^24); the test then asks at 2, 4, 8 and 16 times that length
  const curriculum = join(retrieval, 'retrieval.jsonl');
  const long = SMALL_SHAPES.distill;
  runs['teacher-retrieval'] = made('teacher-retrieval', [
    'sft',
    '--model',
    at('teacher'),
    '--data',
    curriculum,
    '--tokens',
    String(SMALL_TOKENS / 2),
    ...long,
    '--lr',
    '3e-4',
    '--seed',
    '0',
    ...gpu,
  ]);
  for (const [name, k] of [
    ['mamba2-50-retrieval', '0.5'],
    ['mamba2-0-retrieval', '0'],
  ] as const)
    runs[name] = made(
      name,
      distillOn(at('teacher-retrieval'), curriculum, ['--variant', 'mamba2', '--attention', k], SMALL_TOKENS, [
        ...long,
        '--lr',
        '1e-3',
        '--seed',
        '0',
        ...gpu,
      ]),
    );
  return runs;
}
