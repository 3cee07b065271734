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
import { randomLlama } from '../lib/model/random.js';
import { convert, saveModel } from '../lib/model/convert.js';
import { forward, newCache, type HybridModel } from '../lib/model/hybrid.js';
import { getOps } from '../lib/ops.js';
import { FLOAT64_ENGINE, lossAndGrads, simdEngine, trainableBy } from '../lib/train/model.js';
import { SimdGemm } from '../lib/simd/gemm.js';
import { adamStep, clipGradNorm, newAdamState } from '../lib/train/optim.js';
import { Rng } from '../lib/rng.js';
import { writeFile } from '../lib/io/writer.js';
import { barChartSvg, writeSvg } from '../lib/plot/svg.js';

const { values } = parseArgs({ options: { batch: { type: 'string', default: '8' }, len: { type: 'string', default: '256' }, threads: { type: 'string', default: '2' } } });
const B = Number(values.batch);
const L = Number(values.len);
const threads = Number(values.threads);

const teacher = randomLlama({ vocab: 2048, hidden: 256, intermediate: 688, layers: 4, heads: 4, kvHeads: 2 }, 1);
const models: Array<[string, HybridModel]> = [
  ['teacher (Llama, lm)', teacher],
  ['Mamba-1 50% (distill, stage 1)', convert(teacher, { variant: 'mamba1', attentionFraction: 0.5, seed: 1 })],
  ['Mamba-2 50% (distill, stage 1)', convert(teacher, { variant: 'mamba2', attentionFraction: 0.5, seed: 1 })],
];
const r = new Rng(7);
const ids = Array.from({ length: B }, () => Array.from({ length: L }, () => r.int(0, 2047)));
const dir = mkdtempSync(join(tmpdir(), 'mil-bench-train-'));
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

const rows: Array<Record<string, unknown>> = [];
const ops = await getOps('reference');
const engines = [
  ['reference (float64)', FLOAT64_ENGINE],
  ['wasm-simd (float32 products, all cores)', simdEngine(SimdGemm.shared())],
] as const;
for (const [name, m] of models) {
  const distill = m !== teacher;
  const trainable = trainableBy(distill ? 'mamba' : 'all');
  const t0 = performance.now();
  const teacherLogits = distill ? Float64Array.from((await forward(ops, teacher, ids, newCache(teacher, B))).data) : undefined;
  const teacherMs = performance.now() - t0;
  let torch: Record<string, unknown> = { torch: 'not installed (apt-get install python3-torch)' };
  if (torchOk) {
    const mdir = join(dir, name.replace(/\W+/g, '_'));
    saveModel(mdir, m);
    const tdir = join(dir, 'teacher_for_torch');
    if (distill) saveModel(tdir, teacher);
    const out = execFileSync('/usr/bin/python3', [join(import.meta.dirname, 'torch_train.py'), mdir, idsPath, ...(distill ? [tdir] : []), `--threads=${threads}`], { encoding: 'utf8', maxBuffer: 1 << 24 });
    const t = JSON.parse(out.trim().split('\n').at(-1)!);
    torch = { torchMs: t.ms, torchTokensPerS: (B * L * 1000) / t.ms, torchThreads: t.threads, torchVersion: t.torch, torchLoss: t.loss };
  }
  for (const [backend, engine] of engines) {
    if (backend.startsWith('wasm')) lossAndGrads(m, ids.slice(0, 1), { objective: distill ? 'distill' : 'lm', teacherLogits: teacherLogits?.subarray(0, L * 2048), klWeight: 0.1, ceWeight: 1, trainable, engine }); // warm-up (tier-up)
    const t1 = performance.now();
    const res = lossAndGrads(m, ids, { objective: distill ? 'distill' : 'lm', teacherLogits, klWeight: 0.1, ceWeight: 1, trainable, engine });
    clipGradNorm(res.grads, 0.1);
    const params = new Map([...res.grads.keys()].map((n) => [n, Float64Array.from(m.weights.get(n).data)]));
    adamStep(params, res.grads, newAdamState(), { kind: 'adam', lr: 1e-3, betas: [0.9, 0.98], eps: 1e-8, weightDecay: 0 });
    const ms = performance.now() - t1;
    const row: Record<string, unknown> = { model: name, backend, tokens: B * L, ms, tokensPerS: (B * L * 1000) / ms, gflops: flops(m) / ms / 1e6, teacherForwardMs: teacherMs, loss: res.loss, ...torch };
    if (typeof torch.torchMs === 'number') row.ratio = ms / torch.torchMs;
    rows.push(row);
    console.log(JSON.stringify(row));
  }
}
rmSync(dir, { recursive: true, force: true });

const meta = { date: new Date().toISOString(), batch: B, len: L, threads, node: process.version, note: 'one step = forward + backward + clip + Adam; hybrids: distill against the teacher, only Mamba parameters train; teacher forward timed apart' };
const res = join(import.meta.dirname, 'results');
writeFile(join(res, 'train.json'), JSON.stringify({ meta, rows }, null, 1) + '\n');
const fmt = (v: unknown, d = 1) => (typeof v === 'number' ? v.toFixed(d) : String(v ?? '—'));
let md = `# One training step (batch ${B} × ${L} tokens), this machine\n\n${meta.note}. PyTorch: ${fmt(rows[0]?.torchVersion)} on ${threads} thread(s), float32, eager (the upstream reference loops for the scans).\n\n`;
md += '| model | ours: backend | ours: ms | ours: tokens/s | ours: GFLOP/s | PyTorch ms | PyTorch tokens/s | ratio (ours / PyTorch) | loss ours / PyTorch |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n';
for (const r of rows) md += `| ${r.model} | ${r.backend} | ${fmt(r.ms, 0)} | ${fmt(r.tokensPerS)} | ${fmt(r.gflops, 2)} | ${fmt(r.torchMs, 0)} | ${fmt(r.torchTokensPerS)} | ${fmt(r.ratio, 1)}× | ${fmt(r.loss, 4)} / ${fmt(r.torchLoss, 4)} |\n`;
writeFile(join(res, 'train.md'), md);
writeSvg(
  join(res, 'train.svg'),
  barChartSvg({
    title: `one training step, batch ${B} × ${L} tokens (higher is better)`,
    yLabel: 'tokens/s',
    groups: models.map(([n]) => n.split(' (')[0]!),
    series: [
      ...engines.map(([e]) => ({ name: `ours, ${e.split(' (')[0]}`, values: rows.filter((r) => r.backend === e).map((r) => r.tokensPerS as number) })),
      { name: `PyTorch CPU (${threads} thr.)`, values: rows.filter((r) => r.backend === engines[0][0]).map((r) => (typeof r.torchTokensPerS === 'number' ? r.torchTokensPerS : null)) },
    ],
  }),
);
console.log(md);
