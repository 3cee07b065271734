/**
 * Speculative decoding against plain decoding, measured one way everywhere (the demo, `npm run paper`,
 * bench/speculative.ts): the same prompts, greedy, in the same run, both warmed up first.
 *
 *   speedup             plain decode time / speculative decode time, after the prompt — the prefill is the
 *                       same work in both and is left out; the draft's time is in the speculative time
 *   speedupWithPrefill  the same with the prefills in
 *   identical           every prompt's speculative tokens equal plain greedy decoding's
 * With `repeats` > 1 each prompt is decoded that many times both ways and the fastest time of each is kept
 * (best-of-n, the usual guard against a noisy machine; the tokens are the same every time).
 */
import type { Ops } from '../ops.js';
import type { HybridModel } from '../model/hybrid.js';
import { generate } from '../model/generate.js';
import { speculativeGenerate, type Drafter } from './speculative.js';

export interface Comparison {
  K: number;
  prompts: number;
  newTokens: number;
  rounds: number;
  acceptance: number;
  tokensPerVerify: number;
  plainDecodeMs: number;
  specDecodeMs: number;
  draftMs: number;
  verifyMs: number;
  speedup: number;
  speedupWithPrefill: number;
  identical: boolean;
}

export async function compareWithPlain(
  ops: Ops,
  target: HybridModel,
  drafter: () => Drafter,
  prompts: number[][],
  o: { K: number; maxNewTokens: number; repeats?: number },
): Promise<Comparison> {
  const opts = { maxNewTokens: o.maxNewTokens, eos: [] as number[] };
  await generate(ops, target, prompts[0], { ...opts, maxNewTokens: Math.min(4, o.maxNewTokens) }); // warm-up: kernels, JIT
  await speculativeGenerate(ops, target, drafter(), prompts[0], {
    K: o.K,
    ...opts,
    maxNewTokens: Math.min(4, o.maxNewTokens),
  });
  const c: Comparison = {
    K: o.K,
    prompts: prompts.length,
    newTokens: 0,
    rounds: 0,
    acceptance: 0,
    tokensPerVerify: 0,
    plainDecodeMs: 0,
    specDecodeMs: 0,
    draftMs: 0,
    verifyMs: 0,
    speedup: 0,
    speedupWithPrefill: 0,
    identical: true,
  };
  let accepted = 0;
  let proposed = 0;
  let plainAll = 0;
  let specAll = 0;
  for (const p of prompts) {
    let plain = await generate(ops, target, p, opts);
    let s = await speculativeGenerate(ops, target, drafter(), p, { K: o.K, ...opts });
    for (let rep = 1; rep < (o.repeats ?? 1); rep++) {
      const p2 = await generate(ops, target, p, opts);
      const s2 = await speculativeGenerate(ops, target, drafter(), p, { K: o.K, ...opts });
      if (p2.decode.ms < plain.decode.ms) plain = p2;
      if (s2.decodeMs < s.decodeMs) s = s2;
    }
    c.plainDecodeMs += plain.decode.ms;
    plainAll += plain.prefill.ms + plain.decode.ms;
    c.specDecodeMs += s.decodeMs;
    specAll += s.prefillMs + s.decodeMs;
    c.draftMs += s.draftMs;
    c.verifyMs += s.verifyMs;
    c.rounds += s.rounds.length;
    c.newTokens += s.tokens.length;
    accepted += s.rounds.reduce((a, r) => a + r.accepted, 0);
    proposed += s.rounds.reduce((a, r) => a + r.proposed, 0);
    c.identical &&= s.tokens.join() === plain.tokens.join();
  }
  c.acceptance = proposed ? accepted / proposed : 0;
  c.tokensPerVerify = c.rounds ? c.newTokens / c.rounds : 0;
  c.speedup = c.plainDecodeMs / c.specDecodeMs;
  c.speedupWithPrefill = plainAll / specAll;
  return c;
}
