/**
 * `mil tokenize --tokenizer FILE_OR_DIR (--text S | --text-file F) [--no-special] [--json]`: the token ids
 * of a text (comma-separated, the form --prompt-ids takes), or with --json `{ "ids": […], "tokens": […] }`
 * (the pieces as the file spells them). The file is this project's tokenizer.json or a Hugging Face one
 * (lib/model/tokenizer.ts `loadTokenizer`); --no-special leaves out the post-processor's special tokens
 * (BOS). Bad input (no or two texts, a missing file, a tokenizer component not implemented) exits 2.
 */
import { readRegularFile } from '../io/json.js';
import { loadTokenizer } from '../model/tokenizer.js';
import { BpeTokenizer } from '../text/bpe.js';
import { UsageError, type OptSpec, type Parsed } from './args.js';

export const TOKENIZE_OPTIONS: Record<string, OptSpec> = {
  tokenizer: { kind: 'string', help: 'a tokenizer.json or a folder holding one' },
  text: { kind: 'string' },
  'text-file': { kind: 'string' },
  'no-special': { kind: 'switch' },
  json: { kind: 'switch' },
};

export const TOKENIZE_USAGE =
  '  mil tokenize --tokenizer FILE_OR_DIR (--text S | --text-file F) [--no-special] [--json]';

/** Texts read with --text-file: at most this many bytes. */
const MAX_TEXT_BYTES = 256 * 2 ** 20;

export async function cmdTokenize(p: Parsed): Promise<number> {
  const v = p.values;
  const file = v.tokenizer as string | undefined;
  if (!file) throw new UsageError('tokenize needs --tokenizer FILE_OR_DIR');
  const inline = v.text as string | undefined;
  const textFile = v['text-file'] as string | undefined;
  if ((inline === undefined) === (textFile === undefined))
    throw new UsageError('tokenize needs exactly one of --text S and --text-file F');
  const text = inline ?? new TextDecoder('utf-8', { fatal: false }).decode(readRegularFile(textFile!, MAX_TEXT_BYTES));
  const tok = loadTokenizer(file);
  const ids = tok instanceof BpeTokenizer ? tok.encode(text) : tok.encode(text, v['no-special'] !== true);
  if (v.json === true) {
    const tokens = ids.map((id) => (tok instanceof BpeTokenizer ? tok.tokenString(id) : tok.token(id)!));
    console.log(JSON.stringify({ ids, tokens }));
  } else console.log(ids.join(','));
  return 0;
}
