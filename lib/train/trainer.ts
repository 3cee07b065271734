/**
 * The training loop: a seeded, shuffled order over fixed-length windows of a token stream, gradient
 * accumulation, clipping, Adam/AdamW with a cosine schedule, and checkpoints that resume bit-exactly.
 *
 *   data      the stream is cut into windows of `seqLen` tokens; each epoch visits them in a fresh
 *             Fisher–Yates permutation drawn from the trainer's generator; a batch is the next `batch` windows
 *   step      for each of `accumulate` micro-batches: loss and gradients (lib/train/model.ts), gradients
 *             averaged over the micro-batches; then clip_grad_norm_, then one optimizer step at the
 *             scheduled learning rate. A non-finite loss or gradient stops the step before anything changes,
 *             naming the first parameter that went non-finite (NonFiniteGradientError).
 *   save      a folder (through the one writer: complete or not at all): the model (config files and
 *             float64 weights, so resuming loses nothing), `optimizer.safetensors` (m/<name>, v/<name>),
 *             `trainer.json` (step, epoch, position in the order, the order, the generator state, options)
 *   resume    `Trainer.resume(dir, …)`: N steps = k steps + save + resume + (N − k) steps, bit for bit
 *   webgpu    engine 'webgpu' (Llamas and hybrids, a teacher for 'distill', accumulation): each step is one GPU submission
 *             (lib/train/gpu_step.ts) with parameters and moments on the device; `sync()` reads them back into
 *             `params` and the Adam state (float32 values) before anything reads the model or saves it, so a
 *             checkpoint is the CPU format and resumes on either engine
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ArgumentError, MilError, NonFiniteError } from '../errors.js';
import { readJsonObject } from '../io/json.js';
import { getTensor, readSafetensors, safetensorsChunks } from '../io/safetensors.js';
import { writeFolder, type WriteData } from '../io/writer.js';
import { Rng } from '../rng.js';
import { Tensor } from '../tensor.js';
import type { HybridModel } from '../model/hybrid.js';
import { modelFiles } from '../model/convert.js';
import { loadModel } from '../model/load.js';
import { WeightStore } from '../model/weights.js';
import { markChanged } from '../weight_registry.js';
import { FLOAT64_ENGINE, lossAndGrads, simdEngine, trainForward, trainableBy, type TrainRule } from './model.js';
import { SimdGemm } from '../simd/gemm.js';
import { adamStep, clipGradNorm, cosineLr, newAdamState, type AdamOptions, type AdamState } from './optim.js';
import { lookup } from '../checked.js';
import { GpuTrainStep, gpuMicroBatch, gpuStepUnsupported } from './gpu_step.js';

/** A loss or gradient went NaN/Inf: the step is abandoned; nothing was changed. */
export class NonFiniteGradientError extends MilError {
  constructor(
    readonly step: number,
    readonly what: string,
  ) {
    super(
      'E_NONFINITE_GRAD',
      `step ${step}: ${what} is not finite; the step was abandoned and the model left as it was (lower the learning rate, or check the data)`,
    );
  }
}

/** A checkpoint that does not belong to this model or is incomplete. */
export class CheckpointError extends MilError {
  constructor(
    readonly dir: string,
    readonly problem: string,
  ) {
    super('E_CHECKPOINT', `${dir}: ${problem}`);
  }
}

export interface TrainerOptions {
  objective: 'lm' | 'distill';
  klWeight?: number;
  ceWeight?: number;
  optimizer: AdamOptions;
  /** clip_grad_norm_ max norm (upstream: 0.1); 0 or absent: no clipping */
  clip?: number;
  /** total optimizer steps and warmup steps of the cosine schedule */
  totalSteps: number;
  warmupSteps: number;
  batch: number;
  seqLen: number;
  /** micro-batches per optimizer step (gradient accumulation) */
  accumulate?: number;
  /**
   * engine 'webgpu': the most float32 elements one buffer of the step may hold (default 2^24, the kernels' exact
   * thread indices); a batch past it runs as smaller micro-batches of the same rows (gpu_step.ts gpuMicroBatch).
   * Tests set it small to take that path at toy sizes.
   */
  gpuBufferLimit?: number;
  seed: number;
  /** which parameters train: 'all' or 'mamba' (names holding 'mamba', upstream's stage 1) */
  train: TrainRule;
  /**
   * where the linear layers' products run: 'float64' (default, exact) or 'simd' (float32, wasm-simd kernels);
   * 'webgpu': the whole step on the GPU (float32, lib/train/gpu_step.ts)
   */
  engine?: 'float64' | 'simd' | 'webgpu';
}

export interface StepInfo {
  step: number;
  loss: number;
  ce: number;
  kl?: number;
  gradNorm: number;
  lr: number;
  tokens: number;
}

interface Position {
  epoch: number;
  next: number;
  order: number[];
}

export class Trainer {
  readonly params: Map<string, Float64Array>;
  /** the GPU step (engine 'webgpu'), made on the first step; `dirty`: the device is ahead of `params` */
  private gpu: { step?: GpuTrainStep; dirty: boolean } = { dirty: false };
  private constructor(
    readonly model: HybridModel,
    readonly teacher: HybridModel | undefined,
    readonly tokens: readonly number[],
    readonly o: TrainerOptions,
    readonly opt: AdamState,
    private rng: Rng,
    private pos: Position,
  ) {
    const trainable = this.trainable;
    this.params = new Map(
      model.weights
        .names()
        .filter(trainable)
        .map((n) => [n, lookup(model.weights.tensors, n).data as Float64Array]),
    );
  }

  /** A fresh trainer. The model's weights are made float64 and are updated in place. */
  static create(model: HybridModel, tokens: readonly number[], o: TrainerOptions, teacher?: HybridModel): Trainer {
    checkOptions(o, tokens.length, model, teacher);
    const rng = new Rng(o.seed);
    return new Trainer(float64Model(model), teacher, tokens, o, newAdamState(), rng, {
      epoch: 0,
      next: 0,
      order: shuffle(windows(tokens.length, o.seqLen), rng),
    });
  }

  get trainable(): (name: string) => boolean {
    return trainableBy(this.o.train);
  }
  get step(): number {
    return this.opt.step;
  }

  /** The next batch of windows (rows of seqLen token ids), advancing the order (a new permutation per epoch). */
  private nextBatch(): number[][] {
    const rows: number[][] = [];
    while (rows.length < this.o.batch) {
      if (this.pos.next >= this.pos.order.length)
        this.pos = {
          epoch: this.pos.epoch + 1,
          next: 0,
          order: shuffle(windows(this.tokens.length, this.o.seqLen), this.rng),
        };
      const w = this.pos.order[this.pos.next++];
      rows.push(this.tokens.slice(w * this.o.seqLen, (w + 1) * this.o.seqLen));
    }
    return rows;
  }

  /** One optimizer step. */
  async trainStep(): Promise<StepInfo> {
    if (this.o.engine === 'webgpu') return this.gpuStep();
    const acc = this.o.accumulate ?? 1;
    const grads = new Map<string, Float64Array>();
    let loss = 0;
    let ce = 0;
    let kl = 0;
    const savedPos = { ...this.pos, order: this.pos.order };
    const savedRng = this.rng.state();
    try {
      for (let k = 0; k < acc; k++) {
        const ids = this.nextBatch();
        const engine = this.o.engine === 'simd' ? simdEngine(SimdGemm.sharedExact()) : FLOAT64_ENGINE;
        // the teacher's logits on the same engine (the float64 one is the reference forward's math exactly)
        const teacherLogits = // (b·l, V), distillation only
          this.o.objective === 'distill' ? trainForward(this.teacher!, ids, () => false, engine).logits : undefined;
        const r = lossAndGrads(this.model, ids, {
          objective: this.o.objective,
          teacherLogits,
          klWeight: this.o.klWeight,
          ceWeight: this.o.ceWeight,
          trainable: this.trainable,
          engine,
        });
        if (!Number.isFinite(r.loss)) throw new NonFiniteGradientError(this.step + 1, 'the loss');
        loss += r.loss / acc;
        ce += r.ce / acc;
        kl += (r.kl ?? 0) / acc;
        for (const [n, g] of r.grads) {
          const cur = grads.get(n) ?? lookup(grads.set(n, new Float64Array(g.length)), n); // (the parameter's size)
          for (let i = 0; i < g.length; i++) cur[i] += g[i] / acc;
        }
      }
      for (const [n, g] of grads)
        if (!g.every(Number.isFinite)) throw new NonFiniteGradientError(this.step + 1, `the gradient of '${n}'`);
    } catch (e) {
      this.pos = savedPos; // nothing changed: the same batch comes next
      this.rng = Rng.fromState(savedRng);
      if (e instanceof NonFiniteError)
        throw new NonFiniteGradientError(this.step + 1, `a value inside the forward or backward pass (${e.message})`);
      throw e;
    }
    const gradNorm = this.o.clip
      ? clipGradNorm(grads, this.o.clip)
      : Math.sqrt([...grads.values()].reduce((s, g) => s + g.reduce((a, v) => a + v * v, 0), 0));
    const lr = cosineLr(this.o.optimizer.lr, this.step, this.o.totalSteps, this.o.warmupSteps);
    adamStep(this.params, grads, this.opt, this.o.optimizer, lr);
    for (const n of grads.keys()) markChanged(lookup(this.params, n)); // kernels must not reuse a stale float32 copy
    return {
      step: this.step,
      loss,
      ce,
      kl: this.o.objective === 'distill' ? kl : undefined,
      gradNorm,
      lr,
      tokens: acc * this.o.batch * this.o.seqLen,
    };
  }

  /** One step on the GPU: the next batch, the scheduled rate; a non-finite gradient changes nothing. */
  private async gpuStep(): Promise<StepInfo> {
    if (!this.gpu.step) {
      const teacher =
        this.o.objective === 'distill' ? { model: this.teacher!, klWeight: this.o.klWeight ?? 1 } : undefined;
      // a batch whose buffers pass the kernels' 2^24 elements runs as more, smaller micro-batches of the same rows in
      // the same order (lib/train/gpu_step.ts gpuMicroBatch: the same mean loss and gradient)
      const shape = { batch: this.o.batch, seqLen: this.o.seqLen, teacher };
      const micro = gpuMicroBatch(this.model, shape, this.o.gpuBufferLimit);
      this.gpu.step = await GpuTrainStep.create(this.model, {
        batch: micro,
        seqLen: this.o.seqLen,
        optimizer: this.o.optimizer,
        clip: this.o.clip,
        ceWeight: this.o.ceWeight,
        teacher,
        accumulate: (this.o.accumulate ?? 1) * (this.o.batch / micro),
        trainable: this.trainable,
      });
      this.gpu.step.setMoments(this.opt.m, this.opt.v); // a resumed run's moments (none on a fresh one)
    }
    const savedPos = { ...this.pos, order: this.pos.order };
    const savedRng = this.rng.state();
    const acc = this.o.accumulate ?? 1;
    const ids = Array.from({ length: acc }, () => this.nextBatch()).flat(); // (acc·batch rows): the micro-batches in order
    const lr = cosineLr(this.o.optimizer.lr, this.step, this.o.totalSteps, this.o.warmupSteps);
    const r = await this.gpu.step.step(ids, lr, this.step + 1);
    if (!r.ok) {
      this.pos = savedPos; // nothing changed on the device either (kernels/adamw.ts): the same batch comes next
      this.rng = Rng.fromState(savedRng);
      this.gpu.dirty = true; // the next sync reads that unchanged state back (the tests check it is unchanged)
      throw new NonFiniteGradientError(this.step + 1, Number.isFinite(r.ce) ? 'the gradient' : 'the loss');
    }
    this.opt.step++;
    this.gpu.dirty = true;
    return {
      step: this.step,
      loss: r.loss,
      ce: r.ce,
      kl: r.kl,
      gradNorm: r.gradNorm,
      lr,
      tokens: acc * this.o.batch * this.o.seqLen,
    };
  }

  /**
   * Validation on the device (engine 'webgpu', once a step has made the GPU step): `nll` of `batch` windows of
   * `seqLen` tokens at a time, at the parameters the device holds (GpuTrainStep.nll) — no sync, no host forward;
   * undefined otherwise (validate on `model` after `sync()`).
   */
  get gpuEval(): { batch: number; seqLen: number; nll: (ids: number[][]) => Promise<Float32Array> } | undefined {
    const g = this.gpu.step;
    return g && { ...g.shape, nll: (ids) => g.nll(ids) };
  }

  /** Bring `params` and the Adam state up to date with the GPU's (engine 'webgpu'; nothing to do otherwise). */
  async sync(): Promise<void> {
    if (!this.gpu.step || !this.gpu.dirty) return;
    for (const [n, t] of await this.gpu.step.read()) {
      const p = this.params.get(n); // (the parameter's size)
      if (!p) continue;
      p.set(t.p);
      markChanged(p);
      if (t.m && t.v) {
        this.opt.m.set(n, Float64Array.from(t.m));
        this.opt.v.set(n, Float64Array.from(t.v));
      }
    }
    this.gpu.dirty = false;
  }

  /** Free the GPU step's device memory (engine 'webgpu'); the next step makes it again from `params`. */
  async close(): Promise<void> {
    await this.sync();
    this.gpu.step?.destroy();
    this.gpu = { dirty: false };
  }

  /** The files of a checkpoint of this trainer (engine 'webgpu': call `sync()` first). */
  checkpointFiles(): Array<[string, WriteData]> {
    if (this.gpu.dirty)
      throw new ArgumentError('trainer', 'sync() before a checkpoint (the GPU is ahead of the host)', 'unsynced');
    const files = modelFiles(this.model).filter(([n]) => !n.startsWith('model'));
    const tensors: Record<string, Tensor> = {};
    for (const n of this.model.weights.names()) tensors[n] = this.model.weights.get(n);
    files.push(['model.safetensors', safetensorsChunks(tensors, { format: 'pt' }, 'F64').chunks]);
    const mom: Record<string, Tensor> = {};
    for (const [n, m] of this.opt.m) mom[`m/${n}`] = new Tensor(m, [m.length]);
    for (const [n, v] of this.opt.v) mom[`v/${n}`] = new Tensor(v, [v.length]);
    files.push(['optimizer.safetensors', safetensorsChunks(mom, { step: String(this.opt.step) }, 'F64').chunks]);
    const state = {
      format: 'mil-trainer/1',
      step: this.opt.step,
      options: this.o,
      position: this.pos,
      rng: this.rng.state(),
      tokens: this.tokens.length,
    };
    files.push(['trainer.json', JSON.stringify(state) + '\n']);
    return files;
  }

  /** Save a checkpoint folder (atomically: the previous checkpoint there stays whole until this one is). */
  save(dir: string): void {
    const files = this.checkpointFiles();
    writeFolder(dir, (stage) => {
      for (const [rel, data] of files) stage.writeFile(rel, data);
    });
  }

  /**
   * Resume from a checkpoint folder made by `save` with the same token stream (and teacher). `schedule`: a new
   * total (and warmup) for the cosine schedule from the next step on — a run extended or shortened on resume —
   * and/or another engine (a webgpu run resumed on the CPU or the other way round: the checkpoint is the same).
   */
  static resume(
    dir: string,
    tokens: readonly number[],
    teacher?: HybridModel,
    schedule?: { totalSteps?: number; warmupSteps?: number; engine?: TrainerOptions['engine'] },
  ): Trainer {
    const tp = join(dir, 'trainer.json');
    if (!existsSync(tp)) throw new CheckpointError(dir, 'no trainer.json: not a training checkpoint');
    const st = readJsonObject(tp, (p) => new CheckpointError(tp, p)) as {
      format?: unknown;
      step?: unknown;
      options?: TrainerOptions;
      position?: Position;
      rng?: { seed: number; s: number[]; spare: number | null };
      tokens?: unknown;
    };
    if (st.format !== 'mil-trainer/1')
      throw new CheckpointError(tp, `format is ${JSON.stringify(st.format)}, expected 'mil-trainer/1'`);
    if (st.tokens !== tokens.length)
      throw new CheckpointError(
        dir,
        `it was made on a stream of ${st.tokens} tokens, this one has ${tokens.length}: not the same data`,
      );
    if (!st.options || !st.position || !st.rng || !Number.isInteger(st.step))
      throw new CheckpointError(tp, 'options, position, rng or step missing');
    if (schedule) st.options = { ...st.options, ...schedule };
    const model = loadModel(dir);
    checkOptions(st.options, tokens.length, model, teacher);
    const opt = newAdamState();
    opt.step = st.step as number;
    const f = readSafetensors(join(dir, 'optimizer.safetensors'));
    const trainer = new Trainer(
      float64Model(model),
      teacher,
      tokens,
      st.options,
      opt,
      Rng.fromState(st.rng),
      st.position,
    );
    for (const [n, p] of trainer.params) {
      for (const k of ['m', 'v'] as const) {
        if (!f.tensors.has(`${k}/${n}`)) {
          if (opt.step === 0) continue;
          throw new CheckpointError(dir, `optimizer.safetensors has no '${k}/${n}': truncated, or from another model`);
        }
        const t = getTensor(f, `${k}/${n}`); // (the parameter's shape)
        if (t.size !== p.length)
          throw new CheckpointError(
            dir,
            `optimizer tensor '${k}/${n}' has ${t.size} values, the parameter ${p.length}: from another model`,
          );
        (k === 'm' ? opt.m : opt.v).set(n, Float64Array.from(t.data));
      }
    }
    for (const k of f.tensors.keys())
      if (!trainer.params.has(k.slice(2)))
        throw new CheckpointError(
          dir,
          `optimizer state for '${k.slice(2)}', which does not train here: from another model or option set`,
        );
    return trainer;
  }
}

function windows(n: number, seqLen: number): number[] {
  return Array.from({ length: Math.floor(n / seqLen) }, (_, i) => i);
}

/** Fisher–Yates with the seeded generator. */
function shuffle(xs: number[], rng: Rng): number[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
  return xs;
}

export function float64Model(m: HybridModel): HybridModel {
  const w = new Map<string, Tensor>();
  for (const n of m.weights.names()) {
    const t = lookup(m.weights.tensors, n); // (the weight's shape)
    w.set(n, t.data instanceof Float64Array ? new Tensor(t.data.slice(), t.shape, n) : t.astype('float64'));
  }
  return { ...m, weights: new WeightStore(w, m.weights.source) };
}

function checkOptions(o: TrainerOptions, n: number, m: HybridModel, teacher?: HybridModel): void {
  const int = (v: number, what: string, lo: number) => {
    if (!Number.isInteger(v) || v < lo) throw new ArgumentError(what, `an integer >= ${lo}`, v);
  };
  int(o.batch, 'batch', 1);
  int(o.seqLen, 'seqLen', 2);
  int(o.accumulate ?? 1, 'accumulate', 1);
  int(o.totalSteps, 'totalSteps', 1);
  int(o.warmupSteps, 'warmupSteps', 0);
  if (o.seqLen > m.llama.maxPositionEmbeddings)
    throw new ArgumentError('seqLen', `at most max_position_embeddings = ${m.llama.maxPositionEmbeddings}`, o.seqLen);
  if (n < o.seqLen) throw new ArgumentError('tokens', `at least one window of ${o.seqLen} tokens`, n);
  if (o.objective === 'distill' && !teacher)
    throw new ArgumentError('teacher', 'a teacher model for the distill objective', undefined);
  if (teacher && teacher.llama.vocabSize !== m.llama.vocabSize)
    throw new ArgumentError('teacher', `vocabulary ${m.llama.vocabSize}`, teacher.llama.vocabSize);
  if (!(o.optimizer.lr > 0)) throw new ArgumentError('optimizer.lr', 'a positive number', o.optimizer.lr);
  if (o.engine !== undefined && o.engine !== 'float64' && o.engine !== 'simd' && o.engine !== 'webgpu')
    throw new ArgumentError('engine', "'float64', 'simd' or 'webgpu'", o.engine);
  const gpuWhy = o.engine === 'webgpu' ? gpuStepUnsupported(m, o, teacher) : null;
  if (gpuWhy) throw new ArgumentError('engine', `a run the webgpu training step supports (${gpuWhy})`, 'webgpu');
}
