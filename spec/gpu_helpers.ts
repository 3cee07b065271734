/**
 * What the GPU decoder specs share (spec/gpu_decode.spec.ts, spec/gpu_verify.spec.ts): the float32-vs-float64
 * tolerances, the reference's greedy choice, a counter of submissions and readbacks on the device, and random
 * small Llamas / Mamba hybrids.
 */
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { convert } from '../lib/model/convert.js';
import { forward, newCache, type HybridModel, type ModelCache } from '../lib/model/hybrid.js';
import { getOps } from '../lib/ops.js';
import { randomLlama } from '../lib/model/random.js';
import { KERNEL_BACKENDS } from './helpers.js';

export const TOL_ABS = 1e-4;
const TOL_REL = 1e-4;
export const webgpu = KERNEL_BACKENDS.find((b) => b.name === 'webgpu')!;
/** `it` where the webgpu backend is available, else skipped */
export const webgpuIt = webgpu.available ? it : it.skip;

/** max over i of |a_i − b_i| − TOL_REL·|b_i| (≤ TOL_ABS: within tolerance) */
export function excess(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let e = 0;
  for (let i = 0; i < a.length; i++) e = Math.max(e, Math.abs(a[i] - b[i]) - TOL_REL * Math.abs(b[i]));
  return e;
}

/** The reference's id and whether its top two are clearly apart. */
export function refChoice(l: ArrayLike<number>): { id: number; clear: boolean } {
  let a = 0;
  for (let i = 1; i < l.length; i++) if (l[i] > l[a]) a = i;
  let b = -Infinity;
  for (let i = 0; i < l.length; i++) if (i !== a) b = Math.max(b, l[i]);
  return { id: a, clear: l[a] - b > 2 * (TOL_ABS + TOL_REL * Math.abs(l[a])) };
}

/**
 * Run f counting queue.submit on `device` (the decoder's: GPU.js shares one per process) and mapAsync on every
 * GPUBuffer (not the chain's own counters); `mark` snapshots [submits, maps] into `marks`.
 */
export async function counted<T>(
  device: { queue: unknown },
  f: (mark: () => void) => Promise<T>,
): Promise<{ value: T; submits: number; maps: number; marks: number[][] }> {
  const queue = device.queue as { submit: (b: unknown[]) => void };
  const submit = queue.submit;
  const proto = (
    globalThis as unknown as { GPUBuffer: { prototype: { mapAsync: (...a: unknown[]) => Promise<void> } } }
  ).GPUBuffer.prototype;
  const mapAsync = proto.mapAsync;
  let submits = 0;
  let maps = 0;
  queue.submit = (b) => {
    submits++;
    submit.call(queue, b);
  };
  proto.mapAsync = function (this: unknown, ...a: unknown[]) {
    maps++;
    return mapAsync.apply(this, a);
  };
  const marks: number[][] = [];
  try {
    const value = await f(() => marks.push([submits, maps]));
    return { value, submits, maps, marks };
  } finally {
    proto.mapAsync = mapAsync;
    queue.submit = submit;
  }
}

/** mamba1: upstream semantics (b_Δ twice, N-wide repeat pieces); mamba1-clean: the paper's */
export type Variant = 'llama' | 'mamba2' | 'mamba1' | 'mamba1-clean';
export const modelArb = (variant: Variant) =>
  fc.record({
    vocab: fc.integer({ min: 20, max: 90 }),
    hd: fc.constantFrom(4, 8),
    kvHeads: fc.integer({ min: 1, max: 2 }),
    group: fc.integer({ min: 1, max: 2 }),
    intermediate: fc.integer({ min: 8, max: 40 }),
    layers: fc.integer({ min: variant === 'llama' ? 1 : 2, max: 3 }),
    tie: fc.boolean(),
    variant: fc.constant(variant),
    seed: fc.nat(1000),
  });

export function buildModel(s: {
  vocab: number;
  hd: number;
  kvHeads: number;
  group: number;
  intermediate: number;
  layers: number;
  tie: boolean;
  variant: Variant;
  seed: number;
}): HybridModel {
  const heads = s.kvHeads * s.group;
  const t = randomLlama(
    {
      vocab: s.vocab,
      hidden: heads * s.hd,
      intermediate: s.intermediate,
      layers: s.layers,
      heads,
      kvHeads: s.kvHeads,
      headDim: s.hd,
      tie: s.tie,
    },
    s.seed,
  );
  if (s.variant === 'llama') return t;
  if (s.variant === 'mamba2') return convert(t, { variant: 'mamba2', attentionFraction: 0.5, seed: s.seed });
  const semantics = s.variant === 'mamba1' ? 'upstream' : 'clean';
  return convert(t, { variant: 'mamba1', attentionFraction: 0.5, seed: s.seed, dState: s.hd, semantics });
}

export interface RefRun {
  /** the ids fed at each position (prompt, then the reference's greedy ids) */
  ids: number[];
  /** logits after each position (V each) */
  logits: Float64Array[];
  cache: ModelCache;
}

/** The float64 reference: prompt prefilled in one forward, then `steps` greedy tokens one forward each. */
export async function reference(m: HybridModel, prompt: number[], steps: number): Promise<RefRun> {
  const ops = await getOps('reference');
  const V = m.llama.vocabSize;
  const cache = newCache(m, 1);
  const pre = await forward(ops, m, [prompt], cache);
  const logits = prompt.map((_, t) => Float64Array.from(pre.data.subarray(t * V, (t + 1) * V)));
  const ids = [...prompt];
  for (let s = 0; s < steps; s++) {
    const id = refChoice(logits[logits.length - 1]).id;
    ids.push(id);
    logits.push(Float64Array.from((await forward(ops, m, [[id]], cache)).data));
  }
  return { ids, logits, cache };
}

/** A reference attention cache's first T positions, (1, H_kv, cap, hd), in the GPU decoder's layout (T, H_kv·hd). */
export function gpuLayoutKv(
  m: HybridModel,
  lc: { k: Float64Array; v: Float64Array; cap: number },
  T: number,
): { k: Float64Array; v: Float64Array } {
  const [Hkv, hd] = [m.llama.numKvHeads, m.llama.headDim];
  const k = new Float64Array(T * Hkv * hd); // (T, H_kv·hd)
  const v = new Float64Array(T * Hkv * hd); // (T, H_kv·hd)
  for (let j = 0; j < T; j++)
    for (let kv = 0; kv < Hkv; kv++)
      for (let c = 0; c < hd; c++) {
        k[(j * Hkv + kv) * hd + c] = lc.k[(kv * lc.cap + j) * hd + c];
        v[(j * Hkv + kv) * hd + c] = lc.v[(kv * lc.cap + j) * hd + c];
      }
  return { k, v };
}

/** The small 50% Mamba-2 hybrid of the mutation tests (a head group of 2, two KV heads, two layers). */
export const MUTATION_MODEL = {
  vocab: 40,
  hd: 4,
  kvHeads: 2,
  group: 2,
  intermediate: 24,
  layers: 2,
  tie: false,
  variant: 'mamba2',
  seed: 5,
} as const;
