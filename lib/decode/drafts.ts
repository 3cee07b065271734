/**
 * Drafts to check and measure speculative decoding with (lib/decode/speculative.ts is the algorithm):
 *   OracleDrafter    replays a known continuation, optionally corrupted at a seeded rate — the upper bound
 *                    of an always-accepted, free draft (bench/speculative.ts)
 *   truncateLayers   a model's first n layers with its final norm and head — a cheap draft related to the
 *                    target (the golden speculative cases, `mil generate --draft-layers`)
 */
import { ArgumentError } from '../errors.js';
import { Rng } from '../rng.js';
import { Tensor } from '../tensor.js';
import type { HybridModel } from '../model/hybrid.js';
import { WeightStore } from '../model/weights.js';
import type { Drafter } from './speculative.js';

/**
 * A draft that replays a known continuation (for benchmarks: the upper bound of an always-accepted, free
 * draft), optionally corrupting each proposal with probability `errorRate` (seeded) to lower acceptance.
 */
export class OracleDrafter implements Drafter {
  private readonly rng: Rng;
  constructor(
    private readonly continuation: number[],
    private readonly promptLength: number,
    private readonly vocab: number,
    private readonly errorRate = 0,
    seed = 0,
  ) {
    this.rng = new Rng(seed);
  }
  async propose(committed: number[], K: number) {
    const start = committed.length - this.promptLength;
    const tokens = Array.from({ length: K }, (_, i) => {
      const t = this.continuation[start + i] ?? 0;
      return this.rng.next() < this.errorRate ? (t + 1 + this.rng.int(0, this.vocab - 2)) % this.vocab : t;
    });
    return { tokens, dists: tokens.map(() => null) };
  }
  accept(): void {}
}

/** A draft made of a model's first `n` layers (with its final norm and head): a cheap, related draft. */
export function truncateLayers(m: HybridModel, n: number): HybridModel {
  if (!Number.isInteger(n) || n < 1 || n > m.llama.numLayers)
    throw new ArgumentError('layers', `an integer in [1, ${m.llama.numLayers}]`, n);
  const tensors = new Map<string, Tensor>();
  for (const name of m.weights.names()) {
    const mm = /^model\.layers\.(\d+)\./.exec(name);
    if (!mm || Number(mm[1]) < n) tensors.set(name, m.weights.get(name));
  }
  const llama = { ...m.llama, numLayers: n, raw: { ...m.llama.raw, num_hidden_layers: n } };
  const mamba = m.mamba
    ? {
        ...m.mamba,
        nLayer: n,
        attnLayers: m.mamba.attnLayers.filter((l) => l < n),
        raw: { ...m.mamba.raw, n_layer: n, attn_layers: m.mamba.attnLayers.filter((l) => l < n) },
      }
    : undefined;
  return { llama, mamba, weights: new WeightStore(tensors, `${m.weights.source} (first ${n} layers)`) };
}
