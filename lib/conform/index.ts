/**
 * `import { properties } from 'mamba-in-llama/conform'`: the conformance properties of `mil conform` as
 * fast-check properties over a JavaScript/TypeScript port's own function, for vitest or jest:
 *
 *   const p = properties(myPort);                 // { selective_scan: property, causal_conv1d: …, … }
 *   await fc.assert(p.selective_scan, { numRuns: 200 });
 *
 * The port function gets (op, inputs, attrs) — inputs as { shape, data: Float64Array } by the names of
 * docs/conform.md — and returns its outputs the same way, or `null` for an op or option it does not support
 * (such cases are skipped, as exit 77 is for a program). A failure shrinks to the smallest case and names the
 * output, its relative error and the worst element.
 */
import fc from 'fast-check';
import { Tensor } from '../tensor.js';
import { buildCase, CONFORM_OPS, drawArbitrary } from './cases.js';
import { compare } from './harness.js';

export { CONFORM_OPS, CONFORM_SPECS, buildCase, drawArbitrary } from './cases.js';
export type { ConformCase, Draw, OpSpec } from './cases.js';
export { caseSize, compare, conform, runPort, saveCase, type Verdict } from './harness.js';

export interface PortTensor {
  shape: number[];
  data: ArrayLike<number>;
}
export type PortFunction = (
  op: string,
  inputs: Record<string, PortTensor>,
  attrs: Record<string, unknown>,
) => Record<string, PortTensor> | null | Promise<Record<string, PortTensor> | null>;

/** The property of one op (model cases need a checkpoint folder: use `mil conform` for `model`). */
export function property(
  op: string,
  port: PortFunction,
  o: { tolerance?: number } = {},
): fc.IAsyncProperty<[import('./cases.js').Draw]> {
  return fc.asyncProperty(drawArbitrary(op), async (d) => {
    const c = await buildCase(op, d);
    fc.pre(Object.values(c.expected).every((t) => t.data.every(Number.isFinite)));
    const inputs = Object.fromEntries(
      Object.entries(c.inputs).map(([k, t]) => [k, { shape: [...t.shape], data: Float64Array.from(t.data) }]),
    );
    const out = await port(op, inputs, c.attrs);
    fc.pre(out !== null); // unsupported
    const got = new Map(Object.entries(out).map(([k, t]) => [k, new Tensor(Float64Array.from(t.data), t.shape, k)]));
    const v = compare(c.expected, got, o.tolerance ?? 1e-4);
    if (v.status !== 'pass') {
      const w = v.worst
        ? `; worst element ${v.worst.output}[${v.worst.index}] = ${v.worst.got}, reference ${v.worst.want}`
        : '';
      throw new Error(
        `${op}: ${v.reason}${w}; inputs ${Object.entries(c.inputs)
          .map(([k, t]) => `${k} [${t.shape.join(', ')}]`)
          .join(', ')}; attrs ${JSON.stringify(c.attrs)}`,
      );
    }
  });
}

/** Every kernel op's property (forward and backward). */
export function properties(
  port: PortFunction,
  o: { tolerance?: number } = {},
): Record<string, fc.IAsyncProperty<[import('./cases.js').Draw]>> {
  return Object.fromEntries(CONFORM_OPS.filter((op) => op !== 'model').map((op) => [op, property(op, port, o)]));
}
