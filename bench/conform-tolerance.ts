/**
 * How far rounding a case to float32 moves each op's outputs, elementwise: the measurement behind the
 * default tolerances of `mil conform` (DEFAULT_TOLERANCE in lib/conform/harness.ts).
 *
 * For each kernel op, 3 × 200 draws of the harness's own cases (lib/conform/cases.ts); each case's inputs
 * are rounded to float32 (Math.fround), run through the float64 reference, and the outputs rounded to
 * float32 too: the least error any float32 port has. Printed per op: the largest
 *   max_i (|got_i − want_i| − atol) / |want_i|
 * — the rtol that numpy's allclose |got − want| ≤ atol + rtol·|want| needs for these draws — beside the
 * default rtol, and how many draws were left out because a reference output is beyond float32's range
 * (|x| ≥ 3.4e38: a float32 port cannot represent it at all).
 *
 *   node --import tsx bench/conform-tolerance.ts [atol, default 1e-6]
 */
import fc from 'fast-check';
import { CONFORM_OPS, buildCase, drawArbitrary } from '../lib/conform/cases.js';
import { DEFAULT_TOLERANCE } from '../lib/conform/harness.js';
import { GOLDEN_OPS } from '../lib/golden/ops.js';
import { getOps } from '../lib/ops.js';
import { lookup } from '../lib/checked.js';

const atol = Number(process.argv[2] ?? 1e-6);
const ref = await getOps('reference');
console.log(`op: draws used, draws beyond float32's range, rtol needed at atol ${atol} (default rtol)`);
for (const op of CONFORM_OPS) {
  if (op === 'model' || op === 'speculative') continue;
  let need = 0;
  let used = 0;
  let beyond = 0;
  for (const seed of [11, 12, 13])
    for (const d of fc.sample(drawArbitrary(op), { numRuns: 200, seed })) {
      const c = await buildCase(op, d);
      if (!Object.values(c.expected).every((t) => t.data.every((v) => Math.abs(v) < 3.4e38))) {
        beyond++;
        continue;
      }
      const I = Object.fromEntries(Object.entries(c.inputs).map(([k, t]) => [k, t.map(Math.fround)]));
      const got = await lookup(GOLDEN_OPS, op).run(ref, I, c.attrs);
      used++;
      for (const [k, want] of Object.entries(c.expected))
        for (let i = 0; i < want.size; i++) {
          const diff = Math.abs(Math.fround(lookup(got, k).data[i]) - want.data[i]);
          need = Math.max(need, diff <= atol ? 0 : (diff - atol) / Math.abs(want.data[i]));
        }
    }
  console.log(`${op}: ${used}, ${beyond}, ${need.toExponential(1)} (${lookup(DEFAULT_TOLERANCE, op).rtol})`);
}
