// SiLU for the CPU, float32 (AssemblyScript → WebAssembly, f32x4): the activation of Llama's SwiGLU MLP and of
// the Mamba layers' convolution, where the engine's scalar Math.exp (~20–30 ns here) had become a tenth of a
// verify window.
//
//   silu(a) = a·σ(a):  with e = exp(−|a|) ≤ 1 (never overflows),  silu(a) = a / (1 + e) for a ≥ 0,
//                                                                   a·e / (1 + e) for a < 0;
//   siluMul: out = silu(a)·b;   silu: out = silu(a)   (b = 0: absent)
//
// exp(x), x = −|a| ≥ −110 (below, a·e is under half the smallest float32 subnormal: 0), as in Cephes' expf:
// n = round(x·log2 e) (adding 1.5·2²³ rounds it into the low mantissa bits); r = x − n·C1 − n·C2 (ln 2 split so
// n·C1 is exact); exp(r) = 1 + r + r²·p(r), p of degree 5; times 2ⁿ as 2^⌊n/2⌋ · 2^(n−⌊n/2⌋), two normal powers,
// so results far below the normal range (a < −87) round once, where they land, instead of flushing.
// Error: within 3 float32 ulp of the exact value where it is a normal float32, within 2 units of the smallest
// subnormal below (spec/simd.spec.ts measures it against Math.exp on a dense grid).
// Every element is computed in a lane the same way whatever its position (the caller pads n to a multiple
// of 4), so a row gives the same bits alone or inside a window of rows.

// The exp above in three pieces, shared by siluMul and rowLse (inlined: the same instructions in both).
const MAGIC: f32 = 12582912.0; // 1.5·2²³

/** t = x·log2 e + 1.5·2²³: n = round(x·log2 e) sits in t's low mantissa bits (t − MAGIC: n as a float). */
// @ts-ignore: decorator
@inline
function expRound(x: v128): v128 {
  return f32x4.add(f32x4.mul(x, f32x4.splat(1.44269504088896341)), f32x4.splat(MAGIC));
}

/** exp(r) = 1 + r + r²·p(r), r = x − n·C1 − n·C2 (the n of `expRound`'s t). */
// @ts-ignore: decorator
@inline
function expMantissa(x: v128, t: v128): v128 {
  const nf = f32x4.sub(t, f32x4.splat(MAGIC));
  let r = f32x4.sub(x, f32x4.mul(nf, f32x4.splat(0.693359375)));
  r = f32x4.sub(r, f32x4.mul(nf, f32x4.splat(-2.12194440e-4)));
  let p = f32x4.splat(1.9875691500e-4);
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.3981999507e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(8.3334519073e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(4.1665795894e-2));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.6666665459e-1));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(5.0000001201e-1));
  return f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(p, r), r), r), f32x4.splat(1));
}

/** 2^⌊n/2⌋ (lo) and 2^(n−⌊n/2⌋) (hi), two normal powers for n ∈ [−159, 0]: n is t − MAGIC exactly as integers. */
// @ts-ignore: decorator
@inline
function expScaleLo(t: v128): v128 {
  const ni = i32x4.sub(t, f32x4.splat(MAGIC));
  return i32x4.shl(i32x4.add(i32x4.shr_s(ni, 1), i32x4.splat(127)), 23);
}
// @ts-ignore: decorator
@inline
function expScaleHi(t: v128): v128 {
  const ni = i32x4.sub(t, f32x4.splat(MAGIC));
  return i32x4.shl(i32x4.add(i32x4.sub(ni, i32x4.shr_s(ni, 1)), i32x4.splat(127)), 23);
}

/** out[i] = silu(a[i])·b[i] (or silu(a[i]) when b = 0) for i < n, n a multiple of 4 (float32 arrays at byte addresses). */
export function siluMul(a: usize, b: usize, out: usize, n: i32): void {
  const one = f32x4.splat(1);
  for (let i = 0; i < n; i += 4) {
    const o = <usize>i << 2;
    const v = v128.load(a + o);
    const xr = f32x4.neg(f32x4.abs(v));
    const x = f32x4.pmax(xr, f32x4.splat(-110.0));
    const t = expRound(x);
    const s2 = expScaleHi(t);
    const ps = f32x4.mul(expMantissa(x, t), expScaleLo(t));
    const e = f32x4.mul(ps, s2);
    // a < 0: a·e, taken as (a·p·2^⌊n/2⌋)·2^(n−⌊n/2⌋) (one rounding into the subnormals); 0 below a = −110
    const small = v128.andnot(f32x4.mul(f32x4.mul(v, ps), s2), f32x4.lt(xr, f32x4.splat(-110.0)));
    const num = v128.bitselect(small, v, f32x4.lt(v, f32x4.splat(0)));
    let y = f32x4.div(num, f32x4.add(one, e));
    if (b) y = f32x4.mul(y, v128.load(b + o));
    v128.store(out + o, y);
  }
}

/**
 * exp(x) for x ≤ 0 (x below −110 counts as −110, whose exp rounds to 0 in float32): the exp of siluMul (also
 * the float32 softmax's, ./attention.ts attnWindowF32).
 */
// @ts-ignore: decorator
@inline
export function expNeg(x: v128): v128 {
  const c = f32x4.pmax(x, f32x4.splat(-110.0));
  const t = expRound(c);
  return f32x4.mul(f32x4.mul(expMantissa(c, t), expScaleLo(t)), expScaleHi(t));
}

/**
 * The log-sum-exp of each row of logits, in two parts: for rows r < rows of z (row-major, V floats a row, at
 * byte address z), out[2r] = m_r = max_v z[r, v] and out[2r + 1] = Σ_v exp(z[r, v] − m_r) (float64 at byte
 * address out), so lse_r = m_r + log(out[2r + 1]). Each exp is the float32 one above (within 3 ulp), each
 * sum float64 (two f64x2 sums of the exps, then the V mod 4 left over one by one).
 */
export function rowLse(z: usize, rows: i32, V: i32, out: usize): void {
  const V4 = V & ~3;
  for (let r = 0; r < rows; r++) {
    const p = z + ((<usize>r * <usize>V) << 2);
    let mv = f32x4.splat(-Infinity);
    for (let i = 0; i < V4; i += 4) mv = f32x4.max(mv, v128.load(p + (<usize>i << 2)));
    let m = max(max(f32x4.extract_lane(mv, 0), f32x4.extract_lane(mv, 1)), max(f32x4.extract_lane(mv, 2), f32x4.extract_lane(mv, 3)));
    for (let i = V4; i < V; i++) m = max(m, load<f32>(p + (<usize>i << 2)));
    const ms = f32x4.splat(m);
    let s0 = f64x2.splat(0), s1 = f64x2.splat(0);
    for (let i = 0; i < V4; i += 4) {
      const e = expNeg(f32x4.sub(v128.load(p + (<usize>i << 2)), ms));
      s0 = f64x2.add(s0, f64x2.promote_low_f32x4(e));
      s1 = f64x2.add(s1, f64x2.promote_low_f32x4(v128.shuffle<f32>(e, e, 2, 3, 2, 3)));
    }
    let s = f64x2.extract_lane(f64x2.add(s0, s1), 0) + f64x2.extract_lane(f64x2.add(s0, s1), 1);
    for (let i = V4; i < V; i++) s += <f64>f32x4.extract_lane(expNeg(f32x4.splat(load<f32>(p + (<usize>i << 2)) - m)), 0);
    store<f64>(out + (<usize>r << 4), <f64>m);
    store<f64>(out + (<usize>r << 4), s, 8);
  }
}
