/**
 * Tokenizers. A model folder with a `tokenizer.json` (the trained models under models/) uses it
 * (lib/text/bpe.ts); one without goes through a byte-level tokenizer (token id = UTF-8 byte, 0–255) when
 * the vocabulary has at least 256 entries; otherwise only token ids are accepted (--prompt-ids), and the
 * error says so.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ArgumentError } from '../errors.js';
import { BpeTokenizer } from '../text/bpe.js';

export interface Tokenizer {
  encode(text: string): number[];
  decode(ids: number[]): string;
}

export const byteTokenizer: Tokenizer = {
  encode: (text) => [...new TextEncoder().encode(text)],
  decode: (ids) =>
    new TextDecoder('utf-8', { fatal: false }).decode(Uint8Array.from(ids.filter((i) => i >= 0 && i < 256))),
};

export function tokenizerFor(vocabSize: number): Tokenizer | null {
  return vocabSize >= 256 ? byteTokenizer : null;
}

/** The tokenizer of a model folder: its tokenizer.json (which must match the vocabulary), else `tokenizerFor`. */
export function modelTokenizer(dir: string, vocabSize: number): Tokenizer | null {
  const p = join(dir, 'tokenizer.json');
  if (!existsSync(p)) return tokenizerFor(vocabSize);
  const t = BpeTokenizer.load(p);
  if (t.vocabSize !== vocabSize)
    throw new ArgumentError('tokenizer.json', `a vocabulary of ${vocabSize} (config.json's vocab_size)`, t.vocabSize);
  return t;
}

export function parseIds(s: string, vocabSize: number): number[] {
  const ids = s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)
    .map(Number);
  if (ids.length === 0 || ids.some((i) => !Number.isInteger(i) || i < 0 || i >= vocabSize)) {
    throw new ArgumentError('--prompt-ids', `comma-separated token ids in [0, ${vocabSize})`, s);
  }
  return ids;
}
