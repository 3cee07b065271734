/**
 * One GPU submission per decoded token (webgpu): the whole forward of one token — embedding row, every layer,
 * final norm, lm_head and the greedy argmax or the sampler's draw — as one chain of GPU.js kernels in one command
 * encoder (kernels/resident_chain.ts), with every cache and state resident on the GPU between tokens; per token
 * the host writes [id, pos, u, T, k, p] (a queue write) and reads back the chosen id (and the logits only when
 * asked). Sampling (kernels/decode.ts sampleWeights/sampleDraw): the CPU sampler's kept set (top-k, top-p in its
 * order) and draw, with the uniform u the host's seeded generator gives next.
 *
 *   h = E[id]                                                                (d)
 *   for each layer:  n = rmsnorm₁(h)
 *     attention:     [q | k | v] = rope([W_q n | W_k n | W_v n], pos);  K[pos] ← k, V[pos] ← v   (buffer copies)
 *                    h ← h + W_o attention(q, K[0 … pos], V[0 … pos])
 *     Mamba-2:       [z | xBC | dt] = W_in n (+ b_in);  xs = silu(conv_step(conv state, xBC));  conv state ← shifted
 *                    ssm ← exp(Δ A) ssm + Δ x Bᵀ;  y = ssm C + D x;  h ← h + W_out gated_rmsnorm(y, z)
 *     Mamba-1:       [x | z | B | C | dt_low] = W n (the five projections stacked);  xc = silu(conv_step(…, repeat(x)))
 *                    Δ = softplus(W_dt dt_low + b_Δ (+ b_Δ upstream));  ssm ← exp(Δ A) ssm + Δ xc repeat(B)ᵀ
 *                    y = (ssm C + D xc) · silu(z);  h ← h + W_out y
 *                    (new states written to scratch, copied back in the same encoder)
 *     then           n = rmsnorm₂(h);  h ← h + W_down (silu(W_gate n) ⊙ W_up n)
 *   logits = lm_head(rmsnorm(h));  id' = argmax(logits)                      (V)
 *
 * The same model as lib/model/hybrid.ts `forward` (the float64 reference it is tested against, at float32
 * tolerance: spec/gpu_decode.spec.ts), for batch 1, Mamba-1 under both semantics. HF attention biases are not
 * in the chain yet: such a model gets an ArgumentError before anything is uploaded. Weights are uploaded once,
 * transposed (kernels/decode.ts `matvecKernel`); the KV cache holds `capacity` positions, (cap, H_kv·hd).
 *
 * Windows of T tokens (T > 1, recorded on first use into the same chain, sharing its weights and caches): every
 * product over the T rows at once (matrix products), attention over the cache with the window's keys/values
 * written first, each Mamba layer by MultiStep (lib/ref/multistep.ts) from its one cached state h_j — row t's
 * state replayed inside the kernel, never stored —, then the greedy acceptance on the GPU and, last, the conv
 * windows and states advanced by the committed rows only. `verify` (Algorithm 2's VERIFY: [last, d_1 … d_K],
 * reads back [n, next]) and `prefill` (a prompt in windows of `prefillWidth`, all committed) both run it, each
 * in one submission.
 *
 * `load` seeds the caches and states from a host ModelCache (lib/model/generate.ts: after the per-op path's
 * parallel prefill) and `save` writes them back, so a host cache continues on either path. `load` is host work
 * and queue writes: ~1–2 ms for 64 positions at d512 / 8 layers (Llama and 50% Mamba-2 hybrid, measured on the
 * 2-core dev box with Dawn's CPU adapter).
 *
 * Symbols: d hidden_size · V vocab · H, H_kv heads · hd head_dim · F intermediate_size · pos the token's
 * position · Mamba-2: H_m heads, P = N head width and state size, d_in, d_xb, K conv width · Mamba-1: R dt_rank.
 */
import { ArgumentError, DeviceLimitError } from '../errors.js';
import {
  argmaxFinalKernel,
  argmaxLanes,
  argmaxLanesKernel,
  attentionScoresKernel,
  attentionValuesKernel,
  convShiftKernel,
  convStepKernel,
  embedKernel,
  mamba1OutKernel,
  mamba1StepKernel,
  matvecKernel,
  matvecPartialKernel,
  splitSumKernel,
  splitsFor,
  qkvRopeKernel,
  ropeKernel,
  rmsnormKernel,
  ssmYKernel,
  groupNormKernel,
  ssmStepKernel,
  swigluKernel,
  swigluSumKernel,
  type DecodeKernel,
  ResidentChain,
  type ChainBuffer,
  type ChainVars,
  acceptKernel,
  sampleChunksKernel,
  sampleDrawKernel,
  sampleWeightsKernel,
  SAMPLE_META,
  convCommitKernel,
  convWindowKernel,
  m1CommitKernel,
  m1DeltaKernel,
  m1WindowOutKernel,
  m2CommitKernel,
  m2DeltaKernel,
  m2WindowYKernel,
  WINDOW_IDS,
  windowMetaLength,
  argmaxChunks,
  argmaxChunksWgsl,
  argmaxFinalWgsl,
  attentionScoresWgsl,
  attentionValuesWgsl,
  attentionValuesWgslFits,
  gemvKernel,
  groupNormWgsl,
  m2WindowYWgsl,
  rmsnormWgsl,
  ssmYWgsl,
} from '../ops_resident.js';
import { Tensor } from '../tensor.js';
import { attentionNames, attentionRope, writeKv } from './mixers/attention.js';
import { ropeTable } from '../ref/rope.js';
import {
  blockEps,
  blockNames,
  layerKinds,
  lmHeadName,
  mambaOf,
  type HybridModel,
  type ModelCache,
} from './mixers/block.js';
import { mlpNames } from './mixers/mlp.js';
import { onArrayChanged } from '../weight_registry.js';

/** What a layer keeps on the GPU between tokens (for tests: read back with `GpuDecoder.readLayer`). */
type LayerState =
  | { kind: 'attention'; k: ChainBuffer; v: ChainBuffer }
  | { kind: 'mamba1' | 'mamba2'; conv: ChainBuffer; ssm: ChainBuffer };

export interface GpuDecodeOptions {
  /** positions the KV caches hold (default: min(max_position_embeddings, 4096)) */
  capacity?: number;
  /** rows of the window a prefill runs at once (default: min(capacity, 64)); a longer prompt takes several */
  prefillWidth?: number;
  /**
   * how the reductions run (default 'wgsl'): 'wgsl' — products, RMSNorm, the argmax, attention, Mamba-2's output
   * (one token's and a window's) and gated-norm groups as workgroup-cooperative WGSL (kernels/decode_wgsl.ts: a
   * workgroup shares each reduction); 'gpujs' — kernels/decode.ts's GPU.js kernels,
   * one thread an output looping over the whole reduction (kept as the benches' baseline and the tests' second
   * path; the same tokens)
   */
  reductions?: 'wgsl' | 'gpujs';
}

/** W (R, K) as stored → Wᵀ (K, R) float32: thread r of a matvec then reads K values R apart (coalesced). */
function transposed(w: ArrayLike<number>, R: number, K: number): Float32Array {
  const t = new Float32Array(R * K); // (K, R)
  for (let r = 0; r < R; r++) for (let i = 0; i < K; i++) t[i * R + r] = w[r * K + i];
  return t;
}

/** Row-major matrices of the same width, one under the other. */
function stackRows(parts: ArrayLike<number>[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, x) => a + x.length, 0)); // (Σ rows, width)
  let o = 0;
  for (const x of parts) {
    out.set(x, o);
    o += x.length;
  }
  return out;
}

/** The program of a window of T rows (T = 1: the one-token step, 'main'). */
const programName = (T: number) => (T === 1 ? 'main' : `window${T}`);

/** What every program of one decoder shares: the chain, the weights (uploaded once), the caches and states. */
interface Shared {
  chain: ResidentChain;
  m: HybridModel;
  capacity: number;
  /**
   * the weight buffer `key`, uploaded on first use from make(), made from the stored tensors `deps` (default:
   * the tensor `key`); uploaded again when one of them is marked changed (lib/weight_registry.ts)
   */
  weight: (key: string, make: () => Float32Array, deps?: readonly string[]) => ChainBuffer;
  rope: ChainBuffer | undefined;
  layers: LayerState[];
  /** GpuDecodeOptions.reductions !== 'gpujs' */
  coop: boolean;
}

/** A recorded program's buffers: its meta (ids, positions), logits (T, V) and result (T = 1: the id; else commit). */
interface Program {
  T: number;
  meta: ChainBuffer;
  logits: ChainBuffer;
  result: ChainBuffer;
  /** a prefill's metas, one per pass (T > 1) */
  feed?: ChainBuffer;
}

/**
 * Record the forward of T rows into the chain's program `programName(T)`. T = 1: the one-token step (meta
 * [id, pos]; Mamba states stepped and written back; result = the greedy id). T > 1: a window (meta
 * [s, pos₀, ids …, verify], kernels/decode.ts WINDOW_IDS): every product over all T rows at once, attention over
 * the cache with the window's rows written first, Mamba layers by MultiStep from the one cached state — then the
 * greedy acceptance (result = commit [n, next]) and, last, each Mamba layer's conv window and state advanced by
 * the n committed rows only (the KV rows past them are simply overwritten later).
 */
async function recordProgram(g: Shared, T: number): Promise<Program> {
  const { chain, m, capacity, weight, rope, coop } = g;
  const c = m.llama;
  const kinds = layerKinds(m);
  const W = m.weights;
  const d = c.hiddenSize;
  const [H, Hkv, hd, F, V] = [c.numHeads, c.numKvHeads, c.headDim, c.intermediateSize, c.vocabSize];
  const win = T > 1;
  const at = win ? `w${T}.` : ''; // op labels and scratch names of a window program
  chain.record(programName(T));
  const f32 = (name: string) => {
    const t = W.get(name); // (the weight's shape)
    return t.data instanceof Float32Array ? t.data : Float32Array.from(t.data);
  };
  const upT = (name: string, R: number, K: number) =>
    weight(`${name}ᵀ`, () => transposed(W.get(name).data, R, K), [name]);
  const up = (name: string) => weight(name, () => f32(name));
  const scratch = (name: string, n: number) => chain.buffer(`${at}${name}`, n);
  const k = (label: string, kern: DecodeKernel, args: ChainBuffer[], out: ChainBuffer) =>
    chain.kernel(`${at}${label}`, kern.key, kern.source, kern.constants, args, out);
  // out = Wᵀ-stored w (K inputs, R outputs) times x (T rows), + add (a residual (T·R) or a bias (R)), split over K
  // where the outputs are few
  const mv = async (
    label: string,
    x: ChainBuffer,
    w: ChainBuffer,
    K: number,
    R: number,
    out: ChainBuffer,
    add?: ChainBuffer,
  ) => {
    const an = add?.elements ?? 0;
    if (coop)
      return chain.wgsl(
        `${at}${label}`,
        gemvKernel(K, R, T, add ? 'add' : 'none', an),
        add ? [x, w, add] : [x, w],
        out,
      );
    const S = splitsFor(K, T * R);
    if (S === 1) return k(label, matvecKernel(K, R, an, T), add ? [x, w, add] : [x, w], out);
    const part = scratch(`${label} partial sums`, S * T * R);
    await k(label, matvecPartialKernel(K, R, S, T), [x, w], part);
    await k(`${label}.sum`, splitSumKernel(T * R, S, an), add ? [part, add] : [part], out);
  };
  const norm = (label: string, eps: number, x: ChainBuffer, w: ChainBuffer, out: ChainBuffer) =>
    coop
      ? chain.wgsl(`${at}${label}`, rmsnormWgsl(d, eps, T), [x, w], out)
      : k(label, rmsnormKernel(d, eps, T), [x, w], out);
  const meta = win
    ? scratch('meta [s, pos, ids, verify]', windowMetaLength(T))
    : scratch('meta [id, pos, u, T, k, p]', SAMPLE_META);
  /** what runs after the acceptance: each Mamba layer's conv window and state advanced by the committed rows */
  const commits: Array<(commit: ChainBuffer) => Promise<void>> = [];

  let h = scratch('h', T * d);
  await k('embed', embedKernel(d, T, win ? WINDOW_IDS : 0), [up('model.embed_tokens.weight'), meta], h);
  for (let i = 0; i < kinds.length; i++) {
    const kind = kinds[i];
    const { prefix: p, norm1, norm2 } = blockNames(i);
    const eps = blockEps(m, kind);
    const L = `layer${i}`;
    const state = g.layers[i];
    const n1 = scratch(`${L}.n1`, T * d);
    await norm(`${L}.norm1`, eps, h, up(norm1), n1);
    const h1 = scratch(`${L}.h1`, T * d);
    if (state.kind === 'attention') {
      const a = attentionNames(c, p);
      const [Q, KV] = [H * hd, Hkv * hd];
      const qkv = scratch(`${L}.qkv`, T * (Q + 2 * KV)); // [q (T, Q) | k (T, KV) | v (T, KV)]
      if (coop) {
        // one product of the stacked [W_q | W_k | W_v]ᵀ (d, Q + 2·KV), rows (T, Q + 2·KV); then RoPE and the layout
        const names = [a.q.weight, a.k.weight, a.v.weight];
        const wqkv = weight(
          `${p} qkvᵀ`,
          () => transposed(stackRows(names.map((n) => W.get(n).data)), Q + 2 * KV, d),
          names,
        );
        const raw = scratch(`${L}.qkv raw`, T * (Q + 2 * KV));
        await mv(`${L}.qkv`, n1, wqkv, d, Q + 2 * KV, raw);
        await k(`${L}.rope`, ropeKernel(H, Hkv, hd, T), [raw, rope!, meta], qkv);
      } else
        await k(
          `${L}.qkv_rope`,
          qkvRopeKernel(d, H, Hkv, hd, T),
          [n1, upT(a.q.weight, Q, d), upT(a.k.weight, KV, d), upT(a.v.weight, KV, d), rope!, meta],
          qkv,
        );
      // the rows' keys and values into the cache at pos … pos + rows − 1 (only the real rows of a window)
      const rows = (v: ChainVars) => (v.rows ?? 1) * KV;
      chain.copy(`${at}${L}.k_write`, qkv, T * Q, state.k, (v) => v.pos * KV, rows);
      chain.copy(`${at}${L}.v_write`, qkv, T * (Q + KV), state.v, (v) => v.pos * KV, rows);
      const y = scratch(`${L}.attn`, T * Q);
      const scores = scratch(`${L}.scores`, T * H * capacity);
      if (coop && attentionValuesWgslFits(hd))
        await chain.wgsl(
          `${at}${L}.attn_scores`,
          attentionScoresWgsl(H, Hkv, hd, capacity, T),
          [qkv, state.k, meta],
          scores,
        );
      else await k(`${L}.attn_scores`, attentionScoresKernel(H, Hkv, hd, capacity, T), [qkv, state.k, meta], scores);
      if (coop && attentionValuesWgslFits(hd))
        await chain.wgsl(
          `${at}${L}.attn_values`,
          attentionValuesWgsl(H, Hkv, hd, capacity, T),
          [scores, state.v, meta],
          y,
        );
      else await k(`${L}.attn_values`, attentionValuesKernel(H, Hkv, hd, capacity, T), [scores, state.v, meta], y);
      await mv(`${L}.o_proj`, y, upT(a.o.weight, d, Q), Q, d, h1, h);
    } else if (state.kind === 'mamba1') {
      const mc = mambaOf(m);
      const q = `${p}.mamba`;
      const { dInner, dXb, dState: N, dConv: K, dtRank: R } = mc;
      const clean = mc.semantics === 'clean';
      const piece = clean ? hd : N; // ./mixers/mamba1.ts mamba1Wiring
      // [x | z | B | C | dt_low] = one matvec over the stacked projections
      const names = ['in_proj_x', 'in_proj_z', 'B_proj', 'C_proj', 'dt_proj_down'].map((n) => `${q}.${n}.weight`);
      const Rt = 2 * dXb + 2 * dInner + R;
      const stackedT = weight(
        `${q} projections`,
        () => {
          const stacked = new Float32Array(Rt * d); // (R_t, d): the stacked projection rows
          let o = 0;
          for (const n of names) {
            const w = W.get(n).data; // (the weight's size)
            for (let j = 0; j < w.length; j++) stacked[o + j] = w[j];
            o += w.length;
          }
          return transposed(stacked, Rt, d);
        },
        names,
      );
      const proj = scratch(`${L}.proj`, T * Rt);
      await mv(`${L}.in_proj`, n1, stackedT, d, Rt, proj);
      const convNext = scratch(`${L}.conv state'`, dInner * (K - 1));
      const convW = up(`${q}.conv1d.weight`);
      const convB = W.has(`${q}.conv1d.bias`)
        ? up(`${q}.conv1d.bias`)
        : weight(`${L}.conv bias 0`, () => new Float32Array(dInner), []);
      const src = { zOff: 0, repeat: { piece, rep: dInner / dXb } };
      const xc = scratch(`${L}.xc`, T * dInner);
      const A = weight(`${q} A`, () => Float32Array.from(W.get(`${q}.A_log`).data, (x) => -Math.exp(x)), [
        `${q}.A_log`,
      ]); // (d_in, N)
      const parBuf = weight(
        `${L}.dt_bias|D`,
        () => {
          const par = new Float32Array(2 * dInner); // (2·d_in)
          par.set(f32(`${q}.dt_proj.bias`));
          par.set(f32(`${q}.D`), dInner);
          return par;
        },
        [`${q}.dt_proj.bias`, `${q}.D`],
      );
      const ssmNext = scratch(`${L}.ssm state'`, dInner * N);
      const y = scratch(`${L}.y`, T * dInner);
      if (!win) {
        await k(`${L}.conv`, convStepKernel(K, src, true), [state.conv, proj, convW, convB], xc);
        await k(`${L}.conv_shift`, convShiftKernel(K, src), [state.conv, proj], convNext);
        chain.copy(`${L}.conv_write`, convNext, 0, state.conv, () => 0, dInner * (K - 1));
        await k(
          `${L}.ssm_step`,
          mamba1StepKernel(dInner, N, R, dXb, piece, !clean),
          [state.ssm, xc, proj, up(`${q}.dt_proj.weight`), A, parBuf],
          ssmNext,
        );
        await k(`${L}.ssm_out`, mamba1OutKernel(dInner, N, dXb), [ssmNext, xc, proj, parBuf], y);
        chain.copy(`${L}.ssm_write`, ssmNext, 0, state.ssm, () => 0, dInner * N);
      } else {
        await k(`${L}.conv`, convWindowKernel(K, src, true, dInner, Rt, T), [state.conv, proj, convW, convB], xc);
        const delta = scratch(`${L}.delta`, T * dInner);
        await k(
          `${L}.delta`,
          m1DeltaKernel(dInner, R, Rt, dXb, !clean),
          [proj, up(`${q}.dt_proj.weight`), parBuf],
          delta,
        );
        await k(
          `${L}.ssm_out`,
          m1WindowOutKernel(dInner, N, dXb, piece, Rt, T),
          [state.ssm, xc, proj, A, parBuf, delta],
          y,
        );
        commits.push(async (commit) => {
          await k(`${L}.conv_shift`, convCommitKernel(K, src, Rt), [state.conv, proj, commit], convNext);
          chain.copy(`${at}${L}.conv_write`, convNext, 0, state.conv, () => 0, dInner * (K - 1));
          await k(
            `${L}.ssm_step`,
            m1CommitKernel(dInner, N, dXb, piece, Rt, T),
            [state.ssm, xc, proj, A, delta, commit],
            ssmNext,
          );
          chain.copy(`${at}${L}.ssm_write`, ssmNext, 0, state.ssm, () => 0, dInner * N);
        });
      }
      await mv(`${L}.out_proj`, y, upT(`${q}.out_proj.weight`, d, dInner), dInner, d, h1, h);
    } else {
      const mc = mambaOf(m);
      const q = `${p}.mamba`;
      const { dInner, dXb, dState: N, nHeads: Hm, dConv: K } = mc;
      const P = N;
      const convDim = dInner + 2 * dXb;
      const R = 2 * dInner + 2 * dXb + Hm;
      const zx = scratch(`${L}.zxbcdt`, T * R);
      const hasBias = W.has(`${q}.in_proj.bias`);
      await mv(
        `${L}.in_proj`,
        n1,
        upT(`${q}.in_proj.weight`, R, d),
        d,
        R,
        zx,
        hasBias ? up(`${q}.in_proj.bias`) : undefined,
      );
      const convNext = scratch(`${L}.conv state'`, convDim * (K - 1));
      const convW = up(`${q}.conv1d.weight`);
      const convB = W.has(`${q}.conv1d.bias`)
        ? up(`${q}.conv1d.bias`)
        : weight(`${L}.conv bias 0`, () => new Float32Array(convDim), []);
      const xs = scratch(`${L}.xs`, T * convDim);
      const silu = m.ablation?.convActivation !== false;
      // [A | dt_bias | D] per head, A = −exp(A_log) in float64
      const parBuf = weight(
        `${L}.A|dt_bias|D`,
        () => {
          const par = new Float32Array(3 * Hm); // (3·H_m)
          const Alog = W.get(`${q}.A_log`).data; // (H)
          const dtb = W.get(`${q}.dt_bias`).data; // (H)
          const Dd = W.get(`${q}.D`).data; // (H)
          for (let j = 0; j < Hm; j++) {
            par[j] = -Math.exp(Alog[j]);
            par[Hm + j] = dtb[j];
            par[2 * Hm + j] = Dd[j];
          }
          return par;
        },
        [`${q}.A_log`, `${q}.dt_bias`, `${q}.D`],
      );
      const ssmNext = scratch(`${L}.ssm state'`, Hm * P * N);
      const gated = m.ablation?.gatedNorm !== false;
      const v = scratch(`${L}.y·silu(z)`, T * dInner);
      if (!win) {
        await k(`${L}.conv`, convStepKernel(K, { zOff: dInner }, silu), [state.conv, zx, convW, convB], xs);
        await k(`${L}.conv_shift`, convShiftKernel(K, { zOff: dInner }), [state.conv, zx], convNext);
        chain.copy(`${L}.conv_write`, convNext, 0, state.conv, () => 0, convDim * (K - 1));
        await k(
          `${L}.ssm_step`,
          ssmStepKernel(Hm, P, N, dXb, dInner, dInner + convDim),
          [state.ssm, xs, zx, parBuf],
          ssmNext,
        );
        if (coop)
          await chain.wgsl(`${L}.ssm_out`, ssmYWgsl(Hm, P, N, dXb, dInner, gated), [ssmNext, xs, zx, parBuf], v);
        else await k(`${L}.ssm_out`, ssmYKernel(Hm, P, N, dXb, dInner, gated), [ssmNext, xs, zx, parBuf], v);
        chain.copy(`${L}.ssm_write`, ssmNext, 0, state.ssm, () => 0, Hm * P * N);
      } else {
        const src = { zOff: dInner };
        await k(`${L}.conv`, convWindowKernel(K, src, silu, convDim, R, T), [state.conv, zx, convW, convB], xs);
        const delta = scratch(`${L}.delta`, T * Hm);
        await k(`${L}.delta`, m2DeltaKernel(Hm, R, dInner + convDim), [zx, parBuf], delta);
        const yArgs = [state.ssm, xs, zx, parBuf, delta];
        if (coop) await chain.wgsl(`${at}${L}.ssm_out`, m2WindowYWgsl(Hm, P, N, dXb, dInner, R, gated, T), yArgs, v);
        else await k(`${L}.ssm_out`, m2WindowYKernel(Hm, P, N, dXb, dInner, R, gated, T), yArgs, v);
        commits.push(async (commit) => {
          await k(`${L}.conv_shift`, convCommitKernel(K, src, R), [state.conv, zx, commit], convNext);
          chain.copy(`${at}${L}.conv_write`, convNext, 0, state.conv, () => 0, convDim * (K - 1));
          await k(
            `${L}.ssm_step`,
            m2CommitKernel(Hm, P, N, dXb, dInner, T),
            [state.ssm, xs, parBuf, delta, commit],
            ssmNext,
          );
          chain.copy(`${at}${L}.ssm_write`, ssmNext, 0, state.ssm, () => 0, Hm * P * N);
        });
      }
      let y = v;
      if (gated) {
        y = scratch(`${L}.y`, T * dInner);
        if (coop)
          await chain.wgsl(`${at}${L}.gated_norm`, groupNormWgsl(P, 1e-5, dInner, T), [v, up(`${q}.norm.weight`)], y);
        else await k(`${L}.gated_norm`, groupNormKernel(P, 1e-5, dInner), [v, up(`${q}.norm.weight`)], y);
      }
      await mv(`${L}.out_proj`, y, upT(`${q}.out_proj.weight`, d, dInner), dInner, d, h1, h);
    }
    const f = mlpNames(p);
    const n2 = scratch(`${L}.n2`, T * d);
    await norm(`${L}.norm2`, eps, h1, up(norm2), n2);
    const a = scratch(`${L}.swiglu`, T * F);
    const [wg, wu] = [upT(f.gate, F, d), upT(f.up, F, d)];
    const S = splitsFor(d, T * F);
    if (coop) await chain.wgsl(`${at}${L}.gate_up`, gemvKernel(d, F, T, 'swiglu'), [n2, wg, wu], a);
    else if (S === 1) await k(`${L}.gate_up`, swigluKernel(d, F, T), [n2, wg, wu], a);
    else {
      const [pg, pu] = [scratch(`${L}.gate partial sums`, S * T * F), scratch(`${L}.up partial sums`, S * T * F)];
      await k(`${L}.gate_up`, matvecPartialKernel(d, F, S, T), [n2, wg], pg);
      await k(`${L}.up`, matvecPartialKernel(d, F, S, T), [n2, wu], pu);
      await k(`${L}.swiglu`, swigluSumKernel(T * F, S), [pg, pu], a);
    }
    const h2 = scratch(`${L}.h2`, T * d);
    await mv(`${L}.down`, a, upT(f.down, d, F), F, d, h2, h1);
    h = h2;
  }
  const nf = scratch('final norm', T * d);
  await norm('final_norm', c.rmsNormEps, h, up('model.norm.weight'), nf);
  const logits = scratch('logits', T * V);
  await mv('lm_head', nf, upT(lmHeadName(m), V, d), d, V, logits);
  const amax = scratch('argmax', T);
  if (coop) {
    const ids = scratch('argmax chunk ids', T * argmaxChunks(V));
    await chain.wgsl(`${at}argmax1`, argmaxChunksWgsl(V, T), [logits], ids);
    await chain.wgsl(`${at}argmax2`, argmaxFinalWgsl(V, T), [logits, ids], amax);
  } else {
    const lanes = scratch('argmax lanes', T * argmaxLanes(V));
    await k('argmax1', argmaxLanesKernel(V, T), [logits], lanes);
    await k('argmax2', argmaxFinalKernel(V, T), [logits, lanes], amax);
  }
  if (!win) {
    // the sampler (greedy when meta's T is 0: the draw returns the argmax)
    const q = scratch('sampling weights', V);
    await k('sample_weights', sampleWeightsKernel(V), [logits, amax, meta], q);
    const chunks = scratch('sampling chunk sums', argmaxLanes(V));
    await k('sample_chunks', sampleChunksKernel(V), [q, meta], chunks);
    const token = scratch('token', 1);
    await k('sample_draw', sampleDrawKernel(V), [q, chunks, meta, amax], token);
    return { T, meta, logits, result: token };
  }
  const commit = scratch('commit [n, next]', 2);
  await k('accept', acceptKernel(T), [amax, meta], commit);
  for (const c of commits) await c(commit);
  const feed = scratch('prefill metas', Math.ceil(capacity / T) * windowMetaLength(T));
  return { T, meta, logits, result: commit, feed };
}

/** Storage buffers the widest kernel binds (qkv_rope: x, W_q, W_k, W_v, rope, meta and its output). */
const MAX_KERNEL_BINDINGS = 7;

/**
 * The device limits a decoder for `m` needs (the largest buffers it binds: weights, a KV cache, a prefill
 * window's scores and logits; the bindings of its widest kernel): DeviceLimitError naming the first one missed.
 */
function checkLimits(limits: Record<string, number>, m: HybridModel, capacity: number, width: number): void {
  const c = m.llama;
  const [H, Hkv, hd, F, V, d] = [c.numHeads, c.numKvHeads, c.headDim, c.intermediateSize, c.vocabSize, c.hiddenSize];
  const buffers: Array<[string, number]> = [
    ['the embedding (vocab × hidden)', V * d],
    ['an MLP matrix (intermediate × hidden)', F * d],
    ['a KV cache (capacity × kv heads × head_dim)', capacity * Hkv * hd],
    ["a prefill window's attention scores (width × heads × capacity)", width * H * capacity],
    ["a prefill window's logits (width × vocab)", width * V],
  ];
  if (m.mamba)
    buffers.push(['in_proj of a Mamba-2 layer', (2 * m.mamba.dInner + 2 * m.mamba.dXb + m.mamba.nHeads) * d]);
  for (const limit of ['maxStorageBufferBindingSize', 'maxBufferSize'])
    for (const [what, n] of buffers)
      if (4 * n > limits[limit]) throw new DeviceLimitError(limit, `${4 * n} bytes for ${what}`, limits[limit]);
  const bindings = limits.maxStorageBuffersPerShaderStage;
  if (bindings < MAX_KERNEL_BINDINGS)
    throw new DeviceLimitError(
      'maxStorageBuffersPerShaderStage',
      `${MAX_KERNEL_BINDINGS} storage buffers in one kernel (q/k/v with RoPE)`,
      bindings,
    );
}

/** The decoders alive (told of weight changes through one listener, registered once). */
const live = new Set<WeakRef<GpuDecoder>>();
let watching = false;
function watchWeights(): void {
  if (watching) return;
  watching = true;
  onArrayChanged((a) => {
    for (const r of live) {
      const d = r.deref();
      if (d) d.changed(a);
      else live.delete(r);
    }
  });
}

/** One decoder per model, kept between calls (`GpuDecoder.reuse`). */
const reusable = new WeakMap<HybridModel, GpuDecoder>();

export class GpuDecoder {
  /** Tokens folded into the caches so far. */
  length = 0;
  private readonly programs = new Map<number, Program>();
  private constructor(
    readonly chain: ResidentChain,
    private readonly m: HybridModel,
    readonly capacity: number,
    private readonly shared: Shared,
    /** the window width a prefill runs */
    readonly prefillWidth: number,
    /** stored weight array → the device buffers made from it (re-uploaded when it is marked changed) */
    private readonly uploads: Map<object, Array<{ b: ChainBuffer; make: () => Float32Array }>>,
  ) {
    watchWeights();
    live.add(new WeakRef(this));
  }

  /** Weights marked changed since the last run (their buffers are written again before the next). */
  private readonly stale = new Set<object>();
  /** Buffers written again since the decoder was built (for tests: a weight update costs only its own). */
  reuploads = 0;

  /** lib/weight_registry.ts says `a` changed in place: its buffers are re-made before the next run. */
  changed(a: object): void {
    if (this.uploads.has(a)) this.stale.add(a);
  }

  /** Write the changed weights' buffers again (queue writes, ordered before the next submission). */
  private refresh(): void {
    for (const a of this.stale)
      for (const u of this.uploads.get(a) ?? []) {
        this.chain.write(u.b, u.make());
        this.reuploads++;
      }
    this.stale.clear();
  }

  private get layers(): LayerState[] {
    return this.shared.layers;
  }

  /** Build the one-token chain for `m` (uploads every weight once); windows are recorded on first use. */
  static async create(m: HybridModel, opts: GpuDecodeOptions = {}): Promise<GpuDecoder> {
    const c = m.llama;
    const kinds = layerKinds(m);
    if (m.mamba && m.mamba.dConv < 2)
      throw new ArgumentError('d_conv', 'at least 2 (a conv window to keep)', m.mamba.dConv);
    if (c.attentionBias)
      throw new ArgumentError('model', 'no attention biases (attention_bias is not in the GPU decode chain yet)', true);
    const capacity = opts.capacity ?? Math.min(c.maxPositionEmbeddings, 4096);
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > c.maxPositionEmbeddings)
      throw new ArgumentError('capacity', `an integer in [1, ${c.maxPositionEmbeddings}]`, capacity);
    const prefillWidth = opts.prefillWidth ?? Math.min(capacity, 64);
    if (!Number.isInteger(prefillWidth) || prefillWidth < 1 || prefillWidth > capacity)
      throw new ArgumentError('prefillWidth', `an integer in [1, ${capacity}] (the capacity)`, prefillWidth);
    const [Hkv, hd] = [c.numKvHeads, c.headDim];
    const chain = await ResidentChain.create();
    // a model that does not fit the device's limits: a clear error before any upload
    try {
      checkLimits(chain.device.limits, m, capacity, prefillWidth);
    } catch (e) {
      chain.destroy();
      throw e;
    }
    try {
      const weights = new Map<string, ChainBuffer>();
      /** every uploaded buffer made from a stored array: re-made and written again when it changes */
      const uploads = new Map<object, Array<{ b: ChainBuffer; make: () => Float32Array }>>();
      const weight = (key: string, make: () => Float32Array, deps: readonly string[] = [key]) => {
        let b = weights.get(key);
        if (!b) {
          const data = make(); // (the buffer's elements)
          weights.set(key, (b = chain.buffer(key, data.length, data)));
          for (const dep of deps) {
            const a = m.weights.get(dep).data; // (the weight's size)
            let list = uploads.get(a);
            if (!list) uploads.set(a, (list = []));
            list.push({ b, make });
          }
        }
        return b;
      };
      // RoPE's cos/sin per position, float64 then float32: (cap, hd) = [cos … | sin …]
      let rope: ChainBuffer | undefined;
      if (kinds.includes('attention')) {
        const { inv } = attentionRope(c, 0, 1);
        rope = chain.buffer('rope cos|sin', capacity * hd, ropeTable(capacity, inv)); // (cap, hd)
      }
      const layers: LayerState[] = kinds.map((kind, i) => {
        if (kind === 'attention')
          return {
            kind,
            k: chain.buffer(`layer${i}.k cache`, capacity * Hkv * hd),
            v: chain.buffer(`layer${i}.v cache`, capacity * Hkv * hd),
          };
        const mc = mambaOf(m);
        const convDim = kind === 'mamba1' ? mc.dInner : mc.dInner + 2 * mc.dXb;
        const ssm = kind === 'mamba1' ? mc.dInner * mc.dState : mc.nHeads * mc.dState * mc.dState;
        return {
          kind,
          conv: chain.buffer(`layer${i}.conv state`, convDim * (mc.dConv - 1)),
          ssm: chain.buffer(`layer${i}.ssm state`, ssm),
        };
      });
      const shared: Shared = { chain, m, capacity, weight, rope, layers, coop: opts.reductions !== 'gpujs' };
      const dec = new GpuDecoder(chain, m, capacity, shared, prefillWidth, uploads);
      dec.programs.set(1, await recordProgram(shared, 1));
      return dec;
    } catch (e) {
      chain.destroy();
      throw e;
    }
  }

  /**
   * The decoder kept for `m` (built on first use: weights uploaded, kernels compiled), reused by every later
   * call — generate's calls, a chat's turns — as long as it holds `capacity` positions; a larger need builds a
   * new one (the old destroyed). Weights changed in place since (markChanged) are written again, nothing else.
   * The caller resets or loads it; `busy` guards against two users at once (the second gets its own decoder,
   * to destroy: `owned`).
   */
  static async reuse(m: HybridModel, capacity: number): Promise<{ dec: GpuDecoder; owned: boolean }> {
    const have = reusable.get(m);
    if (have && !have.busy && !have.chain.isLost && have.capacity >= capacity) {
      have.busy = true;
      return { dec: have, owned: false };
    }
    if (have?.busy) return { dec: await GpuDecoder.create(m, { capacity }), owned: true };
    have?.destroy();
    const dec = await GpuDecoder.create(m, {
      capacity: Math.min(m.llama.maxPositionEmbeddings, Math.max(capacity, 256)),
    });
    reusable.set(m, dec);
    dec.busy = true;
    return { dec, owned: false };
  }
  /** In use by a `reuse` caller until it calls `release`. */
  private busy = false;
  release(): void {
    this.busy = false;
  }

  /** The window program of the smallest recorded width ≥ s, recorded for width `width` when there is none. */
  private async window(s: number, width: number): Promise<Program> {
    // a recorded window is reused only up to twice the rows asked for: every kernel of a window runs over all its
    // T rows, so a 9-token verify on the prompt's 64-row window cost 2.3–2.6× a token on the H200 (s = 1 … 9)
    let best: Program | undefined;
    for (const p of this.programs.values())
      if (p.T > 1 && p.T >= s && p.T <= Math.max(2, 2 * s) && (!best || p.T < best.T)) best = p;
    if (best) return best;
    const p = await recordProgram(this.shared, width);
    this.programs.set(width, p);
    return p;
  }

  private checkIds(what: string, ids: readonly number[]): void {
    const V = this.m.llama.vocabSize;
    ids.forEach((id, t) => {
      if (!Number.isInteger(id) || id < 0 || id >= V)
        throw new ArgumentError(`${what}[${t}]`, `a token id in [0, ${V})`, id);
    });
  }

  /**
   * Fold token `id` in at position `length` (one submission, one readback) and return the next id — greedy, or
   * with `sample` drawn on the GPU as lib/model/generate.ts's sampler draws (temperature, top-k, top-p) with the
   * host's uniform u — with the logits (V) when `logits` is set.
   */
  async step(
    id: number,
    opts: { logits?: boolean; sample?: { u: number; temperature: number; topK?: number; topP?: number } } = {},
  ): Promise<{ token: number; logits?: Float32Array }> {
    const V = this.m.llama.vocabSize;
    if (!Number.isInteger(id) || id < 0 || id >= V) throw new ArgumentError('id', `a token id in [0, ${V})`, id);
    if (this.length >= this.capacity)
      throw new ArgumentError('position', `below the GPU decoder's capacity ${this.capacity}`, this.length);
    const pos = this.length;
    const main = this.programs.get(1)!;
    this.refresh();
    const sm = opts.sample;
    if (sm && !(sm.u >= 0 && sm.u < 1)) throw new ArgumentError('sample.u', 'a uniform in [0, 1)', sm.u);
    this.chain.write(
      main.meta,
      new Float32Array([id, pos, sm?.u ?? 0, sm?.temperature ?? 0, sm?.topK ?? V, sm?.topP ?? 1]),
    );
    const reads = opts.logits ? [{ from: main.result }, { from: main.logits }] : [{ from: main.result }];
    const [tok, logits] = await this.chain.run({ pos }, reads); // the token id (1); the logits (V) when asked
    this.length++;
    return { token: tok[0], ...(logits ? { logits } : {}) };
  }

  /**
   * n greedy steps in ONE submission: fold `first` in at position `length`, then each step's greedy id as the next
   * step's input (copied on the GPU: ResidentChain's `carry`), and return the n ids — what n calls of `step` return,
   * without n − 1 host round trips. The draft's K − 1 proposals of a speculative round (lib/decode/gpu_speculative.ts).
   */
  async steps(first: number, n: number): Promise<number[]> {
    const V = this.m.llama.vocabSize;
    if (!Number.isInteger(first) || first < 0 || first >= V)
      throw new ArgumentError('first', `a token id in [0, ${V})`, first);
    if (!Number.isInteger(n) || n < 1) throw new ArgumentError('n', 'a positive integer', n);
    if (this.length + n > this.capacity)
      throw new ArgumentError('n', `at most ${this.capacity - this.length} steps (the GPU decoder's capacity)`, n);
    const main = this.programs.get(1)!;
    this.refresh();
    if (!this.stepIo || this.stepIo.out.elements < n)
      this.stepIo = {
        feed: this.chain.buffer(`steps feed (${n})`, n * SAMPLE_META),
        out: this.chain.buffer(`steps ids (${n})`, n),
      };
    const metas = new Float32Array(n * SAMPLE_META); // (n, SAMPLE_META): [id, pos, u, T, k, p], greedy
    const vars: ChainVars[] = [];
    for (let i = 0; i < n; i++) {
      metas.set([i === 0 ? first : 0, this.length + i, 0, 0, V, 1], i * SAMPLE_META);
      vars.push({ pos: this.length + i });
    }
    this.chain.write(this.stepIo.feed, metas);
    // the n greedy ids (n)
    const [ids] = await this.chain.runSequence(
      vars,
      [{ from: this.stepIo.out, elements: n }],
      { src: this.stepIo.feed, dst: main.meta, elements: SAMPLE_META },
      'main',
      { from: main.result, to: main.meta, out: this.stepIo.out },
    );
    this.length += n;
    return Array.from(ids);
  }
  private stepIo: { feed: ChainBuffer; out: ChainBuffer } | undefined;

  /**
   * Algorithm 2's VERIFY on the GPU in ONE submission: the window [last, d_1 … d_K] at positions length …
   * length + K through every layer at once (attention over the KV cache with the window's rows appended, Mamba
   * layers by MultiStep from their one cached state h_j), the greedy acceptance on the GPU (d_m accepted while it
   * is the argmax after the tokens before it), then the caches advanced by exactly the accepted prefix: the
   * conv windows and SSM states to h_k of the committed rows (last + the accepted drafts), `length` by as many.
   * Reads back [n, next] (and, when asked, the K + 1 rows of logits): `accepted` = n − 1 drafts, `next` the
   * correction (a mismatch) or the bonus token (all accepted) — plain greedy decoding's next id.
   */
  async verify(
    last: number,
    drafts: readonly number[],
    opts: { logits?: boolean } = {},
  ): Promise<{ accepted: number; next: number; logits?: Float32Array[] }> {
    const ids = [last, ...drafts];
    this.checkIds('window', ids);
    return this.runWindows(ids, true, opts.logits ?? false);
  }

  /**
   * Fold a prompt in with ONE submission: windows of `prefillWidth` rows (each every layer over all its rows at
   * once: matrix products, causal attention over the cache, MultiStep for the Mamba layers), one after another
   * in one command encoder (each pass first copies its meta from a buffer written once). The greedy id after the
   * last token is read back (and its logits when asked).
   */
  async prefill(
    ids: readonly number[],
    opts: { logits?: boolean } = {},
  ): Promise<{ token: number; logits?: Float32Array }> {
    if (ids.length === 0) throw new ArgumentError('ids', 'at least one token', 0);
    this.checkIds('ids', ids);
    const r = await this.runWindows(ids, false, opts.logits ?? false);
    return { token: r.next, ...(r.logits ? { logits: r.logits[r.logits.length - 1] } : {}) };
  }

  /** ids through window passes (verify: one pass, greedy acceptance; else all committed). */
  private async runWindows(
    ids: readonly number[],
    verify: boolean,
    withLogits: boolean,
  ): Promise<{ accepted: number; next: number; logits?: Float32Array[] }> {
    if (this.length + ids.length > this.capacity)
      throw new ArgumentError(
        verify ? 'drafts' : 'ids',
        `at most ${this.capacity - this.length - (verify ? 1 : 0)} tokens (the GPU decoder's capacity ${this.capacity}, ${this.length} used)`,
        ids.length - (verify ? 1 : 0),
      );
    // a verify: a window of its width; a prompt: the smallest recorded window it fits in (≤ 2× its rows), else
    // prefillWidth rows
    // (a power of two up to prefillWidth: the few widths a chat's turns record)
    const w = Math.max(2, verify ? ids.length : Math.min(this.prefillWidth, 2 ** Math.ceil(Math.log2(ids.length))));
    const p = await this.window(Math.min(ids.length, w), w);
    this.refresh();
    const T = p.T;
    const passes = Math.ceil(ids.length / T);
    const ml = windowMetaLength(T);
    const metas = new Float32Array(passes * ml); // (passes, T + 3)
    const vars: ChainVars[] = [];
    for (let i = 0; i < passes; i++) {
      const rows = ids.slice(i * T, (i + 1) * T);
      const pos = this.length + i * T;
      metas.set([rows.length, pos, ...rows], i * ml);
      metas[i * ml + ml - 1] = verify ? 1 : 0;
      vars.push({ pos, rows: rows.length });
    }
    const lastRows = ids.length - (passes - 1) * T;
    const reads: Array<{ from: ChainBuffer; elements?: number }> = [{ from: p.result }];
    if (withLogits) reads.push({ from: p.logits, elements: lastRows * this.m.llama.vocabSize });
    let out: Float32Array[];
    if (passes === 1) {
      this.chain.write(p.meta, metas);
      out = await this.chain.run(vars[0], reads, programName(T)); // [n, next]; the rows' logits (s, V) when asked
    } else {
      this.chain.write(p.feed!, metas);
      out = await this.chain.runSequence(vars, reads, { src: p.feed!, dst: p.meta, elements: ml }, programName(T));
    }
    const [n, next] = [out[0][0], out[0][1]];
    this.length += (passes - 1) * T + n;
    const V = this.m.llama.vocabSize;
    return {
      accepted: n - 1,
      next,
      ...(withLogits ? { logits: Array.from({ length: lastRows }, (_, t) => out[1].slice(t * V, (t + 1) * V)) } : {}),
    };
  }

  /** Greedy decoding: the prompt token by token, then `n` tokens; the generated ids. */
  async generate(prompt: readonly number[], n: number): Promise<number[]> {
    if (prompt.length === 0) throw new ArgumentError('prompt', 'at least one token', 0);
    let next = 0;
    for (const id of prompt) next = (await this.step(id)).token;
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      out.push(next);
      if (i + 1 < n) next = (await this.step(next)).token;
    }
    return out;
  }

  /**
   * Continue from a host cache (batch 1, e.g. left by a per-op parallel prefill): every layer's keys/values of
   * positions [0, cache.length) and conv/SSM states are queue-written (no submission), and `length` becomes
   * cache.length. Keys/values: the host's (1, H_kv, cap, hd) → the GPU's (capacity, H_kv·hd) rows.
   */
  load(cache: ModelCache): void {
    const [Hkv, hd] = [this.m.llama.numKvHeads, this.m.llama.headDim];
    if (cache.batch !== 1)
      throw new ArgumentError('cache', 'batch 1 (the GPU decoder decodes one sequence)', cache.batch);
    if (cache.layers.length !== this.layers.length)
      throw new ArgumentError('cache', `${this.layers.length} layers`, cache.layers.length);
    const T = cache.length;
    if (T > this.capacity)
      throw new ArgumentError('cache', `at most ${this.capacity} positions (the GPU decoder's capacity)`, T);
    this.layers.forEach((g, i) => {
      const h = cache.layers[i];
      if (g.kind !== h.kind) throw new ArgumentError(`cache layer ${i}`, g.kind, h.kind);
      if (g.kind === 'attention' && h.kind === 'attention') {
        const k = new Float32Array(T * Hkv * hd); // (T, H_kv·hd)
        const v = new Float32Array(T * Hkv * hd); // (T, H_kv·hd)
        for (let j = 0; j < T; j++)
          for (let kv = 0; kv < Hkv; kv++)
            for (let c = 0; c < hd; c++) {
              k[(j * Hkv + kv) * hd + c] = h.k[(kv * h.cap + j) * hd + c];
              v[(j * Hkv + kv) * hd + c] = h.v[(kv * h.cap + j) * hd + c];
            }
        this.chain.write(g.k, k);
        this.chain.write(g.v, v);
      } else if (g.kind !== 'attention' && h.kind !== 'attention') {
        if (h.store) throw new ArgumentError(`cache layer ${i}`, 'states in the cache (not a state store)', 'a store');
        this.chain.write(g.conv, Float32Array.from(h.conv.data)); // (conv dim, K−1)
        this.chain.write(g.ssm, Float32Array.from(h.ssm.data)); // (d_in, N) or (H, P, N)
      }
    });
    this.length = T;
  }

  /**
   * Write what the GPU holds back into a host cache that `load` was given (separate submissions, after
   * decoding): keys/values of positions [cache.length, length) appended, conv/SSM states replaced, and
   * cache.length = length — so a chat's next turn continues it on any path.
   */
  async save(cache: ModelCache): Promise<void> {
    const c = this.m.llama;
    const [Hkv, hd] = [c.numKvHeads, c.headDim];
    const [from, L] = [cache.length, this.length - cache.length];
    for (let i = 0; i < this.layers.length; i++) {
      const g = await this.readLayer(i);
      const h = cache.layers[i];
      if (g.kind === 'attention' && h.kind === 'attention') {
        if (L <= 0) continue;
        const k = new Float64Array(Hkv * L * hd); // (1, H_kv, L, hd)
        const v = new Float64Array(Hkv * L * hd); // (1, H_kv, L, hd)
        for (let j = 0; j < L; j++)
          for (let kv = 0; kv < Hkv; kv++)
            for (let e = 0; e < hd; e++) {
              k[(kv * L + j) * hd + e] = g.k[((from + j) * Hkv + kv) * hd + e];
              v[(kv * L + j) * hd + e] = g.v[((from + j) * Hkv + kv) * hd + e];
            }
        const shape = [1, Hkv, L, hd];
        writeKv(h, new Tensor(k, shape), new Tensor(v, shape), from, 1, Hkv, hd, c.maxPositionEmbeddings);
      } else if (g.kind !== 'attention' && h.kind !== 'attention') {
        h.conv = new Tensor(Float64Array.from(g.conv), h.conv.shape, 'conv');
        h.ssm = new Tensor(Float64Array.from(g.ssm), h.ssm.shape, 'ssm');
      }
    }
    cache.length = this.length;
  }

  /** Layer i's cache or states as they are on the GPU (for tests; separate submissions). */
  async readLayer(
    i: number,
  ): Promise<
    | { kind: 'attention'; k: Float32Array; v: Float32Array }
    | { kind: 'mamba1' | 'mamba2'; conv: Float32Array; ssm: Float32Array }
  > {
    const l = this.layers[i];
    if (!l) throw new ArgumentError('layer', `an index in [0, ${this.layers.length})`, i);
    return l.kind === 'attention'
      ? { kind: 'attention', k: await this.chain.read(l.k), v: await this.chain.read(l.v) }
      : { kind: l.kind, conv: await this.chain.read(l.conv), ssm: await this.chain.read(l.ssm) };
  }

  private marked: { length: number; saved: boolean } | undefined;

  /**
   * Remember where the sequence is (`rewind` goes back to it): the length, and each Mamba layer's conv window and
   * state copied aside on the GPU (one submission, no readback; nothing for a model of attention layers only —
   * its KV rows past the length are simply overwritten).
   */
  async mark(): Promise<void> {
    const mambas = this.layers.filter((l) => l.kind !== 'attention');
    if (mambas.length > 0) {
      if (!this.saves) {
        this.saves = mambas.map((l, j) => ({
          conv: this.chain.buffer(`mark ${j}.conv`, l.conv.elements),
          ssm: this.chain.buffer(`mark ${j}.ssm`, l.ssm.elements),
        }));
        const copies = (name: string, back: boolean) => {
          this.chain.record(name);
          mambas.forEach((l, j) => {
            const s = this.saves![j];
            for (const [a, b] of [
              [l.conv, s.conv],
              [l.ssm, s.ssm],
            ])
              this.chain.copy(`${name} ${j}`, back ? b : a, 0, back ? a : b, () => 0, a.elements);
          });
        };
        copies('mark', false);
        copies('rewind', true);
        this.chain.record();
      }
      await this.chain.run({ pos: 0 }, [], 'mark');
    }
    this.marked = { length: this.length, saved: mambas.length > 0 };
  }

  /** Go back to the last `mark` (its states copied back: one submission, no readback). */
  async rewind(): Promise<void> {
    if (!this.marked) throw new ArgumentError('rewind', 'a mark() before it', 'none');
    if (this.marked.saved) await this.chain.run({ pos: 0 }, [], 'rewind');
    this.length = this.marked.length;
  }
  private saves: Array<{ conv: ChainBuffer; ssm: ChainBuffer }> | undefined;

  /** Start a new sequence: length 0, every cache and state zeroed (queue writes, no submission). */
  reset(): void {
    for (const l of this.layers)
      for (const b of l.kind === 'attention' ? [l.k, l.v] : [l.conv, l.ssm])
        this.chain.write(b, new Float32Array(b.elements));
    this.length = 0;
    this.marked = undefined;
  }

  /** Free the device buffers. */
  destroy(): void {
    for (const r of live) if (r.deref() === this) live.delete(r);
    if (reusable.get(this.m) === this) reusable.delete(this.m);
    this.chain.destroy();
  }
}
