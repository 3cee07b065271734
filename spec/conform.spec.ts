/**
 * The conformance harness (lib/conform/, `mil conform`, docs/conform.md):
 *  - the example ports (plain JavaScript; Python with numpy where python3 has numpy) pass every op the
 *    harness draws in the lines protocol (forward kernels, backward ops, speculative sampling, the whole
 *    model), and in the files protocol on a few cases;
 *  - the two protocols give the same verdicts on the same seeded cases, for a correct port and broken ones;
 *  - deliberately broken copies of them — softplus without its large-input branch, the conv reading one
 *    step late, D skipped when z is absent, the bias added twice, a chunk boundary off by one — are each
 *    caught and shrunk to a case whose largest dimension is asserted small, with a smaller value seed and
 *    fewer elements than the first failure;
 *  - what a bad port does (crash, hang, no file, wrong shape, NaN; in the lines protocol also garbage, a wrong
 *    id, a wrong dtype, dying without an answer) is a clear verdict, the harness never hangs, and a lines port
 *    is killed (its whole group) and restarted for the next case;
 *  - the comparison is numpy's allclose with the per-op defaults docs/conform.md tabulates; outputs ~1e-29
 *    pass on atol; the smallest failing case saves as a folder that `mil conform --replay` reruns to the same
 *    verdict (a timeout too) and `mil golden verify` reads;
 *  - the library entry `properties` checks an in-process function the same way.
 */
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  CONFORM_OPS,
  CONFORM_SPECS,
  caseSize,
  compare,
  conform,
  property,
  runPort,
  buildCase,
  drawArbitrary,
} from '../lib/conform/index.js';
import { DEFAULT_TOLERANCE, judge, openPort, type Protocol, type Verdict } from '../lib/conform/harness.js';
import { Tensor, relError } from '../lib/tensor.js';
import { verifyGolden } from '../lib/golden/verify.js';
import { tmpFolder } from './tmp.js';
import { lastOf, lookup, present } from '../lib/checked.js';

const ROOT = join(import.meta.dirname, '..');
const JS = join(ROOT, 'examples', 'ports', 'js', 'port.mjs');
const PY = join(ROOT, 'examples', 'ports', 'python', 'port.py');
/**
 * The first python3 that imports numpy: PATH's, then Debian's /usr/bin/python3 (CI installs python3-numpy
 * there; a pyenv python3 first on PATH may lack numpy). Undefined when neither has it: the numpy tests skip.
 */
const PYTHON = ['python3', '/usr/bin/python3'].find(
  (py) => spawnSync(py, ['-c', 'import numpy'], { encoding: 'utf8' }).status === 0,
);
const numpy = PYTHON !== undefined;
const base = { runs: 25, seed: 1, timeoutMs: 20000, protocol: 'lines' as Protocol };

/** A copy of a port's folder with one substitution (which must apply) in `file`; returns the copy's main file. */
function broken(src: string, file: string, from: string, to: string): string {
  const dir = tmpFolder('broken');
  cpSync(dirname(src), dir, { recursive: true });
  const f = join(dir, file);
  const text = readFileSync(f, 'utf8');
  expect(text.includes(from), `the substitution '${from}' applies to ${file}`).toBe(true);
  writeFileSync(f, text.replace(from, to));
  return join(dir, basename(src));
}

/** a small causal_conv1d case for the bad-port specs */
const CONV_DRAW = {
  shapes: { batch: 1, dim: 2, len: 3, width: 2 },
  seed: 1,
  present: { bias: true, initial_states: false },
  toggles: { activation: 'silu' },
  scale: {},
};

/** whether a process is running (a zombie is dead) */
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return !/^Z/m.test(spawnSync('ps', ['-o', 'stat=', '-p', String(pid)], { encoding: 'utf8' }).stdout);
  } catch {
    return false;
  }
};

/** how many input elements a case has */
const elements = (c: { inputs: Record<string, { size: number }> }) =>
  Object.values(c.inputs).reduce((n, t) => n + t.size, 0);

describe('the example ports pass every op', () => {
  // Float64 ports agree with the reference to rtol 1e-9 on every op but one: gated_rmsnorm_grad at group size 1
  // and |x| ≫ √ε, where ∂out/∂x ∝ 1 − n² ≈ ε/x² is a cancellation, so two correct float64 computations
  // differ by up to ~1e-6 relative on such an element (seen: 1.2e-6 with z and weight ×1e3); rtol 1e-5 there.
  const tolerance = (op: string) => ({ rtol: op === 'gated_rmsnorm_grad' ? 1e-5 : 1e-9, atol: 1e-12 });
  it('JavaScript, lines protocol: every op the harness draws (forward kernels, backward ops, speculative sampling, the whole model)', async () => {
    for (const op of CONFORM_OPS) {
      const r = await conform({ ...base, op, port: `node ${JS}`, runs: 12, tolerance: tolerance(op) });
      expect(r.failed, `${op}: ${r.smallest?.verdict.reason}`).toBe(0);
      expect(r.passed, op).toBe(r.runs);
    }
  }, 300_000);
  it.skipIf(!numpy)(
    'Python with numpy, lines protocol: every op the harness draws (skipped where neither python3 on PATH nor /usr/bin/python3 has numpy: apt-get install python3-numpy)',
    async () => {
      for (const op of CONFORM_OPS) {
        const r = await conform({ ...base, runs: 6, op, port: `${PYTHON} ${PY}`, tolerance: tolerance(op) });
        expect(r.failed, `${op}: ${r.smallest?.verdict.reason}`).toBe(0);
        expect(r.passed, op).toBe(r.runs);
      }
    },
    300_000,
  );
  it('files protocol: both ports pass a few scan cases and a whole model', async () => {
    for (const port of [`node ${JS}`, ...(numpy ? [`${PYTHON} ${PY}`] : [])])
      for (const [op, runs] of [
        ['selective_scan', 3],
        ['model', 1],
      ] as const) {
        const r = await conform({ ...base, protocol: 'files', op, port, runs, tolerance: tolerance(op) });
        expect([r.passed, r.failed], `${port} ${op}: ${r.smallest?.verdict.reason}`).toEqual([runs, 0]);
      }
  }, 120_000);
});

describe('the two protocols give the same verdicts', () => {
  /** each of `draws` through a port in one protocol: the verdicts, without the relative errors */
  const verdicts = async (port: string, protocol: Protocol, op: string, n: number): Promise<Verdict[]> => {
    const p = openPort(port, protocol);
    const out: Verdict[] = [];
    try {
      for (const d of fc.sample(drawArbitrary(op), { numRuns: n, seed: 42 })) {
        const c = await buildCase(op, d);
        out.push(judge(c, await p.ask(c, 20000), lookup(DEFAULT_TOLERANCE, op)));
      }
    } finally {
      p.close();
    }
    return out;
  };
  const ports: Array<[string, () => string]> = [
    ['the JavaScript port', () => `node ${JS}`],
    [
      'D skipped when z is absent',
      () =>
        `node ${broken(JS, 'kernels.mjs', 'if (D) y += D.data[d] * u.data[i];', 'if (D && z) y += D.data[d] * u.data[i];')}`,
    ],
    [
      'an unsupported option (delta_softplus off)',
      () =>
        `node ${broken(JS, 'port.mjs', 'function run(op, I, a, modelDir) {', 'function run(op, I, a, modelDir) {\n  if (a.delta_softplus === false) throw Object.assign(new Error("no softplus-off"), { unsupported: true });')}`,
    ],
  ];
  for (const [what, port] of ports)
    it(`${what}: 8 seeded selective_scan cases, files and lines`, async () => {
      const cmd = port();
      const [files, lines] = [
        await verdicts(cmd, 'files', 'selective_scan', 8),
        await verdicts(cmd, 'lines', 'selective_scan', 8),
      ];
      expect(lines).toEqual(files);
      console.log(`[conform] ${what}: ${files.map((v) => v.status).join(' ')}`);
    }, 60_000);
});

describe('broken ports are caught and shrunk', () => {
  const cases: Array<[string, string, string, string, string, number]> = [
    [
      'softplus without the large-input branch',
      'selective_scan',
      'const softplus = (x) => (x > 20 ? x : Math.log1p(Math.exp(x)));',
      'const softplus = (x) => Math.log1p(Math.exp(x));',
      'kernels.mjs',
      1,
    ], // value-triggered (Δ > 709 overflows): the value seed shrinks too, to one that still draws such a Δ at size 1
    [
      'the conv reading one step late',
      'causal_conv1d',
      's += weight.data[d * W + k] * row[t + k];',
      's += weight.data[d * W + k] * (row[t + k - 1] ?? 0);',
      'kernels.mjs',
      2,
    ],
    [
      'D skipped when z is absent',
      'selective_scan',
      'if (D) y += D.data[d] * u.data[i];',
      'if (D && z) y += D.data[d] * u.data[i];',
      'kernels.mjs',
      1,
    ],
    [
      'the conv bias added twice',
      'causal_conv1d',
      'let s = bias ? bias.data[d] : 0;',
      'let s = bias ? 2 * bias.data[d] : 0;',
      'kernels.mjs',
      2,
    ],
    [
      'a chunk boundary off by one (the last step of each chunk left out of the chunk state)',
      'ssd_chunk_scan',
      'for (let s = t0; s < t1; s++) s2 +=',
      'for (let s = t0; s < t1 - 1; s++) s2 +=',
      'kernels.mjs',
      1,
    ],
    [
      'the scan backward starting from zero instead of ∂ℓ/∂h_L',
      'selective_scan_grad',
      'const dh = Array.from({ length: N }, (_, n) => dlast.data[(b * dim + d) * N + n]);',
      'const dh = Array.from({ length: N }, () => 0);',
      'grads.mjs',
      1,
    ],
    [
      'the Mamba-1 Δ bias added once where upstream adds it twice, in the whole model',
      'model',
      'm.clean ? undefined : get(`${q}.dt_proj.bias`)',
      'undefined',
      'model.mjs',
      1,
    ],
  ];
  for (const [what, op, from, to, file, largest] of cases) {
    it(`JavaScript, ${what}: caught, shrunk to no dimension above ${largest}`, async () => {
      const r = await conform({ ...base, runs: 200, op, port: `node ${broken(JS, file, from, to)}` });
      expect(r.failed).toBe(1);
      const smallest = present(r.smallest, 'smallest');
      const first = present(r.first, 'first');
      const s = caseSize(smallest.case);
      expect(s.largestDim, JSON.stringify(s.shapes)).toBeLessThanOrEqual(largest);
      // every choice shrank or stayed: no more elements than the first failure, a value seed no larger
      expect(elements(smallest.case)).toBeLessThanOrEqual(elements(first.case));
      expect(smallest.draw.seed).toBeLessThanOrEqual(first.draw.seed);
      console.log(
        `[conform] ${what}: first failure at case ${r.firstFailureAt} (${elements(first.case)} elements, seed ${first.draw.seed}), ${smallest.shrinkSteps} shrink runs, smallest ${JSON.stringify(s.shapes)} seed ${smallest.draw.seed}`,
      );
    }, 120_000);
  }
  it.skipIf(!numpy)(
    'Python, D skipped when z is absent: caught and shrunk to one element',
    async () => {
      const b = await conform({
        ...base,
        runs: 200,
        op: 'selective_scan',
        port: `${PYTHON} ${broken(PY, 'kernels.py', '    if D is not None:\n        out += D[:, None] * u', '    if D is not None and z is not None:\n        out += D[:, None] * u')}`,
      });
      expect(b.failed).toBe(1);
      expect(caseSize(b.smallest!.case).largestDim).toBe(1);
    },
    240_000,
  );
});

describe('the comparison and the harness itself', () => {
  it('the worst element names the failing output, not a passing one with a larger element difference', () => {
    // 'big' passes (relative L2 7.1e-6) with |got − want| = 1e-2; 'small' fails (7.1e-4 > 1e-4) with 1e-6.
    const T = (v: number[]) => new Tensor(Float64Array.from(v), [v.length], 'x'); // (2)
    const want = { big: T([1000, 1000]), small: T([1e-3, 1e-3]) };
    const v = compare(
      want,
      new Map([
        ['big', T([1000.01, 1000])],
        ['small', T([1e-3, 1.001e-3])],
      ]),
      1e-4,
    );
    expect(v.status).toBe('fail');
    expect(v.reason).toMatch(/^output 'small': 1 of 2 elements outside/);
    expect(v.worst).toEqual({ output: 'small', index: 1, got: 1.001e-3, want: 1e-3 });
    // all passing: the output with the largest relative error
    expect(
      compare(
        want,
        new Map([
          ['big', T([1000.01, 1000])],
          ['small', T([1e-3, 1e-3])],
        ]),
        1e-4,
      ).worst,
    ).toMatchObject({ output: 'big', index: 0 });
  });
  it('the relative error is scale-free: values near 1e±300 give the error of the same values at 1 (squares neither overflow nor underflow)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: -10, max: 10, noNaN: true }), { minLength: 1, maxLength: 8 }),
        fc.array(fc.double({ min: -1e-3, max: 1e-3, noNaN: true }), { minLength: 8, maxLength: 8 }),
        fc.integer({ min: -300, max: 300 }),
        (w, rho, e) => {
          fc.pre(w.some((v) => Math.abs(v) > 1e-3));
          // at scale 1, the plain formula (no overflow possible here), written independently
          const g1 = w.map((v, i) => v * (1 + rho[i]));
          const naive = Math.sqrt(w.reduce((s, v, i) => s + (g1[i] - v) ** 2, 0) / w.reduce((s, v) => s + v * v, 0));
          const k = 10 ** e;
          const got = relError(
            g1.map((v) => v * k),
            w.map((v) => v * k),
          );
          expect(Math.abs(got - naive)).toBeLessThanOrEqual(1e-6 * naive + 1e-12);
        },
      ),
      { numRuns: 300, seed: 7 },
    );
  });
  it('an error while drawing or building a case is thrown, never reported as a pass', async () => {
    CONFORM_SPECS.__throws = {
      shapes: { batch: [1, 1] },
      fix: () => {
        throw new Error('the case builder failed');
      },
    };
    try {
      await expect(conform({ ...base, op: '__throws', port: 'true', runs: 3 })).rejects.toThrow(
        'the case builder failed',
      );
    } finally {
      delete CONFORM_SPECS.__throws;
    }
  });
});

describe('what a bad port gets', () => {
  const d = CONV_DRAW;
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
    expect((await runPort(write('setInterval(() => {}, 1000)'), c, o)).reason).toMatch(
      /ran past the 1500 ms timeout and was killed/,
    );
    expect(performance.now() - t0).toBeLessThan(5000);
    expect((await runPort(write(''), c, o)).reason).toMatch(/wrote no out\.safetensors/);
    expect((await runPort(write("writeFileSync(dir + '/out.safetensors', 'garbage')"), c, o)).reason).toMatch(
      /unreadable/,
    );
    expect((await runPort(write(st([1, 2, 3], 0)), c, o)).reason).toMatch(/output 'final_states' missing/);
    expect((await runPort(write(st([2, 3], 0)), c, o)).reason).toMatch(
      /output 'out' has shape \[2, 3\], expected \[1, 2, 3\]/,
    );
    expect((await runPort(write(st([1, 2, 3], NaN)), c, o)).reason).toMatch(
      /output 'out'\[0\] is NaN where the reference is/,
    );
    expect(await runPort(write('console.error("no conv here"); process.exit(77)'), c, o)).toMatchObject({
      status: 'unsupported',
      reason: 'no conv here',
    });
    expect((await runPort('/nonexistent/port', c, o)).status).toBe('fail');
  }, 60_000);
  it.skipIf(spawnSync('sh', ['-c', 'command -v setsid']).status !== 0)(
    'a grandchild holding stderr (in its own session, out of reach of a group kill) does not hold the harness',
    async () => {
      const c = await buildCase('causal_conv1d', d);
      const t0 = performance.now();
      // the port leaves `sleep 4` behind with its stderr and answers unsupported at once
      const v = await runPort('setsid sleep 4 & echo held here >&2; exit 77; :', c, {
        tolerance: 1e-4,
        timeoutMs: 3000,
      });
      expect(v).toMatchObject({ status: 'unsupported', reason: 'held here' });
      expect(performance.now() - t0).toBeLessThan(1500);
    },
    20_000,
  );
  it('mil conform --save writes the smallest failing case as a golden folder that golden verify passes on the reference; exit 1', () => {
    const out = join(tmpFolder('save'), 'case');
    const port = broken(
      JS,
      'kernels.mjs',
      'if (D) y += D.data[d] * u.data[i];',
      'if (D && z) y += D.data[d] * u.data[i];',
    );
    const r = spawnSync(
      'node',
      [
        join(ROOT, 'bin', 'mil.js'),
        'conform',
        '--op',
        'selective_scan',
        '--port',
        `node ${port}`,
        '--runs',
        '100',
        '--protocol',
        'lines',
        '--save',
        out,
      ],
      {
        encoding: 'utf8',
      },
    );
    expect(r.status, r.stderr).toBe(1);
    expect(r.stdout).toMatch(/first failure at case \d+; shrunk in \d+ further runs to:\n {2}inputs: u \[1, 1, 1\]/);
    // the command it suggests is one that runs (the replay spec below runs it)
    expect(r.stdout).toContain(`rerun it: mil conform --replay ${out} --port ${JSON.stringify(`node ${port}`)}`);
    return verifyGolden(out, 'reference').then((v) => expect([v.passed, v.failed]).toEqual([1, 0]));
  }, 60_000);
});

describe('what a bad port gets in the lines protocol', () => {
  const d = CONV_DRAW;
  it('dies, hangs, garbage, another id, NaN, wrong dtype, shape or byte count, no answer, an error: a verdict naming it; the port (its whole group) is killed and restarted, and the next case passes', async () => {
    const tmp = tmpFolder('lines');
    const [mode, pids, child] = ['mode', 'pids', 'child'].map((f) => join(tmp, f)) as [string, string, string];
    const port = join(tmp, 'p.mjs');
    // the behaviour is read from the file `mode` at each request; 'ok' answers with the JS example port's kernels
    writeFileSync(
      port,
      `import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { KERNELS } from ${JSON.stringify(join(ROOT, 'examples', 'ports', 'js', 'kernels.mjs'))};
const b64 = (a) => Buffer.from(Float64Array.from(a).buffer).toString('base64');
for await (const line of createInterface({ input: process.stdin })) {
  const q = JSON.parse(line);
  appendFileSync(${JSON.stringify(pids)}, process.pid + '\\n');
  const m = readFileSync(${JSON.stringify(mode)}, 'utf8');
  const I = Object.fromEntries(Object.entries(q.inputs).map(([k, t]) => [k, { shape: t.shape, data: new Float64Array(new Uint8Array(Buffer.from(t.data_b64, 'base64')).buffer) }]));
  const out = Object.fromEntries(Object.entries(KERNELS[q.op](I, q.options)).map(([k, t]) => [k, { shape: t.shape, dtype: 'F64', data_b64: b64(t.data) }]));
  const say = (r) => process.stdout.write(JSON.stringify(r) + '\\n');
  if (m === 'ok') say({ id: q.id, outputs: out });
  if (m === 'exit') { console.error('segfault, say'); process.exit(3); }
  if (m === 'nothing') process.exit(0);
  if (m === 'hang') { const c = spawn('sleep', ['30'], { stdio: 'ignore' }); writeFileSync(${JSON.stringify(child)}, String(c.pid)); }
  if (m === 'garbage') process.stdout.write('computing...\\n');
  if (m === 'id') say({ id: q.id + 1, outputs: out });
  if (m === 'nan') say({ id: q.id, outputs: { ...out, out: { ...out.out, data_b64: b64(new Float64Array(6).fill(NaN)) } } });
  if (m === 'dtype') say({ id: q.id, outputs: { ...out, out: { ...out.out, dtype: 'F32' } } });
  if (m === 'shape') say({ id: q.id, outputs: { ...out, out: { ...out.out, shape: [2, 3] } } });
  if (m === 'bytes') say({ id: q.id, outputs: { ...out, out: { ...out.out, data_b64: b64([1, 2]) } } });
  if (m === 'error') say({ id: q.id, error: 'out of memory' });
  if (m === 'unsupported') say({ id: q.id, unsupported: 'no conv here' });
}
`,
    );
    const c = await buildCase('causal_conv1d', d);
    const p = openPort(`node ${port}`, 'lines');
    const lastPid = () => lastOf(readFileSync(pids, 'utf8').trim().split('\n'));
    const ask = async (m: string) => {
      writeFileSync(mode, m);
      return judge(c, await p.ask(c, 1500), DEFAULT_TOLERANCE.causal_conv1d);
    };
    try {
      expect((await ask('ok')).status).toBe('pass');
      const expectations: Array<[string, RegExp, boolean]> = [
        // mode, the verdict's reason, whether the port is restarted after it
        ['exit', /the port exited 3 without answering request \d+: segfault, say/, true],
        ['nothing', /the port exited 0 without answering request \d+/, true],
        ['hang', /ran past the 1500 ms timeout and was killed/, true],
        ['garbage', /the port wrote a line that is not JSON: "computing\.\.\."/, true],
        ['id', /the port answered id (\d+) to request (?!\1)\d+/, true],
        ['nan', /output 'out'\[0\] is NaN where the reference is/, false],
        ['dtype', /output 'out' has dtype "F32"; the lines protocol carries 'F64'/, false],
        ['shape', /output 'out' has shape \[2, 3\], expected \[1, 2, 3\]/, false],
        ['bytes', /output 'out' has 16 bytes of data for shape \[1, 2, 3\] \(48 expected\)/, false],
        ['error', /the port answered error: out of memory/, false],
      ];
      for (const [m, reason, restarted] of expectations) {
        const pid = lastPid();
        const t0 = performance.now();
        const v = await ask(m);
        expect(v.status, m).toBe('fail');
        expect(v.reason, m).toMatch(reason);
        expect(performance.now() - t0, m).toBeLessThan(4000);
        expect((await ask('ok')).status, `${m}: the next case`).toBe('pass');
        expect(lastPid() !== pid, `${m}: restarted`).toBe(restarted);
      }
      expect(await ask('unsupported')).toMatchObject({ status: 'unsupported', reason: 'no conv here' });
      // the hang's child was in the port's group: killed with it
      const sleeper = Number(readFileSync(child, 'utf8'));
      for (let t = 0; t < 40 && alive(sleeper); t++) await new Promise((r) => setTimeout(r, 50));
      expect(alive(sleeper), 'the hung port’s child is gone').toBe(false);
    } finally {
      p.close();
    }
  }, 60_000);
});

describe('the tolerance', () => {
  const T = (v: number[]) => new Tensor(Float64Array.from(v), [v.length], 'x'); // (n)
  it('is numpy’s allclose per element: |got − want| ≤ atol + rtol·|want|, the count of elements outside named', () => {
    // written out: element 0 is inside by 1e-12 + 1e-3·1 = 1.000000000001e-3, element 1 is outside
    const want = { out: T([1, 2, 0, 0]) };
    const got = new Map([['out', T([1 + 0.9e-3, 2 + 2.1e-3, 0.5e-12, -0.5e-12])]]);
    const v = compare(want, got, { rtol: 1e-3, atol: 1e-12 });
    expect(v.status).toBe('fail');
    expect(v.reason).toMatch(/^output 'out': 1 of 4 elements outside .*worst out\[1\]/);
    expect(v.excess!.out).toBeCloseTo(2.1e-3 / (1e-12 + 2e-3), 6);
    expect(compare(want, got, { rtol: 1.1e-3, atol: 1e-12 }).status).toBe('pass');
    expect(compare(want, got, { rtol: 1.1e-3, atol: 0 }).status).toBe('fail'); // the zeros need atol
  });
  it('a correct port whose outputs are ~1e-29 (a sum that cancels, computed in another order) passes on atol, and failed on a relative measure alone', () => {
    const want = { out: T([1.3e-29, -2.2e-29, 0.7e-29]) };
    const got = new Map([['out', T([-0.4e-29, 3.1e-29, 0])]]);
    expect(compare(want, got, DEFAULT_TOLERANCE.selective_scan).status).toBe('pass');
    expect(compare(want, got, { rtol: 1e-3, atol: 0 }).status).toBe('fail');
  });
  it('docs/conform.md tabulates every op’s default rtol and atol as the code has them', () => {
    const md = readFileSync(join(ROOT, 'docs', 'conform.md'), 'utf8');
    const rows = [...md.matchAll(/^\| `(\w+)` \| ([\d.e-]+) \| ([\d.e-]+) \|/gm)].map((m) => [
      m[1],
      Number(m[2]),
      Number(m[3]),
    ]);
    expect(rows).toEqual(Object.entries(DEFAULT_TOLERANCE).map(([op, t]) => [op, t.rtol, t.atol]));
    expect(Object.keys(DEFAULT_TOLERANCE).sort()).toEqual([...CONFORM_OPS].sort());
  });
});

describe('replay', () => {
  const mil = (...args: string[]) => spawnSync('node', [join(ROOT, 'bin', 'mil.js'), ...args], { encoding: 'utf8' });
  it('--save keeps the shrunk case (fewer elements, a smaller value seed than the first failure); --replay reruns it to the same verdict, and a fixed port passes it', () => {
    const out = join(tmpFolder('replay'), 'case');
    const port = `node ${broken(JS, 'kernels.mjs', 'if (D) y += D.data[d] * u.data[i];', 'if (D && z) y += D.data[d] * u.data[i];')}`;
    const r = mil(
      'conform',
      '--op',
      'selective_scan',
      '--port',
      port,
      '--protocol',
      'lines',
      '--seed',
      '3',
      '--save',
      out,
      '--json',
    );
    expect(r.status, r.stderr).toBe(1);
    const j = JSON.parse(r.stdout) as {
      first: { shapes: Record<string, number[]>; drawn: { seed: number } };
      smallest: { shapes: Record<string, number[]>; drawn: { seed: number }; verdict: Verdict };
    };
    const count = (s: Record<string, number[]>) =>
      Object.values(s).reduce((n, sh) => n + sh.reduce((a, b) => a * b, 1), 0);
    expect(count(j.smallest.shapes)).toBeLessThan(count(j.first.shapes));
    expect(j.smallest.drawn.seed).toBeLessThan(j.first.drawn.seed);
    for (const protocol of ['lines', 'files']) {
      const again = mil('conform', '--replay', out, '--port', port, '--protocol', protocol, '--json');
      expect(again.status, again.stderr).toBe(1);
      const a = JSON.parse(again.stdout) as { verdict: Verdict; saved: Verdict; same: boolean };
      expect(a.same).toBe(true);
      expect(a.verdict.reason).toBe(j.smallest.verdict.reason);
    }
    const fixed = mil('conform', '--replay', out, '--port', `node ${JS}`);
    expect(fixed.status, fixed.stderr).toBe(0);
    expect(fixed.stdout).toMatch(
      /^selective_scan \(replay of .*\): pass\n {2}saved verdict: fail — .* \(this run differs\)/,
    );
  }, 60_000);
  it('a saved timeout replays as a timeout with the same limit', () => {
    const out = join(tmpFolder('replay'), 'case');
    const hang = join(tmpFolder('port'), 'hang.mjs');
    writeFileSync(hang, 'setInterval(() => {}, 1000);\n');
    const r = mil(
      'conform',
      '--op',
      'causal_conv1d',
      '--port',
      `node ${hang}`,
      '--timeout',
      '700',
      '--fail-fast',
      '--save',
      out,
    );
    expect(r.status, r.stderr).toBe(1);
    expect(JSON.parse(readFileSync(join(out, 'conform.json'), 'utf8'))).toMatchObject({
      timeoutMs: 700,
      verdict: { timedOutMs: 700 },
    });
    const t0 = performance.now();
    const again = mil('conform', '--replay', out, '--port', `node ${hang}`, '--protocol', 'lines');
    expect(again.status).toBe(1);
    expect(again.stdout).toMatch(/timeout 700 ms\): fail — the port ran past the 700 ms timeout and was killed/);
    expect(performance.now() - t0).toBeLessThan(10_000);
  }, 60_000);
  it('a folder that is not a saved case, or a replay with --op, is refused before the port runs', () => {
    const dir = tmpFolder('replay');
    const r = mil('conform', '--replay', dir, '--port', 'true');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/conform\.json/);
    expect(mil('conform', '--replay', dir, '--port', 'true', '--op', 'selective_scan').stderr).toMatch(
      /--op does not go with --replay/,
    );
  }, 30_000);
});

describe('Ctrl-C', () => {
  // files: the case folder; lines: the model folder of a `model` request (the only folder that protocol makes)
  it.each(['files', 'lines'])(
    '%s protocol: SIGINT to mil conform kills the running port and removes the case folder; exit 130',
    async (protocol) => {
      const tmp = tmpFolder('sigint');
      const marker = join(tmp, 'marker');
      const port = join(tmp, 'port.mjs');
      writeFileSync(
        port,
        protocol === 'files'
          ? `import { writeFileSync } from 'node:fs';\nwriteFileSync(${JSON.stringify(marker)}, process.pid + ' ' + process.argv[2]);\nsetInterval(() => {}, 1000);\n`
          : `import { writeFileSync } from 'node:fs';\nimport { createInterface } from 'node:readline';\nsetInterval(() => {}, 1000); // outlives the end of stdin\nfor await (const line of createInterface({ input: process.stdin })) writeFileSync(${JSON.stringify(marker)}, process.pid + ' ' + JSON.parse(line).model_dir);\n`,
      );
      const child = spawn(
        'node',
        [
          join(ROOT, 'bin', 'mil.js'),
          'conform',
          '--op',
          protocol === 'files' ? 'selective_scan' : 'model',
          '--port',
          `node ${port}`,
          '--runs',
          '3',
          '--protocol',
          protocol,
        ],
        {
          env: { ...process.env, TMPDIR: tmp },
          stdio: 'ignore',
        },
      );
      const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
      while (!existsSync(marker)) await new Promise((r) => setTimeout(r, 50));
      const [pid, dir] = readFileSync(marker, 'utf8').split(' ') as [string, string];
      expect(existsSync(dir)).toBe(true);
      child.kill('SIGINT');
      expect(await exited).toBe(130);
      for (let t = 0; t < 40 && alive(Number(pid)); t++) await new Promise((r) => setTimeout(r, 50));
      const left = alive(Number(pid));
      if (left) process.kill(Number(pid), 'SIGKILL'); // a failing run leaves nothing behind either
      expect(left, 'the port process is gone').toBe(false);
      expect(existsSync(dir), 'the case folder is removed').toBe(false);
    },
    30_000,
  );
});

describe('a port that checks nothing', () => {
  it('mil conform exits 5, not 0, when the port answers unsupported (77) to every case', () => {
    const port = join(tmpFolder('unsupported'), 'port.mjs');
    writeFileSync(port, 'console.error("nothing here"); process.exit(77);\n');
    const r = spawnSync(
      'node',
      [join(ROOT, 'bin', 'mil.js'), 'conform', '--op', 'selective_scan', '--port', `node ${port}`, '--runs', '3'],
      {
        encoding: 'utf8',
      },
    );
    expect(r.status, r.stderr).toBe(5);
    expect(r.stdout).toMatch(/0 passed, 0 failed, 3 unsupported of 3 cases/);
    expect(r.stderr).toMatch(/nothing was checked/);
  }, 60_000);
});

describe('the library entry', () => {
  it('properties(fn) checks an in-process port: a correct one passes, a broken one fails with the output and the case named', async () => {
    const { selectiveScan } = await import('../lib/ref/selective_scan.js');
    const { Tensor } = await import('../lib/tensor.js');
    const port =
      (scale: number) =>
      async (
        op: string,
        I: Record<string, { shape: number[]; data: ArrayLike<number> }>,
        a: Record<string, unknown>,
      ) => {
        if (op !== 'selective_scan') return null;
        const t = (k: string) => (I[k] ? new Tensor(Float64Array.from(I[k].data), I[k].shape, k) : undefined);
        const r = selectiveScan({
          u: present(t('u'), 'u'),
          delta: present(t('delta'), 'delta'),
          A: present(t('A'), 'A'),
          B: present(t('B'), 'B'),
          C: present(t('C'), 'C'),
          D: t('D'),
          z: t('z'),
          deltaBias: t('delta_bias'),
          deltaSoftplus: a.delta_softplus === true,
          initialState: t('initial_state'),
        });
        return {
          out: { shape: [...r.out.shape], data: r.out.data.map((v) => v * scale) },
          last_state: { shape: [...r.lastState.shape], data: r.lastState.data },
        };
      };
    await fc.assert(property('selective_scan', port(1)), { numRuns: 30 });
    const e = await fc.assert(property('selective_scan', port(1.01)), { numRuns: 30 }).then(
      () => null,
      (x: Error) => x,
    );
    expect(String(e?.cause)).toMatch(
      /selective_scan: output 'out': \d+ of \d+ elements not within atol \+ rtol·\|want\|; worst element out\[\d+\]/,
    );
  }, 60_000);
});
