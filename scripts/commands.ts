/**
 * The commands that make every trained artefact: `npm run models` (models/, shipped in the repo) and
 * `npm run paper` (runs/paper/, the tables of docs/results.md). Each is a `mil` command line; the same
 * line is recorded in the artefact's training.json.
 */

/** Tokens each distillation run sees (batch 4 × 256 per step: 200 steps). */
export const DISTILL_TOKENS = 204800;
const distillArgs = ['--tokens', String(DISTILL_TOKENS), '--batch', '4', '--len', '256', '--seed', '0'];

export interface Made {
  /** the folder (or file) the command writes */
  out: string;
  args: string[];
}

const hybrid = (variant: string, pct: number): Made => ({
  out: `models/hybrid-${variant}-${pct}`,
  args: ['distill', '--teacher', 'models/teacher-small', '--variant', variant, '--attention', String(pct / 100), ...distillArgs, '--out', `models/hybrid-${variant}-${pct}`],
});

export const MODEL_COMMANDS: Made[] = [
  { out: 'models/tokenizer.json', args: ['tokenizer', 'train', '--data', 'sotu', '--vocab', '2048', '--out', 'models/tokenizer.json'] },
  { out: 'models/teacher-small', args: ['train', '--config', 'teacher-small', '--data', 'sotu', '--out', 'models/teacher-small'] },
  { out: 'models/draft-small', args: ['train', '--config', 'draft-small', '--data', 'sotu', '--out', 'models/draft-small', '--threads', '1'] },
  hybrid('mamba2', 50),
  hybrid('mamba1', 50),
  hybrid('mamba2', 0),
];

const run = (name: string, extra: string[]): Made => ({
  out: `runs/paper/${name}`,
  args: ['distill', '--teacher', 'models/teacher-small', ...extra, ...distillArgs, '--quiet', '--out', `runs/paper/${name}`],
});

/** name → how it is made; the three shipped hybrids are reused from models/. */
export const PAPER_RUNS: Record<string, Made> = {
  'mamba2-50': hybrid('mamba2', 50),
  'mamba2-25': run('mamba2-25', ['--variant', 'mamba2', '--attention', '0.25']),
  'mamba2-0': hybrid('mamba2', 0),
  'mamba1-50': hybrid('mamba1', 50),
  'mamba1-25': run('mamba1-25', ['--variant', 'mamba1', '--attention', '0.25']),
  'mamba1-0': run('mamba1-0', ['--variant', 'mamba1', '--attention', '0']),
  'mamba2-50-random': run('mamba2-50-random', ['--variant', 'mamba2', '--attention', '0.5', '--init', 'random']),
  'mamba2-0-random': run('mamba2-0-random', ['--variant', 'mamba2', '--attention', '0', '--init', 'random']),
  'drop-50': run('drop-50', ['--drop-instead', '--attention', '0.5']),
  'drop-25': run('drop-25', ['--drop-instead', '--attention', '0.25']),
  'mamba2-stepwise-0': run('mamba2-stepwise-0', ['--variant', 'mamba2', '--stepwise', '0.5,0.25,0']),
  'mamba2-50-sft': { out: 'runs/paper/mamba2-50-sft', args: ['sft', '--model', 'models/hybrid-mamba2-50', '--tokens', String(DISTILL_TOKENS / 4), '--batch', '4', '--len', '256', '--seed', '0', '--quiet', '--out', 'runs/paper/mamba2-50-sft'] },
  'mamba2-50-dpo': { out: 'runs/paper/mamba2-50-dpo', args: ['dpo', '--model', 'runs/paper/mamba2-50-sft', '--pairs', '256', '--batch', '8', '--beta', '0.1', '--seed', '0', '--quiet', '--out', 'runs/paper/mamba2-50-dpo'] },
};
