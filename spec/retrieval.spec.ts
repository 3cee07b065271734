/**
 * Issue #25 item 4: the retrieval curriculum (lib/data/retrieval.ts, `mil data retrieval`) that teaches a teacher to
 * copy a number from its context before the passkey test. Checked here against the documents themselves: each
 * retrieval document holds its key in its needle and ends by answering it; its length in tokens is within the
 * range asked; the passkey test's wording never appears; repeat documents (a span twice) and prose documents follow
 * each; the seed decides
 * everything; bad options are refused naming them. ~2 s.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { EXIT } from '../lib/cli/exit.js';
import { SHIPPED_TOKENIZER } from '../lib/cli/train_cmds.js';
import { CORPUS_FORMAT, encodeIds, sha256 } from '../lib/data/ids.js';
import { retrievalDocs, TEMPLATES } from '../lib/data/retrieval.js';
import { passkeyTrials } from '../lib/decode/passkey.js';
import { BpeTokenizer } from '../lib/text/bpe.js';
import { runMil } from './cli.js';
import { tmpFolder } from './tmp.js';

afterEach(() => vi.restoreAllMocks());

const tok = BpeTokenizer.load(SHIPPED_TOKENIZER);
// a filler stream of real words (the tokenizer's own merges, so decode → encode roughly round-trips)
const PROSE =
  'The state of the union is strong, and the people of this country have worked hard for many years to build it. ' +
  'Congress has passed new laws on trade, on schools and on the roads that connect our towns and cities. ';
const filler = tok.encode(PROSE.repeat(60));

describe('retrievalDocs', () => {
  const o = { docs: 40, context: 256, minLength: 96, seed: 3 };
  const docs = retrievalDocs(tok, filler, o);

  it('retrieval, repeat and prose documents in turn, of about the same length, 3 · docs in all; a repeat is one span twice', () => {
    expect(docs.length).toBe(3 * o.docs);
    const kinds = ['retrieval', 'repeat', 'prose'];
    expect(docs.map((d) => d.id.split('/')[0])).toEqual(docs.map((_, i) => kinds[i % 3]));
    for (let i = 0; i < docs.length; i += 3) {
      // the prose document is L tokens of filler; the retrieval document L tokens of filler and template, the repeat
      // twice ⌊L/2⌋ (re-encoded text may merge differently at the seams: a few tokens either way)
      const L = tok.encode(docs[i + 2].text).length;
      expect(Math.abs(tok.encode(docs[i].text).length - L)).toBeLessThanOrEqual(8);
      expect(Math.abs(tok.encode(docs[i + 1].text).length - L)).toBeLessThanOrEqual(8);
      const r = docs[i + 1].text;
      const span = r.slice(0, (r.length - 1) / 2);
      expect(r).toBe(`${span}\n${span}`);
      expect(span.length).toBeGreaterThan(0);
      expect(L).toBeGreaterThanOrEqual(o.minLength - 4);
      expect(L).toBeLessThanOrEqual(o.context + 4);
    }
  });

  it('each retrieval document: a template intro first, the needle holding its key, the question answered by that key', () => {
    const used = new Set<number>();
    const digits = new Set<number>();
    for (const d of docs.filter((d) => d.id.startsWith('retrieval/'))) {
      const t = TEMPLATES.findIndex((t) => d.text.startsWith(t.intro));
      expect(t).toBeGreaterThanOrEqual(0);
      used.add(t);
      const m = /(\d+)\.$/.exec(d.text);
      expect(m).not.toBeNull();
      const key = m?.[1] ?? '';
      digits.add(key.length);
      expect(d.text.endsWith(`${TEMPLATES[t].question} ${key}.`)).toBe(true);
      const at = d.text.indexOf(TEMPLATES[t].needle(key));
      expect(at).toBeGreaterThanOrEqual(TEMPLATES[t].intro.length);
      expect(at).toBeLessThan(d.text.length - TEMPLATES[t].question.length);
    }
    expect(used.size).toBe(TEMPLATES.length); // 40 draws reach every template
    expect([...digits].sort()).toEqual([4, 5, 6]);
  });

  it("never the passkey test's wording: its intro, needle and question stay held out", () => {
    const trial = passkeyTrials(tok, filler, { lengths: [200], depths: [0.5], trials: 1, seed: 0 })[0];
    const test = tok.decode(trial.prompt);
    const [intro, question] = [test.split('\n')[0], test.split('\n').at(-1) ?? ''];
    expect(question).toContain('pass key');
    for (const d of docs) {
      expect(d.text.toLowerCase()).not.toContain('pass key');
      expect(d.text).not.toContain(intro);
    }
    for (const t of TEMPLATES) expect((t.intro + t.needle('1') + t.question).toLowerCase()).not.toContain('pass');
  });

  it('the seed decides every document', () => {
    expect(retrievalDocs(tok, filler, o)).toEqual(docs);
    expect(retrievalDocs(tok, filler, { ...o, seed: 4 })).not.toEqual(docs);
  });

  it('bad options are refused naming them', () => {
    expect(() => retrievalDocs(tok, filler, { ...o, docs: 0 })).toThrow(/'--docs'/);
    expect(() => retrievalDocs(tok, filler, { ...o, minLength: 10 })).toThrow(
      /'--min-length': expected a whole number ≥ \d+/,
    );
    expect(() => retrievalDocs(tok, filler, { ...o, context: 90 })).toThrow(/'--context'/);
    expect(() => retrievalDocs(tok, filler.slice(0, 200), o)).toThrow(
      /'filler': expected a token stream of at least 257/,
    );
  });
});

describe('mil data retrieval', () => {
  /** a built corpus (mil data build's format) whose training shard is `filler` in the shipped tokenizer */
  const corpus = (dir: string) => {
    const tj = readFileSync(SHIPPED_TOKENIZER);
    writeFileSync(join(dir, 'tokenizer.json'), tj);
    const part = (name: string, ids: number[]) => {
      const { raw, gz } = encodeIds(Uint16Array.from(ids));
      const file = `${name}-000.u16.gz`;
      writeFileSync(join(dir, file), gz);
      return {
        docs: 1,
        textBytes: 0,
        tokens: ids.length,
        shards: [{ file, docs: 1, tokens: ids.length, sha256: sha256(raw), bytes: gz.length }],
      };
    };
    const manifest = {
      format: CORPUS_FORMAT,
      tokenizer: { file: 'tokenizer.json', vocabSize: tok.vocabSize, sha256: sha256(tj) },
      ids: { dtype: 'uint16', endianness: 'little', compression: 'gzip' },
      parts: {
        train: part('train', filler),
        validation: part('validation', filler.slice(0, 300)),
        test: part('test', filler.slice(0, 300)),
      },
    };
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 1) + '\n');
    return dir;
  };

  it('writes retrieval.jsonl (the documents of retrievalDocs on the training split) and manifest.json; exit 2 for a folder that is no corpus', async () => {
    const dir = tmpFolder('retrieval-cli');
    const c = corpus(tmpFolder('retrieval-corpus'));
    const out = join(dir, 'out');
    const r = await runMil([
      'data',
      'retrieval',
      '--corpus',
      c,
      '--out',
      out,
      '--docs',
      '6',
      '--context',
      '200',
      '--min-length',
      '96',
    ]);
    expect(r.code).toBe(0);
    const lines = readFileSync(join(out, 'retrieval.jsonl'), 'utf8').trim().split('\n');
    expect(lines.map((l) => JSON.parse(l) as unknown)).toEqual(
      retrievalDocs(tok, filler, { docs: 6, context: 200, minLength: 96, seed: 0 }),
    );
    const m = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as Record<string, unknown>;
    expect([m.format, m.documents, m.context]).toEqual(['mil-retrieval/1', 18, 200]);
    const notCorpus = tmpFolder('retrieval-empty');
    const bad = await runMil(['data', 'retrieval', '--corpus', notCorpus, '--out', join(dir, 'o2')]);
    expect(bad.code).toBe(EXIT.usage);
    expect(bad.err).toMatch(/--corpus .* is not a folder made by mil data build/);
    expect(existsSync(join(dir, 'o2'))).toBe(false);
  });
});
