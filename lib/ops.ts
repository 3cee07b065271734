/**
 * The ops a user calls, on a backend chosen by name (tfjs-style: op → reference or backend kernel).
 *
 *   const ops = await getOps('webasm');          // 'reference' | 'cpu' | 'webasm' | 'webasm-threaded' | 'webgpu'
 *   const { out, lastState } = await ops.selectiveScan({ u, delta, A, B, C, deltaSoftplus: true });
 *
 * 'reference' runs the float64 TypeScript references in lib/ref/ and returns float64 tensors; the others
 * run the GPU.js kernels in kernels/ (float32 in, float32 out). Inputs are validated identically (same
 * shape checks and typed errors) before any backend runs. An unknown name raises UnknownBackendError;
 * a backend that cannot run here raises BackendUnavailableError with the reason — never a silent fallback.
 */
import { ArgumentError, BackendUnavailableError, UnknownBackendError } from './errors.js';
import { Tensor, dims } from './tensor.js';
import { selectiveScanDims, type SelectiveScanInputs, type SelectiveScanOutputs } from './ref/selective_scan.js';
import { stateUpdateDims, type StateUpdateInputs, type StateUpdateOutputs } from './ref/state_update.js';
import {
  checkActivation,
  conv1dFinalStates,
  conv1dStateAfter,
  conv1dDims,
  conv1dUpdateDims,
  mod,
  type Conv1dInputs,
  type Conv1dUpdateInputs,
} from './ref/conv1d.js';
import { ssdDims, type SsdInputs, type SsdOutputs } from './ref/ssd.js';
import { linearsDims } from './ref/linear.js';
import { gatedMlpDims } from './ref/mlp.js';
import type { GatedRmsnormOptions } from './ref/norm.js';
import { multistepDims, type MultistepDims, type MultistepInputs, type MultistepOutputs } from './ref/multistep.js';
import {
  KERNEL_BACKENDS,
  getRuntime,
  unavailableReason,
  type GpuRuntime,
  type KernelBackendName,
} from '../kernels/runtime.js';
import { f32, isImmutable } from './weight_registry.js';
import { SimdGemm, addBiasRows } from './simd/gemm.js';
import { simdMultistep } from './simd/multistep.js';
import {
  simdCachedAttention,
  simdWindowAttention32,
  type CachedAttentionFn,
  type WindowAttention32Fn,
} from './simd/attention.js';
import { simdSiluMul } from './simd/activations.js';
import { simdLinearNll } from './simd/nll.js';
import { PackedWeight } from './simd/packed_weight.js';
import { causalConvRows32, groupRmsnormRows32, rmsnormRows32 } from './simd/rows.js';
import { linearsKernel, matmulKernel } from '../kernels/matmul.js';
import { gatedMlpKernel } from '../kernels/mlp.js';
import { linearAttentionKernel } from '../kernels/linear_attention.js';
import { defaultScanChunk, selectiveScanKernel } from '../kernels/selective_scan.js';
import { stateUpdateKernel } from '../kernels/state_update.js';
import { conv1dKernel, conv1dUpdateKernel } from '../kernels/conv1d.js';
import { ssdCoreKernel, ssdDeltaKernel } from '../kernels/ssd.js';
import { multistepKernel } from '../kernels/multistep.js';
import { gatedRmsnormKernel } from '../kernels/gated_rmsnorm.js';
import { kernelGradOps, scanKernelInputs, type GradOps } from './ops_grad.js';
import { referenceOps } from './ops_reference.js';

/**
 * 'wasm-simd': the hand-written SIMD matrix products of asm/gemm.ts (lib/simd/gemm.ts) on every core, with
 * weights packed once and kept resident, for `matmul` and `linear`; the other ops (scans, convs, norms: small
 * next to the products, and called once per layer and token in decode, where a GPU.js call's fixed cost
 * dominates) are the plain TypeScript references with their results rounded to float32. The backend for CPUs.
 */
export type BackendName = 'reference' | KernelBackendName | 'wasm-simd';
export const BACKENDS: readonly BackendName[] = ['reference', 'wasm-simd', ...KERNEL_BACKENDS];

/** The forward ops, and (GradOps, lib/ops_grad.ts) the backward of the scan, conv, SSD and gated norm. */
export interface Ops extends GradOps {
  readonly name: BackendName;
  /** dtype of the results: float64 on 'reference', float32 on the GPU.js backends. */
  readonly dtype: 'float64' | 'float32';
  matmul(a: Tensor, b: Tensor): Promise<Tensor>;
  linear(x: Tensor, weight: Tensor, bias?: Tensor): Promise<Tensor>;
  /**
   * A Llama layer's MLP, down(silu(x·gateᵀ) ⊙ (x·upᵀ)) (lib/ref/mlp.ts). The GPU.js backends run it as one
   * fused plan of four kernels (kernels/mlp.ts); wasm-simd as its products and SIMD SiLU.
   */
  gatedMlp(x: Tensor, gate: Tensor, up: Tensor, down: Tensor): Promise<Tensor>;
  /**
   * linear(x, Wᵢ, bᵢ) for each weight (an attention layer's q, k, v projections), each result as `linear` gives
   * it. The GPU.js backends run them as one plan (one call and one readback with model weights).
   */
  linears(x: Tensor, ws: ReadonlyArray<{ weight: Tensor; bias?: Tensor }>): Promise<Tensor[]>;
  linearAttention(q: Tensor, k: Tensor, v: Tensor, g?: Tensor): Promise<Tensor>;
  selectiveScan(inp: SelectiveScanInputs & { chunkSize?: number }): Promise<SelectiveScanOutputs>;
  selectiveStateUpdate(inp: StateUpdateInputs): Promise<StateUpdateOutputs>;
  causalConv1d(inp: Conv1dInputs): Promise<{ out: Tensor; finalStates: Tensor }>;
  causalConv1dUpdate(inp: Conv1dUpdateInputs): Promise<{ out: Tensor; convState: Tensor }>;
  ssdChunkScan(inp: SsdInputs, chunkSize: number): Promise<SsdOutputs>;
  ssdMinimalDiscrete(
    X: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    blockLen: number,
    initialStates?: Tensor,
  ): Promise<{ Y: Tensor; finalState: Tensor }>;
  gatedRmsnorm(x: Tensor, weight: Tensor, z: Tensor | undefined, opts?: GatedRmsnormOptions): Promise<Tensor>;
  multistep(inp: MultistepInputs): Promise<MultistepOutputs>;
  /**
   * Optional: the float64 cached attention of lib/model/hybrid.ts (`cachedAttention`) computed faster with the
   * same bits — the wasm-simd backend's SIMD products around the model's own softmax. Absent on the other
   * backends, where the model runs its loop.
   */
  readonly cachedAttention?: CachedAttentionFn;
  /**
   * Optional: a window's causal attention over the cache in float32 — scores, softmax, weights·V — out in rows
   * (b, l, H·hd) (lib/simd/attention.ts simdWindowAttention32; undefined where a score overflowed float32). Not
   * `cachedAttention`'s bits (within spec/simd.spec.ts's ATTN_F32_TOL): only evaluation asks for it
   * (lib/model/hybrid.ts forward's `float32`), the decode paths keep theirs.
   */
  readonly attention32?: WindowAttention32Fn;
  /**
   * Optional: evaluation's row kernels (lib/simd/rows.ts) — RMSNorm, Mamba-2's causal conv straight on in_proj's
   * rows (no transposes) and its gated norm, float32 out. Only evaluation asks for them (lib/model/hybrid.ts
   * forward's `float32`); the decode paths keep the ops above.
   */
  readonly rows32?: Rows32;
  /**
   * Optional: nll_r = lse(z_r) − z_r[targets[r]] for the logits z = x·weightᵀ (x: rows × d, weight: V × d) without
   * the logits leaving the backend (lib/simd/nll.ts; `mil eval`). Absent where the caller takes `linear`'s logits.
   */
  linearNll?(x: Tensor, weight: Tensor, targets: ArrayLike<number>): Promise<Float64Array>;
}

/** evaluation's row kernels (`Ops.rows32`): each result the float32 rounding of its float64 reference. */
export interface Rows32 {
  /** RMSNorm over the last axis of float32 rows x (…, d), (…, d) float32 out (lib/ref/norm.ts rmsnorm). */
  rmsnorm(x: Tensor, weight: Tensor, eps: number): Tensor;
  /**
   * The causal depthwise conv (lib/ref/conv1d.ts causalConv1d, then its activation) of the C channels at
   * columns col … col + C − 1 of float32 rows x (b, l, width): out (b, l, C) rows, final states (b, C, W−1).
   */
  causalConv1d(
    x: Tensor,
    col: number,
    C: number,
    weight: Tensor,
    bias: Tensor | undefined,
    initialStates: Tensor | undefined,
    activation: 'silu' | null,
  ): { out: Tensor; finalStates: Tensor };
  /** `gatedRmsnorm` with the gate before the norm (Mamba-2's), float32 x and z of the same shape. */
  gatedRmsnorm(x: Tensor, weight: Tensor, z: Tensor, opts: { eps: number; groupSize: number }): Tensor;
}

/** Is `name` a backend this library knows? */
export function isBackendName(name: string): name is BackendName {
  return (BACKENDS as readonly string[]).includes(name);
}

/** Every backend with whether it runs here and, if not, why. */
export async function backendStatus(): Promise<
  Array<{ name: BackendName; available: boolean; reason: string | null }>
> {
  const out = [];
  for (const name of BACKENDS) {
    const reason =
      name === 'reference' ? null : name === 'wasm-simd' ? simdUnavailableReason() : await unavailableReason(name);
    out.push({ name, available: reason === null, reason });
  }
  return out;
}

/** The ops of a backend; throws UnknownBackendError or BackendUnavailableError. */
export async function getOps(name: string): Promise<Ops> {
  if (!isBackendName(name)) throw new UnknownBackendError(name, BACKENDS);
  if (name === 'reference') return referenceOps;
  if (name === 'wasm-simd') return simdOps();
  return kernelOps(await getRuntime(name));
}

const t32 = (data: Float32Array, shape: readonly number[], name: string) => new Tensor(data, shape, name);
const opt = (t: Tensor | undefined) => (t ? f32(t.data) : undefined);

function chunkOption(chunk: number | undefined, L: number, what: string): number {
  const c = chunk ?? defaultScanChunk(L);
  if (!Number.isInteger(c) || c <= 0) throw new ArgumentError(what, 'a positive integer', c);
  return Math.min(c, Math.max(1, L));
}

let simd: { ops: Ops } | undefined;

function simdUnavailableReason(): string | null {
  if (typeof WebAssembly !== 'object') return 'this JavaScript engine has no WebAssembly';
  if (typeof SharedArrayBuffer !== 'function')
    return 'its shared memory needs SharedArrayBuffer (in a browser: a cross-origin isolated page)';
  if (SimdGemm.isProvided) return null; // the browser page's instance, from the module it fetched
  try {
    SimdGemm.load(1).close();
    return null;
  } catch (e) {
    return `asm/gemm.wasm does not load here (${(e as Error).message}): WebAssembly SIMD is needed`;
  }
}

/**
 * The fastest backend that runs here without a GPU: wasm-simd where this engine loads asm/gemm.wasm (every
 * current CPU engine), else the float64 reference. What `mil generate`, speculative decoding and `mil demo`
 * run on unless `--backend` names one (`--backend reference` for float64).
 */
export function defaultBackend(): BackendName {
  return simdUnavailableReason() === null ? 'wasm-simd' : 'reference';
}

async function simdOps(): Promise<Ops> {
  if (simd) return simd.ops;
  const reason = simdUnavailableReason();
  if (reason) throw new BackendUnavailableError('wasm-simd', reason);
  const g = SimdGemm.shared();
  const rounded =
    <A extends unknown[], R>(f: (...a: A) => Promise<R>) =>
    async (...a: A): Promise<R> =>
      toF32(await f(...a));
  const r = referenceOps;
  /** MultiStep on the SIMD kernel, inputs already checked (`sh`: their sizes). */
  const runMultistep = (inp: MultistepInputs, sh: MultistepDims): MultistepOutputs => {
    const d = (t: Tensor | undefined) => t?.data;
    const k = simdMultistep(
      g,
      {
        hI: inp.hI.data,
        xCache: inp.xCache.data,
        deltaCache: inp.deltaCache.data,
        BCache: inp.BCache.data,
        x: inp.x.data,
        delta: inp.delta.data,
        B: inp.B.data,
        C: inp.C.data,
        z: d(inp.z),
        A: inp.A.data,
        D: d(inp.D),
        deltaBias: d(inp.deltaBias),
        deltaSoftplus: inp.deltaSoftplus === true,
      },
      sh,
    );
    return {
      out: t32(k.out, [sh.batch, sh.s, sh.dim], 'out'),
      hJ: t32(k.hJ, [sh.batch, sh.dim, sh.N], 'h_j'),
      hK: t32(k.hK, [sh.batch, sh.dim, sh.N], 'h_k'),
    };
  };
  const activate = (t: Tensor, act: string | null | undefined): Tensor =>
    act === 'silu' ? new Tensor(simdSiluMul(g, t.data), t.shape, t.name) : t.astype('float32');
  const ops: Ops = {
    name: 'wasm-simd',
    dtype: 'float32',
    linearAttention: rounded(r.linearAttention),
    // the selective scan over a whole sequence is MultiStep from h_0 (or zero) with nothing replayed and L new steps
    // (asm/multistep.ts, float32), its (b, dim, L) operands as MultiStep's (b, L, dim) rows; a B or C constant over
    // time ((dim, N): no row per step), or B and C in different groups, go to the reference
    async selectiveScan(inp) {
      const { batch, dim, L, N, Bl, Cl } = selectiveScanDims(inp);
      if (Bl.kind === 'invariant' || Cl.kind === 'invariant' || Bl.groups !== Cl.groups)
        return toF32(await r.selectiveScan(inp));
      const G = Bl.groups;
      /** (b, dim, L) → (b, L, dim) */
      const rows = (t: Tensor) => {
        const out = new Float32Array(batch * L * dim); // (b, L, dim)
        for (let b = 0; b < batch; b++)
          for (let d = 0; d < dim; d++)
            for (let t2 = 0; t2 < L; t2++) out[(b * L + t2) * dim + d] = t.data[(b * dim + d) * L + t2];
        return new Tensor(out, [batch, L, dim]);
      };
      /** B or C, (b, N, L) or (b, G, N, L) → (b, L, G, N) */
      const groupRows = (t: Tensor) => {
        const out = new Float32Array(batch * L * G * N); // (b, L, G, N)
        for (let b = 0; b < batch; b++)
          for (let q = 0; q < G * N; q++)
            for (let t2 = 0; t2 < L; t2++) out[(b * L + t2) * G * N + q] = t.data[(b * G * N + q) * L + t2];
        return new Tensor(out, [batch, L, G, N]);
      };
      const one = new Tensor(new Float32Array(batch * dim), [batch, 1, dim]); // an empty cache row (nothing replayed)
      const k = runMultistep(
        {
          hI: inp.initialState ?? new Tensor(new Float32Array(batch * dim * N), [batch, dim, N]),
          xCache: one,
          deltaCache: one,
          BCache: new Tensor(new Float32Array(batch * G * N), [batch, 1, G, N]),
          recomputeSteps: 0,
          x: rows(inp.u),
          delta: rows(inp.delta),
          B: groupRows(inp.B),
          C: groupRows(inp.C),
          z: inp.z && rows(inp.z),
          A: inp.A,
          D: inp.D,
          deltaBias: inp.deltaBias,
          deltaSoftplus: inp.deltaSoftplus === true,
        },
        { batch, dim, N, K1: 1, r: 0, s: L, G },
      );
      const out = new Float32Array(batch * dim * L); // (b, dim, L)
      for (let b = 0; b < batch; b++)
        for (let t2 = 0; t2 < L; t2++)
          for (let d = 0; d < dim; d++) out[(b * dim + d) * L + t2] = k.out.data[(b * L + t2) * dim + d];
      return { out: new Tensor(out, [batch, dim, L], 'out'), lastState: k.hK.named('last_state') };
    },
    async selectiveStateUpdate(inp) {
      // one decode step is MultiStep with nothing to replay and one new step (asm/multistep.ts): plain decoding
      // and a speculative verify window take the same float32 arithmetic, bit for bit. The state-update layouts
      // are views of MultiStep's (channels d = (h, p); B/C groups as they are).
      const { batch, H, P, N, G } = stateUpdateDims(inp);
      const dim = H * P;
      const row = [batch, 1, dim];
      const none = new Tensor(new Float32Array(batch * dim), row); // the cache rows (none replayed)
      const k = runMultistep(
        {
          hI: inp.state.reshape([batch, dim, N]),
          xCache: none,
          deltaCache: none,
          BCache: new Tensor(new Float32Array(batch * G * N), [batch, 1, G, N]),
          recomputeSteps: 0,
          x: inp.x.reshape(row),
          delta: inp.delta.reshape(row),
          B: inp.B.reshape([batch, 1, G, N]),
          C: inp.C.reshape([batch, 1, G, N]),
          z: inp.z?.reshape(row),
          A: inp.A.reshape([dim, N]),
          D: inp.D?.reshape([dim]),
          deltaBias: inp.deltaBias?.reshape([dim]),
          deltaSoftplus: inp.deltaSoftplus,
        },
        { batch, dim, N, K1: 1, r: 0, s: 1, G },
      );
      return {
        out: k.out.reshape(inp.x.shape).named('out'),
        state: k.hK.reshape(inp.state.shape).named('state_after'),
      };
    },
    // the convolutions: the reference's sums, then the SIMD SiLU (the same activation as the MLP's)
    async causalConv1d(inp) {
      checkActivation(inp.activation); // the reference below sees null: the caller's value is checked here
      const c = await r.causalConv1d({ ...inp, activation: null });
      return { out: activate(c.out, inp.activation), finalStates: c.finalStates.astype('float32') };
    },
    async causalConv1dUpdate(inp) {
      checkActivation(inp.activation);
      const c = await r.causalConv1dUpdate({ ...inp, activation: null });
      return { out: activate(c.out, inp.activation), convState: c.convState.astype('float32') };
    },
    // the SSD over a whole sequence is the recurrence h_t = exp(Δ_t A_h) h_{t−1} + Δ_t x_t B_tᵀ, y_t = h_t C_t (+ D x,
    // · silu(z)): MultiStep from h_0 with nothing replayed and L new steps (asm/multistep.ts, float32, one SIMD
    // sweep of the state per step) — the chunked form's result to float32 rounding (the chunking is a GPU's way to
    // parallelise over time; on one CPU thread the plain recurrence does the least work: 4·P·N flops per head and
    // token). Mamba-2's per-head Δ, dt_bias, A and D are MultiStep's per-channel ones repeated over the head's P
    // channels; the chunk size only shapes the GPU kernels and the reference.
    async ssdChunkScan(inp, chunkSize) {
      if (!Number.isInteger(chunkSize) || chunkSize <= 0)
        throw new ArgumentError('chunkSize', 'a positive integer', chunkSize);
      const { batch, L, H, P, G, N } = ssdDims(inp);
      const dim = H * P;
      /** (…, H) → (…, H·P): each head's value over its P channels */
      const perChannel = (v: ArrayLike<number>, rows: number) => {
        const out = new Float32Array(rows * dim); // (rows, H·P)
        for (let i = 0; i < rows * H; i++) out.fill(v[i], i * P, (i + 1) * P);
        return out;
      };
      const A = new Float32Array(dim * N); // (H·P, N): A_h at every (p, n)
      for (let h = 0; h < H; h++) A.fill(inp.A.data[h], h * P * N, (h + 1) * P * N);
      const one = new Tensor(new Float32Array(batch * dim), [batch, 1, dim]); // an empty cache row (nothing replayed)
      const k = runMultistep(
        {
          hI:
            inp.initialState?.reshape([batch, dim, N]) ??
            new Tensor(new Float32Array(batch * dim * N), [batch, dim, N]),
          xCache: one,
          deltaCache: one,
          BCache: new Tensor(new Float32Array(batch * G * N), [batch, 1, G, N]),
          recomputeSteps: 0,
          x: inp.x.reshape([batch, L, dim]),
          delta: new Tensor(perChannel(inp.delta.data, batch * L), [batch, L, dim]),
          B: inp.B,
          C: inp.C,
          z: inp.z?.reshape([batch, L, dim]),
          A: new Tensor(A, [dim, N]),
          D: inp.D && new Tensor(perChannel(inp.D.data, 1), [dim]),
          deltaBias: inp.deltaBias && new Tensor(perChannel(inp.deltaBias.data, 1), [dim]),
          deltaSoftplus: inp.deltaSoftplus === true,
        },
        { batch, dim, N, K1: 1, r: 0, s: L, G },
      );
      return {
        out: k.out.reshape([batch, L, H, P]).named('out'),
        finalState: k.hK.reshape([batch, H, P, N]).named('final_state'),
      };
    },
    ssdMinimalDiscrete: rounded(r.ssdMinimalDiscrete),
    async gatedRmsnorm(x, weight, z, opts) {
      // the gate by the SIMD SiLU (float32), the norm by the reference
      if (!z) return (await r.gatedRmsnorm(x, weight, undefined, opts)).astype('float32');
      // every input checked before any work (the reference below sees only the gated or normed values)
      dims({ x: [x, [...x.shape.slice(0, -1), 'd']], weight: [weight, ['d']], z: [z, x.shape] });
      if (opts?.normBeforeGate ?? true) {
        const n = await r.gatedRmsnorm(x, weight, undefined, opts);
        return new Tensor(simdSiluMul(g, z.data, n.data), x.shape, 'gated_rmsnorm');
      }
      const gated = new Tensor(simdSiluMul(g, z.data, x.data), x.shape, 'gated');
      return (await r.gatedRmsnorm(gated, weight, undefined, opts)).astype('float32');
    },
    // Algorithm 2's verify step as a SIMD kernel (asm/multistep.ts), float32 like the GPU.js one
    multistep: async (inp) => runMultistep(inp, multistepDims(inp)),
    selectiveScanBackward: rounded(r.selectiveScanBackward),
    causalConv1dBackward: rounded(r.causalConv1dBackward),
    ssdBackward: rounded(r.ssdBackward),
    gatedRmsnormBackward: rounded(r.gatedRmsnormBackward),
    cachedAttention: (q, sh, K, V) => simdCachedAttention(g, q, sh, K, V),
    attention32: (q, sh, K, V) => simdWindowAttention32(g, q, sh, K, V),
    rows32: {
      rmsnorm(x, weight, eps) {
        const d = x.shape[x.rank - 1];
        dims({ weight: [weight, [d]] });
        return t32(rmsnormRows32(f32(x.data), weight.data, x.size / d, d, eps), x.shape, 'rmsnorm');
      },
      causalConv1d(x, col, C, weight, bias, initialStates, activation) {
        const [batch, L, width] = x.shape as [number, number, number];
        const { W } = dims({
          x: [x, [batch, L, width]],
          weight: [weight, [C, 'W']],
          bias: [bias, [C]],
          initialStates: [initialStates, [batch, C, 'P']],
        });
        if (col < 0 || col + C > width) throw new ArgumentError('col', `a column range inside ${width}`, col);
        if (initialStates && initialStates.shape[2] !== W - 1)
          throw new ArgumentError('initialStates', `(${batch}, ${C}, ${W - 1})`, initialStates.shape);
        checkActivation(activation);
        const c = causalConvRows32(
          f32(x.data),
          width,
          col,
          batch,
          L,
          C,
          weight.data,
          W,
          bias?.data,
          initialStates?.data,
        );
        return {
          out: t32(activation === 'silu' ? simdSiluMul(g, c.out, undefined, c.out) : c.out, [batch, L, C], 'out'),
          finalStates: t32(c.finalStates, [batch, C, W - 1], 'final_states'),
        };
      },
      gatedRmsnorm(x, weight, z, opts) {
        const d = x.shape[x.rank - 1];
        dims({ weight: [weight, [d]], z: [z, x.shape] });
        const gsz = opts.groupSize;
        if (!Number.isInteger(gsz) || gsz <= 0 || d % gsz !== 0)
          throw new ArgumentError('groupSize', `a positive divisor of ${d}`, gsz);
        const gated = simdSiluMul(g, z.data, x.data);
        return t32(groupRmsnormRows32(gated, weight.data, d, gsz, opts.eps), x.shape, 'gated_rmsnorm');
      },
    },
    async linears(x, ws) {
      linearsDims(x, ws);
      const out: Tensor[] = [];
      for (const w of ws) out.push(await ops.linear(x, w.weight, w.bias));
      return out;
    },
    async gatedMlp(x, gate, up, down) {
      const { rows, d, f, o } = gatedMlpDims(x, gate, up, down);
      // model weights (packed and resident): the three products and the SiLU in the module's memory, copied out once
      // (SimdGemm.gatedMlp, the same bits as the steps below)
      const wt = (t: Tensor) => (t instanceof PackedWeight ? t.panels : isImmutable(t.data) ? t.data : undefined);
      const [wg, wu, wd] = [wt(gate), wt(up), wt(down)];
      if (wg && wu && wd)
        return t32(
          g.gatedMlp(x.data, rows, d, { gate: wg, up: wu, down: wd }, f, o),
          [...x.shape.slice(0, -1), o],
          'linear',
        );
      const gv = await ops.linear(x, gate);
      const uv = await ops.linear(x, up);
      return ops.linear(new Tensor(simdSiluMul(g, gv.data, uv.data), gv.shape, 'silu_mul'), down);
    },
    async matmul(a, b) {
      const { m, k, n } = dims({ a: [a, ['m', 'k']], b: [b, ['k', 'n']] });
      return t32(g.matmul(a.data, m, k, b.data, n), [m, n], 'matmul');
    },
    async linear(x, weight, bias) {
      const xin = x.reshape([-1, x.shape[x.rank - 1]]);
      const {
        rows,
        in: nin,
        out: nout,
      } = dims({ x: [xin, ['rows', 'in']], weight: [weight, ['out', 'in']], bias: [bias, ['out']] });
      // weights (marked immutable by the model's WeightStore) stay packed; anything else is packed per call;
      // a bf16 checkpoint's matrices are bf16 panels already (lib/simd/packed_weight.ts)
      const y =
        weight instanceof PackedWeight
          ? g.linear(xin.data, rows, nin, weight.panels, nout)
          : g.linear(xin.data, rows, nin, weight.data, nout, isImmutable(weight.data));
      if (bias) addBiasRows(y, rows, bias.data);
      return t32(y, [...x.shape.slice(0, -1), nout], 'linear');
    },
    async linearNll(x, weight, targets) {
      const xin = x.reshape([-1, x.shape[x.rank - 1]]);
      const { rows, in: nin, out: nout } = dims({ x: [xin, ['rows', 'in']], weight: [weight, ['out', 'in']] });
      return weight instanceof PackedWeight
        ? simdLinearNll(g, xin.data, rows, nin, weight.panels, nout, targets, true)
        : simdLinearNll(g, xin.data, rows, nin, weight.data, nout, targets, isImmutable(weight.data));
    },
  };
  simd = { ops };
  return ops;
}

/** Every tensor in a result (a tensor, or an object of tensors) as float32. */
function toF32<R>(x: R): R {
  if (x instanceof Tensor) return x.astype('float32') as R;
  if (x && typeof x === 'object')
    return Object.fromEntries(
      Object.entries(x).map(([k, v]) => [k, v instanceof Tensor ? v.astype('float32') : v]),
    ) as R;
  return x;
}

function kernelOps(rt: GpuRuntime): Ops {
  const ops: Omit<Ops, keyof GradOps> = {
    name: rt.name,
    dtype: 'float32',
    async matmul(a, b) {
      const { m, k, n } = dims({ a: [a, ['m', 'k']], b: [b, ['k', 'n']] });
      const r = await matmulKernel(rt, f32(a.data), f32(b.data), m, k, n, { sAi: k, sAk: 1, sBk: n, sBj: 1 });
      return t32(r, [m, n], 'matmul');
    },
    async linear(x, weight, bias) {
      const xin = x.reshape([-1, x.shape[x.rank - 1]]);
      const {
        rows,
        in: nin,
        out: nout,
      } = dims({ x: [xin, ['rows', 'in']], weight: [weight, ['out', 'in']], bias: [bias, ['out']] });
      const r = await matmulKernel(
        rt,
        f32(xin.data),
        f32(weight.data),
        rows,
        nin,
        nout,
        { sAi: nin, sAk: 1, sBk: 1, sBj: nin },
        opt(bias),
      );
      return t32(r, [...x.shape.slice(0, -1), nout], 'linear');
    },
    async linears(x, ws) {
      const { rows, nin, outs } = linearsDims(x, ws);
      if (ws.length === 0) return [];
      const shaped = ws.map((w, i) => ({ out: outs[i], weight: f32(w.weight.data), bias: opt(w.bias) }));
      const r = await linearsKernel(rt, f32(x.data), rows, nin, shaped);
      return r.map((y, i) => t32(y, [...x.shape.slice(0, -1), outs[i]], 'linear'));
    },
    async gatedMlp(x, gate, up, down) {
      const { rows, d, f, o } = gatedMlpDims(x, gate, up, down);
      const r = await gatedMlpKernel(rt, f32(x.data), f32(gate.data), f32(up.data), f32(down.data), rows, d, f, o);
      return t32(r, [...x.shape.slice(0, -1), o], 'mlp');
    },
    async linearAttention(q, k, v, g) {
      const { batch, H, L, dk, dv } = dims({
        q: [q, ['batch', 'H', 'L', 'dk']],
        k: [k, ['batch', 'H', 'L', 'dk']],
        v: [v, ['batch', 'H', 'L', 'dv']],
        g: [g, ['batch', 'H', 'L']],
      });
      if (g && g.data.some((x) => !(x > 0)))
        throw new ArgumentError('g', 'decays > 0 on kernel backends (they work in log space)', 'a value <= 0');
      const r = await linearAttentionKernel(rt, f32(q.data), f32(k.data), f32(v.data), opt(g), batch * H, L, dk, dv);
      return t32(r, [batch, H, L, dv], 'linear_attention');
    },
    async selectiveScan(inp) {
      const L = selectiveScanDims(inp).L;
      const { shape, args } = scanKernelInputs(inp, chunkOption(inp.chunkSize, L, 'chunkSize'));
      const r = await selectiveScanKernel(rt, shape, args);
      return {
        out: t32(r.out, [shape.batch, shape.dim, L], 'out'),
        lastState: t32(r.lastState, [shape.batch, shape.dim, shape.N], 'last_state'),
      };
    },
    async selectiveStateUpdate(inp) {
      const s = stateUpdateDims(inp);
      const r = await stateUpdateKernel(rt, s, {
        state: f32(inp.state.data),
        x: f32(inp.x.data),
        dt: f32(inp.delta.data),
        A: f32(inp.A.data),
        B: f32(inp.B.data),
        C: f32(inp.C.data),
        D: opt(inp.D),
        z: opt(inp.z),
        deltaBias: opt(inp.deltaBias),
        deltaSoftplus: !!inp.deltaSoftplus,
      });
      return { out: t32(r.out, inp.x.shape, 'out'), state: t32(r.state, inp.state.shape, 'state_after') };
    },
    async causalConv1d(inp) {
      const { x, weight, bias, initialStates } = inp;
      const { batch, dim, L, W } = conv1dDims(inp);
      const out = await conv1dKernel(
        rt,
        { batch: batch, dim: dim, L: L, W: W },
        f32(x.data),
        f32(weight.data),
        opt(bias),
        opt(initialStates),
        inp.activation === 'silu',
      );
      return { out: t32(out, [batch, dim, L], 'out'), finalStates: conv1dFinalStates(x, initialStates, W, 'float32') };
    },
    async causalConv1dUpdate(inp) {
      const { x, convState, weight, bias, cacheSeqlens } = inp;
      const { batch, dim, steps, S, W } = conv1dUpdateDims(inp);
      const P = W - 1;
      const start = new Float32Array(batch);
      for (let b = 0; b < batch; b++) start[b] = cacheSeqlens ? mod(cacheSeqlens[b] - P, S) : S - P;
      const out = await conv1dUpdateKernel(
        rt,
        { batch: batch, dim: dim, L: steps, W: W, S: S },
        f32(x.data),
        f32(convState.data),
        f32(weight.data),
        opt(bias),
        start,
        inp.activation === 'silu',
      );
      return {
        out: t32(out, [batch, dim, steps], 'out'),
        convState: conv1dStateAfter(convState, x, cacheSeqlens, 'float32'),
      };
    },
    async ssdChunkScan(inp, chunkSize) {
      const s = ssdDims(inp);
      const chunk = chunkOption(chunkSize, s.L, 'chunkSize');
      const shape = { ...s, chunk };
      const delta = await ssdDeltaKernel(rt, shape, f32(inp.delta.data), opt(inp.deltaBias), !!inp.deltaSoftplus);
      const r = await ssdCoreKernel(rt, shape, {
        x: f32(inp.x.data),
        delta,
        A: f32(inp.A.data),
        B: f32(inp.B.data),
        C: f32(inp.C.data),
        D: opt(inp.D),
        z: opt(inp.z),
        initialState: opt(inp.initialState),
      });
      return {
        out: t32(r.y, inp.x.shape, 'out'),
        finalState: t32(r.finalState, [s.batch, s.H, s.P, s.N], 'final_state'),
      };
    },
    async ssdMinimalDiscrete(X, A, B, C, blockLen, initialStates) {
      const d = dims({
        X: [X, ['batch', 'L', 'H', 'P']],
        A: [A, ['batch', 'L', 'H']],
        B: [B, ['batch', 'L', 'H', 'N']],
        C: [C, ['batch', 'L', 'H', 'N']],
        initial_states: [initialStates, ['batch', 1, 'H', 'P', 'N']],
      });
      const chunk = chunkOption(blockLen, d.L, 'blockLen');
      const shape = { batch: d.batch, L: d.L, H: d.H, P: d.P, G: d.H, N: d.N, chunk };
      const r = await ssdCoreKernel(rt, shape, {
        x: f32(X.data),
        A: f32(A.data),
        B: f32(B.data),
        C: f32(C.data),
        initialState: opt(initialStates),
      });
      return { Y: t32(r.y, X.shape, 'Y'), finalState: t32(r.finalState, [d.batch, d.H, d.P, d.N], 'final_state') };
    },
    async gatedRmsnorm(x, weight, z, o = {}) {
      const d = x.shape[x.rank - 1];
      const lead = x.shape.slice(0, -1);
      dims({ x: [x, [...lead, 'd']], weight: [weight, ['d']], z: [z, [...lead, 'd']] });
      const g = o.groupSize ?? d;
      if (!Number.isInteger(g) || g <= 0 || d % g !== 0)
        throw new ArgumentError('groupSize', `a positive divisor of ${d}`, g);
      const r = await gatedRmsnormKernel(
        rt,
        x.size / d,
        d,
        g,
        o.eps ?? 1e-6,
        o.normBeforeGate ?? true,
        f32(x.data),
        f32(weight.data),
        opt(z),
      );
      return t32(r, x.shape, 'gated_rmsnorm');
    },
    async multistep(inp) {
      const s = multistepDims(inp);
      const r = await multistepKernel(rt, s, {
        hI: f32(inp.hI.data),
        xCache: f32(inp.xCache.data),
        deltaCache: f32(inp.deltaCache.data),
        BCache: f32(inp.BCache.data),
        x: f32(inp.x.data),
        dt: f32(inp.delta.data),
        B: f32(inp.B.data),
        C: f32(inp.C.data),
        z: opt(inp.z),
        A: f32(inp.A.data),
        D: opt(inp.D),
        deltaBias: opt(inp.deltaBias),
        deltaSoftplus: !!inp.deltaSoftplus,
      });
      const st = [s.batch, s.dim, s.N];
      return { out: t32(r.out, [s.batch, s.s, s.dim], 'out'), hJ: t32(r.hJ, st, 'h_j'), hK: t32(r.hK, st, 'h_k') };
    },
  };
  return { ...ops, ...kernelGradOps(rt, ops) };
}
