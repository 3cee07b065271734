/**
 * Optimisation, exactly as torch does it (torch.optim.Adam / AdamW, torch.nn.utils.clip_grad_norm_,
 * and the cosine-with-warmup schedule of transformers.get_cosine_schedule_with_warmup):
 *
 *   clip:   n = ‖(g_1, …, g_k)‖₂ over every trainable parameter;  c = max_norm / (n + 1e-6);
 *           if c < 1, every g ← g·c                                  (returns n, the norm before clipping)
 *   Adam:   t ← t + 1;  g ← g + λ·p (Adam's L2 weight decay);  m ← β₁ m + (1 − β₁) g;  v ← β₂ v + (1 − β₂) g²
 *           p ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
 *   AdamW:  as Adam without the L2 term, and first p ← p·(1 − lr·λ) (decoupled weight decay)
 *   cosine: lr(s) = lr·s/w for s < w, else lr·½(1 + cos(π·(s − w)/(S − w)))   (S total steps, w warmup)
 *
 * Frozen parameters have no gradient and no moments: the optimizer only ever sees the trainable ones.
 *
 * Symbols: p a parameter, g its gradient (same shape) · m, v Adam's first and second moments (same shape) ·
 * t the step · β₁, β₂, ε Adam's constants · λ weight decay · lr the learning rate · S total steps, w warmup.
 */
import { ArgumentError } from '../errors.js';

type F = Float64Array;

export interface AdamOptions {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  /** 'adam' (L2 decay added to the gradient) or 'adamw' (decoupled decay) */
  kind: 'adam' | 'adamw';
}

export interface AdamState {
  step: number;
  m: Map<string, F>;
  v: Map<string, F>;
}

export function newAdamState(): AdamState {
  return { step: 0, m: new Map(), v: new Map() };
}

/** The total L2 norm of the gradients; scales them in place to `maxNorm` when above it (torch semantics). */
export function clipGradNorm(grads: Map<string, F>, maxNorm: number): number {
  if (!(maxNorm > 0)) throw new ArgumentError('maxNorm', 'a positive number', maxNorm);
  let ss = 0;
  for (const g of grads.values()) for (let i = 0; i < g.length; i++) ss += g[i] * g[i];
  const norm = Math.sqrt(ss);
  const coef = maxNorm / (norm + 1e-6);
  if (coef < 1) for (const g of grads.values()) for (let i = 0; i < g.length; i++) g[i] *= coef;
  return norm;
}

/** One optimizer step over `params` (updated in place) with `grads`; `lr` overrides o.lr (schedules). */
export function adamStep(
  params: Map<string, F>,
  grads: Map<string, F>,
  state: AdamState,
  o: AdamOptions,
  lr = o.lr,
): void {
  const [b1, b2] = o.betas;
  state.step++;
  const t = state.step;
  const bc1 = 1 - b1 ** t;
  const bc2 = Math.sqrt(1 - b2 ** t);
  for (const [name, g] of grads) {
    const p = params.get(name); // (the parameter's size)
    if (!p) throw new ArgumentError('grads', `a gradient only for parameters being optimised`, name);
    if (p.length !== g.length)
      throw new ArgumentError(`grad of '${name}'`, `${p.length} values (the parameter's size)`, g.length);
    let m = state.m.get(name); // (the parameter's size): first moment
    let v = state.v.get(name); // (the parameter's size): second moment
    if (!m || !v) {
      m = new Float64Array(p.length);
      v = new Float64Array(p.length);
      state.m.set(name, m);
      state.v.set(name, v);
    }
    for (let i = 0; i < p.length; i++) {
      let gi = g[i];
      if (o.kind === 'adamw') p[i] *= 1 - lr * o.weightDecay;
      else if (o.weightDecay !== 0) gi += o.weightDecay * p[i];
      m[i] = b1 * m[i] + (1 - b1) * gi;
      v[i] = b2 * v[i] + (1 - b2) * gi * gi;
      p[i] -= (lr / bc1) * (m[i] / (Math.sqrt(v[i]) / bc2 + o.eps));
    }
  }
}

/** Learning rate at `step` (0-based) of `total`, with linear warmup over `warmup` steps, then cosine to 0. */
export function cosineLr(lr: number, step: number, total: number, warmup: number): number {
  if (step < warmup) return (lr * step) / Math.max(1, warmup);
  const progress = (step - warmup) / Math.max(1, total - warmup);
  return lr * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
}
