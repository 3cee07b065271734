/**
 * Tour 3 — speculative decoding of a hybrid, one round at a time (PAPER.md §4, Algorithm 2).
 *   npx tsx examples/03-speculative-round.ts
 *
 * Each round: the draft proposes K tokens y_{j+1 … k} (k = j + K); the target VERIFIES them in one forward
 * over [last committed token, drafts]; its Mamba layers run MultiStep(h_i, y, i, j, k) from their ONE cached
 * state h_i: replay the r = j − i pending steps without output (→ h_j), then the s = k − j + 1 window steps
 * with output (→ h_k). k' drafts are accepted; the cache keeps h_k when all were (nothing to redo), else h_j
 * plus the accepted rows as pending (replayed next round); the conv's circular buffer just moves its write
 * position back. Greedy acceptance gives exactly the target's own greedy text.
 *
 * What to look at: i, j, k per round, which state was kept, the conv write position, the accepted drafts;
 * then the same text as plain decoding.
 */
import { join } from 'node:path';
import { loadModel } from '../lib/model/load.js';
import { generate } from '../lib/model/generate.js';
import type { Mamba1Cache, Mamba2Cache } from '../lib/model/hybrid.js';
import { getOps } from '../lib/ops.js';
import { ModelDrafter, speculativeGenerate } from '../lib/decode/speculative.js';
import { specOf } from '../lib/decode/lazy_state.js';
import { BpeTokenizer } from '../lib/text/bpe.js';

const models = join(import.meta.dirname, '..', 'models');
const tok = BpeTokenizer.load(join(models, 'tokenizer.json'));
const target = loadModel(join(models, 'hybrid-mamba2-50')); // the distilled 50% Mamba-2 hybrid
const draft = loadModel(join(models, 'draft-small')); // a 1-layer Llama trained on the teacher's logits over the same text
const ops = await getOps('reference'); // float64: the greedy text must match plain decoding exactly
const prompt = tok.encode('We have every reason to believe that');
const K = 3;
const say = (ids: number[]) => JSON.stringify(tok.decode(ids));
console.log(
  `target: models/hybrid-mamba2-50 (attention in layers [${target.mamba!.attnLayers.join(', ')}]), draft: models/draft-small, K = ${K}`,
);
console.log(`prompt: ${say(prompt)} (${prompt.length} tokens; the target prefills all but the last)\n`);

let committed = prompt.length;
let i = prompt.length - 1; // the Mamba state after prefill stands at position i
const res = await speculativeGenerate(ops, target, new ModelDrafter(ops, draft, K + 1, 'lazy'), prompt, {
  K,
  maxNewTokens: 24,
  eos: [],
  onRound: (info, cache) => {
    const j = committed - 1; // tokens the target had consumed: the last committed one is the window's first
    const st = specOf(cache.layers.find((l): l is Mamba1Cache | Mamba2Cache => l.kind !== 'attention')!);
    const drafts = info.emitted.slice(0, info.accepted);
    const kept =
      st.pending.x.length === 0
        ? 'h_k (all accepted: state folded to the end of the window)'
        : `h_j (a rejection: state at j, ${st.pending.x.length} accepted rows pending)`;
    console.log(
      `round ${info.proposed ? '' : '(last) '}i = ${i}, j = ${j}, k = j + ${info.proposed}:  MultiStep replays r = j − i = ${j - i}, runs s = ${info.proposed + 1} steps`,
    );
    console.log(
      `   accepted ${info.accepted}/${info.proposed} drafts ${say(drafts)}, then the target's own ${say(info.emitted.slice(info.accepted))}`,
    );
    console.log(`   kept ${kept}; state position ${st.statePos}, conv write position ${st.convLen}`);
    committed += info.emitted.length;
    i = st.statePos;
  },
});
const plain = await generate(ops, target, prompt, { maxNewTokens: 24, eos: [] });
console.log(`\nspeculative: ${say(res.tokens)}`);
console.log(`plain:       ${say(plain.tokens)}`);
console.log(
  `identical: ${JSON.stringify(res.tokens) === JSON.stringify(plain.tokens)}; ${res.rounds.length} target forwards instead of ${res.tokens.length}, acceptance ${(100 * res.acceptanceRate).toFixed(0)}%`,
);
console.log('\nnext: examples/04-distill-steps.ts — how the hybrid learned to match its teacher');
