/**
 * The Mamba-1 mixer of the distilled hybrids (upstream mamba/hybrid_mamba_layer.py, Mamba.forward/step),
 * described once: its parameters, its options (`semantics`: upstream's quirks or 'clean'), and both paths
 * derived from them — inference with conv and SSM states (`mamba1Infer`, prefill, decode and the state store
 * of speculative decoding) and training with its backward (`mamba1Train`).
 *
 *   x = repeat(W_x o) → conv1d (K taps) → silu          (b, l, d_in)      x ← W^V of attention (Algorithm 1)
 *   z = W_z o                                           (b, l, d_in)
 *   B = repeat(W_B o)                                   (b, l, d_in) = (b, l, G, N)   B ← W^K
 *   C = W_C o                                           (b, l, d_in) = (b, l, G, N)   C ← W^Q
 *   Δ = softplus(dt_proj(dt_proj_down o) + b_Δ)        (b, l, d_in)
 *   Ā = exp(Δ A), B̄x = Δ B x,  h_t = Ā h_{t−1} + B̄ x_t,  y = C·h + D x,  out = W_out (y · silu(z))     A = −exp(A_log)
 *
 * Symbols: o (b, l, d) the normed hidden state · W_x, W_B (d_xb, d) · W_z, W_C (d_in, d) · dt_proj_down (R, d) ·
 * dt_proj (d_in, R) with bias b_Δ (d_in) · A_log (d_in, N) · D (d_in) · conv1d (d_in, 1, K) (+ bias (d_in)) ·
 * W_out (d, d_in) · h (b, d_in, N) · G = d_in/N channel groups of the scan (one B and C of width N each).
 *
 * Options (`mambaWiring`): upstream cuts x and B into N-wide pieces and repeats each d_in/d_xb times, and
 * adds b_Δ TWICE (dt_proj's own bias, then again as the scan's delta_bias); 'clean' cuts into hd-wide pieces
 * (the exact grouped-query pairing of the attention it came from) and adds b_Δ once.
 */
import { ArgumentError } from '../../errors.js';
import type { Ops } from '../../ops.js';
import { causalConv1d, causalConv1dBackward } from '../../ref/conv1d.js';
import { selectiveScan, selectiveScanBackward } from '../../ref/selective_scan.js';
import { Tensor, type FloatArray } from '../../tensor.js';
import type { Bf16Panels, SimdGemm } from '../../simd/gemm.js';
import { simdSiluMul } from '../../simd/activations.js';
import { simdMultistep } from '../../simd/multistep.js';
import type { WeightStore } from '../weights.js';
import {
  convWindowStep,
  linearInto,
  mambaOf,
  optional,
  repeatPieces,
  repeatSources,
  toChannels,
  type HybridModel,
  type Mamba1Cache,
} from './block.js';
import {
  add,
  addConvGrads,
  addScanGrads,
  given,
  linearLayer,
  repeatLayer,
  swapLC,
  weight,
  type Ctx,
  type Layer,
} from './tape.js';

type F = Float64Array;

// ---------------------------------------------------------------- description (both paths)

/** The parameters of layer prefix p's Mamba-1 mixer. */
function mamba1Names(p: string) {
  const q = `${p}.mamba`;
  return {
    inX: `${q}.in_proj_x.weight`,
    inZ: `${q}.in_proj_z.weight`,
    B: `${q}.B_proj.weight`,
    C: `${q}.C_proj.weight`,
    dtDown: `${q}.dt_proj_down.weight`,
    dt: `${q}.dt_proj.weight`,
    dtBias: `${q}.dt_proj.bias`,
    Alog: `${q}.A_log`,
    D: `${q}.D`,
    conv: `${q}.conv1d.weight`,
    convBias: `${q}.conv1d.bias`,
    out: `${q}.out_proj.weight`,
  };
}

/**
 * The wiring options, decided here once: the repeat's piece width, and where b_Δ goes — always as the scan's
 * delta_bias, and under upstream semantics also as dt_proj's bias (`dtProjBias`: twice in all).
 */
export function mamba1Wiring(m: HybridModel, p: string) {
  const c = mambaOf(m);
  const n = mamba1Names(p);
  const N = c.dState;
  const clean = c.semantics === 'clean';
  const piece = clean ? m.llama.headDim : N; // repeat piece width
  if (clean && piece % N !== 0)
    throw new ArgumentError('clean semantics', `head_dim (${piece}) a multiple of d_state (${N})`, piece);
  return { c, n, N, G: c.dInner / N, piece, dtProjBias: clean ? undefined : n.dtBias, deltaBias: n.dtBias };
}

// ---------------------------------------------------------------- inference (conv and SSM states)

/** o (b, l, d) → out (b, l, d), advancing `cache` (or its state store). */
export async function mamba1Infer(ops: Ops, m: HybridModel, p: string, o: Tensor, cache: Mamba1Cache): Promise<Tensor> {
  const { c, n, N, G, piece, dtProjBias, deltaBias: deltaBiasName } = mamba1Wiring(m, p);
  const W = m.weights;
  const [Bt, L] = o.shape as [number, number, number];
  const { dInner } = c;
  const A = W.get(n.Alog).map((a) => -Math.exp(a), 'float64'); // (d_in, N)
  const D = W.get(n.D); // (d_in)
  const deltaBias = W.get(deltaBiasName); // (d_in)
  const convW = W.get(n.conv).reshape([dInner, c.dConv]); // (d_in, K)
  const convB = optional(W, n.convBias); // (d_in)

  const x = repeatPieces(await ops.linear(o, W.get(n.inX)), dInner, piece); // (b, l, d_in)
  const z = await ops.linear(o, W.get(n.inZ)); // (b, l, d_in)
  const Bsrc = await ops.linear(o, W.get(n.B)); // (b, l, d_xb)
  // repeated like x, channels g·N … g·N+N−1 of Bg are exactly the B piece that channel group g reads
  // (upstream: piece ⌊g/rep⌋; clean: the N-wide slice of its kv head) — so Bg viewed as (…, G, N) is B per group
  const Bg = repeatPieces(Bsrc, dInner, piece); // (b, l, d_in)
  const Cm = await ops.linear(o, W.get(n.C)); // (b, l, d_in)
  const dtLow = await ops.linear(o, W.get(n.dtDown)); // (b, l, R)
  const delta = await ops.linear(dtLow, W.get(n.dt), dtProjBias === undefined ? undefined : W.get(dtProjBias)); // (b, l, d_in), before softplus

  let y: Tensor; // (b, l, d_in)
  if (cache.store) {
    // a state store (speculative decoding: circular conv buffer + MultiStep from one cached state, Algorithm 2)
    const xs = await cache.store.convolve(ops, x, convW, convB, 'silu'); // (1, l, d_in)
    y = await cache.store.scan(ops, {
      x: xs,
      delta,
      B: Bg.reshape([1, L, G, N]),
      C: Cm.reshape([1, L, G, N]),
      z,
      A,
      D,
      deltaBias,
    });
  } else if (L === 1) {
    // decode: conv window update, then one state update per channel group (multi-head layout, H = G, P = N)
    const conv = await ops.causalConv1dUpdate({
      x: x.reshape([Bt, dInner, 1]),
      convState: cache.conv,
      weight: convW,
      bias: convB,
      activation: 'silu',
    });
    cache.conv = conv.convState.named('conv'); // (b, d_in, K−1)
    const st = await ops.selectiveStateUpdate({
      state: cache.ssm.reshape([Bt, G, N, N]),
      x: conv.out.reshape([Bt, G, N]),
      delta: delta.reshape([Bt, G, N]),
      A: A.reshape([G, N, N]),
      B: Bg.reshape([Bt, G, N]),
      C: Cm.reshape([Bt, G, N]),
      D: D.reshape([G, N]),
      z: z.reshape([Bt, G, N]),
      deltaBias: deltaBias.reshape([G, N]),
      deltaSoftplus: true,
    });
    cache.ssm = st.state.reshape([Bt, dInner, N]).named('ssm'); // (b, d_in, N)
    y = st.out.reshape([Bt, 1, dInner]);
  } else {
    const xc = toChannels(x); // (b, d_in, l)
    const conv = await ops.causalConv1d({
      x: xc,
      weight: convW,
      bias: convB,
      activation: 'silu',
      initialStates: cache.conv,
    });
    cache.conv = conv.finalStates.named('conv'); // (b, d_in, K−1)
    // B: (b, G, N, l) grouped, group g = the N values of Bg at channels g·N…; C likewise from C_proj
    const Bgrp = Bg.reshape([Bt, L, G, N]).transpose([0, 2, 3, 1]); // (b, G, N, l)
    const Cgrp = Cm.reshape([Bt, L, G, N]).transpose([0, 2, 3, 1]); // (b, G, N, l)
    const scan = await ops.selectiveScan({
      u: conv.out,
      delta: toChannels(delta),
      A,
      B: Bgrp,
      C: Cgrp,
      D,
      z: toChannels(z),
      deltaBias: deltaBias,
      deltaSoftplus: true,
      initialState: cache.ssm,
    });
    cache.ssm = scan.lastState.named('ssm'); // (b, d_in, N)
    y = toChannels(scan.out); // (b, l, d_in)
  }
  return ops.linear(y, W.get(n.out)); // (b, l, d)
}

// ---------------------------------------------------------------- inference, one token fused (../fused_step.ts, wasm-simd)

/**
 * A Mamba-1 layer as the fused decode step holds it: the weights looked up once (float arrays, or a bf16
 * checkpoint's panels for the products), the repeat map and the buffers allocated once.
 */
export interface Mamba1StepPlan {
  W: WeightStore;
  n: ReturnType<typeof mamba1Names>;
  N: number;
  G: number; // d_in / N channel groups
  K: number; // conv width
  dInner: number;
  inX: Matrix; // (d_xb, d)
  inZ: Matrix; // (d_in, d)
  Bw: Matrix; // (d_xb, d)
  Cw: Matrix; // (d_in, d)
  dtDown: Matrix; // (R, d)
  dtW: Matrix; // (d_in, R)
  dtProjBias?: FloatArray; // (d_in): upstream semantics add b_Δ here too
  convW: FloatArray; // (d_in, K)
  convB?: FloatArray; // (d_in)
  outW: Matrix; // (d, d_in)
  src: Int32Array; // (d_in): repeatSources of x and B (pieces of `piece`)
  xzbc: Float32Array; // (2·d_xb + 2·d_in + R): [xsrc | z | bsrc | cm | dtLow], the five below its slices
  xsrc: Float32Array; // (d_xb)
  bsrc: Float32Array; // (d_xb)
  xr: Float32Array; // (d_in): x repeated, before the conv
  z: Float32Array; // (d_in)
  br: Float32Array; // (d_in): B per group
  cm: Float32Array; // (d_in): C per group
  dtLow: Float32Array; // (R)
  dl: Float32Array; // (d_in): raw Δ
  pre: Float64Array; // (d_in): the conv's sums before the SiLU
  zeros: Float32Array; // (d_in): MultiStep's empty cache rows (nothing replayed)
}
type Matrix = FloatArray | Bf16Panels;

/** Layer prefix p's plan; `tensor(name)` looks a weight up (and holds it, so a replaced tensor makes a new plan). */
export function mamba1StepPlan(
  m: HybridModel,
  p: string,
  tensor: (name: string) => Tensor,
  matrix: (name: string) => Matrix,
): Mamba1StepPlan {
  const { c, n, N, G, piece, dtProjBias } = mamba1Wiring(m, p);
  const { dInner, dXb, dtRank: R } = c;
  const W = m.weights;
  const xzbc = new Float32Array(2 * dXb + 2 * dInner + R); // (2·d_xb + 2·d_in + R): [xsrc | z | bsrc | cm | dtLow]
  return {
    W,
    n,
    N,
    G,
    K: c.dConv,
    dInner,
    inX: matrix(n.inX),
    inZ: matrix(n.inZ),
    Bw: matrix(n.B),
    Cw: matrix(n.C),
    dtDown: matrix(n.dtDown),
    dtW: matrix(n.dt),
    dtProjBias: dtProjBias === undefined ? undefined : tensor(dtProjBias).data,
    convW: tensor(n.conv).data,
    convB: W.has(n.convBias) ? tensor(n.convBias).data : undefined,
    outW: matrix(n.out),
    src: repeatSources(dXb, dInner, piece),
    xzbc,
    xsrc: xzbc.subarray(0, dXb),
    z: xzbc.subarray(dXb, dXb + dInner),
    bsrc: xzbc.subarray(dXb + dInner, 2 * dXb + dInner),
    cm: xzbc.subarray(2 * dXb + dInner, 2 * dXb + 2 * dInner),
    dtLow: xzbc.subarray(2 * dXb + 2 * dInner),
    xr: new Float32Array(dInner),
    br: new Float32Array(dInner),
    dl: new Float32Array(dInner),
    pre: new Float64Array(dInner),
    zeros: new Float32Array(dInner),
  };
}

/**
 * One token's Mamba-1 mixer as the fused decode step runs it: `mamba1Infer`'s decode path (the six products, one
 * conv update, one state update as MultiStep with nothing replayed, its z gate inside) on the same values in the
 * same order, so the same bits (spec/models.spec.ts), without its tensors, shape checks and per-call lookups.
 * x (d) normed row → out (d); the conv window and the SSM state of `cache` advanced by one token (new float32
 * arrays, as that path leaves them).
 */
export function mamba1Step(
  g: SimdGemm,
  s: Mamba1StepPlan,
  x: Float64Array,
  cache: Mamba1Cache,
  out: Float32Array,
): void {
  const { N, G, K, dInner, src, xr, br, pre } = s;
  // (2·d_xb + 2·d_in + R): x | z | B | C | Δ↓, one hand-off between the SIMD threads for the five products of x
  const parts = [
    { w: s.inX, N: s.xsrc.length },
    { w: s.inZ, N: s.z.length },
    { w: s.Bw, N: s.bsrc.length },
    { w: s.Cw, N: s.cm.length },
    { w: s.dtDown, N: s.dtLow.length },
  ];
  g.linearMany(x, 1, x.length, parts, s.xzbc);
  linearInto(g, s.dtLow, s.dtW, s.dl, s.dtProjBias); // (d_in): Δ before the softplus
  for (let c = 0; c < dInner; c++) {
    xr[c] = s.xsrc[src[c]];
    br[c] = s.bsrc[src[c]];
  }
  // the conv over [window ; x] (its window moved on)
  const next = convWindowStep(cache.conv.data, xr, 0, s.convW, s.convB, K, pre); // (d_in, K−1)
  const xs = simdSiluMul(g, pre); // (d_in): silu(conv), float32
  const W = s.W;
  const k = simdMultistep(
    g,
    {
      hI: cache.ssm.data,
      xCache: s.zeros,
      deltaCache: s.zeros,
      BCache: s.zeros,
      x: xs,
      delta: s.dl,
      B: br,
      C: s.cm,
      z: s.z,
      A: W.get(s.n.Alog).map((a) => -Math.exp(a), 'float64').data, // (d_in, N)
      D: W.get(s.n.D).data,
      deltaBias: W.get(s.n.dtBias).data,
      deltaSoftplus: true,
    },
    { batch: 1, dim: dInner, N, K1: 1, r: 0, s: 1, G },
    false,
  );
  cache.conv = new Tensor(next, [1, dInner, K - 1], 'conv'); // (1, d_in, K−1)
  cache.ssm = new Tensor(k.hK, [1, dInner, N], 'ssm'); // (1, d_in, N)
  linearInto(g, k.out, s.outW, out); // (d)
}

// ---------------------------------------------------------------- training (forward with saved activations, backward)

/** o rows (b·l, d) from empty states → out rows (b·l, d); back: ∂ℓ/∂o and every parameter's gradient. */
export function mamba1Train(ctx: Ctx, p: string, o: F): Layer {
  const { c, n, N, G, piece, dtProjBias, deltaBias } = mamba1Wiring(ctx.m, p);
  const { batch, L } = ctx;
  const { dModel, dInner: I, dXb: X, dConv: Wc, dtRank: R } = c;
  const A = weight(ctx, n.Alog).map((a) => -Math.exp(a)); // (d_in·N)
  const hasConvBias = ctx.m.weights.has(n.convBias);

  const xin = linearLayer(ctx, o, dModel, X, n.inX); // (b·l, d_xb)
  const xr = repeatLayer(xin.y, X, I, piece); // (b·l, d_in)
  const zl = linearLayer(ctx, o, dModel, I, n.inZ); // (b·l, d_in)
  const bl = linearLayer(ctx, o, dModel, X, n.B); // (b·l, d_xb)
  const br = repeatLayer(bl.y, X, I, piece); // (b·l, d_in)
  const cl = linearLayer(ctx, o, dModel, I, n.C); // (b·l, d_in)
  const down = linearLayer(ctx, o, dModel, R, n.dtDown); // (b·l, R)
  const dtl = linearLayer(ctx, down.y, R, I, n.dt, dtProjBias); // (b·l, d_in), before softplus

  const convIn = {
    x: new Tensor(swapLC(xr.y, batch, L, I), [batch, I, L]),
    weight: new Tensor(weight(ctx, n.conv), [I, Wc]),
    bias: hasConvBias ? new Tensor(weight(ctx, n.convBias), [I]) : undefined,
    activation: 'silu' as const,
  };
  const u = causalConv1d(convIn).out; // (b, d_in, l)
  const grp = (t: F) => new Tensor(t, [batch, L, G, N]).transpose([0, 2, 3, 1]); // (b, G, N, l)
  const scanIn = {
    u,
    delta: new Tensor(swapLC(dtl.y, batch, L, I), [batch, I, L]),
    A: new Tensor(A, [I, N]),
    B: grp(br.y),
    C: grp(cl.y),
    D: new Tensor(weight(ctx, n.D), [I]),
    z: new Tensor(swapLC(zl.y, batch, L, I), [batch, I, L]),
    deltaBias: new Tensor(weight(ctx, deltaBias), [I]),
    deltaSoftplus: true,
  };
  const y = swapLC(selectiveScan(scanIn).out.data as F, batch, I, L); // (b·l, d_in)
  const out = linearLayer(ctx, y, I, dModel, n.out); // (b·l, d)
  return {
    y: out.y,
    back(dout) {
      const dy = new Tensor(swapLC(out.back(dout), batch, L, I), [batch, I, L]); // (b, d_in, l)
      const g = selectiveScanBackward(scanIn, dy);
      addScanGrads(ctx, n, deltaBias, A, g);
      const ungrp = (t: Tensor) => t.transpose([0, 3, 1, 2]).data as F; // (b, G, N, l) → (b·l, G·N)
      const cg = causalConv1dBackward(convIn, g.du);
      addConvGrads(ctx, n, cg, hasConvBias);
      const dx = xin.back(xr.back(swapLC(cg.dx.data as F, batch, I, L))); // (b·l, d)
      const dz = zl.back(swapLC(given(g.dz, 'dz').data as F, batch, I, L)); // (b·l, d)
      const dB = bl.back(br.back(ungrp(g.dB))); // (b·l, d)
      const dC = cl.back(ungrp(g.dC)); // (b·l, d)
      const ddt = down.back(dtl.back(swapLC(g.ddelta.data as F, batch, I, L))); // (b·l, d)
      return [dz, dB, dC, ddt].reduce(add, dx);
    },
  };
}
