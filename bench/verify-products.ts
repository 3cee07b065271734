/**
 * What a verify window costs in its matrix products on this CPU: y = x·Wᵀ for M = 1 … 16 rows (the window's
 * tokens) on the wasm-simd kernels, weights packed and resident, for a d512 model's MLP projection (1408×512)
 * and its vocabulary projection (32000×512, 65 MB of float32). One row streams the weights (bandwidth-bound);
 * from ~4 rows the 4×8 micro-kernel is compute-bound (baseline WebAssembly SIMD has no fused multiply-add; the
 * FMA build, which the backend runs where the engine has relaxed SIMD, does about 1.5× the products per cycle), so
 * a window of M tokens costs about M·(its FLOPs at the kernel's peak), not one read of the weights.
 *   node --import tsx bench/verify-products.ts
 */
import { SimdGemm } from '../lib/simd/gemm.js';
import { markImmutable } from '../lib/weight_registry.js';

const g = SimdGemm.shared();
for (const [K, N] of [
  [512, 1408],
  [512, 32000],
] as const) {
  const W = Float32Array.from({ length: N * K }, () => Math.random() - 0.5);
  markImmutable(W);
  const cells: string[] = [];
  let one = 0;
  for (const M of [1, 2, 3, 4, 5, 8, 9, 16]) {
    const x = Float32Array.from({ length: M * K }, () => Math.random());
    for (let w = 0; w < 3; w++) g.linear(x, M, K, W, N, true);
    let best = Infinity;
    for (let r = 0; r < 7; r++) {
      const t = performance.now();
      g.linear(x, M, K, W, N, true);
      best = Math.min(best, performance.now() - t);
    }
    if (M === 1) one = best;
    cells.push(
      `M=${M} ${best.toFixed(2)} ms (${(best / one).toFixed(1)}×, ${((2 * M * N * K) / best / 1e6).toFixed(1)} GFLOP/s)`,
    );
  }
  console.log(`${N}×${K}: ${cells.join('; ')}`);
}
process.exit(0);
