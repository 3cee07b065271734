/**
 * The Llama training step on the GPU (lib/train/gpu_step.ts: forward, backward, clip, Adam as one resident chain
 * of GPU.js kernels) on webgpu — here Dawn's CPU adapter (lavapipe), so the shapes are tiny — against the float64
 * CPU trainer's math (lib/train/model.ts lossAndGrads, lib/train/optim.ts clipGradNorm + adamStep) over 3 steps on
 * the same batches, on random Llamas (fast-check, numRuns in the titles: tied or separate head, attention biases
 * or none, grouped-query or not; Adam or AdamW; clipping on or off; the lm objective, or distillation from a
 * random Llama teacher of another shape: ce_w·CE + kl_w·KL with the teacher's forward in the same chain):
 *   - loss and gradient norm of every step, then every parameter and Adam moment read back after the last, agree
 *     at relative error ≤ FLOAT32_TOL = 1e-4 (measured: losses ~1e-7, parameters ~1e-7, moments ~2e-6). Adam's
 *     first moment m = Σ_k (1−β₁)β₁^{K−k} g_k is measured against the same sum of |g_k| (v against itself): the
 *     gradients of successive steps may cancel in m (seen: a dt_bias whose three gradients each agree within 1e-5
 *     summing to an m 55× smaller than that of |g|, 1.8e-4 relative to itself), and a float32 error is relative
 *     to the terms summed, not to what is left after they cancel;
 *   - every step is exactly one queue.submit and one mapAsync (the chain's own counters);
 *   - the head and the loss by row chunks (what keeps (b·l)·V logits under 2^24 elements per kernel) give the same.
 * Mutations, each of which must fail: a forward kernel left out of the chain (layer 0's down-projection: the loss
 * moves), a backward kernel left out (the last layer's dk: the parameters after the step move), the teacher's
 * down-projection left out (the KL moves).
 * The same for 50% Mamba-2 and Mamba-1 hybrids distilled from their Llama (stage 1: only the Mamba parameters
 * train, or all); six Mamba kernels left out each fail.
 */
import fc from 'fast-check';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { lookup, present } from '../lib/checked.js';
import { main } from '../lib/cli/main.js';
import { ArgumentError } from '../lib/errors.js';
import { randomLlama } from '../lib/model/random.js';
import type { HybridModel } from '../lib/model/hybrid.js';
import { convert } from '../lib/model/convert.js';
import { loadModel } from '../lib/model/load.js';
import { GpuTrainStep, gpuMicroBatch, gpuStepLargest } from '../lib/train/gpu_step.js';
import { lossAndGrads, mambaOnly, trainForward } from '../lib/train/model.js';
import { adamStep, clipGradNorm, newAdamState, type AdamOptions } from '../lib/train/optim.js';
import { NonFiniteGradientError, Trainer, float64Model, type TrainerOptions } from '../lib/train/trainer.js';
import { evaluate, evaluateGpu, evaluateRows } from '../lib/train/job.js';
import { preferencePairs, trainDpo, trainDpoGpu } from '../lib/train/dpo.js';
import { FLOAT64_ENGINE } from '../lib/train/model.js';
import { tmpFolder } from './tmp.js';
import { Tensor, relError } from '../lib/tensor.js';
import { WeightStore } from '../lib/model/weights.js';
import { FLOAT32_TOL, KERNEL_BACKENDS, Rng, withAttentionBias } from './helpers.js';

const webgpu = KERNEL_BACKENDS.find((b) => b.name === 'webgpu')!;
const run = webgpu.available ? it : it.skip;

interface Case {
  tie: boolean;
  bias: boolean;
  kvHeads: 1 | 2;
  kind: 'adam' | 'adamw';
  clip: number;
  /** distillation from a random Llama teacher of another width and depth (KL weight 0.7) */
  teacher: boolean;
  /** the head and loss by chunks of this many rows (GpuStepOptions.logitRows); absent: one chunk here */
  logitRows?: number;
  /** micro-batches per step (GpuStepOptions.accumulate; the CPU side averages their losses and gradients) */
  accumulate?: number;
  seed: number;
}

function model(c: Case): HybridModel {
  const m = randomLlama(
    { vocab: 19, hidden: 8, intermediate: 12, layers: 2, heads: 2, kvHeads: c.kvHeads, tie: c.tie },
    c.seed,
  );
  return float64Model(c.bias ? withAttentionBias(m, c.seed) : m);
}

const NRUNS = Number(process.env.NRUNS ?? 2);
const B = 2;
const L = 5;

/**
 * 3 steps on the GPU and on the CPU on the same batches: the worst relative error of losses, norms, parameters
 * and moments. `mutate` names a chain op to leave out.
 */
/** The random parts of a Case both property tests draw: the model's shape options and the optimizer. */
const modelAndOptimizer = {
  tie: fc.boolean(),
  bias: fc.boolean(),
  kvHeads: fc.constantFrom<1 | 2>(1, 2),
  kind: fc.constantFrom<'adam' | 'adamw'>('adam', 'adamw'),
};

const norm2 = (a: ArrayLike<number>) => Math.sqrt(Array.from(a).reduce((s, x) => s + x * x, 0));

async function compare(
  c: Case,
  mutate?: string,
  given?: { m: HybridModel; teacher: HybridModel; trainable: (name: string) => boolean },
): Promise<{ loss: number; norm: number; params: number; moments: number }> {
  const m = given?.m ?? model(c);
  const trainable = given?.trainable ?? (() => true);
  const o: AdamOptions = { lr: 3e-3, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.1, kind: c.kind };
  const teacher =
    given?.teacher ??
    (c.teacher
      ? float64Model(
          randomLlama({ vocab: 19, hidden: 12, intermediate: 10, layers: 1, heads: 2, kvHeads: 2 }, c.seed + 1),
        )
      : undefined);
  const gpu = await GpuTrainStep.create(m, {
    batch: B,
    seqLen: L,
    optimizer: o,
    clip: c.clip,
    teacher: teacher && { model: teacher, klWeight: 0.7 },
    logitRows: c.logitRows,
    accumulate: c.accumulate,
    trainable,
  });
  const A = c.accumulate ?? 1;
  try {
    if (mutate) gpu.omit(mutate);
    const params = new Map(m.weights.names().map((n) => [n, m.weights.get(n).data as Float64Array]));
    const st = newAdamState();
    /** Adam's m of |g| (|g + λp| for Adam's L2): the scale m's float32 error is relative to (m may cancel) */
    const mAbs = new Map<string, Float64Array>();
    const r = new Rng(c.seed);
    const got = { loss: [] as number[], norm: [] as number[] };
    const want = { loss: [] as number[], norm: [] as number[] };
    for (let t = 1; t <= 3; t++) {
      const ids = Array.from({ length: A * B }, () => Array.from({ length: L }, () => r.int(0, m.llama.vocabSize - 1)));
      const before = { ...gpu.counters };
      const g = await gpu.step(ids, o.lr, t);
      // one submission (accumulate > 1: the micro-batches' program first, waited on without a map)
      expect(gpu.counters).toEqual({ submits: before.submits + (A > 1 ? 2 : 1), maps: before.maps + 1 });
      expect(g.ok).toBe(true);
      // the mean over the micro-batches of the loss and gradients (lib/train/trainer.ts trainStep)
      const cpu = { loss: 0, grads: new Map<string, Float64Array>() };
      for (let k = 0; k < A; k++) {
        const micro = ids.slice(k * B, (k + 1) * B);
        const one = lossAndGrads(m, micro, {
          objective: teacher ? 'distill' : 'lm',
          teacherLogits: teacher && trainForward(teacher, micro, () => false).logits,
          klWeight: 0.7,
          trainable,
        });
        cpu.loss += one.loss / A;
        for (const [n, gr] of one.grads) {
          const sum = cpu.grads.get(n) ?? lookup(cpu.grads.set(n, new Float64Array(gr.length)), n); // (the parameter's size)
          for (let i = 0; i < gr.length; i++) sum[i] += gr[i] / A;
        }
      }
      const norm = c.clip
        ? clipGradNorm(cpu.grads, c.clip)
        : Math.sqrt([...cpu.grads.values()].reduce((s, a) => s + a.reduce((x, y) => x + y * y, 0), 0));
      for (const [n, gr] of cpu.grads) {
        const a = mAbs.get(n) ?? lookup(mAbs.set(n, new Float64Array(gr.length)), n); // (the parameter's size)
        const p = lookup(params, n); // (the parameter's size): before this step (Adam's L2 term reads it)
        for (let i = 0; i < gr.length; i++)
          a[i] =
            o.betas[0] * a[i] + (1 - o.betas[0]) * Math.abs(gr[i] + (o.kind === 'adam' ? o.weightDecay * p[i] : 0));
      }
      adamStep(params, cpu.grads, st, o, o.lr);
      got.loss.push(g.loss);
      want.loss.push(cpu.loss);
      got.norm.push(g.gradNorm);
      want.norm.push(norm);
    }
    const back = await gpu.read();
    let pe = 0;
    let me = 0;
    for (const [n, p] of params) {
      const b = lookup(back, n);
      pe = Math.max(pe, relError(b.p, p));
      if (!trainable(n)) continue;
      const dm = present(b.m, 'm').map((x, i) => x - lookup(st.m, n)[i]); // (the parameter's size)
      me = Math.max(me, norm2(dm) / norm2(lookup(mAbs, n)), relError(present(b.v, 'v'), lookup(st.v, n)));
    }
    return { loss: relError(got.loss, want.loss), norm: relError(got.norm, want.norm), params: pe, moments: me };
  } finally {
    gpu.destroy();
  }
}

describe(`GPU training step on ${webgpu.title}`, () => {
  run(
    '3 steps = the float64 CPU trainer (loss, grad norm, parameters, moments); one submit per step (numRuns 1 + a distilling example)',
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.record({
            ...modelAndOptimizer,
            clip: fc.constantFrom(0, 1),
            teacher: fc.boolean(),
            logitRows: fc.constantFrom<number | undefined>(undefined, 4),
            accumulate: fc.constantFrom(1, 2),
            seed: fc.integer({ min: 0, max: 1000 }),
          }),
          async (c) => {
            const e = await compare(c);
            for (const [k, v] of Object.entries(e)) expect(v, `${k} relative error`).toBeLessThanOrEqual(FLOAT32_TOL);
          },
        ),
        // one random case, and one distilling from a teacher with the head and loss in chunks of 3 rows (3+3+3+1),
        // two micro-batches per step
        {
          numRuns: 1,
          examples: [
            [
              {
                tie: true,
                bias: true,
                kvHeads: 2,
                kind: 'adam',
                clip: 1,
                teacher: true,
                logitRows: 3,
                accumulate: 2,
                seed: 7,
              },
            ],
          ],
        },
      );
    },
  );

  run('a forward or a backward kernel left out of the chain is caught', async () => {
    const c: Case = { tie: false, bias: false, kvHeads: 1, kind: 'adamw', clip: 1, teacher: true, seed: 5 };
    expect((await compare(c, 'L0.down')).loss).toBeGreaterThan(100 * FLOAT32_TOL);
    expect((await compare(c, 'L1.back.attn.dk')).params).toBeGreaterThan(100 * FLOAT32_TOL);
    expect((await compare(c, 'teacher.L0.down')).loss).toBeGreaterThan(100 * FLOAT32_TOL);
  });

  run(
    'a batch whose activations pass 2^24 elements is refused naming the limit before anything is uploaded',
    async () => {
      const m = randomLlama({ vocab: 19, hidden: 8, intermediate: 70000, layers: 1, heads: 2, kvHeads: 1 }, 1);
      const o: AdamOptions = { lr: 1e-3, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0, kind: 'adamw' };
      await expect(
        GpuTrainStep.create(m, { batch: 1, seqLen: 256, optimizer: o, trainable: () => true }),
      ).rejects.toThrow(/at most 16777216 float32 elements.*17920000/);
    },
  );

  it('an ablated Mamba-2 hybrid is refused with a typed error before anything is uploaded', async () => {
    const t = randomLlama({ vocab: 19, hidden: 8, intermediate: 12, layers: 2, heads: 2, kvHeads: 1 }, 1);
    const m = { ...convert(t, { variant: 'mamba2', attentionFraction: 0.5, seed: 1 }), ablation: { gatedNorm: false } };
    const o: AdamOptions = { lr: 1e-3, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0, kind: 'adamw' };
    await expect(GpuTrainStep.create(m, { batch: 1, seqLen: 4, optimizer: o, trainable: () => true })).rejects.toThrow(
      ArgumentError,
    );
  });
});

describe(`Trainer with engine 'webgpu' on ${webgpu.title}`, () => {
  const opts = (engine: 'float64' | 'webgpu'): TrainerOptions => ({
    objective: 'lm',
    optimizer: { lr: 1e-2, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.1, kind: 'adamw' },
    clip: 1,
    totalSteps: 4,
    warmupSteps: 1,
    batch: 2,
    seqLen: 6,
    seed: 3,
    train: 'all',
    engine,
  });
  const r = new Rng(9);
  const tokens = Array.from({ length: 60 }, () => r.int(0, 18));
  const start = () => randomLlama({ vocab: 19, hidden: 8, intermediate: 12, layers: 2, heads: 2, kvHeads: 1 }, 4);

  /**
   * 4 steps on webgpu = 4 on the float64 trainer; a checkpoint after 2 resumes on webgpu (the same losses) and on
   * the CPU. `o(engine)` the options, `teacher` for distillation.
   */
  async function resumes(
    start: () => HybridModel,
    o: (engine: 'float64' | 'webgpu') => TrainerOptions,
    teacher?: HybridModel,
  ): Promise<void> {
    const steps = async (t: Trainer, n: number) => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) out.push((await t.trainStep()).loss);
      return out;
    };
    const tc = Trainer.create(start(), tokens, o('float64'), teacher);
    const cpu = await steps(tc, 4);
    const gpu = Trainer.create(start(), tokens, o('webgpu'), teacher);
    const first = await steps(gpu, 2);
    await gpu.sync();
    const dir = tmpFolder('gpu-train');
    gpu.save(dir);
    const rest = await steps(gpu, 2);
    await gpu.close();
    expect(relError([...first, ...rest], cpu), `${[...first, ...rest]} vs ${cpu}`).toBeLessThanOrEqual(FLOAT32_TOL);
    for (const [n, p] of tc.params) expect(relError(lookup(gpu.params, n), p), n).toBeLessThanOrEqual(FLOAT32_TOL);
    const again = Trainer.resume(dir, tokens, teacher);
    expect(again.o.engine).toBe('webgpu');
    expect(await steps(again, 2)).toEqual(rest); // the float32 state read back is the state the GPU had
    await again.close();
    const onCpu = Trainer.resume(dir, tokens, teacher, { engine: 'float64' });
    expect(relError(await steps(onCpu, 2), rest)).toBeLessThanOrEqual(FLOAT32_TOL);
  }

  run(
    'losses = the float64 trainer over 4 steps; a checkpoint after 2 resumes on webgpu (the same losses) and on the CPU',
    () => resumes(start, opts),
  );

  run('the same for distillation stage 1 of a 50% Mamba-2 hybrid from its Llama (only the Mamba layers train)', () =>
    resumes(
      () => convert(start(), { variant: 'mamba2', attentionFraction: 0.5, seed: 2 }),
      (engine) => ({ ...opts(engine), objective: 'distill', klWeight: 1, ceWeight: 0.5, train: 'mamba', clip: 0.1 }),
      start(),
    ),
  );

  // accumulation: the micro-batches as a second program of the chain (one pass each), their mean before clip and Adam
  run('the same with 3 micro-batches per step (accumulate 3): the Llama, and the hybrid distilling', async () => {
    await resumes(start, (engine) => ({ ...opts(engine), accumulate: 3 }));
    await resumes(
      () => convert(start(), { variant: 'mamba2', attentionFraction: 0.5, seed: 2 }),
      (engine) => ({ ...opts(engine), objective: 'distill', klWeight: 1, ceWeight: 0.5, accumulate: 3 }),
      start(),
    );
  });

  // a batch whose buffers pass 2^24 elements (the #25 teacher's 8 × 1024: attention's 50M probabilities) runs as
  // more micro-batches of the same rows (Trainer → gpuMicroBatch): the micro-batch chosen, and that it trains the same
  run(
    'a batch as micro-batches: the largest divisor that fits, and 4 rows at once = 2 micro-batches of 2',
    async () => {
      const m = start();
      const at = (b: number) => gpuStepLargest(m, { batch: b, seqLen: 6 });
      expect([at(1), at(2), at(4)]).toEqual([152, 228, 456]); // the embedding (19 × 8), then the logits (6·b rows × 19)
      const micro = (limit: number) => gpuMicroBatch(m, { batch: 4, seqLen: 6 }, limit);
      expect([micro(at(4)), micro(at(4) - 1), micro(at(2)), micro(at(1)), micro(at(1) - 1)]).toEqual([4, 2, 2, 1, 4]);
      const optimizer: AdamOptions = { lr: 1e-2, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.1, kind: 'adamw' };
      const whole = await GpuTrainStep.create(start(), {
        batch: 4,
        seqLen: 6,
        optimizer,
        clip: 1,
        trainable: () => true,
      });
      const split = await GpuTrainStep.create(start(), {
        batch: 2,
        seqLen: 6,
        optimizer,
        clip: 1,
        accumulate: 2,
        trainable: () => true,
      });
      try {
        const rr = new Rng(5);
        for (let t = 1; t <= 2; t++) {
          const ids = Array.from({ length: 4 }, () => Array.from({ length: 6 }, () => rr.int(0, 18)));
          const [a, b] = [await whole.step(ids, 1e-2, t), await split.step(ids, 1e-2, t)];
          expect(relError([b.loss, b.gradNorm], [a.loss, a.gradNorm]), `step ${t}`).toBeLessThanOrEqual(FLOAT32_TOL);
        }
        const [pa, pb] = [await whole.read(), await split.read()];
        for (const [n, x] of pa) expect(relError(lookup(pb, n).p, x.p), n).toBeLessThanOrEqual(FLOAT32_TOL);
      } finally {
        whole.destroy();
        split.destroy();
      }
      // the Trainer takes that path past its buffer limit (here the embedding's 152 elements: micro-batches of 1 row)
      await resumes(start, (engine) => ({ ...opts(engine), gpuBufferLimit: 152 }));
    },
  );

  // validation on the device: the step's forward and per-row CE as the chain's 'eval' program (GpuTrainStep.nll),
  // against the float64 forward of the parameters the device holds (read back by sync), window by window; 31 tokens
  // are 5 windows of 6, so the last batch of 2 is filled up (evaluateRows) and its copy must not be counted
  run(
    "validation on the device = the float64 forward of the device's parameters, window by window (Llama, hybrid distilling; accumulate 1 or 2; head in chunks)",
    async () => {
      const valTokens = Array.from({ length: 31 }, () => r.int(0, 18));
      const windows = Array.from({ length: 5 }, (_, w) => valTokens.slice(6 * w, 6 * w + 6));
      const cases = [
        { hybrid: false, accumulate: 1 },
        { hybrid: true, accumulate: 2 },
        { hybrid: true, accumulate: 1, logitRows: 5 },
        { hybrid: false, accumulate: 2, logitRows: 5 },
      ];
      for (const c of cases) {
        const what = JSON.stringify(c);
        const teacher = start();
        const m = c.hybrid ? convert(start(), { variant: 'mamba2', attentionFraction: 0.5, seed: 2 }) : start();
        let nll: (ids: number[][]) => Promise<Float32Array>;
        let model: HybridModel;
        let done: () => Promise<void>;
        if (c.logitRows === undefined) {
          const o: TrainerOptions = c.hybrid
            ? { ...opts('webgpu'), objective: 'distill', klWeight: 1, ceWeight: 0.5, train: 'mamba' }
            : opts('webgpu');
          const t = Trainer.create(m, tokens, { ...o, accumulate: c.accumulate }, c.hybrid ? teacher : undefined);
          expect(t.gpuEval, what).toBeUndefined(); // no GPU step before the first step: validation on the host
          for (let i = 0; i < 2; i++) await t.trainStep();
          const g = present(t.gpuEval, 'gpuEval');
          expect([g.batch, g.seqLen], what).toEqual([2, 6]);
          nll = g.nll;
          await t.sync();
          model = t.model;
          done = () => t.close();
        } else {
          // the head and its loss in chunks of 5 rows (12 rows per pass): the rows copied into place chunk by chunk
          const step = await GpuTrainStep.create(m, {
            batch: 2,
            seqLen: 6,
            optimizer: opts('webgpu').optimizer,
            accumulate: c.accumulate,
            logitRows: c.logitRows,
            trainable: () => true,
            teacher: c.hybrid ? { model: teacher, klWeight: 1 } : undefined,
          });
          await step.step(windows.slice(0, 2 * c.accumulate), 1e-2, 1);
          nll = (ids) => step.nll(ids);
          const read = await step.read();
          model = m;
          for (const n of m.weights.names()) m.weights.get(n).data.set(lookup(read, n).p);
          done = async () => step.destroy();
        }
        const ev = await evaluateRows(nll, 2, 19, valTokens, { seqLen: 6 });
        const ref = evaluate(float64Model(model), valTokens, { seqLen: 6 });
        expect(ev.tokens, what).toBe(25);
        expect(relError([ev.nll], [ref.nll]), what).toBeLessThanOrEqual(FLOAT32_TOL);
        // each window on its own: rows t < 5 of a window, and 0 at its last position
        for (const w of windows) {
          const rows = await nll([w, windows[0]]);
          expect(rows[5], what).toBe(0);
          const one = evaluate(float64Model(model), w, { seqLen: 6 });
          const mean = rows.slice(0, 5).reduce((a, x) => a + x, 0) / 5;
          expect(relError([mean], [one.nll]), what).toBeLessThanOrEqual(FLOAT32_TOL);
        }
        await done();
      }
    },
  );

  // mil eval --backend webgpu: a forward-only step's nll (nothing trains), the same windows as the float64 evaluate;
  // 31 tokens are 5 windows of 6 in batches of 2, so the last batch is filled up and its copy must not be counted
  run(
    'evaluateGpu = the float64 evaluate (Llama, 50% Mamba-1 and 0% Mamba-2 hybrids; a last batch filled up)',
    async () => {
      const valTokens = Array.from({ length: 31 }, () => r.int(0, 18));
      const models: Array<[string, HybridModel]> = [
        ['llama', start()],
        ['mamba1-50', convert(start(), { variant: 'mamba1', attentionFraction: 0.5, seed: 3, dState: 4 })],
        ['mamba2-0', convert(start(), { variant: 'mamba2', attentionFraction: 0, seed: 4 })],
      ];
      for (const [what, m] of models) {
        const ev = await evaluateGpu(m, valTokens, { seqLen: 6, batch: 2 });
        const ref = evaluate(float64Model(m), valTokens, { seqLen: 6 });
        expect(ev.tokens, what).toBe(25);
        expect(relError([ev.nll], [ref.nll]), what).toBeLessThanOrEqual(FLOAT32_TOL);
        // at most `maxTokens`: the first 2 windows alone
        const two = await evaluateGpu(m, valTokens, { seqLen: 6, batch: 2, maxTokens: 12 });
        const refTwo = evaluate(float64Model(m), valTokens.slice(0, 12), { seqLen: 6 });
        expect([two.tokens, relError([two.nll], [refTwo.nll]) <= FLOAT32_TOL], what).toEqual([10, true]);
      }
    },
  );

  // DPO: the cross-entropy's gradient weighted per row (kernels/train_loss.ts rowWeights), the reference's and the
  // policy's log π from the steps' eval program; 5 pairs in batches of 2, so the last batch is filled up
  run(
    'DPO on the GPU = trainDpo (float64) over 3 steps, a last batch of 1 pair filled up (Llama in micro-batches of 1 row; 50% Mamba-2 hybrid)',
    async () => {
      const optimizer: AdamOptions = { kind: 'adamw', lr: 1e-2, betas: [0.9, 0.98], eps: 1e-8, weightDecay: 0 };
      for (const hybrid of [false, true]) {
        const ref = hybrid ? convert(start(), { variant: 'mamba2', attentionFraction: 0.5, seed: 2 }) : start();
        const pairs = preferencePairs(tokens, 5, 3, 3, 1);
        const o = { beta: 0.5, batch: 2, optimizer };
        const cpu = trainDpo(ref, pairs, { ...o, engine: FLOAT64_ENGINE });
        // the Llama's 4 rows a step as micro-batches of one row (a buffer limit of its embedding, 19 × 8 = 152 elements)
        const gpu = await trainDpoGpu(ref, pairs, { ...o, bufferLimit: hybrid ? undefined : 152 });
        const what = hybrid ? 'hybrid' : 'llama (micro-batches of 1 row)';
        expect(gpu.history.length, what).toBe(3);
        for (const k of ['loss', 'margin', 'lr', 'gradNorm'] as const)
          expect(
            relError(
              gpu.history.map((h) => h[k]),
              cpu.history.map((h) => h[k]),
            ),
            `${what} ${k}`,
          ).toBeLessThanOrEqual(FLOAT32_TOL);
        expect(
          gpu.history.map((h) => h.accuracy),
          what,
        ).toEqual(cpu.history.map((h) => h.accuracy));
        for (const n of cpu.policy.weights.names())
          expect(
            relError(gpu.policy.weights.get(n).data, cpu.policy.weights.get(n).data),
            `${what} ${n}`,
          ).toBeLessThanOrEqual(FLOAT32_TOL);
      }
    },
  );

  run('a non-finite gradient: NonFiniteGradientError, and the device state read back is the state before', async () => {
    const m = start();
    m.weights.get('model.norm.weight').data[0] = NaN; // the loss and gradients go NaN
    const t = Trainer.create(m, tokens, opts('webgpu'));
    const before = new Map([...t.params].map(([n, p]) => [n, Array.from(p)]));
    await expect(t.trainStep()).rejects.toThrow(NonFiniteGradientError);
    expect(t.step).toBe(0);
    await t.sync(); // reads the device back: Adam's kernels returned their inputs
    for (const [n, p] of t.params) expect(Array.from(p), n).toEqual(before.get(n));
    for (const [n, a] of t.opt.m)
      expect(
        a.every((x) => x === 0),
        n,
      ).toBe(true);
    await t.close();
  });

  it('a model the GPU step does not support is refused before any work', () => {
    const ablated = {
      ...convert(start(), { variant: 'mamba2', attentionFraction: 0.5, seed: 1 }),
      ablation: { gatedNorm: false },
    };
    expect(() => Trainer.create(ablated, tokens, opts('webgpu'))).toThrow(/ablated Mamba-2 layer/);
  });
});

describe('mil distill|dpo --backend webgpu', () => {
  /** exit code and stderr of `mil …args` */
  async function mil(...args: string[]): Promise<{ code: number; err: string }> {
    let err = '';
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    const e = vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void (err += a.join(' ') + '\n'));
    try {
      return { code: await main(args), err };
    } finally {
      log.mockRestore();
      e.mockRestore();
    }
  }
  it('exit 2 naming what is missing, nothing written (dpo, --engine alongside)', async () => {
    const d = tmpFolder('gpu-train-cli');
    const out = join(d, 'out');
    const cases: Array<[string[], RegExp]> = [
      [['dpo', '--model', d, '--backend', 'webgpu', '--engine', 'float64', '--out', out], /not both/],
      [['train', '--config', 'tiny', '--backend', 'webgpu', '--engine', 'simd', '--out', out], /not both/],
    ];
    for (const [args, msg] of cases) {
      const r = await mil(...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err).toMatch(msg);
      expect(existsSync(out)).toBe(false);
    }
  });

  run(
    'mil distill --backend webgpu (stage 1, Mamba-2) = --engine float64: the same losses, only Mamba weights move',
    async () => {
      const d = tmpFolder('gpu-distill-cli');
      const data = join(d, 'txt');
      mkdirSync(data);
      const words = 'the union is strong and the people of the states have made it so by their law'.split(' ');
      const r = new Rng(3);
      for (let i = 0; i < 6; i++)
        writeFileSync(join(data, `doc${i}.txt`), Array.from({ length: 300 }, () => words[r.int(0, 15)]).join(' '));
      const common = ['--data', data, '--len', '8', '--batch', '2', '--eval-tokens', '32', '--quiet'];
      const t = join(d, 't');
      expect(
        (await mil('train', '--config', 'tiny', ...common, '--steps', '1', '--engine', 'float64', '--out', t)).code,
      ).toBe(0);
      // mil dpo --backend webgpu of that Llama = --engine float64: the same DPO losses (3 steps of 2 pairs)
      const dpo = [
        'dpo',
        '--model',
        t,
        '--data',
        data,
        '--pairs',
        '6',
        '--batch',
        '2',
        '--prompt-len',
        '4',
        '--cont-len',
        '4',
        '--quiet',
      ];
      expect((await mil(...dpo, '--backend', 'webgpu', '--out', join(d, 'dpo-gpu'))).code).toBe(0);
      expect((await mil(...dpo, '--engine', 'float64', '--out', join(d, 'dpo-cpu'))).code).toBe(0);
      const dpoLosses = (dir: string) => {
        const r = JSON.parse(readFileSync(join(d, dir, 'training.json'), 'utf8')) as {
          backend: string;
          history: Array<{ loss: number }>;
        };
        return { backend: r.backend, losses: r.history.map((h) => h.loss) };
      };
      const [dg, dc] = [dpoLosses('dpo-gpu'), dpoLosses('dpo-cpu')];
      expect([dg.backend, dc.backend]).toEqual(['webgpu', 'cpu (float64)']);
      expect(dg.losses).toHaveLength(3);
      expect(relError(dg.losses, dc.losses)).toBeLessThanOrEqual(FLOAT32_TOL);
      const kd = ['distill', '--teacher', t, '--attention', '0.5', '--steps', '3', ...common];
      expect((await mil(...kd, '--backend', 'webgpu', '--out', join(d, 'gpu'))).code).toBe(0);
      expect((await mil(...kd, '--engine', 'float64', '--out', join(d, 'cpu'))).code).toBe(0);
      const record = (dir: string) =>
        JSON.parse(readFileSync(join(d, dir, 'training.json'), 'utf8')) as { options: object };
      expect(record('gpu').options).toMatchObject({ engine: 'webgpu', objective: 'distill', train: 'mamba' });
      expect(record('cpu').options).toMatchObject({ engine: 'float64' });
      const history = (dir: string) =>
        (
          JSON.parse(readFileSync(join(d, dir, 'training.json'), 'utf8')) as { history: Array<{ loss: number }> }
        ).history.map((h) => h.loss);
      expect(history('gpu')).toHaveLength(3);
      expect(relError(history('gpu'), history('cpu'))).toBeLessThanOrEqual(FLOAT32_TOL);
      const teacher = loadModel(t);
      const gpu = loadModel(join(d, 'gpu'));
      const start = convert(teacher, { variant: 'mamba2', attnLayers: [1], seed: 0 });
      for (const n of gpu.weights.names()) {
        const same = gpu.weights.get(n).data.every((x, i) => x === start.weights.get(n).data[i]);
        expect(same, n).toBe(!n.includes('mamba')); // stage 1: every Mamba parameter trains, nothing else
      }
    },
  );
});

/**
 * Distillation stage 1 of a 50% hybrid on the GPU: the student `convert`ed from a random Llama (Mamba-2 or Mamba-1
 * in the converted layer 0, attention in layer 1), that Llama its teacher (KL in the same chain), only the Mamba
 * parameters training (mambaOnly, as `mil distill` trains them) or every parameter. `bias`: Mamba-2 with an
 * in_proj bias and no conv bias (convert gives the opposite); Mamba-1 with 'clean' semantics (b_Δ once, head_dim
 * pieces) and no conv bias (else upstream's: b_Δ added twice). l = 5 in chunks of 2 (defaultScanChunk): the
 * scan's chunk states, the state passing and a partial last chunk all run.
 */
function hybridCase(c: Case & { stage1: boolean; variant: 'mamba1' | 'mamba2' }) {
  const t = randomLlama(
    { vocab: 19, hidden: 8, intermediate: 12, layers: 2, heads: 2, kvHeads: c.kvHeads, tie: c.tie },
    c.seed,
  );
  const teacher = float64Model(t);
  const semantics = c.variant === 'mamba1' && c.bias ? 'clean' : 'upstream';
  const m = float64Model(
    convert(t, { variant: c.variant, attentionFraction: 0.5, seed: c.seed, dState: 4, semantics }),
  );
  if (c.bias) {
    const w = new Map(m.weights.tensors);
    const q = 'model.layers.0.mamba';
    w.delete(`${q}.conv1d.bias`);
    if (c.variant === 'mamba2') {
      const rows = m.weights.get(`${q}.in_proj.weight`).shape[0];
      w.set(`${q}.in_proj.bias`, Tensor.normal(new Rng(c.seed), [rows], 0, 0.3)); // (2·d_in + 2·d_xb + H)
    }
    m.weights = new WeightStore(w);
  }
  return { m, teacher, trainable: c.stage1 ? mambaOnly : () => true };
}

describe(`GPU training step of a Mamba-2 or Mamba-1 hybrid on ${webgpu.title}`, () => {
  run('3 steps = the float64 CPU trainer, distilling from its Llama (numRuns 2)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          ...modelAndOptimizer,
          clip: fc.constantFrom(0, 0.1),
          teacher: fc.constant(true),
          stage1: fc.boolean(),
          variant: fc.constantFrom<'mamba1' | 'mamba2'>('mamba1', 'mamba2'),
          seed: fc.integer({ min: 0, max: 1000 }),
        }),
        async (c) => {
          const e = await compare(c, undefined, hybridCase(c));
          for (const [k, v] of Object.entries(e)) expect(v, `${k} relative error`).toBeLessThanOrEqual(FLOAT32_TOL);
        },
      ),
      { numRuns: NRUNS },
    );
  });

  // a backward kernel left out moves the gradients, which the moments (m = Σ (1−β₁)β₁ᵏ g) show directly
  run('a Mamba-2 or Mamba-1 kernel left out of the chain is caught', async () => {
    for (const [variant, op, what] of [
      ['mamba2', 'L0.ssd_out', 'loss'],
      ['mamba2', 'L0.conv', 'loss'],
      ['mamba2', 'L0.back.ssd_gin', 'moments'],
      ['mamba2', 'L0.back.ssd_ddelta', 'moments'],
      ['mamba2', 'L0.back.ssd_ddelta.terms', 'moments'],
      ['mamba2', 'L0.back.ssd_dAlog.terms', 'moments'],
      ['mamba2', 'L0.back.ssd_dD.parts', 'moments'],
      ['mamba2', 'L0.back.gated_norm.dw.parts', 'moments'],
      ['mamba2', 'L0.back.repeat.back', 'moments'],
      ['mamba2', 'L0.back.conv.dx', 'moments'],
      ['mamba1', 'L0.gate', 'loss'],
      ['mamba1', 'L0.back.in2.dx', 'moments'],
      ['mamba1', 'L0.back.dt_bias.dW twice', 'moments'],
    ] as const) {
      const c = {
        tie: false,
        bias: false,
        kvHeads: 1,
        kind: 'adamw',
        clip: 0,
        teacher: true,
        stage1: false,
        variant,
        seed: 5,
      } as const;
      const e = await compare(c, op, hybridCase(c));
      expect(e[what], op).toBeGreaterThan(100 * FLOAT32_TOL);
    }
  });
});
