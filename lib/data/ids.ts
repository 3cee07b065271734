/**
 * A built corpus folder (`mil data build`, lib/data/build.ts) and how training reads it without tokenizing.
 *
 *   manifest.json   format `mil-corpus/1`: the seed, the tokenizer's sha-256, the parts and their shards, the
 *                   sources with package versions, licences and figures, the dedup and Brown-overlap figures
 *   tokenizer.json  the byte-level BPE the ids are in (lib/text/bpe.ts)
 *   PART-NNN.u16.gz token ids of one part (train, validation, test), uint16 little-endian, gzip-compressed;
 *                   documents follow each other, each ended by `<|endoftext|>`; a part is cut into shards of
 *                   about `shardTokens` tokens at document ends, so a run can take the first few
 *
 * Reading checks each shard against the manifest (its token count and the sha-256 of its uncompressed bytes)
 * and every id against the vocabulary: a shard that differs is a CorpusError naming the file.
 */
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { endianness } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { readJsonObject, readRegularFile } from '../io/json.js';
import { CorpusError } from './corpus.js';

export const CORPUS_FORMAT = 'mil-corpus/1';
export const CORPUS_PARTS = ['train', 'validation', 'test'] as const;
export type CorpusPart = (typeof CORPUS_PARTS)[number];

export interface Shard {
  file: string;
  docs: number;
  tokens: number;
  /** sha-256 of the uncompressed uint16 bytes */
  sha256: string;
  /** size of the file (gzip) */
  bytes: number;
}

export interface PartInfo {
  docs: number;
  /** UTF-8 bytes of the part's text */
  textBytes: number;
  tokens: number;
  shards: Shard[];
}

export interface CorpusManifest {
  format: typeof CORPUS_FORMAT;
  tokenizer: { file: string; vocabSize: number; sha256: string; [more: string]: unknown };
  ids: { dtype: 'uint16'; endianness: 'little'; compression: 'gzip' };
  parts: Record<CorpusPart, PartInfo>;
  [more: string]: unknown;
}

export const sha256 = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');

/** Token ids as uint16 little-endian bytes, gzip level 9 (ids must be < 65536). */
export function encodeIds(ids: Uint16Array): { raw: Uint8Array; gz: Uint8Array } {
  const raw = new Uint8Array(ids.length * 2);
  const view = new DataView(raw.buffer);
  for (let i = 0; i < ids.length; i++) view.setUint16(2 * i, ids[i], true);
  return { raw, gz: gzipSync(raw, { level: 9 }) };
}

/** Token ids from a gzip-compressed uint16 little-endian file's bytes, and the sha-256 of the uncompressed bytes. */
export function decodeIds(gz: Uint8Array, file: string): { ids: Uint16Array; sha256: string } {
  let raw: Buffer;
  try {
    raw = gunzipSync(gz);
  } catch (e) {
    throw new CorpusError(file, `not a gzip file (${(e as Error).message})`);
  }
  if (raw.length % 2 !== 0) throw new CorpusError(file, `${raw.length} bytes: not a whole number of uint16 ids`);
  let out: Uint16Array;
  if (endianness() === 'LE')
    out = new Uint16Array(Uint8Array.from(raw).buffer); // a copy, so 2-byte aligned
  else {
    out = new Uint16Array(raw.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = raw.readUInt16LE(2 * i);
  }
  return { ids: out, sha256: sha256(raw) };
}

/** Whether `dir` is a built corpus folder (it has a manifest.json). */
export function isBuiltCorpus(dir: string): boolean {
  return existsSync(join(dir, 'manifest.json')) && statSync(dir).isDirectory();
}

/** The manifest of a built corpus folder, its shape checked. */
export function readManifest(dir: string): CorpusManifest {
  const path = join(dir, 'manifest.json');
  const m = readJsonObject(path, (p) => new CorpusError(path, p));
  if (m.format !== CORPUS_FORMAT)
    throw new CorpusError(path, `format is ${JSON.stringify(m.format)}, expected "${CORPUS_FORMAT}"`);
  const parts = m.parts as Record<string, { shards?: unknown }> | undefined;
  for (const p of CORPUS_PARTS)
    if (!parts?.[p] || !Array.isArray(parts[p].shards)) throw new CorpusError(path, `parts.${p}.shards missing`);
  const tok = m.tokenizer as { file?: unknown; sha256?: unknown; vocabSize?: unknown } | undefined;
  if (typeof tok?.file !== 'string' || typeof tok.sha256 !== 'string' || typeof tok.vocabSize !== 'number')
    throw new CorpusError(path, 'tokenizer.file, tokenizer.sha256 and tokenizer.vocabSize are needed');
  return m as unknown as CorpusManifest;
}

/**
 * The token ids of one part of a built corpus, every shard checked (see the file comment); `shards` takes only
 * the first so many of the part's shards.
 */
export function readPart(dir: string, part: CorpusPart, o: { shards?: number } = {}): number[] {
  const m = readManifest(dir);
  const shards = m.parts[part].shards.slice(0, o.shards ?? Infinity);
  const out = new Array<number>(shards.reduce((a, s) => a + s.tokens, 0));
  let at = 0;
  for (const s of shards) {
    const file = join(dir, s.file);
    const gz = readRegularFile(file, 1 << 30);
    const { ids, sha256: got } = decodeIds(gz, file);
    if (ids.length !== s.tokens) throw new CorpusError(file, `${ids.length} token ids, the manifest says ${s.tokens}`);
    if (got !== s.sha256) throw new CorpusError(file, `sha-256 of its ids is ${got}, the manifest says ${s.sha256}`);
    const V = m.tokenizer.vocabSize;
    for (let i = 0; i < ids.length; i++) {
      if (ids[i] >= V) throw new CorpusError(file, `token id ${ids[i]} at index ${i} is not below the vocabulary ${V}`);
      out[at++] = ids[i];
    }
  }
  return out;
}
