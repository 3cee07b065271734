/**
 * A checkpoint on disk: a folder with `model.safetensors`, or shards listed by
 * `model.safetensors.index.json` ({ "weight_map": { name: file } }), planned from the headers first
 * (`planCheckpoint`: what it needs in memory, before any weight is read), then read one tensor at a time and
 * kept compact — F32/F16/BF16 weights as float32, never a float64 copy of the model. The float64 reference
 * ops read them as they are (float32 → float64 is exact); the kernels take them without a copy.
 * For the wasm-simd backend a BF16 checkpoint's matrices go from the file into bf16 panels in the SIMD module
 * (lib/simd/packed_weight.ts), never a float32 copy: `readCheckpoint(dir, plan, gemm)`.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { NonFiniteError, SafetensorsError } from '../errors.js';
import { readJsonObject } from '../io/json.js';
import {
  getTensor,
  parseSafetensors,
  readSafetensorsHeader,
  readTensorAt,
  readRawAt,
  dtypeBytes,
  safetensorsChunks,
  withFile,
  type SafetensorsHeader,
  type TensorInfo,
  type TensorSource,
  type WriteDType,
} from '../io/safetensors.js';
import type { WriteData } from '../io/writer.js';
import { markFinite, sizeOf, type Tensor } from '../tensor.js';
import { markImmutable } from '../weight_registry.js';
import { lookup } from '../checked.js';
import { PackedWeight } from '../simd/packed_weight.js';
import type { SimdGemm } from '../simd/gemm.js';

/**
 * Named weights. Weights are immutable once read through `get` (their float32 copy for the kernels is
 * made once and cached); to change one, put a new tensor in `tensors`.
 */
export class WeightStore {
  constructor(
    readonly tensors: Map<string, Tensor>,
    readonly source = '<memory>',
  ) {}

  get(name: string): Tensor {
    const t = this.tensors.get(name); // (the weight's shape), or undefined
    if (!t) throw new SafetensorsError(this.source, `missing weight '${name}'`);
    if (t instanceof PackedWeight) return t.named(name); // checked finite when packed; immutable (no array)
    if (!this.checked.has(t.data)) {
      // once per array: a finite weight is remembered as such, so the ops' input checks skip rescanning it
      // (checkpoints are checked at load; an in-memory analysis may set A_log = −∞ on purpose)
      if (t.data.every(Number.isFinite)) markFinite(t.data);
      this.checked.add(t.data);
    }
    markImmutable(t.data);
    return t.named(name);
  }
  private readonly checked = new WeakSet<object>();
  has(name: string): boolean {
    return this.tensors.has(name);
  }
  names(): string[] {
    return [...this.tensors.keys()];
  }
}

/** Where one weight of a checkpoint lies: its shard and its header entry. */
interface PlannedWeight {
  header: SafetensorsHeader;
  info: TensorInfo;
}

/**
 * A checkpoint known from its headers alone (no weight read yet): every weight's shard, dtype and shape,
 * the bytes stored on disk and the bytes it takes in memory once read (`residentBytes`: float32 for
 * F32/F16/BF16 weights, float64 for the others — see TensorInto 'compact').
 */
export interface CheckpointPlan {
  dir: string;
  weights: Map<string, PlannedWeight>;
  storedBytes: number;
  residentBytes: number;
}

/**
 * Is this weight packed as bf16 panels when read for the wasm-simd backend? A BF16 matrix (rank 2, a `.weight`:
 * the linear layers, the embedding and an untied head); vectors, convolutions and the SSM's A_log stay arrays.
 */
export function packsAsBf16(name: string, info: TensorInfo): boolean {
  return info.dtype === 'BF16' && info.shape.length === 2 && name.endsWith('.weight');
}

/** Bytes a weight of this dtype and element count takes once read (readCheckpoint keeps it compact). */
function residentBytes(dtype: string, elements: number): number {
  return elements * (dtype === 'F32' || dtype === 'F16' || dtype === 'BF16' ? 4 : 8);
}

/**
 * Plan a checkpoint folder from its headers: `model.safetensors`, or the shards listed by
 * `model.safetensors.index.json` — a shard the index names that is missing, a tensor in a shard that the
 * index does not list, or one the index puts in another shard are SafetensorsErrors, before any weight is read.
 */
export function planCheckpoint(dir: string): CheckpointPlan {
  const index = join(dir, 'model.safetensors.index.json');
  const weights = new Map<string, PlannedWeight>();
  let storedBytes = 0;
  let resident = 0;
  const add = (h: SafetensorsHeader, names: Iterable<string>) => {
    for (const n of names) {
      const info = h.tensors.get(n);
      if (!info)
        throw new SafetensorsError(h.path, `missing tensor '${n}' (the index's weight_map puts it in this shard)`);
      weights.set(n, { header: h, info });
      storedBytes += info.end - info.begin;
      resident += residentBytes(info.dtype, sizeOf(info.shape));
    }
  };
  if (existsSync(index)) {
    const j = readJsonObject(index, (p) => new SafetensorsError(index, p));
    const map = j.weight_map as Record<string, unknown>;
    if (typeof map !== 'object' || map === null || Array.isArray(map))
      throw new SafetensorsError(index, "no 'weight_map' object");
    const files = new Map<string, string[]>();
    for (const [name, file] of Object.entries(map)) {
      if (typeof file !== 'string' || file.includes('/') || file.includes('..'))
        throw new SafetensorsError(index, `weight '${name}' maps to an invalid file name ${JSON.stringify(file)}`);
      files.set(file, [...(files.get(file) ?? []), name]);
    }
    for (const file of files.keys())
      if (!existsSync(join(dir, file)))
        throw new SafetensorsError(
          index,
          `shard '${file}' (holding ${lookup(files, file).length} weight(s), e.g. '${lookup(files, file)[0]}') is missing from ${dir}`,
        );
    for (const [file, names] of files) {
      const h = readSafetensorsHeader(join(dir, file));
      const listed = new Set(names);
      for (const n of h.tensors.keys())
        if (!listed.has(n))
          throw new SafetensorsError(join(dir, file), `tensor '${n}' is not in the index's weight_map (stale index?)`);
      add(h, names);
    }
  } else {
    const h = readSafetensorsHeader(join(dir, 'model.safetensors'));
    add(h, h.tensors.keys());
  }
  return { dir, weights, storedBytes, residentBytes: resident };
}

/**
 * Read every weight of a planned checkpoint, one tensor at a time straight from its shard (no whole-file
 * buffer), kept compact: F32/F16/BF16 as float32 (exact), so no float64 copy of a model is ever made —
 * the float64 reference ops read float32 weights as they are (widening a float32 to float64 is exact, so
 * the results are those of float64 weights). Each weight is checked finite here, so a NaN or ±Inf is
 * reported with its full name at load (NonFiniteError), not at the first forward.
 * With `bf16Into` (the wasm-simd backend's instance), the BF16 matrices (`packsAsBf16`) are read one at a time
 * from the file straight into the module's staging memory and packed as bf16 panels there (PackedWeight), the
 * largest first: each one's staging is then overwritten by the panels packed after it, so the module memory
 * ends at the panels' bytes plus the last (smallest) staging.
 */
export function readCheckpoint(
  dir: string,
  plan: CheckpointPlan = planCheckpoint(dir),
  bf16Into?: SimdGemm,
): WeightStore {
  const read = new Map<string, Tensor>();
  const put = finitePut(read);
  const packed = bf16Into ? [...plan.weights].filter(([n, w]) => packsAsBf16(n, w.info)) : [];
  packed.sort(([, a], [, b]) => sizeOf(b.info.shape) - sizeOf(a.info.shape));
  for (const [n, { header: h, info }] of packed) {
    const [N, K] = info.shape;
    const panels = bf16Into!.packBf16(N, K, (bytes) =>
      withFile(h.path, (fd) => {
        readRawAt(fd, h, n, bytes);
        const words = new Uint16Array(bytes.buffer, bytes.byteOffset, N * K); // (N, K) bf16
        for (let i = 0; i < words.length; i++)
          if ((words[i] & 0x7f80) === 0x7f80) throw new NonFiniteError(n, i, bf16Value(words[i]));
      }),
    );
    read.set(n, new PackedWeight(panels, n));
  }
  const byFile = new Map<SafetensorsHeader, string[]>();
  for (const [n, w] of plan.weights) if (!read.has(n)) byFile.set(w.header, [...(byFile.get(w.header) ?? []), n]);
  for (const [h, names] of byFile)
    withFile(h.path, (fd) => names.forEach((n) => put(n, readTensorAt(fd, h, n, 'compact'))));
  const tensors = new Map<string, Tensor>();
  for (const n of plan.weights.keys()) tensors.set(n, lookup(read, n)); // the checkpoint's order
  return new WeightStore(tensors, dir);
}

/** A bf16 word's value (for an error message): the high half of a float32. */
function bf16Value(w: number): number {
  return new Float32Array(new Uint32Array([w << 16]).buffer)[0];
}

/** Store `t` as weight `n` after checking every value finite (NonFiniteError names the weight and index). */
function finitePut(tensors: Map<string, Tensor>): (n: string, t: Tensor) => void {
  return (n, t) => tensors.set(n, checkFinite(n, t));
}

function checkFinite(n: string, t: Tensor): Tensor {
  const d = t.data; // (t.size) values
  for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i])) throw new NonFiniteError(n, i, d[i]);
  return t;
}

/** One weight of a planned checkpoint, read from its shard and kept compact, checked finite (as readCheckpoint). */
export function readPlannedWeight(plan: CheckpointPlan, name: string): Tensor {
  const w = plan.weights.get(name);
  if (!w) throw new SafetensorsError(plan.dir, `missing weight '${name}'`);
  return checkFinite(
    name,
    withFile(w.header.path, (fd) => readTensorAt(fd, w.header, name, 'compact')),
  );
}

/** The weights of one model.safetensors already in memory (the browser page fetches it), read compactly (as readCheckpoint). */
export function weightsFromBytes(bytes: Uint8Array, source: string): WeightStore {
  const f = parseSafetensors(bytes, source);
  const tensors = new Map<string, Tensor>();
  const put = finitePut(tensors);
  for (const n of f.tensors.keys()) put(n, getTensor(f, n, 'compact'));
  return new WeightStore(tensors, source);
}

/** Hugging Face's default `max_shard_size` of save_pretrained: "5GB" (decimal). */
export const HF_MAX_SHARD_BYTES = 5_000_000_000;

/**
 * The files of a checkpoint: one `model.safetensors`, or shards of at most `shardBytes` with an index — as
 * Hugging Face's save_pretrained: tensors in order fill a shard until the next would pass the size (a tensor
 * larger than it gets a shard of its own), files `model-0000i-of-0000N.safetensors`, and
 * `model.safetensors.index.json` with `metadata.total_size` (the tensors' bytes) and the weight_map.
 * `order`: 'sorted' by name (the default), or 'given' (the insertion order, as a state_dict's).
 * Written by the caller through the one writer (lib/io/writer.ts), together with the configs.
 */
export function checkpointFiles(
  tensors: Record<string, TensorSource>,
  opts: { dtype?: WriteDType; shardBytes?: number; order?: 'sorted' | 'given' } = {},
): Array<[string, WriteData]> {
  const dtype = opts.dtype ?? 'F32';
  const per = dtypeBytes(dtype);
  const names = opts.order === 'given' ? Object.keys(tensors) : Object.keys(tensors).sort();
  const shards: string[][] = [[]];
  let size = 0;
  for (const n of names) {
    const b = lookup(tensors, n).size * per;
    if (opts.shardBytes && size > 0 && size + b > opts.shardBytes) {
      shards.push([]);
      size = 0;
    }
    shards[shards.length - 1].push(n);
    size += b;
  }
  const pick = (s: string[]) => Object.fromEntries(s.map((n) => [n, lookup(tensors, n)]));
  if (shards.length === 1)
    return [['model.safetensors', safetensorsChunks(pick(names), { format: 'pt' }, dtype).chunks]];
  const files: Array<[string, WriteData]> = [];
  const weightMap: Record<string, string> = {};
  shards.forEach((s, i) => {
    const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
    for (const n of s) weightMap[n] = file;
    files.push([file, safetensorsChunks(pick(s), { format: 'pt' }, dtype).chunks]);
  });
  const total = names.reduce((s, n) => s + lookup(tensors, n).size * per, 0);
  const sortedMap = Object.fromEntries(
    Object.keys(weightMap)
      .sort()
      .map((n) => [n, lookup(weightMap, n)]),
  );
  files.push([
    'model.safetensors.index.json',
    JSON.stringify({ metadata: { total_size: total }, weight_map: sortedMap }, null, 1) + '\n',
  ]);
  return files;
}
