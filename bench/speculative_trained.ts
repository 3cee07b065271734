/**
 * `npm run bench:speculative-trained`: speculative decoding (Algorithm 2) with the TRAINED shipped models, reported
 * as issue #25 item 5 asks — the median and the spread over every (prompt, run), not the best K or the best run:
 *   targets  models/hybrid-mamba2-50 (the 50% Mamba-2 hybrid) and models/hybrid-mamba2-0 (pure Mamba-2), both
 *            distilled from models/teacher-small;  draft  models/draft-small (a 1-layer Llama trained here)
 *   prompts  --prompts (20) windows of 32 tokens from the 12 held-out SOTU test speeches (lib/data/corpus.ts; 512
 *            tokens apart, round-robin over the speeches), 64 new tokens each, greedy; every prompt decoded --runs (3) times both ways, in the same run
 *   speedup  plain decode time / speculative decode time of the same prompt in the same run (prefill left out: the
 *            same work both ways; the draft's time is in the speculative time)
 * per backend (--backends, default wasm-simd and webgpu where available) and K (--ks, default 2,4,6,8): the median
 * speedup with its quartiles and min/max, acceptance, tokens per verify, ms per token plain and speculative; and
 * whether every speculative output equals plain greedy decoding's (it must: greedy acceptance).
 * On the GPU machine the SOTU package is not carried: `--write-prompts FILE` (here) writes the tokenized prompts,
 * `--read-prompts FILE` (there) reads them. Writes OUT/speculative-trained.{json,md} (--out, default bench/results).
 * Issue #25's small scale (the 20M teacher's students, on the GPU machine): `--draft DIR --targets NAME=DIR,…`
 * instead of models/, and `--prompts-data DIR` (a corpus folder made by mil data build, in the targets' tokenizer):
 * --prompts windows of 32 tokens spread evenly over its test part (held out by document).
 * `--threads T`: the wasm-simd products on T threads (default: every core; a verify window's products of ≥ 2 MFLOP
 * are shared out, a one-row step's are not).
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { getOps, backendStatus, type BackendName } from '../lib/ops.js';
import { loadModel } from '../lib/model/load.js';
import { generate } from '../lib/model/generate.js';
import { forward, newCache, type HybridModel } from '../lib/model/hybrid.js';
import { ModelDrafter, speculativeGenerate } from '../lib/decode/speculative.js';
import { writeFile } from '../lib/io/writer.js';
import { SimdGemm } from '../lib/simd/gemm.js';

const { values } = parseArgs({
  options: {
    backends: { type: 'string' },
    ks: { type: 'string', default: '2,4,6,8' },
    prompts: { type: 'string', default: '20' },
    runs: { type: 'string', default: '3' },
    tokens: { type: 'string', default: '64' },
    models: { type: 'string', default: join(import.meta.dirname, '..', 'models') },
    out: { type: 'string', default: join(import.meta.dirname, 'results') },
    'write-prompts': { type: 'string' },
    draft: { type: 'string' },
    targets: { type: 'string' },
    'prompts-data': { type: 'string' },
    'read-prompts': { type: 'string' },
    threads: { type: 'string' },
  },
});
const Ks = values.ks.split(',').map(Number);
const RUNS = Number(values.runs);
const NEW = Number(values.tokens);
const N_PROMPTS = Number(values.prompts);
if (values.threads !== undefined) SimdGemm.setSharedThreads(Number(values.threads));

async function prompts(): Promise<number[][]> {
  if (values['read-prompts']) return JSON.parse(readFileSync(values['read-prompts'], 'utf8')) as number[][];
  if (values['prompts-data']) {
    const { readPart } = await import('../lib/data/ids.js');
    const ids = readPart(values['prompts-data'], 'test');
    const gap = Math.floor((ids.length - 32) / N_PROMPTS);
    if (gap < 32)
      throw new Error(`--prompts-data: its test part has ${ids.length} tokens, too few for ${N_PROMPTS} prompts of 32`);
    return Array.from({ length: N_PROMPTS }, (_, i) => ids.slice(i * gap, i * gap + 32));
  }
  const { corpusPart } = await import('../lib/data/corpus.js');
  const { BpeTokenizer } = await import('../lib/text/bpe.js');
  const tok = BpeTokenizer.load(join(values.models, 'tokenizer.json'));
  // the test split has 12 speeches: 32-token windows 512 tokens apart, taken round-robin over them
  const docs = corpusPart('sotu', 'test').map((d) => tok.encode(d.text));
  const out: number[][] = [];
  for (let j = 0; out.length < N_PROMPTS && j < 64; j++)
    for (const ids of docs)
      if (out.length < N_PROMPTS && ids.length >= j * 512 + 32) out.push(ids.slice(j * 512, j * 512 + 32));
  return out;
}
const P = await prompts();
if (values['write-prompts']) {
  writeFile(values['write-prompts'], JSON.stringify(P));
  console.log(`wrote ${P.length} prompts to ${values['write-prompts']}`);
  process.exit(0);
}

const available = (await backendStatus()).filter((b) => b.available).map((b) => b.name);
const backends = values.backends
  ? (values.backends.split(',') as BackendName[])
  : (['wasm-simd', 'webgpu'] as const).filter((b) => available.includes(b));
const draftDir = values.draft ?? join(values.models, 'draft-small');
const draft = loadModel(draftDir);
const targetDirs: [string, string][] = values.targets
  ? values.targets.split(',').map((t) => {
      const [n, dir] = t.split('=');
      if (!n || !dir) throw new Error(`--targets: NAME=DIR,…; got ${JSON.stringify(t)}`);
      return [n, dir];
    })
  : ['hybrid-mamba2-50', 'hybrid-mamba2-0'].map((n) => [n, join(values.models, n)]);
const targets = targetDirs.map(([n, dir]) => [n, loadModel(dir)] as const);

const q = (xs: number[], f: number) => {
  const s = [...xs].sort((a, b) => a - b);
  const i = (s.length - 1) * f;
  return s[Math.floor(i)] + (s[Math.ceil(i)] - s[Math.floor(i)]) * (i - Math.floor(i));
};
/** One row of OUT/speculative-trained.json (scripts/paper_small_page.ts renders #25's page from these). */
export interface SpeculativeRow {
  backend: string;
  path: string;
  target: string;
  K: number;
  samples: number;
  median: number;
  q1: number;
  q3: number;
  min: number;
  max: number;
  acceptance: number;
  tokensPerVerify: number;
  plainMsPerToken: number;
  specMsPerToken: number;
  identical: boolean;
}
const rows: SpeculativeRow[] = [];
/** Where a speculative output left plain greedy decoding's: the float64 reference's choice and top-two gap there. */
interface Divergence {
  target: string;
  K: number;
  run: number;
  at: number;
  plain: number;
  speculative: number;
  reference: number;
  /** the reference's top-two logit gap at that position (a near-tie: float32 may pick either) */
  gap: number;
}
const divergences: Divergence[] = [];
const refOps = await getOps('reference');
async function divergence(m: HybridModel, prompt: number[], plain: number[], spec: number[], at: number) {
  const logits = (await forward(refOps, m, [[...prompt, ...plain.slice(0, at)]], newCache(m, 1))).data; // (1, L, V)
  const V = m.llama.vocabSize;
  const last = logits.subarray(logits.length - V);
  let a = 0;
  for (let i = 1; i < V; i++) if (last[i] > last[a]) a = i;
  let b = -Infinity;
  for (let i = 0; i < V; i++) if (i !== a) b = Math.max(b, last[i]);
  return { at, plain: plain[at], speculative: spec[at], reference: a, gap: last[a] - b };
}
for (const backend of backends) {
  const ops = await getOps(backend);
  for (const [name, target] of targets) {
    const opts = { maxNewTokens: NEW, eos: [] as number[] };
    for (const K of Ks) {
      const mk = () => new ModelDrafter(ops, draft, K + 1, 'lazy');
      await generate(ops, target, P[0], { ...opts, maxNewTokens: 4 }); // warm-up: kernels, windows, JIT
      await speculativeGenerate(ops, target, mk(), P[0], { K, ...opts, maxNewTokens: 2 * K + 2 });
      const speedups: number[] = [];
      let [acc, prop, rounds, toks, plainMs, specMs] = [0, 0, 0, 0, 0, 0];
      let identical = true;
      let path = '';
      for (let run = 0; run < RUNS; run++)
        for (const p of P) {
          const plain = await generate(ops, target, p, opts);
          const s = await speculativeGenerate(ops, target, mk(), p, { K, ...opts });
          path = s.path ?? backend;
          const at = s.tokens.findIndex((t, j) => t !== plain.tokens[j]);
          if (at >= 0) {
            identical = false;
            divergences.push({ target: name, K, run, ...(await divergence(target, p, plain.tokens, s.tokens, at)) });
          }
          speedups.push(plain.decode.ms / s.decodeMs);
          acc += s.rounds.reduce((a, r) => a + r.accepted, 0);
          prop += s.rounds.reduce((a, r) => a + r.proposed, 0);
          rounds += s.rounds.length;
          toks += s.tokens.length;
          plainMs += plain.decode.ms / Math.max(1, plain.decode.tokens);
          specMs += s.decodeMs / Math.max(1, s.tokens.length);
        }
      const n = speedups.length;
      const row: SpeculativeRow = {
        backend,
        path,
        target: name,
        K,
        samples: n,
        median: q(speedups, 0.5),
        q1: q(speedups, 0.25),
        q3: q(speedups, 0.75),
        min: Math.min(...speedups),
        max: Math.max(...speedups),
        acceptance: prop ? acc / prop : 0,
        tokensPerVerify: toks / rounds,
        plainMsPerToken: plainMs / n,
        specMsPerToken: specMs / n,
        identical,
      };
      rows.push(row);
      console.log(JSON.stringify(row));
    }
  }
}

const f = (x: number, d = 2) => x.toFixed(d);
const md = [
  `# Speculative decoding with ${values.targets ? 'trained models' : 'the trained shipped models'} (${new Date().toISOString().slice(0, 10)})`,
  '',
  `${values.targets ? `Targets ${targetDirs.map(([n, d]) => `${n} (${d})`).join(', ')}` : 'Targets distilled from models/teacher-small'}; draft ${draftDir}; ${P.length} held-out ${values['prompts-data'] ? `prompts (${values['prompts-data']} test part)` : 'SOTU prompts'} of 32 tokens × ${RUNS} runs, ${NEW} new tokens, greedy. Speedup = plain decode time ÷ speculative decode time of the same prompt in the same run (prefill excluded, draft included); median [quartiles] (min–max) over all ${P.length * RUNS} samples.`,
  '',
  '| backend | target | K | speedup median [q1, q3] (min–max) | acceptance | tokens/verify | ms/token plain → speculative | output = plain greedy |',
  '|---|---|---:|---|---:|---:|---|---|',
  ...rows.map(
    (r) =>
      `| ${r.path} | ${r.target} | ${r.K} | ×${f(r.median)} [${f(r.q1)}, ${f(r.q3)}] (${f(r.min)}–${f(r.max)}) | ${f(100 * r.acceptance, 0)}% | ${f(r.tokensPerVerify)} | ${f(r.plainMsPerToken, 3)} → ${f(r.specMsPerToken, 3)} | ${r.identical ? 'yes' : 'NO'} |`,
  ),
  '',
];
if (divergences.length) {
  md.push(
    `Outputs that left plain greedy decoding (the first differing position; the float64 reference's top-two logit gap there — both decoders compute in float32, so a near-tie may go either way):`,
    '',
    '| target | K | run | position | plain | speculative | float64 reference | reference gap |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...divergences.map(
      (d) =>
        `| ${d.target} | ${d.K} | ${d.run} | ${d.at} | ${d.plain} | ${d.speculative} | ${d.reference} | ${d.gap.toExponential(2)} |`,
    ),
    '',
  );
  for (const d of divergences) console.log(JSON.stringify({ divergence: d }));
}
writeFile(
  join(values.out, 'speculative-trained.json'),
  JSON.stringify({ date: new Date().toISOString(), rows, divergences }, null, 1),
);
writeFile(join(values.out, 'speculative-trained.md'), md.join('\n'));
console.log(md.join('\n'));
