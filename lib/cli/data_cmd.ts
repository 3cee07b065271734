/**
 * `mil data build --out DIR [--seed S] [--heldout F] [--vocab N] [--tokenizer-mb M] [--shard-tokens N]
 *                 [--sources a,b,…] --exclude DIR [--root DIR] [--force] [--quiet]`
 *
 * Builds the training corpus of issue #25 from installed Debian packages (lib/data/build.ts; the sources,
 * their licences and figures: docs/data.md): cleaned, deduplicated, Brown-filtered, split by document,
 * tokenized by a BPE trained on its training part, written as gzip'd uint16 token ids with tokenizer.json
 * and manifest.json. `mil train|distill|sft|dpo|eval --data DIR` read the folder without tokenizing.
 * Progress on stderr (per source, tokenizer merges, encoding MB, tokens/s, ETA). Exit 2 for bad options or
 * a file that is not UTF-8 (CorpusError, naming file and byte offset), 6 for a package that is not installed
 * (MissingSourceError, naming the package and the command that installs it) or an unwritable --out.
 */
import { checkPaths } from '../io/paths.js';
import { writeFolder } from '../io/writer.js';
import { buildCorpus } from '../data/build.js';
import { isBuiltCorpus, readManifest, readPart } from '../data/ids.js';
import { retrievalDocs } from '../data/retrieval.js';
import { BpeTokenizer } from '../text/bpe.js';
import { join } from 'node:path';
import { readDict, SOURCES } from '../data/sources.js';
import { instructionSets } from '../data/instruct.js';
import { UsageError, type OptSpec, type Parsed } from './args.js';

export const DATA_OPTIONS: Record<string, OptSpec> = {
  out: { kind: 'string' },
  seed: { kind: 'int', min: 0, max: Number.MAX_SAFE_INTEGER },
  heldout: {
    kind: 'number',
    min: 0.001,
    max: 0.4,
    help: 'fraction of documents held out (half validation, half test)',
  },
  vocab: { kind: 'int', min: 257, max: 65535 },
  'tokenizer-mb': { kind: 'number', min: 0, max: 1e5, help: 'MB of training text the tokenizer learns from (0: all)' },
  'shard-tokens': { kind: 'int', min: 1, max: 1 << 30 },
  sources: { kind: 'string', pattern: /^[a-z0-9-]+(,[a-z0-9-]+)*$/, patternHelp: 'comma-separated source names' },
  exclude: {
    kind: 'string',
    help: 'a folder of the held-out evaluation texts (tagged, ca01 …) no training paragraph may overlap (docs/data.md)',
  },
  root: { kind: 'string', help: 'read the packages installed below this folder instead of /' },
  force: { kind: 'switch' },
  quiet: { kind: 'switch' },
};

export const DATA_USAGE = `  mil data build --out DIR [--seed S] [--heldout 0.02] [--vocab 8192] [--tokenizer-mb 48]
                 [--shard-tokens 4194304] [--sources gcide,python,…] --exclude DIR [--root DIR] [--force]`;

export async function cmdDataBuild(p: Parsed, commandLine: string): Promise<number> {
  const v = p.values;
  const out = v.out as string | undefined;
  if (!out) throw new UsageError('data build needs --out DIR');
  const exclude = v.exclude as string | undefined;
  if (!exclude) throw new UsageError('data build needs --exclude DIR: the held-out texts to keep out (docs/data.md)');
  const root = (v.root as string | undefined) ?? '/';
  checkPaths({
    command: 'data build',
    inputs: [{ option: 'exclude', path: exclude }, ...(v.root ? [{ option: 'root', path: root }] : [])],
    outputs: [{ option: 'out', path: out }],
    force: v.force === true,
  });
  const m = buildCorpus(out, {
    root,
    seed: (v.seed as number | undefined) ?? 0,
    heldOut: (v.heldout as number | undefined) ?? 0.02,
    vocab: (v.vocab as number | undefined) ?? 8192,
    tokenizerBytes: Math.round(((v['tokenizer-mb'] as number | undefined) ?? 48) * 1e6),
    shardTokens: (v['shard-tokens'] as number | undefined) ?? 4194304,
    sources: (v.sources as string | undefined)?.split(','),
    exclude,
    command: commandLine,
    log: (line) => v.quiet !== true && console.error(line),
  });
  const t = m.parts;
  console.log(
    `wrote ${out}: ${t.train.tokens} training, ${t.validation.tokens} validation and ${t.test.tokens} test tokens (vocabulary ${m.tokenizer.vocabSize})`,
  );
  return 0;
}

export const INSTRUCT_OPTIONS: Record<string, OptSpec> = {
  out: { kind: 'string' },
  corpus: { kind: 'string', help: 'the folder mil data build made: its seed and held-out fraction split the sets' },
  seed: { kind: 'int', min: 0, max: Number.MAX_SAFE_INTEGER, help: "the rejected answers' generator" },
  root: DATA_OPTIONS.root,
  force: { kind: 'switch' },
};

export const INSTRUCT_USAGE = `  mil data instruct --out DIR [--corpus DIR] [--seed S] [--root DIR] [--force]
                 (SFT and DPO sets of GCIDE definitions: sft.jsonl for mil sft --data, DIR for mil dpo --preferences)`;

/**
 * `mil data instruct`: the SFT and DPO sets of lib/data/instruct.ts from the installed GCIDE (dict-gcide), split as
 * the corpus of --corpus was (its manifest's seed and held-out fraction; without it, data build's defaults 0 and
 * 0.02). Writes, as one folder through the writer: sft.jsonl (the training part: `mil sft --data DIR/sft.jsonl`),
 * sft-validation.jsonl, sft-test.jsonl, dpo.jsonl and dpo-validation.jsonl (`mil dpo --preferences DIR`),
 * dpo-test.jsonl and manifest.json (counts, source, licence, the command). Exit 2 for bad options or a corpus
 * folder that is not one; 6 when dict-gcide is not installed (naming its apt-get line).
 */
export async function cmdDataInstruct(p: Parsed, commandLine: string): Promise<number> {
  const v = p.values;
  const out = v.out as string | undefined;
  if (!out) throw new UsageError('data instruct needs --out DIR');
  const corpus = v.corpus as string | undefined;
  const root = (v.root as string | undefined) ?? '/';
  checkPaths({
    command: 'data instruct',
    inputs: [
      ...(corpus ? [{ option: 'corpus', path: corpus }] : []),
      ...(v.root ? [{ option: 'root', path: root }] : []),
    ],
    outputs: [{ option: 'out', path: out }],
    force: v.force === true,
  });
  if (corpus !== undefined && !isBuiltCorpus(corpus))
    throw new UsageError(`--corpus ${corpus} is not a folder made by mil data build (no manifest.json)`);
  const m = corpus ? readManifest(corpus) : undefined;
  const split = { seed: (m?.seed as number | undefined) ?? 0, heldOut: (m?.heldOut as number | undefined) ?? 0.02 };
  const gcide = SOURCES.find((s) => s.name === 'gcide')!;
  const { entries } = readDict(root, gcide, 'gcide', { cp1252: true });
  const sets = instructionSets(entries, { source: 'gcide', ...split, pairSeed: (v.seed as number | undefined) ?? 0 });
  const jsonl = (xs: object[]) => xs.map((x) => JSON.stringify(x)).join('\n') + '\n';
  const manifest = {
    format: 'mil-instruct/1',
    command: commandLine,
    source: { name: gcide.name, pkg: gcide.pkg, licence: gcide.licence, entries: entries.length },
    split: { corpus: corpus ?? null, ...split },
    sft: Object.fromEntries(Object.entries(sets.sft).map(([k, xs]) => [k, xs.length])),
    dpo: Object.fromEntries(Object.entries(sets.dpo).map(([k, xs]) => [k, xs.length])),
  };
  writeFolder(out, (stage) => {
    stage.writeFile('sft.jsonl', jsonl(sets.sft.train));
    stage.writeFile('sft-validation.jsonl', jsonl(sets.sft.validation));
    stage.writeFile('sft-test.jsonl', jsonl(sets.sft.test));
    stage.writeFile('dpo.jsonl', jsonl(sets.dpo.train));
    stage.writeFile('dpo-validation.jsonl', jsonl(sets.dpo.validation));
    stage.writeFile('dpo-test.jsonl', jsonl(sets.dpo.test));
    stage.writeFile('manifest.json', JSON.stringify(manifest, null, 1) + '\n');
  });
  console.log(
    `wrote ${out}: ${sets.sft.train.length} SFT and ${sets.dpo.train.length} DPO training items (${sets.sft.validation.length}/${sets.dpo.validation.length} validation, ${sets.sft.test.length}/${sets.dpo.test.length} test) from ${entries.length} GCIDE entries`,
  );
  return 0;
}

export const RETRIEVAL_OPTIONS: Record<string, OptSpec> = {
  out: { kind: 'string' },
  corpus: {
    kind: 'string',
    help: 'the folder mil data build made: its training split is the filler, its tokenizer the one',
  },
  docs: {
    kind: 'int',
    min: 1,
    max: 10_000_000,
    help: 'retrieval documents (each followed by a repeat and a prose one)',
  },
  context: {
    kind: 'int',
    min: 16,
    max: 1 << 20,
    help: 'the longest retrieval document in tokens (the training context)',
  },
  'min-length': { kind: 'int', min: 16, max: 1 << 20 },
  seed: { kind: 'int', min: 0, max: Number.MAX_SAFE_INTEGER },
  force: { kind: 'switch' },
};

export const RETRIEVAL_USAGE = `  mil data retrieval --corpus DIR --out DIR [--docs 4096] [--context 1024] [--min-length 64] [--seed S] [--force]
                 (a retrieval curriculum for the passkey test: retrieval.jsonl for mil sft --data)`;

/**
 * `mil data retrieval`: the curriculum of lib/data/retrieval.ts — retrieval documents in wordings the passkey test
 * never uses, each followed by a repeat (a span written twice) and a prose document, cut from the first training shard of --corpus (its test split
 * stays the passkey test's filler) — written through the writer as retrieval.jsonl and manifest.json (the command,
 * counts, tokens). Exit 2 for bad options or a --corpus that is not a built corpus.
 */
export async function cmdDataRetrieval(p: Parsed, commandLine: string): Promise<number> {
  const v = p.values;
  const out = v.out as string | undefined;
  const corpus = v.corpus as string | undefined;
  if (!out || !corpus) throw new UsageError('data retrieval needs --corpus DIR and --out DIR');
  checkPaths({
    command: 'data retrieval',
    inputs: [{ option: 'corpus', path: corpus }],
    outputs: [{ option: 'out', path: out }],
    force: v.force === true,
  });
  if (!isBuiltCorpus(corpus))
    throw new UsageError(`--corpus ${corpus} is not a folder made by mil data build (no manifest.json)`);
  const o = {
    docs: (v.docs as number | undefined) ?? 4096,
    context: (v.context as number | undefined) ?? 1024,
    minLength: (v['min-length'] as number | undefined) ?? 64,
    seed: (v.seed as number | undefined) ?? 0,
  };
  const tok = BpeTokenizer.load(join(corpus, readManifest(corpus).tokenizer.file));
  const docs = retrievalDocs(tok, readPart(corpus, 'train', { shards: 1 }), o);
  const manifest = {
    format: 'mil-retrieval/1',
    command: commandLine,
    corpus,
    ...o,
    documents: docs.length,
    filler: 'the first shard of the training split',
  };
  writeFolder(out, (stage) => {
    stage.writeFile('retrieval.jsonl', docs.map((d) => JSON.stringify(d)).join('\n') + '\n');
    stage.writeFile('manifest.json', JSON.stringify(manifest, null, 1) + '\n');
  });
  console.log(
    `wrote ${out}: ${o.docs} retrieval, ${o.docs} repeat and ${o.docs} prose documents (${o.minLength}–${o.context} tokens)`,
  );
  return 0;
}
