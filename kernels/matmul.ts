/**
 * Matrix product kernel (float32), one thread per output element:
 *   out[i, j] = Σ_k A[i, k]·B[k, j] (+ bias[j])
 * A and B are read through strides, so linear(x, W) = x·Wᵀ (PyTorch's W: (out, in)) needs no transpose copy.
 * Reference: lib/ref/linear.ts (matmul, linear).
 */
import type { GpuRuntime, PlanArg, PlanStep } from './runtime.js';

const SRC = (bias: boolean) => `function (a, b${bias ? ', bias' : ''}) {
  const j = this.thread.x - Math.floor(this.thread.x / this.constants.N) * this.constants.N;
  const i = Math.floor(this.thread.x / this.constants.N);
  let s = 0.0;
  for (let k = 0; k < this.constants.K; k++) {
    s += a[i * this.constants.SAI + k * this.constants.SAK] * b[k * this.constants.SBK + j * this.constants.SBJ];
  }
  ${bias ? 's += bias[j];' : ''}
  return s;
}`;

export interface MatmulStrides {
  /** A[i, k] at i·sAi + k·sAk */
  sAi: number;
  sAk: number;
  /** B[k, j] at k·sBk + j·sBj */
  sBk: number;
  sBj: number;
}

export function matmulKernel(
  rt: GpuRuntime,
  a: Float32Array,
  b: Float32Array,
  M: number,
  K: number,
  N: number,
  st: MatmulStrides,
  bias?: Float32Array,
): Promise<Float32Array> {
  const args = bias ? [a, b, bias] : [a, b];
  return rt.run(
    `matmul${bias ? '+bias' : ''}`,
    SRC(!!bias),
    { N, K, SAI: st.sAi, SAK: st.sAk, SBK: st.sBk, SBJ: st.sBj },
    M * N,
    args,
  );
}

/** A plan step (kernels/plans.ts) computing linear(a, b) = a·bᵀ (+ bias): a (M, K), b (N, K) as PyTorch stores a weight. */
export function matmulStep(M: number, K: number, N: number, a: PlanArg, b: PlanArg, bias?: PlanArg): PlanStep {
  return {
    key: `matmul${bias ? '+bias' : ''}`,
    source: SRC(!!bias),
    constants: { N, K, SAI: K, SAK: 1, SBK: 1, SBJ: K },
    outputSize: M * N,
    args: bias ? [a, b, bias] : [a, b],
  };
}

/**
 * Several products of one input, linear(x, Wᵢ, bᵢ) (an attention layer's q, k and v projections), as one plan:
 * with model weights one call, one readback (kernels/plans.ts); each result as ops.linear gives it.
 */
export function linearsKernel(
  rt: GpuRuntime,
  x: Float32Array,
  rows: number,
  nin: number,
  ws: ReadonlyArray<{ weight: Float32Array; out: number; bias?: Float32Array }>,
): Promise<Float32Array[]> {
  return rt.runPlan(
    `linears|${rows}|${nin}|${ws.map((w) => `${w.out}${w.bias ? 'b' : ''}`).join(',')}`,
    ws.map((w) =>
      matmulStep(rows, nin, w.out, { input: 0 }, { weight: w.weight }, w.bias ? { weight: w.bias } : undefined),
    ),
    [x],
    ws.map((_, i) => i),
  );
}
