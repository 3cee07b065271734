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
 *   OUT/              the trained model (config, weights in `dtype`, sharded past `shardBytes`, tokenizer.json),
 *                     training.json (the command, seed, options, every logged step and validation), loss.svg
 *
 * Time limit (`stopAt`, mil's --max-minutes): once a step ends past that moment (performance.now() clock) with
 * steps left, the job saves OUT.checkpoint and returns `{ stopped }` instead of the model, OUT not written; the same
 * job started again resumes there, bit for bit (the checkpoint's usual resume). At least one step runs each time.
 *
 * Divergence guard: a step whose loss or gradient is not finite (NonFiniteGradientError), or whose training loss
 * or validation NLL exceeds EXPLODE × max(the run's first value, ln V) — far above a uniform guess over the V
 * tokens and above where the run began — stops the job with DivergedError (the CLI's exit 3) before anything of
 * that step is saved: OUT is not written and OUT.checkpoint keeps the last good step.
 *
 * Validation runs on the device where the run trains on one (engine 'webgpu': the GPU step's forward and per-row CE,
 * `evaluateRows`, float32, no readback of the weights), else on the host's weights (`evaluate`). On the H200 the
 * host's forward took ~50 s per validation of the 20M-parameter teacher (16,384 tokens), half the run's time.
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
import { forward, newCache, type HybridModel } from '../model/hybrid.js';
import { lmHeadName } from '../model/mixers/block.js';
import type { Ops } from '../ops.js';
import { modelFiles, silenceAttention } from '../model/convert.js';
import { attentionLayersFor } from '../model/config.js';
import { lineChartSvg } from '../plot/svg.js';
import { SimdGemm } from '../simd/gemm.js';
import type { BpeTokenizer } from '../text/bpe.js';
import { FLOAT64_ENGINE, simdEngine, trainForward, type MatmulEngine } from './model.js';
import { GpuTrainStep, gpuMicroBatch } from './gpu_step.js';
import type { AdamOptions } from './optim.js';
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

export interface EvalOptions {
  seqLen: number;
  maxTokens?: number;
  tokenizer?: BpeTokenizer;
  /** windows per forward (rows of one batched product) */
  batch?: number;
  onProgress?: (done: number, total: number) => void;
}

/**
 * Perplexity and bits per byte of `model` on `tokens` (see the file comment); at most `maxTokens` of them, on a
 * training engine's forward (`engine`; default the float64 one, exact).
 */
export function evaluate(
  model: HybridModel,
  tokens: readonly number[],
  o: EvalOptions & { engine?: MatmulEngine },
): EvalResult {
  const acc = new NllSum(model.llama.vocabSize, o.tokenizer);
  for (const ids of evalBatches(tokens, o))
    acc.add(trainForward(model, ids, () => false, o.engine ?? FLOAT64_ENGINE).logits, ids); // logits (b·l, V)
  return acc.result();
}

/**
 * `evaluate` on an inference backend's forward (lib/model/hybrid.ts; wasm-simd: float32, every product a batched
 * SIMD product over the b·l rows of `batch` windows) — `mil eval`'s fast path — with its speed: the forward's
 * floating-point operations (`forwardFlops`) over the seconds of the whole evaluation, wall-clock and the process's
 * CPU time.
 */
export async function evaluateOn(
  ops: Ops,
  model: HybridModel,
  tokens: readonly number[],
  o: EvalOptions,
): Promise<EvalResult & { seconds: number; gflops: number; cpuSeconds: number; gflopsPerCpuSecond: number }> {
  const acc = new NllSum(model.llama.vocabSize, o.tokenizer);
  let flop = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (const ids of evalBatches(tokens, o)) {
    if (ops.linearNll) {
      // the head and the log-softmax in the backend: the logits never leave it (lib/simd/nll.ts)
      // attention and the row kernels in float32 where the backend has them (wasm-simd: ops.attention32, ops.rows32)
      const h = await forward(ops, model, ids, newCache(model, ids.length), { head: false, float32: true }); // (b, l, d)
      const next = ids.flatMap((row) => row.map((_, t) => row[Math.min(t + 1, row.length - 1)])); // (b·l)
      acc.addNll(await ops.linearNll(h, model.weights.get(lmHeadName(model)), next), ids);
    } else acc.add((await forward(ops, model, ids, newCache(model, ids.length))).data, ids); // logits (b, l, V)
    flop += forwardFlops(model, ids.length, ids[0].length);
  }
  const seconds = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  const cpuSeconds = (c.user + c.system) / 1e6; // the process's, every thread's: on a shared machine the fairer clock
  return {
    ...acc.result(),
    seconds,
    gflops: flop / seconds / 1e9,
    cpuSeconds,
    gflopsPerCpuSecond: flop / cpuSeconds / 1e9,
  };
}

/**
 * `evaluate` with the forward elsewhere: `nll(ids)` gives −log p(ids[b][t + 1]) at row b·l + t for exactly `batch`
 * windows (a GPU training step's rows: GpuTrainStep.nll); a last, shorter batch is filled up with copies of its
 * first window, whose rows are not counted.
 */
export async function evaluateRows(
  nll: (ids: number[][]) => Promise<ArrayLike<number>>,
  batch: number,
  V: number,
  tokens: readonly number[],
  o: EvalOptions,
): Promise<EvalResult> {
  const acc = new NllSum(V, o.tokenizer);
  for (const ids of evalBatches(tokens, { ...o, batch })) {
    const full = [...ids, ...Array.from({ length: batch - ids.length }, () => ids[0])]; // (batch, l)
    acc.addNll(await nll(full), ids); // (batch·l): the first ids.length windows' rows
  }
  return acc.result();
}

/**
 * `evaluate` on the GPU (`mil eval --backend webgpu`): the forward and per-row CE kernels of a GpuTrainStep made with
 * nothing that trains (a forward-only step, the step's own 'eval' program: GpuTrainStep.nll), `batch` windows a
 * submission — fewer where one submission's buffers would pass 2^24 elements (gpuMicroBatch, as training does) —
 * float32; the weights uploaded once, no logits read back. A model or length the step cannot hold even one window of
 * is refused by GpuTrainStep.create (ArgumentError naming why) before any upload.
 */
export async function evaluateGpu(model: HybridModel, tokens: readonly number[], o: EvalOptions): Promise<EvalResult> {
  const seqLen = Math.min(o.seqLen, tokens.length);
  const batch = gpuMicroBatch(model, { batch: o.batch ?? 8, seqLen });
  const step = await GpuTrainStep.create(model, { batch, seqLen, optimizer: NO_OPTIMIZER, trainable: () => false });
  try {
    return await evaluateRows((ids) => step.nll(ids), batch, model.llama.vocabSize, tokens, { ...o, seqLen });
  } finally {
    step.destroy();
  }
}

/** A forward-only step's optimizer: never used (nothing trains), required by the step's options. */
const NO_OPTIMIZER: AdamOptions = { kind: 'adamw', lr: 0, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0 };

/** One row of the silenced-attention floor (`attentionFloor`). */
interface FloorRow extends EvalResult {
  /** the fraction of attention layers kept (the conversion ratio) */
  kept: number;
  /** the layers whose attention is kept (attentionLayersFor, the choice `mil distill` makes) */
  attnLayers: number[];
  /** ppl / the teacher's ppl */
  ratio: number;
}

/**
 * The silenced-attention floor (issue #25 item 2): for each fraction F kept, the teacher with the attention of every
 * layer distillation would convert (all but attentionLayersFor(F, L)) silenced (silenceAttention: o_proj zeroed,
 * MLPs and norms kept) and measured by `measure` — what Mamba layers that learned only to output zero would give,
 * the bound on how much attention initialisation can help (Tables 7/8). F = 1 is the teacher itself.
 */
export async function attentionFloor(
  teacher: HybridModel,
  fractions: readonly number[],
  measure: (m: HybridModel) => Promise<EvalResult>,
): Promise<{ teacher: EvalResult; rows: FloorRow[] }> {
  const t = await measure(teacher);
  const L = teacher.llama.numLayers;
  const rows: FloorRow[] = [];
  for (const kept of fractions) {
    const attnLayers = attentionLayersFor(kept, L);
    const r = await measure(silenceAttention(teacher, attnLayers)); // F = 1 too: silencing nothing is the teacher
    rows.push({ kept, attnLayers, ...r, ratio: r.ppl / t.ppl });
  }
  return { teacher: t, rows };
}

/** The windows of seqLen tokens, `batch` at a time (see the file comment), reporting progress after each batch. */
function* evalBatches(tokens: readonly number[], o: EvalOptions): Generator<number[][]> {
  const L = Math.min(o.seqLen, tokens.length);
  const n = Math.floor(Math.min(tokens.length, o.maxTokens ?? Infinity) / L);
  const batch = o.batch ?? 8;
  for (let w0 = 0; w0 < n; w0 += batch) {
    const ids: number[][] = [];
    for (let w = w0; w < Math.min(n, w0 + batch); w++) ids.push(tokens.slice(w * L, (w + 1) * L));
    yield ids;
    o.onProgress?.(Math.min(n, w0 + batch), n);
  }
}

/**
 * Σ −log p(next token) over windows' logits, row by row: nll_t = lse(z_t) − z_t[next], lse = m + log Σ exp(z − m)
 * (logSoftmax's arithmetic for the one entry needed, without the (b·l, V) array), and the predicted tokens' bytes.
 */
class NllSum {
  private nll = 0;
  private count = 0;
  private bytes = 0;
  constructor(
    readonly V: number,
    readonly tokenizer?: BpeTokenizer,
  ) {}
  add(logits: ArrayLike<number>, ids: number[][]): void {
    const V = this.V;
    const L = ids[0].length;
    const nll = new Float64Array(ids.length * L); // (b·l); the last position of each window predicts nothing
    ids.forEach((row, b) => {
      for (let t = 0; t + 1 < L; t++) {
        const z = (b * L + t) * V;
        let m = -Infinity;
        for (let v = 0; v < V; v++) m = Math.max(m, logits[z + v]);
        let s = 0;
        for (let v = 0; v < V; v++) s += Math.exp(logits[z + v] - m);
        nll[b * L + t] = m + Math.log(s) - logits[z + row[t + 1]];
      }
    });
    this.addNll(nll, ids);
  }
  /** nll (b·l): row b·l + t holds −log p(ids[b][t + 1]); the last position of each window is not counted. */
  addNll(nll: ArrayLike<number>, ids: number[][]): void {
    const L = ids[0].length;
    ids.forEach((row, b) => {
      for (let t = 0; t + 1 < L; t++) {
        this.nll += nll[b * L + t];
        this.count++;
        this.bytes += this.tokenizer ? this.tokenizer.bytes[row[t + 1]].length : 1;
      }
    });
  }
  result(): EvalResult {
    const { nll, count, bytes } = this;
    return { nll: nll / count, ppl: Math.exp(nll / count), bitsPerByte: nll / Math.LN2 / bytes, tokens: count };
  }
}

/**
 * Floating-point operations of one forward over batch × L tokens, as the benches count them: every linear layer
 * 2·(b·l)·I·O (the embedding, a lookup, not), and causal attention's two products counted whole, 2·2·l²·hd per
 * head and window (the masked half is computed too). A training step (forward + dx + dW) is three times this.
 */
export function forwardFlops(m: HybridModel, batch: number, L: number): number {
  let f = 0;
  for (const n of m.weights.names()) {
    const t = m.weights.get(n); // (the weight's shape)
    if (t.rank === 2 && !n.endsWith('embed_tokens.weight')) f += 2 * batch * L * t.size;
  }
  const attnLayers = m.mamba ? m.mamba.attnLayers.length : m.llama.numLayers;
  return f + attnLayers * m.llama.numHeads * batch * 2 * L * L * m.llama.headDim;
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
  /** the final weights' largest shard in bytes (default: one file) */
  shardBytes?: number;
  /** stop, checkpointed, after the first step that ends past this performance.now() time (see the file comment) */
  stopAt?: number;
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

/** A job stopped at its time limit (`stopAt`): the step its checkpoint holds, of how many; where this run began. */
export interface StoppedJob {
  stopped: { step: number; totalSteps: number; checkpoint: string };
  resumedFrom?: number;
}

export async function runJob(o: JobOptions): Promise<JobResult | StoppedJob> {
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
  const evalOpts = { seqLen: opts.seqLen, maxTokens: o.evalTokens, tokenizer: o.tokenizer };
  // on the GPU step's device where there is one (its windows are the step's rows), else on the host's weights
  const val = async (): Promise<EvalResult> => {
    const g = trainer.gpuEval;
    if (g && g.seqLen === Math.min(opts.seqLen, o.valTokens.length))
      return evaluateRows(g.nll, g.batch, trainer.model.llama.vocabSize, o.valTokens, evalOpts);
    await trainer.sync();
    return evaluate(trainer.model, o.valTokens, { ...evalOpts, engine });
  };
  let lastVal: { step: number; r: EvalResult } | undefined;
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
      const v = await val();
      lastVal = { step: trainer.step, r: v };
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
    const late = o.stopAt !== undefined && performance.now() >= o.stopAt;
    if ((trainer.step % o.saveEvery === 0 || late) && !last) {
      await trainer.sync();
      save();
    }
    if (late && !last) {
      await trainer.close();
      return { stopped: { step: trainer.step, totalSteps: opts.totalSteps, checkpoint: ckpt }, resumedFrom };
    }
  }
  const final = lastVal?.step === trainer.step ? lastVal.r : await val(); // the last step's, validated above
  await trainer.close();
  const seconds = before + (performance.now() - t0) / 1000;
  const record = { ...o.record, options: opts, seconds: Math.round(seconds), resumedFrom, validation: final, history };
  const files: Array<[string, WriteData]> = [
    ...modelFiles(trainer.model, { dtype: o.dtype, shardBytes: o.shardBytes }),
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
