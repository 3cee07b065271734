/**
 * Mamba-1 selective scan, float64 — mirrors mamba_ssm ops/selective_scan_interface.py::selective_scan_ref.
 *
 * Glossary: u input (the paper's x), Δ step size, A (dim × N) state matrix (diagonal per channel),
 * B, C input/output projections of the state, h the state (dim × N), D skip, z gate.
 *
 *   Δ_t   = softplus(delta_t + delta_bias)   if delta_softplus, else delta_t + delta_bias
 *   Ā_t   = exp(Δ_t · A)                       (zero-order hold for A)
 *   B̄_t u_t = Δ_t · B_t · u_t                  (Euler for B, as upstream)
 *   h_t   = Ā_t ⊙ h_{t−1} + B̄_t u_t,  h_{−1} = initial_state (0 upstream)
 *   y_t   = C_t · h_t + D · u_t
 *   out_t = y_t · silu(z_t)                    if z is given
 *
 * B and C each come in three layouts: per time (batch, N, L); grouped (batch, G, N, L), channel d
 * using group ⌊d / (dim/G)⌋; time-invariant (dim, N). `last_state` = h_{L−1}.
 * `initialState` is this project's extension (upstream's ref starts from 0); it makes
 * "split the sequence and carry last_state" expressible.
 */
import { ArgumentError } from '../errors.js';
import { Tensor, dims } from '../tensor.js';
import { silu, siluGrad, softplusGrad } from './activations.js';
import { discretizeA, discretizeBx, discretizeDelta } from './discretize.js';

export interface SelectiveScanInputs {
  u: Tensor; // (batch, dim, L)
  delta: Tensor; // (batch, dim, L)
  A: Tensor; // (dim, N)
  B: Tensor; // (batch, N, L) | (batch, G, N, L) | (dim, N)
  C: Tensor; // same layouts as B
  D?: Tensor; // (dim)
  z?: Tensor; // (batch, dim, L)
  deltaBias?: Tensor; // (dim)
  deltaSoftplus?: boolean;
  initialState?: Tensor; // (batch, dim, N)
}

export interface SelectiveScanOutputs {
  out: Tensor; // (batch, dim, L)
  lastState: Tensor; // (batch, dim, N)
}

/** How B or C is laid out, and the flat index of element (b, d, n, t). */
export interface ProjectionLayout {
  kind: 'time' | 'grouped' | 'invariant';
  groups: number;
  index: (b: number, d: number, n: number, t: number) => number;
}

/** Classify B or C against (batch, dim, N, L) and return its indexer; throws ShapeError on mismatch. */
function projectionLayout(name: string, t: Tensor, batch: number, dim: number, N: number, L: number): ProjectionLayout {
  if (t.rank === 2) {
    dims({ [name]: [t, [dim, N]] });
    return { kind: 'invariant', groups: 1, index: (_b, d, n) => d * N + n };
  }
  if (t.rank === 3) {
    dims({ [name]: [t, [batch, N, L]] });
    return { kind: 'time', groups: 1, index: (b, _d, n, tt) => (b * N + n) * L + tt };
  }
  if (t.rank === 4) {
    const G = t.shape[1];
    dims({ [name]: [t, [batch, G, N, L]] });
    if (G <= 0 || dim % G !== 0) throw new ArgumentError(`${name} groups`, `a divisor of dim=${dim}`, G);
    const per = dim / G;
    return { kind: 'grouped', groups: G, index: (b, d, n, tt) => ((b * G + Math.floor(d / per)) * N + n) * L + tt };
  }
  dims({ [name]: [t, ['batch', 'N', 'L']] }); // throws with the expected per-time layout
  throw new Error('unreachable');
}

/** Validate every input of a scan (shapes, layouts, finiteness) and return the sizes and B/C layouts. */
export function selectiveScanDims(inp: SelectiveScanInputs): {
  batch: number;
  dim: number;
  L: number;
  N: number;
  Bl: ProjectionLayout;
  Cl: ProjectionLayout;
} {
  const { u, delta, A, B, C, D, z, deltaBias, initialState } = inp;
  const { batch, dim, L, N } = dims({
    u: [u, ['batch', 'dim', 'L']],
    delta: [delta, ['batch', 'dim', 'L']],
    A: [A, ['dim', 'N']],
    D: [D, ['dim']],
    z: [z, ['batch', 'dim', 'L']],
    deltaBias: [deltaBias, ['dim']],
    initialState: [initialState, ['batch', 'dim', 'N']],
  });
  const Bl = projectionLayout('B', B, batch, dim, N, L);
  const Cl = projectionLayout('C', C, batch, dim, N, L);
  dims({ B: [B, B.shape], C: [C, C.shape] }); // finiteness
  return { batch: batch, dim: dim, L: L, N: N, Bl, Cl };
}

/** Δ_t of element i (channel d) before the softplus: delta_t + delta_bias_d. */
function rawDelta(inp: SelectiveScanInputs, i: number, d: number): number {
  return inp.delta.data[i] + (inp.deltaBias ? inp.deltaBias.data[d] : 0);
}

/** h_{−1} of channel (b, d) into `h` (the initial state, or zeros). */
function loadInitialState(
  inp: SelectiveScanInputs,
  h: Float64Array,
  b: number,
  d: number,
  dim: number,
  N: number,
): void {
  for (let n = 0; n < N; n++) h[n] = inp.initialState ? inp.initialState.data[(b * dim + d) * N + n] : 0;
}

export function selectiveScan(inp: SelectiveScanInputs): SelectiveScanOutputs {
  const { u, A, B, C, D, z } = inp;
  const { batch, dim, L, N, Bl, Cl } = selectiveScanDims(inp);
  const out = Tensor.zeros([batch, dim, L], 'float64', 'out');
  const last = Tensor.zeros([batch, dim, N], 'float64', 'last_state');
  const h = new Float64Array(N);
  for (let b = 0; b < batch; b++) {
    for (let d = 0; d < dim; d++) {
      loadInitialState(inp, h, b, d, dim, N);
      for (let t = 0; t < L; t++) {
        const i = (b * dim + d) * L + t;
        const deltaT = discretizeDelta(rawDelta(inp, i, d), inp.deltaSoftplus === true);
        const ut = u.data[i];
        let y = 0;
        for (let n = 0; n < N; n++) {
          h[n] = discretizeA(deltaT, A.data[d * N + n]) * h[n] + discretizeBx(deltaT, B.data[Bl.index(b, d, n, t)], ut);
          y += C.data[Cl.index(b, d, n, t)] * h[n];
        }
        if (D) y += D.data[d] * ut;
        if (z) y *= silu(z.data[i]);
        out.data[i] = y;
      }
      last.data.set(h, (b * dim + d) * N);
    }
  }
  return { out, lastState: last };
}

export interface SelectiveScanGrads {
  du: Tensor;
  ddelta: Tensor;
  dA: Tensor;
  dB: Tensor;
  dC: Tensor;
  dD?: Tensor;
  dz?: Tensor;
  ddeltaBias?: Tensor;
  dInitialState?: Tensor;
}

/**
 * Backward of `selectiveScan` (mamba_ssm's selective_scan_bwd, as torch.autograd computes it on the ref):
 * given dout = ∂ℓ/∂out and dlast = ∂ℓ/∂last_state, the gradient of every input, in the input's shape.
 * The recurrence runs backwards in time, carrying dh = ∂ℓ/∂h_t (dh_{L−1} starts at dlast):
 *   gate      out = y·silu(z):        dz = dout·y·silu'(z),  dy = dout·silu(z)
 *   skip      y += D·u:               dD += dy·u,             du += dy·D
 *   readout   y = Σ_n C_n h_n:        dC_n += dy·h_n,          dh_n += dy·C_n
 *   step      h_n = Ā_n h'_n + Δ B_n u (Ā_n = exp(Δ A_n), h' = h_{t−1}):
 *             dΔ += Σ_n dh_n (A_n Ā_n h'_n + B_n u),  dA_n += dh_n Δ Ā_n h'_n,
 *             dB_n += dh_n Δ u,  du += Σ_n dh_n Δ B_n,  then dh_n ← dh_n Ā_n  (onto h_{t−1})
 *   Δ         Δ = softplus(delta + bias): d delta = dΔ·softplus'(delta + bias), d bias = Σ_t d delta
 * Grouped and time-invariant B/C accumulate over the channels (and times) that share them.
 */
export function selectiveScanBackward(
  inp: SelectiveScanInputs,
  dout: Tensor,
  dLastState?: Tensor,
): SelectiveScanOutputs & SelectiveScanGrads {
  const { u, delta, A, B, C, D, z, deltaBias, initialState } = inp;
  const { batch, dim, L, N, Bl, Cl } = selectiveScanDims(inp);
  dims({ dout: [dout, [batch, dim, L]], dLastState: [dLastState, [batch, dim, N]] });
  const fwd = selectiveScan(inp);
  const g = {
    du: Tensor.zeros(u.shape, 'float64', 'du'),
    ddelta: Tensor.zeros(delta.shape, 'float64', 'ddelta'),
    dA: Tensor.zeros(A.shape, 'float64', 'dA'),
    dB: Tensor.zeros(B.shape, 'float64', 'dB'),
    dC: Tensor.zeros(C.shape, 'float64', 'dC'),
    dD: D ? Tensor.zeros(D.shape, 'float64', 'dD') : undefined,
    dz: z ? Tensor.zeros(z.shape, 'float64', 'dz') : undefined,
    ddeltaBias: deltaBias ? Tensor.zeros(deltaBias.shape, 'float64', 'ddelta_bias') : undefined,
    dInitialState: initialState ? Tensor.zeros(initialState.shape, 'float64', 'dinitial_state') : undefined,
  };
  const hs = new Float64Array((L + 1) * N); // hs[(t+1)·N + n] = h_t, hs[n] = h_{−1}
  const deltas = new Float64Array(L);
  const ys = new Float64Array(L); // y before the gate
  const dh = new Float64Array(N);
  for (let b = 0; b < batch; b++) {
    for (let d = 0; d < dim; d++) {
      // forward again, keeping every state of this channel
      loadInitialState(inp, hs, b, d, dim, N);
      for (let t = 0; t < L; t++) {
        const i = (b * dim + d) * L + t;
        const deltaT = discretizeDelta(rawDelta(inp, i, d), inp.deltaSoftplus === true);
        deltas[t] = deltaT;
        let y = D ? D.data[d] * u.data[i] : 0;
        for (let n = 0; n < N; n++) {
          const h =
            discretizeA(deltaT, A.data[d * N + n]) * hs[t * N + n] +
            discretizeBx(deltaT, B.data[Bl.index(b, d, n, t)], u.data[i]);
          hs[(t + 1) * N + n] = h;
          y += C.data[Cl.index(b, d, n, t)] * h;
        }
        ys[t] = y;
      }
      for (let n = 0; n < N; n++) dh[n] = dLastState ? dLastState.data[(b * dim + d) * N + n] : 0;
      for (let t = L - 1; t >= 0; t--) {
        const i = (b * dim + d) * L + t;
        const ut = u.data[i];
        const deltaT = deltas[t];
        let dy = dout.data[i];
        if (z) {
          g.dz!.data[i] = dy * ys[t] * siluGrad(z.data[i]);
          dy *= silu(z.data[i]);
        }
        if (D) {
          g.dD!.data[d] += dy * ut;
          g.du.data[i] += dy * D.data[d];
        }
        let dDeltaT = 0;
        for (let n = 0; n < N; n++) {
          const ci = Cl.index(b, d, n, t);
          const bi = Bl.index(b, d, n, t);
          g.dC.data[ci] += dy * hs[(t + 1) * N + n];
          dh[n] += dy * C.data[ci];
          const a = A.data[d * N + n];
          const decay = discretizeA(deltaT, a);
          const hPrev = hs[t * N + n];
          dDeltaT += dh[n] * (a * decay * hPrev + B.data[bi] * ut);
          g.dA.data[d * N + n] += dh[n] * deltaT * decay * hPrev;
          g.dB.data[bi] += dh[n] * deltaT * ut;
          g.du.data[i] += dh[n] * deltaT * B.data[bi];
          dh[n] = dh[n] * decay;
        }
        const dRaw = inp.deltaSoftplus ? dDeltaT * softplusGrad(rawDelta(inp, i, d)) : dDeltaT;
        g.ddelta.data[i] = dRaw;
        if (g.ddeltaBias) g.ddeltaBias.data[d] += dRaw;
      }
      if (g.dInitialState) g.dInitialState.data.set(dh, (b * dim + d) * N);
    }
  }
  return { ...fwd, ...g };
}
