/**
 * Fused plans: several kernels run as one GPU.js pipeline (`gpu.createPipeline`).
 *
 * A plan is a list of kernel steps; each argument of a step is one of the plan's inputs, a weight the plan
 * captures, or an earlier step's result. Where every weight is a model weight (a stable kernel input, see
 * runtime.ts `f32`) the plan is compiled once for those weights and cached: GPU.js uploads the weights with it,
 * keeps the intermediates in the backend's memory, and a call costs one upload of the inputs and one readback
 * (webgpu: one command encoder, one submit; webasm: one WebAssembly memory). Otherwise the same kernels run one
 * call at a time through the runtime's `run`. Both ways run the same kernels on the same float32 values: the
 * results are the same bits (spec/kernels.spec.ts).
 *
 * GPU.js keeps every pipeline, and the weights it captured, until it is destroyed, so at most `maxPlans` stay
 * alive: the least recently used is retired, and destroyed once its calls in flight end.
 */
import { ArgumentError, KernelError } from '../lib/errors.js';
import type { KernelBackendName } from './runtime.js';
import { exactDivision } from './idiv.js';

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
const PLAN_EXECUTORS: Record<KernelBackendName, readonly string[]> = {
  cpu: ['generic'],
  webasm: ['fused-sync'],
  'webasm-threaded': ['fused-threaded', 'fused-sync'],
  webgl2: ['generic'],
  webgpu: ['fused-encoder'],
};

/** Most compiled plans kept alive by default: a d512 model has ~12 per window size. */
const MAX_PLANS = 256;

/** A GPU.js pipeline shortcut (gpu.js ships loose types; this is the slice used here). */
export interface GpuPipeline {
  (...args: unknown[]): Promise<unknown>;
  pipeline: {
    executorKind: string;
    fallbackReason: string | null;
    destroy(): Promise<unknown> | void;
    /** the traced plan: the kernels its steps run (GPU.js's own clones of ours) */
    plan?: { kernels?: Array<{ clone?: { kernel?: { constructor: { name: string } } } }> };
  };
}
type TemplateKernel = (...args: unknown[]) => unknown;

/** What a runtime lends its plans. */
export interface PlanHost {
  readonly name: KernelBackendName;
  /** the GPU.js kernel class this backend's kernels must run as */
  readonly kernelClass: string;
  readonly gpu: {
    createKernel(src: string, settings: Record<string, unknown>): TemplateKernel;
    createPipeline(fn: (...handles: unknown[]) => unknown, settings?: Record<string, unknown>): GpuPipeline;
  };
  /** a model weight's float32 array (equal to itself until markChanged) */
  isStable(a: Float32Array): boolean;
  /** one kernel, one call (the kernel-by-kernel path) */
  run(
    key: string,
    source: string,
    constants: Record<string, number>,
    outputSize: number,
    args: Float32Array[],
  ): Promise<Float32Array>;
  checkSizes(key: string, outputSize: number, inputs: readonly Float32Array[]): void;
  /** most arguments a kernel takes unpacked (a plan's steps are not packed) */
  readonly maxArgs: number;
  /** the kernel classes that ran (the runtime's record) */
  readonly ranOn: Set<string>;
}

interface CompiledPlan {
  run: GpuPipeline;
  weights: readonly Float32Array[];
  /** retired: calls compile a new plan; `destroyed` once its pipeline is, after the calls in flight */
  dead: boolean;
  destroyed: boolean;
  inFlight: number;
}

export class Plans {
  /** Run plans fused where their weights are model weights; off: kernel by kernel (for comparisons). */
  enabled = true;
  /** Plans compiled so far (for tests). */
  compiled = 0;
  maxPlans = MAX_PLANS;
  /** Compiled plans by their first weight, then by plan key; and every plan that captured a given weight. */
  private readonly byWeight = new WeakMap<Float32Array, Map<string, CompiledPlan>>();
  private readonly holding = new WeakMap<Float32Array, CompiledPlan[]>();
  /** The live plans, least recently used first. */
  private readonly live = new Set<CompiledPlan>();
  /** Kernels the plans are traced with, one per kernel and shape (GPU.js compiles private clones per plan). */
  private readonly templates = new Map<string, TemplateKernel>();

  constructor(private readonly host: PlanHost) {}

  /** Run `steps` and return the results of the steps `outputs` names (by default the last). */
  async run(
    planKey: string,
    steps: readonly PlanStep[],
    inputs: Float32Array[],
    outputs: readonly number[] = [steps.length - 1],
  ): Promise<Float32Array[]> {
    const h = this.host;
    if (steps.length === 0) throw new ArgumentError(`${planKey} steps`, 'at least one kernel', 0);
    const weights = steps.flatMap((s) => s.args.flatMap((a) => ('weight' in a ? [a.weight] : [])));
    for (const i of outputs)
      if (!Number.isInteger(i) || i < 0 || i >= steps.length)
        throw new ArgumentError(`${planKey} outputs`, `step indices in [0, ${steps.length})`, i);
    if (!(this.enabled && weights.length > 0 && weights.every((w) => h.isStable(w)))) {
      const results: Float32Array[] = [];
      for (const s of steps)
        results.push(
          await h.run(
            s.key,
            s.source,
            s.constants,
            s.outputSize,
            s.args.map((a) => ('input' in a ? inputs[a.input] : 'weight' in a ? a.weight : results[a.step])),
          ),
        );
      return outputs.map((i) => results[i]);
    }
    h.checkSizes(planKey, 1, [...inputs, ...weights]);
    for (const s of steps) {
      h.checkSizes(s.key, s.outputSize, []);
      if (s.args.length > h.maxArgs)
        throw new ArgumentError(`${s.key} arguments in a plan`, `at most ${h.maxArgs}`, s.args.length);
    }
    const key = `${planKey}|${inputs.map((a) => a.length).join(',')}|${outputs.join(',')}`;
    let byKey = this.byWeight.get(weights[0]);
    if (!byKey) this.byWeight.set(weights[0], (byKey = new Map()));
    let plan = byKey.get(key);
    if (plan && (plan.dead || plan.weights.length !== weights.length || plan.weights.some((w, i) => w !== weights[i])))
      plan = undefined;
    if (plan) {
      this.live.delete(plan); // most recently used: to the end
      this.live.add(plan);
    } else plan = this.compile(steps, inputs.length, outputs, weights, byKey, key);
    let r: unknown;
    plan.inFlight++;
    try {
      r = await plan.run(...inputs.map((a) => (a.length === 0 ? new Float32Array(1) : a)));
    } catch (e) {
      byKey.delete(key);
      this.retire(plan);
      throw new KernelError(h.name, planKey, (e as Error).message.split('\n')[0] ?? String(e));
    } finally {
      plan.inFlight--;
      if (plan.dead) this.retire(plan); // retired while this call ran
    }
    // a plan GPU.js ran under another executor than this backend's, or on kernels of another class, is refused
    const { executorKind, fallbackReason } = plan.run.pipeline;
    const classes = (plan.run.pipeline.plan?.kernels ?? []).map((k) => k.clone?.kernel?.constructor.name ?? 'unknown');
    const wrong = !PLAN_EXECUTORS[h.name].includes(executorKind)
      ? `GPU.js ran the plan under its ${executorKind} executor, not ${PLAN_EXECUTORS[h.name].join(' or ')}${fallbackReason ? ` (${fallbackReason})` : ''}`
      : classes.length === 0 || classes.some((c) => c !== h.kernelClass)
        ? `GPU.js ran the plan's kernels as ${classes.join(', ') || 'nothing it reports'}, not ${h.kernelClass}`
        : undefined;
    if (wrong) {
      byKey.delete(key);
      this.retire(plan);
      throw new KernelError(h.name, planKey, wrong);
    }
    for (const c of classes) h.ranOn.add(c);
    return (r as ArrayLike<number>[]).map((x) => (x instanceof Float32Array ? x : new Float32Array(x)));
  }

  /** Retire every plan that captured `a` (it was changed in place): later calls compile new ones. */
  forget(a: Float32Array): void {
    for (const plan of this.holding.get(a) ?? []) this.retire(plan);
    this.holding.delete(a);
  }

  /** Retire every plan (their device buffers and captured weights are freed; later calls recompile). */
  release(): void {
    for (const plan of [...this.live]) this.retire(plan);
  }

  private compile(
    steps: readonly PlanStep[],
    arity: number,
    outputs: readonly number[],
    weights: readonly Float32Array[],
    byKey: Map<string, CompiledPlan>,
    key: string,
  ): CompiledPlan {
    const kernels = steps.map((s) => {
      const kk = `${s.key}|${JSON.stringify(s.constants)}|${s.outputSize}`;
      let k = this.templates.get(kk);
      if (!k) {
        k = this.host.gpu.createKernel(this.host.name === 'webgpu' ? exactDivision(s.source) : s.source, {
          output: [s.outputSize],
          constants: s.constants,
          loopMaxIterations: 1 << 30,
          tactic: 'precision',
        });
        this.templates.set(kk, k);
      }
      return k;
    });
    // the orchestration GPU.js traces once: each step's kernel on its inputs, captured weights, earlier results
    const trace = (...handles: unknown[]) => {
      const results: unknown[] = [];
      steps.forEach((s, i) =>
        results.push(
          kernels[i](
            ...s.args.map((a) => ('input' in a ? handles[a.input] : 'weight' in a ? a.weight : results[a.step])),
          ),
        ),
      );
      return outputs.map((o) => results[o]);
    };
    Object.defineProperty(trace, 'length', { value: arity }); // GPU.js reads the plan's arity from it
    const plan: CompiledPlan = {
      run: this.host.gpu.createPipeline(trace, { threads: this.host.name === 'webasm-threaded' }),
      weights,
      dead: false,
      destroyed: false,
      inFlight: 0,
    };
    byKey.set(key, plan);
    this.live.add(plan);
    for (const old of this.live) {
      if (this.live.size <= this.maxPlans) break;
      this.retire(old);
    }
    for (const w of weights) {
      const list = this.holding.get(w) ?? [];
      if (!list.includes(plan)) list.push(plan);
      this.holding.set(w, list);
    }
    this.compiled++;
    return plan;
  }

  /** No later call finds the plan; its pipeline is destroyed now, or when its calls in flight end. */
  private retire(plan: CompiledPlan): void {
    if (!plan.dead) {
      plan.dead = true;
      this.live.delete(plan);
    }
    if (plan.inFlight === 0 && !plan.destroyed) {
      plan.destroyed = true;
      void Promise.resolve(plan.run.pipeline.destroy()).catch(() => undefined);
    }
  }
}
