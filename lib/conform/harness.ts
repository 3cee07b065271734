/**
 * `mil conform`: property-based checking of a port (any program, any language) against the float64
 * references. The protocol (docs/conform.md):
 *
 *   the harness writes    DIR/case.json          {schema: "mil-conform/1", op, attrs, inputs, outputs, layout}
 *                         DIR/case.safetensors   every input, float64, by its name
 *                         DIR/model/             for op "model": the checkpoint (config.json, …, model.safetensors)
 *   and runs              CMD DIR                (through sh; CMD may hold arguments)
 *   the port writes       DIR/out.safetensors    every output named in case.json (F64, F32, F16 or BF16)
 *   and exits             0 done · 77 this op or option is unsupported (first stderr line: why) · else a crash
 *
 * Each case gets `timeoutMs` (default 20 s); past it the port's whole process group is killed. A case fails
 * when the port crashes, times out, writes no out.safetensors or an unreadable one, leaves an output out,
 * gives a wrong shape, a NaN/Inf where the reference is finite, or a relative L2 error above the tolerance.
 * fast-check draws the cases (lib/conform/cases.ts) and, on a failure, shrinks through the same loop to the
 * smallest case that still fails; that case is printed and can be saved as a golden folder.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { getTensor, readSafetensors, safetensorsChunks } from '../io/safetensors.js';
import { writeFolder, type WriteData } from '../io/writer.js';
import { relError, type Tensor } from '../tensor.js';
import { modelFiles } from '../model/convert.js';
import { GOLDEN_OPS } from '../golden/ops.js';
import { SCHEMA } from '../golden/verify.js';
import { buildCase, drawArbitrary, type ConformCase, type Draw } from './cases.js';

export const CONFORM_SCHEMA = 'mil-conform/1';
export const EXIT_UNSUPPORTED = 77;

export interface Verdict {
  status: 'pass' | 'fail' | 'unsupported';
  reason?: string;
  /** relative L2 error per output */
  errors: Record<string, number>;
  /** the element furthest from the reference: output, flat index, port value, reference value */
  worst?: { output: string; index: number; got: number; want: number };
}

/** The files of a case folder (what the port reads). */
export function caseFiles(c: ConformCase): Array<[string, WriteData]> {
  const json = {
    schema: CONFORM_SCHEMA,
    op: c.op,
    attrs: c.attrs,
    inputs: Object.keys(c.inputs),
    outputs: Object.keys(c.expected),
    layout: c.attrs.layout ?? GOLDEN_OPS[c.op]?.layout,
    upstream: GOLDEN_OPS[c.op]?.upstream,
  };
  const files: Array<[string, WriteData]> = [
    ['case.json', JSON.stringify(json, null, 1) + '\n'],
    ['case.safetensors', safetensorsChunks(c.inputs, { schema: CONFORM_SCHEMA }, 'F64').chunks],
  ];
  if (c.model) for (const [rel, data] of modelFiles(c.model, { dtype: 'F64' })) files.push([`model/${rel}`, data]);
  return files;
}

/** The port process groups running now and their case folders: what {@link stopPorts} ends and removes. */
const live = { groups: new Set<number>(), dirs: new Set<string>() };

/**
 * Kill every port process group still running and remove their case folders, at once (synchronous, so a
 * signal handler can call it before exiting: `mil conform` does on Ctrl-C and SIGTERM).
 */
export function stopPorts(): void {
  for (const g of live.groups) {
    try {
      process.kill(-g, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  for (const d of live.dirs) rmSync(d, { recursive: true, force: true });
  live.groups.clear();
  live.dirs.clear();
}

/** Run the port on one case; never throws for what the port does, never hangs past the timeout. */
export async function runPort(
  cmd: string,
  c: ConformCase,
  o: { tolerance: number; timeoutMs: number },
): Promise<Verdict> {
  const dir = mkdtempSync(join(tmpdir(), 'mil-conform-'));
  live.dirs.add(dir);
  try {
    writeFolder(join(dir, 'case'), (stage) => {
      for (const [rel, data] of caseFiles(c)) stage.writeFile(rel, data);
    });
    const caseDir = join(dir, 'case');
    const r = await execPort(cmd, caseDir, o.timeoutMs);
    const tail = r.stderr.trim().split('\n').slice(-3).join(' | ');
    if (r.timedOut)
      return { status: 'fail', reason: `the port ran past the ${o.timeoutMs} ms timeout and was killed`, errors: {} };
    if (r.code === EXIT_UNSUPPORTED)
      return {
        status: 'unsupported',
        reason: r.stderr.trim().split('\n')[0] || 'unsupported (no reason given)',
        errors: {},
      };
    if (r.code !== 0)
      return {
        status: 'fail',
        reason: `the port exited ${r.code ?? `by signal ${r.signal}`}${tail ? `: ${tail}` : ''}`,
        errors: {},
      };
    const outPath = join(caseDir, 'out.safetensors');
    if (!existsSync(outPath))
      return { status: 'fail', reason: 'the port exited 0 but wrote no out.safetensors', errors: {} };
    let got: Map<string, Tensor>;
    try {
      const f = readSafetensors(outPath);
      got = new Map([...f.tensors.keys()].map((k) => [k, getTensor(f, k)]));
    } catch (e) {
      return { status: 'fail', reason: `out.safetensors is unreadable: ${(e as Error).message}`, errors: {} };
    }
    return compare(c.expected, got, o.tolerance);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    live.dirs.delete(dir);
  }
}

/**
 * The verdict on a port's outputs. An output fails when missing, misshapen, non-finite where the reference is
 * finite, or with relative L2 error ‖got − want‖ / ‖want‖ above the tolerance. The worst element is the one
 * furthest (|got − want|) from the reference in the output that fails by the most (non-finite first), so it
 * always names a failing output; when all pass, in the output with the largest relative error.
 */
export function compare(expected: Record<string, Tensor>, got: Map<string, Tensor>, tolerance: number): Verdict {
  const errors: Record<string, number> = {};
  const problems: string[] = [];
  let worst: Verdict['worst'];
  let worstKey: [failing: number, error: number] = [-1, -1];
  for (const [name, want] of Object.entries(expected)) {
    const g = got.get(name);
    if (!g) {
      problems.push(`output '${name}' missing`);
      continue;
    }
    if (g.shape.join(',') !== want.shape.join(',')) {
      problems.push(`output '${name}' has shape [${g.shape.join(', ')}], expected [${want.shape.join(', ')}]`);
      continue;
    }
    let nonFinite = -1;
    let at = 0;
    let atDiff = -1;
    for (let i = 0; i < want.size; i++) {
      const a = g.data[i]!;
      const b = want.data[i]!;
      if (!Number.isFinite(a) && Number.isFinite(b) && nonFinite < 0) nonFinite = i;
      const diff = Number.isFinite(a) ? Math.abs(a - b) : Infinity;
      if (diff > atDiff) [at, atDiff] = [i, diff];
    }
    errors[name] = relError(g.data, want.data);
    const failing = nonFinite >= 0 || !(errors[name] <= tolerance);
    const key: [number, number] = [
      failing ? 1 : 0,
      nonFinite >= 0 ? Infinity : Number.isNaN(errors[name]) ? Infinity : errors[name],
    ];
    if (want.size > 0 && (key[0] > worstKey[0] || (key[0] === worstKey[0] && key[1] > worstKey[1]))) {
      worstKey = key;
      const i = nonFinite >= 0 ? nonFinite : at;
      worst = { output: name, index: i, got: g.data[i]!, want: want.data[i]! };
    }
    if (nonFinite >= 0)
      problems.push(
        `output '${name}'[${nonFinite}] is ${g.data[nonFinite]} where the reference is ${want.data[nonFinite]}`,
      );
    else if (!(errors[name] <= tolerance))
      problems.push(`output '${name}' relative error ${errors[name].toExponential(2)} > ${tolerance}`);
  }
  return problems.length
    ? { status: 'fail', reason: problems.join('; '), errors, worst }
    : { status: 'pass', errors, worst };
}

/**
 * Run the port in its own process group. The case ends when the port's shell exits (or the timeout kills the
 * group), not when its stderr closes: a grandchild that keeps stderr open (even one in a new session, which a
 * group kill cannot reach) never holds the harness. Whatever the port left in its group is killed on exit.
 */
function execPort(
  cmd: string,
  dir: string,
  timeoutMs: number,
): Promise<{ code: number | null; signal: string | null; stderr: string; timedOut: boolean }> {
  return new Promise((resolve) => {
    const p = spawn('sh', ['-c', `${cmd} "$1"`, 'sh', dir], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    if (p.pid !== undefined) live.groups.add(p.pid);
    let stderr = '';
    let timedOut = false;
    let done = false;
    const killGroup = () => {
      try {
        process.kill(-p.pid!, 'SIGKILL'); // the whole group: sh and whatever it started
      } catch {
        /* already gone */
      }
    };
    const finish = (code: number | null, signal: string | null) => {
      if (done) return;
      done = true;
      live.groups.delete(p.pid!);
      clearTimeout(timer);
      p.stderr.destroy(); // a grandchild may still hold the pipe: stop reading it
      resolve({ code, signal, stderr, timedOut });
    };
    p.stderr.on('data', (b: Buffer) => {
      if (stderr.length < 1 << 16) stderr += b.toString('utf8');
    });
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
      setTimeout(() => finish(null, 'SIGKILL'), 200); // if 'exit' never comes, do not wait for it
    }, timeoutMs);
    p.on('error', (e) => {
      clearTimeout(timer);
      done = true;
      resolve({ code: 127, signal: null, stderr: e.message, timedOut: false });
    });
    p.on('close', (code, signal) => finish(code, signal));
    p.on('exit', (code, signal) => {
      killGroup(); // the port is done: what it left behind in its group goes too
      // stderr written before the exit is read within the grace; 'close' usually comes first
      setTimeout(() => finish(code, signal), 100);
    });
  });
}

export interface ConformOptions {
  op: string;
  port: string;
  runs: number;
  seed: number;
  tolerance: number;
  timeoutMs: number;
  failFast?: boolean;
  onCase?: (n: number, c: ConformCase, v: Verdict) => void;
}

export interface ConformReport {
  op: string;
  runs: number;
  passed: number;
  unsupported: number;
  failed: number;
  /** cases run until the first failure (1-based), if any */
  firstFailureAt?: number;
  /** the smallest failing case fast-check shrank to, and what the port did on it */
  smallest?: { draw: Draw; case: ConformCase; verdict: Verdict; shrinkSteps: number };
  unsupportedReason?: string;
}

/**
 * Draw `runs` cases; on the first failure, shrink to the smallest failing case (each candidate is run
 * through the port too). Unsupported cases count apart and are never failures (nor shrunk).
 */
export async function conform(o: ConformOptions): Promise<ConformReport> {
  const rep: ConformReport = { op: o.op, runs: 0, passed: 0, unsupported: 0, failed: 0 };
  let last: { draw: Draw; case: ConformCase; verdict: Verdict } | undefined;
  let shrinking = false;
  let shrinkSteps = 0;
  const prop = fc.asyncProperty(drawArbitrary(o.op), async (d) => {
    const c = await buildCase(o.op, d);
    // a draw whose reference outputs overflow (e.g. exp(Δ·A) with Δ·A ≫ 0) checks nothing: drawn again
    fc.pre(Object.values(c.expected).every((t) => t.data.every(Number.isFinite)));
    const v = await runPort(o.port, c, o);
    if (!shrinking) {
      rep.runs++;
      if (v.status === 'pass') rep.passed++;
      if (v.status === 'unsupported') {
        rep.unsupported++;
        rep.unsupportedReason ??= v.reason;
      }
      if (v.status === 'fail') {
        rep.failed++;
        rep.firstFailureAt = rep.runs;
        shrinking = true;
      }
      o.onCase?.(rep.runs, c, v);
    } else shrinkSteps++;
    if (v.status === 'fail') last = { draw: d, case: c, verdict: v };
    return v.status !== 'fail';
  });
  // --fail-fast: report the first failing case as drawn, without shrinking it
  const r = await fc.check(prop, { numRuns: o.runs, seed: o.seed, endOnFailure: o.failFast === true });
  // a failure with no failing verdict is the harness's own error (drawing or building a case): never a pass
  if (r.failed && !last)
    throw r.errorInstance instanceof Error
      ? r.errorInstance
      : new Error(`mil conform --op ${o.op}: ${String(r.errorInstance)}`);
  if (r.failed && last) rep.smallest = { ...last, shrinkSteps };
  return rep;
}

/** The largest dimension of any input of a case: how small a shrunk case is. */
export function caseSize(c: ConformCase): { largestDim: number; shapes: Record<string, number[]> } {
  const shapes = Object.fromEntries(Object.entries(c.inputs).map(([k, t]) => [k, [...t.shape]]));
  return { largestDim: Math.max(1, ...Object.values(shapes).flat()), shapes };
}

/** Write a case as a golden folder for the port's own regression suite: the case folder, expected.safetensors,
 * and (for kernel ops) kernels.json + kernels.safetensors in mil-golden/1, which `mil golden verify` reads. */
export function saveCase(dir: string, c: ConformCase, note: string, opts: { option?: string } = {}): void {
  const name = `${c.op}_conform`;
  const tensors: Record<string, Tensor> = {};
  for (const [k, t] of Object.entries(c.inputs)) tensors[`${name}/in/${k}`] = t.astype('float64');
  for (const [k, t] of Object.entries(c.expected)) tensors[`${name}/out/${k}`] = t.astype('float64');
  writeFolder(
    dir,
    (stage) => {
      for (const [rel, data] of caseFiles(c)) stage.writeFile(rel, data);
      stage.writeFile('expected.safetensors', safetensorsChunks(c.expected, { schema: CONFORM_SCHEMA }, 'F64').chunks);
      if (c.op !== 'model') {
        stage.writeFile('kernels.safetensors', safetensorsChunks(tensors, { schema: SCHEMA }, 'F64').chunks);
        const gc = {
          name,
          op: c.op,
          upstream: GOLDEN_OPS[c.op]!.upstream,
          attrs: c.attrs,
          inputs: Object.keys(c.inputs),
          outputs: Object.keys(c.expected),
          note,
        };
        stage.writeFile(
          'kernels.json',
          JSON.stringify({ schema: SCHEMA, seed: 0, dtype: 'float64', cases: [gc] }, null, 1) + '\n',
        );
      }
    },
    { option: opts.option },
  );
}
