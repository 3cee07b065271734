/**
 * Tensor layer: dense float32/float64 arrays with a shape, stored row-major
 * (the last axis varies fastest), as in PyTorch's contiguous tensors.
 *
 * Index (i_0, …, i_{r-1}) lives at flat offset Σ_a i_a·stride_a with
 * stride_{r-1} = 1 and stride_a = stride_{a+1}·shape_{a+1}.
 *
 * Every op checks its arguments and throws a typed error naming the tensor.
 */
import { ArgumentError, DTypeError, NonFiniteError, ShapeError } from './errors.js';
import type { Rng } from './rng.js';
import { lookup } from './checked.js';

export type DType = 'float32' | 'float64';
export type FloatArray = Float32Array | Float64Array;

/** Number of elements of a shape (1 for a scalar shape []). */
export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major strides of a shape. */
function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let a = shape.length - 1; a >= 0; a--) {
    s[a] = acc;
    acc *= shape[a];
  }
  return s;
}

function allocate(dtype: DType, n: number): FloatArray {
  return dtype === 'float64' ? new Float64Array(n) : new Float32Array(n);
}

function checkShapeValid(name: string, shape: readonly number[]): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new ShapeError(name, 'non-negative integer dimensions', shape);
  }
}

export class Tensor {
  readonly shape: readonly number[];
  readonly data: FloatArray;
  readonly name: string;

  constructor(data: FloatArray, shape: readonly number[], name = 'tensor') {
    checkShapeValid(name, shape);
    if (data.length !== sizeOf(shape)) {
      throw new ShapeError(
        name,
        `[${shape.join(', ')}] (${sizeOf(shape)} elements)`,
        [data.length],
        'data length does not match shape',
      );
    }
    this.data = data;
    this.shape = Object.freeze([...shape]);
    this.name = name;
  }

  get dtype(): DType {
    return this.data instanceof Float64Array ? 'float64' : 'float32';
  }
  get size(): number {
    return this.data.length;
  }
  get rank(): number {
    return this.shape.length;
  }
  /**
   * Whether the values live outside `data` (a weight held as bf16 panels in the wasm-simd module,
   * lib/simd/packed_weight.ts, checked finite when it was packed): shape checks skip the finiteness scan.
   */
  get packed(): boolean {
    return false;
  }
  get strides(): number[] {
    return stridesOf(this.shape);
  }

  static zeros(shape: readonly number[], dtype: DType = 'float64', name?: string): Tensor {
    return new Tensor(allocate(dtype, sizeOf(shape)), shape, name);
  }
  static full(shape: readonly number[], value: number, dtype: DType = 'float64', name?: string): Tensor {
    return new Tensor(allocate(dtype, sizeOf(shape)).fill(value), shape, name);
  }
  /** From a flat array of numbers (copied) or a typed array (kept). */
  static from(values: ArrayLike<number> | FloatArray, shape: readonly number[], dtype?: DType, name?: string): Tensor {
    const dt = dtype ?? (values instanceof Float32Array ? 'float32' : 'float64');
    let data: FloatArray;
    if ((dt === 'float64' && values instanceof Float64Array) || (dt === 'float32' && values instanceof Float32Array))
      data = values;
    else data = dt === 'float64' ? Float64Array.from(values) : Float32Array.from(values);
    return new Tensor(data, shape, name);
  }
  static uniform(rng: Rng, shape: readonly number[], lo = 0, hi = 1, dtype: DType = 'float64', name?: string): Tensor {
    return new Tensor(rng.fillUniform(allocate(dtype, sizeOf(shape)), lo, hi), shape, name);
  }
  static normal(
    rng: Rng,
    shape: readonly number[],
    mean = 0,
    std = 1,
    dtype: DType = 'float64',
    name?: string,
  ): Tensor {
    return new Tensor(rng.fillNormal(allocate(dtype, sizeOf(shape)), mean, std), shape, name);
  }

  /** Same data, new name (for error messages). */
  named(name: string): Tensor {
    return new Tensor(this.data, this.shape, name);
  }

  /** Flat offset of an index; throws on out-of-range. */
  offset(...idx: number[]): number {
    if (idx.length !== this.rank) throw new ArgumentError(`${this.name} index`, `${this.rank} indices`, idx);
    let off = 0;
    const st = this.strides;
    for (let a = 0; a < idx.length; a++) {
      const i = idx[a];
      if (!Number.isInteger(i) || i < 0 || i >= this.shape[a])
        throw new ArgumentError(`${this.name} index[${a}]`, `integer in [0, ${this.shape[a]})`, i);
      off += i * st[a];
    }
    return off;
  }
  at(...idx: number[]): number {
    return this.data[this.offset(...idx)];
  }

  /** View with a new shape of the same size; one dimension may be -1. */
  reshape(shape: readonly number[]): Tensor {
    const s = [...shape];
    const neg = s.indexOf(-1);
    if (neg >= 0) {
      const rest = sizeOf(s.filter((_, i) => i !== neg));
      if (rest === 0 || this.size % rest !== 0)
        throw new ShapeError(this.name, `reshapeable to [${shape.join(', ')}]`, this.shape);
      s[neg] = this.size / rest;
    }
    if (sizeOf(s) !== this.size)
      throw new ShapeError(this.name, `[${shape.join(', ')}] (${sizeOf(s)} elements) for reshape`, this.shape);
    return new Tensor(this.data, s, this.name);
  }

  /**
   * Copy with the axes permuted: out.shape[a] = in.shape[perm[a]]. Trailing axes the permutation keeps in
   * place are copied as one contiguous run (a (B, L, H, hd) → (B, H, L, hd) head split copies hd values at a
   * time); the rest walk an odometer over the output, its last moving axis in a tight loop.
   */
  transpose(perm?: readonly number[]): Tensor {
    const r = this.rank;
    const p = perm ?? [...Array(r).keys()].reverse();
    if (p.length !== r || [...p].sort((a, b) => a - b).some((v, i) => v !== i))
      throw new ArgumentError('perm', `a permutation of 0..${r - 1}`, p);
    const outShape = p.map((a) => this.shape[a]);
    const out = Tensor.zeros(outShape, this.dtype, this.name);
    if (out.size === 0) return out;
    let kept = r; // axes kept ≥ kept: p[a] = a for every a ≥ kept
    while (kept > 0 && p[kept - 1] === kept - 1) kept--;
    if (kept === 0) {
      out.data.set(this.data);
      return out;
    }
    if (
      kept === r &&
      r >= 2 &&
      p[r - 1] === r - 2 &&
      p[r - 2] === r - 1 &&
      p.slice(0, r - 2).every((a, i) => a === i)
    ) {
      // the last two axes swapped (a batch of matrix transposes): one plain double loop per matrix
      const [rows, cols] = [this.shape[r - 2], this.shape[r - 1]];
      for (let o = 0; o < out.size; o += rows * cols) swapLastTwo(this.data, out.data, o, rows, cols);
      return out;
    }
    const run = sizeOf(this.shape.slice(kept)); // contiguous values copied together
    const inSt = this.strides;
    const srcSt = p.slice(0, kept).map((a) => inSt[a]);
    const last = kept - 1;
    const nLast = outShape[last];
    const stLast = srcSt[last];
    const idx = new Array<number>(last).fill(0);
    const src = this.data;
    const dst = out.data;
    for (let o = 0; o < out.size; o += nLast * run) {
      let base = 0;
      for (let a = 0; a < last; a++) base += idx[a] * srcSt[a];
      if (run === 1) for (let i = 0; i < nLast; i++) dst[o + i] = src[base + i * stLast];
      else
        for (let i = 0; i < nLast; i++) dst.set(src.subarray(base + i * stLast, base + i * stLast + run), o + i * run);
      for (let a = last - 1; a >= 0; a--) {
        if (++idx[a] < outShape[a]) break;
        idx[a] = 0;
      }
    }
    return out;
  }

  /** Copy of the range [start, end) along one axis. */
  slice(axis: number, start: number, end: number): Tensor {
    const ax = axis < 0 ? axis + this.rank : axis;
    if (ax < 0 || ax >= this.rank) throw new ArgumentError('axis', `in [0, ${this.rank})`, axis);
    const n = this.shape[ax];
    if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= n)) {
      throw new ArgumentError(`${this.name} slice`, `0 <= start <= end <= ${n}`, [start, end]);
    }
    const outer = sizeOf(this.shape.slice(0, ax));
    const inner = sizeOf(this.shape.slice(ax + 1));
    const len = end - start;
    const outShape = [...this.shape];
    outShape[ax] = len;
    const out = Tensor.zeros(outShape, this.dtype, this.name);
    for (let o = 0; o < outer; o++) {
      const src = (o * n + start) * inner;
      out.data.set(this.data.subarray(src, src + len * inner), o * len * inner);
    }
    return out;
  }

  /** Concatenate along an axis; all other dimensions must agree. */
  static concat(tensors: readonly Tensor[], axis: number): Tensor {
    if (tensors.length === 0) throw new ArgumentError('tensors', 'at least one tensor', 0);
    const first = tensors[0];
    const ax = axis < 0 ? axis + first.rank : axis;
    for (const t of tensors) {
      if (t.rank !== first.rank || t.shape.some((d, a) => a !== ax && d !== first.shape[a])) {
        throw new ShapeError(
          t.name,
          `[${first.shape.map((d, a) => (a === ax ? '*' : d)).join(', ')}] to concat along axis ${ax}`,
          t.shape,
        );
      }
      if (t.dtype !== first.dtype) throw new DTypeError(t.name, first.dtype, t.dtype);
    }
    const outer = sizeOf(first.shape.slice(0, ax));
    const inner = sizeOf(first.shape.slice(ax + 1));
    const total = tensors.reduce((s, t) => s + t.shape[ax], 0);
    const outShape = [...first.shape];
    outShape[ax] = total;
    const out = Tensor.zeros(outShape, first.dtype, first.name);
    for (let o = 0; o < outer; o++) {
      let pos = 0;
      for (const t of tensors) {
        const len = t.shape[ax] * inner;
        out.data.set(t.data.subarray(o * len, (o + 1) * len), o * total * inner + pos);
        pos += len;
      }
    }
    return out;
  }

  /** Elementwise f(x) into a new tensor of the same dtype (or `dtype`). */
  map(f: (x: number, i: number) => number, dtype: DType = this.dtype): Tensor {
    const out = allocate(dtype, this.size);
    for (let i = 0; i < this.size; i++) out[i] = f(this.data[i], i);
    return new Tensor(out, this.shape, this.name);
  }

  /** Elementwise f(a, b) of two tensors of the same shape. */
  zip(other: Tensor, f: (a: number, b: number) => number): Tensor {
    assertSameShape(other, this.shape, this.name);
    const out = allocate(this.dtype, this.size);
    for (let i = 0; i < this.size; i++) out[i] = f(this.data[i], other.data[i]);
    return new Tensor(out, this.shape, this.name);
  }

  add(o: Tensor): Tensor {
    return this.zip(o, (a, b) => a + b);
  }
  sub(o: Tensor): Tensor {
    return this.zip(o, (a, b) => a - b);
  }
  mul(o: Tensor): Tensor {
    return this.zip(o, (a, b) => a * b);
  }
  scale(s: number): Tensor {
    return this.map((x) => x * s);
  }

  /** Copy converted to a dtype (float64 → float32 rounds to nearest). */
  astype(dtype: DType): Tensor {
    // the constructor copies element by element without the iterator protocol that `from` goes through
    return new Tensor(
      dtype === 'float64' ? new Float64Array(this.data) : new Float32Array(this.data),
      this.shape,
      this.name,
    );
  }
  clone(): Tensor {
    return new Tensor(this.data.slice(), this.shape, this.name);
  }

  /** Nested arrays, for printing small tensors. */
  toNested(): unknown {
    const rec = (a: number, off: number): unknown => {
      if (a === this.rank) return this.data[off];
      const st = this.strides[a];
      return Array.from({ length: this.shape[a] }, (_, i) => rec(a + 1, off + i * st));
    };
    return rec(0, 0);
  }
}

/** Throw ShapeError unless `t.shape` equals `shape`. */
function assertSameShape(t: Tensor, shape: readonly number[], what = 'reference'): void {
  if (t.rank !== shape.length || t.shape.some((d, a) => d !== shape[a])) {
    throw new ShapeError(t.name, `[${shape.join(', ')}] (same as ${what})`, t.shape);
  }
}

/**
 * Arrays already checked finite and not changed since (model weights: checked at load, immutable after;
 * a training step that changes one in place calls `forgetFinite`). `assertFinite` skips them, so a decode
 * step does not rescan every weight it reads.
 */
const knownFinite = new WeakSet<object>();
export function markFinite(a: FloatArray): void {
  knownFinite.add(a);
}
export function forgetFinite(a: FloatArray): void {
  knownFinite.delete(a);
}

/** Throw NonFiniteError at the first NaN or ±Inf (naming the tensor `name`, default its own name). */
export function assertFinite(t: Tensor, name = t.name): void {
  if (t.packed) return; // checked when packed
  const d = t.data;
  if (knownFinite.has(d)) return;
  if (allFinite(d)) return;
  for (let i = 0; i < d.length; i++) {
    if (!Number.isFinite(d[i])) throw new NonFiniteError(name, i, d[i]);
  }
}

/**
 * Whether every element is finite: v·0 is ±0 for a finite v and NaN for ±Inf or NaN, so four running sums of
 * v·0 stay 0 exactly when all are finite. Branch-free, with independent sums: about twice as fast as testing
 * each element (the inputs of every op are checked, the states of a decode step among them).
 */
function allFinite(d: FloatArray): boolean {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  const n = d.length - (d.length % 4);
  for (let i = 0; i < n; i += 4) {
    s0 += d[i] * 0;
    s1 += d[i + 1] * 0;
    s2 += d[i + 2] * 0;
    s3 += d[i + 3] * 0;
  }
  for (let i = n; i < d.length; i++) s0 += d[i] * 0;
  return s0 + s1 + s2 + s3 === 0;
}

/**
 * Check several tensors against symbolic shapes and return the bound sizes.
 *
 *   const { batch, dim, L } = dims({ u: [u, ['batch', 'dim', 'L']], A: [A, ['dim', 'N']] });
 *
 * A symbol seen twice must have the same size; a number must match exactly. Each tensor
 * is also checked for NaN/Inf unless `allowNonFinite`. The error names the tensor, the
 * expected shape with every symbol already bound, and the actual shape.
 */
export function dims<const S extends DimsSpec, const B extends Record<string, number> = Record<never, number>>(
  spec: S,
  bound?: B,
  opts: { allowNonFinite?: boolean } = {},
): BoundDims<S, B> {
  const b: Record<string, number> = { ...bound };
  // no closure is made per tensor or axis: dims runs before every op of a decode step (and under tsx every
  // closure made costs a defineProperty for its name)
  for (const name in spec) {
    const [t, want] = lookup(spec, name);
    if (t === undefined) continue;
    if (t.rank !== want.length) throw new ShapeError(name, boundShape(want, b), t.shape);
    for (let a = 0; a < want.length; a++) {
      const w = want[a];
      const d = t.shape[a];
      if (typeof w === 'number') {
        if (d !== w) throw new ShapeError(name, boundShape(want, b), t.shape);
      } else if (w in b) {
        if (b[w] !== d)
          throw new ShapeError(name, boundShape(want, b), t.shape, `'${w}' is ${b[w]} from another tensor`);
      } else b[w] = d;
    }
    if (!opts.allowNonFinite) assertFinite(t, name);
  }
  return b as BoundDims<S, B>;
}

/** The argument of `dims`: each tensor (or undefined, for an optional one) with its symbolic shape. */
export type DimsSpec = Record<string, readonly [Tensor | undefined, readonly (string | number)[]]>;
type SymbolsOf<E> = E extends readonly [unknown, readonly (infer A)[]] ? Extract<A, string> : never;
/** Symbols of the tensors that are always given: bound for sure. */
type SureSymbols<S extends DimsSpec> = {
  [K in keyof S]: S[K] extends readonly [Tensor, unknown] ? SymbolsOf<S[K]> : never;
}[keyof S];
type AllSymbols<S extends DimsSpec> = { [K in keyof S]: SymbolsOf<S[K]> }[keyof S];
/**
 * What `dims` returns, typed: every symbol of a tensor that is always given is a number; a symbol seen only
 * in optional tensors may be missing (undefined) when they are absent; the `bound` sizes are numbers.
 */
export type BoundDims<S extends DimsSpec, B> = { [K in SureSymbols<S> | keyof B]: number } & {
  [K in Exclude<AllSymbols<S>, SureSymbols<S> | keyof B>]?: number;
};

/** A symbolic shape with every symbol bound so far shown with its size: [batch=2, L, 16]. */
function boundShape(want: readonly (string | number)[], b: Record<string, number>): string {
  return '[' + want.map((w) => (typeof w === 'number' ? String(w) : w in b ? `${w}=${b[w]}` : w)).join(', ') + ']';
}

/** Relative error ‖got − want‖₂ / ‖want‖₂ (absolute ‖got‖ when want is all zeros). */
export function relError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  // a number has no length: without this, relError(x, y) of two scalars would compare nothing and return 0
  if (typeof got?.length !== 'number' || typeof want?.length !== 'number')
    throw new TypeError(`relError takes two arrays of numbers, got ${typeof got} and ${typeof want}`);
  if (got.length !== want.length) return Infinity;
  // scaled by the largest magnitude first, so squares neither overflow (|x| > 1e154 would give Inf/Inf = NaN)
  // nor underflow (|x| < 1e-162 would give a zero denominator and an absolute error instead)
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    const d = got[i] - want[i];
    if (Number.isNaN(d)) return Infinity;
    scale = Math.max(scale, Math.abs(want[i]), Math.abs(d));
  }
  if (scale === 0) return 0;
  if (!Number.isFinite(scale)) return Infinity;
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    const d = (got[i] - want[i]) / scale;
    const w = want[i] / scale;
    num += d * d;
    den += w * w;
  }
  return den === 0 ? Math.sqrt(num) * scale : Math.sqrt(num / den);
}

/** Largest |got − want|. */
export function maxAbsError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) return Infinity;
  let m = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= m)) m = d; // NaN propagates as NaN > m false → use !(<=)
  }
  return m;
}

/** dst[o + j·rows + i] = src[o + i·cols + j]: one rows × cols matrix transposed (a top-level function, so V8 keeps it small and fast). */
function swapLastTwo(src: FloatArray, dst: FloatArray, o: number, rows: number, cols: number): void {
  for (let i = 0; i < rows; i++) {
    const si = o + i * cols;
    for (let j = 0; j < cols; j++) dst[o + j * rows + i] = src[si + j];
  }
}
