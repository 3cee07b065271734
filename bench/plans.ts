/**
 * What a fused plan (kernels/plans.ts, GPU.js createPipeline) buys per op on a GPU.js backend: the
 * d512 models' MLP (gate, up, SiLU·up, down), an attention layer's q/k/v projections and a Mamba-2 layer's
 * one-step state update, for one token (decode) and for a verify window of 9, each fused and kernel by kernel
 * (`rt.plans.enabled` off), interleaved, median of the repeats. Weights are model weights (resident on webgpu either
 * way); the results are the same bits both ways (checked here too).
 *   node --import tsx bench/plans.ts [--backend webgpu] [--reps 30] [--out DIR]
 * Writes plans.{md,json} to DIR (default bench/results).
 */
import { join } from 'node:path';
import { getOps } from '../lib/ops.js';
import { getRuntime, type KernelBackendName } from '../kernels/runtime.js';
import { markImmutable } from '../lib/weight_registry.js';
import { Rng } from '../lib/rng.js';
import { Tensor } from '../lib/tensor.js';
import { writeFile } from '../lib/io/writer.js';

const args = process.argv.slice(2);
const flag = (k: string) => (args.includes(`--${k}`) ? args[args.indexOf(`--${k}`) + 1] : undefined);
const backend = (flag('backend') ?? 'webgpu') as KernelBackendName;
const reps = Number(flag('reps') ?? 30);
const outDir = flag('out') ?? join(import.meta.dirname, 'results');
const ops = await getOps(backend);
const rt = await getRuntime(backend);
const r = new Rng(3);
const w = (shape: number[], std = 0.05) => {
  const t = Tensor.normal(r, shape, 0, std);
  markImmutable(t.data);
  return t;
};
const d = 512;
const f = 1408;
const H = 8;
const P = 64;
const N = 64;
const mlp = [w([f, d]), w([f, d]), w([d, f])] as const;
const qkv = [{ weight: w([512, d]) }, { weight: w([256, d]) }, { weight: w([256, d]) }];
const A = w([H, P, N], 0.5).map((v) => -Math.abs(v) - 0.1);
markImmutable(A.data);
const [D, dtb] = [w([H, P]), w([H, P])];
const cases: Array<{ name: string; rows: number; run: () => Promise<Float32Array[]> }> = [];
for (const rows of [1, 9]) {
  const x = Tensor.normal(r, [rows, d]);
  cases.push({
    name: 'MLP (gate, up, SiLU·up, down)',
    rows,
    run: async () => [(await ops.gatedMlp(x, ...mlp)).data as Float32Array],
  });
  cases.push({
    name: 'q, k, v projections',
    rows,
    run: async () => (await ops.linears(x, qkv)).map((t) => t.data as Float32Array),
  });
}
const su = {
  state: Tensor.normal(r, [1, H, P, N]),
  x: Tensor.normal(r, [1, H, P]),
  delta: Tensor.normal(r, [1, H, P], 0.5),
  A,
  B: Tensor.normal(r, [1, 4, N]),
  C: Tensor.normal(r, [1, 4, N]),
  D,
  z: Tensor.normal(r, [1, H, P]),
  deltaBias: dtb,
  deltaSoftplus: true,
};
cases.push({
  name: 'Mamba-2 state update (two passes)',
  rows: 1,
  run: async () => Object.values(await ops.selectiveStateUpdate(su)).map((t) => t.data as Float32Array),
});

const median = (a: number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];
const rowsOut: Array<{
  op: string;
  rows: number;
  fusedMs: number;
  kernelByKernelMs: number;
  ratio: number;
  sameBits: boolean;
}> = [];
for (const c of cases) {
  const t: Record<'fused' | 'loose', number[]> = { fused: [], loose: [] };
  const res: Record<string, Float32Array[]> = {};
  for (let i = 0; i < reps + 3; i++)
    for (const mode of ['fused', 'loose'] as const) {
      rt.plans.enabled = mode === 'fused';
      const t0 = performance.now();
      res[mode] = await c.run();
      if (i >= 3) t[mode].push(performance.now() - t0); // the first calls compile
    }
  rt.plans.enabled = true;
  const sameBits = res.fused.every(
    (a, i) => a.length === res.loose[i].length && a.every((v, j) => Object.is(v, res.loose[i][j])),
  );
  const row = {
    op: c.name,
    rows: c.rows,
    fusedMs: median(t.fused),
    kernelByKernelMs: median(t.loose),
    ratio: median(t.loose) / median(t.fused),
    sameBits,
  };
  rowsOut.push(row);
  console.log(
    `${c.name.padEnd(36)} ${String(c.rows).padStart(2)} rows  fused ${row.fusedMs.toFixed(3)} ms  kernel by kernel ${row.kernelByKernelMs.toFixed(3)} ms  ×${row.ratio.toFixed(2)}  same bits: ${sameBits}`,
  );
}
const date = new Date().toISOString();
writeFile(
  join(outDir, 'plans.json'),
  JSON.stringify({ date, backend, node: process.version, reps, rows: rowsOut }, null, 1) + '\n',
);
writeFile(
  join(outDir, 'plans.md'),
  [
    `# Fused plans against kernel by kernel (${date}, node ${process.version}, backend ${backend})`,
    '',
    `Each op on d512 shapes with model weights, fused (one GPU.js pipeline) and kernel by kernel, interleaved; median of ${reps} after 3 warm-up calls each. Made by \`node --import tsx bench/plans.ts --backend ${backend}\`.`,
    '',
    '| op | rows | fused ms | kernel by kernel ms | kernel by kernel / fused | same bits |',
    '| --- | ---: | ---: | ---: | ---: | --- |',
    ...rowsOut.map(
      (x) =>
        `| ${x.op} | ${x.rows} | ${x.fusedMs.toFixed(3)} | ${x.kernelByKernelMs.toFixed(3)} | ×${x.ratio.toFixed(2)} | ${x.sameBits ? 'yes' : 'NO'} |`,
    ),
    '',
  ].join('\n'),
);
console.log(`wrote ${outDir}/plans.md and plans.json`);
process.exit(0);
