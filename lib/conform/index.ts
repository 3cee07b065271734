/**
 * `import … from 'mamba-in-llama/conform'`: the conformance harness of `mil conform` (any program, any
 * language, against the float64 references: lib/conform/harness.ts) and its random cases, and the same
 * properties over a JavaScript/TypeScript port's own function, for vitest or jest (lib/conform/properties.ts,
 * docs/properties.md):
 *
 *   const p = properties(myPort, { rtol: 1e-4, atol: 1e-6 }); // { selective_scan: property, causal_conv1d: …, … }
 *   await fc.assert(p.selective_scan, { numRuns: 200 });
 *
 * The port function gets (op, inputs, attrs) — inputs as { shape, data: Float64Array } by the names of
 * docs/conform.md — and returns its outputs the same way, or `null` for an op or option it does not support
 * (such cases are skipped, as exit 77 is for a program). A failure shrinks to the smallest case and names the
 * output and its worst element.
 *
 * @module
 */

/** The random cases: every op's shapes, options and magnitudes, a draw's inputs and reference outputs. */
export { CONFORM_OPS, CONFORM_SPECS, buildCase, drawArbitrary } from './cases.js';
export type { ConformCase, Draw, OpSpec } from './cases.js';
/** The harness of `mil conform`: a port program run on cases, the verdicts, the saved failing case. */
export {
  caseSize,
  compare,
  conform,
  runPort,
  isClose,
  saveCase,
  type ConformOptions,
  type ReplayRecord,
  type Tolerance,
  type ConformReport,
  type Verdict,
} from './harness.js';
/** The property suite over a port function (numpy.allclose tolerances). */
export {
  allclose,
  properties,
  property,
  referencePort,
  PROPERTY_OPS,
  type AllcloseResult,
  type PortFunction,
  type PortTensor,
  type PropertiesOptions,
  type PropertyTolerance,
} from './properties.js';
