/**
 * Issue #25 item 3: the SFT and DPO sets built from the corpus's dictionary (lib/data/instruct.ts, `mil data
 * instruct`) and the DPO stage reading them (`mil dpo --preferences`: lib/train/dpo.ts fitPair). Definitions out
 * of GCIDE-shaped entries written here; the split as the corpus's (each item in the part of the document that holds
 * its entry); rejected answers another headword's definition of the same part; the command on a fake dictd
 * installation (gcide.index + gcide.dict.dz made here). ~1 s on 2 cores.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { EXIT } from '../lib/cli/main.js';
import { definitionOf, instructionSets, readPreferences } from '../lib/data/instruct.js';
import { partOf } from '../lib/data/build.js';
import { fitPair } from '../lib/train/dpo.js';
import { tmpFolder } from './tmp.js';
import { writeDictd } from './dictd.js';
import { runMil } from './cli.js';

afterEach(() => vi.restoreAllMocks());

/** A GCIDE-shaped entry of `word` defined as `def` (pronunciation, etymology, field label, source mark). */
const entry = (word: string, def: string) =>
  `${word[0].toUpperCase()}${word.slice(1)} \\${word}\\, n. [L. ${word}um.]\n   1. (Zool.) ${def}; as, a ${word} of note. --Ure.\n   [1913 Webster]\n\n   2. Something else.`;

describe('definitions', () => {
  it('the first sense of the first paragraph, its headword, etymology, label, sense number and citation dropped', () => {
    expect(definitionOf(entry('aardvark', 'An edentate mammal of Southern Africa'))).toEqual({
      word: 'aardvark',
      definition: 'An edentate mammal of Southern Africa.',
    });
    expect(definitionOf('Serpolet \\Ser"po*let\\, n. [F.] (Bot.) Wild thyme growing wild.')).toEqual({
      word: 'serpolet',
      definition: 'Wild thyme growing wild.',
    });
    // unusable: a two-word headword, a definition under 3 words, one that is a parenthesis
    expect(definitionOf('Calyptranthes Jambolana, n. A myrtaceous tree of the West Indies.')).toBeUndefined();
    expect(definitionOf('Ox, n. A beast.')).toBeUndefined();
    expect(definitionOf('Basihyal, n. (the letter "upsilon").')).toBeUndefined();
  });
});

/** 1,000 entries (2.5 corpus documents of 400), every word distinct, every definition distinct. */
const ENTRIES = Array.from({ length: 1000 }, (_, i) => ({
  text: entry(
    `word${String.fromCharCode(97 + (i % 26))}${String.fromCharCode(97 + (Math.floor(i / 26) % 26))}${String.fromCharCode(97 + Math.floor(i / 676))}`,
    `The thing numbered ${i} in this list`,
  ),
}));

describe('instruction sets', () => {
  const o = { source: 'gcide', seed: 3, heldOut: 0.4, pairSeed: 1 };
  const sets = instructionSets(ENTRIES, o);
  it('every item in the part of the corpus document that holds its entry (gcide/NNNNN, 400 entries a document)', () => {
    const want = { train: [] as number[], validation: [] as number[], test: [] as number[] };
    for (let i = 0; i < 1000; i++) want[partOf(`gcide/0000${Math.floor(i / 400)}`, 3, 0.4)].push(i);
    for (const part of ['train', 'validation', 'test'] as const) {
      const got = sets.sft[part].map((d) => Number(/numbered (\d+) /.exec(d.text)![1]));
      expect(got).toEqual(want[part]);
      expect(sets.dpo[part].length).toBe(want[part].length < 2 ? 0 : want[part].length);
    }
    expect(sets.sft.train[0].text).toMatch(
      /^Question: What does "word[a-z]+" mean\?\nAnswer: The thing numbered \d+ in this list\.$/,
    );
  });
  it('DPO: chosen the word’s own definition, rejected another word’s of the same part; deterministic by seed', () => {
    for (const part of ['train', 'validation', 'test'] as const) {
      const defs = new Set(sets.sft[part].map((d) => d.text.split('Answer:')[1]));
      sets.dpo[part].forEach((p, i) => {
        expect(p.prompt + p.chosen).toBe(sets.sft[part][i].text);
        expect(p.rejected).not.toBe(p.chosen);
        expect(defs.has(p.rejected)).toBe(true);
      });
    }
    expect(instructionSets(ENTRIES, o)).toEqual(sets);
    expect(instructionSets(ENTRIES, { ...o, pairSeed: 2 }).dpo.train).not.toEqual(sets.dpo.train);
  });
  it('a headword defined twice: its first entry only', () => {
    const s = instructionSets(
      [{ text: entry('aardvark', 'The first one of two') }, { text: entry('aardvark', 'The second one of two') }],
      o,
    );
    const all = [...s.sft.train, ...s.sft.validation, ...s.sft.test];
    expect(all.map((d) => d.text)).toEqual(['Question: What does "aardvark" mean?\nAnswer: The first one of two.']);
  });
});

describe('mil dpo --preferences: fixed-length pairs', () => {
  it("the prompt's last P tokens, left-padded; each continuation's first C tokens, right-padded", () => {
    expect(fitPair({ prompt: [1, 2, 3, 4, 5], chosen: [6], rejected: [7, 8, 9, 10] }, 3, 2, 0)).toEqual({
      prompt: [3, 4, 5],
      chosen: [6, 0],
      rejected: [7, 8],
    });
    expect(fitPair({ prompt: [1], chosen: [6, 7], rejected: [8, 9] }, 3, 2, 0).prompt).toEqual([0, 0, 1]);
  });
  it('a line that is not a preference, or too few of them, is a CorpusError naming the file and line', () => {
    const d = tmpFolder('prefs');
    const f = join(d, 'dpo.jsonl');
    writeFileSync(f, '{"prompt":"a","chosen":"b","rejected":"c"}\n{"prompt":"a"}\n');
    expect(() => readPreferences(f, 2)).toThrow(/dpo\.jsonl: line 2 is not/);
    writeFileSync(f, '{"prompt":"a","chosen":"b","rejected":"c"}\n');
    expect(() => readPreferences(f, 2)).toThrow(/1 preferences, fewer than the 2/);
  });
});

describe('mil data instruct', () => {
  /** A fake installation of dict-gcide below a fresh root (dictd index: word, offset and length in base 64). */
  function makeRoot(): string {
    const root = tmpFolder('gcide');
    writeDictd(
      root,
      'gcide',
      ENTRIES.slice(0, 50).map((e) => e.text + '\n'),
      (i) => `w${i}`,
    );
    return root;
  }
  it('writes the sets, split with data build’s defaults; a root without dict-gcide exits 6 naming the package', async () => {
    const root = makeRoot();
    const out = join(tmpFolder('instruct'), 'set');
    const r = await runMil(['data', 'instruct', '--out', out, '--root', root]);
    expect(r.code, r.err).toBe(EXIT.ok);
    const want = instructionSets(ENTRIES.slice(0, 50), { source: 'gcide', seed: 0, heldOut: 0.02, pairSeed: 0 });
    const lines = (f: string) =>
      readFileSync(join(out, f), 'utf8')
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as unknown);
    expect(lines('sft.jsonl')).toEqual(want.sft.train);
    expect(lines('dpo.jsonl')).toEqual(want.dpo.train);
    expect(JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'))).toMatchObject({
      sft: { train: want.sft.train.length },
    });
    const missing = await runMil(['data', 'instruct', '--out', join(root, 'x'), '--root', tmpFolder('empty')]);
    expect(missing.code).toBe(EXIT.io);
    expect(missing.err).toMatch(/dict-gcide/);
    expect(existsSync(join(root, 'x'))).toBe(false);
  });
});
