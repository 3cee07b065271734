/**
 * Greedy speculative decoding (PAPER.md §4, Algorithm 2) with both models on the GPU (webgpu): the target and
 * the draft are GpuDecoders (lib/model/gpu_decode.ts), caches and states resident.
 *
 *   round:  d_1 = the draft's greedy id after the committed tokens it has not consumed yet (one submission:
 *           a step, or a window prefill when there are several);  d_2 … d_K by K − 1 draft steps in ONE
 *           submission (GpuDecoder.steps: each greedy id fed back on the GPU);
 *           [n, next] = target.verify(last, d_1 … d_K)   — ONE submission: the window through every layer,
 *           the greedy acceptance on the GPU, the target's caches advanced by exactly the n committed tokens;
 *           emit d_1 … d_{n−1}, next.
 *   draft:  its Mamba states were marked before d_2 (GpuDecoder.mark); when a draft is rejected they are put
 *           back (rewind) and the accepted drafts are consumed with the next round's d_1.
 * Greedy acceptance keeps the target's own greedy output token for token (lib/decode/speculative.ts
 * acceptGreedy); both decoders compute in float32, so only a near-tie between two target logits could make the
 * window (verify) and the one-token step pick differently.
 */
import { ArgumentError } from '../errors.js';
import type { GpuDecoder } from '../model/gpu_decode.js';
import { acceptanceOf, emitTokens } from './emit.js';

export interface GpuSpeculativeOptions {
  K: number;
  maxNewTokens: number;
  /** stop ids (emitted, nothing after them) */
  eos?: number[];
  onToken?: (id: number) => void;
}

export interface GpuSpeculativeResult {
  tokens: number[];
  stoppedBy: 'eos' | 'length';
  /** rounds: drafts proposed and accepted, tokens emitted */
  rounds: Array<{ proposed: number; accepted: number; emitted: number[] }>;
  acceptanceRate: number;
  /** GPU submissions: the target's verifies, the draft's steps and prefills (and its state marks) */
  verifies: number;
  /** the target's prefill of the prompt but its last token; the rounds after it */
  prefillMs: number;
  ms: number;
}

/** K, the prompt and maxNewTokens as speculative decoding takes them (ArgumentError naming the first wrong one). */
export function checkSpeculativeArgs(K: number, prompt: readonly number[], maxNewTokens: number): void {
  if (!Number.isInteger(K) || K < 1) throw new ArgumentError('K', 'a positive integer', K);
  if (prompt.length === 0) throw new ArgumentError('prompt', 'at least one token', 0);
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0)
    throw new ArgumentError('maxNewTokens', 'a non-negative integer', maxNewTokens);
}

/** Greedy speculative decoding of `prompt` on two GPU decoders (both reset first). */
export async function gpuSpeculativeGreedy(
  target: GpuDecoder,
  draft: GpuDecoder,
  prompt: readonly number[],
  o: GpuSpeculativeOptions,
): Promise<GpuSpeculativeResult> {
  checkSpeculativeArgs(o.K, prompt, o.maxNewTokens);
  // a window never reaches past the last new token: K shrinks to what is left
  const need = prompt.length + o.maxNewTokens;
  for (const [name, d] of [
    ['target', target],
    ['draft', draft],
  ] as const)
    if (d.capacity < need)
      throw new ArgumentError(`${name} decoder capacity`, `at least prompt + maxNewTokens = ${need}`, d.capacity);
  const eos = new Set(o.eos ?? []);
  const t0 = performance.now();
  target.reset();
  draft.reset();
  if (prompt.length > 1) await target.prefill(prompt.slice(0, -1));
  const t1 = performance.now();
  let last = prompt[prompt.length - 1];
  let pending = [...prompt]; // committed tokens the draft has not consumed
  const out: number[] = [];
  const rounds: GpuSpeculativeResult['rounds'] = [];
  let stoppedBy: GpuSpeculativeResult['stoppedBy'] = 'length';
  while (out.length < o.maxNewTokens && stoppedBy === 'length') {
    const K = Math.min(o.K, o.maxNewTokens - out.length - 1);
    const drafts: number[] = [];
    if (K > 0) {
      drafts.push(pending.length === 1 ? (await draft.step(pending[0])).token : (await draft.prefill(pending)).token);
      await draft.mark();
      if (K > 1) drafts.push(...(await draft.steps(drafts[0], K - 1))); // d_2 … d_K: one submission
    }
    const { accepted, next } = await target.verify(last, drafts);
    const emitted = [...drafts.slice(0, accepted), next];
    if (K > 0) {
      if (accepted === K) pending = [drafts[K - 1], next];
      else {
        await draft.rewind();
        pending = emitted;
      }
    } else pending.push(next);
    last = next;
    const { kept, stopped } = emitTokens(emitted, out, o.maxNewTokens, eos, o.onToken);
    rounds.push({ proposed: drafts.length, accepted, emitted: kept });
    if (stopped) stoppedBy = 'eos';
  }
  return {
    tokens: out,
    stoppedBy,
    rounds,
    acceptanceRate: acceptanceOf(rounds),
    verifies: rounds.length,
    prefillMs: t1 - t0,
    ms: performance.now() - t1,
  };
}
