/**
 * Bad input gets a typed error that names the tensor and the expected and actual shape or value —
 * on the reference and on every kernel backend alike, because validation is shared.
 */
import { describe, expect, it, vi } from 'vitest';
import { getOps } from '../lib/ops.js';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ArgumentError, KernelError, NonFiniteError, ShapeError, UnknownBackendError } from '../lib/errors.js';
import { GpuRuntime, KERNEL_BACKENDS, getRuntime, type KernelBackendName } from '../kernels/runtime.js';
import { f32, markImmutable } from '../lib/weight_registry.js';
import { ALL_BACKENDS, Rng, rand } from './helpers.js';

const r = new Rng(7);
const good = () => ({
  u: rand.normal(r, [1, 4, 5]),
  delta: rand.normal(r, [1, 4, 5]),
  A: rand.uniform(r, [4, 3], -1, -0.1),
  B: rand.normal(r, [1, 3, 5]),
  C: rand.normal(r, [1, 3, 5]),
});

describe.each(ALL_BACKENDS)('typed errors on $title', ({ name, available }) => {
  const run = available ? it : it.skip;
  run('mismatched shapes name the tensor, the expected and the actual shape', async () => {
    const ops = await getOps(name);
    const bad = { ...good(), delta: rand.normal(r, [1, 4, 6]) };
    const e = await ops.selectiveScan(bad).catch((x) => x);
    expect(e).toBeInstanceOf(ShapeError);
    expect(e.tensor).toBe('delta');
    expect(e.message).toMatch(/tensor 'delta': expected shape \[batch=1, dim=4, L=5\], got \[1, 4, 6\]/);
    const e2 = await ops.selectiveScan({ ...good(), B: rand.normal(r, [1, 2, 5]) }).catch((x) => x);
    expect(e2).toBeInstanceOf(ShapeError);
    expect(e2.tensor).toBe('B');
    const e3 = await ops.matmul(rand.normal(r, [2, 3]), rand.normal(r, [4, 2])).catch((x) => x);
    expect(e3).toBeInstanceOf(ShapeError);
    expect(e3.message).toMatch(/'b'.*\[k=3, n\].*\[4, 2\]/);
  });
  run(
    'the MLP and several products of one input check every weight before the first product, naming the bad one',
    async () => {
      const ops = await getOps(name);
      const x = rand.normal(r, [2, 4]);
      const linear = vi.spyOn(ops, 'linear'); // wasm-simd composes both from ops.linear
      try {
        const e = await ops
          .gatedMlp(x, rand.normal(r, [6, 4]), rand.normal(r, [6, 4]), rand.normal(r, [4, 5]))
          .catch((v) => v);
        expect(e).toBeInstanceOf(ShapeError);
        expect(e.message).toMatch(/tensor 'down': expected shape \[o=4, f=6\], got \[4, 5\]/);
        const ws = [{ weight: rand.normal(r, [3, 4]) }, { weight: rand.normal(r, [2, 4]), bias: rand.normal(r, [3]) }];
        const e2 = await ops.linears(x, ws).catch((v) => v);
        expect(e2).toBeInstanceOf(ShapeError);
        expect(e2.message).toMatch(/tensor 'bias 1': expected shape \[out=2\], got \[3\]/);
        expect(linear).not.toHaveBeenCalled();
      } finally {
        linear.mockRestore();
      }
    },
  );
  run('NaN and Inf in inputs are rejected with the tensor and index', async () => {
    const ops = await getOps(name);
    const g = good();
    g.u.data[7] = NaN;
    const e = await ops.selectiveScan(g).catch((x) => x);
    expect(e).toBeInstanceOf(NonFiniteError);
    expect(e.message).toMatch(/tensor 'u': non-finite value NaN at flat index 7/);
    const h = good();
    h.A.data[0] = -Infinity;
    expect(await ops.selectiveScan(h).catch((x) => x)).toBeInstanceOf(NonFiniteError);
  });
  run('out-of-range options are ArgumentErrors', async () => {
    const ops = await getOps(name);
    const x = rand.normal(r, [1, 2, 3]);
    const w = rand.normal(r, [2, 4]);
    await expect(ops.causalConv1dUpdate({ x, convState: rand.normal(r, [1, 2, 2]), weight: w })).rejects.toBeInstanceOf(
      ArgumentError,
    );
    await expect(
      ops.causalConv1dUpdate({ x, convState: rand.normal(r, [1, 2, 3]), weight: w, cacheSeqlens: [-1] }),
    ).rejects.toBeInstanceOf(ArgumentError);
    await expect(
      ops.gatedRmsnorm(rand.normal(r, [2, 6]), rand.normal(r, [6]), undefined, { groupSize: 4 }),
    ).rejects.toBeInstanceOf(ArgumentError);
    // an unknown activation is refused, not run as none (wasm-simd applies its SiLU after the reference's sums)
    const relu = 'relu' as unknown as 'silu';
    await expect(ops.causalConv1d({ x, weight: w, activation: relu })).rejects.toThrow(
      /argument 'activation': expected null or 'silu', got 'relu'/,
    );
    await expect(
      ops.causalConv1dUpdate({ x, convState: rand.normal(r, [1, 2, 3]), weight: w, activation: relu }),
    ).rejects.toThrow(/argument 'activation'/);
  });
});

/** A one-step plan (kernels/plans.ts): input 0 times the weight, elementwise, 4 elements. */
const mulStep = (weight: Float32Array) => ({
  key: 'mul',
  source: 'function (a, b) { return a[this.thread.x] * b[this.thread.x]; }',
  constants: {},
  outputSize: 4,
  args: [{ input: 0 }, { weight }],
});
/** A stable kernel input, as a model weight's float32 array is (captured by a plan). */
function modelWeight(): Float32Array {
  const w = Float32Array.of(1, 2, 3, 4);
  markImmutable(w);
  return f32(w);
}

describe('backends', () => {
  it('an unknown backend name is an UnknownBackendError listing the known ones', async () => {
    const e = await getOps('cuda').catch((x) => x);
    expect(e).toBeInstanceOf(UnknownBackendError);
    expect(e.message).toMatch(
      /unknown backend 'cuda': expected one of reference, wasm-simd, cpu, webasm, webasm-threaded, webgl2, webgpu/,
    );
  });
  it("a kernel GPU.js degrades to another of its backends is refused, naming both; each available kernel backend's kernels ran as its own class", async () => {
    // a runtime that claims webasm but whose GPU.js instance runs plain JavaScript: the first call says so
    const { GPU } = (await import('gpu.js')) as unknown as {
      GPU: new (o: object) => ConstructorParameters<typeof GpuRuntime>[1];
    };
    const fake = new GpuRuntime('webasm', new GPU({ mode: 'cpu' }));
    const e = await fake
      .run('double', 'function (a) { return a[this.thread.x] * 2; }', {}, 4, [new Float32Array(4)])
      .catch((x) => x);
    expect(e).toBeInstanceOf(KernelError);
    expect(e.message).toMatch(/GPU.js ran it as CPUKernel, not WebAssemblyKernel/);
    // the same for a fused plan (kernels/plans.ts): GPU.js walks it with its generic executor on CPU kernels
    const pe = await fake.runPlan('mul', [mulStep(modelWeight())], [new Float32Array(4)]).catch((x) => x);
    expect(pe).toBeInstanceOf(KernelError);
    expect(pe.message).toMatch(/mul.*GPU.js ran the plan under its generic executor, not fused-sync/);
    for (const b of ALL_BACKENDS.filter(
      (x) => x.available && (KERNEL_BACKENDS as readonly string[]).includes(x.name),
    )) {
      const ops = await getOps(b.name);
      await ops.selectiveScan(good());
      // written out here, not read from KERNEL_CLASS: a wrong entry there (webasm → CPUKernel) would accept a fallback
      const own: Record<string, string> = {
        cpu: 'CPUKernel',
        webasm: 'WebAssemblyKernel',
        'webasm-threaded': 'WebAssemblyKernel',
        webgl2: 'WebGL2Kernel',
        webgpu: 'WebGPUKernel',
      };
      expect([...(await getRuntime(b.name as KernelBackendName)).ranOn], b.name).toEqual([own[b.name]]);
    }
  });
  it('a plan asked for a step it does not have is an ArgumentError naming the plan, before any kernel runs, fused or not', async () => {
    const rt = await getRuntime('cpu');
    // a model weight (fused) and a plain array (kernel by kernel)
    for (const s of [mulStep(modelWeight()), mulStep(new Float32Array(4))]) {
      const compiled = rt.compiled + rt.plans.compiled;
      const e = await rt.runPlan('probe', [s], [new Float32Array(4)], [1]).catch((x) => x);
      expect(e).toBeInstanceOf(ArgumentError);
      expect(e.message).toMatch(/probe outputs.*step indices in \[0, 1\).*1/);
      expect(rt.compiled + rt.plans.compiled, 'nothing compiled').toBe(compiled);
    }
  });
  it('an unavailable backend says why and is never replaced by another (webgpu disabled in a subprocess)', () => {
    const mil = join(import.meta.dirname, '..', 'bin', 'mil.js');
    const env = { ...process.env, MIL_NO_WEBGPU: '1' };
    const list = spawnSync('node', [mil, 'backends'], { encoding: 'utf8', env });
    expect(list.stdout).toMatch(/webgpu +not available: disabled by MIL_NO_WEBGPU/);
    expect(list.stdout).toMatch(/webasm +available/);
    const run = spawnSync(
      'node',
      [mil, 'golden', 'verify', join(import.meta.dirname, '..', 'golden'), '--backend', 'webgpu'],
      { encoding: 'utf8', env },
    );
    expect(run.status).toBe(6); // an environment failure (exit 6), not bad usage;
    expect(run.stderr).toMatch(
      /BackendUnavailableError: backend 'webgpu' is not available here: disabled by MIL_NO_WEBGPU/,
    );
    expect(run.stdout).not.toMatch(/PASS/);
  });
});
