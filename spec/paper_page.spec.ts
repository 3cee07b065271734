/**
 * `npm run paper`'s page and options (scripts/paper.ts, scripts/paper_page.ts); its writes under a full disk, kills
 * and a second run are swept in spec/sweep.spec.ts.
 *
 * The shipped docs/results.md is what renderPage makes of the shipped docs/results/results.json alone, and ends with
 * that file's sha-256 (computed here); the plots in docs/results/ are renderSvgs' of it. A bad option exits 2 before
 * any work, naming the option, what it accepts and what it got.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { present } from '../lib/checked.js';
import { EXIT } from '../lib/cli/exit.js';
import { paper } from '../scripts/paper.js';
import { recordedSha, renderPage, renderSvgs, type PaperResults } from '../scripts/paper_page.js';
import {
  ARMS_JSON,
  PAGE,
  readRecords,
  renderArms,
  renderPasskeySvg,
  renderSpeculative,
  renderTable6Svg,
  sectionOf,
  TABLE6_SVG,
  type SpecRecord,
  withSection,
  type Arm,
} from '../scripts/paper_small_page.js';
import { tmpFolder } from './tmp.js';

const DOCS = join(import.meta.dirname, '..', 'docs');

describe('npm run paper: the page and its options', () => {
  it('docs/results.md and its plots are rendered from docs/results/results.json alone, and the page carries its sha-256', () => {
    const json = readFileSync(join(DOCS, 'results', 'results.json'));
    const sha = createHash('sha256').update(json).digest('hex');
    const page = readFileSync(join(DOCS, 'results.md'), 'utf8');
    expect(recordedSha(page)).toBe(sha);
    expect(page.trimEnd().split('\n').at(-1)).toContain(sha);
    const R = JSON.parse(json.toString('utf8')) as PaperResults;
    expect(renderPage(R, sha)).toBe(page);
    for (const [name, svg] of Object.entries(renderSvgs(R)))
      expect(svg, name).toBe(readFileSync(join(DOCS, 'results', name), 'utf8'));
  });

  it('a bad option exits 2 before any work, naming it, what it accepts and what it got', async () => {
    const out = tmpFolder('paperopts');
    for (const [args, expected] of [
      [['--scale', 'huge'], /--scale.*one of tiny, toy, small.*huge/],
      [['--scale', 'tiny', '--eval-tokens', 'lots'], /--eval-tokens.*integer.*lots/],
      [['--scale', 'tiny', '--steps', '3'], /--steps/],
    ] as const) {
      let log = '';
      const code = await paper([...args, '--out', out], (l) => void (log += l + '\n'));
      expect(code, log).toBe(EXIT.usage);
      expect(log).toMatch(expected);
      expect(readdirSync(out), 'nothing written').toEqual([]);
    }
    expect(
      readdirSync(dirname(out)).filter((e) => e.startsWith(`.${basename(out)}.`)),
      'no lock',
    ).toEqual([]);
  });

  it('--scale small --dry-run prints every stage with its command and backend, writes nothing (DPO on the GPU too); without it, a --data that is no built corpus is refused (exit 2)', async () => {
    const out = join(tmpFolder('papersmall'), 'o');
    const lines: string[] = [];
    const spy = vi.spyOn(console, 'log').mockImplementation((l: string) => void lines.push(l));
    try {
      expect(await paper(['--scale', 'small', '--out', out, '--dry-run'], () => {})).toBe(EXIT.ok);
    } finally {
      spy.mockRestore();
    }
    const plan = lines.join('\n');
    expect(plan).toMatch(/teacher +\[webgpu\] mil train --config teacher-20m .*--backend webgpu/);
    expect(plan).toMatch(/mamba2-12 +\[webgpu\] mil distill .*--backend webgpu/);
    expect(plan).toMatch(/mamba2-0-mlp-s2 +\[webgpu\] mil distill .*--attention 0 --train-mlp .*--backend webgpu/); // Table 8
    expect(plan).toMatch(/mamba2-50-sft +\[webgpu\] mil sft .*--backend webgpu/);
    expect(plan).toMatch(/mamba2-50-dpo +\[webgpu\] mil dpo .*--backend webgpu/);
    expect(plan).toMatch(/drop-50 +\[webgpu\] mil distill .*--drop-instead .*--backend webgpu/);
    expect(plan).toMatch(/mamba2-stepwise-0 +\[webgpu\] mil distill .*--stepwise 0\.5,0\.25,0 .*--backend webgpu/);
    expect(plan).toMatch(/mamba2-50-random-s2 /); // the seeded comparisons
    expect(plan).toMatch(/floor +mil eval .*--silence 0\.5,0\.25,0\.125,0/);
    expect(plan).toMatch(/passkey +mil passkey .*--multiples 1,2,4,8/);
    expect(existsSync(out)).toBe(false);
    let log = '';
    const noCorpus = join(tmpFolder('papersmall'), 'no-corpus');
    expect(await paper(['--scale', 'small', '--data', noCorpus, '--out', out], (l) => void (log += l))).toBe(
      EXIT.usage,
    );
    expect(log).toMatch(/--data .*no-corpus: not a corpus made by mil data build/);
    expect(existsSync(out)).toBe(false);
  });

  it('runs of another scale in the runs folder are refused (exit 2), naming both scales, before any training', async () => {
    const out = tmpFolder('paperscale');
    mkdirSync(join(out, 'runs'));
    writeFileSync(join(out, 'runs', 'scale.json'), JSON.stringify({ scale: 'small', teacher: '--config teacher-20m' }));
    let log = '';
    expect(await paper(['--scale', 'tiny', '--out', out], (l) => void (log += l))).toBe(EXIT.usage);
    expect(log).toMatch(
      /holds the runs of --scale small \(teacher: --config teacher-20m\), not of --scale tiny \(teacher: --config tiny\)/,
    );
    expect(readdirSync(join(out, 'runs'))).toEqual(['scale.json']);
  });
});

// the small scale's first arms (issue #25): docs/results/paper-small.md's section rendered from arms.json alone
describe('docs/results/paper-small.md: the distillation arms (scripts/paper_small_page.ts)', () => {
  it('the section is the render of paper-small/arms.json, with its ratios recomputed here', () => {
    const page = readFileSync(PAGE, 'utf8');
    const { arms } = JSON.parse(readFileSync(ARMS_JSON, 'utf8')) as { arms: Arm[] };
    expect(withSection(page, renderArms(arms))).toBe(page);
    const section = sectionOf(page);
    const t = present(
      arms.find((a) => a.name === 'teacher'),
      'the teacher row',
    );
    for (const a of arms) {
      // the row's ratio to the teacher, and Table 7's random ÷ attention where both arms ran
      expect(section, a.name).toContain(`| ${a.name} |`);
      expect(section, a.name).toContain(`| ${(a.test.ppl / t.test.ppl).toFixed(3)} |`);
      // (Tables 7/8 compare one-shot Mamba-2 arms with frozen MLPs: not Mamba-1, trained-MLP or stepwise ones)
      const plain = (x: Arm) => x.variant === 'mamba2' && !x.trainMlp && x.stages === undefined;
      const twin = arms.find(
        (b) =>
          plain(a) &&
          plain(b) &&
          b.init === 'random' &&
          a.init === 'attention' &&
          b.attention === a.attention &&
          b.seed === a.seed,
      );
      if (twin) expect(section, a.name).toContain(`| ${(twin.test.ppl / a.test.ppl).toFixed(3)} |`);
    }
    // Table 6's plot: the committed file is the render, each point a seed-0 one-shot arm's ratio (recomputed here)
    const svg = readFileSync(TABLE6_SVG, 'utf8');
    expect(svg).toBe(renderTable6Svg(arms) + '\n');
    expect(section).toContain('](paper-small/table6.svg)');
    let points = 0;
    for (const a of arms) {
      const oneShot = a.init === 'attention' && !a.trainMlp && a.stages === undefined && !(a.seed ?? 0);
      if (!oneShot || (a.variant !== 'mamba1' && a.variant !== 'mamba2')) continue;
      const name = a.variant === 'mamba1' ? 'Mamba-1' : 'Mamba-2';
      const pct = 100 * (a.attention ?? 1);
      expect(svg, a.name).toContain(
        `<title>${name}, test: ${pct}, ${(a.test.ppl / t.test.ppl).toPrecision(4)}</title>`,
      );
      if (a.brown && t.brown)
        expect(svg, a.name).toContain(
          `<title>${name}, Brown: ${pct}, ${(a.brown.ppl / t.brown.ppl).toPrecision(4)}</title>`,
        );
      points++;
    }
    expect(points, 'Table 6 arms in the plot').toBeGreaterThanOrEqual(8);
    expect(svg).toContain('<title>paper (Table 6): 6.25, 1.220</title>');
  });

  it('records of the GPU machine → arms: the evaluations and the run record; no teacher row is refused', () => {
    const dir = tmpFolder('arms-records');
    const ev = (ppl: number) => JSON.stringify({ ppl, bitsPerByte: 2, nll: Math.log(ppl), tokens: 100, seqLen: 512 });
    writeFileSync(join(dir, 'teacher.test.json'), ev(10));
    writeFileSync(join(dir, 'm.test.json'), ev(15));
    writeFileSync(join(dir, 'm.brown.json'), ev(30));
    mkdirSync(join(dir, 'm'));
    const options = { totalSteps: 4, batch: 1, seqLen: 512, accumulate: 16 };
    writeFileSync(
      join(dir, 'm', 'training.json'),
      JSON.stringify({
        command: 'mil distill …',
        attention: 0.5,
        variant: 'mamba2',
        init: 'attention',
        seed: 0,
        seconds: 9,
        options,
      }),
    );
    const arms = readRecords(dir);
    expect(arms.map((a) => [a.name, a.tokens, a.brown?.ppl])).toEqual([
      ['m', 4 * 512 * 16, 30],
      ['teacher', undefined, undefined],
    ]);
    const s = renderArms(arms);
    expect(s).toContain('| m | 50% | Mamba-2 | attention | 0 | 15.00 | 1.500 |');
    // a run of mil train against the teacher (the draft: no attention fraction) is listed apart, its tokens not
    // counted among the arms'
    const draft: Arm = {
      name: 'd',
      command: 'mil train --config draft-20m --teacher T --data D --seed 0 --out O',
      seed: 0,
      steps: 600,
      tokens: 4915200,
      seconds: 67,
      test: { ppl: 30, bitsPerByte: 3, nll: Math.log(30), tokens: 100, seqLen: 512 },
    };
    const withDraft = renderArms([...arms, draft]);
    const [armsPart, draftPart] = withDraft.split('Trained against the teacher');
    expect(armsPart).not.toContain('| d |');
    expect(armsPart).toContain(`ran ${(4 * 512 * 16).toLocaleString('en-US')} tokens of distillation`);
    expect(draftPart).toContain('| d | `mil train --config draft-20m --seed 0` | 4,915,200 | 30.00 | 3.000 |');
    expect(s).toContain('| 50% | 1.500 | not run yet | 1.03 |');
    expect(() => renderArms(arms.filter((a) => a.name !== 'teacher'))).toThrow(/no 'teacher' row/);
    writeFileSync(join(dir, 'bad.test.json'), JSON.stringify({ ppl: 'x' }));
    expect(() => readRecords(dir)).toThrow(/numeric 'ppl'/);
  });

  it('records of the other tables: Mamba-1, trained MLPs, dropped layers, stepwise (its stages summed), SFT and DPO', () => {
    const dir = tmpFolder('arms-tables');
    const ev = (ppl: number) => JSON.stringify({ ppl, bitsPerByte: 2, nll: Math.log(ppl), tokens: 100, seqLen: 512 });
    const options = { totalSteps: 4, batch: 1, seqLen: 512, accumulate: 16 };
    const run = (name: string, ppl: number, record: Record<string, unknown>, extra: [string, number][] = []) => {
      writeFileSync(join(dir, `${name}.test.json`), ev(ppl));
      for (const [kind, p] of extra) writeFileSync(join(dir, `${name}.${kind}.json`), ev(p));
      mkdirSync(join(dir, name));
      writeFileSync(join(dir, name, 'training.json'), JSON.stringify({ command: `mil … ${name}`, seed: 0, ...record }));
    };
    const distill = (attention: number, variant: string, more: Record<string, unknown> = {}) => ({
      attention,
      variant,
      init: 'attention',
      seconds: 10,
      options,
      ...more,
    });
    writeFileSync(join(dir, 'teacher.test.json'), ev(10));
    run('m2-50', 12, distill(0.5, 'mamba2'), [['instruct', 40]]);
    run('m2-0', 16, distill(0, 'mamba2'));
    run('m1-50', 13, distill(0.5, 'mamba1'));
    run('mlp-50', 11.4, distill(0.5, 'mamba2', { trainMlp: true }));
    run('drop-50', 30, distill(0.5, 'drop'));
    run('step-0', 14, distill(0, 'mamba2', { stage: 3, seconds: 7 }));
    // the same on the paper's schedule (--per-stage: each stage all the tokens)
    run('step-full', 12.8, distill(0, 'mamba2', { stage: 3, seconds: 7, perStage: true }));
    for (const name of ['step-0', 'step-full'])
      for (const k of [1, 2]) {
        mkdirSync(join(dir, `${name}.stage${k}`));
        writeFileSync(join(dir, `${name}.stage${k}`, 'training.json'), JSON.stringify({ seconds: 5 }));
      }
    // one-shot on as many tokens as step-full saw in all (3× the budget): its own comparison, never a plain arm
    run('a-m2-0-3x', 13.5, distill(0, 'mamba2', { options: { ...options, totalSteps: 12 } }));
    run('sft', 12.5, { from: '/r/m2-50', seconds: 20, options }, [['instruct', 20]]);
    // the passkey runs: the teacher fine-tuned on the retrieval curriculum, a hybrid distilled from it (never a
    // table's 50% arm, though distilled at 50% with attention init), each with a passkey report (2 lengths, 2 depths)
    const passkey = (name: string, correct: number[][]) => {
      mkdirSync(join(dir, `${name}.passkey`));
      const cells = [1024, 2048].flatMap((length, i) =>
        [0, 1].map((depth, j) => ({ length, depth, correct: correct[i][j], trials: 5, accuracy: correct[i][j] / 5 })),
      );
      const report = { context: 1024, trials: 5, lengths: [1024, 2048], depths: [0, 1], models: [{ name, cells }] };
      writeFileSync(join(dir, `${name}.passkey`, 'passkey.json'), JSON.stringify(report));
    };
    run('t-retr', 10.5, {
      command: 'mil sft --model /r/teacher --data /x/retrieval.jsonl',
      from: '/r/teacher',
      seconds: 9,
    });
    passkey('t-retr', [
      [5, 4],
      [3, 1],
    ]);
    run('m2-50-retr', 11, distill(0.5, 'mamba2', { command: 'mil distill --teacher /r/t-retr --attention 0.5' }));
    passkey('m2-50-retr', [
      [5, 5],
      [4, 4],
    ]);
    run('dpo', 12.6, {
      from: '/r/sft',
      seconds: 30,
      pairs: 4096,
      heldOutPairs: 401,
      heldOutRewardAccuracy: 0.75,
      referencePreferenceAccuracy: 0.5,
    });
    const arms = readRecords(dir);
    const a = (n: string) =>
      present(
        arms.find((x) => x.name === n),
        n,
      );
    // a stepwise record is its last stage's: its tokens, steps and seconds are every stage's
    expect([a('step-0').stages, a('step-0').tokens, a('step-0').steps, a('step-0').seconds]).toEqual([
      3,
      3 * 4 * 512 * 16,
      12,
      17,
    ]);
    expect(a('mlp-50').trainMlp).toBe(true);
    expect(a('dpo').dpo?.heldOutRewardAccuracy).toBe(0.75);
    expect(a('sft').instruct?.ppl).toBe(20);
    const s = renderArms(arms);
    const cut = (title: string) => s.slice(s.indexOf(title)).split('\n\n')[1]; // the table after its title
    // Table 6: the Mamba-1 column; the trained-MLP and stepwise arms are not Table 6's 50% and 0% Mamba-2 cells
    expect(cut('**Table 6**')).toContain('| 50% | 1.200 | 1.300 | 1.03 |');
    expect(cut('**Table 6**')).toContain('| 0% | 1.600 | not run yet | 1.66 |');
    // each comparison's ratio computed here: second arm ÷ first, same seed
    expect(cut('**Table 8**')).toContain(`| 50% | 0 | 12.00 | 11.40 | ${(11.4 / 12).toFixed(3)} |`);
    expect(cut('**Table 9**')).toContain(
      `| 50% | 0 | 12.00 | 30.00 | ${(30 / 12).toFixed(3)} | 6.2 / 151.98 | 24.51 |`,
    );
    expect(cut('**Stepwise vs one-shot**')).toContain(`| 0% | 0 | 16.00 | 14.00 | ${(14 / 16).toFixed(3)} |`);
    expect(cut("**Stepwise on the paper's schedule vs one-shot**")).toContain(
      `| 0% | 0 | 16.00 | 12.80 | ${(12.8 / 16).toFixed(3)} |`,
    );
    expect(cut("**Stepwise on the paper's schedule vs one-shot on as many tokens**")).toContain(
      `| 0% | 0 | 13.50 | 12.80 | ${(12.8 / 13.5).toFixed(3)} |`,
    );
    expect(s).toContain('| a-m2-0-3x | 0% | Mamba-2, one shot on 3× the budget |');
    expect(a('step-full').perStage).toBe(true);
    // the passkey section: its own rows, each length's accuracy over the depths; the retrieval hybrid is in no table
    expect(cut('**Long context: the passkey test**')).toContain(
      '| t-retr | teacher | 10.50 | — | 90% of 10 | 40% of 10 |',
    );
    expect(cut('**Long context: the passkey test**')).toContain(
      '| m2-50-retr | t-retr | 11.00 | — | 100% of 10 | 80% of 10 |',
    );
    expect(s.split('**Long context')[0]).not.toContain('m2-50-retr');
    expect(renderPasskeySvg(arms)).toContain('m2-50-retr');
    expect(renderPasskeySvg(arms.filter((x) => !x.passkey))).toBeUndefined();
    expect(s).toContain('| step-full | 0% | Mamba-2, stepwise (3 stages, each the whole budget) |');
    // stage 2/3: the base first, then SFT and DPO, with the instruction perplexity and DPO's held-out accuracy
    const stages = cut('**Stages 2 and 3**').split('\n');
    // (the retrieval teacher is an SFT of the teacher: a stage-2 row too)
    expect(stages.slice(2).map((l) => l.split(' | ')[0])).toEqual([
      '| m2-50',
      '| teacher',
      '| sft',
      '| t-retr',
      '| dpo',
    ]);
    expect(stages[4]).toContain('| sft | m2-50 | 12.50 | 1.250 | — | 20.00 | — | 20 s |');
    expect(stages[6]).toContain('| 75.0% (50.0%) of 401 |');
    // a stepwise run whose earlier stage's record did not come back is refused, naming it
    rmSync(join(dir, 'step-0.stage2'), { recursive: true });
    expect(() => readRecords(dir)).toThrow(/step-0: a stepwise run of 3 stages without .*step-0\.stage2/);
  });

  it('the speculative section is the render of paper-small/speculative-*.json: every row, its spread and a "no"', () => {
    const page = readFileSync(PAGE, 'utf8');
    const records = ['speculative-gpu.json', 'speculative-cpu.json'].map(
      (f) => JSON.parse(readFileSync(join(DOCS, 'results', 'paper-small', f), 'utf8')) as SpecRecord,
    );
    const section = renderSpeculative(records);
    expect(page).toContain(section);
    for (const r of records)
      for (const x of r.rows) {
        // the median and its quartiles formatted here, independently of the renderer
        const cell = `×${x.median.toFixed(2)} [${x.q1.toFixed(2)}, ${x.q3.toFixed(2)}]`;
        expect(section, `${r.machine} ${x.target} K ${x.K}`).toContain(`| ${x.target} | ${x.K} | ${cell}`);
      }
    // an output that left plain greedy decoding is shown, not hidden
    const bad = structuredClone(records[0]);
    bad.rows = [{ ...bad.rows[0], identical: false }];
    expect(renderSpeculative([bad])).toMatch(/\| \*\*no\*\* \|$/m);
  });
});
