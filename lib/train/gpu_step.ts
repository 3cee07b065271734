/**
 * A training step of the Llama teacher on the GPU (webgpu): forward, backward, global-norm clipping and
 * Adam/AdamW as one chain of GPU.js kernels (lib/ops_train.ts) — the matrix products (x·Wᵀ, dX, dW, the head's
 * chunks) as a tiled product in hand-written WGSL (kernels/tiled_matmul.ts) — recorded into a resident chain
 * (kernels/resident_chain.ts) — one command encoder, one queue.submit and one mapAsync per step, reading back
 * only [CE, KL] and [‖g‖, clip coefficient, ok]. Parameters, gradients and both Adam moments live in device
 * buffers from `create` on; `read` copies parameters and moments back (float32) for checkpoints.
 *
 * The same math as the float64 CPU trainer (lib/train/model.ts `trainForward` / `lossAndGrads`, lib/train/optim.ts):
 *   h = embed(ids)                                                       (b·l, d)
 *   per layer:  h₁ = h + W_o attn(rope(W_q n₁), rope(W_k n₁), W_v n₁),  n₁ = rmsnorm₁ h
 *               h  = h₁ + W_down (silu(W_gate n₂) ⊙ W_up n₂),             n₂ = rmsnorm₂ h₁
 *   logits = lm_head(rmsnorm(h));  loss = ce_w · CE(next token)          (b·l, V)
 * then back in reverse (each kernel's backward beside its forward in kernels/), clip, Adam. Frozen parameters
 * (`trainable` false) get no gradient kernels. A step whose gradient norm is not finite changes nothing: the
 * Adam kernels return their inputs (kernels/adamw.ts) and the step throws NonFiniteGradientError.
 *
 * Symbols: b batch · l sequence length · N = b·l rows · d hidden_size · V vocab · H, H_kv heads · hd head_dim ·
 * F intermediate_size. Activations are row-major (N, width) float32 device buffers.
 *
 * With a teacher (distillation of a Llama student from a Llama teacher, `mil train --teacher`), the teacher's
 * forward runs first in the same chain on its own frozen buffers and the loss adds kl_w·KL(teacher ‖ student)
 * (kernels/train_loss.ts).
 *
 * Hybrids (distillation stage 1, `mil distill --backend webgpu`): a Mamba-2 layer's mixer (lib/model/mixers/mamba2.ts
 * mamba2Train, the float64 reference) runs as kernels/train_mamba.ts's kernels, in the same chain:
 *   [z | xBC | dt] = W_in n₁,  xs = silu(conv1d(xBC)),  [x | B | C] = xs, x and B repeated per head,
 *   Δ = softplus(dt + dt_bias),  y = SSD(x, Δ, A = −exp(A_log), B, C) + D x,  h₁ = h + W_out gated_rmsnorm(y, z)
 * and a Mamba-1 layer's (lib/model/mixers/mamba1.ts mamba1Train) as
 *   x = repeat(W_x n₁) → conv1d → silu,  z = W_z n₁,  B = repeat(W_B n₁),  C = W_C n₁,
 *   Δ = softplus(W_dt (W_down n₁) (+ b_Δ) + b_Δ),  y = scan(x, Δ, A = −exp(A_log) (d_in, N), B, C) + D x,
 *   h₁ = h + W_out (y · silu(z))                    (the same scan kernels: one Δ per channel, A per state)
 * and back in reverse; its block's norms use the Mamba config's ε (block.ts blockEps). A teacher may be a hybrid
 * too (its forward only). Not supported yet (a clear ArgumentError before any upload): the Mamba-2 ablations.
 *
 * Gradient accumulation (accumulate A > 1): the forward, loss and backward are recorded as a second program,
 * 'micro', run A times in one submission (each pass fed its micro-batch's ids, targets and embedding index), each
 * pass adding its gradients and [CE, KL] into accumulators (kernels/train_accumulate.ts); the main program then
 * takes their mean (÷A), clips, steps Adam and zeroes the accumulators — the CPU trainer's mean over micro-batches.
 */
import { ropeTable } from '../ref/rope.js';
import { ArgumentError, KernelError } from '../errors.js';
import type { HybridModel } from '../model/hybrid.js';
import { attentionNames, attentionRope } from '../model/mixers/attention.js';
import { blockEps, blockNames, layerKinds, lmHeadName } from '../model/mixers/block.js';
import { mamba1Wiring } from '../model/mixers/mamba1.js';
import { mamba2Wiring } from '../model/mixers/mamba2.js';
import { mlpNames } from '../model/mixers/mlp.js';
import { MAIN, ResidentChain, type ChainBuffer } from '../ops_resident.js';
import {
  NORM_PARTS,
  adamHyper,
  adamKernel,
  attnDeltaKernel,
  attnDsKernel,
  attnLseKernel,
  attnProbKernel,
  attnProducts,
  addKernel,
  colsKernel,
  convDsKernel,
  convDwKernel,
  convDxKernel,
  convRowsKernel,
  defaultScanChunk,
  deltaBackKernel,
  deltaKernel,
  gatedRmsnormBackwardSources,
  gatedRmsnormDwKernels,
  gatedRmsnormSource,
  join3Kernel,
  repeatBackKernel,
  repeatKernel,
  headSumKernels,
  scanDalogKernel,
  scanDalogTermsKernel,
  scanDbcKernel,
  scanDdKernel,
  scanDdeltaKernel,
  scanDdeltaTermsKernel,
  rowHeadSumKernel,
  scanDxKernel,
  scanGKernel,
  scanGinKernel,
  scanGlocalKernel,
  scanLocalKernel,
  scanOutKernel,
  scanPassKernel,
  scaleKernel,
  scanStatesKernel,
  type ConvRows,
  type ScanRows,
  embeddingDwKernel,
  embeddingIndex,
  embeddingKernel,
  gradNormKernel,
  linearDbKernel,
  lossGradKernel,
  lossRowsKernel,
  lossSumKernel,
  lseKernels,
  rmsnormDwKernels,
  rmsnormDxKernel,
  rmsnormRowSumsKernel,
  rmsnormKernel,
  ropeKernel,
  rstdKernel,
  sumSquaresKernels,
  swigluBackKernel,
  swigluKernel,
  tiledLinear,
  tiledLinearDw,
  tiledLinearDx,
  type AttnShape,
  type TrainKernel,
  type WgslKernel,
} from '../ops_train.js';
import type { AdamOptions } from './optim.js';
import { lookup, present } from '../checked.js';

export interface GpuStepOptions {
  batch: number;
  seqLen: number;
  optimizer: AdamOptions;
  /** clip_grad_norm_ max norm; 0 or absent: none */
  clip?: number;
  ceWeight?: number;
  /** distillation: a frozen Llama teacher's logits on the same batch, loss = ce_w·CE + kl_w·KL(teacher ‖ student) */
  teacher?: { model: HybridModel; klWeight: number };
  /** micro-batches per step (default 1): gradients and losses averaged over them before clipping and Adam */
  accumulate?: number;
  /** rows of logits per chunk of the head and loss (default ⌊2^24 / V⌋: exact thread indices); tests set it small */
  logitRows?: number;
  /**
   * the loss's gradient weighted per row, w_n·(p − onehot) in place of ce_w/N_ce (kernels/train_loss.ts): each
   * `step` then takes the weights of all its rows (DPO: lib/train/dpo.ts trainDpoGpu; with accumulate A the step
   * averages the micro-batches' gradients, so a sum over rows needs weights × A); no teacher
   */
  rowWeights?: boolean;
  trainable: (name: string) => boolean;
}

export interface GpuStepResult {
  loss: number;
  ce: number;
  /** with a teacher */
  kl?: number;
  gradNorm: number;
  /** false: a non-finite gradient; nothing changed on the device */
  ok: boolean;
}

/** Why `model` with these options cannot train on the GPU step yet, or null. */
export function gpuStepUnsupported(
  m: HybridModel,
  o: { objective?: string; accumulate?: number; seqLen?: number },
  teacher?: HybridModel,
): string | null {
  for (const [who, x] of [
    ['', m],
    ['a teacher with ', teacher],
  ] as const) {
    if (x?.ablation && (x.ablation.convActivation === false || x.ablation.gatedNorm === false))
      return `${who}an ablated Mamba-2 layer (no conv silu / no gated norm) is not on the GPU`;
  }
  const { seqLen: L } = o;
  if (L !== undefined) {
    // the kernels split thread indices with float32 arithmetic, exact below 2^24 elements a buffer (create checks
    // the device's own limit too); a batch past it runs as micro-batches (gpuMicroBatch), down to one sequence
    const one = gpuStepLargest(m, { batch: 1, seqLen: L, teacher: teacher && { model: teacher } });
    if (one > 2 ** 24)
      return `a buffer of ${one} float32 elements for one sequence of length ${L} (at most 2^24 = 16777216: lower the length; a larger batch runs as micro-batches of the same rows)`;
  }
  return null;
}

/** What sizes the step's buffers: the batch × length, the logits' chunk rows, and a teacher's model if any. */
type StepShape = Pick<GpuStepOptions, 'batch' | 'seqLen' | 'logitRows'> & { teacher?: { model: HybridModel } };

/**
 * The most float32 elements any one buffer of the step holds for `m` (and its teacher) at `batch` × `seqLen`: the
 * logits' row chunk, the widest activation, attention's (b, H, l, l) probabilities, the largest weight, a Mamba
 * layer's largest intermediate. No device needed (GpuTrainStep.create checks it against the device's limits).
 */
export function gpuStepLargest(m: HybridModel, o: StepShape): number {
  const { batch: B, seqLen: L } = o;
  const N = B * L;
  const sizes = (x: HybridModel) => {
    const k = x.llama;
    const rows = Math.max(1, Math.min(N, o.logitRows ?? Math.floor(2 ** 24 / k.vocabSize))); // the head's chunks
    return [
      rows * k.vocabSize,
      N * Math.max(k.intermediateSize, k.numHeads * k.headDim, k.hiddenSize),
      B * k.numHeads * L * L,
      ...x.weights.names().map((n) => x.weights.get(n).size),
      ...layerKinds(x).map((kind, i) =>
        kind === 'mamba2'
          ? mamba2Shape(x, blockNames(i).prefix, B, L).largest
          : kind === 'mamba1'
            ? mamba1Shape(x, blockNames(i).prefix, B, L).largest
            : 0,
      ),
    ];
  };
  return Math.max(...sizes(m), ...(o.teacher ? sizes(o.teacher.model) : []));
}

/**
 * The micro-batch the GPU step runs a batch of `batch` rows in: the largest divisor of `batch` whose step keeps
 * every buffer within `limit` elements (default 2^24, the kernels' exact thread indices) — e.g. the #25 teacher's
 * 8 × 1024 tokens (6 heads: attention's probabilities 8·6·1024² = 50M elements) runs as 8 micro-batches of one
 * sequence (6.3M). The micro-batches' mean loss and gradient equal the batch's (equal sizes), so a caller that
 * runs `batch/micro` times more micro-batches of `micro` rows, in order, trains the same model (to float32
 * rounding). `batch` itself when even one row does not fit: GpuTrainStep.create then refuses it by name.
 */
export function gpuMicroBatch(m: HybridModel, o: StepShape, limit = 2 ** 24): number {
  for (let micro = o.batch; micro >= 1; micro--)
    if (o.batch % micro === 0 && gpuStepLargest(m, { ...o, batch: micro }) <= limit) return micro;
  return o.batch;
}

/**
 * A Mamba-2 layer's names and sizes as the chain's kernels take them (the wiring is mamba2.ts's own): in_proj's
 * output width Win = d_in + convDim + H, the conv over convDim = 2·d_xb + d_in channels, the SSD's shape and the
 * gated norm's kernels (groups of N_s, gate before the norm).
 */
function mamba2Shape(m: HybridModel, p: string, B: number, L: number) {
  const w = mamba2Wiring(m, p);
  const { n, H, N: Ns, P, convDim } = w;
  const N = B * L;
  const I = w.c.dInner;
  const has = (name: string) => (m.weights.has(name) ? name : undefined);
  const ss: ScanRows = { batch: B, L, I, Ns, HW: P, aPerState: false, chunk: defaultScanChunk(L) };
  const g = w.normOpts;
  return {
    n,
    I,
    H,
    P,
    X: w.c.dXb,
    Win: I + convDim + H,
    inBias: has(n.inBias),
    convBias: has(n.convBias),
    conv: { N, L, C: convDim, K: w.c.dConv } satisfies ConvRows,
    ss,
    norm: gatedRmsnormSource(N, I, g.groupSize, g.eps, g.normBeforeGate, true),
    normBack: gatedRmsnormBackwardSources(N, I, g.groupSize, g.eps, g.normBeforeGate, true),
    /** ∂ℓ/∂w of the gated norm in row chunks, then their sum */
    normDw: gatedRmsnormDwKernels(N, I, g.groupSize, g.eps, g.normBeforeGate, true),
    /** the largest buffers: states and G per row (N·d_in·N_s), chunk states (b·(NC+1)·d_in·N_s) */
    largest: Math.max(N * I * Ns, B * (Math.ceil(L / ss.chunk) + 1) * I * Ns, N * (I + convDim + H)),
  };
}

/** A Mamba-1 layer's names and sizes as the chain's kernels take them (the wiring is mamba1.ts's own). */
function mamba1Shape(m: HybridModel, p: string, B: number, L: number) {
  const w = mamba1Wiring(m, p);
  const { n, N: Ns, c } = w;
  const I = c.dInner;
  return {
    n,
    I,
    X: c.dXb,
    R: c.dtRank,
    piece: w.piece,
    dtProjBias: w.dtProjBias,
    deltaBias: w.deltaBias,
    convBias: m.weights.has(n.convBias) ? n.convBias : undefined,
    conv: { N: B * L, L, C: I, K: c.dConv } satisfies ConvRows,
    ss: { batch: B, L, I, Ns, HW: 1, aPerState: true, chunk: defaultScanChunk(L) } satisfies ScanRows,
    /** the largest buffers: states and G per row (N·d_in·N_s), chunk states (b·(NC+1)·d_in·N_s) */
    largest: Math.max(B * L * I * Ns, B * (Math.ceil(L / defaultScanChunk(L)) + 1) * I * Ns),
  };
}

interface Param {
  name: string;
  p: ChainBuffer;
  g?: ChainBuffer;
  m?: ChainBuffer;
  v?: ChainBuffer;
}

/** The program of a step's chain that validates: the forward and per-row CE alone (`GpuTrainStep.nll`). */
const EVAL = 'eval';

export class GpuTrainStep {
  private readonly params = new Map<string, Param>();
  /** the loss rows [ce_n | kl_n] (2N) the 'eval' program writes */
  private evalRows: ChainBuffer | undefined;
  /** made with no parameter that trains: `nll` only, `step` refused */
  private forwardOnly = false;
  private constructor(
    private readonly chain: ResidentChain,
    private readonly o: GpuStepOptions,
    private readonly V: number,
    private readonly io: {
      ids: ChainBuffer;
      tgt: ChainBuffer;
      order: ChainBuffer;
      start: ChainBuffer;
      hyper: ChainBuffer;
      loss: ChainBuffer;
      norm: ChainBuffer;
      /** accumulate > 1: every micro-batch's [ids | targets | order | start], the one fed to a pass, the mean loss */
      all?: ChainBuffer;
      inp?: ChainBuffer;
      lossMean?: ChainBuffer;
      /** rowWeights: w (N) */
      rowW?: ChainBuffer;
    },
  ) {}

  /** Upload `m`'s weights (and zero moments) and record the step; throws ArgumentError where unsupported. */
  static async create(m: HybridModel, o: GpuStepOptions): Promise<GpuTrainStep> {
    const why = gpuStepUnsupported(m, { accumulate: o.accumulate }, o.teacher?.model);
    if (why)
      throw new ArgumentError('backend', `a model and options the webgpu training step supports (${why})`, 'webgpu');
    const c = m.llama;
    const { batch: B, seqLen: L } = o;
    const N = B * L;
    const [d, V, H, Hkv, hd, F] = [c.hiddenSize, c.vocabSize, c.numHeads, c.numKvHeads, c.headDim, c.intermediateSize];
    const chain = await ResidentChain.create();
    try {
      // sizes checked before any upload: this device's largest buffer, and 2^24 elements (kernels split their thread
      // index with float arithmetic, exact below 2^24: kernels/runtime.ts MAX_ELEMENTS); the logits go by row chunks
      const largest = gpuStepLargest(m, o);
      const limit = Math.min(chain.maxBufferElements, 2 ** 24);
      if (largest > limit)
        throw new ArgumentError(
          'model and batch',
          `buffers of at most ${limit} float32 elements (min of 2^24 and this device's maxStorageBufferBindingSize / maxBufferSize, ${chain.maxBufferElements})`,
          largest,
        );
      const io = {
        ids: chain.buffer('ids', N),
        tgt: chain.buffer('targets', N),
        order: chain.buffer('embedding order', N),
        start: chain.buffer('embedding start', V + 1),
        hyper: chain.buffer('adam hyper', 4),
        loss: chain.buffer('loss', 2),
        norm: chain.buffer('grad norm', 3),
      };
      const A = o.accumulate ?? 1;
      if (!Number.isInteger(A) || A < 1) throw new ArgumentError('accumulate', 'a positive integer', A);
      if (o.rowWeights && o.teacher) throw new ArgumentError('rowWeights', 'no teacher', 'a teacher');
      const per = 3 * N + V + 1 + (o.rowWeights ? N : 0); // [ids | targets | order | start (| row weights)]
      const acc = A > 1 && {
        all: chain.buffer('micro-batches', A * per),
        inp: chain.buffer('micro-batch', per),
        lossMean: chain.buffer('loss (mean)', 2),
      };
      const rowW = o.rowWeights ? { rowW: chain.buffer('row weights', N) } : {};
      const step = new GpuTrainStep(chain, o, V, { ...io, ...(acc || {}), ...rowW });
      await step.record(m, { B, L, N, d, V, H, Hkv, hd, F });
      return step;
    } catch (e) {
      chain.destroy();
      throw e;
    }
  }

  /**
   * Kernel `k` reading `args`, writing a fresh buffer (or `out`): a GPU.js kernel, or a hand-written WGSL one (the
   * products: kernels/tiled_matmul.ts).
   */
  private async k(
    label: string,
    k: TrainKernel | WgslKernel,
    args: ChainBuffer[],
    out?: ChainBuffer,
  ): Promise<ChainBuffer> {
    const o = out ?? this.chain.buffer(label, k.size);
    if (o.elements !== k.size) throw new ArgumentError(`${label} output`, `${k.size} elements`, o.elements);
    if ('code' in k) await this.chain.wgsl(label, k, args, o);
    else await this.chain.kernel(label, k.key, k.source, k.constants, args, o);
    return o;
  }

  /** Kernels run in order, each reading the one before (the first reads `args`), the last writing `out`. */
  private async ks(
    label: string,
    ks: readonly TrainKernel[],
    args: ChainBuffer[],
    out: ChainBuffer,
  ): Promise<ChainBuffer> {
    let prev = args;
    for (const [j, k] of ks.entries()) {
      const last = j === ks.length - 1;
      const o = last ? out : this.scratch(`${label} (level ${j + 1}, ${k.size})`, k.size);
      prev = [await this.k(last ? label : `${label}.${j + 1}`, k, prev, o)];
    }
    return out;
  }

  /** ∂ℓ/∂x of an RMSNorm (+ `res`) into `out`: the rows' two sums (a shared scratch), then O(1) per value. */
  private async normDx(
    label: string,
    [N, d, eps]: [number, number, number],
    [dy, x, r, w]: ChainBuffer[],
    out: ChainBuffer,
    res?: ChainBuffer,
  ): Promise<ChainBuffer> {
    const sk = rmsnormRowSumsKernel(N, d);
    const sums = await this.k(`${label}.sums`, sk, [dy, x, r, w], this.scratch(`rms sums (${sk.size})`, sk.size));
    const args = [dy, x, r, w, sums, ...(res ? [res] : [])];
    return this.k(label, rmsnormDxKernel(N, d, eps, res !== undefined), args, out);
  }

  /** ∂ℓ/∂w of an RMSNorm into `out`: per chunk of rows (a shared scratch), then their sum. */
  private async normDw(label: string, [N, d]: [number, number], args: ChainBuffer[], out: ChainBuffer): Promise<void> {
    const [parts, fold] = rmsnormDwKernels(N, d);
    const p = await this.k(`${label}.parts`, parts, args, this.scratch(`rms dw parts (${parts.size})`, parts.size));
    await this.k(label, fold, [p], out);
  }

  /** A buffer by name, made on first use and shared by every op that asks for it (the ops run in order). */
  private scratch(name: string, n: number): ChainBuffer {
    let b = this.scratches.get(name);
    if (!b) this.scratches.set(name, (b = this.chain.buffer(name, n)));
    return b;
  }
  private readonly scratches = new Map<string, ChainBuffer>();

  /**
   * The forward of `m` on the ids buffer: every layer's saved activations, the final norm and the head's weight. `P`
   * reads a parameter's buffer (absent: `m`'s weights are uploaded here as frozen buffers, labelled `tag`).
   */
  private async forward(
    m: HybridModel,
    B: number,
    L: number,
    tag: string,
    P0?: (name: string) => ChainBuffer,
    rope0?: ChainBuffer,
  ): Promise<{
    saved: Array<Record<string, ChainBuffer>>;
    h: ChainBuffer;
    rf: ChainBuffer;
    nf: ChainBuffer;
    head: ChainBuffer;
  }> {
    const c = m.llama;
    const N = B * L;
    const [d, H, Hkv, hd, F] = [c.hiddenSize, c.numHeads, c.numKvHeads, c.headDim, c.intermediateSize];
    const frozen = new Map<string, ChainBuffer>();
    if (!P0)
      for (const name of m.weights.names())
        frozen.set(
          name,
          this.chain.buffer(`${tag} p:${name}`, m.weights.get(name).size, Float32Array.from(m.weights.get(name).data)),
        );
    const P = P0 ?? ((name: string) => lookup(frozen, name));
    const rope = rope0 ?? this.chain.buffer(`${tag} rope cos|sin`, L * hd, ropeTable(L, attentionRope(c, 0, L).inv));
    const att: AttnShape = { batch: B, L, H, Hkv, hd };
    const bias = (b: string | undefined) => (b ? [P(b)] : []);
    const pre = tag ? `${tag}.` : '';
    let h = await this.k(`${pre}embed`, embeddingKernel(N, d), [this.io.ids, P('model.embed_tokens.weight')]);
    const saved: Array<Record<string, ChainBuffer>> = [];
    const lin = (
      w: { weight: string; bias?: string },
      x: ChainBuffer,
      I: number,
      O: number,
      label: string,
      res?: ChainBuffer,
    ) => this.k(label, tiledLinear(N, I, O, !!w.bias, !!res), [x, P(w.weight), ...bias(w.bias), ...(res ? [res] : [])]);
    const kinds = layerKinds(m);
    for (let i = 0; i < c.numLayers; i++) {
      const { prefix: p, norm1, norm2 } = blockNames(i);
      const mn = mlpNames(p);
      const t = `${pre}L${i}`;
      const eps = blockEps(m, kinds[i]);
      const r1 = await this.k(`${t}.rstd1`, rstdKernel(N, d, eps), [h]);
      const n1 = await this.k(`${t}.norm1`, rmsnormKernel(N, d), [h, r1, P(norm1)]);
      let h1: ChainBuffer;
      let mix: Record<string, ChainBuffer>;
      if (kinds[i] === 'attention') {
        const an = attentionNames(c, p);
        const q = await lin(an.q, n1, d, H * hd, `${t}.q`);
        const k = await lin(an.k, n1, d, Hkv * hd, `${t}.k`);
        const v = await lin(an.v, n1, d, Hkv * hd, `${t}.v`);
        const qr = await this.k(`${t}.rope_q`, ropeKernel(N, L, H, hd, 1), [q, rope]);
        const kr = await this.k(`${t}.rope_k`, ropeKernel(N, L, Hkv, hd, 1), [k, rope]);
        const mm = attnProducts(att);
        const sc = await this.k(`${t}.scores`, mm.scores, [qr, kr], this.scratch('attn scores', mm.scores.size));
        const lse = await this.k(`${t}.lse`, attnLseKernel(att), [sc], this.scratch('attn lse', B * H * L));
        const pr = await this.k(`${t}.P`, attnProbKernel(att), [sc, lse]); // (b, H, l, l), saved
        const y = await this.k(`${t}.attn`, mm.y, [pr, v]);
        h1 = await lin(an.o, y, H * hd, d, `${t}.o`, h);
        mix = { qr, kr, v, pr, y };
      } else if (kinds[i] === 'mamba1') {
        // Mamba-1 (lib/model/mixers/mamba1.ts mamba1Train; kernels/train_mamba.ts)
        const s = mamba1Shape(m, p, B, L);
        const { n, conv, ss, I, X, R } = s;
        const xin = await lin({ weight: n.inX }, n1, d, X, `${t}.in_x`); // (N, d_xb)
        const xr = await this.k(`${t}.repeat_x`, repeatKernel(N, X, 0, X, I, s.piece), [xin]);
        const z = await lin({ weight: n.inZ }, n1, d, I, `${t}.in_z`);
        const bl = await lin({ weight: n.B }, n1, d, X, `${t}.B`);
        const br = await this.k(`${t}.repeat_B`, repeatKernel(N, X, 0, X, I, s.piece), [bl]);
        const cm = await lin({ weight: n.C }, n1, d, I, `${t}.C`);
        const down = await lin({ weight: n.dtDown }, n1, d, R, `${t}.dt_down`);
        const dt = await lin({ weight: n.dt, bias: s.dtProjBias }, down, R, I, `${t}.dt_proj`);
        const dl = await this.k(`${t}.delta`, deltaKernel(N, I), [dt, P(s.deltaBias)]);
        const xc = await this.k(`${t}.conv`, convRowsKernel(conv, !!s.convBias, true), [
          xr,
          P(n.conv),
          ...bias(s.convBias),
        ]);
        const local = await this.k(`${t}.ssd_local`, scanLocalKernel(ss), [xc, br, dl, P(n.Alog)]);
        const hs = await this.k(`${t}.ssd_pass`, scanPassKernel(ss), [local, dl, P(n.Alog)]);
        const y = await this.k(`${t}.ssd_out`, scanOutKernel(ss), [xc, br, cm, dl, P(n.Alog), hs, P(n.D)]);
        const yg = await this.k(`${t}.gate`, swigluKernel(N * I), [z, y]); // y · silu(z)
        h1 = await lin({ weight: n.out }, yg, I, d, `${t}.out_proj`, h);
        mix = { xr, z, br, cm, down, dt, dl, xc, hs, y, yg };
      } else {
        // Mamba-2 (lib/model/mixers/mamba2.ts mamba2Train; kernels/train_mamba.ts)
        const s = mamba2Shape(m, p, B, L);
        const { n, conv, ss, I, X, Win } = s;
        const inp = await lin({ weight: n.in, bias: s.inBias }, n1, d, Win, `${t}.in_proj`); // (N, [z | xBC | dt])
        const z = await this.k(`${t}.z`, colsKernel(N, Win, 0, I), [inp]);
        const xBC = await this.k(`${t}.xBC`, colsKernel(N, Win, I, conv.C), [inp]);
        const dt = await this.k(`${t}.dt`, colsKernel(N, Win, I + conv.C, s.H), [inp]);
        const dl = await this.k(`${t}.delta`, deltaKernel(N, s.H), [dt, P(n.dtBias)]);
        const xs = await this.k(`${t}.conv`, convRowsKernel(conv, !!s.convBias, true), [
          xBC,
          P(n.conv),
          ...bias(s.convBias),
        ]);
        const xr = await this.k(`${t}.repeat_x`, repeatKernel(N, conv.C, 0, X, I, s.P), [xs]);
        const br = await this.k(`${t}.repeat_B`, repeatKernel(N, conv.C, X, X, I, ss.Ns), [xs]);
        const cm = await this.k(`${t}.C`, colsKernel(N, conv.C, 2 * X, I), [xs]);
        const local = await this.k(`${t}.ssd_local`, scanLocalKernel(ss), [xr, br, dl, P(n.Alog)]);
        const hs = await this.k(`${t}.ssd_pass`, scanPassKernel(ss), [local, dl, P(n.Alog)]);
        const y = await this.k(`${t}.ssd_out`, scanOutKernel(ss), [xr, br, cm, dl, P(n.Alog), hs, P(n.D)]);
        const yn = await this.k(`${t}.gated_norm`, s.norm, [y, P(n.norm), z]);
        h1 = await lin({ weight: n.out }, yn, I, d, `${t}.out_proj`, h);
        mix = { z, xBC, dt, dl, xr, br, cm, hs, y, yn };
      }
      const r2 = await this.k(`${t}.rstd2`, rstdKernel(N, d, eps), [h1]);
      const n2 = await this.k(`${t}.norm2`, rmsnormKernel(N, d), [h1, r2, P(norm2)]);
      const g = await lin({ weight: mn.gate }, n2, d, F, `${t}.gate`);
      const u = await lin({ weight: mn.up }, n2, d, F, `${t}.up`);
      const a = await this.k(`${t}.swiglu`, swigluKernel(N * F), [g, u]);
      const hn = await lin({ weight: mn.down }, a, F, d, `${t}.down`, h1);
      const block = { h, r1, n1, h1, r2, n2, g, u, a };
      const clash = Object.keys(mix).find((key) => key in block);
      if (clash) throw new KernelError('webgpu', 'training chain', `a mixer saved '${clash}', a name the block uses`);
      saved.push({ ...block, ...mix });
      h = hn;
    }
    const rf = await this.k(`${pre}rstd_f`, rstdKernel(N, d, c.rmsNormEps), [h]);
    const nf = await this.k(`${pre}norm_f`, rmsnormKernel(N, d), [h, rf, P('model.norm.weight')]);
    return { saved, h, rf, nf, head: P(lmHeadName(m)) };
  }

  private async record(
    m: HybridModel,
    s: { B: number; L: number; N: number; d: number; V: number; H: number; Hkv: number; hd: number; F: number },
  ): Promise<void> {
    const { B, L, N, d, V, H, Hkv, hd, F } = s;
    const c = m.llama;
    const chain = this.chain;
    const tr = this.o.trainable;
    for (const name of m.weights.names()) {
      const data = Float32Array.from(m.weights.get(name).data); // (the parameter's shape)
      const n = data.length;
      this.params.set(
        name,
        tr(name)
          ? {
              name,
              p: chain.buffer(`p:${name}`, n, data),
              g: chain.buffer(`g:${name}`, n),
              m: chain.buffer(`m:${name}`, n),
              v: chain.buffer(`v:${name}`, n),
            }
          : { name, p: chain.buffer(`p:${name}`, n, data) },
      );
    }
    const P = (name: string): ChainBuffer => {
      const p = this.params.get(name);
      if (!p) throw new ArgumentError('weights', `a tensor '${name}'`, undefined);
      return p.p;
    };
    const G = (name: string) => this.params.get(name)?.g;
    /** dW = dyᵀ x into the parameter's gradient (and db), where it trains. */
    const dW = async (
      label: string,
      w: string,
      b: string | undefined,
      dy: ChainBuffer,
      x: ChainBuffer,
      I: number,
      O: number,
    ) => {
      const g = G(w);
      if (g) await this.k(`${label}.dW`, tiledLinearDw(N, I, O), [dy, x], g);
      const gb = b ? G(b) : undefined;
      if (gb) await this.k(`${label}.db`, linearDbKernel(N, O), [dy], gb);
    };
    const { inv } = attentionRope(c, 0, L);
    const rope = chain.buffer('rope cos|sin', L * hd, ropeTable(L, inv));
    const att: AttnShape = { batch: B, L, H, Hkv, hd };
    const embedName = 'model.embed_tokens.weight';
    const headName = lmHeadName(m);
    const tied = headName === embedName;

    // ---------------- accumulate > 1: forward and backward are the 'micro' program, run once per micro-batch (its
    // inputs fed into `inp`, copied here into the buffers the kernels read), each adding its gradients and losses into
    // accumulators; the main program then takes their mean, clips, steps Adam and zeroes them
    const A = this.o.accumulate ?? 1;
    const inp = this.io.inp;
    if (A > 1 && inp) {
      chain.record('micro');
      const parts: Array<[ChainBuffer, number]> = [
        [this.io.ids, 0],
        [this.io.tgt, N],
        [this.io.order, 2 * N],
        [this.io.start, 3 * N],
        ...(this.io.rowW ? [[this.io.rowW, 3 * N + V + 1] as [ChainBuffer, number]] : []),
      ];
      for (const [b, at] of parts) chain.copy(`micro ${b.name}`, inp, at, b, () => 0, b.elements);
    }

    // the ops of validation (the 'eval' program derived below): the micro-batch's input copies, the student's forward,
    // its head and per-row CE — positions in the program being recorded
    const prog = A > 1 && inp ? 'micro' : MAIN;
    const evalOps: Array<[number, number]> = [[0, chain.opCount(prog)]];
    const evalPart = async <T>(f: () => Promise<T>): Promise<T> => {
      const a = chain.opCount(prog);
      const r = await f();
      evalOps.push([a, chain.opCount(prog)]);
      return r;
    };

    // ---------------- forward (the teacher's first, frozen: its own weights, no gradients)
    const tf = this.o.teacher ? await this.forward(this.o.teacher.model, B, L, 'teacher') : undefined;
    const dT = this.o.teacher?.model.llama.hiddenSize ?? 0;
    const { saved, h, rf, nf } = await evalPart(() => this.forward(m, B, L, '', P, rope));

    // ---------------- the head, the loss and ∂ℓ/∂logits, by chunks of R rows (R·V ≤ 2^24: exact thread indices)
    const ls = {
      N,
      V,
      ceWeight: this.o.ceWeight ?? 1,
      ceRows: B * (L - 1),
      kl: this.o.teacher && { weight: this.o.teacher.klWeight, batch: B },
      rowWeights: this.o.rowWeights,
    };
    const R = Math.max(1, Math.min(N, this.o.logitRows ?? Math.floor(2 ** 24 / V)));
    const rows = chain.buffer('loss rows', 2 * N); // [ce_n | kl_n]
    const dnf = chain.buffer('lm_head.dx', N * d);
    const headGrad = tied ? (G(embedName) ? chain.buffer('lm_head.dW (tied)', V * d) : undefined) : G(headName);
    const chunks = Math.ceil(N / R);
    const acc =
      chunks > 1 && headGrad ? [chain.buffer('lm_head.dW a', V * d), chain.buffer('lm_head.dW b', V * d)] : [];
    const reuse = new Map<string, ChainBuffer>();
    /** a per-chunk buffer, shared by the chunks of one size (the ops run in order) */
    const cbuf = (name: string, n: number) => {
      let b = reuse.get(`${name}|${n}`);
      if (!b) reuse.set(`${name}|${n}`, (b = chain.buffer(`${name} (${n})`, n)));
      return b;
    };
    for (let c = 0; c < chunks; c++) {
      const r0 = c * R;
      const Rc = Math.min(R, N - r0);
      const t = chunks > 1 ? ` [${r0}]` : '';
      const take = (src: ChainBuffer, width: number, name: string) => {
        const dst = cbuf(name, Rc * width);
        chain.copy(`${name}${t}`, src, r0 * width, dst, () => 0, Rc * width);
        return dst;
      };
      const [nfC, logits, lseC, tgtC] = await evalPart(async () => {
        const x = take(nf, d, 'lm_head.x');
        const z = await this.k(
          `lm_head${t}`,
          tiledLinear(Rc, d, V, false, false),
          [x, P(headName)],
          cbuf('logits', Rc * V),
        );
        return [
          x,
          z,
          await this.ks(`loss.lse${t}`, lseKernels(Rc, V), [z], cbuf('lse', Rc)),
          take(this.io.tgt, 1, 'targets'),
        ];
      });
      const args = [logits, lseC, tgtC];
      if (tf) {
        const tl = await this.k(
          `teacher.lm_head${t}`,
          tiledLinear(Rc, dT, V, false, false),
          [take(tf.nf, dT, 'teacher.lm_head.x'), tf.head],
          cbuf('teacher logits', Rc * V),
        );
        args.push(tl, await this.ks(`teacher.loss.lse${t}`, lseKernels(Rc, V), [tl], cbuf('teacher lse', Rc)));
      }
      const lc = { ...ls, N: Rc };
      const rw = this.io.rowW ? [take(this.io.rowW, 1, 'row weights')] : [];
      const dlogits = await this.k(`loss.grad${t}`, lossGradKernel(lc), [...args, ...rw], cbuf('dlogits', Rc * V));
      const rc = await evalPart(async () => {
        const r = await this.k(`loss.rows${t}`, lossRowsKernel(lc), args, cbuf('loss rows', 2 * Rc));
        chain.copy(`loss.rows ce${t}`, r, 0, rows, () => r0, Rc);
        return r;
      });
      chain.copy(`loss.rows kl${t}`, rc, Rc, rows, () => N + r0, Rc);
      const dx = await this.k(`lm_head.dx${t}`, tiledLinearDx(Rc, d, [V]), [dlogits, P(headName)], cbuf('dnf', Rc * d));
      chain.copy(`lm_head.dx→${t}`, dx, 0, dnf, () => r0 * d, Rc * d);
      if (headGrad) {
        const out = c === chunks - 1 ? headGrad : acc[c % 2];
        const prev = c > 0 ? [acc[(c - 1) % 2]] : [];
        await this.k(`lm_head.dW${t}`, tiledLinearDw(Rc, d, V, c > 0), [dlogits, nfC, ...prev], out);
      }
    }
    await this.k('loss.sum', lossSumKernel(ls), [rows], this.io.loss);
    chain.derive(EVAL, prog, (i) => evalOps.some(([a, b]) => i >= a && i < b));
    this.evalRows = rows;
    // nothing trains: a step for `nll` alone (DPO's frozen reference), no backward or optimizer recorded
    if (!m.weights.names().some(tr)) {
      this.forwardOnly = true;
      return;
    }

    // ---------------- backward
    const gnf = G('model.norm.weight');
    if (gnf) await this.normDw('norm_f.dw', [N, d], [dnf, h, rf], gnf);
    // per-layer gradients, shared by the layers (the same shapes); ∂ℓ/∂h alternates between two buffers
    const buf = (name: string, n: number) => chain.buffer(name, n);
    const kinds = layerKinds(m);
    const shared = new Map<string, ChainBuffer>();
    /** a buffer the layers share by name and size (the Mamba layers' backward intermediates) */
    const bw = (name: string, n: number) => {
      let b = shared.get(`${name}|${n}`);
      if (!b) shared.set(`${name}|${n}`, (b = chain.buffer(`bw.${name}`, n)));
      return b;
    };
    const dhs = [buf('bw.dh a', N * d), buf('bw.dh b', N * d)];
    let dh = await this.normDx('norm_f.dx', [N, d, c.rmsNormEps], [dnf, h, rf, P('model.norm.weight')], dhs[0]);
    const B_ = {
      da: buf('bw.da', N * F),
      dg: buf('bw.dg', N * F),
      du: buf('bw.du', N * F),
      dn: buf('bw.dn', N * d),
      dh1: buf('bw.dh1', N * d),
      dy: buf('bw.dy', N * H * hd),
      delta: buf('bw.D', B * H * L),
      ds: buf('bw.dS', B * H * L * L),
      dqr: buf('bw.dq_rot', N * H * hd),
      dkr: buf('bw.dk_rot', N * Hkv * hd),
      dq: buf('bw.dq', N * H * hd),
      dk: buf('bw.dk', N * Hkv * hd),
      dv: buf('bw.dv', N * Hkv * hd),
    };
    /**
     * The scan's backward (kernels/train_mamba.ts), shared by both Mamba mixers: from ∂ℓ/∂y (dy) to ∂ℓ/∂dt (through
     * softplus), ∂ℓ/∂x, ∂ℓ/∂B, ∂ℓ/∂C, with A_log's and D's gradients written where they train. `x` the scan's input,
     * `sv` the layer's saved br, cm, dl (Δ), hs (chunk states), dt (before softplus).
     */
    const scanBack = async (
      t: string,
      ss: ScanRows,
      x: ChainBuffer,
      sv: Record<string, ChainBuffer>,
      dy: ChainBuffer,
      n: { Alog: string; D: string },
      deltaBias: string,
    ) => {
      const alog = P(n.Alog);
      const Nd = N * (ss.I / ss.HW); // Δ's values: (N, H) for Mamba-2, (N, d_in) for Mamba-1
      const st = scanStatesKernel(ss);
      const hst = await this.k(`${t}.ssd_states`, st, [x, sv.br, sv.dl, alog, sv.hs], bw('scan.h', st.size));
      const gl = scanGlocalKernel(ss);
      const glocal = await this.k(`${t}.ssd_glocal`, gl, [dy, sv.cm, sv.dl, alog], bw('scan.glocal', gl.size));
      const gin = await this.k(`${t}.ssd_gin`, scanGinKernel(ss), [glocal, sv.dl, alog], bw('scan.gin', gl.size));
      const gg = await this.k(`${t}.ssd_G`, scanGKernel(ss), [dy, sv.cm, sv.dl, alog, gin], bw('scan.G', st.size));
      const dd = [x, sv.br, sv.dl, alog, hst, gg];
      const NI = N * ss.I;
      // ∂ℓ/∂Δ: Mamba-1's per channel in one kernel; Mamba-2's per head from per-channel terms (short loops)
      const ddelta = ss.aPerState
        ? await this.k(`${t}.ssd_ddelta`, scanDdeltaKernel(ss), dd, bw('scan.ddelta', Nd))
        : await this.k(
            `${t}.ssd_ddelta`,
            rowHeadSumKernel(ss),
            [await this.k(`${t}.ssd_ddelta.terms`, scanDdeltaTermsKernel(ss), dd, bw('scan.ddelta terms', NI))],
            bw('scan.ddelta', Nd),
          );
      const dtArgs = [ddelta, sv.dt, P(deltaBias)];
      const width = ss.I / ss.HW;
      const ddt = await this.k(`${t}.delta.back`, deltaBackKernel(N, width), dtArgs, bw('scan.ddt', Nd));
      const dx = await this.k(`${t}.ssd_dx`, scanDxKernel(ss), [dy, sv.br, sv.dl, gg, P(n.D)], bw('scan.dx', NI));
      const dB = await this.k(`${t}.ssd_dB`, scanDbcKernel(ss, 'B'), [x, sv.dl, gg], bw('scan.dB', NI));
      const dC = await this.k(`${t}.ssd_dC`, scanDbcKernel(ss, 'C'), [dy, hst], bw('scan.dC', NI));
      // ∂ℓ/∂A_log, ∂ℓ/∂D: Mamba-1's per channel (and state); Mamba-2's per head, in two levels (headSumKernels)
      const ga = G(n.Alog);
      const gd = G(n.D);
      if (ss.aPerState) {
        if (ga) await this.k(`${t}.ssd_dAlog`, scanDalogKernel(ss), [sv.dl, alog, hst, gg], ga);
        if (gd) await this.k(`${t}.ssd_dD`, scanDdKernel(ss), [dy, x], gd);
      } else {
        // per head: Σ over rows and the head's channels of `args` (terms, or dy ⊙ x), × A_h for ∂ℓ/∂A_log
        const headSum = async (
          label: string,
          what: 'terms' | 'product',
          byA: boolean,
          args: ChainBuffer[],
          out: ChainBuffer,
        ) => {
          const [parts, fold] = headSumKernels(ss, what, byA);
          const p = await this.k(`${label}.parts`, parts, args, bw('scan.head parts', parts.size));
          await this.k(label, fold, byA ? [p, alog] : [p], out);
        };
        if (ga) {
          const dl = [sv.dl, alog, hst, gg];
          const terms = await this.k(`${t}.ssd_dAlog.terms`, scanDalogTermsKernel(ss), dl, bw('scan.dAlog', NI));
          await headSum(`${t}.ssd_dAlog`, 'terms', true, [terms], ga);
        }
        if (gd) await headSum(`${t}.ssd_dD`, 'product', false, [dy, x], gd);
      }
      return { ddt, dx, dB, dC };
    };
    for (let i = c.numLayers - 1; i >= 0; i--) {
      const sv = saved[i];
      const { prefix: p, norm1, norm2 } = blockNames(i);
      const mn = mlpNames(p);
      const t = `L${i}.back`;
      const eps = blockEps(m, kinds[i]);
      // MLP
      await this.k(`${t}.down.dx`, tiledLinearDx(N, F, [d]), [dh, P(mn.down)], B_.da);
      await dW(`${t}.down`, mn.down, undefined, dh, sv.a, F, d);
      await this.k(`${t}.swiglu.dg`, swigluBackKernel(N * F, 'dg'), [B_.da, sv.g, sv.u], B_.dg);
      await this.k(`${t}.swiglu.du`, swigluBackKernel(N * F, 'du'), [B_.da, sv.g], B_.du);
      await this.k(`${t}.gate_up.dx`, tiledLinearDx(N, d, [F, F]), [B_.dg, P(mn.gate), B_.du, P(mn.up)], B_.dn);
      await dW(`${t}.gate`, mn.gate, undefined, B_.dg, sv.n2, d, F);
      await dW(`${t}.up`, mn.up, undefined, B_.du, sv.n2, d, F);
      const g2 = G(norm2);
      if (g2) await this.normDw(`${t}.norm2.dw`, [N, d], [B_.dn, sv.h1, sv.r2], g2);
      await this.normDx(`${t}.norm2.dx`, [N, d, eps], [B_.dn, sv.h1, sv.r2, P(norm2)], B_.dh1, dh);
      if (kinds[i] === 'attention') {
        const an = attentionNames(c, p);
        await this.k(`${t}.o.dx`, tiledLinearDx(N, H * hd, [d]), [B_.dh1, P(an.o.weight)], B_.dy);
        await dW(`${t}.o`, an.o.weight, an.o.bias, B_.dh1, sv.y, H * hd, d);
        const mm = attnProducts(att);
        await this.k(`${t}.attn.D`, attnDeltaKernel(att), [B_.dy, sv.y], B_.delta);
        const dp = await this.k(`${t}.attn.dP`, mm.dP, [B_.dy, sv.v], this.scratch('attn dP', mm.dP.size));
        await this.k(`${t}.attn.dS`, attnDsKernel(att), [sv.pr, dp, B_.delta], B_.ds);
        await this.k(`${t}.attn.dq`, mm.dq, [B_.ds, sv.kr], B_.dqr);
        await this.k(`${t}.attn.dk`, mm.dk, [B_.ds, sv.qr], B_.dkr);
        await this.k(`${t}.attn.dv`, mm.dv, [sv.pr, B_.dy], B_.dv);
        await this.k(`${t}.rope_q.back`, ropeKernel(N, L, H, hd, -1), [B_.dqr, rope], B_.dq);
        await this.k(`${t}.rope_k.back`, ropeKernel(N, L, Hkv, hd, -1), [B_.dkr, rope], B_.dk);
        await this.k(
          `${t}.qkv.dx`,
          tiledLinearDx(N, d, [H * hd, Hkv * hd, Hkv * hd]),
          [B_.dq, P(an.q.weight), B_.dk, P(an.k.weight), B_.dv, P(an.v.weight)],
          B_.dn,
        );
        await dW(`${t}.q`, an.q.weight, an.q.bias, B_.dq, sv.n1, d, H * hd);
        await dW(`${t}.k`, an.k.weight, an.k.bias, B_.dk, sv.n1, d, Hkv * hd);
        await dW(`${t}.v`, an.v.weight, an.v.bias, B_.dv, sv.n1, d, Hkv * hd);
      } else if (kinds[i] === 'mamba2') {
        // Mamba-2, back from ∂ℓ/∂out (dh1) to ∂ℓ/∂n1 (B_.dn)
        const s = mamba2Shape(m, p, B, L);
        const { n, conv, ss, I, X, Win } = s;
        const dyn = await this.k(`${t}.out_proj.dx`, tiledLinearDx(N, I, [d]), [B_.dh1, P(n.out)], bw('m2.dyn', N * I));
        await dW(`${t}.out_proj`, n.out, undefined, B_.dh1, sv.yn, I, d);
        const nargs = [sv.y, P(n.norm), dyn, sv.z];
        const dy = await this.k(`${t}.gated_norm.dx`, s.normBack.dx, nargs, bw('m2.dy', N * I));
        const dz = await this.k(
          `${t}.gated_norm.dz`,
          present(s.normBack.dz, 'the gated norm dz kernel'),
          nargs,
          bw('m2.dz', N * I),
        );
        const gw = G(n.norm);
        if (gw) {
          const [parts, fold] = s.normDw;
          const q = await this.k(`${t}.gated_norm.dw.parts`, parts, nargs, bw('m2.norm dw parts', parts.size));
          await this.k(`${t}.gated_norm.dw`, fold, [q], gw);
        }
        const { ddt, dx: dxr, dB: dbr, dC: dc } = await scanBack(t, ss, sv.xr, sv, dy, n, n.dtBias);
        const gdb = G(n.dtBias);
        if (gdb) await this.k(`${t}.dt_bias.dW`, linearDbKernel(N, s.H), [ddt], gdb);
        const dxs = await this.k(
          `${t}.repeat.back`,
          repeatBackKernel(N, X, I, s.P, ss.Ns),
          [dxr, dbr, dc],
          bw('m2.dxs', N * conv.C),
        );
        const cargs = [sv.xBC, P(n.conv), dxs, ...(s.convBias ? [P(s.convBias)] : [])];
        const ds = await this.k(`${t}.conv.ds`, convDsKernel(conv, !!s.convBias, true), cargs, bw('m2.ds', N * conv.C));
        const dxBC = await this.k(`${t}.conv.dx`, convDxKernel(conv), [P(n.conv), ds], bw('m2.dxBC', N * conv.C));
        const gc = G(n.conv);
        if (gc) await this.k(`${t}.conv.dw`, convDwKernel(conv), [sv.xBC, ds], gc);
        const gcb = s.convBias && G(s.convBias);
        if (gcb) await this.k(`${t}.conv.db`, linearDbKernel(N, conv.C), [ds], gcb);
        const dinp = await this.k(
          `${t}.in_proj.dy`,
          join3Kernel(N, [I, conv.C, s.H]),
          [dz, dxBC, ddt],
          bw('m2.dinp', N * Win),
        );
        await this.k(`${t}.in_proj.dx`, tiledLinearDx(N, d, [Win]), [dinp, P(n.in)], B_.dn);
        await dW(`${t}.in_proj`, n.in, s.inBias, dinp, sv.n1, d, Win);
      } else {
        // Mamba-1, back from ∂ℓ/∂out (dh1) to ∂ℓ/∂n1 (B_.dn)
        const s = mamba1Shape(m, p, B, L);
        const { n, conv, ss, I, X, R } = s;
        const dyg = await this.k(`${t}.out_proj.dx`, tiledLinearDx(N, I, [d]), [B_.dh1, P(n.out)], bw('m1.dyg', N * I));
        await dW(`${t}.out_proj`, n.out, undefined, B_.dh1, sv.yg, I, d);
        const dy = await this.k(`${t}.gate.dy`, swigluBackKernel(N * I, 'du'), [dyg, sv.z], bw('m1.dy', N * I));
        const dz = await this.k(`${t}.gate.dz`, swigluBackKernel(N * I, 'dg'), [dyg, sv.z, sv.y], bw('m1.dz', N * I));
        const { ddt, dx: du, dB: dbr, dC: dc } = await scanBack(t, ss, sv.xc, sv, dy, n, s.deltaBias);
        const gdb = G(s.deltaBias);
        if (gdb && !s.dtProjBias) await this.k(`${t}.dt_bias.dW`, linearDbKernel(N, I), [ddt], gdb);
        if (gdb && s.dtProjBias) {
          // upstream adds b_Δ twice (dt_proj's bias and the scan's delta_bias): its gradient is Σ ∂dt, twice
          const once = await this.k(`${t}.dt_bias.dW`, linearDbKernel(N, I), [ddt], bw('m1.db', I));
          await this.k(`${t}.dt_bias.dW twice`, addKernel(I), [once, once], gdb);
        }
        const cargs = [sv.xr, P(n.conv), du, ...(s.convBias ? [P(s.convBias)] : [])];
        const ds = await this.k(`${t}.conv.ds`, convDsKernel(conv, !!s.convBias, true), cargs, bw('m1.ds', N * I));
        const dxr = await this.k(`${t}.conv.dx`, convDxKernel(conv), [P(n.conv), ds], bw('m1.dxr', N * I));
        const gc = G(n.conv);
        if (gc) await this.k(`${t}.conv.dw`, convDwKernel(conv), [sv.xr, ds], gc);
        const gcb = s.convBias && G(s.convBias);
        if (gcb) await this.k(`${t}.conv.db`, linearDbKernel(N, I), [ds], gcb);
        // [∂x_in | ∂B_in | ∂C]: the repeats summed back
        const W3 = 2 * X + I;
        const rb = repeatBackKernel(N, X, I, s.piece, s.piece);
        const dxs = await this.k(`${t}.repeat.back`, rb, [dxr, dbr, dc], bw('m1.dxs', N * W3));
        const dxin = await this.k(`${t}.dx_in`, colsKernel(N, W3, 0, X), [dxs], bw('m1.dxin', N * X));
        const dbl = await this.k(`${t}.dB_in`, colsKernel(N, W3, X, X), [dxs], bw('m1.dbl', N * X));
        const ddown = await this.k(`${t}.dt_proj.dx`, tiledLinearDx(N, R, [I]), [ddt, P(n.dt)], bw('m1.ddown', N * R));
        await dW(`${t}.dt_proj`, n.dt, undefined, ddt, sv.down, R, I);
        const dn3 = await this.k(
          `${t}.in.dx`,
          tiledLinearDx(N, d, [X, X, I]),
          [dxin, P(n.inX), dbl, P(n.B), dc, P(n.C)],
          bw('m1.dn3', N * d),
        );
        const dn2 = await this.k(
          `${t}.in2.dx`,
          tiledLinearDx(N, d, [I, R]),
          [dz, P(n.inZ), ddown, P(n.dtDown)],
          bw('m1.dn2', N * d),
        );
        await this.k(`${t}.in.dx sum`, addKernel(N * d), [dn3, dn2], B_.dn);
        await dW(`${t}.in_x`, n.inX, undefined, dxin, sv.n1, d, X);
        await dW(`${t}.in_z`, n.inZ, undefined, dz, sv.n1, d, I);
        await dW(`${t}.B`, n.B, undefined, dbl, sv.n1, d, X);
        await dW(`${t}.C`, n.C, undefined, dc, sv.n1, d, I);
        await dW(`${t}.dt_down`, n.dtDown, undefined, ddown, sv.n1, d, R);
      }
      const g1 = G(norm1);
      if (g1) await this.normDw(`${t}.norm1.dw`, [N, d], [B_.dn, sv.h, sv.r1], g1);
      const next = dh === dhs[0] ? dhs[1] : dhs[0];
      await this.normDx(`${t}.norm1.dx`, [N, d, eps], [B_.dn, sv.h, sv.r1, P(norm1)], next, B_.dh1);
      dh = next;
    }
    const gE = G(embedName);
    if (gE)
      await this.k(
        'embed.dW',
        embeddingDwKernel(N, V, d, !!headGrad && tied),
        [dh, this.io.order, this.io.start, ...(headGrad && tied ? [headGrad] : [])],
        gE,
      );

    // ---------------- clip and Adam
    const trained = [...this.params.values()].filter((q) => q.g);
    if (trained.length === 0) throw new ArgumentError('trainable', 'at least one parameter that trains', 0);
    if (A > 1 && this.io.lossMean) {
      // acc += g per micro-batch (a kernel into a scratch buffer, copied back); then, once: g = acc/A, acc = 0
      const sums: Array<[ChainBuffer, ChainBuffer]> = [
        ...trained.map((q): [ChainBuffer, ChainBuffer] => {
          const g = present(q.g, `${q.name}'s gradient`);
          return [g, chain.buffer(`acc:${q.name}`, g.elements)];
        }),
        [this.io.loss, chain.buffer('acc:loss', 2)],
      ];
      const scratch = new Map<number, ChainBuffer>();
      const tmp = (n: number) => scratch.get(n) ?? lookup(scratch.set(n, chain.buffer(`acc tmp (${n})`, n)), n);
      for (const [g, a] of sums) {
        await this.k(`acc+ ${g.name}`, addKernel(g.elements), [a, g], tmp(g.elements));
        chain.copy(`acc← ${g.name}`, tmp(g.elements), 0, a, () => 0, g.elements);
      }
      chain.record();
      const zeros = chain.buffer('zeros', Math.max(...sums.map(([g]) => g.elements)));
      for (const [g, a] of sums) {
        await this.k(`acc/A ${g.name}`, scaleKernel(g.elements, 1 / A), [a], g === this.io.loss ? this.io.lossMean : g);
        chain.copy(`acc=0 ${g.name}`, zeros, 0, a, () => 0, g.elements);
      }
    }
    const part = chain.buffer('norm parts', NORM_PARTS);
    const parts = chain.buffer('norm parts (all)', NORM_PARTS * trained.length);
    for (const [j, q] of trained.entries()) {
      await this.ks(`sumsq ${q.name}`, sumSquaresKernels(q.p.elements), [q.g!], part);
      chain.copy(`gather ${q.name}`, part, 0, parts, () => j * NORM_PARTS, NORM_PARTS);
    }
    await this.k('grad norm', gradNormKernel(parts.elements, this.o.clip ?? 0), [parts], this.io.norm);
    const temps = new Map<number, ChainBuffer[]>();
    for (const q of trained) {
      const n = q.p.elements;
      let tmp = temps.get(n);
      if (!tmp) temps.set(n, (tmp = [0, 1, 2].map((k) => chain.buffer(`adam tmp ${k} (${n})`, n))));
      const args = [q.g!, q.p, q.m!, q.v!, this.io.norm, this.io.hyper];
      for (const [k, which] of (['m', 'v', 'p'] as const).entries())
        await this.k(`adam.${which} ${q.name}`, adamKernel(n, this.o.optimizer, which), args, tmp[k]);
      chain.copy(`adam.m← ${q.name}`, tmp[0], 0, q.m!, () => 0, n);
      chain.copy(`adam.v← ${q.name}`, tmp[1], 0, q.v!, () => 0, n);
      chain.copy(`adam.p← ${q.name}`, tmp[2], 0, q.p, () => 0, n);
    }
  }

  /** The rows of one pass (the micro-batch) and their length: what `nll` takes. */
  get shape(): { batch: number; seqLen: number } {
    return { batch: this.o.batch, seqLen: this.o.seqLen };
  }

  /** Number of kernel dispatches in one step (for tests and the bench). */
  get dispatches(): number {
    return this.chain.dispatches;
  }
  get counters(): { submits: number; maps: number } {
    return this.chain.counters;
  }
  /** Where a step's time goes, by kernel label (benches only: it leaves parameters and moments meaningless). */
  profile(repeats?: number): Promise<{ label: string; ms: number; n: number }[]> {
    return this.chain.profile({ pos: 0 }, undefined, repeats);
  }
  /** Test hook: leave the op with this label out of every step (a test must then fail). */
  omit(label: string): void {
    if (!this.chain.labels.includes(label) && !this.chain.labelsOf('micro').includes(label))
      throw new ArgumentError('omit', 'a label of the chain', label);
    this.chain.omit.add(label);
  }

  /**
   * One step on rows `ids` (accumulate × batch rows of seqLen: micro-batch k is rows k·batch …) at learning rate lr,
   * Adam step t (1-based): one submit and one map (accumulate > 1: the micro-batches in a second submission before).
   */
  async step(ids: number[][], lr: number, t: number, rowWeights?: Float32Array): Promise<GpuStepResult> {
    const { batch, seqLen } = this.o;
    const A = this.o.accumulate ?? 1;
    if (ids.length !== A * batch || ids.some((r) => r.length !== seqLen))
      throw new ArgumentError(
        'ids',
        `${A * batch} rows of ${seqLen} tokens`,
        ids.map((r) => r.length),
      );
    this.checkIds(ids);
    if (this.forwardOnly)
      throw new ArgumentError('trainable', 'at least one parameter that trains (this step was made for nll only)', 0);
    const nw = A * batch * seqLen;
    if (!!this.io.rowW !== !!rowWeights || (rowWeights && rowWeights.length !== nw))
      throw new ArgumentError(
        'rowWeights',
        this.io.rowW ? `${nw} weights, one per row of ids (a step made with rowWeights)` : 'none (a step made without)',
        rowWeights?.length,
      );
    if (this.io.rowW && rowWeights && A === 1) this.chain.write(this.io.rowW, rowWeights);
    /** micro-batch k's inputs, and its rows' weights where the step takes them */
    const inputs = (rows: number[][], k = 0) => [
      ...this.inputs(rows),
      ...(rowWeights ? [rowWeights.subarray(k * batch * seqLen, (k + 1) * batch * seqLen)] : []),
    ];
    const { all, inp, lossMean } = this.io;
    if (A > 1 && all && inp && lossMean) {
      const per = inp.elements;
      const data = new Float32Array(A * per); // (A, 3·b·l + V + 1 (+ b·l row weights))
      for (let k = 0; k < A; k++) {
        let at = k * per;
        for (const part of inputs(ids.slice(k * batch, (k + 1) * batch), k))
          data.set(part, (at += part.length) - part.length);
      }
      this.chain.write(all, data);
      await this.chain.runSequence(
        Array.from({ length: A }, () => ({ pos: 0 })),
        [],
        { src: all, dst: inp, elements: per },
        'micro',
      );
    } else {
      const [flat, tgt, order, start] = this.inputs(ids); // (b·l) ×3, (V + 1)
      this.chain.write(this.io.ids, flat);
      this.chain.write(this.io.tgt, tgt);
      this.chain.write(this.io.order, order);
      this.chain.write(this.io.start, start);
    }
    this.chain.write(this.io.hyper, adamHyper(this.o.optimizer, t, lr));
    const [loss, norm] = await this.chain.run({ pos: 0 }, [{ from: lossMean ?? this.io.loss }, { from: this.io.norm }]); // (2) [CE, KL], (3) [‖g‖, c, ok]
    const ce = loss[0];
    const kl = this.o.teacher ? loss[1] : undefined;
    return {
      loss: (this.o.ceWeight ?? 1) * ce + (kl === undefined ? 0 : this.o.teacher!.klWeight * kl),
      ce,
      kl,
      gradNorm: norm[0],
      ok: norm[2] > 0.5 && Number.isFinite(ce) && (kl === undefined || Number.isFinite(kl)),
    };
  }

  private checkIds(ids: number[][]): void {
    ids.flat().forEach((id, n) => {
      if (!Number.isInteger(id) || id < 0 || id >= this.V)
        throw new ArgumentError(`ids[${n}]`, `a token id in [0, ${this.V})`, id);
    });
  }

  /** A micro-batch's inputs: ids, next ids (−1 at a row's end), the embedding's order and start. */
  private inputs(rows: number[][]): Float32Array[] {
    const L = this.o.seqLen;
    const flat = rows.flat(); // (b·l)
    const { order, start } = embeddingIndex(flat, this.V);
    const tgt = Float32Array.from(flat, (_, n) => (n % L === L - 1 ? -1 : flat[n + 1])); // (b·l)
    return [Float32Array.from(flat), tgt, order, start];
  }

  /**
   * Validation on the device, at the parameters it holds now: nll (b·l) with nll[b·l + t] = −log p(ids[b][t + 1])
   * under the model being trained (0 at each row's last position), for `batch` rows of seqLen tokens (the step's
   * micro-batch). One submission of the step's own forward and per-row CE kernels (the 'eval' program: no
   * backward, no teacher, no update; its buffers are the step's, so a step and this never run at once — the
   * chain runs its calls in order). Reference: lib/train/job.ts `evaluate` (float64, on the host's weights).
   */
  async nll(ids: number[][]): Promise<Float32Array> {
    const { batch, seqLen } = this.o;
    if (ids.length !== batch || ids.some((r) => r.length !== seqLen))
      throw new ArgumentError(
        'ids',
        `${batch} rows of ${seqLen} tokens`,
        ids.map((r) => r.length),
      );
    this.checkIds(ids);
    const parts = this.inputs(ids); // (b·l) ×3, (V + 1)
    const { inp } = this.io;
    if (inp) {
      const data = new Float32Array(inp.elements); // (3·b·l + V + 1), as a micro-batch is fed
      let at = 0;
      for (const part of parts) data.set(part, (at += part.length) - part.length);
      this.chain.write(inp, data);
    } else [this.io.ids, this.io.tgt, this.io.order, this.io.start].forEach((b, i) => this.chain.write(b, parts[i]));
    const read = [{ from: present(this.evalRows, 'the eval program'), elements: batch * seqLen }];
    const [rows] = await this.chain.run({ pos: 0 }, read, EVAL); // (b·l): −log p of each next token, 0 at a row's end
    return rows;
  }

  /**
   * The parameters and (for those that train) Adam moments and the last step's gradients (before clipping), read
   * back from the device (float32).
   */
  async read(): Promise<Map<string, { p: Float32Array; m?: Float32Array; v?: Float32Array; g?: Float32Array }>> {
    const out = new Map<string, { p: Float32Array; m?: Float32Array; v?: Float32Array; g?: Float32Array }>();
    for (const q of this.params.values())
      out.set(q.name, {
        p: await this.chain.read(q.p),
        m: q.m && (await this.chain.read(q.m)),
        v: q.v && (await this.chain.read(q.v)),
        g: q.g && (await this.chain.read(q.g)),
      });
    return out;
  }

  /** Write moments (a resumed run's, float64 on the host) into the device buffers. */
  setMoments(m: ReadonlyMap<string, ArrayLike<number>>, v: ReadonlyMap<string, ArrayLike<number>>): void {
    for (const q of this.params.values()) {
      const mm = m.get(q.name);
      const vv = v.get(q.name);
      if (q.m && mm) this.chain.write(q.m, Float32Array.from(mm));
      if (q.v && vv) this.chain.write(q.v, Float32Array.from(vv));
    }
  }

  destroy(): void {
    this.chain.destroy();
  }
}
