/**
 * Issue #25 item 4: the passkey test (lib/decode/passkey.ts) and `mil passkey`. The prompts' layout (lengths
 * outer, depths inner, trials innermost; each exactly its length; the needle where the depth puts it), their
 * determinism by seed, and the scoring against stub models written here — one that reads the key out of the prompt
 * (100%), one that never does (0%), one that sees only short prompts (a row pattern) — then the command on a tiny
 * random model (reference backend): JSON and heat-map written, bad options refused with exit 2 naming them.
 *
 * A 300-token tokenizer and tiny models; ~2 s on 2 cores.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { EXIT } from '../lib/cli/main.js';
import { saveModel } from '../lib/model/convert.js';
import { randomLlama } from '../lib/model/random.js';
import { trainBpe, type BpeTokenizer } from '../lib/text/bpe.js';
import { passkeyAccuracy, passkeyTrials, type Answerer } from '../lib/decode/passkey.js';
import { Rng } from '../lib/rng.js';
import { tmpFolder } from './tmp.js';
import { runMil } from './cli.js';
import { lastOf } from '../lib/checked.js';

afterEach(() => vi.restoreAllMocks());

const WORDS = 'the union is strong and the people of the states have made it so by their work and their law'.split(' ');
/** Seeded prose of WORDS, `n` documents. */
function prose(n: number, seed: number): string[] {
  const r = new Rng(seed);
  return Array.from({ length: n }, () => Array.from({ length: 60 }, () => WORDS[r.int(0, WORDS.length - 1)]).join(' '));
}
const tok: BpeTokenizer = trainBpe(
  [...prose(10, 1), 'There is a pass key hidden. What is the pass key? 0123456789 Remember it.'],
  { vocabSize: 300 },
);
const filler = tok.encode(prose(6, 2).join(' '));
const GRID = { lengths: [200, 260], depths: [0, 0.5, 1], trials: 2, seed: 4 };

/** The key a prompt hides, read from its text (independently of the trial record). */
const keyIn = (prompt: number[]) => /The pass key is (\d+)\./.exec(tok.decode(prompt))![1];
/** A stub model answering `text(prompt)`. */
const stub =
  (text: (prompt: number[]) => string): Answerer =>
  async (prompt) =>
    tok.encode(text(prompt));

describe('passkey prompts', () => {
  it('lengths outer, depths inner, trials innermost; each prompt exactly its length; the needle at depth·filler after the intro', () => {
    const t = passkeyTrials(tok, filler, GRID);
    expect(t.map((x) => [x.length, x.depth])).toEqual(
      [200, 260].flatMap((l) =>
        [0, 0.5, 1].flatMap((d) => [
          [l, d],
          [l, d],
        ]),
      ),
    );
    const intro = tok.encode('There is a pass key hidden inside a lot of irrelevant text. Find it and remember it.\n');
    const question = tok.encode('\nWhat is the pass key? The pass key is');
    for (const x of t) {
      expect(x.prompt.length).toBe(x.length);
      expect(x.key).toMatch(/^\d{5}$/);
      expect(keyIn(x.prompt)).toBe(x.key);
      const nd = tok.encode(`\nThe pass key is ${x.key}. Remember it. ${x.key} is the pass key.\n`);
      expect(x.prompt.slice(x.needleAt, x.needleAt + nd.length)).toEqual(nd);
      const F = x.length - intro.length - nd.length - question.length;
      expect(x.needleAt).toBe(intro.length + Math.round(x.depth * F));
      expect(x.prompt.slice(0, intro.length)).toEqual(intro);
      expect(x.prompt.slice(-question.length)).toEqual(question);
    }
  });
  it('deterministic by seed: the same seed, the same prompts; another seed, other keys', () => {
    expect(passkeyTrials(tok, filler, GRID)).toEqual(passkeyTrials(tok, filler, GRID));
    const a = passkeyTrials(tok, filler, GRID).map((x) => x.key);
    const b = passkeyTrials(tok, filler, { ...GRID, seed: 5 }).map((x) => x.key);
    expect(a).not.toEqual(b);
  });
  it('a length too short for the intro, needle and question is refused naming it', () => {
    expect(() => passkeyTrials(tok, filler, { ...GRID, lengths: [20] })).toThrow(/--context × --multiples/);
  });
});

describe('passkey scoring', () => {
  const trials = passkeyTrials(tok, filler, GRID);
  it('a model that reads the key out of the prompt scores 100% in every cell; one that answers 00000, 0%', async () => {
    const right = await passkeyAccuracy(
      tok,
      trials,
      stub((p) => ` ${keyIn(p)}.`),
    );
    expect(right.map((c) => [c.length, c.depth, c.trials, c.accuracy])).toEqual(
      [200, 260].flatMap((l) => [0, 0.5, 1].map((d) => [l, d, 2, 1])),
    );
    const wrong = await passkeyAccuracy(
      tok,
      trials,
      stub(() => ' 00000'),
    );
    expect(wrong.every((c) => c.accuracy === 0 && c.correct === 0)).toBe(true);
  });
  it('a model that sees only prompts of ≤ 230 tokens: row 200 at 100%, row 260 at 0%; a key followed by a digit is wrong', async () => {
    const cells = await passkeyAccuracy(
      tok,
      trials,
      stub((p) => (p.length <= 230 ? ` ${keyIn(p)}` : ' no idea')),
    );
    expect(cells.map((c) => c.accuracy)).toEqual([1, 1, 1, 0, 0, 0]);
    const longer = await passkeyAccuracy(
      tok,
      trials,
      stub((p) => ` ${keyIn(p)}7`),
    );
    expect(longer.every((c) => c.accuracy === 0)).toBe(true);
  });
});

describe('mil passkey', () => {
  function fixture() {
    const parent = tmpFolder('passkey');
    const data = join(parent, 'd.jsonl');
    writeFileSync(
      data,
      prose(8, 3)
        .map((text, i) => JSON.stringify({ id: `d${i}`, text }))
        .join('\n') + '\n',
    );
    const dirs = ['teacher', 'other'].map((name, i) => {
      const dir = join(parent, name);
      const m = randomLlama(
        { vocab: tok.vocabSize, hidden: 16, intermediate: 32, layers: 2, heads: 2, kvHeads: 1, maxPositions: 64 },
        i,
      );
      saveModel(dir, m, { extra: [['tokenizer.json', tok.toJson()]] });
      return dir;
    });
    return { parent, data, dirs };
  }
  const base = (dirs: string[], data: string) => [
    'passkey',
    '--model',
    dirs.join(','),
    '--data',
    data,
    '--split',
    'validation',
    '--backend',
    'reference',
    '--context',
    '100',
    '--multiples',
    '2',
    '--depths',
    '0,1',
    '--trials',
    '2',
  ];
  it('every model on the same trials: passkey.json with a cell per (length, depth) and the heat-map, both models named', async () => {
    const { parent, data, dirs } = fixture();
    const out = join(parent, 'out');
    const r = await runMil([...base(dirs, data), '--out', out, '--json']);
    expect(r.code, r.err).toBe(EXIT.ok);
    const rep = JSON.parse(readFileSync(join(out, 'passkey.json'), 'utf8')) as {
      context: number;
      lengths: number[];
      models: Array<{ name: string; cells: Array<{ length: number; depth: number; trials: number }> }>;
    };
    expect(JSON.parse(lastOf(r.out.trim().split('\n')))).toEqual(rep);
    expect(rep.context).toBe(100);
    expect(rep.lengths).toEqual([200]); // 2 × --context: past the models' max_position_embeddings (64), on purpose
    expect(rep.models.map((m) => m.name)).toEqual(['teacher', 'other']);
    for (const m of rep.models)
      expect(m.cells.map((c) => [c.length, c.depth, c.trials])).toEqual([
        [200, 0, 2],
        [200, 1, 2],
      ]);
    const svg = readFileSync(join(out, 'passkey.svg'), 'utf8');
    expect(svg).toMatch(/^<svg/);
    expect(svg).toContain('>teacher<');
    expect(svg).toContain('>other<');
  });
  it('bad options exit 2 naming them, before anything is written', async () => {
    const { parent, data, dirs } = fixture();
    const out = join(parent, 'out');
    const cases: Array<[string[], RegExp]> = [
      [['passkey'], /--model/],
      [[...base(dirs, data), '--depths', '0,2'], /--depths/],
      [[...base(dirs, data), '--trials', '0'], /--trials/],
      [[...base(dirs, data), '--context', '8'], /--context × --multiples/],
      [[...base(dirs, data), '--backend', 'gpu9'], /--backend/],
    ];
    for (const [args, msg] of cases) {
      // an option given twice is itself refused: the later value replaces the base's (dedupe)
      const r = await runMil([...dedupe(args), '--out', out]);
      expect(r.code, `${args.join(' ')}\n${r.err}`).toBe(EXIT.usage);
      expect(r.err).toMatch(msg);
      expect(existsSync(out)).toBe(false);
    }
  });
});

/** `args` with each option's earlier value dropped where it is given again (the later one wins). */
function dedupe(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i].startsWith('--') && i + 1 < args.length && !args[i + 1].startsWith('--')) {
      const later = args.indexOf(args[i], i + 2);
      if (later > 0) {
        i++;
        continue;
      }
      out.push(args[i], args[i + 1]);
      i++;
    } else out.push(args[i]);
  }
  return out;
}
