/**
 * `mil data build`: the training corpus of issue #25 from installed Debian packages (lib/data/sources.ts),
 * deterministic from its seed, written as compact token ids that travel to a GPU machine (lib/data/ids.ts).
 *
 *   1. read      every source's documents (lib/data/extract.ts turns markup into paragraphs); a missing
 *                package is a MissingSourceError before any other work, a file that is not UTF-8 a CorpusError
 *                naming the file and byte offset
 *   2. clean     per paragraph, in document-id order: dropped when it is junk (under half of its visible
 *                characters letters, for paragraphs of 20+ characters, or no word at all), an exact duplicate
 *                (the same lower-cased word sequence seen before), a near duplicate (MinHash of its word
 *                5-gram shingles, K = 32 hashes in 8 bands of 4: a paragraph whose band matches an earlier
 *                paragraph and whose estimated Jaccard similarity with it is ≥ 0.7; paragraphs of 12+ words),
 *                or when it shares a word 13-gram with the held-out evaluation texts (`exclude`: the
 *                project's held-out set, docs/data.md; no part of this corpus may contain them)
 *   3. split     by document: u = the first 48 bits of sha-256("SEED:ID") / 2^48; u < heldOut/2 validation,
 *                u < heldOut test, else train (a document's part depends on its id and the seed only)
 *   4. tokenize  byte-level BPE (lib/text/bpe.ts) of `vocab` tokens trained on the training part — on a
 *                seeded sample of its documents (those of smallest sha-256("SEED:tok:ID")) up to
 *                `tokenizerBytes` of text — then every part encoded, documents in order of u, each followed by
 *                `<|endoftext|>`, cut into shards of about `shardTokens` ids at document ends
 *   5. write     tokenizer.json, PART-NNN.u16.gz and manifest.json through the one writer (writeFolder);
 *                the same packages and seed give the same bytes
 */
import { createHash } from 'node:crypto';
import { writeFolder } from '../io/writer.js';
import { ArgumentError } from '../errors.js';
import { trainBpe } from '../text/bpe.js';
import type { Doc } from './corpus.js';
import { paragraphs } from './extract.js';
import {
  CORPUS_FORMAT,
  CORPUS_PARTS,
  encodeIds,
  sha256,
  type CorpusManifest,
  type CorpusPart,
  type PartInfo,
  type Shard,
} from './ids.js';
import { SOURCES, excludedDocs, installedVersions, sourceVersion } from './sources.js';

export interface BuildOptions {
  /** folder below which the packages are installed ('/' unless a test gives a fake one) */
  root: string;
  seed: number;
  /** fraction of documents held out (half validation, half test) */
  heldOut: number;
  vocab: number;
  /** text bytes the tokenizer trains on (a seeded sample of the training part); 0: all of it */
  tokenizerBytes: number;
  shardTokens: number;
  /** names of the sources to read (default all of SOURCES) */
  sources?: string[];
  /** a folder of held-out tagged texts (ca01 …) whose word 13-grams no kept paragraph may share */
  exclude: string;
  /** the command line, recorded in the manifest */
  command: string;
  log: (line: string) => void;
}

/** 32-bit FNV-1a of a string's UTF-16 units, finished by murmur3's fmix32. */
function hash32(s: string, seed = 0): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return fmix(h);
}
function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
/** A 53-bit key from a run of 32-bit hashes (two independent 32-bit combinations). */
function key53(hs: ArrayLike<number>, from: number, n: number): number {
  let a = 0x9747b28c;
  let b = 0x2545f491;
  for (let i = from; i < from + n; i++) {
    a = fmix(Math.imul(a ^ hs[i], 0x01000193));
    b = fmix((b + Math.imul(hs[i], 0x27d4eb2f)) >>> 0);
  }
  return (a >>> 0) * 2097152 + (b & 0x1fffff);
}

/** Lower-cased words (letters and digits) of a paragraph, and their 32-bit hashes. */
function wordHashes(p: string): Uint32Array {
  const ws = p.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
  const out = new Uint32Array(ws.length);
  for (let i = 0; i < ws.length; i++) out[i] = hash32(ws[i]);
  return out;
}

const SHINGLE = 5;
const MINHASH_K = 32;
const BANDS = 8;
const ROWS = MINHASH_K / BANDS;
const NEAR_JACCARD = 0.7;
const NEAR_MIN_WORDS = 12;
const MINHASH_SEEDS = Uint32Array.from({ length: MINHASH_K }, (_, k) => fmix((k + 1) * 0x9e3779b9));

/** Exact and near-duplicate paragraphs (see the file comment, step 2); `check` says what a paragraph is. */
export class Deduper {
  private readonly exact = new Set<number>();
  private readonly bands = Array.from({ length: BANDS }, () => new Map<number, number>());
  private sigs = new Uint32Array(MINHASH_K * 1024);
  private nSigs = 0;

  /** 'exact' / 'near' for a duplicate of an earlier paragraph, else 'new' (and it is remembered). */
  check(words: Uint32Array): 'new' | 'exact' | 'near' {
    const k = key53(words, 0, words.length);
    if (this.exact.has(k)) return 'exact';
    this.exact.add(k);
    if (words.length < NEAR_MIN_WORDS) return 'new';
    const sig = new Uint32Array(MINHASH_K).fill(0xffffffff);
    for (let i = 0; i + SHINGLE <= words.length; i++) {
      const x = key53(words, i, SHINGLE) % 4294967296;
      for (let j = 0; j < MINHASH_K; j++) {
        const v = fmix((x ^ MINHASH_SEEDS[j]) >>> 0);
        if (v < sig[j]) sig[j] = v;
      }
    }
    const keys: number[] = [];
    for (let b = 0; b < BANDS; b++) {
      const bk = key53(sig, b * ROWS, ROWS);
      keys.push(bk);
      const cand = this.bands[b].get(bk);
      if (cand !== undefined) {
        let same = 0;
        for (let j = 0; j < MINHASH_K; j++) if (this.sigs[cand * MINHASH_K + j] === sig[j]) same++;
        if (same / MINHASH_K >= NEAR_JACCARD) return 'near';
      }
    }
    if ((this.nSigs + 1) * MINHASH_K > this.sigs.length) {
      const grown = new Uint32Array(this.sigs.length * 2);
      grown.set(this.sigs);
      this.sigs = grown;
    }
    this.sigs.set(sig, this.nSigs * MINHASH_K);
    keys.forEach((bk, b) => {
      if (!this.bands[b].has(bk)) this.bands[b].set(bk, this.nSigs);
    });
    this.nSigs++;
    return 'new';
  }
}

const NGRAM = 13;

/** The Brown corpus's word 13-grams, to find paragraphs that share one (see the file comment, step 2). */
export class HeldOutIndex {
  private readonly grams = new Map<number, number>(); // 13-gram key → index of the first Brown text holding it
  private readonly hit = new Set<number>();
  readonly gramsPerDoc: number[];

  constructor(readonly docs: Doc[]) {
    this.gramsPerDoc = docs.map((d, di) => {
      let n = 0;
      for (const p of paragraphs(d.text)) {
        const w = wordHashes(p);
        for (let i = 0; i + NGRAM <= w.length; i++) {
          const k = key53(w, i, NGRAM);
          if (!this.grams.has(k)) {
            this.grams.set(k, di);
            n++;
          }
        }
      }
      return n;
    });
  }

  get size(): number {
    return this.grams.size;
  }

  /** Whether a paragraph shares a 13-gram with Brown (each shared 13-gram is counted once in `overlap`). */
  contains(words: Uint32Array): boolean {
    let found = false;
    for (let i = 0; i + NGRAM <= words.length; i++) {
      const k = key53(words, i, NGRAM);
      if (this.grams.has(k)) {
        found = true;
        this.hit.add(k);
      }
    }
    return found;
  }

  /** Forget the 13-grams found so far (before checking another text). */
  resetOverlap(): void {
    this.hit.clear();
  }

  /** Brown 13-grams found in the text checked so far, in all and per Brown text (those with any). */
  overlap(): { grams: number; fraction: number; docs: Array<{ id: string; grams: number; fraction: number }> } {
    const per = new Map<number, number>();
    for (const k of this.hit) {
      const d = this.grams.get(k)!;
      per.set(d, (per.get(d) ?? 0) + 1);
    }
    return {
      grams: this.hit.size,
      fraction: this.hit.size / Math.max(1, this.grams.size),
      docs: [...per]
        .sort((a, b) => b[1] - a[1] || a[0] - b[0])
        .map(([d, n]) => ({ id: this.docs[d].id, grams: n, fraction: n / Math.max(1, this.gramsPerDoc[d]) })),
    };
  }
}

/** u ∈ [0, 1) from the first 48 bits of sha-256(text). */
function unit(text: string): number {
  return createHash('sha256').update(text).digest().readUIntBE(0, 6) / 2 ** 48;
}

/** The part a document belongs to (see the file comment, step 3). */
export function partOf(id: string, seed: number, heldOut: number): CorpusPart {
  const u = unit(`${seed}:${id}`);
  return u < heldOut / 2 ? 'validation' : u < heldOut ? 'test' : 'train';
}

export interface ParagraphStats {
  read: number;
  junk: number;
  exact: number;
  near: number;
  brown: number;
  kept: number;
}

const emptyStats = (): ParagraphStats => ({ read: 0, junk: 0, exact: 0, near: 0, brown: 0, kept: 0 });

/** Whether a paragraph is junk (see the file comment, step 2). */
function isJunk(p: string, words: number): boolean {
  if (words === 0) return true;
  if (p.length < 20) return false;
  const visible = p.replace(/\s/g, '').length;
  const letters = (p.match(/\p{L}/gu) ?? []).length;
  return letters < visible / 2;
}

/**
 * Step 2 on documents in id order: the documents with their kept paragraphs (those left with none dropped),
 * and per-source paragraph figures.
 */
export function cleanDocs(
  docs: Doc[],
  brown: HeldOutIndex,
  stats: Map<string, ParagraphStats>,
  /** called after each document with the documents and UTF-16 units done so far */
  onDoc?: (docs: number, units: number) => void,
): Doc[] {
  const dedup = new Deduper();
  const out: Doc[] = [];
  const sorted = [...docs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  let units = 0;
  for (const [i, d] of sorted.entries()) {
    units += d.text.length;
    onDoc?.(i + 1, units);
    const src = d.id.slice(0, d.id.indexOf('/'));
    const st = stats.get(src) ?? stats.set(src, emptyStats()).get(src)!;
    const kept: string[] = [];
    for (const p of paragraphs(d.text)) {
      st.read++;
      const w = wordHashes(p);
      if (isJunk(p, w.length)) st.junk++;
      else if (brown.contains(w)) st.brown++;
      else {
        const r = dedup.check(w);
        if (r === 'new') {
          kept.push(p);
          st.kept++;
        } else st[r]++;
      }
    }
    if (kept.length > 0) out.push({ id: d.id, text: kept.join('\n\n') });
  }
  return out;
}

/** Seconds → "1 min 05 s" / "42 s". */
const dur = (s: number) =>
  s >= 60 ? `${Math.floor(s / 60)} min ${String(Math.round(s % 60)).padStart(2, '0')} s` : `${s.toFixed(0)} s`;

/** Build the corpus into `out` (see the file comment); returns its manifest. */
export function buildCorpus(out: string, o: BuildOptions): CorpusManifest {
  if (!(o.heldOut > 0 && o.heldOut < 0.5)) throw new ArgumentError('--heldout', 'a fraction in (0, 0.5)', o.heldOut);
  const chosen = o.sources ?? SOURCES.map((s) => s.name);
  for (const n of chosen)
    if (!SOURCES.some((s) => s.name === n))
      throw new ArgumentError('--sources', `names among ${SOURCES.map((s) => s.name).join(', ')}`, n);
  const sources = SOURCES.filter((s) => chosen.includes(s.name));
  // every package present before any work: a missing one is named with its install command
  const versions = installedVersions(o.root);
  const pkgVersion = new Map(sources.map((s) => [s.name, sourceVersion(s, versions)]));
  const brownSrc = excludedDocs(o.exclude);
  const t0 = performance.now();
  const since = () => (performance.now() - t0) / 1000;

  // 1. read
  const docs: Doc[] = [];
  const read = new Map<string, { docs: number; bytes: number; inputBytes: number; repaired: string[] }>();
  for (const s of sources) {
    let inputBytes = 0;
    const ds = s.read(o.root, (_f, b) => (inputBytes += b));
    const bytes = ds.reduce((a, d) => a + Buffer.byteLength(d.text), 0);
    read.set(s.name, { docs: ds.length, bytes, inputBytes, repaired: s.repaired ?? [] });
    docs.push(...ds);
    o.log(
      `read ${s.name} (${s.pkg} ${pkgVersion.get(s.name)}): ${ds.length} documents, ${(bytes / 1e6).toFixed(1)} MB of text${s.repaired?.length ? `, ${s.repaired.length} bytes read as Windows-1252` : ''} [${dur(since())}]`,
    );
  }

  // 2. clean
  const brown = new HeldOutIndex(brownSrc.docs);
  o.log(`Brown corpus: ${brownSrc.docs.length} texts, ${brown.size} distinct word ${NGRAM}-grams`);
  const stats = new Map<string, ParagraphStats>();
  const allUnits = docs.reduce((a, d) => a + d.text.length, 0);
  const tClean = performance.now();
  let lastClean = tClean;
  const clean = cleanDocs(docs, brown, stats, (n, units) => {
    const now = performance.now();
    if (now - lastClean < 5000) return;
    lastClean = now;
    const s = (now - tClean) / 1000;
    o.log(
      `  clean: ${n}/${docs.length} documents, ${((units / allUnits) * 100).toFixed(0)}% of the text, ${(units / s / 1e6).toFixed(2)}M characters/s, ETA ${dur(((allUnits - units) * s) / units)}`,
    );
  });
  docs.length = 0;
  const total = [...stats.values()].reduce(
    (a, s) => ({
      read: a.read + s.read,
      junk: a.junk + s.junk,
      exact: a.exact + s.exact,
      near: a.near + s.near,
      brown: a.brown + s.brown,
      kept: a.kept + s.kept,
    }),
    emptyStats(),
  );
  o.log(
    `paragraphs: ${total.read} read, ${total.kept} kept; dropped ${total.exact} exact and ${total.near} near duplicates, ${total.junk} junk, ${total.brown} sharing a ${NGRAM}-gram with Brown [${dur(since())}]`,
  );
  const brownOverlap = brown.overlap();
  // the check itself: what is left shares no 13-gram with Brown (a bug in the filter would show here)
  brown.resetOverlap();
  for (const d of clean) for (const p of paragraphs(d.text)) brown.contains(wordHashes(p));
  const brownAfter = brown.overlap();
  if (brownAfter.grams > 0)
    throw new Error(
      `internal: ${brownAfter.grams} Brown ${NGRAM}-grams left after the filter (${brownAfter.docs[0]?.id})`,
    );

  // 3. split
  const parts: Record<CorpusPart, Array<Doc & { u: number }>> = { train: [], validation: [], test: [] };
  for (const d of clean) parts[partOf(d.id, o.seed, o.heldOut)].push({ ...d, u: unit(`${o.seed}:${d.id}`) });
  for (const p of CORPUS_PARTS) parts[p].sort((a, b) => a.u - b.u || (a.id < b.id ? -1 : 1));
  o.log(`split by document (seed ${o.seed}): ${CORPUS_PARTS.map((p) => `${parts[p].length} ${p}`).join(', ')}`);

  // 4. tokenizer
  const sample = [...parts.train]
    .map((d) => ({ d, v: unit(`${o.seed}:tok:${d.id}`) }))
    .sort((a, b) => a.v - b.v || (a.d.id < b.d.id ? -1 : 1));
  const texts: string[] = [];
  let sampleBytes = 0;
  for (const { d } of sample) {
    if (o.tokenizerBytes > 0 && sampleBytes >= o.tokenizerBytes) break;
    texts.push(d.text);
    sampleBytes += Buffer.byteLength(d.text);
  }
  const trainBytes = parts.train.reduce((a, d) => a + Buffer.byteLength(d.text), 0);
  o.log(
    `training the ${o.vocab}-token tokenizer on ${texts.length} training documents, ${(sampleBytes / 1e6).toFixed(1)} of ${(trainBytes / 1e6).toFixed(1)} MB …`,
  );
  const tok = trainBpe(texts, {
    vocabSize: o.vocab,
    onMerge: (d, n) => d % 1000 === 0 && o.log(`  merge ${d}/${n} [${dur(since())}]`),
  });
  const tokJson = tok.toJson();
  if (tok.vocabSize > 65536) throw new ArgumentError('--vocab', 'at most 65536 (ids are uint16)', tok.vocabSize);

  // 5. encode
  const allBytes = CORPUS_PARTS.reduce((a, p) => a + parts[p].reduce((b, d) => b + Buffer.byteLength(d.text), 0), 0);
  let doneBytes = 0;
  let doneTokens = 0;
  const tEnc = performance.now();
  let lastLog = tEnc;
  const files: Array<[string, Uint8Array]> = [];
  const partInfo = {} as Record<CorpusPart, PartInfo>;
  const perSource = new Map<string, Record<CorpusPart, number>>();
  for (const p of CORPUS_PARTS) {
    const shards: Shard[] = [];
    let buf = new Uint16Array(o.shardTokens + 65536);
    let n = 0;
    let shardDocs = 0;
    let textBytes = 0;
    const flush = () => {
      const ids = buf.subarray(0, n);
      const { raw, gz } = encodeIds(ids);
      const file = `${p}-${String(shards.length).padStart(3, '0')}.u16.gz`;
      files.push([file, gz]);
      shards.push({ file, docs: shardDocs, tokens: n, sha256: sha256(raw), bytes: gz.length });
      n = 0;
      shardDocs = 0;
    };
    for (const d of parts[p]) {
      const ids = tok.encode(d.text);
      ids.push(tok.endOfText);
      if (n + ids.length > buf.length) {
        const grown = new Uint16Array(n + ids.length + 65536);
        grown.set(buf.subarray(0, n));
        buf = grown;
      }
      buf.set(ids, n);
      n += ids.length;
      shardDocs++;
      const b = Buffer.byteLength(d.text);
      textBytes += b;
      doneBytes += b;
      doneTokens += ids.length;
      const src = d.id.slice(0, d.id.indexOf('/'));
      const ps = perSource.get(src) ?? perSource.set(src, { train: 0, validation: 0, test: 0 }).get(src)!;
      ps[p] += ids.length;
      if (n >= o.shardTokens) flush();
      const now = performance.now();
      if (now - lastLog > 5000) {
        lastLog = now;
        const rate = doneBytes / ((now - tEnc) / 1000);
        o.log(
          `  encode: ${(doneBytes / 1e6).toFixed(1)}/${(allBytes / 1e6).toFixed(1)} MB, ${(doneTokens / 1e6).toFixed(2)}M tokens, ${((doneTokens / (now - tEnc)) * 1000).toFixed(0)} tokens/s, ETA ${dur((allBytes - doneBytes) / rate)}`,
        );
      }
    }
    if (n > 0 || shards.length === 0) flush();
    partInfo[p] = {
      docs: parts[p].length,
      textBytes,
      tokens: shards.reduce((a, s) => a + s.tokens, 0),
      shards,
    };
  }
  o.log(
    `encoded ${doneTokens} tokens (${(allBytes / doneTokens).toFixed(2)} bytes per token) in ${dur((performance.now() - tEnc) / 1000)}`,
  );

  const manifest: CorpusManifest = {
    format: CORPUS_FORMAT,
    createdBy: 'mil data build',
    command: o.command,
    seed: o.seed,
    heldOut: o.heldOut,
    tokenizer: {
      file: 'tokenizer.json',
      vocabSize: tok.vocabSize,
      sha256: sha256(tokJson),
      trainedOn: { docs: texts.length, bytes: sampleBytes, of: trainBytes, sample: 'smallest sha-256("SEED:tok:ID")' },
    },
    ids: { dtype: 'uint16', endianness: 'little', compression: 'gzip' },
    parts: partInfo,
    sources: sources.map((s) => {
      const r = read.get(s.name)!;
      const st = stats.get(s.name) ?? emptyStats();
      const tk = perSource.get(s.name) ?? { train: 0, validation: 0, test: 0 };
      return {
        name: s.name,
        package: s.pkg,
        version: pkgVersion.get(s.name),
        licence: s.licence,
        content: s.content,
        documents: r.docs,
        inputBytes: r.inputBytes,
        textBytes: r.bytes,
        paragraphs: st,
        tokens: { ...tk, total: tk.train + tk.validation + tk.test },
        ...(r.repaired.length ? { windows1252Bytes: r.repaired } : {}),
      };
    }),
    dedup: {
      exact: 'the same lower-cased word sequence',
      near: `MinHash of word ${SHINGLE}-gram shingles, ${MINHASH_K} hashes in ${BANDS} bands of ${ROWS}, estimated Jaccard ≥ ${NEAR_JACCARD}, paragraphs of ${NEAR_MIN_WORDS}+ words`,
      paragraphs: total,
    },
    brown: {
      folder: o.exclude,
      texts: brownSrc.docs.length,
      ngram: NGRAM,
      ngrams: brown.size,
      sharedBeforeFilter: {
        grams: brownOverlap.grams,
        fraction: brownOverlap.fraction,
        texts: brownOverlap.docs.length,
        top: brownOverlap.docs.slice(0, 10),
      },
      paragraphsDropped: total.brown,
      sharedAfterFilter: brownAfter.grams,
    },
  };
  writeFolder(
    out,
    (stage) => {
      stage.writeFile('tokenizer.json', tokJson);
      for (const [f, gz] of files) stage.writeFile(f, gz);
      stage.writeFile('manifest.json', JSON.stringify(manifest, null, 1) + '\n');
    },
    { option: 'out' },
  );
  const size = files.reduce((a, [, gz]) => a + gz.length, 0) + Buffer.byteLength(tokJson);
  o.log(
    `wrote ${out}: ${CORPUS_PARTS.map((p) => `${p} ${partInfo[p].tokens} tokens (${partInfo[p].docs} documents, ${partInfo[p].shards.length} shards)`).join('; ')}; ids + tokenizer ${(size / 2 ** 20).toFixed(1)} MiB (gzip: ${((size / (2 * doneTokens)) * 100).toFixed(0)}% of the raw uint16) [${dur(since())}]`,
  );
  return manifest;
}
