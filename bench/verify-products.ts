/**
 * What a verify window costs in its matrix products on this CPU: y = x·Wᵀ for M = 1 … 16 rows (the window's
 * tokens) on the wasm-simd kernels, one thread, weights packed and resident, for a d512 model's MLP projection
 * (1408×512) and vocabulary projection (32000×512, 65 MB of float32), the #25 models' d 384 projections
 * (1024×384, 384×1024, 8192×384: in the cache) and 4096² (from memory). One row streams the weights; 1–3 rows
 * run asm/gemm.ts's few-row kernel row by row over each block of K (the later rows from the cache); from 4 rows
 * the 4×8 micro-kernel is compute-bound, so a window of M tokens costs about M·(its FLOPs at the kernel's rate),
 * not one read of the weights. Each row of a 9-row product is checked to equal, bit for bit, the row alone.
 *   node --experimental-wasm-relaxed-simd --import tsx bench/verify-products.ts [WASM…]
 * WASM: module builds to time in this one command (default asm/gemm-fma.wasm, the backend's build; a name with
 * "fma" is taken as the fused multiply-add build): for a kernel change's before/after,
 * `git show REV:asm/gemm-fma.wasm > /tmp/before.wasm` and name both. Prints, per build and shape, the median of
 * 15 rounds per M, its ratio to one row and GFLOP/s.
 */
import { readFileSync } from 'node:fs';
import { SimdGemm } from '../lib/simd/gemm.js';
import { Rng } from '../lib/rng.js';

const MS = [1, 2, 3, 4, 5, 8, 9, 16];
const SHAPES: Array<[number, number]> = [
  // [N, K]: W is N×K
  [1408, 512],
  [32000, 512],
  [1024, 384],
  [384, 1024],
  [8192, 384],
  [4096, 4096],
];
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const builds = process.argv.slice(2);
for (const path of builds.length ? builds : ['asm/gemm-fma.wasm']) {
  const g = SimdGemm.provideShared(new Uint8Array(readFileSync(path)), path.includes('fma')); // one thread
  const r = new Rng(1);
  for (const [N, K] of SHAPES) {
    const w = new Float32Array(N * K).map(() => r.uniform(-1, 1)); // (N, K)
    const xs = MS.map((M) => new Float32Array(M * K).map(() => r.uniform(-1, 1))); // (M, K) each
    const reps = N * K > 4e6 ? 1 : 20; // products per timed round
    for (const [i, M] of MS.entries()) g.linear(xs[i], M, K, w, N); // pack W, compile, warm
    const times: number[][] = MS.map(() => []);
    for (let round = 0; round < 15; round++)
      for (const [i, M] of MS.entries()) {
        const t0 = performance.now();
        for (let j = 0; j < reps; j++) g.linear(xs[i], M, K, w, N);
        times[i].push((performance.now() - t0) / reps);
      }
    const med = times.map(median); // ms
    const nine = MS.indexOf(9);
    const y9 = g.linear(xs[nine], 9, K, w, N).slice(); // (9, N)
    let same = true;
    for (let i = 0; i < 9; i++) {
      const yi = g.linear(xs[nine].subarray(i * K, (i + 1) * K), 1, K, w, N); // (1, N)
      for (let n = 0; n < N; n++) if (!Object.is(yi[n], y9[i * N + n])) same = false;
    }
    const cells = MS.map(
      (M, i) =>
        `M=${M} ${med[i] >= 1 ? `${med[i].toFixed(2)} ms` : `${(med[i] * 1000).toFixed(0)} µs`} ` +
        `(${(med[i] / med[0]).toFixed(2)}×, ${((2 * M * N * K) / med[i] / 1e6).toFixed(1)} GFLOP/s)`,
    );
    console.log(`${path} ${N}×${K}: ${cells.join('; ')}; rows alone = together: ${same ? 'yes' : 'NO'}`);
  }
}
