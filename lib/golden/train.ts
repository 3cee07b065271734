/**
 * Golden training cases (FORMAT.md "Training cases"): `models/<name>/train.json` + `train.safetensors`,
 * one step of the training objective on `input_ids`. Checked here, on the float64 reference:
 *   loss, ce, kl, grad/<every trainable parameter>, grad_norm (before clipping), step1/<parameter> (after
 *   clip_grad_norm_ and one Adam step with train.json's settings).
 * The set of trainable parameters must match the file's exactly (lm: every parameter; distill: those whose
 * name holds 'mamba', as upstream freezes the rest). Errors are relative (‖got − want‖ / ‖want‖), one per
 * tensor; the case reports the worst grad/ and step1/ error and passes when every one is within tolerance.
 */
import { join } from 'node:path';
import { GoldenFormatError, MilError } from '../errors.js';
import { readJsonObject } from '../io/json.js';
import { getTensor, readSafetensors } from '../io/safetensors.js';
import { relError } from '../tensor.js';
import { loadModel } from '../model/load.js';
import { forward, newCache } from '../model/hybrid.js';
import { getOps } from '../ops.js';
import { lossAndGrads, trainForward, trainableBy } from '../train/model.js';
import { adamStep, clipGradNorm, newAdamState } from '../train/optim.js';
import type { CaseResult } from './verify.js';
import { lookup } from '../checked.js';


export async function verifyTrain(dir: string, name: string, tol: number): Promise<CaseResult> {
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
    const f = readSafetensors(join(dir, 'train.safetensors'));
    const ids2 = getTensor(f, 'input_ids');
    const [B, L] = ids2.shape as [number, number];
    const ids = Array.from({ length: B }, (_, b) => Array.from(ids2.data.subarray(b * L, (b + 1) * L)));
    let teacherLogits: Float64Array | undefined;
    if (objective === 'distill') {
      if (typeof j.teacher !== 'string') return fail("train.json: a distill case needs 'teacher' (a model folder relative to this one)");
      const teacher = loadModel(join(dir, j.teacher));
      const t = await forward(await getOps('reference'), teacher, ids, newCache(teacher, B));
      teacherLogits = Float64Array.from(t.data);
    }
    // the inference path's logits on the same batch equal the training path's (each mixer's two paths from one
    // description, lib/model/mixers/): a wiring change in either path fails this case and the model case alike
    const inferred = await forward(await getOps('reference'), m, ids, newCache(m, B)); // (b, l, V)
    base.errors.infer_forward = relError(inferred.data, trainForward(m, ids, () => false).logits);
    const trainable = trainableBy(objective === 'lm' ? 'all' : 'mamba');
    const r = lossAndGrads(m, ids, { objective, teacherLogits, klWeight: objective === 'distill' ? num(j.kl_weight, 'kl_weight') : undefined, ceWeight: num(j.ce_weight ?? 1, 'ce_weight'), trainable });
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
    base.errors.grad_norm = relError([clipGradNorm(r.grads, num(j.clip_grad_norm, 'clip_grad_norm'))], getTensor(f, 'grad_norm').data);
    const before = new Map(want.map((k) => [k, Float64Array.from(m.weights.get(k).data)]));
    const params = new Map([...before].map(([k, v]) => [k, v.slice()]));
    adamStep(params, r.grads, newAdamState(), { kind: 'adam', lr: num(opt.lr, 'optimizer.lr'), betas: [num(betas[0], 'beta1'), num(betas[1], 'beta2')], eps: num(opt.eps, 'optimizer.eps'), weightDecay: num(opt.weight_decay ?? 0, 'optimizer.weight_decay') });
    let worstStep = 0;
    let worstUpdate = 0; // the step itself (step1 − p), which the parameter's size would otherwise hide
    for (const k of want) {
      const w = getTensor(f, `step1/${k}`).data;
      const p0 = lookup(before, k);
      worstStep = Math.max(worstStep, relError(lookup(params, k), w));
      worstUpdate = Math.max(worstUpdate, relError(lookup(params, k).map((v, i) => v - p0[i]), Float64Array.from(w, (v, i) => v - p0[i])));
    }
    base.errors.step1 = worstStep;
    base.errors.update = worstUpdate;
    const bad = Object.entries(base.errors).filter(([, e]) => !(e <= tol));
    return { ...base, status: bad.length ? 'fail' : 'pass', reason: bad.length ? `above tolerance: ${bad.map(([k]) => k).join(', ')}` : undefined };
  } catch (e) {
    if (e instanceof MilError) return fail(e.message);
    throw e;
  }
}
