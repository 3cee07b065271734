/**
 * The property suite as a library (lib/conform/properties.ts, docs/properties.md):
 *  - `allclose` is numpy.allclose, |got − want| ≤ atol + rtol·|want| elementwise: checked against numpy's own
 *    `isclose` on random pairs with edge values (NaN, ±Inf, zeros, signs) where a numpy python3 is found;
 *  - an independent implementation — the JavaScript example port's plain loops (examples/ports/js) — passes
 *    the properties of the forward and backward ops it implements, and the project's own reference passes
 *    every op; a deliberately wrong selective scan (the D skip term dropped) fails, with the op, the output and
 *    its worst element named, and fast-check shrinks it to a case of one element per dimension;
 *  - bad arguments (an unknown op, a negative tolerance) are typed errors naming the option;
 *  - docs/properties.md's example is spec/properties_example.spec.ts, character for character (the spec runs).
 * Measured here (2 shared cores): about 20 s for this file.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  allclose,
  properties,
  property,
  referencePort,
  PROPERTY_OPS,
  type PortFunction,
  type PortTensor,
} from '../lib/conform/index.js';
import { ArgumentError } from '../lib/errors.js';
import { lookup } from '../lib/checked.js';

const ROOT = join(import.meta.dirname, '..');
type Op = (I: Record<string, PortTensor>, a: Record<string, unknown>) => Record<string, PortTensor>;
const jsPort = async (): Promise<Record<string, Op>> => {
  const dir = join(ROOT, 'examples', 'ports', 'js');
  const { KERNELS } = (await import(pathToFileURL(join(dir, 'kernels.mjs')).href)) as { KERNELS: Record<string, Op> };
  const { GRADS } = (await import(pathToFileURL(join(dir, 'grads.mjs')).href)) as { GRADS: Record<string, Op> };
  return { ...KERNELS, ...GRADS };
};
const asPort =
  (ops: Record<string, Op>): PortFunction =>
  (op, inputs, attrs) =>
    ops[op]?.(inputs, attrs) ?? null;

/** The first python3 that imports numpy (PATH's, then Debian's); undefined when none has it. */
const PYTHON = ['python3', '/usr/bin/python3'].find(
  (py) => spawnSync(py, ['-c', 'import numpy'], { encoding: 'utf8' }).status === 0,
);

describe('allclose', () => {
  it.skipIf(!PYTHON)('agrees with numpy.isclose element for element, edge values included', () => {
    const special = [0, -0, 1, -1, 1e-9, 1e300, NaN, Infinity, -Infinity];
    const pairs = fc.sample(
      fc.tuple(
        fc.oneof(fc.double({ noNaN: true, min: -10, max: 10 }), fc.constantFrom(...special)),
        fc.oneof(fc.double({ noNaN: true, min: -10, max: 10 }), fc.constantFrom(...special)),
        fc.constantFrom(0, 1e-5, 0.1, 1),
        fc.constantFrom(0, 1e-8, 0.5),
      ),
      { numRuns: 400, seed: 7 },
    );
    const ours = pairs.map(
      ([a, b, rtol, atol]) =>
        allclose({ x: { shape: [1], data: [b] } }, { x: { shape: [1], data: [a] } }, { rtol, atol }).ok,
    );
    const script =
      'import json,sys,numpy as np\n' +
      'p=json.loads(sys.stdin.read(), parse_constant=float)\n' +
      'print(json.dumps([bool(np.isclose(a,b,rtol=r,atol=t)) for a,b,r,t in p]))';
    const py = spawnSync(PYTHON!, ['-c', script], {
      input: JSON.stringify(pairs, (_, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v))
        .replace(/"NaN"/g, 'NaN')
        .replace(/"-Infinity"/g, '-Infinity')
        .replace(/"Infinity"/g, 'Infinity'),
      encoding: 'utf8',
    });
    expect(py.stderr).toBe('');
    expect(ours).toEqual(JSON.parse(py.stdout) as boolean[]);
    expect(ours.filter((x) => x).length).toBeGreaterThan(20); // both outcomes occur
    expect(ours.filter((x) => !x).length).toBeGreaterThan(20);
  });

  it('names the worst element past its bound, a missing output and a wrong shape', () => {
    const want = { a: { shape: [3], data: [1, 100, 0] }, b: { shape: [2], data: [1, 2] } };
    const r = allclose(
      want,
      { a: { shape: [3], data: [1.5, 101, 0] }, b: { shape: [2], data: [1, 2] } },
      { rtol: 0.01 },
    );
    // |1.5 − 1| = 0.5 > 0.01·1 + 1e-8 by 0.49; |101 − 100| = 1 ≤ 0.01·100 + 1e-8
    expect(r).toMatchObject({ ok: false, worst: { output: 'a', index: 0, got: 1.5, want: 1 } });
    expect(r.reason).toBe("output 'a': 1 of 3 elements not within atol + rtol·|want|");
    expect(allclose(want, { a: want.a }).reason).toBe("output 'b' missing");
    expect(allclose(want, { ...want, b: { shape: [1, 2], data: [1, 2] } }).reason).toMatch(
      /output 'b' has shape \[1, 2\], expected \[2\]/,
    );
    expect(allclose(want, want)).toEqual({ ok: true });
  });

  it('refuses a bad tolerance or op by name before any case runs', () => {
    expect(() => allclose({}, {}, { rtol: -1 })).toThrow(ArgumentError);
    expect(() => allclose({}, {}, { atol: NaN })).toThrow(/atol/);
    expect(() => property('selective_scan', referencePort, { rtol: -1e-3 })).toThrow(/rtol.*-0\.001/s);
    expect(() => properties(referencePort, { ops: ['selective_scam'] })).toThrow(/op.*selective_scam/s);
  });
});

describe('properties over a port function', () => {
  it("an independent float64 implementation (the JavaScript example port's loops) passes forward and backward ops", async () => {
    const js = await jsPort();
    const ops = ['selective_scan', 'causal_conv1d', 'gated_rmsnorm', 'selective_scan_grad', 'causal_conv1d_grad'];
    // two float64 computations of the same math in a different order: a few ulp apart, up to the inputs' ×1e3
    const ps = properties(asPort(js), { ops, rtol: 1e-9, atol: 1e-9 });
    for (const op of ops) await fc.assert(lookup(ps, op), { numRuns: 25, seed: 42 });
  }, 60_000);

  it("the project's own reference passes every op's property", async () => {
    const ps = properties(referencePort, { rtol: 0, atol: 0 }); // the same code: bit for bit
    expect(Object.keys(ps).sort()).toEqual([...PROPERTY_OPS].sort());
    for (const p of Object.values(ps)) await fc.assert(p, { numRuns: 3, seed: 1 });
  }, 60_000);

  it('a selective scan without the D skip term fails, names the output and shrinks to one element per dimension', async () => {
    const js = await jsPort();
    const noD: Op = (I, a) => js.selective_scan({ ...I, D: undefined as unknown as PortTensor }, a);
    const r = await fc.check(property('selective_scan', asPort({ selective_scan: noD }), { rtol: 1e-4, atol: 1e-6 }), {
      numRuns: 100,
      seed: 3,
    });
    expect(r.failed).toBe(true);
    expect(String(r.errorInstance)).toMatch(
      /selective_scan: output 'out': \d+ of \d+ elements not within atol \+ rtol·\|want\|; worst element out\[\d+\] = .*, reference .*; inputs u \[/,
    );
    const [d] = r.counterexample!;
    expect(d.present.D).toBe(true); // what the bug needs
    expect(d.shapes).toMatchObject({ batch: 1, dim: 1, len: 1, state: 1 }); // and nothing more
    // the same port without the mutation passes the same draws
    await fc.assert(property('selective_scan', asPort(js), { rtol: 1e-4, atol: 1e-6 }), { numRuns: 100, seed: 3 });
  }, 60_000);

  it('an op the port answers null to throughout checks nothing and fails', async () => {
    const r = await fc.check(
      property('causal_conv1d', () => null),
      { numRuns: 5, seed: 1, maxSkipsPerRun: 2 },
    );
    expect(r.failed).toBe(true);
  });
});

describe('docs/properties.md', () => {
  it("the page's example is spec/properties_example.spec.ts, which the suite runs", () => {
    const md = readFileSync(join(ROOT, 'docs', 'properties.md'), 'utf8');
    const block = /<!-- spec\/properties_example\.spec\.ts -->\n```ts\n([\s\S]*?)```/.exec(md)?.[1];
    expect(block).toBe(readFileSync(join(ROOT, 'spec', 'properties_example.spec.ts'), 'utf8'));
    expect(block!.trim().split('\n').length).toBeLessThanOrEqual(11);
  });
});
