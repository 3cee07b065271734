/**
 * Resident chains (webgpu): GPU.js kernels recorded into ONE command encoder over device buffers that stay on
 * the GPU between calls — the mechanism under one GPU submission per decoded token (lib/model/gpu_decode.ts).
 *
 * Why not `createPipeline` (kernels/plans.ts): GPU.js's fused encoder (gpu.js src/backend/web-gpu/
 * pipeline-executor.js) owns its plan buffers, takes plain arrays only (a resident buffer handle as an
 * argument degrades the plan to its generic executor: one submit and one readback per kernel) and has no way
 * to write a buffer that persists from one call to the next. A decode step needs exactly that: the KV cache
 * and the Mamba states updated in place token after token, the weights bound where they already are.
 *
 * How — GPU.js's own mechanism, with buffers this chain owns (this is where GPU.js is extended; see also
 * docs/GPUJS.md): every kernel is a GPU.js kernel (`createKernel` on a source text, as everywhere in
 * kernels/), built by GPU.js's WebGPUKernel.build for float32 array arguments of the right lengths, exactly
 * as its fused encoder builds plan steps: GPU.js translates the source to WGSL and makes the compute
 * pipeline, bind-group layout and params layout. The chain then
 *   - allocates device buffers once (weights uploaded once, states, caches, intermediates; `buffer`),
 *   - binds them into one bind group per step and writes each step's params uniform once (`kernel`),
 *   - records into named programs (`record`): one chain may hold a one-token step and windows of T tokens that
 *     share its weights, caches and states,
 *   - per call (`run`): writes the few per-call values (`write`, a queue write, no submission), records every
 *     step into one command encoder — dispatches in one compute pass, broken only where a buffer copy
 *     (`copy`: a cache row written at the token's position, a state put back) sits between them —, copies
 *     what is read back into one staging buffer, submits once and maps once.
 * A kernel reads and writes different buffers (WebGPU refuses one buffer bound read-only and writable in one
 * dispatch): an in-place state update writes a scratch buffer and a copy in the same encoder puts it back.
 * Built programs are shared between steps of the same kernel and shapes (a model's layers compile once).
 *
 * Where GPU.js's WGSL cannot express a kernel (workgroup memory, barriers, several outputs per thread), `wgsl`
 * records a hand-written WGSL shader as the same kind of dispatch op (kernels/decode_wgsl.ts, a decoded token's
 * reductions; kernels/tiled_matmul.ts, the training step's products; docs/GPUJS.md says why).
 *
 * Cost of the extension: nothing per call beyond what GPU.js's fused encoder does (one encoder, one submit,
 * one map); the per-call JavaScript is one setPipeline/setBindGroup/dispatch per step (bench/gpu.ts).
 */
import { ArgumentError, BackendUnavailableError, KernelError } from '../lib/errors.js';
import { noteRanOn, unavailableReason } from './runtime.js';
import { IMAD_TYPES, exactDivision, idivFloor, imad } from './idiv.js';

// WebGPU numbers (pinned by the spec; the globals exist only where WebGPU does)
const USAGE_MAP_READ = 0x0001;
const USAGE_COPY_SRC = 0x0004;
const USAGE_COPY_DST = 0x0008;
const USAGE_UNIFORM = 0x0040;
const USAGE_STORAGE = 0x0080;
const MAP_MODE_READ = 0x0001;
const SHADER_STAGE_COMPUTE = 0x4;

/** The slice of the WebGPU API used here (the project does not load @webgpu/types). */
export interface GpuBufferLike {
  readonly size: number;
  destroy(): void;
  mapAsync(mode: number, offset?: number, size?: number): Promise<void>;
  getMappedRange(offset?: number, size?: number): ArrayBuffer;
  unmap(): void;
}
interface ComputePass {
  setPipeline(p: unknown): void;
  setBindGroup(i: number, g: unknown): void;
  dispatchWorkgroups(x: number, y?: number, z?: number): void;
  end(): void;
}
interface CommandEncoder {
  beginComputePass(): ComputePass;
  copyBufferToBuffer(src: GpuBufferLike, so: number, dst: GpuBufferLike, dOff: number, size: number): void;
  finish(): unknown;
}
interface GpuQueueLike {
  submit(buffers: unknown[]): void;
  writeBuffer(b: GpuBufferLike, offset: number, data: ArrayBufferView): void;
  onSubmittedWorkDone(): Promise<void>;
}
export interface GpuDeviceLike {
  readonly queue: GpuQueueLike;
  /** resolves when the device is lost (destroyed, a driver reset, …) */
  readonly lost: Promise<{ reason?: string; message?: string }>;
  readonly limits: Record<string, number>;
  createBuffer(d: { size: number; usage: number }): GpuBufferLike;
  createBindGroup(d: { layout: unknown; entries: unknown[] }): unknown;
  createCommandEncoder(): CommandEncoder;
  createShaderModule(d: { code: string }): unknown;
  createBindGroupLayout(d: { entries: unknown[] }): unknown;
  createPipelineLayout(d: { bindGroupLayouts: unknown[] }): unknown;
  createComputePipeline(d: { layout: unknown; compute: { module: unknown; entryPoint: string } }): unknown;
  pushErrorScope(filter: 'validation'): void;
  popErrorScope(): Promise<{ message: string } | null>;
}

/**
 * A compute shader written in WGSL by hand (not by GPU.js), for what GPU.js's generated WGSL cannot express:
 * `var<workgroup>` tiles, workgroupBarrier (which WGSL allows only under uniform control flow, and GPU.js's
 * kernels `return` early for out-of-range threads), several outputs per thread. Entry point `main`; bindings, in
 * group 0: 0 a uniform of `uniforms.length` u32 (when there are any), then each argument read-only storage, then
 * the output read_write storage. The module is compiled once per distinct `code` on the chain's device.
 */
export interface WgslKernel {
  readonly key: string;
  readonly code: string;
  /** u32 values for the uniform at binding 0 (shapes, so one module serves every shape of its form) */
  readonly uniforms: readonly number[];
  /** workgroups to dispatch, x y z */
  readonly groups: readonly [number, number, number];
  /** float32 values the output holds */
  readonly size: number;
  /**
   * Two dispatches (a split-K product): this shader binds the arguments before `first` and writes `parts`·size
   * values into a scratch buffer of the chain; `reduce` binds that scratch, then the arguments from `first` on,
   * and writes the output.
   */
  readonly split?: {
    readonly parts: number;
    readonly first: number;
    readonly reduce: Pick<WgslKernel, 'key' | 'code' | 'uniforms' | 'groups'>;
  };
}
/** GPU.js's WebGPUKernel after build(): what its own fused encoder reads from it. */
interface BuiltKernel {
  constructor: { name: string };
  build(...args: unknown[]): Promise<void>;
  computePipeline: unknown;
  bindGroupLayout: unknown;
  paramsLayout: {
    arrayArgs: Array<{ dimsOffset: number }>;
    scalarArgs: unknown[];
    bufferConstants: Array<{ buffer: GpuBufferLike }>;
    randomSeedOffset: number | null;
    byteLength: number;
  };
  threadDim: number[];
  componentCount: number;
  _device: GpuDeviceLike;
  _computeDispatch(threadDim: number[]): { groups: number[]; dispatchWidth: number };
  outputBuffer: (GpuBufferLike & { _refs?: number }) | null;
  destroy(): void;
}
interface GpuJs {
  GPU: new (s: Record<string, unknown>) => {
    createKernel(src: string, s: Record<string, unknown>): { kernel: BuiltKernel };
    addFunction(
      fn: (...a: number[]) => number,
      settings?: { argumentTypes?: Record<string, string>; returnType?: string },
    ): unknown;
    destroy(): unknown;
  };
  Input: new (value: Float32Array, size: number[]) => unknown;
}

/** A device buffer of float32 elements owned by a chain. */
export interface ChainBuffer {
  readonly name: string;
  readonly elements: number;
  readonly buffer: GpuBufferLike;
}

/** Per-call values an op may depend on (a cache row is written at the token's position). */
export interface ChainVars {
  pos: number;
  /** rows of a window that are real (a window program copies only these into the caches; default 1) */
  rows?: number;
}

type Op =
  | { kind: 'dispatch'; label: string; pipeline: unknown; bindGroup: unknown; groups: number[] }
  | {
      kind: 'copy';
      label: string;
      src: ChainBuffer;
      srcOffset: number;
      dst: ChainBuffer;
      dstOffset: (v: ChainVars) => number;
      elements: number | ((v: ChainVars) => number);
    };

/**
 * A value carried from one pass of `runSequence` to the next, all in one submission: after pass i, from[0] is
 * copied to out[i]; before pass i ≥ 1 (after its feed), from[0] is copied to to[0] — a greedy id fed back as the
 * next step's input, so n decode steps need no host round trip between them.
 */
export interface Carry {
  from: ChainBuffer;
  to: ChainBuffer;
  out: ChainBuffer;
}

/** Counts of what the chain did (tests assert one submission and one readback per run). */
export interface ChainCounters {
  submits: number;
  maps: number;
}

/** The program a chain records into and runs unless told otherwise (the one-token decode). */
export const MAIN = 'main';

export class ResidentChain {
  /** Op lists by program: one chain may hold several (a one-token step, a window of W tokens) over shared buffers. */
  private readonly opLists = new Map<string, Op[]>([[MAIN, []]]);
  private ops: Op[] = this.opLists.get(MAIN)!;
  private readonly buffers: ChainBuffer[] = [];
  private readonly params: GpuBufferLike[] = [];
  private readonly programs = new Map<string, BuiltKernel>();
  /**
   * Hand-written WGSL pipelines by source, per device and kept for the process (shared by every chain on the device:
   * a pipeline holds no buffer, and a chain built again — a test's next case — then compiles nothing)
   */
  private static readonly wgslModules = new WeakMap<object, Map<string, { pipeline: unknown; layout: unknown }>>();
  private get modules(): Map<string, { pipeline: unknown; layout: unknown }> {
    let m = ResidentChain.wgslModules.get(this.device);
    if (!m) ResidentChain.wgslModules.set(this.device, (m = new Map()));
    return m;
  }
  /** split-K partial sums, one buffer per size, shared by the ops (each op's two dispatches run back to back) */
  private readonly scratch = new Map<number, ChainBuffer>();
  private staging: GpuBufferLike | undefined;
  private stagingBytes = 0;
  private tail: Promise<unknown> = Promise.resolve();
  private destroyed = false;
  /** Test hook: ops whose label is here are left out of the encoder (a test must then fail). */
  readonly omit = new Set<string>();
  readonly counters: ChainCounters = { submits: 0, maps: 0 };
  /** Float32 elements uploaded or allocated on the device. */
  deviceElements = 0;

  /** Rejects with a KernelError once the device is lost: every wait on the GPU races it, so none hangs. */
  private readonly whenLost: Promise<never>;
  private lostDetail: string | undefined;

  private constructor(
    private readonly gpu: InstanceType<GpuJs['GPU']>,
    private readonly Input: GpuJs['Input'],
    readonly device: GpuDeviceLike,
  ) {
    this.whenLost = device.lost.then((info) => {
      this.lostDetail = `the WebGPU device was lost (${info.reason ?? 'unknown'}${info.message ? `: ${info.message}` : ''})`;
      throw new KernelError('webgpu', 'resident chain', this.lostDetail);
    });
    this.whenLost.catch(() => undefined); // handled: each wait below races it
  }

  /** Wait for `p` (a map, a queue drain) unless the device is lost first; a failed wait is a KernelError. */
  private async gpuWait(what: string, p: Promise<void>): Promise<void> {
    try {
      await Promise.race([p, this.whenLost]);
    } catch (e) {
      if (e instanceof KernelError) throw e;
      throw new KernelError('webgpu', 'resident chain', `${what} failed: ${(e as Error).message ?? String(e)}`);
    }
  }

  /** A chain on the webgpu device GPU.js uses (BackendUnavailableError with the reason where there is none). */
  static async create(): Promise<ResidentChain> {
    const reason = await unavailableReason('webgpu');
    if (reason) throw new BackendUnavailableError('webgpu', reason);
    const mod = (await import('gpu.js')) as unknown as GpuJs;
    const gpu = new mod.GPU({ mode: 'webgpu' });
    gpu.addFunction(idivFloor); // kernels/idiv.ts: exact index division on real GPUs
    gpu.addFunction(imad, IMAD_TYPES); // and exact indices past 2^24 (a 1B model's embedding and head)
    // the device: GPU.js shares one per process; a one-element kernel built here hands it over
    const probe = gpu.createKernel('function (a) { return a[this.thread.x]; }', { output: [1] }).kernel;
    await probe.build(new mod.Input(new Float32Array(1), [1]));
    const device = probe._device;
    probe.destroy();
    return new ResidentChain(gpu, mod.Input, device);
  }

  /** Record the following kernels and copies into program `name` (created empty on first use). */
  record(name: string = MAIN): void {
    let ops = this.opLists.get(name);
    if (!ops) this.opLists.set(name, (ops = []));
    this.ops = ops;
  }

  /**
   * Program `name` made of some of program `from`'s recorded ops, in their order, over the same buffers and bind
   * groups (nothing compiled or allocated): those whose position i in `from` and label pass `keep` — a training
   * step's forward and loss rows alone, run to validate without a second copy of the activations.
   */
  derive(name: string, from: string, keep: (i: number, label: string) => boolean): void {
    const src = this.opLists.get(from);
    if (!src?.length) throw new ArgumentError('program', `one recorded in this chain`, from);
    this.opLists.set(
      name,
      src.filter((op, i) => keep(i, op.label)),
    );
  }

  /** How many ops program `name` holds so far (a position for `derive`). */
  opCount(name: string = MAIN): number {
    return this.opLists.get(name)?.length ?? 0;
  }

  /** Whether the device was lost (every run then refuses). */
  get isLost(): boolean {
    return this.lostDetail !== undefined;
  }

  /** Largest float32 buffer a kernel may bind on this device (elements). */
  get maxBufferElements(): number {
    return Math.floor(Math.min(this.device.limits.maxStorageBufferBindingSize, this.device.limits.maxBufferSize) / 4);
  }

  /** A device buffer of `elements` float32, zeroed, or holding `data`. */
  buffer(name: string, elements: number, data?: Float32Array): ChainBuffer {
    if (!Number.isInteger(elements) || elements <= 0)
      throw new ArgumentError(`${name} elements`, 'a positive integer', elements);
    if (elements > this.maxBufferElements)
      throw new ArgumentError(
        `${name} elements`,
        `at most ${this.maxBufferElements} (this WebGPU device's maxStorageBufferBindingSize / maxBufferSize)`,
        elements,
      );
    if (data && data.length !== elements) throw new ArgumentError(`${name} data`, `${elements} elements`, data.length);
    const buffer = this.device.createBuffer({
      size: elements * 4,
      usage: USAGE_STORAGE | USAGE_COPY_SRC | USAGE_COPY_DST,
    });
    const b = { name, elements, buffer };
    this.buffers.push(b);
    this.deviceElements += elements;
    this.write(b, data ?? new Float32Array(elements));
    return b;
  }

  /** Write `data` into `b` at element `offset` (a queue write: no submission; ordered before the next run). */
  write(b: ChainBuffer, data: Float32Array, offset = 0): void {
    if (offset + data.length > b.elements)
      throw new ArgumentError(`${b.name} write`, `at most ${b.elements - offset} elements`, data.length);
    this.device.queue.writeBuffer(b.buffer, offset * 4, data);
  }

  /**
   * Append a kernel step: `source` (a GPU.js kernel function as text) with `constants`, reading `args`, writing
   * `out` (one float per thread, `out.elements` threads). Built on first use of a (key, constants, shapes).
   */
  async kernel(
    label: string,
    key: string,
    source: string,
    constants: Record<string, number>,
    args: readonly ChainBuffer[],
    out: ChainBuffer,
  ): Promise<void> {
    if (args.includes(out))
      throw new ArgumentError(
        `${label} output`,
        'a buffer none of its arguments is (WebGPU: read xor write)',
        out.name,
      );
    const pk = `${key}|${JSON.stringify(constants)}|${out.elements}|${args.map((a) => a.elements).join(',')}`;
    let k = this.programs.get(pk);
    if (!k) {
      k = this.gpu.createKernel(exactDivision(source), {
        output: [out.elements],
        constants,
        loopMaxIterations: 1 << 30,
        tactic: 'precision',
        pipeline: true,
      }).kernel;
      try {
        await k.build(...args.map((a) => new this.Input(new Float32Array(a.elements), [a.elements])));
      } catch (e) {
        throw new KernelError('webgpu', key, (e as Error).message.split('\n')[0] ?? String(e));
      }
      if (k.constructor.name !== 'WebGPUKernel' || k.componentCount !== 1)
        throw new KernelError('webgpu', key, `GPU.js built it as ${k.constructor.name}, not a one-value WebGPUKernel`);
      await noteRanOn('webgpu', k.constructor.name); // what the page and the CLI report the kernels ran as
      // the steps write chain buffers; the output buffer the build allocated would only hold memory
      if (k.outputBuffer) {
        if (k.outputBuffer._refs === undefined || --k.outputBuffer._refs === 0) k.outputBuffer.destroy();
        k.outputBuffer = null;
      }
      this.programs.set(pk, k);
    }
    const layout = k.paramsLayout;
    if (layout.scalarArgs.length > 0 || layout.randomSeedOffset !== null)
      throw new KernelError('webgpu', key, 'chain kernels take arrays only (per-call values live in a buffer)');
    const mirror = new ArrayBuffer(layout.byteLength);
    const u32 = new Uint32Array(mirror);
    const dispatch = k._computeDispatch(k.threadDim);
    u32.set([k.threadDim[0], k.threadDim[1], k.threadDim[2], dispatch.dispatchWidth]);
    layout.arrayArgs.forEach((r, j) => u32.set([args[j].elements, 1, 1, args[j].elements], r.dimsOffset / 4));
    const params = this.device.createBuffer({ size: layout.byteLength, usage: USAGE_UNIFORM | USAGE_COPY_DST });
    this.device.queue.writeBuffer(params, 0, u32);
    this.params.push(params);
    const entries: unknown[] = [{ binding: 0, resource: { buffer: params } }];
    args.forEach((a, j) => entries.push({ binding: 1 + j, resource: { buffer: a.buffer } }));
    entries.push({ binding: 1 + args.length, resource: { buffer: out.buffer } });
    layout.bufferConstants.forEach((c, j) =>
      entries.push({ binding: 2 + args.length + j, resource: { buffer: c.buffer } }),
    );
    this.ops.push({
      kind: 'dispatch',
      label,
      pipeline: k.computePipeline,
      bindGroup: this.device.createBindGroup({ layout: k.bindGroupLayout, entries }),
      groups: dispatch.groups,
    });
  }

  /**
   * Append a hand-written WGSL step (see WgslKernel: where GPU.js's WGSL cannot express a kernel): reading `args`,
   * writing `out`. Compiled on first use of its `code`; a WGSL or validation error is a KernelError naming `key`.
   */
  async wgsl(label: string, k: WgslKernel, args: readonly ChainBuffer[], out: ChainBuffer): Promise<void> {
    if (args.includes(out))
      throw new ArgumentError(
        `${label} output`,
        'a buffer none of its arguments is (WebGPU: read xor write)',
        out.name,
      );
    if (out.elements !== k.size) throw new ArgumentError(`${label} output`, `${k.size} elements`, out.elements);
    if (!k.split) return this.wgslStage(label, k, args, out);
    const n = k.split.parts * k.size;
    let scratch = this.scratch.get(n);
    if (!scratch) this.scratch.set(n, (scratch = this.buffer(`wgsl partials (${n})`, n)));
    await this.wgslStage(label, k, args.slice(0, k.split.first), scratch);
    await this.wgslStage(label, k.split.reduce, [scratch, ...args.slice(k.split.first)], out);
  }

  /** One dispatch of a WGSL shader (see `wgsl`). */
  private async wgslStage(
    label: string,
    k: Pick<WgslKernel, 'key' | 'code' | 'uniforms' | 'groups'>,
    args: readonly ChainBuffer[],
    out: ChainBuffer,
  ): Promise<void> {
    const maxStorage = this.device.limits.maxStorageBuffersPerShaderStage;
    if (args.length + 1 > maxStorage)
      throw new ArgumentError(
        `${label} arguments`,
        `at most ${maxStorage - 1} (maxStorageBuffersPerShaderStage)`,
        args.length,
      );
    const maxGroups = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (k.groups.some((g) => !Number.isInteger(g) || g < 1 || g > maxGroups))
      throw new ArgumentError(`${label} workgroups`, `1 … ${maxGroups} per dimension`, k.groups.join('×'));
    const uniform = k.uniforms.length > 0;
    let built = this.modules.get(k.code);
    if (!built) {
      const entries: unknown[] = [];
      if (uniform) entries.push({ binding: 0, visibility: SHADER_STAGE_COMPUTE, buffer: { type: 'uniform' } });
      const at = uniform ? 1 : 0;
      args.forEach((_, j) =>
        entries.push({ binding: at + j, visibility: SHADER_STAGE_COMPUTE, buffer: { type: 'read-only-storage' } }),
      );
      entries.push({ binding: at + args.length, visibility: SHADER_STAGE_COMPUTE, buffer: { type: 'storage' } });
      const dev = this.device;
      dev.pushErrorScope('validation');
      const layout = dev.createBindGroupLayout({ entries });
      const pipeline = dev.createComputePipeline({
        layout: dev.createPipelineLayout({ bindGroupLayouts: [layout] }),
        compute: { module: dev.createShaderModule({ code: k.code }), entryPoint: 'main' },
      });
      const err = await dev.popErrorScope();
      if (err) throw new KernelError('webgpu', k.key, err.message.split('\n')[0] ?? err.message);
      built = { pipeline, layout };
      this.modules.set(k.code, built);
    }
    const entries: unknown[] = [];
    if (uniform) {
      const u32 = Uint32Array.from(k.uniforms);
      const params = this.device.createBuffer({
        size: Math.ceil(u32.byteLength / 16) * 16,
        usage: USAGE_UNIFORM | USAGE_COPY_DST,
      });
      this.device.queue.writeBuffer(params, 0, u32);
      this.params.push(params);
      entries.push({ binding: 0, resource: { buffer: params } });
    }
    const at = uniform ? 1 : 0;
    args.forEach((a, j) => entries.push({ binding: at + j, resource: { buffer: a.buffer } }));
    entries.push({ binding: at + args.length, resource: { buffer: out.buffer } });
    this.ops.push({
      kind: 'dispatch',
      label,
      pipeline: built.pipeline,
      bindGroup: this.device.createBindGroup({ layout: built.layout, entries }),
      groups: [...k.groups],
    });
  }

  /** Append a copy of `elements` floats from src[srcOffset …] to dst[dstOffset(vars) …] (e.g. a cache row at pos). */
  copy(
    label: string,
    src: ChainBuffer,
    srcOffset: number,
    dst: ChainBuffer,
    dstOffset: (v: ChainVars) => number,
    elements: number | ((v: ChainVars) => number),
  ): void {
    if (typeof elements === 'number' && srcOffset + elements > src.elements)
      throw new ArgumentError(`${label} source range`, `within ${src.name}'s ${src.elements}`, srcOffset + elements);
    this.ops.push({ kind: 'copy', label, src, srcOffset, dst, dstOffset, elements });
  }

  /** Labels of the main program's ops, in order (for tests and the bench's description). */
  get labels(): string[] {
    return this.labelsOf(MAIN);
  }
  labelsOf(program: string): string[] {
    return (this.opLists.get(program) ?? []).map((o) => o.label);
  }
  get dispatches(): number {
    return this.dispatchesOf(MAIN);
  }
  dispatchesOf(program: string): number {
    return (this.opLists.get(program) ?? []).filter((o) => o.kind === 'dispatch').length;
  }

  /**
   * One call: every op into one command encoder, the `reads` copied into one staging buffer, one submit, one
   * map. Returns each read's floats. Calls run one after another (the staging buffer is shared).
   */
  run(
    vars: ChainVars,
    reads: ReadonlyArray<{ from: ChainBuffer; elements?: number }>,
    program: string = MAIN,
  ): Promise<Float32Array[]> {
    return this.runSequence([vars], reads, undefined, program);
  }

  /**
   * Several passes through the chain in one call (one encoder, one submit, one map): pass i runs with vars[i]
   * and, with `feed`, first copies feed.src[i·n … (i+1)·n) into feed.dst[0 … n) (n = feed.elements) — a
   * prompt's [id, pos] pairs fed one pass at a time. The reads are taken after the last pass.
   */
  runSequence(
    vars: readonly ChainVars[],
    reads: ReadonlyArray<{ from: ChainBuffer; elements?: number }>,
    feed?: { src: ChainBuffer; dst: ChainBuffer; elements: number },
    program: string = MAIN,
    carry?: Carry,
  ): Promise<Float32Array[]> {
    if (vars.length === 0) throw new ArgumentError('passes', 'at least one', 0);
    const ops = this.opLists.get(program);
    if (!ops?.length) throw new ArgumentError('program', `one recorded in this chain`, program);
    if (feed && vars.length * feed.elements > feed.src.elements)
      throw new ArgumentError(`${feed.src.name} (feed)`, `${vars.length * feed.elements} elements`, feed.src.elements);
    if (carry && vars.length > carry.out.elements)
      throw new ArgumentError(`${carry.out.name} (carry)`, `${vars.length} elements`, carry.out.elements);
    const r = this.tail.then(() => this.runNow(ops, vars, reads, feed, carry));
    this.tail = r.catch(() => undefined);
    return r;
  }

  private async runNow(
    ops: readonly Op[],
    passes: readonly ChainVars[],
    reads: ReadonlyArray<{ from: ChainBuffer; elements?: number }>,
    feed?: { src: ChainBuffer; dst: ChainBuffer; elements: number },
    carry?: Carry,
  ): Promise<Float32Array[]> {
    if (this.destroyed) throw new KernelError('webgpu', 'resident chain', 'the chain has been destroyed');
    if (this.lostDetail) throw new KernelError('webgpu', 'resident chain', this.lostDetail);
    const dev = this.device;
    const enc = dev.createCommandEncoder();
    let pass: ComputePass | undefined;
    for (const [i, vars] of passes.entries()) {
      if (feed) {
        pass?.end();
        pass = undefined;
        const n = feed.elements * 4;
        enc.copyBufferToBuffer(feed.src.buffer, i * n, feed.dst.buffer, 0, n);
      }
      if (carry && i > 0) {
        // the previous pass's value becomes this pass's input (after the feed, which wrote a placeholder there)
        pass?.end();
        pass = undefined;
        enc.copyBufferToBuffer(carry.from.buffer, 0, carry.to.buffer, 0, 4);
      }
      for (const op of ops) {
        if (this.omit.has(op.label)) continue;
        if (op.kind === 'dispatch') {
          pass ??= enc.beginComputePass();
          pass.setPipeline(op.pipeline);
          pass.setBindGroup(0, op.bindGroup);
          pass.dispatchWorkgroups(op.groups[0], op.groups[1], op.groups[2]);
        } else {
          pass?.end();
          pass = undefined;
          const at = op.dstOffset(vars);
          const n = typeof op.elements === 'number' ? op.elements : op.elements(vars);
          if (!Number.isInteger(at) || at < 0 || at + n > op.dst.elements || op.srcOffset + n > op.src.elements)
            throw new ArgumentError(`${op.label} destination`, `a row within ${op.dst.name}`, at);
          if (n > 0) enc.copyBufferToBuffer(op.src.buffer, op.srcOffset * 4, op.dst.buffer, at * 4, n * 4);
        }
      }
      if (carry) {
        pass?.end();
        pass = undefined;
        enc.copyBufferToBuffer(carry.from.buffer, 0, carry.out.buffer, i * 4, 4);
      }
    }
    pass?.end();
    const offsets: number[] = [];
    let bytes = 0;
    for (const rd of reads) {
      offsets.push(bytes);
      bytes += Math.ceil(((rd.elements ?? rd.from.elements) * 4) / 16) * 16;
    }
    if (bytes > this.stagingBytes) {
      this.staging?.destroy();
      this.staging = dev.createBuffer({ size: bytes, usage: USAGE_MAP_READ | USAGE_COPY_DST });
      this.stagingBytes = bytes;
    }
    reads.forEach((rd, i) =>
      enc.copyBufferToBuffer(rd.from.buffer, 0, this.staging!, offsets[i], (rd.elements ?? rd.from.elements) * 4),
    );
    dev.queue.submit([enc.finish()]);
    this.counters.submits++;
    if (reads.length === 0) {
      await this.gpuWait('waiting for the queue', dev.queue.onSubmittedWorkDone());
      return [];
    }
    const staging = this.staging!;
    await this.gpuWait('mapAsync of the readback', staging.mapAsync(MAP_MODE_READ, 0, bytes));
    this.counters.maps++;
    const mapped = staging.getMappedRange(0, bytes);
    const out = reads.map(
      (rd, i) => new Float32Array(mapped.slice(offsets[i], offsets[i] + (rd.elements ?? rd.from.elements) * 4)),
    );
    staging.unmap();
    return out;
  }

  /**
   * Where a program's time goes (benches only, never the decode or training path): each op is encoded `repeats`
   * times in its own command encoder and submitted alone, and the queue drained; its time is the wall time of
   * that submission less an empty submission's (measured the same way), divided by `repeats`. Ops are summed by
   * label with digits removed (`L3.q` and `L5.q` are one row). Running an op several times in a row changes what
   * accumulating ops leave in their buffers: a profile leaves the chain's state meaningless.
   */
  async profile(
    vars: ChainVars,
    program: string = MAIN,
    repeats = 10,
  ): Promise<{ label: string; ms: number; n: number }[]> {
    const ops = this.opLists.get(program);
    if (!ops?.length) throw new ArgumentError('program', `one recorded in this chain`, program);
    await this.tail;
    const dev = this.device;
    const timeOne = async (encode: (enc: ReturnType<GpuDeviceLike['createCommandEncoder']>) => void) => {
      const enc = dev.createCommandEncoder();
      encode(enc);
      const t0 = performance.now();
      dev.queue.submit([enc.finish()]);
      await this.gpuWait('waiting for the queue', dev.queue.onSubmittedWorkDone());
      return performance.now() - t0;
    };
    const empty: number[] = [];
    for (let i = 0; i < 20; i++) empty.push(await timeOne(() => undefined));
    const base = [...empty].sort((a, b) => a - b)[10];
    const rows = new Map<string, { ms: number; n: number }>();
    for (const op of ops) {
      const t = await timeOne((enc) => {
        for (let r = 0; r < repeats; r++) {
          if (op.kind === 'dispatch') {
            const pass = enc.beginComputePass();
            pass.setPipeline(op.pipeline);
            pass.setBindGroup(0, op.bindGroup);
            pass.dispatchWorkgroups(op.groups[0], op.groups[1], op.groups[2]);
            pass.end();
          } else {
            const n = typeof op.elements === 'number' ? op.elements : op.elements(vars);
            if (n > 0)
              enc.copyBufferToBuffer(op.src.buffer, op.srcOffset * 4, op.dst.buffer, op.dstOffset(vars) * 4, n * 4);
          }
        }
      });
      const key = op.label.replace(/\d+/g, '#');
      const row = rows.get(key) ?? { ms: 0, n: 0 };
      row.ms += Math.max(0, t - base) / repeats;
      row.n += 1;
      rows.set(key, row);
    }
    return [...rows.entries()].map(([label, r]) => ({ label, ...r })).sort((a, b) => b.ms - a.ms);
  }

  /** Read one buffer back (its own submission: for tests and inspection, not the decode path). */
  async read(b: ChainBuffer): Promise<Float32Array> {
    const tmp = this.device.createBuffer({ size: b.elements * 4, usage: USAGE_MAP_READ | USAGE_COPY_DST });
    try {
      await this.tail;
      const enc = this.device.createCommandEncoder();
      enc.copyBufferToBuffer(b.buffer, 0, tmp, 0, b.elements * 4);
      this.device.queue.submit([enc.finish()]);
      await this.gpuWait('mapAsync of a read', tmp.mapAsync(MAP_MODE_READ));
      const out = new Float32Array(tmp.getMappedRange().slice(0));
      tmp.unmap();
      return out;
    } finally {
      tmp.destroy();
    }
  }

  /** Free every device buffer and built kernel; later calls throw. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const b of this.buffers) b.buffer.destroy();
    for (const p of this.params) p.destroy();
    this.staging?.destroy();
    for (const k of this.programs.values()) k.destroy();
    this.programs.clear();
    for (const ops of this.opLists.values()) ops.length = 0;
  }
}
