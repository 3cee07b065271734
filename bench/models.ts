/**
 * `npm run bench` (second half): prefill and decode tokens/s of a Llama teacher and its 50%, 25% and 0%
 * attention hybrids (Mamba-2, converted by Algorithm 1) at d_model 512, 8 layers, vocabulary 32000, on each
 * backend; and decode's floor: the bytes of weights read per token (float32 on kernels, float64 on the
 * reference) over the read bandwidth measured in the same run (a SIMD sum with eight accumulators, the fair
 * floor; the one-accumulator JS sums are reported too), as a ratio
 * measured-time / floor-time (1 = bandwidth-bound ideal).
 * Writes bench/results/models.{json,md} and bench/results/models-decode.svg.
 * Options: --backends a,b; --quick (prefill 16, decode 4); --out DIR (default bench/results);
 * --torch-python PATH (default /usr/bin/python3, Debian's python3-torch) and --torch-device cuda (the PyTorch
 * peer on a GPU, one row per model, compared with our first backend: the side-by-side run on the GPU machine).
 * webgpu runs three times: as it is; without fused plans; and also with weights copied per call (same-run ratios).
 * Peers in the same run: PyTorch (above) for every model, and for the Llama teacher onnxruntime-node with a KV
 * cache against ours on wasm-simd, both on 1 and on 2 threads (skipped with --quick unless --onnx).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { backendStatus, getOps } from '../lib/ops.js';
import { randomLlama } from '../lib/model/random.js';
import { convert, saveModel } from '../lib/model/convert.js';
import { generate } from '../lib/model/generate.js';
import { expectedWeights } from '../lib/model/load.js';
import type { HybridModel } from '../lib/model/hybrid.js';
import { writeFile } from '../lib/io/writer.js';
import { barChartSvg, writeSvg } from '../lib/plot/svg.js';
import { SimdGemm } from '../lib/simd/gemm.js';
import { getRuntime } from '../kernels/runtime.js';
import { lastOf } from '../lib/checked.js';
import { torchEnv } from './timing.js';
import ort from 'onnxruntime-node';
import { ortLlamaDecoder } from './peers/onnxruntime.js';

const args = process.argv.slice(2);
// the machine's load when the run starts (and, in meta, when it ends): on a shared machine a load above its cores
// makes every figure slower and the 2-thread ones far slower (a worker waits for a core)
const loadAtStart = loadavg()[0];
const quick = args.includes('--quick');
const bi = args.indexOf('--backends');
const status = await backendStatus();
const backends = bi >= 0 ? args[bi + 1].split(',') : status.filter((s) => s.available).map((s) => s.name);
const opt = (name: string) => (args.indexOf(name) >= 0 ? args[args.indexOf(name) + 1] : undefined);
const TORCH_PY = opt('--torch-python') ?? '/usr/bin/python3';
const TORCH_DEVICE = opt('--torch-device') ?? 'cpu';
const PREFILL = quick ? 16 : 32;
const DECODE = quick ? 4 : 8;

/** Streaming read bandwidth (bytes/s) of a typed array sum: best of 5 over 256 MiB. */
function bandwidth(kind: 'f32' | 'f64'): number {
  const n = (256 * 1024 * 1024) / (kind === 'f32' ? 4 : 8);
  const a = kind === 'f32' ? new Float32Array(n).fill(1) : new Float64Array(n).fill(1);
  let best = Infinity;
  let sink = 0;
  for (let r = 0; r < 5; r++) {
    const t = performance.now();
    let s = 0;
    for (let i = 0; i < n; i++) s += a[i];
    best = Math.min(best, performance.now() - t);
    sink += s;
  }
  if (sink < 0) console.log(sink);
  return (n * (kind === 'f32' ? 4 : 8)) / (best / 1000);
}

/** Parameters read per decoded token: every weight but the embedding table, of which one row. */
function paramsPerToken(m: HybridModel): number {
  let p = 0;
  for (const [name, shape] of Object.entries(expectedWeights(m)))
    p += name === 'model.embed_tokens.weight' ? shape[1] : shape.reduce((a, b) => a * b, 1);
  if (m.llama.tieWordEmbeddings) p += m.llama.vocabSize * m.llama.hiddenSize;
  return p;
}

const spec = { vocab: 32000, hidden: 512, intermediate: 1408, layers: 8, heads: 8, kvHeads: 4, headDim: 64 };
console.log(
  `# building a random Llama teacher (d_model ${spec.hidden}, ${spec.layers} layers, vocab ${spec.vocab}) and its hybrids …`,
);
const teacher = randomLlama(spec, 7);
const models: Array<[string, HybridModel]> = [
  ['teacher (100% attn)', teacher],
  ['hybrid 50%', convert(teacher, { variant: 'mamba2', attentionFraction: 0.5, seed: 1 })],
  ['hybrid 25%', convert(teacher, { variant: 'mamba2', attentionFraction: 0.25, seed: 1 })],
  ['hybrid 0%', convert(teacher, { variant: 'mamba2', attentionFraction: 0, seed: 1 })],
];
// the floor uses the fair read bandwidth (SIMD, eight accumulators: what a C loop reads on one thread); the
// one-accumulator JS sums are reported beside it (they are bound by add latency, ~6× below the memory)
const simdProbe = SimdGemm.load(1);
const fair = simdProbe.readBandwidth();
simdProbe.close();
const jsBw = { f32: bandwidth('f32'), f64: bandwidth('f64') };
const bw = { f32: fair, f64: fair };
console.log(
  `# read bandwidth: SIMD 8-accumulator ${(fair / 1e9).toFixed(2)} GB/s (the floor); one-accumulator JS sum float32 ${(jsBw.f32 / 1e9).toFixed(2)} GB/s, float64 ${(jsBw.f64 / 1e9).toFixed(2)} GB/s`,
);
for (const s of status) if (!s.available) console.log(`# backend '${s.name}' not available here: ${s.reason}`);

interface Row {
  model: string;
  backend: string;
  prefillTokPerS: number;
  decodeTokPerS: number;
  weightBytesPerToken: number;
  floorMs: number;
  decodeMsPerToken: number;
  ratioToFloor: number;
}
const rows: Row[] = [];
const prompt = Array.from({ length: PREFILL }, (_, i) => (i * 7919) % spec.vocab);
// webgpu runs three times: as it is (weights resident, each MLP one fused plan); with every kernel called on
// its own (kernels/plans.ts `enabled` off); and also with every weight copied to the device at every call,
// as GPU.js does for an array argument (residentWeights off): the backend before either. The same run shows
// what each buys.
const UNFUSED = 'webgpu, no fused plans';
const COPIED = 'webgpu, no plans, weights copied per call';
const variants = backends.flatMap((b) => (b === 'webgpu' ? ['webgpu', UNFUSED, COPIED] : [b]));
for (const variant of variants) {
  const backend = variant === COPIED || variant === UNFUSED ? 'webgpu' : variant;
  const ops = await getOps(backend);
  if (backend === 'webgpu') {
    const rt = await getRuntime('webgpu');
    rt.residentWeights = variant !== COPIED;
    rt.plans.enabled = variant === 'webgpu';
  }
  for (const [name, m] of models) {
    process.stderr.write(`  ${variant} ${name}: warm-up … `);
    await generate(ops, m, prompt.slice(0, 4), { maxNewTokens: 2, eos: [] }); // compile kernels, build float32 copies
    await generate(ops, m, prompt, { maxNewTokens: 2, eos: [] });
    process.stderr.write('measure\n');
    const r = await generate(ops, m, prompt, { maxNewTokens: DECODE + 1, eos: [] });
    const bytes = paramsPerToken(m) * (ops.dtype === 'float64' ? 8 : 4);
    const floorMs = (bytes / (ops.dtype === 'float64' ? bw.f64 : bw.f32)) * 1000;
    const msTok = r.decode.ms / r.decode.tokens;
    const row = {
      model: name,
      backend: variant,
      prefillTokPerS: r.prefill.tokensPerS,
      decodeTokPerS: r.decode.tokensPerS,
      weightBytesPerToken: bytes,
      floorMs,
      decodeMsPerToken: msTok,
      ratioToFloor: msTok / floorMs,
    };
    rows.push(row);
    console.log(
      `${name.padEnd(20)} ${variant.padEnd(16)} prefill ${row.prefillTokPerS.toFixed(1).padStart(8)} tok/s   decode ${row.decodeTokPerS.toFixed(2).padStart(7)} tok/s   ${(bytes / 1e6).toFixed(0)} MB/token, floor ${floorMs.toFixed(1)} ms, ×${row.ratioToFloor.toFixed(1)} of floor`,
    );
  }
}
// PyTorch decoding the same weights (bench/torch_decode.py: KV cache, conv window and SSM state): on the CPU
// on 1 and 2 threads where Debian's python3-torch is installed, or on a GPU (--torch-device cuda); the greedy
// tokens are compared with ours
const torchRows: Array<{
  model: string;
  threads: number;
  device: string;
  blas: string;
  msPerToken: number;
  sameTokens: string;
}> = [];
const onnxRows: Array<{
  model: string;
  threads: number;
  onnxMs: number;
  onnxTokensEqual: string;
  oursMs: number;
  oursTokensEqual: string;
  torchMs: number | undefined;
  floorMs: number;
  /** of ours' ms/token, the one-row products' share (bench/decode_threads.ts: one run with them timed) */
  productsShare: number;
}> = [];
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ourBackend = backends.includes('wasm-simd') ? 'wasm-simd' : backends[0];
const tdir = mkdtempSync(join(tmpdir(), 'mil-bench-models-'));
const modelDir = (name: string) => join(tdir, name.replace(/\W+/g, '_'));
try {
  for (const [name, m] of models) if (!m.mamba || m.mamba.variant === 'mamba2') saveModel(modelDir(name), m);
  await torchPeer();
  if (!quick || args.includes('--onnx')) await onnxPeer();
} finally {
  rmSync(tdir, { recursive: true, force: true });
}

async function torchPeer(): Promise<void> {
  if (spawnSync(TORCH_PY, ['-c', 'import torch'], { encoding: 'utf8' }).status !== 0) {
    console.log(`# PyTorch not installed for ${TORCH_PY} (apt-get install python3-torch): no PyTorch rows`);
    return;
  }
  for (const [name, m] of models) {
    if (m.mamba && m.mamba.variant !== 'mamba2') continue;
    const mdir = modelDir(name);
    if (ourBackend === 'webgpu') {
      const rt = await getRuntime('webgpu');
      rt.residentWeights = true;
      rt.plans.enabled = true;
    }
    const ours = await generate(await getOps(ourBackend), m, prompt, { maxNewTokens: DECODE + 1, eos: [] });
    for (const threads of TORCH_DEVICE === 'cpu' ? [1, 2] : [1]) {
      const out = execFileSync(
        TORCH_PY,
        [
          join(import.meta.dirname, 'torch_decode.py'),
          mdir,
          String(PREFILL),
          String(DECODE + 1),
          `--threads=${threads}`,
          `--device=${TORCH_DEVICE}`,
        ],
        // OpenBLAS as it tunes itself on this CPU (the machine's OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset), on as many threads as torch
        { encoding: 'utf8', maxBuffer: 1 << 24, env: torchEnv(threads) },
      );
      const t = JSON.parse(lastOf(out.trim().split('\n')));
      const same = (t.tokens as number[]).filter((x, i) => x === ours.tokens[i]).length;
      torchRows.push({
        model: name,
        threads,
        device: t.device,
        blas: t.blas,
        msPerToken: t.ms_per_token,
        sameTokens: `${same}/${t.tokens.length}`,
      });
      console.log(
        `${name.padEnd(20)} PyTorch ${t.torch} (${t.blas}) ${t.device} ${threads} thr.  decode ${t.ms_per_token.toFixed(2)} ms/token   greedy tokens equal to ours: ${same}/${t.tokens.length}`,
      );
    }
  }
}

/**
 * The Llama teacher on onnxruntime-node (bench/peers/onnxruntime.ts: its KV-cache decode graph) and ours on
 * wasm-simd with the same number of threads (bench/decode_threads.ts, a process per thread count), 1 and 2
 * threads, each the median of RUNS decodes of DECODE + 1 tokens, ORT and ours alternating; greedy tokens
 * compared with ours in this process.
 */
async function onnxPeer(): Promise<void> {
  const RUNS = 3;
  const [name, m] = models[0];
  const ref = await generate(await getOps(ourBackend), m, prompt, { maxNewTokens: DECODE + 1, eos: [] });
  const same = (tokens: number[]) => `${tokens.filter((x, i) => x === ref.tokens[i]).length}/${tokens.length}`;
  const torchMs = (threads: number) =>
    torchRows.find((t) => t.model === name && t.threads === threads && t.device === 'cpu')?.msPerToken;
  for (const threads of [1, 2]) {
    process.stderr.write(`  onnxruntime ${threads} thr.: building the graph … `);
    const dec = await ortLlamaDecoder(m, threads);
    await dec.decode(prompt.slice(0, 4), 2); // warm-up
    process.stderr.write('measure\n');
    const runs: Array<{ tokens: number[]; msPerToken: number }> = [];
    for (let r = 0; r < RUNS; r++) runs.push(await dec.decode(prompt, DECODE + 1));
    const ortMs = median(runs.map((r) => r.msPerToken));
    const out = execFileSync(
      process.execPath,
      [
        '--import',
        'tsx',
        join(import.meta.dirname, 'decode_threads.ts'),
        modelDir(name),
        String(PREFILL),
        String(DECODE + 1),
        `--threads=${threads}`,
        `--runs=${RUNS}`,
      ],
      { encoding: 'utf8', maxBuffer: 1 << 24 },
    );
    const o = JSON.parse(lastOf(out.trim().split('\n')));
    const floorMs = ((paramsPerToken(m) * 4) / fair) * 1000;
    const row = {
      model: name,
      threads,
      onnxMs: ortMs,
      onnxTokensEqual: same(runs[0].tokens),
      oursMs: o.ms_per_token as number,
      oursTokensEqual: same(o.tokens),
      torchMs: torchMs(threads),
      floorMs,
      productsShare: (o.products_ms_per_token as number) / (o.split_ms_per_token as number),
    };
    onnxRows.push(row);
    console.log(
      `${name.padEnd(20)} ${threads} thr.: onnxruntime-node ${ort.env.versions.common} ${ortMs.toFixed(2)} ms/token (greedy tokens equal to ours: ${row.onnxTokensEqual}); ours wasm-simd ${row.oursMs.toFixed(2)} ms/token = ${(row.oursMs / ortMs).toFixed(2)}× onnxruntime, ${row.torchMs ? (row.oursMs / row.torchMs).toFixed(2) + '× PyTorch, ' : ''}${(row.oursMs / floorMs).toFixed(2)}× the floor (${floorMs.toFixed(1)} ms); products ${(100 * row.productsShare).toFixed(0)}% of ours`,
    );
  }
}

const dir = opt('--out') ?? join(import.meta.dirname, 'results');
const meta = {
  date: new Date().toISOString(),
  node: process.version,
  prefillTokens: PREFILL,
  decodeTokens: DECODE,
  spec,
  loadAverage1m: { start: loadAtStart, end: loadavg()[0] },
  // the host: the same 2-core VM lands on different CPUs between sessions, and the peers' ratios move with it
  cpu: cpus()[0]?.model ?? 'unknown',
  torch: torchRows,
  onnxruntime: onnxRows,
  bandwidthGBs: { fairSimd: fair / 1e9, jsSumF32: jsBw.f32 / 1e9, jsSumF64: jsBw.f64 / 1e9 },
};
writeFile(join(dir, 'models.json'), JSON.stringify({ meta, rows }, null, 1) + '\n');
writeFile(
  join(dir, 'models.md'),
  [
    `# Model benchmark (${meta.date}, node ${meta.node})`,
    '',
    `Random Llama teacher d_model ${spec.hidden}, ${spec.layers} layers, ${spec.heads} heads (${spec.kvHeads} kv), vocab ${spec.vocab}; hybrids are Mamba-2 conversions (Algorithm 1).`,
    `CPU: ${meta.cpu}. Load average (1 min) on this machine's ${availableParallelism()} cores: ${meta.loadAverage1m.start.toFixed(1)} at the start, ${meta.loadAverage1m.end.toFixed(1)} at the end (above the core count every figure is slowed, the 2-thread ones most).`,
    `Prefill ${PREFILL} tokens in one forward; decode ${DECODE} tokens one forward each. Floor = weight bytes per token / the fair read bandwidth measured in this run: ${meta.bandwidthGBs.fairSimd.toFixed(1)} GB/s (a SIMD sum with eight accumulators; a one-accumulator JS sum reads only ${meta.bandwidthGBs.jsSumF32.toFixed(1)} GB/s in float32, ${meta.bandwidthGBs.jsSumF64.toFixed(1)} in float64, bound by the latency of its adds).`,
    '',
    '| model | backend | prefill tok/s | decode tok/s | weight MB/token | floor ms/token | decode ms/token | × floor |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows.map(
      (r) =>
        `| ${r.model} | ${r.backend} | ${r.prefillTokPerS.toFixed(1)} | ${r.decodeTokPerS.toFixed(2)} | ${(r.weightBytesPerToken / 1e6).toFixed(1)} | ${r.floorMs.toFixed(1)} | ${r.decodeMsPerToken.toFixed(1)} | ${r.ratioToFloor.toFixed(1)} |`,
    ),
    '',
    ...(torchRows.length
      ? [
          `PyTorch on ${TORCH_DEVICE === 'cpu' ? 'the CPU' : `the GPU (${TORCH_DEVICE})`}, same weights, same prompt (bench/torch_decode.py, eager, float32, caches):`,
          '',
          `| model | PyTorch device (BLAS) | threads | PyTorch decode ms/token | ours (${ourBackend}) ms/token | ours / PyTorch | greedy tokens equal |`,
          '| --- | --- | ---: | ---: | ---: | ---: | --- |',
          ...torchRows.map((t) => {
            const ours = rows.find((r) => r.model === t.model && r.backend === ourBackend)?.decodeMsPerToken;
            return `| ${t.model} | ${t.device} (${t.blas}) | ${t.threads} | ${t.msPerToken.toFixed(2)} | ${ours?.toFixed(1) ?? '—'} | ${ours ? (ours / t.msPerToken).toFixed(2) + '×' : '—'} | ${t.sameTokens} |`;
          }),
          '',
        ]
      : []),
    ...(onnxRows.length
      ? [
          `The teacher on onnxruntime-node ${ort.env.versions.common} (CPU provider, MLAS; its KV-cache decode graph built in bench/peers/onnxruntime.ts) and ours on wasm-simd on as many threads (bench/decode_threads.ts, its own process), the same weights and prompt; each the median of 3 decodes of ${DECODE + 1} tokens. PyTorch from the table above. "products / rest": of ours' time per token, the one-row products (SimdGemm.linear and linearMany, timed in one more run) and the rest of the step (norms, RoPE, attention over the cache, copies). Targets (issue #28): ours ≤ 1.0× onnxruntime and ≤ 1.3× the floor on 1 and on 2 threads.`,
          '',
          '| model | threads | onnxruntime ms/token | ours ms/token | ours / onnxruntime | ours / PyTorch | floor ms/token | ours / floor | ours: products / rest | greedy tokens equal (onnxruntime, ours) |',
          '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |',
          ...onnxRows.map(
            (o) =>
              `| ${o.model} | ${o.threads} | ${o.onnxMs.toFixed(2)} | ${o.oursMs.toFixed(2)} | ${(o.oursMs / o.onnxMs).toFixed(2)}× | ${o.torchMs ? (o.oursMs / o.torchMs).toFixed(2) + '×' : '—'} | ${o.floorMs.toFixed(2)} | ${(o.oursMs / o.floorMs).toFixed(2)}× | ${(100 * o.productsShare).toFixed(0)}% / ${(100 - 100 * o.productsShare).toFixed(0)}% | ${o.onnxTokensEqual}, ${o.oursTokensEqual} |`,
          ),
          '',
        ]
      : []),
  ].join('\n'),
);
writeSvg(
  join(dir, 'models-decode.svg'),
  barChartSvg({
    title: `Decode tokens/s (d_model ${spec.hidden}, ${spec.layers} layers, vocab ${spec.vocab})`,
    yLabel: 'tokens / s',
    groups: models.map(([n]) => n),
    series: variants.map((b) => ({
      name: b,
      values: models.map(([n]) => rows.find((r) => r.model === n && r.backend === b)?.decodeTokPerS ?? null),
    })),
  }),
);
console.log(`\nwrote ${dir}/models.md, models.json and models-decode.svg`);
process.exit(0);
