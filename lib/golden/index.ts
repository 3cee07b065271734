/**
 * `import … from 'mamba-in-llama/golden'`: the golden-vector oracle. A `mil-golden/1` folder (golden/FORMAT.md)
 * holds cases computed by the upstream PyTorch code (or by this project's float64 references, `emitGolden`);
 * `verifyGolden` runs every case on a backend and compares each output by relative error
 * ‖got − want‖₂ / ‖want‖₂ against the backend's tolerance (`toleranceFor`: 1e-9 float64, 1e-4 float32).
 *
 *   const report = await verifyGolden('node_modules/mamba-in-llama/golden', 'reference');
 *
 * @module
 */

/** Verify a folder, its case lists and reports. */
export {
  verifyGolden,
  readKernelsJson,
  formatResult,
  toleranceFor,
  SCHEMA,
  type GoldenCase,
  type CaseResult,
  type VerifyReport,
} from './verify.js';
/** Write new cases (and model folders) computed by the float64 references. */
export { emitGolden, emitModel } from './emit.js';
/** Every op the oracle knows: how to generate its inputs and run it. */
export { GOLDEN_OPS, type Attrs, type GoldenOp, type Named, type ShapeOptions } from './ops.js';
