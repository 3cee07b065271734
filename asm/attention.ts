// Cached causal attention for the CPU (AssemblyScript → WebAssembly): its two products and the softmax between
// them in float64 (f64x2) with the bits of the model's loop (lib/model/mixers/attention.ts) — the decode paths' —,
// and at the end of this file a window's whole attention in float32 (f32x4), for evaluation (`mil eval`).
//
//   scores:  S[r, j] = (q_r · k_j)·scale   for the R query rows of one key/value head and keys j < n_r
//   values:  O[r, i] = Σ_{j < n_r} W[r, j]·v_j[i]
//
// Every sum runs in the plain order — q_r · k_j over i = 0 … hd−1, O[r, i] over j = 0 … n_r−1 — one sum per
// SIMD lane, several sums in flight: the bits are those of the one-chain float64 loop (WebAssembly never
// fuses a multiply and an add, and neither does JavaScript).
//
// Layouts (float64, byte addresses): qT (hd, R2) — the query rows transposed, R2 = R rounded up to even
// (a zero pad row); K, V (T, hd) row-major; S, W (R, T) row-major (only j < n_r is written/read);
// O (R, hd). Row r sees the first n_r = T − R/heads … keys: the caller passes n per row in `ns` (i32, R).

import { expNeg } from './activations';

// @ts-ignore: decorator
@inline
function f64at(p: usize, i: i32): f64 {
  return load<f64>(p + (<usize>i << 3));
}

/** S[r, j] for every row pair and key below the pair's largest n (a shorter row's extra entries are unused). */
export function attnScores(qT: usize, R2: i32, K: usize, hd: i32, ns: usize, R: i32, scale: f64, S: usize, T: i32): void {
  const rowBytes = <usize>R2 << 3;
  for (let p = 0; p < R2; p += 2) {
    const r0 = p;
    const r1 = p + 1;
    let n = load<i32>(ns + (<usize>r0 << 2));
    if (r1 < R) n = max(n, load<i32>(ns + (<usize>r1 << 2)));
    const qp = qT + (<usize>p << 3);
    let j = 0;
    // four keys at a time: four accumulators, each lane one row's dot product with one key
    for (; j + 4 <= n; j += 4) {
      const k0 = K + ((<usize>j * <usize>hd) << 3);
      const k1 = k0 + (<usize>hd << 3);
      const k2 = k1 + (<usize>hd << 3);
      const k3 = k2 + (<usize>hd << 3);
      let a0 = f64x2.splat(0), a1 = f64x2.splat(0), a2 = f64x2.splat(0), a3 = f64x2.splat(0);
      for (let i = 0; i < hd; i++) {
        const q = v128.load(qp + <usize>i * rowBytes);
        const o = <usize>i << 3;
        a0 = f64x2.add(a0, f64x2.mul(q, v128.load64_splat(k0 + o)));
        a1 = f64x2.add(a1, f64x2.mul(q, v128.load64_splat(k1 + o)));
        a2 = f64x2.add(a2, f64x2.mul(q, v128.load64_splat(k2 + o)));
        a3 = f64x2.add(a3, f64x2.mul(q, v128.load64_splat(k3 + o)));
      }
      putPair(S, T, r0, r1, R, j, a0, scale);
      putPair(S, T, r0, r1, R, j + 1, a1, scale);
      putPair(S, T, r0, r1, R, j + 2, a2, scale);
      putPair(S, T, r0, r1, R, j + 3, a3, scale);
    }
    for (; j < n; j++) {
      const k0 = K + ((<usize>j * <usize>hd) << 3);
      let a0 = f64x2.splat(0);
      for (let i = 0; i < hd; i++) a0 = f64x2.add(a0, f64x2.mul(v128.load(qp + <usize>i * rowBytes), v128.load64_splat(k0 + (<usize>i << 3))));
      putPair(S, T, r0, r1, R, j, a0, scale);
    }
  }
}

// @ts-ignore: decorator
@inline
function putPair(S: usize, T: i32, r0: i32, r1: i32, R: i32, j: i32, a: v128, scale: f64): void {
  store<f64>(S + ((<usize>r0 * <usize>T + <usize>j) << 3), f64x2.extract_lane(a, 0) * scale);
  if (r1 < R) store<f64>(S + ((<usize>r1 * <usize>T + <usize>j) << 3), f64x2.extract_lane(a, 1) * scale);
}

/** O[r, :] = Σ_{j < n_r} W[r, j]·V[j, :], eight channels (four f64x2 sums) at a time, then pairs, then one. */
export function attnValues(W: usize, T: i32, V: usize, hd: i32, ns: usize, R: i32, O: usize): void {
  const vRow = <usize>hd << 3;
  for (let r = 0; r < R; r++) {
    const n = load<i32>(ns + (<usize>r << 2));
    const w = W + ((<usize>r * <usize>T) << 3);
    const o = O + ((<usize>r * <usize>hd) << 3);
    let i = 0;
    for (; i + 8 <= hd; i += 8) {
      let a0 = f64x2.splat(0), a1 = f64x2.splat(0), a2 = f64x2.splat(0), a3 = f64x2.splat(0);
      let v = V + (<usize>i << 3);
      for (let j = 0; j < n; j++) {
        const s = v128.load64_splat(w + (<usize>j << 3));
        a0 = f64x2.add(a0, f64x2.mul(s, v128.load(v)));
        a1 = f64x2.add(a1, f64x2.mul(s, v128.load(v, 16)));
        a2 = f64x2.add(a2, f64x2.mul(s, v128.load(v, 32)));
        a3 = f64x2.add(a3, f64x2.mul(s, v128.load(v, 48)));
        v += vRow;
      }
      const oi = o + (<usize>i << 3);
      v128.store(oi, a0);
      v128.store(oi, a1, 16);
      v128.store(oi, a2, 32);
      v128.store(oi, a3, 48);
    }
    for (; i + 2 <= hd; i += 2) {
      let a0 = f64x2.splat(0);
      let v = V + (<usize>i << 3);
      for (let j = 0; j < n; j++) {
        a0 = f64x2.add(a0, f64x2.mul(v128.load64_splat(w + (<usize>j << 3)), v128.load(v)));
        v += vRow;
      }
      v128.store(o + (<usize>i << 3), a0);
    }
    for (; i < hd; i++) {
      let a: f64 = 0;
      for (let j = 0; j < n; j++) a += f64at(w, j) * f64at(V, j * hd + i);
      store<f64>(o + (<usize>i << 3), a);
    }
  }
}

// ---- softmax between the two products, with JavaScript's bits ----
//
//   W[r, j] = exp(S[r, j] − m_r) / z_r,   m_r = max_{j < n_r} S[r, j],   z_r = Σ_{j < n_r} exp(S[r, j] − m_r) (in order)
//
// lib/model/mixers/attention.ts's softmaxPrefix, moved here so a window's attention runs without leaving the
// module. Its bits are kept: V8's Math.exp is fdlibm's e_exp.c (src/base/ieee754.cc; spec/simd.spec.ts checks the
// port below against Math.exp on millions of arguments), the max is order-free, z is summed in the loop's order
// and every weight is one division. WebAssembly rounds every operation (no fused multiply-add here, in either
// build), so the same operations in the same order give the same bits.
//
// fdlibm's exp(x): k = round(x / ln 2), r = x − k·ln2 (as hi − lo), c = r − r²·P(r²), y = 1 − ((lo − r·c/(2 − c)) − hi),
// exp(x) = 2^k · y. The SIMD path takes two arguments in [−700, 0] (every softmax argument x = s − m ≤ 0 unless
// extreme), where one formula gives every case's bits: k never reaches fdlibm's subnormal scaling; its case
// 0.5·ln2 < |x| < 1.5·ln2 (hi = x + ln2_hi, lo = −ln2_lo, k = −1) is what the general formulas compute there
// (k rounds to −1: the same operations); its case |x| ≤ 0.5·ln2 (k = 0, 1 − ((x·c/(c − 2)) − x)) is the general
// formula with k = ±0, hi = x, lo = ±0 (1 − ((0 − q) − x), q = x·c/(2 − c): c − 2 = −(2 − c) exactly); and
// |x| < 2⁻²⁸ returns 1 + x, selected. Any other pair (NaN, positive, below −700) takes the scalar port.

const EXP_P1: f64 = 1.66666666666666019037e-1;
const EXP_P2: f64 = -2.77777777770155933842e-3;
const EXP_P3: f64 = 6.61375632143793436117e-5;
const EXP_P4: f64 = -1.65339022054652515390e-6;
const EXP_P5: f64 = 4.13813679705723846039e-8;
const LN2_HI: f64 = 6.93147180369123816490e-1;
const LN2_LO: f64 = 1.90821492927058770002e-10;
const INV_LN2: f64 = 1.44269504088896338700;

/** fdlibm's exp (V8's Math.exp), scalar, every case. */
function expFdlibm(x: f64): f64 {
  let hi: f64 = 0, lo: f64 = 0, k: i32 = 0;
  let hx = <u32>(reinterpret<u64>(x) >> 32);
  const xsb = <i32>(hx >> 31);
  hx &= 0x7fffffff;
  if (hx >= 0x40862e42) {
    if (hx >= 0x7ff00000) {
      if (((hx & 0xfffff) | <u32>reinterpret<u64>(x)) != 0) return x + x; // NaN
      return xsb == 0 ? x : 0; // exp(±∞) = ∞, 0
    }
    if (x > 7.09782712893383973096e2) return Infinity;
    if (x < -7.45133219101941108420e2) return 0;
  }
  if (hx > 0x3fd62e42) {
    if (hx < 0x3ff0a2b2) {
      if (x == 1.0) return 2.718281828459045;
      hi = xsb ? x + LN2_HI : x - LN2_HI;
      lo = xsb ? -LN2_LO : LN2_LO;
      k = 1 - xsb - xsb;
    } else {
      k = <i32>(INV_LN2 * x + (xsb ? -0.5 : 0.5));
      const t = <f64>k;
      hi = x - t * LN2_HI;
      lo = t * LN2_LO;
    }
    x = hi - lo;
  } else if (hx < 0x3e300000) {
    return 1 + x;
  } else k = 0;
  const t = x * x;
  const twopk = k >= -1021 ? reinterpret<f64>(<u64>(0x3ff + k) << 52) : reinterpret<f64>(<u64>(0x3ff + k + 1000) << 52);
  const c = x - t * (EXP_P1 + t * (EXP_P2 + t * (EXP_P3 + t * (EXP_P4 + t * EXP_P5))));
  if (k == 0) return 1 - ((x * c) / (c - 2.0) - x);
  const y = 1 - ((lo - (x * c) / (2.0 - c)) - hi);
  if (k >= -1021) {
    if (k == 1024) return y * 2.0 * 8.988465674311579539e307;
    return y * twopk;
  }
  return y * twopk * 9.33263618503218878990e-302;
}

/** exp of a pair of arguments in [−700, 0], with fdlibm's bits (see above). */
// @ts-ignore: decorator
@inline
function expPair(x: v128): v128 {
  const ax = f64x2.abs(x);
  // k = (int)(x/ln2 − 0.5) for x < 0: already what fdlibm's two other cases set, −1 where 0.5·ln2 < |x| < 1.5·ln2
  // and (±)0 where |x| ≤ 0.5·ln2 (its high-word tests lie inside those bounds)
  const kf = f64x2.trunc(f64x2.sub(f64x2.mul(f64x2.splat(INV_LN2), x), f64x2.splat(0.5)));
  const hi = f64x2.sub(x, f64x2.mul(kf, f64x2.splat(LN2_HI)));
  const lo = f64x2.mul(kf, f64x2.splat(LN2_LO));
  const r = f64x2.sub(hi, lo);
  const t = f64x2.mul(r, r);
  let p = f64x2.add(f64x2.splat(EXP_P4), f64x2.mul(t, f64x2.splat(EXP_P5)));
  p = f64x2.add(f64x2.splat(EXP_P3), f64x2.mul(t, p));
  p = f64x2.add(f64x2.splat(EXP_P2), f64x2.mul(t, p));
  p = f64x2.add(f64x2.splat(EXP_P1), f64x2.mul(t, p));
  const c = f64x2.sub(r, f64x2.mul(t, p));
  const q = f64x2.div(f64x2.mul(r, c), f64x2.sub(f64x2.splat(2.0), c));
  const y = f64x2.sub(f64x2.splat(1), f64x2.sub(f64x2.sub(lo, q), hi));
  // 2^k: (k + 1023) << 52 as a double (k ≥ −1011 here)
  const k64 = i64x2.extend_low_i32x4_s(i32x4.trunc_sat_f64x2_s_zero(kf));
  const twopk = i64x2.shl(i64x2.add(k64, i64x2.splat(1023)), 52);
  const e = f64x2.mul(y, twopk);
  const tiny = f64x2.lt(ax, f64x2.splat(reinterpret<f64>(<u64>0x3e300000 << 32)));
  return v128.bitselect(f64x2.add(f64x2.splat(1), x), e, tiny);
}

/** exp of two arguments: the SIMD path where both are in [−700, 0] (NaN fails the test), else the scalar port. */
// @ts-ignore: decorator
@inline
function expTwo(x: v128): v128 {
  if (i64x2.all_true(v128.and(f64x2.ge(x, f64x2.splat(-700)), f64x2.le(x, f64x2.splat(0))))) return expPair(x);
  return f64x2.replace_lane(f64x2.splat(expFdlibm(f64x2.extract_lane(x, 0))), 1, expFdlibm(f64x2.extract_lane(x, 1)));
}

/** Every row r of S (R, T): its first n_r entries replaced by their softmax (the formula above). */
export function attnSoftmax(S: usize, T: i32, ns: usize, R: i32): void {
  for (let r = 0; r < R; r++) {
    const n = load<i32>(ns + (<usize>r << 2));
    const s = S + ((<usize>r * <usize>T) << 3);
    // m: the loop's `if (s_j > m) m = s_j` from −∞ per lane (pmax keeps m on NaN, as the loop does)
    let m2 = f64x2.splat(-Infinity);
    let j = 0;
    for (; j + 2 <= n; j += 2) m2 = f64x2.pmax(m2, v128.load(s + (<usize>j << 3)));
    let m = f64x2.extract_lane(m2, 0);
    const m1 = f64x2.extract_lane(m2, 1);
    if (m1 > m) m = m1;
    if (j < n) {
      const v = f64at(s, j);
      if (v > m) m = v;
    }
    const mm = f64x2.splat(m);
    let z: f64 = 0;
    j = 0;
    for (; j + 2 <= n; j += 2) {
      const p = s + (<usize>j << 3);
      const x = f64x2.sub(v128.load(p), mm);
      const e = expTwo(x);
      v128.store(p, e);
      z += f64x2.extract_lane(e, 0);
      z += f64x2.extract_lane(e, 1);
    }
    if (j < n) {
      const e = expFdlibm(f64at(s, j) - m);
      store<f64>(s + (<usize>j << 3), e);
      z += e;
    }
    const zz = f64x2.splat(z);
    j = 0;
    for (; j + 2 <= n; j += 2) {
      const p = s + (<usize>j << 3);
      v128.store(p, f64x2.div(v128.load(p), zz));
    }
    if (j < n) store<f64>(s + (<usize>j << 3), f64at(s, j) / z);
  }
}

/** exp of each of n doubles at x into out, by the softmax's exp (for the tests: it must equal Math.exp). */
export function expRows(x: usize, n: i32, out: usize): void {
  let j = 0;
  for (; j + 2 <= n; j += 2) {
    v128.store(out + (<usize>j << 3), expTwo(v128.load(x + (<usize>j << 3))));
  }
  if (j < n) store<f64>(out + (<usize>j << 3), expFdlibm(f64at(x, j)));
}

// ---- a window's whole causal attention in float32 (`mil eval`: lib/train/job.ts evaluateOn) ----
//
// The three steps above for the R query rows of one key/value head, f32x4, one block of 4 rows at a time
// (scores, softmax and weighted values of a block while its scores sit in L1), for evaluation, where speed
// matters and the decode paths' bits do not (those keep the float64 kernels above):
//
//   S[r, j] = (q_r · k_j)·scale  (j < n_r),   e_rj = exp(S[r, j] − m_r),   O[r, :] = (Σ_{j < n_r} e_rj·v_j) / Σ_j e_rj
//
// m_r = max_{j < n_r} S[r, j]; exp is asm/activations.ts expNeg (within 3 float32 ulp); the division by the sum
// comes last, once per output. Float32 sums (in several lanes, with `madd` as gemm.ts's: fused in gemm-fma.wasm):
// not the float64 loop's bits — spec/simd.spec.ts bounds the difference (ATTN_F32_TOL) against that loop.
//
// Layouts (float32, byte addresses): Q (R4, hd) row-major, R4 = R rounded up to 4 (pad rows: any finite values
// and n ≥ 1, their outputs unused); KT (hd, T8) — the keys transposed, T8 = T rounded up to 8, zero past T;
// V (T, hd8) row-major, hd8 = hd rounded up to 8, zero past hd; ns (i32, R4): n_r, 1 ≤ n_r ≤ T; S scratch (4, T8);
// O (R4, hd8). Returns the number of rows whose max or sum is not finite (their outputs are not to be used: the
// caller falls back to the float64 kernels).

// @ts-ignore: decorator
@inline
function madd(acc: v128, s: v128, b: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(s, b, acc);
  return f32x4.add(acc, f32x4.mul(s, b));
}

export function attnWindowF32(Q: usize, KT: usize, V: usize, O: usize, S: usize, ns: usize, R4: i32, hd: i32, T8: i32, scale: f32): i32 {
  const hd8 = (hd + 7) & ~7;
  const sRow = <usize>T8 << 2;
  const ktRow = <usize>T8 << 2;
  const vRow = <usize>hd8 << 2;
  const sc = f32x4.splat(scale);
  let bad = 0;
  for (let r0 = 0; r0 < R4; r0 += 4) {
    let nmax = 0;
    for (let k = 0; k < 4; k++) nmax = max(nmax, load<i32>(ns + (<usize>(r0 + k) << 2)));
    const q0 = Q + ((<usize>r0 * <usize>hd) << 2);
    const q1 = q0 + (<usize>hd << 2);
    const q2 = q1 + (<usize>hd << 2);
    const q3 = q2 + (<usize>hd << 2);
    // scores: 4 rows × 8 keys in 8 accumulators, per channel i four broadcasts of q and two loads of kᵀ
    for (let j = 0; j < nmax; j += 8) {
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), b0 = f32x4.splat(0), b1 = f32x4.splat(0);
      let c0 = f32x4.splat(0), c1 = f32x4.splat(0), d0 = f32x4.splat(0), d1 = f32x4.splat(0);
      let k = KT + (<usize>j << 2);
      for (let i = 0; i < hd; i++) {
        const o = <usize>i << 2;
        const k0 = v128.load(k);
        const k1 = v128.load(k, 16);
        const x0 = v128.load32_splat(q0 + o);
        const x1 = v128.load32_splat(q1 + o);
        const x2 = v128.load32_splat(q2 + o);
        const x3 = v128.load32_splat(q3 + o);
        a0 = madd(a0, x0, k0);
        a1 = madd(a1, x0, k1);
        b0 = madd(b0, x1, k0);
        b1 = madd(b1, x1, k1);
        c0 = madd(c0, x2, k0);
        c1 = madd(c1, x2, k1);
        d0 = madd(d0, x3, k0);
        d1 = madd(d1, x3, k1);
        k += ktRow;
      }
      const s = S + (<usize>j << 2);
      v128.store(s, f32x4.mul(a0, sc));
      v128.store(s, f32x4.mul(a1, sc), 16);
      v128.store(s + sRow, f32x4.mul(b0, sc));
      v128.store(s + sRow, f32x4.mul(b1, sc), 16);
      v128.store(s + 2 * sRow, f32x4.mul(c0, sc));
      v128.store(s + 2 * sRow, f32x4.mul(c1, sc), 16);
      v128.store(s + 3 * sRow, f32x4.mul(d0, sc));
      v128.store(s + 3 * sRow, f32x4.mul(d1, sc), 16);
    }
    // softmax numerators in place: e_j = exp(s_j − m) for j < n, 0 for n ≤ j < nmax (read by the products below)
    let inv0: f32 = 0, inv1: f32 = 0, inv2: f32 = 0, inv3: f32 = 0;
    for (let k = 0; k < 4; k++) {
      const n = load<i32>(ns + (<usize>(r0 + k) << 2));
      const s = S + <usize>k * sRow;
      const n4 = n & ~3;
      let mv = f32x4.splat(-Infinity);
      for (let j = 0; j < n4; j += 4) mv = f32x4.max(mv, v128.load(s + (<usize>j << 2)));
      let m = max(max(f32x4.extract_lane(mv, 0), f32x4.extract_lane(mv, 1)), max(f32x4.extract_lane(mv, 2), f32x4.extract_lane(mv, 3)));
      for (let j = n4; j < n; j++) m = max(m, load<f32>(s + (<usize>j << 2)));
      const ms = f32x4.splat(m);
      let zv = f32x4.splat(0);
      for (let j = 0; j < n4; j += 4) {
        const p = s + (<usize>j << 2);
        const e = expNeg(f32x4.sub(v128.load(p), ms));
        v128.store(p, e);
        zv = f32x4.add(zv, e);
      }
      let z = f32x4.extract_lane(zv, 0) + f32x4.extract_lane(zv, 1) + (f32x4.extract_lane(zv, 2) + f32x4.extract_lane(zv, 3));
      for (let j = n4; j < n; j++) {
        const p = s + (<usize>j << 2);
        const e = f32x4.extract_lane(expNeg(f32x4.splat(load<f32>(p) - m)), 0);
        store<f32>(p, e);
        z += e;
      }
      for (let j = n; j < nmax; j++) store<f32>(s + (<usize>j << 2), 0);
      if (!isFinite(m) || !isFinite(z)) bad++;
      const inv: f32 = 1 / z;
      if (k == 0) inv0 = inv;
      else if (k == 1) inv1 = inv;
      else if (k == 2) inv2 = inv;
      else inv3 = inv;
    }
    // weighted values: 4 rows × 8 channels in 8 accumulators, per key j four broadcasts of e and two loads of v
    const o0 = O + ((<usize>r0 * <usize>hd8) << 2);
    for (let c = 0; c < hd8; c += 8) {
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), b0 = f32x4.splat(0), b1 = f32x4.splat(0);
      let c0 = f32x4.splat(0), c1 = f32x4.splat(0), d0 = f32x4.splat(0), d1 = f32x4.splat(0);
      let v = V + (<usize>c << 2);
      for (let j = 0; j < nmax; j++) {
        const o = <usize>j << 2;
        const v0 = v128.load(v);
        const v1 = v128.load(v, 16);
        const x0 = v128.load32_splat(S + o);
        const x1 = v128.load32_splat(S + sRow + o);
        const x2 = v128.load32_splat(S + 2 * sRow + o);
        const x3 = v128.load32_splat(S + 3 * sRow + o);
        a0 = madd(a0, x0, v0);
        a1 = madd(a1, x0, v1);
        b0 = madd(b0, x1, v0);
        b1 = madd(b1, x1, v1);
        c0 = madd(c0, x2, v0);
        c1 = madd(c1, x2, v1);
        d0 = madd(d0, x3, v0);
        d1 = madd(d1, x3, v1);
        v += vRow;
      }
      const o = o0 + (<usize>c << 2);
      const i0 = f32x4.splat(inv0), i1 = f32x4.splat(inv1), i2 = f32x4.splat(inv2), i3 = f32x4.splat(inv3);
      v128.store(o, f32x4.mul(a0, i0));
      v128.store(o, f32x4.mul(a1, i0), 16);
      v128.store(o + vRow, f32x4.mul(b0, i1));
      v128.store(o + vRow, f32x4.mul(b1, i1), 16);
      v128.store(o + 2 * vRow, f32x4.mul(c0, i2));
      v128.store(o + 2 * vRow, f32x4.mul(c1, i2), 16);
      v128.store(o + 3 * vRow, f32x4.mul(d0, i3));
      v128.store(o + 3 * vRow, f32x4.mul(d1, i3), 16);
    }
  }
  return bad;
}
