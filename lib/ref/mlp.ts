/**
 * The gated MLP of a Llama layer (transformers' LlamaMLP), float64:
 *
 *   mlp(x) = down( silu(x·gateᵀ) ⊙ (x·upᵀ) ),   silu(v) = v / (1 + e^{−v})
 *
 * x: (…, d); gate, up: (f, d); down: (o, f), PyTorch's (out, in) layout; o = d in a Llama.
 */
import { Tensor, dims } from '../tensor.js';
import { linear } from './linear.js';
import { silu } from './activations.js';

/** Validate a gated MLP call (every backend, before any work) and return its sizes. */
export function gatedMlpDims(
  x: Tensor,
  gate: Tensor,
  up: Tensor,
  down: Tensor,
): { rows: number; d: number; f: number; o: number } {
  const { rows, d, f, o } = dims({
    x: [x.reshape([-1, x.shape[x.rank - 1]]), ['rows', 'd']],
    gate: [gate, ['f', 'd']],
    up: [up, ['f', 'd']],
    down: [down, ['o', 'f']],
  });
  return { rows: rows, d: d, f: f, o: o };
}

export function gatedMlp(x: Tensor, gate: Tensor, up: Tensor, down: Tensor): Tensor {
  gatedMlpDims(x, gate, up, down);
  const g = linear(x, gate);
  const u = linear(x, up);
  return linear(
    g.zip(u, (gv, uv) => silu(gv) * uv),
    down,
  );
}
