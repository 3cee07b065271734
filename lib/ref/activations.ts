/**
 * Scalar activations used throughout Mamba and Llama, float64.
 *
 *   silu(x)             = x·σ(x) = x / (1 + e^{−x})
 *   softplus(x)         = log(1 + e^{x}), returned as x when x > 20 (torch.nn.functional.softplus,
 *                         beta = 1, threshold = 20), computed as max(x,0) + log1p(e^{−|x|}) so it
 *                         never overflows
 *   inverseSoftplus(y)  = y + log(−expm1(−y)) (y > 0), the Δ-bias initialisation of
 *                         mamba_ssm Mamba.__init__: `inv_dt = dt + torch.log(-torch.expm1(-dt))`
 */
import { ArgumentError } from '../errors.js';

export function silu(x: number): number {
  return x / (1 + Math.exp(-x));
}

function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

export function softplus(x: number): number {
  if (x > 20) return x;
  return Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));
}

export function inverseSoftplus(y: number): number {
  if (!(y > 0)) throw new ArgumentError('inverseSoftplus(y)', 'y > 0', y);
  return y + Math.log(-Math.expm1(-y));
}

/** d silu / dx = σ(x)·(1 + x·(1 − σ(x))). */
export function siluGrad(x: number): number {
  const s = sigmoid(x);
  return s * (1 + x * (1 - s));
}

/** d softplus / dx, with torch's threshold: 1 above 20 (where softplus returns x), else σ(x). */
export function softplusGrad(x: number): number {
  return x > 20 ? 1 : sigmoid(x);
}
