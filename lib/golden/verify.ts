/**
 * Golden-vector oracle: check every case of a `mil-golden/1` folder (FORMAT.md) on one backend.
 *
 * For each kernel case: load its inputs (`<case>/in/<name>`), run the op, and compare each listed output
 * (`<case>/out/<name>`) by relative error ‖got − want‖₂ / ‖want‖₂. A case passes when every output is
 * within the backend's tolerance: 1e-9 on the float64 'reference' backend, 1e-4 on the float32 kernels.
 * Model folders (models/<name>: a checkpoint + golden.safetensors with input_ids, logits, prompt, greedy):
 * the logits of `input_ids` by one full forward (same tolerances), and the greedy continuation of `prompt`
 * generated through the caches (prefill, then one token per decode step) must equal `greedy` token for token.
 * A case whose op this library does not know counts as unsupported — never as passed. A malformed case or
 * folder fails with the reason; the others go on. Nothing passes unchecked: a case that lists no outputs,
 * a model case with an empty greedy continuation or no logits, and a folder with nothing to check all fail.
 * A folder that does not exist is an ArgumentError (the CLI's usage error, exit 2).
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ArgumentError, GoldenFormatError, MilError } from '../errors.js';
import { readJsonObject } from '../io/json.js';
import { getOps, type BackendName } from '../ops.js';
import { getTensor, readSafetensors, type SafetensorsFile } from '../io/safetensors.js';
import { relError, type Tensor } from '../tensor.js';
import { GOLDEN_OPS, type Named } from './ops.js';
import { loadModel } from '../model/load.js';
import { forward, newCache } from '../model/hybrid.js';
import { generate } from '../model/generate.js';
import { verifyTrain } from './train.js';
import { lookup } from '../checked.js';
import { trainForward } from '../train/model.js';

export const SCHEMA = 'mil-golden/1';

export function toleranceFor(backend: BackendName): number {
  return backend === 'reference' ? 1e-9 : 1e-4;
}

export interface GoldenCase {
  name: string;
  op: string;
  upstream?: string;
  attrs: Record<string, unknown>;
  inputs: string[];
  outputs: string[];
  note?: string;
}

export interface CaseResult {
  name: string;
  op: string;
  status: 'pass' | 'fail' | 'unsupported';
  errors: Record<string, number>;
  tolerance: number;
  reason?: string;
}

export interface VerifyReport {
  dir: string;
  backend: BackendName;
  results: CaseResult[];
  passed: number;
  failed: number;
  unsupported: number;
}

/** Parse and check kernels.json (or another case list of the same layout, such as grads.json). */
export function readKernelsJson(dir: string, file = 'kernels.json'): { seed?: number; cases: GoldenCase[] } {
  const p = join(dir, file);
  const o = readJsonObject(p, (why) => new GoldenFormatError(p, why)) as { schema?: unknown; cases?: unknown; seed?: number };
  if (o.schema !== SCHEMA) throw new GoldenFormatError(p, `schema is ${JSON.stringify(o.schema)}, expected '${SCHEMA}'`);
  if (!Array.isArray(o.cases)) throw new GoldenFormatError(p, "'cases' is not a list");
  const cases = o.cases.map((c: unknown, i: number) => {
    const k = c as Partial<GoldenCase>;
    const bad = (why: string) => new GoldenFormatError(`${p} case #${i}`, why);
    if (typeof k !== 'object' || k === null) throw bad('not an object');
    if (typeof k.name !== 'string' || !k.name) throw bad("'name' missing");
    if (typeof k.op !== 'string') throw bad("'op' missing");
    if (!Array.isArray(k.inputs) || !k.inputs.every((s) => typeof s === 'string')) throw bad("'inputs' is not a list of names");
    if (!Array.isArray(k.outputs) || !k.outputs.every((s) => typeof s === 'string')) throw bad("'outputs' is not a list of names");
    if (k.attrs !== undefined && (typeof k.attrs !== 'object' || k.attrs === null || Array.isArray(k.attrs))) throw bad("'attrs' is not an object");
    return { ...k, attrs: (k.attrs ?? {}) } as GoldenCase;
  });
  return { seed: o.seed, cases };
}

async function verifyCase(c: GoldenCase, f: SafetensorsFile, backend: BackendName, tol: number): Promise<CaseResult> {
  const base = { name: c.name, op: c.op, errors: {} as Record<string, number>, tolerance: tol };
  const impl = GOLDEN_OPS[c.op];
  if (!impl) return { ...base, status: 'unsupported', reason: `op '${c.op}' is not implemented by this library` };
  if (c.outputs.length === 0) return { ...base, status: 'fail', reason: "the case lists no outputs: nothing to check" };
  try {
    const I: Named = {};
    for (const n of c.inputs) I[n] = getTensor(f, `${c.name}/in/${n}`).named(n);
    const want: Record<string, Tensor> = {};
    for (const n of c.outputs) want[n] = getTensor(f, `${c.name}/out/${n}`);
    const ops = await getOps(backend);
    const got = await impl.run(ops, I, c.attrs);
    let ok = true;
    const why: string[] = [];
    for (const n of c.outputs) {
      const g = got[n];
      if (!g) {
        ok = false;
        why.push(`op produced no output '${n}'`);
        continue;
      }
      if (g.shape.join() !== lookup(want, n).shape.join()) {
        ok = false;
        why.push(`output '${n}' has shape [${g.shape}] but the golden file has [${lookup(want, n).shape}]`);
        base.errors[n] = Infinity;
        continue;
      }
      const e = relError(g.data, lookup(want, n).data);
      base.errors[n] = e;
      if (!(e <= tol)) ok = false;
    }
    return { ...base, status: ok ? 'pass' : 'fail', reason: why.length ? why.join('; ') : ok ? undefined : 'error above tolerance' };
  } catch (e) {
    if (e instanceof MilError) return { ...base, status: 'fail', reason: e.message };
    throw e;
  }
}

/** Check one model folder: logits of input_ids, and the greedy continuation of prompt through the caches. */
async function verifyModel(dir: string, name: string, backend: BackendName, tol: number): Promise<CaseResult> {
  const base = { name, op: 'model', errors: {} as Record<string, number>, tolerance: tol };
  try {
    const m = loadModel(dir);
    const g = readSafetensors(join(dir, 'golden.safetensors'));
    const ids = getTensor(g, 'input_ids');
    const want = getTensor(g, 'logits');
    const prompt = getTensor(g, 'prompt');
    const greedy = getTensor(g, 'greedy');
    if (greedy.size === 0) return { ...base, status: 'fail', reason: "'greedy' is empty: the greedy continuation checks nothing" };
    if (ids.rank !== 2 || ids.size === 0) return { ...base, status: 'fail', reason: `'input_ids' must be a non-empty (batch, length) tensor, got [${ids.shape}]` };
    if (prompt.size === 0) return { ...base, status: 'fail', reason: "'prompt' is empty" };
    const [B, L] = ids.shape as [number, number];
    const rows = Array.from({ length: B }, (_, b) => Array.from(ids.data.subarray(b * L, (b + 1) * L)));
    const ops = await getOps(backend);
    const logits = await forward(ops, m, rows, newCache(m, B));
    if (logits.shape.join() !== want.shape.join()) return { ...base, status: 'fail', reason: `logits shape [${logits.shape}] but the golden file has [${want.shape}]` };
    base.errors.logits = relError(logits.data, want.data);
    // on the float64 reference, the training path's forward too (lib/model/mixers/: each mixer's two paths from
    // one description): a wiring change in either path fails this case and the model's train case alike
    if (backend === 'reference') base.errors.train_forward = relError(trainForward(m, rows, () => false).logits, want.data);
    const wantTokens = Array.from(greedy.data);
    const res = await generate(ops, m, Array.from(prompt.data), { maxNewTokens: wantTokens.length, eos: [] });
    const mismatch = wantTokens.findIndex((t, i) => res.tokens[i] !== t);
    base.errors.greedy_mismatches = wantTokens.filter((t, i) => res.tokens[i] !== t).length;
    const ok = base.errors.logits <= tol && !(base.errors.train_forward > tol) && mismatch < 0;
    return {
      ...base,
      status: ok ? 'pass' : 'fail',
      reason: ok ? undefined : mismatch >= 0 ? `greedy token ${mismatch} is ${res.tokens[mismatch]}, golden has ${wantTokens[mismatch]}` : base.errors.logits <= tol ? "the training path's logits (train_forward) above tolerance" : 'logits error above tolerance',
    };
  } catch (e) {
    if (e instanceof MilError) return { ...base, status: 'fail', reason: e.message };
    throw e;
  }
}

/** Verify a golden folder on one backend. Throws only when the backend itself is unknown or unavailable. */
export async function verifyGolden(dir: string, backend: BackendName, onResult?: (r: CaseResult) => void): Promise<VerifyReport> {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ArgumentError('golden folder', 'an existing folder', dir);
  await getOps(backend); // unknown / unavailable backend: a typed error before any case
  const tol = toleranceFor(backend);
  const results: CaseResult[] = [];
  const push = (r: CaseResult) => {
    results.push(r);
    onResult?.(r);
  };
  // kernels.json (forward ops) and grads.json (backward ops, FORMAT.md "Training cases"): every case listed
  // is reported — checked, or unsupported when this library has no such op — never silently skipped
  for (const set of ['kernels', 'grads']) {
    if (!existsSync(join(dir, `${set}.json`)) && !existsSync(join(dir, `${set}.safetensors`))) continue;
    let cases: GoldenCase[] = [];
    let f: SafetensorsFile | undefined;
    try {
      cases = readKernelsJson(dir, `${set}.json`).cases;
      f = readSafetensors(join(dir, `${set}.safetensors`));
    } catch (e) {
      if (!(e instanceof MilError)) throw e;
      push({ name: set, op: '-', status: 'fail', errors: {}, tolerance: tol, reason: e.message });
    }
    if (f) for (const c of cases) push(await verifyCase(c, f, backend, tol));
  }
  const models = join(dir, 'models');
  if (existsSync(models) && statSync(models).isDirectory()) {
    for (const m of readdirSync(models).sort()) {
      if (!statSync(join(models, m)).isDirectory()) continue;
      push(await verifyModel(join(models, m), `models/${m}`, backend, tol));
      if (existsSync(join(models, m, 'train.json')) || existsSync(join(models, m, 'train.safetensors'))) {
        // a training step runs on the float64 training engine (lib/train/). Not on wasm-simd's float32 products
        // either: Adam's first step is ≈ lr·sign(g), so float32 gradient errors (4e-6 here) on near-zero
        // gradients move the update by ~1e-4 relative, failing a check that means nothing about the engine
        // webgpu: the GPU training step (lib/train/gpu_step.ts), lm and distill cases (lib/golden/train.ts says what it holds)
        if (backend === 'reference' || backend === 'webgpu') push(await verifyTrain(join(models, m), `models/${m}/train`, tol, backend));
        else push({ name: `models/${m}/train`, op: 'train', status: 'unsupported', errors: {}, tolerance: tol, reason: `training steps are checked on the float64 training engine only (${backend} has the backward ops, lib/ops_grad.ts)` });
      }
    }
  }
  if (results.length === 0) push({ name: dir, op: '-', status: 'fail', errors: {}, tolerance: tol, reason: 'no kernels.json and no models/ folder: not a golden folder' });
  const count = (s: CaseResult['status']) => results.filter((r) => r.status === s).length;
  return { dir, backend, results, passed: count('pass'), failed: count('fail'), unsupported: count('unsupported') };
}

export function formatResult(r: CaseResult): string {
  const errs = Object.entries(r.errors)
    .map(([k, v]) => `${k}=${Number.isInteger(v) ? v : v.toExponential(2)}`)
    .join(' ');
  const status = r.status === 'pass' ? 'PASS' : r.status === 'fail' ? 'FAIL' : 'UNSUPPORTED';
  return `${status.padEnd(11)} ${r.name.padEnd(22)} ${r.op.padEnd(22)} ${errs || '-'}${r.status === 'pass' ? '' : `  (${r.reason ?? ''})`}`;
}
