/**
 * Golden training cases (FORMAT.md "Training cases"): `models/<name>/train.json` + `train.safetensors`,
 * one step of the training objective on `input_ids`. Checked here, on the float64 reference:
 *   loss, ce, kl, grad/<every trainable parameter>, grad_norm (before clipping), step1/<parameter> (after
 *   clip_grad_norm_ and one Adam step with train.json's settings).
 * The set of trainable parameters must match the file's exactly (lm: every parameter; distill: those whose
 * name holds 'mamba', as upstream freezes the rest). Errors are relative (‖got − want‖ / ‖want‖), one per
 * tensor; the case reports the worst grad/ and step1/ error and passes when every one is within tolerance.
 *
 * On webgpu (`backend` 'webgpu': the lm case of the Llama and the distill cases of both hybrids, the Llama teacher's
 * forward in the same chain) the step is the GPU training step (lib/train/gpu_step.ts: forward, backward, clip
 * and Adam as one submission, float32); loss, ce (kl), the
 * gradients (read back before clipping), grad_norm and step1 are checked against the same file at the float32
 * tolerance. `update` (step1 − p) is reported but not held to it: Adam's first step is ≈ lr·sign(g), so a float32
 * gradient error on a near-zero gradient moves that element's update by up to 2·lr (see lib/golden/verify.ts).
 * What is held instead is `update_clear`: the same error over the elements whose golden gradient is clear of zero,
 * |g_i| ≥ CLEAR · rms(g) of its tensor (CLEAR = 0.1) — 10⁴× the float32 gradient error measured there (≤ 1e-5
 * of the tensor's norm, so ~1e-5 · rms per element when spread), where the sign, hence the update, is determined.
 * and whose update is resolvable at the tolerance in float32 storage, |Δ_i| ≥ 2⁻²⁴·|p_i|/tol: the GPU keeps
 * parameters in float32, so p₁ − p₀ carries half an ulp of p₁ (a Mamba-2 dt_bias of |p| ≈ 4 moved by ~1e-3 showed
 * 1.5e-4 with gradients equal to 2e-6: storage, not arithmetic).
 */
import { join } from 'node:path';
import { GoldenFormatError, MilError } from '../errors.js';
import { readJsonObject } from '../io/json.js';
import { getTensor, readSafetensors } from '../io/safetensors.js';
import { relError } from '../tensor.js';
import { loadModel } from '../model/load.js';
import { forward, newCache, type HybridModel } from '../model/hybrid.js';
import { getOps } from '../ops.js';
import { lossAndGrads, trainForward, trainableBy } from '../train/model.js';
import { adamStep, clipGradNorm, newAdamState } from '../train/optim.js';
import type { CaseResult } from './verify.js';
import { lookup } from '../checked.js';
import { GpuTrainStep, gpuStepUnsupported } from '../train/gpu_step.js';
import type { AdamOptions } from '../train/optim.js';

/** Elements with |g| ≥ CLEAR · rms(g) of their tensor have a determined Adam update (see the header). */
const CLEAR = 0.1;

/**
 * One step of `m` on the webgpu training step (distill: `teacher`'s forward and KL in the same chain, the parameters
 * of `trainable` only): loss, ce, kl, gradients (before clipping), their norm, the parameters after.
 */
async function gpuStep(
  m: HybridModel,
  ids: number[][],
  o: { adam: AdamOptions; clip: number; ceWeight: number; trainable: (name: string) => boolean; teacher?: { model: HybridModel; klWeight: number } },
) {
  const s = await GpuTrainStep.create(m, { batch: ids.length, seqLen: ids[0].length, optimizer: o.adam, clip: o.clip, ceWeight: o.ceWeight, teacher: o.teacher, trainable: o.trainable });
  try {
    const r = await s.step(ids, o.adam.lr, 1);
    const back = await s.read();
    const grads = new Map([...back].flatMap(([k, t]) => (t.g ? [[k, Float64Array.from(t.g)] as const] : [])));
    const params = new Map([...back].map(([k, t]) => [k, Float64Array.from(t.p)]));
    return { loss: r.loss, ce: r.ce, kl: r.kl, gradNorm: r.gradNorm, grads, params };
  } finally {
    s.destroy();
  }
}


export async function verifyTrain(dir: string, name: string, tol: number, backend: 'reference' | 'webgpu' = 'reference'): Promise<CaseResult> {
  const base = { name, op: 'train', errors: {} as Record<string, number>, tolerance: tol };
  const fail = (reason: string): CaseResult => ({ ...base, status: 'fail', reason });
  try {
    const jp = join(dir, 'train.json');
    const j = readJsonObject(jp, (p) => new GoldenFormatError(jp, p));
    const objective = j.objective;
    if (objective !== 'lm' && objective !== 'distill') return fail(`train.json: 'objective' must be "lm" or "distill", got ${JSON.stringify(objective)}`);
    const opt = j.optimizer as Record<string, unknown> | undefined;
    if (!opt || opt.name !== 'adam') return fail(`train.json: only optimizer {"name": "adam"} is known, got ${JSON.stringify(opt?.name)}`);
    const num = (v: unknown, what: string): number => {
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new GoldenFormatError(jp, `'${what}' must be a number, got ${JSON.stringify(v)}`);
      return v;
    };
    const betas = opt.betas as unknown[];
    if (!Array.isArray(betas) || betas.length !== 2) throw new GoldenFormatError(jp, "'optimizer.betas' must be [beta1, beta2]");
    const m = loadModel(dir);
    const onGpu = backend === 'webgpu';
    const f = readSafetensors(join(dir, 'train.safetensors'));
    const ids2 = getTensor(f, 'input_ids');
    const [B, L] = ids2.shape as [number, number];
    const ids = Array.from({ length: B }, (_, b) => Array.from(ids2.data.subarray(b * L, (b + 1) * L)));
    let teacherLogits: Float64Array | undefined;
    let teacher: HybridModel | undefined;
    if (objective === 'distill') {
      if (typeof j.teacher !== 'string') return fail("train.json: a distill case needs 'teacher' (a model folder relative to this one)");
      teacher = loadModel(join(dir, j.teacher));
      const t = await forward(await getOps('reference'), teacher, ids, newCache(teacher, B));
      teacherLogits = Float64Array.from(t.data);
    }
    // the inference path's logits on the same batch equal the training path's (each mixer's two paths from one
    // description, lib/model/mixers/): a wiring change in either path fails this case and the model case alike
    const inferred = await forward(await getOps('reference'), m, ids, newCache(m, B)); // (b, l, V)
    base.errors.infer_forward = relError(inferred.data, trainForward(m, ids, () => false).logits);
    const trainable = trainableBy(objective === 'lm' ? 'all' : 'mamba');
    const adam: AdamOptions = { kind: 'adam', lr: num(opt.lr, 'optimizer.lr'), betas: [num(betas[0], 'beta1'), num(betas[1], 'beta2')], eps: num(opt.eps, 'optimizer.eps'), weightDecay: num(opt.weight_decay ?? 0, 'optimizer.weight_decay') };
    const clip = num(j.clip_grad_norm, 'clip_grad_norm');
    const gpuWhy = onGpu ? gpuStepUnsupported(m, {}, teacher) : null;
    if (gpuWhy) return { ...base, status: 'unsupported', reason: gpuWhy };
    const ceWeight = num(j.ce_weight ?? 1, 'ce_weight');
    const gpu = onGpu
      ? await gpuStep(m, ids, { adam, clip, ceWeight, trainable, teacher: teacher && { model: teacher, klWeight: num(j.kl_weight, 'kl_weight') } })
      : undefined;
    const r = gpu ?? lossAndGrads(m, ids, { objective, teacherLogits, klWeight: objective === 'distill' ? num(j.kl_weight, 'kl_weight') : undefined, ceWeight: num(j.ce_weight ?? 1, 'ce_weight'), trainable });
    const scalar = (k: string, got: number) => {
      base.errors[k] = relError([got], getTensor(f, k).data);
    };
    scalar('loss', r.loss);
    scalar('ce', r.ce);
    if (objective === 'distill') scalar('kl', r.kl!);
    const want = [...f.tensors.keys()].filter((k) => k.startsWith('grad/')).map((k) => k.slice(5)).sort();
    const got = [...r.grads.keys()].sort();
    if (want.join() !== got.join()) {
      const missing = want.filter((k) => !r.grads.has(k));
      const extra = got.filter((k) => !want.includes(k));
      return fail(`trainable parameters differ from the file's: missing ${missing.slice(0, 3).join(', ') || 'none'}; extra ${extra.slice(0, 3).join(', ') || 'none'}`);
    }
    let worstGrad = 0;
    for (const k of want) worstGrad = Math.max(worstGrad, relError(lookup(r.grads, k), getTensor(f, `grad/${k}`).data));
    base.errors.grads = worstGrad;
    base.errors.grad_norm = relError([gpu ? gpu.gradNorm : clipGradNorm(r.grads, clip)], getTensor(f, 'grad_norm').data);
    const before = new Map(want.map((k) => [k, Float64Array.from(m.weights.get(k).data)]));
    const params = gpu?.params ?? new Map([...before].map(([k, v]) => [k, v.slice()]));
    if (!gpu) adamStep(params, r.grads, newAdamState(), adam);
    let worstStep = 0;
    let worstUpdate = 0; // the step itself (step1 − p), which the parameter's size would otherwise hide
    let worstClear = 0; // the same over the elements whose gradient is clear of zero (≥ CLEAR · rms g of its tensor)
    for (const k of want) {
      const w = getTensor(f, `step1/${k}`).data;
      const p0 = lookup(before, k);
      const g = getTensor(f, `grad/${k}`).data;
      const got = lookup(params, k).map((v, i) => v - p0[i]);
      const ref = Float64Array.from(w, (v, i) => v - p0[i]);
      worstStep = Math.max(worstStep, relError(lookup(params, k), w));
      worstUpdate = Math.max(worstUpdate, relError(got, ref));
      let ss = 0;
      for (const v of g) ss += v * v;
      const rms = Math.sqrt(ss / g.length);
      // and the update is resolvable at the tolerance in float32 storage: |Δ| ≥ 2⁻²⁴·|p| / tol (the parameter is
      // kept in float32 on the GPU, so p₁ − p₀ carries up to half an ulp of p₁ whatever the arithmetic)
      const clear = [...ref.keys()].filter(
        (i) => Math.abs(g[i]) >= CLEAR * rms && Math.abs(ref[i]) >= (2 ** -24 * Math.abs(p0[i])) / tol,
      );
      if (clear.length) worstClear = Math.max(worstClear, relError(clear.map((i) => got[i]), clear.map((i) => ref[i])));
    }
    base.errors.step1 = worstStep;
    base.errors.update = worstUpdate;
    if (onGpu) base.errors.update_clear = worstClear;
    const bad = Object.entries(base.errors).filter(([k, e]) => !(e <= tol) && !(onGpu && k === 'update'));
    return { ...base, status: bad.length ? 'fail' : 'pass', reason: bad.length ? `above tolerance: ${bad.map(([k]) => k).join(', ')}` : undefined };
  } catch (e) {
    if (e instanceof MilError) return fail(e.message);
    throw e;
  }
}
