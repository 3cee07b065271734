/**
 * The training path's building blocks: float64 layers that keep what their backward needs (a tape, one
 * closure per layer). Every layer is written as
 *
 *     const layer = linearLayer(ctx, x, …);   // layer.y: the output, rows (b·l, width)
 *     … later, in reverse order …
 *     const dx = layer.back(dy);              // ∂ℓ/∂input; ∂ℓ/∂(each parameter) is added into ctx.grads
 *
 * so each mixer's file can put its training forward and backward side by side (llm.c's train_gpt2.c).
 * Row-major (b·l, width) activations; the primitives' backwards live beside their forwards in lib/ref/ and
 * lib/ref/layers.ts. Frozen parameters (`trainable(name)` false) get no gradient buffer; gradients still
 * flow through them.
 */
import { ArgumentError } from '../../errors.js';
import { Tensor } from '../../tensor.js';
import { causalAttention, causalAttentionBackward } from '../../ref/attention.js';
import { linear, rmsnorm } from '../../ref/layers.js';
import type { HybridModel } from './block.js';
import { repeatSources } from './block.js';

type F = Float64Array;
export type Grads = Map<string, F>;

/**
 * Where the linear layers' three products run: y = x·Wᵀ (+ b), dx = dy·W, dW = dyᵀ·x (and db = Σ dy).
 * `float64` (the default, what the golden cases and finite differences check) is lib/ref/layers.ts;
 * lib/train/model.ts `simdEngine` runs the products in float32 on the wasm-simd kernels, everything else
 * staying float64 — the fast path, checked against the float64 one in spec/train.spec.ts.
 */
export interface MatmulEngine {
  forward(x: F, W: F, b: F | undefined, N: number, I: number, O: number): F;
  /** `needW`, `needB`: whether dW, db are wanted (an engine may skip them; db is Σ dy over the rows) */
  backward(
    dy: F,
    x: F,
    W: F,
    N: number,
    I: number,
    O: number,
    needW: boolean,
    needB: boolean,
  ): { dx: F; dW?: F; db?: F };
  /** causal attention over (b, heads, l, d) tensors, with its backward (lib/ref/attention.ts's math) */
  attention(q: Tensor, k: Tensor, v: Tensor): { y: Tensor; back(dy: Tensor): { dq: Tensor; dk: Tensor; dv: Tensor } };
}

export const FLOAT64_ENGINE: MatmulEngine = {
  forward: (x, W, b, N, I, O) => linear.forward(x, W, b, N, I, O),
  backward: (dy, x, W, N, I, O) => linear.backward(dy, x, W, N, I, O),
  attention: (q, k, v) => ({ y: causalAttention(q, k, v), back: (dy) => causalAttentionBackward(q, k, v, dy) }),
};

/** One training forward: the model, the batch's shape, which parameters train, the gradients, the products. */
export interface Ctx {
  m: HybridModel;
  batch: number;
  L: number;
  trainable: (name: string) => boolean;
  grads: Grads;
  mm: MatmulEngine;
}

export interface Layer {
  y: F;
  back(dy: F): F;
}

/** A parameter as float64 values. */
export function weight(ctx: Ctx, name: string): F {
  const t = ctx.m.weights.get(name); // (the parameter's shape)
  return t.data instanceof Float64Array ? t.data : new Float64Array(t.data);
}

/**
 * Add a parameter's gradient (accumulating: a weight used twice — tied embeddings — gets both). `owned`: `g` is a
 * fresh array nobody else holds, kept as it is instead of copied.
 */
export function addGrad(ctx: Ctx, name: string, g: F, owned = false): void {
  if (!ctx.trainable(name)) return;
  const cur = ctx.grads.get(name); // (the parameter's size), or undefined
  if (!cur) ctx.grads.set(name, owned ? g : g.slice());
  else for (let i = 0; i < g.length; i++) cur[i] += g[i];
}

/** a + b elementwise, a new array. */
export function add(a: F, b: F): F {
  const y = new Float64Array(a.length); // (a's shape)
  for (let i = 0; i < a.length; i++) y[i] = a[i] + b[i];
  return y;
}

/** y = x·Wᵀ (+ b), x (N, I) → y (N, O); back: dx = dy·W, dW = dyᵀ·x, db = Σ dy. */
export function linearLayer(ctx: Ctx, x: F, I: number, O: number, wName: string, bName?: string): Layer {
  const N = x.length / I;
  const W = weight(ctx, wName); // (O, I)
  const b = bName ? weight(ctx, bName) : undefined; // (O)
  return {
    y: ctx.mm.forward(x, W, b, N, I, O), // (N, O)
    back(dy) {
      const needB = bName !== undefined && ctx.trainable(bName);
      const g = ctx.mm.backward(dy, x, W, N, I, O, ctx.trainable(wName), needB);
      if (g.dW) addGrad(ctx, wName, g.dW, true);
      if (bName && needB) addGrad(ctx, bName, given(g.db, 'db'), true);
      return g.dx; // (N, I)
    },
  };
}

/** RMSNorm over rows of width d: x (N, d) → y (N, d). */
export function rmsLayer(ctx: Ctx, x: F, d: number, wName: string, eps: number): Layer {
  const w = weight(ctx, wName); // (d)
  const N = x.length / d;
  const { y, rstd } = rmsnorm.forward(x, w, N, d, eps); // y (N, d), rstd (N)
  return {
    y,
    back(dy) {
      const g = rmsnorm.backward(dy, x, w, rstd, N, d);
      addGrad(ctx, wName, g.dw);
      return g.dx;
    },
  };
}

/** The channel repeat of block.ts `repeatSources`, rows (N, from) → (N, to): out[c] = x[src(c)]; back: scatter-add. */
export function repeatLayer(x: F, from: number, to: number, piece: number): Layer {
  const src = repeatSources(from, to, piece);
  const rows = x.length / from;
  const y = new Float64Array(rows * to); // (N, to)
  for (let r = 0; r < rows; r++) for (let c = 0; c < to; c++) y[r * to + c] = x[r * from + src[c]];
  return {
    y,
    back(dy) {
      const dx = new Float64Array(rows * from); // (N, from)
      for (let r = 0; r < rows; r++) for (let c = 0; c < to; c++) dx[r * from + src[c]] += dy[r * to + c];
      return dx;
    },
  };
}

/** Columns [at, at + w) of rows of width `width`: (N, width) → (N, w). */
export function cols(x: F, width: number, at: number, w: number): F {
  const rows = x.length / width;
  const y = new Float64Array(rows * w); // (N, w)
  for (let r = 0; r < rows; r++) y.set(x.subarray(r * width + at, r * width + at + w), r * w);
  return y;
}

/** The inverse of `cols`: parts (N, widths[k]) side by side → (N, Σ widths). */
export function joinCols(parts: F[], widths: number[]): F {
  const width = widths.reduce((a, b) => a + b, 0);
  const rows = (parts[0]?.length ?? 0) / (widths[0] ?? 1);
  const y = new Float64Array(rows * width); // (N, Σ widths)
  let at = 0;
  parts.forEach((p, k) => {
    const w = widths[k];
    for (let r = 0; r < rows; r++) y.set(p.subarray(r * w, (r + 1) * w), r * width + at);
    at += w;
  });
  return y;
}

/** (b, l, C) rows ↔ (b, C, l) channels: the same permutation both ways. */
export function swapLC(x: F, batch: number, L: number, C: number): F {
  return new Tensor(x, [batch, L, C]).transpose([0, 2, 1]).data as F;
}

/** A backward's optional output that its inputs make present (dD when D was given, …), checked. */
export function given<T>(v: T | undefined, what: string): T {
  if (v === undefined) throw new ArgumentError(what, 'a gradient (its input was given)', v);
  return v;
}

/** The scan's parameter gradients, in this order: A_log (A = −exp(A_log), so dA_log = dA·A), D, the Δ bias. */
export function addScanGrads(
  ctx: Ctx,
  names: { Alog: string; D: string },
  deltaBias: string,
  A: F,
  g: { dA: Tensor; dD?: Tensor; ddeltaBias?: Tensor },
): void {
  addGrad(
    ctx,
    names.Alog,
    (g.dA.data as F).map((v, i) => v * A[i]),
  );
  addGrad(ctx, names.D, given(g.dD, 'dD').data as F);
  addGrad(ctx, deltaBias, given(g.ddeltaBias, 'ddeltaBias').data as F);
}

/** conv1d's weight gradient and, when the conv has a bias, its bias gradient. */
export function addConvGrads(
  ctx: Ctx,
  names: { conv: string; convBias: string },
  cg: { dweight: Tensor; dbias?: Tensor },
  hasBias: boolean,
): void {
  addGrad(ctx, names.conv, cg.dweight.data as F);
  if (hasBias) addGrad(ctx, names.convBias, given(cg.dbias, 'dbias').data as F);
}
