/**
 * The page of `npm run paper` (scripts/paper.ts), rendered from its measurements alone: renderPage(R) and
 * renderSvgs(R) turn the content of results/results.json into results.md and the three SVG plots, and nothing else
 * goes in — so the page can be rebuilt from the JSON at any time (scripts/paper.ts does when the page does not carry
 * the JSON's sha-256).
 *
 *   R           the measurements (PaperResults, results.json): perplexities ppl[run] on the test split, the
 *               speculative rows, each run's command, seconds and per-step cross-entropy history
 *   T           the teacher's test perplexity; a row's ratio is ppl / T
 *   gap(t)      exp(mean over the last WINDOW steps of CE_random − CE_attention): the random / attention-init perplexity
 *               ratio at equal tokens, from the two runs' histories (same batches in the same order)
 *   recovered   ln(silenced / run) / ln(silenced / T): the share of what the teacher's attention added that a run got back
 *   sha line    the last line of the page (after a blank one), `<!-- results/results.json sha-256: H … -->`, H the
 *               hash of the JSON's bytes
 */
import { attentionLayersFor } from '../lib/model/config.js';
import type { Comparison } from '../lib/decode/compare.js';
import { barChartSvg, lineChartSvg, passkeyHeatMapSvg } from '../lib/plot/svg.js';
import { lastOf, lookup } from '../lib/checked.js';

/** What a run's training.json says that the page uses. */
export interface RunInfo {
  command: string;
  seconds: number;
  history?: Array<{ step: number; ce: number; tokens: number }>;
  [dpoKey: string]: unknown;
}

/** A speculative decoding row: one target, one K. */
export interface SpecRow extends Comparison {
  target: string;
}

/** results.json: everything the page shows (format 1; an older file lacks `format` and is not rendered). */
export interface PaperResults {
  format: 1;
  /** 'toy' or 'tiny' (scripts/paper.ts --scale) */
  scale: string;
  /** minutes of the evaluation and speculative measurements in the invocation that wrote this */
  measureMinutes: number;
  /** minutes of the training runs in the invocation that made them (undefined: not recorded) */
  trainingMinutes?: number;
  /** training runs made by the invocation that wrote this */
  runsMade: number;
  /** how the runs ran, in words ('two at a time, one thread each') */
  runsAt: string;
  ppl: Record<string, { ppl: number; bitsPerByte: number }>;
  /** the fingerprint of the model each perplexity was measured on */
  models: Record<string, string>;
  spec: SpecRow[];
  /** training tokens of each distillation run */
  tokens: number;
  distill: { steps: number; batch: number; len: number; lr: string };
  runs: Record<string, RunInfo>;
  teacher: { path: string; hidden: number; layers: number; heads: number; kvHeads: number; vocab: number };
  draft: { path: string; layers: number; command: string };
  /** the corpus, in words */
  data: string;
  eval: { tokens: number; seqLen: number; command: string };
  speculative: { prompts: number; promptTokens: number; newTokens: number; repeats: number };
  /** issue #25: the silenced-attention floor (mil eval --silence), measured before distilling */
  floor?: {
    command: string;
    teacher: { ppl: number; bitsPerByte: number };
    rows: Array<{ kept: number; attnLayers: number[]; ppl: number; bitsPerByte: number; ratio: number }>;
    verdict: string | null;
  };
  /** issue #25: the passkey test (mil passkey) of the teacher, hybrids and pure Mamba students */
  passkey?: {
    command: string;
    context: number;
    multiples: number[];
    lengths: number[];
    depths: number[];
    trials: number;
    backend: string;
    models: Array<{ name: string; cells: Array<{ length: number; depth: number; accuracy: number }> }>;
  };
  /** issue #25: wall minutes per stage (a training run, an evaluation, a measurement) in the invocations that made them */
  stageMinutes?: Record<string, number>;
  /** the machine, in words (CPU, GPU adapter) */
  machine?: string;
}

/** The page's last line: the sha-256 of the results.json it was rendered from. */
const shaLine = (sha: string) =>
  `\n<!-- results/results.json sha-256: ${sha} (the page is rendered from that file alone) -->\n`;

/** The sha-256 a page says it was rendered from (undefined: none, a page older than the line). */
export function recordedSha(page: string): string | undefined {
  return /<!-- results\/results\.json sha-256: ([0-9a-f]{64}) /.exec(page)?.[1];
}

/** The SVG plots of results/ (name → content). */
export function renderSvgs(R: PaperResults): Record<string, string> {
  const { ppl, spec } = R;
  const T = ppl.teacher.ppl;
  const gaps = initGaps(R);
  const svgs: Record<string, string> = {
    'table6.svg': barChartSvg({
      title: 'Perplexity ratio to the teacher (test split)',
      yLabel: 'ppl / teacher ppl',
      groups: ['50%', '25%', '0%'],
      series: ['mamba1', 'mamba2'].map((v) => ({
        name: v,
        values: ['50', '25', '0'].map((a) => lookup(ppl, `${v}-${a}`).ppl / T),
      })),
    }),
    'init-gap.svg': lineChartSvg({
      title: `Random / attention initialisation: perplexity ratio at equal tokens (Mamba-2, ${WINDOW}-step mean)`,
      xLabel: 'training tokens seen',
      yLabel: 'ppl ratio (random / attention init)',
      series: [
        ...(['50%', '0%'] as const).map((a) => ({
          name: `${a} attention`,
          points: gaps[a].map((p) => [p.tokens, p.ratio] as [number, number]),
        })),
        {
          name: '2× (the issue)',
          points: [[gaps['50%'][0].tokens, 2] as [number, number], [lastOf(gaps['50%']).tokens, 2] as [number, number]],
        },
      ],
    }),
    'speculative.svg': lineChartSvg({
      title: 'Speculative decoding with the trained draft (wasm-simd, greedy)',
      xLabel: 'K (draft tokens per verify)',
      yLabel: 'speedup over plain decoding',
      series: ['mamba2-50', 'mamba2-0'].map((t) => ({
        name: t,
        points: spec.filter((s) => s.target === t).map((s) => [s.K, s.speedup] as [number, number]),
      })),
    }),
  };
  if (R.passkey) svgs['passkey.svg'] = passkeyHeatMapSvg(R.passkey);
  return Object.fromEntries(Object.entries(svgs).map(([k, v]) => [k, v + '\n']));
}

// ------------------------------------------------------------------ the random-init gap along the training
// Each step's cross-entropy is measured on a batch the model has not trained on yet (the forward before that
// step's update) and both runs see the same batches in the same order (same seed): a paired, progressive
// held-out estimate. ratio(t) = exp(CE_random(t) − CE_attention(t)) = the perplexity ratio after t·batch·len tokens.
const WINDOW = 5;
function initGap(
  R: PaperResults,
  attn: string,
  random: string,
): Array<{ step: number; tokens: number; ratio: number }> {
  const a = lookup(R.runs, attn).history!;
  const r = lookup(R.runs, random).history!;
  const out = [];
  for (let i = 0; i < Math.min(a.length, r.length); i++) {
    const lo = Math.max(0, i - (WINDOW - 1));
    let d = 0;
    for (let k = lo; k <= i; k++) d += r[k].ce - a[k].ce;
    out.push({
      step: a[i].step,
      tokens: a.slice(0, i + 1).reduce((n, h) => n + h.tokens, 0),
      ratio: Math.exp(d / (i - lo + 1)),
    });
  }
  return out;
}
const initGaps = (R: PaperResults) => ({
  '50%': initGap(R, 'mamba2-50', 'mamba2-50-random'),
  '0%': initGap(R, 'mamba2-0', 'mamba2-0-random'),
});
/** The curve in words: its peak, and the token range where it is at least 2×. */
function gapSummary(g: Array<{ tokens: number; ratio: number }>): string {
  const peak = g.reduce((a, b) => (b.ratio > a.ratio ? b : a));
  const above = g.filter((p) => p.ratio >= 2);
  const span = above.length ? `, ≥ 2× from ${above[0].tokens} to ${lastOf(above).tokens} tokens` : ', never 2×';
  return `peaks at ${peak.ratio.toFixed(2)}× after ${peak.tokens} tokens${span}`;
}

/** results.md, rendered from R alone; `sha` is the sha-256 of the results.json that holds R (its last line). */
export function renderPage(R: PaperResults, sha: string): string {
  const { ppl, spec } = R;
  const T = ppl.teacher.ppl;
  const gaps = initGaps(R);
  const info = (name: string) => lookup(R.runs, name);
  /** How many of the teacher's layers a fraction of attention converts. */
  const converted = (fraction: number) => R.teacher.layers - attentionLayersFor(fraction, R.teacher.layers).length;
  /** How much of what the attention added a run got back: ln(silenced / run) / ln(silenced / teacher). */
  const recovered = (run: string, silenced: string) =>
    Math.log(lookup(ppl, silenced).ppl / lookup(ppl, run).ppl) / Math.log(lookup(ppl, silenced).ppl / T);
  const row = (name: string) => `${lookup(ppl, name).ppl.toFixed(2)} | ${(lookup(ppl, name).ppl / T).toFixed(3)}`;
  const cmd = (name: string) => `\`${info(name).command}\``;
  const perToken = (c: Comparison) => c.plainDecodeMs / c.newTokens;
  const best = (t: string) => spec.filter((s) => s.target === t).reduce((a, b) => (b.speedup > a.speedup ? b : a));
  const dpo = info('mamba2-50-dpo');
  /** Each claim of PAPER.md's results list against what was measured here, decided by the numbers. */
  function agreement(): string[] {
    const r = (n: string) => lookup(ppl, n).ppl;
    const grows = (v: string) => r(`${v}-50`) <= r(`${v}-25`) && r(`${v}-25`) <= r(`${v}-0`);
    const initRatio = [r('mamba2-50-random') / r('mamba2-50'), r('mamba2-0-random') / r('mamba2-0')];
    const b50 = best('mamba2-50');
    const b0 = best('mamba2-0');
    return [
      `- **Table 6, perplexity grows as attention shrinks**: ${grows('mamba1') && grows('mamba2') ? 'agrees' : 'does not hold for every variant'} (Mamba-1 ${(r('mamba1-50') / T).toFixed(3)} → ${(r('mamba1-0') / T).toFixed(3)}, Mamba-2 ${(r('mamba2-50') / T).toFixed(3)} → ${(r('mamba2-0') / T).toFixed(3)}). The size differs: at 0% attention the paper loses 1.66×, this ${R.teacher.layers}-layer ${R.scale} only ${(r('mamba2-0') / T).toFixed(2)}× — a small teacher on one domain leaves little for attention to hold that a state cannot (a 1-layer Llama trained on its logits, the speculative draft below, comes within ${(r('draft') / T).toFixed(2)}× of its perplexity). The 12.5% row is not run: 12.5% of 4 layers rounds to the same single layer as 25%. Mamba-1 comes out slightly ahead of Mamba-2 here at every fraction.`,
      `- **Tables 7/8, attention-weight initialisation matters**: the direction agrees (random init is worse at both fractions); the size does not, except briefly early in the training: the random / attention perplexity ratio at equal tokens ${gapSummary(gaps['50%'])} at 50% attention and ${gapSummary(gaps['0%'])} at 0%, then closes to ${initRatio.map((x) => `${x.toFixed(2)}×`).join(' and ')} on the test split at the full budget, against 3.5× and 5.4× in the paper. Here the Mamba layers are small enough to learn most of what they need from scratch in ${R.distill.steps} steps with the MLPs frozen, and the teacher's attention holds little: silencing it in the converted layers costs only ${(r('silenced-50') / T).toFixed(2)}× (50%) and ${(r('silenced-0') / T).toFixed(2)}× (0%), which bounds the gap at the budget below 2× for any random init that trains at all (above). Against that floor the attention init gets back ${(100 * recovered('mamba2-50', 'silenced-50')).toFixed(0)}% of what the attention added at 50% where random init gets back ${(100 * recovered('mamba2-50-random', 'silenced-50')).toFixed(0)}% (0%: ${(100 * recovered('mamba2-0', 'silenced-0')).toFixed(0)}% against ${(100 * recovered('mamba2-0-random', 'silenced-0')).toFixed(0)}%). The issue asked for at least 2× in perplexity at equal tokens: it holds only in that early window at 50% (and never at 0%), not at the budget the tables use, and that budget was not changed to make it.`,
      `- **Table 9, replacing beats dropping**: agrees, by far (${(r('drop-50') / r('mamba2-50')).toFixed(2)}× and ${(r('drop-25') / r('mamba2-25')).toFixed(2)}× the perplexity when the layers are dropped, even though the dropped model trains all its parameters).`,
      `- **Stepwise beats one shot**: does not hold here at equal total tokens: ${r('mamba2-stepwise-0').toFixed(2)} stepwise against ${r('mamba2-0').toFixed(2)} one shot — each of the three stages gets a third of the tokens, and at this budget the last stage has too few.`,
      `- **SFT and DPO**: toy-sized stages that run and are checked (DPO's loss and gradient against closed forms and finite differences); on this corpus SFT does not lower the held-out perplexity (${r('mamba2-50').toFixed(2)} → ${r('mamba2-50-sft').toFixed(2)}) and DPO moves the implicit reward only a little towards the chosen continuations; the paper's gains are on chat benchmarks this toy has no equivalent of.`,
      `- **Speculative decoding**: output identical to plain greedy decoding in every row; best ×${b50.speedup.toFixed(2)} for the 50% hybrid (K = ${b50.K}) and ×${b0.speedup.toFixed(2)} for the pure Mamba-2 target (K = ${b0.K}), against 1.8–1.9× (hybrids) and 1.7–2.6× (pure Mamba) in the paper. The issue asked for ≥ 1.5× on the 50% hybrid: ${b50.speedup >= 1.5 ? "reached in this run (this VM's speed drifts by ±20% between rows, so the best K and its figure move by about ±0.1 from run to run)" : `not reached (×${(Math.floor(b50.speedup * 1000) / 1000).toFixed(3)}; this VM's speed drifts by ±20% between rows, so the best K and its figure move by about ±0.1 from run to run)`}. Where the time goes (50% hybrid, K = ${b50.K}): plain decoding takes ${perToken(b50).toFixed(2)} ms a token; a verify window of ${b50.K + 1} tokens takes ${(b50.verifyMs / b50.rounds).toFixed(2)} ms (${(b50.verifyMs / b50.rounds / perToken(b50)).toFixed(1)}× a token) and the draft ${(b50.draftMs / b50.rounds).toFixed(2)} ms per round (${(b50.draftMs / b50.rounds / perToken(b50)).toFixed(1)}× a target token for ${b50.K} draft tokens), so ${b50.tokensPerVerify.toFixed(2)} tokens per round cost ${((b50.verifyMs + b50.draftMs) / b50.rounds).toFixed(2)} ms. The window's matrix products are compute-bound on this CPU (~30–36 GFLOP/s a core with the wasm-simd backend's fused multiply-add build, ~21 without, \`bench/results/matmul.md\`) while one token's are bound by reading the weights; the rest is each layer's glue in JavaScript (the conv, copies, the lazy state's bookkeeping). History: on 2026-12-01 MultiStep and the cached attention's products became SIMD kernels and the Llama draft a fused step (best rows ×1.07 / ×1.19 → ×1.50 / ×1.50); then the fused multiply-add build, the SIMD SiLU and the state update as MultiStep (best rows ×1.62 / ×1.43, with acceptance 76% / 75% at K = 7 and 8, in a slower phase of this VM, where plain decoding took 1.40 ms a token); on 2026-12-02 the draft, until then trained on the text alone (\`mil train --config draft-small --data sotu\`, test ppl 99.93), was remade from the teacher's logits (→ this table): acceptance at K = 7 on the 50% hybrid 76% → 86%, and in a paired run (both drafts interleaved on the same prompts, twice) ×1.43–1.45 → ×1.53–1.54 at K = 7 on the 50% hybrid and ×1.50–1.58 → ×1.60–1.63 on pure Mamba-2. Earlier still ×1.44 at K = 3, before commit b437179 made a plain token ~1.35× cheaper while the verify window stayed as it was. On 2026-12-04 the hybrids' own plain decoding took the fused step (lib/model/fused_step.ts with mixers/mamba2.ts mamba2Step: a token's non-product time on the d512 bench models ~6.5 → ~3 ms) while the verify window did not (its layers go through the generic forward and Algorithm 2's state store): best rows ×1.55 / ×1.77 → this table, below 1. On these toy models a window's products run from the CPU's caches and cost about K + 1 rows' worth, so no window comes near one token's cost here; where the weights stream from memory it can (bench/speculative.ts on the d512 models with an always-right draft, the same day after that change: ×1.43 at K = 4 and ×2.26 at K = 8 on the 50% hybrid).`,
    ];
  }
  const md = [
    `# The paper at ${R.scale} scale`,
    '',
    `Made by \`npm run paper\` (scripts/paper.ts) on this machine (2 cores): the ${Object.keys(R.runs).length} training runs took ${R.trainingMinutes !== undefined ? `${R.trainingMinutes.toFixed(1)} min` : 'an unrecorded time'} (${R.runsAt}) in the invocation that made them, and the evaluation and speculative measurements ${R.measureMinutes.toFixed(1)} min in this one (${R.runsMade} runs made in it), so a fresh \`npm run paper\` takes about ${((R.trainingMinutes ?? 0) + R.measureMinutes).toFixed(0)} min. Teacher: \`${R.teacher.path}\` (d_model ${R.teacher.hidden}, ${R.teacher.layers} layers, ${R.teacher.heads} query / ${R.teacher.kvHeads} key-value heads, vocabulary ${R.teacher.vocab}), trained by the command in its training.json. Data: ${R.data}; perplexities are on the test split's first ${R.eval.tokens} tokens (windows of ${R.eval.seqLen}), with \`${R.eval.command}\`. Every distillation run sees ${R.tokens} training tokens (${R.distill.steps} steps of batch ${R.distill.batch} × ${R.distill.len}), KL weight 0.1, CE weight 1, AdamW (0.9, 0.98), lr ${R.distill.lr}, cosine with 5% warmup, clip 0.1, only Mamba parameters training; runs go ${R.runsAt}.`,
    '',
    `Teacher test perplexity: **${T.toFixed(2)}** (${ppl.teacher.bitsPerByte.toFixed(3)} bits/byte).`,
    '',
    '## Table 6: perplexity ratio to the teacher as attention shrinks',
    '',
    '| attention | Mamba-1 ppl | ratio | Mamba-2 ppl | ratio | paper (Mamba-2-style, Zephyr) |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    `| 50% | ${row('mamba1-50')} | ${row('mamba2-50')} | 1.03 |`,
    `| 25% | ${row('mamba1-25')} | ${row('mamba2-25')} | 1.09 |`,
    `| 0% | ${row('mamba1-0')} | ${row('mamba2-0')} | 1.66 |`,
    '',
    '![Table 6](results/table6.svg)',
    '',
    '## Tables 7/8: initialising from the attention weights vs at random (Mamba-2)',
    '',
    '| attention | attention init ppl | ratio | random init ppl | ratio | random / attention | paper (random / attention) |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    `| 50% | ${row('mamba2-50')} | ${row('mamba2-50-random')} | ${(lookup(ppl, 'mamba2-50-random').ppl / lookup(ppl, 'mamba2-50').ppl).toFixed(2)}× | ${(7.4 / 2.09).toFixed(2)}× |`,
    `| 0% | ${row('mamba2-0')} | ${row('mamba2-0-random')} | ${(lookup(ppl, 'mamba2-0-random').ppl / lookup(ppl, 'mamba2-0').ppl).toFixed(2)}× | ${(18.2 / 3.36).toFixed(2)}× |`,
    '',
    '### What bounds the gap at this scale',
    '',
    "Silencing the converted layers' attention in the teacher (`silenceAttention` in lib/model/convert.ts: their o_proj set to zero, MLPs and norms kept, nothing trained) gives the model that Mamba layers which had learned only to output zero would give. A trained student that is worse than it has lost more than the attention held, so once training has taught the random-init layers at least to do no harm, random / attention ≤ silenced / attention-init < silenced / teacher. The last column measures each init against that floor: ln(silenced / run) / ln(silenced / teacher), the share of what the teacher's attention added that the student got back.",
    '',
    '| attention | teacher ppl | attention silenced ppl | silenced / teacher (the most random / attention can stay) | attention init recovers | random init recovers |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...(['50', '0'] as const).map(
      (f) =>
        `| ${f}% | ${T.toFixed(2)} | ${lookup(ppl, `silenced-${f}`).ppl.toFixed(2)} | ${(lookup(ppl, `silenced-${f}`).ppl / T).toFixed(2)}× | ${(100 * recovered(`mamba2-${f}`, `silenced-${f}`)).toFixed(0)}% | ${(100 * recovered(`mamba2-${f}-random`, `silenced-${f}`)).toFixed(0)}% |`,
    ),
    '',
    `${(['50', '0'] as const).every((f) => lookup(ppl, `mamba2-${f}-random`).ppl < lookup(ppl, `silenced-${f}`).ppl) ? 'Both random-init runs end below the floor' : 'Not every random-init run ends below the floor'} (${(['50', '0'] as const).map((f) => `${f}%: ${lookup(ppl, `mamba2-${f}-random`).ppl.toFixed(2)} against ${lookup(ppl, `silenced-${f}`).ppl.toFixed(2)}`).join(', ')}). In this teacher the attention of the ${converted(0.5)} layers the 50% hybrid converts is worth ${(lookup(ppl, 'silenced-50').ppl / T).toFixed(2)}× in perplexity and that of all ${converted(0)} ${(lookup(ppl, 'silenced-0').ppl / T).toFixed(2)}×, so no trained random init can stay 2× behind at the budget; in the paper's 7B models the random-init students stayed 3.5–5.4× behind. Measured against what there is to recover, the attention init is far ahead at 50% and ahead at 0%.`,
    '',
    '### How the gap closes during training',
    '',
    `Each training step's cross-entropy is taken on a batch neither run has trained on yet (the forward before that step's update), and both runs see the same batches in the same order, so exp(CE_random − CE_attention) is a paired held-out perplexity ratio at equal tokens (mean over the last ${WINDOW} steps). The gap first opens (the converted layers learn faster from their head start), then closes as the randomly initialised Mamba layers catch up:`,
    '',
    '| tokens seen | 50%: random / attention | 0%: random / attention |',
    '| ---: | ---: | ---: |',
    ...[1, 5, 10, 20, 30, 50, 75, 100]
      .filter((st) => st <= Math.min(gaps['50%'].length, gaps['0%'].length))
      .map(
        (st) =>
          `| ${gaps['50%'][st - 1].tokens} | ${gaps['50%'][st - 1].ratio.toFixed(2)}× | ${gaps['0%'][st - 1].ratio.toFixed(2)}× |`,
      ),
    '',
    `At 50% attention the ratio ${gapSummary(gaps['50%'])}; at 0% it ${gapSummary(gaps['0%'])}. At the full ${R.tokens} tokens the test-split ratios are those of the table above.`,
    '',
    '![the random-init gap along the training](results/init-gap.svg)',
    '',
    '## Table 9: replacing attention layers with Mamba vs dropping those layers',
    '',
    'Dropping removes the whole layers (attention and MLP) that Algorithm 1 would have converted; the shallower Llama then trains all of its parameters with cross-entropy for the same tokens (nothing in it is a Mamba parameter).',
    '',
    '| attention kept | Mamba-2 (replace) ppl | ratio | drop ppl | ratio |',
    '| --- | ---: | ---: | ---: | ---: |',
    `| 50% | ${row('mamba2-50')} | ${row('drop-50')} |`,
    `| 25% | ${row('mamba2-25')} | ${row('drop-25')} |`,
    '',
    '## Stepwise vs one shot (Mamba-2, to 0% attention, same total tokens)',
    '',
    '| schedule | ppl | ratio |',
    '| --- | ---: | ---: |',
    `| one shot 0% | ${row('mamba2-0')} |`,
    `| stepwise 50% → 25% → 0% | ${row('mamba2-stepwise-0')} |`,
    '',
    '## Stage 2 (SFT) and stage 3 (DPO) on the 50% Mamba-2 hybrid',
    '',
    '| model | ppl | ratio |',
    '| --- | ---: | ---: |',
    `| distilled (stage 1) | ${row('mamba2-50')} |`,
    `| + SFT (CE, all parameters) | ${row('mamba2-50-sft')} |`,
    `| + DPO (β ${dpo.beta}, ${dpo.pairs} pairs) | ${row('mamba2-50-dpo')} |`,
    '',
    `DPO preference pairs: a ${dpo.promptLen}-token prompt from the training stream, chosen = its real ${dpo.contLen}-token continuation, rejected = ${dpo.rejected}. On ${dpo.heldOutPairs} held-out pairs from the validation split the DPO model's implicit reward prefers the chosen continuation ${(100 * (dpo.heldOutRewardAccuracy as number)).toFixed(1)}% of the time (the SFT reference itself assigns the chosen one the higher likelihood on ${(100 * (dpo.referencePreferenceAccuracy as number)).toFixed(1)}%).`,
    '',
    '## Speculative decoding with a trained draft',
    '',
    `Draft: \`${R.draft.path}\`, a ${R.draft.layers}-layer Llama trained on the teacher's next-token distributions (KL only: \`${R.draft.command}\`), test ppl ${ppl.draft.ppl.toFixed(2)} (${(ppl.draft.ppl / T).toFixed(2)}× the teacher's). Backend wasm-simd, greedy, ${R.speculative.prompts} prompts of ${R.speculative.promptTokens} test tokens, ${R.speculative.newTokens} new tokens each, each decoded ${R.speculative.repeats} times both ways (interleaved) and the fastest kept; speedup = plain decoding time / speculative decoding time after the prompt (the prefill, the same in both, left out; with it in the last column), draft cost included, same prompts, same run; "identical" = the speculative tokens equal plain greedy decoding's.`,
    '',
    '| target | K | acceptance | tokens per verify | speedup | identical | speedup with prefill |',
    '| --- | ---: | ---: | ---: | ---: | --- | ---: |',
    ...spec.map(
      (s) =>
        `| ${s.target} | ${s.K} | ${(100 * s.acceptance).toFixed(0)}% | ${s.tokensPerVerify.toFixed(2)} | ×${s.speedup.toFixed(2)} | ${s.identical ? 'yes' : 'NO'} | ×${s.speedupWithPrefill.toFixed(2)} |`,
    ),
    '',
    `Best: 50% hybrid ×${best('mamba2-50').speedup.toFixed(2)} at K = ${best('mamba2-50').K}; 0% ×${best('mamba2-0').speedup.toFixed(2)} at K = ${best('mamba2-0').K}.`,
    '',
    '![speculative](results/speculative.svg)',
    '',
    '## Where this agrees with the paper, and where it does not',
    '',
    ...agreement(),
    '',
    '## The commands',
    '',
    '| run | command | minutes |',
    '| --- | --- | ---: |',
    ...Object.keys(R.runs).map((name) => `| ${name} | ${cmd(name)} | ${(info(name).seconds / 60).toFixed(1)} |`),
    '',
    ...issue25Sections(R),
  ];
  return md.join('\n') + shaLine(sha);
}

/**
 * The sections of issue #25's measurements, where results.json holds them (a page without them, the toy page made
 * before they existed, renders as it did): the silenced-attention floor, the passkey test, the wall time per stage.
 */
function issue25Sections(R: PaperResults): string[] {
  const md: string[] = [];
  if (R.floor) {
    const f = R.floor;
    md.push(
      '## The silenced-attention floor (measured before distilling)',
      '',
      `The teacher with the attention of the layers each conversion ratio replaces silenced (\`o_proj\` zeroed, MLPs and norms kept, nothing trained): \`${f.command}\`. The paper does not report this figure; issue #25 asks for it first, because a 50% floor under 2× the teacher's perplexity means the teacher does not need its attention enough for Tables 7/8 to show the paper's 3.5–5.4× gap.`,
      '',
      '| attention kept | layers kept | ppl | × teacher | bits/byte | paper |',
      '| --- | --- | ---: | ---: | ---: | --- |',
      `| 100% (teacher) | all | ${f.teacher.ppl.toFixed(2)} | 1.000 | ${f.teacher.bitsPerByte.toFixed(3)} | — |`,
      ...f.rows.map(
        (r) =>
          `| ${(100 * r.kept).toFixed(1)}% | ${r.attnLayers.join(', ') || 'none'} | ${r.ppl.toFixed(2)} | ${r.ratio.toFixed(3)} | ${r.bitsPerByte.toFixed(3)} | not reported |`,
      ),
      '',
      f.verdict ?? 'The 50% row was not measured.',
      '',
    );
  }
  if (R.passkey) {
    const p = R.passkey;
    md.push(
      '## Long context: passkey retrieval',
      '',
      `A ${'5'}-digit pass key hidden in held-out filler at depths ${p.depths.map((d) => `${Math.round(100 * d)}%`).join(', ')}, prompts of ${p.lengths.join(', ')} tokens (${p.multiples.map((m) => `${m}×`).join(', ')} the training context ${p.context}), greedy on ${p.backend}, ${p.trials} seeded trial(s) per cell, the same prompts for every model: \`${p.command}\`. Paper: the distilled hybrids hold up beyond the teacher's length (their Figure of needle-in-a-haystack accuracy); accuracy (%) per cell, averaged over depths:`,
      '',
      `| model | ${p.lengths.map((l, i) => `${l} (${p.multiples[i]}×)`).join(' | ')} |`,
      `| --- | ${p.lengths.map(() => '---:').join(' | ')} |`,
      ...p.models.map((m) => {
        const at = (l: number) => {
          const cs = m.cells.filter((c) => c.length === l);
          return cs.reduce((a, c) => a + c.accuracy, 0) / Math.max(1, cs.length);
        };
        return `| ${m.name} | ${p.lengths.map((l) => (100 * at(l)).toFixed(0)).join(' | ')} |`;
      }),
      '',
      '![passkey](results/passkey.svg)',
      '',
    );
  }
  if (R.stageMinutes) {
    md.push(
      `## Time per stage (${R.machine ?? 'this machine'})`,
      '',
      '| stage | minutes |',
      '| --- | ---: |',
      ...Object.entries(R.stageMinutes).map(([k, m]) => `| ${k} | ${m.toFixed(2)} |`),
      '',
    );
  }
  return md;
}
