/**
 * A training job as the CLI runs it (`mil train`, `mil distill`, `mil sft`): the Trainer's steps with a
 * progress line (step, loss, tokens/s, learning rate, validation perplexity, ETA), periodic validation,
 * resumable checkpoints, and at the end the model folder with its record and loss curve.
 *
 *   OUT.checkpoint/   the Trainer's checkpoint (float64 weights, Adam moments, data order, generator
 *                     state) plus history.json, written every `saveEvery` steps through the one writer;
 *                     a job started again with the same OUT resumes from it, bit for bit, and it is
 *                     removed once OUT is complete
 *   OUT/              the trained model (config, weights in `dtype`, tokenizer.json), training.json (the
 *                     command, seed, options, every logged step and validation), loss.svg
 *
 * Perplexity (`evaluate`): the token stream cut into windows of seqLen tokens, each token after the first of
 * a window predicted from the ones before it: ppl = exp(Σ nll / n). Bits per byte divide the same Σ nll
 * (in bits) by the UTF-8 bytes of the predicted tokens, so models with different tokenizers compare.
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { readJsonObject } from '../io/json.js';
import { writeFolder, type WriteData } from '../io/writer.js';
import { checkpointOf } from '../io/paths.js';
import type { WriteDType } from '../io/safetensors.js';
import type { HybridModel } from '../model/hybrid.js';
import { modelFiles } from '../model/convert.js';
import { lineChartSvg } from '../plot/svg.js';
import { SimdGemm } from '../simd/gemm.js';
import type { BpeTokenizer } from '../text/bpe.js';
import { FLOAT64_ENGINE, simdEngine, trainForward, type MatmulEngine } from './model.js';
import { logSoftmax } from '../ref/layers.js';
import { Trainer, type StepInfo, type TrainerOptions } from './trainer.js';

export interface EvalResult {
  /** mean negative log-likelihood per predicted token, nats */
  nll: number;
  ppl: number;
  bitsPerByte: number;
  tokens: number;
}

export function engineFor(name: 'float64' | 'simd' | undefined): MatmulEngine {
  return name === 'simd' ? simdEngine(SimdGemm.sharedExact()) : FLOAT64_ENGINE;
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
    const logits = trainForward(model, ids, () => false, o.engine ?? FLOAT64_ENGINE).logits;
    const lp = logSoftmax(logits, ids.length * L, V);
    ids.forEach((row, b) => {
      for (let t = 0; t + 1 < L; t++) {
        nll -= lp[(b * L + t) * V + row[t + 1]!]!;
        count++;
        bytes += o.tokenizer ? o.tokenizer.bytes[row[t + 1]!]!.length : 1;
      }
    });
    o.onProgress?.(Math.min(n, w0 + batch), n);
  }
  return { nll: nll / count, ppl: Math.exp(nll / count), bitsPerByte: nll / Math.LN2 / bytes, tokens: count };
}

export interface JobOptions {
  out: string;
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

export interface HistoryRow extends StepInfo {
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
  if (existsSync(join(ckpt, 'trainer.json'))) {
    trainer = Trainer.resume(ckpt, o.tokens, o.teacher);
    history = (readJsonObject(join(ckpt, 'history.json')).rows as HistoryRow[]) ?? [];
    resumedFrom = trainer.step;
    o.log(`resuming from ${ckpt} at step ${trainer.step}`);
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
    });
  while (trainer.step < opts.totalSteps) {
    const info = await trainer.trainStep();
    const seconds = before + (performance.now() - t0) / 1000;
    const row: HistoryRow = { ...info, seconds };
    const last = trainer.step === opts.totalSteps;
    if (trainer.step % o.evalEvery === 0 || last) {
      const v = val();
      row.valPpl = v.ppl;
      row.valNll = v.nll;
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
    if (trainer.step % o.saveEvery === 0 && !last) save();
  }
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
export function lossSvg(history: HistoryRow[], title: string): string {
  const k = Math.max(1, Math.floor(history.length / 50));
  const train: Array<[number, number]> = [];
  for (let i = 0; i < history.length; i += k) {
    const part = history.slice(i, i + k);
    train.push([part.at(-1)!.step, part.reduce((s, r) => s + r.loss, 0) / part.length]);
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
