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

export function gatedMlp(x: Tensor, gate: Tensor, up: Tensor, down: Tensor): Tensor {
  dims({ x: [x.reshape([-1, x.shape[x.rank - 1]!]), ['rows', 'd']], gate: [gate, ['f', 'd']], up: [up, ['f', 'd']], down: [down, ['o', 'f']] });
  const g = linear(x, gate);
  const u = linear(x, up);
  return linear(
    g.zip(u, (gv, uv) => silu(gv) * uv),
    down,
  );
}
