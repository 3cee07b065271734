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
import { getTensor, readSafetensors, serializeSafetensors, writeFileAtomic } from '../io/safetensors.js';
import type { Tensor } from '../tensor.js';
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
