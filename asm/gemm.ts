// SIMD matrix products for the CPU (AssemblyScript → WebAssembly with 128-bit SIMD).
//
//   gemm:   C[M×N] (+)= A[M×K] · B[K×N], B pre-packed into panels of 8 columns (`packB*`), columns [n0, n1)
//   micro-kernel: 4 rows of A × 8 columns of B held in 8 f32x4 accumulators; per k, 4 broadcast loads of
//   A, 2 vector loads of the panel, 8 multiplies and 8 adds. K is blocked by KC so a panel block stays in L1,
//   M by MC so the block of A stays in L2 while the panels stream past it.
//
// Memory is imported (the caller owns it and places every array above `dataEnd()`); nothing here allocates.
// Layouts: row-major; packed B in groups of GW = 4 panels of 8 columns (32 columns, the last group zero-padded),
// a group's four panels interleaved by k: group G holds, for k = 0…K−1 in turn, the 8 columns of its panel 0,
// then of panels 1, 2, 3 — column n = 32G + 8j + c at byte ((G·K + k)·4 + j)·kStep + c·sizeof(T). A one-row
// product reads a group's 32 columns as ONE stream front to back (`kernel1x32`); with the panels one after
// another it read four streams K·32 bytes apart, ~30% slower where K = 512 (the d512 models' every projection
// but one, measured on this machine: 17.5 against 24.5 GB/s). A kernel on one panel steps k by kStride bytes.
//
// Panels come in two element types, one source for both (every kernel is generic in T, resolved at compile time):
//   f32  (T = f32)  `gemm`, packed by `packBT`/`packBN`: 32 bytes per k of a panel
//   bf16 (T = u16)  `gemmBf16`, packed by `packBTBf16` from bf16 words (the high 16 bits of a float32): 16 bytes
//                   per k, widened to f32 in registers — bf16 → f32 is exact (the word shifted left by 16), so a
//                   product over bf16 panels equals the f32 product over the same weights widened, bit for bit,
//                   while decode reads half the bytes. Only B is bf16; A, C and every sum stay float32.

const MR: i32 = 4;
const NR: i32 = 8;
const GW: i32 = 4; // panels in a group, interleaved by k
const KC: i32 = 256;
const MC: i32 = 64; // rows of A per block: MC·KC·4 = 64 KiB stays in L2 while every panel passes over it

/**
 * acc + s·b per lane. Built twice from this source (asm/build.sh): gemm.wasm rounds the product and then the
 * sum (f32x4.mul, f32x4.add: baseline SIMD, every engine); gemm-fma.wasm uses relaxed SIMD's
 * f32x4.relaxed_madd, one rounding where the CPU has fused multiply-add (x86 FMA3, Arm NEON), two where it
 * does not. Both keep every accumulation in the same order.
 */
// @ts-ignore: decorator
@inline
function madd(acc: v128, s: v128, b: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(s, b, acc);
  return f32x4.add(acc, f32x4.mul(s, b));
}

/**
 * Pack the K×N matrix whose element (k, n) sits at src + 4·(k·sk + n·sn): B[k][8p + c] at
 * panelAt(bp, 8p, K) + k·kStride + 4c (see Layouts; a last group's panels past N are not written, nor read).
 */
function packB(src: usize, K: i32, N: i32, sk: usize, sn: usize, bp: usize): void {
  const panels = (N + NR - 1) / NR;
  for (let p = 0; p < panels; p++) {
    const base = panelAt<f32>(bp, p * NR, K);
    for (let k = 0; k < K; k++) {
      const dst = base + <usize>k * kStride<f32>();
      for (let c = 0; c < NR; c++) {
        const n = p * NR + c;
        store<f32>(dst + (<usize>c << 2), n < N ? load<f32>(src + ((<usize>k * sk + <usize>n * sn) << 2)) : 0);
      }
    }
  }
}

/** Pack B = Wᵀ for y = x·Wᵀ (W: N×K row-major). */
export function packBT(w: usize, N: i32, K: i32, bp: usize): void {
  packB(w, K, N, 1, <usize>K, bp);
}

/** Pack B given row-major K×N (y = x·B). */
export function packBN(b: usize, K: i32, N: i32, bp: usize): void {
  packB(b, K, N, <usize>N, 1, bp);
}

/**
 * Pack B = Wᵀ for y = x·Wᵀ from bf16 words, W (N×K) row-major at w (2 bytes a word), into bf16 panels:
 * W[8p + c][k] at panelAt(bp, 8p, K) + k·kStride + 2c (2 bytes each; columns past N in a written panel are zero).
 */
export function packBTBf16(w: usize, N: i32, K: i32, bp: usize): void {
  const panels = (N + NR - 1) / NR;
  for (let p = 0; p < panels; p++) {
    const base = panelAt<u16>(bp, p * NR, K);
    for (let c = 0; c < NR; c++) {
      const n = p * NR + c;
      let dst = base + (<usize>c << 1);
      if (n < N) {
        let src = w + ((<usize>n * <usize>K) << 1);
        for (let k = 0; k < K; k++) {
          store<u16>(dst, load<u16>(src));
          src += 2;
          dst += kStride<u16>();
        }
      } else for (let k = 0; k < K; k++) {
        store<u16>(dst, 0);
        dst += kStride<u16>();
      }
    }
  }
}

/** out[K×M] = aᵀ for a (M×K) row-major. */
export function transpose(a: usize, M: i32, K: i32, out: usize): void {
  for (let i = 0; i < M; i++)
    for (let k = 0; k < K; k++) store<f32>(out + ((<usize>k * <usize>M + <usize>i) << 2), load<f32>(a + ((<usize>i * <usize>K + <usize>k) << 2)));
}

/** The 8 columns of one k of a panel, as two f32x4 (columns 0–3 in lo, 4–7 in hi): a bf16 word w is the float32 w << 16. */
// @ts-ignore: decorator
@inline
function widenLo(w: v128): v128 {
  return i32x4.shl(i32x4.extend_low_i16x8_u(w), 16);
}
// @ts-ignore: decorator
@inline
function widenHi(w: v128): v128 {
  return i32x4.shl(i32x4.extend_high_i16x8_u(w), 16);
}
// @ts-ignore: decorator
@inline
function panelLo<T>(p: usize): v128 {
  if (sizeof<T>() == 4) return v128.load(p);
  return widenLo(v128.load(p));
}
// @ts-ignore: decorator
@inline
function panelHi<T>(p: usize): v128 {
  if (sizeof<T>() == 4) return v128.load(p, 16);
  return widenHi(v128.load(p));
}
/** Bytes of one k of a panel (8 columns of T). */
// @ts-ignore: decorator
@inline
function kStep<T>(): usize {
  return <usize>NR * sizeof<T>();
}
/** Bytes from one k of a panel to the next: a group's four panels interleaved by k (see Layouts). */
// @ts-ignore: decorator
@inline
function kStride<T>(): usize {
  return <usize>(GW * NR) * sizeof<T>();
}
/** The first byte of the panel holding column n (n a multiple of 8) of B packed with K rows at bp. */
// @ts-ignore: decorator
@inline
function panelAt<T>(bp: usize, n: i32, K: i32): usize {
  const p = n / NR;
  return bp + (<usize>(p / GW) * <usize>K) * kStride<T>() + <usize>(p % GW) * kStep<T>();
}

// Four rows × 8 columns: 8 accumulators; per k, 4 broadcast loads of A, 2 vector loads of the panel, 8 multiply-adds.
// @ts-ignore: decorator
@inline
function kernel4x8<T>(a: usize, lda: usize, bp: usize, c: usize, ldc: usize, k0: i32, k1: i32, accumulate: bool, cols: i32): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c10 = f32x4.splat(0), c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0), c30 = f32x4.splat(0), c31 = f32x4.splat(0);
  let pa = a + (<usize>k0 << 2);
  let pb = bp + <usize>k0 * kStride<T>();
  for (let k = k0; k < k1; k++) {
    const b0 = panelLo<T>(pb);
    const b1 = panelHi<T>(pb);
    let s = v128.load32_splat(pa);
    c00 = madd(c00, s, b0);
    c01 = madd(c01, s, b1);
    s = v128.load32_splat(pa + lda);
    c10 = madd(c10, s, b0);
    c11 = madd(c11, s, b1);
    s = v128.load32_splat(pa + 2 * lda);
    c20 = madd(c20, s, b0);
    c21 = madd(c21, s, b1);
    s = v128.load32_splat(pa + 3 * lda);
    c30 = madd(c30, s, b0);
    c31 = madd(c31, s, b1);
    pa += 4;
    pb += kStride<T>();
  }
  storeRow8(c, c00, c01, cols, accumulate);
  storeRow8(c + ldc, c10, c11, cols, accumulate);
  storeRow8(c + 2 * ldc, c20, c21, cols, accumulate);
  storeRow8(c + 3 * ldc, c30, c31, cols, accumulate);
}

/** One row of 8 accumulated columns into C (+= when `accumulate`); the first `cols` of them when fewer than 8. */
// @ts-ignore: decorator
@inline
function storeRow8(c: usize, v0: v128, v1: v128, cols: i32, accumulate: bool): void {
  if (cols == NR) {
    if (accumulate) {
      v0 = f32x4.add(v0, v128.load(c));
      v1 = f32x4.add(v1, v128.load(c, 16));
    }
    v128.store(c, v0);
    v128.store(c, v1, 16);
  } else storePartial(c, v0, v1, cols, accumulate);
}

// @ts-ignore: decorator
@inline
function kernel1x8<T>(a: usize, bp: usize, c: usize, k0: i32, k1: i32, accumulate: bool, cols: i32): void {
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0);
  let pa = a + (<usize>k0 << 2);
  let pb = bp + <usize>k0 * kStride<T>();
  for (let k = k0; k < k1; k++) {
    const s = v128.load32_splat(pa);
    c0 = madd(c0, s, panelLo<T>(pb));
    c1 = madd(c1, s, panelHi<T>(pb));
    pa += 4;
    pb += kStride<T>();
  }
  storeRow8(c, c0, c1, cols, accumulate);
}

// One row of A against a group's four panels at once (32 columns): one broadcast of A per k serves 8 vector
// multiply-adds, and the group is read as one stream front to back (its panels interleaved by k) — the
// matrix-vector product of decode is bound by reading the weights, and this reads them at close to the
// memory's speed.
// The never-taken branch halfway is there for V8 (x64, 15 allocatable SIMD registers): without it TurboFan
// schedules all eight loads of a k first, 8 accumulators + the broadcast + 8 loaded vectors do not fit, and one
// accumulator is spilled: stored to the stack and loaded back every k, a chain through memory (seen with
// --print-wasm-code). That bound the kernel at ~10 cycles per k even with the weights in L2 (16 GFLOP/s,
// 384×1024 in 47 µs); with the branch each half's four loads are scheduled after the first half's sums, nothing
// spills, and the same product takes 22–31 µs (bench/verify-products.ts, this VM, 2026-12-05). The sums are the same.
// @ts-ignore: decorator
@inline
function kernel1x32<T>(a: usize, bp: usize, c: usize, k0: i32, k1: i32, accumulate: bool): void {
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0);
  let c4 = f32x4.splat(0), c5 = f32x4.splat(0), c6 = f32x4.splat(0), c7 = f32x4.splat(0);
  let pa = a + (<usize>k0 << 2);
  let p0 = bp + <usize>k0 * kStride<T>();
  const p1 = kStep<T>(), p2 = kStep<T>() << 1, p3 = kStep<T>() * <usize>3;
  for (let k = k0; k < k1; k++) {
    const s = v128.load32_splat(pa);
    c0 = madd(c0, s, panelLo<T>(p0));
    c1 = madd(c1, s, panelHi<T>(p0));
    c2 = madd(c2, s, panelLo<T>(p0 + p1));
    c3 = madd(c3, s, panelHi<T>(p0 + p1));
    if (pa == 0) break; // never (A is never at address 0): see above
    c4 = madd(c4, s, panelLo<T>(p0 + p2));
    c5 = madd(c5, s, panelHi<T>(p0 + p2));
    c6 = madd(c6, s, panelLo<T>(p0 + p3));
    c7 = madd(c7, s, panelHi<T>(p0 + p3));
    pa += 4;
    p0 += kStride<T>();
  }
  if (accumulate) {
    c0 = f32x4.add(c0, v128.load(c)); c1 = f32x4.add(c1, v128.load(c, 16));
    c2 = f32x4.add(c2, v128.load(c, 32)); c3 = f32x4.add(c3, v128.load(c, 48));
    c4 = f32x4.add(c4, v128.load(c, 64)); c5 = f32x4.add(c5, v128.load(c, 80));
    c6 = f32x4.add(c6, v128.load(c, 96)); c7 = f32x4.add(c7, v128.load(c, 112));
  }
  v128.store(c, c0); v128.store(c, c1, 16); v128.store(c, c2, 32); v128.store(c, c3, 48);
  v128.store(c, c4, 64); v128.store(c, c5, 80); v128.store(c, c6, 96); v128.store(c, c7, 112);
}

function storePartial(c: usize, v0: v128, v1: v128, cols: i32, accumulate: bool): void {
  for (let j = 0; j < cols; j++) {
    const v = j < 4 ? extract(v0, j) : extract(v1, j - 4);
    const p = c + (<usize>j << 2);
    store<f32>(p, accumulate ? load<f32>(p) + v : v);
  }
}

function extract(v: v128, j: i32): f32 {
  if (j == 0) return f32x4.extract_lane(v, 0);
  if (j == 1) return f32x4.extract_lane(v, 1);
  if (j == 2) return f32x4.extract_lane(v, 2);
  return f32x4.extract_lane(v, 3);
}

/**
 * C[:, n0:n1] (+)= A · B for columns [n0, n1) (n0 a multiple of 8): A (M×K, row stride K), packed B
 * (N columns), C (M×N, row stride N). `accumulate` adds into C instead of overwriting it.
 */
export function gemm(a: usize, bp: usize, c: usize, M: i32, N: i32, K: i32, n0: i32, n1: i32, accumulate: bool): void {
  gemmOf<f32>(a, bp, c, M, N, K, n0, n1, accumulate);
}

/** As `gemm`, B packed as bf16 panels (`packBTBf16`): the weights widened to f32 in registers. */
export function gemmBf16(a: usize, bp: usize, c: usize, M: i32, N: i32, K: i32, n0: i32, n1: i32, accumulate: bool): void {
  gemmOf<u16>(a, bp, c, M, N, K, n0, n1, accumulate);
}

// @ts-ignore: decorator
@inline
function gemmOf<T>(a: usize, bp: usize, c: usize, M: i32, N: i32, K: i32, n0: i32, n1: i32, accumulate: bool): void {
  const lda = <usize>K << 2;
  const ldc = <usize>N << 2;
  const full = M & ~(MR - 1); // rows in groups of four; the 1–3 left over go to fewRows
  if (M <= MC) {
    // A window of up to MC rows (decode: 1, a verify window: K + 1) sits in L1/L2 whole, so B is read once, in
    // the order it is stored: four panels at a time, each group's K blocks one after another — one stream
    // front to back. (K blocks outermost jumped to another panel every 8 KiB and read B at about a third of
    // the memory's speed.)
    for (let g = n0; g < n1; g += 4 * NR) {
      const g1 = min(n1, g + 4 * NR);
      for (let k0 = 0; k0 < K; k0 += KC) {
        const k1 = min(K, k0 + KC);
        const acc = accumulate || k0 > 0;
        for (let n = g; n < g1; n += NR) {
          const cols = min(NR, g1 - n);
          const panel = panelAt<T>(bp, n, K);
          for (let i = 0; i < full; i += MR) kernel4x8<T>(a + <usize>i * lda, lda, panel, c + <usize>i * ldc + (<usize>n << 2), ldc, k0, k1, acc, cols);
        }
        if (full < M) fewRows<T>(M - full, a + <usize>full * lda, lda, bp, K, c + <usize>full * ldc, ldc, g, g1, k0, k1, acc);
      }
    }
    return;
  }
  // Larger products: K blocks outermost, MC rows of A at a time kept in L2 while every panel passes over them.
  for (let k0 = 0; k0 < K; k0 += KC) {
    const k1 = min(K, k0 + KC);
    const acc = accumulate || k0 > 0;
    for (let m0 = 0; m0 < M; m0 += MC) {
      const m1 = min(M, m0 + MC);
      const mf = m0 + ((m1 - m0) & ~(MR - 1));
      for (let n = n0; n < n1; n += NR) {
        const cols = min(NR, n1 - n);
        const panel = panelAt<T>(bp, n, K);
        for (let i = m0; i < mf; i += MR) kernel4x8<T>(a + <usize>i * lda, lda, panel, c + <usize>i * ldc + (<usize>n << 2), ldc, k0, k1, acc, cols);
      }
      if (mf < m1) fewRows<T>(m1 - mf, a + <usize>mf * lda, lda, bp, K, c + <usize>mf * ldc, ldc, n0, n1, k0, k1, acc);
    }
  }
}

/**
 * Rows [0, rows) of A, rows = 1–3, against the columns [n0, n1) for one block of K (n0 a group's first column):
 * group by group, each row against the group's four panels (kernel1x32, 8 sums in flight), the rows one after
 * another — the first reads the group's block of K from memory as one stream, the others find it in the cache
 * (KC·128 bytes: 32 KiB), so a verify window of 2–3 tokens reads the weights once; a ragged end row by row.
 * Every column's additions are in the same order whatever the row count (rows one by one give the same bits).
 * Kernels for two rows at once were tried and measured against this (bench/verify-products.ts, this 2-core VM, FMA
 * build, 2026-12-05): on all four panels (16 accumulators) they spilled several sums every k — 2×4096² took 3.3 ms
 * from memory, 1.2× one row, but 3×4096² 5.6–6.3 ms and 2×384×8192 in the cache 1.4× one row; on two panels at a
 * time (8 accumulators, two passes over each group's block) 1.6–2× one row from memory. Rows one by one with
 * kernel1x32 as it is now: 2 and 3 rows of 4096² in 3.6 and 4.3–4.5 ms (one row 2.3–3.1), of 384×8192 in the
 * cache 1.9× and 2.8× one row (one row 180–230 µs, 370 before the kernel's spill was gone).
 */
function fewRows<T>(rows: i32, a: usize, lda: usize, bp: usize, K: i32, c: usize, ldc: usize, n0: i32, n1: i32, k0: i32, k1: i32, acc: bool): void {
  let n = n0;
  for (; n + 4 * NR <= n1; n += 4 * NR) {
    const panel = panelAt<T>(bp, n, K);
    const cn = c + (<usize>n << 2);
    // the first row reads the group's block from memory; the others read it again from the cache
    for (let i = 0; i < rows; i++) kernel1x32<T>(a + <usize>i * lda, panel, cn + <usize>i * ldc, k0, k1, acc);
  }
  for (; n < n1; n += NR)
    for (let i = 0; i < rows; i++) kernel1x8<T>(a + <usize>i * lda, panelAt<T>(bp, n, K), c + <usize>i * ldc + (<usize>n << 2), k0, k1, acc, min(NR, n1 - n));
}

/**
 * Σ of n floats at p, with eight f32x4 accumulators: a read as fast as the memory allows (the bandwidth
 * floor of the benchmarks; a one-accumulator JavaScript loop is bound by the latency of its adds instead).
 */
export function readSum(p: usize, n: i32): f32 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let a4 = f32x4.splat(0), a5 = f32x4.splat(0), a6 = f32x4.splat(0), a7 = f32x4.splat(0);
  let i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = f32x4.add(a0, v128.load(p)); a1 = f32x4.add(a1, v128.load(p, 16));
    a2 = f32x4.add(a2, v128.load(p, 32)); a3 = f32x4.add(a3, v128.load(p, 48));
    a4 = f32x4.add(a4, v128.load(p, 64)); a5 = f32x4.add(a5, v128.load(p, 80));
    a6 = f32x4.add(a6, v128.load(p, 96)); a7 = f32x4.add(a7, v128.load(p, 112));
    p += 128;
  }
  const s = f32x4.add(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)), f32x4.add(f32x4.add(a4, a5), f32x4.add(a6, a7)));
  let t = f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1) + f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3);
  for (; i < n; i++) {
    t += load<f32>(p);
    p += 4;
  }
  return t;
}

/**
 * The multiply-add peak probe (bench/: the bound of every product here): n rounds of 12 independent chains
 * acc ← c + acc·m (f32x4, `madd`: a fused relaxed_madd in gemm-fma.wasm, a mul then an add in gemm.wasm), so
 * nothing is loop-invariant and 12 chains hide the latency of either form on two SIMD ports. Each round is
 * 12·4 multiply-adds = 96 flops; returns a sum of the chains (so they are computed).
 */
export function peakMadd(n: i32, m: f32, c: f32): f32 {
  const vm = f32x4.splat(m), vc = f32x4.splat(c);
  let a0 = f32x4.splat(1), a1 = f32x4.splat(2), a2 = f32x4.splat(3), a3 = f32x4.splat(4);
  let a4 = f32x4.splat(5), a5 = f32x4.splat(6), a6 = f32x4.splat(7), a7 = f32x4.splat(8);
  let a8 = f32x4.splat(9), a9 = f32x4.splat(10), a10 = f32x4.splat(11), a11 = f32x4.splat(12);
  for (let i = 0; i < n; i++) {
    a0 = madd(vc, a0, vm); a1 = madd(vc, a1, vm); a2 = madd(vc, a2, vm); a3 = madd(vc, a3, vm);
    a4 = madd(vc, a4, vm); a5 = madd(vc, a5, vm); a6 = madd(vc, a6, vm); a7 = madd(vc, a7, vm);
    a8 = madd(vc, a8, vm); a9 = madd(vc, a9, vm); a10 = madd(vc, a10, vm); a11 = madd(vc, a11, vm);
  }
  const s = f32x4.add(f32x4.add(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)), f32x4.add(f32x4.add(a4, a5), f32x4.add(a6, a7))), f32x4.add(f32x4.add(a8, a9), f32x4.add(a10, a11)));
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1) + f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3);
}

/**
 * Where the module's static data ends (the tables of Math.exp and Math.log1p that asm/multistep.ts uses live
 * below it): the caller places arrays only above this address.
 */
export function dataEnd(): usize {
  return __heap_base;
}

// Algorithm 2's MultiStep verify kernel lives in its own file and is built into the same module (one memory,
// one instance per thread).
export { multistep } from './multistep';
// and so do cached attention's float64 kernels, and a window's attention in float32 (`mil eval`)
export { attnScores, attnValues, attnSoftmax, expRows, attnWindowF32 } from './attention';
// and the SIMD SiLU of the MLP and the convolution, and the log-sum-exp of logits rows (`mil eval`)
export { siluMul, rowLse } from './activations';
