/**
 * The GPU training step's matrix products (float32, webgpu) as a classic tiled product written in WGSL by hand and
 * recorded into a resident chain (kernels/resident_chain.ts `wgsl`) — the one place where the step leaves GPU.js's
 * generated WGSL. Everything else stays GPU.js.
 *
 * Why not a GPU.js kernel: GPU.js writes one f32 per thread, `return`s early for out-of-range threads before the
 * body (so a workgroupBarrier after it fails WGSL's uniformity analysis) and has no `var<workgroup>` memory. A
 * one-thread-per-output product (kernels/train_layers.ts linearKernel & co.) reads each operand from global memory
 * once per output: on the H200 0.2–0.4 TFLOP/s for x·Wᵀ (adjacent threads read W rows I floats apart) and 1.6–2
 * for the coalesced dX / dW. Here a workgroup of 16×16 threads computes a TM×TN = 64×64 tile of C, staging
 * TK = 16-wide slices of both operands in workgroup memory (each global value read once per tile, coalesced), each
 * thread keeping 4×4 outputs in registers (rows ty + 16i, columns tx + 16j: neighbouring threads store neighbouring
 * addresses).
 *
 *   C[m,n] = Σ_p Σ_k A_p(m,k) B_p(k,n)  (+ bias[n])  (+ D[m,n])         C (M, N) row-major
 * with, from row-major buffers and no transposing copy:
 *   A_p(m,k) = a[m·K + k]  ('mk': A stored (M, K))   or  a[k·M + m]  ('km': A stored (K, M), the product uses Aᵀ)
 *   B_p(k,n) = b[n·K + k]  ('nk': B stored (N, K), the product uses Bᵀ)  or  b[k·N + n]  ('kn': B stored (K, N))
 * which gives the trainer's three products (N rows, W (O, I) as stored, lib/train/gpu_step.ts):
 *   forward  y = x·Wᵀ (+ b) (+ r):  M = N, N = O, K = I,   a = x 'mk',  b = W 'nk'             (tiledLinear)
 *   dX       dx = Σ_p dy_p·W_p:      M = N, N = I, K = O_p, a = dy_p 'mk', b = W_p 'kn'         (tiledLinearDx)
 *   dW       dW = dyᵀ·x (+ prev):    M = O, N = I, K = N,   a = dy 'km', b = x 'kn'             (tiledLinearDw)
 * Edges are guarded (any M, N, K ≥ 1; out-of-range loads read 0, out-of-range outputs are not written).
 * Deterministic: each output is one thread's sum in increasing k (pair after pair), then + bias, then + D; no atomics.
 * Shapes are a uniform ([M, N, K_0, K_1, K_2]), so one compiled module serves every shape of its form.
 * Split-K, for products with few tiles and a long K (lm_head.dx: 64 tiles, K = 32000): workgroup z of the grid sums
 * k in [z·Kc, min(K, (z+1)·Kc)) (Kc whole K-steps) into a partial buffer of the chain, and a second dispatch adds
 * the partials in increasing z, then bias, then D — still one fixed order.
 * Batched (`batchedMatmul`, attention's products: kernels/train_attention.ts attnProducts): workgroup z is one of
 * outer × inner products whose operands sit strided in shared buffers (offsets from z in a uniform, rows `ld` apart,
 * a kv head's rows serving `div` query heads), optionally adding `rep` products (a group's heads) in one sum,
 * scaled by α, with causal skips of what is zero or never read (whole tiles above the diagonal; k past a tile's
 * last row or before its first).
 * Error: float32 recursive summation, |Ĉ − C| ≤ γ_{K+2}·(Σ_k |A||B| + |bias| + |D|), γ_n = n·2⁻²⁴/(1 − n·2⁻²⁴)
 * (spec/tiled_matmul.spec.ts checks exactly that bound against a float64 product).
 */
import { ArgumentError } from '../lib/errors.js';
import type { WgslKernel } from './resident_chain.js';

/**
 * A tile shape: TM × TN outputs per workgroup of WG × WG threads (each RM = TM/WG rows × RN = TN/WG columns, RN a
 * multiple of 4: vec4 accumulators), K-steps of TK staged in workgroup memory with rows padded by 1 (the
 * transposing stores hit distinct banks). 'a' 64×64 / 4×4 / 16; 'b' 128×128 / 8×8 / 8; 'c' (the default) 128×64
 * (rows × columns) / 8×4 / 16 — on the H200 (bench/gpu_products.ts --tiles a,b,c, d512 step shapes) c was the
 * fastest or within 2% in 13 of 15 products: 19–26 TFLOP/s on the layers, lm_head's dX 19.4 (a: 7.3); lm_head's
 * forward (N = 32,000, K = 512) stays the slow one at 5.5 (bench/results/h200/gpu-products.jsonl).
 */
export const TILES = {
  a: { TM: 64, TN: 64, TK: 16 },
  b: { TM: 128, TN: 128, TK: 8 },
  c: { TM: 128, TN: 64, TK: 16 },
} as const;
export type TileName = keyof typeof TILES;
const WG = 16;

/** How a product reads its operands and what it adds (see the header). */
export interface MatmulForm {
  a: 'mk' | 'km';
  b: 'nk' | 'kn';
  /** (A, B) pairs summed, 1–3 (the q, k, v products share x) */
  pairs: number;
  bias: boolean;
  add: boolean;
  /** split-K (1 pair only): workgroup z sums k in [z·Kc, (z+1)·Kc) into partials z·M·N + …, bias and D left out */
  split?: boolean;
  /** batched (1 pair, no bias, addend or split): workgroup z is one product of `batchedMatmul`, strided operands */
  batched?: boolean;
}

/** The WGSL of one form in one tile shape (shapes come from the uniform). */
function source(f: MatmulForm, tile: TileName): string {
  const { TM, TN, TK } = TILES[tile];
  const [RM, RN, SA, SB] = [TM / WG, TN / WG, TM + 1, TN + 1];
  const P = f.pairs;
  const B = f.batched === true;
  const decl: string[] = [
    B
      ? 'struct Dims { mnk: vec4<u32>, a: vec4<u32>, b: vec4<u32>, c: vec4<u32>, x: vec4<u32>, y: vec4<u32> }'
      : 'struct Dims { mnk: vec4<u32>, k2: vec4<u32> }',
    '@group(0) @binding(0) var<uniform> dims: Dims;',
  ];
  let at = 1;
  for (let p = 0; p < P; p++) {
    decl.push(`@group(0) @binding(${at++}) var<storage, read> a${p}: array<f32>;`);
    decl.push(`@group(0) @binding(${at++}) var<storage, read> b${p}: array<f32>;`);
  }
  if (f.bias) decl.push(`@group(0) @binding(${at++}) var<storage, read> bias: array<f32>;`);
  if (f.add) decl.push(`@group(0) @binding(${at++}) var<storage, read> addend: array<f32>;`);
  decl.push(`@group(0) @binding(${at}) var<storage, read_write> c: array<f32>;`);
  decl.push(`var<workgroup> As: array<f32, ${TK * SA}>;`, `var<workgroup> Bs: array<f32, ${TK * SB}>;`);
  const threads = WG * WG;
  /**
   * Where operand `o` (a or b) holds the value of output row/column index `r` (m or n) and k: stored row by row in
   * r (`byRow`: rows K long, or `dims.o.w` apart when batched, from offset o·) or in k (rows M / N long).
   */
  const stored = (o: 'a' | 'b', r: 'm' | 'n', byRow: boolean): string => {
    const ld = B ? `dims.${o}.w` : byRow ? 'K' : r.toUpperCase();
    const idx = byRow ? `(${r}0 + ${r}${r}) * ${ld} + k0 + kk` : `(k0 + kk) * ${ld} + ${r}0 + ${r}${r}`;
    return B ? `o${o} + ${idx}` : idx;
  };
  const loads = (p: number): string[] => {
    const out: string[] = [];
    for (let r = 0; r < (TM * TK) / threads; r++) {
      const e = `(t + ${r * threads}u)`;
      const [mm, kk] = f.a === 'mk' ? [`${e} / ${TK}u`, `${e} % ${TK}u`] : [`${e} % ${TM}u`, `${e} / ${TM}u`];
      const idx = stored('a', 'm', f.a === 'mk');
      out.push(
        `{ let mm = ${mm}; let kk = ${kk}; var v = 0.0;`,
        `  if (m0 + mm < M && k0 + kk < ke) { v = a${p}[${idx}]; }`,
        `  As[kk * ${SA}u + mm] = v; }`,
      );
    }
    for (let r = 0; r < (TN * TK) / threads; r++) {
      const e = `(t + ${r * threads}u)`;
      const [nn, kk] = f.b === 'nk' ? [`${e} / ${TK}u`, `${e} % ${TK}u`] : [`${e} % ${TN}u`, `${e} / ${TN}u`];
      const idx = stored('b', 'n', f.b === 'nk');
      out.push(
        `{ let nn = ${nn}; let kk = ${kk}; var v = 0.0;`,
        `  if (n0 + nn < N && k0 + kk < ke) { v = b${p}[${idx}]; }`,
        `  Bs[kk * ${SB}u + nn] = v; }`,
      );
    }
    return out;
  };
  const kOf = ['dims.mnk.z', 'dims.mnk.w', 'dims.k2.x'];
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);
  const body: string[] = [];
  for (let p = 0; p < P; p++)
    body.push(
      ...(B
        ? [
            // the group's heads (rep of them) one after the other, each its own operand offsets
            'for (var r = 0u; r < dims.x.x; r++) {',
            'let oa = oa0 + r * dims.x.y; let ob = ob0 + r * dims.x.z;',
            `{ let K = dims.mnk.z; var kb = 0u; var ke = K;`,
            `if (dims.x.w == 2u) { ke = min(K, m0 + ${TM}u); }`,
            `if (dims.x.w == 3u) { kb = m0 - m0 % ${TK}u; }`,
          ]
        : [
            `{ let K = ${kOf[p]};`,
            f.split ? 'let kb = wid.z * dims.k2.y; let ke = min(K, kb + dims.k2.y);' : 'let kb = 0u; let ke = K;',
          ]),
      `for (var k0 = kb; k0 < ke; k0 += ${TK}u) {`,
      ...loads(p),
      'workgroupBarrier();',
      `for (var kk = 0u; kk < ${TK}u; kk++) {`,
      ...range(RN / 4).map(
        (q) =>
          `  let bv${q} = vec4<f32>(${range(4)
            .map((j) => `Bs[kk * ${SB}u + tx + ${(4 * q + j) * WG}u]`)
            .join(', ')});`,
      ),
      ...range(RM).flatMap((i) => [
        `  { let av = As[kk * ${SA}u + ty + ${i * WG}u];`,
        ...range(RN / 4).map((q) => `    acc${i}_${q} += av * bv${q};`),
        '  }',
      ]),
      '}',
      'workgroupBarrier();',
      B ? '} } }' : '} }',
    );
  const store: string[] = [];
  for (let i = 0; i < RM; i++)
    for (let j = 0; j < RN; j++) {
      const xyzw = 'xyzw'[j % 4];
      store.push(
        `{ let gm = m0 + ty + ${i * WG}u; let gn = n0 + tx + ${j * WG}u;`,
        `  if (gm < M && gn < N) { var s = acc${i}_${Math.floor(j / 4)}.${xyzw};${f.bias ? ' s += bias[gn];' : ''}${
          f.add ? ' s += addend[gm * N + gn];' : ''
        } c[${B ? 'oc + gm * dims.c.w + gn' : `${f.split ? 'wid.z * M * N + ' : ''}gm * N + gn`}] = s${
          B ? ' * bitcast<f32>(dims.y.x)' : ''
        }; } }`,
      );
    }
  return [
    ...decl,
    `@compute @workgroup_size(${WG}, ${WG})`,
    'fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {',
    'let M = dims.mnk.x; let N = dims.mnk.y;',
    `let tx = lid.x; let ty = lid.y; let t = ty * ${WG}u + tx;`,
    `let m0 = wid.y * ${TM}u; let n0 = wid.x * ${TN}u;`,
    ...(B
      ? [
          // product z = (zb, zh): each operand at zb·sb + ⌊zh/div⌋·sh; mode 1: a tile wholly above the diagonal
          'let zb = wid.z / dims.mnk.w; let zh = wid.z % dims.mnk.w;',
          'let oa0 = zb * dims.a.x + (zh / dims.a.z) * dims.a.y;',
          'let ob0 = zb * dims.b.x + (zh / dims.b.z) * dims.b.y;',
          'let oc = zb * dims.c.x + (zh / dims.c.z) * dims.c.y;',
          `if (dims.x.w == 1u && n0 >= m0 + ${TM}u) { return; }`,
        ]
      : []),
    ...range(RM).flatMap((i) => range(RN / 4).map((q) => `var acc${i}_${q} = vec4<f32>(0.0);`)),
    ...body,
    ...store,
    '}',
  ].join('\n');
}

/** The split-K sum: C[i] = Σ_z part[z·M·N + i] in increasing z (+ bias[i mod N]) (+ D[i]); 256 threads a group. */
function reduceSource(bias: boolean, add: boolean): string {
  const decl = [
    'struct Dims { mn: u32, parts: u32, n: u32, pad: u32 }',
    '@group(0) @binding(0) var<uniform> dims: Dims;',
  ];
  let at = 1;
  decl.push(`@group(0) @binding(${at++}) var<storage, read> part: array<f32>;`);
  if (bias) decl.push(`@group(0) @binding(${at++}) var<storage, read> bias: array<f32>;`);
  if (add) decl.push(`@group(0) @binding(${at++}) var<storage, read> addend: array<f32>;`);
  decl.push(`@group(0) @binding(${at}) var<storage, read_write> c: array<f32>;`);
  return [
    ...decl,
    '@compute @workgroup_size(256)',
    'fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,',
    '        @builtin(num_workgroups) nw: vec3<u32>) {',
    'let i = (wid.y * nw.x + wid.x) * 256u + lid.x;',
    'if (i >= dims.mn) { return; }',
    'var s = part[i];',
    'for (var z = 1u; z < dims.parts; z++) { s += part[z * dims.mn + i]; }',
    ...(bias ? ['s += bias[i % dims.n];'] : []),
    ...(add ? ['s += addend[i];'] : []),
    'c[i] = s;',
    '}',
  ].join('\n');
}

const sources = new Map<string, string>();
const cached = (key: string, make: () => string): string => {
  let code = sources.get(key);
  if (!code) sources.set(key, (code = make()));
  return code;
};

/**
 * Workgroups a product should fill (two per streaming multiprocessor of an H200's 132, about what any large GPU
 * needs to hide its latencies): a one-pair product with at most half as many tiles and K ≥ 2·SPLIT_MIN_K is split
 * over K into ⌈SPLIT_TARGET / tiles⌉ slices (at most K / SPLIT_MIN_K). At the d512 step's shapes: lm_head.dx (64 tiles,
 * K = 32000) 5 slices, the 512×512 dW 5, k/v's dW 8, k/v's forward 2.
 */
const SPLIT_TARGET = 264;
const SPLIT_MIN_K = 256;

/**
 * C (M, N) = Σ_p A_p·B_p (+ bias) (+ D) in the form `f`, K_p = Ks[p]. Arguments, in order: a0, b0, a1, b1, …,
 * bias (N) if f.bias, D (M, N) if f.add. `parts`: split-K into that many slices (default: by SPLIT_TARGET; 1 =
 * none) — the slices' partial sums go to a chain scratch buffer and a second dispatch sums them in order.
 */
export function tiledMatmul(
  f: MatmulForm,
  M: number,
  N: number,
  Ks: readonly number[],
  parts?: number,
  tile: TileName = 'c',
): WgslKernel {
  const { TM, TN, TK } = TILES[tile];
  if (f.pairs < 1 || f.pairs > 3) throw new ArgumentError('tiledMatmul pairs', '1, 2 or 3', f.pairs);
  if (Ks.length !== f.pairs) throw new ArgumentError('tiledMatmul Ks', `${f.pairs} values`, Ks.length);
  for (const [name, v] of [['M', M], ['N', N], ...Ks.map((k, p) => [`K${p}`, k] as const)] as const)
    if (!Number.isInteger(v) || v < 1) throw new ArgumentError(`tiledMatmul ${name}`, 'a positive integer', v);
  const groups: [number, number, number] = [Math.ceil(N / TN), Math.ceil(M / TM), 1];
  const tiles = groups[0] * groups[1];
  const K = Ks[0];
  let S =
    parts ??
    (f.pairs === 1 && 2 * tiles <= SPLIT_TARGET
      ? Math.max(1, Math.min(Math.ceil(SPLIT_TARGET / tiles), Math.floor(K / SPLIT_MIN_K)))
      : 1);
  if (!Number.isInteger(S) || S < 1 || (S > 1 && f.pairs > 1))
    throw new ArgumentError('tiledMatmul parts', 'a positive integer (1 with several pairs)', S);
  const Kc = Math.ceil(K / S / TK) * TK; // each slice a whole number of K-steps
  S = Math.min(S, Math.ceil(K / Kc));
  const key = `mm.${tile}.${f.a}.${f.b}.${f.pairs}${f.bias ? '+b' : ''}${f.add ? '+d' : ''}`;
  const k = [...Ks, 0, 0];
  if (S === 1)
    return {
      key,
      code: cached(key, () => source({ ...f, split: false }, tile)),
      uniforms: [M, N, k[0], k[1], k[2], 0, 0, 0],
      groups,
      size: M * N,
    };
  const sk = `${key}/split`;
  const rk = `mm.sum${f.bias ? '+b' : ''}${f.add ? '+d' : ''}`;
  const blocks = Math.ceil((M * N) / 256);
  const rx = Math.min(blocks, 65535);
  return {
    key: sk,
    code: cached(sk, () => source({ ...f, bias: false, add: false, split: true }, tile)),
    uniforms: [M, N, K, 0, 0, Kc, 0, 0],
    groups: [groups[0], groups[1], S],
    size: M * N,
    split: {
      parts: S,
      first: 2,
      reduce: {
        key: rk,
        code: cached(rk, () => reduceSource(f.bias, f.add)),
        uniforms: [M * N, S, N, 0],
        groups: [rx, Math.ceil(blocks / rx), 1],
      },
    },
  };
}

/** Where one operand of product z = (zb, zh) of `batchedMatmul` starts and how its rows are laid out. */
export interface BatchOperand {
  /** elements from one zb to the next */
  sb: number;
  /** elements from one ⌊zh/div⌋ to the next */
  sh: number;
  /** zh's divisor (a kv head serves `div` query heads); default 1 */
  div?: number;
  /** elements from one row to the next: for 'mk' a row is an m, for 'km' a k, for 'nk' an n, for 'kn' a k */
  ld: number;
  /** elements from one of the `rep` summed products to the next (A and B only) */
  sr?: number;
}

/** How `batchedMatmul` skips what a causal mask makes zero or leaves unread. */
export type CausalMode =
  /** every k, every tile */
  | 'none'
  /** C[m, n] is read only where n ≤ m: a tile wholly above the diagonal is not computed (left as it was) */
  | 'lower'
  /** A(m, k) = 0 for k > m: k stops at the tile's last row */
  | 'k≤m'
  /** A(m, k) = 0 for k < m: k starts at the tile's first row */
  | 'k≥m';

/**
 * outer·inner products in one dispatch (workgroup z = zb·inner + zh), each C_z (M, N) = α Σ_{r<rep} A_{z,r}·B_{z,r},
 * every operand strided in one buffer (`BatchOperand`): attention's per-(batch, head) products read their q, k, v
 * rows in place (a kv head's rows serve `div` query heads) and dk/dv add a group's heads (rep) in one sum — in
 * increasing r, then k (deterministic). The causal modes skip only what is zero or never read (exact).
 * Arguments: a, b.
 */
export function batchedMatmul(
  f: Pick<MatmulForm, 'a' | 'b'>,
  [M, N, K]: [number, number, number],
  z: { outer: number; inner: number; rep?: number; alpha?: number; causal?: CausalMode },
  ops: { A: BatchOperand; B: BatchOperand; C: BatchOperand },
  /** elements of the output buffer (every C_z inside it) */
  size: number,
  tile: TileName = 'c',
): WgslKernel {
  const { TM, TN } = TILES[tile];
  const rep = z.rep ?? 1;
  for (const [name, v] of [
    ['M', M],
    ['N', N],
    ['K', K],
    ['outer', z.outer],
    ['inner', z.inner],
    ['rep', rep],
  ] as const)
    if (!Number.isInteger(v) || v < 1) throw new ArgumentError(`batchedMatmul ${name}`, 'a positive integer', v);
  const form: MatmulForm = { ...f, pairs: 1, bias: false, add: false, batched: true };
  const key = `mm.${tile}.${f.a}.${f.b}.batched`;
  const op = (o: BatchOperand) => [o.sb, o.sh, o.div ?? 1, o.ld];
  const alphaBits = new Uint32Array(Float32Array.of(z.alpha ?? 1).buffer)[0];
  const mode = ['none', 'lower', 'k≤m', 'k≥m'].indexOf(z.causal ?? 'none');
  return {
    key,
    code: cached(key, () => source(form, tile)),
    uniforms: [
      ...[M, N, K, z.inner],
      ...op(ops.A),
      ...op(ops.B),
      ...op(ops.C),
      ...[rep, ops.A.sr ?? 0, ops.B.sr ?? 0, mode],
      ...[alphaBits, 0, 0, 0],
    ],
    groups: [Math.ceil(N / TN), Math.ceil(M / TM), z.outer * z.inner],
    size,
  };
}

/** y = x·Wᵀ (+ b) (+ r): x (N, I), W (O, I) → (N, O); arguments x, W, b?, r? (as linearKernel). */
export const tiledLinear = (N: number, I: number, O: number, bias: boolean, residual: boolean): WgslKernel =>
  tiledMatmul({ a: 'mk', b: 'nk', pairs: 1, bias, add: residual }, N, O, [I]);

/** dx = Σ_k dy_k·W_k: dy_k (N, O_k), W_k (O_k, I) → (N, I); arguments dy0, W0, dy1, W1, … (as linearDxKernel). */
export const tiledLinearDx = (N: number, I: number, Os: readonly number[]): WgslKernel =>
  tiledMatmul({ a: 'mk', b: 'kn', pairs: Os.length, bias: false, add: false }, N, I, Os);

/** dW = dyᵀ·x (+ prev): dy (N, O), x (N, I) → (O, I); arguments dy, x, prev? (as linearDwKernel). */
export const tiledLinearDw = (N: number, I: number, O: number, acc = false): WgslKernel =>
  tiledMatmul({ a: 'km', b: 'kn', pairs: 1, bias: false, add: acc }, O, I, [N]);
