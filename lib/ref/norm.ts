/**
 * Normalisations, float64.
 *
 * RMSNorm (transformers LlamaRMSNorm):
 *   y = x / sqrt(mean(x²) + ε) · w                     over the last axis
 *
 * Gated RMSNorm (mamba_ssm ops/triton/layernorm_gated.py::rms_norm_ref), groups of size g
 * along the last axis, gate silu(z):
 *   norm_before_gate = false:  x' = x·silu(z);  y = x' / sqrt(mean_group(x'²) + ε) · w
 *   norm_before_gate = true:   y = x / sqrt(mean_group(x²) + ε) · w · silu(z)
 * Mamba-2 uses group = head_dim and norm_before_gate = false (gate before the norm).
 */
import { ArgumentError } from '../errors.js';
import { Tensor, dims } from '../tensor.js';
import { silu } from './activations.js';

export function rmsnorm(x: Tensor, weight: Tensor, eps = 1e-5): Tensor {
  const d = x.shape[x.rank - 1]!;
  dims({ x: [x, [...x.shape.slice(0, -1), 'd']], weight: [weight, ['d']] });
  const out = Tensor.zeros(x.shape, 'float64', 'rmsnorm');
  const rows = x.size / d;
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < d; i++) ss += x.data[r * d + i]! ** 2;
    const rstd = 1 / Math.sqrt(ss / d + eps);
    for (let i = 0; i < d; i++) out.data[r * d + i] = x.data[r * d + i]! * rstd * weight.data[i]!;
  }
  return out;
}

export interface GatedRmsnormOptions {
  eps?: number;
  /** Size of each normalised group along the last axis; default: the whole axis. */
  groupSize?: number;
  /** true: norm then gate; false: gate then norm (Mamba-2). Default true, as upstream. */
  normBeforeGate?: boolean;
}

export function gatedRmsnorm(x: Tensor, weight: Tensor, z: Tensor | undefined, opts: GatedRmsnormOptions = {}): Tensor {
  const eps = opts.eps ?? 1e-6;
  const d = x.shape[x.rank - 1]!;
  const lead = x.shape.slice(0, -1);
  dims({ x: [x, [...lead, 'd']], weight: [weight, ['d']], z: [z, [...lead, 'd']] });
  const g = opts.groupSize ?? d;
  if (!Number.isInteger(g) || g <= 0 || d % g !== 0) throw new ArgumentError('groupSize', `a positive divisor of ${d}`, g);
  const before = opts.normBeforeGate ?? true;
  const out = Tensor.zeros(x.shape, 'float64', 'gated_rmsnorm');
  const v = new Float64Array(g);
  for (let r = 0; r < x.size / d; r++) {
    for (let g0 = 0; g0 < d; g0 += g) {
      let ss = 0;
      for (let i = 0; i < g; i++) {
        const o = r * d + g0 + i;
        v[i] = z && !before ? x.data[o]! * silu(z.data[o]!) : x.data[o]!;
        ss += v[i]! * v[i]!;
      }
      const rstd = 1 / Math.sqrt(ss / g + eps);
      for (let i = 0; i < g; i++) {
        const o = r * d + g0 + i;
        let y = v[i]! * rstd * weight.data[g0 + i]!;
        if (z && before) y *= silu(z.data[o]!);
        out.data[o] = y;
      }
    }
  }
  return out;
}
