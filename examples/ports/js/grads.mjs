// The backward ops of the JavaScript example port: each runs its forward, keeping what the backward needs,
// then walks back through it by hand (the derivative of every line written beside it). Inputs are the
// forward's plus d<output>; outputs are the forward's outputs and d<input> for every input given.
//   σ(x) = 1/(1+e^{−x}),  silu(x) = x σ(x),  silu'(x) = σ(x)(1 + x(1 − σ(x))),
//   softplus'(x) = σ(x), or 1 above torch's threshold 20 (where softplus returns x).
import { silu, softplus, zeros } from './kernels.mjs';

const sigmoid = (x) => 1 / (1 + Math.exp(-x));
const siluGrad = (x) => sigmoid(x) * (1 + x * (1 - sigmoid(x)));
const softplusGrad = (x) => (x > 20 ? 1 : sigmoid(x));

export const GRADS = {
  // h_t = exp(δ_t A) h_{t−1} + δ_t B_t u_t,  y_t = C_t·h_t + D u_t,  out_t = y_t silu(z_t),  δ_t = softplus(Δ_t + bias)
  selective_scan_grad(I, a) {
    const { u, delta, A, B, C, D, z, delta_bias: bias, initial_state: h0, dout, dlast_state: dlast } = I;
    const [nb, dim, L] = u.shape;
    const N = A.shape[1];
    const G = B.shape.length === 4 ? B.shape[1] : 1;
    const idx = (b, d, n, t) => ((b * G + Math.floor(d / (dim / G))) * N + n) * L + t; // B, C: (b, [G,] N, L)
    const g = {
      du: zeros(u.shape),
      ddelta: zeros(u.shape),
      dA: zeros(A.shape),
      dB: zeros(B.shape),
      dC: zeros(C.shape),
    };
    if (D) g.dD = zeros(D.shape);
    if (z) g.dz = zeros(z.shape);
    if (bias) g.ddelta_bias = zeros(bias.shape);
    if (h0) g.dinitial_state = zeros(h0.shape);
    const out = zeros(u.shape);
    const last = zeros([nb, dim, N]);
    for (let b = 0; b < nb; b++)
      for (let d = 0; d < dim; d++) {
        const hs = [Array.from({ length: N }, (_, n) => (h0 ? h0.data[(b * dim + d) * N + n] : 0))]; // h_0 … h_L
        const dts = [];
        const ys = [];
        for (let t = 0; t < L; t++) {
          const i = (b * dim + d) * L + t;
          const raw = delta.data[i] + (bias ? bias.data[d] : 0);
          const dt = a.delta_softplus ? softplus(raw) : raw;
          const h = hs[t].map(
            (hv, n) => Math.exp(dt * A.data[d * N + n]) * hv + dt * B.data[idx(b, d, n, t)] * u.data[i],
          );
          let y = D ? D.data[d] * u.data[i] : 0;
          for (let n = 0; n < N; n++) y += C.data[idx(b, d, n, t)] * h[n];
          hs.push(h);
          dts.push([raw, dt]);
          ys.push(y);
          out.data[i] = z ? y * silu(z.data[i]) : y;
        }
        last.data.set(hs[L], (b * dim + d) * N);
        const dh = Array.from({ length: N }, (_, n) => dlast.data[(b * dim + d) * N + n]); // ∂ℓ/∂h_L
        for (let t = L - 1; t >= 0; t--) {
          const i = (b * dim + d) * L + t;
          const [raw, dt] = dts[t];
          let dy = dout.data[i];
          if (z) {
            g.dz.data[i] = dy * ys[t] * siluGrad(z.data[i]);
            dy *= silu(z.data[i]);
          } // out = y silu(z)
          if (D) {
            g.dD.data[d] += dy * u.data[i];
            g.du.data[i] += dy * D.data[d];
          } // y ∋ D u
          let ddt = 0;
          for (let n = 0; n < N; n++) {
            const j = idx(b, d, n, t);
            dh[n] += dy * C.data[j]; // y = C·h_t
            g.dC.data[j] += dy * hs[t + 1][n];
            const e = Math.exp(dt * A.data[d * N + n]);
            ddt += dh[n] * (A.data[d * N + n] * e * hs[t][n] + B.data[j] * u.data[i]); // h_t = e^{δA} h_{t−1} + δ B u
            g.dA.data[d * N + n] += dh[n] * dt * e * hs[t][n];
            g.dB.data[j] += dh[n] * dt * u.data[i];
            g.du.data[i] += dh[n] * dt * B.data[j];
            dh[n] *= e; // ∂ℓ/∂h_{t−1}
          }
          const dRaw = a.delta_softplus ? ddt * softplusGrad(raw) : ddt;
          g.ddelta.data[i] = dRaw;
          if (bias) g.ddelta_bias.data[d] += dRaw;
        }
        if (h0) g.dinitial_state.data.set(dh, (b * dim + d) * N);
      }
    return { out, last_state: last, ...g };
  },

  // s_t = bias + Σ_k w_k row_{t+k} over row = [initial_states | x],  out = silu(s) or s,  final = row's last W−1
  causal_conv1d_grad(I, a) {
    const { x, weight, bias, initial_states: init, dout, dfinal_states: dfin } = I;
    const [nb, dim, L] = x.shape;
    const W = weight.shape[1];
    const g = { dx: zeros(x.shape), dweight: zeros(weight.shape) };
    if (bias) g.dbias = zeros(bias.shape);
    if (init) g.dinitial_states = zeros(init.shape);
    const out = zeros(x.shape);
    const fin = zeros([nb, dim, W - 1]);
    for (let b = 0; b < nb; b++)
      for (let d = 0; d < dim; d++) {
        const o = (b * dim + d) * L;
        const row = [
          ...Array.from({ length: W - 1 }, (_, k) => (init ? init.data[(b * dim + d) * (W - 1) + k] : 0)),
          ...x.data.subarray(o, o + L),
        ];
        const drow = new Float64Array(L + W - 1);
        if (dfin) for (let k = 0; k < W - 1; k++) drow[L + k] = dfin.data[(b * dim + d) * (W - 1) + k];
        for (let t = 0; t < L; t++) {
          let s = bias ? bias.data[d] : 0;
          for (let k = 0; k < W; k++) s += weight.data[d * W + k] * row[t + k];
          out.data[o + t] = a.activation ? silu(s) : s;
          const ds = a.activation ? dout.data[o + t] * siluGrad(s) : dout.data[o + t];
          if (bias) g.dbias.data[d] += ds;
          for (let k = 0; k < W; k++) {
            g.dweight.data[d * W + k] += ds * row[t + k];
            drow[t + k] += ds * weight.data[d * W + k];
          }
        }
        fin.data.set(row.slice(L), (b * dim + d) * (W - 1));
        g.dx.data.set(drow.subarray(W - 1), o);
        if (init) g.dinitial_states.data.set(drow.subarray(0, W - 1), (b * dim + d) * (W - 1));
      }
    return { out, ...(init ? { final_states: fin } : {}), ...g };
  },

  // per group of G values: v = x (or x silu(z) when gating before), r = (mean v² + ε)^{−1/2}, n = v r,
  // out = n w (· silu(z) when norm before gate);  ∂ℓ/∂v_i = r (dn_i − n_i mean_j(dn_j n_j))
  gated_rmsnorm_grad(I, a) {
    const { x, weight, z, dout } = I;
    const d = x.shape.at(-1);
    const gs = a.group_size ?? d;
    const before = a.norm_before_gate ?? true;
    const out = zeros(x.shape);
    const g = { dx: zeros(x.shape), dweight: zeros(weight.shape) };
    if (z) g.dz = zeros(z.shape);
    for (let r = 0; r < x.data.length / d; r++)
      for (let g0 = 0; g0 < d; g0 += gs) {
        const o = r * d + g0;
        const gate = (i) => (z ? silu(z.data[o + i]) : 1);
        const v = Array.from({ length: gs }, (_, i) => (z && !before ? x.data[o + i] * gate(i) : x.data[o + i]));
        const rstd = 1 / Math.sqrt(v.reduce((s, e) => s + e * e, 0) / gs + a.eps);
        const n = v.map((e) => e * rstd);
        const dn = n.map((_, i) => dout.data[o + i] * weight.data[g0 + i] * (before ? gate(i) : 1));
        let dot = 0;
        for (let i = 0; i < gs; i++) {
          out.data[o + i] = n[i] * weight.data[g0 + i] * (before ? gate(i) : 1);
          g.dweight.data[g0 + i] += dout.data[o + i] * n[i] * (before ? gate(i) : 1);
          if (z && before) g.dz.data[o + i] = dout.data[o + i] * n[i] * weight.data[g0 + i] * siluGrad(z.data[o + i]);
          dot += dn[i] * n[i];
        }
        for (let i = 0; i < gs; i++) {
          const dv = rstd * (dn[i] - (n[i] * dot) / gs);
          if (z && !before) {
            g.dx.data[o + i] = dv * gate(i);
            g.dz.data[o + i] = dv * x.data[o + i] * siluGrad(z.data[o + i]);
          } else g.dx.data[o + i] = dv;
        }
      }
    return { out, ...g };
  },

  // the SSD as its recurrence per head h and head channel p (the chunked form computes the same function):
  // S_t = exp(δ_t A_h) S_{t−1} + δ_t x_t B_tᵀ,  y_t = S_t C_t + D_h x_t,  out = y silu(z),  δ_t = softplus(dt_t + bias_h)
  ssd_chunk_scan_grad(I, a) {
    const { x, dt, A, B, C, D, z, dt_bias: bias, initial_states: init, dout } = I;
    const [nb, L, H, P] = x.shape;
    const [G, N] = B.shape.slice(2);
    const g = { dx: zeros(x.shape), ddt: zeros(dt.shape), dA: zeros(A.shape), dB: zeros(B.shape), dC: zeros(C.shape) };
    if (D) g.dD = zeros(D.shape);
    if (z) g.dz = zeros(z.shape);
    if (bias) g.ddt_bias = zeros(bias.shape);
    if (init) g.dinitial_states = zeros(init.shape);
    const out = zeros(x.shape);
    for (let b = 0; b < nb; b++)
      for (let h = 0; h < H; h++) {
        const grp = Math.floor(h / (H / G));
        const bc = (t, n) => ((b * L + t) * G + grp) * N + n;
        const xi = (t, p) => ((b * L + t) * H + h) * P + p;
        const raw = Array.from({ length: L }, (_, t) => dt.data[(b * L + t) * H + h] + (bias ? bias.data[h] : 0));
        const del = raw.map((v) => (a.dt_softplus ? softplus(v) : v));
        const ddel = new Float64Array(L);
        for (let p = 0; p < P; p++) {
          const Ss = [Array.from({ length: N }, (_, n) => (init ? init.data[((b * H + h) * P + p) * N + n] : 0))];
          const ys = [];
          for (let t = 0; t < L; t++) {
            const e = Math.exp(del[t] * A.data[h]);
            const S = Ss[t].map((s, n) => e * s + del[t] * x.data[xi(t, p)] * B.data[bc(t, n)]);
            let y = D ? D.data[h] * x.data[xi(t, p)] : 0;
            for (let n = 0; n < N; n++) y += S[n] * C.data[bc(t, n)];
            Ss.push(S);
            ys.push(y);
            out.data[xi(t, p)] = z ? y * silu(z.data[xi(t, p)]) : y;
          }
          const dS = new Float64Array(N);
          for (let t = L - 1; t >= 0; t--) {
            const i = xi(t, p);
            let dy = dout.data[i];
            if (z) {
              g.dz.data[i] = dy * ys[t] * siluGrad(z.data[i]);
              dy *= silu(z.data[i]);
            }
            if (D) {
              g.dD.data[h] += dy * x.data[i];
              g.dx.data[i] += dy * D.data[h];
            }
            const e = Math.exp(del[t] * A.data[h]);
            for (let n = 0; n < N; n++) {
              dS[n] += dy * C.data[bc(t, n)];
              g.dC.data[bc(t, n)] += dy * Ss[t + 1][n];
              ddel[t] += dS[n] * (A.data[h] * e * Ss[t][n] + x.data[i] * B.data[bc(t, n)]);
              g.dA.data[h] += dS[n] * del[t] * e * Ss[t][n];
              g.dB.data[bc(t, n)] += dS[n] * del[t] * x.data[i];
              g.dx.data[i] += dS[n] * del[t] * B.data[bc(t, n)];
              dS[n] *= e;
            }
          }
          if (init) g.dinitial_states.data.set(dS, ((b * H + h) * P + p) * N);
        }
        for (let t = 0; t < L; t++) {
          const dRaw = a.dt_softplus ? ddel[t] * softplusGrad(raw[t]) : ddel[t];
          g.ddt.data[(b * L + t) * H + h] = dRaw;
          if (bias) g.ddt_bias.data[h] += dRaw;
        }
      }
    return { out, ...g };
  },
};
