/**
 * Checked lookups: a key into a map or a record, the last element of an array.
 *
 * `map.get(key)`, `rec[key]` and `a.at(-1)` may be undefined; these helpers read the value with that case
 * checked instead of asserted away with `!`: a missing key or an empty array throws a RangeError naming it,
 * where an assertion would let `undefined` travel on and fail far from its cause.
 *
 * Index reads of arrays and typed arrays are plain `a[i]` (tsconfig has no `noUncheckedIndexedAccess`): in the
 * numeric code they are on every hot path, and a shared checked-read helper costs far more than its check —
 * called with Float64Array, Float32Array and plain arrays its keyed load turns megamorphic in V8 (measured: a
 * sum over 10⁶ float64 values 1.1 ms plain, 24 ms through such a helper; the reference backend's speculative
 * golden test 18 s → 199 s). Their bounds are what the property tests against independent references check.
 */

/** `map.get(key)` or `rec[key]`, checked: throws a RangeError naming the key when it has no value. */
export function lookup<K, V>(map: ReadonlyMap<K, V>, key: K): V;
export function lookup<V>(rec: { readonly [key: string]: V }, key: string | number): V;
export function lookup(m: ReadonlyMap<unknown, unknown> | Record<string, unknown>, key: unknown): unknown {
  const v = m instanceof Map ? m.get(key) : (m as Record<string, unknown>)[String(key)];
  if (v === undefined) throw new RangeError(`no entry for key ${JSON.stringify(key) ?? String(key)}`);
  return v;
}

/** The last element of a non-empty array, checked: throws a RangeError when `a` is empty. */
export function lastOf<T>(a: ArrayLike<T>): T {
  const v = a[a.length - 1];
  if (v === undefined) throw new RangeError('the last element of an empty array');
  return v;
}

/** `v`, checked present: throws a RangeError naming `what` when it is undefined or null. */
export function present<T>(v: T | undefined | null, what: string): T {
  if (v === undefined || v === null) throw new RangeError(`${what} is missing`);
  return v;
}
