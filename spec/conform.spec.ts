/**
 * The conformance harness (lib/conform/, `mil conform`, docs/conform.md):
 *  - the example ports (plain JavaScript; Python with numpy where python3 has numpy) pass every op they
 *    implement and report the others unsupported (exit 77), which is never a failure;
 *  - deliberately broken copies of them — softplus without its large-input branch, the conv reading one
 *    step late, D skipped when z is absent, the bias added twice, a chunk boundary off by one — are each
 *    caught and shrunk to a case whose largest dimension is asserted small;
 *  - what a bad port does (crash, hang, no file, wrong shape, NaN) is a clear verdict, and the harness never
 *    hangs; the smallest failing case saves as a golden folder that `mil golden verify` reads;
 *  - the library entry `properties` checks an in-process function the same way.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CONFORM_OPS, caseSize, conform, property, runPort, buildCase } from '../lib/conform/index.js';
import { verifyGolden } from '../lib/golden/verify.js';
import { tmpFolder } from './tmp.js';

const ROOT = join(import.meta.dirname, '..');
const JS = join(ROOT, 'examples', 'ports', 'js', 'port.mjs');
const PY = join(ROOT, 'examples', 'ports', 'python', 'port.py');
/** what both example ports implement: every forward kernel op */
const JS_OPS = ['selective_scan', 'selective_state_update', 'causal_conv1d', 'causal_conv1d_update', 'gated_rmsnorm', 'ssd_chunk_scan', 'ssd_minimal_discrete', 'multistep'];
const PY_OPS = JS_OPS;
const numpy = spawnSync('python3', ['-c', 'import numpy'], { encoding: 'utf8' }).status === 0;
const base = { runs: 25, seed: 1, tolerance: 1e-4, timeoutMs: 20000 };

/** A copy of a port with one substitution (which must apply). */
function broken(src: string, from: string, to: string, ext: string): string {
  const text = readFileSync(src, 'utf8');
  expect(text.includes(from), `the substitution '${from}' applies`).toBe(true);
  const p = join(tmpFolder('broken'), `port.${ext}`);
  writeFileSync(p, text.replace(from, to));
  return p;
}

describe('the example ports pass', () => {
  it('JavaScript: every forward kernel op passes; the others (backward ops, speculative, model) are reported unsupported', async () => {
    for (const op of CONFORM_OPS) {
      const r = await conform({ ...base, op, port: `node ${JS}`, runs: JS_OPS.includes(op) ? 15 : 1 });
      expect(r.failed, `${op}: ${r.smallest?.verdict.reason}`).toBe(0);
      if (JS_OPS.includes(op)) expect(r.passed, op).toBe(r.runs);
      else expect(r.unsupported, op).toBe(r.runs);
    }
  }, 240_000);
  it.skipIf(!numpy)('Python with numpy: every forward kernel op passes; a backward op is unsupported (skipped where python3 has no numpy: apt-get install python3-numpy)', async () => {
    for (const op of PY_OPS) {
      const r = await conform({ ...base, runs: 6, op, port: `python3 ${PY}` });
      expect(r.failed, `${op}: ${r.smallest?.verdict.reason}`).toBe(0);
      expect(r.passed, op).toBe(r.runs);
    }
    expect((await conform({ ...base, op: 'selective_scan_grad', port: `python3 ${PY}`, runs: 2 })).unsupported).toBe(2);
  }, 240_000);
});

describe('broken ports are caught and shrunk', () => {
  const cases: Array<[string, string, string, string, string, number]> = [
    ['softplus without the large-input branch', 'selective_scan', 'const softplus = (x) => (x > 20 ? x : Math.log1p(Math.exp(x)));', 'const softplus = (x) => Math.log1p(Math.exp(x));', 'mjs', 12], // value-triggered (Δ > 709 overflows): the length shrinks only to where the drawn values still hold one
    ['the conv reading one step late', 'causal_conv1d', 's += weight.data[d * W + k] * row[t + k];', 's += weight.data[d * W + k] * (row[t + k - 1] ?? 0);', 'mjs', 2],
    ['D skipped when z is absent', 'selective_scan', 'if (D) y += D.data[d] * u.data[i];', 'if (D && z) y += D.data[d] * u.data[i];', 'mjs', 1],
    ['the conv bias added twice', 'causal_conv1d', 'let s = bias ? bias.data[d] : 0;', 'let s = bias ? 2 * bias.data[d] : 0;', 'mjs', 2],
    ['a chunk boundary off by one (the last step of each chunk left out of the chunk state)', 'ssd_chunk_scan', 'for (let s = t0; s < t1; s++) s2 +=', 'for (let s = t0; s < t1 - 1; s++) s2 +=', 'mjs', 1],
  ];
  for (const [what, op, from, to, ext, largest] of cases) {
    it(`JavaScript, ${what}: caught, shrunk to no dimension above ${largest}`, async () => {
      const r = await conform({ ...base, runs: 200, op, port: `node ${broken(JS, from, to, ext)}` });
      expect(r.failed).toBe(1);
      expect(r.smallest).toBeDefined();
      const s = caseSize(r.smallest!.case);
      expect(s.largestDim, JSON.stringify(s.shapes)).toBeLessThanOrEqual(largest);
      console.log(`[conform] ${what}: first failure at case ${r.firstFailureAt}, ${r.smallest!.shrinkSteps} shrink runs, smallest ${JSON.stringify(s.shapes)}`);
    }, 120_000);
  }
  it.skipIf(!numpy)('Python, D skipped when z is absent: caught and shrunk to one element', async () => {
    const b = await conform({ ...base, runs: 200, op: 'selective_scan', port: `python3 ${broken(PY, '    if D is not None:\n        out += D[:, None] * u', '    if D is not None and z is not None:\n        out += D[:, None] * u', 'py')}` });
    expect(b.failed).toBe(1);
    expect(caseSize(b.smallest!.case).largestDim).toBe(1);
  }, 240_000);
});

describe('what a bad port gets', () => {
  const d = { shapes: { batch: 1, dim: 2, len: 3, width: 2 }, seed: 1, present: { bias: true, initial_states: false }, toggles: { activation: 'silu' }, scale: {} };
  const write = (body: string) => {
    const p = join(tmpFolder('port'), 'p.mjs');
    writeFileSync(p, `import { writeFileSync } from 'node:fs';\nconst dir = process.argv[2];\n${body}\n`);
    return `node ${p}`;
  };
  const st = (shape: number[], fill: number) => `
    const h = Buffer.from(JSON.stringify({ out: { dtype: 'F64', shape: ${JSON.stringify(shape)}, data_offsets: [0, ${shape.reduce((a, b) => a * b, 1) * 8}] } }).padEnd(${8 * 20}));
    const n = Buffer.alloc(8); n.writeBigUInt64LE(BigInt(h.length));
    writeFileSync(dir + '/out.safetensors', Buffer.concat([n, h, Buffer.from(new Float64Array(${shape.reduce((a, b) => a * b, 1)}).fill(${fill}).buffer)]));`;
  it('crash, hang, no file, unreadable file, missing output, wrong shape, NaN: each a failing verdict naming what happened', async () => {
    const c = await buildCase('causal_conv1d', d);
    const o = { tolerance: 1e-4, timeoutMs: 1500 };
    expect((await runPort(write('process.exit(3)'), c, o)).reason).toMatch(/exited 3/);
    const t0 = performance.now();
    expect((await runPort(write('setInterval(() => {}, 1000)'), c, o)).reason).toMatch(/ran past the 1500 ms timeout and was killed/);
    expect(performance.now() - t0).toBeLessThan(5000);
    expect((await runPort(write(''), c, o)).reason).toMatch(/wrote no out\.safetensors/);
    expect((await runPort(write("writeFileSync(dir + '/out.safetensors', 'garbage')"), c, o)).reason).toMatch(/unreadable/);
    expect((await runPort(write(st([1, 2, 3], 0)), c, o)).reason).toMatch(/output 'final_states' missing/);
    expect((await runPort(write(st([2, 3], 0)), c, o)).reason).toMatch(/output 'out' has shape \[2, 3\], expected \[1, 2, 3\]/);
    expect((await runPort(write(st([1, 2, 3], NaN)), c, o)).reason).toMatch(/output 'out'\[0\] is NaN where the reference is/);
    expect((await runPort(write('console.error("no conv here"); process.exit(77)'), c, o))).toMatchObject({ status: 'unsupported', reason: 'no conv here' });
    expect((await runPort('/nonexistent/port', c, o)).status).toBe('fail');
  }, 60_000);
  it('mil conform --save writes the smallest failing case as a golden folder that golden verify passes on the reference; exit 1', () => {
    const out = join(tmpFolder('save'), 'case');
    const port = broken(JS, 'if (D) y += D.data[d] * u.data[i];', 'if (D && z) y += D.data[d] * u.data[i];', 'mjs');
    const r = spawnSync('node', [join(ROOT, 'bin', 'mil.js'), 'conform', '--op', 'selective_scan', '--port', `node ${port}`, '--runs', '100', '--save', out], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(1);
    expect(r.stdout).toMatch(/first failure at case \d+; shrunk in \d+ further runs to:\n {2}inputs: u \[1, 1, 1\]/);
    return verifyGolden(out, 'reference').then((v) => expect([v.passed, v.failed]).toEqual([1, 0]));
  }, 60_000);
});

describe('the library entry', () => {
  it('properties(fn) checks an in-process port: a correct one passes, a broken one fails with the output and the case named', async () => {
    const { selectiveScan } = await import('../lib/ref/selective_scan.js');
    const { Tensor } = await import('../lib/tensor.js');
    const port = (scale: number) => async (op: string, I: Record<string, { shape: number[]; data: ArrayLike<number> }>, a: Record<string, unknown>) => {
      if (op !== 'selective_scan') return null;
      const t = (k: string) => (I[k] ? new Tensor(Float64Array.from(I[k]!.data), I[k]!.shape, k) : undefined);
      const r = selectiveScan({ u: t('u')!, delta: t('delta')!, A: t('A')!, B: t('B')!, C: t('C')!, D: t('D'), z: t('z'), deltaBias: t('delta_bias'), deltaSoftplus: a.delta_softplus === true, initialState: t('initial_state') });
      return { out: { shape: [...r.out.shape], data: r.out.data.map((v) => v * scale) }, last_state: { shape: [...r.lastState.shape], data: r.lastState.data } };
    };
    await fc.assert(property('selective_scan', port(1)), { numRuns: 30 });
    const e = await fc.assert(property('selective_scan', port(1.01)), { numRuns: 30 }).then(() => null, (x: Error) => x);
    expect(String(e?.cause)).toMatch(/selective_scan: output 'out' relative error .* > 0\.0001; worst element out\[\d+\]/);
  }, 60_000);
});
