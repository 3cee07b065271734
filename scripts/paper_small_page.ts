/**
 * docs/results/paper-small.md's measured sections (issue #25, `npm run paper -- --scale small`), each rendered from
 * committed records alone — the figures are never copied by hand. The distillation arms: the
 * records `scripts/device_train.sh arms` brings back from the GPU machine (records-*.tar.xz: per run NAME,
 * NAME/training.json and the evaluations NAME.test.json and NAME.brown.json of `mil eval --backend webgpu`) kept in
 * docs/results/paper-small/arms.json, and the page's section between the `arms` markers rendered from that file.
 *
 *   node --import tsx scripts/paper_small_page.ts [--records DIR…] [--check]
 * --records DIR: a folder where records-*.tar.xz were unpacked; its runs are added to arms.json (a run already there
 *   is replaced). Without it the section is rendered again from arms.json. --check: write nothing, exit 1 where the
 *   page's section is not the render of arms.json (spec/paper_page.spec.ts runs it).
 *
 * The section between the `speculative` markers is rendered the same way from paper-small/speculative-gpu.json and
 * speculative-cpu.json (bench/speculative_trained.ts's JSON with the machine and command added): per target and K,
 * the median speedup with its quartiles and range, acceptance, tokens per verify, and whether the output was plain
 * greedy decoding's.
 *
 * The tables: Table 6 (perplexity × the teacher's, by the fraction of attention kept) and Tables 7/8 (attention-
 * weight initialisation vs random: the ratio of their perplexities), each with the paper's column beside it
 * (docs/PAPER.md §3), on the corpus's whole test split and on the Brown corpus's (never trained on), windows of 512
 * tokens (the length the arms distil at).
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { writeFile } from '../lib/io/writer.js';
import { lineChartSvg, passkeyHeatMapSvg } from '../lib/plot/svg.js';
import type { SpeculativeRow } from '../bench/speculative_trained.js';

const ROOT = resolve(fileURLToPath(import.meta.url), '..', '..');
export const ARMS_JSON = join(ROOT, 'docs', 'results', 'paper-small', 'arms.json');
export const PAGE = join(ROOT, 'docs', 'results', 'paper-small.md');
/** Table 6 as a plot (perplexity × the teacher by attention kept), rendered from arms.json beside it */
export const TABLE6_SVG = join(ROOT, 'docs', 'results', 'paper-small', 'table6.svg');
export const PASSKEY_SVG = join(ROOT, 'docs', 'results', 'paper-small', 'passkey-arms.svg');
const BEGIN = '<!-- arms:begin (scripts/paper_small_page.ts renders this section from paper-small/arms.json) -->';
const END = '<!-- arms:end -->';
const SPEC_BEGIN =
  '<!-- speculative:begin (scripts/paper_small_page.ts renders this section from paper-small/speculative-*.json) -->';
const SPEC_END = '<!-- speculative:end -->';
/** bench/speculative_trained.ts's records, one file a machine (the GPU's, this CPU's), kept beside arms.json */
const SPEC_FILES = ['speculative-gpu.json', 'speculative-cpu.json'];

/** One evaluation (mil eval --out): the fields kept. */
interface Eval {
  ppl: number;
  bitsPerByte: number;
  nll: number;
  tokens: number;
  seqLen: number;
}

/** One run as arms.json keeps it. */
export interface Arm {
  name: string;
  /** the mil command as it ran on the GPU machine (its folders there); absent for the teacher (evaluated only) */
  command?: string;
  attention?: number;
  variant?: string;
  init?: string;
  seed?: number;
  tokens?: number;
  steps?: number;
  /** training wall time, s */
  seconds?: number;
  /** stage 1 trained the MLPs too (Table 8's other arm; mil distill --train-mlp) */
  trainMlp?: boolean;
  /** stages of a stepwise distillation (mil distill --stepwise: the last stage's record, each stage the same tokens) */
  stages?: number;
  /** a stepwise run whose every stage had the whole --tokens budget (mil distill --per-stage), not a share of it */
  perStage?: boolean;
  /** the model a stage-2/3 run (mil sft, mil dpo) started from */
  from?: string;
  /** mil dpo: the share of held-out preference pairs whose implicit reward prefers the chosen answer, and the
   * share the reference (the SFT model) gives the chosen answer the higher likelihood */
  dpo?: { heldOutRewardAccuracy: number; referencePreferenceAccuracy: number; heldOutPairs: number; pairs: number };
  test: Eval;
  brown?: Eval;
  /** the instruction set's held-out answers (mil eval --data instruct/sft.jsonl --split test) */
  instruct?: Eval;
  /** the passkey test (mil passkey --out NAME.passkey: its passkey.json): accuracy per (prompt length, depth) */
  passkey?: Passkey;
}

/** One model's passkey test as arms.json keeps it. */
interface Passkey {
  /** the training context the lengths are multiples of */
  context: number;
  trials: number;
  lengths: number[];
  depths: number[];
  cells: Array<{ length: number; depth: number; correct: number; trials: number; accuracy: number }>;
}

const pick = (e: Record<string, unknown>): Eval => {
  const out = {} as Record<string, number>;
  for (const k of ['ppl', 'bitsPerByte', 'nll', 'tokens', 'seqLen']) {
    if (typeof e[k] !== 'number') throw new TypeError(`an evaluation without a numeric '${k}'`);
    out[k] = e[k];
  }
  return out as unknown as Eval;
};
const readJson = (f: string) => JSON.parse(readFileSync(f, 'utf8')) as Record<string, unknown>;

/** The runs of an unpacked records folder: every NAME with a NAME.test.json. */
export function readRecords(dir: string): Arm[] {
  const arms: Arm[] = [];
  for (const f of readdirSync(dir)
    .filter((f) => f.endsWith('.test.json'))
    .sort()) {
    const name = f.slice(0, -'.test.json'.length);
    const arm: Arm = { name, test: pick(readJson(join(dir, f))) };
    if (existsSync(join(dir, `${name}.brown.json`))) arm.brown = pick(readJson(join(dir, `${name}.brown.json`)));
    if (existsSync(join(dir, `${name}.instruct.json`)))
      arm.instruct = pick(readJson(join(dir, `${name}.instruct.json`)));
    const pj = join(dir, `${name}.passkey`, 'passkey.json');
    if (existsSync(pj)) {
      const r = readJson(pj) as unknown as Omit<Passkey, 'cells'> & { models?: Array<{ cells: Passkey['cells'] }> };
      const cells = r.models?.[0]?.cells;
      if (!Array.isArray(cells) || !Array.isArray(r.lengths) || !Array.isArray(r.depths))
        throw new TypeError(`${pj}: not a mil passkey report (models[0].cells, lengths, depths)`);
      arm.passkey = { context: r.context, trials: r.trials, lengths: r.lengths, depths: r.depths, cells };
    }
    const tj = join(dir, name, 'training.json');
    if (existsSync(tj)) {
      const t = readJson(tj) as {
        command: string;
        attention?: number;
        variant?: string;
        init?: string;
        seed: number;
        seconds: number;
        stage?: number;
        trainMlp?: boolean;
        perStage?: boolean;
        from?: string;
        pairs?: number;
        heldOutPairs?: number;
        heldOutRewardAccuracy?: number;
        referencePreferenceAccuracy?: number;
        options?: { totalSteps: number; batch: number; seqLen: number; accumulate?: number };
      };
      const o = t.options;
      // a stepwise run's record is its last stage's; its stages saw the same tokens each (mil distill --stepwise)
      const stages = t.stage !== undefined && t.stage > 1 ? t.stage : undefined;
      // its wall time: every stage's (the earlier stages' records come back as NAME.stageK/training.json)
      let seconds = t.seconds;
      for (let k = 1; k < (stages ?? 1); k++) {
        const sj = join(dir, `${name}.stage${k}`, 'training.json');
        if (!existsSync(sj)) throw new TypeError(`${name}: a stepwise run of ${stages} stages without ${sj}`);
        seconds += (readJson(sj) as { seconds: number }).seconds;
      }
      Object.assign(arm, {
        command: t.command,
        attention: t.attention,
        variant: t.variant,
        init: t.init,
        seed: t.seed,
        ...(o
          ? {
              steps: o.totalSteps * (stages ?? 1),
              tokens: o.totalSteps * o.batch * o.seqLen * (o.accumulate ?? 1) * (stages ?? 1),
            }
          : {}),
        seconds: Math.round(seconds),
        ...(t.trainMlp ? { trainMlp: true } : {}),
        ...(stages ? { stages } : {}),
        ...(stages && t.perStage ? { perStage: true } : {}),
        ...(t.from !== undefined ? { from: t.from } : {}),
        ...(t.heldOutRewardAccuracy !== undefined
          ? {
              dpo: {
                heldOutRewardAccuracy: t.heldOutRewardAccuracy,
                referencePreferenceAccuracy: t.referencePreferenceAccuracy ?? NaN,
                heldOutPairs: t.heldOutPairs ?? 0,
                pairs: t.pairs ?? 0,
              },
            }
          : {}),
      });
    }
    arms.push(arm);
  }
  return arms;
}

const f2 = (x: number) => x.toFixed(2);
const f3 = (x: number) => x.toFixed(3);
const int = (x: number) => x.toLocaleString('en-US');

/** The paper's figures (docs/PAPER.md §3): Table 6's perplexity ratios, Tables 7/8's ppl with init vs random. */
const PAPER_T6: Record<number, string> = { 0.5: '1.03', 0.25: '1.09', 0.125: '— (6.25%: 1.22)', 0: '1.66' };
/** the same as points (attention kept in %, ratio), 6.25% where the paper has it */
const PAPER_T6_POINTS: Array<[number, number]> = [
  [50, 1.03],
  [25, 1.09],
  [6.25, 1.22],
  [0, 1.66],
];
const PAPER_T7: Record<number, [number, number]> = { 0.5: [2.09, 7.4], 0: [3.36, 18.2] };
/** Table 9 (docs/PAPER.md §3): LAMBADA perplexity with the layers dropped vs replaced by Mamba */
const PAPER_T9 = { drop: 151.98, replace: 6.2 };

/** A distillation arm (mil distill), not a run of mil train against the teacher (the draft). */
const isDistill = (a: Arm) => a.attention !== undefined; // the record of a conversion names its attention fraction
/** A one-shot conversion with frozen MLPs (the paper's recipe): the arms Tables 6 and 7 compare. */
/** How many times the budget most arms share a one-shot run had (the plan's mamba2-0-3x: 3), else 1. */
const times = (a: Arm, all: Arm[]) => {
  const least = Math.min(...all.filter(isDistill).map((x) => x.tokens ?? Infinity));
  return a.stages === undefined && a.tokens !== undefined && a.tokens >= 2 * least ? Math.round(a.tokens / least) : 1;
};
/** A one-shot conversion on the common budget: the arm the tables compare (a longer run is its own comparison). */
const isPlain = (a: Arm, all: Arm[]) =>
  isDistill(a) && !a.trainMlp && a.stages === undefined && a.variant !== 'drop' && times(a, all) === 1 && ownTeacher(a);
/** The run --teacher or --model names (the last folder of its path): 'teacher' for the tables' arms. */
const parentOf = (a: Arm) =>
  /--(?:teacher|model) (\S+)/
    .exec(a.command ?? '')?.[1]
    .split('/')
    .at(-1);
/** A distillation from the teacher itself — not from another model (the retrieval teacher's hybrids). */
const ownTeacher = (a: Arm) => !isDistill(a) || (parentOf(a) ?? 'teacher') === 'teacher';
/** What replaced the attention layers a run converted, as its row names it. */
const replacedBy = (a: Arm, all: Arm[]) =>
  a.variant === 'drop'
    ? 'nothing (dropped)'
    : `${a.variant === 'mamba1' ? 'Mamba-1' : 'Mamba-2'}${a.trainMlp ? ', MLPs trained' : ''}` +
      `${a.stages ? `, stepwise (${a.stages} stages${a.perStage ? ', each the whole budget' : ''})` : ''}` +
      `${times(a, all) > 1 ? `, one shot on ${times(a, all)}× the budget` : ''}`;
const VARIANTS = ['mamba2', 'mamba1', 'drop'];

/** The teacher first, then by attention kept (descending), mixer, attention init before random, seed, name. */
const byOrder = (arms: Arm[]): Arm[] =>
  [...arms].sort(
    (a, b) =>
      Number(b.name === 'teacher') - Number(a.name === 'teacher') ||
      (b.attention ?? 1) - (a.attention ?? 1) ||
      VARIANTS.indexOf(a.variant ?? '') - VARIANTS.indexOf(b.variant ?? '') ||
      Number(a.trainMlp ?? false) - Number(b.trainMlp ?? false) ||
      (a.stages ?? 1) - (b.stages ?? 1) ||
      (a.init ?? '').localeCompare(b.init ?? '') ||
      (a.seed ?? 0) - (b.seed ?? 0) ||
      a.name.localeCompare(b.name),
  );

/** The mean of xs and their range, as the tables' spread rows print it. */
const spread = (xs: number[]) =>
  `mean ${f3(xs.reduce((s, x) => s + x, 0) / xs.length)} (${f3(Math.min(...xs))}–${f3(Math.max(...xs))})`;

/**
 * Table 6 as a line chart: perplexity × the teacher's by the attention kept, Mamba-2 and Mamba-1 (seed 0,
 * attention init, frozen MLPs), on the test split and on Brown, with the paper's column.
 */
export function renderTable6Svg(given: Arm[]): string {
  const teacher = given.find((a) => a.name === 'teacher');
  if (!teacher) throw new TypeError("arms.json has no 'teacher' row: every ratio is to the teacher's perplexity");
  const series: Array<{ name: string; points: Array<[number, number]> }> = [];
  for (const [variant, label] of [
    ['mamba2', 'Mamba-2'],
    ['mamba1', 'Mamba-1'],
  ] as const) {
    const of = [0.5, 0.25, 0.125, 0]
      .map((k) =>
        given.find(
          (a) =>
            isPlain(a, given) && a.variant === variant && a.attention === k && a.init === 'attention' && !(a.seed ?? 0),
        ),
      )
      .filter((a): a is Arm => a !== undefined);
    const pts = (f: (a: Arm) => number | undefined): Array<[number, number]> =>
      of.flatMap((a) => {
        const v = f(a);
        return v === undefined ? [] : [[100 * (a.attention ?? 1), v] as [number, number]];
      });
    series.push({ name: `${label}, test`, points: pts((a) => a.test.ppl / teacher.test.ppl) });
    if (teacher.brown) {
      const tb = teacher.brown.ppl;
      series.push({ name: `${label}, Brown`, points: pts((a) => (a.brown ? a.brown.ppl / tb : undefined)) });
    }
  }
  series.push({ name: 'paper (Table 6)', points: PAPER_T6_POINTS });
  return lineChartSvg({
    title: 'Table 6: perplexity × the teacher by attention kept (seed 0, attention init, frozen MLPs)',
    xLabel: 'attention layers kept (%)',
    yLabel: 'perplexity ÷ the teacher',
    series: series.filter((x) => x.points.length > 0),
  });
}

/** The page's section from the runs alone (in byOrder's order, whatever the file's). */
export function renderArms(given: Arm[]): string {
  const arms = byOrder(given);
  const by = new Map(arms.map((a) => [a.name, a]));
  const teacher = by.get('teacher');
  if (!teacher) throw new TypeError("arms.json has no 'teacher' row: every ratio is to the teacher's perplexity");
  // the distillation arms (mil distill); a stage-2/3 run (mil sft, mil dpo: it names the model it started from) and
  // a run of mil train against the teacher (the draft) are listed apart
  const trained = arms.filter((a) => isDistill(a) && ownTeacher(a));
  const staged = arms.filter((a) => !isDistill(a) && a.from !== undefined);
  const others = arms.filter((a) => a.command !== undefined && !isDistill(a) && a.from === undefined);
  const tokens = [...new Set(trained.map((a) => a.tokens))];
  const pct = (a: number) => `${a * 100}%`;
  const L: string[] = [BEGIN, ''];
  L.push(
    `Evaluated on the GPU machine with \`mil eval --backend webgpu --len 512\`: the corpus's whole test split ` +
      `(${int(teacher.test.tokens)} tokens predicted) and the Brown corpus's test split by document ` +
      `(${teacher.brown ? int(teacher.brown.tokens) : '—'} tokens), windows of 512 tokens, the length the arms ` +
      `distil at. Every arm here ran ${tokens.map((t) => (t === undefined ? '?' : int(t))).join(' / ')} tokens ` +
      `of distillation (stage 1, seed ${[...new Set(trained.map((a) => a.seed))].join('/')}; a name's -sN is its seed N; ` +
      `a stepwise run's tokens are split evenly over its stages, unless each stage has the whole budget, \`--per-stage\`).`,
    '',
    '| run | attention kept | replaced by | init | seed | test ppl | × teacher | Brown ppl | Brown bits/byte | × teacher (Brown) | training |',
    '|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|',
  );
  const row = (a: Arm, kept: string, mixer: string, init: string) =>
    `| ${a.name} | ${kept} | ${mixer} | ${init} | ${a.seed ?? '—'} | ${f2(a.test.ppl)} | ` +
    `${f3(a.test.ppl / teacher.test.ppl)} | ${a.brown ? f2(a.brown.ppl) : '—'} | ` +
    `${a.brown ? f3(a.brown.bitsPerByte) : '—'} | ${a.brown && teacher.brown ? f3(a.brown.ppl / teacher.brown.ppl) : '—'} | ` +
    `${a.seconds === undefined ? '—' : `${a.steps ?? '?'} steps, ${a.seconds} s`} |`;
  L.push(row(teacher, 'all', '—', '—'));
  for (const a of trained)
    L.push(row(a, pct(a.attention ?? 1), replacedBy(a, trained), a.variant === 'drop' ? '—' : (a.init ?? '—')));
  if (others.length) {
    L.push(
      '',
      'Trained against the teacher with `mil train` (not a conversion; the draft of speculative decoding):',
      '',
      '| run | command | tokens | test ppl | × teacher | Brown ppl | Brown bits/byte | training |',
      '|---|---|---:|---:|---:|---:|---:|---:|',
    );
    for (const a of others)
      L.push(
        `| ${a.name} | \`${(a.command ?? '').replace(/ --(data|teacher|out|max-minutes|max-shard-size) \S+| --quiet/g, '')}\` | ${a.tokens === undefined ? '—' : int(a.tokens)} | ` +
          `${f2(a.test.ppl)} | ${f3(a.test.ppl / teacher.test.ppl)} | ${a.brown ? f2(a.brown.ppl) : '—'} | ` +
          `${a.brown ? f3(a.brown.bitsPerByte) : '—'} | ${a.seconds === undefined ? '—' : `${a.steps} steps, ${a.seconds} s`} |`,
      );
  }
  // a one-shot, frozen-MLP arm of that variant, fraction, init and seed (the tables' first column is seed 0's; every
  // seed's in the spread rows)
  const att = (attention: number, init: string, seed = 0, variant = 'mamba2') =>
    trained.find(
      (a) =>
        isPlain(a, trained) &&
        a.variant === variant &&
        a.attention === attention &&
        a.init === init &&
        (a.seed ?? 0) === seed,
    );
  const ratioCell = (x: Arm | undefined) => (x ? f3(x.test.ppl / teacher.test.ppl) : 'not run yet');
  L.push('', '**Table 6** (attention-initialised, frozen MLPs, seed 0: perplexity × the teacher, test split):', '');
  L.push('| attention kept | Mamba-2 | Mamba-1 | paper (Table 6) |', '|---|---:|---:|---:|');
  for (const k of [0.5, 0.25, 0.125, 0])
    L.push(
      `| ${pct(k)} | ${ratioCell(att(k, 'attention'))} | ${ratioCell(att(k, 'attention', 0, 'mamba1'))} | ${PAPER_T6[k]} |`,
    );
  L.push('', '![Table 6: perplexity × the teacher by attention kept](paper-small/table6.svg)');
  // a comparison of two arms by seed at each fraction: `first` and `second` pick the arms, the ratio is second ÷ first
  const pairs = (
    title: string,
    cols: [string, string],
    fractions: number[],
    first: (k: number, seed: number) => Arm | undefined,
    second: (k: number, seed: number) => Arm | undefined,
    paper: (k: number) => [string, string],
  ) => {
    L.push('', title, '');
    L.push(
      `| attention kept | seed | ${cols[0]} | ${cols[1]} | ${cols[1]} ÷ ${cols[0]} | paper (${cols[0]} / ${cols[1]}) | paper ratio |`,
      '|---|---:|---:|---:|---:|---:|---:|',
    );
    for (const k of fractions) {
      const [pa, pr] = paper(k);
      // seed 0, and every seed whose second arm ran (a first arm alone at another seed is no comparison)
      const seeds = [
        ...new Set([
          0,
          ...trained.filter((a) => a.attention === k && second(k, a.seed ?? 0) === a).map((a) => a.seed ?? 0),
        ]),
      ].sort();
      const ratios: number[] = [];
      for (const seed of seeds) {
        const a = first(k, seed);
        const r = second(k, seed);
        if (a && r) ratios.push(r.test.ppl / a.test.ppl);
        L.push(
          `| ${pct(k)} | ${seed} | ${a ? f2(a.test.ppl) : '—'} | ${r ? f2(r.test.ppl) : '—'} | ` +
            `${a && r ? f3(r.test.ppl / a.test.ppl) : 'not run yet'} | ${pa} / ${pr} | ${pa !== '—' && pr !== '—' ? f2(Number(pr) / Number(pa)) : '—'} |`,
        );
      }
      if (ratios.length > 1) L.push(`| ${pct(k)} | ${ratios.length} seeds | | | ${spread(ratios)} | | |`);
    }
  };
  const num2 = (x: number) => String(x);
  pairs(
    '**Tables 7/8** (Mamba-2, frozen MLPs: perplexity with random init ÷ with attention init, test split; ' +
      'each seed is one pair of arms distilled with that seed):',
    ['attention init', 'random init'],
    [0.5, 0],
    (k, seed) => att(k, 'attention', seed),
    (k, seed) => att(k, 'random', seed),
    (k) => [num2(PAPER_T7[k][0]), num2(PAPER_T7[k][1])],
  );
  const find = (pred: (a: Arm) => boolean) => (k: number, seed: number) =>
    trained.find((a) => pred(a) && a.attention === k && (a.seed ?? 0) === seed);
  pairs(
    "**Table 8** (Mamba-2, attention init: stage 1 with the MLPs frozen, the paper's recipe, and with them trained " +
      'too, `--train-mlp`; trained ÷ frozen, test split; docs/PAPER.md has no figure for the trained arm):',
    ['frozen MLPs', 'trained MLPs'],
    [0.5, 0],
    (k, seed) => att(k, 'attention', seed),
    find((a) => a.variant === 'mamba2' && a.trainMlp === true && a.stages === undefined),
    () => ['—', '—'],
  );
  pairs(
    `**Table 9** (the attention layers replaced by Mamba-2 or dropped, \`--drop-instead\`: the dropped model's ` +
      `remaining layers all train on the same tokens; dropped ÷ replaced, test split; the paper's figures are ` +
      `LAMBADA perplexities at 50%):`,
    ['replaced', 'dropped'],
    [0.5, 0.25],
    (k, seed) => att(k, 'attention', seed),
    find((a) => a.variant === 'drop'),
    (k) => (k === 0.5 ? [num2(PAPER_T9.replace), num2(PAPER_T9.drop)] : ['—', '—']),
  );
  pairs(
    '**Stepwise vs one-shot** (Mamba-2 to 0% attention, attention init, the same tokens: stepwise 50% → 25% → 0%, ' +
      'each stage a third of them, ÷ one shot, test split; the paper finds stepwise better, a ratio below 1):',
    ['one-shot', 'stepwise'],
    [0],
    (k, seed) => att(k, 'attention', seed),
    find((a) => a.variant === 'mamba2' && a.stages !== undefined && !a.trainMlp && !a.perStage),
    () => ['—', '—'],
  );
  if (trained.some((a) => a.perStage))
    pairs(
      "**Stepwise on the paper's schedule vs one-shot** (as above, but each stage the one-shot arm's whole budget, " +
        '`--per-stage`: the stepwise run trains on as many tokens as it has stages, ÷ one shot, test split):',
      ['one-shot', 'stepwise, each stage the whole budget'],
      [0],
      (k, seed) => att(k, 'attention', seed),
      find((a) => a.variant === 'mamba2' && a.stages !== undefined && !a.trainMlp && a.perStage === true),
      () => ['—', '—'],
    );
  const stepwiseFull = trained.find((a) => a.perStage && a.stages !== undefined && a.variant === 'mamba2');
  if (stepwiseFull?.stages !== undefined) {
    const n = stepwiseFull.stages;
    pairs(
      `**Stepwise on the paper's schedule vs one-shot on as many tokens** (the one-shot arm on ${n}× the budget, ` +
        'the tokens the stepwise run saw in all: whether stepwise is better or only longer; ÷ one shot, test split):',
      [`one-shot, ${n}× the budget`, 'stepwise, each stage the whole budget'],
      [0],
      find(
        (a) =>
          isDistill(a) && a.variant === 'mamba2' && !a.trainMlp && times(a, trained) === n && a.init === 'attention',
      ),
      find((a) => a.variant === 'mamba2' && a.stages !== undefined && !a.trainMlp && a.perStage === true),
      () => ['—', '—'],
    );
  }
  if (staged.length) {
    // stage 2 (SFT) and 3 (DPO): each next to the run it started from
    const fromName = (a: Arm) => (a.from ?? '').split('/').at(-1) ?? '';
    const names = new Set(staged.map((a) => a.name));
    // the runs they started from that are no stage-2/3 run themselves (the distilled model), then each stage in
    // the order of its chain (SFT from the base, DPO from the SFT model)
    const bases = [...new Set(staged.map(fromName))]
      .filter((n) => !names.has(n))
      .map((n) => by.get(n))
      .filter((a): a is Arm => a !== undefined);
    const depth = (a: Arm): number => {
      const up = by.get(fromName(a));
      return up && names.has(up.name) ? 1 + depth(up) : 0;
    };
    staged.sort((a, b) => depth(a) - depth(b) || a.name.localeCompare(b.name));
    L.push(
      '',
      "**Stages 2 and 3** (SFT on the instruction set's training split, then DPO on its preference pairs; " +
        '"instruction ppl": the instruction set\'s held-out answers, `mil eval --data instruct/sft.jsonl --split test --len 256`; ' +
        "reward accuracy: the held-out pairs whose DPO implicit reward prefers the chosen answer, the SFT reference's own preference beside it):",
      '',
      '| run | from | test ppl | × teacher | Brown ppl | instruction ppl | DPO reward accuracy (reference) | training |',
      '|---|---|---:|---:|---:|---:|---:|---:|',
    );
    for (const a of [...bases, ...staged])
      L.push(
        `| ${a.name} | ${a.from ? a.from.split('/').at(-1) : '—'} | ${f2(a.test.ppl)} | ${f3(a.test.ppl / teacher.test.ppl)} | ` +
          `${a.brown ? f2(a.brown.ppl) : '—'} | ${a.instruct ? f2(a.instruct.ppl) : '—'} | ` +
          `${a.dpo ? `${(100 * a.dpo.heldOutRewardAccuracy).toFixed(1)}% (${(100 * a.dpo.referencePreferenceAccuracy).toFixed(1)}%) of ${a.dpo.heldOutPairs}` : '—'} | ` +
          `${a.seconds === undefined ? '—' : `${a.seconds} s`} |`,
      );
  }
  const tested = arms.filter((a) => a.passkey);
  if (tested.length) {
    // the passkey test: the teacher, the retrieval teacher and the hybrids distilled from it (their own rows here,
    // never the tables' arms above), each length's accuracy over every depth; the depths apart in passkey-arms.svg
    const lengths = [...new Set(tested.flatMap((a) => a.passkey?.lengths ?? []))].sort((x, y) => x - y);
    const ctx = tested[0].passkey?.context ?? 0;
    L.push(
      '',
      `**Long context: the passkey test** (\`mil passkey --backend webgpu\`: a number hidden in filler from the ` +
        `corpus's test split at ${tested[0].passkey?.depths.length ?? 0} depths, asked for at ${lengths.map((l) => `${l / ctx}×`).join(', ')} ` +
        `the training context of ${int(ctx)} tokens; accuracy over every depth, ${tested[0].passkey?.trials ?? 0} trials a cell; ` +
        'the retrieval runs: the teacher fine-tuned on the retrieval curriculum, docs/data.md, and the hybrids distilled ' +
        'from it on the same documents; each depth in [passkey-arms.svg](paper-small/passkey-arms.svg)):',
      '',
      `| run | from | test ppl | Brown ppl | ${lengths.map((l) => `${int(l)} (${l / ctx}×)`).join(' | ')} |`,
      `|---|---|---:|---:|${lengths.map(() => '---:').join('|')}|`,
    );
    for (const a of tested) {
      const at = (l: number) => {
        const cs = (a.passkey?.cells ?? []).filter((c) => c.length === l);
        const n = cs.reduce((x, c) => x + c.trials, 0);
        return n ? `${Math.round((100 * cs.reduce((x, c) => x + c.correct, 0)) / n)}% of ${n}` : '—';
      };
      L.push(
        `| ${a.name} | ${parentOf(a) ?? '—'} | ${f2(a.test.ppl)} | ${a.brown ? f2(a.brown.ppl) : '—'} | ` +
          `${lengths.map(at).join(' | ')} |`,
      );
    }
  }
  L.push('', END);
  return L.join('\n');
}

/** The passkey heat-map of every arm with a passkey test (all on the first one's grid), or undefined. */
export function renderPasskeySvg(arms: Arm[]): string | undefined {
  const tested = arms.filter((a) => a.passkey);
  const p = tested[0]?.passkey;
  if (!p) return undefined;
  return passkeyHeatMapSvg({
    context: p.context,
    trials: p.trials,
    multiples: p.lengths.map((l) => l / p.context),
    lengths: p.lengths,
    depths: p.depths,
    models: tested.map((a) => ({ name: a.name, cells: a.passkey?.cells ?? [] })),
  });
}

/** The page with its section replaced by `section` (the markers must be there once each). */
export function withSection(page: string, section: string): string {
  return withMarked(page, BEGIN, END, section);
}

/** A speculative-*.json: the machine and command it ran with, and its rows. */
export interface SpecRecord {
  machine: string;
  command: string;
  /** what the command line does not say (prompts, time, memory) */
  note: string;
  dates: string[];
  rows: SpeculativeRow[];
}

/** The speculative-decoding section from its records alone: per machine, target and K the median and spread. */
export function renderSpeculative(records: SpecRecord[]): string {
  const L: string[] = [SPEC_BEGIN, ''];
  for (const r of records) {
    L.push(
      `**${r.machine}** (${r.dates
        .map((d) => d.slice(0, 10))
        .filter((d, i, a) => a.indexOf(d) === i)
        .join(', ')}): ` + `\`${r.command}\` — ${r.note}.`,
      '',
      '| target | K | speedup: median [q1, q3] (min–max) | samples | acceptance | tokens per verify | ms/token plain → speculative | output = plain greedy |',
      '|---|---:|---|---:|---:|---:|---|---|',
    );
    for (const x of r.rows)
      L.push(
        `| ${x.target} | ${x.K} | ×${f2(x.median)} [${f2(x.q1)}, ${f2(x.q3)}] (${f2(x.min)}–${f2(x.max)}) | ${x.samples} | ` +
          `${Math.round(x.acceptance * 100)}% | ${f2(x.tokensPerVerify)} | ${f3(x.plainMsPerToken)} → ${f3(x.specMsPerToken)} | ` +
          `${x.identical ? 'yes' : '**no**'} |`,
      );
    L.push('');
  }
  L.push(SPEC_END);
  return L.join('\n');
}

/** The page with the section between `begin` and `end` replaced by `section` (the markers there once each). */
function withMarked(page: string, begin: string, end: string, section: string): string {
  const a = page.indexOf(begin);
  const b = page.indexOf(end);
  if (a < 0 || b < a) throw new TypeError(`${PAGE}: the markers ${begin} … ${end} are missing`);
  return page.slice(0, a) + section + page.slice(b + end.length);
}

/** The section as the page has it now (the markers included). */
export function sectionOf(page: string): string {
  return page.slice(page.indexOf(BEGIN), page.indexOf(END) + END.length);
}

function main(argv: string[]): number {
  const { values } = parseArgs({
    args: argv,
    options: { records: { type: 'string', multiple: true }, check: { type: 'boolean', default: false } },
  });
  let arms: Arm[] = existsSync(ARMS_JSON) ? (JSON.parse(readFileSync(ARMS_JSON, 'utf8')) as { arms: Arm[] }).arms : [];
  for (const dir of values.records ?? []) {
    const add = readRecords(dir);
    arms = [...arms.filter((a) => !add.some((b) => b.name === a.name)), ...add];
  }
  arms = byOrder(arms);
  const page = readFileSync(PAGE, 'utf8');
  const specs = SPEC_FILES.map((f) => join(ROOT, 'docs', 'results', 'paper-small', f))
    .filter((f) => existsSync(f))
    .map((f) => JSON.parse(readFileSync(f, 'utf8')) as SpecRecord);
  const next = withMarked(withSection(page, renderArms(arms)), SPEC_BEGIN, SPEC_END, renderSpeculative(specs));
  const svg = renderTable6Svg(arms) + '\n';
  const pk = renderPasskeySvg(arms);
  const same = (f: string, text: string | undefined) =>
    text === undefined ? !existsSync(f) : existsSync(f) && readFileSync(f, 'utf8') === text + '\n';
  if (values.check) {
    if (next === page && existsSync(TABLE6_SVG) && readFileSync(TABLE6_SVG, 'utf8') === svg && same(PASSKEY_SVG, pk))
      return 0;
    console.error(
      `${PAGE}, ${TABLE6_SVG} or ${PASSKEY_SVG} is not the render of ${ARMS_JSON}: run scripts/paper_small_page.ts`,
    );
    return 1;
  }
  if (values.records) writeFile(ARMS_JSON, JSON.stringify({ arms }, null, 1) + '\n');
  if (next !== page) writeFile(PAGE, next);
  if (!existsSync(TABLE6_SVG) || readFileSync(TABLE6_SVG, 'utf8') !== svg) writeFile(TABLE6_SVG, svg);
  if (pk !== undefined && !same(PASSKEY_SVG, pk)) writeFile(PASSKEY_SVG, pk + '\n');
  return 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url))
  process.exitCode = main(process.argv.slice(2));
