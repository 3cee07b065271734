/**
 * Causal softmax attention with grouped-query heads, float64
 * (transformers eager_attention_forward with repeat_kv).
 *
 *   head h of Hq uses key/value head ⌊h / (Hq/Hkv)⌋
 *   s_{t,j} = scale · q_t·k_j  for j ≤ offset + t, −∞ otherwise  (query t sits at absolute position offset + t)
 *   y_t = Σ_j softmax_j(s_{t,·}) v_j
 *
 * Shapes: q (batch, Hq, Lq, d), k (batch, Hkv, Lk, d), v (batch, Hkv, Lk, dv); offset defaults to Lk − Lq,
 * which is what a KV cache gives.
 */
import { ArgumentError } from '../errors.js';
import { Tensor, dims } from '../tensor.js';

export interface AttentionOptions {
  /** Multiplier of q·k; default 1/sqrt(d). */
  scale?: number;
  /** Absolute position of the first query; default Lk − Lq. */
  offset?: number;
}

export function causalAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const { batch, Hq, Lq, d, Hkv, Lk, dv } = dims({
    q: [q, ['batch', 'Hq', 'Lq', 'd']],
    k: [k, ['batch', 'Hkv', 'Lk', 'd']],
    v: [v, ['batch', 'Hkv', 'Lk', 'dv']],
  });
  if (Hq! % Hkv! !== 0) throw new ArgumentError('heads', `Hq (${Hq}) a multiple of Hkv (${Hkv})`, Hkv);
  const groups = Hq! / Hkv!;
  const scale = opts.scale ?? 1 / Math.sqrt(d!);
  const offset = opts.offset ?? Lk! - Lq!;
  const out = Tensor.zeros([batch!, Hq!, Lq!, dv!], 'float64', 'attention');
  const s = new Float64Array(Lk!);
  for (let b = 0; b < batch!; b++) {
    for (let h = 0; h < Hq!; h++) {
      const kh = Math.floor(h / groups);
      for (let t = 0; t < Lq!; t++) {
        const last = Math.min(Lk! - 1, offset + t);
        let mx = -Infinity;
        const qo = ((b * Hq! + h) * Lq! + t) * d!;
        for (let j = 0; j <= last; j++) {
          const ko = ((b * Hkv! + kh) * Lk! + j) * d!;
          let dot = 0;
          for (let i = 0; i < d!; i++) dot += q.data[qo + i]! * k.data[ko + i]!;
          s[j] = dot * scale;
          if (s[j]! > mx) mx = s[j]!;
        }
        let z = 0;
        for (let j = 0; j <= last; j++) {
          s[j] = Math.exp(s[j]! - mx);
          z += s[j]!;
        }
        const oo = ((b * Hq! + h) * Lq! + t) * dv!;
        for (let j = 0; j <= last; j++) {
          const w = s[j]! / z;
          const vo = ((b * Hkv! + kh) * Lk! + j) * dv!;
          for (let i = 0; i < dv!; i++) out.data[oo + i] += w * v.data[vo + i]!;
        }
      }
    }
  }
  return out;
}

/** repeat_kv: (batch, Hkv, L, d) → (batch, Hkv·n, L, d), each head repeated n times consecutively. */
export function repeatKv(x: Tensor, n: number): Tensor {
  const { batch, H, L, d } = dims({ x: [x, ['batch', 'H', 'L', 'd']] });
  const out = Tensor.zeros([batch!, H! * n, L!, d!], 'float64', x.name);
  const blk = L! * d!;
  for (let b = 0; b < batch!; b++)
    for (let h = 0; h < H!; h++)
      for (let r = 0; r < n; r++) out.data.set(x.data.subarray((b * H! + h) * blk, (b * H! + h + 1) * blk), ((b * H! + h) * n + r) * blk);
  return out;
}
