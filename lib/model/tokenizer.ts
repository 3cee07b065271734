/**
 * Tokenizers. Models in this project ship without one, so text goes through a byte-level tokenizer
 * (token id = UTF-8 byte, 0–255) when the vocabulary has at least 256 entries; otherwise only token ids
 * are accepted (--prompt-ids), and the error says so.
 */
import { ArgumentError } from '../errors.js';

export interface Tokenizer {
  encode(text: string): number[];
  decode(ids: number[]): string;
}

export const byteTokenizer: Tokenizer = {
  encode: (text) => [...new TextEncoder().encode(text)],
  decode: (ids) => new TextDecoder('utf-8', { fatal: false }).decode(Uint8Array.from(ids.filter((i) => i >= 0 && i < 256))),
};

export function tokenizerFor(vocabSize: number): Tokenizer | null {
  return vocabSize >= 256 ? byteTokenizer : null;
}

export function parseIds(s: string, vocabSize: number): number[] {
  const ids = s.split(',').map((x) => x.trim()).filter(Boolean).map(Number);
  if (ids.length === 0 || ids.some((i) => !Number.isInteger(i) || i < 0 || i >= vocabSize)) {
    throw new ArgumentError('--prompt-ids', `comma-separated token ids in [0, ${vocabSize})`, s);
  }
  return ids;
}
