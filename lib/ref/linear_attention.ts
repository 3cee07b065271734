/**
 * Causal linear attention, float64 — PAPER.md §1: attention without the softmax is a linear RNN.
 *
 * With an optional per-step decay g_t (the mask m_{t−1,t}; g ≡ 1 gives plain linear attention):
 *   parallel:   y_t = Σ_{s≤t} (Π_{r=s+1..t} g_r) (q_t·k_s) v_s
 *   recurrent:  S_t = g_t S_{t−1} + k_t v_tᵀ,   y_t = S_tᵀ q_t          (S_t: dk × dv, S_{−1} = S₀ or 0)
 * Both give the same y; the recurrent form also returns the final state S_{L−1}.
 *
 * Shapes: q, k (batch, H, L, dk); v (batch, H, L, dv); g (batch, H, L); S₀ (batch, H, dk, dv).
 */
import { Tensor, dims } from '../tensor.js';

export function linearAttentionParallel(q: Tensor, k: Tensor, v: Tensor, g?: Tensor): Tensor {
  const { batch, H, L, dk, dv } = dims({
    q: [q, ['batch', 'H', 'L', 'dk']],
    k: [k, ['batch', 'H', 'L', 'dk']],
    v: [v, ['batch', 'H', 'L', 'dv']],
    g: [g, ['batch', 'H', 'L']],
  });
  const out = Tensor.zeros([batch, H, L, dv], 'float64', 'linear_attention');
  for (let bh = 0; bh < batch * H; bh++) {
    for (let t = 0; t < L; t++) {
      let decay = 1; // Π_{r=s+1..t} g_r, built as s walks down from t
      for (let s = t; s >= 0; s--) {
        if (s < t && g) decay *= g.data[bh * L + s + 1];
        let dot = 0;
        for (let i = 0; i < dk; i++) dot += q.data[(bh * L + t) * dk + i] * k.data[(bh * L + s) * dk + i];
        const w = decay * dot;
        for (let j = 0; j < dv; j++) out.data[(bh * L + t) * dv + j] += w * v.data[(bh * L + s) * dv + j];
      }
    }
  }
  return out;
}

export function linearAttentionRecurrent(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  g?: Tensor,
  initialState?: Tensor,
): { out: Tensor; finalState: Tensor } {
  const { batch, H, L, dk, dv } = dims({
    q: [q, ['batch', 'H', 'L', 'dk']],
    k: [k, ['batch', 'H', 'L', 'dk']],
    v: [v, ['batch', 'H', 'L', 'dv']],
    g: [g, ['batch', 'H', 'L']],
    initialState: [initialState, ['batch', 'H', 'dk', 'dv']],
  });
  const out = Tensor.zeros([batch, H, L, dv], 'float64', 'linear_attention');
  const S = Tensor.zeros([batch, H, dk, dv], 'float64', 'final_state');
  if (initialState) S.data.set(initialState.data);
  const blk = dk * dv;
  for (let bh = 0; bh < batch * H; bh++) {
    for (let t = 0; t < L; t++) {
      const gt = g ? g.data[bh * L + t] : 1;
      for (let i = 0; i < dk; i++) {
        const ki = k.data[(bh * L + t) * dk + i];
        for (let j = 0; j < dv; j++) {
          const o = bh * blk + i * dv + j;
          S.data[o] = gt * S.data[o] + ki * v.data[(bh * L + t) * dv + j];
        }
      }
      for (let j = 0; j < dv; j++) {
        let y = 0;
        for (let i = 0; i < dk; i++) y += S.data[bh * blk + i * dv + j] * q.data[(bh * L + t) * dk + i];
        out.data[(bh * L + t) * dv + j] = y;
      }
    }
  }
  return { out, finalState: S };
}
