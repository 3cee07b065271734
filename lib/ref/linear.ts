/**
 * Dense products, float64.
 *
 *   matmul(A, B)[i, j]        = Σ_k A[i, k]·B[k, j]                (A: (m, k), B: (k, n))
 *   linear(x, W, b)[…, o]     = Σ_i x[…, i]·W[o, i] + b[o]          (torch.nn.functional.linear;
 *                                                                    W: (out, in) as PyTorch stores it)
 */
import { Tensor, dims } from '../tensor.js';

export function matmul(a: Tensor, b: Tensor): Tensor {
  const { m, k, n } = dims({ a: [a, ['m', 'k']], b: [b, ['k', 'n']] });
  const out = Tensor.zeros([m, n], 'float64', 'matmul');
  for (let i = 0; i < m; i++) {
    for (let kk = 0; kk < k; kk++) {
      const aik = a.data[i * k + kk];
      for (let j = 0; j < n; j++) out.data[i * n + j] += aik * b.data[kk * n + j];
    }
  }
  return out;
}

export function linear(x: Tensor, weight: Tensor, bias?: Tensor): Tensor {
  const lead = x.shape.slice(0, -1);
  const xin = x.reshape([-1, x.shape[x.rank - 1]]);
  const {
    rows,
    in: nin,
    out: nout,
  } = dims({ x: [xin, ['rows', 'in']], weight: [weight, ['out', 'in']], bias: [bias, ['out']] });
  const y = Tensor.zeros([...lead, nout], 'float64', 'linear');
  // weight row outer, input rows inner: each row of W is read from memory once for all input rows; each
  // dot product keeps its summation order, so results are unchanged. (Plain JS is compute-bound here:
  // measured at 32000×512, 9 rows cost 5.3× one row, so a verify window is not free on this path.)
  for (let o = 0; o < nout; o++) {
    const w = weight.data.subarray(o * nin, (o + 1) * nin);
    for (let r = 0; r < rows; r++) {
      let s = bias ? bias.data[o] : 0;
      const xo = r * nin;
      for (let i = 0; i < nin; i++) s += xin.data[xo + i] * w[i];
      y.data[r * nout + o] = s;
    }
  }
  return y;
}

/**
 * Validate linear(x, Wᵢ, bᵢ) for several weights of one input (every backend checks them all before the first
 * product) and return the rows, the input width and each output width.
 */
export function linearsDims(
  x: Tensor,
  ws: ReadonlyArray<{ weight: Tensor; bias?: Tensor }>,
): { rows: number; nin: number; outs: number[] } {
  const xin = x.reshape([-1, x.shape[x.rank - 1]]);
  const outs = ws.map(
    (w, i) =>
      dims({ x: [xin, ['rows', 'in']], [`weight ${i}`]: [w.weight, ['out', 'in']], [`bias ${i}`]: [w.bias, ['out']] })
        .out!,
  );
  return { rows: xin.shape[0], nin: xin.shape[1], outs };
}
