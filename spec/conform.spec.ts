/**
 * The conformance harness (lib/conform/, `mil conform`, docs/conform.md):
 *  - the example ports (plain JavaScript; Python with numpy where python3 has numpy) pass every op the
 *    harness draws: forward kernels, backward ops, speculative sampling and the whole model;
 *  - deliberately broken copies of them — softplus without its large-input branch, the conv reading one
 *    step late, D skipped when z is absent, the bias added twice, a chunk boundary off by one — are each
 *    caught and shrunk to a case whose largest dimension is asserted small;
 *  - what a bad port does (crash, hang, no file, wrong shape, NaN) is a clear verdict, and the harness never
 *    hangs; the smallest failing case saves as a golden folder that `mil golden verify` reads;
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
} from '../lib/conform/index.js';
import { Tensor, relError } from '../lib/tensor.js';
import { verifyGolden } from '../lib/golden/verify.js';
import { tmpFolder } from './tmp.js';

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
const base = { runs: 25, seed: 1, tolerance: 1e-4, timeoutMs: 20000 };

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

describe('the example ports pass every op', () => {
  // Float64 ports agree with the reference to 1e-9 on every op but one: gated_rmsnorm_grad at group size 1
  // and |x| ≫ √ε, where ∂out/∂x ∝ 1 − n² ≈ ε/x² is a cancellation, so two correct float64 computations
  // differ by up to ~1e-5 relative (seen: x ×1e3, 1.8e-6); that op is checked at the default 1e-4.
  const tolerance = (op: string) => (op === 'gated_rmsnorm_grad' ? 1e-4 : 1e-9);
  it('JavaScript: every op the harness draws (forward kernels, backward ops, speculative sampling, the whole model)', async () => {
    for (const op of CONFORM_OPS) {
      const r = await conform({ ...base, op, port: `node ${JS}`, runs: 12, tolerance: tolerance(op) });
      expect(r.failed, `${op}: ${r.smallest?.verdict.reason}`).toBe(0);
      expect(r.passed, op).toBe(r.runs);
    }
  }, 300_000);
  it.skipIf(!numpy)(
    'Python with numpy: every op the harness draws (skipped where neither python3 on PATH nor /usr/bin/python3 has numpy: apt-get install python3-numpy)',
    async () => {
      for (const op of CONFORM_OPS) {
        const r = await conform({ ...base, runs: 6, op, port: `${PYTHON} ${PY}`, tolerance: tolerance(op) });
        expect(r.failed, `${op}: ${r.smallest?.verdict.reason}`).toBe(0);
        expect(r.passed, op).toBe(r.runs);
      }
    },
    300_000,
  );
});

describe('broken ports are caught and shrunk', () => {
  const cases: Array<[string, string, string, string, string, number]> = [
    [
      'softplus without the large-input branch',
      'selective_scan',
      'const softplus = (x) => (x > 20 ? x : Math.log1p(Math.exp(x)));',
      'const softplus = (x) => Math.log1p(Math.exp(x));',
      'kernels.mjs',
      12,
    ], // value-triggered (Δ > 709 overflows): the length shrinks only to where the drawn values still hold one
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
      expect(r.smallest).toBeDefined();
      const s = caseSize(r.smallest!.case);
      expect(s.largestDim, JSON.stringify(s.shapes)).toBeLessThanOrEqual(largest);
      console.log(
        `[conform] ${what}: first failure at case ${r.firstFailureAt}, ${r.smallest!.shrinkSteps} shrink runs, smallest ${JSON.stringify(s.shapes)}`,
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
    expect(v.reason).toMatch(/^output 'small' relative error/);
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
          const g1 = w.map((v, i) => v * (1 + rho[i]!));
          const naive = Math.sqrt(w.reduce((s, v, i) => s + (g1[i]! - v) ** 2, 0) / w.reduce((s, v) => s + v * v, 0));
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
  const d = {
    shapes: { batch: 1, dim: 2, len: 3, width: 2 },
    seed: 1,
    present: { bias: true, initial_states: false },
    toggles: { activation: 'silu' },
    scale: {},
  };
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
        '--save',
        out,
      ],
      {
        encoding: 'utf8',
      },
    );
    expect(r.status, r.stderr).toBe(1);
    expect(r.stdout).toMatch(/first failure at case \d+; shrunk in \d+ further runs to:\n {2}inputs: u \[1, 1, 1\]/);
    return verifyGolden(out, 'reference').then((v) => expect([v.passed, v.failed]).toEqual([1, 0]));
  }, 60_000);
});

describe('Ctrl-C', () => {
  it('SIGINT to mil conform kills the running port and removes the case folder; exit 130', async () => {
    const tmp = tmpFolder('sigint');
    const marker = join(tmp, 'marker');
    const port = join(tmp, 'port.mjs');
    writeFileSync(
      port,
      `import { writeFileSync } from 'node:fs';\nwriteFileSync(${JSON.stringify(marker)}, process.pid + ' ' + process.argv[2]);\nsetInterval(() => {}, 1000);\n`,
    );
    const child = spawn(
      'node',
      [join(ROOT, 'bin', 'mil.js'), 'conform', '--op', 'selective_scan', '--port', `node ${port}`, '--runs', '3'],
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
    const alive = () => {
      try {
        process.kill(Number(pid), 0);
        return !/^Z/m.test(spawnSync('ps', ['-o', 'stat=', '-p', pid], { encoding: 'utf8' }).stdout); // a zombie is dead
      } catch {
        return false;
      }
    };
    for (let t = 0; t < 40 && alive(); t++) await new Promise((r) => setTimeout(r, 50));
    const left = alive();
    if (left) process.kill(Number(pid), 'SIGKILL'); // a failing run leaves nothing behind either
    expect(left, 'the port process is gone').toBe(false);
    expect(existsSync(dir), 'the case folder is removed').toBe(false);
  }, 30_000);
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
          u: t('u')!,
          delta: t('delta')!,
          A: t('A')!,
          B: t('B')!,
          C: t('C')!,
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
