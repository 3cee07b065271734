/**
 * Issue #27, defect 8: `mil convert` carries the teacher's tokenizer (tokenizer.json, tokenizer_config.json)
 * into the converted folder, so `generate` and `eval` on the hybrid read text as the teacher does; and a
 * model folder without tokenizer.json never falls back silently: generate and eval take the same fallback
 * (the shipped tokenizer when its vocabulary matches) and both say so on stderr.
 *
 * Commands run in this process on tiny models (reference backend); ~2 s on 2 cores.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { EXIT } from '../lib/cli/main.js';
import { SHIPPED_TOKENIZER } from '../lib/cli/train_cmds.js';
import { saveModel } from '../lib/model/convert.js';
import { randomLlama } from '../lib/model/random.js';
import { loadTokenizer } from '../lib/model/tokenizer.js';
import { trainBpe } from '../lib/text/bpe.js';
import { tmpFolder } from './tmp.js';
import { runMil } from './cli.js';
import { lastOf } from '../lib/checked.js';

afterEach(() => vi.restoreAllMocks());

const PROMPT = 'the state of the union is strong';
const llama = (vocab: number) =>
  randomLlama({ vocab, hidden: 16, intermediate: 32, layers: 2, heads: 2, kvHeads: 1, maxPositions: 64 }, 5);

/** The prompt's ids as `mil generate --json` encoded them. */
async function promptIds(dir: string): Promise<{ ids: number[]; err: string }> {
  const r = await runMil(['generate', '--model', dir, '--prompt', PROMPT, '--max-new-tokens', '1', '--json']);
  expect(r.code, r.err).toBe(EXIT.ok);
  return { ids: (JSON.parse(lastOf(r.out.trim().split('\n'))) as { prompt: number[] }).prompt, err: r.err };
}

/** `mil eval` of `model` on a small corpus of the prompt (written into `parent`), float64. */
function evalOn(parent: string, model: string) {
  const data = join(parent, 'd.jsonl');
  writeFileSync(data, Array.from({ length: 4 }, () => JSON.stringify({ text: PROMPT })).join('\n') + '\n');
  return runMil(['eval', '--model', model, '--data', data, '--split', 'train', '--engine', 'float64', '--json']);
}

describe("defect 8: a converted model reads text with its teacher's tokenizer", () => {
  it('convert copies tokenizer.json and tokenizer_config.json; generate encodes with them, and eval accepts them', async () => {
    const parent = tmpFolder('tok');
    const tdir = join(parent, 'teacher');
    // a teacher tokenizer unlike the shipped one (300 tokens, not 2048): any other fallback is visible
    const tok = trainBpe(
      Array.from({ length: 20 }, (_, i) => `${PROMPT} and ${i} more words of the union`),
      { vocabSize: 300 },
    );
    const config = JSON.stringify({ model_max_length: 64, tokenizer_class: 'PreTrainedTokenizerFast' });
    saveModel(tdir, llama(tok.vocabSize), {
      extra: [
        ['tokenizer.json', tok.toJson()],
        ['tokenizer_config.json', config],
      ],
    });
    const out = join(parent, 'hybrid');
    const r = await runMil(['convert', '--teacher', tdir, '--out', out]);
    expect(r.code, r.err).toBe(EXIT.ok);
    for (const f of ['tokenizer.json', 'tokenizer_config.json'])
      expect(readFileSync(join(out, f)).equals(readFileSync(join(tdir, f))), f).toBe(true);
    const g = await promptIds(out);
    expect(g.ids).toEqual(tok.encode(PROMPT));
    expect(g.err).not.toMatch(/no tokenizer\.json/);
    const e = await evalOn(parent, out);
    expect(e.code, e.err).toBe(EXIT.ok); // the shipped 2048-token tokenizer would be refused here
    expect(e.err).not.toMatch(/no tokenizer\.json/);
  });

  it('a folder without tokenizer.json: generate and eval take the same fallback, and both name it on stderr', async () => {
    const parent = tmpFolder('tok');
    const dir = join(parent, 'bare');
    const shipped = loadTokenizer(SHIPPED_TOKENIZER);
    saveModel(dir, llama(shipped.vocabSize));
    const g = await promptIds(dir);
    expect(g.ids).toEqual(shipped.encode(PROMPT)); // not UTF-8 bytes
    expect(g.err).toMatch(/note: .*bare has no tokenizer\.json: using .*tokenizer\.json/);
    const e = await evalOn(parent, dir);
    expect(e.code, e.err).toBe(EXIT.ok);
    expect(e.err).toMatch(/note: .*bare has no tokenizer\.json: using .*tokenizer\.json/);
    // a vocabulary the shipped tokenizer does not have: byte tokens, said so
    const odd = join(parent, 'odd');
    saveModel(odd, llama(300));
    const b = await promptIds(odd);
    expect(b.ids).toEqual([...Buffer.from(PROMPT)]);
    expect(b.err).toMatch(/no tokenizer\.json .*UTF-8 byte tokens/);
  });
});
