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
import { selectiveScanBackward } from '../lib/ref/selective_scan.js';
import { causalConv1dBackward } from '../lib/ref/conv1d.js';
import { ssdBackward } from '../lib/ref/ssd.js';
import { gatedRmsnormBackward } from '../lib/ref/norm.js';
import type { Tensor } from '../lib/tensor.js';
import { FLOAT32_TOL, KERNEL_BACKENDS, Rng, expectClose, rand } from './helpers.js';

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
    if (!abs) {
      expectClose(g, w as Tensor, tol, k);
      continue;
    }
    expect(g.shape, `${k} shape`).toEqual((w as Tensor).shape);
    const err = Math.hypot(...Array.from(g.data, (v, i) => v - (w as Tensor).data[i]));
    const scale = Math.hypot(...abs);
    expect(err, `${k}: error ${err} against Σ|terms| ${scale}`).toBeLessThanOrEqual(tol * scale);
  }
}

/** Σ over every axis but `channelAxis` of |t|: the absolute terms of a per-channel sum. */
function absSums(t: Tensor, channelAxis: number): Float64Array {
  const out = new Float64Array(t.shape[channelAxis]);
  const inner = t.shape.slice(channelAxis + 1).reduce((a, b) => a * b, 1);
  for (let i = 0; i < t.data.length; i++) out[Math.floor(i / inner) % out.length] += Math.abs(t.data[i]);
  return out;
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
          expectAll({ ...(await ops.selectiveScanBackward(inp, dout, dlast)) }, { ...want }, tol, {
            ddeltaBias: absSums(want.ddelta, 1),
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
          expectAll(
            { ...(await ops.causalConv1dBackward(c, dout, dfin)) },
            { ...causalConv1dBackward(c, dout, dfin) },
            tol,
          );
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
          expectAll({ ...(await ops.ssdBackward(inp, dout, dfin)) }, { ...want }, tol, {
            ddeltaBias: absSums(want.ddelta, 2),
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
          expectAll(
            { ...(await ops.gatedRmsnormBackward(x, w, z, dy, o)) },
            { ...gatedRmsnormBackward(x, w, z, dy, o) },
            tol,
          );
        },
      ),
      { numRuns: 20 },
    );
  });
});
