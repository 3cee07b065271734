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
import type { SpeculativeRow } from '../bench/speculative_trained.js';

const ROOT = resolve(fileURLToPath(import.meta.url), '..', '..');
export const ARMS_JSON = join(ROOT, 'docs', 'results', 'paper-small', 'arms.json');
export const PAGE = join(ROOT, 'docs', 'results', 'paper-small.md');
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
  test: Eval;
  brown?: Eval;
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
    const tj = join(dir, name, 'training.json');
    if (existsSync(tj)) {
      const t = readJson(tj) as {
        command: string;
        attention?: number;
        variant?: string;
        init?: string;
        seed: number;
        seconds: number;
        options: { totalSteps: number; batch: number; seqLen: number; accumulate?: number };
      };
      const o = t.options;
      Object.assign(arm, {
        command: t.command,
        attention: t.attention,
        variant: t.variant,
        init: t.init,
        seed: t.seed,
        steps: o.totalSteps,
        tokens: o.totalSteps * o.batch * o.seqLen * (o.accumulate ?? 1),
        seconds: t.seconds,
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
const PAPER_T7: Record<number, [number, number]> = { 0.5: [2.09, 7.4], 0: [3.36, 18.2] };

/** A distillation arm (mil distill), not a run of mil train against the teacher (the draft). */
const isDistill = (a: Arm) => a.attention !== undefined; // the record of a conversion names its attention fraction

/** The teacher first, then by attention kept (descending), attention init before random, seed, name. */
const byOrder = (arms: Arm[]): Arm[] =>
  [...arms].sort(
    (a, b) =>
      Number(b.name === 'teacher') - Number(a.name === 'teacher') ||
      (b.attention ?? 1) - (a.attention ?? 1) ||
      (a.init ?? '').localeCompare(b.init ?? '') ||
      (a.seed ?? 0) - (b.seed ?? 0) ||
      a.name.localeCompare(b.name),
  );

/** The page's section from the runs alone (in byOrder's order, whatever the file's). */
export function renderArms(given: Arm[]): string {
  const arms = byOrder(given);
  const by = new Map(arms.map((a) => [a.name, a]));
  const teacher = by.get('teacher');
  if (!teacher) throw new TypeError("arms.json has no 'teacher' row: every ratio is to the teacher's perplexity");
  // the distillation arms (mil distill); a run of mil train against the teacher (the draft) is listed apart
  const trained = arms.filter((a) => isDistill(a));
  const others = arms.filter((a) => a.command !== undefined && !isDistill(a));
  const tokens = [...new Set(trained.map((a) => a.tokens))];
  const pct = (a: number) => `${a * 100}%`;
  const L: string[] = [BEGIN, ''];
  L.push(
    `Evaluated on the GPU machine with \`mil eval --backend webgpu --len 512\`: the corpus's whole test split ` +
      `(${int(teacher.test.tokens)} tokens predicted) and the Brown corpus's test split by document ` +
      `(${teacher.brown ? int(teacher.brown.tokens) : '—'} tokens), windows of 512 tokens, the length the arms ` +
      `distil at. Every arm here ran ${tokens.map((t) => (t === undefined ? '?' : int(t))).join(' / ')} tokens ` +
      `of distillation (stage 1, seed ${[...new Set(trained.map((a) => a.seed))].join('/')}; a name's -sN is its seed N).`,
    '',
    '| run | attention kept | init | seed | test ppl | × teacher | Brown ppl | Brown bits/byte | × teacher (Brown) | training |',
    '|---|---:|---|---:|---:|---:|---:|---:|---:|---:|',
  );
  const row = (a: Arm, kept: string) =>
    `| ${a.name} | ${kept} | ${a.init ?? '—'} | ${a.seed ?? '—'} | ${f2(a.test.ppl)} | ` +
    `${f3(a.test.ppl / teacher.test.ppl)} | ${a.brown ? f2(a.brown.ppl) : '—'} | ` +
    `${a.brown ? f3(a.brown.bitsPerByte) : '—'} | ${a.brown && teacher.brown ? f3(a.brown.ppl / teacher.brown.ppl) : '—'} | ` +
    `${a.seconds === undefined ? '—' : `${a.steps} steps, ${a.seconds} s`} |`;
  for (const a of [teacher, ...trained]) L.push(row(a, a.attention === undefined ? 'all' : pct(a.attention)));
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
  // seed 0's arm of a comparison (the tables' first column); every seed's in the spread below
  const att = (attention: number, init: string, seed = 0) =>
    trained.find(
      (a) => a.variant === 'mamba2' && a.attention === attention && a.init === init && (a.seed ?? 0) === seed,
    );
  L.push('', '**Table 6** (Mamba-2, attention-initialised, seed 0, perplexity × the teacher, test split):', '');
  L.push('| attention kept | this project | paper (Table 6) |', '|---|---:|---:|');
  for (const k of [0.5, 0.25, 0.125, 0]) {
    const a = att(k, 'attention');
    L.push(`| ${pct(k)} | ${a ? f3(a.test.ppl / teacher.test.ppl) : 'not run yet'} | ${PAPER_T6[k]} |`);
  }
  L.push(
    '',
    '**Tables 7/8** (Mamba-2, frozen MLPs: perplexity with random init ÷ with attention init, test split; ' +
      'each seed is one pair of arms distilled with that seed):',
    '',
  );
  L.push(
    '| attention kept | seed | attention init | random init | random ÷ attention | paper (init / random) | paper ratio |',
    '|---|---:|---:|---:|---:|---:|---:|',
  );
  for (const k of [0.5, 0]) {
    const [pi, pr] = PAPER_T7[k];
    const seeds = [
      ...new Set(trained.filter((a) => a.attention === k && a.variant === 'mamba2').map((a) => a.seed ?? 0)),
    ].sort();
    const ratios: number[] = [];
    for (const seed of seeds.length ? seeds : [0]) {
      const a = att(k, 'attention', seed);
      const r = att(k, 'random', seed);
      if (a && r) ratios.push(r.test.ppl / a.test.ppl);
      L.push(
        `| ${pct(k)} | ${seed} | ${a ? f2(a.test.ppl) : '—'} | ${r ? f2(r.test.ppl) : '—'} | ` +
          `${a && r ? f3(r.test.ppl / a.test.ppl) : 'not run yet'} | ${pi} / ${pr} | ${f2(pr / pi)} |`,
      );
    }
    if (ratios.length > 1)
      L.push(
        `| ${pct(k)} | ${ratios.length} seeds | | | mean ${f3(ratios.reduce((s, x) => s + x, 0) / ratios.length)} ` +
          `(${f3(Math.min(...ratios))}–${f3(Math.max(...ratios))}) | | |`,
      );
  }
  L.push('', END);
  return L.join('\n');
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
  if (values.check) {
    if (next === page) return 0;
    console.error(`${PAGE}: its arms section is not the render of ${ARMS_JSON}: run scripts/paper_small_page.ts`);
    return 1;
  }
  if (values.records) writeFile(ARMS_JSON, JSON.stringify({ arms }, null, 1) + '\n');
  if (next !== page) writeFile(PAGE, next);
  return 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url))
  process.exitCode = main(process.argv.slice(2));
