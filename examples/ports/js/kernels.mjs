// The forward kernel ops of the JavaScript example port (docs/conform.md), each a plain loop over the math
// its upstream reference states: selective_scan, selective_state_update, causal_conv1d, causal_conv1d_update,
// gated_rmsnorm, ssd_chunk_scan (chunked, as upstream's ssd_chunk_scan_combined_ref), ssd_minimal_discrete,
// multistep. Tensors are { shape, data: Float64Array }, row-major; each op takes (inputs, attrs).
export const softplus = (x) => (x > 20 ? x : Math.log1p(Math.exp(x))); // torch's threshold 20
export const silu = (x) => x / (1 + Math.exp(-x));
export const zeros = (shape) => ({ shape, data: new Float64Array(shape.reduce((p, d) => p * d, 1)) });

export const KERNELS = {
  selective_scan(I, a) {
    const { u, delta, A, B, C, D, z, delta_bias: bias, initial_state: h0 } = I;
    const [nb, dim, L] = u.shape;
    const N = A.shape[1];
    const G = B.shape.length === 4 ? B.shape[1] : 1; // B, C: (b, N, L) or grouped (b, G, N, L)
    const at = (T, b, d, n, t) => T.data[((b * G + Math.floor(d / (dim / G))) * N + n) * L + t];
    const out = zeros([nb, dim, L]);
    const last = zeros([nb, dim, N]);
    for (let b = 0; b < nb; b++)
      for (let d = 0; d < dim; d++) {
        const h = Array.from({ length: N }, (_, n) => (h0 ? h0.data[(b * dim + d) * N + n] : 0));
        for (let t = 0; t < L; t++) {
          const i = (b * dim + d) * L + t;
          let dt = delta.data[i] + (bias ? bias.data[d] : 0);
          if (a.delta_softplus) dt = softplus(dt);
          let y = 0;
          for (let n = 0; n < N; n++) {
            h[n] = Math.exp(dt * A.data[d * N + n]) * h[n] + dt * at(B, b, d, n, t) * u.data[i];
            y += at(C, b, d, n, t) * h[n];
          }
          if (D) y += D.data[d] * u.data[i];
          if (z) y *= silu(z.data[i]);
          out.data[i] = y;
        }
        last.data.set(h, (b * dim + d) * N);
      }
    return { out, last_state: last };
  },
  causal_conv1d(I, a) {
    const { x, weight, bias, initial_states: init } = I;
    const [nb, dim, L] = x.shape;
    const W = weight.shape[1];
    const out = zeros([nb, dim, L]);
    const fin = zeros([nb, dim, W - 1]);
    for (let b = 0; b < nb; b++)
      for (let d = 0; d < dim; d++) {
        // the padded row: W − 1 initial (or zero) steps, then x
        const row = [
          ...Array.from({ length: W - 1 }, (_, k) => (init ? init.data[(b * dim + d) * (W - 1) + k] : 0)),
          ...x.data.subarray((b * dim + d) * L, (b * dim + d + 1) * L),
        ];
        for (let t = 0; t < L; t++) {
          let s = bias ? bias.data[d] : 0;
          for (let k = 0; k < W; k++) s += weight.data[d * W + k] * row[t + k];
          out.data[(b * dim + d) * L + t] = a.activation ? silu(s) : s;
        }
        fin.data.set(row.slice(L, L + W - 1), (b * dim + d) * (W - 1));
      }
    return { out, final_states: fin };
  },
  gated_rmsnorm(I, a) {
    const { x, weight, z } = I;
    const d = x.shape.at(-1);
    const g = a.group_size ?? d;
    const before = a.norm_before_gate ?? true;
    const out = zeros(x.shape);
    for (let r = 0; r < x.data.length / d; r++)
      for (let g0 = 0; g0 < d; g0 += g) {
        const o = r * d + g0;
        const v = Array.from({ length: g }, (_, i) =>
          z && !before ? x.data[o + i] * silu(z.data[o + i]) : x.data[o + i],
        );
        const rstd = 1 / Math.sqrt(v.reduce((s, e) => s + e * e, 0) / g + a.eps);
        for (let i = 0; i < g; i++)
          out.data[o + i] = v[i] * rstd * weight.data[g0 + i] * (z && before ? silu(z.data[o + i]) : 1);
      }
    return { out };
  },
  selective_state_update(I, a) {
    // one step of the scan; state (b, dim, N) or multi-head (b, H, P, N) — both are channels c = h·P + p
    const { state, x, dt, A, B, C, D, z, dt_bias: bias } = I;
    const nb = state.shape[0];
    const N = state.shape.at(-1);
    const dim = x.data.length / nb;
    const P = state.shape.length === 4 ? state.shape[2] : dim;
    const G = B.shape.length === 3 ? B.shape[1] : 1;
    const H = dim / P;
    const out = zeros(x.shape);
    const next = zeros(state.shape);
    for (let b = 0; b < nb; b++)
      for (let c = 0; c < dim; c++) {
        const g = Math.floor(Math.floor(c / P) / (H / G));
        let d = dt.data[b * dim + c] + (bias ? bias.data[c] : 0);
        if (a.dt_softplus) d = softplus(d);
        const xv = x.data[b * dim + c];
        let y = 0;
        for (let n = 0; n < N; n++) {
          const i = (b * dim + c) * N + n;
          next.data[i] = Math.exp(d * A.data[c * N + n]) * state.data[i] + d * B.data[(b * G + g) * N + n] * xv;
          y += C.data[(b * G + g) * N + n] * next.data[i];
        }
        if (D) y += D.data[c] * xv;
        out.data[b * dim + c] = z ? y * silu(z.data[b * dim + c]) : y;
      }
    return { out, state_after: next };
  },
  causal_conv1d_update(I, a) {
    // conv_state (b, dim, S): shifted left, or a circular buffer written at cache_seqlens % S when given
    const { x, conv_state: st, weight, bias, cache_seqlens: seq } = I;
    const [nb, dim, steps] = x.shape;
    const S = st.shape[2];
    const W = weight.shape[1];
    const mod = (i, m) => ((i % m) + m) % m;
    const out = zeros(x.shape);
    const next = { shape: st.shape, data: Float64Array.from(st.data) };
    for (let b = 0; b < nb; b++)
      for (let d = 0; d < dim; d++) {
        const so = (b * dim + d) * S;
        const pos = (k) => (seq ? mod(seq.data[b] - (W - 1) + k, S) : S - (W - 1) + k);
        const row = [
          ...Array.from({ length: W - 1 }, (_, k) => st.data[so + pos(k)]),
          ...x.data.subarray((b * dim + d) * steps, (b * dim + d + 1) * steps),
        ];
        for (let t = 0; t < steps; t++) {
          let s = bias ? bias.data[d] : 0;
          for (let k = 0; k < W; k++) s += weight.data[d * W + k] * row[t + k];
          out.data[(b * dim + d) * steps + t] = a.activation ? silu(s) : s;
        }
        if (seq) for (let s = 0; s < steps; s++) next.data[so + mod(seq.data[b] + s, S)] = row[W - 1 + s];
        else next.data.set([...st.data.subarray(so, so + S), ...row.slice(W - 1)].slice(steps), so);
      }
    return { out, conv_state_after: next };
  },
  ssd_minimal_discrete(I) {
    // already discretised: h_t = exp(A_t) h_{t−1} + X_t B_tᵀ, Y_t = h_t C_t, per head (B, C per head)
    const { X, A, B, C, initial_states: init } = I;
    const [nb, L, H, P] = X.shape;
    const N = B.shape[3];
    const Y = zeros([nb, L, H, P]);
    const fin = zeros([nb, H, P, N]);
    for (let b = 0; b < nb; b++)
      for (let h = 0; h < H; h++)
        for (let p = 0; p < P; p++) {
          const s = Array.from({ length: N }, (_, n) => (init ? init.data[((b * H + h) * P + p) * N + n] : 0));
          for (let t = 0; t < L; t++) {
            const e = Math.exp(A.data[(b * L + t) * H + h]);
            let y = 0;
            for (let n = 0; n < N; n++) {
              s[n] = e * s[n] + X.data[((b * L + t) * H + h) * P + p] * B.data[((b * L + t) * H + h) * N + n];
              y += s[n] * C.data[((b * L + t) * H + h) * N + n];
            }
            Y.data[((b * L + t) * H + h) * P + p] = y;
          }
          fin.data.set(s, ((b * H + h) * P + p) * N);
        }
    return { Y, final_state: fin };
  },
  multistep(I, a) {
    // replay recompute_steps cached rows from h_i without output (→ h_j), then the new steps with output (→ h_k)
    const { h_i, x_cache, dt_cache, B_cache, x, dt, B, C, z, A, D, dt_bias: bias } = I;
    const [nb, dim, N] = h_i.shape;
    const [K1, s] = [x_cache.shape[1], x.shape[1]];
    const r = a.recompute_steps;
    const G = B.shape.length === 4 ? B.shape[2] : 1;
    const delta = (v, d) => (a.dt_softplus ? softplus(v + (bias ? bias.data[d] : 0)) : v + (bias ? bias.data[d] : 0));
    const out = zeros([nb, s, dim]);
    const hJ = zeros([nb, dim, N]);
    const hK = zeros([nb, dim, N]);
    for (let b = 0; b < nb; b++)
      for (let d = 0; d < dim; d++) {
        const g = Math.floor(d / (dim / G));
        const h = Array.from(h_i.data.subarray((b * dim + d) * N, (b * dim + d + 1) * N));
        const step = (dl, xv, Bt, t, rows) => {
          for (let n = 0; n < N; n++)
            h[n] = Math.exp(dl * A.data[d * N + n]) * h[n] + dl * Bt.data[((b * rows + t) * G + g) * N + n] * xv;
        };
        for (let t = 0; t < r; t++)
          step(delta(dt_cache.data[(b * K1 + t) * dim + d], d), x_cache.data[(b * K1 + t) * dim + d], B_cache, t, K1);
        hJ.data.set(h, (b * dim + d) * N);
        for (let t = 0; t < s; t++) {
          const i = (b * s + t) * dim + d;
          step(delta(dt.data[i], d), x.data[i], B, t, s);
          let y = 0;
          for (let n = 0; n < N; n++) y += C.data[((b * s + t) * G + g) * N + n] * h[n];
          if (D) y += D.data[d] * x.data[i];
          out.data[i] = z ? y * silu(z.data[i]) : y;
        }
        hK.data.set(h, (b * dim + d) * N);
      }
    return { out, h_j: hJ, h_k: hK };
  },
  ssd_chunk_scan(I, a) {
    const { x, dt, A, B, C, D, z, dt_bias: bias, initial_states: init } = I;
    const [nb, L, H, P] = x.shape;
    const [G, N] = B.shape.slice(2);
    const Q = a.chunk_size;
    const out = zeros([nb, L, H, P]);
    const fin = zeros([nb, H, P, N]);
    for (let b = 0; b < nb; b++)
      for (let h = 0; h < H; h++) {
        const g = Math.floor(h / (H / G));
        const S = Array.from({ length: P * N }, (_, i) => (init ? init.data[(b * H + h) * P * N + i] : 0));
        const del = (t) => {
          const v = dt.data[(b * L + t) * H + h] + (bias ? bias.data[h] : 0);
          return a.dt_softplus ? softplus(v) : v;
        };
        // e^{c}·S, where a zero state stays zero even when e^{c} overflows (without softplus Δ·A can be ≫ 0,
        // and Inf · 0 would be NaN where the function is 0)
        const decay = (c, s) => (s === 0 ? 0 : Math.exp(c) * s);
        const Bv = (t, n) => B.data[((b * L + t) * G + g) * N + n];
        const Cv = (t, n) => C.data[((b * L + t) * G + g) * N + n];
        const xv = (t, p) => x.data[((b * L + t) * H + h) * P + p];
        for (let t0 = 0; t0 < L; t0 += Q) {
          const t1 = Math.min(L, t0 + Q);
          const cum = []; // cumulative log-decays inside the chunk
          for (let t = t0, s = 0; t < t1; t++) cum.push((s += del(t) * A.data[h]));
          for (let t = t0; t < t1; t++)
            for (let p = 0; p < P; p++) {
              let y = 0;
              for (let n = 0; n < N; n++) y += decay(cum[t - t0], S[p * N + n]) * Cv(t, n);
              for (let s = t0; s <= t; s++) {
                let cb = 0;
                for (let n = 0; n < N; n++) cb += Cv(t, n) * Bv(s, n);
                y += Math.exp(cum[t - t0] - cum[s - t0]) * cb * del(s) * xv(s, p);
              }
              const i = ((b * L + t) * H + h) * P + p;
              if (D) y += D.data[h] * xv(t, p);
              out.data[i] = z ? y * silu(z.data[i]) : y;
            }
          const total = cum[t1 - 1 - t0];
          for (let p = 0; p < P; p++)
            for (let n = 0; n < N; n++) {
              let s2 = decay(total, S[p * N + n]);
              for (let s = t0; s < t1; s++) s2 += Math.exp(total - cum[s - t0]) * del(s) * xv(s, p) * Bv(s, n);
              S[p * N + n] = s2;
            }
        }
        fin.data.set(S, (b * H + h) * P * N);
      }
    return { out, final_state: fin };
  },
};
