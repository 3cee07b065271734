/**
 * `npm run bench:train`: one training step (forward + backward + clip + Adam) of the issue's teacher config —
 * a Llama of d_model 256, 4 layers, 4 heads (2 kv heads), vocabulary 2048 — and of its 50% Mamba-1 and
 * Mamba-2 hybrids under stage-1 freezing (distill against the teacher), on batch × sequence tokens; and the
 * same step in PyTorch on the CPU (bench/torch_train.py, Debian's python3-torch) on the same weights and ids,
 * measured in the same run. Where torch is absent the row says so (install: apt-get install python3-torch).
 *
 * Two engines for the linear layers' products: the float64 reference (what the golden cases check) and the
 * wasm-simd kernels in float32 (everything else float64); PyTorch runs float32. Results: bench/results/train.{json,md,svg}.
 * usage: node --import tsx bench/train.ts [--batch 8] [--len 256] [--threads 2]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { saveModel } from '../lib/model/convert.js';
import { forward, newCache, type HybridModel } from '../lib/model/hybrid.js';
import { getOps } from '../lib/ops.js';
import { FLOAT64_ENGINE, lossAndGrads, simdEngine, trainableBy } from '../lib/train/model.js';
import { SimdGemm } from '../lib/simd/gemm.js';
import { adamStep, clipGradNorm, newAdamState } from '../lib/train/optim.js';
import { Rng } from '../lib/rng.js';
import { writeFile } from '../lib/io/writer.js';
import { barChartSvg, writeSvg } from '../lib/plot/svg.js';
import { trainBenchIds, trainBenchModels } from './train_setup.js';
import { lastOf } from '../lib/checked.js';

const { values } = parseArgs({
  options: {
    batch: { type: 'string', default: '8' },
    len: { type: 'string', default: '256' },
    threads: { type: 'string', default: '2' },
  },
});
const B = Number(values.batch);
const L = Number(values.len);
const threads = Number(values.threads);

const { teacher, models } = trainBenchModels();
const ids = trainBenchIds(B, L);
const dir = mkdtempSync(join(tmpdir(), 'mil-bench-train-'));
// the scratch folder goes however the run ends: finished, thrown, or stopped (Ctrl-C, kill)
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(sig === 'SIGINT' ? 130 : 143));
const idsPath = join(dir, 'ids.json');
writeFileSync(idsPath, JSON.stringify(ids));
const torchOk = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { encoding: 'utf8' }).status === 0;

/** Multiply-adds of one step: 6·(trainable-or-not parameter matmuls)·tokens is the usual estimate; we count the
 * linear layers exactly (forward 2·N·I·O, backward 4·N·I·O: dx and dW) plus attention (4·L²·d per head, ×3). */
function flops(m: HybridModel): number {
  let f = 0;
  for (const n of m.weights.names()) {
    const t = m.weights.get(n);
    if (t.rank === 2 && !n.endsWith('embed_tokens.weight')) f += 6 * B * L * t.size;
  }
  const attnLayers = m.mamba ? m.mamba.attnLayers.length : m.llama.numLayers;
  f += attnLayers * m.llama.numHeads * B * 3 * 2 * L * L * m.llama.headDim;
  return f;
}

// The machine's matrix-product peak, measured in this run: numpy's float32 sgemm (OpenBLAS, 1024³, best of 5)
// on the same threads; each step's GFLOP/s is reported against it. For context, the same product in the
// PyTorch the step is compared with, and in our wasm-simd kernel (512³).
function bestOf(f: () => void, reps = 5): number {
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    f();
    best = Math.min(best, performance.now() - t);
  }
  return best;
}
const pn = 512;
const r = new Rng(11); // the peak product's random matrix
const pa = Float32Array.from({ length: pn * pn }, () => r.normal(0, 1));
const simdPeak = (2 * pn ** 3) / bestOf(() => SimdGemm.sharedExact().matmul(pa, pn, pn, pa, pn)) / 1e6;
const sgemm = (python: string, lib: 'numpy' | 'torch'): number | null => {
  const setup =
    lib === 'numpy'
      ? 'import numpy as np\na = np.random.randn(1024, 1024).astype(np.float32)\nb = a.copy()'
      : `import torch\ntorch.set_num_threads(${threads})\na = torch.randn(1024, 1024)\nb = a.clone()`;
  const src = `import time\n${setup}\na @ b\nbest = 1e9\nfor _ in range(5):\n    t = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - t)\nprint(2 * 1024**3 / best / 1e9)`;
  const p = spawnSync(python, ['-c', src], {
    encoding: 'utf8',
    env: { ...process.env, OPENBLAS_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads) },
  });
  return p.status === 0 ? Number(p.stdout.trim()) : null;
};
const machinePeak = sgemm('python3', 'numpy');
const torchSgemm = torchOk ? sgemm('/usr/bin/python3', 'torch') : null;
console.log(JSON.stringify({ machinePeakGflops: machinePeak, torchSgemmGflops: torchSgemm, simdPeakGflops: simdPeak }));

const rows: Array<Record<string, unknown>> = [];
const ops = await getOps('reference');
const engines = [
  ['reference (float64)', FLOAT64_ENGINE],
  ['wasm-simd (float32 products, all cores)', simdEngine(SimdGemm.sharedExact())],
] as const;
for (const [name, m] of models) {
  const distill = m !== teacher;
  const trainable = trainableBy(distill ? 'mamba' : 'all');
  const t0 = performance.now();
  const teacherLogits = distill
    ? Float64Array.from((await forward(ops, teacher, ids, newCache(teacher, B))).data)
    : undefined;
  const teacherMs = performance.now() - t0;
  let torch: Record<string, unknown> = { torch: 'not installed (apt-get install python3-torch)' };
  if (torchOk) {
    const mdir = join(dir, name.replace(/\W+/g, '_'));
    saveModel(mdir, m);
    const tdir = join(dir, 'teacher_for_torch');
    if (distill) saveModel(tdir, teacher);
    const out = execFileSync(
      '/usr/bin/python3',
      [join(import.meta.dirname, 'torch_train.py'), mdir, idsPath, ...(distill ? [tdir] : []), `--threads=${threads}`],
      { encoding: 'utf8', maxBuffer: 1 << 24 },
    );
    const t = JSON.parse(lastOf(out.trim().split('\n')));
    torch = {
      torchMs: t.ms,
      torchTokensPerS: (B * L * 1000) / t.ms,
      torchThreads: t.threads,
      torchVersion: t.torch,
      torchLoss: t.loss,
    };
  }
  for (const [backend, engine] of engines) {
    if (backend.startsWith('wasm'))
      lossAndGrads(m, ids.slice(0, 1), {
        objective: distill ? 'distill' : 'lm',
        teacherLogits: teacherLogits?.subarray(0, L * 2048),
        klWeight: 0.1,
        ceWeight: 1,
        trainable,
        engine,
      }); // warm-up (tier-up)
    const t1 = performance.now();
    const res = lossAndGrads(m, ids, {
      objective: distill ? 'distill' : 'lm',
      teacherLogits,
      klWeight: 0.1,
      ceWeight: 1,
      trainable,
      engine,
    });
    clipGradNorm(res.grads, 0.1);
    const params = new Map([...res.grads.keys()].map((n) => [n, Float64Array.from(m.weights.get(n).data)]));
    adamStep(params, res.grads, newAdamState(), {
      kind: 'adam',
      lr: 1e-3,
      betas: [0.9, 0.98],
      eps: 1e-8,
      weightDecay: 0,
    });
    const ms = performance.now() - t1;
    const row: Record<string, unknown> = {
      model: name,
      backend,
      tokens: B * L,
      ms,
      tokensPerS: (B * L * 1000) / ms,
      gflops: flops(m) / ms / 1e6,
      peakFraction: machinePeak ? flops(m) / ms / 1e6 / machinePeak : null,
      teacherForwardMs: teacherMs,
      loss: res.loss,
      ...torch,
    };
    if (typeof torch.torchMs === 'number') row.ratio = ms / torch.torchMs;
    rows.push(row);
    console.log(JSON.stringify(row));
  }
}

const meta = {
  date: new Date().toISOString(),
  batch: B,
  len: L,
  threads,
  node: process.version,
  machinePeakGflops: machinePeak,
  torchSgemmGflops: torchSgemm,
  simdPeakGflops: simdPeak,
  note: 'one step = forward + backward + clip + Adam; hybrids: distill against the teacher, only Mamba parameters train; teacher forward timed apart',
};
const res = join(import.meta.dirname, 'results');
writeFile(join(res, 'train.json'), JSON.stringify({ meta, rows }, null, 1) + '\n');
const fmt = (v: unknown, d = 1) => (typeof v === 'number' ? v.toFixed(d) : String(v ?? '—'));
let md = `# One training step (batch ${B} × ${L} tokens), this machine\n\n${meta.note}. PyTorch: ${fmt(rows[0]?.torchVersion)} on ${threads} thread(s), float32, eager (the upstream reference loops for the scans).\n\nThe machine's matrix-product peak, measured in this run: ${fmt(machinePeak)} GFLOP/s (numpy/OpenBLAS float32 sgemm, 1024³, ${threads} thread(s)); "of peak" is a step's GFLOP/s over it. The same product runs at ${fmt(torchSgemm)} GFLOP/s in this PyTorch build and at ${fmt(simdPeak)} in our wasm-simd kernel (512³).\n\n`;
md +=
  '| model | ours: backend | ours: ms | ours: tokens/s | ours: GFLOP/s | of peak | PyTorch ms | PyTorch tokens/s | ratio (ours / PyTorch) | loss ours / PyTorch |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n';
for (const r of rows)
  md += `| ${r.model} | ${r.backend} | ${fmt(r.ms, 0)} | ${fmt(r.tokensPerS)} | ${fmt(r.gflops, 2)} | ${typeof r.peakFraction === 'number' ? `${(100 * r.peakFraction).toFixed(1)}%` : '—'} | ${fmt(r.torchMs, 0)} | ${fmt(r.torchTokensPerS)} | ${fmt(r.ratio, 1)}× | ${fmt(r.loss, 4)} / ${fmt(r.torchLoss, 4)} |\n`;
writeFile(join(res, 'train.md'), md);
writeSvg(
  join(res, 'train.svg'),
  barChartSvg({
    title: `one training step, batch ${B} × ${L} tokens (higher is better)`,
    yLabel: 'tokens/s',
    groups: models.map(([n]) => n.split(' (')[0]),
    series: [
      ...engines.map(([e]) => ({
        name: `ours, ${e.split(' (')[0]}`,
        values: rows.filter((r) => r.backend === e).map((r) => r.tokensPerS as number),
      })),
      {
        name: `PyTorch CPU (${threads} thr.)`,
        values: rows
          .filter((r) => r.backend === engines[0][0])
          .map((r) => (typeof r.torchTokensPerS === 'number' ? r.torchTokensPerS : null)),
      },
    ],
  }),
);
console.log(md);
