/**
 * `mil eval`'s row kernels on wasm-simd (lib/ops.ts `ops.rows32`, asked for by lib/model/hybrid.ts forward's
 * `float32` option only): the float64 references' own arithmetic in their own order, on the float32 rows
 * (b·l, width) the forward already holds, written straight to float32 — no float64 intermediate, no
 * (b, l, C) ↔ (b, C, l) transposes, no per-call shape and finiteness scans. Each result is the float32 rounding
 * of the reference's float64 value (spec/simd.spec.ts checks them against lib/ref/norm.ts and lib/ref/conv1d.ts),
 * which is what the wasm-simd backend made of the reference's value anyway (its products read float32): the
 * same bits as the path the decode steps take, only fewer passes over memory.
 */
import type { FloatArray } from '../tensor.js';

/**
 * RMSNorm of N rows of width d, float32 out: y = fround(x·k·w), k = 1/√(Σx²/d + ε) with the sum in float64 in
 * lib/ref/norm.ts rmsnormRows's order. Four rows at a time: four independent sums in flight (one row's is a chain
 * of dependent adds, the loop's bound), each still in the reference's order.
 */
export function rmsnormRows32(x: Float32Array, w: FloatArray, N: number, d: number, eps: number): Float32Array {
  const y = new Float32Array(N * d); // (N, d)
  const wd = w instanceof Float64Array ? w : Float64Array.from(w); // one array type in the loops below
  let r = 0;
  for (; r + 4 <= N; r += 4) {
    const o0 = r * d;
    const o1 = o0 + d;
    const o2 = o1 + d;
    const o3 = o2 + d;
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    for (let i = 0; i < d; i++) {
      const v0 = x[o0 + i];
      const v1 = x[o1 + i];
      const v2 = x[o2 + i];
      const v3 = x[o3 + i];
      s0 += v0 * v0;
      s1 += v1 * v1;
      s2 += v2 * v2;
      s3 += v3 * v3;
    }
    const k0 = 1 / Math.sqrt(s0 / d + eps);
    const k1 = 1 / Math.sqrt(s1 / d + eps);
    const k2 = 1 / Math.sqrt(s2 / d + eps);
    const k3 = 1 / Math.sqrt(s3 / d + eps);
    for (let i = 0; i < d; i++) {
      const wi = wd[i];
      y[o0 + i] = x[o0 + i] * k0 * wi;
      y[o1 + i] = x[o1 + i] * k1 * wi;
      y[o2 + i] = x[o2 + i] * k2 * wi;
      y[o3 + i] = x[o3 + i] * k3 * wi;
    }
  }
  for (; r < N; r++) {
    const o = r * d;
    let ss = 0;
    for (let i = 0; i < d; i++) {
      const v = x[o + i];
      ss += v * v;
    }
    const k = 1 / Math.sqrt(ss / d + eps);
    for (let i = 0; i < d; i++) y[o + i] = x[o + i] * k * wd[i];
  }
  return y;
}

/**
 * Gated RMSNorm's norm over groups of g channels of rows already gated (x' = x·silu(z), Mamba-2's gate before the
 * norm): y = fround(x'·r·w), r = 1/√(Σ_group x'²/g + ε), in lib/ref/norm.ts gatedRmsnorm's order; rows of width d
 * (g divides d) are rmsnormRows32's rows of width g with the weight's piece at o mod d.
 */
export function groupRmsnormRows32(x: Float32Array, w: FloatArray, d: number, g: number, eps: number): Float32Array {
  const y = new Float32Array(x.length); // (rows, d)
  const wd = w instanceof Float64Array ? w : Float64Array.from(w);
  for (let o = 0; o < x.length; o += g) {
    const w0 = o % d;
    let ss = 0;
    for (let i = 0; i < g; i++) {
      const v = x[o + i];
      ss += v * v;
    }
    const r = 1 / Math.sqrt(ss / g + eps);
    for (let i = 0; i < g; i++) y[o + i] = x[o + i] * r * wd[w0 + i];
  }
  return y;
}

/**
 * The causal depthwise conv on rows, before its activation: channel c of row (b, t) of the (b, l, C) output is
 * fround(bias[c] + Σ_{k<W} w[c, k]·x̃[b, t + k − (W−1), c]) with the sum in float64 in lib/ref/conv1d.ts
 * causalConv1d's order, x̃ = the initial states (b, C, W−1) (or zeros) before the rows. The rows are read from
 * `src` (rows of width `stride`, the channels at columns `col` … col + C − 1: in_proj's output, unsplit). Also
 * the final states (b, C, W−1) as causalConv1d gives them.
 */
export function causalConvRows32(
  src: Float32Array, // (b, l, stride)
  stride: number,
  col: number,
  batch: number,
  L: number,
  C: number,
  weight: FloatArray, // (C, W)
  W: number,
  bias: FloatArray | undefined, // (C)
  initialStates: FloatArray | undefined, // (b, C, W−1)
): { out: Float32Array; finalStates: Float32Array } {
  const P = W - 1;
  const wT = new Float64Array(W * C); // (W, C): tap k's weights contiguous over the channels
  for (let c = 0; c < C; c++) for (let k = 0; k < W; k++) wT[k * C + c] = weight[c * W + k];
  const b0 = new Float64Array(C); // (C): the sums' start, the bias or 0
  if (bias) b0.set(bias);
  const past = new Float64Array(P * C); // (W−1, C): one batch row's x̃ before its rows (initial states or zeros)
  const out = new Float32Array(batch * L * C); // (b, l, C)
  for (let b = 0; b < batch; b++) {
    past.fill(0);
    if (initialStates)
      for (let c = 0; c < C; c++) for (let k = 0; k < P; k++) past[k * C + c] = initialStates[(b * C + c) * P + k];
    // the first W−1 rows reach into the past: x̃ position t + k is past row t + k while t + k < W − 1
    for (let t = 0; t < Math.min(P, L); t++) {
      const oo = (b * L + t) * C;
      for (let c = 0; c < C; c++) {
        let s = b0[c];
        for (let k = 0; k < W; k++) {
          const j = t + k - P; // the input row; negative: the past
          s += wT[k * C + c] * (j >= 0 ? src[(b * L + j) * stride + col + c] : past[(P + j) * C + c]);
        }
        out[oo + c] = s;
      }
    }
    if (W === 4) {
      // Mamba's width (d_conv = 4), the taps unrolled
      for (let t = P; t < L; t++) {
        const x0 = (b * L + t - 3) * stride + col;
        const x1 = x0 + stride;
        const x2 = x1 + stride;
        const x3 = x2 + stride;
        const oo = (b * L + t) * C;
        for (let c = 0; c < C; c++) {
          let s = b0[c];
          s += wT[c] * src[x0 + c];
          s += wT[C + c] * src[x1 + c];
          s += wT[2 * C + c] * src[x2 + c];
          s += wT[3 * C + c] * src[x3 + c];
          out[oo + c] = s;
        }
      }
    } else {
      for (let t = P; t < L; t++) {
        const oo = (b * L + t) * C;
        for (let c = 0; c < C; c++) {
          let s = b0[c];
          for (let k = 0; k < W; k++) s += wT[k * C + c] * src[(b * L + t + k - P) * stride + col + c];
          out[oo + c] = s;
        }
      }
    }
  }
  const finalStates = new Float32Array(batch * C * P); // (b, C, W−1)
  for (let b = 0; b < batch; b++)
    for (let c = 0; c < C; c++)
      for (let k = 0; k < P; k++) {
        const j = L - P + k; // the row; negative → from the initial state
        finalStates[(b * C + c) * P + k] =
          j >= 0 ? src[(b * L + j) * stride + col + c] : initialStates ? initialStates[(b * C + c) * P + P + j] : 0;
      }
  return { out, finalStates };
}
