/**
 * The training loss over the vocabulary fused with its gradient (float32), as GPU.js kernel sources
 * (kernels/train_layers.ts `TrainKernel`). Reference (float64): lib/train/model.ts `lossAndGrads` over
 * lib/ref/layers.ts `crossEntropy` and `klDivergence` (temperature 1: the trainer has none).
 *
 * z (N, V) the student's logits, N = b·l rows; tgt_n the next token of row n, or −1 where there is none (the last
 * position of each sequence); z_T the teacher's logits (distillation only):
 *   lse:    λ_n = m + log Σ_v exp(z[n,v] − m),  m = max_v z[n,v]  (over P slices of the row, then combined)  (N)
 *   grad:   ∂ℓ/∂z[n,v] = ce_w/N_ce · [tgt_n ≥ 0] (p_s − 1[v = tgt_n]) + kl_w/b · (p_s − p_T)             (N, V)
 *           (with row weights: w_n in place of ce_w/N_ce, no KL — DPO's gradient, lib/train/dpo.ts)
 *           p_s = exp(z − λ),  p_T = exp(z_T − λ_T);  N_ce = b·(l−1)
 *   rows:   ce_n = [tgt_n ≥ 0] (λ_n − z[n, tgt_n]),  kl_n = Σ_v p_T ((z_T − λ_T) − (z − λ))            (2N)
 *   sums:   [Σ_n ce_n / N_ce, Σ_n kl_n / b]: CE and KL as the trainer reports them                     (2)
 */
import type { TrainKernel } from './train_layers.js';

/** The loss's weights and normalisers: ce_w, N_ce, and (distillation) kl_w and the batch b. */
export interface LossShape {
  N: number;
  V: number;
  ceWeight: number;
  ceRows: number;
  kl?: { weight: number; batch: number };
  /**
   * a weight per row in place of ce_w/N_ce (DPO on the GPU: w_n = −∂ℓ/∂ log π of row n's sequence on its
   * continuation, 0 elsewhere — lib/train/dpo.ts): the gradient kernel takes w (N) after tgt; no KL with it
   */
  rowWeights?: boolean;
}

/**
 * λ (N) as one or two kernels run in order: thread (n, p) of (N, P) the log-sum-exp of z[n, v] over the slice
 * v ≡ p mod P (adjacent threads read adjacent logits), then per row λ_n = M + log Σ_p exp(λ_{n,p} − M), M = max_p.
 * P = `slices` (default ⌊V/32⌋ clamped to [1, 64]; 1: one kernel, the slice is the row). One thread per row over
 * V = 32,000 took 46 ms per training step on the H200 (bench/gpu_train.ts --profile: 512 threads per chunk).
 */
export const lseKernels = (
  N: number,
  V: number,
  slices = Math.max(1, Math.min(64, Math.floor(V / 32))),
): TrainKernel[] => {
  const P = Math.min(slices, V);
  const part: TrainKernel = {
    key: 'tr.lse_part',
    source: `function (z) {
    const n = Math.floor(this.thread.x / this.constants.P);
    const p = this.thread.x - n * this.constants.P;
    const row = n * this.constants.V;
    let m = z[row + p];
    for (let j = 1; j < this.constants.STEPS; j++) {
      const v = j * this.constants.P + p;
      if (v < this.constants.V) { m = Math.max(m, z[row + v]); }
    }
    let s = 0.0;
    for (let j = 0; j < this.constants.STEPS; j++) {
      const v = j * this.constants.P + p;
      if (v < this.constants.V) { s += Math.exp(z[row + v] - m); }
    }
    return m + Math.log(s);
  }`,
    constants: { V, P, STEPS: Math.ceil(V / P) },
    size: N * P,
  };
  if (P === 1) return [part];
  const combine: TrainKernel = {
    key: 'tr.lse_combine',
    source: `function (l) {
    const row = this.thread.x * this.constants.P;
    let m = l[row];
    for (let p = 1; p < this.constants.P; p++) { m = Math.max(m, l[row + p]); }
    let s = 0.0;
    for (let p = 0; p < this.constants.P; p++) { s += Math.exp(l[row + p] - m); }
    return m + Math.log(s);
  }`,
    constants: { P },
    size: N,
  };
  return [part, combine];
};

/** ∂ℓ/∂z: args z, λ, tgt (and z_T, λ_T with kl) → (N, V). */
export const lossGradKernel = (s: LossShape): TrainKernel => ({
  key: `tr.loss_grad${s.kl ? '+kl' : ''}${s.rowWeights ? '+w' : ''}`,
  source: `function (z, lse, tgt${s.kl ? ', zt, lset' : ''}${s.rowWeights ? ', w' : ''}) {
    const n = Math.floor(this.thread.x / this.constants.V);
    const v = this.thread.x - n * this.constants.V;
    const ps = Math.exp(z[this.thread.x] - lse[n]);
    let g = 0.0;
    if (tgt[n] >= 0.0) {
      let hot = 0.0;
      if (tgt[n] == v) { hot = 1.0; }
      g = ${s.rowWeights ? 'w[n]' : 'this.constants.CE'} * (ps - hot);
    }
    ${s.kl ? 'g += this.constants.KL * (ps - Math.exp(zt[this.thread.x] - lset[n]));' : ''}
    return g;
  }`,
  constants: { V: s.V, CE: s.ceWeight / s.ceRows, KL: s.kl ? s.kl.weight / s.kl.batch : 0 },
  size: s.N * s.V,
});

/** Per-row CE then per-row KL (0 without kl): args as lossGradKernel → (2N). */
export const lossRowsKernel = (s: LossShape): TrainKernel => ({
  key: `tr.loss_rows${s.kl ? '+kl' : ''}`,
  source: `function (z, lse, tgt${s.kl ? ', zt, lset' : ''}) {
    const part = Math.floor(this.thread.x / this.constants.N);
    const n = this.thread.x - part * this.constants.N;
    const row = n * this.constants.V;
    let out = 0.0;
    if (part == 0) {
      if (tgt[n] >= 0.0) { out = lse[n] - z[row + tgt[n]]; }
    } else {
      ${
        s.kl
          ? `for (let v = 0; v < this.constants.V; v++) {
        const lt = zt[row + v] - lset[n];
        out += Math.exp(lt) * (lt - (z[row + v] - lse[n]));
      }`
          : ''
      }
    }
    return out;
  }`,
  constants: { N: s.N, V: s.V },
  size: 2 * s.N,
});

/** [CE, KL] from the rows: args rows (2N) → (2). */
export const lossSumKernel = (s: LossShape): TrainKernel => ({
  key: 'tr.loss_sum',
  source: `function (rows) {
    let acc = 0.0;
    for (let n = 0; n < this.constants.N; n++) { acc += rows[this.thread.x * this.constants.N + n]; }
    let div = this.constants.CEROWS;
    if (this.thread.x == 1) { div = this.constants.B; }
    return acc / div;
  }`,
  constants: { N: s.N, CEROWS: s.ceRows, B: s.kl ? s.kl.batch : 1 },
  size: 2,
});
