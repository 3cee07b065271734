/**
 * Causal depthwise conv1d, float64 — mirrors Dao-AILab causal-conv1d
 * causal_conv1d_interface.py::causal_conv1d_ref and ::causal_conv1d_update_ref.
 *
 * Cross-correlation with width W over the padded input x̃ = [s (W−1 past inputs) ; x]:
 *   out[d, t] = bias[d] + Σ_{k=0}^{W−1} w[d, k] · x̃[d, t + k]      (x̃[d, k] for k < W−1 is the past)
 *   out = silu(out)  if activation = 'silu'
 * causalConv1d: the past is `initial_states` (batch, dim, W−1) or zeros; `final_states` are the
 * last W−1 entries of x̃ (zeros on the left when fewer exist), ready to seed the next call.
 *
 * causalConv1dUpdate (decode; x (batch, dim, steps)), conv_state (batch, dim, S), S ≥ W−1:
 *   shift (no cache_seqlens): past = last W−1 columns of conv_state; then conv_state ← last S columns of [conv_state ; x]
 *   circular (cache_seqlens c_b): past[k] = conv_state[(c_b − (W−1) + k) mod S]; then x[s] is written at
 *   (c_b + s) mod S. Rolling back a speculative step is just using an earlier c_b.
 */
import { ArgumentError } from '../errors.js';
import { Tensor, dims } from '../tensor.js';
import { silu, siluGrad } from './activations.js';

export type Activation = 'silu' | null;

export interface Conv1dInputs {
  x: Tensor; // (batch, dim, L)
  weight: Tensor; // (dim, W)
  bias?: Tensor; // (dim)
  initialStates?: Tensor; // (batch, dim, W-1)
  activation?: Activation;
}

/** Validate a conv1d call and return its sizes. */
export function conv1dDims(inp: Conv1dInputs): { batch: number; dim: number; L: number; W: number } {
  const { batch, dim, L, W } = dims({
    x: [inp.x, ['batch', 'dim', 'L']],
    weight: [inp.weight, ['dim', 'W']],
    bias: [inp.bias, ['dim']],
  });
  dims({ initialStates: [inp.initialStates, [batch, dim, W - 1]] });
  checkActivation(inp.activation);
  return { batch: batch, dim: dim, L: L, W: W };
}

export function causalConv1d(inp: Conv1dInputs): { out: Tensor; finalStates: Tensor } {
  const { x, weight, bias, initialStates } = inp;
  const { batch, dim, L, W } = conv1dDims(inp);
  const P = W - 1;
  const out = Tensor.zeros([batch, dim, L], 'float64', 'out');
  const xt = new Float64Array(P + L); // x̃ for one (b, d)
  for (let b = 0; b < batch; b++) {
    for (let d = 0; d < dim; d++) {
      xt.fill(0);
      if (initialStates) xt.set(initialStates.data.subarray((b * dim + d) * P, (b * dim + d + 1) * P), 0);
      xt.set(x.data.subarray((b * dim + d) * L, (b * dim + d + 1) * L), P);
      for (let t = 0; t < L; t++) {
        let s = bias ? bias.data[d] : 0;
        for (let k = 0; k < W; k++) s += weight.data[d * W + k] * xt[t + k];
        out.data[(b * dim + d) * L + t] = inp.activation === 'silu' ? silu(s) : s;
      }
    }
  }
  return { out, finalStates: conv1dFinalStates(x, initialStates, W, 'float64') };
}

/**
 * The conv's state bookkeeping (copies, no arithmetic), shared by the reference and the kernel backends:
 * final_states = the last W−1 entries of [initial_states (or zeros) ; x] per channel, (batch, dim, W−1).
 */
export function conv1dFinalStates(
  x: Tensor,
  initialStates: Tensor | undefined,
  W: number,
  dtype: 'float64' | 'float32',
): Tensor {
  const [batch, dim, L] = x.shape as [number, number, number];
  const P = W - 1;
  const fin = Tensor.zeros([batch, dim, P], dtype, 'final_states');
  for (let bd = 0; bd < batch * dim; bd++)
    for (let k = 0; k < P; k++) {
      const j = L - P + k; // position in x; negative → from the initial state
      fin.data[bd * P + k] = j >= 0 ? x.data[bd * L + j] : initialStates ? initialStates.data[bd * P + P + j] : 0;
    }
  return fin;
}

/**
 * The state after an update with `steps` new inputs x (batch, dim, steps): a circular buffer written at
 * (cache_seqlens[b] + s) mod S, or — without cache_seqlens — the last S entries of [state ; x].
 */
export function conv1dStateAfter(
  convState: Tensor,
  x: Tensor,
  cacheSeqlens: readonly number[] | undefined,
  dtype: 'float64' | 'float32',
): Tensor {
  const [batch, dim, S] = convState.shape as [number, number, number];
  const steps = x.shape[2];
  const next = convState.astype(dtype).named('conv_state_after');
  const at = new Int32Array(steps); // circular: where step s lands in a row, the same for every channel
  for (let b = 0; b < batch; b++) {
    if (cacheSeqlens) for (let s = 0; s < steps; s++) at[s] = mod(cacheSeqlens[b] + s, S);
    for (let d = 0; d < dim; d++) {
      const so = (b * dim + d) * S;
      const xo = (b * dim + d) * steps;
      if (cacheSeqlens) {
        for (let s = 0; s < steps; s++) next.data[so + at[s]] = x.data[xo + s];
      } else {
        for (let k = 0; k < S; k++) {
          const j = k + steps; // index into [old state ; x]
          next.data[so + k] = j < S ? convState.data[so + j] : x.data[xo + j - S];
        }
      }
    }
  }
  return next;
}

export interface Conv1dUpdateInputs {
  x: Tensor; // (batch, dim, steps)
  convState: Tensor; // (batch, dim, S)
  weight: Tensor; // (dim, W)
  bias?: Tensor;
  activation?: Activation;
  /** Circular-buffer write positions, one non-negative integer per batch row. */
  cacheSeqlens?: readonly number[];
}

/** Validate a conv1d_update call and return its sizes. */
export function conv1dUpdateDims(inp: Conv1dUpdateInputs): {
  batch: number;
  dim: number;
  steps: number;
  S: number;
  W: number;
} {
  const { batch, dim, steps, S, W } = dims({
    x: [inp.x, ['batch', 'dim', 'steps']],
    convState: [inp.convState, ['batch', 'dim', 'S']],
    weight: [inp.weight, ['dim', 'W']],
    bias: [inp.bias, ['dim']],
  });
  checkActivation(inp.activation);
  if (S < W - 1) throw new ArgumentError('convState length', `>= width-1 = ${W - 1}`, S);
  if (inp.cacheSeqlens) checkSeqlens(inp.cacheSeqlens, batch);
  return { batch: batch, dim: dim, steps: steps, S: S, W: W };
}

export function causalConv1dUpdate(inp: Conv1dUpdateInputs): { out: Tensor; convState: Tensor } {
  const { cacheSeqlens } = inp;
  const { batch, dim, steps, S, W } = conv1dUpdateDims(inp);
  const P = W - 1;
  const out = Tensor.zeros([batch, dim, steps], 'float64', 'out');
  // the arrays and flags read once (a decode step calls this per layer and token: V8 keeps the loops tight)
  const [xs, st, w, o] = [inp.x.data, inp.convState.data, inp.weight.data, out.data];
  const bias = inp.bias?.data;
  const act = inp.activation === 'silu';
  const xt = new Float64Array(P + steps);
  const at = new Int32Array(P); // where the last P inputs sit in a state row, the same for every channel
  for (let b = 0; b < batch; b++) {
    const first = cacheSeqlens ? cacheSeqlens[b] - P : S - P;
    for (let k = 0; k < P; k++) at[k] = mod(first + k, S);
    for (let d = 0; d < dim; d++) {
      const so = (b * dim + d) * S;
      const xo = (b * dim + d) * steps;
      for (let k = 0; k < P; k++) xt[k] = st[so + at[k]];
      for (let s = 0; s < steps; s++) xt[P + s] = xs[xo + s];
      const wo = d * W;
      for (let t = 0; t < steps; t++) {
        let s = bias ? bias[d] : 0;
        for (let k = 0; k < W; k++) s += w[wo + k] * xt[t + k];
        o[xo + t] = act ? silu(s) : s;
      }
    }
  }
  return { out, convState: conv1dStateAfter(inp.convState, inp.x, cacheSeqlens, 'float64') };
}

export function checkActivation(a: unknown): void {
  if (a !== undefined && a !== null && a !== 'silu') throw new ArgumentError('activation', "null or 'silu'", a);
}

function checkSeqlens(c: readonly number[], batch: number): void {
  if (c.length !== batch) throw new ArgumentError('cacheSeqlens', `${batch} entries (one per batch row)`, c.length);
  for (const v of c)
    if (!Number.isInteger(v) || v < 0) throw new ArgumentError('cacheSeqlens', 'non-negative integers', c);
}

export function mod(a: number, m: number): number {
  return ((a % m) + m) % m;
}

/**
 * Backward of `causalConv1d`: given dout (and d final_states), the gradients of x, weight, bias and the
 * initial states. With s = bias + Σ_k w_k x̃_{t+k} and out = act(s):
 *   ds_t = dout_t · act'(s_t)   (silu' or 1);   dw_k += ds_t x̃_{t+k};   dbias += ds_t;   dx̃_{t+k} += ds_t w_k
 *   final_states = x̃[L … L+W−2], so d final_states adds onto those dx̃ entries;
 *   dx = dx̃[W−1 …], d initial_states = dx̃[0 … W−2].
 */
export function causalConv1dBackward(
  inp: Conv1dInputs,
  dout: Tensor,
  dFinalStates?: Tensor,
): { out: Tensor; finalStates: Tensor; dx: Tensor; dweight: Tensor; dbias?: Tensor; dinitialStates?: Tensor } {
  const { x, weight, bias, initialStates } = inp;
  const { batch, dim, L, W } = conv1dDims(inp);
  const P = W - 1;
  dims({ dout: [dout, [batch, dim, L]], dFinalStates: [dFinalStates, [batch, dim, P]] });
  const fwd = causalConv1d(inp);
  const dx = Tensor.zeros(x.shape, 'float64', 'dx');
  const dweight = Tensor.zeros(weight.shape, 'float64', 'dweight');
  const dbias = bias ? Tensor.zeros(bias.shape, 'float64', 'dbias') : undefined;
  const dinit = initialStates ? Tensor.zeros(initialStates.shape, 'float64', 'dinitial_states') : undefined;
  const xt = new Float64Array(P + L);
  const dxt = new Float64Array(P + L);
  for (let b = 0; b < batch; b++) {
    for (let d = 0; d < dim; d++) {
      xt.fill(0);
      dxt.fill(0);
      if (initialStates) xt.set(initialStates.data.subarray((b * dim + d) * P, (b * dim + d + 1) * P), 0);
      xt.set(x.data.subarray((b * dim + d) * L, (b * dim + d + 1) * L), P);
      if (dFinalStates) for (let k = 0; k < P; k++) dxt[L + k] += dFinalStates.data[(b * dim + d) * P + k];
      for (let t = 0; t < L; t++) {
        let s = bias ? bias.data[d] : 0;
        for (let k = 0; k < W; k++) s += weight.data[d * W + k] * xt[t + k];
        const ds = dout.data[(b * dim + d) * L + t] * (inp.activation === 'silu' ? siluGrad(s) : 1);
        if (dbias) dbias.data[d] += ds;
        for (let k = 0; k < W; k++) {
          dweight.data[d * W + k] += ds * xt[t + k];
          dxt[t + k] += ds * weight.data[d * W + k];
        }
      }
      dx.data.set(dxt.subarray(P, P + L), (b * dim + d) * L);
      if (dinit) dinit.data.set(dxt.subarray(0, P), (b * dim + d) * P);
    }
  }
  return { ...fwd, dx, dweight, dbias, dinitialStates: dinit };
}
