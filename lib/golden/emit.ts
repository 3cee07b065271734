/**
 * `mil golden emit`: write cases in the `mil-golden/1` format computed by this implementation's float64
 * reference, so a port can check shapes upstream never covered. Inputs come from the seeded generator.
 * If the folder already holds kernels.json/kernels.safetensors, the new case is added (a case of the same
 * name is replaced). The folder is rewritten through the one writer (lib/io/writer.ts): its other files are
 * kept, and a failure leaves the previous version whole.
 *
 * Sizes are bounded before any work (`checkEmitShapes`): each shape option has a range and the largest
 * tensor a case would hold is capped, so a typo such as `--dim 100000000` is a typed error, not a hang.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ArgumentError } from '../errors.js';
import { getOps } from '../ops.js';
import { Rng } from '../rng.js';
import { getTensor, readSafetensors, safetensorsChunks } from '../io/safetensors.js';
import { writeFolder, type WriteData } from '../io/writer.js';
import { lossAndGrads, trainableBy } from '../train/model.js';
import { adamStep, clipGradNorm, newAdamState } from '../train/optim.js';
import type { HybridModel } from '../model/hybrid.js';
import { Tensor } from '../tensor.js';
import { randomLlama } from '../model/random.js';
import { convert, modelFiles } from '../model/convert.js';
import { forward, newCache } from '../model/hybrid.js';
import { argmax, lastLogits } from '../model/generate.js';
import { GOLDEN_OPS, type ShapeOptions } from './ops.js';
import { SCHEMA, readKernelsJson, type GoldenCase } from './verify.js';

export async function emitGolden(op: string, seed: number, shapes: ShapeOptions, outDir: string, name?: string): Promise<GoldenCase> {
  const impl = GOLDEN_OPS[op];
  if (!impl) throw new ArgumentError('--op', `one of ${Object.keys(GOLDEN_OPS).join(', ')}`, op);
  if (!Number.isInteger(seed)) throw new ArgumentError('--seed', 'an integer', seed);
  checkEmitShapes(op, shapes);
  const { inputs, attrs, note } = impl.generate(new Rng(seed), shapes);
  const ref = await getOps('reference');
  const outputs = await impl.run(ref, inputs, attrs);
  const caseName = name ?? `${op}_s${seed}`;
  const c: GoldenCase = {
    name: caseName,
    op,
    upstream: impl.upstream,
    attrs,
    inputs: Object.keys(inputs),
    outputs: Object.keys(outputs),
    note: note ?? `emitted by mamba-in-llama (float64 reference), seed ${seed}`,
  };
  writeFolder(
    outDir,
    (stage) => {
      // the cases already there are read from the stage (the folder's files, linked in under the writer's lock),
      // not before it: a concurrent emit into the same folder finishes before the lock is ours, and its case stays
      const jsonPath = join(stage.dir, 'kernels.json');
      const stPath = join(stage.dir, 'kernels.safetensors');
      let cases: GoldenCase[] = [];
      const tensors: Record<string, Tensor> = {};
      if (existsSync(jsonPath) && existsSync(stPath)) {
        cases = readKernelsJson(stage.dir).cases;
        const f = readSafetensors(stPath);
        for (const k of f.tensors.keys()) tensors[k] = getTensor(f, k);
      }
      for (const k of Object.keys(tensors)) if (k.startsWith(`${caseName}/`)) delete tensors[k];
      cases = cases.filter((k) => k.name !== caseName);
      for (const [k, t] of Object.entries(inputs)) tensors[`${caseName}/in/${k}`] = t.astype('float64');
      for (const [k, t] of Object.entries(outputs)) tensors[`${caseName}/out/${k}`] = t.astype('float64');
      cases.push(c);
      stage.writeFile('kernels.safetensors', safetensorsChunks(tensors, { schema: SCHEMA }, 'F64').chunks);
      stage.writeFile('kernels.json', JSON.stringify({ schema: SCHEMA, seed, dtype: 'float64', cases }, null, 1) + '\n');
    },
    { keepExisting: true },
  );
  return c;
}

/**
 * `mil golden emit --op model`: a model folder in the format of FORMAT.md's model cases, for shapes and
 * seeds upstream never covered: models/<name>/ with the checkpoint (config.json, + mamba_config.json and
 * mil_config.json for hybrids, model.safetensors), golden.safetensors (input_ids (2, L), logits (2, L, V) of
 * one float64 forward, prompt (1, P), greedy (1, S): each step the argmax of a FULL forward of the whole
 * sequence, as upstream computes it — so `verify`, which decodes through the caches, checks an independent
 * path) and golden.json.
 */
export async function emitModel(variant: string, seed: number, s: ShapeOptions, outDir: string, name?: string, opts: { train?: boolean } = {}): Promise<string> {
  if (variant !== 'llama' && variant !== 'mamba1' && variant !== 'mamba2') throw new ArgumentError('--variant', 'llama, mamba1 or mamba2', variant);
  checkEmitShapes('model', s);
  const r = new Rng(seed);
  const heads = s.heads ?? 4;
  const teacher = randomLlama(
    { vocab: s.vocab ?? 61, hidden: s.dim ?? 48, intermediate: 2 * (s.dim ?? 48), layers: 4, heads, kvHeads: s.groups ?? 2, headDim: s.headdim ?? 16 },
    r.int(0, 1 << 30),
  );
  const m = variant === 'llama' ? teacher : convert(teacher, { variant, attentionFraction: 0.5, seed: r.int(0, 1 << 30) });
  const caseName = name ?? `${variant}_s${seed}`;
  const dir = join(outDir, 'models', caseName);
  const L = s.len ?? 11;
  const ids = [0, 1].map(() => Array.from({ length: L }, () => r.int(0, m.llama.vocabSize - 1)));
  const files = await modelCaseFiles(m, variant, seed, ids, r);
  if (opts.train) {
    let teacherLogits: Float64Array | undefined;
    let teacherRel: string | null = null;
    if (variant !== 'llama') {
      // the teacher is a model case of its own beside this one (train.json names it, as upstream's does)
      teacherRel = `../${caseName}-teacher`;
      const tf = await modelCaseFiles(teacher, 'llama', seed, ids, new Rng(seed + 1));
      writeFolder(join(outDir, 'models', `${caseName}-teacher`), (stage) => {
        for (const [rel, data] of tf) stage.writeFile(rel, data);
      });
      teacherLogits = Float64Array.from((await forward(await getOps('reference'), teacher, ids, newCache(teacher, 2))).data);
    }
    files.push(...trainCaseFiles(m, ids, teacherLogits, teacherRel));
  }
  writeFolder(dir, (stage) => {
    for (const [rel, data] of files) stage.writeFile(rel, data);
  });
  return dir;
}

/** A model case's files: the checkpoint, golden.safetensors (input_ids, logits, prompt, greedy) and golden.json. */
async function modelCaseFiles(m: HybridModel, variant: string, seed: number, ids: number[][], r: Rng): Promise<Array<[string, WriteData]>> {
  const ops = await getOps('reference');
  const V = m.llama.vocabSize;
  const logits = await forward(ops, m, ids, newCache(m, ids.length));
  const prompt = Array.from({ length: 5 }, () => r.int(0, V - 1));
  const seq = [...prompt];
  const S = 16;
  for (let k = 0; k < S; k++) seq.push(argmax(lastLogits(await forward(ops, m, [seq], newCache(m, 1)))));
  const golden = safetensorsChunks(
    {
      input_ids: Tensor.from(ids.flat(), [ids.length, ids[0].length]),
      logits: logits.named('logits'),
      prompt: Tensor.from(prompt, [1, prompt.length]),
      greedy: Tensor.from(seq.slice(prompt.length), [1, S]),
    },
    { schema: SCHEMA },
    'F64',
  ).chunks;
  const json = JSON.stringify({ schema: SCHEMA, model: variant, upstream: 'emitted by mamba-in-llama (float64 reference)', note: `seed ${seed}; greedy: ${S} argmax tokens after prompt, full-sequence forward each step` }, null, 1) + '\n';
  return [...modelFiles(m), ['golden.safetensors', golden], ['golden.json', json]];
}

/** The settings of upstream's golden training cases (FORMAT.md), used for emitted ones too. */
const TRAIN_CASE = { klWeight: 0.1, ceWeight: 1.0, clip: 0.1, adam: { kind: 'adam' as const, lr: 1e-3, betas: [0.9, 0.98] as [number, number], eps: 1e-8, weightDecay: 0 } };

/** train.json + train.safetensors: one step of the objective (lm for a Llama, distill for a hybrid). */
function trainCaseFiles(m: HybridModel, ids: number[][], teacherLogits: Float64Array | undefined, teacherRel: string | null): Array<[string, WriteData]> {
  const distill = teacherLogits !== undefined;
  const trainable = trainableBy(distill ? 'mamba' : 'all');
  const res = lossAndGrads(m, ids, { objective: distill ? 'distill' : 'lm', teacherLogits, klWeight: TRAIN_CASE.klWeight, ceWeight: TRAIN_CASE.ceWeight, trainable });
  const t: Record<string, Tensor> = { input_ids: Tensor.from(ids.flat(), [ids.length, ids[0].length]), loss: Tensor.from([res.loss], []), ce: Tensor.from([res.ce], []) };
  if (distill) t.kl = Tensor.from([res.kl!], []);
  for (const [n, g] of res.grads) t[`grad/${n}`] = new Tensor(g.slice(), m.weights.get(n).shape);
  t.grad_norm = Tensor.from([clipGradNorm(res.grads, TRAIN_CASE.clip)], []);
  const params = new Map([...res.grads.keys()].map((n) => [n, Float64Array.from(m.weights.get(n).data)]));
  adamStep(params, res.grads, newAdamState(), TRAIN_CASE.adam);
  for (const [n, p] of params) t[`step1/${n}`] = new Tensor(p, m.weights.get(n).shape);
  const json = {
    schema: SCHEMA,
    objective: distill ? 'distill' : 'lm',
    teacher: teacherRel,
    kl_weight: distill ? TRAIN_CASE.klWeight : null,
    ce_weight: TRAIN_CASE.ceWeight,
    clip_grad_norm: TRAIN_CASE.clip,
    optimizer: { name: 'adam', lr: TRAIN_CASE.adam.lr, betas: TRAIN_CASE.adam.betas, eps: TRAIN_CASE.adam.eps, weight_decay: 0 },
    upstream: 'emitted by mamba-in-llama (float64 reference), the objective of FORMAT.md "Training cases"',
  };
  return [['train.safetensors', safetensorsChunks(t, { schema: SCHEMA }, 'F64').chunks], ['train.json', JSON.stringify(json, null, 1) + '\n']];
}

/** Range of each `golden emit` shape option, and the cap on the elements of the largest tensor of a case. */
export const EMIT_LIMITS: Record<string, [number, number]> = {
  batch: [1, 64], dim: [1, 16384], len: [1, 65536], state: [1, 256], groups: [1, 1024], heads: [1, 1024], headdim: [1, 1024],
  width: [1, 16], chunk: [1, 4096], steps: [1, 4096], recompute: [0, 4096], vocab: [2, 65536], k: [1, 64],
};
const EMIT_MAX_ELEMENTS = 1 << 26; // 512 MiB of float64 in the largest tensor

/** Bounds checks for `golden emit`, before anything is generated (typed ArgumentError naming the option). */
export function checkEmitShapes(op: string, s: ShapeOptions): void {
  for (const [k, [lo, hi]] of Object.entries(EMIT_LIMITS)) {
    const v = (s as Record<string, unknown>)[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) throw new ArgumentError(`--${k}`, `an integer in [${lo}, ${hi}]`, v);
  }
  // the largest tensor any op makes is at most batch · width · length · state-like factor
  const b = s.batch ?? 2;
  const d = Math.max(s.dim ?? 64, (s.heads ?? 4) * (s.headdim ?? 16), s.vocab ?? 61);
  const l = Math.max(s.len ?? 64, (s.steps ?? 8) + (s.recompute ?? 0));
  const n = Math.max(s.state ?? 16, s.headdim ?? 16, op === 'model' ? (s.dim ?? 48) * 4 : 1);
  const est = b * d * l * n;
  if (est > EMIT_MAX_ELEMENTS) throw new ArgumentError('shape options', `a case of at most ${EMIT_MAX_ELEMENTS} elements per tensor (batch · dim · len · state)`, `${b} · ${d} · ${l} · ${n} = ${est}`);
}
