/**
 * Sampling and generation.
 *
 * Sampler (one step, logits ℓ over the vocabulary):
 *   temperature T = 0 → argmax (ties: lowest id); otherwise p ∝ exp(ℓ/T), then
 *   top-k keeps the k most probable ids, top-p keeps the smallest prefix (by probability) whose mass ≥ p,
 *   renormalises, and draws with the seeded generator (lib/rng.ts) — same seed, same tokens.
 * Repetition penalty θ (transformers' RepetitionPenaltyLogitsProcessor, applied before the sampler, greedy
 * included): for every id already in the context (earlier turns, the prompt, the tokens generated so far),
 *   ℓ_id ← ℓ_id / θ if ℓ_id > 0, else ℓ_id · θ      (θ = 1: no change; θ > 1 discourages repeats)
 * Generation: prefill the prompt in one forward (parallel/chunked ops), then decode one token per forward
 * (single-step ops), stopping at max_new_tokens or an EOS id. Timing of both phases is returned. Given a
 * cache, the prompt continues it (a chat's next turn prefills only its new tokens); the last sampled token is
 * never fed to the cache.
 * On the webgpu backend, decoding (greedy or sampled, θ = 1) of more than one token runs on the one-submission
 * decoder (./gpu_decode.ts): a given cache (a chat's earlier turns) is queue-written into it (`GpuDecoder.load`,
 * no submission), the prompt is prefilled in one submission (windows of parallel kernels, `GpuDecoder.prefill`),
 * then every decoded token is one submission and one readback (the GPU's argmax, or its draw with the uniform the
 * seeded generator gives next: the same token as the CPU sampler from the same logits), and the caches are written
 * back afterwards (`save`) so a chat continues them on any path. The decoder is kept per model between calls
 * (`GpuDecoder.reuse`): built once (weights uploaded, kernels compiled), its changed weights written again.
 * A repetition penalty, a state-store cache or a model the decoder refuses keep the per-op path,
 * and the result says why (`path`, `fallback`).
 *
 * Symbols: ℓ (V) the logits of the next token · V = vocab_size · T temperature · p (V) the sampling
 * distribution · k, p the top-k / top-p cut-offs · θ the repetition penalty · l the prompt's length.
 */
import { ArgumentError, DeviceLimitError } from '../errors.js';
import type { GpuDecoder } from './gpu_decode.js';
import type { Ops } from '../ops.js';
import { Rng } from '../rng.js';
import type { Tensor } from '../tensor.js';
import { forward, newCache, prefill, type HybridModel, type ModelCache } from './hybrid.js';

export interface SamplingOptions {
  temperature?: number;
  topK?: number;
  topP?: number;
}

/** The probabilities the sampler draws from (after temperature, top-k, top-p); null for greedy. */
export function samplingDistribution(logits: ArrayLike<number>, o: SamplingOptions): Float64Array | null {
  const T = o.temperature ?? 0;
  if (!(T >= 0)) throw new ArgumentError('temperature', '>= 0', T);
  if (T === 0) return null;
  if (!Number.isFinite(T)) throw new ArgumentError('temperature', 'a finite number >= 0', T);
  const V = logits.length;
  let mx = -Infinity;
  for (let i = 0; i < V; i++) mx = Math.max(mx, logits[i]);
  if (!Number.isFinite(mx)) throw new ArgumentError('logits', 'finite values', mx);
  // (ℓ − max)/T, not ℓ/T − max/T: stays finite for any T > 0 (a tiny T gives ±Inf/NaN the other way)
  const p = new Float64Array(V);
  let z = 0; // (V) probabilities
  for (let i = 0; i < V; i++) z += p[i] = Math.exp((logits[i] - mx) / T);
  for (let i = 0; i < V; i++) p[i] /= z;
  const order = [...p.keys()].sort((a, b) => p[b] - p[a] || a - b);
  let keep = V;
  if (o.topK !== undefined) {
    if (!Number.isInteger(o.topK) || o.topK < 1) throw new ArgumentError('topK', 'a positive integer', o.topK);
    keep = Math.min(keep, o.topK);
  }
  if (o.topP !== undefined) {
    if (!(o.topP > 0 && o.topP <= 1)) throw new ArgumentError('topP', 'a number in (0, 1]', o.topP);
    let mass = 0;
    for (let i = 0; i < keep; i++) {
      mass += p[order[i]];
      if (mass >= o.topP) {
        keep = i + 1;
        break;
      }
    }
  }
  const q = new Float64Array(V); // (V) the top-p renormalised probabilities
  let s = 0;
  for (let i = 0; i < keep; i++) s += q[order[i]] = p[order[i]];
  for (let i = 0; i < V; i++) q[i] /= s;
  return q;
}

export function argmax(a: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}

/** Draw from a distribution with one uniform u ∈ [0, 1). */
export function drawFrom(p: ArrayLike<number>, u: number): number {
  let c = 0;
  let last = 0;
  for (let i = 0; i < p.length; i++) {
    if (p[i] > 0) last = i;
    c += p[i];
    if (u < c) return i;
  }
  return last;
}

function checkPenalty(theta: number): void {
  if (!(theta > 0) || !Number.isFinite(theta))
    throw new ArgumentError('repetitionPenalty', 'a finite number > 0', theta);
}

/** Transformers' repetition penalty θ on `logits` (in place), once for every distinct id in `seen`. */
export function applyRepetitionPenalty(logits: Float64Array, seen: Iterable<number>, theta: number): void {
  checkPenalty(theta);
  if (theta === 1) return;
  for (const id of new Set(seen)) {
    const l = logits[id];
    logits[id] = l > 0 ? l / theta : l * theta;
  }
}

export function sampleToken(logits: ArrayLike<number>, o: SamplingOptions, rng: Rng): number {
  const p = samplingDistribution(logits, o); // (V), or null for greedy
  return p ? drawFrom(p, rng.next()) : argmax(logits);
}

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens: number;
  seed?: number;
  /** stop ids (default: the model's eos_token_id) */
  eos?: number[];
  onToken?: (id: number) => void;
  /** continue this cache (the prompt is prefilled after what it holds) instead of a new one */
  cache?: ModelCache;
  /** the generator to draw from (a chat keeps one across turns); default: a new one from `seed` */
  rng?: Rng;
  /** repetition penalty θ (default 1: none) over `context`, the prompt and the tokens generated */
  repetitionPenalty?: number;
  /** ids before the prompt that the repetition penalty counts (a chat's earlier turns) */
  context?: Iterable<number>;
}

export interface GenerateResult {
  tokens: number[];
  stoppedBy: 'eos' | 'length';
  prefill: { tokens: number; ms: number; tokensPerS: number };
  decode: { tokens: number; ms: number; tokensPerS: number };
  cache: ModelCache;
  /** how the tokens were computed: the backend's name, or on webgpu GPU_DECODER_PATH or PER_OP_WEBGPU_PATH */
  path: string;
  /** on webgpu: why the per-op path ran instead of the one-submission decoder */
  fallback?: string;
  /** on the one-submission path: building the decoder (weights uploaded, kernels compiled), in neither phase */
  setupMs?: number;
}

export const GPU_DECODER_PATH = 'webgpu (one submission per token)';
export const PER_OP_WEBGPU_PATH = 'webgpu (per op)';

/** Why GpuDecoder cannot run this generation (undefined: it can). */
function gpuDecoderRefusal(cache: ModelCache, o: GenerateOptions, penalty: number): string | undefined {
  if (penalty !== 1) return `repetition penalty ${penalty}: not in the one-submission decoder`;
  if (o.maxNewTokens <= 1) return `${o.maxNewTokens} new token(s): nothing to decode after the prefill`;
  if (cache.batch !== 1) return `a cache of batch ${cache.batch}: the one-submission decoder decodes one sequence`;
  if (cache.layers.some((l) => l.kind !== 'attention' && l.store))
    return 'the cache keeps its Mamba states in a state store (speculative decoding)';
  return undefined;
}

/** Last-position logits of row 0 as a plain array. */
export function lastLogits(logits: Tensor): Float64Array {
  return new Float64Array(lastRow(logits));
}

/** The last position's logits (V) of (1, l, V), read in place: a view of the forward's array, not a copy. */
function lastRow(logits: Tensor): Float32Array | Float64Array {
  const [, L, V] = logits.shape as [number, number, number];
  return logits.data.subarray((L - 1) * V, L * V);
}

/** prompt + new tokens must fit the model's max_position_embeddings (checked before any work). */
export function checkLength(m: HybridModel, promptLength: number, maxNewTokens: number): void {
  const maxPos = m.llama.maxPositionEmbeddings;
  if (promptLength + maxNewTokens > maxPos)
    throw new ArgumentError(
      'maxNewTokens',
      `at most max_position_embeddings − prompt length = ${maxPos} − ${promptLength} = ${Math.max(0, maxPos - promptLength)}`,
      maxNewTokens,
    );
}

export async function generate(
  ops: Ops,
  m: HybridModel,
  prompt: number[],
  o: GenerateOptions,
): Promise<GenerateResult> {
  if (prompt.length === 0) throw new ArgumentError('prompt', 'at least one token', 0);
  if (!Number.isInteger(o.maxNewTokens) || o.maxNewTokens < 0)
    throw new ArgumentError('maxNewTokens', 'a non-negative integer', o.maxNewTokens);
  const cache = o.cache ?? newCache(m, 1);
  checkLength(m, cache.length + prompt.length, o.maxNewTokens);
  const rng = o.rng ?? new Rng(o.seed ?? 0);
  const eos = new Set(o.eos ?? m.llama.eosTokenId);
  const penalty = o.repetitionPenalty ?? 1;
  checkPenalty(penalty);
  const seen = penalty === 1 ? null : new Set([...(o.context ?? []), ...prompt]);
  // webgpu: the one-submission decoder where it can run (built before any model work: a refusal costs nothing)
  let dec: GpuDecoder | undefined;
  let owned = false; // a decoder of this call only (another call holds the model's kept one)
  let fallback: string | undefined;
  let setupMs: number | undefined;
  if (ops.name === 'webgpu') {
    fallback = gpuDecoderRefusal(cache, o, penalty);
    if (fallback === undefined) {
      const t = performance.now();
      const { GpuDecoder } = await import('./gpu_decode.js');
      try {
        // positions it holds: the cache, the prompt and every new token but the last (never fed)
        const r = await GpuDecoder.reuse(m, cache.length + prompt.length + o.maxNewTokens - 1);
        [dec, owned] = [r.dec, r.owned];
        setupMs = performance.now() - t;
      } catch (e) {
        if (!(e instanceof ArgumentError || e instanceof DeviceLimitError)) throw e;
        fallback = `the one-submission decoder refuses this model: ${e.message}`;
      }
    }
  }
  try {
    const tokens: number[] = [];
    let t0 = performance.now();
    let logits: Tensor | undefined; // (1, l, V), then (1, 1, V) per decoded token (the per-op path)
    let next: number | undefined; // the decoder's id for the next position
    let first: Float64Array | undefined; // (V) the decoder's logits after the prompt, when sampling
    const sampling = (o.temperature ?? 0) > 0;
    if (dec) {
      dec.load(cache); // the earlier turns, if any
      const r = await dec.prefill(prompt, { logits: sampling });
      if (sampling) first = Float64Array.from(r.logits!);
      else next = r.token;
    } else logits = await prefill(ops, m, prompt, cache); // (1, 1, V), or (1, l, V) fused
    const prefillMs = performance.now() - t0;
    let stoppedBy: GenerateResult['stoppedBy'] = 'length';
    t0 = performance.now();
    let decoded = 0;
    while (tokens.length < o.maxNewTokens) {
      let id: number;
      if (next !== undefined) id = next;
      else {
        // the last position's logits (V), read in place: sampleToken only reads them, and float64 holds every
        // float32 exactly, so it chooses as it would from a float64 copy; the repetition penalty writes, so it
        // gets that copy
        let last: ArrayLike<number> = first ?? lastRow(logits!);
        first = undefined;
        if (seen) {
          const own = Float64Array.from(last); // (V)
          applyRepetitionPenalty(own, seen, penalty);
          last = own;
        }
        id = sampleToken(last, o, rng);
      }
      tokens.push(id);
      seen?.add(id);
      o.onToken?.(id);
      if (eos.has(id)) {
        stoppedBy = 'eos';
        break;
      }
      if (tokens.length === o.maxNewTokens) break;
      if (dec) {
        // the decoder samples on the GPU with the uniform the CPU sampler would have drawn next
        const u = sampling ? rng.next() : 0;
        const sample = sampling ? { u, temperature: o.temperature!, topK: o.topK, topP: o.topP } : undefined;
        next = (await dec.step(id, { sample })).token;
      } else logits = await forward(ops, m, [[id]], cache);
      decoded++;
    }
    const decodeMs = performance.now() - t0;
    await dec?.save(cache);
    return {
      tokens,
      stoppedBy,
      prefill: { tokens: prompt.length, ms: prefillMs, tokensPerS: (prompt.length * 1000) / Math.max(prefillMs, 1e-9) },
      decode: { tokens: decoded, ms: decodeMs, tokensPerS: (decoded * 1000) / Math.max(decodeMs, 1e-9) },
      cache,
      path: dec ? GPU_DECODER_PATH : ops.name === 'webgpu' ? PER_OP_WEBGPU_PATH : ops.name,
      ...(fallback !== undefined ? { fallback } : {}),
      ...(setupMs !== undefined ? { setupMs } : {}),
    };
  } finally {
    if (owned) dec?.destroy();
    else dec?.release();
  }
}
