/**
 * Tour 1 — the selective scan, the recurrence every Mamba layer runs (PAPER.md §1, symbols as in docs/guide.md).
 *   npx tsx examples/01-selective-scan.ts
 *
 * For one channel with state size N, at each step t:
 *   Δ_t = softplus(delta_t + bias)          the step size, chosen per token (the "selective" part)
 *   Ā_t = exp(Δ_t A)                         discretised decay, A < 0 so 0 < Ā < 1
 *   B̄x_t = Δ_t B_t x_t                       discretised input
 *   h_t = Ā_t ⊙ h_{t−1} + B̄x_t               the state (N numbers) carries the whole past
 *   y_t = C_t · h_t + D x_t                  the output reads the state through C
 *
 * What to look at: the state h shrinking by Ā and growing by B̄x; the parallel scan (lib/ref/selective_scan.ts),
 * L single-step updates (lib/ref/state_update.ts, what decoding runs) and the loop written here give the same y.
 */
import { Rng } from '../lib/rng.js';
import { Tensor } from '../lib/tensor.js';
import { softplus } from '../lib/ref/activations.js';
import { selectiveScan } from '../lib/ref/selective_scan.js';
import { selectiveStateUpdate } from '../lib/ref/state_update.js';

const r = new Rng(1);
const N = 4; // state size
const L = 6; // tokens
const x = Array.from({ length: L }, () => r.normal(0, 1));
const delta = Array.from({ length: L }, () => r.normal(0, 1));
const bias = -1;
const A = Array.from({ length: N }, (_, n) => -(n + 1)); // S4D-real init: A_n = −(n + 1)
const B = Array.from({ length: L }, () => Array.from({ length: N }, () => r.normal(0, 1)));
const C = Array.from({ length: L }, () => Array.from({ length: N }, () => r.normal(0, 1)));
const D = 0.5;

const f = (v: number) => v.toFixed(3).padStart(7);
console.log('the recurrence, step by step (one channel, N = 4):');
console.log('  t   x_t      Δ_t     Ā_t[0]  Ā_t[3]   h_t[0]   h_t[3]   y_t');
const h = new Array<number>(N).fill(0);
const yLoop: number[] = [];
for (let t = 0; t < L; t++) {
  const dt = softplus(delta[t] + bias);
  const Abar = A.map((a) => Math.exp(dt * a));
  for (let n = 0; n < N; n++) h[n] = Abar[n] * h[n] + dt * B[t][n] * x[t];
  const y = C[t].reduce((s, c, n) => s + c * h[n], 0) + D * x[t];
  yLoop.push(y);
  console.log(`  ${t} ${f(x[t])} ${f(dt)} ${f(Abar[0])} ${f(Abar[3])} ${f(h[0])} ${f(h[3])} ${f(y)}`);
}
console.log('  (the state index with the largest |A| forgets fastest: Ā_t[3] is the smallest)');

// the same through the library: the scan over the sequence (layout (batch, dim, L); B, C as (batch, N, L))
const T = (v: number[], shape: number[]) => Tensor.from(v, shape);
const scan = selectiveScan({
  u: T(x, [1, 1, L]),
  delta: T(delta, [1, 1, L]),
  A: T(A, [1, N]),
  B: T(
    Array.from({ length: N * L }, (_, i) => B[i % L][Math.floor(i / L)]),
    [1, N, L],
  ),
  C: T(
    Array.from({ length: N * L }, (_, i) => C[i % L][Math.floor(i / L)]),
    [1, N, L],
  ),
  D: T([D], [1]),
  deltaBias: T([bias], [1]),
  deltaSoftplus: true,
});
// and as decoding runs it: one state update per token, the state carried between calls
let state = Tensor.zeros([1, 1, N]);
const ySteps: number[] = [];
for (let t = 0; t < L; t++) {
  const s = selectiveStateUpdate({
    state,
    x: T([x[t]], [1, 1]),
    delta: T([delta[t]], [1, 1]),
    A: T(A, [1, N]),
    B: T(B[t], [1, N]),
    C: T(C[t], [1, N]),
    D: T([D], [1]),
    deltaBias: T([bias], [1]),
    deltaSoftplus: true,
  });
  state = s.state;
  ySteps.push(s.out.data[0]);
}
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i])));
console.log('\nthree ways, one answer:');
console.log(`  parallel scan   vs the loop above: max |Δy| = ${maxDiff(scan.out.data, yLoop).toExponential(1)}`);
console.log(`  L state updates vs the loop above: max |Δy| = ${maxDiff(ySteps, yLoop).toExponential(1)}`);
console.log(`  last state of the scan vs the loop: max |Δh| = ${maxDiff(scan.lastState.data, h).toExponential(1)}`);
console.log('\nnext: examples/02-algorithm1.ts — where a Mamba layer gets its B, C and x from attention weights');
