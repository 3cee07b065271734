// The two products of cached causal attention for the CPU, float64 (AssemblyScript → WebAssembly, f64x2).
// The softmax between them stays in JavaScript (lib/model/hybrid.ts), so Math.exp is the engine's own.
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
