/**
 * A seeded random checkpoint of any Llama or hybrid config (`mil init`), so tests and benches run at real
 * shapes without downloads. The weights are those the forward reads (load.ts's expectedWeights), each drawn
 * from its own generator seeded by (seed, weight name) — so a weight does not depend on the others, on the
 * shard size or on the order of writing — and made only when its bytes are written (LazyTensor): a
 * checkpoint larger than memory is written one tensor at a time.
 *
 *   model.embed_tokens, lm_head           mean 0, std 1
 *   a matrix W (out, in) / conv (C, 1, k) mean 0, std 1/√fan_in, fan_in = in or k
 *   any *norm.weight                      mean 1, std 0.1
 *   Mamba A_log                           log U(1, 16)      D: 1      other vectors (biases): mean 0, std 0.1
 * each drawn uniform with that mean and standard deviation (fillUniformStd: fast enough for 1B parameters).
 *
 * Values are rounded to the written dtype (bf16 by default, as the Llama-3.2 releases).
 */
import type { LazyTensor, WriteDType } from '../io/safetensors.js';
import { Rng } from '../rng.js';
import { Tensor, sizeOf } from '../tensor.js';
import type { HybridModel } from './hybrid.js';
import { expectedWeights } from './load.js';
import { WeightStore } from './weights.js';
import { lookup } from '../checked.js';

/** A generator seed for one weight: FNV-1a of its name, mixed with the checkpoint's seed (a safe integer). */
function weightSeed(seed: number, name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return (seed % 2 ** 21) * 2 ** 32 + h; // < 2^53
}

/**
 * Fill `a` with mean + U(−√3·std, √3·std) (the given mean and standard deviation) from a splitmix32 stream
 * seeded by `r`: a few ns a value, where Box–Muller normals cost ~100 ns — a 1B-parameter checkpoint is
 * made in seconds, not minutes.
 */
function fillUniformStd(r: Rng, a: Float32Array, mean: number, std: number): void {
  let x = Math.floor(r.uniform(0, 2 ** 32)) >>> 0;
  const scale = (2 * Math.sqrt(3) * std) / 2 ** 32;
  const lo = mean - Math.sqrt(3) * std;
  for (let i = 0; i < a.length; i++) {
    x = (x + 0x9e3779b9) >>> 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    a[i] = lo + ((z ^ (z >>> 16)) >>> 0) * scale;
  }
}

/** The values of one random weight (see the table at the top). */
function randomWeight(seed: number, name: string, shape: readonly number[]): Tensor {
  const r = new Rng(weightSeed(seed, name));
  const a = new Float32Array(sizeOf(shape)); // (shape)
  if (name === 'model.embed_tokens.weight' || name === 'lm_head.weight') fillUniformStd(r, a, 0, 1);
  else if (name.endsWith('norm.weight')) fillUniformStd(r, a, 1, 0.1);
  else if (name.endsWith('.A_log')) for (let i = 0; i < a.length; i++) a[i] = Math.log(r.uniform(1, 16));
  else if (name.endsWith('.D')) a.fill(1);
  else if (shape.length >= 2) fillUniformStd(r, a, 0, 1 / Math.sqrt(shape[shape.length - 1]));
  else fillUniformStd(r, a, 0, 0.1);
  return new Tensor(a, shape, name);
}

/**
 * The weights of a random checkpoint of `m` (its configs; `m.weights` may be empty), lazily, in the order of
 * a Hugging Face state_dict: the embedding, the layers by index, the final norm, lm_head.
 */
export function randomCheckpoint(m: Pick<HybridModel, 'llama' | 'mamba'>, seed: number): Record<string, LazyTensor> {
  const shapes = expectedWeights({ ...m, weights: new WeightStore(new Map(), 'init') });
  const rank = (n: string) => {
    const k = /^model\.layers\.(\d+)\./.exec(n);
    return n === 'model.embed_tokens.weight' ? -1 : k ? Number(k[1]) : n === 'model.norm.weight' ? 1e9 : 2e9;
  };
  const names = Object.keys(shapes).sort((a, b) => rank(a) - rank(b)); // stable: a layer's weights keep their order
  return Object.fromEntries(
    names.map((n) => [
      n,
      {
        shape: lookup(shapes, n),
        size: sizeOf(lookup(shapes, n)),
        make: () => randomWeight(seed, n, lookup(shapes, n)),
      },
    ]),
  );
}

/** torch_dtype names of the written dtypes. */
export const TORCH_DTYPE: Record<string, string> = { BF16: 'bfloat16', F16: 'float16', F32: 'float32', F64: 'float64' };

/** Bytes of a size like '5GB', '500MB', '2GiB', '1e9' or '123' (decimal units as Hugging Face's, binary with 'i'). */
export function parseSize(s: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*(|B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$/i.exec(s);
  if (!m) return null;
  const unit = m[2].toLowerCase();
  const mult: Record<string, number> = {
    '': 1,
    b: 1,
    kb: 1e3,
    mb: 1e6,
    gb: 1e9,
    tb: 1e12,
    kib: 2 ** 10,
    mib: 2 ** 20,
    gib: 2 ** 30,
    tib: 2 ** 40,
  };
  const v = Math.floor(Number(m[1]) * lookup(mult, unit));
  return Number.isSafeInteger(v) && v > 0 ? v : null;
}

export type { WriteDType };
