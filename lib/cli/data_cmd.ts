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
import { buildCorpus } from '../data/build.js';
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
