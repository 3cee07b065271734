/**
 * Every backward op (lib/ops_grad.ts: the GPU.js kernels of kernels/*_backward.ts and the gated norm's; on
 * wasm-simd the float64 references rounded) on every available backend against its float64 reference
 * backward, on random shapes (sizes of 1, lengths not a multiple of the chunk) with every option on and off
 * (fast-check; runs in each title). The references themselves are checked against finite differences and
 * upstream's autograd in spec/train.spec.ts and the golden grads.json; here only agreement within the float32
 * tolerance is asked — every gradient output, and the forward outputs the backward returns.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { getOps } from '../lib/ops.js';
import { selectiveScanBackward, type SelectiveScanInputs } from '../lib/ref/selective_scan.js';
import { causalConv1dBackward } from '../lib/ref/conv1d.js';
import { ssdBackward, type SsdInputs } from '../lib/ref/ssd.js';
import { gatedRmsnormBackward } from '../lib/ref/norm.js';
import type { Tensor } from '../lib/tensor.js';
import { FLOAT32_TOL, KERNEL_BACKENDS, Rng, expectClose, expectCloseToTerms, rand } from './helpers.js';

const dim = (max: number) => fc.integer({ min: 1, max });

/**
 * Every tensor the reference returns must be returned, shaped and close. `sums` names outputs that are sums of
 * another output's elements (the Δ-bias gradient is Σ over batch and time of dΔ); with the reference's terms
 * given as `channel → Σ|term|`, their error is bounded by tol · ‖Σ|terms|‖ — the forward error bound of a
 * float32 sum — instead of by tol · ‖sum‖: when the terms cancel (a seen case: Σ = 0.0056 of terms whose
 * |·| add to 68.6) the float32 rounding of the terms is far above tol times the tiny result.
 */
function expectAll(
  got: Record<string, unknown>,
  want: Record<string, unknown>,
  tol: number,
  sums: Record<string, Float64Array> = {},
): void {
  for (const [k, w] of Object.entries(want)) {
    if (w === undefined) continue;
    const g = got[k] as Tensor | undefined;
    if (!g) throw new Error(`output ${k} missing`);
    const abs = sums[k];
    if (abs) expectCloseToTerms(g, w as Tensor, abs, tol, k);
    else expectClose(g, w as Tensor, tol, k);
  }
}

/** Σ over every axis but `channelAxis` of |t|: the absolute terms of a per-channel sum. */
function absSums(t: Tensor, channelAxis: number): Float64Array {
  const out = new Float64Array(t.shape[channelAxis]);
  const inner = t.shape.slice(channelAxis + 1).reduce((a, b) => a * b, 1);
  for (let i = 0; i < t.data.length; i++) out[Math.floor(i / inner) % out.length] += Math.abs(t.data[i]);
  return out;
}

/**
 * Accumulators for named sums: add(k, j, term, bound) adds term to the signed sum k[j] and its bound (|term| unless
 * given: a recurrence's bound on |·|) to the absolute one.
 */
function termSums<K extends string>(sizes: Record<K, number>) {
  const zeros = () =>
    Object.fromEntries(Object.entries<number>(sizes).map(([k, n]) => [k, new Float64Array(n)])) as Record<
      K,
      Float64Array
    >;
  const [abs, signed] = [zeros(), zeros()];
  const add = (k: K, j: number, term: number, absTerm = Math.abs(term)) => {
    abs[k][j] += absTerm;
    signed[k][j] += term;
  };
  return { abs, signed, add };
}

/** The outputs of the scan's and SSD's backward that are sums (over batch, time, a group's channels or heads, …). */
type StateSum = 'dA' | 'dD' | 'dB' | 'dC' | 'dInitialState';
type TermSums = Record<StateSum, Float64Array> & { signed: Record<StateSum, Float64Array> };

/**
 * The same for the selective scan (Mamba-1), whose dA is (dim, N) and dD (dim): with one channel and N = 1
 * each is a single sum over batch and time. Per (batch, channel d, state n), B and C in any of their three
 * layouts (told apart by rank: (dim, N), (batch, N, L), (batch, G, N, L)):
 *   h_t = e^{Δ A_dn} h_{t−1} + Δ B_n u;   dh_t = e^{Δ A_dn} dh_{t+1} + dy_t C_n;   dA_dn = Σ dh·Δ·e^{ΔA}·h_{t−1}
 *   dB_n += dh_t·Δ·u;   dC_n += dy_t·h_t;   d initial_state = e^{Δ_0 A} dh_0
 * dB and dC are sums over the channels of a group (over batch and time too when invariant: seen at 4.3e-5
 * relative in 6,000 draws), d initial_state and h are sums over time: their terms' bounds are the same
 * recurrences on absolute values (ĥ_t = e^{ΔA} ĥ_{t−1} + |Δ B u|, and so for dh).
 */
function scanAbsTerms(inp: SelectiveScanInputs, dout: Tensor, dlast: Tensor | undefined): TermSums {
  const [batch, D, L] = inp.u.shape;
  const N = inp.A.shape[1];
  const index = (t: Tensor, b: number, d: number, n: number, tt: number): number =>
    t.shape.length === 2
      ? d * N + n
      : t.shape.length === 3
        ? (b * N + n) * L + tt
        : ((b * t.shape[1] + Math.floor(d / (D / t.shape[1]))) * N + n) * L + tt;
  const at = (t: Tensor, b: number, d: number, n: number, tt: number): number => t.data[index(t, b, d, n, tt)];
  const sizes: Record<StateSum, number> = {
    dA: D * N,
    dD: D,
    dB: inp.B.data.length,
    dC: inp.C.data.length,
    dInitialState: batch * D * N,
  };
  const { abs, signed, add } = termSums(sizes);
  for (let b = 0; b < batch; b++)
    for (let d = 0; d < D; d++) {
      const i = (tt: number) => (b * D + d) * L + tt;
      const dy = (tt: number) => {
        const zv = inp.z?.data[i(tt)];
        return dout.data[i(tt)] * (zv === undefined ? 1 : zv / (1 + Math.exp(-zv)));
      };
      const deltas = Array.from({ length: L }, (_, tt) => {
        const raw = inp.delta.data[i(tt)] + (inp.deltaBias ? inp.deltaBias.data[d] : 0);
        return inp.deltaSoftplus ? Math.log1p(Math.exp(raw)) : raw;
      });
      for (let tt = 0; tt < L; tt++) add('dD', d, dy(tt) * inp.u.data[i(tt)]);
      for (let n = 0; n < N; n++) {
        const a = inp.A.data[d * N + n];
        // h and |h|'s bound ĥ (the same recurrence on absolute values): h[t + 1] = h_t
        const [h, hAbs] = [new Float64Array(L + 1), new Float64Array(L + 1)];
        h[0] = inp.initialState ? inp.initialState.data[(b * D + d) * N + n] : 0;
        hAbs[0] = Math.abs(h[0]);
        for (let tt = 0; tt < L; tt++) {
          const decay = Math.exp(deltas[tt] * a);
          const input = deltas[tt] * at(inp.B, b, d, n, tt) * inp.u.data[i(tt)];
          h[tt + 1] = decay * h[tt] + input;
          hAbs[tt + 1] = decay * hAbs[tt] + Math.abs(input);
        }
        // dh, a sum over later times, and its bound: dh_t = e^{Δ_{t+1}A} dh_{t+1} + dy_t C_t
        let dh = dlast ? dlast.data[(b * D + d) * N + n] : 0;
        let dhAbs = Math.abs(dh);
        for (let tt = L - 1; tt >= 0; tt--) {
          const dyc = dy(tt) * at(inp.C, b, d, n, tt);
          dh += dyc;
          dhAbs += Math.abs(dyc);
          add('dC', index(inp.C, b, d, n, tt), dy(tt) * h[tt + 1], Math.abs(dy(tt)) * hAbs[tt + 1]);
          add(
            'dB',
            index(inp.B, b, d, n, tt),
            dh * deltas[tt] * inp.u.data[i(tt)],
            dhAbs * deltas[tt] * Math.abs(inp.u.data[i(tt)]),
          );
          const decay = Math.exp(deltas[tt] * a);
          add('dA', d * N + n, dh * deltas[tt] * decay * h[tt]);
          dh *= decay;
          dhAbs *= decay;
        }
        add('dInitialState', (b * D + d) * N + n, dh, dhAbs);
      }
    }
  return { ...abs, signed };
}

/** The terms are the reference's own: their signed sums are its outputs (dA and dD, …) to 1e-12 of Σ|terms|. */
function expectTermsMatch(terms: { signed: Record<string, Float64Array> }, want: object): void {
  const abs = terms as unknown as Record<string, Float64Array>;
  for (const [k, signed] of Object.entries(terms.signed)) {
    const ref = (want as Record<string, Tensor | undefined>)[k];
    if (!ref) continue;
    for (let i = 0; i < ref.data.length; i++)
      expect(Math.abs(signed[i] - ref.data[i]), `${k} terms`).toBeLessThanOrEqual(1e-12 * (1 + abs[k][i]));
  }
}

/**
 * The same for the causal conv1d's weight and bias, sums over batch and time per channel (with one channel and
 * one batch row, dbias is one sum of L terms: a seen case, b 1, d 1, L 20, W 4, silu, dbias = 0.00044 of terms
 * adding to far more, relative error 1.5e-4 on cpu). In float64, apart from lib/ref/conv1d.ts, over the padded
 * input x̃ = [initial_states or 0 ; x]:
 *   s_t = bias + Σ_k w_k x̃_{t+k};   ds_t = dout_t · silu'(s_t) (or dout_t);   dbias = Σ ds_t;   dw_k = Σ ds_t x̃_{t+k}
 * with silu'(s) = σ(s)(1 + s(1 − σ(s))).
 */
function convAbsTerms(
  c: { x: Tensor; weight: Tensor; bias?: Tensor; activation: 'silu' | null; initialStates?: Tensor },
  dout: Tensor,
): { dweight: Float64Array; dbias: Float64Array; signed: { dweight: Float64Array; dbias: Float64Array } } {
  const [batch, D, L] = c.x.shape;
  const W = c.weight.shape[1];
  const dweight = new Float64Array(D * W);
  const dbias = new Float64Array(D);
  const signed = { dweight: new Float64Array(D * W), dbias: new Float64Array(D) };
  for (let b = 0; b < batch; b++)
    for (let d = 0; d < D; d++) {
      const xt = (j: number) =>
        j < W - 1
          ? c.initialStates
            ? c.initialStates.data[(b * D + d) * (W - 1) + j]
            : 0
          : c.x.data[(b * D + d) * L + j - (W - 1)];
      for (let t = 0; t < L; t++) {
        let pre = c.bias ? c.bias.data[d] : 0;
        for (let k = 0; k < W; k++) pre += c.weight.data[d * W + k] * xt(t + k);
        const sig = 1 / (1 + Math.exp(-pre));
        const ds = dout.data[(b * D + d) * L + t] * (c.activation === 'silu' ? sig * (1 + pre * (1 - sig)) : 1);
        dbias[d] += Math.abs(ds);
        signed.dbias[d] += ds;
        for (let k = 0; k < W; k++) {
          dweight[d * W + k] += Math.abs(ds * xt(t + k));
          signed.dweight[d * W + k] += ds * xt(t + k);
        }
      }
    }
  return { dweight, dbias, signed };
}

/**
 * The absolute terms of SSD's per-head sums, in float64, written here apart from lib/ref/ssd.ts: dA_h is
 * Σ over batch, time, p, n of dH_pn·Δ·e^{ΔA}·H'_pn and dD_h is Σ over batch, time, p of dy_p·x_p. With one
 * head these are single scalars whose terms can cancel (a seen case: dA = −0.00119 from terms adding, in |·|,
 * to far more), so their error is bounded, like the Δ-bias sum's, by tol·Σ|terms|. The signed sums come back
 * too, to check the terms against the reference. The recurrence, per (batch, head):
 *   H_t = e^{ΔA} H_{t−1} + Δ x B;   dH_t = e^{ΔA} dH_{t+1} + dy_t C_t,   from dH_L = d final_state.
 * dB_gn += dH·Δ·x_p and dC_gn += dy_p·H_t over a group's heads and p; d initial_state = e^{Δ_0 A} dH_0, a sum
 * over time (seen at 2.6e-5 relative in 6,000 draws): their terms' bounds are the recurrences on |·|, as for the scan.
 */
function ssdAbsTerms(inp: SsdInputs, dout: Tensor, dfin: Tensor | undefined): TermSums {
  const [batch, L, H, P] = inp.x.shape;
  const [, , G, N] = inp.B.shape;
  const sizes: Record<StateSum, number> = {
    dA: H,
    dD: H,
    dB: inp.B.data.length,
    dC: inp.C.data.length,
    dInitialState: batch * H * P * N,
  };
  const { abs, signed, add } = termSums(sizes);
  for (let b = 0; b < batch; b++)
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / (H / G));
      // per step: the state before and after it, and the bound of the state after it (the recurrence on |·|)
      const steps: {
        Hprev: Float64Array;
        Hnext: Float64Array;
        HnextAbs: Float64Array;
        decay: number;
        delta: number;
      }[] = [];
      let state = new Float64Array(P * N);
      if (inp.initialState) state.set(inp.initialState.data.subarray((b * H + h) * P * N, (b * H + h + 1) * P * N));
      let stateAbs = state.map(Math.abs);
      for (let t = 0; t < L; t++) {
        const raw = inp.delta.data[(b * L + t) * H + h] + (inp.deltaBias ? inp.deltaBias.data[h] : 0);
        const delta = inp.deltaSoftplus ? Math.log1p(Math.exp(raw)) : raw;
        const decay = Math.exp(delta * inp.A.data[h]);
        const [next, nextAbs] = [new Float64Array(P * N), new Float64Array(P * N)];
        for (let p = 0; p < P; p++)
          for (let n = 0; n < N; n++) {
            const input = delta * inp.x.data[((b * L + t) * H + h) * P + p] * inp.B.data[((b * L + t) * G + g) * N + n];
            next[p * N + n] = decay * state[p * N + n] + input;
            nextAbs[p * N + n] = decay * stateAbs[p * N + n] + Math.abs(input);
          }
        steps.push({ Hprev: state, Hnext: next, HnextAbs: nextAbs, decay, delta });
        [state, stateAbs] = [next, nextAbs];
      }
      const dH = dfin
        ? Float64Array.from(dfin.data.subarray((b * H + h) * P * N, (b * H + h + 1) * P * N))
        : new Float64Array(P * N);
      const dHAbs = dH.map(Math.abs);
      for (let t = L - 1; t >= 0; t--) {
        const { Hprev, Hnext, HnextAbs, decay, delta } = steps[t];
        const bo = ((b * L + t) * G + g) * N;
        for (let p = 0; p < P; p++) {
          const i = ((b * L + t) * H + h) * P + p;
          const zv = inp.z?.data[i];
          const dy = dout.data[i] * (zv === undefined ? 1 : zv / (1 + Math.exp(-zv)));
          add('dD', h, dy * inp.x.data[i]);
          for (let n = 0; n < N; n++) {
            const k = p * N + n;
            add('dC', bo + n, dy * Hnext[k], Math.abs(dy) * HnextAbs[k]);
            dH[k] += dy * inp.C.data[bo + n];
            dHAbs[k] += Math.abs(dy * inp.C.data[bo + n]);
            add('dA', h, dH[k] * delta * decay * Hprev[k]);
            add('dB', bo + n, dH[k] * delta * inp.x.data[i], dHAbs[k] * delta * Math.abs(inp.x.data[i]));
            dH[k] *= decay;
            dHAbs[k] *= decay;
          }
        }
      }
      for (let k = 0; k < P * N; k++) add('dInitialState', (b * H + h) * P * N + k, dH[k], dHAbs[k]);
    }
  return { ...abs, signed };
}

/**
 * The same for the gated RMSNorm's weight gradient, a sum over rows (with one column per group and a few rows,
 * one short sum that can cancel). In float64, apart from lib/ref/norm.ts, per row and group of size g:
 *   v = x·silu(z) (gate before the norm) or x;   r = 1/√(mean(v²) + ε);   dn = dy·silu(z) (norm before the gate) or dy
 *   dw_j = Σ_rows dn_j·v_j·r
 */
function normAbsTerms(
  x: Tensor,
  z: Tensor | undefined,
  dy: Tensor,
  o: { eps: number; groupSize: number; normBeforeGate: boolean },
): { dweight: Float64Array; signed: { dweight: Float64Array } } {
  const [rows, d] = x.shape;
  const g = o.groupSize;
  const silu = (v: number) => v / (1 + Math.exp(-v));
  const dweight = new Float64Array(d);
  const signed = { dweight: new Float64Array(d) };
  for (let r = 0; r < rows; r++)
    for (let g0 = 0; g0 < d; g0 += g) {
      const v = Array.from({ length: g }, (_, i) => {
        const k = r * d + g0 + i;
        return z && !o.normBeforeGate ? x.data[k] * silu(z.data[k]) : x.data[k];
      });
      const rstd = 1 / Math.sqrt(v.reduce((s, a) => s + a * a, 0) / g + o.eps);
      for (let i = 0; i < g; i++) {
        const k = r * d + g0 + i;
        const term = dy.data[k] * (z && o.normBeforeGate ? silu(z.data[k]) : 1) * v[i] * rstd;
        dweight[g0 + i] += Math.abs(term);
        signed.dweight[g0 + i] += term;
      }
    }
  return { dweight, signed };
}

describe.each(KERNEL_BACKENDS)('backward ops on $title', ({ name, available }) => {
  const run = available ? it : it.skip;
  const tol = FLOAT32_TOL;

  run('selective scan backward, every B/C layout and option = reference (numRuns 20)', async () => {
    const ops = await getOps(name);
    const layout = fc.constantFrom('time', 'grouped', 'invariant');
    await fc.assert(
      fc.asyncProperty(
        fc.record({ b: dim(2), groups: dim(3), perGroup: dim(2), L: dim(30), N: dim(5) }),
        fc.record({
          bl: layout,
          cl: layout,
          D: fc.boolean(),
          z: fc.boolean(),
          bias: fc.boolean(),
          sp: fc.boolean(),
          h0: fc.boolean(),
          dlast: fc.boolean(),
        }),
        fc.integer(),
        async (s, o, seed) => {
          const r = new Rng(seed);
          const D = s.groups * s.perGroup;
          const proj = (kind: string) =>
            kind === 'time'
              ? rand.normal(r, [s.b, s.N, s.L])
              : kind === 'grouped'
                ? rand.normal(r, [s.b, s.groups, s.N, s.L])
                : rand.normal(r, [D, s.N]);
          const inp = {
            u: rand.normal(r, [s.b, D, s.L]),
            delta: rand.normal(r, [s.b, D, s.L], 0.5),
            A: rand.uniform(r, [D, s.N], -2, -0.05),
            B: proj(o.bl),
            C: proj(o.cl),
            D: o.D ? rand.normal(r, [D]) : undefined,
            z: o.z ? rand.normal(r, [s.b, D, s.L]) : undefined,
            // without softplus Δ stays ≥ 0 (the stable domain, as in the forward's property)
            deltaBias: o.bias ? (o.sp ? rand.uniform(r, [D], -2, 0) : rand.uniform(r, [D], 0, 0.5)) : undefined,
            deltaSoftplus: o.sp,
            initialState: o.h0 ? rand.normal(r, [s.b, D, s.N]) : undefined,
          };
          if (!o.sp) inp.delta = inp.delta.map(Math.abs);
          const dout = rand.normal(r, [s.b, D, s.L]);
          const dlast = o.dlast ? rand.normal(r, [s.b, D, s.N]) : undefined;
          const want = selectiveScanBackward(inp, dout, dlast);
          const terms = scanAbsTerms(inp, dout, dlast);
          expectTermsMatch(terms, want);
          expectAll({ ...(await ops.selectiveScanBackward(inp, dout, dlast)) }, { ...want }, tol, {
            ddeltaBias: absSums(want.ddelta, 1),
            dA: terms.dA,
            dB: terms.dB,
            dC: terms.dC,
            ...(o.D ? { dD: terms.dD } : {}),
            ...(o.h0 ? { dInitialState: terms.dInitialState } : {}),
          });
        },
      ),
      { numRuns: 20 },
    );
  });

  run('causal conv1d backward, every option = reference (numRuns 20)', async () => {
    const ops = await getOps(name);
    await fc.assert(
      fc.asyncProperty(
        fc.record({ b: dim(2), d: dim(4), L: dim(20), W: fc.integer({ min: 2, max: 5 }) }),
        fc.record({ bias: fc.boolean(), init: fc.boolean(), silu: fc.boolean(), dfin: fc.boolean() }),
        fc.integer(),
        async (s, o, seed) => {
          const r = new Rng(seed);
          const c = {
            x: rand.normal(r, [s.b, s.d, s.L]),
            weight: rand.normal(r, [s.d, s.W]),
            bias: o.bias ? rand.normal(r, [s.d]) : undefined,
            activation: o.silu ? ('silu' as const) : null,
            initialStates: o.init ? rand.normal(r, [s.b, s.d, s.W - 1]) : undefined,
          };
          const dout = rand.normal(r, [s.b, s.d, s.L]);
          const dfin = o.dfin ? rand.normal(r, [s.b, s.d, s.W - 1]) : undefined;
          const want = causalConv1dBackward(c, dout, dfin);
          const terms = convAbsTerms(c, dout);
          expectTermsMatch(terms, want);
          expectAll({ ...(await ops.causalConv1dBackward(c, dout, dfin)) }, { ...want }, tol, {
            dweight: terms.dweight,
            ...(o.bias ? { dbias: terms.dbias } : {}),
          });
        },
      ),
      { numRuns: 20 },
    );
  });

  run('SSD backward, groups and every option = reference (numRuns 15)', async () => {
    const ops = await getOps(name);
    await fc.assert(
      fc.asyncProperty(
        fc.record({ b: dim(2), L: dim(20), G: dim(2), hpg: dim(2), P: dim(3), N: dim(4) }),
        fc.record({
          D: fc.boolean(),
          z: fc.boolean(),
          bias: fc.boolean(),
          sp: fc.boolean(),
          h0: fc.boolean(),
          dfin: fc.boolean(),
        }),
        fc.integer(),
        async (s, o, seed) => {
          const r = new Rng(seed);
          const H = s.G * s.hpg;
          const inp = {
            x: rand.normal(r, [s.b, s.L, H, s.P]),
            delta: rand.normal(r, [s.b, s.L, H], 0.5),
            A: rand.uniform(r, [H], -2, -0.05),
            B: rand.normal(r, [s.b, s.L, s.G, s.N]),
            C: rand.normal(r, [s.b, s.L, s.G, s.N]),
            D: o.D ? rand.normal(r, [H]) : undefined,
            z: o.z ? rand.normal(r, [s.b, s.L, H, s.P]) : undefined,
            deltaBias: o.bias ? (o.sp ? rand.uniform(r, [H], -2, 0) : rand.uniform(r, [H], 0, 0.5)) : undefined,
            deltaSoftplus: o.sp,
            initialState: o.h0 ? rand.normal(r, [s.b, H, s.P, s.N]) : undefined,
          };
          if (!o.sp) inp.delta = inp.delta.map(Math.abs);
          const dout = rand.normal(r, [s.b, s.L, H, s.P]);
          const dfin = o.dfin ? rand.normal(r, [s.b, H, s.P, s.N]) : undefined;
          const want = ssdBackward(inp, dout, dfin);
          const terms = ssdAbsTerms(inp, dout, dfin);
          expectTermsMatch(terms, want);
          expectAll({ ...(await ops.ssdBackward(inp, dout, dfin)) }, { ...want }, tol, {
            ddeltaBias: absSums(want.ddelta, 2),
            dA: terms.dA,
            dB: terms.dB,
            dC: terms.dC,
            ...(o.D ? { dD: terms.dD } : {}),
            ...(o.h0 ? { dInitialState: terms.dInitialState } : {}),
          });
        },
      ),
      { numRuns: 15 },
    );
  });

  run('gated RMSNorm backward, groups, gate before and after = reference (numRuns 20)', async () => {
    const ops = await getOps(name);
    await fc.assert(
      fc.asyncProperty(
        fc.record({ rows: dim(6), groups: dim(3), gs: dim(6), z: fc.boolean(), before: fc.boolean() }),
        fc.integer(),
        async (s, seed) => {
          const r = new Rng(seed);
          const d = s.groups * s.gs;
          const x = rand.normal(r, [s.rows, d]);
          const w = rand.normal(r, [d]);
          const z = s.z ? rand.normal(r, [s.rows, d]) : undefined;
          const dy = rand.normal(r, [s.rows, d]);
          const o = { eps: 1e-5, groupSize: s.gs, normBeforeGate: s.before };
          const want = gatedRmsnormBackward(x, w, z, dy, o);
          const terms = normAbsTerms(x, z, dy, o);
          expectTermsMatch(terms, want);
          expectAll({ ...(await ops.gatedRmsnormBackward(x, w, z, dy, o)) }, { ...want }, tol, {
            dweight: terms.dweight,
          });
        },
      ),
      { numRuns: 20 },
    );
  });
});
