/**
 * The plain-JavaScript example port (examples/ports/js: written from the paper and upstream, not from lib/),
 * typed for the specs that use it as an independent float64 oracle: its kernel, backward and speculative ops,
 * and whole-model forwards from a model folder or an in-memory model as its files would say.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HybridModel } from '../lib/model/hybrid.js';
import { modelFiles } from '../lib/model/convert.js';
import { getTensor, readSafetensors } from '../lib/io/safetensors.js';
import type { Tensor } from '../lib/tensor.js';
// @ts-expect-error the example port is plain JavaScript without type declarations
import { KERNELS } from '../examples/ports/js/kernels.mjs';
// @ts-expect-error idem
import { GRADS } from '../examples/ports/js/grads.mjs';
// @ts-expect-error idem
import { loadModel, run, speculative } from '../examples/ports/js/model.mjs';
import { lastOf } from '../lib/checked.js';

export interface PortTensor {
  shape: number[];
  data: Float64Array;
}
type PortOp = (I: Record<string, PortTensor>, attrs: Record<string, unknown>) => Record<string, PortTensor>;
/** A model as the port holds it (opaque here). */
export type PortModel = { readonly __portModel: unique symbol };
type Json = Record<string, unknown> | undefined;

/** Every op the port implements, by golden op name. */
export const PORT_OPS: Record<string, PortOp> = { ...KERNELS, ...GRADS, speculative };

export const toPort = (t: Tensor): PortTensor => ({ shape: [...t.shape], data: Float64Array.from(t.data) });

const load = (config: Json, mambaConfig: Json, mil: Json, weights: Record<string, PortTensor>): PortModel =>
  loadModel(config, mambaConfig, mil, weights) as PortModel;

/** The port's model from a model folder (config.json, mamba_config.json, mil_config.json, model.safetensors). */
export function portModelFromFolder(dir: string): PortModel {
  const json = (f: string): Json =>
    existsSync(join(dir, f)) ? JSON.parse(readFileSync(join(dir, f), 'utf8')) : undefined;
  const w = readSafetensors(join(dir, 'model.safetensors'));
  return load(
    json('config.json'),
    json('mamba_config.json'),
    json('mil_config.json'),
    Object.fromEntries([...w.tensors.keys()].map((k) => [k, toPort(getTensor(w, k))])),
  );
}

/** The port's model from an in-memory model, through the JSON files saving it would write. */
export function portModelOf(m: HybridModel): PortModel {
  const files: Record<string, Json> = Object.fromEntries(
    modelFiles(m)
      .filter(([rel]) => rel.endsWith('.json'))
      .map(([rel, d]) => [rel, JSON.parse(String(d))]),
  );
  return load(
    files['config.json'],
    files['mamba_config.json'],
    files['mil_config.json'],
    Object.fromEntries(m.weights.names().map((n) => [n, toPort(m.weights.get(n))])),
  );
}

/** Logits (L × vocab, row-major) of one sequence. */
export function portLogits(m: PortModel, ids: number[]): Float64Array {
  return (run(m, ids) as { logits: Float64Array }).logits;
}

/** `n` greedy tokens after `prompt`, each the argmax of a full forward of the whole sequence. */
export function portGreedy(m: PortModel, prompt: number[], n: number): number[] {
  const seq = [...prompt];
  for (let s = 0; s < n; s++) {
    const last = lastOf((run(m, seq) as { rows: Float64Array[] }).rows);
    seq.push(last.indexOf(Math.max(...last)));
  }
  return seq.slice(prompt.length);
}
