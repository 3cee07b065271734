/**
 * `mil passkey --model DIR[,DIR…] [--data D --split test] [--context N] [--multiples 1,2,4,8]
 *  [--depths 0,0.25,0.5,0.75,1] [--trials N] [--seed S] [--backend NAME] [--out DIR] [--json]`:
 * the passkey test (lib/decode/passkey.ts) of each model, side by side — accuracy per (prompt length, needle
 * depth) cell over the same seeded trials for every model, greedy, on any backend (wasm-simd by default; webgpu
 * runs its one-submission decoder where it can). Lengths are the multiples of the training context (--context,
 * default the first model's max_position_embeddings); a model is run past its max_position_embeddings on purpose
 * (the test is how it holds up there). The filler is the held-out split of --data (default: test).
 * --out DIR: passkey.json and passkey.svg (a heat-map per model) written together through the writer.
 * Bad input (no model, models of different vocabularies, a length too short for the needle, too little filler)
 * exits 2 naming the option before any model runs.
 */
import { basename, resolve } from 'node:path';
import { writeFolder } from '../io/writer.js';
import { checkPaths, optionPaths } from '../io/paths.js';
import { loadModel } from '../model/load.js';
import { generate } from '../model/generate.js';
import type { HybridModel } from '../model/hybrid.js';
import { BACKENDS, defaultBackend, getOps } from '../ops.js';
import { passkeyHeatMapSvg } from '../plot/svg.js';
import { passkeyAccuracy, passkeyTrials, type PasskeyCell } from '../decode/passkey.js';
import { loadTokenizer, splitTokens } from './train_cmds.js';
import { UsageError, type OptSpec, type Parsed } from './args.js';

const LIST = /^\d+(\.\d+)?(,\d+(\.\d+)?)*$/;

export const PASSKEY_OPTIONS: Record<string, OptSpec> = {
  model: { kind: 'string', help: 'model folders, comma-separated (the teacher, hybrids, a pure Mamba…)' },
  data: { kind: 'string', help: 'the corpus whose held-out split is the filler (as mil eval --data)' },
  split: { kind: 'enum', choices: ['test', 'validation'] },
  tokenizer: { kind: 'string' },
  context: { kind: 'int', min: 8, max: 1 << 20, help: "the training context (default: the first model's)" },
  multiples: { kind: 'string', pattern: LIST, patternHelp: 'comma-separated multiples of --context, e.g. 1,2,4,8' },
  depths: { kind: 'string', pattern: LIST, patternHelp: 'comma-separated depths in [0, 1], e.g. 0,0.5,1' },
  trials: { kind: 'int', min: 1, max: 100_000 },
  seed: { kind: 'int', min: 0, max: Number.MAX_SAFE_INTEGER },
  backend: { kind: 'enum', choices: BACKENDS },
  out: { kind: 'string' },
  json: { kind: 'switch' },
  force: { kind: 'switch' },
};

export const PASSKEY_USAGE = `  mil passkey --model DIR[,DIR…] [--data sotu|DIR] [--split test|validation] [--context N] [--multiples 1,2,4,8]
              [--depths 0,0.25,0.5,0.75,1] [--trials 10] [--seed 0] [--backend NAME] [--out DIR] [--json]`;

/** What a passkey run reports (passkey.json). */
interface PasskeyReport {
  data: string;
  split: string;
  context: number;
  lengths: number[];
  depths: number[];
  trials: number;
  seed: number;
  backend: string;
  models: Array<{ name: string; path: string; cells: PasskeyCell[]; seconds: number }>;
}

const list = (s: string) => s.split(',').map(Number);

export async function cmdPasskey(p: Parsed): Promise<number> {
  const v = p.values;
  const dirs = (v.model as string | undefined)?.split(',').filter(Boolean) ?? [];
  if (dirs.length === 0) throw new UsageError('passkey needs --model DIR[,DIR…]');
  const depths = list((v.depths as string | undefined) ?? '0,0.25,0.5,0.75,1');
  for (const d of depths) if (d > 1) throw new UsageError(`--depths: each depth in [0, 1], got ${d}`);
  const multiples = list((v.multiples as string | undefined) ?? '1,2,4,8');
  for (const x of multiples) if (!(x > 0)) throw new UsageError(`--multiples: each multiple > 0, got ${x}`);
  const out = v.out as string | undefined;
  if (out !== undefined)
    checkPaths({
      command: 'passkey',
      inputs: [...dirs.map((path) => ({ option: 'model', path })), ...optionPaths(v, ['data', 'tokenizer'])],
      outputs: [{ option: 'out', path: out }],
      force: v.force === true,
    });
  const models = dirs.map((d) => ({ dir: d, model: loadModel(d) }));
  const tok = loadTokenizer(v, dirs[0]);
  for (const m of models)
    if (m.model.llama.vocabSize !== tok.vocabSize)
      throw new UsageError(
        `--model ${m.dir} has a vocabulary of ${m.model.llama.vocabSize}, the tokenizer (of ${dirs[0]}) ${tok.vocabSize}: every model must read the same tokens`,
      );
  const context = (v.context as number | undefined) ?? models[0].model.llama.maxPositionEmbeddings;
  const lengths = multiples.map((x) => Math.round(x * context));
  const data = (v.data as string | undefined) ?? 'sotu';
  const split = (v.split as 'test' | 'validation' | undefined) ?? 'test';
  const seed = (v.seed as number | undefined) ?? 0;
  const trials = (v.trials as number | undefined) ?? 10;
  const filler = splitTokens(data, split, tok);
  // every prompt built (and every bad length refused) before any model runs
  const grid = passkeyTrials(tok, filler, { lengths, depths, trials, seed });
  const backend = (v.backend as string | undefined) ?? defaultBackend();
  const ops = await getOps(backend);
  const longest = Math.max(...lengths);
  const report: PasskeyReport = { data, split, context, lengths, depths, trials, seed, backend, models: [] };
  for (const { dir, model } of models) {
    // positions past the training context on purpose: the config's limit lifted for this test only
    const m: HybridModel = {
      ...model,
      llama: { ...model.llama, maxPositionEmbeddings: Math.max(model.llama.maxPositionEmbeddings, longest + 16) },
    };
    const t0 = performance.now();
    const cells = await passkeyAccuracy(
      tok,
      grid,
      async (prompt, n) => (await generate(ops, m, prompt, { maxNewTokens: n, eos: [] })).tokens,
      (d, n) => !v.json && process.stderr.write(`\r${dir}: ${d}/${n} trials`),
    );
    if (!v.json) process.stderr.write('\n');
    report.models.push({ name: basename(resolve(dir)), path: dir, cells, seconds: (performance.now() - t0) / 1000 });
  }
  const json = JSON.stringify(report, null, 1) + '\n';
  if (out !== undefined) {
    const svg = passkeyHeatMapSvg({ ...report, multiples, models: report.models });
    writeFolder(out, (stage) => {
      stage.writeFile('passkey.json', json);
      stage.writeFile('passkey.svg', svg + '\n');
    });
  }
  if (v.json) console.log(JSON.stringify(report));
  else
    for (const r of report.models) {
      console.log(`[${backend}] ${r.path}: passkey accuracy (%), ${trials} trials per cell, ${r.seconds.toFixed(1)} s`);
      console.log(`length      ${depths.map((d) => `${Math.round(100 * d)}%`.padStart(6)).join('')}`);
      for (const l of lengths)
        console.log(
          `${String(l).padEnd(10)}  ${depths.map((d) => `${Math.round(100 * (r.cells.find((c) => c.length === l && c.depth === d)?.accuracy ?? 0))}`.padStart(6)).join('')}`,
        );
    }
  if (out !== undefined) (v.json ? console.error : console.log)(`wrote ${out}/passkey.json and passkey.svg`);
  return 0;
}
