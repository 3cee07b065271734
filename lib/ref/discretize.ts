/**
 * Discretisation of the continuous SSM (PAPER.md §2), the one place the references turn (Δ, A, B) into the
 * step the recurrence h_t = Ā_t ⊙ h_{t−1} + B̄_t x_t takes:
 *
 *   Ā = exp(Δ·A)        zero-order hold for the diagonal A (A < 0, so 0 < Ā ≤ 1: how much of h survives a step)
 *   B̄x = Δ·B·x          Euler for B, as upstream (the exact ZOH term (Ā − 1)/A · B differs by O(Δ²))
 *
 * Every float64 reference that discretises calls these (and `discretizeDelta` for Δ itself): lib/ref/selective_scan.ts (Mamba-1, and its
 * backward), lib/ref/state_update.ts (one decode step), lib/ref/multistep.ts (Algorithm 2's MultiStep) and
 * lib/ref/ssd.ts (Mamba-2, whose chunked form sums the exponents a_t = Δ_t·A inside a chunk instead:
 * Π Ā_t = exp(Σ a_t)).
 *
 * Rounding order: the two upstream families round Δ·B·x differently, and each reference follows its own so
 * that its outputs match upstream's to the last bit where upstream's do: Mamba-1's selective_scan_ref and
 * selective_state_update_ref form (Δ·B)·x (`discretizeBx`); Mamba-2's ssd_minimal scales the input first,
 * X = x·Δ, then multiplies by B (`scaleByDelta`, then · B).
 */
import { softplus } from './activations.js';

/**
 * Δ of one step from its raw value v = dt + dt_bias: softplus(v) when `softplusDelta` (upstream's
 * delta_softplus / dt_softplus, torch's threshold 20), else v itself.
 */
export function discretizeDelta(v: number, softplusDelta: boolean): number {
  return softplusDelta ? softplus(v) : v;
}

/** Ā = exp(Δ·A) for one state element: the decay of the state over a step of size Δ. */
export function discretizeA(delta: number, a: number): number {
  return Math.exp(delta * a);
}

/** B̄x = (Δ·B)·x for one state element: what input x adds to the state in a step of size Δ (Mamba-1 order). */
export function discretizeBx(delta: number, b: number, x: number): number {
  return delta * b * x;
}

/** X = Δ·x, Mamba-2's discretised input (upstream ssd_minimal's `X * dt`): B̄x = X·B there. */
export function scaleByDelta(delta: number, x: number): number {
  return delta * x;
}
