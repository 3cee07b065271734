/**
 * `npm run models`: makes every shipped artefact under models/, with the commands and seeds below (each one
 * also recorded in its folder's training.json). An artefact already there is kept; `-- --fresh` remakes all.
 * On this 2-core machine: tokenizer 3 s, teacher ~27 min, draft ~10 min, each hybrid ~10 min.
 *
 *   models/tokenizer.json         byte-level BPE, vocabulary 2048, on the SOTU training split
 *   models/teacher-small/         Llama d_model 128, 4 layers, 4/2 heads, context 256 (lib/cli/train_cmds.ts PRESETS)
 *   models/draft-small/           the same widths, 1 layer: the speculative draft
 *   models/hybrid-mamba2-50/      Algorithm 1 + stage-1 distillation, Mamba-2, attention kept in layers 1 and 3
 *   models/hybrid-mamba1-50/      the same with Mamba-1
 *   models/hybrid-mamba2-0/       every layer Mamba-2 (pure Mamba)
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { main } from '../lib/cli/main.js';

export const MODEL_COMMANDS: Array<[string, string[]]> = [
  ['models/tokenizer.json', ['tokenizer', 'train', '--data', 'sotu', '--vocab', '2048', '--out', 'models/tokenizer.json']],
  ['models/teacher-small', ['train', '--config', 'teacher-small', '--data', 'sotu', '--seed', '0', '--out', 'models/teacher-small']],
  ['models/draft-small', ['train', '--config', 'draft-small', '--data', 'sotu', '--seed', '0', '--out', 'models/draft-small']],
  ...(['mamba2-50', 'mamba1-50', 'mamba2-0'] as const).map((n): [string, string[]] => {
    const [variant, att] = n.split('-') as [string, string];
    return [`models/hybrid-${n}`, ['distill', '--teacher', 'models/teacher-small', '--variant', variant, '--attention', String(Number(att) / 100), '--tokens', '409600', '--batch', '4', '--len', '256', '--seed', '0', '--out', `models/hybrid-${n}`]];
  }),
];

const ROOT = join(import.meta.dirname, '..');
process.chdir(ROOT);
const fresh = process.argv.includes('--fresh');
for (const [path, args] of MODEL_COMMANDS) {
  if (fresh) rmSync(path, { recursive: true, force: true });
  if (existsSync(path)) {
    console.error(`[models] ${path} exists: kept (npm run models -- --fresh remakes it)`);
    continue;
  }
  console.error(`[models] mil ${args.join(' ')}`);
  const code = await main(args);
  if (code !== 0) process.exit(code);
}
process.exit(0);
