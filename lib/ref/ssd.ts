/**
 * Mamba-2 state space duality (SSD), float64: scalar decay per head, so the scan is linear
 * attention with a learned forgetting gate (PAPER.md §2, Mamba-2 variant).
 *
 * Per head h (group g = ⌊h/(H/G)⌋), state H_t ∈ ℝ^{P×N}:
 *   Δ_t = softplus(dt_t + dt_bias_h) (if dt_softplus),  a_t = Δ_t·A_h  (log of Ā_t = exp(Δ_t A_h))
 *   H_t = exp(a_t) H_{t−1} + (Δ_t x_t) B_tᵀ,           H_{−1} = initial state (0 by default)
 *   y_t = H_t C_t + D_h x_t,   out_t = y_t · silu(z_t)   if z is given
 *
 * Three forms, checked against each other by the property tests:
 *  - ssdSequential: the recurrence above, step by step.
 *  - ssdChunked: the chunked SSD algorithm of mamba_ssm ops/triton/ssd_combined.py::ssd_chunk_scan_combined_ref
 *    (chunk_state → state_passing → chunk_scan). With cum_t = Σ_{r=t0..t} a_r inside a chunk [t0, t1):
 *      S_c   = Σ_{s∈c} exp(cum_{t1−1} − cum_s) X̃_s B_sᵀ                  (chunk state from zero, X̃ = Δ·x)
 *      H_c+1 = exp(cum_{t1−1}) H_c + S_c,  H_0 = initial state        (state passing; final state = H_C)
 *      y_t   = exp(cum_t) H_c C_t + Σ_{s∈c, s≤t} exp(cum_t − cum_s) (C_t·B_s) X̃_s      (chunk scan)
 *  - ssdMinimalDiscrete: mamba_ssm modules/ssd_minimal.py::ssd_minimal_discrete, the chunked form on
 *    already-discretised inputs (X = x·Δ, A = A·Δ per step, B/C per head).
 *
 * Layouts (upstream): x, z, out (batch, L, H, P); dt (batch, L, H); A, D, dt_bias (H);
 * B, C (batch, L, G, N); states (batch, H, P, N).
 */
import { ArgumentError } from '../errors.js';
import { Tensor, dims } from '../tensor.js';
import { silu, siluGrad, softplusGrad } from './activations.js';
import { discretizeA, discretizeDelta, scaleByDelta } from './discretize.js';

export interface SsdInputs {
  x: Tensor;
  delta: Tensor;
  A: Tensor;
  B: Tensor;
  C: Tensor;
  D?: Tensor;
  z?: Tensor;
  deltaBias?: Tensor;
  deltaSoftplus?: boolean;
  initialState?: Tensor;
}

export interface SsdOutputs {
  out: Tensor; // (batch, L, H, P)
  finalState: Tensor; // (batch, H, P, N)
}

export interface SsdDims {
  batch: number;
  L: number;
  H: number;
  P: number;
  G: number;
  N: number;
}

export function ssdDims(inp: SsdInputs): SsdDims {
  const s = dims({
    x: [inp.x, ['batch', 'L', 'H', 'P']],
    delta: [inp.delta, ['batch', 'L', 'H']],
    A: [inp.A, ['H']],
    B: [inp.B, ['batch', 'L', 'G', 'N']],
    C: [inp.C, ['batch', 'L', 'G', 'N']],
    D: [inp.D, ['H']],
    z: [inp.z, ['batch', 'L', 'H', 'P']],
    deltaBias: [inp.deltaBias, ['H']],
    initialState: [inp.initialState, ['batch', 'H', 'P', 'N']],
  });
  if (s.H % s.G !== 0) throw new ArgumentError('B groups', `a divisor of heads=${s.H}`, s.G);
  return s;
}

/** Δ_t per (batch, L, H): softplus(dt + dt_bias) or dt + dt_bias. */
function ssdDelta(inp: SsdInputs, s: SsdDims): Float64Array {
  const out = new Float64Array(s.batch * s.L * s.H);
  for (let i = 0; i < out.length; i++) {
    const v = inp.delta.data[i] + (inp.deltaBias ? inp.deltaBias.data[i % s.H] : 0);
    out[i] = discretizeDelta(v, inp.deltaSoftplus === true);
  }
  return out;
}

export function ssdSequential(inp: SsdInputs): SsdOutputs {
  const s = ssdDims(inp);
  const { batch, L, H, P, G, N } = s;
  const delta = ssdDelta(inp, s);
  const out = Tensor.zeros([batch, L, H, P], 'float64', 'out');
  const st = Tensor.zeros([batch, H, P, N], 'float64', 'final_state');
  if (inp.initialState) st.data.set(inp.initialState.data);
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < L; t++) {
      for (let h = 0; h < H; h++) {
        const g = Math.floor(h / (H / G));
        const deltaT = delta[(b * L + t) * H + h];
        const decay = discretizeA(deltaT, inp.A.data[h]);
        const bo = ((b * L + t) * G + g) * N;
        for (let p = 0; p < P; p++) {
          const xi = ((b * L + t) * H + h) * P + p;
          const xv = inp.x.data[xi];
          let y = 0;
          for (let n = 0; n < N; n++) {
            const si = ((b * H + h) * P + p) * N + n;
            st.data[si] = decay * st.data[si] + scaleByDelta(deltaT, xv) * inp.B.data[bo + n];
            y += st.data[si] * inp.C.data[bo + n];
          }
          if (inp.D) y += inp.D.data[h] * xv;
          if (inp.z) y *= silu(inp.z.data[xi]);
          out.data[xi] = y;
        }
      }
    }
  }
  return { out, finalState: st };
}

/**
 * The chunked SSD core on discretised inputs: X̃ (batch, L, H, P), a (batch, L, H) log-decays,
 * B, C (batch, L, G, N), initial state (batch, H, P, N). Returns Y (no D, no gate) and the final state.
 */
export function ssdDiscreteChunked(
  X: Tensor,
  a: Tensor,
  B: Tensor,
  C: Tensor,
  chunkSize: number,
  initialState?: Tensor,
): { Y: Tensor; finalState: Tensor } {
  if (!Number.isInteger(chunkSize) || chunkSize <= 0)
    throw new ArgumentError('chunkSize', 'a positive integer', chunkSize);
  const { batch, L, H, P, G, N } = dims({
    X: [X, ['batch', 'L', 'H', 'P']],
    A: [a, ['batch', 'L', 'H']],
    B: [B, ['batch', 'L', 'G', 'N']],
    C: [C, ['batch', 'L', 'G', 'N']],
    initialState: [initialState, ['batch', 'H', 'P', 'N']],
  }) as unknown as SsdDims;
  if (H % G !== 0) throw new ArgumentError('B groups', `a divisor of heads=${H}`, G);
  const Y = Tensor.zeros([batch, L, H, P], 'float64', 'Y');
  const Hst = Tensor.zeros([batch, H, P, N], 'float64', 'final_state');
  if (initialState) Hst.data.set(initialState.data);
  const cum = new Float64Array(chunkSize);
  const cbw = new Float64Array(chunkSize);
  const ew = new Float64Array(chunkSize);
  const S = new Float64Array(P * N);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / (H / G));
      const hOff = (b * H + h) * P * N;
      const bIdx = (t: number, n: number) => ((b * L + t) * G + g) * N + n;
      const xIdx = (t: number, p: number) => ((b * L + t) * H + h) * P + p;
      for (let t0 = 0; t0 < L; t0 += chunkSize) {
        const t1 = Math.min(L, t0 + chunkSize);
        let c = 0;
        for (let t = t0; t < t1; t++) cum[t - t0] = c += a.data[(b * L + t) * H + h];
        const total = cum[t1 - 1 - t0];
        // chunk scan: outputs of this chunk from the state entering it (H_c) and the chunk itself;
        // C_t·B_s and the decays exp(cum_t − cum_s) do not depend on p: computed once per (t, s)
        for (let t = t0; t < t1; t++) {
          const ct = cum[t - t0];
          const et = Math.exp(ct);
          for (let s = t0; s <= t; s++) {
            let cb = 0;
            for (let n = 0; n < N; n++) cb += C.data[bIdx(t, n)] * B.data[bIdx(s, n)];
            cbw[s - t0] = cb;
            ew[s - t0] = Math.exp(ct - cum[s - t0]);
          }
          for (let p = 0; p < P; p++) {
            let y = 0;
            for (let n = 0; n < N; n++) y += et * Hst.data[hOff + p * N + n] * C.data[bIdx(t, n)];
            for (let s = t0; s <= t; s++) y += ew[s - t0] * cbw[s - t0] * X.data[xIdx(s, p)];
            Y.data[xIdx(t, p)] = y;
          }
        }
        // chunk state from zero, then state passing H_{c+1} = exp(total) H_c + S_c
        S.fill(0);
        for (let s = t0; s < t1; s++) {
          const w = Math.exp(total - cum[s - t0]);
          for (let p = 0; p < P; p++)
            for (let n = 0; n < N; n++) S[p * N + n] += w * X.data[xIdx(s, p)] * B.data[bIdx(s, n)];
        }
        const decay = Math.exp(total);
        for (let i = 0; i < P * N; i++) Hst.data[hOff + i] = decay * Hst.data[hOff + i] + S[i];
      }
    }
  }
  return { Y, finalState: Hst };
}

/** Chunked SSD with upstream's preprocessing (dt_bias, softplus, X̃ = Δx, a = ΔA) and epilogue (D, z). */
export function ssdChunked(inp: SsdInputs, chunkSize: number): SsdOutputs {
  const s = ssdDims(inp);
  const { batch, L, H, P } = s;
  const delta = ssdDelta(inp, s);
  const Xt = inp.x.map((v, i) => scaleByDelta(delta[Math.floor(i / P)], v), 'float64'); // X = Δ·x
  // a_t = Δ_t·A = log Ā_t: the chunked form sums these inside a chunk (Π Ā = exp(Σ a))
  const a = Tensor.from(
    delta.map((deltaT, i) => deltaT * inp.A.data[i % H]),
    [batch, L, H],
  );
  const { Y, finalState } = ssdDiscreteChunked(Xt, a, inp.B, inp.C, chunkSize, inp.initialState);
  const out = Y.map((y, i) => {
    const xv = inp.x.data[i];
    let v = inp.D ? y + inp.D.data[Math.floor(i / P) % H] * xv : y;
    if (inp.z) v *= silu(inp.z.data[i]);
    return v;
  }).named('out');
  return { out, finalState };
}

/** ssd_minimal_discrete: X (batch, L, H, P), A (batch, L, H), B, C (batch, L, H, N), initial (batch, 1, H, P, N). */
export function ssdMinimalDiscrete(
  X: Tensor,
  A: Tensor,
  B: Tensor,
  C: Tensor,
  blockLen: number,
  initialStates?: Tensor,
): { Y: Tensor; finalState: Tensor } {
  const init = initialStates
    ? initialStates.reshape(initialStates.shape.filter((_, i) => i !== 1)).named('initial_states')
    : undefined;
  if (initialStates)
    dims({ initial_states: [initialStates, [X.shape[0], 1, X.shape[2], X.shape[3], B.shape[3] ?? -1]] });
  return ssdDiscreteChunked(X, A, B, C, blockLen, init);
}

export interface SsdGrads {
  dx: Tensor;
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
 * Backward of the SSD scan (any of the three forms: they compute the same function). It runs the
 * recurrence backwards — allowed by the chunked form's equality with `ssdSequential` — carrying
 * dH = ∂ℓ/∂H_t per (batch, head), dH_{L−1} = d final_state:
 *   gate/skip  as the selective scan:     dz = dout·y·silu'(z);  dy = dout·silu(z);  dD_h += Σ_p dy_p x_p
 *   readout    y_p = Σ_n H_pn C_n + D x_p: dC_n += Σ_p dy_p H_pn;  dH_pn += dy_p C_n;  dx_p += dy_p D
 *   step       H_pn = e^{Δ A} H'_pn + Δ x_p B_n:
 *              dΔ += Σ_pn dH_pn (A e^{ΔA} H'_pn + x_p B_n);  dA_h += Σ_pn dH_pn Δ e^{ΔA} H'_pn;
 *              dx_p += Σ_n dH_pn Δ B_n;  dB_n += Σ_p dH_pn Δ x_p;  then dH ← e^{ΔA} dH
 *   Δ          Δ = softplus(dt + dt_bias): d dt = dΔ·softplus'(dt + dt_bias);  d dt_bias_h = Σ d dt
 * B and C are shared by the heads of a group, so their gradients add over those heads.
 */
export function ssdBackward(
  inp: SsdInputs,
  dout: Tensor,
  dFinalState?: Tensor,
  /** the forward's outputs on these inputs, where the caller has them (a training step): not run again */
  forwardOutputs?: SsdOutputs,
): SsdOutputs & SsdGrads {
  const s = ssdDims(inp);
  const { batch, L, H, P, G, N } = s;
  dims({ dout: [dout, [batch, L, H, P]], dFinalState: [dFinalState, [batch, H, P, N]] });
  const fwd = forwardOutputs ?? ssdSequential(inp);
  const delta = ssdDelta(inp, s);
  const { x, A, B, C, D, z, deltaBias, initialState } = inp;
  const g = {
    dx: Tensor.zeros(x.shape, 'float64', 'dx'),
    ddelta: Tensor.zeros(inp.delta.shape, 'float64', 'ddt'),
    dA: Tensor.zeros(A.shape, 'float64', 'dA'),
    dB: Tensor.zeros(B.shape, 'float64', 'dB'),
    dC: Tensor.zeros(C.shape, 'float64', 'dC'),
    dD: D ? Tensor.zeros(D.shape, 'float64', 'dD') : undefined,
    dz: z ? Tensor.zeros(z.shape, 'float64', 'dz') : undefined,
    ddeltaBias: deltaBias ? Tensor.zeros(deltaBias.shape, 'float64', 'ddt_bias') : undefined,
    dInitialState: initialState ? Tensor.zeros(initialState.shape, 'float64', 'dinitial_states') : undefined,
  };
  const PN = P * N;
  const Hs = new Float64Array((L + 1) * PN); // Hs[(t+1)·PN + p·N + n] = H_t of one (batch, head)
  const ys = new Float64Array(L * P);
  const dH = new Float64Array(PN);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < H; h++) {
      const grp = Math.floor(h / (H / G));
      const a = A.data[h];
      if (initialState) Hs.set(initialState.data.subarray((b * H + h) * PN, (b * H + h + 1) * PN), 0);
      else Hs.fill(0, 0, PN);
      for (let t = 0; t < L; t++) {
        const deltaT = delta[(b * L + t) * H + h];
        const decay = discretizeA(deltaT, a);
        const bo = ((b * L + t) * G + grp) * N;
        for (let p = 0; p < P; p++) {
          const xv = x.data[((b * L + t) * H + h) * P + p];
          let y = D ? D.data[h] * xv : 0;
          for (let n = 0; n < N; n++) {
            const v = decay * Hs[t * PN + p * N + n] + scaleByDelta(deltaT, xv) * B.data[bo + n];
            Hs[(t + 1) * PN + p * N + n] = v;
            y += v * C.data[bo + n];
          }
          ys[t * P + p] = y;
        }
      }
      if (dFinalState) dH.set(dFinalState.data.subarray((b * H + h) * PN, (b * H + h + 1) * PN));
      else dH.fill(0);
      for (let t = L - 1; t >= 0; t--) {
        const deltaT = delta[(b * L + t) * H + h];
        const decay = discretizeA(deltaT, a);
        const bo = ((b * L + t) * G + grp) * N;
        let dDeltaT = 0;
        for (let p = 0; p < P; p++) {
          const xi = ((b * L + t) * H + h) * P + p;
          const xv = x.data[xi];
          let dy = dout.data[xi];
          if (z) {
            g.dz!.data[xi] = dy * ys[t * P + p] * siluGrad(z.data[xi]);
            dy *= silu(z.data[xi]);
          }
          if (D) {
            g.dD!.data[h] += dy * xv;
            g.dx.data[xi] += dy * D.data[h];
          }
          for (let n = 0; n < N; n++) {
            const k = p * N + n;
            g.dC.data[bo + n] += dy * Hs[(t + 1) * PN + k];
            dH[k] += dy * C.data[bo + n];
            const hPrev = Hs[t * PN + k];
            dDeltaT += dH[k] * (a * decay * hPrev + xv * B.data[bo + n]);
            g.dA.data[h] += dH[k] * deltaT * decay * hPrev;
            g.dx.data[xi] += dH[k] * deltaT * B.data[bo + n];
            g.dB.data[bo + n] += dH[k] * deltaT * xv;
            dH[k] = dH[k] * decay;
          }
        }
        const raw = inp.delta.data[(b * L + t) * H + h] + (deltaBias ? deltaBias.data[h] : 0);
        const dRaw = inp.deltaSoftplus ? dDeltaT * softplusGrad(raw) : dDeltaT;
        g.ddelta.data[(b * L + t) * H + h] = dRaw;
        if (g.ddeltaBias) g.ddeltaBias.data[h] += dRaw;
      }
      if (g.dInitialState) g.dInitialState.data.set(dH, (b * H + h) * PN);
    }
  }
  return { ...fwd, ...g };
}
