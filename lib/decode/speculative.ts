/**
 * Speculative decoding for linear RNNs and hybrids (PAPER.md §4, Algorithm 2), batch size 1.
 *
 *   SPECULATE(K): j = 0; h = h_0
 *     while not done:  draft y_{j+1 : j+K} with the draft model;  j, h = VERIFY(y, j, h)
 *   VERIFY: one target forward over the K+1 positions [last committed token, d_1 … d_K]:
 *     attention layers attend to the KV cache and append K+1 entries; Mamba layers run MultiStep from their
 *     single cached state (lib/decode/lazy_state.ts). Then k' = the accepted count; every cache rolls back
 *     to the accepted prefix (KV entries dropped, conv write position moved back), and the SSM state folds
 *     to h_k when all were accepted, else to h_j.
 *
 * Acceptance:
 *   greedy     accept d_m while d_m = argmax p_target(· | prefix, d_1 … d_{m−1}); the first mismatch is
 *              replaced by the target's argmax; if all K match, the target's next argmax is a bonus token.
 *              The output equals plain greedy decoding of the target token for token. On the reference
 *              (float64) and wasm-simd backends every window row's logits are plain decoding's bit for bit
 *              (wasm-simd's one-step state update is its MultiStep kernel with one step; spec/speculative.spec.ts
 *              checks it); on the GPU.js backends the window's MultiStep and plain decoding's state update are
 *              different kernels that round differently (~1e-7 relative), so there only a near-tie between two
 *              logits could tell them apart (no run measured here ever differed).
 *   sampling   (the released code's): accept d_m with probability min(1, p_t(d_m)/p_d(d_m)) using a uniform
 *              u_m; on rejection draw from normalise(max(p_t − p_d, 0)); bonus from p_t when all accepted.
 *              Temperature, top-k and top-p shape p_t and p_d alike. This keeps the target's distribution.
 * EOS stops inside a window (the EOS token is emitted, nothing after it) and so does max_new_tokens
 * (the window shrinks to what is left). The draft keeps its own caches the same lazy way: its proposals
 * are consumed lazily (pending rows) and rolled back to the accepted prefix after each round.
 */
import { acceptanceOf, emitTokens } from './emit.js';
import { present } from '../checked.js';
import { ArgumentError, DeviceLimitError } from '../errors.js';
import type { GpuDecoder } from '../model/gpu_decode.js';
import { checkSpeculativeArgs } from './gpu_speculative.js';
import type { Ops } from '../ops.js';
import { Rng } from '../rng.js';
import { Tensor } from '../tensor.js';
import { forward, newCache, prefill, type HybridModel, type ModelCache } from '../model/hybrid.js';
import {
  argmax,
  checkLength,
  drawFrom,
  lastLogits,
  samplingDistribution,
  type SamplingOptions,
} from '../model/generate.js';
import {
  convWindow,
  foldState,
  foldedState,
  makeSpecState,
  rollbackState,
  specOf,
  stateBytes,
  type StateScheme,
} from './lazy_state.js';

// ---------------------------------------------------------------- caches

/** Prefill `ids` with the plain path (lib/model/hybrid.ts prefill), then turn the Mamba layers' caches into speculative ones. */
export async function prefillSpec(
  ops: Ops,
  m: HybridModel,
  ids: number[],
  maxWindow: number,
  scheme: StateScheme,
): Promise<{ cache: ModelCache; logits: Tensor | null }> {
  const cache = newCache(m, 1);
  const logits = ids.length ? await prefill(ops, m, ids, cache) : null; // (1, 1, V) (or (1, l, V) fused)
  for (const lc of cache.layers) {
    if (lc.kind === 'attention') continue;
    const mc = present(m.mamba, 'the mamba config of a model with Mamba layers');
    const G = lc.kind === 'mamba1' ? mc.dInner / mc.dState : mc.nHeads;
    const ssm = lc.kind === 'mamba1' ? lc.ssm : lc.ssm.reshape([1, mc.nHeads * mc.dState, mc.dState]);
    lc.store = makeSpecState(lc.conv, ssm, cache.length, maxWindow, G, scheme);
  }
  return { cache, logits };
}

/** Forget every consumed token past position n (KV entries, pending SSM rows, conv write position). */
export function rollbackCache(cache: ModelCache, n: number): void {
  // attention layers: positions ≥ n of their in-place buffers are simply overwritten later
  for (const lc of cache.layers) if (lc.kind !== 'attention') rollbackState(specOf(lc), n);
  cache.length = n;
}

/** Fold the SSM states after a forward + rollback: h_k if nothing was rolled back, else h_j. */
export function foldCache(cache: ModelCache): void {
  for (const lc of cache.layers) if (lc.kind !== 'attention') foldState(specOf(lc));
}

/** Bytes of SSM-side speculative state across the model (for the time/memory comparison). */
function specStateBytes(cache: ModelCache): number {
  return cache.layers.reduce((s, lc) => s + (lc.kind === 'attention' ? 0 : stateBytes(specOf(lc))), 0);
}

// ---------------------------------------------------------------- drafters

/** Proposes up to K tokens after `committed` and the distributions they were drawn from. */
export interface Drafter {
  propose(
    committed: number[],
    K: number,
    sample: (logits: Float64Array) => { token: number; p: Float64Array | null },
  ): Promise<{ tokens: number[]; dists: Array<Float64Array | null> }>;
  /** the committed prefix after the round (the drafter rolls back anything past it) */
  accept(committedLength: number): void;
}

/** A model as the draft, with lazily advanced caches. */
export class ModelDrafter implements Drafter {
  private cache: ModelCache | null = null;
  constructor(
    private readonly ops: Ops,
    readonly model: HybridModel,
    private readonly maxWindow: number,
    private readonly scheme: StateScheme,
  ) {}

  async propose(
    committed: number[],
    K: number,
    sample: (l: Float64Array) => { token: number; p: Float64Array | null },
  ) {
    if (!this.cache)
      this.cache = (await prefillSpec(this.ops, this.model, committed.slice(0, -1), this.maxWindow, this.scheme)).cache;
    const tokens: number[] = [];
    const dists: Array<Float64Array | null> = [];
    if (K === 0) return { tokens, dists };
    // catch up on committed tokens not yet consumed (1, or 2 after a fully accepted round), all valid
    let logits = await forward(this.ops, this.model, [committed.slice(this.cache.length)], this.cache);
    foldCache(this.cache);
    for (let m = 0; m < K; m++) {
      const s = sample(lastLogits(logits));
      tokens.push(s.token);
      dists.push(s.p);
      if (m < K - 1) logits = await forward(this.ops, this.model, [[s.token]], this.cache); // speculative: pending rows
    }
    return { tokens, dists };
  }

  accept(n: number): void {
    if (this.cache && this.cache.length > n) rollbackCache(this.cache, n);
  }
}

// ---------------------------------------------------------------- the decoder

export interface SpeculativeOptions extends SamplingOptions {
  K: number;
  maxNewTokens: number;
  seed?: number;
  eos?: number[];
  /** 'lazy' (Algorithm 2, default) or 'per-position' (a stored state per draft position) */
  scheme?: StateScheme;
  /** source of uniform draws in [0, 1) (default: the seeded generator); golden cases replay recorded ones */
  uniform?: () => number;
  onToken?: (id: number) => void;
  /** called after every round with the target's caches (awaited: it may inspect them asynchronously) */
  onRound?: (r: RoundInfo, target: ModelCache) => void | Promise<void>;
}

export interface RoundInfo {
  /** draft tokens proposed this round (≤ K near the length limit) */
  proposed: number;
  /** draft tokens accepted */
  accepted: number;
  /** tokens emitted: accepted drafts + the correction or bonus token (fewer when EOS or the limit cut in) */
  emitted: number[];
  /** uniform draws used (sampling mode): accept tests, then the residual or bonus draw */
  uniforms: number[];
}

export interface SpeculativeResult {
  tokens: number[];
  stoppedBy: 'eos' | 'length';
  rounds: RoundInfo[];
  acceptanceRate: number;
  tokensPerVerify: number;
  prefillMs: number;
  decodeMs: number;
  tokensPerS: number;
  /** largest SSM-side speculative state seen (bytes, float32 sizes) */
  peakStateBytes: number;
  /** where the decode time went: the draft's proposals, and the target's verify forwards */
  draftMs: number;
  verifyMs: number;
  /** on webgpu: GPU_SPECULATIVE_PATH (both models on the GPU, each verify one submission) or why not (`fallback`) */
  path?: string;
  fallback?: string;
}

export const GPU_SPECULATIVE_PATH = 'webgpu (one submission per verify)';

/**
 * Why the GPU path (./gpu_speculative.ts) cannot run this speculative decoding (undefined: it can): it is greedy,
 * with a model as the draft, the lazy scheme and no per-round inspection of host caches.
 */
function gpuRefusal(drafter: Drafter, o: SpeculativeOptions): string | undefined {
  if (o.temperature && o.temperature > 0) return `sampling (temperature ${o.temperature}): the GPU path is greedy only`;
  if (!(drafter instanceof ModelDrafter)) return 'the draft is not a model';
  if ((o.scheme ?? 'lazy') !== 'lazy') return `the ${o.scheme} scheme (the GPU path keeps one state: lazy)`;
  if (o.onRound) return 'onRound inspects host caches';
  return undefined;
}

/** Algorithm 2 greedy with both models as GpuDecoders; undefined (and why) where a decoder refuses a model. */
async function onGpu(
  target: HybridModel,
  drafter: ModelDrafter,
  prompt: number[],
  o: SpeculativeOptions,
): Promise<SpeculativeResult | string> {
  const { GpuDecoder: Decoder } = await import('../model/gpu_decode.js');
  const { gpuSpeculativeGreedy } = await import('./gpu_speculative.js');
  const capacity = prompt.length + o.maxNewTokens; // what a window may reach (./gpu_speculative.ts)
  // the decoders kept per model (GpuDecoder.reuse: weights uploaded once across calls); one of this call only
  // where another user holds a model's (the draft being the target itself, a concurrent call) is destroyed after
  const built: Array<{ dec: GpuDecoder; owned: boolean }> = [];
  const done = () => built.forEach((b) => (b.owned ? b.dec.destroy() : b.dec.release()));
  try {
    for (const m of [target, drafter.model]) built.push(await Decoder.reuse(m, capacity));
  } catch (e) {
    done();
    if (e instanceof ArgumentError || e instanceof DeviceLimitError)
      return `a GPU decoder refuses a model: ${e.message}`;
    throw e;
  }
  try {
    const r = await gpuSpeculativeGreedy(built[0].dec, built[1].dec, prompt, {
      ...o,
      eos: o.eos ?? target.llama.eosTokenId,
    });
    return {
      tokens: r.tokens,
      stoppedBy: r.stoppedBy,
      rounds: r.rounds.map((x) => ({ ...x, uniforms: [] })),
      acceptanceRate: r.acceptanceRate,
      tokensPerVerify: r.rounds.length ? r.tokens.length / r.rounds.length : 0,
      prefillMs: r.prefillMs,
      decodeMs: r.ms,
      tokensPerS: (r.tokens.length * 1000) / Math.max(r.ms, 1e-9),
      peakStateBytes: 0,
      draftMs: 0,
      verifyMs: 0,
      path: GPU_SPECULATIVE_PATH,
    };
  } finally {
    done();
  }
}

/**
 * VERIFY (PAPER.md §4): one target forward over the window [y_{k_prev}, y_{j+1} … y_k] — the last committed
 * token, which the cache has not consumed yet, then the K drafts — from the cached state. In the paper's
 * indices: i = the position the Mamba layers' cached state h_i stands at (the tokens i+1 … j were
 * accepted last round but not folded in: their rows are pending), j = the committed length, k = j + K.
 * Each Mamba layer runs MultiStep(h_i, y, i, j, k): it replays r = j − i pending steps without outputs, then
 * the s = k − j + 1 window steps with outputs (lib/decode/lazy_state.ts, lib/ref/multistep.ts); attention
 * layers attend to their KV cache and append s entries. Returns one row of target logits per window position:
 * row m is the target's distribution for the token after the window's m-th token.
 */
export async function verify(
  ops: Ops,
  target: HybridModel,
  cache: ModelCache,
  lastCommitted: number,
  drafts: number[],
): Promise<Float64Array[]> {
  const logits = await forward(ops, target, [[lastCommitted, ...drafts]], cache);
  const V = target.llama.vocabSize;
  return Array.from({ length: drafts.length + 1 }, (_, m) =>
    Float64Array.from(logits.data.subarray(m * V, (m + 1) * V)),
  );
}

/** What a round of acceptance decided: k' drafts accepted, then the tokens to emit (k' drafts + one more). */
export interface Acceptance {
  accepted: number;
  emitted: number[];
  /** uniform draws used (sampling) */
  uniforms: number[];
}

/**
 * Greedy acceptance (the paper's FirstConflict on argmax): accept d_m while d_m = argmax of target row m;
 * the first mismatch is replaced by the target's argmax; when all K match, the target's argmax after the
 * last draft is a bonus token. The output equals plain greedy decoding of the target, token for token.
 */
export function acceptGreedy(drafts: number[], rows: Float64Array[]): Acceptance {
  const emitted: number[] = [];
  for (let m = 0; m < drafts.length; m++) {
    const t = argmax(rows[m]);
    emitted.push(t);
    if (t !== drafts[m]) return { accepted: m, emitted, uniforms: [] };
  }
  emitted.push(argmax(rows[drafts.length]));
  return { accepted: drafts.length, emitted, uniforms: [] };
}

/**
 * Speculative sampling (the released code's acceptance): accept d_m with probability
 * min(1, p_t(d_m) / p_d(d_m)) using a uniform u_m; on the first rejection draw from
 * normalise(max(p_t − p_d, 0)) and stop; when all K are accepted draw a bonus token from p_t. `dist` shapes
 * the target's logits the way the draft's were shaped (temperature, top-k, top-p), so the target's
 * distribution is kept exactly.
 */
export function acceptSampling(
  drafts: number[],
  draftDists: Array<Float64Array | null>,
  rows: Float64Array[],
  dist: (logits: Float64Array) => Float64Array,
  next: () => number,
): Acceptance {
  const uniforms: number[] = [];
  const draw = () => {
    const u = next();
    uniforms.push(u);
    return u;
  };
  const emitted: number[] = [];
  for (let m = 0; m < drafts.length; m++) {
    const d = drafts[m];
    const pt = dist(rows[m]);
    const pd = draftDists[m] ?? oneHot(d, pt.length);
    if (draw() < Math.min(1, pt[d] / pd[d])) {
      emitted.push(d);
      continue;
    }
    const res = new Float64Array(pt.length);
    let z = 0;
    for (let i = 0; i < pt.length; i++) z += res[i] = Math.max(pt[i] - pd[i], 0);
    const u2 = draw();
    emitted.push(
      z > 0
        ? drawFrom(
            res.map((v) => v / z),
            u2,
          )
        : drawFrom(pt, u2),
    );
    return { accepted: m, emitted, uniforms };
  }
  emitted.push(drawFrom(dist(rows[drafts.length]), draw()));
  return { accepted: drafts.length, emitted, uniforms };
}

/**
 * SPECULATE(K) (PAPER.md §4, Algorithm 2): prefill the prompt but its last token, then rounds of
 *   draft y_{j+1 : k} (k = j + K)  →  rows = VERIFY(…)  →  k' accepted  →  roll every cache back to the
 *   accepted prefix (KV entries dropped, conv write positions moved back, pending SSM rows cut) and fold each
 *   Mamba state to h_k when all K were accepted, else to h_j — one cached state per layer throughout.
 * EOS stops inside a window (the EOS token is emitted, nothing after it), and so does max_new_tokens (the
 * window shrinks to what is left). The draft keeps its own caches the same lazy way.
 */
export async function speculativeGenerate(
  ops: Ops,
  target: HybridModel,
  drafter: Drafter,
  prompt: number[],
  o: SpeculativeOptions,
): Promise<SpeculativeResult> {
  checkSpeculativeArgs(o.K, prompt, o.maxNewTokens);
  checkLength(target, prompt.length, o.maxNewTokens);
  let fallback: string | undefined;
  if (ops.name === 'webgpu') {
    fallback = gpuRefusal(drafter, o);
    if (fallback === undefined) {
      const r = await onGpu(target, drafter as ModelDrafter, prompt, o);
      if (typeof r !== 'string') return r;
      fallback = r;
    }
  }
  const scheme = o.scheme ?? 'lazy';
  const greedy = !(o.temperature && o.temperature > 0);
  const seeded = new Rng(o.seed ?? 0);
  const next = o.uniform ?? (() => seeded.next());
  const eos = new Set(o.eos ?? target.llama.eosTokenId);
  const t0 = performance.now();
  const { cache } = await prefillSpec(ops, target, prompt.slice(0, -1), o.K + 1, scheme);
  const prefillMs = performance.now() - t0;
  const committed = [...prompt];
  const out: number[] = [];
  const rounds: RoundInfo[] = [];
  let stoppedBy: SpeculativeResult['stoppedBy'] = 'length';
  let peak = specStateBytes(cache);
  const dist = (logits: Float64Array) => samplingDistribution(logits, o)!;
  let draftMs = 0;
  let verifyMs = 0;
  const t1 = performance.now();
  while (out.length < o.maxNewTokens && stoppedBy !== 'eos') {
    const K = Math.min(o.K, o.maxNewTokens - out.length - 1);
    const draftUniforms: number[] = [];
    const draftSample = (l: Float64Array) => {
      if (greedy) return { token: argmax(l), p: null };
      const p = dist(l);
      const u = next();
      draftUniforms.push(u);
      return { token: drawFrom(p, u), p };
    };
    const tDraft = performance.now();
    const { tokens: drafts, dists } = await drafter.propose(committed, K, draftSample);
    const tVerify = performance.now();
    draftMs += tVerify - tDraft;
    const j = cache.length; // = committed.length − 1: the last committed token is consumed by VERIFY
    const rows = await verify(ops, target, cache, committed[committed.length - 1], drafts);
    verifyMs += performance.now() - tVerify;
    peak = Math.max(peak, specStateBytes(cache));
    const a = greedy ? acceptGreedy(drafts, rows) : acceptSampling(drafts, dists, rows, dist, next);
    // the caches keep the accepted prefix: the last committed token + k' accepted drafts
    rollbackCache(cache, j + 1 + a.accepted);
    foldCache(cache);
    const { kept, stopped } = emitTokens(a.emitted, out, o.maxNewTokens, eos, o.onToken);
    committed.push(...kept);
    if (stopped) stoppedBy = 'eos';
    drafter.accept(cache.length);
    const info = {
      proposed: drafts.length,
      accepted: a.accepted,
      emitted: kept,
      uniforms: [...draftUniforms, ...a.uniforms],
    };
    rounds.push(info);
    await o.onRound?.(info, cache);
  }
  const decodeMs = performance.now() - t1;
  return {
    tokens: out,
    stoppedBy,
    rounds,
    acceptanceRate: acceptanceOf(rounds),
    tokensPerVerify: rounds.length ? out.length / rounds.length : 0,
    prefillMs,
    decodeMs,
    tokensPerS: (out.length * 1000) / Math.max(decodeMs, 1e-9),
    peakStateBytes: peak,
    draftMs,
    verifyMs,
    ...(fallback !== undefined ? { path: 'webgpu (per op)', fallback } : {}),
  };
}

/**
 * The target's Mamba-layer states as plain decoding would hold them: for each Mamba layer, the SSM state
 * with the pending rows folded in and the conv window (1, C, W−1).
 */
export function effectiveStates(m: HybridModel, cache: ModelCache): Map<number, { ssm: Tensor; conv: Tensor }> {
  const out = new Map<number, { ssm: Tensor; conv: Tensor }>();
  cache.layers.forEach((lc, i) => {
    if (lc.kind !== 'attention')
      out.set(i, { ssm: foldedState(specOf(lc)), conv: convWindow(specOf(lc), m.mamba!.dConv) });
  });
  return out;
}

function oneHot(i: number, V: number): Float64Array {
  const p = new Float64Array(V);
  p[i] = 1;
  return p;
}
