/**
 * `mil conform`: property-based checking of a port (any program, any language) against the float64
 * references, in one of two protocols (docs/conform.md):
 *
 * files (default), one process per case:
 *   the harness writes    DIR/case.json          {schema: "mil-conform/1", op, attrs, inputs, outputs, layout}
 *                         DIR/case.safetensors   every input, float64, by its name
 *                         DIR/model/             for op "model": the checkpoint (config.json, …, model.safetensors)
 *   and runs              CMD DIR                (through sh; CMD may hold arguments)
 *   the port writes       DIR/out.safetensors    every output named in case.json (F64, F32, F16 or BF16)
 *   and exits             0 done · 77 this op or option is unsupported (first stderr line: why) · else a crash
 *
 * lines, one process for the whole run: the harness runs `CMD --lines` once and writes one JSON request per
 * line on its stdin, {schema: "mil-conform-lines/1", id, op, options, inputs: {name: {shape, dtype: "F64",
 * data_b64}}, outputs, model_dir?}; the port answers each with one line on stdout, {id, outputs: {name: {shape,
 * dtype: "F64", data_b64}}} or {id, unsupported: "why"} or {id, error: "what"} (data_b64: float64
 * little-endian, base64). A port that dies, hangs past the case's timeout, writes a line that is not such a
 * reply or answers another id fails that case; its process group is killed and it is started afresh for the
 * next case.
 *
 * Each case gets `timeoutMs` (default 20 s); past it the port's whole process group is killed. A case fails
 * when the port crashes, times out, gives no outputs or unreadable ones, leaves an output out, gives a wrong
 * shape, a NaN/Inf where the reference is finite, or an element outside numpy's allclose,
 * |got − want| ≤ atol + rtol·|want| (per-op defaults: DEFAULT_TOLERANCE). fast-check draws the cases
 * (lib/conform/cases.ts) and, on a failure, shrinks through the same loop to the smallest case that still
 * fails (shapes, options, magnitudes and the values' seed); that case is printed and can be saved, then
 * replayed against the port (`mil conform --replay DIR`).
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { GoldenFormatError } from '../errors.js';
import { getTensor, readSafetensors, safetensorsChunks } from '../io/safetensors.js';
import { writeFolder, type WriteData } from '../io/writer.js';
import { relError, Tensor } from '../tensor.js';
import { modelFiles } from '../model/convert.js';
import { GOLDEN_OPS } from '../golden/ops.js';
import { SCHEMA } from '../golden/verify.js';
import { buildCase, drawArbitrary, type ConformCase, type Draw } from './cases.js';
import { lookup } from '../checked.js';

const CONFORM_SCHEMA = 'mil-conform/1';
const LINES_SCHEMA = 'mil-conform-lines/1';
const REPLAY_SCHEMA = 'mil-conform-replay/1';
const EXIT_UNSUPPORTED = 77;
export const PROTOCOLS = ['files', 'lines'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

/** numpy's allclose: an element passes when |got − want| ≤ atol + rtol·|want|. */
export interface Tolerance {
  /** relative tolerance */
  rtol: number;
  /** absolute tolerance */
  atol: number;
}

/**
 * numpy.isclose for one element (want the reference): |got − want| ≤ atol + rtol·|want|; a NaN or an infinity is
 * close only to the same infinity — never to a finite number, even where the bound itself is infinite. The one
 * rule of every verdict here and of the property suite (lib/conform/properties.ts).
 */
export function isClose(got: number, want: number, t: Tolerance): boolean {
  if (got === want) return true; // equal infinities too
  if (!Number.isFinite(got) || !Number.isFinite(want)) return false;
  return Math.abs(got - want) <= t.atol + t.rtol * Math.abs(want);
}

/**
 * The default tolerance of each op, for a port computing in float32 (docs/conform.md's table is checked
 * against this by spec/conform.spec.ts). Measured by bench/conform-tolerance.ts: on 600 draws per op, rounding
 * only the inputs and the outputs to float32 (what any float32 port does at least) moves an element by up to
 * this much relative beyond atol 1e-6 — the elements a sum cancels make it far more than float32's 6e-8:
 *   selective_scan 2.2e-4 · selective_state_update 2.3e-4 · causal_conv1d 3.2e-3 · causal_conv1d_update 8.6e-5
 *   ssd_chunk_scan 6.0e-5 · ssd_minimal_discrete 7.8e-4 · gated_rmsnorm 1.4e-7 · multistep 3.8e-4
 *   selective_scan_grad 5.1e-3 · causal_conv1d_grad 1.7e-4 · ssd_chunk_scan_grad 7.4e-4 · gated_rmsnorm_grad 5.1e-5
 * rtol is the next 1 or 3 × 10^k at least 3× that, and at least 1e-4; atol 1e-6 lets elements whose reference
 * is ~0 (a sum that cancels to 1e-29, say) pass on absolute error. `speculative` (tokens, acceptances and
 * states, exact in any correct port) and `model` (two layers: rounding the weights was not measured) take
 * 1e-4 and 1e-3. A float64 port should ask for more: the example ports pass every op at rtol 1e-9, atol 1e-12
 * except gated_rmsnorm_grad (1.2e-6 relative on an element whose sum cancels: --rtol 1e-5 there).
 */
export const DEFAULT_TOLERANCE: Record<string, Tolerance> = {
  selective_scan: { rtol: 1e-3, atol: 1e-6 },
  selective_state_update: { rtol: 1e-3, atol: 1e-6 },
  causal_conv1d: { rtol: 1e-2, atol: 1e-6 },
  causal_conv1d_update: { rtol: 3e-4, atol: 1e-6 },
  ssd_chunk_scan: { rtol: 3e-4, atol: 1e-6 },
  ssd_minimal_discrete: { rtol: 3e-3, atol: 1e-6 },
  gated_rmsnorm: { rtol: 1e-4, atol: 1e-6 },
  multistep: { rtol: 3e-3, atol: 1e-6 },
  speculative: { rtol: 1e-4, atol: 1e-6 },
  selective_scan_grad: { rtol: 3e-2, atol: 1e-6 },
  causal_conv1d_grad: { rtol: 1e-3, atol: 1e-6 },
  ssd_chunk_scan_grad: { rtol: 3e-3, atol: 1e-6 },
  gated_rmsnorm_grad: { rtol: 3e-4, atol: 1e-6 },
  model: { rtol: 1e-3, atol: 1e-6 },
};

/** The tolerance of `op`: its default, with `rtol` / `atol` replaced where given. */
function toleranceOf(op: string, o: Partial<Tolerance> = {}): Tolerance {
  const d = DEFAULT_TOLERANCE[op] ?? { rtol: 1e-4, atol: 1e-6 };
  return { rtol: o.rtol ?? d.rtol, atol: o.atol ?? d.atol };
}

export interface Verdict {
  status: 'pass' | 'fail' | 'unsupported';
  reason?: string;
  /** relative L2 error per output (for information: the verdict is allclose's) */
  errors: Record<string, number>;
  /** per output, max over elements of |got − want| / (atol + rtol·|want|): the output passes when ≤ 1 */
  excess?: Record<string, number>;
  /** the element furthest outside the tolerance (by the ratio above), in the output that fails by the most */
  worst?: { output: string; index: number; got: number; want: number };
  /** the port ran past this many milliseconds and was killed */
  timedOutMs?: number;
}

/** The files of a case folder (what the port reads). */
function caseFiles(c: ConformCase): Array<[string, WriteData]> {
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

/** What a port answered on one case, before the comparison. */
export type Answer =
  | { kind: 'outputs'; got: Map<string, Tensor> }
  | { kind: 'unsupported'; reason: string }
  | { kind: 'fail'; reason: string; timedOutMs?: number };

/** A port being run: `ask` never throws for what the port does and never waits past the timeout. */
export interface PortSession {
  ask(c: ConformCase, timeoutMs: number): Promise<Answer>;
  /** end the port (its process group) and remove its folders */
  close(): void;
}

/** A port in the given protocol; nothing starts until the first case. */
export function openPort(cmd: string, protocol: Protocol = 'files'): PortSession {
  return protocol === 'lines' ? new LinesPort(cmd) : new FilesPort(cmd);
}

const timeoutAnswer = (ms: number): Answer => ({
  kind: 'fail',
  reason: `the port ran past the ${ms} ms timeout and was killed`,
  timedOutMs: ms,
});
const tailOf = (stderr: string) => stderr.trim().split('\n').slice(-3).join(' | ');

/** The verdict on an answer. */
export function judge(c: ConformCase, a: Answer, tol: Tolerance | number): Verdict {
  if (a.kind === 'unsupported') return { status: 'unsupported', reason: a.reason, errors: {} };
  if (a.kind === 'fail')
    return { status: 'fail', reason: a.reason, errors: {}, ...(a.timedOutMs ? { timedOutMs: a.timedOutMs } : {}) };
  return compare(c.expected, a.got, tol);
}

/** Run the port on one case (one-shot session); never throws for what the port does. */
export async function runPort(
  cmd: string,
  c: ConformCase,
  o: { tolerance?: Tolerance | number; timeoutMs: number; protocol?: Protocol },
): Promise<Verdict> {
  const port = openPort(cmd, o.protocol);
  try {
    return judge(c, await port.ask(c, o.timeoutMs), o.tolerance ?? toleranceOf(c.op));
  } finally {
    port.close();
  }
}

/** A fresh temporary folder, removed by {@link stopPorts} too. */
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'mil-conform-'));
  live.dirs.add(dir);
  return dir;
}
function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  live.dirs.delete(dir);
}
function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL'); // the whole group: sh and whatever it started
  } catch {
    /* already gone */
  }
  live.groups.delete(pid);
}

/** The files protocol: a case folder and a process per case. */
class FilesPort implements PortSession {
  constructor(private readonly cmd: string) {}
  async ask(c: ConformCase, timeoutMs: number): Promise<Answer> {
    const dir = tempDir();
    try {
      writeFolder(join(dir, 'case'), (stage) => {
        for (const [rel, data] of caseFiles(c)) stage.writeFile(rel, data);
      });
      const caseDir = join(dir, 'case');
      const r = await execPort(this.cmd, caseDir, timeoutMs);
      const tail = tailOf(r.stderr);
      if (r.timedOut) return timeoutAnswer(timeoutMs);
      if (r.code === EXIT_UNSUPPORTED)
        return { kind: 'unsupported', reason: r.stderr.trim().split('\n')[0] || 'unsupported (no reason given)' };
      if (r.code !== 0)
        return {
          kind: 'fail',
          reason: `the port exited ${r.code ?? `by signal ${r.signal}`}${tail ? `: ${tail}` : ''}`,
        };
      const outPath = join(caseDir, 'out.safetensors');
      if (!existsSync(outPath)) return { kind: 'fail', reason: 'the port exited 0 but wrote no out.safetensors' };
      try {
        const f = readSafetensors(outPath);
        return { kind: 'outputs', got: new Map([...f.tensors.keys()].map((k) => [k, getTensor(f, k)])) };
      } catch (e) {
        return { kind: 'fail', reason: `out.safetensors is unreadable: ${(e as Error).message}` };
      }
    } finally {
      removeDir(dir);
    }
  }
  close(): void {}
}

/** A tensor as the lines protocol carries it: float64 little-endian, base64. */
function encodeTensor(t: Tensor): { shape: number[]; dtype: 'F64'; data_b64: string } {
  const f = Float64Array.from(t.data);
  const b = Buffer.from(f.buffer, f.byteOffset, f.byteLength);
  if (new Uint8Array(new Float64Array([1]).buffer)[7] !== 0x3f) b.swap64(); // big-endian host
  return { shape: [...t.shape], dtype: 'F64', data_b64: b.toString('base64') };
}

/** An output of a lines reply as a tensor, or why it is not one. */
function decodeTensor(name: string, v: unknown): Tensor | string {
  const o = v as { shape?: unknown; dtype?: unknown; data_b64?: unknown } | null;
  if (typeof o !== 'object' || o === null) return `output '${name}' is not {shape, dtype, data_b64}`;
  const { shape, dtype, data_b64 } = o;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0))
    return `output '${name}' has shape ${JSON.stringify(shape)}, not a list of non-negative integers`;
  if (dtype !== 'F64') return `output '${name}' has dtype ${JSON.stringify(dtype)}; the lines protocol carries 'F64'`;
  if (typeof data_b64 !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(data_b64))
    return `output '${name}' has no base64 data_b64`;
  const bytes = Buffer.from(data_b64, 'base64');
  const n = (shape as number[]).reduce((a, b) => a * b, 1);
  if (bytes.length !== n * 8)
    return `output '${name}' has ${bytes.length} bytes of data for shape [${shape.join(', ')}] (${n * 8} expected)`;
  if (new Uint8Array(new Float64Array([1]).buffer)[7] !== 0x3f) bytes.swap64();
  const data = new Float64Array(n);
  new Uint8Array(data.buffer).set(bytes);
  return new Tensor(data, shape as number[], name);
}

/** The lines protocol: one process answering JSON lines, restarted after any case it fails to answer. */
class LinesPort implements PortSession {
  private p?: ChildProcessWithoutNullStreams;
  private lines: string[] = [];
  private partial = '';
  private stderr = '';
  private exited?: string;
  private wake?: () => void;
  private id = 0;
  constructor(private readonly cmd: string) {}

  private start(): ChildProcessWithoutNullStreams {
    const p = spawn('sh', ['-c', `${this.cmd} "$1"`, 'sh', '--lines'], { stdio: 'pipe', detached: true });
    this.p = p;
    this.lines = [];
    this.partial = '';
    this.stderr = '';
    this.exited = undefined;
    if (p.pid !== undefined) live.groups.add(p.pid);
    p.stdout.on('data', (b: Buffer) => {
      if (this.p !== p) return;
      const parts = (this.partial + b.toString('utf8')).split('\n');
      this.partial = parts.pop()!;
      this.lines.push(...parts);
      // a "line" past 256 MiB with no newline is cut there (and fails to parse) rather than held without end
      if (this.partial.length > 1 << 28) [this.lines, this.partial] = [[...this.lines, this.partial], ''];
      if (this.lines.length) this.wake?.();
    });
    p.stderr.on('data', (b: Buffer) => {
      if (this.p !== p) return;
      this.stderr = (this.stderr + b.toString('utf8')).slice(-(1 << 16));
    });
    p.stdin.on('error', () => {}); // EPIPE when the port died: seen as its exit
    const gone = (how: string) => {
      // output written before the exit is read within the grace; a grandchild holding the pipes never holds us
      setTimeout(() => {
        if (this.p !== p) return; // a process killed before this one was started
        this.exited ??= how;
        this.wake?.();
      }, 100);
    };
    p.on('error', (e) => gone(`could not be started (${e.message})`));
    p.on('exit', (code, signal) => gone(`exited ${code ?? `by signal ${signal}`}`));
    return p;
  }

  /** the next line of the port, or why none came */
  private next(timeoutMs: number): Promise<string | { timeout: true } | { exited: string }> {
    return new Promise((resolve) => {
      const check = () => {
        if (this.lines.length) return done(this.lines.shift()!);
        if (this.exited) return done({ exited: this.exited });
      };
      const timer = setTimeout(() => done({ timeout: true }), timeoutMs);
      const done = (r: string | { timeout: true } | { exited: string }) => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve(r);
      };
      this.wake = check;
      check();
    });
  }

  async ask(c: ConformCase, timeoutMs: number): Promise<Answer> {
    const p = this.p ?? this.start();
    const id = ++this.id;
    const from = this.stderr.length;
    let modelDir: string | undefined;
    try {
      if (c.model) {
        modelDir = tempDir();
        writeFolder(join(modelDir, 'model'), (stage) => {
          for (const [rel, data] of modelFiles(c.model!, { dtype: 'F64' })) stage.writeFile(rel, data);
        });
      }
      const request = {
        schema: LINES_SCHEMA,
        id,
        op: c.op,
        options: c.attrs,
        inputs: Object.fromEntries(Object.entries(c.inputs).map(([k, t]) => [k, encodeTensor(t)])),
        outputs: Object.keys(c.expected),
        ...(modelDir ? { model_dir: join(modelDir, 'model') } : {}),
      };
      p.stdin.write(JSON.stringify(request) + '\n');
      const line = await this.next(timeoutMs);
      const fail = (reason: string): Answer => {
        this.close(); // out of step with the harness: the next case starts it afresh
        return { kind: 'fail', reason };
      };
      if (typeof line !== 'string') {
        if ('timeout' in line) {
          this.close();
          return timeoutAnswer(timeoutMs);
        }
        const tail = tailOf(this.stderr.slice(from));
        return fail(`the port ${line.exited} without answering request ${id}${tail ? `: ${tail}` : ''}`);
      }
      let r: { id?: unknown; outputs?: unknown; unsupported?: unknown; error?: unknown };
      try {
        r = JSON.parse(line) as typeof r;
      } catch {
        return fail(`the port wrote a line that is not JSON: ${JSON.stringify(line.slice(0, 120))}`);
      }
      if (typeof r !== 'object' || r === null || Array.isArray(r))
        return fail(`the port wrote ${JSON.stringify(line.slice(0, 120))}, not a reply object`);
      if (r.id !== id) return fail(`the port answered id ${JSON.stringify(r.id)} to request ${id}`);
      if (r.unsupported !== undefined) return { kind: 'unsupported', reason: String(r.unsupported) || 'unsupported' };
      if (r.error !== undefined) return { kind: 'fail', reason: `the port answered error: ${String(r.error)}` };
      if (typeof r.outputs !== 'object' || r.outputs === null)
        return fail(`the reply to request ${id} has none of outputs, unsupported, error`);
      const got = new Map<string, Tensor>();
      for (const [k, v] of Object.entries(r.outputs)) {
        const t = decodeTensor(k, v);
        if (typeof t === 'string') return { kind: 'fail', reason: t };
        got.set(k, t);
      }
      return { kind: 'outputs', got };
    } finally {
      if (modelDir) removeDir(modelDir);
    }
  }

  close(): void {
    const p = this.p;
    this.p = undefined;
    if (!p) return;
    killGroup(p.pid);
    p.stdin.destroy();
    p.stdout.destroy();
    p.stderr.destroy();
  }
}

/**
 * The verdict on a port's outputs: numpy's allclose per element, |got − want| ≤ atol + rtol·|want| (a bare
 * number is rtol with atol 0). An output fails when missing, misshapen, non-finite where the reference is
 * finite, or with any element outside it. The worst element is the one furthest outside (the largest
 * |got − want| / (atol + rtol·|want|)) in the output that fails by the most (non-finite first), so it always
 * names a failing output; when all pass, in the output closest to failing.
 */
export function compare(
  expected: Record<string, Tensor>,
  got: Map<string, Tensor>,
  tolerance: Tolerance | number,
): Verdict {
  const { rtol, atol } = typeof tolerance === 'number' ? { rtol: tolerance, atol: 0 } : tolerance;
  const errors: Record<string, number> = {};
  const excess: Record<string, number> = {};
  const problems: string[] = [];
  let worst: Verdict['worst'];
  let worstKey: [failing: number, excess: number] = [-1, -1];
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
    let atRatio = -1;
    let outside = 0;
    for (let i = 0; i < want.size; i++) {
      const a = g.data[i];
      const b = want.data[i];
      if (!Number.isFinite(a) && Number.isFinite(b) && nonFinite < 0) nonFinite = i;
      const close = isClose(a, b, { rtol, atol });
      const diff = a === b ? 0 : Math.abs(a - b); // equal infinities agree
      const bound = atol + rtol * Math.abs(b);
      // how far outside: |got − want| / bound (> 1 exactly when not close; Infinity for NaN, ±∞ or bound 0)
      const ratio = close ? (diff === 0 ? 0 : diff / bound) : diff / bound > 1 ? diff / bound : Infinity;
      if (!close) outside++;
      if (ratio > atRatio) [at, atRatio] = [i, ratio];
    }
    errors[name] = relError(g.data, want.data);
    excess[name] = Math.max(0, atRatio);
    const failing = nonFinite >= 0 || outside > 0;
    const key: [number, number] = [failing ? 1 : 0, nonFinite >= 0 ? Infinity : atRatio];
    if (want.size > 0 && (key[0] > worstKey[0] || (key[0] === worstKey[0] && key[1] > worstKey[1]))) {
      worstKey = key;
      const i = nonFinite >= 0 ? nonFinite : at;
      worst = { output: name, index: i, got: g.data[i], want: want.data[i] };
    }
    if (nonFinite >= 0)
      problems.push(
        `output '${name}'[${nonFinite}] is ${g.data[nonFinite]} where the reference is ${want.data[nonFinite]}`,
      );
    else if (outside > 0)
      problems.push(
        `output '${name}': ${outside} of ${want.size} elements outside |got − want| ≤ atol + rtol·|want| (rtol ${rtol}, atol ${atol}; worst ${name}[${at}] = ${g.data[at]}, reference ${want.data[at]})`,
      );
  }
  return problems.length
    ? { status: 'fail', reason: problems.join('; '), errors, excess, worst }
    : { status: 'pass', errors, excess, worst };
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
  /** rtol / atol replacing the op's defaults (DEFAULT_TOLERANCE) */
  tolerance?: Partial<Tolerance>;
  timeoutMs: number;
  /** 'files' (default): a process per case; 'lines': one process answering JSON lines */
  protocol?: Protocol;
  failFast?: boolean;
  onCase?: (n: number, c: ConformCase, v: Verdict) => void;
}

export interface ConformReport {
  op: string;
  runs: number;
  passed: number;
  unsupported: number;
  failed: number;
  /** the tolerance the verdicts used */
  tolerance: Tolerance;
  /** cases run until the first failure (1-based), if any */
  firstFailureAt?: number;
  /** the first failing case as drawn */
  first?: { draw: Draw; case: ConformCase; verdict: Verdict };
  /** the smallest failing case fast-check shrank to, and what the port did on it */
  smallest?: { draw: Draw; case: ConformCase; verdict: Verdict; shrinkSteps: number };
  unsupportedReason?: string;
}

/**
 * Draw `runs` cases; on the first failure, shrink to the smallest failing case (each candidate is run
 * through the port too). Unsupported cases count apart and are never failures (nor shrunk).
 */
export async function conform(o: ConformOptions): Promise<ConformReport> {
  const tolerance = toleranceOf(o.op, o.tolerance);
  const rep: ConformReport = { op: o.op, runs: 0, passed: 0, unsupported: 0, failed: 0, tolerance };
  let last: { draw: Draw; case: ConformCase; verdict: Verdict } | undefined;
  let shrinking = false;
  let shrinkSteps = 0;
  const port = openPort(o.port, o.protocol);
  const prop = fc.asyncProperty(drawArbitrary(o.op), async (d) => {
    const c = await buildCase(o.op, d);
    // a draw whose reference outputs overflow (e.g. exp(Δ·A) with Δ·A ≫ 0) checks nothing: drawn again
    fc.pre(Object.values(c.expected).every((t) => t.data.every(Number.isFinite)));
    const v = judge(c, await port.ask(c, o.timeoutMs), tolerance);
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
        rep.first = { draw: d, case: c, verdict: v };
        shrinking = true;
      }
      o.onCase?.(rep.runs, c, v);
    } else shrinkSteps++;
    if (v.status === 'fail') last = { draw: d, case: c, verdict: v };
    return v.status !== 'fail';
  });
  try {
    // --fail-fast: report the first failing case as drawn, without shrinking it
    const r = await fc.check(prop, { numRuns: o.runs, seed: o.seed, endOnFailure: o.failFast === true });
    // a failure with no failing verdict is the harness's own error (drawing or building a case): never a pass
    if (r.failed && !last)
      throw r.errorInstance instanceof Error
        ? r.errorInstance
        : new Error(`mil conform --op ${o.op}: ${String(r.errorInstance)}`);
    if (r.failed && last) rep.smallest = { ...last, shrinkSteps };
    return rep;
  } finally {
    port.close();
  }
}

/** What `--save` records beside a case so that `--replay` reruns it the same way (conform.json). */
export interface ReplayRecord {
  schema: typeof REPLAY_SCHEMA;
  op: string;
  /** the draw the case is built from (lib/conform/cases.ts: deterministic) */
  draw: Draw;
  tolerance: Tolerance;
  /** the per-case limit the case ran under: a saved timeout replays as a timeout with the same limit */
  timeoutMs: number;
  protocol: Protocol;
  port: string;
  verdict: { status: Verdict['status']; reason?: string; timedOutMs?: number };
}

/**
 * Rerun a case saved by `mil conform --save` (its conform.json) against a port: the case is rebuilt from the
 * saved draw and checked equal to the saved inputs (a case folder from another version of the generator is
 * refused, not silently replaced), then run with the saved tolerance and timeout unless `o` replaces them.
 */
export async function replay(
  dir: string,
  o: { port: string; protocol?: Protocol; timeoutMs?: number; tolerance?: Partial<Tolerance> },
): Promise<{ saved: ReplayRecord; case: ConformCase; verdict: Verdict; tolerance: Tolerance; timeoutMs: number }> {
  const at = join(dir, 'conform.json');
  if (!existsSync(at))
    throw new GoldenFormatError(dir, 'no conform.json: not a folder saved by mil conform --save (this version)');
  let saved: ReplayRecord;
  try {
    saved = JSON.parse(readFileSync(at, 'utf8')) as ReplayRecord;
  } catch (e) {
    throw new GoldenFormatError(at, `not JSON: ${(e as Error).message}`);
  }
  if (saved?.schema !== REPLAY_SCHEMA)
    throw new GoldenFormatError(at, `schema ${JSON.stringify(saved?.schema)}, expected '${REPLAY_SCHEMA}'`);
  if (!(saved.op in DEFAULT_TOLERANCE) || typeof saved.draw !== 'object' || !(saved.timeoutMs > 0))
    throw new GoldenFormatError(at, 'op, draw or timeoutMs missing or malformed');
  const c = await buildCase(saved.op, saved.draw);
  const f = readSafetensors(join(dir, 'case.safetensors'));
  for (const [k, t] of Object.entries(c.inputs)) {
    const s = f.tensors.has(k) ? getTensor(f, k) : undefined;
    if (!s || s.shape.join(',') !== t.shape.join(',') || s.data.some((x, i) => !Object.is(x, t.data[i])))
      throw new GoldenFormatError(
        join(dir, 'case.safetensors'),
        `input '${k}' differs from the one the saved draw builds today (the case generator changed since it was saved)`,
      );
  }
  const tolerance: Tolerance = {
    rtol: o.tolerance?.rtol ?? saved.tolerance?.rtol ?? toleranceOf(saved.op).rtol,
    atol: o.tolerance?.atol ?? saved.tolerance?.atol ?? toleranceOf(saved.op).atol,
  };
  const timeoutMs = o.timeoutMs ?? saved.timeoutMs;
  const port = openPort(o.port, o.protocol ?? saved.protocol);
  try {
    return { saved, case: c, verdict: judge(c, await port.ask(c, timeoutMs), tolerance), tolerance, timeoutMs };
  } finally {
    port.close();
  }
}

/** The largest dimension of any input of a case: how small a shrunk case is. */
export function caseSize(c: ConformCase): { largestDim: number; shapes: Record<string, number[]> } {
  const shapes = Object.fromEntries(Object.entries(c.inputs).map(([k, t]) => [k, [...t.shape]]));
  return { largestDim: Math.max(1, ...Object.values(shapes).flat()), shapes };
}

/** Write a case as a golden folder for the port's own regression suite: the case folder, expected.safetensors,
 * conform.json (what `mil conform --replay` reruns) and (for kernel ops) kernels.json + kernels.safetensors in mil-golden/1, which `mil golden verify` reads. */
export function saveCase(
  dir: string,
  c: ConformCase,
  note: string,
  opts: { option?: string; replay?: Omit<ReplayRecord, 'schema' | 'op'> } = {},
): void {
  const name = `${c.op}_conform`;
  const tensors: Record<string, Tensor> = {};
  for (const [k, t] of Object.entries(c.inputs)) tensors[`${name}/in/${k}`] = t.astype('float64');
  for (const [k, t] of Object.entries(c.expected)) tensors[`${name}/out/${k}`] = t.astype('float64');
  writeFolder(
    dir,
    (stage) => {
      for (const [rel, data] of caseFiles(c)) stage.writeFile(rel, data);
      stage.writeFile('expected.safetensors', safetensorsChunks(c.expected, { schema: CONFORM_SCHEMA }, 'F64').chunks);
      if (opts.replay) {
        const r: ReplayRecord = { schema: REPLAY_SCHEMA, op: c.op, ...opts.replay };
        stage.writeFile('conform.json', JSON.stringify(r, null, 1) + '\n');
      }
      if (c.op !== 'model') {
        stage.writeFile('kernels.safetensors', safetensorsChunks(tensors, { schema: SCHEMA }, 'F64').chunks);
        const gc = {
          name,
          op: c.op,
          upstream: lookup(GOLDEN_OPS, c.op).upstream,
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
