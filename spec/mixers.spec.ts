/**
 * The one description of each mixer (lib/model/mixers/), against an independent implementation. Inference
 * (lib/model/hybrid.ts) and training (lib/train/model.ts) now read each mixer's parameters and wiring from the
 * same file, so their agreement (spec/train.spec.ts) no longer catches a wrong wiring line: a mistake there is
 * made in both at once. Here both are compared with the plain-JavaScript example port (examples/ports/js,
 * written from the paper and upstream, not from lib/), on random tiny models of every kind, including the
 * ones the golden vectors do not cover — Mamba-1 with `semantics: 'clean'` (Δ bias once, head_dim-wide
 * repeat) and a Llama with attention biases and tied embeddings:
 *  - inference, one full forward (the prefill path: selective scan, chunked SSD, conv1d)
 *  - inference, prefill of a prefix then one-token decode steps (the decode path: conv update, state update)
 *  - training forward (float64 references with the tape)
 * each = the port's logits to 1e-9 relative (float64 on both sides, different orders of summation; measured
 * ≤ 6e-16). Mutations of lib/model/mixers/ tried (2026-12-04) and what caught them — `mil golden verify golden`
 * (inference model case / training case) and this file:
 *   upstream b_Δ added once (mamba1 dtProjBias)     golden hybrid_mamba1 + its train case; here mamba1
 *   clean b_Δ added twice (mamba1 dtProjBias)       golden: nothing (upstream semantics only); here mamba1-clean
 *   Mamba-2 Δ bias read from D                      golden hybrid_mamba2 + train; here mamba2
 *   RoPE positions pos0 + 2i                        golden all 3 models + 3 train cases; here all 4 kinds
 *   MLP gate and up swapped                         golden all 6; here all 4
 *   Mamba-2 norm before gate                        golden hybrid_mamba2 + train; here mamba2
 *   Mamba-1 hd-wide repeat under upstream           golden hybrid_mamba1 + train; here mamba1
 *   clean N-wide repeat                             golden: nothing; here mamba1-clean
 *   attention k and v projections swapped           golden all 6; here all 4
 *   attention o_proj bias dropped                   golden: nothing (no biases there); here llama-bias-tied
 *   Mamba-2 in_proj split [z | dt | xBC]            golden hybrid_mamba2 + train; here mamba2
 *   Mamba-1 decode-path D dropped (inference only)  golden hybrid_mamba1 (greedy); here mamba1, mamba1-clean
 *   Δ-bias gradient dropped (tape.ts, training only) golden both hybrid train cases; here nothing (logits only)
 * (RoPE positions shifted by a constant is not a mutant: attention sees only relative positions.)
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Rng } from '../lib/rng.js';
import { Tensor, relError } from '../lib/tensor.js';
import { trainForward } from '../lib/train/model.js';
import { randomLlama } from '../lib/model/random.js';
import { convert } from '../lib/model/convert.js';
import { forward, newCache, type HybridModel } from '../lib/model/hybrid.js';
import { getOps } from '../lib/ops.js';
import { portLogits, portModelOf } from './example_port.js';
import { withAttentionBias } from './helpers.js';

const REF = await getOps('reference');
const TOL = 1e-9;
const KINDS = ['llama-bias-tied', 'mamba1', 'mamba1-clean', 'mamba2'] as const;
type Kind = (typeof KINDS)[number];

/** A tiny model of the kind: 3 layers (the hybrids keep layer 1 as attention), grouped-query heads. */
function tinyModel(kind: Kind, seed: number): HybridModel {
  const spec = { vocab: 17, hidden: 16, intermediate: 20, layers: 3, heads: 4, kvHeads: 2, headDim: 4 };
  if (kind === 'llama-bias-tied') return withAttentionBias(randomLlama({ ...spec, tie: true }, seed), seed + 1, 0.3);
  const plain = randomLlama(spec, seed);
  const variant = kind === 'mamba2' ? 'mamba2' : 'mamba1';
  // d_state 2 < head_dim 4: upstream's N-wide repeat and clean's hd-wide repeat differ
  return convert(plain, {
    variant,
    attnLayers: [1],
    seed,
    dState: variant === 'mamba1' ? 2 : undefined,
    semantics: kind === 'mamba1-clean' ? 'clean' : 'upstream',
  });
}

describe("each mixer's one description = the independent example port, in inference and in training", () => {
  for (const kind of KINDS)
    it(`${kind}: full forward, prefill + decode steps and the training forward give the port's logits (numRuns 3)`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 1, max: 5 }), async (seed, split) => {
          const m = tinyModel(kind, seed);
          const r = new Rng(seed + 7);
          const L = 6;
          const ids = [0, 1].map(() => Array.from({ length: L }, () => r.int(0, m.llama.vocabSize - 1))); // (b = 2, l)
          const V = m.llama.vocabSize;
          const port = new Float64Array(2 * L * V); // (b·l, V)
          ids.forEach((row, b) => port.set(portLogits(portModelOf(m), row), b * L * V));
          const full = await forward(REF, m, ids, newCache(m, 2)); // (b, l, V)
          expect(relError(full.data, port), 'inference, full forward').toBeLessThanOrEqual(TOL);
          const cache = newCache(m, 2);
          const parts = [
            await forward(
              REF,
              m,
              ids.map((row) => row.slice(0, split)),
              cache,
            ),
          ]; // (b, split, V)
          for (let t = split; t < L; t++)
            parts.push(
              await forward(
                REF,
                m,
                ids.map((row) => [row[t] ?? 0]),
                cache,
              ),
            ); // (b, 1, V) each
          const stepped = Tensor.concat(parts, 1); // (b, l, V)
          expect(relError(stepped.data, port), 'inference, prefill + decode').toBeLessThanOrEqual(TOL);
          const train = trainForward(m, ids, () => false).logits; // (b·l, V)
          expect(relError(train, port), 'training forward').toBeLessThanOrEqual(TOL);
        }),
        { numRuns: 3 },
      );
    });
});
