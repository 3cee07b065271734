/**
 * `npm run models`: makes every shipped artefact under models/ with the commands in scripts/commands.ts
 * (each one also recorded in its folder's training.json). An artefact already there is kept;
 * `-- --fresh` remakes all. On this 2-core machine: tokenizer 3 s, teacher ~30 min, draft ~10 min, each
 * hybrid ~5 min.
 *
 *   models/tokenizer.json      byte-level BPE, vocabulary 2048, on the SOTU training split
 *   models/teacher-small/      Llama d_model 128, 4 layers, 4/2 heads, context 256 (PRESETS in lib/cli/train_cmds.ts)
 *   models/draft-small/        the same widths, 1 layer: the speculative draft
 *   models/hybrid-mamba2-50/   Algorithm 1 + stage-1 distillation, Mamba-2, attention kept in layers 1 and 3
 *   models/hybrid-mamba1-50/   the same with Mamba-1
 *   models/hybrid-mamba2-0/    every layer Mamba-2 (no attention left)
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { main } from '../lib/cli/main.js';
import { MODEL_COMMANDS } from './commands.js';

process.chdir(join(import.meta.dirname, '..'));
const fresh = process.argv.includes('--fresh');
for (const { out, args } of MODEL_COMMANDS) {
  if (fresh) rmSync(out, { recursive: true, force: true });
  if (existsSync(out)) {
    console.error(`[models] ${out} exists: kept (npm run models -- --fresh remakes it)`);
    continue;
  }
  console.error(`[models] mil ${args.join(' ')}`);
  const code = await main(args);
  if (code !== 0) process.exit(code);
}
process.exit(0);
