/**
 * The negative log-likelihood of next tokens under a linear head, on the CPU: the driver of asm/activations.ts
 * `rowLse`. For hidden rows x_r and the head W (V×d), logits z_r = x_r·Wᵀ and
 *
 *   nll_r = lse(z_r) − z_r[target_r],   lse(z) = m + log Σ_v exp(z_v − m),   m = max_v z_v
 *
 * The logits stay in the module's memory (SimdGemm.linearAt): the (rows × V) array — 16 MB for `mil eval`'s
 * batch of 8 windows of 256 on a 2048-token vocabulary — is neither copied out nor allocated per batch, and
 * the exps are the SIMD float32 exp of the SiLU (within 3 ulp), summed in float64. `mil eval`'s wasm-simd path
 * (lib/train/job.ts evaluateOn, through `ops.linearNll`).
 */
import type { Bf16Panels, SimdGemm } from './gemm.js';
import { align } from './gemm.js';
import { ArgumentError } from '../errors.js';

type FloatArray = Float32Array | Float64Array;

/**
 * nll_r (float64, `rows` of them) for x (rows × d) and the head w (V × d, a float array or bf16 panels);
 * `targets[r]` in [0, V). `resident`: keep a float array w packed for the next call (a model weight).
 */
export function simdLinearNll(
  g: SimdGemm,
  x: FloatArray,
  rows: number,
  d: number,
  w: FloatArray | Bf16Panels,
  V: number,
  targets: ArrayLike<number>,
  resident: boolean,
): Float64Array {
  if (targets.length !== rows) throw new ArgumentError('targets', `${rows} token ids (one per row)`, targets.length);
  for (let r = 0; r < rows; r++) {
    const t = targets[r];
    if (!Number.isInteger(t) || t < 0 || t >= V) throw new ArgumentError(`targets[${r}]`, `a token id in [0, ${V})`, t);
  }
  const zp = g.linearAt(x, rows, d, w, V, resident); // logits z (rows, V), float32, in the module's memory
  const op = align(zp + rows * V * 4);
  g.ensure(op + rows * 16);
  g.kernels.rowLse(zp, rows, V, op);
  const z = new Float32Array(g.buffer, zp, rows * V); // (rows, V)
  const ms = new Float64Array(g.buffer, op, 2 * rows); // (rows, 2): m_r, Σ exp(z − m_r)
  const nll = new Float64Array(rows);
  for (let r = 0; r < rows; r++) nll[r] = ms[2 * r] + Math.log(ms[2 * r + 1]) - z[r * V + targets[r]];
  return nll;
}
