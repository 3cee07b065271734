/**
 * Rotary position embedding (RoPE), float64, as transformers' Llama applies it.
 *
 *   inv_freq_i = 1 / θ^{2i/d}                         i = 0 … d/2 − 1 (computed in float64)
 *   angle(pos, i) = pos · inv_freq_i,  cos/sin repeated as [c_0…c_{d/2−1}, c_0…c_{d/2−1}]
 *   rope(x) = x·cos + rotate_half(x)·sin,  rotate_half([x₁, x₂]) = [−x₂, x₁]
 *
 * llama3 scaling (transformers modeling_rope_utils::_compute_llama3_parameters): with
 * wavelen_i = 2π / inv_freq_i, low = L_orig / low_freq_factor, high = L_orig / high_freq_factor:
 *   wavelen > low  → inv_freq / factor;   wavelen < high → inv_freq;
 *   otherwise      → (1 − s)·inv_freq/factor + s·inv_freq,  s = (L_orig/wavelen − lff)/(hff − lff)
 */
import { ArgumentError } from '../errors.js';
import { Tensor, dims } from '../tensor.js';

export interface RopeScaling {
  ropeType: 'default' | 'llama3';
  factor?: number;
  lowFreqFactor?: number;
  highFreqFactor?: number;
  originalMaxPositionEmbeddings?: number;
}

export function ropeInvFreq(
  headDim: number,
  theta: number,
  scaling: RopeScaling = { ropeType: 'default' },
): Float64Array {
  if (!Number.isInteger(headDim) || headDim <= 0 || headDim % 2 !== 0)
    throw new ArgumentError('headDim', 'a positive even integer', headDim);
  const half = headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(theta, (2 * i) / headDim);
  if (scaling.ropeType === 'llama3') {
    const factor = scaling.factor ?? 8;
    const lff = scaling.lowFreqFactor ?? 1;
    const hff = scaling.highFreqFactor ?? 4;
    const orig = scaling.originalMaxPositionEmbeddings ?? 8192;
    const lowWave = orig / lff;
    const highWave = orig / hff;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i];
      if (wavelen > lowWave) inv[i] = inv[i] / factor;
      else if (wavelen >= highWave) {
        const s = (orig / wavelen - lff) / (hff - lff);
        inv[i] = ((1 - s) * inv[i]) / factor + s * inv[i];
      }
    }
  } else if (scaling.ropeType !== 'default') {
    throw new ArgumentError('ropeType', "'default' or 'llama3'", scaling.ropeType);
  }
  return inv;
}

/**
 * Apply RoPE to x of shape (batch, heads, L, headDim) at positions `positions` (length L).
 * Mirrors transformers apply_rotary_pos_emb with the rotate_half convention.
 */
export function applyRope(x: Tensor, positions: readonly number[], invFreq: Float64Array): Tensor {
  const { batch, heads, L, d } = dims({ x: [x, ['batch', 'heads', 'L', 'd']] });
  if (positions.length !== L) throw new ArgumentError('positions', `length ${L}`, positions.length);
  if (invFreq.length * 2 !== d) throw new ArgumentError('invFreq', `length ${d / 2}`, invFreq.length);
  const out = Tensor.zeros(x.shape, 'float64', 'rope');
  const cos = new Float64Array(d / 2); // (d/2)
  const sin = new Float64Array(d / 2); // (d/2)
  for (let t = 0; t < L; t++) {
    ropeAngles(positions[t], invFreq, cos, sin);
    ropeRows(x.data, out.data as Float64Array, batch * heads, t * d, L * d, cos, sin);
  }
  return out;
}

/** cos θ_i and sin θ_i, θ_i = pos · inv_freq_i (d/2 each): one position's angles, as `applyRope` takes them. */
export function ropeAngles(pos: number, invFreq: Float64Array, cos: Float64Array, sin: Float64Array): void {
  for (let i = 0; i < invFreq.length; i++) {
    const ang = pos * invFreq[i];
    cos[i] = Math.cos(ang);
    sin[i] = Math.sin(ang);
  }
}

/**
 * `rows` rows of width d = 2·cos.length at offsets o0 + r·stride in x, rotated at one position (its `ropeAngles`)
 * into out at the same offsets: out = [x₁ cos − x₂ sin, x₂ cos + x₁ sin], float64. `applyRope` per position,
 * and the fused decode step (lib/model/mixers/attention.ts attentionStep) on its buffers, angles computed once a token.
 * x0, xStride: where x's rows are when not at out's offsets (attentionInfer: a projection row's heads, read
 * contiguously, written into the heads layout or the cache).
 */
export function ropeRows(
  x: ArrayLike<number>,
  out: Float64Array,
  rows: number,
  o0: number,
  stride: number,
  cos: Float64Array,
  sin: Float64Array,
  x0 = o0,
  xStride = stride,
): void {
  const half = cos.length;
  for (let r = 0; r < rows; r++) {
    const o = o0 + r * stride;
    const xo = x0 + r * xStride;
    for (let i = 0; i < half; i++) {
      const x1 = x[xo + i];
      const x2 = x[xo + i + half];
      out[o + i] = x1 * cos[i] - x2 * sin[i];
      out[o + i + half] = x2 * cos[i] + x1 * sin[i];
    }
  }
}

/**
 * Backward of `applyRope`: RoPE rotates each pair (x₁, x₂) by the angle θ = pos·inv_freq, a linear map
 * whose transpose is the rotation by −θ, so dx = rope(dy) at negated positions:
 *   dx₁ = dy₁ cos θ + dy₂ sin θ,   dx₂ = dy₂ cos θ − dy₁ sin θ
 */
export function applyRopeBackward(dy: Tensor, positions: readonly number[], invFreq: Float64Array): Tensor {
  return applyRope(
    dy,
    positions.map((p) => -p),
    invFreq,
  );
}

/**
 * RoPE's cos/sin for positions 0 … l−1 as the GPU chains read it, computed in float64 and stored as float32:
 * row t = [cos(t·inv_i) … | sin(t·inv_i) …], (l, hd) — the decoder's and the training step's table.
 */
export function ropeTable(L: number, inv: Float64Array): Float32Array {
  const hd = inv.length * 2;
  const t = new Float32Array(L * hd); // (l, hd)
  for (let p = 0; p < L; p++)
    for (let i = 0; i < inv.length; i++) {
      t[p * hd + i] = Math.cos(p * inv[i]);
      t[p * hd + inv.length + i] = Math.sin(p * inv[i]);
    }
  return t;
}
