/**
 * Tokenizers. A model folder with a `tokenizer.json` uses it: this project's own byte-level BPE scheme
 * (the trained models under models/, lib/text/bpe.ts) or any Hugging Face tokenizer.json of the Llama
 * families (lib/text/hf_tokenizer.ts; a component it lacks is refused by name); one without goes through a byte-level tokenizer (token id = UTF-8 byte, 0–255) when
 * the vocabulary has at least 256 entries; otherwise only token ids are accepted (--prompt-ids), and the
 * error says so.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ArgumentError } from '../errors.js';
import { readJsonObject } from '../io/json.js';
import { BpeTokenizer, END_OF_TEXT, TokenizerFileError } from '../text/bpe.js';
import { HfTokenizer } from '../text/hf_tokenizer.js';

export interface Tokenizer {
  encode(text: string): number[];
  decode(ids: number[]): string;
  readonly vocabSize?: number;
}

/**
 * A tokenizer.json file, or a folder holding one: this project's scheme when the file is laid out as
 * `BpeTokenizer.toJson` writes it (byte-level pre-tokenizer, byte b at id b, `<|endoftext|>` added),
 * else read as a Hugging Face file.
 */
export function loadTokenizer(fileOrDir: string): BpeTokenizer | HfTokenizer {
  const path = existsSync(join(fileOrDir, 'tokenizer.json')) ? join(fileOrDir, 'tokenizer.json') : fileOrDir;
  const j = readJsonObject(path, (p) => new TokenizerFileError(path, p));
  const added = Array.isArray(j.added_tokens) ? (j.added_tokens as Array<{ content?: unknown }>) : [];
  const vocab = (j.model as { vocab?: Record<string, unknown> } | undefined)?.vocab;
  const own =
    added.length === 1 &&
    added[0].content === END_OF_TEXT &&
    vocab?.['Ā'] === 0 &&
    (j.pre_tokenizer as { type?: unknown } | null)?.type === 'ByteLevel';
  return own ? BpeTokenizer.fromObject(j, path) : new HfTokenizer(j, path);
}

export const byteTokenizer: Tokenizer = {
  encode: (text) => [...new TextEncoder().encode(text)],
  decode: (ids) =>
    new TextDecoder('utf-8', { fatal: false }).decode(Uint8Array.from(ids.filter((i) => i >= 0 && i < 256))),
};

function tokenizerFor(vocabSize: number): Tokenizer | null {
  return vocabSize >= 256 ? byteTokenizer : null;
}

/** The tokenizer of a model folder: its tokenizer.json (which must match the vocabulary), else `tokenizerFor`. */
export function modelTokenizer(dir: string, vocabSize: number): Tokenizer | null {
  const p = join(dir, 'tokenizer.json');
  if (!existsSync(p)) return tokenizerFor(vocabSize);
  const t = loadTokenizer(p);
  if (t.vocabSize !== vocabSize)
    throw new ArgumentError('tokenizer.json', `a vocabulary of ${vocabSize} (config.json's vocab_size)`, t.vocabSize);
  return t;
}

/**
 * The tokenizer `mil generate` uses for model folder `dir`, the one `mil eval` uses too: its tokenizer.json;
 * else `shipped` (the repository's tokenizer, eval's fallback) when its vocabulary is the model's; else byte
 * tokens (vocabulary ≥ 256) or none. A fallback is never silent: `note` gets a line naming it.
 */
export function folderTokenizer(
  dir: string,
  vocabSize: number,
  shipped: string,
  note: (line: string) => void,
): Tokenizer | null {
  if (existsSync(join(dir, 'tokenizer.json'))) return modelTokenizer(dir, vocabSize);
  if (existsSync(shipped)) {
    const t = loadTokenizer(shipped);
    if (t.vocabSize === vocabSize) {
      note(`note: ${dir} has no tokenizer.json: using ${shipped} (vocabulary ${vocabSize}), as mil eval does`);
      return t;
    }
  }
  const b = tokenizerFor(vocabSize);
  if (b)
    note(
      `note: ${dir} has no tokenizer.json (and ${shipped} has another vocabulary): text is read as UTF-8 byte tokens, id = byte`,
    );
  return b;
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
