/**
 * The golden `speculative` op: a whole speculative-sampling scenario (PAPER.md §4) as one case — a target
 * hybrid converted from a random Llama, the draft made of its first two layers, a prompt and the uniform
 * draws, replayed in order; outputs are the tokens, the per-round acceptances and the target's Mamba states
 * after every round (lib/decode/speculative.ts runs it; upstream's counterpart is itsdaniele/speculative_mamba).
 */
import { GoldenFormatError } from '../errors.js';
import { Tensor } from '../tensor.js';
import { parseLlamaConfig, parseMambaConfig, type MambaVariant } from '../model/config.js';
import { convert } from '../model/convert.js';
import type { HybridModel } from '../model/hybrid.js';
import { randomLlama } from '../model/random.js';
import { WeightStore } from '../model/weights.js';
import { ModelDrafter, effectiveStates, speculativeGenerate } from '../decode/speculative.js';
import { truncateLayers } from '../decode/drafts.js';
import { d, int, need, type Attrs, type GoldenOp, type Named } from './case.js';

const SPEC_LAYOUT =
  'inputs: prompt (1,P) token ids; uniforms (U) the uniform draws in [0,1), consumed in order (one per draft sample, one per accept test, one per residual or bonus draw); target/<weight> and draft/<weight> the two models (configs in attrs). outputs: tokens (n); accepted (rounds) accepted drafts per round; emitted (rounds); uniforms_used (1); round<r>/layer<i>/ssm (1,dim,N) the target Mamba layer state after round r as plain decoding holds it (pending rows folded); round<r>/layer<i>/conv (1,C,W-1) its conv window';

function modelToInputs(prefix: string, m: HybridModel, I: Named): Record<string, unknown> {
  for (const n of m.weights.names()) I[`${prefix}/${n}`] = m.weights.get(n);
  return { config: m.llama.raw, mamba_config: m.mamba?.raw ?? null, variant: m.mamba?.variant ?? null, semantics: m.mamba?.semantics ?? null };
}

function modelFromInputs(prefix: string, I: Named, a: Record<string, unknown>): HybridModel {
  if (!a || typeof a !== 'object' || typeof a.config !== 'object') throw new GoldenFormatError('case attrs', `'${prefix}' must hold the model's config`);
  const llama = parseLlamaConfig(a.config as Record<string, unknown>, `${prefix} config`);
  const mamba = a.mamba_config ? parseMambaConfig(a.mamba_config as Record<string, unknown>, a.variant as MambaVariant, `${prefix} mamba_config`, (a.semantics as 'upstream' | 'clean') ?? 'upstream') : undefined;
  const w = new Map<string, Tensor>();
  for (const [k, t] of Object.entries(I)) if (k.startsWith(`${prefix}/`)) w.set(k.slice(prefix.length + 1), t);
  return { llama, mamba, weights: new WeightStore(w, `${prefix} weights`) };
}


export const SPECULATIVE_OP: GoldenOp = {
    op: 'speculative',
    upstream: 'itsdaniele/speculative_mamba (speculative sampling, multi-step verify); this project: lib/decode/speculative.ts',
    layout: SPEC_LAYOUT,
    async run(ops, I, a) {
      const target = modelFromInputs('target', I, a.target as Record<string, unknown>);
      const draft = modelFromInputs('draft', I, a.draft as Record<string, unknown>);
      const prompt = Array.from(need(I, 'prompt').data);
      const U = need(I, 'uniforms').data;
      let used = 0;
      const uniform = () => {
        if (used >= U.length) throw new GoldenFormatError('uniforms', `more than the ${U.length} recorded draws were needed`);
        return U[used++];
      };
      const K = int(a, 'K');
      const out: Named = {};
      const accepted: number[] = [];
      const emitted: number[] = [];
      const num = (k: string) => (typeof a[k] === 'number' ? (a[k]) : undefined);
      const r = await speculativeGenerate(ops, target, new ModelDrafter(ops, draft, K + 1, 'lazy'), prompt, {
        K,
        maxNewTokens: int(a, 'max_new_tokens'),
        temperature: num('temperature'),
        topK: num('top_k'),
        topP: num('top_p'),
        eos: [],
        uniform,
        onRound: (info, cache) => {
          const round = accepted.length;
          accepted.push(info.accepted);
          emitted.push(info.emitted.length);
          for (const [layer, st] of effectiveStates(target, cache)) {
            out[`round${round}/layer${layer}/ssm`] = st.ssm;
            out[`round${round}/layer${layer}/conv`] = st.conv;
          }
        },
      });
      out.tokens = Tensor.from(r.tokens, [r.tokens.length]);
      out.accepted = Tensor.from(accepted, [accepted.length]);
      out.emitted = Tensor.from(emitted, [emitted.length]);
      out.uniforms_used = Tensor.from([used], [1]);
      return out;
    },
    generate(r, s) {
      const variant = (s.variant ?? 'mamba2') as MambaVariant;
      if (variant !== 'mamba1' && variant !== 'mamba2') throw new GoldenFormatError('--variant', `mamba1 or mamba2, got ${s.variant}`);
      const heads = d(s.heads, 2);
      const hd = 16;
      const teacher = randomLlama({ vocab: d(s.vocab, 11), hidden: 32, intermediate: 40, layers: 4, heads, kvHeads: 1, headDim: hd }, r.int(0, 1 << 30));
      const target = convert(teacher, { variant, attentionFraction: 0.5, seed: r.int(0, 1 << 30) });
      const draft = truncateLayers(target, 2);
      const inputs: Named = {};
      const attrs: Attrs = {
        K: d(s.k, 3),
        max_new_tokens: d(s.steps, 10),
        temperature: 1,
        target: modelToInputs('target', target, inputs),
        draft: modelToInputs('draft', draft, inputs),
        layout: SPEC_LAYOUT,
      };
      const P = d(s.len, 4);
      inputs.prompt = Tensor.from(Array.from({ length: P }, () => r.int(0, teacher.llama.vocabSize - 1)), [1, P]);
      inputs.uniforms = Tensor.from(Array.from({ length: 2048 }, () => r.next()), [2048]);
      return { inputs, attrs, note: 'speculative sampling (temperature 1), draft = the target’s first 2 layers; states are the target’s after each round, pending rows folded' };
    },
};
