/**
 * GPU.js runtime shared by every kernel: one GPU instance per backend, a cache of compiled kernels
 * keyed by kernel name and shape constants, and honest availability checks.
 *
 * Backends (`KernelBackendName`):
 *   cpu              GPU.js's JavaScript backend (float64 arithmetic inside, float32 outputs)
 *   webasm           WebAssembly, strict IEEE float32, single thread, synchronous
 *   webasm-threaded  WebAssembly under asyncMode: kernels with ≥ 4096 output cells split over worker threads
 *   webgl2           GLSL ES 3.00 fragment shaders rendering float32 textures: browsers only (GPU.js's WebGL2
 *                    backend needs a canvas); the browser page (web/) offers it where a WebGL2 context answers
 *   webgpu           WGSL compute shaders: in Node through Dawn (the `webgpu` npm package), in a browser through
 *                    its own navigator.gpu; needs an adapter (a Vulkan driver: a real GPU, Mesa's lavapipe, or
 *                    Chromium's SwiftShader). Never silently replaced by another backend.
 *
 * Conventions for kernel sources (see the GPU.js notes (GPUJS.md in the shared folder) for why):
 *  - every loop bound is a `this.constants.X`, so no loop is capped at loopMaxIterations (also raised);
 *    shapes are constants, so a kernel is compiled once per distinct shape and cached;
 *  - inputs are flat Float32Arrays indexed by multiply-add, outputs are 1-D; the thread index is split
 *    with Math.floor(i / n), exact while i < 2^24 — sizes above MAX_ELEMENTS raise an ArgumentError;
 *  - a thread returns one value; state vectors longer than 4 never live in local arrays;
 *  - WebGPU allows 8 storage buffers per shader stage (output included), so a kernel with more than
 *    MAX_ARGS arguments gets them packed into one buffer: the source's `name[i]` becomes
 *    `packed_[this.constants.OFF_name + i]`. Done on every backend alike, so the CPU tests cover it.
 */
import { ArgumentError, BackendUnavailableError, KernelError } from '../lib/errors.js';
import { forgetFinite, type FloatArray } from '../lib/tensor.js';

export type KernelBackendName = 'cpu' | 'webasm' | 'webasm-threaded' | 'webgl2' | 'webgpu';
export const KERNEL_BACKENDS: readonly KernelBackendName[] = ['cpu', 'webasm', 'webasm-threaded', 'webgl2', 'webgpu'];

/** Running in a browser page (the web/ build), not in Node. */
const inBrowser = typeof window === 'object' && typeof document === 'object';

/** Largest tensor or output (elements) a float32 kernel takes: flat indices must be exact in float32. */
export const MAX_ELEMENTS = 1 << 24;

/** Most separate array arguments a kernel gets before they are packed into one buffer. */
export const MAX_ARGS = 7;

/** Parameter names of a `function (a, b, c) {` source. */
function paramNames(source: string): string[] {
  const m = /^\s*function\s*\(([^)]*)\)/.exec(source);
  if (!m) throw new ArgumentError('kernel source', 'a `function (...) {...}` text', source.slice(0, 40));
  return m[1]!
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** Rewrite a kernel source so all its array arguments are read from one packed buffer. */
export function packSource(source: string, names: readonly string[]): string {
  let body = source.replace(/^\s*function\s*\([^)]*\)/, 'function (packed_)');
  for (const n of names) body = body.replace(new RegExp(`\\b${n}\\[`, 'g'), `packed_[this.constants.OFF_${n} + `);
  return body;
}

// gpu.js ships loose types; this is the slice of its API we use.
interface GpuKernel {
  (...args: unknown[]): Float32Array | Promise<Float32Array>;
  destroy?: () => void;
}
interface GpuPipeline {
  (...args: unknown[]): Promise<unknown>;
  pipeline: {
    executorKind: string;
    fallbackReason: string | null;
    destroy(): Promise<unknown> | void;
    /** the traced plan: the kernels its steps run (GPU.js's own clones of ours) */
    plan?: { kernels?: Array<{ clone?: { kernel?: { constructor: { name: string } } } }> };
  };
}
interface GpuInstance {
  createKernel(src: string, settings: Record<string, unknown>): GpuKernel;
  createPipeline(fn: (...handles: unknown[]) => unknown, settings?: Record<string, unknown>): GpuPipeline;
  destroy?: () => unknown;
}
interface GpuModule {
  GPU: { new (settings: Record<string, unknown>): GpuInstance; isWebGPUAvailable(): Promise<boolean> };
}

let webgpuSetup: Promise<string | null> | undefined;

/**
 * Make navigator.gpu available (a browser's own; in Node, installed from the `webgpu` package) and ask for an
 * adapter; resolves to null or the reason it failed.
 */
function setupWebGPU(): Promise<string | null> {
  webgpuSetup ??= (async () => {
    const g = globalThis as Record<string, unknown>;
    if (inBrowser) {
      if (!(g.navigator as { gpu?: unknown }).gpu)
        return 'this browser has no WebGPU (navigator.gpu is absent: a secure context and a WebGPU-enabled browser are needed)';
    } else if ((g.process as { env: Record<string, string | undefined> }).env.MIL_NO_WEBGPU) return 'disabled by MIL_NO_WEBGPU';
    let mod: { create: (opts: string[]) => unknown; globals: Record<string, unknown> } | undefined;
    if (!inBrowser)
      try {
        mod = (await import('webgpu')) as unknown as typeof mod;
      } catch (e) {
        return `the 'webgpu' package (Dawn) did not load: ${(e as Error).message.split('\n')[0]}`;
      }
    if (mod && !(g.navigator as { gpu?: unknown } | undefined)?.gpu) {
      Object.assign(globalThis, mod.globals);
      try {
        Object.defineProperty(globalThis, 'navigator', { value: { gpu: mod.create([]) }, configurable: true, writable: true });
      } catch (e) {
        return `could not install navigator.gpu: ${(e as Error).message}`;
      }
    }
    try {
      const gpu = (g.navigator as { gpu: { requestAdapter(): Promise<unknown> } }).gpu;
      const adapter = await gpu.requestAdapter();
      if (!adapter)
        return inBrowser
          ? 'no WebGPU adapter: the browser offers none (Chromium without a GPU: --enable-unsafe-webgpu --enable-unsafe-swiftshader)'
          : 'no WebGPU adapter: Dawn found no Vulkan device (install a GPU driver, or Mesa lavapipe: mesa-vulkan-drivers from bookworm-backports)';
    } catch (e) {
      return `requesting a WebGPU adapter failed: ${(e as Error).message}`;
    }
    return null;
  })();
  return webgpuSetup;
}

/** null when the backend can run here, otherwise the reason it cannot. */
export async function unavailableReason(name: KernelBackendName): Promise<string | null> {
  if (name === 'webasm' || name === 'webasm-threaded') {
    if (typeof WebAssembly !== 'object') return 'this JavaScript engine has no WebAssembly';
    if (name === 'webasm-threaded' && typeof SharedArrayBuffer !== 'function') return 'threads need SharedArrayBuffer';
    return null;
  }
  if (name === 'webgpu') return setupWebGPU();
  if (name === 'webgl2') {
    if (!inBrowser) return "webgl2 runs in browsers only (GPU.js's WebGL2 backend renders into a canvas): see the browser page, npm run web";
    const gl = document.createElement('canvas').getContext('webgl2');
    if (!gl) return 'this browser gives no WebGL2 context';
    if (!gl.getExtension('EXT_color_buffer_float')) return 'WebGL2 without EXT_color_buffer_float: float32 textures cannot be rendered';
    return null;
  }
  return null;
}

const runtimes = new Map<KernelBackendName, Promise<GpuRuntime>>();
/** The runtimes made so far (markChanged tells each to drop its resident copy of a changed weight). */
const liveRuntimes = new Set<GpuRuntime>();

/** The runtime of a backend, created once; throws BackendUnavailableError with the reason. */
export function getRuntime(name: KernelBackendName): Promise<GpuRuntime> {
  let p = runtimes.get(name);
  if (!p) {
    p = (async () => {
      const reason = await unavailableReason(name);
      if (reason) throw new BackendUnavailableError(name, reason);
      const { GPU } = (await import('gpu.js')) as unknown as GpuModule;
      const mode = name === 'webasm-threaded' ? 'webasm' : name;
      const rt = new GpuRuntime(name, new GPU({ mode }));
      liveRuntimes.add(rt);
      return rt;
    })();
    p.catch(() => runtimes.delete(name));
    runtimes.set(name, p);
  }
  return p;
}

const immutable = new WeakSet<object>();
const f32Copies = new WeakMap<object, Float32Array>();

/**
 * Declare an array immutable (model weights): its float32 copy for the kernels is then made once and
 * reused. Arrays not declared so are converted at every call, since they may change in place.
 */
export function markImmutable(a: FloatArray): void {
  immutable.add(a);
}

/** Was `a` declared immutable (a model weight)? Backends may keep derived copies of it. */
export function isImmutable(a: FloatArray): boolean {
  return immutable.has(a);
}

/** An immutable array was changed in place (a training step): drop its cached float32 copy. */
export function markChanged(a: FloatArray): void {
  const copy = f32Copies.get(a);
  f32Copies.delete(a);
  forgetFinite(a);
  for (const rt of liveRuntimes) {
    rt.dropResident(a); // a Float32Array weight is its own kernel input
    if (copy) rt.dropResident(copy);
  }
  for (const f of changeListeners) f(a); // derived copies elsewhere (packed SIMD weights)
}

const changeListeners: Array<(a: FloatArray) => void> = [];
/** Be told when an immutable array was changed in place (to drop copies derived from it). */
export function onArrayChanged(f: (a: FloatArray) => void): void {
  changeListeners.push(f);
}

/**
 * Float32 kernel inputs that stay equal to themselves until markChanged: the immutable Float32Arrays and the
 * cached copies of the other immutable arrays. A device backend may keep them resident (uploaded once).
 */
const stableInputs = new WeakSet<Float32Array>();

/** A flat input for a kernel: converted to Float32Array (float32 backends round here). */
export function f32(a: FloatArray | ArrayLike<number>): Float32Array {
  if (a instanceof Float32Array) {
    if (immutable.has(a)) stableInputs.add(a);
    return a;
  }
  if (immutable.has(a)) {
    let c = f32Copies.get(a);
    if (!c) {
      f32Copies.set(a, (c = new Float32Array(a)));
      stableInputs.add(c);
    }
    return c;
  }
  return new Float32Array(a);
}

/** Throw ArgumentError unless a kernel's output size is a positive integer and it and every input fit MAX_ELEMENTS. */
function checkSizes(key: string, outputSize: number, inputs: readonly Float32Array[]): void {
  if (!Number.isInteger(outputSize) || outputSize <= 0) throw new ArgumentError(`${key} output size`, 'a positive integer', outputSize);
  if (outputSize > MAX_ELEMENTS) throw new ArgumentError(`${key} output size`, `at most ${MAX_ELEMENTS} elements on float32 kernels`, outputSize);
  for (const a of inputs)
    if (a.length > MAX_ELEMENTS) throw new ArgumentError(`${key} input size`, `at most ${MAX_ELEMENTS} elements on float32 kernels`, a.length);
}

/** The GPU.js kernel class each backend must run on: anything else is a fallback, refused (never silent). */
export const KERNEL_CLASS: Record<KernelBackendName, string> = {
  cpu: 'CPUKernel',
  webasm: 'WebAssemblyKernel',
  'webasm-threaded': 'WebAssemblyKernel',
  webgl2: 'WebGL2Kernel',
  webgpu: 'WebGPUKernel',
};

/** A GPU.js `pipeline: true` result: a buffer in device memory that kernels take in place of an array. */
interface DeviceHandle {
  delete(): void;
  toArray(): Promise<Float32Array>;
}

/** Device buffers of resident weights, released when the weight's float32 array is collected. */
const residentRelease = new FinalizationRegistry<{ handle: DeviceHandle; rt: GpuRuntime; elements: number }>((r) => {
  r.handle.delete();
  r.rt.residentElements -= r.elements;
});

/** An argument of a plan step: the plan's i-th input, a weight the plan captures (uploaded with it, once), or an earlier step's result. */
export type PlanArg = { input: number } | { weight: Float32Array } | { step: number };
/** One kernel of a plan: what `GpuRuntime.run` takes, with its arguments named by where they come from. */
export interface PlanStep {
  key: string;
  source: string;
  constants: Record<string, number>;
  outputSize: number;
  args: readonly PlanArg[];
}

/**
 * The executor a fused plan must run under on each backend (GPU.js createPipeline's `executorKind`): webasm
 * runs every step over one WebAssembly memory, webgpu records every step into one command encoder (one submit,
 * one readback); cpu and webgl2 walk the steps through their own kernels. Anything else is refused.
 */
export const PLAN_EXECUTORS: Record<KernelBackendName, readonly string[]> = {
  cpu: ['generic'],
  webasm: ['fused-sync'],
  'webasm-threaded': ['fused-threaded', 'fused-sync'],
  webgl2: ['generic'],
  webgpu: ['fused-encoder'],
};

/** Most compiled plans a runtime keeps alive (see GpuRuntime.livePlans): a d512 model has ~12 per window size. */
export const MAX_PLANS = 256;

interface CompiledPlan {
  run: GpuPipeline;
  weights: readonly Float32Array[];
  /** retired: calls compile a new plan; `destroyed` once its pipeline is, after the calls in flight */
  dead: boolean;
  destroyed: boolean;
  inFlight: number;
}

/** The identity kernel that uploads a weight once: its `pipeline: true, immutable: true` result stays on the device. */
const UPLOAD_SRC = 'function (w) { return w[this.thread.x]; }';

export class GpuRuntime {
  private readonly cache = new Map<string, GpuKernel>();
  /** Number of kernels compiled so far (for tests of the cache). */
  compiled = 0;
  /**
   * Keep weights resident (webgpu only): a stable input (a weight's float32 array, see f32) is uploaded to a
   * device buffer on first use and every later call binds that buffer instead of copying the array again
   * (GPU.js flattens and writes every array argument at every call: a d512 model's 160 MB per token).
   * Results are the same bits either way (the same values, read by the same kernel); off for comparisons.
   */
  residentWeights: boolean;
  /** Weights uploaded to the device so far, and their float32 elements (for tests and benches). */
  uploads = 0;
  uploadedElements = 0;
  /** Float32 elements held on the device now (uploads less those freed after markChanged). */
  residentElements = 0;
  private readonly resident = new WeakMap<Float32Array, Promise<DeviceHandle>>();
  /**
   * Run plans fused (GPU.js createPipeline) where every weight they capture is stable; off: the same kernels
   * one call at a time (for comparisons). Plans compiled so far, for tests.
   */
  fusedPlans = true;
  plansCompiled = 0;
  /** Compiled plans by their first weight, then by plan key; and every plan that captured a given weight. */
  private readonly plans = new WeakMap<Float32Array, Map<string, CompiledPlan>>();
  private readonly plansOf = new WeakMap<Float32Array, CompiledPlan[]>();
  /**
   * The live plans, least recently used first. GPU.js keeps every pipeline (and through it the weights it
   * captured) until it is destroyed, so at most MAX_PLANS stay alive: the oldest is destroyed to make room (a
   * model used again recompiles its plans).
   */
  private readonly livePlans = new Set<CompiledPlan>();
  maxPlans = MAX_PLANS;
  /** Kernels the plans are traced with, one per kernel and shape (GPU.js compiles private clones per plan). */
  private readonly planKernels = new Map<string, GpuKernel>();
  /** The GPU.js kernel classes this runtime's kernels ran as (always KERNEL_CLASS[name]: others are refused). */
  readonly ranOn = new Set<string>();

  constructor(
    readonly name: KernelBackendName,
    private readonly gpu: GpuInstance,
  ) {
    this.residentWeights = name === 'webgpu';
  }

  /** The device buffer holding stable input `a`, uploaded on first use; undefined where it stays an array. */
  private residentFor(a: Float32Array): Promise<DeviceHandle> | undefined {
    if (!this.residentWeights || this.name !== 'webgpu' || !stableInputs.has(a)) return undefined;
    let h = this.resident.get(a);
    if (!h) {
      const key = `upload|${a.length}`;
      let k = this.cache.get(key);
      if (!k) {
        k = this.gpu.createKernel(UPLOAD_SRC, { output: [a.length], pipeline: true, immutable: true, tactic: 'precision' });
        this.cache.set(key, k);
        this.compiled++;
      }
      const upload = k;
      h = (async () => {
        const handle = (await upload(a)) as unknown as DeviceHandle;
        residentRelease.register(a, { handle, rt: this, elements: a.length }, handle);
        this.uploads++;
        this.uploadedElements += a.length;
        this.residentElements += a.length;
        return handle;
      })();
      h.catch(() => this.resident.delete(a));
      this.resident.set(a, h);
    }
    return h;
  }

  /** Retire a plan: no later call finds it; its pipeline is destroyed now, or when its calls in flight end. */
  private destroyPlan(plan: CompiledPlan): void {
    if (!plan.dead) {
      plan.dead = true;
      this.livePlans.delete(plan);
    }
    if (plan.inFlight === 0 && !plan.destroyed) {
      plan.destroyed = true;
      void Promise.resolve(plan.run.pipeline.destroy()).catch(() => undefined);
    }
  }

  /** Destroy every compiled plan (their device buffers and captured weights are freed; later calls recompile). */
  releasePlans(): void {
    for (const plan of [...this.livePlans]) this.destroyPlan(plan);
  }

  /** Forget (and free) the device copy of `a`, and every plan that captured it: it was changed in place. */
  dropResident(a: Float32Array | FloatArray): void {
    if (!(a instanceof Float32Array)) return;
    for (const plan of this.plansOf.get(a) ?? []) this.destroyPlan(plan);
    this.plansOf.delete(a);
    const h = this.resident.get(a);
    if (!h) return;
    this.resident.delete(a);
    void h.then(
      (handle) => {
        residentRelease.unregister(handle);
        handle.delete();
        this.residentElements -= a.length;
      },
      () => undefined,
    );
  }

  /**
   * Run kernels in sequence and return the results of the steps `outputs` names (by default the last). Where every weight the plan names is stable (a
   * model weight, see f32) and `fusedPlans` is on, the steps run as one GPU.js pipeline (createPipeline),
   * compiled on first use for those weights and cached: the weights are captured by it (uploaded once), the
   * intermediates never leave the backend's memory, and a call costs one upload of the inputs and one
   * readback (on webgpu one submit). Otherwise each step is a `run` of its own, reading its result back.
   * Both ways run the same kernels on the same float32 values: the results are the same bits (tested).
   */
  async runPlan(planKey: string, steps: readonly PlanStep[], inputs: Float32Array[], outputs: readonly number[] = [steps.length - 1]): Promise<Float32Array[]> {
    if (steps.length === 0) throw new ArgumentError(`${planKey} steps`, 'at least one kernel', 0);
    const weights = steps.flatMap((s) => s.args.flatMap((a) => ('weight' in a ? [a.weight] : [])));
    for (const i of outputs)
      if (!Number.isInteger(i) || i < 0 || i >= steps.length) throw new ArgumentError(`${planKey} outputs`, `step indices in [0, ${steps.length})`, i);
    const fuse = this.fusedPlans && weights.length > 0 && weights.every((w) => stableInputs.has(w));
    if (!fuse) {
      const results: Float32Array[] = [];
      for (const s of steps)
        results.push(
          await this.run(
            s.key,
            s.source,
            s.constants,
            s.outputSize,
            s.args.map((a) => ('input' in a ? inputs[a.input]! : 'weight' in a ? a.weight : results[a.step]!)),
          ),
        );
      return outputs.map((i) => results[i]!);
    }
    checkSizes(planKey, 1, [...inputs, ...weights]);
    for (const s of steps) {
      checkSizes(s.key, s.outputSize, []);
      // run() packs more arguments into one buffer; a plan's steps must not need it
      if (s.args.length > MAX_ARGS) throw new ArgumentError(`${s.key} arguments in a plan`, `at most ${MAX_ARGS}`, s.args.length);
    }
    const key = `${planKey}|${inputs.map((a) => a.length).join(',')}|${outputs.join(',')}`;
    let byKey = this.plans.get(weights[0]!);
    if (!byKey) this.plans.set(weights[0]!, (byKey = new Map()));
    let plan = byKey.get(key);
    if (plan && (plan.dead || plan.weights.length !== weights.length || plan.weights.some((w, i) => w !== weights[i]))) plan = undefined;
    if (plan) {
      this.livePlans.delete(plan); // most recently used: to the end
      this.livePlans.add(plan);
    } else {
      const kernels = steps.map((s) => {
        const kk = `${s.key}|${JSON.stringify(s.constants)}|${s.outputSize}`;
        let k = this.planKernels.get(kk);
        if (!k) {
          k = this.gpu.createKernel(s.source, { output: [s.outputSize], constants: s.constants, loopMaxIterations: 1 << 30, tactic: 'precision' });
          this.planKernels.set(kk, k);
        }
        return k;
      });
      // the orchestration GPU.js traces once: each step's kernel on its inputs, captured weights, earlier results
      const trace = (...handles: unknown[]) => {
        const results: unknown[] = [];
        steps.forEach((s, i) =>
          results.push(kernels[i]!(...s.args.map((a) => ('input' in a ? handles[a.input] : 'weight' in a ? a.weight : results[a.step])))),
        );
        return outputs.map((o) => results[o]);
      };
      Object.defineProperty(trace, 'length', { value: inputs.length }); // GPU.js reads the plan's arity from it
      plan = { run: this.gpu.createPipeline(trace, { threads: this.name === 'webasm-threaded' }), weights, dead: false, destroyed: false, inFlight: 0 };
      byKey.set(key, plan);
      this.livePlans.add(plan);
      for (const old of this.livePlans) {
        if (this.livePlans.size <= this.maxPlans) break;
        this.destroyPlan(old);
      }
      for (const w of weights) {
        const list = this.plansOf.get(w) ?? [];
        if (!list.includes(plan)) list.push(plan);
        this.plansOf.set(w, list);
      }
      this.plansCompiled++;
    }
    let r: unknown;
    plan.inFlight++;
    try {
      r = await plan.run(...inputs.map((a) => (a.length === 0 ? new Float32Array(1) : a)));
    } catch (e) {
      byKey.delete(key);
      this.destroyPlan(plan);
      throw new KernelError(this.name, planKey, (e as Error).message.split('\n')[0] ?? String(e));
    } finally {
      plan.inFlight--;
      if (plan.dead) this.destroyPlan(plan); // retired while this call ran
    }
    // a plan GPU.js ran under another executor than this backend's, or on kernels of another class, is refused
    const { executorKind, fallbackReason } = plan.run.pipeline;
    const classes = (plan.run.pipeline.plan?.kernels ?? []).map((k) => k.clone?.kernel?.constructor.name ?? 'unknown');
    const wrong = !PLAN_EXECUTORS[this.name].includes(executorKind)
      ? `GPU.js ran the plan under its ${executorKind} executor, not ${PLAN_EXECUTORS[this.name].join(' or ')}${fallbackReason ? ` (${fallbackReason})` : ''}`
      : classes.length === 0 || classes.some((c) => c !== KERNEL_CLASS[this.name])
        ? `GPU.js ran the plan's kernels as ${classes.join(', ') || 'nothing it reports'}, not ${KERNEL_CLASS[this.name]}`
        : undefined;
    if (wrong) {
      byKey.delete(key);
      this.destroyPlan(plan);
      throw new KernelError(this.name, planKey, wrong);
    }
    for (const c of classes) this.ranOn.add(c);
    return (r as ArrayLike<number>[]).map((x) => (x instanceof Float32Array ? x : new Float32Array(x)));
  }

  /**
   * Run a kernel: `source` is a GPU.js kernel function as text, compiled once per (key, constants)
   * and cached. `outputSize` threads each return one float. Arguments are flat arrays.
   */
  async run(key: string, source: string, constants: Record<string, number>, outputSize: number, args: Float32Array[]): Promise<Float32Array> {
    checkSizes(key, outputSize, args);
    // GPU.js kernels want at least one element per argument.
    let callArgs = args.map((a) => (a.length === 0 ? new Float32Array(1) : a));
    let src = source;
    let consts = constants;
    if (callArgs.length > MAX_ARGS) {
      const names = paramNames(source);
      const offsets: Record<string, number> = {};
      let total = 0;
      callArgs.forEach((a, i) => {
        offsets[`OFF_${names[i]}`] = total;
        total += a.length;
      });
      const packed = new Float32Array(total);
      callArgs.forEach((a, i) => packed.set(a, offsets[`OFF_${names[i]}`]));
      if (total > MAX_ELEMENTS) throw new ArgumentError(`${key} packed inputs`, `at most ${MAX_ELEMENTS} elements on float32 kernels`, total);
      src = packSource(source, names);
      consts = { ...constants, ...offsets };
      callArgs = [packed];
    }
    // weights resident on the device (webgpu): the kernel binds their buffers instead of a copy of the array
    const bound: Array<Float32Array | DeviceHandle> = await Promise.all(callArgs.map((a) => this.residentFor(a) ?? a));
    // a kernel is compiled for arrays or device buffers in each position: the key says which
    const ck = `${key}|${JSON.stringify(consts)}|${outputSize}|${callArgs.map((a, i) => (bound[i] === a ? '' : 'r') + a.length).join(',')}`;
    let k = this.cache.get(ck);
    if (!k) {
      k = this.gpu.createKernel(src, {
        output: [outputSize],
        constants: consts,
        loopMaxIterations: 1 << 30,
        tactic: 'precision',
        asyncMode: this.name === 'webasm-threaded',
      });
      this.cache.set(ck, k);
      this.compiled++;
    }
    let r: Float32Array;
    try {
      r = await k(...bound);
    } catch (e) {
      this.cache.delete(ck);
      throw new KernelError(this.name, key, (e as Error).message.split('\n')[0] ?? String(e));
    }
    // GPU.js may degrade a kernel to another of its backends (its `fallbackReason`): refuse, never run elsewhere silently
    const inner = (k as unknown as { kernel?: { constructor: { name: string }; fallbackReason?: string | null } }).kernel;
    const cls = inner?.constructor.name ?? 'unknown';
    if (cls !== KERNEL_CLASS[this.name]) {
      this.cache.delete(ck);
      throw new KernelError(
        this.name,
        key,
        `GPU.js ran it as ${cls}, not ${KERNEL_CLASS[this.name]}${inner?.fallbackReason ? ` (${inner.fallbackReason})` : ''}`,
      );
    }
    this.ranOn.add(cls);
    return r instanceof Float32Array ? r : new Float32Array(r);
  }
}
