/**
 * The training loss over the vocabulary fused with its gradient (float32), as GPU.js kernel sources
 * (kernels/train_layers.ts `TrainKernel`). Reference (float64): lib/train/model.ts `lossAndGrads` over
 * lib/ref/layers.ts `crossEntropy` and `klDivergence` (temperature 1: the trainer has none).
 *
 * z (N, V) the student's logits, N = b·l rows; tgt_n the next token of row n, or −1 where there is none (the last
 * position of each sequence); z_T the teacher's logits (distillation only):
 *   lse:    λ_n = m + log Σ_v exp(z[n,v] − m),  m = max_v z[n,v]                                      (N)
 *   grad:   ∂ℓ/∂z[n,v] = ce_w/N_ce · [tgt_n ≥ 0] (p_s − 1[v = tgt_n]) + kl_w/b · (p_s − p_T)             (N, V)
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
}

export const lseKernel = (N: number, V: number): TrainKernel => ({
  key: 'tr.lse',
  source: `function (z) {
    const row = this.thread.x * this.constants.V;
    let m = z[row];
    for (let v = 1; v < this.constants.V; v++) { m = Math.max(m, z[row + v]); }
    let s = 0.0;
    for (let v = 0; v < this.constants.V; v++) { s += Math.exp(z[row + v] - m); }
    return m + Math.log(s);
  }`,
  constants: { V },
  size: N,
});

/** ∂ℓ/∂z: args z, λ, tgt (and z_T, λ_T with kl) → (N, V). */
export const lossGradKernel = (s: LossShape): TrainKernel => ({
  key: `tr.loss_grad${s.kl ? '+kl' : ''}`,
  source: `function (z, lse, tgt${s.kl ? ', zt, lset' : ''}) {
    const n = Math.floor(this.thread.x / this.constants.V);
    const v = this.thread.x - n * this.constants.V;
    const ps = Math.exp(z[this.thread.x] - lse[n]);
    let g = 0.0;
    if (tgt[n] >= 0.0) {
      let hot = 0.0;
      if (tgt[n] == v) { hot = 1.0; }
      g = this.constants.CE * (ps - hot);
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
