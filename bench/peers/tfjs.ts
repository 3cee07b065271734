/**
 * The tfjs-backend-wasm peer (XNNPACK, 128-bit SIMD) of the product benches (bench/matmul.ts, bench/gemv.ts):
 * c = a·b on one thread, with b laid out K×N as tfjs wants its right operand (its x·Wᵀ path, transposeB, is
 * ~10× slower, which would flatter us).
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { setThreadsCount } from '@tensorflow/tfjs-backend-wasm';

/** Start tfjs on its wasm backend, one thread. */
export async function startTfjs(): Promise<void> {
  setThreadsCount(1);
  await tf.setBackend('wasm');
  await tf.ready();
}

/** W (N×K, row-major) laid out K×N. */
export function transposed(w: Float32Array, N: number, K: number): Float32Array {
  const wt = new Float32Array(K * N);
  for (let o = 0; o < N; o++) for (let k = 0; k < K; k++) wt[k * N + o] = w[o * K + k];
  return wt;
}

/** y = x·Wᵀ in tfjs for x (M×K) and W (N×K): `run` one product (result read back), `dispose` its operands. */
export function tfjsLinear(
  x: Float32Array,
  M: number,
  K: number,
  w: Float32Array,
  N: number,
): { run: () => void; dispose: () => void } {
  const a = tf.tensor2d(x, [M, K]);
  const b = tf.tensor2d(transposed(w, N, K), [K, N]);
  return {
    run: () => {
      const c = tf.matMul(a, b);
      c.dataSync();
      c.dispose();
    },
    dispose: () => {
      a.dispose();
      b.dispose();
    },
  };
}
