/**
 * The full-disk (and kill) sweep over the writing commands (issue #27): for each of convert, init, train,
 * distill, sft, dpo, tokenizer train, golden emit and conform --save (a deliberately broken example port in the
 * lines protocol, whose smallest failing case is saved; exit 1) at tiny sizes, a first run makes a good output; then
 * the same command with another seed runs on a disk that fills up after N bytes (the writer's write(2)
 * writes what fits, the next fails with ENOSPC; N = 0, half, and all but the last 4 KiB of what the run
 * writes — its timings make the total vary by a few bytes). Each must exit with EXIT.io, leave the good
 * output byte for byte, and leave no temporary, backup or lock beside it (an OUT.checkpoint a training run
 * saved before the disk filled is its resumable state: kept, and removed before the next injection).
 *
 * Kills: a command runs as a child process that kills itself with SIGKILL just before a random system call of
 * its writer (spec/kill_hook.ts numbers them; the count comes from the same command run in this process, which
 * also makes the new output): a kill inside a write, never only somewhere in the compute around it. Once
 * recovered as the next writer would, the output must be the good one or the complete new one, with nothing
 * beside it; a training run's checkpoint left by the kill must resume to the same new output. The default run
 * kills once each a folder writer (convert), a training run with a checkpoint every step (train), the
 * single-file writer (tokenizer train), a folder added to (golden emit) and the conformance harness's case
 * folder (conform --save): 8–14 s here. MIL_SWEEP_KILLS=1 kills every command 3 times. The kill points are
 * drawn from a printed seed: MIL_SWEEP_SEED=N reruns the same kills.
 * Races: for the commands that take no run lock (convert, init, tokenizer train, golden emit), another `mil`
 * process writing the same output runs to its end at an exact point of this one's write (spawnSync from the
 * writer shim): just before its lock is taken (the other one finishes; this one's complete output replaces it —
 * golden emit, which adds to its folder, keeps the other one's case too) and inside it (the other one is
 * refused with EXIT.locked). Never a mix, nothing beside it: 6–11 s here (8 child processes).
 * The whole default run: 19–23 s of tests on 2 cores (full disk 2–5 s, kills 8–14 s, races 6–11 s).
 * npm run paper (scripts/paper.ts), at --scale tiny in a temporary --out (the same script, seconds in all): a
 * complete tiny run (its 15 training runs in-process) is made once and copied for each part; the new version
 * measures on more test tokens (--eval-tokens 64 against 48). Full disk (0, half, all but the last 4 KiB of what the
 * new version writes): exit 6, --out byte for byte (results.md, results/, runs/), nothing beside it — the last 4 KiB
 * fall in the page, staged after results/ (writeSet), so two separate writes would fail it. Kills: a child
 * `node --import tsx --import spec/kill_hook.ts scripts/paper.ts …` killed just before the page's swap (results/
 * already swapped: the one mixed state a kill can leave), and with MIL_SWEEP_KILLS=1 before 3 random writer steps
 * too; what the next run does first (repairPaper) must find the page not rendered from that JSON and render it again;
 * the output is then the good or the new one (results.json without its timings, the page carrying the JSON's
 * sha-256) and a rerun completes to the uninterrupted run's output. Race: a second paper run started at this one's
 * first write under --out (its run lock, beside --out, taken before any work) exits 4 naming the lock; this one
 * completes whole. The paper part: 18.6–19.4 s of CPU (the vitest process and its children, `time`, transform and
 * import included), under the 30 s budget on 2 idle cores; its wall time on this shared VM was 37–92 s under a load
 * of 10–19 (full disk 24–52 s, kill 10–28 s, race 4–8 s). MIL_SWEEP_KILLS=1: + 3 random kills, 27 s of CPU in all.
 * Mutations that fail it: leaving the writer's temporary behind (convert: leftover .convert.mil-tmp-*;
 * conform --save: .conform---save.mil-tmp-*); writeFile in place (tokenizer train: the good file changed on a
 * full disk; killed before the in-place write, MIL_SWEEP_SEED=10: the file neither version); recovery not
 * removing a killed writer's lock and temporaries (MIL_SWEEP_SEED=570289532: .convert.mil-lock left); a live
 * lock taken for stale (convert: the other writer inside the write exits 0, not 4). The race failed on golden
 * emit as it was (it read the folder's cases before taking the writer's lock: the other emit's case was lost).
 * Each part checks that the new version differs from the good one (tokenizer train's merges ignore --seed: its
 * two versions differ by --vocab; before, they were the same bytes, and "the good file unchanged" held trivially).
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EXIT } from '../lib/cli/main.js';
import { REAL_WRITER_FS, recoverInterruptedSwap, setWriterFsForTesting } from '../lib/io/writer.js';
import { saveModel } from '../lib/model/convert.js';
import { randomLlama } from '../lib/model/random.js';
import { trainBpe } from '../lib/text/bpe.js';
import { Rng } from '../lib/rng.js';
import { runMil, snapshot } from './cli.js';
import { steppingFs } from './kill_hook.js';
import { tmpFolder } from './tmp.js';
import { paper, repairPaper } from '../scripts/paper.js';

afterEach(() => setWriterFsForTesting());

const MIL = join(import.meta.dirname, '..', 'bin', 'mil.js');
const TRAIN_OPTIONS = [
  '--steps',
  '2',
  '--batch',
  '1',
  '--len',
  '8',
  '--eval-tokens',
  '16',
  '--save-every',
  '1',
  '--quiet',
];

/** MIL_SWEEP_KILLS=1: every command, 3 kills each; by default one kill each for a subset with every kind of write. */
const KILLS_ALL = process.env.MIL_SWEEP_KILLS === '1';
/** a folder (convert), a folder with a checkpoint beside it (train), one file (tokenizer train), a folder added
 * to (golden emit), a folder from the conformance harness (conform --save) */
const DEFAULT_KILLS = ['convert', 'train', 'tokenizer train', 'golden emit', 'conform --save'];

/** `mil ARGS` in a child process that kills itself just before its writer's system call number `killAt`
 * (spec/kill_hook.ts): its exit status, null when it was killed. */
function runChild(args: string[], killAt: number): Promise<number | null> {
  const hook = ['--import', 'tsx', '--import', join(import.meta.dirname, 'kill_hook.ts')];
  const env = { ...process.env, MIL_SWEEP_KILL_AT: String(killAt) };
  const child = spawn('node', [...hook, MIL, ...args], { stdio: 'ignore', env });
  return new Promise((res) => child.on('exit', (code) => res(code)));
}

/** A disk with `budget` bytes free: a write(2) writes what fits, the next one fails with ENOSPC. */
function fullDisk(budget: number): { written: () => number } {
  let used = 0;
  setWriterFsForTesting({
    ...REAL_WRITER_FS,
    writeSync: (fd, b, o, l) => {
      const n = Math.min(l, budget - used);
      if (n <= 0) {
        const e = new Error('no space left on device (injected)') as NodeJS.ErrnoException;
        e.code = 'ENOSPC';
        throw e;
      }
      used += n;
      return REAL_WRITER_FS.writeSync(fd, b, o, n);
    },
  });
  return { written: () => used };
}

/** What the writer leaves only while it runs: temporaries, backups, locks (`.NAME.mil-*`). */
const leftovers = (parent: string) => readdirSync(parent).filter((e) => /^\..*\.mil-(tmp|old|lock|probe)/.test(e));

const state = (p: string) => (statSync(p).isDirectory() ? snapshot(p) : { file: readFileSync(p).toString('base64') });

interface Case {
  name: string;
  /** the command line writing `out`, with the seed that makes the new output differ */
  args: (out: string, seed: number) => string[];
  /** its exit status when it completes (conform --save: 1, the port failed; the default EXIT.ok) */
  done?: number;
}

function setup(parent: string): Case[] {
  const data = join(parent, 'd.jsonl');
  writeFileSync(
    data,
    Array.from({ length: 12 }, (_, i) =>
      JSON.stringify({ text: `speech ${i}: the union is strong, ${i} times.` }),
    ).join('\n') + '\n',
  );
  // a 260-token tokenizer and teacher: the training commands' evaluations cost little
  const tok = join(parent, 'tok.json');
  const bpe = trainBpe(readFileSync(data, 'utf8').split('\n'), { vocabSize: 260 });
  writeFileSync(tok, bpe.toJson());
  const teacher = join(parent, 'teacher');
  saveModel(
    teacher,
    randomLlama({ vocab: 260, hidden: 16, intermediate: 32, layers: 2, heads: 2, kvHeads: 1, maxPositions: 32 }, 3),
    { extra: [['tokenizer.json', bpe.toJson()]] },
  );
  const TRAIN = [...TRAIN_OPTIONS, '--tokenizer', tok];
  const config = join(parent, 'config.json');
  writeFileSync(config, readFileSync(join(teacher, 'config.json')));
  const s = (seed: number) => ['--seed', String(seed)];
  // a deliberately broken example port (spec/conform.spec.ts): its smallest failing case is what --save writes
  const port = join(parent, 'port');
  cpSync(join(import.meta.dirname, '..', 'examples', 'ports', 'js'), port, { recursive: true });
  const kernels = readFileSync(join(port, 'kernels.mjs'), 'utf8');
  const fault = ['if (D) y += D.data[d] * u.data[i];', 'if (D && z) y += D.data[d] * u.data[i];'] as const;
  expect(kernels).toContain(fault[0]);
  writeFileSync(join(port, 'kernels.mjs'), kernels.replace(...fault));
  return [
    { name: 'convert', args: (o, k) => ['convert', '--teacher', teacher, '--out', o, ...s(k)] },
    { name: 'init', args: (o, k) => ['init', '--config', config, '--out', o, ...s(k)] },
    { name: 'train', args: (o, k) => ['train', '--config', 'tiny', '--data', data, '--out', o, ...TRAIN, ...s(k)] },
    {
      name: 'distill',
      args: (o, k) => [
        'distill',
        '--teacher',
        teacher,
        '--attention',
        '0.5',
        '--data',
        data,
        '--out',
        o,
        ...TRAIN,
        ...s(k),
      ],
    },
    { name: 'sft', args: (o, k) => ['sft', '--model', teacher, '--data', data, '--out', o, ...TRAIN, ...s(k)] },
    {
      name: 'dpo',
      args: (o, k) => [
        'dpo',
        '--model',
        teacher,
        '--data',
        data,
        '--out',
        o,
        '--pairs',
        '2',
        '--batch',
        '1',
        '--prompt-len',
        '4',
        '--cont-len',
        '4',
        ...TRAIN.slice(-2),
        '--quiet',
        ...s(k),
      ],
    },
    {
      name: 'tokenizer train',
      // the merges do not depend on the seed: the vocabulary size makes the versions differ
      args: (o, k) => ['tokenizer', 'train', '--data', data, '--vocab', String(259 + k), '--out', `${o}.json`, ...s(k)],
    },
    {
      name: 'golden emit',
      args: (o, k) => ['golden', 'emit', '--op', 'causal_conv1d', '--dim', '4', '--len', '5', '--out', o, ...s(k)],
    },
    {
      name: 'conform --save',
      args: (o, k) => [
        'conform',
        '--op',
        'selective_scan',
        '--port',
        `node ${join(port, 'port.mjs')}`,
        '--protocol',
        'lines',
        '--runs',
        '10',
        '--save',
        o,
        ...s(k),
      ],
      done: EXIT.checkFailed,
    },
  ];
}

/** A version's content without training.json, whose recorded seconds differ from run to run (it must parse). */
function stable(s: Record<string, string>): string {
  return JSON.stringify(Object.entries(s).filter(([k]) => k !== 'training.json'));
}

const target = (c: Case, out: string) => (c.name === 'tokenizer train' ? `${out}.json` : out);

describe('sweep: a full disk during every writing command loses nothing and leaves nothing', () => {
  it('convert, init, train, distill, sft, dpo, tokenizer train, golden emit, conform --save: ENOSPC after 0, half and all but 4 KiB of the bytes', async () => {
    const parent = tmpFolder('sweep');
    for (const c of setup(parent)) {
      const out = join(parent, c.name.replace(' ', '-'));
      const first = await runMil(c.args(out, 1));
      expect(first.code, `${c.name}: ${first.err}`).toBe(c.done ?? EXIT.ok);
      const good = state(target(c, out));
      // how many bytes the second run writes, on a disk with room
      // (a target path of the same length: training.json records the command line)
      const probe = join(tmpFolder('sweep'), c.name.replace(' ', '-'));
      const count = fullDisk(Infinity);
      expect((await runMil(c.args(probe, 2))).code).toBe(c.done ?? EXIT.ok);
      const total = count.written();
      setWriterFsForTesting();
      expect(stable(state(target(c, probe))), `${c.name}: the new output differs from the good one`).not.toBe(
        stable(good),
      );
      expect(total, c.name).toBeGreaterThan(0);
      for (const budget of [0, Math.floor(total / 2), Math.max(0, total - 4096)]) {
        fullDisk(budget);
        const r = await runMil(c.args(out, 2));
        setWriterFsForTesting();
        const what = `${c.name}, disk full after ${budget} of ${total} bytes`;
        expect(r.code, `${what}: ${r.err}`).toBe(EXIT.io);
        expect(r.err, what).toMatch(/ENOSPC/);
        expect(state(target(c, out)), `${what}: the good output changed`).toEqual(good);
        expect(leftovers(parent), what).toEqual([]);
        // a checkpoint saved before the disk filled would be resumed by the next run (writing less): start afresh
        rmSync(`${out}.checkpoint`, { recursive: true, force: true });
      }
    }
  });

  it(
    KILLS_ALL
      ? 'MIL_SWEEP_KILLS=1: every command killed before 3 random writer steps leaves the good output or the new one, nothing beside it'
      : 'killed before a random writer step, convert, train (with a checkpoint), tokenizer train, golden emit and conform --save leave the good output or the new one, nothing beside it',
    async () => {
      const seed = Number(process.env.MIL_SWEEP_SEED ?? Math.floor(Math.random() * 2 ** 31));
      console.log(`kill sweep: seed ${seed} (rerun with MIL_SWEEP_SEED=${seed})`);
      const rng = new Rng(seed);
      const parent = tmpFolder('sweepkill');
      const cases = setup(parent).filter((c) => KILLS_ALL || DEFAULT_KILLS.includes(c.name));
      for (const c of cases) {
        const out = join(parent, c.name.replace(' ', '-'));
        expect((await runMil(c.args(out, 1))).code).toBe(c.done ?? EXIT.ok);
        const good = state(target(c, out));
        // the new output, made in this process, counting the writer's system calls: the steps a kill can precede
        const news = join(parent, `${c.name.replace(' ', '-')}-new`);
        // (golden emit adds its case to the folder: the new version is the good one's case and this one's)
        if (c.name === 'golden emit') expect((await runMil(c.args(news, 1))).code).toBe(EXIT.ok);
        let steps = 0;
        setWriterFsForTesting(steppingFs(() => void steps++));
        expect((await runMil(c.args(news, 2))).code, c.name).toBe(c.done ?? EXIT.ok);
        setWriterFsForTesting();
        const fresh = stable(state(target(c, news)));
        expect(fresh, `${c.name}: the new output differs from the good one`).not.toBe(stable(good));
        for (let k = 0; k < (KILLS_ALL ? 3 : 1); k++) {
          const at = rng.int(1, steps);
          const what = `${c.name} killed before writer step ${at} of ${steps} (seed ${seed})`;
          expect(await runChild(c.args(out, 2), at), what).toBe(null);
          recoverInterruptedSwap(target(c, out)); // what the next writer or loadModel does first
          recoverInterruptedSwap(`${out}.checkpoint`); // what the next training run does first (its writer)
          const now = stable(state(target(c, out)));
          console.log(
            `${what}: ${now === stable(good) ? 'the good output' : now === fresh ? 'the new output' : 'neither the good nor the new output'}`,
          );
          expect(now === stable(good) || now === fresh, what).toBe(true);
          expect(leftovers(parent), what).toEqual([]);
          if (existsSync(`${out}.checkpoint`)) {
            // the checkpoint a training run saved before the kill resumes to the same new output
            expect((await runMil(c.args(out, 2))).code, what).toBe(EXIT.ok);
            expect(stable(state(target(c, out))), `${what}: resumed`).toEqual(fresh);
            expect(existsSync(`${out}.checkpoint`), `${what}: resumed`).toBe(false);
          }
          // the next kill starts from the good output again
          if (stable(state(target(c, out))) !== stable(good)) {
            rmSync(target(c, out), { recursive: true });
            expect((await runMil(c.args(out, 1))).code).toBe(c.done ?? EXIT.ok);
          }
        }
      }
    },
    KILLS_ALL ? 300_000 : 60_000,
  );

  describe('sweep: two processes writing the same output at once (the commands without a run lock)', () => {
    it("convert, init, tokenizer train, golden emit: a second writer before or inside the first one's write leaves one complete output (golden emit: both cases), nothing beside it", async () => {
      const parent = tmpFolder('sweeprace');
      const RACED = ['convert', 'init', 'tokenizer train', 'golden emit'];
      for (const c of setup(parent).filter((x) => RACED.includes(x.name))) {
        const out = join(parent, c.name.replace(' ', '-'));
        // this process's complete output (seed 2), made alone (golden emit's is checked by its case names)
        const alone = join(tmpFolder('sweeprace'), c.name.replace(' ', '-'));
        if (c.name !== 'golden emit') expect((await runMil(c.args(alone, 2))).code).toBe(EXIT.ok);
        const complete = c.name === 'golden emit' ? '' : stable(state(target(c, alone)));
        // the other process runs to its end just before this one's writer makes its first system call (creating
        // its lock: the other one takes the lock and finishes), or its sixth (the lock is ours: it must refuse)
        for (const [step, when] of [
          [1, 'before the lock'],
          [6, 'inside the write'],
        ] as const) {
          rmSync(target(c, out), { recursive: true, force: true });
          expect((await runMil(c.args(out, 1))).code).toBe(EXIT.ok);
          let n = 0;
          let other: number | null = -1;
          setWriterFsForTesting(
            steppingFs(() => {
              if (++n === step) other = spawnSync('node', [MIL, ...c.args(out, 3)], { stdio: 'ignore' }).status;
            }),
          );
          const mine = await runMil(c.args(out, 2));
          setWriterFsForTesting();
          const what = `${c.name}, the other writer ${when}`;
          expect(mine.code, `${what}: ${mine.err}`).toBe(EXIT.ok);
          expect(other, what).toBe(step === 1 ? EXIT.ok : EXIT.locked);
          if (c.name === 'golden emit') {
            // emit adds a case to the folder: the other one's case must survive this one's write
            const cases = (
              JSON.parse(readFileSync(join(out, 'kernels.json'), 'utf8')) as { cases: Array<{ name: string }> }
            ).cases
              .map((k) => k.name)
              .sort();
            const seeds = step === 1 ? [1, 2, 3] : [1, 2];
            expect(cases, what).toEqual(seeds.map((k) => `causal_conv1d_s${k}`));
          } else expect(stable(state(target(c, out))), what).toBe(complete);
          expect(leftovers(parent), what).toEqual([]);
        }
      }
    }, 60_000);
  });
});

// ------------------------------------------------------------------ npm run paper (scripts/paper.ts --scale tiny)
const PAPER = join(import.meta.dirname, '..', 'scripts', 'paper.ts');
/** the tiny paper on `out`: version 1 measures on 48 test tokens, version 2 on 64 (other perplexities) */
const paperArgs = (out: string, version: 1 | 2) => [
  '--scale',
  'tiny',
  '--out',
  out,
  '--eval-tokens',
  `${16 + 16 * (version + 1)}`,
];
/** the paper run in this process, its log kept (shown when a check fails) */
async function runPaper(args: string[]): Promise<{ code: number; log: string }> {
  let log = '';
  const code = await paper(args, (l) => void (log += l + '\n'));
  return { code, log };
}
/** every folder the paper sweep starts from: a complete tiny run (version 1), made once, copied */
const PAPER_BASE = tmpFolder('sweeppaper');
let paperGood: string | undefined;
async function paperCopy(name: string): Promise<string> {
  if (!paperGood) {
    paperGood = join(PAPER_BASE, 'good');
    const r = await runPaper(paperArgs(paperGood, 1));
    expect(r.code, r.log).toBe(EXIT.ok);
  }
  const out = join(PAPER_BASE, name);
  rmSync(out, { recursive: true, force: true });
  cpSync(paperGood, out, { recursive: true });
  return out;
}
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
/**
 * The paper's output set in a comparable form: results.json without what differs from run to run (minutes, seconds,
 * the speculative timings and speedups, the minutes per stage; `out` itself written as <out>), and whether it is
 * whole: results.md ends with the sha-256 of that results.json (computed here) and results/ holds the JSON and its
 * four plots.
 */
function paperState(out: string): string {
  const json = readFileSync(join(out, 'results', 'results.json'));
  const page = readFileSync(join(out, 'results.md'), 'utf8');
  const whole =
    page.trimEnd().endsWith(`sha-256: ${sha256(json)} (the page is rendered from that file alone) -->`) &&
    JSON.stringify(readdirSync(join(out, 'results')).sort()) ===
      JSON.stringify(['init-gap.svg', 'passkey.svg', 'results.json', 'speculative.svg', 'table6.svg']);
  const R = JSON.parse(json.toString('utf8')) as Record<string, unknown> & {
    runs: Record<string, { seconds?: number }>;
    spec: Array<Record<string, unknown>>;
  };
  delete R.measureMinutes;
  delete R.trainingMinutes;
  delete R.stageMinutes;
  for (const r of Object.values(R.runs)) delete r.seconds;
  for (const s of R.spec)
    for (const k of ['plainDecodeMs', 'specDecodeMs', 'draftMs', 'verifyMs', 'speedup', 'speedupWithPrefill'])
      delete s[k];
  return JSON.stringify({ whole, R }).replaceAll(out, '<out>');
}
/** what the paper run leaves only while it runs: the writer's temporaries, backups and locks, and its run lock */
const paperLeftovers = (out: string) => [
  ...leftovers(out),
  ...readdirSync(dirname(out)).filter((e) => e.startsWith(`.${basename(out)}.mil-`)),
];

describe('sweep: npm run paper (--scale tiny) under a full disk, kills and a second run', () => {
  it('full disk after 0, half and all but 4 KiB of the bytes: exit 6, the previous results.md, results/ and runs byte for byte, nothing beside them', async () => {
    const out = await paperCopy('full');
    const good = snapshot(out);
    // how many bytes the second version writes (on a copy: the same runs, reused)
    const probe = await paperCopy('full-probe');
    const count = fullDisk(Infinity);
    const p = await runPaper(paperArgs(probe, 2));
    const total = count.written();
    setWriterFsForTesting();
    expect(p.code, p.log).toBe(EXIT.ok);
    expect(paperState(probe), 'the new version differs from the good one').not.toBe(paperState(out));
    for (const budget of [0, Math.floor(total / 2), Math.max(0, total - 4096)]) {
      fullDisk(budget);
      const r = await runPaper(paperArgs(out, 2));
      setWriterFsForTesting();
      const what = `paper, disk full after ${budget} of ${total} bytes`;
      expect(r.code, `${what}: ${r.log}`).toBe(EXIT.io);
      expect(r.log, what).toMatch(/ENOSPC/);
      expect(snapshot(out), `${what}: the good output changed`).toEqual(good);
      expect(paperLeftovers(out), what).toEqual([]);
    }
  }, 120_000);

  it(
    KILLS_ALL
      ? 'MIL_SWEEP_KILLS=1: killed between its two swaps and before 3 random writer steps, the next run repairs the page and a rerun completes to the uninterrupted output'
      : 'killed between its two swaps (the new results/ beside the old page), the next run repairs the page from the JSON; a rerun completes to the uninterrupted output',
    async () => {
      const seed = Number(process.env.MIL_SWEEP_SEED ?? Math.floor(Math.random() * 2 ** 31));
      console.log(`paper kill sweep: seed ${seed} (rerun with MIL_SWEEP_SEED=${seed})`);
      const rng = new Rng(seed);
      const out = await paperCopy('kill');
      const good = paperState(out);
      // the uninterrupted second version, on a copy, counting its writer's system calls and noting the page's swap
      const news = await paperCopy('kill-new');
      let steps = 0;
      let pageSwap = 0;
      setWriterFsForTesting({
        ...steppingFs(() => void steps++),
        renameSync: (from, to) => {
          steps++;
          if (to === join(news, 'results.md') && from.includes('.results.md.mil-tmp-')) pageSwap = steps;
          REAL_WRITER_FS.renameSync(from, to);
        },
      });
      const n = await runPaper(paperArgs(news, 2));
      setWriterFsForTesting();
      expect(n.code, n.log).toBe(EXIT.ok);
      const fresh = paperState(news).replaceAll('kill-new', 'kill');
      expect(fresh, 'the new version differs from the good one').not.toBe(good);
      expect(pageSwap, 'the page swap was seen').toBeGreaterThan(0);
      const kills = [pageSwap, ...Array.from({ length: KILLS_ALL ? 3 : 0 }, () => rng.int(1, steps))];
      for (const at of kills) {
        const what = `paper killed before writer step ${at} of ${steps}${at === pageSwap ? ' (the page swap)' : ''} (seed ${seed})`;
        const child = spawn(
          'node',
          ['--import', 'tsx', '--import', join(import.meta.dirname, 'kill_hook.ts'), PAPER, ...paperArgs(out, 2)],
          {
            stdio: 'ignore',
            env: { ...process.env, MIL_SWEEP_KILL_AT: String(at) },
          },
        );
        expect(await new Promise((res) => child.on('exit', (code) => res(code))), what).toBe(null);
        const found = repairPaper(out); // what the next run does first, under its run lock
        const now = paperState(out);
        console.log(
          `${what}: ${found}, ${now === good ? 'the good output' : now === fresh ? 'the new output' : 'neither'}`,
        );
        if (at === pageSwap) expect(found, `${what}: the page did not match the JSON`).toBe('repaired');
        expect(now === good || now === fresh, `${what}: ${now}`).toBe(true);
        expect(leftovers(out), what).toEqual([]);
        // a rerun takes over the killed run's lock and completes to the output of an uninterrupted run
        const r = await runPaper(paperArgs(out, 2));
        expect(r.code, `${what}: ${r.log}`).toBe(EXIT.ok);
        expect(paperState(out), `${what}: rerun`).toBe(fresh);
        expect(paperLeftovers(out), `${what}: rerun`).toEqual([]);
        rmSync(out, { recursive: true });
        cpSync(paperGood!, out, { recursive: true });
      }
    },
    KILLS_ALL ? 300_000 : 120_000,
  );

  it('a second paper run on the same --out while the first holds its run lock is refused with exit 4 before any work; the first completes whole', async () => {
    const out = await paperCopy('race');
    const before = paperState(out);
    let other: { status: number | null; stderr: string } | undefined;
    // the other run starts at this one's first write under --out (its run lock, beside --out, already taken)
    const trigger = (p: unknown) => {
      if (other === undefined && typeof p === 'string' && p.startsWith(out + '/'))
        other = spawnSync('node', ['--import', 'tsx', PAPER, ...paperArgs(out, 1)], { encoding: 'utf8' });
    };
    setWriterFsForTesting({
      ...REAL_WRITER_FS,
      openSync: (p, f, m) => (trigger(p), REAL_WRITER_FS.openSync(p, f, m)),
      mkdirSync: (p) => (trigger(p), REAL_WRITER_FS.mkdirSync(p)),
      linkSync: (a, b) => (trigger(a), REAL_WRITER_FS.linkSync(a, b)),
    });
    const mine = await runPaper(paperArgs(out, 2));
    setWriterFsForTesting();
    expect(mine.code, mine.log).toBe(EXIT.ok);
    expect(other?.status, other?.stderr).toBe(EXIT.locked);
    expect(other?.stderr).toContain(`.${basename(out)}.mil-run-lock`);
    const now = paperState(out);
    expect(now).not.toBe(before);
    expect(JSON.parse(now).whole, 'one whole run').toBe(true);
    expect(JSON.parse(now).R.eval.tokens, "this run's version").toBe(64);
    expect(paperLeftovers(out)).toEqual([]);
  }, 120_000);
});
