/**
 * The training-step row of issue #23's GPU bench, kept apart from bench/gpu.ts (decode) so the two merge
 * cleanly: one step (forward, loss, backward, clip, AdamW) of a random Llama — d 512, 8 layers, 8 heads
 * (4 kv heads), SwiGLU 1536, vocabulary 32,000, float32 — on batch × length tokens (default 8 × 256), as the GPU
 * training step (lib/train/gpu_step.ts: one submission and one small readback per step, parameters and moments
 * resident) against peers measured in the same run on the same ids: the wasm-simd CPU trainer's step
 * (lib/train/model.ts on simdEngine + clip + Adam; skipped with --no-cpu: minutes per step at the full shape)
 * and PyTorch on the CPU (bench/torch_train.py, where /usr/bin/python3 imports torch; --no-torch skips it).
 * On a machine whose `--python` (default python3) imports torch with CUDA, the same script runs the step on the
 * GPU too (--device=cuda, the median of --steps steps after a warm-up): the issue's peer (target ≤ 2× PyTorch
 * eager on the same GPU). The PyTorch step is Adam with its own lr/betas/clip (bench/torch_train.py): the work
 * per step is the same, the first loss (before any update) is the shared one.
 *
 *   node --import tsx bench/gpu_train.ts [--tiny] [--batch 8] [--len 256] [--steps 5] [--no-cpu] [--no-torch] [--profile]
 *        [--config teacher-20m [--vocab 8192]] [--attention 0.5 [--variant mamba2|mamba1]]
 * --config: a `mil train --config` preset's shape (its batch and context unless given; vocabulary --vocab).
 * --attention F: the step is distillation stage 1 of the F-attention hybrid converted from the Llama (the teacher's
 *   forward in the same submission, CE + 0.1·KL as torch_train.py, only the Mamba layers train), as `mil distill` runs it;
 *   its PyTorch peer runs mamba_ssm's reference loops (no CUDA kernels there) and its time includes the teacher.
 * --profile: after the timed steps, each kernel of the step timed alone (ResidentChain.profile), summed by label.
 * --tiny: d 32, 2 layers, vocab 256, batch 2 × 16 (a check that it runs, e.g. on Dawn's CPU adapter).
 * Prints one JSON line per engine: {engine, msPerStep (median of --steps after one warm-up step), tokensPerS,
 * loss of the first step}; the first step's losses agree across engines within float32 rounding.
 * The CPU trainer's row is one step without warm-up. Measured here only with --tiny (lavapipe, a CPU rasteriser:
 * nothing to compare): webgpu 26 ms, wasm-simd 349 ms, torch CPU 12 ms per step, first losses equal to 1e-8.
 * On the H200 (2026-12-04, --config teacher-20m --attention 0.5 --batch 1 --len 512 --no-cpu --no-torch --profile,
 * the #25 distillation micro-batch; no peer in that run): 57.8 ms per step, 8,856 tokens/s; the kernels timed alone
 * summed 46.1 ms, the gated norm's ∂ℓ/∂w 13.7 ms of it (4 calls) and ∂ℓ/∂Δ 4.1 ms, both since split into two
 * levels of short loops (kernels/gated_rmsnorm.ts gatedRmsnormDwKernels, kernels/train_mamba.ts
 * scanDdeltaTermsKernel). Again on 2026-12-05 (bench/results/h200/gpu-train-distill-split.jsonl): 34.3 ms per
 * step, the kernels alone 29.5 ms, the norm's ∂ℓ/∂w 0.30 ms and ∂ℓ/∂Δ 1.05 ms; and the d512 Llama's step
 * (8 × 256, the default shape) 52.7 ms against PyTorch CUDA eager's 41.7 ms in the same run (1.26×).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { convert, saveModel } from '../lib/model/convert.js';
import { PRESETS } from '../lib/cli/train_cmds.js';
import type { HybridModel } from '../lib/model/hybrid.js';
import { randomLlama } from '../lib/model/random.js';
import { Rng } from '../lib/rng.js';
import { SimdGemm } from '../lib/simd/gemm.js';
import { GpuTrainStep, gpuMicroBatch } from '../lib/train/gpu_step.js';
import { lossAndGrads, simdEngine } from '../lib/train/model.js';
import { adamStep, clipGradNorm, newAdamState, type AdamOptions } from '../lib/train/optim.js';
import { float64Model } from '../lib/train/trainer.js';
import { lastOf } from '../lib/checked.js';

const { values } = parseArgs({
  options: {
    tiny: { type: 'boolean', default: false },
    batch: { type: 'string' },
    len: { type: 'string' },
    steps: { type: 'string', default: '5' },
    'no-cpu': { type: 'boolean', default: false },
    'no-torch': { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    python: { type: 'string', default: 'python3' },
    config: { type: 'string' },
    vocab: { type: 'string', default: '8192' },
    attention: { type: 'string' },
    variant: { type: 'string', default: 'mamba2' },
  },
});
const tiny = values.tiny;
const preset = values.config === undefined ? undefined : PRESETS[values.config as keyof typeof PRESETS];
if (values.config !== undefined && !preset)
  throw new Error(`--config: one of ${Object.keys(PRESETS).join(', ')}; got ${values.config}`);
const B = Number(values.batch ?? preset?.batch ?? (tiny ? 2 : 8));
const L = Number(values.len ?? preset?.context ?? (tiny ? 16 : 256));
const steps = Number(values.steps);
const spec = preset
  ? { vocab: Number(values.vocab), ...pick(preset) }
  : tiny
    ? { vocab: 256, hidden: 32, intermediate: 64, layers: 2, heads: 4, kvHeads: 2 }
    : { vocab: 32000, hidden: 512, intermediate: 1536, layers: 8, heads: 8, kvHeads: 4 };
function pick(p: (typeof PRESETS)[keyof typeof PRESETS]) {
  return { hidden: p.hidden, intermediate: p.intermediate, layers: p.layers, heads: p.heads, kvHeads: p.kvHeads };
}
const llama = float64Model(randomLlama(spec, 1));
// --attention F: the step is distillation stage 1 of the F-attention hybrid from this Llama (Algorithm 1's
// conversion; the teacher's forward in the same submission, KL + CE, only the Mamba layers train) — as `mil distill`
const fraction = values.attention === undefined ? undefined : Number(values.attention);
const variant = values.variant === 'mamba1' ? 'mamba1' : 'mamba2';
const model: HybridModel =
  fraction === undefined ? llama : float64Model(convert(llama, { variant, attentionFraction: fraction, seed: 3 }));
const trainable = (n: string) => fraction === undefined || n.includes('.mamba.');
const r = new Rng(2);
const ids = Array.from({ length: B }, () => Array.from({ length: L }, () => r.int(0, spec.vocab - 1)));
const adam: AdamOptions = { kind: 'adamw', lr: 1e-4, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.1 };
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const report = (engine: string, ms: number, loss: number) =>
  console.log(
    JSON.stringify({
      engine,
      batch: B,
      len: L,
      spec,
      ...(fraction === undefined ? {} : { student: { variant, attention: fraction } }),
      msPerStep: ms,
      tokensPerS: (B * L * 1000) / ms,
      loss,
    }),
  );

// the GPU step
const teacher = fraction === undefined ? undefined : { model: llama, klWeight: 0.1 }; // torch_train.py's weights
// a batch past the kernels' 2^24 elements a buffer (e.g. teacher-20m's 8 × 1024) runs as micro-batches, as mil train does
const micro = gpuMicroBatch(model, { batch: B, seqLen: L, teacher });
if (micro < B) console.error(`webgpu: ${B / micro} micro-batches of ${micro} rows a step (gpu_step.ts gpuMicroBatch)`);
const gpu = await GpuTrainStep.create(model, {
  batch: micro,
  seqLen: L,
  optimizer: adam,
  clip: 1,
  trainable,
  teacher,
  accumulate: B / micro,
});
const first = await gpu.step(ids, adam.lr, 1); // compiles every pipeline
const times: number[] = [];
for (let t = 2; t <= steps + 1; t++) {
  const t0 = performance.now();
  await gpu.step(ids, adam.lr, t);
  times.push(performance.now() - t0);
}
if (values.profile) {
  // where the step's time goes: each kernel submitted alone (bench only; leaves the parameters meaningless)
  const rows = await gpu.profile();
  const total = rows.reduce((s, r) => s + r.ms, 0);
  for (const r of rows)
    console.log(JSON.stringify({ profile: r.label, ms: +r.ms.toFixed(3), n: r.n, share: +(r.ms / total).toFixed(3) }));
  console.log(JSON.stringify({ profileTotalMs: +total.toFixed(2) }));
}
gpu.destroy();
report('webgpu (one submission per step)', median(times), first.loss);

// the wasm-simd CPU trainer, one step
if (!values['no-cpu'] && fraction === undefined) {
  const engine = simdEngine(SimdGemm.sharedExact());
  const t0 = performance.now();
  const res = lossAndGrads(model, ids, { objective: 'lm', trainable: () => true, engine });
  clipGradNorm(res.grads, 1);
  adamStep(
    new Map(model.weights.names().map((n) => [n, Float64Array.from(model.weights.get(n).data)])),
    res.grads,
    newAdamState(),
    adam,
  );
  report('wasm-simd CPU trainer', performance.now() - t0, res.loss);
}

/** The peer's arguments: the model (and with --attention its teacher) and the ids, written into `dir`. */
function peerFiles(dir: string): string[] {
  saveModel(join(dir, 'model'), model);
  writeFileSync(join(dir, 'ids.json'), JSON.stringify(ids));
  if (fraction === undefined) return [join(dir, 'model'), join(dir, 'ids.json')];
  saveModel(join(dir, 'teacher'), llama);
  return [join(dir, 'model'), join(dir, 'ids.json'), join(dir, 'teacher')];
}
/** torch_train.py's Mamba layers are mamba_ssm's reference loops (one step of the scan per Python iteration), not
 * its CUDA/Triton kernels, which are not installed there: a slower peer than a mamba_ssm user's. Its step time
 * here includes the teacher's forward (ours runs it in the same submission). */
const peerNote = fraction === undefined ? '' : ' [Mamba layers: reference loops; + the teacher forward]';

// PyTorch eager on the GPU (bench/torch_train.py --device=cuda), where --python imports torch with CUDA
const cuda = spawnSync(values.python, ['-c', 'import torch; assert torch.cuda.is_available()'], { encoding: 'utf8' });
if (!values['no-torch'] && cuda.status === 0) {
  const dir = mkdtempSync(join(tmpdir(), 'mil-bench-gpu-train-'));
  try {
    const args = peerFiles(dir);
    const out = execFileSync(
      values.python,
      [join(import.meta.dirname, 'torch_train.py'), ...args, '--device=cuda', `--reps=${steps}`],
      { encoding: 'utf8', maxBuffer: 1 << 24 },
    );
    const t = JSON.parse(lastOf(out.trim().split('\n'))) as { ms: number; teacher_ms: number; loss: number };
    report(`PyTorch CUDA eager (bench/torch_train.py --device=cuda)${peerNote}`, t.ms + t.teacher_ms, t.loss);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// PyTorch on the CPU (bench/torch_train.py: Adam, float32), where torch imports
if (!values['no-torch'] && spawnSync('/usr/bin/python3', ['-c', 'import torch'], { encoding: 'utf8' }).status === 0) {
  const dir = mkdtempSync(join(tmpdir(), 'mil-bench-gpu-train-'));
  try {
    const out = execFileSync('/usr/bin/python3', [join(import.meta.dirname, 'torch_train.py'), ...peerFiles(dir)], {
      encoding: 'utf8',
      maxBuffer: 1 << 24,
    });
    const t = JSON.parse(lastOf(out.trim().split('\n'))) as { ms: number; teacher_ms: number; loss: number };
    report(`PyTorch CPU eager (bench/torch_train.py)${peerNote}`, t.ms + t.teacher_ms, t.loss);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
