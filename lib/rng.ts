/**
 * Seeded random generator: every random number in this project comes from here,
 * so the same seed gives the same output.
 *
 * Generator: xoshiro128** (Blackman & Vigna) seeded through splitmix32.
 * uniform(lo, hi) = lo + (hi − lo)·u with u ∈ [0, 1) built from 53 random bits;
 * normal(μ, σ) by Box–Muller on two uniforms.
 */
import { ArgumentError } from './errors.js';

export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  private spare: number | null = null;

  /**
   * `seed`: any safe integer (|seed| < 2^53). Seeds in [−2^31, 2^32) keep the stream they always had; the
   * high bits of larger seeds are mixed in, so 2^32 + 7 and 7 give different streams.
   */
  constructor(readonly seed: number) {
    if (!Number.isSafeInteger(seed)) throw new ArgumentError('seed', 'a safe integer (|seed| < 2^53)', seed);
    const small = seed >= -2147483648 && seed < 4294967296;
    const hi = Math.floor(seed / 4294967296); // |hi| < 2^21
    let x = ((seed >>> 0) ^ 0x9e3779b9 ^ (small ? 0 : Math.imul((hi >>> 0) ^ 0x5bd1e995, 0x85ebca6b) || 1)) >>> 0;
    const next = (): number => {
      // splitmix32
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
  }

  /** Next 32 random bits as an unsigned integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 = (this.s2 ^ this.s0) >>> 0;
    this.s3 = (this.s3 ^ this.s1) >>> 0;
    this.s1 = (this.s1 ^ this.s2) >>> 0;
    this.s0 = (this.s0 ^ this.s3) >>> 0;
    this.s2 = (this.s2 ^ t) >>> 0;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform double in [0, 1) with 53 random bits. */
  next(): number {
    const hi = this.nextU32() >>> 5; // 27 bits
    const lo = this.nextU32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** The generator's whole state (for training checkpoints): restore it with `Rng.fromState`. */
  state(): { seed: number; s: [number, number, number, number]; spare: number | null } {
    return { seed: this.seed, s: [this.s0, this.s1, this.s2, this.s3], spare: this.spare };
  }

  /** A generator that continues exactly where the one that produced `st` was. */
  static fromState(st: { seed: number; s: readonly number[]; spare: number | null }): Rng {
    if (!Array.isArray(st.s) || st.s.length !== 4 || !st.s.every((v) => Number.isInteger(v) && v >= 0 && v < 2 ** 32))
      throw new ArgumentError('rng state', 'four unsigned 32-bit integers', st.s);
    if (st.spare !== null && !Number.isFinite(st.spare))
      throw new ArgumentError('rng spare', 'null or a finite number', st.spare);
    const r = new Rng(st.seed);
    [r.s0, r.s1, r.s2, r.s3] = st.s as [number, number, number, number];
    r.spare = st.spare;
    return r;
  }

  /** Uniform in [lo, hi). */
  uniform(lo = 0, hi = 1): number {
    return lo + (hi - lo) * this.next();
  }

  /** Integer uniform in [lo, hi] (inclusive). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  /** Normal(mean, std) by Box–Muller. */
  normal(mean = 0, std = 1): number {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return mean + std * v;
    }
    let u = 0;
    while (u === 0) u = this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return mean + std * r * Math.cos(2 * Math.PI * v);
  }

  /** Fill an array with uniform [lo, hi) values. */
  fillUniform<T extends Float32Array | Float64Array>(a: T, lo = 0, hi = 1): T {
    for (let i = 0; i < a.length; i++) a[i] = this.uniform(lo, hi);
    return a;
  }

  /** Fill an array with Normal(mean, std) values. */
  fillNormal<T extends Float32Array | Float64Array>(a: T, mean = 0, std = 1): T {
    for (let i = 0; i < a.length; i++) a[i] = this.normal(mean, std);
    return a;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
