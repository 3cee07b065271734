/**
 * `npm run bench:matmul`: matrix-product GFLOP/s on the shapes, every peer measured in this run:
 *   ours      lib/simd/gemm.ts on 1 and 2 threads, y = x·Wᵀ with W resident (packed once): the build the wasm-simd
 *             backend runs (asm/gemm-fma.wasm, fused multiply-add, where the engine has relaxed SIMD), and the
 *             baseline build (asm/gemm.wasm, the training engine's) on 1 thread
 *   tfjs-wasm @tensorflow/tfjs-backend-wasm (XNNPACK, 128-bit SIMD), 1 thread, c = a·b with b already laid
 *             out as it wants it (transposeB = false: its x·Wᵀ path is ~10× slower, which would flatter us)
 *   numpy     python3 + numpy (OpenBLAS) on 2 threads, where installed
 *   GPU.js    the webasm backend's matmul kernel (what ops.matmul ran before), on the smallest shape only
 * Ours and tfjs are measured interleaved (see timeAll) and report medians of 11 rounds. Results: bench/results/matmul.{json,md}.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { SimdGemm, fmaWanted } from '../lib/simd/gemm.js';
import { getOps } from '../lib/ops.js';
import { Tensor } from '../lib/tensor.js';
import { Rng } from '../lib/rng.js';
import { writeFile } from '../lib/io/writer.js';
import { timeAll } from './timing.js';
import { startTfjs, tfjsLinear } from './peers/tfjs.js';

const SHAPES: Array<[number, number, number]> = [
  [512, 512, 512],
  [4096, 128, 128],
  [128, 4096, 128],
  [2048, 256, 768], // the teacher's MLP at batch 8 × 256 tokens
  [1, 4096, 4096], // decode: one token through a 4096² weight (memory bound)
];

await startTfjs();
const FMA = fmaWanted();
const one = SimdGemm.load(1, FMA);
const two = SimdGemm.load(2, FMA);
const base = SimdGemm.load(1, false);
// the bound of each build's products, measured in this run: its SIMD multiply-add peak on one thread
const peak = { ours: one.maddPeak().wall, baseline: base.maddPeak().wall };
console.log(JSON.stringify({ maddPeakGflops: peak }));
const r = new Rng(1);
const rows: Array<Record<string, number | string | null>> = [];
for (const [M, K, N] of SHAPES) {
  const x = Float32Array.from({ length: M * K }, () => r.uniform(-1, 1));
  const w = Float32Array.from({ length: N * K }, () => r.uniform(-1, 1));
  const flop = 2 * M * K * N;
  const g = (ms: number) => flop / ms / 1e6;
  const peer = tfjsLinear(x, M, K, w, N);
  const y = new Float32Array(M * N); // reused: no allocation (and no garbage collection) inside the timing
  const [ours1, ours2, tfjs, base1] = (await timeAll([
    () => one.linear(x, M, K, w, N, true, y),
    () => two.linear(x, M, K, w, N, true, y),
    peer.run,
    () => base.linear(x, M, K, w, N, true, y),
  ])) as [number, number, number, number];
  peer.dispose();
  let numpy: number | null = null;
  try {
    const out = execFileSync(
      'python3',
      [
        '-c',
        `import numpy as np, time\na=np.random.rand(${M},${K}).astype(np.float32); b=np.random.rand(${K},${N}).astype(np.float32)\nfor _ in range(5): a@b\nts=[]\nfor _ in range(9):\n  t=time.perf_counter(); n=0\n  while time.perf_counter()-t<0.05: a@b; n+=1\n  ts.append((time.perf_counter()-t)/n*1000)\nprint(sorted(ts)[4])`,
      ],
      { encoding: 'utf8', env: { ...process.env, OPENBLAS_NUM_THREADS: '2' } },
    );
    numpy = Number(out.trim());
  } catch {
    numpy = null;
  }
  let gpujs: number | null = null;
  if (M * K * N <= 512 ** 3) {
    const ops = await getOps('webasm');
    const ta = new Tensor(x, [M, K]);
    const tb = new Tensor(w, [N, K]);
    const t0 = performance.now();
    await ops.linear(ta, tb);
    const t1 = performance.now();
    await ops.linear(ta, tb);
    gpujs = Math.min(t1 - t0, performance.now() - t1);
  }
  const row = {
    shape: `${M}×${K}×${N}`,
    ours1: g(ours1),
    ours2: g(ours2),
    oursBaseline1: g(base1),
    tfjs: g(tfjs),
    numpy: numpy === null ? null : g(numpy),
    gpujs: gpujs === null ? null : g(gpujs),
    ratio1: tfjs / ours1,
    ratio2: tfjs / ours2,
    oursOfPeak1: g(ours1) / peak.ours,
    baselineOfPeak1: g(base1) / peak.baseline,
    numpyOverPeak: numpy === null ? null : g(numpy) / peak.ours,
  };
  rows.push(row);
  console.log(JSON.stringify(row));
}
one.close();
two.close();
base.close();

const meta = {
  date: new Date().toISOString(),
  node: process.version,
  cpu: 'see lscpu',
  fma: FMA,
  maddPeakGflops: peak,
  note: `GFLOP/s = 2·M·K·N / time; ratio = ours / tfjs-wasm GFLOP/s (1 thread each, and ours on 2 threads against tfjs on 1); "ours" is the build the wasm-simd backend runs here (${FMA ? 'asm/gemm-fma.wasm: fused multiply-add' : 'asm/gemm.wasm: this engine has no relaxed SIMD'}), "baseline" asm/gemm.wasm (no fused multiply-add; the training engine's)`,
};
const res = join(import.meta.dirname, 'results');
writeFile(join(res, 'matmul.json'), JSON.stringify({ meta, rows }, null, 1) + '\n');
const f = (v: unknown, d = 1) => (typeof v === 'number' ? v.toFixed(d) : '—');
let md = `# Matrix products, GFLOP/s (this machine, one run)\n\n${meta.note}. Shapes are M×K×N of y = x·Wᵀ (x: M×K).\n\nThe bound, measured in this run: WebAssembly SIMD's multiply-add peak on one thread (asm/gemm.ts peakMadd, 12 independent f32x4 chains, best of 5, per wall second like the products) is ${f(peak.ours)} GFLOP/s in the build ours runs and ${f(peak.baseline)} in the baseline build; "of peak" is a product's GFLOP/s over its build's peak, "numpy ÷ peak" OpenBLAS (2 threads, AVX2/AVX-512) over the 1-thread wasm peak of ours' build.\n\n`;
md +=
  '| shape | ours, 1 thread | ours, 2 threads | baseline build, 1 thread | tfjs-wasm (XNNPACK), 1 thread | numpy/OpenBLAS, 2 threads | GPU.js webasm (before) | ours/tfjs, 1 thread | ours 2 thr./tfjs | ours 1 thr. of peak | baseline of peak | numpy ÷ peak |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n';
for (const x of rows)
  md += `| ${x.shape} | ${f(x.ours1)} | ${f(x.ours2)} | ${f(x.oursBaseline1)} | ${f(x.tfjs)} | ${f(x.numpy)} | ${f(x.gpujs, 2)} | ${f(x.ratio1, 2)}× | ${f(x.ratio2, 2)}× | ${f(x.oursOfPeak1, 2)} | ${f(x.baselineOfPeak1, 2)} | ${f(x.numpyOverPeak, 2)}× |\n`;
writeFile(join(res, 'matmul.md'), md);
console.log(md);
process.exit(0);
