/**
 * The MLP of every block (Llama's SwiGLU), described once: its parameters and both paths — inference
 * (`mlpInfer`, one fused backend op) and training with its backward (`mlpTrain`).
 *
 *   out = W_down (silu(W_gate n) ⊙ W_up n)        n (b, l, d) the normed hidden state; silu(g) = g·σ(g)
 *
 * Symbols: d = hidden_size · F = intermediate_size · W_gate, W_up (F, d) · W_down (d, F).
 */
import type { Ops } from '../../ops.js';
import type { FloatArray, Tensor } from '../../tensor.js';
import { simdSiluMul } from '../../simd/activations.js';
import type { Bf16Panels, SimdGemm } from '../../simd/gemm.js';
import { swiglu } from '../../ref/layers.js';
import { linearInto, type HybridModel } from './block.js';
import { add, linearLayer, type Ctx, type Layer } from './tape.js';

// ---------------------------------------------------------------- description (both paths)

/** The parameters of layer prefix p's MLP. */
export const mlpNames = (p: string) => ({
  gate: `${p}.mlp.gate_proj.weight`,
  up: `${p}.mlp.up_proj.weight`,
  down: `${p}.mlp.down_proj.weight`,
});

// ---------------------------------------------------------------- inference

/** n (b, l, d) → out (b, l, d). */
export function mlpInfer(ops: Ops, m: HybridModel, p: string, n: Tensor): Promise<Tensor> {
  const W = m.weights;
  const w = mlpNames(p);
  return ops.gatedMlp(n, W.get(w.gate), W.get(w.up), W.get(w.down));
}

/** One token's MLP as the fused decode step (../fused_step.ts) runs it: x (d) normed row → buf.o (d), `mlpInfer`'s bits. */
export function mlpStep(
  g: SimdGemm,
  w: { gate: FloatArray | Bf16Panels; up: FloatArray | Bf16Panels; down: FloatArray | Bf16Panels },
  buf: { gu: Float32Array; g: Float32Array; u: Float32Array; a: Float32Array; o: Float32Array }, // g, u: gu's halves
  x: Float64Array,
): void {
  g.linearMany(
    x,
    1,
    x.length,
    [
      { w: w.gate, N: buf.g.length },
      { w: w.up, N: buf.u.length },
    ],
    buf.gu,
  ); // (2F): gate | up, one hand-off
  simdSiluMul(g, buf.g, buf.u, buf.a); // (F): the wasm-simd backend's SIMD SiLU, as its gatedMlp uses
  linearInto(g, buf.a, w.down, buf.o); // (d)
}

// ---------------------------------------------------------------- training (forward with saved activations, backward)

/** n rows (b·l, d) → out rows (b·l, d); back: ∂ℓ/∂n, gradients of W_gate, W_up, W_down. */
export function mlpTrain(ctx: Ctx, p: string, n: Float64Array): Layer {
  const c = ctx.m.llama;
  const w = mlpNames(p);
  const gate = linearLayer(ctx, n, c.hiddenSize, c.intermediateSize, w.gate); // (b·l, F)
  const up = linearLayer(ctx, n, c.hiddenSize, c.intermediateSize, w.up); // (b·l, F)
  const a = swiglu.forward(gate.y, up.y); // (b·l, F)
  const down = linearLayer(ctx, a, c.intermediateSize, c.hiddenSize, w.down); // (b·l, d)
  return {
    y: down.y,
    back(dy) {
      const g = swiglu.backward(down.back(dy), gate.y, up.y); // dg, du (b·l, F)
      return add(gate.back(g.dg), up.back(g.du)); // (b·l, d)
    },
  };
}
