/**
 * The gated MLP of a Llama layer as one plan of four kernels (kernels/plans.ts):
 *
 *   g = x·gateᵀ,  u = x·upᵀ          (kernels/matmul.ts, one thread per output)
 *   a = silu(g) ⊙ u                  silu(v) = v / (1 + e^{−v}), one thread per element
 *   out = a·downᵀ
 *
 * x: (rows, d); gate, up: (f, d); down: (o, f), PyTorch's (out, in) layout. With model weights the four run
 * fused (one GPU.js pipeline that holds the weights: on webgpu one submit and one readback, where the layer
 * had three kernel calls, three readbacks and a SiLU in JavaScript between them). Reference: lib/ref/mlp.ts.
 */
import type { GpuRuntime } from './runtime.js';
import { matmulStep } from './matmul.js';
import { siluExpr } from './snippets.js';

const SILU_MUL = `function (g, u) {
  const v = g[this.thread.x];
  return ${siluExpr('v')} * u[this.thread.x];
}`;

export async function gatedMlpKernel(
  rt: GpuRuntime,
  x: Float32Array,
  gate: Float32Array,
  up: Float32Array,
  down: Float32Array,
  rows: number,
  d: number,
  f: number,
  o: number,
): Promise<Float32Array> {
  const [out] = await rt.runPlan(
    `mlp|${rows}|${d}|${f}|${o}`,
    [
      matmulStep(rows, d, f, { input: 0 }, { weight: gate }),
      matmulStep(rows, d, f, { input: 0 }, { weight: up }),
      { key: 'mlp.silu_mul', source: SILU_MUL, constants: {}, outputSize: rows * f, args: [{ step: 0 }, { step: 1 }] },
      matmulStep(rows, f, o, { step: 2 }, { weight: down }),
    ],
    [x],
  );
  return out;
}
