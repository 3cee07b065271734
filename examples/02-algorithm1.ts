/**
 * Tour 2 — Algorithm 1 (PAPER.md §2): a trained attention layer becomes a Mamba layer.
 *   npx tsx examples/02-algorithm1.ts
 *
 * Attention reads  y_t = Σ_s softmax_s(q_t · k_s) v_s  with q = W^Q o, k = W^K o, v = W^V o.
 * Drop the softmax and it is linear attention,  y_t = Σ_s (q_t · k_s) v_s  — an SSM with C_t = q_t, B_s = k_s,
 * x_s = v_s and no decay. Algorithm 1 starts the Mamba layer exactly there:
 *   C ← W^Q,  B ← W^K,  x ← W^V,  out_proj ← W^O;  the MLP and both norms are kept;
 *   new: Δ (and its bias), A, D, the conv, the z gate — the part distillation has to learn.
 *
 * What to look at: every copied matrix equal to its attention source (difference 0), then the perplexity of
 * the shipped teacher, of the converted hybrid before any training, and of the shipped distilled hybrid.
 */
import { join } from 'node:path';
import { loadModel } from '../lib/model/load.js';
import { convert } from '../lib/model/convert.js';
import type { HybridModel } from '../lib/model/hybrid.js';
import type { Tensor } from '../lib/tensor.js';
import { BpeTokenizer } from '../lib/text/bpe.js';
import { corpusPart } from '../lib/data/corpus.js';
import { tokenStream } from '../lib/cli/train_cmds.js';
import { evaluate } from '../lib/train/job.js';

const models = join(import.meta.dirname, '..', 'models');
const teacher = loadModel(join(models, 'teacher-small'));
const c = teacher.llama;
console.log(
  `teacher: Llama, ${c.numLayers} layers, d_model ${c.hiddenSize}, ${c.numHeads} heads / ${c.numKvHeads} kv heads of ${c.headDim}`,
);

/** rows [from, from + n) of a (rows × cols) matrix */
const rows = (t: Tensor, from: number, n: number) => t.data.subarray(from * t.shape[1], (from + n) * t.shape[1]);
const diff = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  a.length !== b.length ? NaN : Math.max(0, ...Array.from(a, (v, i) => Math.abs(v - b[i])));
const T = (m: HybridModel, n: string) => m.weights.get(n);

for (const variant of ['mamba2', 'mamba1'] as const) {
  const h = convert(teacher, { variant, attentionFraction: 0.5, seed: 0 });
  const layer = h.mamba!.attnLayers.includes(0) ? 1 : 0; // a replaced layer
  const a = `model.layers.${layer}.self_attn`;
  const m = `model.layers.${layer}.mamba`;
  console.log(
    `\n${variant} hybrid, 50% attention (kept: layers [${h.mamba!.attnLayers.join(', ')}]); layer ${layer} replaced:`,
  );
  const show = (what: string, got: ArrayLike<number>, src: string) =>
    console.log(
      `  ${what.padEnd(34)} ← ${src.padEnd(22)} max |difference| = ${diff(got, T(teacher, `${a}.${src}`).data)}`,
    );
  if (variant === 'mamba2') {
    const { dInner, dXb } = h.mamba!;
    const W = T(h, `${m}.in_proj.weight`); // rows [z | x | B | C | dt]
    show('x rows of in_proj', rows(W, dInner, dXb), 'v_proj.weight');
    show('B rows of in_proj', rows(W, dInner + dXb, dXb), 'k_proj.weight');
    show('C rows of in_proj', rows(W, dInner + 2 * dXb, dInner), 'q_proj.weight');
  } else {
    show('in_proj_x (x)', T(h, `${m}.in_proj_x.weight`).data, 'v_proj.weight');
    show('B_proj (B)', T(h, `${m}.B_proj.weight`).data, 'k_proj.weight');
    show('C_proj (C)', T(h, `${m}.C_proj.weight`).data, 'q_proj.weight');
  }
  show('out_proj', T(h, `${m}.out_proj.weight`).data, 'o_proj.weight');
  const kept = [
    'mlp.gate_proj.weight',
    'mlp.up_proj.weight',
    'mlp.down_proj.weight',
    'input_layernorm.weight',
    'post_attention_layernorm.weight',
  ];
  const worst = Math.max(
    ...kept.map((k) => diff(T(h, `model.layers.${layer}.${k}`).data, T(teacher, `model.layers.${layer}.${k}`).data)),
  );
  console.log(`  MLP and norms kept as they were:   max |difference| = ${worst}`);
  const fresh = h.weights.names().filter((n) => n.startsWith(m) && !/in_proj_x|B_proj|C_proj|out_proj/.test(n));
  console.log(
    `  new, for distillation to learn:    ${fresh
      .map((n) => n.slice(m.length + 1))
      .map((n) => (n === 'in_proj.weight' ? 'in_proj.weight (its z and dt rows)' : n))
      .join(', ')}`,
  );
}

// what the copied weights are worth, and what distillation adds (held-out speeches, 2048 tokens, float64)
const tok = BpeTokenizer.load(join(models, 'tokenizer.json'));
const test = tokenStream(corpusPart('sotu', 'test'), tok).slice(0, 2048);
const ppl = (m: HybridModel) => evaluate(m, test, { seqLen: 256 }).ppl.toFixed(1);
console.log('\nperplexity on 2048 held-out tokens:');
console.log(`  teacher (all attention)                       ${ppl(teacher)}`);
console.log(
  `  50% Mamba-2 hybrid, Algorithm 1, no training  ${ppl(convert(teacher, { variant: 'mamba2', attentionFraction: 0.5, seed: 0 }))}`,
);
console.log(`  the same, distilled (models/hybrid-mamba2-50) ${ppl(loadModel(join(models, 'hybrid-mamba2-50')))}`);
console.log('\nnext: examples/03-speculative-round.ts — decoding the hybrid fast with a draft (Algorithm 2)');
