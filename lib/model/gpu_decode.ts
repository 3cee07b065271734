/**
 * One GPU submission per decoded token (webgpu): the whole forward of one token — embedding row, every layer,
 * final norm, lm_head and greedy argmax — as one chain of GPU.js kernels in one command encoder
 * (kernels/resident_chain.ts), with every cache and state resident on the GPU between tokens; per token the
 * host writes [id, pos] (a queue write) and reads back the chosen id (and the logits only when asked).
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
 * `load` seeds the caches and states from a host ModelCache (lib/model/generate.ts: after the per-op path's
 * parallel prefill, faster than `prefill` on an H200: 118 vs 326 ms for 64 tokens) and `save` writes them back,
 * so a host cache continues on either path. `load` is host work and queue writes: ~1–2 ms for 64 positions at
 * d512 / 8 layers (Llama and 50% Mamba-2 hybrid, measured on the 2-core dev box with Dawn's CPU adapter).
 *
 * Symbols: d hidden_size · V vocab · H, H_kv heads · hd head_dim · F intermediate_size · pos the token's
 * position · Mamba-2: H_m heads, P = N head width and state size, d_in, d_xb, K conv width · Mamba-1: R dt_rank.
 */
import { ArgumentError } from '../errors.js';
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
  rmsnormKernel,
  ssmYKernel,
  groupNormKernel,
  ssmStepKernel,
  swigluKernel,
  swigluSumKernel,
  type DecodeKernel,
  ResidentChain,
  type ChainBuffer,
} from '../ops_resident.js';
import { Tensor } from '../tensor.js';
import { attentionNames, attentionRope, writeKv } from './mixers/attention.js';
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

/** What a layer keeps on the GPU between tokens (for tests: read back with `GpuDecoder.readLayer`). */
type LayerState =
  | { kind: 'attention'; k: ChainBuffer; v: ChainBuffer }
  | { kind: 'mamba1' | 'mamba2'; conv: ChainBuffer; ssm: ChainBuffer };

export interface GpuDecodeOptions {
  /** positions the KV caches hold (default: min(max_position_embeddings, 4096)) */
  capacity?: number;
}

/** W (R, K) as stored → Wᵀ (K, R) float32: thread r of a matvec then reads K values R apart (coalesced). */
function transposed(w: ArrayLike<number>, R: number, K: number): Float32Array {
  const t = new Float32Array(R * K); // (K, R)
  for (let r = 0; r < R; r++) for (let i = 0; i < K; i++) t[i * R + r] = w[r * K + i];
  return t;
}

export class GpuDecoder {
  /** Tokens folded into the caches so far. */
  length = 0;
  private constructor(
    readonly chain: ResidentChain,
    private readonly m: HybridModel,
    readonly capacity: number,
    private readonly meta: ChainBuffer,
    /** [id, pos] of every position (capacity × 2): a prefill's passes copy theirs into meta */
    private readonly feed: ChainBuffer,
    private readonly logits: ChainBuffer,
    private readonly token: ChainBuffer,
    private readonly layers: LayerState[],
  ) {}

  /** Build the chain for `m` (uploads every weight once). */
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
    const W = m.weights;
    const d = c.hiddenSize;
    const [H, Hkv, hd, F, V] = [c.numHeads, c.numKvHeads, c.headDim, c.intermediateSize, c.vocabSize];
    const chain = await ResidentChain.create();
    // a model that does not fit the device's buffers: a clear error before any upload
    const limit = chain.maxBufferElements;
    const biggest: Array<[string, number]> = [
      ['the embedding (vocab × hidden)', V * d],
      ['lm_head (vocab × hidden)', V * d],
      ['an MLP matrix (intermediate × hidden)', F * d],
      ['a KV cache (capacity × kv heads × head_dim)', capacity * Hkv * hd],
    ];
    if (m.mamba)
      biggest.push(['in_proj of a Mamba-2 layer', (2 * m.mamba.dInner + 2 * m.mamba.dXb + m.mamba.nHeads) * d]);
    for (const [what, n] of biggest)
      if (n > limit)
        throw new ArgumentError(
          what,
          `at most ${limit} float32 elements (this WebGPU device's maxStorageBufferBindingSize / maxBufferSize)`,
          n,
        );
    try {
      const f32 = (name: string) => {
        const t = W.get(name); // (the weight's shape)
        return t.data instanceof Float32Array ? t.data : Float32Array.from(t.data);
      };
      const upT = (name: string, R: number, K: number) => chain.buffer(name, R * K, transposed(W.get(name).data, R, K));
      const up = (name: string) => chain.buffer(name, W.get(name).size, f32(name));
      const scratch = (name: string, n: number) => chain.buffer(name, n);
      const k = (label: string, kern: DecodeKernel, args: ChainBuffer[], out: ChainBuffer) =>
        chain.kernel(label, kern.key, kern.source, kern.constants, args, out);
      // out = Wᵀ-stored w (K inputs, R outputs) times x (+ add: a residual or a bias), split over K where R is small
      const mv = async (
        label: string,
        x: ChainBuffer,
        w: ChainBuffer,
        K: number,
        R: number,
        out: ChainBuffer,
        add?: ChainBuffer,
      ) => {
        const S = splitsFor(K, R);
        if (S === 1) return k(label, matvecKernel(K, R, !!add), add ? [x, w, add] : [x, w], out);
        const part = scratch(`${label} partial sums`, S * R);
        await k(label, matvecPartialKernel(K, R, S), [x, w], part);
        await k(`${label}.sum`, splitSumKernel(R, S, !!add), add ? [part, add] : [part], out);
      };

      const meta = scratch('meta [id, pos]', 2);
      const feed = scratch('prefill [id, pos] rows', 2 * capacity);
      // RoPE's cos/sin per position, float64 then float32: (cap, hd) = [cos … | sin …]
      const { inv } = attentionRope(c, 0, 1);
      const rope = new Float32Array(capacity * hd); // (cap, hd)
      for (let p = 0; p < capacity; p++)
        for (let i = 0; i < hd / 2; i++) {
          rope[p * hd + i] = Math.cos(p * inv[i]);
          rope[p * hd + hd / 2 + i] = Math.sin(p * inv[i]);
        }
      const ropeBuf = kinds.includes('attention') ? chain.buffer('rope cos|sin', capacity * hd, rope) : undefined;

      const emb = up('model.embed_tokens.weight'); // (V, d), read by rows
      let h = scratch('h', d);
      await k('embed', embedKernel(d), [emb, meta], h);
      const layers: LayerState[] = [];
      for (let i = 0; i < kinds.length; i++) {
        const kind = kinds[i];
        const { prefix: p, norm1, norm2 } = blockNames(i);
        const eps = blockEps(m, kind);
        const L = `layer${i}`;
        const n1 = scratch(`${L}.n1`, d);
        await k(`${L}.norm1`, rmsnormKernel(d, eps), [h, up(norm1)], n1);
        const h1 = scratch(`${L}.h1`, d);
        if (kind === 'attention') {
          const a = attentionNames(c, p);
          const [Q, KV] = [H * hd, Hkv * hd];
          const qkv = scratch(`${L}.qkv`, Q + 2 * KV);
          await k(
            `${L}.qkv_rope`,
            qkvRopeKernel(d, H, Hkv, hd),
            [n1, upT(a.q.weight, Q, d), upT(a.k.weight, KV, d), upT(a.v.weight, KV, d), ropeBuf!, meta],
            qkv,
          );
          const kc = scratch(`${L}.k cache`, capacity * KV);
          const vc = scratch(`${L}.v cache`, capacity * KV);
          chain.copy(`${L}.k_write`, qkv, Q, kc, (v) => v.pos * KV, KV);
          chain.copy(`${L}.v_write`, qkv, Q + KV, vc, (v) => v.pos * KV, KV);
          const y = scratch(`${L}.attn`, Q);
          const scores = scratch(`${L}.scores`, H * capacity);
          await k(`${L}.attn_scores`, attentionScoresKernel(H, Hkv, hd, capacity), [qkv, kc, meta], scores);
          await k(`${L}.attn_values`, attentionValuesKernel(H, Hkv, hd, capacity), [scores, vc, meta], y);
          await mv(`${L}.o_proj`, y, upT(a.o.weight, d, Q), Q, d, h1, h);
          layers.push({ kind, k: kc, v: vc });
        } else if (kind === 'mamba1') {
          const mc = mambaOf(m);
          const q = `${p}.mamba`;
          const { dInner, dXb, dState: N, dConv: K, dtRank: R } = mc;
          const clean = mc.semantics === 'clean';
          const piece = clean ? hd : N; // ./mixers/mamba1.ts mamba1Wiring
          // [x | z | B | C | dt_low] = one matvec over the stacked projections
          const names = ['in_proj_x', 'in_proj_z', 'B_proj', 'C_proj', 'dt_proj_down'].map((n) => `${q}.${n}.weight`);
          const Rt = 2 * dXb + 2 * dInner + R;
          const stacked = new Float32Array(Rt * d); // (R_t, d): the stacked projection rows
          let at = 0;
          for (const n of names) {
            const w = W.get(n).data; // (the weight's size)
            for (let j = 0; j < w.length; j++) stacked[at + j] = w[j];
            at += w.length;
          }
          const proj = scratch(`${L}.proj`, Rt);
          await mv(
            `${L}.in_proj`,
            n1,
            chain.buffer(`${q} projections`, Rt * d, transposed(stacked, Rt, d)),
            d,
            Rt,
            proj,
          );
          const conv = scratch(`${L}.conv state`, dInner * (K - 1));
          const convNext = scratch(`${L}.conv state'`, dInner * (K - 1));
          const convW = chain.buffer(`${q}.conv1d.weight`, dInner * K, f32(`${q}.conv1d.weight`));
          const convB = W.has(`${q}.conv1d.bias`) ? up(`${q}.conv1d.bias`) : scratch(`${L}.conv bias 0`, dInner);
          const src = { zOff: 0, repeat: { piece, rep: dInner / dXb } };
          const xc = scratch(`${L}.xc`, dInner);
          await k(`${L}.conv`, convStepKernel(K, src, true), [conv, proj, convW, convB], xc);
          await k(`${L}.conv_shift`, convShiftKernel(K, src), [conv, proj], convNext);
          chain.copy(`${L}.conv_write`, convNext, 0, conv, () => 0, dInner * (K - 1));
          const A = Float32Array.from(W.get(`${q}.A_log`).data, (a) => -Math.exp(a)); // (d_in, N)
          const par = new Float32Array(2 * dInner); // (2·d_in)
          par.set(f32(`${q}.dt_proj.bias`));
          par.set(f32(`${q}.D`), dInner);
          const parBuf = chain.buffer(`${L}.dt_bias|D`, 2 * dInner, par);
          const ssm = scratch(`${L}.ssm state`, dInner * N);
          const ssmNext = scratch(`${L}.ssm state'`, dInner * N);
          await k(
            `${L}.ssm_step`,
            mamba1StepKernel(dInner, N, R, dXb, piece, !clean),
            [ssm, xc, proj, up(`${q}.dt_proj.weight`), chain.buffer(`${q} A`, dInner * N, A), parBuf],
            ssmNext,
          );
          const y = scratch(`${L}.y`, dInner);
          await k(`${L}.ssm_out`, mamba1OutKernel(dInner, N, dXb), [ssmNext, xc, proj, parBuf], y);
          chain.copy(`${L}.ssm_write`, ssmNext, 0, ssm, () => 0, dInner * N);
          await mv(`${L}.out_proj`, y, upT(`${q}.out_proj.weight`, d, dInner), dInner, d, h1, h);
          layers.push({ kind: 'mamba1', conv, ssm });
        } else {
          const mc = mambaOf(m);
          const q = `${p}.mamba`;
          const { dInner, dXb, dState: N, nHeads: Hm, dConv: K } = mc;
          const P = N;
          const convDim = dInner + 2 * dXb;
          const R = 2 * dInner + 2 * dXb + Hm;
          const zx = scratch(`${L}.zxbcdt`, R);
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
          const conv = scratch(`${L}.conv state`, convDim * (K - 1));
          const convNext = scratch(`${L}.conv state'`, convDim * (K - 1));
          const convW = chain.buffer(`${q}.conv1d.weight`, convDim * K, f32(`${q}.conv1d.weight`));
          const convB = W.has(`${q}.conv1d.bias`) ? up(`${q}.conv1d.bias`) : scratch(`${L}.conv bias 0`, convDim);
          const xs = scratch(`${L}.xs`, convDim);
          const silu = m.ablation?.convActivation !== false;
          await k(`${L}.conv`, convStepKernel(K, { zOff: dInner }, silu), [conv, zx, convW, convB], xs);
          await k(`${L}.conv_shift`, convShiftKernel(K, { zOff: dInner }), [conv, zx], convNext);
          chain.copy(`${L}.conv_write`, convNext, 0, conv, () => 0, convDim * (K - 1));
          // [A | dt_bias | D] per head, A = −exp(A_log) in float64
          const par = new Float32Array(3 * Hm);
          const Alog = W.get(`${q}.A_log`).data; // (H)
          const dtb = W.get(`${q}.dt_bias`).data; // (H)
          const Dd = W.get(`${q}.D`).data; // (H)
          for (let j = 0; j < Hm; j++) {
            par[j] = -Math.exp(Alog[j]);
            par[Hm + j] = dtb[j];
            par[2 * Hm + j] = Dd[j];
          }
          const parBuf = chain.buffer(`${L}.A|dt_bias|D`, 3 * Hm, par);
          const ssm = scratch(`${L}.ssm state`, Hm * P * N);
          const ssmNext = scratch(`${L}.ssm state'`, Hm * P * N);
          await k(
            `${L}.ssm_step`,
            ssmStepKernel(Hm, P, N, dXb, dInner, dInner + convDim),
            [ssm, xs, zx, parBuf],
            ssmNext,
          );
          const gated = m.ablation?.gatedNorm !== false;
          const v = scratch(`${L}.y·silu(z)`, dInner);
          await k(`${L}.ssm_out`, ssmYKernel(Hm, P, N, dXb, dInner, gated), [ssmNext, xs, zx, parBuf], v);
          let y = v;
          if (gated) {
            y = scratch(`${L}.y`, dInner);
            await k(`${L}.gated_norm`, groupNormKernel(P, 1e-5), [v, up(`${q}.norm.weight`)], y);
          }
          chain.copy(`${L}.ssm_write`, ssmNext, 0, ssm, () => 0, Hm * P * N);
          await mv(`${L}.out_proj`, y, upT(`${q}.out_proj.weight`, d, dInner), dInner, d, h1, h);
          layers.push({ kind: 'mamba2', conv, ssm });
        }
        const f = mlpNames(p);
        const n2 = scratch(`${L}.n2`, d);
        await k(`${L}.norm2`, rmsnormKernel(d, eps), [h1, up(norm2)], n2);
        const a = scratch(`${L}.swiglu`, F);
        const [wg, wu] = [upT(f.gate, F, d), upT(f.up, F, d)];
        const S = splitsFor(d, F);
        if (S === 1) await k(`${L}.gate_up`, swigluKernel(d, F), [n2, wg, wu], a);
        else {
          const [pg, pu] = [scratch(`${L}.gate partial sums`, S * F), scratch(`${L}.up partial sums`, S * F)];
          await k(`${L}.gate_up`, matvecPartialKernel(d, F, S), [n2, wg], pg);
          await k(`${L}.up`, matvecPartialKernel(d, F, S), [n2, wu], pu);
          await k(`${L}.swiglu`, swigluSumKernel(F, S), [pg, pu], a);
        }
        const h2 = scratch(`${L}.h2`, d);
        await mv(`${L}.down`, a, upT(f.down, d, F), F, d, h2, h1);
        h = h2;
      }
      const nf = scratch('final norm', d);
      await k('final_norm', rmsnormKernel(d, c.rmsNormEps), [h, up('model.norm.weight')], nf);
      const logits = scratch('logits', V);
      const head = lmHeadName(m);
      await mv('lm_head', nf, upT(head, V, d), d, V, logits);
      const lanes = scratch('argmax lanes', argmaxLanes(V));
      await k('argmax1', argmaxLanesKernel(V), [logits], lanes);
      const token = scratch('token', 1);
      await k('argmax2', argmaxFinalKernel(V), [logits, lanes], token);
      return new GpuDecoder(chain, m, capacity, meta, feed, logits, token, layers);
    } catch (e) {
      chain.destroy();
      throw e;
    }
  }

  /**
   * Fold token `id` in at position `length` (one submission, one readback) and return the greedy next id,
   * with the logits (V) when `logits` is set.
   */
  async step(id: number, opts: { logits?: boolean } = {}): Promise<{ token: number; logits?: Float32Array }> {
    const V = this.m.llama.vocabSize;
    if (!Number.isInteger(id) || id < 0 || id >= V) throw new ArgumentError('id', `a token id in [0, ${V})`, id);
    if (this.length >= this.capacity)
      throw new ArgumentError('position', `below the GPU decoder's capacity ${this.capacity}`, this.length);
    const pos = this.length;
    this.chain.write(this.meta, new Float32Array([id, pos]));
    const reads = opts.logits ? [{ from: this.token }, { from: this.logits }] : [{ from: this.token }];
    const [tok, logits] = await this.chain.run({ pos }, reads); // the token id (1); the logits (V) when asked
    this.length++;
    return { token: tok[0], ...(logits ? { logits } : {}) };
  }

  /**
   * Fold a prompt in with ONE submission: the chain runs once per token inside one command encoder (each pass
   * first copies its [id, pos] from a buffer written once), so no JavaScript round trip separates the tokens;
   * the greedy id after the last token is read back (and its logits when asked). The arithmetic is `step`'s,
   * token after token (the products are matrix-vector, not one matrix product over the prompt).
   */
  async prefill(
    ids: readonly number[],
    opts: { logits?: boolean } = {},
  ): Promise<{ token: number; logits?: Float32Array }> {
    const V = this.m.llama.vocabSize;
    if (ids.length === 0) throw new ArgumentError('ids', 'at least one token', 0);
    ids.forEach((id, t) => {
      if (!Number.isInteger(id) || id < 0 || id >= V)
        throw new ArgumentError(`ids[${t}]`, `a token id in [0, ${V})`, id);
    });
    if (this.length + ids.length > this.capacity)
      throw new ArgumentError(
        'ids',
        `at most ${this.capacity - this.length} tokens (the GPU decoder's capacity ${this.capacity}, ${this.length} used)`,
        ids.length,
      );
    const pos0 = this.length;
    this.chain.write(this.feed, Float32Array.from(ids.flatMap((id, t) => [id, pos0 + t])));
    const reads = opts.logits ? [{ from: this.token }, { from: this.logits }] : [{ from: this.token }];
    const [tok, logits] = await this.chain.runSequence(
      // the ids (1 per token); the last logits (V) when asked
      ids.map((_, t) => ({ pos: pos0 + t })),
      reads,
      { src: this.feed, dst: this.meta, elements: 2 },
    );
    this.length += ids.length;
    return { token: tok[0], ...(logits ? { logits } : {}) };
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

  /** Start a new sequence: length 0, every cache and state zeroed (queue writes, no submission). */
  reset(): void {
    for (const l of this.layers)
      for (const b of l.kind === 'attention' ? [l.k, l.v] : [l.conv, l.ssm])
        this.chain.write(b, new Float32Array(b.elements));
    this.length = 0;
  }

  /** Free the device buffers. */
  destroy(): void {
    this.chain.destroy();
  }
}
