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

/** out[i] = silu(a[i])·b[i] (or silu(a[i]) when b = 0) for i < n, n a multiple of 4 (float32 arrays at byte addresses). */
export function siluMul(a: usize, b: usize, out: usize, n: i32): void {
  const one = f32x4.splat(1);
  const magic = f32x4.splat(12582912.0);
  for (let i = 0; i < n; i += 4) {
    const o = <usize>i << 2;
    const v = v128.load(a + o);
    const xr = f32x4.neg(f32x4.abs(v));
    const x = f32x4.pmax(xr, f32x4.splat(-110.0));
    const t = f32x4.add(f32x4.mul(x, f32x4.splat(1.44269504088896341)), magic);
    const nf = f32x4.sub(t, magic);
    let r = f32x4.sub(x, f32x4.mul(nf, f32x4.splat(0.693359375)));
    r = f32x4.sub(r, f32x4.mul(nf, f32x4.splat(-2.12194440e-4)));
    let p = f32x4.splat(1.9875691500e-4);
    p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.3981999507e-3));
    p = f32x4.add(f32x4.mul(p, r), f32x4.splat(8.3334519073e-3));
    p = f32x4.add(f32x4.mul(p, r), f32x4.splat(4.1665795894e-2));
    p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.6666665459e-1));
    p = f32x4.add(f32x4.mul(p, r), f32x4.splat(5.0000001201e-1));
    p = f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(p, r), r), r), one);
    // 2ⁿ in two normal halves: n ∈ [−159, 0], ⌊n/2⌋ and the rest ≥ −80
    const ni = i32x4.sub(t, magic); // n, exactly: t − magic differ only in the low mantissa bits
    const n1 = i32x4.shr_s(ni, 1);
    const s1 = i32x4.shl(i32x4.add(n1, i32x4.splat(127)), 23);
    const s2 = i32x4.shl(i32x4.add(i32x4.sub(ni, n1), i32x4.splat(127)), 23);
    const ps = f32x4.mul(p, s1);
    const e = f32x4.mul(ps, s2);
    // a < 0: a·e, taken as (a·p·2^⌊n/2⌋)·2^(n−⌊n/2⌋) (one rounding into the subnormals); 0 below a = −110
    const small = v128.andnot(f32x4.mul(f32x4.mul(v, ps), s2), f32x4.lt(xr, f32x4.splat(-110.0)));
    const num = v128.bitselect(small, v, f32x4.lt(v, f32x4.splat(0)));
    let y = f32x4.div(num, f32x4.add(one, e));
    if (b) y = f32x4.mul(y, v128.load(b + o));
    v128.store(out + o, y);
  }
}
