/**
 * `npm run paper`: the paper's experiments at toy scale, from the shipped teacher and draft (made by
 * `npm run models`), written to docs/results.md with SVG plots in docs/results/.
 *
 *   Table 6    perplexity ratio to the teacher at 50 / 25 / 0 % attention, Mamba-1 and Mamba-2
 *              (12.5% of 4 layers rounds to 1 layer, the same model as 25%: the row is not repeated)
 *   Table 7/8  attention-weight initialisation vs random initialisation (Mamba-2, 50% and 0%), with the floor
 *              that bounds their gap: the teacher with those layers' attention silenced, untrained
 *   Table 9    replacing the attention layers by Mamba vs dropping those layers (50% and 25%)
 *   stepwise   50% → 25% → 0% in three stages vs one shot to 0%, the same total tokens
 *   SFT, DPO   stage 2 and stage 3 on the 50% Mamba-2 hybrid
 *   speculative  the trained 1-layer draft against the 50% and 0% Mamba-2 hybrids, K = 1..8, greedy
 *
 * Every training run is a `mil` command (run in this process through lib/cli/main.ts) whose line is printed
 * in the table; its folder under runs/paper/ holds training.json and loss.svg. A run whose folder exists
 * is reused, and an interrupted one resumes from its checkpoint, so the script can be stopped and started.
 * The commands are in scripts/commands.ts; the 50% Mamba-1/Mamba-2 and 0% Mamba-2 rows are the shipped
 * hybrids of models/ (made by the same kind of command), the rest go to runs/paper/.
 * usage: npm run paper [-- --fresh] [-- --eval-tokens N] [-- --page-only [--speculative]]
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SHIPPED_TOKENIZER, tokenStream } from '../lib/cli/train_cmds.js';
import { corpusPart } from '../lib/data/corpus.js';
import { BpeTokenizer } from '../lib/text/bpe.js';
import { loadModel } from '../lib/model/load.js';
import { silenceAttention } from '../lib/model/convert.js';
import { attentionLayersFor } from '../lib/model/config.js';
import type { HybridModel } from '../lib/model/hybrid.js';
import { evaluate, engineFor } from '../lib/train/job.js';
import { SimdGemm } from '../lib/simd/gemm.js';
import { getOps } from '../lib/ops.js';
import { ModelDrafter } from '../lib/decode/speculative.js';
import { compareWithPlain, type Comparison } from '../lib/decode/compare.js';
import { writeFile } from '../lib/io/writer.js';
import { barChartSvg, lineChartSvg, writeSvg } from '../lib/plot/svg.js';
import { DISTILL_TOKENS, PAPER_RUNS, runAll } from './commands.js';
import { lastOf, lookup } from '../lib/checked.js';

const { values } = parseArgs({
  options: {
    fresh: { type: 'boolean', default: false },
    'eval-tokens': { type: 'string', default: '32768' },
    'page-only': { type: 'boolean', default: false },
    // with --page-only: measure the speculative decoding rows again (the code changed, the models did not)
    speculative: { type: 'boolean', default: false },
  },
});
/** What a run's training.json says that the page uses (kept in results.json, so --page-only needs no runs/). */
interface RunInfo {
  command: string;
  seconds: number;
  history?: Array<{ step: number; ce: number; tokens: number }>;
  [dpoKey: string]: unknown;
}
// --page-only: rebuild docs/results.md from the measurements in docs/results/results.json (nothing trained; only
// what a model remade since was measured on is measured again, see `fingerprint`); a run's training.json on disk,
// where there is one, is read instead of the saved copy
const saved = values['page-only']
  ? (JSON.parse(readFileSync(join(import.meta.dirname, '..', 'docs', 'results', 'results.json'), 'utf8')) as {
      ppl: Record<string, { ppl: number; bitsPerByte: number }>;
      spec: Array<Comparison & { target: string }>;
      measureMinutes: number;
      trainingMinutes?: number;
      runs?: Record<string, RunInfo>;
      models?: Record<string, string>;
    })
  : undefined;
const ROOT = join(import.meta.dirname, '..');
const RUNS = join(ROOT, 'runs', 'paper');
const TEACHER = join(ROOT, 'models', 'teacher-small');
const DRAFT = join(ROOT, 'models', 'draft-small');
const DOCS = join(ROOT, 'docs');
const EVAL_TOKENS = Number(values['eval-tokens']);
if (values.fresh) rmSync(RUNS, { recursive: true, force: true });
for (const p of [TEACHER, DRAFT])
  if (!existsSync(join(p, 'config.json'))) throw new Error(`${p} is missing: run npm run models first`);

const t00 = performance.now();
const rel = (p: string) => p.slice(ROOT.length + 1);
const RUN_LIST = Object.entries(PAPER_RUNS).map(([name, m]) => ({ name, ...m }));
const TOKENS = String(DISTILL_TOKENS);

const minutes = saved ? {} : await runAll(ROOT, RUN_LIST, 2, (l) => console.error(`[paper] ${l}`));
const trainingMinutes = (performance.now() - t00) / 60000;
console.error(`[paper] training runs done in ${trainingMinutes.toFixed(1)} min`);
// the wall time of the invocation that made the training runs, kept for later invocations that reuse them
const TIMING = join(RUNS, 'timing.json');
if (Object.keys(minutes).length === RUN_LIST.length)
  writeFile(TIMING, JSON.stringify({ trainingMinutes, date: new Date().toISOString() }) + '\n');
const madeIn = existsSync(TIMING)
  ? (JSON.parse(readFileSync(TIMING, 'utf8')) as { trainingMinutes: number }).trainingMinutes
  : saved?.trainingMinutes;

// ------------------------------------------------------------------ evaluation on the test split
await SimdGemm.load();
const tok = BpeTokenizer.load(SHIPPED_TOKENIZER);
const test = tokenStream(corpusPart('sotu', 'test'), tok);
const ppl: Record<string, { ppl: number; bitsPerByte: number }> = saved?.ppl ?? {};
const evalCmd = (dir: string) => `mil eval --model ${dir} --split test --tokens ${EVAL_TOKENS}`;
const evalTest = (m: HybridModel) =>
  evaluate(m, test, { seqLen: 256, maxTokens: EVAL_TOKENS, engine: engineFor('simd'), tokenizer: tok });

/** A model folder's fingerprint (sha-256 of its configs and weights); undefined where the folder is not on disk. */
function fingerprint(dir: string): string | undefined {
  if (!existsSync(dir)) return undefined;
  const h = createHash('sha256');
  for (const f of readdirSync(dir)
    .filter((f) => f.endsWith('.safetensors') || f.endsWith('config.json'))
    .sort())
    h.update(f).update(readFileSync(join(dir, f)));
  return h.digest('hex');
}
// Every perplexity on the page, with the fingerprint of the model it was measured on. Without --page-only all
// are measured; with it, only those whose model on disk is not the one measured (remade since, or never
// measured); a model whose folder is not on disk (runs/ is not in the repo) keeps its saved figure.
// The floor of Tables 7/8 ('silenced-*'): the teacher with the converted layers' attention silenced (o_proj
// zeroed), MLPs and norms kept, nothing trained — what Mamba layers that learned only to output zero would give.
const fpTeacher = fingerprint(TEACHER)!;
const TEACHER_LAYERS = loadModel(TEACHER).llama.numLayers;
const measuredOn: Record<string, string> = { ...saved?.models };
const silenced = (fraction: number) => () =>
  silenceAttention(loadModel(TEACHER), attentionLayersFor(fraction, TEACHER_LAYERS));
const evaluations: Array<{ name: string; what: string; fp: string | undefined; model: () => HybridModel }> = [
  ...(
    [['teacher', rel(TEACHER)], ['draft', rel(DRAFT)], ...RUN_LIST.map((r) => [r.name, r.out])] as Array<
      [string, string]
    >
  ).map(([name, dir]) => ({
    name,
    what: evalCmd(dir),
    fp: fingerprint(join(ROOT, dir)),
    model: () => loadModel(join(ROOT, dir)),
  })),
  {
    name: 'silenced-50',
    what: "the teacher, attention silenced in the 50% hybrid's converted layers",
    fp: `silenced-50|${fpTeacher}`,
    model: silenced(0.5),
  },
  {
    name: 'silenced-0',
    what: 'the teacher, attention silenced in every layer',
    fp: `silenced-0|${fpTeacher}`,
    model: silenced(0),
  },
];
const remeasured = new Set<string>();
for (const e of evaluations) {
  if (saved && (e.fp === undefined || measuredOn[e.name] === e.fp)) continue;
  ppl[e.name] = evalTest(e.model());
  measuredOn[e.name] = e.fp!;
  remeasured.add(e.name);
  console.error(`[paper] ${e.what}: ppl ${lookup(ppl, e.name).ppl.toFixed(2)}`);
}
const T = ppl.teacher.ppl;
/** How many of the teacher's layers a fraction of attention converts. */
const converted = (fraction: number) => TEACHER_LAYERS - attentionLayersFor(fraction, TEACHER_LAYERS).length;
/** How much of what the attention added a run got back: ln(silenced / run) / ln(silenced / teacher). */
const recovered = (run: string, silenced: string) =>
  Math.log(lookup(ppl, silenced).ppl / lookup(ppl, run).ppl) / Math.log(lookup(ppl, silenced).ppl / T);
const info = (name: string): RunInfo => {
  const f = join(ROOT, lookup(PAPER_RUNS, name).out, 'training.json');
  if (existsSync(f)) return JSON.parse(readFileSync(f, 'utf8')) as RunInfo;
  const s = saved?.runs?.[name];
  if (!s)
    throw new Error(
      `${f} is missing and docs/results/results.json holds no copy: run npm run paper without --page-only`,
    );
  return s;
};

// ------------------------------------------------------------------ the random-init gap along the training
// Each step's cross-entropy is measured on a batch the model has not trained on yet (the forward before that
// step's update) and both runs see the same batches in the same order (same seed): a paired, progressive
// held-out estimate. ratio(t) = exp(CE_random(t) − CE_attention(t)) = the perplexity ratio after t·4·256 tokens.
const WINDOW = 5;
function initGap(attn: string, random: string): Array<{ step: number; tokens: number; ratio: number }> {
  const a = info(attn).history!;
  const r = info(random).history!;
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
const gaps = { '50%': initGap('mamba2-50', 'mamba2-50-random'), '0%': initGap('mamba2-0', 'mamba2-0-random') };
/** The curve in words: its peak, and the token range where it is at least 2×. */
function gapSummary(g: Array<{ tokens: number; ratio: number }>): string {
  const peak = g.reduce((a, b) => (b.ratio > a.ratio ? b : a));
  const above = g.filter((p) => p.ratio >= 2);
  const span = above.length ? `, ≥ 2× from ${above[0].tokens} to ${lastOf(above).tokens} tokens` : ', never 2×';
  return `peaks at ${peak.ratio.toFixed(2)}× after ${peak.tokens} tokens${span}`;
}

// ------------------------------------------------------------------ speculative decoding with the trained draft
const ops = await getOps('wasm-simd');
const draft = loadModel(DRAFT);
const prompts = corpusPart('sotu', 'test')
  .slice(0, 3)
  .map((d) => tok.encode(d.text).slice(0, 32));
const NEW = 64;
/** each prompt decoded this many times both ways (interleaved), the fastest of each kept: this VM's speed drifts by 1.5× over seconds */
const REPEATS = 5;
interface SpecRow extends Comparison {
  target: string;
}
// measured again with --speculative, and whenever the draft or a target was measured again above (remade)
const remeasure = !saved || values.speculative || ['draft', 'mamba2-50', 'mamba2-0'].some((n) => remeasured.has(n));
const spec: SpecRow[] = remeasure ? [] : saved.spec;
for (const target of remeasure ? ['mamba2-50', 'mamba2-0'] : []) {
  const m = loadModel(join(ROOT, lookup(PAPER_RUNS, target).out));
  for (let K = 1; K <= 8; K++) {
    const row = {
      target,
      ...(await compareWithPlain(ops, m, () => new ModelDrafter(ops, draft, K + 1, 'lazy'), prompts, {
        K,
        maxNewTokens: NEW,
        repeats: REPEATS,
      })),
    };
    spec.push(row);
    console.error(
      `[paper] speculative ${target} K=${K}: acceptance ${(100 * row.acceptance).toFixed(0)}%, ${row.tokensPerVerify.toFixed(2)} tokens/verify, ×${row.speedup.toFixed(2)}, identical ${row.identical}`,
    );
  }
}

// ------------------------------------------------------------------ the page
/** Each claim of PAPER.md's results list against what was measured here, decided by the numbers. */
function agreement(): string[] {
  const r = (n: string) => lookup(ppl, n).ppl;
  const grows = (v: string) => r(`${v}-50`) <= r(`${v}-25`) && r(`${v}-25`) <= r(`${v}-0`);
  const initRatio = [r('mamba2-50-random') / r('mamba2-50'), r('mamba2-0-random') / r('mamba2-0')];
  const b50 = best('mamba2-50');
  const b0 = best('mamba2-0');
  return [
    `- **Table 6, perplexity grows as attention shrinks**: ${grows('mamba1') && grows('mamba2') ? 'agrees' : 'does not hold for every variant'} (Mamba-1 ${(r('mamba1-50') / T).toFixed(3)} → ${(r('mamba1-0') / T).toFixed(3)}, Mamba-2 ${(r('mamba2-50') / T).toFixed(3)} → ${(r('mamba2-0') / T).toFixed(3)}). The size differs: at 0% attention the paper loses 1.66×, this 4-layer toy only ${(r('mamba2-0') / T).toFixed(2)}× — a small teacher on one domain leaves little for attention to hold that a state cannot (a 1-layer Llama trained on its logits, the speculative draft below, comes within ${(r('draft') / T).toFixed(2)}× of its perplexity). The 12.5% row is not run: 12.5% of 4 layers rounds to the same single layer as 25%. Mamba-1 comes out slightly ahead of Mamba-2 here at every fraction.`,
    `- **Tables 7/8, attention-weight initialisation matters**: the direction agrees (random init is worse at both fractions); the size does not, except briefly early in the training: the random / attention perplexity ratio at equal tokens ${gapSummary(gaps['50%'])} at 50% attention and ${gapSummary(gaps['0%'])} at 0%, then closes to ${initRatio.map((x) => `${x.toFixed(2)}×`).join(' and ')} on the test split at the full budget, against 3.5× and 5.4× in the paper. Here the Mamba layers are small enough to learn most of what they need from scratch in 100 steps with the MLPs frozen, and the teacher's attention holds little: silencing it in the converted layers costs only ${(r('silenced-50') / T).toFixed(2)}× (50%) and ${(r('silenced-0') / T).toFixed(2)}× (0%), which bounds the gap at the budget below 2× for any random init that trains at all (above). Against that floor the attention init gets back ${(100 * recovered('mamba2-50', 'silenced-50')).toFixed(0)}% of what the attention added at 50% where random init gets back ${(100 * recovered('mamba2-50-random', 'silenced-50')).toFixed(0)}% (0%: ${(100 * recovered('mamba2-0', 'silenced-0')).toFixed(0)}% against ${(100 * recovered('mamba2-0-random', 'silenced-0')).toFixed(0)}%). The issue asked for at least 2× in perplexity at equal tokens: it holds only in that early window at 50% (and never at 0%), not at the budget the tables use, and that budget was not changed to make it.`,
    `- **Table 9, replacing beats dropping**: agrees, by far (${(r('drop-50') / r('mamba2-50')).toFixed(2)}× and ${(r('drop-25') / r('mamba2-25')).toFixed(2)}× the perplexity when the layers are dropped, even though the dropped model trains all its parameters).`,
    `- **Stepwise beats one shot**: does not hold here at equal total tokens: ${r('mamba2-stepwise-0').toFixed(2)} stepwise against ${r('mamba2-0').toFixed(2)} one shot — each of the three stages gets a third of the tokens, and at this budget the last stage has too few.`,
    `- **SFT and DPO**: toy-sized stages that run and are checked (DPO's loss and gradient against closed forms and finite differences); on this corpus SFT does not lower the held-out perplexity (${r('mamba2-50').toFixed(2)} → ${r('mamba2-50-sft').toFixed(2)}) and DPO moves the implicit reward only a little towards the chosen continuations; the paper's gains are on chat benchmarks this toy has no equivalent of.`,
    `- **Speculative decoding**: output identical to plain greedy decoding in every row; best ×${b50.speedup.toFixed(2)} for the 50% hybrid (K = ${b50.K}) and ×${b0.speedup.toFixed(2)} for the pure Mamba-2 target (K = ${b0.K}), against 1.8–1.9× (hybrids) and 1.7–2.6× (pure Mamba) in the paper. The issue asked for ≥ 1.5× on the 50% hybrid: ${b50.speedup >= 1.5 ? "reached in this run (this VM's speed drifts by ±20% between rows, so the best K and its figure move by about ±0.1 from run to run)" : `not reached (×${(Math.floor(b50.speedup * 1000) / 1000).toFixed(3)}; this VM's speed drifts by ±20% between rows, so the best K and its figure move by about ±0.1 from run to run)`}. Where the time goes (50% hybrid, K = ${b50.K}): plain decoding takes ${perToken(b50).toFixed(2)} ms a token; a verify window of ${b50.K + 1} tokens takes ${(b50.verifyMs / b50.rounds).toFixed(2)} ms (${(b50.verifyMs / b50.rounds / perToken(b50)).toFixed(1)}× a token) and the draft ${(b50.draftMs / b50.rounds).toFixed(2)} ms per round (${(b50.draftMs / b50.rounds / perToken(b50)).toFixed(1)}× a target token for ${b50.K} draft tokens), so ${b50.tokensPerVerify.toFixed(2)} tokens per round cost ${((b50.verifyMs + b50.draftMs) / b50.rounds).toFixed(2)} ms. The window's matrix products are compute-bound on this CPU (~30–36 GFLOP/s a core with the wasm-simd backend's fused multiply-add build, ~21 without, \`bench/results/matmul.md\`) while one token's are bound by reading the weights; the rest is each layer's glue in JavaScript (the conv, copies, the lazy state's bookkeeping). History: on 2026-12-01 MultiStep and the cached attention's products became SIMD kernels and the Llama draft a fused step (best rows ×1.07 / ×1.19 → ×1.50 / ×1.50); then the fused multiply-add build, the SIMD SiLU and the state update as MultiStep (best rows ×1.62 / ×1.43, with acceptance 76% / 75% at K = 7 and 8, in a slower phase of this VM, where plain decoding took 1.40 ms a token); on 2026-12-02 the draft, until then trained on the text alone (\`mil train --config draft-small --data sotu\`, test ppl 99.93), was remade from the teacher's logits (→ this table): acceptance at K = 7 on the 50% hybrid 76% → 86%, and in a paired run (both drafts interleaved on the same prompts, twice) ×1.43–1.45 → ×1.53–1.54 at K = 7 on the 50% hybrid and ×1.50–1.58 → ×1.60–1.63 on pure Mamba-2. Earlier still ×1.44 at K = 3, before commit b437179 made a plain token ~1.35× cheaper while the verify window stayed as it was.`,
  ];
}

const total = saved ? trainingMinutes + saved.measureMinutes : (performance.now() - t00) / 60000;
const row = (name: string) => `${lookup(ppl, name).ppl.toFixed(2)} | ${(lookup(ppl, name).ppl / T).toFixed(3)}`;
const cmd = (name: string) => `\`${info(name).command}\``;
const svgDir = join(DOCS, 'results');
writeSvg(
  join(svgDir, 'table6.svg'),
  barChartSvg({
    title: 'Perplexity ratio to the teacher (test split)',
    yLabel: 'ppl / teacher ppl',
    groups: ['50%', '25%', '0%'],
    series: ['mamba1', 'mamba2'].map((v) => ({
      name: v,
      values: ['50', '25', '0'].map((a) => lookup(ppl, `${v}-${a}`).ppl / T),
    })),
  }),
);
writeSvg(
  join(svgDir, 'init-gap.svg'),
  lineChartSvg({
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
);
writeSvg(
  join(svgDir, 'speculative.svg'),
  lineChartSvg({
    title: 'Speculative decoding with the trained draft (wasm-simd, greedy)',
    xLabel: 'K (draft tokens per verify)',
    yLabel: 'speedup over plain decoding',
    series: ['mamba2-50', 'mamba2-0'].map((t) => ({
      name: t,
      points: spec.filter((s) => s.target === t).map((s) => [s.K, s.speedup] as [number, number]),
    })),
  }),
);
const draftCommand = (JSON.parse(readFileSync(join(DRAFT, 'training.json'), 'utf8')) as { command: string }).command;
const perToken = (c: Comparison) => c.plainDecodeMs / c.newTokens;
const best = (t: string) => spec.filter((s) => s.target === t).reduce((a, b) => (b.speedup > a.speedup ? b : a));
const dpo = info('mamba2-50-dpo');
const md = [
  '# The paper at toy scale',
  '',
  `Made by \`npm run paper\` (scripts/paper.ts) on this machine (2 cores): the ${RUN_LIST.length} training runs took ${madeIn !== undefined ? `${madeIn.toFixed(1)} min` : 'an unrecorded time'} (two at a time, one thread each) in the invocation that made them, and the evaluation and speculative measurements ${(total - trainingMinutes).toFixed(1)} min in this one (${Object.keys(minutes).length} runs made in it), so a fresh \`npm run paper\` takes about ${((madeIn ?? 0) + total - trainingMinutes).toFixed(0)} min. Teacher: \`models/teacher-small\` (d_model 128, 4 layers, 4 query / 2 key-value heads, vocabulary 2048), trained by the command in its training.json. Data: State of the Union addresses, split by speech; perplexities are on the test split's first ${EVAL_TOKENS} tokens (windows of 256), with \`${evalCmd('DIR')}\`. Every distillation run sees ${TOKENS} training tokens (100 steps of batch 4 × 256), KL weight 0.1, CE weight 1, AdamW (0.9, 0.98), lr 3e-3, cosine with 5% warmup, clip 0.1, only Mamba parameters training; runs go two at a time, one thread each.`,
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
  ...[1, 5, 10, 20, 30, 50, 75, 100].map(
    (st) =>
      `| ${gaps['50%'][st - 1].tokens} | ${gaps['50%'][st - 1].ratio.toFixed(2)}× | ${gaps['0%'][st - 1].ratio.toFixed(2)}× |`,
  ),
  '',
  `At 50% attention the ratio ${gapSummary(gaps['50%'])}; at 0% it ${gapSummary(gaps['0%'])}. At the full ${TOKENS} tokens the test-split ratios are those of the table above.`,
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
  `Draft: \`models/draft-small\`, a 1-layer Llama trained on the teacher's next-token distributions (KL only: \`${draftCommand}\`), test ppl ${ppl.draft.ppl.toFixed(2)} (${(ppl.draft.ppl / T).toFixed(2)}× the teacher's). Backend wasm-simd, greedy, ${prompts.length} prompts of 32 test tokens, ${NEW} new tokens each, each decoded ${REPEATS} times both ways (interleaved) and the fastest kept; speedup = plain decoding time / speculative decoding time after the prompt (the prefill, the same in both, left out; with it in the last column), draft cost included, same prompts, same run; "identical" = the speculative tokens equal plain greedy decoding's.`,
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
  ...RUN_LIST.map((r) => `| ${r.name} | ${cmd(r.name)} | ${(info(r.name).seconds / 60).toFixed(1)} |`),
  '',
];
writeFile(join(DOCS, 'results.md'), md.join('\n'));
writeFile(
  join(DOCS, 'results', 'results.json'),
  JSON.stringify(
    {
      measureMinutes: total - trainingMinutes,
      trainingMinutes: madeIn,
      ppl,
      // the fingerprint of the model each perplexity was measured on (see `fingerprint`)
      models: measuredOn,
      spec,
      tokens: Number(TOKENS),
      // what each run's training.json says that this page uses; histories only where the page plots them
      runs: Object.fromEntries(
        RUN_LIST.map((r) => {
          const { command, seconds, history, ...rest } = info(r.name);
          const dpoKeys = [
            'beta',
            'pairs',
            'promptLen',
            'contLen',
            'rejected',
            'heldOutPairs',
            'heldOutRewardAccuracy',
            'referencePreferenceAccuracy',
          ];
          const keep: RunInfo = {
            command,
            seconds,
            ...Object.fromEntries(dpoKeys.filter((k) => k in rest).map((k) => [k, rest[k]])),
          };
          if (r.name.startsWith('mamba2-50') || r.name.startsWith('mamba2-0'))
            keep.history = history?.map(({ step, ce, tokens }) => ({ step, ce, tokens }));
          return [r.name, keep];
        }),
      ),
    },
    null,
    1,
  ) + '\n',
);
console.error(`[paper] wrote docs/results.md in ${total.toFixed(1)} min`);
process.exit(0);
