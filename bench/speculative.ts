/**
 * `npm run bench:speculative`: speculative decoding (Algorithm 2) against plain greedy decoding of the same
 * prompt, measured in the same run, on one backend:
 *   - speedup (plain decode time / speculative decode time) against K = 1..8, for a 50%-attention hybrid and
 *     a pure Mamba (0% attention) target (Mamba-2 conversions of a random Llama teacher);
 *   - drafts: an always-accepted free draft (an oracle replaying the target's greedy continuation: the upper
 *     bound), oracles corrupted with probability 0.25 and 0.5 (lower acceptance), and a real model draft
 *     (the target's first 2 layers, whose cost is included);
 *   - the single-state lazy scheme against a stored state per draft position, in time and SSM-state memory.
 * Every speculative output is checked to equal the plain greedy output before its time is reported.
 * Writes bench/results/speculative.{json,md} and speculative-vs-K.svg, speculative-vs-acceptance.svg.
 * Options: --backend NAME (default reference), --quick (small model, K ∈ {1, 2, 4, 8}, 16 tokens), --small (the
 * small model only), --ks 1,2,4 (which K), --tokens N, --out DIR (results folder).
 */
import { join } from 'node:path';
import { getOps } from '../lib/ops.js';
import { randomLlama } from '../lib/model/random.js';
import { convert } from '../lib/model/convert.js';
import { generate } from '../lib/model/generate.js';
import { ModelDrafter, speculativeGenerate, type Drafter } from '../lib/decode/speculative.js';
import { OracleDrafter, truncateLayers } from '../lib/decode/drafts.js';
import type { HybridModel } from '../lib/model/hybrid.js';
import { writeFile } from '../lib/io/writer.js';
import { lineChartSvg, writeSvg } from '../lib/plot/svg.js';

const args = process.argv.slice(2);
const flag = (k: string) => (args.includes(`--${k}`) ? args[args.indexOf(`--${k}`) + 1] : undefined);
const quick = args.includes('--quick');
const backend = flag('backend') ?? 'reference';
const TOKENS = Number(flag('tokens') ?? (quick ? 16 : 40));
const Ks = flag('ks') ? flag('ks')!.split(',').map(Number) : quick ? [1, 2, 4, 8] : [1, 2, 3, 4, 5, 6, 7, 8];
const small = quick || args.includes('--small');
const ops = await getOps(backend);
const spec = small
  ? { vocab: 4096, hidden: 256, intermediate: 704, layers: 6, heads: 4, kvHeads: 2, headDim: 64 }
  : { vocab: 32000, hidden: 512, intermediate: 1408, layers: 8, heads: 8, kvHeads: 4, headDim: 64 };
console.log(
  `# backend ${backend}; random Llama teacher d_model ${spec.hidden}, ${spec.layers} layers, vocab ${spec.vocab}; ${TOKENS} new tokens`,
);
const teacher = randomLlama(spec, 11);
const targets: Array<[string, HybridModel]> = [
  ['hybrid 50%', convert(teacher, { variant: 'mamba2', attentionFraction: 0.5, seed: 2 })],
  ['pure Mamba (0%)', convert(teacher, { variant: 'mamba2', attentionFraction: 0, seed: 2 })],
];
const prompt = Array.from({ length: 12 }, (_, i) => (i * 131 + 7) % spec.vocab);

interface Row {
  target: string;
  draft: string;
  K: number;
  scheme: string;
  acceptanceRate: number;
  tokensPerVerify: number;
  plainDecodeMs: number;
  specDecodeMs: number;
  speedup: number;
  peakStateBytes: number;
}
const rows: Row[] = [];
for (const [tname, m] of targets) {
  await generate(ops, m, prompt, { maxNewTokens: 2, eos: [] }); // warm-up
  const plain = await generate(ops, m, prompt, { maxNewTokens: TOKENS, eos: [] });
  console.log(`${tname}: plain greedy decode ${plain.decode.tokensPerS.toFixed(2)} tok/s`);
  const drafts: Array<[string, (K: number, scheme: 'lazy' | 'per-position') => Drafter]> = [
    ['always accepted (oracle)', () => new OracleDrafter(plain.tokens, prompt.length, spec.vocab)],
    ['oracle, 25% corrupted', () => new OracleDrafter(plain.tokens, prompt.length, spec.vocab, 0.25, 5)],
    ['oracle, 50% corrupted', () => new OracleDrafter(plain.tokens, prompt.length, spec.vocab, 0.5, 5)],
    ['first 2 layers (model)', (K, scheme) => new ModelDrafter(ops, truncateLayers(m, 2), K + 1, scheme)],
  ];
  for (const [dname, mk] of drafts) {
    for (const K of Ks) {
      for (const scheme of dname === 'oracle, 25% corrupted'
        ? (['lazy', 'per-position'] as const)
        : (['lazy'] as const)) {
        await speculativeGenerate(ops, m, mk(K, scheme), prompt, {
          K,
          maxNewTokens: Math.min(4, TOKENS),
          eos: [],
          scheme,
        }); // warm-up
        // each row against a plain decode timed just before it (this VM's speed drifts ±20% within seconds, so
        // one plain timing for every row skewed whole columns); the always-accepted rows, which the issue's
        // bar reads, take the median of three such pairs
        const pairs: Array<{ plainMs: number; s: Awaited<ReturnType<typeof speculativeGenerate>> }> = [];
        for (let p = 0; p < (dname.startsWith('always') ? 3 : 1); p++) {
          const plainNow = (await generate(ops, m, prompt, { maxNewTokens: TOKENS, eos: [] })).decode.ms;
          const sp = await speculativeGenerate(ops, m, mk(K, scheme), prompt, {
            K,
            maxNewTokens: TOKENS,
            eos: [],
            scheme,
          });
          if (sp.tokens.join() !== plain.tokens.join())
            throw new Error(`${tname} / ${dname} / K=${K}: speculative output differs from plain greedy`);
          pairs.push({ plainMs: plainNow, s: sp });
        }
        pairs.sort((a, b) => a.plainMs / a.s.decodeMs - b.plainMs / b.s.decodeMs);
        const { plainMs, s } = pairs[Math.floor(pairs.length / 2)];
        const row = {
          target: tname,
          draft: dname,
          K,
          scheme,
          acceptanceRate: s.acceptanceRate,
          tokensPerVerify: s.tokensPerVerify,
          plainDecodeMs: plainMs,
          specDecodeMs: s.decodeMs,
          speedup: plainMs / s.decodeMs,
          peakStateBytes: s.peakStateBytes,
        };
        rows.push(row);
        console.log(
          `  ${dname.padEnd(26)} K=${K} ${scheme.padEnd(12)} accept ${(100 * row.acceptanceRate).toFixed(0).padStart(3)}%  ${row.tokensPerVerify.toFixed(2)} tok/verify  speedup ×${row.speedup.toFixed(2)}  SSM state ${(row.peakStateBytes / 1024).toFixed(0)} KiB`,
        );
      }
    }
  }
}

const dir = flag('out') ?? join(import.meta.dirname, 'results');
const meta = { date: new Date().toISOString(), node: process.version, backend, tokens: TOKENS, spec };
writeFile(join(dir, 'speculative.json'), JSON.stringify({ meta, rows }, null, 1) + '\n');
const best4 = rows.filter(
  (r) => r.K === Math.min(4, Math.max(...Ks)) && r.draft.startsWith('always') && r.scheme === 'lazy',
);
const pp = rows.filter((r) => r.draft === 'oracle, 25% corrupted');
writeFile(
  join(dir, 'speculative.md'),
  [
    `# Speculative decoding (${meta.date}, node ${meta.node}, backend ${backend})`,
    '',
    `Random Llama teacher d_model ${spec.hidden}, ${spec.layers} layers, vocab ${spec.vocab}, converted to Mamba-2 hybrids. ${TOKENS} new tokens, greedy;`,
    'speedup = plain decode time / speculative decode time (draft cost included), same prompt, same run, each row against a plain decode timed just before it (the always-accepted rows: the median of three such pairs); every speculative output equals the plain one.',
    '',
    `Best with an always-accepted draft at K = 4: ${best4.map((r) => `${r.target} ×${r.speedup.toFixed(2)}`).join(', ')}.`,
    '',
    '| target | draft | K | scheme | acceptance | tokens/verify | speedup | SSM state KiB |',
    '| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |',
    ...rows.map(
      (r) =>
        `| ${r.target} | ${r.draft} | ${r.K} | ${r.scheme} | ${(100 * r.acceptanceRate).toFixed(0)}% | ${r.tokensPerVerify.toFixed(2)} | ${r.speedup.toFixed(2)} | ${(r.peakStateBytes / 1024).toFixed(0)} |`,
    ),
    '',
    '## Single cached state (lazy) vs a stored state per draft position',
    '',
    '| target | K | lazy speedup | per-position speedup | lazy state KiB | per-position state KiB |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...targets.flatMap(([t]) =>
      Ks.map((K) => {
        const a = pp.find((r) => r.target === t && r.K === K && r.scheme === 'lazy');
        const b = pp.find((r) => r.target === t && r.K === K && r.scheme === 'per-position');
        if (!a || !b) return '';
        return `| ${t} | ${K} | ${a.speedup.toFixed(2)} | ${b.speedup.toFixed(2)} | ${(a.peakStateBytes / 1024).toFixed(0)} | ${(b.peakStateBytes / 1024).toFixed(0)} |`;
      }),
    ),
    '',
  ].join('\n'),
);
const lazyRows = rows.filter((r) => r.scheme === 'lazy');
const series = [...new Set(lazyRows.map((r) => `${r.target} — ${r.draft}`))];
writeSvg(
  join(dir, 'speculative-vs-K.svg'),
  lineChartSvg({
    title: `Speculative decoding speedup vs K (backend ${backend})`,
    xLabel: 'K (draft tokens per verify step)',
    yLabel: 'speedup over plain decoding',
    series: series.map((name) => ({
      name,
      points: lazyRows
        .filter((r) => `${r.target} — ${r.draft}` === name)
        .map((r) => [r.K, r.speedup] as [number, number]),
    })),
  }),
);
writeSvg(
  join(dir, 'speculative-vs-acceptance.svg'),
  lineChartSvg({
    title: `Speedup vs acceptance rate (backend ${backend})`,
    xLabel: 'acceptance rate',
    yLabel: 'speedup over plain decoding',
    series: [2, 4, 8]
      .flatMap((K) =>
        targets.map(([t]) => ({
          name: `${t}, K=${K}`,
          points: lazyRows
            .filter(
              (r) =>
                (r.K === K && r.target === t && r.draft.startsWith('oracle')) ||
                (r.K === K && r.target === t && r.draft.startsWith('always')),
            )
            .map((r) => [Number(r.acceptanceRate.toFixed(2)), r.speedup] as [number, number])
            .sort((a, b) => a[0] - b[0]),
        })),
      )
      .filter((s) => s.points.length),
  }),
);
console.log(
  '\nwrote bench/results/speculative.md, speculative.json, speculative-vs-K.svg, speculative-vs-acceptance.svg',
);
process.exit(0);
