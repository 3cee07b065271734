/**
 * The few-row products of decode and verify, one module build against another in the same command: y = x·Wᵀ for
 * M = 1, 2, 3, 5, 9 rows (a token, verify windows of K = 1, 2, 4, 8) on one thread, W packed and resident, for
 * shapes that stay in the cache (the #25 models' d 384: 384×1024, 1024×384, 384×8192) and one that streams from
 * memory (4096²). Each row of a 9-row product is checked to equal, bit for bit, the row multiplied alone.
 *   node --experimental-wasm-relaxed-simd --import tsx bench/few-rows.ts [WASM…]
 * WASM: module builds to time (default asm/gemm-fma.wasm, the backend's; an FMA build is named *fma*); for a
 * before/after, `git show REV:asm/gemm-fma.wasm > /tmp/before.wasm` and name both. Prints a line per build and
 * shape: the median µs of 15 rounds per M and its ratio to one row. Not a peer comparison (bench/gemv.ts is).
 */
import { readFileSync } from 'node:fs';
import { SimdGemm } from '../lib/simd/gemm.js';
import { Rng } from '../lib/rng.js';

const builds = process.argv.slice(2);
const MS = [1, 2, 3, 5, 9];
const SHAPES: Array<[number, number]> = [
  [384, 1024],
  [1024, 384],
  [384, 8192],
  [4096, 4096],
];
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const path of builds.length ? builds : ['asm/gemm-fma.wasm']) {
  const g = SimdGemm.provideShared(new Uint8Array(readFileSync(path)), path.includes('fma'));
  const r = new Rng(1);
  for (const [K, N] of SHAPES) {
    const w = new Float32Array(N * K).map(() => r.uniform(-1, 1)); // (N, K)
    const xs = MS.map((M) => new Float32Array(M * K).map(() => r.uniform(-1, 1))); // (M, K) each
    const reps = K * N > 4e6 ? 1 : 20; // products per timed round
    for (const [i, M] of MS.entries()) g.linear(xs[i], M, K, w, N); // pack W, compile, warm
    const times: number[][] = MS.map(() => []);
    for (let round = 0; round < 15; round++)
      for (const [i, M] of MS.entries()) {
        const t0 = performance.now();
        for (let j = 0; j < reps; j++) g.linear(xs[i], M, K, w, N);
        times[i].push((performance.now() - t0) / reps);
      }
    const med = times.map(median);
    const y9 = g.linear(xs[4], 9, K, w, N).slice(); // (9, N)
    let same = true;
    for (let i = 0; i < 9; i++) {
      const yi = g.linear(xs[4].subarray(i * K, (i + 1) * K), 1, K, w, N); // (1, N)
      for (let n = 0; n < N; n++) if (!Object.is(yi[n], y9[i * N + n])) same = false;
    }
    const cells = MS.map((M, i) => `M${M} ${(med[i] * 1000).toFixed(0)} µs (${(med[i] / med[0]).toFixed(2)}×)`);
    console.log(`${path} ${K}×${N}: ${cells.join('  ')}  rows alone = together: ${same ? 'yes' : 'NO'}`);
  }
}
