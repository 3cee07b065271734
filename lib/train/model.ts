/**
 * Training forward and backward of the whole model — the Llama teacher and both hybrids — in float64.
 * It mirrors the prefill path of lib/model/hybrid.ts (a whole sequence from empty caches; a property test
 * checks the logits agree) and keeps what each layer needs for its backward. Every layer is written as
 *
 *     const layer = forward(…);        // layer.y: the output
 *     … later, in reverse order …
 *     const dx = layer.back(dy);       // ∂ℓ/∂input; ∂ℓ/∂(each parameter) is added into `grads`
 *
 * so a layer's forward and backward sit side by side (llm.c's train_gpt2.c). Row-major (batch·L, width)
 * activations; the primitives' backwards live beside their forwards in lib/ref/ and lib/train/layers.ts.
 *
 *   h = embed(ids)
 *   per layer:  h += mixer(rmsnorm₁ h);  h += down(silu(gate n) ⊙ up n), n = rmsnorm₂ h
 *   logits = lm_head(rmsnorm(h))
 *   mixer = attention (RoPE, grouped-query causal softmax) | Mamba-1 | Mamba-2  (see hybrid.ts for their math)
 *
 * Frozen parameters (`trainable(name)` false) get no gradient buffer; gradients still flow through them.
 */
import { ArgumentError } from '../errors.js';
import { Tensor } from '../tensor.js';
import { causalAttention, causalAttentionBackward } from '../ref/attention.js';
import { causalConv1d, causalConv1dBackward } from '../ref/conv1d.js';
import { gatedRmsnorm, gatedRmsnormBackward } from '../ref/norm.js';
import { applyRope, applyRopeBackward, ropeInvFreq } from '../ref/rope.js';
import { selectiveScan, selectiveScanBackward } from '../ref/selective_scan.js';
import { ssdBackward, ssdSequential } from '../ref/ssd.js';
import { layerKinds, type HybridModel } from '../model/hybrid.js';
import { crossEntropy, embedding, klDivergence, linear, rmsnorm, swiglu } from './layers.js';
import type { SimdGemm } from '../simd/gemm.js';
import { isImmutable } from '../../kernels/runtime.js';

type F = Float64Array;
export type Grads = Map<string, F>;

interface Ctx {
  m: HybridModel;
  batch: number;
  L: number;
  trainable: (name: string) => boolean;
  grads: Grads;
  mm: MatmulEngine;
}

/**
 * Where the linear layers' three products run: y = x·Wᵀ (+ b), dx = dy·W, dW = dyᵀ·x (and db = Σ dy).
 * `float64` (the default, what the golden cases and finite differences check) is lib/train/layers.ts;
 * `simd` runs the products in float32 on the wasm-simd kernels (lib/simd/gemm.ts), everything else staying
 * float64 — the fast path, checked against the float64 one in spec/train.spec.ts.
 */
export interface MatmulEngine {
  forward(x: F, W: F, b: F | undefined, N: number, I: number, O: number): F;
  backward(dy: F, x: F, W: F, N: number, I: number, O: number, needW: boolean): { dx: F; dW?: F; db: F };
  /** causal attention over (batch, heads, L, d) tensors, with its backward (lib/ref/attention.ts's math) */
  attention(q: Tensor, k: Tensor, v: Tensor): { y: Tensor; back(dy: Tensor): { dq: Tensor; dk: Tensor; dv: Tensor } };
}

export const FLOAT64_ENGINE: MatmulEngine = {
  forward: (x, W, b, N, I, O) => linear.forward(x, W, b, N, I, O),
  backward: (dy, x, W, N, I, O) => linear.backward(dy, x, W, N, I, O),
  attention: (q, k, v) => ({ y: causalAttention(q, k, v), back: (dy) => causalAttentionBackward(q, k, v, dy) }),
};

/** The float32 SIMD engine over one SimdGemm (weights packed once while they are unchanged). */
export function simdEngine(g: SimdGemm): MatmulEngine {
  return {
    forward(x, W, b, N, I, O) {
      const y = g.linear(x, N, I, W, O, isImmutable(W));
      const out = new Float64Array(y.length);
      for (let r = 0; r < N; r++) for (let o = 0; o < O; o++) out[r * O + o] = y[r * O + o]! + (b ? b[o]! : 0);
      return out;
    },
    backward(dy, x, W, N, I, O, needW) {
      const dx = new Float64Array(g.matmul(dy, N, O, W, I));
      const dW = needW ? new Float64Array(g.matmulTN(dy, N, O, x, I)) : undefined;
      const db = new Float64Array(O);
      for (let r = 0; r < N; r++) for (let o = 0; o < O; o++) db[o]! += dy[r * O + o]!;
      return { dx, dW, db };
    },
    attention: (q, k, v) => simdAttention(g, q, k, v),
  };
}

/**
 * Causal attention with its products on the SIMD kernels, per (batch, head), the softmax in between:
 *   S = scale·Q·Kᵀ (causal mask), P = softmax_rows(S), Y = P·V;
 *   back: dP = dY·Vᵀ, dV = Pᵀ·dY, dS = P ∘ (dP − rowsum(P ∘ dP)), dQ = scale·dS·K, dK = scale·dSᵀ·Q
 * (the same math as lib/ref/attention.ts, in float32 products; the masked half is computed and zeroed).
 */
function simdAttention(g: SimdGemm, q: Tensor, k: Tensor, v: Tensor): ReturnType<MatmulEngine['attention']> {
  const [batch, H, L, d] = q.shape as [number, number, number, number];
  const Hkv = k.shape[1]!;
  const dv = v.shape[3]!;
  const groups = H / Hkv;
  const scale = 1 / Math.sqrt(d);
  const qd = q.data as F;
  const kd = k.data as F;
  const vd = v.data as F;
  const y = new Float64Array(batch * H * L * dv);
  const probs: Float32Array[] = [];
  const at = (b: number, h: number, n: number, w: number) => (b * n + h) * L * w;
  for (let b = 0; b < batch; b++)
    for (let h = 0; h < H; h++) {
      const kh = Math.floor(h / groups);
      const P = g.linear(qd.subarray(at(b, h, H, d), at(b, h, H, d) + L * d), L, d, kd.subarray(at(b, kh, Hkv, d), at(b, kh, Hkv, d) + L * d), L, false);
      for (let t = 0; t < L; t++) {
        const r = t * L;
        let mx = -Infinity;
        for (let j = 0; j <= t; j++) mx = Math.max(mx, P[r + j]! * scale);
        let z = 0;
        for (let j = 0; j <= t; j++) z += P[r + j] = Math.exp(P[r + j]! * scale - mx);
        for (let j = 0; j <= t; j++) P[r + j]! /= z;
        P.fill(0, r + t + 1, r + L);
      }
      probs.push(P);
      y.set(g.matmul(P, L, L, vd.subarray(at(b, kh, Hkv, dv), at(b, kh, Hkv, dv) + L * dv), dv), at(b, h, H, dv));
    }
  return {
    y: new Tensor(y, [batch, H, L, dv], 'attention'),
    back(dy) {
      const dyd = dy.data as F;
      const dq = new Float64Array(qd.length);
      const dk = new Float64Array(kd.length);
      const dV = new Float64Array(vd.length);
      for (let b = 0; b < batch; b++)
        for (let h = 0; h < H; h++) {
          const kh = Math.floor(h / groups);
          const P = probs[b * H + h]!;
          const dys = dyd.subarray(at(b, h, H, dv), at(b, h, H, dv) + L * dv);
          const vs = vd.subarray(at(b, kh, Hkv, dv), at(b, kh, Hkv, dv) + L * dv);
          const dP = g.linear(dys, L, dv, vs, L, false);
          const gv = g.matmulTN(P, L, L, dys, dv);
          for (let i = 0, o = at(b, kh, Hkv, dv); i < gv.length; i++) dV[o + i]! += gv[i]!;
          for (let t = 0; t < L; t++) {
            const r = t * L;
            let sum = 0;
            for (let j = 0; j <= t; j++) sum += P[r + j]! * dP[r + j]!;
            for (let j = 0; j <= t; j++) dP[r + j] = P[r + j]! * (dP[r + j]! - sum) * scale;
            dP.fill(0, r + t + 1, r + L);
          }
          dq.set(g.matmul(dP, L, L, kd.subarray(at(b, kh, Hkv, d), at(b, kh, Hkv, d) + L * d), d), at(b, h, H, d));
          const gk = g.matmulTN(dP, L, L, qd.subarray(at(b, h, H, d), at(b, h, H, d) + L * d), d);
          for (let i = 0, o = at(b, kh, Hkv, d); i < gk.length; i++) dk[o + i]! += gk[i]!;
        }
      return { dq: new Tensor(dq, q.shape, 'dq'), dk: new Tensor(dk, k.shape, 'dk'), dv: new Tensor(dV, v.shape, 'dv') };
    },
  };
}

interface Layer {
  y: F;
  back(dy: F): F;
}

function weight(ctx: Ctx, name: string): F {
  const t = ctx.m.weights.get(name);
  return t.data instanceof Float64Array ? t.data : new Float64Array(t.data);
}

/** Add a parameter's gradient (accumulating: a weight used twice — tied embeddings — gets both). */
function addGrad(ctx: Ctx, name: string, g: F): void {
  if (!ctx.trainable(name)) return;
  const cur = ctx.grads.get(name);
  if (!cur) ctx.grads.set(name, g.slice());
  else for (let i = 0; i < g.length; i++) cur[i]! += g[i]!;
}

const add = (a: F, b: F): F => a.map((v, i) => v + b[i]!);

// ---------------------------------------------------------------- building blocks

/** y = x·Wᵀ (+ b); back: dx = dy·W, dW = dyᵀ·x, db = Σ dy. */
function linearLayer(ctx: Ctx, x: F, I: number, O: number, wName: string, bName?: string): Layer {
  const N = x.length / I;
  const W = weight(ctx, wName);
  const b = bName ? weight(ctx, bName) : undefined;
  return {
    y: ctx.mm.forward(x, W, b, N, I, O),
    back(dy) {
      const g = ctx.mm.backward(dy, x, W, N, I, O, ctx.trainable(wName));
      if (g.dW) addGrad(ctx, wName, g.dW);
      if (bName) addGrad(ctx, bName, g.db);
      return g.dx;
    },
  };
}

/** RMSNorm over rows of width d. */
function rmsLayer(ctx: Ctx, x: F, d: number, wName: string, eps: number): Layer {
  const w = weight(ctx, wName);
  const N = x.length / d;
  const { y, rstd } = rmsnorm.forward(x, w, N, d, eps);
  return {
    y,
    back(dy) {
      const g = rmsnorm.backward(dy, x, w, rstd, N, d);
      addGrad(ctx, wName, g.dw);
      return g.dx;
    },
  };
}

/** Channel repeat of lib/model/hybrid.ts `repeatPieces`: out[c] = x[src(c)]; back: scatter-add. */
function repeatLayer(x: F, from: number, to: number, piece: number): Layer {
  const rep = to / from;
  const src = Array.from({ length: to }, (_, c) => Math.floor(Math.floor(c / piece) / rep) * piece + (c % piece));
  const rows = x.length / from;
  const y = new Float64Array(rows * to);
  for (let r = 0; r < rows; r++) for (let c = 0; c < to; c++) y[r * to + c] = x[r * from + src[c]!]!;
  return {
    y,
    back(dy) {
      const dx = new Float64Array(rows * from);
      for (let r = 0; r < rows; r++) for (let c = 0; c < to; c++) dx[r * from + src[c]!]! += dy[r * to + c]!;
      return dx;
    },
  };
}

/** Columns [at, at + w) of rows of width `width`, and the inverse (scatter into zeros). */
function cols(x: F, width: number, at: number, w: number): F {
  const rows = x.length / width;
  const y = new Float64Array(rows * w);
  for (let r = 0; r < rows; r++) y.set(x.subarray(r * width + at, r * width + at + w), r * w);
  return y;
}
function joinCols(parts: F[], widths: number[]): F {
  const width = widths.reduce((a, b) => a + b, 0);
  const rows = parts[0]!.length / widths[0]!;
  const y = new Float64Array(rows * width);
  let at = 0;
  parts.forEach((p, k) => {
    for (let r = 0; r < rows; r++) y.set(p.subarray(r * widths[k]!, (r + 1) * widths[k]!), r * width + at);
    at += widths[k]!;
  });
  return y;
}

/** (B, L, C) rows ↔ (B, C, L) channels: the same permutation both ways. */
function swapLC(x: F, batch: number, L: number, C: number): F {
  return new Tensor(x, [batch, L, C]).transpose([0, 2, 1]).data as F;
}

// ---------------------------------------------------------------- mixers

function attentionMixer(ctx: Ctx, p: string, x: F): Layer {
  const c = ctx.m.llama;
  const { batch, L } = ctx;
  const dModel = c.hiddenSize;
  const [H, Hkv, hd] = [c.numHeads, c.numKvHeads, c.headDim];
  const bias = (w: string) => (c.attentionBias ? `${p}.self_attn.${w}_proj.bias` : undefined);
  const q = linearLayer(ctx, x, dModel, H * hd, `${p}.self_attn.q_proj.weight`, bias('q'));
  const k = linearLayer(ctx, x, dModel, Hkv * hd, `${p}.self_attn.k_proj.weight`, bias('k'));
  const v = linearLayer(ctx, x, dModel, Hkv * hd, `${p}.self_attn.v_proj.weight`, bias('v'));
  const heads = (t: F, n: number) => new Tensor(t, [batch, L, n, hd]).transpose([0, 2, 1, 3]); // (B, n, L, hd)
  const rows = (t: Tensor, n: number) => t.transpose([0, 2, 1, 3]).reshape([batch * L, n * hd]).data as F;
  const positions = Array.from({ length: L }, (_, i) => i);
  const inv = ropeInvFreq(hd, c.ropeTheta, c.ropeScaling);
  const qr = applyRope(heads(q.y, H), positions, inv);
  const kr = applyRope(heads(k.y, Hkv), positions, inv);
  const vh = heads(v.y, Hkv);
  const att = ctx.mm.attention(qr, kr, vh);
  const o = linearLayer(ctx, rows(att.y, H), H * hd, dModel, `${p}.self_attn.o_proj.weight`, bias('o'));
  return {
    y: o.y,
    back(dy) {
      const datt = heads(o.back(dy), H);
      const g = att.back(datt);
      const dq = rows(applyRopeBackward(g.dq, positions, inv), H);
      const dk = rows(applyRopeBackward(g.dk, positions, inv), Hkv);
      return add(add(q.back(dq), k.back(dk)), v.back(rows(g.dv, Hkv)));
    },
  };
}

function mamba1Mixer(ctx: Ctx, p: string, o: F): Layer {
  const mc = ctx.m.mamba!;
  const { batch, L } = ctx;
  const dModel = mc.dModel;
  const { dInner: I, dXb: X, dState: N, dConv: Wc, dtRank: R } = mc;
  const q = `${p}.mamba`;
  const clean = mc.semantics === 'clean';
  const piece = clean ? ctx.m.llama.headDim : N;
  const G = I / N;
  const Alog = weight(ctx, `${q}.A_log`);
  const A = Alog.map((a) => -Math.exp(a));
  const hasConvBias = ctx.m.weights.has(`${q}.conv1d.bias`);

  const xin = linearLayer(ctx, o, dModel, X, `${q}.in_proj_x.weight`);
  const xr = repeatLayer(xin.y, X, I, piece);
  const zl = linearLayer(ctx, o, dModel, I, `${q}.in_proj_z.weight`);
  const bl = linearLayer(ctx, o, dModel, X, `${q}.B_proj.weight`);
  const br = repeatLayer(bl.y, X, I, piece);
  const cl = linearLayer(ctx, o, dModel, I, `${q}.C_proj.weight`);
  const down = linearLayer(ctx, o, dModel, R, `${q}.dt_proj_down.weight`);
  const dtl = linearLayer(ctx, down.y, R, I, `${q}.dt_proj.weight`, clean ? undefined : `${q}.dt_proj.bias`); // upstream: bias here AND as delta_bias

  const convIn = {
    x: new Tensor(swapLC(xr.y, batch, L, I), [batch, I, L]),
    weight: new Tensor(weight(ctx, `${q}.conv1d.weight`), [I, Wc]),
    bias: hasConvBias ? new Tensor(weight(ctx, `${q}.conv1d.bias`), [I]) : undefined,
    activation: 'silu' as const,
  };
  const u = causalConv1d(convIn).out;
  const grp = (t: F) => new Tensor(t, [batch, L, G, N]).transpose([0, 2, 3, 1]); // (B, G, N, L)
  const scanIn = {
    u,
    delta: new Tensor(swapLC(dtl.y, batch, L, I), [batch, I, L]),
    A: new Tensor(A, [I, N]),
    B: grp(br.y),
    C: grp(cl.y),
    D: new Tensor(weight(ctx, `${q}.D`), [I]),
    z: new Tensor(swapLC(zl.y, batch, L, I), [batch, I, L]),
    deltaBias: new Tensor(weight(ctx, `${q}.dt_proj.bias`), [I]),
    deltaSoftplus: true,
  };
  const y = swapLC(selectiveScan(scanIn).out.data as F, batch, I, L);
  const out = linearLayer(ctx, y, I, dModel, `${q}.out_proj.weight`);
  return {
    y: out.y,
    back(dout) {
      const dy = new Tensor(swapLC(out.back(dout), batch, L, I), [batch, I, L]);
      const g = selectiveScanBackward(scanIn, dy);
      addGrad(
        ctx,
        `${q}.A_log`,
        (g.dA.data as F).map((v, i) => v * A[i]!),
      ); // A = −exp(A_log): dA_log = dA·A
      addGrad(ctx, `${q}.D`, g.dD!.data as F);
      addGrad(ctx, `${q}.dt_proj.bias`, g.ddeltaBias!.data as F);
      const ungrp = (t: Tensor) => t.transpose([0, 3, 1, 2]).data as F; // (B, G, N, L) → (B, L, G, N)
      const cg = causalConv1dBackward(convIn, g.du);
      addGrad(ctx, `${q}.conv1d.weight`, cg.dweight.data as F);
      if (hasConvBias) addGrad(ctx, `${q}.conv1d.bias`, cg.dbias!.data as F);
      const dx = xin.back(xr.back(swapLC(cg.dx.data as F, batch, I, L)));
      const dz = zl.back(swapLC(g.dz!.data as F, batch, I, L));
      const dB = bl.back(br.back(ungrp(g.dB)));
      const dC = cl.back(ungrp(g.dC));
      const ddt = down.back(dtl.back(swapLC(g.ddelta.data as F, batch, I, L)));
      return [dz, dB, dC, ddt].reduce(add, dx);
    },
  };
}

function mamba2Mixer(ctx: Ctx, p: string, o: F): Layer {
  const mc = ctx.m.mamba!;
  const { batch, L } = ctx;
  const dModel = mc.dModel;
  const { dInner: I, dXb: X, dState: N, nHeads: H, dConv: Wc } = mc;
  const P = N;
  const q = `${p}.mamba`;
  const convDim = I + 2 * X;
  const width = 2 * I + 2 * X + H;
  const has = (n: string) => ctx.m.weights.has(n);
  const Alog = weight(ctx, `${q}.A_log`);
  const A = Alog.map((a) => -Math.exp(a));
  const act = ctx.m.ablation?.convActivation === false ? null : ('silu' as const);
  const gated = ctx.m.ablation?.gatedNorm !== false;

  const inp = linearLayer(ctx, o, dModel, width, `${q}.in_proj.weight`, has(`${q}.in_proj.bias`) ? `${q}.in_proj.bias` : undefined);
  const z = cols(inp.y, width, 0, I);
  const xBC = cols(inp.y, width, I, convDim);
  const dt = cols(inp.y, width, I + convDim, H);
  const convIn = {
    x: new Tensor(swapLC(xBC, batch, L, convDim), [batch, convDim, L]),
    weight: new Tensor(weight(ctx, `${q}.conv1d.weight`), [convDim, Wc]),
    bias: has(`${q}.conv1d.bias`) ? new Tensor(weight(ctx, `${q}.conv1d.bias`), [convDim]) : undefined,
    activation: act,
  };
  const xs = swapLC(causalConv1d(convIn).out.data as F, batch, convDim, L);
  const xr = repeatLayer(cols(xs, convDim, 0, X), X, I, P);
  const br = repeatLayer(cols(xs, convDim, X, X), X, I, N);
  const Cm = cols(xs, convDim, 2 * X, I);
  const ssdIn = {
    x: new Tensor(xr.y, [batch, L, H, P]),
    delta: new Tensor(dt, [batch, L, H]),
    A: new Tensor(A, [H]),
    B: new Tensor(br.y, [batch, L, H, N]),
    C: new Tensor(Cm, [batch, L, H, N]),
    D: new Tensor(weight(ctx, `${q}.D`), [H]),
    deltaBias: new Tensor(weight(ctx, `${q}.dt_bias`), [H]),
    deltaSoftplus: true,
  };
  const y = ssdSequential(ssdIn).out; // = the chunked SSD of the forward (a property of lib/ref/ssd.ts)
  const normOpts = { eps: 1e-5, groupSize: P, normBeforeGate: false };
  const zT = new Tensor(z, [batch * L, I]);
  const normW = gated ? new Tensor(weight(ctx, `${q}.norm.weight`), [I]) : undefined;
  const yn = gated ? (gatedRmsnorm(y.reshape([batch * L, I]), normW!, zT, normOpts).data as F) : (y.data as F);
  const out = linearLayer(ctx, yn, I, dModel, `${q}.out_proj.weight`);
  return {
    y: out.y,
    back(dout) {
      const dyn = out.back(dout);
      let dy: F = dyn;
      let dz: F = new Float64Array(z.length);
      if (gated) {
        const g = gatedRmsnormBackward(y.reshape([batch * L, I]), normW!, zT, new Tensor(dyn, [batch * L, I]), normOpts);
        addGrad(ctx, `${q}.norm.weight`, g.dweight.data as F);
        dy = g.dx.data as F;
        dz = g.dz!.data as F;
      }
      const g = ssdBackward(ssdIn, new Tensor(dy, [batch, L, H, P]));
      addGrad(
        ctx,
        `${q}.A_log`,
        (g.dA.data as F).map((v, i) => v * A[i]!),
      );
      addGrad(ctx, `${q}.D`, g.dD!.data as F);
      addGrad(ctx, `${q}.dt_bias`, g.ddeltaBias!.data as F);
      const dxs = joinCols([xr.back(g.dx.data as F), br.back(g.dB.data as F), g.dC.data as F], [X, X, I]);
      const cg = causalConv1dBackward(convIn, new Tensor(swapLC(dxs, batch, L, convDim), [batch, convDim, L]));
      addGrad(ctx, `${q}.conv1d.weight`, cg.dweight.data as F);
      if (convIn.bias) addGrad(ctx, `${q}.conv1d.bias`, cg.dbias!.data as F);
      const dxBC = swapLC(cg.dx.data as F, batch, convDim, L);
      return inp.back(joinCols([dz, dxBC, g.ddelta.data as F], [I, convDim, H]));
    },
  };
}

function mlpLayer(ctx: Ctx, p: string, x: F): Layer {
  const c = ctx.m.llama;
  const gate = linearLayer(ctx, x, c.hiddenSize, c.intermediateSize, `${p}.mlp.gate_proj.weight`);
  const up = linearLayer(ctx, x, c.hiddenSize, c.intermediateSize, `${p}.mlp.up_proj.weight`);
  const a = swiglu.forward(gate.y, up.y);
  const down = linearLayer(ctx, a, c.intermediateSize, c.hiddenSize, `${p}.mlp.down_proj.weight`);
  return {
    y: down.y,
    back(dy) {
      const g = swiglu.backward(down.back(dy), gate.y, up.y);
      return add(gate.back(g.dg), up.back(g.du));
    },
  };
}

// ---------------------------------------------------------------- the model

export interface TrainForward {
  /** (batch·L, vocab) */
  logits: F;
  /** run the backward from ∂ℓ/∂logits; fills `grads` */
  back(dlogits: F): void;
  grads: Grads;
}

/** The whole model on `ids` (batch × L), keeping what the backward needs. */
export function trainForward(m: HybridModel, ids: number[][], trainable: (name: string) => boolean, mm: MatmulEngine = FLOAT64_ENGINE): TrainForward {
  const batch = ids.length;
  const L = ids[0]?.length ?? 0;
  if (L === 0 || ids.some((r) => r.length !== L))
    throw new ArgumentError(
      'ids',
      'equal-length, non-empty rows',
      ids.map((r) => r.length),
    );
  const c = m.llama;
  if (L > c.maxPositionEmbeddings) throw new ArgumentError('ids', `at most max_position_embeddings = ${c.maxPositionEmbeddings} positions`, L);
  const ctx: Ctx = { m, batch, L, trainable, grads: new Map(), mm };
  const dModel = c.hiddenSize;
  const V = c.vocabSize;
  const flat = ids.flat();
  const E = weight(ctx, 'model.embed_tokens.weight');
  let h = embedding.forward(flat, E, V, dModel);
  const kinds = layerKinds(m);
  const eps = m.mamba?.rmsNormEps ?? c.rmsNormEps;
  const blocks: Array<{ n1: Layer; mix: Layer; n2: Layer; mlp: Layer }> = [];
  for (let i = 0; i < kinds.length; i++) {
    const p = `model.layers.${i}`;
    const layerEps = kinds[i] === 'attention' ? c.rmsNormEps : eps;
    const n1 = rmsLayer(ctx, h, dModel, `${p}.input_layernorm.weight`, layerEps);
    const mix = kinds[i] === 'attention' ? attentionMixer(ctx, p, n1.y) : kinds[i] === 'mamba1' ? mamba1Mixer(ctx, p, n1.y) : mamba2Mixer(ctx, p, n1.y);
    const h1 = add(h, mix.y);
    const n2 = rmsLayer(ctx, h1, dModel, `${p}.post_attention_layernorm.weight`, layerEps);
    const mlp = mlpLayer(ctx, p, n2.y);
    h = add(h1, mlp.y);
    blocks.push({ n1, mix, n2, mlp });
  }
  const nf = rmsLayer(ctx, h, dModel, 'model.norm.weight', c.rmsNormEps);
  const headName = c.tieWordEmbeddings && !m.weights.has('lm_head.weight') ? 'model.embed_tokens.weight' : 'lm_head.weight';
  const head = linearLayer(ctx, nf.y, dModel, V, headName);
  return {
    logits: head.y,
    grads: ctx.grads,
    back(dlogits) {
      let dh = nf.back(head.back(dlogits));
      for (let i = blocks.length - 1; i >= 0; i--) {
        const b = blocks[i]!;
        const dh1 = add(dh, b.n2.back(b.mlp.back(dh)));
        dh = add(dh1, b.n1.back(b.mix.back(dh1)));
      }
      addGrad(ctx, 'model.embed_tokens.weight', embedding.backward(dh, flat, V, dModel));
    },
  };
}

/** Which parameters train: every one, or upstream's stage 1 — only those whose name holds 'mamba'. */
export type TrainRule = 'all' | 'mamba';
export const mambaOnly = (name: string): boolean => name.includes('mamba');
export function trainableBy(rule: TrainRule): (name: string) => boolean {
  return rule === 'all' ? () => true : mambaOnly;
}

export interface LossOptions {
  /** 'lm': cross-entropy on the next token; 'distill': klWeight·KL(teacher ‖ student) + ceWeight·CE */
  objective: 'lm' | 'distill';
  /** (batch·L, vocab) teacher logits, for 'distill' */
  teacherLogits?: F;
  klWeight?: number;
  ceWeight?: number;
  trainable: (name: string) => boolean;
  /** where the linear layers' products run (default: float64) */
  engine?: MatmulEngine;
}

export interface LossResult {
  loss: number;
  ce: number;
  kl?: number;
  grads: Grads;
  logits: F;
}

/**
 * One loss and its gradients, as FORMAT.md's training cases (and upstream's train_hybrid.py) define it:
 *   CE = mean over batch·(L−1) positions of −log p(ids[t+1] | ids[≤t])   (labels = ids, shifted by one)
 *   KL = Σ over all batch·L positions and the vocabulary of p_t (log p_t − log p_s), divided by batch only
 *   loss = ce_weight·CE (+ kl_weight·KL)
 */
export function lossAndGrads(m: HybridModel, ids: number[][], o: LossOptions): LossResult {
  const batch = ids.length;
  const L = ids[0]!.length;
  if (L < 2) throw new ArgumentError('ids', 'rows of at least 2 tokens (the loss predicts the next one)', L);
  const V = m.llama.vocabSize;
  const f = trainForward(m, ids, o.trainable, o.engine);
  // rows (b, t < L−1) predict ids[b][t+1]
  const rows: number[] = [];
  const targets: number[] = [];
  for (let b = 0; b < batch; b++)
    for (let t = 0; t < L - 1; t++) {
      rows.push(b * L + t);
      targets.push(ids[b]![t + 1]!);
    }
  const sub = new Float64Array(rows.length * V);
  rows.forEach((r, k) => sub.set(f.logits.subarray(r * V, (r + 1) * V), k * V));
  const ceW = o.ceWeight ?? 1;
  const ce = crossEntropy.forward(sub, targets, rows.length, V);
  const dlogits = new Float64Array(batch * L * V);
  const dsub = crossEntropy.backward(sub, targets, rows.length, V);
  rows.forEach((r, k) => {
    for (let v = 0; v < V; v++) dlogits[r * V + v] = ceW * dsub[k * V + v]!;
  });
  let loss = ceW * ce;
  let kl: number | undefined;
  if (o.objective === 'distill') {
    if (!o.teacherLogits || o.teacherLogits.length !== batch * L * V)
      throw new ArgumentError('teacherLogits', `(batch·L, vocab) = ${batch * L * V} values`, o.teacherLogits?.length);
    const klW = o.klWeight ?? 1;
    kl = klDivergence.forward(f.logits, o.teacherLogits, batch * L, V, batch);
    const dkl = klDivergence.backward(f.logits, o.teacherLogits, batch * L, V, batch);
    for (let i = 0; i < dlogits.length; i++) dlogits[i]! += klW * dkl[i]!;
    loss += klW * kl;
  }
  f.back(dlogits);
  return { loss, ce, kl, grads: f.grads, logits: f.logits };
}
