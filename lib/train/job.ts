/**
 * A training job as the CLI runs it (`mil train`, `mil distill`, `mil sft`): the Trainer's steps with a
 * progress line (step, loss, tokens/s, learning rate, validation perplexity, ETA), periodic validation,
 * resumable checkpoints, and at the end the model folder with its record and loss curve.
 *
 *   OUT.checkpoint/   the Trainer's checkpoint (float64 weights, Adam moments, data order, generator
 *                     state) plus history.json, written every `saveEvery` steps through the one writer;
 *                     a job started again with the same OUT resumes from it, bit for bit, and it is
 *                     removed once OUT is complete. It carries a run record (run.json, lib/train/run_record.ts):
 *                     a checkpoint of another run (command, options, start model, teacher, data, tokenizer) or
 *                     with an inconsistent step is refused (exit 2) naming both runs; a partial one is set
 *                     aside as OUT.checkpoint.partial-<time> and the job starts afresh
 *   OUT/              the trained model (config, weights in `dtype`, tokenizer.json), training.json (the
 *                     command, seed, options, every logged step and validation), loss.svg
 *
 * Divergence guard: a step whose loss or gradient is not finite (NonFiniteGradientError), or whose training loss
 * or validation NLL exceeds EXPLODE × max(the run's first value, ln V) — far above a uniform guess over the V
 * tokens and above where the run began — stops the job with DivergedError (the CLI's exit 3) before anything of
 * that step is saved: OUT is not written and OUT.checkpoint keeps the last good step.
 *
 * Perplexity (`evaluate`): the token stream cut into windows of seqLen tokens, each token after the first of
 * a window predicted from the ones before it: ppl = exp(Σ nll / n). Bits per byte divide the same Σ nll
 * (in bits) by the UTF-8 bytes of the predicted tokens, so models with different tokenizers compare.
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { readJsonObject } from '../io/json.js';
import { recoverInterruptedSwap, writeFolder, type WriteData } from '../io/writer.js';
import { checkpointOf } from '../io/paths.js';
import type { WriteDType } from '../io/safetensors.js';
import type { HybridModel } from '../model/hybrid.js';
import { modelFiles } from '../model/convert.js';
import { lineChartSvg } from '../plot/svg.js';
import { SimdGemm } from '../simd/gemm.js';
import type { BpeTokenizer } from '../text/bpe.js';
import { FLOAT64_ENGINE, simdEngine, trainForward, type MatmulEngine } from './model.js';
import { logSoftmax } from '../ref/layers.js';
import { NonFiniteGradientError, Trainer, type StepInfo, type TrainerOptions } from './trainer.js';
import { MilError } from '../errors.js';
import { RUN_FILE, checkResume, inspectCheckpoint, runIdentity, runRecord, setAside } from './run_record.js';
import { lastOf } from '../checked.js';

/** How far above max(first value, ln V) a training loss or validation NLL may go before the run is called diverged. */
const EXPLODE = 3;

/** The run diverged: `what` went non-finite or exploded at `step`; `kept` says what is left on disk. */
export class DivergedError extends MilError {
  constructor(
    readonly step: number,
    readonly what: string,
    readonly kept: string,
  ) {
    super(
      'E_DIVERGED',
      `training diverged at step ${step}: ${what}; nothing written to the output; ${kept} (lower --lr and start again)`,
    );
  }
}

export interface EvalResult {
  /** mean negative log-likelihood per predicted token, nats */
  nll: number;
  ppl: number;
  bitsPerByte: number;
  tokens: number;
}

/** The CPU products of an engine name (validation on a 'webgpu' run runs on the SIMD products). */
export function engineFor(name: 'float64' | 'simd' | 'webgpu' | undefined): MatmulEngine {
  return name === 'simd' || name === 'webgpu' ? simdEngine(SimdGemm.sharedExact()) : FLOAT64_ENGINE;
}

/** Perplexity and bits per byte of `model` on `tokens` (see the file comment); at most `maxTokens` of them. */
export function evaluate(
  model: HybridModel,
  tokens: readonly number[],
  o: {
    seqLen: number;
    maxTokens?: number;
    engine?: MatmulEngine;
    tokenizer?: BpeTokenizer;
    batch?: number;
    onProgress?: (done: number, total: number) => void;
  },
): EvalResult {
  const L = Math.min(o.seqLen, tokens.length);
  const n = Math.floor(Math.min(tokens.length, o.maxTokens ?? Infinity) / L);
  const V = model.llama.vocabSize;
  const batch = o.batch ?? 8;
  let nll = 0;
  let count = 0;
  let bytes = 0;
  for (let w0 = 0; w0 < n; w0 += batch) {
    const ids: number[][] = [];
    for (let w = w0; w < Math.min(n, w0 + batch); w++) ids.push(tokens.slice(w * L, (w + 1) * L));
    const logits = trainForward(model, ids, () => false, o.engine ?? FLOAT64_ENGINE).logits; // (b·l, V)
    const lp = logSoftmax(logits, ids.length * L, V); // (b·l, V)
    ids.forEach((row, b) => {
      for (let t = 0; t + 1 < L; t++) {
        nll -= lp[(b * L + t) * V + row[t + 1]];
        count++;
        bytes += o.tokenizer ? o.tokenizer.bytes[row[t + 1]].length : 1;
      }
    });
    o.onProgress?.(Math.min(n, w0 + batch), n);
  }
  return { nll: nll / count, ppl: Math.exp(nll / count), bitsPerByte: nll / Math.LN2 / bytes, tokens: count };
}

export interface JobOptions {
  out: string;
  /** what the run is, for its run record: 'train', 'distill stage 2', 'sft' … (default 'job') */
  command?: string;
  /** where notes go that must be seen even with --quiet (a checkpoint set aside); default stderr */
  note?: (line: string) => void;
  /** the model to start from and its trainer options (ignored when a checkpoint is resumed) */
  model: HybridModel;
  trainer: TrainerOptions;
  teacher?: HybridModel;
  tokens: readonly number[];
  valTokens: readonly number[];
  tokenizer: BpeTokenizer;
  /** validate every this many steps (and at the end), on at most `evalTokens` validation tokens */
  evalEvery: number;
  evalTokens: number;
  saveEvery: number;
  /** the dtype of the final weights */
  dtype: WriteDType;
  /** what to record in training.json (the command line, what the job was) */
  record: Record<string, unknown>;
  log: (line: string) => void;
  /** files to add to the final folder */
  extra?: Array<[string, WriteData]>;
}

interface HistoryRow extends StepInfo {
  seconds: number;
  valPpl?: number;
  valNll?: number;
}

export interface JobResult {
  model: HybridModel;
  history: HistoryRow[];
  final: EvalResult;
  resumedFrom?: number;
  seconds: number;
}

export async function runJob(o: JobOptions): Promise<JobResult> {
  const ckpt = checkpointOf(o.out); // a derived output: lib/io/paths.ts checks it before the command runs
  let trainer: Trainer;
  let history: HistoryRow[] = [];
  let resumedFrom: number | undefined;
  const command = o.command ?? 'job';
  const id = runIdentity({ ...o, command, invocation: String(o.record.command ?? command) });
  recoverInterruptedSwap(ckpt); // a checkpoint killed mid-swap is its previous version again
  const found = inspectCheckpoint(ckpt);
  if (found.kind === 'partial') setAside(ckpt, found.why, o.note ?? ((l) => console.error(l)));
  if (found.kind === 'whole') {
    const rec = checkResume(ckpt, found, id, o.trainer.totalSteps);
    trainer = Trainer.resume(ckpt, o.tokens, o.teacher, {
      totalSteps: o.trainer.totalSteps,
      warmupSteps: o.trainer.warmupSteps,
    });
    history = found.history as HistoryRow[];
    resumedFrom = trainer.step;
    o.log(
      `resuming from ${ckpt} at step ${trainer.step}${rec.totalSteps !== o.trainer.totalSteps ? ` (a run of ${rec.totalSteps} steps, now going on to ${o.trainer.totalSteps})` : ''}`,
    );
  } else trainer = Trainer.create(o.model, o.tokens, o.trainer, o.teacher);
  const opts = trainer.o;
  const engine = engineFor(opts.engine);
  const val = () =>
    evaluate(trainer.model, o.valTokens, {
      seqLen: opts.seqLen,
      maxTokens: o.evalTokens,
      engine,
      tokenizer: o.tokenizer,
    });
  const t0 = performance.now();
  const before = history.at(-1)?.seconds ?? 0;
  const startStep = trainer.step;
  const save = () =>
    writeFolder(ckpt, (stage) => {
      for (const [rel, data] of trainer.checkpointFiles()) stage.writeFile(rel, data);
      stage.writeFile('history.json', JSON.stringify({ rows: history }) + '\n');
      stage.writeFile(RUN_FILE, JSON.stringify(runRecord(id, trainer.step, opts.totalSteps), null, 1) + '\n');
    });
  const lnV = Math.log(trainer.model.llama.vocabSize);
  const kept = () =>
    existsSync(join(ckpt, 'trainer.json'))
      ? `the last good checkpoint ${ckpt} (step ${readJsonObject(join(ckpt, 'trainer.json')).step as number}) is kept`
      : 'no checkpoint had been saved yet';
  // `first`: the run's first value (undefined on its first step, which only the finiteness check can stop)
  const guard = (step: number, what: string, x: number, first: number | undefined) => {
    const limit = EXPLODE * Math.max(first ?? x, lnV);
    if (!Number.isFinite(x) || x > limit)
      throw new DivergedError(step, `${what} ${x} (limit ${limit.toFixed(2)} nats)`, kept());
  };
  while (trainer.step < opts.totalSteps) {
    let info: StepInfo;
    try {
      info = await trainer.trainStep();
    } catch (e) {
      if (e instanceof NonFiniteGradientError) throw new DivergedError(e.step, e.message, kept());
      throw e;
    }
    guard(trainer.step, 'the training loss', info.loss, history[0]?.loss);
    const seconds = before + (performance.now() - t0) / 1000;
    const row: HistoryRow = { ...info, seconds };
    const last = trainer.step === opts.totalSteps;
    if (trainer.step % o.evalEvery === 0 || last) {
      await trainer.sync();
      const v = val();
      row.valPpl = v.ppl;
      row.valNll = v.nll;
      guard(trainer.step, 'the validation NLL', v.nll, history.find((r) => r.valNll !== undefined)?.valNll);
    }
    history.push(row);
    const done = trainer.step - startStep;
    const rate = (done * info.tokens) / ((performance.now() - t0) / 1000);
    const eta = ((opts.totalSteps - trainer.step) * info.tokens) / rate;
    if (
      row.valPpl !== undefined ||
      trainer.step % Math.max(1, Math.floor(o.evalEvery / 4)) === 0 ||
      trainer.step === 1
    ) {
      o.log(
        `step ${trainer.step}/${opts.totalSteps}  loss ${info.loss.toFixed(4)}${info.kl !== undefined ? ` (ce ${info.ce.toFixed(3)}, kl ${info.kl.toFixed(3)})` : ''}` +
          `${row.valPpl !== undefined ? `  val ppl ${row.valPpl.toFixed(2)}` : ''}  ${rate.toFixed(0)} tok/s  lr ${info.lr.toExponential(2)}  ${clock(seconds)} elapsed, ETA ${clock(eta)}`,
      );
    }
    if (trainer.step % o.saveEvery === 0 && !last) {
      await trainer.sync();
      save();
    }
  }
  await trainer.close();
  const final = val();
  const seconds = before + (performance.now() - t0) / 1000;
  const record = { ...o.record, options: opts, seconds: Math.round(seconds), resumedFrom, validation: final, history };
  const files: Array<[string, WriteData]> = [
    ...modelFiles(trainer.model, { dtype: o.dtype }),
    ['tokenizer.json', o.tokenizer.toJson()],
    ['training.json', JSON.stringify(record, null, 1) + '\n'],
    ['loss.svg', lossSvg(history, String(o.record.title ?? o.out)) + '\n'],
    ...(o.extra ?? []),
  ];
  writeFolder(o.out, (stage) => {
    for (const [rel, data] of files) stage.writeFile(rel, data);
  });
  rmSync(ckpt, { recursive: true, force: true });
  return { model: trainer.model, history, final, resumedFrom, seconds };
}

/** Training loss (smoothed) and validation loss against step. */
function lossSvg(history: HistoryRow[], title: string): string {
  const k = Math.max(1, Math.floor(history.length / 50));
  const train: Array<[number, number]> = [];
  for (let i = 0; i < history.length; i += k) {
    const part = history.slice(i, i + k);
    train.push([lastOf(part).step, part.reduce((s, r) => s + r.loss, 0) / part.length]);
  }
  const valid = history.filter((r) => r.valNll !== undefined).map((r) => [r.step, r.valNll!] as [number, number]);
  return lineChartSvg({
    title,
    xLabel: 'optimizer step',
    yLabel: 'loss (nats)',
    series: [
      { name: 'training loss', points: train },
      { name: 'validation NLL', points: valid },
    ],
  });
}

function clock(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  return m >= 60
    ? `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`
    : `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
}
