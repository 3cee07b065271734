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
