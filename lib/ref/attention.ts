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
  if (Hq % Hkv !== 0) throw new ArgumentError('heads', `Hq (${Hq}) a multiple of Hkv (${Hkv})`, Hkv);
  const groups = Hq / Hkv;
  const scale = opts.scale ?? 1 / Math.sqrt(d);
  const offset = opts.offset ?? Lk - Lq;
  const out = Tensor.zeros([batch, Hq, Lq, dv], 'float64', 'attention');
  const s = new Float64Array(Lk);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < Hq; h++) {
      const kh = Math.floor(h / groups);
      for (let t = 0; t < Lq; t++) {
        const last = Math.min(Lk - 1, offset + t);
        let mx = -Infinity;
        const qo = ((b * Hq + h) * Lq + t) * d;
        for (let j = 0; j <= last; j++) {
          const ko = ((b * Hkv + kh) * Lk + j) * d;
          let dot = 0;
          for (let i = 0; i < d; i++) dot += q.data[qo + i] * k.data[ko + i];
          s[j] = dot * scale;
          if (s[j] > mx) mx = s[j];
        }
        let z = 0;
        for (let j = 0; j <= last; j++) {
          s[j] = Math.exp(s[j] - mx);
          z += s[j];
        }
        const oo = ((b * Hq + h) * Lq + t) * dv;
        for (let j = 0; j <= last; j++) {
          const w = s[j] / z;
          const vo = ((b * Hkv + kh) * Lk + j) * dv;
          for (let i = 0; i < dv; i++) out.data[oo + i] += w * v.data[vo + i];
        }
      }
    }
  }
  return out;
}

/** repeat_kv: (batch, Hkv, L, d) → (batch, Hkv·n, L, d), each head repeated n times consecutively. */
export function repeatKv(x: Tensor, n: number): Tensor {
  const { batch, H, L, d } = dims({ x: [x, ['batch', 'H', 'L', 'd']] });
  const out = Tensor.zeros([batch, H * n, L, d], 'float64', x.name);
  const blk = L * d;
  for (let b = 0; b < batch; b++)
    for (let h = 0; h < H; h++)
      for (let r = 0; r < n; r++)
        out.data.set(x.data.subarray((b * H + h) * blk, (b * H + h + 1) * blk), ((b * H + h) * n + r) * blk);
  return out;
}

/**
 * Backward of `causalAttention`: given dy, the gradients of q, k and v. Per (batch, head, query t), with
 * P the softmax row and s the scaled scores:
 *   dv_j += P_j · dy_t;   dP_j = dy_t · v_j;   ds_j = P_j (dP_j − Σ_i P_i dP_i)   (softmax backward)
 *   dq_t += scale · Σ_j ds_j k_j;   dk_j += scale · ds_j q_t
 * Heads sharing a key/value head (grouped-query) add their dk, dv into it.
 */
export function causalAttentionBackward(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  dy: Tensor,
  opts: AttentionOptions = {},
): { dq: Tensor; dk: Tensor; dv: Tensor } {
  const {
    batch,
    Hq,
    Lq,
    d,
    Hkv,
    Lk,
    dv: Dv,
  } = dims({
    q: [q, ['batch', 'Hq', 'Lq', 'd']],
    k: [k, ['batch', 'Hkv', 'Lk', 'd']],
    v: [v, ['batch', 'Hkv', 'Lk', 'dv']],
  });
  dims({ dy: [dy, [batch, Hq, Lq, Dv]] });
  const groups = Hq / Hkv;
  const scale = opts.scale ?? 1 / Math.sqrt(d);
  const offset = opts.offset ?? Lk - Lq;
  const dq = Tensor.zeros(q.shape, 'float64', 'dq');
  const dk = Tensor.zeros(k.shape, 'float64', 'dk');
  const dvt = Tensor.zeros(v.shape, 'float64', 'dv');
  const p = new Float64Array(Lk);
  const dp = new Float64Array(Lk);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < Hq; h++) {
      const kh = Math.floor(h / groups);
      for (let t = 0; t < Lq; t++) {
        const last = Math.min(Lk - 1, offset + t);
        const qo = ((b * Hq + h) * Lq + t) * d;
        const oo = ((b * Hq + h) * Lq + t) * Dv;
        let mx = -Infinity;
        for (let j = 0; j <= last; j++) {
          const ko = ((b * Hkv + kh) * Lk + j) * d;
          let s = 0;
          for (let i = 0; i < d; i++) s += q.data[qo + i] * k.data[ko + i];
          p[j] = s * scale;
          mx = Math.max(mx, p[j]);
        }
        let z = 0;
        for (let j = 0; j <= last; j++) z += p[j] = Math.exp(p[j] - mx);
        let sum = 0; // Σ_i P_i dP_i
        for (let j = 0; j <= last; j++) {
          p[j] = p[j] / z;
          const vo = ((b * Hkv + kh) * Lk + j) * Dv;
          let g = 0;
          for (let i = 0; i < Dv; i++) {
            g += dy.data[oo + i] * v.data[vo + i];
            dvt.data[vo + i] += p[j] * dy.data[oo + i];
          }
          dp[j] = g;
          sum += p[j] * g;
        }
        for (let j = 0; j <= last; j++) {
          const ds = p[j] * (dp[j] - sum) * scale;
          const ko = ((b * Hkv + kh) * Lk + j) * d;
          for (let i = 0; i < d; i++) {
            dq.data[qo + i] += ds * k.data[ko + i];
            dk.data[ko + i] += ds * q.data[qo + i];
          }
        }
      }
    }
  }
  return { dq, dk, dv: dvt };
}
