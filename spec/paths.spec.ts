/**
 * The output-path guard (lib/io/paths.ts; issue #27, defect 3): every writing command refuses, before any
 * work and with exit 2 naming both paths, an output — or a name derived from it (OUT.checkpoint,
 * OUT.stageN) — that is, contains or lies inside an input; and an existing folder that is not the same
 * command's earlier output unless --force. Inputs are checked byte for byte afterwards: nothing was touched.
 *
 * Commands run in this process (lib/cli/main.ts) on tiny models; ~2 s on 2 cores.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { EXIT } from '../lib/cli/main.js';
import { OUTPUT_MARKER, checkPaths, OutputExistsError } from '../lib/io/paths.js';
import { saveModel } from '../lib/model/convert.js';
import { randomLlama } from '../lib/model/random.js';
import { ArgumentError } from '../lib/errors.js';
import { tmpFolder } from './tmp.js';
import { runMil, snapshot } from './cli.js';

afterEach(() => vi.restoreAllMocks());

/** A tiny Llama with the shipped tokenizer's 2048 tokens (what train/distill/sft accept with it). */
const tiny = () =>
  randomLlama({ vocab: 2048, hidden: 16, intermediate: 32, layers: 2, heads: 2, kvHeads: 1, maxPositions: 32 }, 3);
const TRAIN = ['--steps', '1', '--batch', '1', '--len', '8', '--eval-tokens', '16', '--quiet'];

function corpus(dir: string): string {
  const p = join(dir, 'corpus.jsonl');
  writeFileSync(
    p,
    Array.from({ length: 6 }, (_, i) => JSON.stringify({ text: `document ${i}: a few words of text.` })).join('\n') +
      '\n',
  );
  return p;
}

describe('defect 3: derived output names against the inputs', () => {
  it('distill with the teacher at OUT.checkpoint, or at OUT.stage1 with --stepwise: exit 2 naming both, the teacher untouched', async () => {
    const parent = tmpFolder('paths');
    const data = corpus(parent);
    for (const [teacherName, extra] of [
      ['out.checkpoint', []],
      ['out.stage1', ['--stepwise', '0.5,0.25']],
      ['out.stage1.checkpoint', ['--stepwise', '0.5,0.25']],
    ] as const) {
      const tdir = join(parent, teacherName);
      saveModel(tdir, tiny());
      const before = snapshot(tdir);
      const r = await runMil([
        'distill',
        '--teacher',
        tdir,
        '--out',
        join(parent, 'out'),
        '--data',
        data,
        ...(extra.length ? extra : ['--attention', '0.5']),
        ...TRAIN,
      ]);
      expect(r.code, `${teacherName}: ${r.err}`).toBe(EXIT.usage);
      expect(r.err).toMatch(/argument '--out': expected a path apart from --teacher/);
      expect(r.err).toContain(tdir);
      expect(snapshot(tdir), teacherName).toEqual(before);
      expect(existsSync(join(parent, 'out')), teacherName).toBe(false);
    }
  });

  it('sft with --model at OUT.checkpoint; tokenizer train and sft with --out equal to --data: exit 2, inputs untouched', async () => {
    const parent = tmpFolder('paths');
    const data = corpus(parent);
    const mdir = join(parent, 'run.checkpoint');
    saveModel(mdir, tiny());
    const before = snapshot(mdir);
    let r = await runMil(['sft', '--model', mdir, '--out', join(parent, 'run'), '--data', data, ...TRAIN]);
    expect(r.code, r.err).toBe(EXIT.usage);
    expect(r.err).toMatch(/expected a path apart from --model .*its checkpoint/s);
    expect(snapshot(mdir)).toEqual(before);
    const text = readFileSync(data);
    r = await runMil(['tokenizer', 'train', '--data', data, '--vocab', '300', '--out', data]);
    expect(r.code, r.err).toBe(EXIT.usage);
    expect(r.err).toMatch(/expected a path apart from --data/);
    expect(readFileSync(data).equals(text)).toBe(true);
    const folderData = join(parent, 'texts');
    mkdirSync(folderData);
    writeFileSync(join(folderData, 'a.txt'), 'some text');
    r = await runMil(['sft', '--model', mdir, '--out', folderData, '--data', folderData, ...TRAIN]);
    expect(r.code, r.err).toBe(EXIT.usage);
    expect(r.err).toMatch(/expected a path apart from --data/);
    expect(readdirSync(folderData)).toEqual(['a.txt']);
  });
});

describe('defect 3: --out over an existing folder', () => {
  it('convert over an unrelated model folder: exit 2 naming it; --force replaces it; a rerun over its own output needs no --force', async () => {
    const parent = tmpFolder('paths');
    const tdir = join(parent, 'teacher');
    saveModel(tdir, tiny());
    const other = join(parent, 'other-model');
    saveModel(other, randomLlama({ vocab: 64, hidden: 16, intermediate: 32, layers: 2, heads: 2, kvHeads: 1 }, 9));
    const before = snapshot(other);
    let r = await runMil(['convert', '--teacher', tdir, '--out', other]);
    expect(r.code, r.err).toBe(EXIT.usage);
    expect(r.err).toMatch(/OutputExistsError: --out .*other-model: expected a new folder.*without \.mil-output\.json/);
    expect(r.err).toMatch(/--force/);
    expect(snapshot(other)).toEqual(before);
    r = await runMil(['convert', '--teacher', tdir, '--out', other, '--force']);
    expect(r.code, r.err).toBe(EXIT.ok);
    expect(JSON.parse(readFileSync(join(other, OUTPUT_MARKER), 'utf8'))).toEqual({ writtenBy: 'mil convert' });
    r = await runMil(['convert', '--teacher', tdir, '--out', other, '--seed', '2']);
    expect(r.code, r.err).toBe(EXIT.ok);
    // another command's output is not this one's: init over convert's folder is refused
    const cfg = join(parent, 'config.json');
    writeFileSync(cfg, readFileSync(join(tdir, 'config.json')));
    r = await runMil(['init', '--config', cfg, '--out', other]);
    expect(r.code, r.err).toBe(EXIT.usage);
    expect(r.err).toMatch(/written by mil convert/);
    // an empty folder is free
    const empty = join(parent, 'empty');
    mkdirSync(empty);
    expect((await runMil(['init', '--config', cfg, '--out', empty])).code).toBe(EXIT.ok);
    expect((await runMil(['init', '--config', cfg, '--out', empty, '--seed', '4'])).code).toBe(EXIT.ok);
  });

  it('train with an unrelated folder at OUT.checkpoint: exit 2 (it would be resumed from or deleted), the folder untouched', async () => {
    const parent = tmpFolder('paths');
    const data = corpus(parent);
    const ck = join(parent, 'run.checkpoint');
    mkdirSync(ck);
    writeFileSync(join(ck, 'notes.txt'), 'the user keeps notes here');
    const r = await runMil(['train', '--config', 'tiny', '--data', data, '--out', join(parent, 'run'), ...TRAIN]);
    expect(r.code, r.err).toBe(EXIT.usage);
    expect(r.err).toMatch(/OutputExistsError: --out .*run\.checkpoint/);
    expect(readdirSync(ck)).toEqual(['notes.txt']);
  });

  it('golden emit adds cases to a golden folder (its own, unmarked) but refuses an unrelated non-empty folder', async () => {
    const parent = tmpFolder('paths');
    const g = join(parent, 'g');
    const emit = (out: string, seed: string) =>
      runMil(['golden', 'emit', '--op', 'causal_conv1d', '--dim', '4', '--len', '5', '--seed', seed, '--out', out]);
    expect((await emit(g, '1')).code).toBe(EXIT.ok);
    expect((await emit(g, '2')).code).toBe(EXIT.ok); // a second case into the same golden folder
    expect(existsSync(join(g, OUTPUT_MARKER))).toBe(false);
    const mine = join(parent, 'mine');
    mkdirSync(mine);
    writeFileSync(join(mine, 'thesis.tex'), 'months of work');
    const r = await emit(mine, '1');
    expect(r.code, r.err).toBe(EXIT.usage);
    expect(r.err).toMatch(/OutputExistsError: --out .*mine: .*holding thesis\.tex/);
    expect(readdirSync(mine)).toEqual(['thesis.tex']);
  });

  it('checkPaths itself: equal, inside, containing, and a temporary-like name; an own or empty folder passes', () => {
    const parent = tmpFolder('paths');
    const inp = join(parent, 'in');
    mkdirSync(inp);
    const plan =
      (out: string, force = false) =>
      () =>
        checkPaths({
          command: 'sft',
          inputs: [{ option: 'model', path: inp }],
          outputs: [{ option: 'out', path: out }],
          force,
        });
    expect(plan(inp)).toThrow(ArgumentError);
    expect(plan(join(inp, 'sub'))).toThrow(/lies inside/);
    expect(plan(parent)).toThrow(/contains/);
    expect(() =>
      checkPaths({
        command: 'sft',
        inputs: [{ option: 'model', path: join(parent, '.out.mil-old-1-ab') }],
        outputs: [{ option: 'out', path: join(parent, 'out') }],
      }),
    ).toThrow(/temporary/);
    const own = join(parent, 'own');
    mkdirSync(own);
    writeFileSync(join(own, 'x'), '');
    expect(plan(own)).toThrow(OutputExistsError);
    expect(plan(own, true)).not.toThrow();
    writeFileSync(join(own, OUTPUT_MARKER), JSON.stringify({ writtenBy: 'mil sft' }));
    expect(plan(own)).not.toThrow();
    writeFileSync(join(own, OUTPUT_MARKER), JSON.stringify({ writtenBy: 'mil dpo' }));
    expect(plan(own)).toThrow(/written by mil dpo/);
  });
});
