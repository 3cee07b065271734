/**
 * The property suite as a library: `import { properties } from 'mamba-in-llama/conform'` gives, for every op
 * the conformance cases cover (lib/conform/cases.ts: the forward ops of lib/golden/ops.ts, their backward
 * `*_grad` ops and `speculative`; not `model`, whose case is a checkpoint folder — `mil conform` checks it),
 * a fast-check property over the user's own function, for vitest, jest or a plain `fc.assert`:
 *
 *   for each draw d (shapes with sizes of 1, every optional input present or absent, every option on and
 *   off, inputs at ×1, ×1e3 and ×1e-3):
 *     (inputs, attrs, want) = buildCase(op, d)           want: the float64 reference's outputs
 *     got = port(op, inputs, attrs)                       null: this op or option is unsupported → the case
 *                                                          is skipped (an op whose every case is skipped fails)
 *     every output o of want:  got[o] present, same shape, and for every element i
 *       |got[o]_i − want[o]_i| ≤ atol + rtol·|want[o]_i|  (numpy.allclose; NaN or ±Inf where want is
 *                                                          finite fails, equal infinities pass)
 *
 * A draw whose reference outputs are not all finite (an overflow at ×1e3) is skipped (`fc.pre`). A failure
 * throws an error naming the op, the output, the worst element (flat index, the port's value, the
 * reference's, the bound it broke), the input shapes and the attributes; fast-check then shrinks the draw to
 * the smallest case that still fails. Defaults are numpy's (rtol 1e-5, atol 1e-8): a float64 port passes
 * them; a float32 one wants about rtol 1e-4 and an atol for its outputs' scale (docs/properties.md).
 */
import fc from 'fast-check';
import { ArgumentError } from '../errors.js';
import { getOps } from '../ops.js';
import { Tensor } from '../tensor.js';
import { GOLDEN_OPS, type Named } from '../golden/ops.js';
import { buildCase, CONFORM_OPS, drawArbitrary, type Draw } from './cases.js';
import { isClose, type Tolerance as HarnessTolerance } from './harness.js';

/** A tensor as a port sees it: its shape and its row-major elements (float64 from the harness). */
export interface PortTensor {
  shape: number[];
  data: ArrayLike<number>;
}

/**
 * A port as a function: gets the op's name, its inputs by the names of docs/conform.md and its attributes,
 * and returns every output by name, or `null` when it does not support this op or option (the case is skipped).
 */
export type PortFunction = (
  op: string,
  inputs: Record<string, PortTensor>,
  attrs: Record<string, unknown>,
) => Record<string, PortTensor> | null | Promise<Record<string, PortTensor> | null>;

/** numpy.allclose's tolerances (harness.ts `Tolerance`), each optional here: rtol 1e-5 and atol 1e-8 (numpy's). */
export type PropertyTolerance = Partial<HarnessTolerance>;

/** The ops `properties` covers: every conformance op but `model`. */
export const PROPERTY_OPS: readonly string[] = CONFORM_OPS.filter((op) => op !== 'model');

/** What `allclose` found: `ok`, or the first problem and the worst element. */
export interface AllcloseResult {
  ok: boolean;
  /** why it failed: the output and what was wrong with it */
  reason?: string;
  /** the element furthest past its bound (|got − want| − (atol + rtol·|want|)), in the output that fails */
  worst?: { output: string; index: number; got: number; want: number; bound: number };
}

/**
 * numpy.allclose over named outputs: every output of `want` present in `got` with the same shape, and every
 * element within atol + rtol·|want| (NaN and infinities as numpy compares them: NaN never, equal infinities
 * always). The worst element is the one furthest past its bound, over every output.
 */
export function allclose(
  want: Record<string, PortTensor>,
  got: Record<string, PortTensor>,
  tol: PropertyTolerance = {},
): AllcloseResult {
  const { rtol, atol } = tolerance(tol);
  const problems: string[] = [];
  let worst: AllcloseResult['worst'];
  let worstBy = 0;
  for (const [name, w] of Object.entries(want)) {
    const g = got[name];
    if (!g) {
      problems.push(`output '${name}' missing`);
      continue;
    }
    if (g.shape.join(',') !== w.shape.join(',') || g.data.length !== w.data.length) {
      problems.push(`output '${name}' has shape [${g.shape.join(', ')}], expected [${w.shape.join(', ')}]`);
      continue;
    }
    let bad = 0;
    for (let i = 0; i < w.data.length; i++) {
      const a = g.data[i];
      const b = w.data[i];
      const bound = atol + rtol * Math.abs(b);
      if (!isClose(a, b, { rtol, atol })) {
        const diff = Number.isFinite(a) && Number.isFinite(b) ? Math.abs(a - b) : NaN;
        const by = Number.isNaN(diff) ? Infinity : diff - bound;
        bad++;
        if (worst === undefined || by > worstBy)
          [worst, worstBy] = [{ output: name, index: i, got: a, want: b, bound }, by];
      }
    }
    if (bad > 0) problems.push(`output '${name}': ${bad} of ${w.data.length} elements not within atol + rtol·|want|`);
  }
  return problems.length ? { ok: false, reason: problems.join('; '), worst } : { ok: true };
}

function tolerance(t: PropertyTolerance): { rtol: number; atol: number } {
  const rtol = t.rtol ?? 1e-5;
  const atol = t.atol ?? 1e-8;
  if (!(rtol >= 0) || !Number.isFinite(rtol)) throw new ArgumentError('rtol', 'a finite number ≥ 0', t.rtol);
  if (!(atol >= 0) || !Number.isFinite(atol)) throw new ArgumentError('atol', 'a finite number ≥ 0', t.atol);
  return { rtol, atol };
}

const portTensors = (n: Named): Record<string, PortTensor> =>
  Object.fromEntries(Object.entries(n).map(([k, t]) => [k, { shape: [...t.shape], data: Float64Array.from(t.data) }]));

/**
 * The property of one op over `port`: see the file comment. Throws an `ArgumentError` at once for an op the
 * cases do not cover, or a tolerance that is negative or not a number.
 */
export function property(op: string, port: PortFunction, tol: PropertyTolerance = {}): fc.IAsyncProperty<[Draw]> {
  if (!PROPERTY_OPS.includes(op)) throw new ArgumentError('op', `one of ${PROPERTY_OPS.join(', ')}`, op);
  tolerance(tol);
  return fc.asyncProperty(drawArbitrary(op), async (d) => {
    const c = await buildCase(op, d);
    fc.pre(Object.values(c.expected).every((t) => t.data.every(Number.isFinite)));
    const out = await port(op, portTensors(c.inputs), { ...c.attrs });
    fc.pre(out !== null); // unsupported
    const v = allclose(portTensors(c.expected), out, tol);
    if (!v.ok) {
      const w = v.worst;
      const at = w
        ? `; worst element ${w.output}[${w.index}] = ${w.got}, reference ${w.want} (|diff| ${Math.abs(w.got - w.want)} > ${w.bound})`
        : '';
      const shapes = Object.entries(c.inputs).map(([k, t]) => `${k} [${t.shape.join(', ')}]`);
      throw new Error(`${op}: ${v.reason}${at}; inputs ${shapes.join(', ')}; attrs ${JSON.stringify(c.attrs)}`);
    }
  });
}

/** The tolerances, and which ops to check. */
export interface PropertiesOptions extends PropertyTolerance {
  /** the ops your port implements (default: every op of PROPERTY_OPS) */
  ops?: readonly string[];
}

/**
 * The property of each op in `o.ops` (default every covered op: forward, backward and speculative), as
 * `{ selective_scan: property, … }`. A port that answers `null` to every case of an op checks nothing, and
 * fast-check fails that property ("too many pre-condition failures"): name the ops it implements in `ops`.
 */
export function properties(port: PortFunction, o: PropertiesOptions = {}): Record<string, fc.IAsyncProperty<[Draw]>> {
  const { ops = PROPERTY_OPS, ...tol } = o;
  return Object.fromEntries(ops.map((op) => [op, property(op, port, tol)]));
}

/**
 * This project's float64 reference as a `PortFunction` (what `getOps('reference')` computes): a port that
 * passes every property exactly, and a starting point to wrap (answer some ops yourself, defer the rest).
 */
export const referencePort: PortFunction = async (op, inputs, attrs) => {
  const g = GOLDEN_OPS[op];
  if (!g) return null;
  const named: Named = Object.fromEntries(
    Object.entries(inputs).map(([k, t]) => [k, new Tensor(Float64Array.from(t.data), [...t.shape], k)]),
  );
  return portTensors(await g.run(await getOps('reference'), named, attrs));
};
