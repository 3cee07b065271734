/**
 * Exact index division for GPU.js kernels on real GPUs.
 *
 * GPU.js kernels split a thread index with float32 arithmetic, `Math.floor(x / R)`. That is exact where division
 * is correctly rounded (Dawn's CPU adapter, lavapipe), but WGSL allows 2.5 ULP, and the H200's driver divides as
 * x·(1/R): for R = 388, x = 388 gives 0.99999994 and a floor of 0 (bench/gpu_check.ts measured 12,872 wrong
 * quotients over 220 of the divisors 2 … 2048 for x < 2^16, none on Dawn). Every kernel then read the wrong row or
 * column wherever a width was such a divisor — a trained Mamba-2 hybrid's in_proj (388 outputs) was off by 1e-2.
 *
 * The fix stays inside GPU.js: `idivFloor(a, b)` is a GPU.js function (`gpu.addFunction`), floor(a / b) corrected
 * by one step either way — q·b and (q + 1)·b are exact in float32 for the integers a kernel indexes with (< 2^24)
 * — and `exactDivision` rewrites every `Math.floor(X / Y)` of a kernel source (the division at the top level of
 * the floor's argument) into `idivFloor(X, Y)` before GPU.js compiles it. Applied on the webgpu backend, where it
 * was measured; for real b > 0 the result is floor(a / b) as before.
 */

/** floor(a / b) for b > 0, exact where a·b products are (GPU.js translates this function into the kernel). */
export function idivFloor(a: number, b: number): number {
  let q = Math.floor(a / b);
  if (q * b > a) {
    q = q - 1;
  }
  if ((q + 1) * b <= a) {
    q = q + 1;
  }
  return q;
}

/** `source` with every `Math.floor(X / Y)` (one top-level `/` in the argument) written `idivFloor(X, Y)`. */
export function exactDivision(source: string): string {
  const open = 'Math.floor(';
  let out = '';
  let at = 0;
  for (;;) {
    const i = source.indexOf(open, at);
    if (i < 0) return out + source.slice(at);
    out += source.slice(at, i);
    // the argument: up to the matching parenthesis; its top-level slashes
    let depth = 1;
    let j = i + open.length;
    const slashes: number[] = [];
    for (; j < source.length && depth > 0; j++) {
      const c = source[j];
      if (c === '(' || c === '[') depth++;
      else if (c === ')' || c === ']') depth--;
      else if (c === '/' && depth === 1) slashes.push(j);
    }
    const arg = source.slice(i + open.length, j - 1);
    if (slashes.length === 1) {
      const s = slashes[0] - (i + open.length);
      out += `idivFloor(${exactDivision(arg.slice(0, s).trim())}, ${exactDivision(arg.slice(s + 1).trim())})`;
    } else out += `${open}${exactDivision(arg)})`;
    at = j;
  }
}

/**
 * a·b + c in 32-bit integers (GPU.js types its arguments and result Integer, so WGSL computes it in i32): an index
 * past 2^24, where float32 arithmetic is no longer exact — the element (i, r) of a weight of more than 2^24 values,
 * such as Llama-3.2-1B's tied embedding and head (128,256 × 2,048 = 262M). Each operand must be an integer below
 * 2^24 (exact as a float32, then converted); the result below 2^31. Reading `wt[i * R + r]` in float32 arithmetic
 * instead rounds the index to a multiple of 32 there: bench/realsize.ts's 1B rows decoded other tokens on webgpu
 * than on wasm-simd until this was used (spec/gpu_decode.spec.ts: vocab 65,536 × d 512).
 */
export function imad(a: number, b: number, c: number): number {
  return a * b + c;
}

/** GPU.js settings for `imad` (gpu.addFunction(imad, IMAD_TYPES)): Integer arguments and result. */
export const IMAD_TYPES = {
  argumentTypes: { a: 'Integer', b: 'Integer', c: 'Integer' },
  returnType: 'Integer',
};
