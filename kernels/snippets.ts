/**
 * Source snippets shared by the kernels (GPU.js kernels cannot call helper functions portably, so
 * numerics that must be written carefully live here once and are pasted into kernel sources).
 *
 * softplus(v) = log(1 + e^v), written stably for float32 shaders (where log1p is log(1+x) and
 * loses everything for small x): with x = e^{−|v|} ∈ (0, 1],
 *   softplus(v) = max(v, 0) + log1p(x),   log1p(x) ≈ x − x²/2 + x³/3 − … (6 terms) for x < 0.1, else log(1 + x);
 *   v > 20 → v (torch's threshold).
 * silu(v) = v / (1 + e^{−v}).
 */

/** Statements that declare `out` = softplus(`v`). `v` must be a plain variable name. */
export function softplusSnippet(v: string, out: string): string {
  return `
    let ${out} = ${v};
    if (${v} <= 20.0) {
      const ${out}_x = Math.exp(-Math.abs(${v}));
      let ${out}_l = 0.0;
      if (${out}_x < 0.1) {
        ${out}_l = ${out}_x * (1.0 - ${out}_x * (0.5 - ${out}_x * (0.3333333333333333 - ${out}_x * (0.25 - ${out}_x * (0.2 - ${out}_x * 0.16666666666666666)))));
      } else {
        ${out}_l = Math.log(1.0 + ${out}_x);
      }
      ${out} = Math.max(${v}, 0.0) + ${out}_l;
    }`;
}

/** Expression for silu(e). */
export function siluExpr(e: string): string {
  return `((${e}) / (1.0 + Math.exp(-(${e}))))`;
}

/** Statements that split flat thread index `i` into named coordinates of a row-major shape. */
export function unflatten(i: string, names: readonly string[], sizes: readonly string[]): string {
  // names/sizes outermost first; uses exact integer division (thread indices < 2^24)
  const lines: string[] = [`let rest_ = ${i};`];
  for (let a = names.length - 1; a >= 1; a--) {
    lines.push(`const ${names[a]} = rest_ - Math.floor(rest_ / ${sizes[a]}) * ${sizes[a]};`);
    lines.push(`rest_ = Math.floor(rest_ / ${sizes[a]});`);
  }
  lines.push(`const ${names[0]} = rest_;`);
  return lines.join('\n    ');
}
