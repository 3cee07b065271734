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
import { silu, siluGrad } from './activations.js';

export function rmsnorm(x: Tensor, weight: Tensor, eps = 1e-5): Tensor {
  const d = x.shape[x.rank - 1];
  dims({ x: [x, [...x.shape.slice(0, -1), 'd']], weight: [weight, ['d']] });
  return new Tensor(rmsnormRows(x.data, weight.data, x.size / d, d, eps).y, x.shape, 'rmsnorm');
}

/**
 * RMSNorm of N rows of width d on flat arrays; also returns each row's r = 1/√(mean(x²) + ε) (the backward
 * needs it). `y`: where to write the rows (a decode step reuses one buffer), by default a new array.
 */
export function rmsnormRows(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  N: number,
  d: number,
  eps: number,
  y: Float64Array = new Float64Array(N * d),
): { y: Float64Array; rstd: Float64Array } {
  const rstd = new Float64Array(N);
  for (let r = 0; r < N; r++) {
    let ss = 0;
    for (let i = 0; i < d; i++) {
      const v = x[r * d + i];
      ss += v * v; // not v ** 2: the same bits (fdlibm's pow returns x·x for y = 2), without a call to pow
    }
    const k = 1 / Math.sqrt(ss / d + eps);
    rstd[r] = k;
    for (let i = 0; i < d; i++) y[r * d + i] = x[r * d + i] * k * w[i];
  }
  return { y, rstd };
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
  const d = x.shape[x.rank - 1];
  const lead = x.shape.slice(0, -1);
  dims({ x: [x, [...lead, 'd']], weight: [weight, ['d']], z: [z, [...lead, 'd']] });
  const g = opts.groupSize ?? d;
  if (!Number.isInteger(g) || g <= 0 || d % g !== 0)
    throw new ArgumentError('groupSize', `a positive divisor of ${d}`, g);
  const before = opts.normBeforeGate ?? true;
  const out = Tensor.zeros(x.shape, 'float64', 'gated_rmsnorm');
  const v = new Float64Array(g);
  for (let r = 0; r < x.size / d; r++) {
    for (let g0 = 0; g0 < d; g0 += g) {
      let ss = 0;
      for (let i = 0; i < g; i++) {
        const o = r * d + g0 + i;
        v[i] = z && !before ? x.data[o] * silu(z.data[o]) : x.data[o];
        ss += v[i] * v[i];
      }
      const rstd = 1 / Math.sqrt(ss / g + eps);
      for (let i = 0; i < g; i++) {
        const o = r * d + g0 + i;
        let y = v[i] * rstd * weight.data[g0 + i];
        if (z && before) y *= silu(z.data[o]);
        out.data[o] = y;
      }
    }
  }
  return out;
}

/**
 * Backward of `gatedRmsnorm` (and of plain RMSNorm: z absent). Per group of size g, with the normalised
 * value v̂ = v·r, r = 1/√(mean(v²) + ε), and gᵥ = ∂ℓ/∂(v̂·w)·w, the RMSNorm rule is
 *   dv = r·(gᵥ − v̂·mean(gᵥ ⊙ v̂)),   dw += ∂ℓ/∂y ⊙ v̂
 * gate before the norm (v = x·silu(z)):  dx = dv·silu(z),  dz = dv·x·silu'(z)
 * norm before the gate (v = x, y = n·silu(z)): ∂ℓ/∂n = dy·silu(z),  dz = dy·n·silu'(z), then the rule.
 */
export function gatedRmsnormBackward(
  x: Tensor,
  weight: Tensor,
  z: Tensor | undefined,
  dy: Tensor,
  opts: GatedRmsnormOptions = {},
): { out: Tensor; dx: Tensor; dweight: Tensor; dz?: Tensor } {
  const out = gatedRmsnorm(x, weight, z, opts);
  const eps = opts.eps ?? 1e-6;
  const d = x.shape[x.rank - 1];
  dims({ dy: [dy, x.shape] });
  const g = opts.groupSize ?? d;
  const before = opts.normBeforeGate ?? true;
  const dx = Tensor.zeros(x.shape, 'float64', 'dx');
  const dweight = Tensor.zeros(weight.shape, 'float64', 'dweight');
  const dz = z ? Tensor.zeros(z.shape, 'float64', 'dz') : undefined;
  const v = new Float64Array(g);
  const dn = new Float64Array(g); // ∂ℓ/∂(v̂ ⊙ w)
  for (let r = 0; r < x.size / d; r++) {
    for (let g0 = 0; g0 < d; g0 += g) {
      let ss = 0;
      for (let i = 0; i < g; i++) {
        const o = r * d + g0 + i;
        v[i] = z && !before ? x.data[o] * silu(z.data[o]) : x.data[o];
        ss += v[i] ** 2;
      }
      const rstd = 1 / Math.sqrt(ss / g + eps);
      let mean = 0; // mean(gᵥ ⊙ v̂)
      for (let i = 0; i < g; i++) {
        const o = r * d + g0 + i;
        const w = weight.data[g0 + i];
        dn[i] = z && before ? dy.data[o] * silu(z.data[o]) : dy.data[o];
        if (z && before) dz!.data[o] = dy.data[o] * v[i] * rstd * w * siluGrad(z.data[o]);
        dweight.data[g0 + i] += dn[i] * v[i] * rstd;
        mean += dn[i] * w * v[i] * rstd;
      }
      mean /= g;
      for (let i = 0; i < g; i++) {
        const o = r * d + g0 + i;
        const dv = rstd * (dn[i] * weight.data[g0 + i] - v[i] * rstd * mean);
        if (z && !before) {
          dx.data[o] = dv * silu(z.data[o]);
          dz!.data[o] = dv * x.data[o] * siluGrad(z.data[o]);
        } else dx.data[o] = dv;
      }
    }
  }
  return { out, dx, dweight, dz };
}
