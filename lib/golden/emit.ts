/**
 * `mil golden emit`: write cases in the `mil-golden/1` format computed by this implementation's float64
 * reference, so a port can check shapes upstream never covered. Inputs come from the seeded generator.
 * If the folder already holds kernels.json/kernels.safetensors, the new case is added (a case of the same
 * name is replaced). Both files are written to temporary files and renamed.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ArgumentError } from '../errors.js';
import { getOps } from '../ops.js';
import { Rng } from '../rng.js';
import { getTensor, readSafetensors, serializeSafetensors, writeFileAtomic, writeSafetensors } from '../io/safetensors.js';
import { Tensor } from '../tensor.js';
import { randomLlama } from '../model/random.js';
import { convert, saveModel } from '../model/convert.js';
import { forward, newCache } from '../model/hybrid.js';
import { argmax, lastLogits } from '../model/generate.js';
import { GOLDEN_OPS, type ShapeOptions } from './ops.js';
import { SCHEMA, readKernelsJson, type GoldenCase } from './verify.js';

export async function emitGolden(op: string, seed: number, shapes: ShapeOptions, outDir: string, name?: string): Promise<GoldenCase> {
  const impl = GOLDEN_OPS[op];
  if (!impl) throw new ArgumentError('--op', `one of ${Object.keys(GOLDEN_OPS).join(', ')}`, op);
  if (!Number.isInteger(seed)) throw new ArgumentError('--seed', 'an integer', seed);
  const { inputs, attrs, note } = impl.generate(new Rng(seed), shapes);
  const ref = await getOps('reference');
  const outputs = await impl.run(ref, inputs, attrs);
  mkdirSync(outDir, { recursive: true });
  const jsonPath = join(outDir, 'kernels.json');
  const stPath = join(outDir, 'kernels.safetensors');
  let cases: GoldenCase[] = [];
  const tensors: Record<string, Tensor> = {};
  if (existsSync(jsonPath) && existsSync(stPath)) {
    cases = readKernelsJson(outDir).cases;
    const f = readSafetensors(stPath);
    for (const k of f.tensors.keys()) tensors[k] = getTensor(f, k);
  }
  const caseName = name ?? `${op}_s${seed}`;
  for (const k of Object.keys(tensors)) if (k.startsWith(`${caseName}/`)) delete tensors[k];
  cases = cases.filter((c) => c.name !== caseName);
  const c: GoldenCase = {
    name: caseName,
    op,
    upstream: impl.upstream,
    attrs,
    inputs: Object.keys(inputs),
    outputs: Object.keys(outputs),
    note: note ?? `emitted by mamba-in-llama (float64 reference), seed ${seed}`,
  };
  for (const [k, t] of Object.entries(inputs)) tensors[`${caseName}/in/${k}`] = t.astype('float64');
  for (const [k, t] of Object.entries(outputs)) tensors[`${caseName}/out/${k}`] = t.astype('float64');
  cases.push(c);
  writeFileAtomic(stPath, serializeSafetensors(tensors, { schema: SCHEMA }, 'F64'));
  writeFileAtomic(jsonPath, JSON.stringify({ schema: SCHEMA, seed, dtype: 'float64', cases }, null, 1) + '\n');
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
export async function emitModel(variant: string, seed: number, s: ShapeOptions, outDir: string, name?: string): Promise<string> {
  if (variant !== 'llama' && variant !== 'mamba1' && variant !== 'mamba2') throw new ArgumentError('--variant', 'llama, mamba1 or mamba2', variant);
  const r = new Rng(seed);
  const heads = s.heads ?? 4;
  const teacher = randomLlama(
    { vocab: s.vocab ?? 61, hidden: s.dim ?? 48, intermediate: 2 * (s.dim ?? 48), layers: 4, heads, kvHeads: s.groups ?? 2, headDim: s.headdim ?? 16 },
    r.int(0, 1 << 30),
  );
  const m = variant === 'llama' ? teacher : convert(teacher, { variant, attentionFraction: 0.5, seed: r.int(0, 1 << 30) });
  const dir = join(outDir, 'models', name ?? `${variant}_s${seed}`);
  saveModel(dir, m);
  const ops = await getOps('reference');
  const V = m.llama.vocabSize;
  const L = s.len ?? 11;
  const ids = [0, 1].map(() => Array.from({ length: L }, () => r.int(0, V - 1)));
  const logits = await forward(ops, m, ids, newCache(m, 2));
  const prompt = Array.from({ length: 5 }, () => r.int(0, V - 1));
  const seq = [...prompt];
  const S = 16;
  for (let k = 0; k < S; k++) seq.push(argmax(lastLogits(await forward(ops, m, [seq], newCache(m, 1)))));
  writeSafetensors(join(dir, 'golden.safetensors'), {
    input_ids: Tensor.from(ids.flat(), [2, L]),
    logits: logits.named('logits'),
    prompt: Tensor.from(prompt, [1, prompt.length]),
    greedy: Tensor.from(seq.slice(prompt.length), [1, S]),
  }, { schema: SCHEMA }, 'F64');
  writeFileAtomic(join(dir, 'golden.json'), JSON.stringify({ schema: SCHEMA, model: variant, upstream: 'emitted by mamba-in-llama (float64 reference)', note: `seed ${seed}; greedy: ${S} argmax tokens after prompt, full-sequence forward each step` }, null, 1) + '\n');
  return dir;
}
