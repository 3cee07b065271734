// The whole-model ops of the JavaScript example port: `model` (logits of a Llama, Mamba-1 or Mamba-2 hybrid
// from a checkpoint folder) and `speculative` (speculative sampling with recorded uniforms). The model is
// written the simplest way a port would: every layer over the whole sequence from scratch, the Mamba layers
// as their recurrences, no caches — speculative decoding recomputes everything each round, which gives the
// same tokens and states as the project's single-cached-state Algorithm 2 (that is what the op checks).
//
//   h = embed(ids);  for each layer:  h += mixer(rms(h));  h += down(silu(gate x) ⊙ up x), x = rms(h)
//   logits = lm_head(rms(h))
//   attention: RoPE (HF rotate-half), grouped-query causal softmax
//   Mamba-1:   x = rep(W_x o) → conv → silu, z = W_z o, B = rep(W_B o), C = W_C o, Δ = softplus(dt_proj(W_dt↓ o) + b)
//              (upstream adds b twice: in dt_proj and as delta_bias; 'clean' once), h = e^{ΔA} h + Δ B x,
//              y = (C·h + D x) silu(z);  rep() repeats d_state-wide pieces ('clean': head_dim-wide)
//   Mamba-2:   [z | xBC | dt] = in_proj o; xBC → conv → silu → [x | B | C]; x, B repeated per head as GQA;
//              S = e^{ΔA} S + Δ x Bᵀ, y = S C + D x per head; out_proj(gated-RMSNorm(y, z))
import { silu, softplus } from './kernels.mjs';

const dot = (a, ao, b, bo, n) => {
  let s = 0;
  for (let i = 0; i < n; i++) s += a[ao + i] * b[bo + i];
  return s;
};
/** y (rows × out) = x (rows × in) Wᵀ (+ bias), W (out × in) as PyTorch's Linear. */
function linear(x, rows, W, bias) {
  const [o, n] = W.shape;
  const y = new Float64Array(rows * o);
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < o; j++) y[r * o + j] = dot(x, r * n, W.data, j * n, n) + (bias ? bias.data[j] : 0);
  return y;
}
function rms(x, rows, w, eps) {
  const d = w.data.length;
  const y = new Float64Array(rows * d);
  for (let r = 0; r < rows; r++) {
    const k = 1 / Math.sqrt(dot(x, r * d, x, r * d, d) / d + eps);
    for (let i = 0; i < d; i++) y[r * d + i] = x[r * d + i] * k * w.data[i];
  }
  return y;
}
/** Columns [from, from + w) of a (rows × width) matrix. */
const cols = (x, rows, width, from, w) =>
  Float64Array.from({ length: rows * w }, (_, i) => x[Math.floor(i / w) * width + from + (i % w)]);
/** (rows × src) → (rows × dInner): output channel c reads source channel ⌊⌊c/w⌋/rep⌋·w + c mod w, rep = dInner/src. */
const repeatPieces = (x, rows, src, dInner, w) =>
  Float64Array.from({ length: rows * dInner }, (_, i) => {
    const c = i % dInner;
    return x[Math.floor(i / dInner) * src + Math.floor(Math.floor(c / w) / (dInner / src)) * w + (c % w)];
  });
/** Depthwise causal conv + bias + silu over L rows of C channels from zero history; also the last W−1 inputs. */
function conv(x, L, C, weight, bias) {
  const W = weight.shape.at(-1);
  const y = new Float64Array(L * C);
  const last = new Float64Array(C * (W - 1));
  for (let c = 0; c < C; c++) {
    for (let t = 0; t < L; t++) {
      let s = bias ? bias.data[c] : 0;
      for (let k = 0; k < W; k++) if (t - W + 1 + k >= 0) s += weight.data[c * W + k] * x[(t - W + 1 + k) * C + c];
      y[t * C + c] = silu(s);
    }
    for (let k = 0; k < W - 1; k++) last[c * (W - 1) + k] = L - W + 1 + k >= 0 ? x[(L - W + 1 + k) * C + c] : 0;
  }
  return { y, last };
}

export function loadModel(config, mambaConfig, mil, weights) {
  if (config.rope_scaling)
    throw Object.assign(new Error('rope_scaling is not implemented by this example port'), { unsupported: true });
  const m = { c: config, mc: mambaConfig, variant: mil?.variant, clean: mil?.semantics === 'clean', W: weights };
  m.get = (name) => {
    if (!weights[name]) throw new Error(`weight ${name} is missing`);
    return weights[name];
  };
  return m;
}

function attention(m, p, x, L) {
  const { c, get } = m;
  const [H, Hkv] = [c.num_attention_heads, c.num_key_value_heads ?? c.num_attention_heads];
  const hd = c.head_dim ?? c.hidden_size / H;
  const b = (n) => (c.attention_bias ? get(`${p}.self_attn.${n}.bias`) : undefined);
  const [q, k, v] = ['q', 'k', 'v'].map((n) => linear(x, L, get(`${p}.self_attn.${n}_proj.weight`), b(`${n}_proj`)));
  for (const [t, heads] of [
    [q, H],
    [k, Hkv],
  ])
    for (let pos = 0; pos < L; pos++)
      for (let h = 0; h < heads; h++)
        for (let i = 0; i < hd / 2; i++) {
          const ang = pos / Math.pow(c.rope_theta ?? 10000, (2 * i) / hd);
          const o = (pos * heads + h) * hd;
          const [x1, x2] = [t[o + i], t[o + i + hd / 2]];
          t[o + i] = x1 * Math.cos(ang) - x2 * Math.sin(ang);
          t[o + i + hd / 2] = x2 * Math.cos(ang) + x1 * Math.sin(ang);
        }
  const y = new Float64Array(L * H * hd);
  for (let h = 0; h < H; h++) {
    const kv = Math.floor(h / (H / Hkv));
    for (let t = 0; t < L; t++) {
      const s = Array.from(
        { length: t + 1 },
        (_, j) => dot(q, (t * H + h) * hd, k, (j * Hkv + kv) * hd, hd) / Math.sqrt(hd),
      );
      const mx = Math.max(...s);
      const e = s.map((v2) => Math.exp(v2 - mx));
      const z = e.reduce((a2, b2) => a2 + b2, 0);
      for (let j = 0; j <= t; j++)
        for (let i = 0; i < hd; i++) y[(t * H + h) * hd + i] += (e[j] / z) * v[(j * Hkv + kv) * hd + i];
    }
  }
  return { out: linear(y, L, get(`${p}.self_attn.o_proj.weight`), b('o_proj')) };
}

function mamba1(m, p, o, L) {
  const { get, mc } = m;
  const q = `${p}.mamba`;
  const [dInner, dXb, N] = [mc.d_inner, mc.d_xb, mc.ssm_cfg.d_state];
  const w = m.clean ? (m.c.head_dim ?? m.c.hidden_size / m.c.num_attention_heads) : N;
  const A = get(`${q}.A_log`).data.map((v) => -Math.exp(v));
  const bias = get(`${q}.dt_proj.bias`).data;
  const xr = repeatPieces(linear(o, L, get(`${q}.in_proj_x.weight`)), L, dXb, dInner, w);
  const z = linear(o, L, get(`${q}.in_proj_z.weight`));
  const B = repeatPieces(linear(o, L, get(`${q}.B_proj.weight`)), L, dXb, dInner, w); // group g reads B[g·N … g·N+N−1]
  const C = linear(o, L, get(`${q}.C_proj.weight`));
  const dt = linear(
    linear(o, L, get(`${q}.dt_proj_down.weight`)),
    L,
    get(`${q}.dt_proj.weight`),
    m.clean ? undefined : get(`${q}.dt_proj.bias`),
  );
  const cv = conv(xr, L, dInner, get(`${q}.conv1d.weight`), m.W[`${q}.conv1d.bias`]);
  const y = new Float64Array(L * dInner);
  const ssm = new Float64Array(dInner * N);
  for (let c = 0; c < dInner; c++) {
    const g = Math.floor(c / N);
    const h = new Float64Array(N);
    for (let t = 0; t < L; t++) {
      const i = t * dInner + c;
      const d = softplus(dt[i] + bias[c]);
      let s = get(`${q}.D`).data[c] * cv.y[i];
      for (let n = 0; n < N; n++) {
        h[n] = Math.exp(d * A[c * N + n]) * h[n] + d * B[t * dInner + g * N + n] * cv.y[i];
        s += C[t * dInner + g * N + n] * h[n];
      }
      y[i] = s * silu(z[i]);
    }
    ssm.set(h, c * N);
  }
  return {
    out: linear(y, L, get(`${q}.out_proj.weight`)),
    ssm: { shape: [1, dInner, N], data: ssm },
    conv: { shape: [1, dInner, cv.last.length / dInner], data: cv.last },
  };
}

function mamba2(m, p, o, L) {
  const { get, mc } = m;
  const q = `${p}.mamba`;
  const [dInner, dXb, N] = [mc.d_inner, mc.d_xb, mc.ssm_cfg.d_state];
  const [H, P, CD] = [dInner / N, N, dInner + 2 * dXb];
  const A = get(`${q}.A_log`).data.map((v) => -Math.exp(v));
  const zxbcdt = linear(o, L, get(`${q}.in_proj.weight`), m.W[`${q}.in_proj.bias`]);
  const width = dInner + CD + H;
  const z = cols(zxbcdt, L, width, 0, dInner);
  const cv = conv(cols(zxbcdt, L, width, dInner, CD), L, CD, get(`${q}.conv1d.weight`), m.W[`${q}.conv1d.bias`]);
  const dt = cols(zxbcdt, L, width, dInner + CD, H);
  const x = repeatPieces(cols(cv.y, L, CD, 0, dXb), L, dXb, dInner, P); // (L, H·P)
  const B = repeatPieces(cols(cv.y, L, CD, dXb, dXb), L, dXb, dInner, N); // (L, H·N)
  const C = cols(cv.y, L, CD, 2 * dXb, dInner); // (L, H·N)
  const y = new Float64Array(L * dInner);
  const ssm = new Float64Array(H * P * N);
  for (let h = 0; h < H; h++)
    for (let pp = 0; pp < P; pp++) {
      const S = new Float64Array(N);
      for (let t = 0; t < L; t++) {
        const d = softplus(dt[t * H + h] + get(`${q}.dt_bias`).data[h]);
        const xv = x[t * dInner + h * P + pp];
        let s = get(`${q}.D`).data[h] * xv;
        for (let n = 0; n < N; n++) {
          S[n] = Math.exp(d * A[h]) * S[n] + d * xv * B[t * dInner + h * N + n];
          s += S[n] * C[t * dInner + h * N + n];
        }
        y[t * dInner + h * P + pp] = s;
      }
      ssm.set(S, (h * P + pp) * N);
    }
  // gated RMSNorm, gate before the norm, groups of P: v = y silu(z), v / √(mean v² + 1e−5) · w
  const nw = get(`${q}.norm.weight`).data;
  for (let r = 0; r < L * H; r++) {
    const v = Array.from({ length: P }, (_, i) => y[r * P + i] * silu(z[r * P + i]));
    const k = 1 / Math.sqrt(v.reduce((s, e) => s + e * e, 0) / P + 1e-5);
    for (let i = 0; i < P; i++) y[r * P + i] = v[i] * k * nw[(r % H) * P + i];
  }
  return {
    out: linear(y, L, get(`${q}.out_proj.weight`)),
    ssm: { shape: [1, H * P, N], data: ssm },
    conv: { shape: [1, CD, cv.last.length / CD], data: cv.last },
  };
}

/** One sequence through the model: logits (L × vocab) and each Mamba layer's states after the last token. */
export function run(m, ids) {
  const { c, mc, get } = m;
  const [L, D, V] = [ids.length, c.hidden_size, c.vocab_size];
  const h = new Float64Array(L * D);
  ids.forEach((id, t) => h.set(get('model.embed_tokens.weight').data.subarray(id * D, (id + 1) * D), t * D));
  const states = new Map();
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const p = `model.layers.${i}`;
    const kind = !mc || mc.attn_layers.includes(i) ? 'attention' : m.variant;
    const eps = kind === 'attention' ? c.rms_norm_eps : (mc.rms_norm_eps ?? 1e-5);
    const x = rms(h, L, get(`${p}.input_layernorm.weight`), eps);
    const r =
      kind === 'attention' ? attention(m, p, x, L) : kind === 'mamba1' ? mamba1(m, p, x, L) : mamba2(m, p, x, L);
    if (r.ssm) states.set(i, r);
    for (let j = 0; j < L * D; j++) h[j] += r.out[j];
    const a = rms(h, L, get(`${p}.post_attention_layernorm.weight`), eps);
    const g = linear(a, L, get(`${p}.mlp.gate_proj.weight`));
    const u = linear(a, L, get(`${p}.mlp.up_proj.weight`));
    const mlp = linear(
      g.map((gv, j) => silu(gv) * u[j]),
      L,
      get(`${p}.mlp.down_proj.weight`),
    );
    for (let j = 0; j < L * D; j++) h[j] += mlp[j];
  }
  const head = m.W['lm_head.weight'] ?? get('model.embed_tokens.weight');
  const logits = linear(rms(h, L, get('model.norm.weight'), c.rms_norm_eps), L, head);
  return { rows: Array.from({ length: L }, (_, t) => logits.subarray(t * V, (t + 1) * V)), logits, states };
}

/** Speculative sampling (temperature T; top-k / top-p unsupported) with the recorded uniforms, one round at a time. */
export function speculative(I, a) {
  if (a.top_k != null || a.top_p != null)
    throw Object.assign(new Error('top_k / top_p are not implemented by this example port'), { unsupported: true });
  const from = (prefix) => {
    const cfg = a[prefix];
    const w = Object.fromEntries(
      Object.entries(I)
        .filter(([k]) => k.startsWith(`${prefix}/`))
        .map(([k, t]) => [k.slice(prefix.length + 1), t]),
    );
    return loadModel(cfg.config, cfg.mamba_config, cfg, w);
  };
  const [target, draft] = [from('target'), from('draft')];
  const T = a.temperature ?? 0;
  if (!(T > 0))
    throw Object.assign(new Error('greedy speculative cases are not implemented by this example port'), {
      unsupported: true,
    });
  let used = 0;
  const uniform = () => I.uniforms.data[used++];
  const dist = (l) => {
    const mx = Math.max(...l);
    const e = Array.from(l, (v) => Math.exp((v - mx) / T));
    const z = e.reduce((s, v) => s + v, 0);
    return e.map((v) => v / z);
  };
  const drawFrom = (p, u) => {
    let [acc, last] = [0, 0];
    for (let i = 0; i < p.length; i++) {
      if (p[i] > 0) last = i;
      if (u < (acc += p[i])) return i;
    }
    return last;
  };
  const committed = Array.from(I.prompt.data);
  const out = [];
  const [accepted, emitted] = [[], []];
  const result = {};
  while (out.length < a.max_new_tokens) {
    const K = Math.min(a.K, a.max_new_tokens - out.length - 1);
    const drafts = [];
    const qs = [];
    for (let m = 0; m < K; m++) {
      const rows = run(draft, [...committed, ...drafts]).rows;
      const q = dist(rows.at(-1));
      qs.push(q);
      drafts.push(drawFrom(q, uniform()));
    }
    const rows = run(target, [...committed, ...drafts]).rows.slice(committed.length - 1);
    let m = 0;
    const emit = [];
    for (; m < K; m++) {
      const [p, q, d] = [dist(rows[m]), qs[m], drafts[m]];
      if (uniform() < Math.min(1, p[d] / q[d])) {
        emit.push(d);
        continue;
      }
      const res = p.map((v, i) => Math.max(v - q[i], 0));
      const z = res.reduce((s, v) => s + v, 0);
      const u2 = uniform();
      emit.push(
        z > 0
          ? drawFrom(
              res.map((v) => v / z),
              u2,
            )
          : drawFrom(p, u2),
      );
      break;
    }
    if (m === K) emit.push(drawFrom(dist(rows[K]), uniform()));
    accepted.push(m);
    emitted.push(emit.length);
    out.push(...emit);
    committed.push(...emit);
    // the target's state after the round: every committed token but the last (which the next round consumes)
    for (const [layer, s] of run(target, committed.slice(0, -1)).states) {
      result[`round${accepted.length - 1}/layer${layer}/ssm`] = s.ssm;
      result[`round${accepted.length - 1}/layer${layer}/conv`] = s.conv;
    }
  }
  const vec = (v) => ({ shape: [v.length], data: Float64Array.from(v) });
  return { ...result, tokens: vec(out), accepted: vec(accepted), emitted: vec(emitted), uniforms_used: vec([used]) };
}

/** The `model` op: logits (batch, L, vocab) for input_ids (batch, L) from the checkpoint folder model/. */
export function modelOp(I, readFolder) {
  const { config, mambaConfig, mil, weights } = readFolder();
  const m = loadModel(config, mambaConfig, mil, weights);
  const [nb, L] = I.input_ids.shape;
  const logits = new Float64Array(nb * L * config.vocab_size);
  for (let b = 0; b < nb; b++)
    logits.set(run(m, Array.from(I.input_ids.data.subarray(b * L, (b + 1) * L))).logits, b * L * config.vocab_size);
  return { logits: { shape: [nb, L, config.vocab_size], data: logits } };
}
