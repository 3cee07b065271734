/**
 * `npm run paper`: the paper's experiments at a small scale, written to OUT/results.md with the measurements in
 * OUT/results/results.json and SVG plots beside it (OUT = docs/ by default).
 *
 *   Table 6    perplexity ratio to the teacher at 50 / 25 / 0 % attention, Mamba-1 and Mamba-2
 *              (12.5% of 4 layers rounds to 1 layer, the same model as 25%: the row is not repeated)
 *   Table 7/8  attention-weight initialisation vs random initialisation (Mamba-2, 50% and 0%), with the floor
 *              that bounds their gap: the teacher with those layers' attention silenced, untrained
 *   Table 8    (small scale) frozen vs trained MLPs in stage 1 (mil distill --train-mlp), Mamba-2 at 50% and 0%
 *   Table 9    replacing the attention layers by Mamba vs dropping those layers (50% and 25%)
 *   stepwise   50% → 25% → 0% in three stages vs one shot to 0%, the same total tokens
 *   SFT, DPO   stage 2 and stage 3 on the 50% Mamba-2 hybrid
 *   speculative  the trained 1-layer draft against the 50% and 0% Mamba-2 hybrids, K = 1..8, greedy
 *
 * Scales (--scale):
 *   toy   (default) the shipped teacher and draft (made by `npm run models`); 100-step distillation runs of batch
 *         4 × 256, evaluation on 32768 test tokens: about 45 min on 2 cores. OUT docs/, runs in runs/paper/.
 *   tiny  seconds: a teacher and draft trained for 4 steps, 6-step runs of batch 1 × 16, 64 evaluation tokens, one
 *         prompt, on 20 State of the Union addresses cut to 600 characters; every table is still produced. The
 *         runs go in OUT/runs/ (OUT runs/paper-tiny/ by default), so a tiny run never touches docs/ or runs/paper/.
 *         `--backend webgpu`: the runs the small scale makes on the GPU (all but DPO) with --backend webgpu, the
 *         small scale's wiring in seconds (Dawn's CPU adapter where there is no GPU; OUT runs/paper-tiny-webgpu/).
 *   small issue #25, on the GPU machine: a ~19M-parameter teacher (teacher-20m) and its draft on --data (a corpus of
 *         mil data build, default data/corpus), 33 distillation runs of 4M tokens, SFT/DPO on --instruct (mil data
 *         instruct, default data/instruct), the passkey runs on the retrieval curriculum beside it (mil data
 *         retrieval --corpus DATA --out data/retrieval); OUT runs/paper-small/. `--dry-run` prints the plan (every stage, its
 *         command, its backend); a run is refused (exit 2) while any stage cannot run on the GPU yet, named.
 * Every scale also measures the silenced-attention floor (mil eval --silence) and, tiny and small, the passkey test
 * (mil passkey), recorded with the minutes of every stage in results.json. A runs folder holds one scale's runs
 * (OUT/runs/scale.json): another scale's are refused, naming both.
 *
 * Every training run is a `mil` command (scripts/commands.ts; toy: child processes two at a time, tiny: in this
 * process) whose line is printed in the table; its folder holds training.json and loss.svg. A run whose folder
 * exists is reused, and an interrupted one resumes from its checkpoint, so the script can be stopped and started.
 *
 * What a run writes, and what it promises (issue #27):
 *   lock     the run lock of OUT (lib/io/run_lock.ts, `.<OUT>.mil-run-lock`) is taken before any work and held to
 *            the end: a second run on the same OUT exits 4 at once
 *   repair   then the page is checked against the JSON: results.md ends with the sha-256 of the results.json it
 *            was rendered from (scripts/paper_page.ts); a page that does not match (a run killed between the two
 *            swaps below) is rendered again from the JSON alone (`repairPaper`)
 *   write    OUT/results/ (results.json and the SVGs; other files there, gpu.md, kept) and OUT/results.md, as one
 *            set (lib/io/writer.ts writeSet): both staged in full, then swapped, the page last. A full disk leaves
 *            both as they were; a kill leaves each whole, old or new, and at worst the new folder beside the old
 *            page, which the next run repairs; no temporary is ever left
 * The page is rendered from results.json alone, so `--page-only` rebuilds it from the saved measurements.
 * usage: npm run paper [-- --scale tiny|toy|small] [-- --out DIR] [-- --fresh] [-- --eval-tokens N]
 *        [-- --page-only [--speculative]] [-- --dry-run] [-- --data DIR --instruct DIR (small)]
 *        [-- --backend webgpu (tiny)]
 * Exit status as mil's (lib/cli/exit.ts): 0 done, 2 a bad option, 4 OUT locked by another run, 6 an I/O failure
 * (a full disk), 7 an internal error; a failed training command's own status.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { SHIPPED_TOKENIZER, tokenStream } from '../lib/cli/train_cmds.js';
import { corpusPart, loadCorpus } from '../lib/data/corpus.js';
import { readManifest, readPart } from '../lib/data/ids.js';
import { cpus, tmpdir } from 'node:os';
import { BpeTokenizer } from '../lib/text/bpe.js';
import { loadModel } from '../lib/model/load.js';
import { silenceAttention } from '../lib/model/convert.js';
import { attentionLayersFor } from '../lib/model/config.js';
import type { HybridModel } from '../lib/model/hybrid.js';
import { evaluate, engineFor, type EvalResult } from '../lib/train/job.js';
import { SimdGemm } from '../lib/simd/gemm.js';
import { getOps } from '../lib/ops.js';
import { ModelDrafter } from '../lib/decode/speculative.js';
import { compareWithPlain } from '../lib/decode/compare.js';
import { checkOutput, recoverInterruptedSwap, writeFile, writeSet } from '../lib/io/writer.js';
import { takeRunLock } from '../lib/io/run_lock.js';
import { ArgumentError, MilError } from '../lib/errors.js';
import { EXIT, exitCodeFor } from '../lib/cli/exit.js';
import { UsageError } from '../lib/cli/args.js';
import {
  DISTILL_TOKENS,
  PAPER_RUNS,
  SMALL_TOKENS,
  TINY_TOKENS,
  runAll,
  smallPaperRuns,
  tinyPaperRuns,
  type Made,
} from './commands.js';
import { lookup } from '../lib/checked.js';
import { recordedSha, renderPage, renderSvgs, type PaperResults, type RunInfo, type SpecRow } from './paper_page.js';

const ROOT = join(import.meta.dirname, '..');
/** The scales --scale accepts (issue #25 adds 'small'). */
const SCALES = ['tiny', 'toy', 'small'] as const;

/** The tiny corpus: TINY_DOCS speeches of sotu, each cut to its first TINY_CHARS characters (tinyCorpus). */
const TINY_DOCS = 20;
const TINY_CHARS = 600;

/** What a scale runs, on what, and where. */
interface Scale {
  name: (typeof SCALES)[number];
  out: string;
  runsDir: string;
  teacher: string;
  draft: string;
  /** the corpus (a `--data` value) and its description on the page */
  data: string;
  dataWords: string;
  runs: Record<string, Made>;
  inProcess: boolean;
  runsAt: string;
  evalTokens: number;
  /** the evaluation's window (mil eval --len) */
  evalLen: number;
  /** the passkey stage (mil passkey): multiples of the teacher's context, depths, trials; none at toy scale */
  passkey?: { models: string[]; multiples: number[]; depths: number[]; trials: number };
  /** what the GPU-capable stages run on */
  backend: 'wasm-simd' | 'webgpu';
  tokens: number;
  distill: PaperResults['distill'];
  speculative: Omit<PaperResults['speculative'], 'prompts'> & { prompts: number };
}

function scaleFor(name: (typeof SCALES)[number], out: string | undefined, opt: Partial<Options> = {}): Scale {
  if (name === 'small') {
    const so = resolve(out ?? join(ROOT, 'runs', 'paper-small'));
    const runsDir = join(so, 'runs');
    const data = resolve(opt.data ?? join(ROOT, 'data', 'corpus'));
    return {
      name,
      out: so,
      runsDir,
      teacher: join(runsDir, 'teacher'),
      draft: join(runsDir, 'draft'),
      data,
      dataWords: `the issue #25 corpus (${data}: mil data build, 25.2M training tokens, tokenizer of 8,192), held-out test part`,
      runs: smallPaperRuns(runsDir, data, resolve(opt.instruct ?? join(ROOT, 'data', 'instruct'))),
      inProcess: false,
      runsAt: 'one at a time on the GPU machine (each a 10-minute command)',
      evalTokens: 131072,
      evalLen: 1024,
      passkey: { models: SMALL_PASSKEY_MODELS, multiples: [1, 2, 4, 8], depths: [0, 0.25, 0.5, 0.75, 1], trials: 10 },
      backend: 'webgpu',
      tokens: SMALL_TOKENS,
      // 16 micro-batches of 1 × 512 a step (commands.ts SMALL_SHAPES): 8,192 tokens
      distill: { steps: SMALL_TOKENS / 8192, batch: 16, len: 512, lr: '1e-3' },
      speculative: { prompts: 20, promptTokens: 64, newTokens: 128, repeats: 3 },
    };
  }
  if (name === 'toy')
    return {
      name,
      out: resolve(out ?? join(ROOT, 'docs')),
      runsDir: join(ROOT, 'runs', 'paper'),
      teacher: join(ROOT, 'models', 'teacher-small'),
      draft: join(ROOT, 'models', 'draft-small'),
      data: 'sotu',
      dataWords: 'State of the Union addresses, split by speech',
      runs: PAPER_RUNS,
      inProcess: false,
      runsAt: 'two at a time, one thread each',
      evalTokens: 32768,
      evalLen: 256,
      backend: 'wasm-simd',
      tokens: DISTILL_TOKENS,
      distill: { steps: 100, batch: 4, len: 256, lr: '3e-3' },
      // each prompt decoded `repeats` times both ways (interleaved), the fastest of each kept: this VM's speed drifts by 1.5× over seconds
      speculative: { prompts: 3, promptTokens: 32, newTokens: 64, repeats: 5 },
    };
  const backend = opt.backend ?? 'wasm-simd';
  const o = resolve(out ?? join(ROOT, 'runs', backend === 'webgpu' ? 'paper-tiny-webgpu' : 'paper-tiny'));
  const runsDir = join(o, 'runs');
  const data = join(runsDir, 'corpus.jsonl');
  return {
    name,
    out: o,
    runsDir,
    teacher: join(runsDir, 'teacher'),
    draft: join(runsDir, 'draft'),
    data,
    dataWords: `${TINY_DOCS} State of the Union addresses cut to their first ${TINY_CHARS} characters, split by speech`,
    runs: tinyPaperRuns(runsDir, data, backend),
    inProcess: true,
    runsAt: 'one at a time, in this process',
    evalTokens: 64,
    evalLen: 32,
    // the tiny context (64) is shorter than the needle's prompt (~82 tokens): 2× and 3× (the test split's filler is ~150 tokens)
    // three models, two depths: the stage runs in every tiny paper of the test suite (~2 s)
    passkey: { models: ['teacher', 'mamba2-50', 'mamba2-0'], multiples: [2, 3], depths: [0, 1], trials: 1 },
    backend,
    tokens: TINY_TOKENS,
    distill: { steps: 6, batch: 1, len: 16, lr: '3e-3' },
    speculative: { prompts: 1, promptTokens: 8, newTokens: 8, repeats: 1 },
  };
}
/** The tiny corpus: every ⌊n/20⌋-th speech of sotu (by id), its first 600 characters. */
function tinyCorpus(): string {
  const docs = loadCorpus('sotu').sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const step = Math.floor(docs.length / TINY_DOCS);
  return (
    docs
      .filter((_, i) => i % step === 0)
      .slice(0, TINY_DOCS)
      .map((d) => JSON.stringify({ id: d.id, text: d.text.slice(0, TINY_CHARS) }))
      .join('\n') + '\n'
  );
}

interface Options {
  scale: (typeof SCALES)[number];
  out?: string;
  fresh: boolean;
  evalTokens?: number;
  pageOnly: boolean;
  speculative: boolean;
  /** print the stages and their commands, run nothing */
  dryRun: boolean;
  /** --scale small: the corpus folder (mil data build) and the instruction sets (mil data instruct) */
  data?: string;
  instruct?: string;
  /** --scale tiny --backend webgpu: the runs the small scale trains on the GPU, on webgpu (tinyPaperRuns) */
  backend?: 'webgpu';
}

/** The options, checked before any work: a bad one is an ArgumentError or UsageError (exit 2). */
function parseOptions(argv: string[]): Options {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        scale: { type: 'string', default: 'toy' },
        out: { type: 'string' },
        fresh: { type: 'boolean', default: false },
        'eval-tokens': { type: 'string' },
        'page-only': { type: 'boolean', default: false },
        // with --page-only: measure the speculative decoding rows again (the code changed, the models did not)
        speculative: { type: 'boolean', default: false },
        'dry-run': { type: 'boolean', default: false },
        data: { type: 'string' },
        instruct: { type: 'string' },
        backend: { type: 'string' },
      },
    }));
  } catch (e) {
    throw new UsageError(`npm run paper: ${(e as Error).message}`);
  }
  const scale = values.scale;
  if (!(SCALES as readonly string[]).includes(scale))
    throw new ArgumentError('--scale', `one of ${SCALES.join(', ')}`, scale);
  const et = values['eval-tokens'];
  if (et !== undefined && !(/^\d+$/.test(et) && Number(et) >= 2))
    throw new ArgumentError('--eval-tokens', 'an integer ≥ 2', et);
  if (values.out === '') throw new ArgumentError('--out', 'a folder', '');
  for (const k of ['data', 'instruct'] as const)
    if (values[k] !== undefined && scale !== 'small')
      throw new ArgumentError(`--${k}`, 'only with --scale small (tiny and toy use their own corpus)', values[k]);
  if (values.backend !== undefined && (scale !== 'tiny' || values.backend !== 'webgpu'))
    throw new ArgumentError(
      '--backend',
      "'webgpu', with --scale tiny only (small runs on webgpu, toy on the CPU)",
      `${values.backend} (--scale ${scale})`,
    );
  return {
    scale: scale as Options['scale'],
    out: values.out,
    fresh: values.fresh,
    evalTokens: et === undefined ? undefined : Number(et),
    pageOnly: values['page-only'],
    speculative: values.speculative,
    dryRun: values['dry-run'],
    data: values.data,
    instruct: values.instruct,
    ...(values.backend === 'webgpu' ? { backend: 'webgpu' as const } : {}),
  };
}

const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');

/** The fractions of attention kept whose silenced-attention floor the run measures (mil eval --silence). */
const FLOOR_FRACTIONS = '0.5,0.25,0.125,0';
/** The models of the small scale's passkey stage: the teacher (which does not retrieve), the teacher after the
 * retrieval curriculum and the hybrids distilled from it (scripts/commands.ts smallPaperRuns; `mil data retrieval`
 * makes the curriculum), teacher first. */
const SMALL_PASSKEY_MODELS = ['teacher', 'teacher-retrieval', 'mamba2-50-retrieval', 'mamba2-0-retrieval'];

/** A path as the page shows it: relative to the checkout where it lies inside it. */
function shown(p: string): string {
  const r = relative(ROOT, p);
  return r.startsWith('..') || isAbsolute(r) ? p : r;
}

/** The measurement stages after the training runs, as `mil` command lines (what the plan and the page show). */
function measureCommands(S: Scale): Record<string, string> {
  const dataOpt = S.data === 'sotu' ? '' : ` --data ${S.data}`;
  const cmds: Record<string, string> = {
    floor: `mil eval --model ${shown(S.teacher)}${dataOpt} --split test --tokens ${S.evalTokens} --len ${S.evalLen} --silence ${FLOOR_FRACTIONS} --out floor.json`,
    evaluation: `mil eval --model DIR${dataOpt} --split test --tokens ${S.evalTokens} --len ${S.evalLen}   (each model)`,
    speculative: `speculative decoding, the draft against mamba2-50 and mamba2-0, K = 1..8, wasm-simd: ${S.speculative.prompts} prompts, each decoded ${S.speculative.repeats} times both ways and the fastest kept (compareWithPlain; the median and spread over runs, and the webgpu rows, are not measured yet)`,
  };
  if (S.passkey)
    cmds.passkey = `mil passkey --model ${S.passkey.models.map((n) => shown(n === 'teacher' ? S.teacher : join(S.runsDir, n))).join(',')}${dataOpt} --multiples ${S.passkey.multiples.join(',')} --depths ${S.passkey.depths.join(',')} --trials ${S.passkey.trials} --out passkey/`;
  return cmds;
}

/** --dry-run: every stage in order, its command, and where it runs (or why it cannot yet). */
function printPlan(S: Scale, out: (l: string) => void): void {
  out(`npm run paper --scale ${S.name}: results in ${S.out}, runs in ${S.runsDir}, corpus ${S.data}`);
  out(
    `training and distillation (${Object.keys(S.runs).length} runs, ${S.runsAt}; each resumable, an existing one kept):`,
  );
  for (const [name, m] of Object.entries(S.runs)) {
    const where = m.args.includes('webgpu') ? 'webgpu' : 'CPU';
    out(`  ${name.padEnd(22)} [${where}] mil ${m.args.join(' ')}`);
  }
  out('measurements (after the runs):');
  for (const [name, c] of Object.entries(measureCommands(S))) out(`  ${name.padEnd(22)} ${c}`);
}

/** The small scale's corpus must be one `mil data build` made, checked before any work. */
function checkRunnable(S: Scale): void {
  if (S.name === 'small' && !existsSync(join(S.data, 'manifest.json')))
    throw new UsageError(`--data ${S.data}: not a corpus made by mil data build (no manifest.json; docs/data.md)`);
}

/**
 * The runs folder belongs to one scale: RUNS/scale.json names it (written on first use). Runs of another scale (a
 * tiny teacher under a small --out) are never reused: refused, naming both.
 */
function checkScaleOfRuns(S: Scale): void {
  const f = join(S.runsDir, 'scale.json');
  // the teacher by its preset (no paths: a runs folder copied elsewhere is still the same scale's)
  const t = S.runs.teacher?.args;
  const mine = { scale: S.name, teacher: t ? `--config ${t[t.indexOf('--config') + 1]}` : 'the shipped teacher-small' };
  if (existsSync(f)) {
    const theirs = JSON.parse(readFileSync(f, 'utf8')) as { scale: string; teacher: string };
    if (theirs.scale !== mine.scale || theirs.teacher !== mine.teacher)
      throw new UsageError(
        `${S.runsDir} holds the runs of --scale ${theirs.scale} (teacher: ${theirs.teacher}), not of --scale ${mine.scale} (teacher: ${mine.teacher}): give another --out, or --fresh to remake them`,
      );
  } else writeFile(f, JSON.stringify(mine) + '\n');
}

/**
 * What a run does first, under its lock: finish or undo what a killed writer left (recoverInterruptedSwap), then
 * check that OUT/results.md carries the sha-256 of OUT/results/results.json and, where it does not, render the page
 * again from the JSON. Returns what it found: no results yet, a page and JSON that agree, a page rebuilt, or a
 * results.json older than the `format` field (not renderable: the run rewrites both).
 */
export function repairPaper(out: string): 'absent' | 'consistent' | 'repaired' | 'unrenderable' {
  const folder = join(out, 'results');
  const page = join(out, 'results.md');
  recoverInterruptedSwap(out); // the run lock's own staging file, where a run was killed while taking it
  recoverInterruptedSwap(folder);
  recoverInterruptedSwap(page);
  const json = join(folder, 'results.json');
  if (!existsSync(json)) return 'absent';
  const bytes = readFileSync(json);
  const sha = sha256(bytes);
  if (existsSync(page) && recordedSha(readFileSync(page, 'utf8')) === sha) return 'consistent';
  const R = JSON.parse(bytes.toString('utf8')) as PaperResults;
  if (R.format !== 1) return 'unrenderable';
  writeFile(page, renderPage(R, sha));
  return 'repaired';
}

/** `npm run paper ARGV`: its exit status (lib/cli/exit.ts). */
export async function paper(argv: string[], log = (l: string) => console.error(`[paper] ${l}`)): Promise<number> {
  let release: (() => void) | undefined;
  try {
    const o = parseOptions(argv);
    const S = scaleFor(o.scale, o.out, o);
    if (o.dryRun) {
      printPlan(S, (l) => console.log(l));
      return EXIT.ok;
    }
    checkRunnable(S);
    checkOutput(join(S.out, 'results'), 'folder');
    checkOutput(join(S.out, 'results.md'), 'file');
    release = takeRunLock(S.out, `npm run paper ${argv.join(' ')}`.trim(), log);
    const found = repairPaper(S.out);
    if (found === 'repaired')
      log(
        `${join(S.out, 'results.md')} was not rendered from results/results.json (a run killed between the two): rendered again`,
      );
    await measureAndWrite(S, o, log);
    return EXIT.ok;
  } catch (e) {
    const code = (e as { exitCode?: number }).exitCode ?? exitCodeFor(e);
    if (e instanceof MilError) log(`${e.name}: ${e.message}`);
    else if (code === EXIT.internal) log(`internal error (please report it):\n${(e as Error)?.stack ?? String(e)}`);
    else log((e as Error).message);
    return code;
  } finally {
    release?.();
  }
}

async function measureAndWrite(S: Scale, o: Options, log: (l: string) => void): Promise<void> {
  // --page-only: rebuild the page from the measurements in results.json (nothing trained; only what a model remade
  // since was measured on is measured again, see `fingerprint`); a run's training.json on disk, where there is
  // one, is read instead of the saved copy
  const saved = o.pageOnly
    ? (JSON.parse(readFileSync(join(S.out, 'results', 'results.json'), 'utf8')) as Partial<PaperResults> &
        Pick<PaperResults, 'ppl' | 'spec' | 'measureMinutes'>)
    : undefined;
  const RUNS = S.runsDir;
  const { teacher: TEACHER, draft: DRAFT } = S;
  const EVAL_TOKENS = o.evalTokens ?? S.evalTokens;
  if (o.fresh) rmSync(RUNS, { recursive: true, force: true });
  checkScaleOfRuns(S);
  if (S.name === 'tiny' && !existsSync(S.data)) writeFile(S.data, tinyCorpus());
  if (S.name === 'toy')
    for (const p of [TEACHER, DRAFT])
      if (!existsSync(join(p, 'config.json'))) throw new Error(`${p} is missing: run npm run models first`);

  const t00 = performance.now();
  const RUN_LIST = Object.entries(S.runs).map(([name, m]) => ({ name, ...m }));

  const minutes = saved ? {} : await runAll(ROOT, RUN_LIST, 2, (l) => log(l), S.inProcess);
  const trainingMinutes = (performance.now() - t00) / 60000;
  log(`training runs done in ${trainingMinutes.toFixed(1)} min`);
  // the wall time of the invocation that made the training runs, kept for later invocations that reuse them
  const TIMING = join(RUNS, 'timing.json');
  if (Object.keys(minutes).length === RUN_LIST.length)
    writeFile(TIMING, JSON.stringify({ trainingMinutes, date: new Date().toISOString() }) + '\n');
  const madeIn = existsSync(TIMING)
    ? (JSON.parse(readFileSync(TIMING, 'utf8')) as { trainingMinutes: number }).trainingMinutes
    : saved?.trainingMinutes;

  // ------------------------------------------------------------------ evaluation on the test split
  await SimdGemm.load();
  // small: the built corpus's token ids and tokenizer; tiny and toy: texts tokenized with the shipped tokenizer
  const built = S.name === 'small';
  const tok = BpeTokenizer.load(built ? join(S.data, readManifest(S.data).tokenizer.file) : SHIPPED_TOKENIZER);
  const testDocs = built ? [] : corpusPart(S.data, 'test');
  const test = built ? readPart(S.data, 'test') : tokenStream(testDocs, tok);
  const ppl: PaperResults['ppl'] = saved?.ppl ?? {};
  const dataOpt = S.data === 'sotu' ? '' : ` --data ${shown(S.data)}`;
  const lenOpt = S.evalLen === 256 ? '' : ` --len ${S.evalLen}`;
  const evalCmd = (dir: string) => `mil eval --model ${dir}${dataOpt} --split test --tokens ${EVAL_TOKENS}${lenOpt}`;
  const evalTest = (m: HybridModel) =>
    evaluate(m, test, { seqLen: S.evalLen, maxTokens: EVAL_TOKENS, engine: engineFor('simd'), tokenizer: tok });

  /** A model folder's fingerprint (sha-256 of its configs and weights); undefined where the folder is not on disk. */
  function fingerprint(dir: string): string | undefined {
    if (!existsSync(dir)) return undefined;
    const h = createHash('sha256');
    for (const f of readdirSync(dir)
      .filter((f) => f.endsWith('.safetensors') || f.endsWith('config.json'))
      .sort())
      h.update(f).update(readFileSync(join(dir, f)));
    return h.digest('hex');
  }
  // Every perplexity on the page, with the fingerprint of the model it was measured on. Without --page-only all
  // are measured; with it, only those whose model on disk is not the one measured (remade since, or never
  // measured); a model whose folder is not on disk (runs/ is not in the repo) keeps its saved figure.
  // The floor of Tables 7/8 ('silenced-*'): the teacher with the converted layers' attention silenced (o_proj
  // zeroed), MLPs and norms kept, nothing trained — what Mamba layers that learned only to output zero would give.
  const fpTeacher = fingerprint(TEACHER)!;
  const teacherModel = loadModel(TEACHER);
  const TEACHER_LAYERS = teacherModel.llama.numLayers;
  const measuredOn: Record<string, string> = { ...saved?.models };
  const silenced = (fraction: number) => () =>
    silenceAttention(loadModel(TEACHER), attentionLayersFor(fraction, TEACHER_LAYERS));
  const evaluations: Array<{ name: string; what: string; fp: string | undefined; model: () => HybridModel }> = [
    ...(
      [
        ['teacher', TEACHER],
        ['draft', DRAFT],
        ...RUN_LIST.filter((r) => r.name !== 'teacher' && r.name !== 'draft').map((r) => [r.name, r.out]),
      ] as Array<[string, string]>
    ).map(([name, dir]) => ({
      name,
      what: evalCmd(shown(resolve(ROOT, dir))),
      fp: fingerprint(resolve(ROOT, dir)),
      model: () => loadModel(resolve(ROOT, dir)),
    })),
    {
      name: 'silenced-50',
      what: "the teacher, attention silenced in the 50% hybrid's converted layers",
      fp: `silenced-50|${fpTeacher}`,
      model: silenced(0.5),
    },
    {
      name: 'silenced-0',
      what: 'the teacher, attention silenced in every layer',
      fp: `silenced-0|${fpTeacher}`,
      model: silenced(0),
    },
  ];
  const remeasured = new Set<string>();
  for (const e of evaluations) {
    if (saved && (e.fp === undefined || measuredOn[e.name] === e.fp)) continue;
    ppl[e.name] = evalTest(e.model());
    measuredOn[e.name] = e.fp!;
    remeasured.add(e.name);
    log(`${e.what}: ppl ${lookup(ppl, e.name).ppl.toFixed(2)}`);
  }
  // ------------------------------------------------------------------ issue #25: the floor and the passkey test
  // each a `mil` command run in this process (its output file read back), timed; measured again where the teacher
  // (or a passkey model) was measured again above, else kept from results.json
  const stageMinutes: Record<string, number> = { ...saved?.stageMinutes };
  const cmds = measureCommands(S);
  const milStage = async (name: string, args: string[]) => {
    const t = performance.now();
    const { main } = await import('../lib/cli/main.js');
    const code = await main(args);
    if (code !== 0) throw Object.assign(new Error(`mil ${args.join(' ')} exited ${code}`), { exitCode: code });
    stageMinutes[name] = (performance.now() - t) / 60000;
  };
  const dataArgs = S.data === 'sotu' ? [] : ['--data', S.data];
  // the stages' own files go to a temporary folder, removed after: what the run writes is results/ and the page,
  // as one set (writeSet below), never a half-updated runs folder
  let floor = saved?.floor;
  let passkey = saved?.passkey;
  const stageDir = mkdtempSync(join(tmpdir(), 'mil-paper-'));
  try {
    if (!floor || remeasured.has('teacher')) {
      const file = join(stageDir, 'floor.json');
      await milStage('floor', [
        'eval',
        '--model',
        TEACHER,
        ...dataArgs,
        '--split',
        'test',
        '--tokens',
        String(EVAL_TOKENS),
        '--len',
        String(S.evalLen),
        '--silence',
        FLOOR_FRACTIONS,
        '--out',
        file,
      ]);
      const f = JSON.parse(readFileSync(file, 'utf8')) as {
        teacher: EvalResult;
        floor: Array<EvalResult & { kept: number; attnLayers: number[]; ratio: number }>;
        verdict: string | null;
      };
      // the figures only: the timings (seconds, GFLOP/s) differ from run to run (the stage's minutes are in stageMinutes)
      const fig = ({ nll, ppl, bitsPerByte, tokens }: EvalResult) => ({ nll, ppl, bitsPerByte, tokens });
      floor = {
        command: cmds.floor,
        teacher: fig(f.teacher),
        rows: f.floor.map((r) => ({ kept: r.kept, attnLayers: r.attnLayers, ratio: r.ratio, ...fig(r) })),
        verdict: f.verdict,
      };
    }
    if (S.passkey && (!passkey || S.passkey.models.some((n) => remeasured.has(n)))) {
      const dir = join(stageDir, 'passkey');
      const models = S.passkey.models.map((n) => (n === 'teacher' ? TEACHER : resolve(ROOT, lookup(S.runs, n).out)));
      await milStage('passkey', [
        'passkey',
        '--model',
        models.join(','),
        ...dataArgs,
        '--multiples',
        S.passkey.multiples.join(','),
        '--depths',
        S.passkey.depths.join(','),
        '--trials',
        String(S.passkey.trials),
        '--out',
        dir,
      ]);
      const p = JSON.parse(readFileSync(join(dir, 'passkey.json'), 'utf8')) as Omit<
        Required<PaperResults>['passkey'],
        'command' | 'multiples'
      >;
      // the models' seconds left out: they differ from run to run (the stage's minutes are in stageMinutes)
      passkey = {
        ...p,
        models: p.models.map(({ name, cells }) => ({ name, cells })),
        command: cmds.passkey,
        multiples: S.passkey.multiples,
      };
    }
  } finally {
    rmSync(stageDir, { recursive: true, force: true });
  }

  const info = (name: string): RunInfo => {
    const f = join(resolve(ROOT, lookup(S.runs, name).out), 'training.json');
    if (existsSync(f)) return JSON.parse(readFileSync(f, 'utf8')) as RunInfo;
    const s = saved?.runs?.[name];
    if (!s) throw new Error(`${f} is missing and results.json holds no copy: run npm run paper without --page-only`);
    return s;
  };

  // ------------------------------------------------------------------ speculative decoding with the trained draft
  const ops = await getOps('wasm-simd');
  const draft = loadModel(DRAFT);
  const { newTokens: NEW, repeats: REPEATS } = S.speculative;
  const { promptTokens: PT, prompts: NP } = S.speculative;
  const prompts = built
    ? Array.from({ length: NP }, (_, i) => test.slice(i * 4 * PT, i * 4 * PT + PT)) // spread over the test part
    : testDocs.slice(0, NP).map((d) => tok.encode(d.text).slice(0, PT));
  // measured again with --speculative, and whenever the draft or a target was measured again above (remade)
  const remeasure = !saved || o.speculative || ['draft', 'mamba2-50', 'mamba2-0'].some((n) => remeasured.has(n));
  const spec: SpecRow[] = remeasure ? [] : saved.spec;
  for (const target of remeasure ? ['mamba2-50', 'mamba2-0'] : []) {
    const m = loadModel(resolve(ROOT, lookup(S.runs, target).out));
    for (let K = 1; K <= 8; K++) {
      const row = {
        target,
        ...(await compareWithPlain(ops, m, () => new ModelDrafter(ops, draft, K + 1, 'lazy'), prompts, {
          K,
          maxNewTokens: NEW,
          repeats: REPEATS,
        })),
      };
      spec.push(row);
      log(
        `speculative ${target} K=${K}: acceptance ${(100 * row.acceptance).toFixed(0)}%, ${row.tokensPerVerify.toFixed(2)} tokens/verify, ×${row.speedup.toFixed(2)}, identical ${row.identical}`,
      );
    }
  }

  // ------------------------------------------------------------------ results.json, then the page from it alone
  const total = saved ? trainingMinutes + saved.measureMinutes : (performance.now() - t00) / 60000;
  const draftInfo = JSON.parse(readFileSync(join(DRAFT, 'training.json'), 'utf8')) as { command: string };
  const dpoKeys = [
    'beta',
    'pairs',
    'promptLen',
    'contLen',
    'rejected',
    'heldOutPairs',
    'heldOutRewardAccuracy',
    'referencePreferenceAccuracy',
  ];
  const llama = teacherModel.llama;
  const R: PaperResults = {
    measureMinutes: total - trainingMinutes,
    trainingMinutes: madeIn,
    ppl,
    // the fingerprint of the model each perplexity was measured on (see `fingerprint`)
    models: measuredOn,
    spec,
    tokens: S.tokens,
    // what each run's training.json says that this page uses; histories only where the page plots them
    runs: Object.fromEntries(
      RUN_LIST.map((r) => {
        const { command, seconds, history, ...rest } = info(r.name);
        const keep: RunInfo = {
          command,
          seconds,
          ...Object.fromEntries(dpoKeys.filter((k) => k in rest).map((k) => [k, rest[k]])),
        };
        if (r.name.startsWith('mamba2-50') || r.name.startsWith('mamba2-0'))
          keep.history = history?.map(({ step, ce, tokens }) => ({ step, ce, tokens }));
        return [r.name, keep];
      }),
    ),
    format: 1,
    scale: S.name,
    runsMade: Object.keys(minutes).length,
    runsAt: S.runsAt,
    distill: S.distill,
    teacher: {
      path: shown(TEACHER),
      hidden: llama.hiddenSize,
      layers: llama.numLayers,
      heads: llama.numHeads,
      kvHeads: llama.numKvHeads,
      vocab: llama.vocabSize,
    },
    draft: { path: shown(DRAFT), layers: draft.llama.numLayers, command: draftInfo.command },
    data: S.dataWords,
    eval: { tokens: EVAL_TOKENS, seqLen: S.evalLen, command: evalCmd('DIR') },
    speculative: { ...S.speculative, prompts: prompts.length },
    ...(floor ? { floor } : {}),
    ...(passkey ? { passkey } : {}),
    stageMinutes: {
      ...Object.fromEntries(RUN_LIST.map((r) => [r.name, info(r.name).seconds / 60])),
      ...stageMinutes,
    },
    machine: `${cpus().length} CPU cores (${cpus()[0]?.model.trim() ?? 'unknown'}), GPU stages on ${S.backend}`,
  };
  const json = JSON.stringify(R, null, 1) + '\n';
  const svgs = renderSvgs(R);
  writeSet([
    {
      target: join(S.out, 'results'),
      keepExisting: true, // gpu.md and gpu.json (bench) live there too
      build: (stage) => {
        stage.writeFile('results.json', json);
        for (const [name, svg] of Object.entries(svgs)) stage.writeFile(name, svg);
      },
    },
    { target: join(S.out, 'results.md'), data: renderPage(R, sha256(json)) },
  ]);
  log(`wrote ${join(S.out, 'results.md')} in ${total.toFixed(1)} min`);
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url))
  process.exit(await paper(process.argv.slice(2)));
