/**
 * The speculative-decoding cache of one Mamba layer (PAPER.md §4, Algorithm 2): ONE cached SSM state
 * advanced lazily, and the conv state as a circular buffer whose write position rolls back.
 *
 *   h            the SSM state after `statePos` tokens (h_i)
 *   pending      the raw (x, dt, B) rows of tokens statePos … statePos+|pending|−1: consumed (and possibly
 *                still speculative) but not folded into h
 *   forward(L new steps): MultiStep(h_i, pending, new) → outputs, h_j (pending folded), h_k (all folded);
 *                the new rows are appended to pending
 *   rollback(n): forget every consumed token past position n (pending rows, conv write position)
 *   fold():      h ← h_k if nothing of the last forward was rolled back, else h ← h_j and pending keeps
 *                only the surviving new rows — exactly VERIFY's "h_k if k' = k else h_j"
 *
 * The alternative 'per-position' scheme stores the state after every new position (one single-step
 * multistep call per position) and rolls back by picking one: what the fused kernel avoids. Both give the
 * same outputs; spec/speculative.spec.ts checks it and bench/speculative.ts compares time and memory.
 *
 * The conv buffer holds the last S ≥ (W−1) + (K+1) pre-conv inputs at (position mod S): a verify window of
 * K+1 tokens never overwrites the W−1 inputs that precede it, so rolling back is just `convLen = n`.
 */
import { ArgumentError } from '../errors.js';
import type { Ops } from '../ops.js';
import { Tensor } from '../tensor.js';
import { multistep as refMultistep } from '../ref/multistep.js';
import type { MambaStateStore, SsmSteps } from '../model/state_store.js';

export type StateScheme = 'lazy' | 'per-position';

/** The lazy store of one layer; as a MambaStateStore (lib/model/state_store.ts) the model drives it. */
export interface SpecState extends MambaStateStore {
  scheme: StateScheme;
  /** circular conv buffer (1, channels, S) and the number of inputs written so far */
  conv: Tensor;
  convLen: number;
  /** SSM state (1, dim, N) after statePos tokens */
  h: Tensor;
  statePos: number;
  dim: number;
  N: number;
  G: number;
  pending: { x: Float64Array[]; delta: Float64Array[]; B: Float64Array[] };
  last: { hJ: Tensor; hK: Tensor; pendingBefore: number; rows: number } | null;
  /** per-position scheme: the state after each consumed position ≥ statePos (index 0 = statePos) */
  history: Tensor[];
  /** the layer's A (dim, N) and Δ bias (dim) in the multi-step layout, as last passed to specSsm */
  A: Tensor | null;
  deltaBias: Tensor | null;
}

/** Build a speculative state from a prefilled layer: conv window (1, C, W−1), SSM state (1, dim, N). */
export function makeSpecState(
  convWindow: Tensor,
  ssm: Tensor,
  length: number,
  maxWindow: number,
  G: number,
  scheme: StateScheme,
): SpecState {
  const [, C, P] = convWindow.shape as [number, number, number];
  const S = P + maxWindow + 1;
  const conv = Tensor.zeros([1, C, S], 'float64', 'conv');
  for (let c = 0; c < C; c++)
    for (let k = 0; k < P; k++) {
      const pos = length - P + k;
      if (pos >= 0) conv.data[c * S + (pos % S)] = convWindow.data[c * P + k];
    }
  const [, dim, N] = ssm.shape as [number, number, number];
  const h = ssm.astype('float64').named('h');
  const st: SpecState = {
    scheme,
    conv,
    convLen: length,
    h,
    statePos: length,
    dim,
    N,
    G,
    pending: { x: [], delta: [], B: [] },
    last: null,
    history: [h],
    A: null,
    deltaBias: null,
    convolve: (ops, pre, weight, bias, activation) => specConv(ops, st, pre, weight, bias, activation),
    scan: (ops, steps) => specSsm(ops, st, steps),
  };
  return st;
}

/** The lazy state in a Mamba layer's cache (made by makeSpecState); a typed error if it holds another store. */
export function specOf(lc: { store?: MambaStateStore }): SpecState {
  const s = lc.store as SpecState | undefined;
  if (!s || !Array.isArray(s.history) || !s.pending)
    throw new ArgumentError(
      'layer cache',
      'the lazy speculative state of lib/decode/lazy_state.ts (prefill with prefillSpec)',
      s ? 'another state store' : 'none',
    );
  return s;
}

/** The logical conv window (1, C, W−1) ending at convLen: what a shift-register cache would hold. */
export function convWindow(st: SpecState, W: number): Tensor {
  const [, C, S] = st.conv.shape as [number, number, number];
  const P = W - 1;
  const out = Tensor.zeros([1, C, P], 'float64', 'conv');
  for (let c = 0; c < C; c++)
    for (let k = 0; k < P; k++) {
      const pos = st.convLen - P + k;
      out.data[c * P + k] = pos >= 0 ? st.conv.data[c * S + (pos % S)] : 0;
    }
  return out;
}

/** Conv over L new pre-conv inputs (1, L, C) through the circular buffer; returns (1, L, C) post-conv. */
async function specConv(
  ops: Ops,
  st: SpecState,
  pre: Tensor,
  weight: Tensor,
  bias: Tensor | undefined,
  activation: 'silu' | null,
): Promise<Tensor> {
  const L = pre.shape[1];
  const S = st.conv.shape[2];
  if (L > S - (weight.shape[1] - 1))
    throw new ArgumentError('verify window', `at most ${S - weight.shape[1] + 1} tokens for this cache`, L);
  const r = await ops.causalConv1dUpdate({
    x: pre.transpose([0, 2, 1]),
    convState: st.conv,
    weight,
    bias,
    activation,
    cacheSeqlens: [st.convLen],
  });
  st.conv = r.convState.named('conv'); // the backend's dtype, as the SSM states
  st.convLen += L;
  return r.out.transpose([0, 2, 1]);
}

/** The SSM over L new steps from the lazy state; returns y (1, L, dim). */
async function specSsm(ops: Ops, st: SpecState, s: SsmSteps): Promise<Tensor> {
  const L = s.x.shape[1];
  st.A = s.A;
  st.deltaBias = s.deltaBias ?? null;
  const { dim, N, G } = st;
  const rowsOf = (t: Tensor, w: number) =>
    Array.from({ length: L }, (_, i) => Float64Array.from(t.data.subarray(i * w, (i + 1) * w)));
  if (st.scheme === 'per-position') {
    // one state per new position, each from the previous one
    const outs: Tensor[] = [];
    let h = st.history[st.history.length - 1];
    const zero = Tensor.zeros([1, 1, dim]);
    for (let t = 0; t < L; t++) {
      const at = (x: Tensor | undefined, w: number, shape: number[]) =>
        x ? Tensor.from(x.data.subarray(t * w, (t + 1) * w), shape, 'float64') : undefined;
      const r = await ops.multistep({
        hI: h,
        xCache: zero,
        deltaCache: zero,
        BCache: Tensor.zeros([1, 1, G, N]),
        recomputeSteps: 0,
        x: at(s.x, dim, [1, 1, dim])!,
        delta: at(s.delta, dim, [1, 1, dim])!,
        B: at(s.B, G * N, [1, 1, G, N])!,
        C: at(s.C, G * N, [1, 1, G, N])!,
        z: at(s.z, dim, [1, 1, dim]),
        A: s.A,
        D: s.D,
        deltaBias: s.deltaBias,
        deltaSoftplus: true,
      });
      h = r.hK.named('h'); // the backend's dtype, as the lazy scheme keeps it
      st.history.push(h);
      outs.push(r.out);
    }
    return Tensor.concat(outs, 1);
  }
  const r0 = st.pending.x.length;
  const K1 = Math.max(1, r0);
  const stack = (rows: Float64Array[], w: number, shape: number[]) => {
    const t = Tensor.zeros(shape);
    rows.forEach((row, i) => t.data.set(row, i * w));
    return t;
  };
  const res = await ops.multistep({
    hI: st.h,
    xCache: stack(st.pending.x, dim, [1, K1, dim]),
    deltaCache: stack(st.pending.delta, dim, [1, K1, dim]),
    BCache: stack(st.pending.B, G * N, [1, K1, G, N]),
    recomputeSteps: r0,
    x: s.x,
    delta: s.delta,
    B: s.B,
    C: s.C,
    z: s.z,
    A: s.A,
    D: s.D,
    deltaBias: s.deltaBias,
    deltaSoftplus: true,
  });
  // the states stay in the backend's dtype (float32 on the kernel backends: no conversion of the whole state
  // twice a window; the next MultiStep reads them as they are)
  st.last = { hJ: res.hJ.named('h'), hK: res.hK.named('h'), pendingBefore: r0, rows: L };
  st.pending.x.push(...rowsOf(s.x, dim));
  st.pending.delta.push(...rowsOf(s.delta, dim));
  st.pending.B.push(...rowsOf(s.B, G * N));
  return res.out;
}

/** Forget consumed tokens past position n. */
export function rollbackState(st: SpecState, n: number): void {
  if (n > st.convLen) throw new ArgumentError('rollback position', `<= ${st.convLen} (tokens consumed)`, n);
  if (n < st.statePos)
    throw new ArgumentError('rollback position', `>= ${st.statePos} (already folded into the state)`, n);
  st.convLen = n;
  if (st.scheme === 'per-position') {
    st.h = st.history[n - st.statePos];
    st.statePos = n;
    st.history = [st.h];
    return;
  }
  const keep = n - st.statePos;
  st.pending.x.length = Math.min(st.pending.x.length, keep);
  st.pending.delta.length = Math.min(st.pending.delta.length, keep);
  st.pending.B.length = Math.min(st.pending.B.length, keep);
}

/** Fold what can be folded after the last forward: h_k if all of it survived, else h_j. */
export function foldState(st: SpecState): void {
  if (st.scheme === 'per-position' || !st.last) return;
  const { hJ, hK, pendingBefore, rows } = st.last;
  const have = st.pending.x.length;
  if (have === pendingBefore + rows) {
    st.h = hK;
    st.statePos += have;
    st.pending = { x: [], delta: [], B: [] };
  } else if (have >= pendingBefore) {
    st.h = hJ;
    st.statePos += pendingBefore;
    st.pending = {
      x: st.pending.x.slice(pendingBefore),
      delta: st.pending.delta.slice(pendingBefore),
      B: st.pending.B.slice(pendingBefore),
    };
  }
  st.last = null;
  st.history = [st.h];
}

/**
 * The state plain decoding would hold after convLen tokens: h with the pending (x, raw dt, B) rows folded
 * in, by the float64 reference multistep (replay only, no new steps). With nothing pending, h itself.
 */
export function foldedState(st: SpecState): Tensor {
  const r = st.pending.x.length;
  if (r === 0) return st.h;
  if (!st.A) throw new ArgumentError('speculative state', 'a forward before pending rows exist', 'no A recorded');
  const stack = (rows: Float64Array[], w: number, shape: number[]) => {
    const t = Tensor.zeros(shape);
    rows.forEach((row, k) => t.data.set(row, k * w));
    return t;
  };
  const { dim, G, N } = st;
  return refMultistep({
    hI: st.h,
    xCache: stack(st.pending.x, dim, [1, r, dim]),
    deltaCache: stack(st.pending.delta, dim, [1, r, dim]),
    BCache: stack(st.pending.B, G * N, [1, r, G, N]),
    recomputeSteps: r,
    x: Tensor.zeros([1, 0, dim]),
    delta: Tensor.zeros([1, 0, dim]),
    B: Tensor.zeros([1, 0, G, N]),
    C: Tensor.zeros([1, 0, G, N]),
    A: st.A,
    deltaBias: st.deltaBias ?? undefined,
    deltaSoftplus: true,
  }).hJ;
}

/** Bytes held by the SSM side of the state (float32 on a device): cached state, pending rows, stored states. */
export function stateBytes(st: SpecState): number {
  const f = 4;
  const stateB = st.dim * st.N * f;
  const rows = st.pending.x.length * (2 * st.dim + st.G * st.N) * f;
  return stateB + rows + (st.scheme === 'per-position' ? (st.history.length - 1) * stateB : st.last ? 2 * stateB : 0);
}
