/**
 * `npm run models`: makes every shipped artefact under models/ with the commands in scripts/commands.ts
 * (each one also recorded in its folder's training.json). An artefact already there is kept;
 * `-- --fresh` remakes all. On this 2-core machine: tokenizer 3 s, teacher ~30 min, draft ~27 min, each
 * hybrid ~5 min (the draft and the hybrids start once the teacher is there).
 *
 *   models/tokenizer.json      byte-level BPE, vocabulary 2048, on the SOTU training split
 *   models/teacher-small/      Llama d_model 128, 4 layers, 4/2 heads, context 256 (PRESETS in lib/cli/train_cmds.ts)
 *   models/draft-small/        the same widths, 1 layer, trained on the teacher's logits: the speculative draft
 *   models/hybrid-mamba2-50/   Algorithm 1 + stage-1 distillation, Mamba-2, attention kept in layers 1 and 3
 *   models/hybrid-mamba1-50/   the same with Mamba-1
 *   models/hybrid-mamba2-0/    every layer Mamba-2 (no attention left)
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { MODEL_COMMANDS, runAll } from './commands.js';

const ROOT = join(import.meta.dirname, '..');
if (process.argv.includes('--fresh'))
  for (const { out } of MODEL_COMMANDS) rmSync(join(ROOT, out), { recursive: true, force: true });
const t0 = performance.now();
await runAll(ROOT, MODEL_COMMANDS, 2, (s) => console.error(`[models] ${s}`));
console.error(`[models] done in ${((performance.now() - t0) / 60000).toFixed(1)} min`);
process.exit(0);
