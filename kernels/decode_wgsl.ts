/**
 * The decoded token's reductions as workgroup-cooperative WGSL (webgpu), recorded into the resident chain
 * (kernels/resident_chain.ts `wgsl`) by lib/model/gpu_decode.ts: the one-row products, RMSNorm and the argmax.
 *
 * Why: kernels/decode.ts's GPU.js kernels give each output one thread that loops over the whole reduction — a
 * matvec thread reads K weights one after another, an RMSNorm thread recomputes Σh² over all d values. A decode
 * step has too few outputs to hide that: a 512-wide loop is 512 dependent global loads, ~0.35 µs each on the H200,
 * so each such kernel costs ~70–180 µs however few bytes it reads (docs/results/gpu.md: 104 kernels, 6.9 ms a
 * token, ~66 µs each). GPU.js cannot share work between threads (no `var<workgroup>`, no barriers: its kernels
 * `return` early, which WGSL's uniformity analysis rejects before a barrier — docs/GPUJS.md), so these are WGSL.
 * Here a workgroup of 256 threads splits the reduction: each thread reads a few values (coalesced), then a tree
 * of log₂ steps in workgroup memory adds the partial sums in a fixed order (deterministic, no atomics).
 *
 *   gemv:    y_{t,r} = Σ_k Wᵀ[k, r] x_{t,k}  (+ a_{(t·R + r) mod AN})        Wᵀ (K, R) as kernels/decode.ts stores it
 *            swiglu: a_{t,f} = silu(Σ_k Wg ᵀ[k, f] x_{t,k}) · Σ_k Wuᵀ[k, f] x_{t,k}
 *            thread (kl, rl) of the workgroup (RL columns × KL = 256/RL k-lanes) sums k ≡ kl (mod KL) for column
 *            r = RL·wg.x + rl over up to TB rows t = TB·wg.y + …; neighbouring threads read neighbouring r.
 *   rmsnorm: n_{t,c} = h_{t,c} / √(Σ_c h_{t,c}² / d + ε) · w_c                one workgroup a row
 *   argmax:  two dispatches: workgroup g of row t the first maximum of ids [1024·g, 1024·g + 1024), then one
 *            workgroup a row the first maximum of those (ties: the lowest id, as lib/model/generate.ts `argmax`)
 *   Mamba-2's y, one token (ssmYWgsl) and a verify/prefill window (m2WindowYWgsl, Algorithm 2's multi-step
 *            outputs): (channel, n-lane) threads, a tree over the n-lanes for Σ_n C h
 * Error: float32 sums of K products in a tree of partial sums, |ŷ − y| ≤ γ_K Σ_k |W||x| (as the serial sum's
 * bound); spec/decode_wgsl.spec.ts checks each kernel alone against a float64 reference within such bounds,
 * spec/gpu_decode.spec.ts the whole token.
 */
import type { WgslKernel } from './resident_chain.js';

const WG = 256;
/**
 * rows of x one workgroup of a gemv takes: its partial sums are 256·TB·weights floats, at most the 16 KiB of workgroup
 * memory WebGPU guarantees (16 rows of one weight, 8 of swiglu's two). A verify window of up to 16 rows then reads
 * each weight once (the H200 profile of 2026-12-05, at 8: a 9-row window's lm_head 2.8× one row's, its down 1.8×).
 */
const TB_MAX = 16;

/** Columns a gemv workgroup takes: 8 (32-byte runs of Wᵀ) where there are many, else 4 (more workgroups). */
const gemvColumns = (R: number): number => (R >= 1024 ? 8 : 4);

export type GemvEpilogue = 'none' | 'add' | 'swiglu';

/**
 * y = Wᵀ-stored W (K inputs, R outputs) times T rows of x. Arguments: x, Wᵀ, then Wuᵀ ('swiglu': x, Wgᵀ, Wuᵀ) or
 * the added buffer of `addLen` floats ('add': a residual (T·R) or a bias (R)); output T·R floats.
 */
export function gemvKernel(K: number, R: number, T: number, epilogue: GemvEpilogue = 'none', addLen = 0): WgslKernel {
  const NW = epilogue === 'swiglu' ? 2 : 1;
  const RL = gemvColumns(R);
  const KL = WG / RL;
  const TB = Math.min(T, TB_MAX / NW);
  const third =
    epilogue === 'swiglu'
      ? '@group(0) @binding(3) var<storage, read> wu: array<f32>;'
      : epilogue === 'add'
        ? '@group(0) @binding(3) var<storage, read> add: array<f32>;'
        : '';
  const outBinding = epilogue === 'none' ? 3 : 4;
  const result =
    epilogue === 'swiglu'
      ? 'let g = red[(t * KL) * RL + rl]; let v = g / (1.0 + exp(-g)) * red[((TB + t) * KL) * RL + rl];'
      : epilogue === 'add'
        ? 'let v = red[(t * KL) * RL + rl] + add[((t0 + t) * u.R + r) % u.AN];'
        : 'let v = red[(t * KL) * RL + rl];';
  const code = `
struct U { K: u32, R: u32, T: u32, AN: u32 };
@group(0) @binding(0) var<uniform> u: U;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
${third}
@group(0) @binding(${outBinding}) var<storage, read_write> out: array<f32>;
const RL: u32 = ${RL}u;
const KL: u32 = ${KL}u;
const TB: u32 = ${TB}u;
const NW: u32 = ${NW}u;
var<workgroup> red: array<f32, ${WG * TB * NW}>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let rl = lid % RL;
  let kl = lid / RL;
  let r = wg.x * RL + rl;
  let t0 = wg.y * TB;
  var acc: array<f32, ${TB * NW}>;
  for (var t = 0u; t < TB * NW; t++) { acc[t] = 0.0; }
  if (r < u.R) {
    for (var k = kl; k < u.K; k += KL) {
      let a = w[k * u.R + r];
      ${NW === 2 ? 'let b = wu[k * u.R + r];' : ''}
      for (var t = 0u; t < TB; t++) {
        if (t0 + t < u.T) {
          let xv = x[(t0 + t) * u.K + k];
          acc[t] += a * xv;
          ${NW === 2 ? 'acc[TB + t] += b * xv;' : ''}
        }
      }
    }
  }
  for (var t = 0u; t < TB * NW; t++) { red[(t * KL + kl) * RL + rl] = acc[t]; }
  workgroupBarrier();
  for (var s = KL / 2u; s > 0u; s = s / 2u) {
    if (kl < s) {
      for (var t = 0u; t < TB * NW; t++) { red[(t * KL + kl) * RL + rl] += red[(t * KL + kl + s) * RL + rl]; }
    }
    workgroupBarrier();
  }
  if (kl == 0u && r < u.R) {
    for (var t = 0u; t < TB; t++) {
      if (t0 + t < u.T) {
        ${result}
        out[(t0 + t) * u.R + r] = v;
      }
    }
  }
}`;
  return {
    key: `dec.gemv.${epilogue}`,
    code,
    uniforms: [K, R, T, Math.max(1, addLen)],
    groups: [Math.ceil(R / RL), Math.ceil(T / TB), 1],
    size: T * R,
  };
}

/** RMSNorm of T rows of d (arguments h, w; output T·d): groupNormWgsl with one group a row, 256 threads a group. */
export const rmsnormWgsl = (d: number, eps: number, T: number): WgslKernel => ({
  ...normWgsl(d, eps, d, T, WG),
  key: 'dec.rmsnorm.wgsl',
});

/** ids one workgroup of the argmax's first dispatch covers */
const ARGMAX_CHUNK = 4 * WG;
/** Workgroups a row of the argmax's first dispatch (its lanes: T·that many ids, as float32). */
export const argmaxChunks = (V: number): number => Math.ceil(V / ARGMAX_CHUNK);

/** The comparison both argmax dispatches reduce with: (v, i) before (bv, bi) — larger, or equal and a lower id. */
const BETTER = `fn better(v: f32, i: u32, bv: f32, bi: u32) -> bool {
  return bi == NONE || (i != NONE && (v > bv || (v == bv && i < bi)));
}`;

/** What both argmax dispatches declare: the 'no id yet' mark, each thread's best (value, id), `better`. */
const ARGMAX_DECLS = `const NONE: u32 = 0xffffffffu;
var<workgroup> bv: array<f32, ${WG}>;
var<workgroup> bi: array<u32, ${WG}>;
${BETTER}`;

/** Both dispatches' tree: each thread's best (mv, mi) into workgroup memory, the best of all left in bv[0], bi[0]. */
const ARGMAX_TREE = `  bv[lid] = mv;
  bi[lid] = mi;
  workgroupBarrier();
  for (var k = ${WG / 2}u; k > 0u; k = k / 2u) {
    if (lid < k && better(bv[lid + k], bi[lid + k], bv[lid], bi[lid])) { bv[lid] = bv[lid + k]; bi[lid] = bi[lid + k]; }
    workgroupBarrier();
  }`;

/** The argmax's first dispatch (argument: logits (T, V); output: T·argmaxChunks(V) ids). */
export function argmaxChunksWgsl(V: number, T: number): WgslKernel {
  const G = argmaxChunks(V);
  const code = `
struct U { V: u32, G: u32 };
@group(0) @binding(0) var<uniform> u: U;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
${ARGMAX_DECLS}
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let o = wg.y * u.V;
  var mv = 0.0;
  var mi = NONE;
  for (var j = 0u; j < ${ARGMAX_CHUNK / WG}u; j++) {
    let i = wg.x * ${ARGMAX_CHUNK}u + j * ${WG}u + lid;
    if (i < u.V) {
      let v = logits[o + i];
      if (better(v, i, mv, mi)) { mv = v; mi = i; }
    }
  }
${ARGMAX_TREE}
  if (lid == 0u) { out[wg.y * u.G + wg.x] = f32(bi[0]); }
}`;
  return { key: 'dec.argmax.chunks', code, uniforms: [V, G], groups: [G, T, 1], size: T * G };
}

/** The argmax's second dispatch (arguments: logits (T, V), the first's ids; output: T ids, as float32). */
export function argmaxFinalWgsl(V: number, T: number): WgslKernel {
  const G = argmaxChunks(V);
  const code = `
struct U { V: u32, G: u32 };
@group(0) @binding(0) var<uniform> u: U;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
${ARGMAX_DECLS}
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  var mv = 0.0;
  var mi = NONE;
  for (var g = lid; g < u.G; g += ${WG}u) {
    let i = u32(ids[wg.x * u.G + g]);
    let v = logits[wg.x * u.V + i];
    if (better(v, i, mv, mi)) { mv = v; mi = i; }
  }
${ARGMAX_TREE}
  if (lid == 0u) { out[wg.x] = f32(bi[0]); }
}`;
  return { key: 'dec.argmax.final', code, uniforms: [V, G], groups: [T, 1, 1], size: T };
}

/** Whether attentionValuesWgsl takes head_dim `hd` (4 channels a thread, the channel groups dividing 256). */
export const attentionValuesWgslFits = (hd: number): boolean => hd % 4 === 0 && WG % (hd / 4) === 0;

/**
 * Attention's weighted values after the scores (kernels/decode.ts attentionScoresKernel: scores (T·H, cap), −3e38
 * past each row's position), as attentionValuesKernel computes them — y_{t,h,c} = Σ_{j ≤ pos+t} e_j v_{g,j,c} / Σ e_j,
 * e_j = exp(s_{t,h,j} − max_j s) — with one workgroup a (row, head): the max and the sum of the exponentials as
 * trees over 256 threads, then thread (c-group, j-lane) sums 4 channels over keys j ≡ j-lane (mod 256·4/hd), and a
 * tree over the j-lanes. GPU.js's kernel gives each output channel one thread looping over every key twice.
 * Arguments: scores, the value cache (cap, H_kv·hd), meta (meta[1] = the position of row 0); output (T, H·hd).
 */
export function attentionValuesWgsl(H: number, Hkv: number, hd: number, cap: number, T: number): WgslKernel {
  const CG = hd / 4;
  const JL = WG / CG;
  const code = `
struct U { H: u32, HD: u32, GROUPS: u32, KV: u32, CAP: u32 };
@group(0) @binding(0) var<uniform> u: U;
@group(0) @binding(1) var<storage, read> scores: array<f32>;
@group(0) @binding(2) var<storage, read> vc: array<f32>;
@group(0) @binding(3) var<storage, read> mt: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
const CG: u32 = ${CG}u;
const JL: u32 = ${JL}u;
var<workgroup> mz: array<f32, ${WG}>;
var<workgroup> red: array<vec4<f32>, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let th = wg.x;
  let t = th / u.H;
  let h = th - t * u.H;
  let g = (h / u.GROUPS) * u.HD;
  let pos = u32(mt[1]) + t;
  let row = th * u.CAP;
  var m = -3.0e38;
  for (var j = lid; j <= pos; j += ${WG}u) { m = max(m, scores[row + j]); }
  mz[lid] = m;
  workgroupBarrier();
  for (var k = ${WG / 2}u; k > 0u; k = k / 2u) {
    if (lid < k) { mz[lid] = max(mz[lid], mz[lid + k]); }
    workgroupBarrier();
  }
  let M = mz[0];
  workgroupBarrier();
  var z = 0.0;
  for (var j = lid; j <= pos; j += ${WG}u) { z += exp(scores[row + j] - M); }
  mz[lid] = z;
  workgroupBarrier();
  for (var k = ${WG / 2}u; k > 0u; k = k / 2u) {
    if (lid < k) { mz[lid] += mz[lid + k]; }
    workgroupBarrier();
  }
  let Z = mz[0];
  let cq = lid % CG;
  let jl = lid / CG;
  var acc = vec4<f32>(0.0);
  for (var j = jl; j <= pos; j += JL) {
    let e = exp(scores[row + j] - M);
    let b = j * u.KV + g + 4u * cq;
    acc += e * vec4<f32>(vc[b], vc[b + 1u], vc[b + 2u], vc[b + 3u]);
  }
  red[lid] = acc;
  workgroupBarrier();
  for (var s = JL / 2u; s > 0u; s = s / 2u) {
    if (jl < s) { red[lid] += red[lid + s * CG]; }
    workgroupBarrier();
  }
  if (jl == 0u) {
    let y = red[lid] / Z;
    let o = th * u.HD + 4u * cq;
    out[o] = y.x;
    out[o + 1u] = y.y;
    out[o + 2u] = y.z;
    out[o + 3u] = y.w;
  }
}`;
  return {
    key: 'dec.attn_values.wgsl',
    code,
    uniforms: [H, hd, H / Hkv, Hkv * hd, cap],
    groups: [T * H, 1, 1],
    size: T * H * hd,
  };
}

/**
 * Attention's scores as attentionScoresKernel computes them — s_{t,h,j} = q_{t,h}·k_{g,j}/√hd for j ≤ pos + t,
 * −3e38 past it — one thread a (row, head, key) as there, but reading q and the key as vec4 (hd/4 loads of 16 bytes
 * each, all independent, instead of hd dependent scalar loads). Arguments: qkv ([q (T, H·hd) | …]), the key cache
 * (cap, H_kv·hd), meta; output (T·H, cap). head_dim a multiple of 4 (attentionValuesWgslFits).
 */
export function attentionScoresWgsl(H: number, Hkv: number, hd: number, cap: number, T: number): WgslKernel {
  const code = `
struct U { H: u32, HD4: u32, GROUPS: u32, KV4: u32, CAP: u32, N: u32 };
@group(0) @binding(0) var<uniform> u: U;
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> kc: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> mt: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
const SCALE: f32 = ${(1 / Math.sqrt(hd)).toExponential(17)};
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let x = gid.x;
  if (x >= u.N) { return; }
  let th = x / u.CAP;
  let j = x - th * u.CAP;
  let t = th / u.H;
  let h = th - t * u.H;
  let g = (h / u.GROUPS) * u.HD4;
  var s = -3.0e38;
  if (j <= u32(mt[1]) + t) {
    var acc = vec4<f32>(0.0);
    for (var i = 0u; i < u.HD4; i++) { acc += qkv[th * u.HD4 + i] * kc[j * u.KV4 + g + i]; }
    s = (acc.x + acc.y + acc.z + acc.w) * SCALE;
  }
  out[x] = s;
}`;
  const n = T * H * cap;
  return {
    key: 'dec.attn_scores.wgsl',
    code,
    uniforms: [H, hd / 4, H / Hkv, (Hkv * hd) / 4, cap, n],
    groups: [Math.ceil(n / WG), 1, 1],
    size: n,
  };
}

/**
 * The gated RMSNorm's normalisation over groups of GS channels, as groupNormKernel computes it — y_c = v_c /
 * √(mean over c's group of v² + ε) · w_{c mod W}, T rows of W channels — with one workgroup of 64 threads a group
 * (Σv² as a tree) where GPU.js's kernel has each channel's thread sum its whole group. Arguments v, w; output T·W.
 */
export const groupNormWgsl = (GS: number, eps: number, W: number, T: number): WgslKernel => ({
  ...normWgsl(GS, eps, W, T, 64),
  key: 'dec.group_norm.wgsl',
});

/** y_c = v_c / √(mean over c's group of GS of v² + ε) · w_{c mod W}: one workgroup of G threads a group. */
function normWgsl(GS: number, eps: number, W: number, T: number, G: number): WgslKernel {
  const code = `
struct U { GS: u32, W: u32 };
@group(0) @binding(0) var<uniform> u: U;
@group(0) @binding(1) var<storage, read> v: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
const EPS: f32 = ${eps.toExponential(17)};
var<workgroup> red: array<f32, ${G}>;
@compute @workgroup_size(${G})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let g0 = wg.x * u.GS;
  var s = 0.0;
  for (var i = lid; i < u.GS; i += ${G}u) { let x = v[g0 + i]; s += x * x; }
  red[lid] = s;
  workgroupBarrier();
  for (var k = ${G / 2}u; k > 0u; k = k / 2u) {
    if (lid < k) { red[lid] += red[lid + k]; }
    workgroupBarrier();
  }
  let inv = 1.0 / sqrt(red[0] / f32(u.GS) + EPS);
  for (var i = lid; i < u.GS; i += ${G}u) { out[g0 + i] = v[g0 + i] * inv * w[(g0 + i) % u.W]; }
}`;
  return { key: 'dec.norm.wgsl', code, uniforms: [GS, W], groups: [(T * W) / GS, 1, 1], size: T * W };
}

/**
 * Mamba-2's output of one step, as ssmYKernel computes it — v_{h,p} = (D_h x_{h,p} + Σ_n h_{h,p,n} C_{h,n}) ·
 * silu(z_{h,p}) (the gate when `gated`) — with 8 threads a channel, each summing every 8th n, and a tree over them,
 * where GPU.js's kernel has one thread sum all N. Arguments ssm (d_in·N), xs, zxbcdt, par; output d_in.
 */
export function ssmYWgsl(H: number, P: number, N: number, dXb: number, dInner: number, gated: boolean): WgslKernel {
  const NL = 8;
  const CH = WG / NL;
  const code = `
struct U { P: u32, N: u32, H2: u32, REP: u32, XB2: u32, C: u32 };
@group(0) @binding(0) var<uniform> u: U;
@group(0) @binding(1) var<storage, read> ssm: array<f32>;
@group(0) @binding(2) var<storage, read> xs: array<f32>;
@group(0) @binding(3) var<storage, read> zx: array<f32>;
@group(0) @binding(4) var<storage, read> par: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
const NL: u32 = ${NL}u;
var<workgroup> red: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let nl = lid % NL;
  let t = wg.x * ${CH}u + lid / NL;
  let h = t / u.P;
  var s = 0.0;
  if (t < u.C) {
    for (var n = nl; n < u.N; n += NL) { s += ssm[t * u.N + n] * xs[u.XB2 + h * u.N + n]; }
  }
  red[lid] = s;
  workgroupBarrier();
  for (var k = NL / 2u; k > 0u; k = k / 2u) {
    if (nl < k) { red[lid] += red[lid + k]; }
    workgroupBarrier();
  }
  if (nl == 0u && t < u.C) {
    let p = t - h * u.P;
    let src = (h / u.REP) * u.P;
    var y = par[u.H2 + h] * xs[src + p] + red[lid];
    ${gated ? 'let zv = zx[t];\n    y = y * (zv / (1.0 + exp(-zv)));' : ''}
    out[t] = y;
  }
}`;
  return {
    key: gated ? 'dec.ssm_y+gate.wgsl' : 'dec.ssm_y.wgsl',
    code,
    uniforms: [P, N, 2 * H, dInner / dXb, 2 * dXb, dInner],
    groups: [Math.ceil(dInner / CH), 1, 1],
    size: dInner,
  };
}

/**
 * Mamba-2's outputs over a verify or prefill window (Algorithm 2's multi-step kernel, lib/ref/multistep.ts), as
 * m2WindowYKernel computes them: from the one cached state h (H, P, N) and the window's rows τ = 0 … T−1,
 *   Ā_{τ,h} = exp(Δ_{τ,h} A_h),   h_{τ,h,p,n} = Ā_{τ,h} h_{τ−1,h,p,n} + Δ_{τ,h} x_{τ,h,p} B_{τ,n}   (h_{−1} = h)
 *   y_{τ,h,p} = Σ_n C_{τ,h,n} h_{τ,h,p,n} + D_h x_{τ,h,p},   times silu(z_{τ,h,p}) when `gated`
 * (Δ from m2DeltaKernel; x and B through the grouped-query repeat, head h reading source ⌊h/REP⌋·P; the states
 * are never stored). GPU.js's kernel gives each (τ, channel) one thread that replays the recurrence from h for
 * every n — N·(τ+1) steps, each with its own exp —; here thread (channel, n-lane) keeps its n ≡ n-lane (mod NL)
 * states in registers and steps them once through the window (one Ā a row), and for each row a tree over the NL
 * n-lanes sums Σ_n C h. Arguments ssm (H·P·N), xs (T, d_in + 2·d_xb), zxbcdt (T, RZ), par [A | dt_bias | D],
 * Δ (T, H); output (T, d_in).
 */
export function m2WindowYWgsl(
  H: number,
  P: number,
  N: number,
  dXb: number,
  dInner: number,
  RZ: number,
  gated: boolean,
  T: number,
): WgslKernel {
  const NL = N > 32 ? 16 : 8;
  const CH = WG / NL;
  const NPT = Math.ceil(N / NL);
  const code = `
struct U { P: u32, N: u32, H: u32, REP: u32, XB: u32, C: u32, CD: u32, RZ: u32, T: u32 };
@group(0) @binding(0) var<uniform> u: U;
@group(0) @binding(1) var<storage, read> ssm: array<f32>;
@group(0) @binding(2) var<storage, read> xs: array<f32>;
@group(0) @binding(3) var<storage, read> zx: array<f32>;
@group(0) @binding(4) var<storage, read> par: array<f32>;
@group(0) @binding(5) var<storage, read> delta: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
const NL: u32 = ${NL}u;
const NPT: u32 = ${NPT}u;
var<workgroup> red: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let nl = lid % NL;
  let c = wg.x * ${CH}u + lid / NL;
  let live = c < u.C;
  let h = c / u.P;
  let p = c - h * u.P;
  let src = (h / u.REP) * u.P;
  var hs: array<f32, ${NPT}>;
  for (var j = 0u; j < NPT; j++) {
    let n = nl + j * NL;
    hs[j] = 0.0;
    if (live && n < u.N) { hs[j] = ssm[c * u.N + n]; }
  }
  for (var t = 0u; t < u.T; t++) {
    let ro = t * u.CD;
    var s = 0.0;
    if (live) {
      let dl = delta[t * u.H + h];
      let da = exp(dl * par[h]);
      let xv = xs[ro + src + p];
      for (var j = 0u; j < NPT; j++) {
        let n = nl + j * NL;
        if (n < u.N) {
          hs[j] = da * hs[j] + dl * xv * xs[ro + u.XB + src + n];
          s += hs[j] * xs[ro + 2u * u.XB + h * u.N + n];
        }
      }
    }
    red[lid] = s;
    workgroupBarrier();
    for (var k = NL / 2u; k > 0u; k = k / 2u) {
      if (nl < k) { red[lid] += red[lid + k]; }
      workgroupBarrier();
    }
    if (nl == 0u && live) {
      var y = par[2u * u.H + h] * xs[ro + src + p] + red[lid];
      ${gated ? 'let zv = zx[t * u.RZ + c];\n      y = y * (zv / (1.0 + exp(-zv)));' : ''}
      out[t * u.C + c] = y;
    }
  }
}`;
  return {
    key: gated ? 'dec.m2_window_y+gate.wgsl' : 'dec.m2_window_y.wgsl',
    code,
    uniforms: [P, N, H, dInner / dXb, dXb, dInner, dInner + 2 * dXb, RZ, T],
    groups: [Math.ceil(dInner / CH), 1, 1],
    size: T * dInner,
  };
}
