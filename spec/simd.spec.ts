/**
 * The SIMD matrix products (asm/gemm.ts → asm/gemm.wasm, driven by lib/simd/gemm.ts) against the float64
 * reference on random shapes — sizes of 1, widths that are not multiples of the 8-column panel or the
 * 4-row tile, K across the 256 block — for y = x·Wᵀ, c = a·b and c = aᵀ·b; resident packed weights; any
 * thread count gives bit-identical results; nothing the driver places overwrites the module's static data
 * (asm/multistep.ts's Math tables); and the committed .wasm files are exactly what their source builds to.
 * The product properties run on both builds: asm/gemm.wasm (baseline SIMD) and asm/gemm-fma.wasm (relaxed
 * SIMD's fused multiply-add; skipped, saying why, on an engine without relaxed SIMD).
 * Tolerance: float32 products of length K against float64, relative (Frobenius) error ≤ 1e-5 (either build:
 * fusing removes one rounding per term, it adds none).
 * Bf16 panels (packBf16, gemmBf16): against a float64 product of the bf16 weights (each word widened exactly)
 * within the same 1e-5 — the weights are exact, so only the float32 accumulation errs, as for float32 panels —
 * and bit-identical to float32 panels of those widened weights (the widening in registers is exact); the
 * packing read back row by row (rowBf16) gives every word.
 */
import fc from 'fast-check';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { relaxedSimd, SimdGemm, wasmPath, type Bf16Panels } from '../lib/simd/gemm.js';
import { simdLinearNll } from '../lib/simd/nll.js';
import { simdMultistep } from '../lib/simd/multistep.js';
import { simdSiluMul } from '../lib/simd/activations.js';
import { simdWindowAttention32 } from '../lib/simd/attention.js';
import { cachedAttention } from '../lib/model/hybrid.js';
import { markChanged } from '../lib/weight_registry.js';
import { silu } from '../lib/ref/activations.js';
import { Rng } from '../lib/rng.js';
import { relError, Tensor } from '../lib/tensor.js';
import { tmpFolder } from './tmp.js';

const FMA = relaxedSimd();
/**
 * The float32 window attention (asm/attention.ts attnWindowF32) against the model's float64 loop, per output,
 * relative to max|v|·(1 + max|s|): q, k rounded to float32 and the float32 sums of hd products move a score s by
 * about hd·2⁻²⁴·|s|, which moves a weight by as much relatively; the float32 exp (3 ulp) and the sums over ≤ 80
 * keys add a few 2⁻²⁴ of max|v|. Measured worst: see the test's log line (~1e-7).
 */
const ATTN_F32_TOL = 1e-6;
/** x86 Linux says whether the CPU has FMA3 (elsewhere the fusing test is skipped: relaxed SIMD may fuse or not) */
const cpuHasFma = existsSync('/proc/cpuinfo') && /^flags\s*:.*\bfma\b/m.test(readFileSync('/proc/cpuinfo', 'utf8'));
const builds = [
  { build: 'asm/gemm.wasm (baseline)', fma: false },
  { build: 'asm/gemm-fma.wasm (fused multiply-add)', fma: true },
];

const rnd = (r: Rng, n: number) => Float32Array.from({ length: n }, () => r.uniform(-1, 1));
/** n random finite bf16 words: the high halves of float32s of every magnitude in [2⁻⁸, 2⁸), either sign. */
const bf16Words = (r: Rng, n: number) =>
  Uint16Array.from({ length: n }, () => {
    const f = new Float32Array([(r.uniform(-1, 1) < 0 ? -1 : 1) * 2 ** r.uniform(-8, 8)]);
    return new Uint32Array(f.buffer)[0] >>> 16;
  });
/** bf16 words as float32 (exact: the word is the float32's high half), written independently of lib/simd. */
const widenBf16 = (w: Uint16Array) => new Float32Array(Uint32Array.from(w, (v) => v * 65536).buffer);
function ref(
  a: (i: number, k: number) => number,
  b: (k: number, n: number) => number,
  M: number,
  K: number,
  N: number,
): Float64Array {
  const c = new Float64Array(M * N);
  for (let i = 0; i < M; i++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a(i, k) * b(k, n);
      c[i * N + n] = s;
    }
  return c;
}
/** Random x (M×K) and W (N×K) from `seed`, and y = x·Wᵀ in float64. */
function linearCase(
  M: number,
  K: number,
  N: number,
  seed: number,
): { x: Float32Array; w: Float32Array; want: Float64Array } {
  const r = new Rng(seed);
  const x = rnd(r, M * K);
  const w = rnd(r, N * K);
  const want = ref(
    (i, k) => x[i * K + k],
    (k, n) => w[n * K + k],
    M,
    K,
    N,
  );
  return { x, w, want };
}
const shape = fc.record({
  M: fc.oneof(fc.integer({ min: 1, max: 37 }), fc.integer({ min: 60, max: 75 })), // windows of ≤ 64 rows (MC), and larger products
  K: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 250, max: 530 })),
  N: fc.integer({ min: 1, max: 41 }),
  seed: fc.integer({ min: 0, max: 1e6 }),
});

describe.each(builds)('SIMD matrix products = float64 reference: $build', ({ fma }) => {
  if (fma && !FMA) {
    it.skip('this engine has no relaxed WebAssembly SIMD: asm/gemm-fma.wasm does not validate', () => {});
    return;
  }
  const one = SimdGemm.load(1, fma);
  const two = SimdGemm.load(2, fma);
  afterAll(() => {
    one.close();
    two.close();
  });
  it('linear y = x·Wᵀ, 1 and 2 threads bit-identical; W packed once and reused (numRuns 40)', () => {
    fc.assert(
      fc.property(shape, ({ M, K, N, seed }) => {
        const { x, w, want } = linearCase(M, K, N, seed);
        const got = one.linear(x, M, K, w, N);
        expect(relError(got, want)).toBeLessThanOrEqual(1e-5);
        expect(Array.from(two.linear(x, M, K, w, N))).toEqual(Array.from(got));
        const again = one.linear(x, M, K, w, N); // from the resident packed copy
        expect(Array.from(again)).toEqual(Array.from(got));
      }),
      { numRuns: 40 },
    );
  });
  it('the one-row path of decode and verify (M = 1–3: the few-row kernels) on odd K and N, across the 256 K block and the 32-column groups (numRuns 30)', () => {
    const odd = (min: number, max: number) => fc.integer({ min, max }).map((v) => 2 * v + 1);
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3 }),
        odd(0, 300),
        odd(0, 100),
        fc.integer({ min: 0, max: 1e6 }),
        (M, K, N, seed) => {
          const { x, w, want } = linearCase(M, K, N, seed);
          const got = one.linear(x, M, K, w, N);
          // every element within float32 summation's bound γ_K·Σ_k |x_ik w_jk| (γ_K = K·u/(1 − K·u), u = 2⁻²⁴), in
          // any summation order — a row's relative error is not bounded when N is small: fast-check found M = 3,
          // K = 517, N = 1 at 1.8e-5 (one dot product of 517 terms whose sum cancels to a fraction of Σ|x·w|)
          const gamma = (K * 2 ** -24) / (1 - K * 2 ** -24);
          for (let i = 0; i < M; i++)
            for (let j = 0; j < N; j++) {
              let scale = 0;
              for (let k = 0; k < K; k++) scale += Math.abs(x[i * K + k] * w[j * K + k]);
              expect(Math.abs(got[i * N + j] - want[i * N + j]), `[${i}, ${j}]`).toBeLessThanOrEqual(gamma * scale);
            }
        },
      ),
      { numRuns: 30 },
    );
  });
  it('bf16 panels: y = x·Wᵀ on random shapes (M = 1–3 decode/verify rows, up to 75; ragged N and K) = the float64 product of the bf16 weights, bit-identical to float32 panels of them, 1 and 2 threads; every row read back (numRuns 40)', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.integer({ min: 1, max: 3 }),
          shape.map((s) => s.M),
        ),
        fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 250, max: 530 })),
        fc.oneof(fc.integer({ min: 1, max: 41 }), fc.integer({ min: 60, max: 100 })),
        fc.integer({ min: 0, max: 1e6 }),
        (M, K, N, seed) => {
          const r = new Rng(seed);
          const x = rnd(r, M * K);
          const words = bf16Words(r, N * K); // (N, K)
          const wide = widenBf16(words); // (N, K), exact
          const want = ref(
            (i, k) => x[i * K + k],
            (k, n) => wide[n * K + k],
            M,
            K,
            N,
          );
          const pack = (g: SimdGemm) => g.packBf16(N, K, (b) => b.set(new Uint8Array(words.buffer)));
          const p1 = pack(one);
          const got = one.linear(x, M, K, p1, N);
          expect(relError(got, want)).toBeLessThanOrEqual(1e-5);
          expect(Array.from(got)).toEqual(Array.from(one.linear(x, M, K, wide, N, false)));
          expect(Array.from(two.linear(x, M, K, pack(two), N))).toEqual(Array.from(got));
          const row = new Float32Array(K);
          for (let n = 0; n < N; n++)
            expect(Array.from(one.rowBf16(p1, n, row))).toEqual(Array.from(wide.subarray(n * K, (n + 1) * K)));
        },
      ),
      { numRuns: 40 },
    );
    one.releaseResident();
    two.releaseResident();
  });
  it('matmul c = a·b and matmulTN c = aᵀ·b (the dW of a backward) (numRuns 30)', () => {
    fc.assert(
      fc.property(shape, ({ M, K, N, seed }) => {
        const r = new Rng(seed);
        const a = rnd(r, M * K);
        const b = rnd(r, K * N);
        expect(
          relError(
            one.matmul(a, M, K, b, N),
            ref(
              (i, k) => a[i * K + k],
              (k, n) => b[k * N + n],
              M,
              K,
              N,
            ),
          ),
        ).toBeLessThanOrEqual(1e-5);
        const at = rnd(r, K * M); // K×M, transposed on the way in
        expect(
          relError(
            two.matmulTN(at, K, M, b, N),
            ref(
              (i, k) => at[k * M + i],
              (k, n) => b[k * N + n],
              M,
              K,
              N,
            ),
          ),
        ).toBeLessThanOrEqual(1e-5);
      }),
      { numRuns: 30 },
    );
  });
  it('large products split over threads (above MIN_PARALLEL_FLOP) are bit-identical to one thread', () => {
    const r = new Rng(3);
    const [M, K, N] = [130, 300, 203];
    const x = rnd(r, M * K);
    const w = rnd(r, N * K);
    expect(Array.from(two.linear(x, M, K, w, N, false))).toEqual(Array.from(one.linear(x, M, K, w, N, false)));
  });
  it('few-row products of large weights (at least MIN_PARALLEL_BYTES, below MIN_PARALLEL_FLOP) run back to back on 2 and 3 threads, float32 and bf16 panels: bit-identical to one thread', () => {
    const r = new Rng(31);
    const three = SimdGemm.load(3, fma);
    // [M, K, N]: decode and verify rows; ragged N (a last group part-filled), one 32-column group, one below the size
    const shapes = [
      [1, 512, 1000],
      [2, 512, 300],
      [1, 128, 2048],
      [3, 200, 700],
      [1, 4100, 32],
      [1, 64, 96],
    ] as const;
    const cases = shapes.map(([M, K, N]) => {
      const x = rnd(r, M * K);
      const words = bf16Words(r, N * K);
      const w = widenBf16(words);
      const want = one.linear(x, M, K, w, N, false);
      const panels = [two, three].map((g) => g.packBf16(N, K, (b) => b.set(new Uint8Array(words.buffer))));
      return { M, K, N, x, w, want, panels };
    });
    for (let round = 0; round < 5; round++)
      for (const c of cases)
        for (const [i, g] of [two, three].entries()) {
          expect(Array.from(g.linear(c.x, c.M, c.K, c.w, c.N))).toEqual(Array.from(c.want));
          expect(Array.from(g.linear(c.x, c.M, c.K, c.panels[i], c.N))).toEqual(Array.from(c.want));
        }
    three.close();
  });
  it("linearMany (the fused decode step's q/k/v, gate/up, Mamba-1's products of x): several weights of one x in one hand-off, float32, float64 and bf16 mixed, 1–3 rows, = each product alone on 1, 2 and 3 threads, bit for bit; a weight changed in place is packed anew; more than 8 weights refused", () => {
    const r = new Rng(8);
    const K = 300;
    const Ns = [64, 32, 96, 45, 1200]; // whole 32-column groups, a ragged one, a large one (≥ MIN_PARALLEL_BYTES)
    const three = SimdGemm.load(3, fma);
    for (const g of [one, two, three])
      for (const M of [1, 2, 3]) {
        const x = rnd(r, M * K);
        const ws = Ns.map((N, i) =>
          i === 2
            ? g.packBf16(N, K, (b) => b.set(new Uint8Array(bf16Words(r, N * K).buffer)))
            : i % 2
              ? Float64Array.from(rnd(r, N * K), (v) => v / 3)
              : rnd(r, N * K),
        );
        const parts = ws.map((w, i) => ({ w, N: Ns[i] }));
        const alone = () => ws.flatMap((w, i) => Array.from(g.linear(x, M, K, w, Ns[i])));
        const want = alone();
        const out = new Float32Array(M * Ns.reduce((a, b) => a + b, 0));
        expect(Array.from(g.linearMany(x, M, K, parts, out))).toEqual(want);
        // a training step changes a weight in place: told (markChanged, then forget as the shared instances do), the
        // next call packs it anew
        const f = ws[0] as Float32Array;
        f[7] = 0.25;
        markChanged(f);
        g.forget(f);
        expect(Array.from(g.linearMany(x, M, K, parts, out))).toEqual(alone());
      }
    const nine = Array.from({ length: 9 }, () => ({ w: rnd(r, 32 * K), N: 32 }));
    expect(() => one.linearMany(rnd(r, K), 1, K, nine, new Float32Array(9 * 32))).toThrow(/1 to 8 weights/);
    three.close();
  });
  it("gatedMlp (mil eval's MLP, the intermediates left in the module's memory) = linear, simdSiluMul and linear one after another, bit for bit: float32, float64 and bf16 weights, ragged sizes, 1, 2 and 3 threads", () => {
    const r = new Rng(28);
    const three = SimdGemm.load(3, fma);
    for (const g of [one, two, three])
      for (const [M, K, F, O] of [
        [1, 40, 96, 40],
        [5, 33, 75, 17],
        [64, 128, 384, 128],
      ] as const) {
        const x = Float64Array.from(rnd(r, M * K), (v) => v * 3);
        const gate = rnd(r, F * K);
        const up = g.packBf16(F, K, (b) => b.set(new Uint8Array(bf16Words(r, F * K).buffer)));
        const down = Float64Array.from(rnd(r, O * F), (v) => v / 2);
        const a = simdSiluMul(g, g.linear(x, M, K, gate, F), g.linear(x, M, K, up, F));
        const want = Array.from(g.linear(a, M, F, down, O));
        expect(Array.from(g.gatedMlp(x, M, K, { gate, up, down }, F, O))).toEqual(want);
        const out = new Float32Array(M * O);
        expect(g.gatedMlp(x, M, K, { gate, up, down }, F, O, out)).toBe(out);
        expect(Array.from(out)).toEqual(want);
      }
    expect(() => one.gatedMlp(rnd(r, 7), 2, 4, { gate: rnd(r, 8), up: rnd(r, 8), down: rnd(r, 8) }, 2, 4)).toThrow(
      /argument 'gatedMlp'/,
    );
    three.close();
  });
  it('a different weight array of the same shape is packed anew; float64 inputs are rounded once', () => {
    const r = new Rng(4);
    const x = rnd(r, 3 * 5);
    const w1 = rnd(r, 9 * 5);
    const w2 = rnd(r, 9 * 5);
    const y1 = one.linear(x, 3, 5, w1, 9);
    const y2 = one.linear(x, 3, 5, w2, 9);
    expect(
      relError(
        y2,
        ref(
          (i, k) => x[i * 5 + k],
          (k, n) => w2[n * 5 + k],
          3,
          5,
          9,
        ),
      ),
    ).toBeLessThanOrEqual(1e-6);
    expect(Array.from(y1)).not.toEqual(Array.from(y2));
    expect(Array.from(one.linear(Float64Array.from(x), 3, 5, Float64Array.from(w1), 9, false))).toEqual(Array.from(y1));
    expect(() => one.linear(x, 3, 4, w1, 9)).toThrow(/argument 'linear': expected x \(3×4\) and W \(9×4\)/);
    const out = new Float32Array(27);
    expect(one.linear(x, 3, 5, w1, 9, true, out)).toBe(out); // written into the caller's buffer
    expect(Array.from(out)).toEqual(Array.from(y1));
    expect(() => one.linear(x, 3, 5, w1, 9, true, new Float32Array(26))).toThrow(
      /argument 'out': expected 27 floats \(3×9\), got 26/,
    );
  });
  it('the decode path (fewer than 4 rows: a row against four panels at once) on exact multiples of 32 columns and with a ragged tail', () => {
    const r = new Rng(8);
    for (const [M, K, N] of [
      [1, 300, 64],
      [3, 17, 96],
      [2, 5, 75],
      [1, 1, 32],
    ] as const) {
      const x = rnd(r, M * K);
      const w = rnd(r, N * K);
      expect(
        relError(
          two.linear(x, M, K, w, N, false),
          ref(
            (i, k) => x[i * K + k],
            (k, n) => w[n * K + k],
            M,
            K,
            N,
          ),
        ),
        `${M}×${K}×${N}`,
      ).toBeLessThanOrEqual(1e-5);
    }
  });
  it('a verify window of any size (1–3 rows: the few-rows kernels; 4 and more: 4×8 blocks, then 1–3 rows by the few-rows kernels; ragged panels) gives each row bit for bit what it gives alone (numRuns 60)', () => {
    // every kernel makes, per column, the additions of the one-row kernel in the same order — what keeps a
    // speculative verify window's logits equal to plain decoding's; K crosses the 256-wide block
    // (accumulation into the output) and N has ragged panels
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 14 }),
        fc.integer({ min: 1, max: 600 }),
        fc.integer({ min: 1, max: 80 }),
        fc.integer(),
        (M, K, N, seed) => {
          const r = new Rng(seed);
          const x = rnd(r, M * K);
          const w = rnd(r, N * K);
          const together = two.linear(x, M, K, w, N, false);
          for (let i = 0; i < M; i++)
            expect(Array.from(together.subarray(i * N, (i + 1) * N)), `row ${i}`).toEqual(
              Array.from(two.linear(x.subarray(i * K, (i + 1) * K), 1, K, w, N, false)),
            );
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('the SIMD module', () => {
  it('the multiply-add peak probe (peakMadd) computes all 12 chains of 4 lanes, in both builds: n rounds of a ← c + a·m from a = 1…12', () => {
    for (const fma of FMA ? [false, true] : [false]) {
      const g = SimdGemm.load(1, fma);
      // m = 1, c = 1: each chain ends at a + n, so 4 lanes · (Σ 1…12 + 12·n)
      expect(g.kernels.peakMadd(10, 1, 1)).toBe(4 * (78 + 12 * 10));
      // m = 0.5, c = 1: every chain converges to 2 (exactly, in float32)
      expect(g.kernels.peakMadd(200, 0.5, 1)).toBe(96);
      const p = g.maddPeak(100_000, 2);
      expect(p.wall).toBeGreaterThan(0);
      g.close();
    }
  });
  it("attention's exp (asm/attention.ts, the softmax's: fdlibm as V8 has it) has Math.exp's bits on any double, in both builds: its SIMD path (pairs in [−700, 0]) and its scalar one (numRuns 200)", () => {
    // arguments where fdlibm changes case: |x| near 2⁻²⁸, 0.5·ln2, 1.5·ln2 (its high-word tests), −700 (the SIMD
    // path's edge), −708.4 (subnormal results), −745.1 (underflow to 0), and the special values
    const f = new Float64Array(1);
    const u = new Uint32Array(f.buffer);
    const word = (hi: number, lo: number) => ((u[1] = hi), (u[0] = lo), f[0]);
    const edges = [0x3e300000, 0x3fd62e42, 0x3fd62e43, 0x3ff0a2b1, 0x3ff0a2b2].flatMap((h) =>
      [0, 1, 0x7fffffff, 0xffffffff].flatMap((l) => [word(h, l), -word(h, l)]),
    );
    const special = [
      0,
      -0,
      1,
      -1,
      NaN,
      Infinity,
      -Infinity,
      -700,
      -700.0000000001,
      -708.4,
      -745.1,
      -746,
      709.8,
      5e-324,
    ];
    // uniform in [lo, 0] (fc.double draws by bit pattern: mostly magnitudes near 0), plus any double
    const uniform = (lo: number, hi = 0) =>
      fc.integer({ min: 0, max: 2 ** 40 }).map((i) => hi + ((lo - hi) * i) / 2 ** 40);
    const arb = fc.oneof(
      uniform(-0.4),
      uniform(-1.2),
      uniform(-30),
      uniform(-710),
      uniform(-746, -690), // the SIMD path's edge, subnormal results, underflow
      fc.double(),
      fc.constantFrom(...edges, ...special),
    );
    for (const fma of FMA ? [false, true] : [false]) {
      const g = SimdGemm.load(1, fma);
      fc.assert(
        fc.property(fc.array(arb, { minLength: 1, maxLength: 67 }), (xs) => {
          const p = g.scratchStart();
          g.ensure(p + xs.length * 16 + 64);
          const x = new Float64Array(g.buffer, p, xs.length);
          const out = new Float64Array(g.buffer, p + xs.length * 8 + 8 * (xs.length % 2), xs.length);
          x.set(xs);
          g.kernels.expRows(x.byteOffset, xs.length, out.byteOffset);
          for (let j = 0; j < xs.length; j++) if (!Object.is(out[j], Math.exp(xs[j]))) return false;
          return true;
        }),
        { numRuns: 200 },
      );
      g.close();
    }
  });
  it('releaseResident forgets packed weights (the next call packs again, correctly); readSum reads a sum and a bandwidth', () => {
    const g = SimdGemm.load(1);
    const r = new Rng(9);
    const x = rnd(r, 2 * 7);
    const w = rnd(r, 5 * 7);
    const y = g.linear(x, 2, 7, w, 5);
    expect(g.residentBytes).toBeGreaterThan(0);
    g.releaseResident();
    expect(g.residentBytes).toBe(0);
    w[0] = 7; // changed while not resident: the next call must see it
    expect(
      relError(
        g.linear(x, 2, 7, w, 5),
        ref(
          (i, k) => x[i * 7 + k],
          (k, n) => w[n * 7 + k],
          2,
          7,
          5,
        ),
      ),
    ).toBeLessThanOrEqual(1e-6);
    expect(Array.from(g.linear(x, 2, 7, w, 5))).not.toEqual(Array.from(y));
    expect(g.readBandwidth(4, 1)).toBeGreaterThan(1e8); // throws if the SIMD sum of 2^20 ones is wrong
    for (const n of [1, 31, 32, 1000, 1037]) {
      const a = Float32Array.from(rnd(r, n), (v) => v + 0.5);
      expect(Math.abs(g.sum(a) - a.reduce((s, v) => s + v, 0)), `n = ${n}`).toBeLessThan(1e-4 * n);
    }
    g.close();
  });
  it('a weight changed and re-packed at every step (a training loop) reuses its memory: resident bytes stay constant, results follow the changes', () => {
    const g = SimdGemm.load(1);
    const r = new Rng(10);
    const x = rnd(r, 3 * 40);
    const ws = [rnd(r, 24 * 40), rnd(r, 8 * 40), rnd(r, 24 * 40)];
    const shapes = [24, 8, 24];
    ws.forEach((w, i) => g.linear(x, 3, 40, w, shapes[i]));
    const bytes = g.residentBytes;
    for (let step = 0; step < 50; step++) {
      ws.forEach((w, i) => {
        w[step % w.length] += 1;
        g.forget(w);
        const y = g.linear(x, 3, 40, w, shapes[i]);
        expect(
          relError(
            y,
            ref(
              (a, k) => x[a * 40 + k],
              (k, n) => w[n * 40 + k],
              3,
              40,
              shapes[i],
            ),
          ),
        ).toBeLessThanOrEqual(1e-5);
      });
      expect(g.residentBytes, `step ${step}`).toBe(bytes);
    }
    g.close();
  });
  it("arrays are placed above the module's static data: MultiStep (whose exp/log1p read tables there) gives the same bits before and after megabytes of products and packed weights", () => {
    const g = SimdGemm.load(1);
    const r = new Rng(5);
    const [dim, N, s] = [6, 8, 3];
    const f = (n: number) => rnd(r, n);
    const args = {
      hI: f(dim * N),
      xCache: f(dim),
      deltaCache: f(dim),
      BCache: f(N),
      x: f(s * dim),
      delta: f(s * dim),
      B: f(s * N),
      C: f(s * N),
      z: f(s * dim),
      A: Float32Array.from({ length: dim * N }, (_, i) => -1 - (i % N) / N),
      D: f(dim),
      deltaBias: f(dim),
      deltaSoftplus: true,
    };
    const sh = { batch: 1, dim, N, K1: 1, r: 1, s, G: 1 };
    const before = simdMultistep(g, args, sh);
    g.linear(f(8 * 512), 8, 512, f(1000 * 512), 1000, true); // ~2 MB packed and placed from the bottom of the free memory up
    g.matmul(f(64 * 256), 64, 256, f(256 * 300), 300);
    const after = simdMultistep(g, args, sh);
    for (const k of ['out', 'hJ', 'hK'] as const)
      expect(Buffer.compare(Buffer.from(after[k].buffer), Buffer.from(before[k].buffer)), k).toBe(0);
    g.close();
  });

  it('the SIMD SiLU (asm/activations.ts): within 3 float32 ulp of a / (1 + Math.exp(−a)) (2 smallest subnormals where the value is below the normal range) on a dense grid over [−120, 120], at random points and at extremes; times b; any length (the pad lanes never show); an element gives the same bits alone or among others', () => {
    const g = SimdGemm.load(1);
    const grid = Float32Array.from({ length: 480_001 }, (_, i) => (i - 240_000) / 2000);
    const r = new Rng(12);
    const pts = Float32Array.from({ length: 20_000 }, () => r.normal(0, 4));
    const extremes = Float32Array.of(-3e38, -1e6, -200, -110.5, -109.5, -108.5, -87.5, 1e-40, -1e-40, 0, -0, 1e6, 3e38);
    for (const a of [grid, pts, extremes]) {
      const y = simdSiluMul(g, a);
      let worst = 0;
      for (let i = 0; i < a.length; i++) {
        const want = silu(a[i]); // the float64 reference (lib/ref/activations.ts)
        const ulp = Math.abs(want) >= 2 ** -126 ? 3 * 2 ** (Math.floor(Math.log2(Math.abs(want))) - 23) : 2 ** -148;
        worst = Math.max(worst, Math.abs(y[i] - want) / ulp);
      }
      expect(worst, `${a.length} points: error / bound`).toBeLessThanOrEqual(1);
    }
    const a = rnd(r, 37);
    const b = rnd(r, 37);
    const ab = simdSiluMul(g, a, b);
    expect(ab.length).toBe(37);
    for (let i = 0; i < 37; i++) {
      expect(ab[i]).toBe(Math.fround(simdSiluMul(g, a.subarray(i, i + 1))[0] * b[i]));
      expect(simdSiluMul(g, a.subarray(i, i + 1), b.subarray(i, i + 1))[0]).toBe(ab[i]);
    }
    const out = new Float32Array(37);
    expect(simdSiluMul(g, a, b, out)).toBe(out);
    expect(() => simdSiluMul(g, a, b.subarray(1))).toThrow(/argument 'b': expected 37 values \(as many as a\), got 36/);
    g.close();
  });

  it('the next-token NLL on the head (lib/simd/nll.ts, asm/activations.ts rowLse): lse(z_r) − z_r[t_r] of the logits z = x·Wᵀ, against float64 on the same float32 logits within 2e-6 (the float32 exp: 3 ulp; z − m rounded to float32: |z − m|·2⁻²⁴ for the terms that count), on random shapes (V ragged mod 4, logits spread up to ±60), float32 and bf16 heads; bad targets refused (numRuns 30)', () => {
    const g = SimdGemm.load(1);
    fc.assert(
      fc.property(
        fc.record({
          rows: fc.integer({ min: 1, max: 70 }),
          d: fc.integer({ min: 1, max: 40 }),
          V: fc.integer({ min: 1, max: 300 }),
          spread: fc.double({ min: 0.1, max: 60, noNaN: true }),
          seed: fc.integer({ min: 0, max: 1e6 }),
        }),
        ({ rows, d, V, spread, seed }) => {
          const r = new Rng(seed);
          const x = Float32Array.from({ length: rows * d }, () => r.uniform(-1, 1) * Math.sqrt(spread));
          const w = Float32Array.from({ length: V * d }, () => r.uniform(-1, 1) * Math.sqrt(spread / d));
          const words = bf16Words(r, V * d);
          const targets = Array.from({ length: rows }, () => r.int(0, V - 1));
          const heads = [
            { head: w as Float32Array | Bf16Panels, wide: w },
            {
              head: g.packBf16(V, d, (b) => new Uint16Array(b.buffer, b.byteOffset, V * d).set(words)),
              wide: widenBf16(words),
            },
          ];
          for (const { head, wide } of heads) {
            const z = g.linear(x, rows, d, wide, V, false); // the same float32 logits, copied out
            const nll = simdLinearNll(g, x, rows, d, head, V, targets, false);
            for (let i = 0; i < rows; i++) {
              let m = -Infinity;
              for (let v = 0; v < V; v++) m = Math.max(m, z[i * V + v]);
              let s = 0;
              for (let v = 0; v < V; v++) s += Math.exp(z[i * V + v] - m);
              expect(Math.abs(nll[i] - (m + Math.log(s) - z[i * V + targets[i]]))).toBeLessThanOrEqual(2e-6);
            }
          }
          g.releaseResident();
        },
      ),
      { numRuns: 30 },
    );
    const x = new Float32Array(6);
    expect(() => simdLinearNll(g, x, 2, 3, new Float32Array(15), 5, [0, 5], false)).toThrow(
      /argument 'targets\[1\]': expected a token id in \[0, 5\), got 5/,
    );
    expect(() => simdLinearNll(g, x, 2, 3, new Float32Array(15), 5, [0], false)).toThrow(
      /argument 'targets': expected 2 token ids \(one per row\), got 1/,
    );
    g.close();
  });

  it('setSharedThreads (mil train --threads) sets the thread count of the process-wide instances before their first use, and refuses another count after', () => {
    expect(() => SimdGemm.setSharedThreads(0)).toThrow(/argument 'threads': expected an integer in \[1, 64\], got 0/);
    SimdGemm.setSharedThreads(1);
    expect(SimdGemm.sharedExact().threads).toBe(1);
    expect(SimdGemm.shared().threads).toBe(1);
    SimdGemm.setSharedThreads(1); // the same count again: nothing to change
    expect(() => SimdGemm.setSharedThreads(2)).toThrow(
      /argument 'threads': expected 1 \(the shared SIMD instances already run on that many\), got 2/,
    );
  });

  it(`a window's attention in float32 (asm/attention.ts attnWindowF32, mil eval's) = the model's float64 loop within ATTN_F32_TOL = ${ATTN_F32_TOL}·max|v|·(1 + max|s|) per output, in both builds: random shapes (batch 1–2, 1–3 kv heads of 1–3 query heads, windows of 1–40 after 0–40 cached positions, head sizes 1–70, spare cache capacity), scores spread up to ±300 (exp overflows float32 past 88: the max subtracted first matters); rows (b, l, H·hd) out; a score past float32's range gives undefined (numRuns 60)`, () => {
    let worst = 0;
    for (const fma of FMA ? [false, true] : [false]) {
      const g = SimdGemm.load(1, fma);
      fc.assert(
        fc.property(
          fc.record({
            batch: fc.integer({ min: 1, max: 2 }),
            Hkv: fc.integer({ min: 1, max: 3 }),
            groups: fc.integer({ min: 1, max: 3 }),
            L: fc.integer({ min: 1, max: 40 }),
            past: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 40 })),
            spare: fc.integer({ min: 0, max: 3 }),
            hd: fc.oneof(fc.integer({ min: 1, max: 9 }), fc.constantFrom(16, 32, 64), fc.integer({ min: 10, max: 70 })),
            spread: fc.oneof(
              fc.double({ min: 0.1, max: 60, noNaN: true }),
              fc.double({ min: 60, max: 300, noNaN: true }),
            ), // past 88: exp(s) overflows float32 unless s − max
            seed: fc.integer({ min: 0, max: 1e6 }),
          }),
          ({ batch, Hkv, groups, L, past, spare, hd, spread, seed }) => {
            const r = new Rng(seed);
            const H = Hkv * groups;
            const T = past + L;
            const cap = T + spare;
            // |q·k|/√hd up to `spread`: q and k uniform in ±a with a²·√hd = spread
            const a = Math.sqrt(spread / Math.sqrt(hd));
            const q = Float64Array.from({ length: batch * H * L * hd }, () => r.uniform(-a, a)); // (b, H, l, hd)
            const cache = {
              kind: 'attention' as const,
              k: Float64Array.from({ length: batch * Hkv * cap * hd }, () => r.uniform(-a, a)), // (b, H_kv, cap, hd)
              v: Float64Array.from({ length: batch * Hkv * cap * hd }, () => r.uniform(-2, 2)), // (b, H_kv, cap, hd)
              cap,
            };
            const sh = { batch, H, L, hd, Hkv, cap, T };
            const rows = simdWindowAttention32(g, q, sh, cache.k, cache.v); // (b, l, H·hd)
            const want = cachedAttention(new Tensor(q, [batch, H, L, hd]), cache, T, Hkv).data; // (b, H, l, hd)
            expect(rows?.length).toBe(want.length);
            if (!rows) return;
            const vmax = cache.v.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
            const smax = spread; // every |s| ≤ a²·hd/√hd
            for (let b = 0; b < batch; b++)
              for (let h = 0; h < H; h++)
                for (let t = 0; t < L; t++)
                  for (let i = 0; i < hd; i++) {
                    const got = rows[((b * L + t) * H + h) * hd + i];
                    const err = Math.abs(got - want[((b * H + h) * L + t) * hd + i]) / (vmax * (1 + smax));
                    worst = Math.max(worst, err);
                    if (!(err <= ATTN_F32_TOL))
                      expect(err, `b ${b} h ${h} t ${t} i ${i}: error / (max|v|·(1 + max|s|))`).toBeLessThanOrEqual(
                        ATTN_F32_TOL,
                      );
                  }
          },
        ),
        { numRuns: 60 },
      );
      // a score past float32's range (q·k ≈ 1e40): undefined, the caller's float64 path runs instead
      const big = { batch: 1, H: 1, L: 2, hd: 4, Hkv: 1, cap: 2, T: 2 };
      const huge = new Float64Array(8).fill(1e20);
      expect(simdWindowAttention32(g, huge, big, huge, new Float64Array(8))).toBeUndefined();
      g.close();
    }
    console.log(`float32 window attention: worst error / (max|v|·(1 + max|s|)) = ${worst.toExponential(2)}`);
  });
  it('asm/gemm.wasm and asm/gemm-fma.wasm are exactly what asm/gemm.ts builds to (asm/build.sh)', () => {
    const out = tmpFolder('asm');
    execFileSync('bash', [join(import.meta.dirname, '..', 'asm', 'build.sh'), out], { stdio: 'pipe' });
    for (const fma of [false, true])
      expect(
        Buffer.compare(readFileSync(join(out, basename(wasmPath(fma)))), readFileSync(wasmPath(fma))),
        wasmPath(fma),
      ).toBe(0);
  });
  it.skipIf(!FMA || !cpuHasFma)(
    'on a CPU with FMA the FMA build fuses (a·a − fl(a·a) survives) and the baseline build does not (gives 0)',
    () => {
      // x·Wᵀ with x = [1, a], W = [−fl(a²), a]: the sum runs k = 0, 1, so the second step is a·a + (−fl(a²))
      const a = 1 + 2 ** -12;
      const fl = Math.fround(a * a);
      const x = Float32Array.of(1, a);
      const w = Float32Array.of(-fl, a);
      const fused = SimdGemm.load(1, true);
      const plain = SimdGemm.load(1, false);
      expect(fused.linear(x, 1, 2, w, 1)[0]).toBe(a * a - fl); // exact: a² needs 26 bits
      expect(plain.linear(x, 1, 2, w, 1)[0]).toBe(0);
      expect(a * a - fl).not.toBe(0);
    },
  );
});
