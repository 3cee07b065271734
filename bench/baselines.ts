/**
 * Plain-TypeScript float32 loops: the baseline every kernel is compared with in the same run.
 * Data lives in Float32Array; arithmetic is JavaScript's (float64), as a hand-written port would do it.
 */

/** Mamba-1 selective scan, per-time B/C (batch 1), softplus Δ with bias, D and z: the sequential recurrence. */
export function scanLoop(
  u: Float32Array,
  delta: Float32Array,
  A: Float32Array,
  B: Float32Array,
  C: Float32Array,
  D: Float32Array,
  z: Float32Array,
  bias: Float32Array,
  dim: number,
  N: number,
  L: number,
): Float32Array {
  const out = new Float32Array(dim * L);
  const h = new Float32Array(N);
  for (let d = 0; d < dim; d++) {
    h.fill(0);
    for (let t = 0; t < L; t++) {
      const i = d * L + t;
      const v = delta[i] + bias[d];
      const dl = v > 20 ? v : Math.log1p(Math.exp(v));
      let y = 0;
      for (let n = 0; n < N; n++) {
        h[n] = Math.exp(dl * A[d * N + n]) * h[n] + dl * B[n * L + t] * u[i];
        y += C[n * L + t] * h[n];
      }
      y += D[d] * u[i];
      out[i] = y * (z[i] / (1 + Math.exp(-z[i])));
    }
  }
  return out;
}

/** y = W x, W (rows, cols) row-major. */
export function matvecLoop(W: Float32Array, x: Float32Array, rows: number, cols: number): Float32Array {
  const y = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    const o = r * cols;
    for (let c = 0; c < cols; c++) s += W[o + c] * x[c];
    y[r] = s;
  }
  return y;
}

/** K steps of the state update from h (dim, N), outputs (K, dim): the multi-step kernel's work, sequentially. */
export function multistepLoop(
  h0: Float32Array,
  x: Float32Array,
  dt: Float32Array,
  B: Float32Array,
  C: Float32Array,
  A: Float32Array,
  bias: Float32Array,
  dim: number,
  N: number,
  K: number,
): Float32Array {
  const h = Float32Array.from(h0);
  const out = new Float32Array(K * dim);
  for (let k = 0; k < K; k++)
    for (let d = 0; d < dim; d++) {
      const v = dt[k * dim + d] + bias[d];
      const dl = v > 20 ? v : Math.log1p(Math.exp(v));
      let y = 0;
      for (let n = 0; n < N; n++) {
        const si = d * N + n;
        h[si] = Math.exp(dl * A[si]) * h[si] + dl * B[k * N + n] * x[k * dim + d];
        y += C[k * N + n] * h[si];
      }
      out[k * dim + d] = y;
    }
  return out;
}
