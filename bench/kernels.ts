/**
 * `npm run bench` (first half): per kernel and backend, the median time (tinybench p50) and the ratio to the
 * plain-TypeScript float32 loop (bench/baselines.ts) measured in the same run, at realistic sizes:
 *   scan       d_inner 2048, N 16, L 512 (softplus Δ + bias, D, z; per-time B/C)
 *   matvec     4096 × 4096 (the linear kernel with one row)
 *   multistep  d_inner 4096, N 16, K = 1..8 new steps (no replay), also against one state update and
 *              K separate state updates on the same backend
 * Writes bench/results/kernels.json and bench/results/kernels.md.
 * Options: --backends cpu,webasm,... (default: every available kernel backend); --quick (fewer samples).
 */
import { join } from 'node:path';
import { Bench } from 'tinybench';
import { backendStatus, getOps, type Ops } from '../lib/ops.js';
import { Rng } from '../lib/rng.js';
import { Tensor } from '../lib/tensor.js';
import { writeFile } from '../lib/io/writer.js';
import { matvecLoop, multistepLoop, scanLoop } from './baselines.js';
import { lookup } from '../lib/checked.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const bi = args.indexOf('--backends');
const status = await backendStatus();
const wanted =
  bi >= 0 ? args[bi + 1].split(',') : status.filter((s) => s.available && s.name !== 'reference').map((s) => s.name);
for (const s of status) if (!s.available) console.log(`# backend '${s.name}' not available here: ${s.reason}`);

const r = new Rng(2024);
const f32 = (shape: number[], lo: number, hi: number) => Tensor.uniform(r, shape, lo, hi, 'float32');

async function median(name: string, fn: () => unknown, samples: number): Promise<number> {
  await fn(); // compile / warm
  const b = new Bench({ iterations: samples, time: 0, warmupIterations: 0, warmupTime: 0 });
  b.add(name, async () => {
    await fn();
  });
  await b.run();
  const res = b.tasks[0].result as unknown as { latency?: { p50: number }; error?: Error };
  if (!res.latency) throw res.error ?? new Error(`${name}: no result`);
  return res.latency.p50;
}

interface Row {
  kernel: string;
  size: string;
  backend: string;
  medianMs: number;
  ratioToLoop: number;
  extra?: Record<string, number>;
}
const rows: Row[] = [];
const log = (row: Row) => {
  rows.push(row);
  const extra = row.extra
    ? ' ' +
      Object.entries(row.extra)
        .map(([k, v]) => `${k}=${v.toFixed(2)}`)
        .join(' ')
    : '';
  console.log(
    `${row.kernel.padEnd(16)} ${row.size.padEnd(24)} ${row.backend.padEnd(16)} ${row.medianMs.toFixed(2).padStart(10)} ms  ×${row.ratioToLoop.toFixed(2)} of loop time${extra}`,
  );
};

// ---- scan ----
{
  const dim = 2048,
    N = 16,
    L = 512;
  const u = f32([1, dim, L], -1, 1),
    delta = f32([1, dim, L], -1, 1),
    A = f32([dim, N], -2, -0.1);
  const B = f32([1, N, L], -1, 1),
    C = f32([1, N, L], -1, 1),
    D = f32([dim], -1, 1),
    z = f32([1, dim, L], -1, 1),
    bias = f32([dim], -4, -2);
  const size = `d${dim} N${N} L${L}`;
  const base = await median(
    'scan loop',
    () =>
      scanLoop(
        u.data as Float32Array,
        delta.data as Float32Array,
        A.data as Float32Array,
        B.data as Float32Array,
        C.data as Float32Array,
        D.data as Float32Array,
        z.data as Float32Array,
        bias.data as Float32Array,
        dim,
        N,
        L,
      ),
    quick ? 2 : 5,
  );
  log({ kernel: 'selective_scan', size, backend: 'ts-f32-loop', medianMs: base, ratioToLoop: 1 });
  for (const name of wanted) {
    const ops = await getOps(name);
    const ms = await median(
      `scan ${name}`,
      () => ops.selectiveScan({ u, delta, A, B, C, D, z, deltaBias: bias, deltaSoftplus: true }),
      quick ? 1 : 3,
    );
    log({ kernel: 'selective_scan', size, backend: name, medianMs: ms, ratioToLoop: ms / base });
  }
}

// ---- matvec ----
{
  const n = 4096;
  const W = f32([n, n], -1, 1),
    x = f32([1, n], -1, 1);
  const size = `${n}x${n}`;
  const base = await median(
    'matvec loop',
    () => matvecLoop(W.data as Float32Array, x.data as Float32Array, n, n),
    quick ? 5 : 20,
  );
  log({ kernel: 'matvec', size, backend: 'ts-f32-loop', medianMs: base, ratioToLoop: 1 });
  for (const name of wanted) {
    const ops = await getOps(name);
    const ms = await median(`matvec ${name}`, () => ops.linear(x, W), quick ? 3 : 10);
    log({ kernel: 'matvec', size, backend: name, medianMs: ms, ratioToLoop: ms / base });
  }
}

// ---- multistep vs state updates ----
{
  const dim = 4096,
    N = 16;
  const hI = f32([1, dim, N], -1, 1),
    A = f32([dim, N], -2, -0.1),
    bias = f32([dim], -4, -2);
  const K1 = 9;
  const xc = f32([1, K1, dim], -1, 1),
    dtc = f32([1, K1, dim], -1, 1),
    Bc = f32([1, K1, N], -1, 1);
  const opsFor: Record<string, Ops> = {};
  for (const name of wanted) opsFor[name] = await getOps(name);
  const one: Record<string, number> = {};
  for (const name of wanted) {
    const o = lookup(opsFor, name);
    const x = f32([1, dim], -1, 1),
      dt = f32([1, dim], -1, 1),
      B = f32([1, N], -1, 1),
      C = f32([1, N], -1, 1);
    one[name] = await median(
      `update ${name}`,
      () => o.selectiveStateUpdate({ state: hI, x, delta: dt, A, B, C, deltaBias: bias, deltaSoftplus: true }),
      quick ? 3 : 10,
    );
  }
  for (let K = 1; K <= 8; K++) {
    const x = f32([1, K, dim], -1, 1),
      dt = f32([1, K, dim], -1, 1),
      B = f32([1, K, N], -1, 1),
      C = f32([1, K, N], -1, 1);
    const size = `d${dim} N${N} K${K}`;
    const base = await median(
      `ms loop ${K}`,
      () =>
        multistepLoop(
          hI.data as Float32Array,
          x.data as Float32Array,
          dt.data as Float32Array,
          B.data as Float32Array,
          C.data as Float32Array,
          A.data as Float32Array,
          bias.data as Float32Array,
          dim,
          N,
          K,
        ),
      quick ? 3 : 10,
    );
    log({ kernel: 'multistep', size, backend: 'ts-f32-loop', medianMs: base, ratioToLoop: 1 });
    for (const name of wanted) {
      const o = lookup(opsFor, name);
      const ms = await median(
        `ms ${name} ${K}`,
        () =>
          o.multistep({
            hI,
            xCache: xc,
            deltaCache: dtc,
            BCache: Bc,
            recomputeSteps: 0,
            x,
            delta: dt,
            B,
            C,
            A,
            deltaBias: bias,
            deltaSoftplus: true,
          }),
        quick ? 2 : 5,
      );
      const rowAt = (t: Tensor, k: number) => t.slice(1, k, k + 1).reshape([1, t.shape[2]]);
      const xs = Array.from({ length: K }, (_, k) => ({
        x: rowAt(x, k),
        delta: rowAt(dt, k),
        B: rowAt(B, k),
        C: rowAt(C, k),
      }));
      const sep = await median(
        `sep ${name} ${K}`,
        async () => {
          let state = hI;
          for (const s of xs)
            state = (await o.selectiveStateUpdate({ state, ...s, A, deltaBias: bias, deltaSoftplus: true })).state;
        },
        quick ? 2 : 5,
      );
      log({
        kernel: 'multistep',
        size,
        backend: name,
        medianMs: ms,
        ratioToLoop: ms / base,
        extra: { vsOneUpdate: ms / lookup(one, name), vsKUpdates: ms / sep },
      });
    }
  }
}

const oi = args.indexOf('--out');
const dir = oi >= 0 ? args[oi + 1] : join(import.meta.dirname, 'results');
const meta = {
  date: new Date().toISOString(),
  node: process.version,
  cpus: (await import('node:os')).cpus().length,
  quick,
};
writeFile(join(dir, 'kernels.json'), JSON.stringify({ meta, rows }, null, 1) + '\n');
const md = [
  `# Benchmark results (${meta.date}, node ${meta.node}, ${meta.cpus} cores${quick ? ', --quick' : ''})`,
  '',
  'Median of tinybench samples; ratio = backend time / plain-TypeScript float32 loop time in the same run (lower is faster).',
  'multistep: vsOneUpdate = time / one state-update call on the same backend; vsKUpdates = time / K separate state-update calls.',
  '',
  '| kernel | size | backend | median ms | × loop time | vs one update | vs K updates |',
  '| --- | --- | --- | ---: | ---: | ---: | ---: |',
  ...rows.map(
    (r) =>
      `| ${r.kernel} | ${r.size} | ${r.backend} | ${r.medianMs.toFixed(2)} | ${r.ratioToLoop.toFixed(2)} | ${r.extra?.vsOneUpdate?.toFixed(2) ?? ''} | ${r.extra?.vsKUpdates?.toFixed(2) ?? ''} |`,
  ),
  '',
].join('\n');
writeFile(join(dir, 'kernels.md'), md);
console.log(`\nwrote ${join('bench', 'results', 'kernels.md')} and kernels.json`);
process.exit(0);
