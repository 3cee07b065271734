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
import type { FloatArray } from '../lib/tensor.js';
import { isStableInput, onArrayChanged } from '../lib/weight_registry.js';
import { Plans, type GpuPipeline, type PlanStep } from './plans.js';
import { exactDivision, idivFloor } from './idiv.js';

export type { PlanArg, PlanStep } from './plans.js';

export type KernelBackendName = 'cpu' | 'webasm' | 'webasm-threaded' | 'webgl2' | 'webgpu';
export const KERNEL_BACKENDS: readonly KernelBackendName[] = ['cpu', 'webasm', 'webasm-threaded', 'webgl2', 'webgpu'];

/** Running in a browser page (the web/ build), not in Node. */
const inBrowser = typeof window === 'object' && typeof document === 'object';

/** Largest tensor or output (elements) a float32 kernel takes: flat indices must be exact in float32. */
const MAX_ELEMENTS = 1 << 24;

/** Most separate array arguments a kernel gets before they are packed into one buffer. */
const MAX_ARGS = 7;

/** Parameter names of a `function (a, b, c) {` source. */
function paramNames(source: string): string[] {
  const m = /^\s*function\s*\(([^)]*)\)/.exec(source);
  if (!m) throw new ArgumentError('kernel source', 'a `function (...) {...}` text', source.slice(0, 40));
  return m[1]
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** Rewrite a kernel source so all its array arguments are read from one packed buffer. */
function packSource(source: string, names: readonly string[]): string {
  let body = source.replace(/^\s*function\s*\([^)]*\)/, 'function (packed_)');
  for (const n of names) body = body.replace(new RegExp(`\\b${n}\\[`, 'g'), `packed_[this.constants.OFF_${n} + `);
  return body;
}

// gpu.js ships loose types; this is the slice of its API we use.
interface GpuKernel {
  (...args: unknown[]): Float32Array | Promise<Float32Array>;
  destroy?: () => void;
}
interface GpuInstance {
  createKernel(src: string, settings: Record<string, unknown>): GpuKernel;
  createPipeline(fn: (...handles: unknown[]) => unknown, settings?: Record<string, unknown>): GpuPipeline;
  addFunction(fn: (...a: number[]) => number): unknown;
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
    } else if ((g.process as { env: Record<string, string | undefined> }).env.MIL_NO_WEBGPU)
      return 'disabled by MIL_NO_WEBGPU';
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
        Object.defineProperty(globalThis, 'navigator', {
          value: {
            gpu: mod.create(
              (g.process as { env: Record<string, string | undefined> }).env.MIL_DAWN_FLAGS?.split(' ').filter(
                Boolean,
              ) ?? [],
            ),
          },
          configurable: true,
          writable: true,
        });
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
    if (!inBrowser)
      return "webgl2 runs in browsers only (GPU.js's WebGL2 backend renders into a canvas): see the browser page, npm run web";
    const gl = document.createElement('canvas').getContext('webgl2');
    if (!gl) return 'this browser gives no WebGL2 context';
    if (!gl.getExtension('EXT_color_buffer_float'))
      return 'WebGL2 without EXT_color_buffer_float: float32 textures cannot be rendered';
    return null;
  }
  return null;
}

const runtimes = new Map<KernelBackendName, Promise<GpuRuntime>>();
/** The runtimes made so far (markChanged tells each to drop its resident copy of a changed weight). */
const liveRuntimes = new Set<GpuRuntime>();

/** The runtime of a backend, created once; throws BackendUnavailableError with the reason. */
/**
 * Record that kernels of backend `name` ran as GPU.js class `cls` outside its runtime (kernels/resident_chain.ts
 * builds its own kernels): added to that runtime's `ranOn` where the runtime exists (none is made for it).
 */
export async function noteRanOn(name: KernelBackendName, cls: string): Promise<void> {
  const rt = await runtimes.get(name)?.catch(() => undefined);
  rt?.ranOn.add(cls);
}

export function getRuntime(name: KernelBackendName): Promise<GpuRuntime> {
  let p = runtimes.get(name);
  if (!p) {
    p = (async () => {
      const reason = await unavailableReason(name);
      if (reason) throw new BackendUnavailableError(name, reason);
      const { GPU } = (await import('gpu.js')) as unknown as GpuModule;
      const mode = name === 'webasm-threaded' ? 'webasm' : name;
      const gpu = new GPU({ mode });
      if (name === 'webgpu') gpu.addFunction(idivFloor); // kernels/idiv.ts: exact index division on real GPUs
      const rt = new GpuRuntime(name, gpu);
      liveRuntimes.add(rt);
      return rt;
    })();
    p.catch(() => runtimes.delete(name));
    runtimes.set(name, p);
  }
  return p;
}

// A weight changed in place (lib/weight_registry.ts): every runtime drops what it keeps resident of it
// (a Float32Array weight is its own kernel input; other weights have a float32 copy).
onArrayChanged((a, copy) => {
  for (const rt of liveRuntimes) {
    rt.dropResident(a);
    if (copy) rt.dropResident(copy);
  }
});

/** Throw ArgumentError unless a kernel's output size is a positive integer and it and every input fit MAX_ELEMENTS. */
function checkSizes(key: string, outputSize: number, inputs: readonly Float32Array[]): void {
  if (!Number.isInteger(outputSize) || outputSize <= 0)
    throw new ArgumentError(`${key} output size`, 'a positive integer', outputSize);
  if (outputSize > MAX_ELEMENTS)
    throw new ArgumentError(`${key} output size`, `at most ${MAX_ELEMENTS} elements on float32 kernels`, outputSize);
  for (const a of inputs)
    if (a.length > MAX_ELEMENTS)
      throw new ArgumentError(`${key} input size`, `at most ${MAX_ELEMENTS} elements on float32 kernels`, a.length);
}

/** The GPU.js kernel class each backend must run on: anything else is a fallback, refused (never silent). */
const KERNEL_CLASS: Record<KernelBackendName, string> = {
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

/** The identity kernel that uploads a weight once: its `pipeline: true, immutable: true` result stays on the device. */
const UPLOAD_SRC = 'function (w) { return w[this.thread.x]; }';

/**
 * Compiled kernels kept per runtime (least recently used retired past it). Each is one shape of one source; on
 * webasm each holds its own wasm memory, and with no bound a process that met ~1,000–2,000 shapes (property tests
 * at 20× their runs) failed in `WebAssembly.Memory()`. A retired kernel is compiled again when next needed.
 */
const MAX_KERNELS = 512;

/** Free what a retired kernel holds (its GPU.js resources); nothing else refers to it. */
function destroyKernel(k: GpuKernel): void {
  try {
    (k as unknown as { destroy?: () => void }).destroy?.();
  } catch {
    // a kernel that cannot be destroyed is left to the garbage collector
  }
}

export class GpuRuntime {
  private readonly cache = new Map<string, GpuKernel>();
  /** Number of kernels compiled so far (for tests of the cache). */
  compiled = 0;
  /** At most this many compiled kernels stay alive (weights' upload kernels aside): see MAX_KERNELS. */
  maxKernels = MAX_KERNELS;
  /** Calls running per kernel: a retired kernel is destroyed once they end. */
  private readonly inFlight = new Map<GpuKernel, number>();
  private readonly retired = new Set<GpuKernel>();
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
  /** Kernels run as fused plans (GPU.js createPipeline): kernels/plans.ts. */
  readonly plans: Plans;
  /** The GPU.js kernel classes this runtime's kernels ran as (always KERNEL_CLASS[name]: others are refused). */
  readonly ranOn = new Set<string>();

  constructor(
    readonly name: KernelBackendName,
    private readonly gpu: GpuInstance,
  ) {
    this.residentWeights = name === 'webgpu';
    this.plans = new Plans({
      name,
      kernelClass: KERNEL_CLASS[name],
      gpu,
      isStable: (a) => isStableInput(a),
      run: (key, source, constants, outputSize, args) => this.run(key, source, constants, outputSize, args),
      checkSizes,
      maxArgs: MAX_ARGS,
      ranOn: this.ranOn,
    });
  }

  /** The device buffer holding stable input `a`, uploaded on first use; undefined where it stays an array. */
  private residentFor(a: Float32Array): Promise<DeviceHandle> | undefined {
    if (!this.residentWeights || this.name !== 'webgpu' || !isStableInput(a)) return undefined;
    let h = this.resident.get(a);
    if (!h) {
      const key = `upload|${a.length}`;
      let k = this.cache.get(key);
      if (!k) {
        k = this.gpu.createKernel(UPLOAD_SRC, {
          output: [a.length],
          pipeline: true,
          immutable: true,
          tactic: 'precision',
        });
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

  /** Forget (and free) the device copy of `a`, and every plan that captured it: it was changed in place. */
  dropResident(a: Float32Array | FloatArray): void {
    if (!(a instanceof Float32Array)) return;
    this.plans.forget(a);
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

  /** Run kernels as one plan where their weights are model weights (kernels/plans.ts `Plans.run`). */
  runPlan(
    planKey: string,
    steps: readonly PlanStep[],
    inputs: Float32Array[],
    outputs?: readonly number[],
  ): Promise<Float32Array[]> {
    return this.plans.run(planKey, steps, inputs, outputs);
  }

  /** Retire the least recently used kernels past maxKernels (upload kernels stay: their outputs are the weights). */
  private evict(): void {
    let alive = 0;
    for (const key of this.cache.keys()) if (!key.startsWith('upload|')) alive++;
    for (const [key, k] of this.cache) {
      if (alive <= this.maxKernels) break;
      if (key.startsWith('upload|')) continue;
      this.cache.delete(key);
      alive--;
      if (this.inFlight.has(k)) this.retired.add(k);
      else destroyKernel(k);
    }
  }

  /**
   * Run a kernel: `source` is a GPU.js kernel function as text, compiled once per (key, constants)
   * and cached. `outputSize` threads each return one float. Arguments are flat arrays.
   */
  async run(
    key: string,
    source: string,
    constants: Record<string, number>,
    outputSize: number,
    args: Float32Array[],
  ): Promise<Float32Array> {
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
      if (total > MAX_ELEMENTS)
        throw new ArgumentError(`${key} packed inputs`, `at most ${MAX_ELEMENTS} elements on float32 kernels`, total);
      src = packSource(source, names);
      consts = { ...constants, ...offsets };
      callArgs = [packed];
    }
    // weights resident on the device (webgpu): the kernel binds their buffers instead of a copy of the array
    const bound: Array<Float32Array | DeviceHandle> = await Promise.all(callArgs.map((a) => this.residentFor(a) ?? a));
    // a kernel is compiled for arrays or device buffers in each position: the key says which
    const ck = `${key}|${JSON.stringify(consts)}|${outputSize}|${callArgs.map((a, i) => (bound[i] === a ? '' : 'r') + a.length).join(',')}`;
    let k = this.cache.get(ck);
    if (k) {
      this.cache.delete(ck); // most recently used: to the end
      this.cache.set(ck, k);
    } else {
      k = this.gpu.createKernel(this.name === 'webgpu' ? exactDivision(src) : src, {
        output: [outputSize],
        constants: consts,
        loopMaxIterations: 1 << 30,
        tactic: 'precision',
        asyncMode: this.name === 'webasm-threaded',
      });
      this.cache.set(ck, k);
      this.compiled++;
      this.evict();
    }
    let r: Float32Array;
    this.inFlight.set(k, (this.inFlight.get(k) ?? 0) + 1);
    try {
      r = await k(...bound);
    } catch (e) {
      if (this.cache.get(ck) === k) this.cache.delete(ck);
      throw new KernelError(this.name, key, (e as Error).message.split('\n')[0] ?? String(e));
    } finally {
      const n = (this.inFlight.get(k) ?? 1) - 1;
      if (n > 0) this.inFlight.set(k, n);
      else this.inFlight.delete(k);
      if (n <= 0 && this.retired.delete(k)) destroyKernel(k); // retired while this call ran
    }
    // GPU.js may degrade a kernel to another of its backends (its `fallbackReason`): refuse, never run elsewhere silently
    const inner = (k as unknown as { kernel?: { constructor: { name: string }; fallbackReason?: string | null } })
      .kernel;
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
