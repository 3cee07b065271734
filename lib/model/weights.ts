/**
 * A checkpoint on disk: a folder with `model.safetensors`, or shards listed by
 * `model.safetensors.index.json` ({ "weight_map": { name: file } }). Weights are read as float64 tensors
 * (the reference path computes in float64; kernels convert to float32 at the call).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsError } from '../errors.js';
import { getTensor, readSafetensors, serializeSafetensors, writeFileAtomic, type WriteDType } from '../io/safetensors.js';
import type { Tensor } from '../tensor.js';
import { markImmutable } from '../../kernels/runtime.js';

/**
 * Named weights. Weights are immutable once read through `get` (their float32 copy for the kernels is
 * made once and cached); to change one, put a new tensor in `tensors`.
 */
export class WeightStore {
  constructor(readonly tensors: Map<string, Tensor>, readonly source = '<memory>') {}

  get(name: string): Tensor {
    const t = this.tensors.get(name);
    if (!t) throw new SafetensorsError(this.source, `missing weight '${name}'`);
    markImmutable(t.data);
    return t.named(name);
  }
  has(name: string): boolean {
    return this.tensors.has(name);
  }
  names(): string[] {
    return [...this.tensors.keys()];
  }
}

export function readCheckpoint(dir: string): WeightStore {
  const index = join(dir, 'model.safetensors.index.json');
  const tensors = new Map<string, Tensor>();
  if (existsSync(index)) {
    let map: Record<string, string>;
    try {
      map = JSON.parse(readFileSync(index, 'utf8')).weight_map;
    } catch (e) {
      throw new SafetensorsError(index, `not a valid index (${(e as Error).message})`);
    }
    if (typeof map !== 'object' || map === null) throw new SafetensorsError(index, "no 'weight_map' object");
    const files = new Map<string, string[]>();
    for (const [name, file] of Object.entries(map)) {
      if (typeof file !== 'string' || file.includes('/') || file.includes('..')) throw new SafetensorsError(index, `weight '${name}' maps to an invalid file name ${JSON.stringify(file)}`);
      files.set(file, [...(files.get(file) ?? []), name]);
    }
    for (const [file, names] of files) {
      const f = readSafetensors(join(dir, file));
      for (const n of names) tensors.set(n, getTensor(f, n).astype('float64'));
    }
  } else {
    const f = readSafetensors(join(dir, 'model.safetensors'));
    for (const n of f.tensors.keys()) tensors.set(n, getTensor(f, n).astype('float64'));
  }
  return new WeightStore(tensors, dir);
}

/**
 * Write a checkpoint: one `model.safetensors`, or shards of at most `shardBytes` with an index.
 * Every file goes through a temporary file and a rename.
 */
export function writeCheckpoint(dir: string, tensors: Record<string, Tensor>, opts: { dtype?: WriteDType; shardBytes?: number } = {}): void {
  const dtype = opts.dtype ?? 'F32';
  const per = dtype === 'F64' ? 8 : 4;
  const names = Object.keys(tensors).sort();
  const shards: string[][] = [[]];
  let size = 0;
  for (const n of names) {
    const b = tensors[n]!.size * per;
    if (opts.shardBytes && size > 0 && size + b > opts.shardBytes) {
      shards.push([]);
      size = 0;
    }
    shards[shards.length - 1]!.push(n);
    size += b;
  }
  if (shards.length === 1) {
    writeFileAtomic(join(dir, 'model.safetensors'), serializeSafetensors(tensors, { format: 'pt' }, dtype));
    return;
  }
  const weightMap: Record<string, string> = {};
  shards.forEach((s, i) => {
    const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
    const part: Record<string, Tensor> = {};
    for (const n of s) {
      part[n] = tensors[n]!;
      weightMap[n] = file;
    }
    writeFileAtomic(join(dir, file), serializeSafetensors(part, { format: 'pt' }, dtype));
  });
  const total = names.reduce((s, n) => s + tensors[n]!.size * per, 0);
  writeFileAtomic(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 1) + '\n');
}
