/**
 * The corpus layer and the byte-level BPE tokenizer (lib/data/corpus.ts, lib/text/bpe.ts):
 *  - splits are by document, disjoint, cover the corpus, and depend only on the seed;
 *  - folder and .jsonl corpora read, and malformed ones are refused with the file and line;
 *  - encode/decode round-trips every string, and the bytes of the tokens are the text's UTF-8 bytes;
 *  - training picks, at each merge, the most frequent pair — checked against a naive trainer that recounts
 *    every pair from scratch at every merge (independent code);
 *  - the shipped models/tokenizer.json gives the same ids as @huggingface/tokenizers (an independent reader
 *    of the format) on thousands of corpus lines, and loads back to itself.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Tokenizer } from '@huggingface/tokenizers';
import { CorpusError, corpusPart, loadCorpus, splitCorpus } from '../lib/data/corpus.js';
import { BpeTokenizer, END_OF_TEXT, TokenizerFileError, trainBpe } from '../lib/text/bpe.js';
import { SHIPPED_TOKENIZER } from '../lib/cli/train_cmds.js';
import { tmpFolder } from './tmp.js';

const shipped = BpeTokenizer.load(SHIPPED_TOKENIZER);

describe('corpus', () => {
  it('SOTU: 233 speeches split by speech into 209 / 12 / 12, disjoint and covering, the same for the same seed', () => {
    const docs = loadCorpus('sotu');
    expect(docs.length).toBe(233);
    const s = splitCorpus(docs, 0);
    expect([s.train.length, s.validation.length, s.test.length]).toEqual([209, 12, 12]);
    const ids = [...s.train, ...s.validation, ...s.test].map((d) => d.id);
    expect(new Set(ids).size).toBe(233);
    expect(splitCorpus([...docs].reverse(), 0)).toEqual(s); // the order of reading does not matter
    expect(splitCorpus(docs, 1).test.map((d) => d.id)).not.toEqual(s.test.map((d) => d.id));
  });
  it('reads a folder of .txt files and a .jsonl file; refuses bad lines, bad UTF-8 and unknown specs', () => {
    const d = tmpFolder('corpus');
    mkdirSync(join(d, 'txt'));
    writeFileSync(join(d, 'txt', 'b.txt'), 'second');
    writeFileSync(join(d, 'txt', 'a.txt'), 'first');
    writeFileSync(join(d, 'txt', 'skip.md'), 'not text');
    expect(loadCorpus(join(d, 'txt'))).toEqual([
      { id: 'a', text: 'first' },
      { id: 'b', text: 'second' },
    ]);
    writeFileSync(join(d, 'c.jsonl'), '{"text": "one"}\n\n{"id": "x", "text": "two"}\n');
    expect(loadCorpus(join(d, 'c.jsonl')).map((x) => x.text)).toEqual(['one', 'two']);
    writeFileSync(join(d, 'bad.jsonl'), '{"text": "one"}\n{"txt": "two"}\n');
    expect(() => loadCorpus(join(d, 'bad.jsonl'))).toThrow(
      /bad\.jsonl:2: expected a JSON object with a string field "text"/,
    );
    writeFileSync(join(d, 'dup.jsonl'), '{"text": "a", "text": "b"}\n');
    expect(() => loadCorpus(join(d, 'dup.jsonl'))).toThrow(/dup\.jsonl:1: key 'text' appears twice/);
    mkdirSync(join(d, 'latin1'));
    writeFileSync(join(d, 'latin1', 'x.txt'), Buffer.from([0x63, 0x61, 0x66, 0xe9]));
    expect(() => loadCorpus(join(d, 'latin1'))).toThrow(CorpusError);
    expect(() => loadCorpus(join(d, 'nope'))).toThrow(/--data/);
    mkdirSync(join(d, 'empty'));
    expect(() => loadCorpus(join(d, 'empty'))).toThrow(/no \.txt files/);
    // a corpus of two documents holds none out: every split is its training text
    expect(corpusPart(join(d, 'txt'), 'test').length).toBe(2);
  });
});

describe('byte-level BPE', () => {
  it('decode(encode(s)) = s and the tokens’ bytes are s’s UTF-8 bytes, for every string (all of Unicode)', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'grapheme', maxLength: 80 }),
        fc.string({ unit: 'binary', maxLength: 40 }),
        (a, b) => {
          const s = a + b.replace(/[\uD800-\uDFFF]/g, '') + END_OF_TEXT + a;
          const ids = shipped.encode(s);
          expect(shipped.decode(ids)).toBe(s);
          expect(Buffer.from(shipped.decodeBytes(ids)).equals(Buffer.from(s, 'utf8'))).toBe(true);
          expect(ids.filter((i) => i === shipped.endOfText).length).toBe(1 + (a + b).split(END_OF_TEXT).length - 1);
        },
      ),
      { numRuns: 300 },
    );
  });
  it('every byte 0–255 is token id b, so any byte string has a tokenization', () => {
    for (let b = 0; b < 256; b++) expect([...shipped.decodeBytes([b])]).toEqual([b]);
  });
  it('training merges, at every step, the most frequent adjacent pair (a naive trainer recounting from scratch agrees)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.stringMatching(/^[ab c.\n]{0,30}$/), { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 257, max: 300 }),
        (texts, vocab) => {
          expect(trainBpe(texts, { vocabSize: vocab }).merges).toEqual(naiveBpe(texts, vocab - 257));
        },
      ),
      { numRuns: 60 },
    );
  });
  it('the shipped tokenizer: same ids as @huggingface/tokenizers on 3,000 corpus lines; loads back to itself', () => {
    const hf = new Tokenizer(JSON.parse(shipped.toJson()), {});
    const lines = corpusPart('sotu', 'test')
      .flatMap((d) => d.text.split(/(?<=[.;:?!])\s+/))
      .slice(0, 3000);
    expect(lines.length).toBe(3000);
    let differ = 0;
    for (const l of lines) if (JSON.stringify(hf.encode(l).ids) !== JSON.stringify(shipped.encode(l))) differ++;
    expect(differ).toBe(0);
    expect(hf.decode(shipped.encode(lines[7]))).toBe(lines[7]);
    const d = tmpFolder('tok');
    writeFileSync(join(d, 'tokenizer.json'), shipped.toJson());
    expect(BpeTokenizer.load(join(d, 'tokenizer.json')).merges).toEqual(shipped.merges);
    expect(shipped.vocabSize).toBe(2048);
  });
  it('the shipped models/tokenizer.json is exactly what its command makes (mil tokenizer train --data sotu --vocab 2048)', () => {
    const made = trainBpe(
      corpusPart('sotu', 'train').map((d) => d.text),
      { vocabSize: 2048 },
    );
    expect(made.toJson()).toBe(readFileSync(SHIPPED_TOKENIZER, 'utf8'));
  });
  it('a tokenizer.json that is not byte-level BPE laid out with byte b at id b is refused, naming the field', () => {
    const d = tmpFolder('tok');
    const j = JSON.parse(shipped.toJson());
    const write = (o: unknown) => (writeFileSync(join(d, 't.json'), JSON.stringify(o)), join(d, 't.json'));
    expect(() => BpeTokenizer.load(write({ ...j, model: { ...j.model, type: 'WordPiece' } }))).toThrow(/model\.type/);
    expect(() => BpeTokenizer.load(write({ ...j, pre_tokenizer: { type: 'Whitespace' } }))).toThrow(/pre_tokenizer/);
    expect(() => BpeTokenizer.load(write({ ...j, model: { ...j.model, merges: j.model.merges.slice(1) } }))).toThrow(
      TokenizerFileError,
    );
    expect(() => BpeTokenizer.load(write({ ...j, added_tokens: [] }))).toThrow(/added_tokens/);
    writeFileSync(join(d, 'trunc.json'), shipped.toJson().slice(0, 1000));
    expect(() => BpeTokenizer.load(join(d, 'trunc.json'))).toThrow(TokenizerFileError);
    expect(() => BpeTokenizer.load(join(d, 'missing.json'))).toThrow(/missing\.json: cannot read \(ENOENT\)/);
  });
});

/** Independent trainer: pieces by the same pattern, every pair recounted over all pieces at every merge. */
function naiveBpe(texts: string[], merges: number): Array<[number, number]> {
  const PIECE = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
  let words = texts.flatMap((t) => [...t.matchAll(PIECE)].map((m) => [...Buffer.from(m[0], 'utf8')]));
  const out: Array<[number, number]> = [];
  while (out.length < merges) {
    const count = new Map<string, number>();
    for (const w of words)
      for (let i = 0; i + 1 < w.length; i++)
        count.set(`${w[i]},${w[i + 1]}`, (count.get(`${w[i]},${w[i + 1]}`) ?? 0) + 1);
    let best: [number, number] | null = null;
    let bc = 0;
    for (const [k, c] of count) {
      const [a, b] = k.split(',').map(Number) as [number, number];
      if (c > bc || (c === bc && best && a * 65536 + b < best[0] * 65536 + best[1])) {
        best = [a, b];
        bc = c;
      }
    }
    if (!best) break;
    const id = 256 + out.length;
    out.push(best);
    words = words.map((w) => {
      const n: number[] = [];
      for (let i = 0; i < w.length; i++) {
        if (i + 1 < w.length && w[i] === best[0] && w[i + 1] === best[1]) {
          n.push(id);
          i++;
        } else n.push(w[i]);
      }
      return n;
    });
  }
  return out;
}
