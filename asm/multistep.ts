// Algorithm 2's MultiStep (PAPER.md §4) for the CPU: AssemblyScript → WebAssembly, 128-bit SIMD over the
// state dimension N. Reference: lib/ref/multistep.ts (float64); the GPU.js kernel: kernels/multistep.ts.
//
//   from the single cached state h_i of channel d (a row of N values):
//   replay (no output):  t = 0 … r−1:  h ← Ā ⊙ h + (Δ·B_cache,t)·x_cache,t                        → h_j
//   new   (outputs):     t = 0 … s−1:  h ← Ā ⊙ h + (Δ·B_t)·x_t;  y_t = C_t·h + D·x_t;  out_t = y_t·silu(z_t) → h_k
//   Ā = exp(Δ·A[d, n]),  Δ = softplus(dt + dt_bias) (or dt + dt_bias without softplus)
//
// Precision: the state, B, C and the products are float32 (as every float32 backend); the per-channel scalars
// Δ, exp(Δ·A) (one number per step when the row of A holds one value, as Mamba-2's does), silu(z) are
// computed in float64 and rounded once. Channel d reads B/C group ⌊d / (dim/G)⌋.
//
// Layouts (float32, row-major, byte addresses): h_i, h_j, h_k (batch, dim, N); x_cache, dt_cache (batch, K1,
// dim); B_cache (batch, K1, G, N); x, dt, z, out (batch, s, dim); B, C (batch, s, G, N); A (dim, N); D and
// dt_bias (dim). z, D and dt_bias are optional: address 0 means absent. Nothing here allocates.

// @ts-ignore: decorator
@inline
function f32at(p: usize, i: i32): f32 {
  return load<f32>(p + (<usize>i << 2));
}

function softplus(v: f64): f64 {
  if (v > 20) return v;
  return Math.max(v, 0) + Math.log1p(Math.exp(-Math.abs(v)));
}

/**
 * One step of one channel: h (N floats at `h`) ← Ā ⊙ h + (Δ·B)·x, A's row at `a`, B's row at `b`.
 * `sameA`: every A[d, n] equal, so Ā is one number, `e` = exp(Δ·A[d, 0]) (one exp per step instead of N).
 */
// @ts-ignore: decorator
@inline
function step(h: usize, a: usize, b: usize, N: i32, sameA: bool, e: f32, delta: f64, xv: f32): void {
  const d32 = <f32>delta;
  const dv = f32x4.splat(d32);
  const xs = f32x4.splat(xv);
  let n = 0;
  if (sameA) {
    const ev = f32x4.splat(e);
    for (; n + 4 <= N; n += 4) {
      const p = h + (<usize>n << 2);
      const bx = f32x4.mul(f32x4.mul(dv, v128.load(b + (<usize>n << 2))), xs);
      v128.store(p, f32x4.add(f32x4.mul(ev, v128.load(p)), bx));
    }
    for (; n < N; n++) {
      const p = h + (<usize>n << 2);
      store<f32>(p, e * load<f32>(p) + d32 * f32at(b, n) * xv);
    }
    return;
  }
  for (; n < N; n++) {
    const p = h + (<usize>n << 2);
    const e = <f32>Math.exp(delta * <f64>f32at(a, n));
    store<f32>(p, e * load<f32>(p) + d32 * f32at(b, n) * xv);
  }
}

/** Σ_n C[n]·h[n] with a f32x4 accumulator (lanes summed at the end), tail scalar. */
// @ts-ignore: decorator
@inline
function dot(c: usize, h: usize, N: i32): f32 {
  let acc = f32x4.splat(0);
  let n = 0;
  for (; n + 4 <= N; n += 4) acc = f32x4.add(acc, f32x4.mul(v128.load(c + (<usize>n << 2)), v128.load(h + (<usize>n << 2))));
  let y = f32x4.extract_lane(acc, 0) + f32x4.extract_lane(acc, 1) + f32x4.extract_lane(acc, 2) + f32x4.extract_lane(acc, 3);
  for (; n < N; n++) y += f32at(c, n) * f32at(h, n);
  return y;
}

/**
 * The whole MultiStep for every batch row and channel; `softplusDelta` != 0 applies softplus to dt + dt_bias.
 * Steps run outermost, channels inside: each channel still takes its own steps in order (the same arithmetic
 * as channel by channel), and neighbouring channels that share dt + dt_bias and A (Mamba-2's P channels of a
 * head) share one softplus and one exp(Δ·A) instead of computing them again.
 */
export function multistep(
  hI: usize, xCache: usize, dtCache: usize, BCache: usize,
  x: usize, dt: usize, B: usize, C: usize, z: usize,
  A: usize, D: usize, dtBias: usize,
  batch: i32, dim: i32, N: i32, K1: i32, r: i32, s: i32, G: i32, softplusDelta: i32,
  out: usize, hJ: usize, hK: usize,
): void {
  const per = dim / G;
  const rowBytes = <usize>N << 2;
  memory.copy(hK, hI, <usize>(batch * dim) * rowBytes); // the states advance in place in h_k
  // one A per row everywhere (Mamba-2: A per head, repeated)? then Ā is one exp per channel and step; otherwise
  // every channel takes N exps (Ā rounds the same either way: exp in float64, then to float32)
  let sameA = true;
  for (let d = 0; d < dim && sameA; d++)
    for (let n = 1; n < N; n++)
      if (f32at(A + <usize>d * rowBytes, n) != load<f32>(A + <usize>d * rowBytes)) {
        sameA = false;
        break;
      }
  const batchBytes = <usize>dim * rowBytes;
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < r + s; t++) {
      if (t == r) memory.copy(hJ + <usize>b * batchBytes, hK + <usize>b * batchBytes, batchBytes); // h_j: after the replay
      const replay = t < r;
      // memo across neighbouring channels: Δ of the last raw value, exp(Δ·A) of the last (Δ, A) — NaN never
      // compares equal, so the first channel computes both
      let lastV: f64 = NaN;
      let delta: f64 = 0;
      let lastDelta: f64 = NaN;
      let lastA: f32 = NaN;
      let e: f32 = 0;
      for (let d = 0; d < dim; d++) {
        const g = d / per;
        const a = A + <usize>d * rowBytes;
        const a0 = load<f32>(a);
        const i = replay ? (b * K1 + t) * dim + d : (b * s + t - r) * dim + d;
        const v = <f64>f32at(replay ? dtCache : dt, i) + (dtBias ? <f64>f32at(dtBias, d) : 0);
        if (v != lastV) {
          delta = softplusDelta ? softplus(v) : v;
          lastV = v;
        }
        if (sameA && (delta != lastDelta || a0 != lastA)) {
          e = <f32>Math.exp(delta * <f64>a0);
          lastDelta = delta;
          lastA = a0;
        }
        const xv = f32at(replay ? xCache : x, i);
        const bc = replay ? BCache + <usize>((b * K1 + t) * G + g) * rowBytes : B + <usize>((b * s + t - r) * G + g) * rowBytes;
        const h = hK + <usize>(b * dim + d) * rowBytes;
        step(h, a, bc, N, sameA, e, delta, xv);
        if (replay) continue;
        let y = dot(C + (bc - B), h, N);
        if (D) y += f32at(D, d) * xv;
        if (z) {
          const zv = f32at(z, i);
          y = y * (zv / (1 + Mathf.exp(-zv)));
        }
        store<f32>(out + (<usize>i << 2), y);
      }
    }
    if (s == 0) memory.copy(hJ + <usize>b * batchBytes, hK + <usize>b * batchBytes, batchBytes); // no new steps: h_j = h_k
  }
}
