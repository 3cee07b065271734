/**
 * Training foundation, part 1: the Llama block's simple layers, each `forward` beside its `backward`, in
 * float64 (the forwards of linear and RMSNorm are the references' own: lib/ref/linear.ts, lib/ref/norm.ts) (llm.c's train_gpt2.c layout). Shapes are row-major; N is the number of rows (batch · length).
 * Every backward takes the upstream gradient dy = ∂ℓ/∂y and returns ∂ℓ/∂(each input). Checked against
 * central finite differences of the forward in spec/train.spec.ts.

 */
import { ArgumentError } from '../errors.js';
import { Tensor } from '../tensor.js';
import { linear as refLinear } from './linear.js';
import { rmsnormRows } from './norm.js';

type F = Float64Array;

function need(cond: boolean, what: string, expected: string, actual: unknown): void {
  if (!cond) throw new ArgumentError(what, expected, actual);
}

/**
 * Linear: y = x·Wᵀ + b, x (N, I), W (O, I), b (O).
 * Backward: dx = dy·W (N, I);  dW = dyᵀ·x (O, I);  db = Σ_n dy (O).
 */
export const linear = {
  forward(x: F, W: F, b: F | undefined, N: number, I: number, O: number): F {
    need(
      x.length === N * I && W.length === O * I && (!b || b.length === O),
      'linear',
      `x (${N}, ${I}), W (${O}, ${I}), b (${O})`,
      [x.length, W.length, b?.length],
    );
    return refLinear(new Tensor(x, [N, I]), new Tensor(W, [O, I]), b && new Tensor(b, [O])).data as F;
  },
  backward(dy: F, x: F, W: F, N: number, I: number, O: number): { dx: F; dW: F; db: F } {
    const dx = new Float64Array(N * I);
    const dW = new Float64Array(O * I);
    const db = new Float64Array(O);
    for (let n = 0; n < N; n++)
      for (let o = 0; o < O; o++) {
        const g = dy[n * O + o];
        db[o] += g;
        for (let i = 0; i < I; i++) {
          dx[n * I + i] += g * W[o * I + i];
          dW[o * I + i] += g * x[n * I + i];
        }
      }
    return { dx, dW, db };
  },
};

/**
 * RMSNorm over rows of width d: r = 1/√(mean(x²) + ε), x̂ = x·r, y = x̂ ⊙ w.
 * Backward: dw = Σ_n dy ⊙ x̂;  with g = dy ⊙ w:  dx = r·(g − x̂·mean(g ⊙ x̂)).
 */
export const rmsnorm = {
  forward(x: F, w: F, N: number, d: number, eps: number): { y: F; rstd: F } {
    need(x.length === N * d && w.length === d, 'rmsnorm', `x (${N}, ${d}), w (${d})`, [x.length, w.length]);
    return rmsnormRows(x, w, N, d, eps);
  },
  backward(dy: F, x: F, w: F, rstd: F, N: number, d: number): { dx: F; dw: F } {
    const dx = new Float64Array(N * d);
    const dw = new Float64Array(d);
    for (let n = 0; n < N; n++) {
      const r = rstd[n];
      let dot = 0; // mean(g ⊙ x̂)
      for (let i = 0; i < d; i++) {
        const xh = x[n * d + i] * r;
        dw[i] += dy[n * d + i] * xh;
        dot += dy[n * d + i] * w[i] * xh;
      }
      dot /= d;
      for (let i = 0; i < d; i++) dx[n * d + i] = r * (dy[n * d + i] * w[i] - x[n * d + i] * r * dot);
    }
    return { dx, dw };
  },
};

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

/**
 * SwiGLU gate of the Llama MLP: a = silu(g) ⊙ u, silu(g) = g·σ(g).
 * Backward: du = da ⊙ silu(g);  dg = da ⊙ u ⊙ σ(g)·(1 + g·(1 − σ(g))).
 */
export const swiglu = {
  forward(g: F, u: F): F {
    need(g.length === u.length, 'swiglu', 'gate and up of one size', [g.length, u.length]);
    const a = new Float64Array(g.length); // (g's shape)
    for (let i = 0; i < g.length; i++) a[i] = g[i] * sigmoid(g[i]) * u[i];
    return a;
  },
  backward(da: F, g: F, u: F): { dg: F; du: F } {
    const dg = new Float64Array(g.length);
    const du = new Float64Array(g.length);
    for (let i = 0; i < g.length; i++) {
      const s = sigmoid(g[i]);
      du[i] = da[i] * g[i] * s;
      dg[i] = da[i] * u[i] * s * (1 + g[i] * (1 - s));
    }
    return { dg, du };
  },
};

/**
 * Embedding: h[n] = E[ids[n]], E (V, dModel).  Backward: dE[ids[n]] += dh[n] (rows of repeated ids add up).
 */
export const embedding = {
  forward(ids: readonly number[], E: F, V: number, dModel: number): F {
    const h = new Float64Array(ids.length * dModel);
    ids.forEach((id, n) => {
      need(Number.isInteger(id) && id >= 0 && id < V, `ids[${n}]`, `a token id in [0, ${V})`, id);
      h.set(E.subarray(id * dModel, (id + 1) * dModel), n * dModel);
    });
    return h;
  },
  backward(dh: F, ids: readonly number[], V: number, dModel: number): F {
    const dE = new Float64Array(V * dModel);
    ids.forEach((id, n) => {
      for (let i = 0; i < dModel; i++) dE[id * dModel + i] += dh[n * dModel + i];
    });
    return dE;
  },
};

/** log-softmax of each row of width V, computed stably (max subtracted). */
export function logSoftmax(z: F, N: number, V: number): F {
  const out = new Float64Array(N * V);
  for (let n = 0; n < N; n++) {
    let m = -Infinity;
    for (let v = 0; v < V; v++) m = Math.max(m, z[n * V + v]);
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp(z[n * V + v] - m);
    const lse = m + Math.log(s);
    for (let v = 0; v < V; v++) out[n * V + v] = z[n * V + v] - lse;
  }
  return out;
}

/**
 * Cross-entropy, mean over the N rows (torch's F.cross_entropy, reduction 'mean'):
 *   ℓ = −(1/N) Σ_n log softmax(z_n)[t_n].   Backward: dz_n = (softmax(z_n) − onehot(t_n)) / N.
 */
export const crossEntropy = {
  forward(z: F, targets: readonly number[], N: number, V: number): number {
    need(z.length === N * V && targets.length === N, 'crossEntropy', `logits (${N}, ${V}) and ${N} targets`, [
      z.length,
      targets.length,
    ]);
    return crossEntropy.fromLogProbs(logSoftmax(z, N, V), targets, N, V).loss;
  },
  backward(z: F, targets: readonly number[], N: number, V: number): F {
    return crossEntropy.fromLogProbs(logSoftmax(z, N, V), targets, N, V).dz;
  },
  /** Both from the log-probabilities lp = logSoftmax(z) (N, V): a training step computes them once. */
  fromLogProbs(lp: F, targets: readonly number[], N: number, V: number): { loss: number; dz: F } {
    let s = 0;
    targets.forEach((t, n) => {
      need(Number.isInteger(t) && t >= 0 && t < V, `targets[${n}]`, `a class in [0, ${V})`, t);
      s -= lp[n * V + t];
    });
    const dz = new Float64Array(N * V); // (N, V)
    for (let i = 0; i < dz.length; i++) dz[i] = Math.exp(lp[i]) / N;
    targets.forEach((t, n) => (dz[n * V + t] -= 1 / N));
    return { loss: s / N, dz };
  },
};

/**
 * KL(p_teacher ‖ p_student) as torch's kl_div(log_softmax(student), softmax(teacher), 'batchmean'):
 *   ℓ = (1/B) Σ_n Σ_v p_t (log p_t − log p_s),  summed over all N rows, divided by the batch size B only.
 * Backward (student logits): dz_s = (p_s − p_t) / B.  The teacher gets no gradient.
 */
export const klDivergence = {
  forward(student: F, teacher: F, N: number, V: number, batch: number): number {
    need(student.length === N * V && teacher.length === N * V, 'klDivergence', `logits (${N}, ${V}) twice`, [
      student.length,
      teacher.length,
    ]);
    return klDivergence.fromLogProbs(logSoftmax(student, N, V), logSoftmax(teacher, N, V), batch).loss;
  },
  backward(student: F, teacher: F, N: number, V: number, batch: number): F {
    return klDivergence.fromLogProbs(logSoftmax(student, N, V), logSoftmax(teacher, N, V), batch).dz;
  },
  /** Both from the log-probabilities ls, lt (N, V) of student and teacher: a training step computes them once. */
  fromLogProbs(ls: F, lt: F, batch: number): { loss: number; dz: F } {
    let s = 0;
    for (let i = 0; i < ls.length; i++) s += Math.exp(lt[i]) * (lt[i] - ls[i]);
    const dz = new Float64Array(ls.length); // (N, V)
    for (let i = 0; i < ls.length; i++) dz[i] = (Math.exp(ls[i]) - Math.exp(lt[i])) / batch;
    return { loss: s / batch, dz };
  },
};
