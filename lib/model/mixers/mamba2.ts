/**
 * The Mamba-2 mixer of the distilled hybrids (upstream mamba2/hybrid_mamba_layer.py), described once: its
 * parameters, its wiring and its ablations, and both paths derived from them — inference with conv and SSM
 * states (`mamba2Infer`: chunked SSD for prefill, one state update for decode, the state store of speculative
 * decoding) and training with its backward (`mamba2Train`).
 *
 *   [z | xBC | dt] = W_in o (+ b_in)                        z (b, l, d_in), xBC (b, l, d_in + 2·d_xb), dt (b, l, H)
 *   [x | B | C] = silu(conv1d(xBC))                         x, B (b, l, d_xb), C (b, l, d_in)      x ← W^V, B ← W^K, C ← W^Q
 *   x, B repeated per head as grouped-query attention      x (b, l, H, P), B (b, l, H, N); C (b, l, H, N)
 *   Δ = softplus(dt + dt_bias)  (per head, b_Δ added once)  Ā = exp(Δ A),  h_t = Ā h_{t−1} + Δ B_t x_t,  y = C·h + D x
 *   out = W_out rmsnorm_gated(y, z)                         gate before the norm, groups of P channels
 *
 * Symbols: o (b, l, d) the normed hidden state · W_in (2·d_in + 2·d_xb + H, d) · conv1d (d_in + 2·d_xb, 1, K) ·
 * A_log, D, dt_bias (H) with A = −exp(A_log) · norm (d_in) · W_out (d, d_in) · h (b, H, P, N) · P = N.
 *
 * Ablations (HybridModel.ablation, for analysis): no silu after the conv; no gated norm.
 */
import type { Ops, Rows32 } from '../../ops.js';
import { causalConv1d, causalConv1dBackward } from '../../ref/conv1d.js';
import { gatedRmsnorm, gatedRmsnormBackward } from '../../ref/norm.js';
import { ssdBackward, ssdSequential } from '../../ref/ssd.js';
import { Tensor, markFinite, type FloatArray } from '../../tensor.js';
import type { WeightStore } from '../weights.js';
import { markImmutable } from '../../weight_registry.js';
import {
  convWindowStep,
  linearInto,
  mambaOf,
  optional,
  repeatPieces,
  repeatSources,
  splitLast,
  splitRepeat,
  toChannels,
  type HybridModel,
  type Mamba2Cache,
} from './block.js';
import type { Bf16Panels, SimdGemm } from '../../simd/gemm.js';
import { simdSiluMul } from '../../simd/activations.js';
import { simdMultistep } from '../../simd/multistep.js';
import {
  addConvGrads,
  addGrad,
  addScanGrads,
  cols,
  given,
  joinCols,
  linearLayer,
  repeatLayer,
  swapLC,
  weight,
  type Ctx,
  type Layer,
} from './tape.js';

type F = Float64Array;

// ---------------------------------------------------------------- description (both paths)

/** The parameters of layer prefix p's Mamba-2 mixer. */
function mamba2Names(p: string) {
  const q = `${p}.mamba`;
  return {
    in: `${q}.in_proj.weight`,
    inBias: `${q}.in_proj.bias`,
    Alog: `${q}.A_log`,
    D: `${q}.D`,
    dtBias: `${q}.dt_bias`,
    conv: `${q}.conv1d.weight`,
    convBias: `${q}.conv1d.bias`,
    norm: `${q}.norm.weight`,
    out: `${q}.out_proj.weight`,
  };
}

/** The wiring, decided here once: in_proj's split, the conv's split, the Δ bias, the activation and the gated norm. */
export function mamba2Wiring(m: HybridModel, p: string) {
  const c = mambaOf(m);
  const { dInner, dXb, dState: N, nHeads: H } = c;
  const convDim = dInner + 2 * dXb;
  return {
    c,
    n: mamba2Names(p),
    N,
    H,
    P: N, // head width = d_state
    convDim,
    inSplit: [dInner, convDim, H] as const, // [z | xBC | dt]
    convSplit: [dXb, dXb, dInner] as const, // [x | B | C]
    deltaBias: mamba2Names(p).dtBias, // added once, inside the softplus
    act: m.ablation?.convActivation === false ? null : ('silu' as const),
    gated: m.ablation?.gatedNorm !== false,
    normOpts: { eps: 1e-5, groupSize: N, normBeforeGate: false as const },
  };
}

// ---------------------------------------------------------------- inference (conv and SSM states)

/** Each value of t repeated `times` times consecutively (per-head parameters → per-channel), in `shape`. */
function repeatEach(t: Tensor, times: number, shape: number[]): Tensor {
  const out = new Float64Array(t.size * times); // (t.size · times) = (shape)
  for (let i = 0; i < t.size; i++) out.fill(t.data[i], i * times, (i + 1) * times);
  return new Tensor(out, shape);
}

/**
 * repeatEach of a small per-head parameter (A, D, dt_bias), reused across decode steps: kept with a copy of
 * the values it was made from and rebuilt whenever they differ (a training step changes weights in place).
 */
const repeatMemo = new WeakMap<object, Map<string, { src: Float64Array; out: Tensor }>>();
function repeatEachOnce(key: object, t: Tensor, times: number, shape: number[]): Tensor {
  let m = repeatMemo.get(key);
  if (!m) repeatMemo.set(key, (m = new Map()));
  const k = `${times}:${shape.join(',')}`;
  const hit = m.get(k);
  if (hit && hit.src.length === t.size && hit.src.every((v, i) => v === t.data[i])) return hit.out;
  const out = repeatEach(t, times, shape); // (shape)
  // copies of finite weights: marked, so the ops reading them at every step do not rescan them; and immutable
  // (never written: changed values make a new array), so a backend may keep its float32 copy of them
  if (out.data.every(Number.isFinite)) markFinite(out.data);
  markImmutable(out.data);
  m.set(k, { src: Float64Array.from(t.data), out });
  return out;
}

/** The stored tensor's data (the memo's key: the same array while the weight is not replaced). */
const stored = (W: WeightStore, name: string): object => W.get(name).data;

/**
 * o (b, l, d) → out (b, l, d), advancing `cache` (or its state store). `rows32` (evaluation's forward, wasm-simd:
 * `ops.rows32`): a window's conv straight on in_proj's rows, and the gated norm, as float32 rows.
 */
export async function mamba2Infer(
  ops: Ops,
  m: HybridModel,
  p: string,
  o: Tensor,
  cache: Mamba2Cache,
  rows32?: Rows32,
): Promise<Tensor> {
  const {
    c,
    n,
    H,
    N,
    P,
    convDim,
    inSplit,
    convSplit,
    deltaBias: deltaBiasName,
    act,
    gated,
    normOpts,
  } = mamba2Wiring(m, p);
  const W = m.weights;
  const [Bt, L] = o.shape as [number, number, number];
  const { dInner } = c;
  const A = W.get(n.Alog).map((a) => -Math.exp(a), 'float64'); // (H)
  const D = W.get(n.D); // (H)
  const deltaBias = W.get(deltaBiasName); // (H)
  const convW = W.get(n.conv).reshape([convDim, c.dConv]); // (d_in + 2·d_xb, K)
  const convB = optional(W, n.convBias); // (d_in + 2·d_xb), or none
  const zxbcdt = await ops.linear(o, W.get(n.in), optional(W, n.inBias)); // (b, l, 2·d_in + 2·d_xb + H)
  const z = zxbcdt.slice(2, 0, inSplit[0]); // (b, l, d_in)
  const delta = zxbcdt.slice(2, inSplit[0] + inSplit[1], inSplit[0] + inSplit[1] + inSplit[2]); // (b, l, H)
  // xBC is not copied out where the rows' conv reads in_proj's rows in place
  const rowsConv = rows32 && L > 1 && !cache.store && zxbcdt.data instanceof Float32Array;
  const xBC = rowsConv ? zxbcdt : zxbcdt.slice(2, inSplit[0], inSplit[0] + inSplit[1]); // (b, l, convDim)

  let xs: Tensor; // after conv + silu, (b, l, convDim)
  if (cache.store) {
    xs = await cache.store.convolve(ops, xBC, convW, convB, act);
  } else if (L === 1) {
    const cu = await ops.causalConv1dUpdate({
      x: xBC.reshape([Bt, convDim, 1]),
      convState: cache.conv,
      weight: convW,
      bias: convB,
      activation: act,
    });
    cache.conv = cu.convState.named('conv'); // (b, convDim, K−1)
    xs = cu.out.reshape([Bt, 1, convDim]);
  } else if (rowsConv && rows32) {
    const cv = rows32.causalConv1d(zxbcdt, inSplit[0], convDim, convW, convB, cache.conv, act);
    cache.conv = cv.finalStates.named('conv'); // (b, convDim, K−1)
    xs = cv.out;
  } else {
    const cv = await ops.causalConv1d({
      x: toChannels(xBC),
      weight: convW,
      bias: convB,
      activation: act,
      initialStates: cache.conv,
    });
    cache.conv = cv.finalStates.named('conv'); // (b, convDim, K−1)
    xs = toChannels(cv.out);
  }
  let x: Tensor; // (b, l, H, P): head h reads kv head ⌊h / (H/H_kv)⌋
  let Bh: Tensor; // (b, l, H, N)
  let Ch: Tensor; // (b, l, H, N)
  if (rowsConv) {
    // evaluation: the split and both repeats in one pass over the rows (the same values)
    [x, Bh, Ch] = splitRepeat(xs, c.dXb, dInner, P, N).map((t, i) => t.reshape([Bt, L, H, i === 0 ? P : N]));
  } else {
    const [x0, B0, C] = splitLast(xs, [...convSplit]) as [Tensor, Tensor, Tensor]; // (b, l, d_xb) ×2, (b, l, d_in)
    x = repeatPieces(x0, dInner, P).reshape([Bt, L, H, P]);
    Bh = repeatPieces(B0, dInner, N).reshape([Bt, L, H, N]);
    Ch = C.reshape([Bt, L, H, N]);
  }
  let y: Tensor; // (b, l, d_in)
  if (cache.store) {
    // channels (h, p) of the multi-step layout: per-head Δ, A, D, dt_bias repeated over p; B/C grouped per head
    y = await cache.store.scan(ops, {
      x: x.reshape([1, L, H * P]),
      delta: repeatEach(delta, P, [1, L, H * P]),
      B: Bh,
      C: Ch,
      A: repeatEachOnce(stored(W, n.Alog), A, P * N, [H * P, N]),
      D: repeatEachOnce(D.data, D, P, [H * P]),
      deltaBias: repeatEachOnce(deltaBias.data, deltaBias, P, [H * P]),
    });
  } else if (L === 1) {
    const st = await ops.selectiveStateUpdate({
      state: cache.ssm,
      x: x.reshape([Bt, H, P]),
      delta: repeatEach(delta, P, [Bt, H, P]),
      A: repeatEachOnce(stored(W, n.Alog), A, P * N, [H, P, N]),
      B: Bh.reshape([Bt, H, N]),
      C: Ch.reshape([Bt, H, N]),
      D: repeatEachOnce(D.data, D, P, [H, P]),
      deltaBias: repeatEachOnce(deltaBias.data, deltaBias, P, [H, P]),
      deltaSoftplus: true,
    });
    cache.ssm = st.state.named('ssm'); // (b, H, P, N)
    y = st.out.reshape([Bt, 1, dInner]);
  } else {
    const r = await ops.ssdChunkScan(
      {
        x,
        delta: delta.reshape([Bt, L, H]),
        A,
        B: Bh,
        C: Ch,
        D,
        deltaBias,
        deltaSoftplus: true,
        initialState: cache.ssm,
      },
      64,
    );
    cache.ssm = r.finalState.astype('float64').named('ssm'); // (b, H, P, N)
    y = r.out.reshape([Bt, L, dInner]);
  }
  const yn = !gated // (b, l, d_in)
    ? y
    : rows32 && y.data instanceof Float32Array && z.data instanceof Float32Array
      ? rows32.gatedRmsnorm(y, W.get(n.norm), z, normOpts)
      : await ops.gatedRmsnorm(y, W.get(n.norm), z, normOpts);
  return ops.linear(yn, W.get(n.out)); // (b, l, d)
}

// ---------------------------------------------------------------- inference, one token fused (../fused_step.ts, wasm-simd)

/**
 * A Mamba-2 layer as the fused decode step holds it: the weights looked up once (float arrays, or a bf16
 * checkpoint's panels for the two products), the repeat maps and the buffers allocated once.
 */
export interface Mamba2StepPlan {
  W: WeightStore;
  n: ReturnType<typeof mamba2Names>;
  H: number;
  N: number;
  P: number;
  K: number; // conv width
  dInner: number;
  dXb: number;
  convDim: number;
  act: 'silu' | null;
  gated: boolean;
  normOpts: { eps: number; groupSize: number; normBeforeGate: false };
  inW: FloatArray | Bf16Panels; // (2·d_in + 2·d_xb + H, d)
  inB?: FloatArray;
  convW: FloatArray; // (d_in + 2·d_xb, K)
  convB?: FloatArray;
  normW?: Tensor; // (d_in)
  outW: FloatArray | Bf16Panels; // (d, d_in)
  xSrc: Int32Array; // (d_in): repeatSources of x (pieces of P)
  bSrc: Int32Array; // (d_in): repeatSources of B (pieces of N)
  zxbcdt: Float32Array; // (2·d_in + 2·d_xb + H)
  pre: Float64Array; // (convDim): the conv's sums before the activation
  xr: Float32Array; // (d_in): x per channel
  br: Float32Array; // (d_in): B per head
  dl: Float64Array; // (d_in): raw Δ per channel
  zeros: Float32Array; // (d_in): MultiStep's empty cache rows (nothing replayed)
}

/** Layer prefix p's plan; `tensor(name)` looks a weight up (and holds it, so a replaced tensor makes a new plan). */
export function mamba2StepPlan(
  m: HybridModel,
  p: string,
  tensor: (name: string) => Tensor,
  matrix: (name: string) => FloatArray | Bf16Panels,
): Mamba2StepPlan {
  const { c, n, H, N, P, convDim, act, gated, normOpts } = mamba2Wiring(m, p);
  const { dInner, dXb, dConv: K } = c;
  const W = m.weights;
  const opt = (name: string) => (W.has(name) ? tensor(name).data : undefined);
  return {
    W,
    n,
    H,
    N,
    P,
    K,
    dInner,
    dXb,
    convDim,
    act,
    gated,
    normOpts,
    inW: matrix(n.in),
    inB: opt(n.inBias),
    convW: tensor(n.conv).data,
    convB: opt(n.convBias),
    normW: gated ? tensor(n.norm) : undefined,
    outW: matrix(n.out),
    xSrc: repeatSources(dXb, dInner, P),
    bSrc: repeatSources(dXb, dInner, N),
    zxbcdt: new Float32Array(2 * dInner + 2 * dXb + H),
    pre: new Float64Array(convDim),
    xr: new Float32Array(dInner),
    br: new Float32Array(dInner),
    dl: new Float64Array(dInner),
    zeros: new Float32Array(dInner),
  };
}

/**
 * One token's Mamba-2 mixer as the fused decode step runs it: `mamba2Infer`'s decode path (one conv update, one
 * state update as MultiStep with nothing replayed) on the same values in the same order, so the same bits
 * (spec/models.spec.ts), without its tensors, shape checks and per-call lookups. x (d) normed row → out (d);
 * the conv window and the SSM state of `cache` advanced by one token (new float32 arrays, as that path leaves them).
 */
export function mamba2Step(
  g: SimdGemm,
  s: Mamba2StepPlan,
  x: Float64Array,
  cache: Mamba2Cache,
  out: Float32Array,
): void {
  const { H, N, P, K, dInner, dXb, convDim, zxbcdt, pre, xr, br, dl } = s;
  linearInto(g, x, s.inW, zxbcdt, s.inB); // [z | xBC | dt] (2·d_in + 2·d_xb + H)
  // the conv over [window ; xBC] (its window moved on), then the activation: [x | B | C] (convDim)
  const next = convWindowStep(cache.conv.data, zxbcdt, dInner, s.convW, s.convB, K, pre); // (convDim, K−1)
  const xs = s.act === 'silu' ? simdSiluMul(g, pre) : Float32Array.from(pre); // [x | B | C] (convDim)
  for (let c = 0; c < dInner; c++) {
    xr[c] = xs[s.xSrc[c]]; // x per channel (h, p)
    br[c] = xs[dXb + s.bSrc[c]]; // B per head (h, n)
    dl[c] = zxbcdt[dInner + convDim + Math.floor(c / P)]; // Δ of head ⌊c/P⌋, raw
  }
  const W = s.W;
  const A = W.get(s.n.Alog).map((a) => -Math.exp(a), 'float64'); // (H)
  const D = W.get(s.n.D); // (H)
  const deltaBias = W.get(s.n.dtBias); // (H)
  const k = simdMultistep(
    g,
    {
      hI: cache.ssm.data,
      xCache: s.zeros,
      deltaCache: s.zeros,
      BCache: s.zeros,
      x: xr,
      delta: dl,
      B: br,
      C: xs.subarray(2 * dXb, 2 * dXb + dInner),
      A: repeatEachOnce(stored(W, s.n.Alog), A, P * N, [H, P, N]).data,
      D: repeatEachOnce(D.data, D, P, [H, P]).data,
      deltaBias: repeatEachOnce(deltaBias.data, deltaBias, P, [H, P]).data,
      deltaSoftplus: true,
    },
    { batch: 1, dim: dInner, N, K1: 1, r: 0, s: 1, G: H },
    false,
  );
  cache.conv = new Tensor(next, [1, convDim, K - 1], 'conv'); // (1, convDim, K−1)
  cache.ssm = new Tensor(k.hK, [1, H, P, N], 'ssm'); // (1, H, P, N)
  let yn = k.out; // (d_in)
  if (s.normW) {
    // ops.gatedRmsnorm on wasm-simd with the gate before the norm (mamba2Wiring's normBeforeGate: false): the
    // gate by the SIMD SiLU, the norm by the reference, rounded to float32
    const gatedY = new Tensor(simdSiluMul(g, zxbcdt.subarray(0, dInner), yn), [1, 1, dInner]); // silu(z) ⊙ y
    yn = gatedRmsnorm(gatedY, s.normW, undefined, s.normOpts).astype('float32').data as Float32Array;
  }
  linearInto(g, yn, s.outW, out); // (d)
}

// ---------------------------------------------------------------- training (forward with saved activations, backward)

/** o rows (b·l, d) from empty states → out rows (b·l, d); back: ∂ℓ/∂o and every parameter's gradient. */
export function mamba2Train(ctx: Ctx, p: string, o: F): Layer {
  const { c, n, H, N, P, convDim, inSplit, convSplit, deltaBias, act, gated, normOpts } = mamba2Wiring(ctx.m, p);
  const { batch, L } = ctx;
  const { dModel, dInner: I, dXb: X, dConv: Wc } = c;
  const [zW, xbcW, dtW] = inSplit;
  const [xW, bW, cW] = convSplit;
  const width = zW + xbcW + dtW;
  const has = (name: string) => ctx.m.weights.has(name);
  const A = weight(ctx, n.Alog).map((a) => -Math.exp(a)); // (H)

  const inp = linearLayer(ctx, o, dModel, width, n.in, has(n.inBias) ? n.inBias : undefined); // (b·l, width)
  const z = cols(inp.y, width, 0, zW); // (b·l, d_in)
  const xBC = cols(inp.y, width, zW, xbcW); // (b·l, convDim)
  const dt = cols(inp.y, width, zW + xbcW, dtW); // (b·l, H)
  const convIn = {
    x: new Tensor(swapLC(xBC, batch, L, convDim), [batch, convDim, L]),
    weight: new Tensor(weight(ctx, n.conv), [convDim, Wc]),
    bias: has(n.convBias) ? new Tensor(weight(ctx, n.convBias), [convDim]) : undefined,
    activation: act,
  };
  const xs = swapLC(causalConv1d(convIn).out.data as F, batch, convDim, L); // (b·l, convDim)
  const xr = repeatLayer(cols(xs, convDim, 0, xW), X, I, P); // (b·l, d_in) = (b, l, H, P)
  const br = repeatLayer(cols(xs, convDim, xW, bW), X, I, N); // (b·l, d_in) = (b, l, H, N)
  const Cm = cols(xs, convDim, xW + bW, cW); // (b·l, d_in) = (b, l, H, N)
  const ssdIn = {
    x: new Tensor(xr.y, [batch, L, H, P]),
    delta: new Tensor(dt, [batch, L, H]),
    A: new Tensor(A, [H]),
    B: new Tensor(br.y, [batch, L, H, N]),
    C: new Tensor(Cm, [batch, L, H, N]),
    D: new Tensor(weight(ctx, n.D), [H]),
    deltaBias: new Tensor(weight(ctx, deltaBias), [H]),
    deltaSoftplus: true,
  };
  const ssdOut = ssdSequential(ssdIn); // = the chunked SSD of the forward (a property of lib/ref/ssd.ts)
  const y = ssdOut.out; // (b, l, H, P)
  const zT = new Tensor(z, [batch * L, I]); // (b·l, d_in)
  const normW = gated ? new Tensor(weight(ctx, n.norm), [I]) : undefined; // (d_in)
  const yn = normW ? (gatedRmsnorm(y.reshape([batch * L, I]), normW, zT, normOpts).data as F) : (y.data as F); // (b·l, d_in)
  const out = linearLayer(ctx, yn, I, dModel, n.out); // (b·l, d)
  return {
    y: out.y,
    back(dout) {
      const dyn = out.back(dout); // (b·l, d_in)
      let dy: F = dyn; // (b·l, d_in)
      let dz: F = new Float64Array(z.length); // (b·l, d_in)
      if (normW) {
        const g = gatedRmsnormBackward(y.reshape([batch * L, I]), normW, zT, new Tensor(dyn, [batch * L, I]), normOpts);
        addGrad(ctx, n.norm, g.dweight.data as F);
        dy = g.dx.data as F;
        dz = given(g.dz, 'dz').data as F;
      }
      const g = ssdBackward(ssdIn, new Tensor(dy, [batch, L, H, P]), undefined, ssdOut);
      addScanGrads(ctx, n, deltaBias, A, g);
      const dxs = joinCols([xr.back(g.dx.data as F), br.back(g.dB.data as F), g.dC.data as F], [xW, bW, cW]); // (b·l, convDim)
      const cg = causalConv1dBackward(convIn, new Tensor(swapLC(dxs, batch, L, convDim), [batch, convDim, L]));
      addConvGrads(ctx, n, cg, convIn.bias !== undefined);
      const dxBC = swapLC(cg.dx.data as F, batch, convDim, L); // (b·l, convDim)
      return inp.back(joinCols([dz, dxBC, g.ddelta.data as F], [zW, xbcW, dtW])); // (b·l, d)
    },
  };
}
