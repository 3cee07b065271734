/**
 * The golden oracle: the upstream vectors (golden/, a copy of the shared golden folder) pass on every available
 * backend; cases this library emits with other shapes and seeds pass too; malformed folders fail case by
 * case with the reason; unknown ops and model folders count as unsupported, never as passed.
 */
import { tmpFolder } from './tmp.js';
import { describe, expect, it } from 'vitest';
import { cpSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { readKernelsJson, verifyGolden } from '../lib/golden/verify.js';
import { relError } from '../lib/tensor.js';
import { PORT_OPS, portGreedy, portLogits, portModelFromFolder, toPort } from './example_port.js';
import { emitGolden, emitModel } from '../lib/golden/emit.js';
import { GOLDEN_OPS } from '../lib/golden/ops.js';
import { getTensor, readSafetensors, writeSafetensors } from '../lib/io/safetensors.js';
import { ALL_BACKENDS, Tensor } from './helpers.js';
import { lookup } from '../lib/checked.js';

const GOLDEN = join(import.meta.dirname, '..', 'golden');
const tmp = () => tmpFolder('golden');

// a folder of freshly emitted cases, one per op, with shapes upstream's set does not have
const EMITTED = tmp();
const EMIT_PLAN: Array<[string, Record<string, number | string>]> = [
  ['selective_scan', { batch: 1, dim: 6, len: 23, state: 3, groups: 3 }],
  ['selective_scan', { batch: 3, dim: 5, len: 1, state: 7 }],
  ['selective_state_update', { batch: 1, heads: 6, headdim: 2, groups: 3, state: 5 }],
  ['selective_state_update', { batch: 3, dim: 1, state: 16 }],
  ['causal_conv1d', { batch: 1, dim: 3, len: 2, width: 4 }],
  ['causal_conv1d_update', { batch: 3, dim: 2, steps: 5, width: 3, len: 4 }],
  ['ssd_chunk_scan', { batch: 1, len: 17, heads: 6, headdim: 2, groups: 3, state: 4, chunk: 5 }],
  ['ssd_minimal_discrete', { batch: 1, len: 10, heads: 2, headdim: 3, state: 2, chunk: 4 }],
  ['gated_rmsnorm', { batch: 2, len: 3, dim: 16, groups: 8 }],
  ['multistep', { batch: 2, dim: 5, state: 16, steps: 8, recompute: 5 }],
  ['multistep', { batch: 1, dim: 3, state: 2, steps: 1, recompute: 0 }],
  ['speculative', { k: 3, steps: 9, vocab: 7 }],
  // backward ops: grouped B/C, sequences of 1, widths and chunks upstream's grads.json lacks
  ['selective_scan_grad', { batch: 1, dim: 6, len: 9, state: 3, groups: 2 }],
  ['selective_scan_grad', { batch: 2, dim: 3, len: 1, state: 5 }],
  ['causal_conv1d_grad', { batch: 2, dim: 3, len: 7, width: 2 }],
  ['ssd_chunk_scan_grad', { batch: 1, len: 11, heads: 4, headdim: 3, groups: 2, state: 5, chunk: 3 }],
  ['gated_rmsnorm_grad', { batch: 1, len: 2, dim: 12, groups: 3 }],
];
let seed = 1000;
for (const [op, shapes] of EMIT_PLAN) await emitGolden(op, seed++, shapes, EMITTED, `${op}_${seed}`);
// model folders with shapes upstream's never had: vocabulary ≥ 256, 1 kv head, head_dim 32 (= 2·d_state)
const MODEL_PLAN: Array<[string, Record<string, number>]> = [
  ['llama', { vocab: 300, dim: 64, heads: 4, groups: 1, headdim: 16, len: 9 }],
  ['mamba1', { vocab: 77, dim: 64, heads: 2, groups: 1, headdim: 32, len: 12 }],
  ['mamba2', { vocab: 90, dim: 40, heads: 4, groups: 2, headdim: 16, len: 7 }],
];
for (const [variant, shapes] of MODEL_PLAN) await emitModel(variant, seed++, shapes, EMITTED);
// training steps of other shapes: a Llama (lm) and both hybrids (distill, each with its teacher as a case of its own)
const TRAIN_PLAN: Array<[string, Record<string, number>]> = [
  ['llama', { vocab: 23, dim: 16, heads: 2, groups: 1, headdim: 8, len: 6 }],
  ['mamba1', { vocab: 19, dim: 32, heads: 2, groups: 1, headdim: 16, len: 5 }],
  ['mamba2', { vocab: 17, dim: 16, heads: 2, groups: 2, headdim: 8, len: 9 }],
];
for (const [variant, shapes] of TRAIN_PLAN)
  await emitModel(variant, seed++, shapes, EMITTED, `train_${variant}`, { train: true });
const EMITTED_CASES = EMIT_PLAN.length + MODEL_PLAN.length + 2 * TRAIN_PLAN.length + 2; // + train cases + 2 teachers

describe('golden emit covers every op', () => {
  it('EMIT_PLAN names every op verify knows', () => {
    expect(new Set(EMIT_PLAN.map(([op]) => op))).toEqual(new Set(Object.keys(GOLDEN_OPS)));
  });
});

describe.each(ALL_BACKENDS)('golden on $title', ({ name, available }) => {
  const run = available ? it : it.skip;
  run(
    'upstream vectors: 15 kernel cases, 3 models (logits, greedy continuation), 9 backward cases on every backend, and 3 training steps (float64 training engine; on webgpu the GPU training step: the Llama lm step and both hybrids distilling; unsupported elsewhere, never passed)',
    async () => {
      const r = await verifyGolden(GOLDEN, name);
      const failed = r.results.filter((c) => c.status === 'fail');
      expect(failed, JSON.stringify(failed)).toEqual([]);
      expect([r.passed, r.failed, r.unsupported]).toEqual(
        name === 'reference' || name === 'webgpu' ? [30, 0, 0] : [27, 0, 3],
      );
      for (const c of r.results.filter((x) => x.op.endsWith('_grad'))) expect(c.status).toBe('pass');
      for (const c of r.results.filter((x) => x.op === 'train'))
        expect(c.status, c.name).toBe(name === 'reference' || name === 'webgpu' ? 'pass' : 'unsupported');
      for (const m of r.results.filter((c) => c.op === 'model')) expect(m.errors.greedy_mismatches).toBe(0);
    },
  );
  // on the reference backend this would check the reference against cases it wrote itself: that is the job of
  // the independent example port below instead
  (available && name !== 'reference' ? it : it.skip)(
    'emitted kernel, speculative and model cases with other shapes and seeds pass',
    async () => {
      const r = await verifyGolden(EMITTED, name);
      const refOnly = (c: { op: string }) => c.op === 'train';
      const failed = r.results.filter((c) => c.status !== 'pass' && !(refOnly(c) && c.status === 'unsupported'));
      expect(failed, JSON.stringify(failed)).toEqual([]);
      expect(r.results.length).toBe(EMITTED_CASES);
      // webgpu also passes the training steps (lib/train/gpu_step.ts: the Llama's lm step, the hybrids' distill steps)
      expect(r.passed).toBe(EMITTED_CASES - (name === 'webgpu' ? 0 : TRAIN_PLAN.length));
      expect(r.results.filter((c) => c.op === 'train').map((c) => c.name)).toEqual(
        TRAIN_PLAN.map(([v]) => `models/train_${v}/train`),
      );
      for (const m of r.results.filter((c) => c.op === 'model')) expect(m.errors.greedy_mismatches).toBe(0);
    },
  );
});

// What the reference emits is checked by code that shares nothing with it: the plain-JavaScript example port
// (examples/ports/js, written from the paper and upstream, not from lib/) recomputes every emitted kernel,
// backward, speculative and model case from its inputs and must agree to 1e-9 (gated_rmsnorm_grad: 1e-4, the
// cancellation docs/conform.md documents). Training steps have no independent implementation: the float64
// training engine is checked against upstream's golden train cases instead.
describe('emitted cases against an independent float64 implementation', () => {
  const relErr = (got: ArrayLike<number>, want: ArrayLike<number>) =>
    relError(Float64Array.from(got), Float64Array.from(want));
  it('every emitted kernel, backward and speculative case: the example port recomputes its outputs', () => {
    const { cases } = readKernelsJson(EMITTED);
    const f = readSafetensors(join(EMITTED, 'kernels.safetensors'));
    const checked: string[] = [];
    for (const c of cases) {
      const I = Object.fromEntries(c.inputs.map((n) => [n, toPort(getTensor(f, `${c.name}/in/${n}`))]));
      const fn = PORT_OPS[c.op];
      expect(fn, `the example port implements ${c.op}`).toBeDefined();
      const out = fn(I, c.attrs);
      for (const n of c.outputs) {
        const want = getTensor(f, `${c.name}/out/${n}`);
        expect(out[n]?.shape, `${c.name} ${n} shape`).toEqual([...want.shape]);
        expect(relErr(lookup(out, n).data, want.data), `${c.name} ${n}`).toBeLessThanOrEqual(
          c.op === 'gated_rmsnorm_grad' ? 1e-4 : 1e-9,
        );
      }
      checked.push(c.op);
    }
    expect(checked).toEqual(EMIT_PLAN.map(([op]) => op));
  });
  it('every emitted model case: the example port gives its logits, and its greedy continuation from full forwards', () => {
    const names = readdirSync(join(EMITTED, 'models'));
    expect(names).toHaveLength(MODEL_PLAN.length + TRAIN_PLAN.length + 2); // + the 2 teachers of the distill cases
    for (const n of names) {
      const dir = join(EMITTED, 'models', n);
      const m = portModelFromFolder(dir);
      const g = readSafetensors(join(dir, 'golden.safetensors'));
      const [ids, want] = [getTensor(g, 'input_ids'), getTensor(g, 'logits')];
      const [batch, L] = ids.shape as [number, number];
      const logits = new Float64Array(want.data.length);
      for (let b = 0; b < batch; b++)
        logits.set(portLogits(m, Array.from(ids.data.subarray(b * L, (b + 1) * L))), (b * want.data.length) / batch);
      expect(relErr(logits, want.data), `${n} logits`).toBeLessThanOrEqual(1e-9);
      const greedy = Array.from(getTensor(g, 'greedy').data);
      expect(portGreedy(m, Array.from(getTensor(g, 'prompt').data), greedy.length), `${n} greedy`).toEqual(greedy);
    }
  });
});

describe('malformed golden folders', () => {
  it('a missing tensor, a wrong shape and an unknown op fail or are unsupported case by case; the rest pass', async () => {
    const dir = tmp();
    cpSync(GOLDEN, dir, { recursive: true });
    const f = readSafetensors(join(dir, 'kernels.safetensors'));
    const ts: Record<string, Tensor> = {};
    for (const k of f.tensors.keys()) if (k !== 'conv1d_0/in/bias') ts[k] = getTensor(f, k);
    ts['state_update_0/in/x'] = Tensor.zeros([2, 7]);
    writeSafetensors(join(dir, 'kernels.safetensors'), ts);
    const j = JSON.parse(readFileSync(join(dir, 'kernels.json'), 'utf8'));
    j.cases.push({ ...j.cases[0], name: 'future_0', op: 'mamba3_scan' });
    writeFileSync(join(dir, 'kernels.json'), JSON.stringify(j));
    const r = await verifyGolden(dir, 'reference');
    const by = Object.fromEntries(r.results.map((c) => [c.name, c]));
    expect(by.conv1d_0.status).toBe('fail');
    expect(by.conv1d_0.reason).toMatch(/missing tensor 'conv1d_0\/in\/bias'/);
    expect(by.state_update_0.status).toBe('fail');
    expect(by.state_update_0.reason).toMatch(/tensor 'x': expected shape \[batch=2, dim=8\], got \[2, 7\]/);
    expect(by.future_0.status).toBe('unsupported');
    expect([r.passed, r.failed, r.unsupported]).toEqual([28, 2, 1]);
  });
  it('a truncated safetensors file and a bad schema are reported as failures, not crashes', async () => {
    const dir = tmp();
    cpSync(GOLDEN, dir, { recursive: true });
    const bytes = readFileSync(join(dir, 'kernels.safetensors'));
    writeFileSync(join(dir, 'kernels.safetensors'), bytes.subarray(0, bytes.length - 100));
    const r = await verifyGolden(dir, 'reference');
    expect(r.failed).toBe(1);
    expect(r.results[0].reason).toMatch(/truncated/);
    writeFileSync(join(dir, 'kernels.json'), JSON.stringify({ schema: 'other/2', cases: [] }));
    const r2 = await verifyGolden(dir, 'reference');
    expect(r2.results[0].reason).toMatch(/schema is "other\/2", expected 'mil-golden\/1'/);
    const r3 = await verifyGolden(tmp(), 'reference');
    expect(r3.failed).toBe(1);
  });
});

describe('mil CLI', () => {
  const mil = join(import.meta.dirname, '..', 'bin', 'mil.js');
  it('golden verify prints one line per case and the summary line; exit 0', () => {
    const out = execFileSync('node', [mil, 'golden', 'verify', GOLDEN, '--backend', 'webasm', '--allow-unsupported'], {
      encoding: 'utf8',
    });
    const lines = out.trim().split('\n');
    expect(lines.at(-1)).toBe('27 passed, 0 failed, 3 unsupported');
    expect(lines.filter((l) => l.startsWith('PASS'))).toHaveLength(27);
    expect(out).toMatch(/PASS +selective_scan_grad_0 +selective_scan_grad +out=\S+ last_state=\S+ du=/);
    expect(out).toMatch(
      /UNSUPPORTED models\/llama_tiny\/train +train +- +\(training steps are checked on the float64 training engine only \(webasm has the backward ops, lib\/ops_grad.ts\)\)/,
    );
    expect(out).toMatch(/PASS +models\/hybrid_mamba1 +model +logits=\S+ greedy_mismatches=0/);
    expect(out).toMatch(/PASS +models\/hybrid_mamba2 +model +logits=\S+ greedy_mismatches=0/);
    expect(out).toMatch(/PASS +multistep_0 +multistep +out=\S+ h_j=\S+ h_k=\S+/);
  });
  it('--json prints one object; failures exit 1; bad usage exits 2', () => {
    const j = JSON.parse(execFileSync('node', [mil, 'golden', 'verify', GOLDEN, '--json'], { encoding: 'utf8' }));
    expect([j.passed, j.failed, j.unsupported]).toEqual([30, 0, 0]);
    expect(
      j.reports[0].results
        .filter((c: { op: string }) => c.op === 'train')
        .map((c: { name: string; status: string }) => `${c.name} ${c.status}`),
    ).toEqual(['models/hybrid_mamba1/train pass', 'models/hybrid_mamba2/train pass', 'models/llama_tiny/train pass']);
    const dir = tmp();
    cpSync(GOLDEN, dir, { recursive: true });
    const f = readSafetensors(join(dir, 'kernels.safetensors'));
    const ts: Record<string, Tensor> = {};
    for (const k of f.tensors.keys()) ts[k] = getTensor(f, k);
    ts['multistep_0/out/h_k'] = lookup(ts, 'multistep_0/out/h_k').map((v) => v * 1.001);
    writeSafetensors(join(dir, 'kernels.safetensors'), ts);
    const bad = spawnSync('node', [mil, 'golden', 'verify', dir], { encoding: 'utf8' });
    expect(bad.status).toBe(1);
    expect(bad.stdout).toMatch(/FAIL +multistep_0/);
    expect(bad.stdout.trim().split('\n').at(-1)).toBe('29 passed, 1 failed, 0 unsupported');
    const unk = spawnSync('node', [mil, 'golden', 'verify', GOLDEN, '--backend', 'tpu'], { encoding: 'utf8' });
    expect(unk.status).toBe(2);
    expect(unk.stderr).toMatch(
      /--backend must be one of reference, wasm-simd, cpu, webasm, webasm-threaded, webgl2, webgpu, all, got 'tpu' \(did you mean 'cpu'\?\)/,
    );
  });
  it('golden emit writes a case that verify then passes', () => {
    const dir = tmp();
    const out = execFileSync(
      'node',
      [
        mil,
        'golden',
        'emit',
        '--op',
        'multistep',
        '--seed',
        '9',
        '--dim',
        '7',
        '--steps',
        '3',
        '--recompute',
        '2',
        '--out',
        dir,
      ],
      { encoding: 'utf8' },
    );
    expect(out).toMatch(/wrote case 'multistep_s9'/);
    const v = execFileSync('node', [mil, 'golden', 'verify', dir, '--backend', 'webasm'], { encoding: 'utf8' });
    expect(v.trim().split('\n').at(-1)).toBe('1 passed, 0 failed, 0 unsupported');
  });
});

describe('malformed model folders', () => {
  it('a model folder with a truncated checkpoint or a changed golden token fails with the reason', async () => {
    const dir = tmp();
    cpSync(GOLDEN, dir, { recursive: true });
    const ck = join(dir, 'models', 'llama_tiny', 'model.safetensors');
    const bytes = readFileSync(ck);
    writeFileSync(ck, bytes.subarray(0, bytes.length - 1000));
    const g = join(dir, 'models', 'hybrid_mamba1', 'golden.safetensors');
    const gf = readSafetensors(g);
    const ts: Record<string, Tensor> = {};
    for (const k of gf.tensors.keys()) ts[k] = getTensor(gf, k);
    ts.greedy = ts.greedy.map((v, i) => (i === 5 ? (v + 1) % 101 : v));
    writeSafetensors(g, ts);
    const r = await verifyGolden(dir, 'reference');
    const by = Object.fromEntries(r.results.map((c) => [c.name, c]));
    expect(lookup(by, 'models/llama_tiny').status).toBe('fail');
    expect(lookup(by, 'models/llama_tiny').reason).toMatch(/truncated/);
    expect(lookup(by, 'models/hybrid_mamba1').status).toBe('fail');
    expect(lookup(by, 'models/hybrid_mamba1').reason).toMatch(/greedy token 5 is/);
    // the truncated llama_tiny also fails its training case and both distill cases (it is their teacher)
    for (const n of ['models/llama_tiny/train', 'models/hybrid_mamba1/train', 'models/hybrid_mamba2/train'])
      expect(lookup(by, n).reason, n).toMatch(/truncated/);
    expect(r.passed).toBe(25);
  });
});
