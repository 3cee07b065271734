/**
 * `import … from 'mamba-in-llama/decode'`: speculative decoding for hybrids (PAPER.md §4, Algorithm 2).
 * A draft proposes K tokens; the target verifies them in one forward, its Mamba layers running MultiStep from
 * one cached state; k′ are accepted, every cache rolls back to the accepted prefix, and each SSM state folds to
 * h_k when all K were accepted, else to h_j. Greedy acceptance gives plain greedy decoding's output token for
 * token; speculative sampling keeps the target's distribution.
 *
 *   const r = await speculativeGenerate(ops, target, new ModelDrafter(ops, draft, 5, 'lazy'), prompt, {
 *     K: 4,
 *     maxNewTokens: 32,
 *   });
 *
 * @module
 */

/** Algorithm 2: the loop, its options and result, the verify step and the two acceptance rules. */
export {
  speculativeGenerate,
  verify,
  acceptGreedy,
  acceptSampling,
  ModelDrafter,
  type Drafter,
  type Acceptance,
  type RoundInfo,
  type SpeculativeOptions,
  type SpeculativeResult,
} from './speculative.js';
/** Speculative against plain decoding of the same prompt in the same run: speed and identical output. */
export { compareWithPlain, type Comparison } from './compare.js';
/** Drafts: the first n layers of a model, or a drafter that replays known tokens. */
export { truncateLayers, OracleDrafter } from './drafts.js';
/** How a verify window keeps Mamba state: one lazy state, or one per draft position. */
export type { StateScheme } from './lazy_state.js';
