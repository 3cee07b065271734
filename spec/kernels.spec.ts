/**
 * Every GPU.js kernel on every available backend against its float64 reference, on random shapes
 * (sizes of 1, lengths that are not a multiple of the chunk) and random values (fast-check; the number
 * of runs is in each `numRuns`). Long sequences (L ≥ 1500) have their own tests at the end.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { getOps } from '../lib/ops.js';
import { getRuntime, type KernelBackendName } from '../kernels/runtime.js';
import { markChanged, markImmutable } from '../lib/weight_registry.js';
import { randomLlama } from '../lib/model/random.js';
import { convert } from '../lib/model/convert.js';
import { forward, newCache } from '../lib/model/hybrid.js';
import { matmul, linear } from '../lib/ref/linear.js';
import { gatedMlp } from '../lib/ref/mlp.js';
import { linearAttentionParallel } from '../lib/ref/linear_attention.js';
import { selectiveScan, type SelectiveScanInputs } from '../lib/ref/selective_scan.js';
import { selectiveStateUpdate } from '../lib/ref/state_update.js';
import { causalConv1d, causalConv1dUpdate } from '../lib/ref/conv1d.js';
import { ssdSequential, ssdMinimalDiscrete } from '../lib/ref/ssd.js';
import { gatedRmsnorm } from '../lib/ref/norm.js';
import { multistep } from '../lib/ref/multistep.js';
import { FLOAT32_TOL, KERNEL_BACKENDS, Rng, Tensor, expectClose, expectCloseToTerms, rand } from './helpers.js';

const dim = (max: number) => fc.integer({ min: 1, max });

/**
 * Σ|terms| of each element of a product, for expectCloseToTerms (a 1×1 product is one dot product, whose sum
 * can cancel: fast-check's sizes of 1 drew m = n = 1, k = 11 at relative error 6e-4, err/Σ|terms| 2e-8).
 * In float64, apart from lib/ref: (rows, k) · (k, cols) with `b` read as (k, cols), or as (cols, k) when
 * transposed (linear's weight), plus |bias|:   S_ij = Σ_k |a_ik|·|b_kj| + |bias_j|
 */
function absProduct(a: Tensor, b: Tensor, transposed: boolean, bias?: Tensor): Float64Array {
  const [rows, k] = a.shape;
  const cols = transposed ? b.shape[0] : b.shape[1];
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < cols; j++) {
      let s = bias ? Math.abs(bias.data[j]) : 0;
      for (let t = 0; t < k; t++) s += Math.abs(a.data[i * k + t] * b.data[transposed ? j * k + t : t * cols + j]);
      out[i * cols + j] = s;
    }
  return out;
}

/**
 * The same for the gated MLP y = down·h, h = silu(g) ⊙ u, g = x·gateᵀ, u = x·upᵀ (rows 1 and outputs 1 make y one
 * dot product). First order, each float32 sum's error bounded by its Σ|terms| and carried through silu:
 *   S_ro = Σ_j |down_oj| · (|h_rj| + |silu'(g_rj)|·|u_rj|·G_rj + |silu(g_rj)|·U_rj),   G = |x|·|gate|ᵀ, U = |x|·|up|ᵀ
 * with silu'(g) = σ(g)(1 + g(1 − σ(g))).
 */
function absGatedMlp(x: Tensor, gate: Tensor, up: Tensor, down: Tensor): Float64Array {
  const [rows, d] = x.shape;
  const [f, o] = [gate.shape[0], down.shape[0]];
  const [G, U] = [absProduct(x, gate, true), absProduct(x, up, true)];
  const dotRow = (w: Tensor, r: number, j: number) => {
    let s = 0;
    for (let t = 0; t < d; t++) s += x.data[r * d + t] * w.data[j * d + t];
    return s;
  };
  const out = new Float64Array(rows * o);
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < f; j++) {
      const [g, u] = [dotRow(gate, r, j), dotRow(up, r, j)];
      const sig = 1 / (1 + Math.exp(-g));
      const hTerm =
        Math.abs(g * sig * u) +
        Math.abs(sig * (1 + g * (1 - sig)) * u) * G[r * f + j] +
        Math.abs(g * sig) * U[r * f + j];
      for (let c = 0; c < o; c++) out[r * o + c] += Math.abs(down.data[c * f + j]) * hTerm;
    }
  return out;
}

describe.each(KERNEL_BACKENDS)('kernels on $title', ({ name, available }) => {
  const run = available ? it : it.skip;
  const tol = FLOAT32_TOL;

  run('matmul and linear = reference (numRuns 15)', async () => {
    const ops = await getOps(name);
    await fc.assert(
      fc.asyncProperty(dim(9), dim(17), dim(9), fc.boolean(), fc.integer(), async (m, k, n, bias, seed) => {
        const r = new Rng(seed);
        const a = rand.normal(r, [m, k]);
        const b = rand.normal(r, [k, n]);
        expectCloseToTerms(await ops.matmul(a, b), matmul(a, b), absProduct(a, b, false), tol, 'matmul');
        const W = rand.normal(r, [n, k]);
        const bb = bias ? rand.normal(r, [n]) : undefined;
        expectCloseToTerms(await ops.linear(a, W, bb), linear(a, W, bb), absProduct(a, W, true, bb), tol, 'linear');
      }),
      { numRuns: 15 },
    );
  });

  run(
    'the gated MLP = reference, fused (model weights) and kernel by kernel, the same bits both ways (numRuns 8)',
    async () => {
      const ops = await getOps(name);
      const rt = name === 'wasm-simd' ? undefined : await getRuntime(name as KernelBackendName); // wasm-simd: its products and SIMD SiLU, no plan
      await fc.assert(
        fc.asyncProperty(dim(5), dim(9), dim(13), dim(9), fc.integer(), async (rows, d, f, o, seed) => {
          const r = new Rng(seed);
          const x = rand.normal(r, [rows, d]);
          const [gate, up, down] = [rand.normal(r, [f, d]), rand.normal(r, [f, d]), rand.normal(r, [o, f])];
          const want = gatedMlp(x, gate, up, down);
          const loose = await ops.gatedMlp(x, gate, up, down); // weights not marked immutable: kernel by kernel
          expectCloseToTerms(loose, want, absGatedMlp(x, gate, up, down), tol, 'kernel by kernel');
          for (const w of [gate, up, down]) markImmutable(w.data);
          const plans = rt?.plans.compiled ?? 0;
          const fused = await ops.gatedMlp(x, gate, up, down);
          if (rt) expect(rt.plans.compiled, 'model weights run as one compiled plan').toBe(plans + 1);
          expect(Array.from(fused.data)).toEqual(Array.from(loose.data));
          expect(Array.from((await ops.gatedMlp(x, gate, up, down)).data), 'the cached plan').toEqual(
            Array.from(loose.data),
          );
          if (rt) expect(rt.plans.compiled, 'compiled once').toBe(plans + 1);
        }),
        { numRuns: 8 },
      );
    },
  );

  // the GPU.js runtime's own cache of compiled kernels (wasm-simd has none)
  (available && name !== 'wasm-simd' ? it : it.skip)(
    'at most maxKernels compiled kernels stay alive: the least recently used is retired and compiled again when needed, with the same results',
    async () => {
      const rt = await getRuntime(name as KernelBackendName);
      const was = rt.maxKernels;
      const src = 'function (a) { return a[this.thread.x] * this.constants.S + 1.0; }';
      // three shapes of one source (each its own kernel), a unique scale so no other test shares them
      const run = (n: number) =>
        rt.run('spec.lru', src, { S: 3.25 }, n, [Float32Array.from({ length: n }, (_, i) => i)]);
      const want = (n: number) => Array.from({ length: n }, (_, i) => i * 3.25 + 1);
      try {
        rt.maxKernels = rt.compiled + 1000; // nothing else retired while the three are compiled
        const base = rt.compiled;
        for (const n of [5, 6, 7]) expect(Array.from(await run(n))).toEqual(want(n));
        expect(rt.compiled).toBe(base + 3);
        rt.maxKernels = 2; // the two most recent (6, 7) stay
        expect(Array.from(await run(8))).toEqual(want(8)); // a fourth: compiled, and the oldest ones retired
        expect(rt.compiled).toBe(base + 4);
        expect(Array.from(await run(8)), 'recently used: still alive').toEqual(want(8));
        expect(rt.compiled).toBe(base + 4);
        expect(Array.from(await run(5)), 'retired: compiled again').toEqual(want(5));
        expect(rt.compiled).toBe(base + 5);
      } finally {
        rt.maxKernels = was;
      }
    },
  );

  // wasm-simd has no plans: skipped there, not passed empty
  (available && name !== 'wasm-simd' ? it : it.skip)(
    'at most maxPlans compiled plans stay alive: the least recently used is retired (after its call in flight) and compiled again when needed, with the same results',
    async () => {
      const ops = await getOps(name);
      const rt = await getRuntime(name as KernelBackendName);
      const r = new Rng(13);
      const x = rand.normal(r, [2, 4]);
      const layers = [0, 1, 2].map(
        () => [rand.normal(r, [3, 4]), rand.normal(r, [3, 4]), rand.normal(r, [4, 3])] as const,
      );
      for (const l of layers) for (const w of l) markImmutable(w.data);
      const bits = (t: Tensor) => Array.from(t.data);
      const was = { maxPlans: rt.plans.maxPlans, enabled: rt.plans.enabled };
      try {
        rt.plans.enabled = false;
        const want = await Promise.all(layers.map((l) => ops.gatedMlp(x, ...l))); // kernel by kernel
        rt.plans.enabled = true;
        rt.plans.maxPlans = 2;
        const compiled = rt.plans.compiled;
        // three plans at once: the first is retired while it runs, and destroyed only once its call is done
        expect((await Promise.all(layers.map((l) => ops.gatedMlp(x, ...l)))).map(bits)).toEqual(want.map(bits));
        expect(rt.plans.compiled).toBe(compiled + 3);
        expect(bits(await ops.gatedMlp(x, ...layers[2])), 'recently used: still alive').toEqual(bits(want[2]));
        expect(rt.plans.compiled).toBe(compiled + 3);
        expect(bits(await ops.gatedMlp(x, ...layers[0])), 'retired: compiled again').toEqual(bits(want[0]));
        expect(rt.plans.compiled).toBe(compiled + 4);
        rt.plans.release();
        expect(bits(await ops.gatedMlp(x, ...layers[2]))).toEqual(bits(want[2]));
        expect(rt.plans.compiled, 'released plans are compiled again').toBe(compiled + 5);
      } finally {
        Object.assign(rt.plans, was);
      }
    },
  );

  run(
    'several products of one input (q, k, v) = reference, fused and kernel by kernel, the same bits both ways (numRuns 8)',
    async () => {
      const ops = await getOps(name);
      await fc.assert(
        fc.asyncProperty(
          dim(5),
          dim(9),
          fc.array(fc.record({ out: dim(9), bias: fc.boolean() }), { minLength: 1, maxLength: 4 }),
          fc.integer(),
          async (rows, nin, spec, seed) => {
            const r = new Rng(seed);
            const x = rand.normal(r, [rows, nin]);
            const ws = spec.map((w) => ({
              weight: rand.normal(r, [w.out, nin]),
              bias: w.bias ? rand.normal(r, [w.out]) : undefined,
            }));
            const loose = await ops.linears(x, ws);
            ws.forEach((w, i) =>
              expectCloseToTerms(
                loose[i],
                linear(x, w.weight, w.bias),
                absProduct(x, w.weight, true, w.bias),
                tol,
                `product ${i}`,
              ),
            );
            for (const w of ws) for (const t of [w.weight, w.bias]) if (t) markImmutable(t.data);
            const fused = await ops.linears(x, ws);
            expect(fused.map((t) => Array.from(t.data))).toEqual(loose.map((t) => Array.from(t.data)));
          },
        ),
        { numRuns: 8 },
      );
    },
  );

  run('a plan whose weight changed in place (markChanged) is rebuilt with the new values', async () => {
    const ops = await getOps(name);
    const r = new Rng(11);
    const x = rand.normal(r, [2, 6]);
    const [gate, up] = [rand.normal(r, [5, 6]), rand.normal(r, [5, 6])];
    const down = new Tensor(Float32Array.from(rand.normal(r, [6, 5]).data), [6, 5]);
    for (const w of [gate, up, down]) markImmutable(w.data);
    expectClose(await ops.gatedMlp(x, gate, up, down), gatedMlp(x, gate, up, down), tol, 'before');
    for (const w of [up, down]) {
      for (let i = 0; i < w.size; i++) w.data[i] = 1 - 3 * w.data[i];
      markChanged(w.data);
      expectClose(
        await ops.gatedMlp(x, gate, up, down),
        gatedMlp(x, gate, up, down),
        tol,
        `after changing ${w === up ? 'up (float64)' : 'down (float32)'}`,
      );
    }
  });

  run('linear attention (parallel, with and without decay) = reference (numRuns 12)', async () => {
    const ops = await getOps(name);
    await fc.assert(
      fc.asyncProperty(
        dim(2),
        dim(2),
        dim(20),
        dim(5),
        dim(5),
        fc.boolean(),
        fc.integer(),
        async (b, h, L, dk, dv, decay, seed) => {
          const r = new Rng(seed);
          const q = rand.normal(r, [b, h, L, dk]);
          const k = rand.normal(r, [b, h, L, dk]);
          const v = rand.normal(r, [b, h, L, dv]);
          const g = decay ? rand.uniform(r, [b, h, L], 0.5, 1) : undefined;
          expectClose(await ops.linearAttention(q, k, v, g), linearAttentionParallel(q, k, v, g), tol);
        },
      ),
      { numRuns: 12 },
    );
  });

  run('selective scan, every B/C layout and option = reference (numRuns 25)', async () => {
    const ops = await getOps(name);
    const layout = fc.constantFrom('time', 'grouped', 'invariant');
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          b: dim(2),
          groups: dim(3),
          perGroup: dim(3),
          L: dim(40),
          N: dim(6),
          chunk: fc.option(dim(9), { nil: undefined }),
        }),
        fc.record({
          bl: layout,
          cl: layout,
          D: fc.boolean(),
          z: fc.boolean(),
          bias: fc.boolean(),
          sp: fc.boolean(),
          h0: fc.boolean(),
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
            // with softplus any bias works; without it Δ = |delta| + bias must stay ≥ 0 (A < 0, Δ ≥ 0 is the
            // stable domain: a negative Δ makes exp(ΔA) > 1 and the state overflows float32 over ~40 steps)
            deltaBias: o.bias ? (o.sp ? rand.uniform(r, [D], -2, 0) : rand.uniform(r, [D], 0, 0.5)) : undefined,
            deltaSoftplus: o.sp,
            initialState: o.h0 ? rand.normal(r, [s.b, D, s.N]) : undefined,
          };
          if (!o.sp) inp.delta = inp.delta.map(Math.abs); // without softplus Δ must stay ≥ 0 for a stable scan
          const want = selectiveScan(inp);
          const got = await ops.selectiveScan({ ...inp, chunkSize: s.chunk });
          // h_t and y_t are float32 sums whose terms can cancel (seen: a 1-channel last_state of 2.5e-4 from terms
          // adding to 0.15 in |·|, relative error 1.2e-4, 2e-7 of Σ|terms|): bounded by tol·Σ|terms| (helpers.ts
          // expectCloseToTerms), the terms from the same recurrence on absolute values, in float64, written here
          const abs = scanAbsTerms(inp, s, o);
          // |Σ terms| ≤ Σ|terms|: the absolute terms bound the reference's values (a check of scanAbsTerms)
          want.out.data.forEach((v, i) => expect(Math.abs(v)).toBeLessThanOrEqual(abs.out[i] * (1 + 1e-12)));
          want.lastState.data.forEach((v, i) => expect(Math.abs(v)).toBeLessThanOrEqual(abs.state[i] * (1 + 1e-12)));
          expectCloseToTerms(got.out, want.out, abs.out, tol, 'out');
          expectCloseToTerms(got.lastState, want.lastState, abs.state, tol, 'last_state');
        },
      ),
      { numRuns: 25 },
    );
  });

  run(
    'state update, flat and multi-head with groups = reference; with model weights (one fused plan) the same bits (numRuns 20)',
    async () => {
      const ops = await getOps(name);
      await fc.assert(
        fc.asyncProperty(
          fc.record({
            b: dim(3),
            G: dim(2),
            hpg: dim(2),
            P: dim(6),
            N: dim(17),
            multi: fc.boolean(),
            opt: fc.boolean(),
          }),
          fc.integer(),
          async (s, seed) => {
            const r = new Rng(seed);
            const H = s.G * s.hpg;
            const lead = s.multi ? [H, s.P] : [s.P];
            const inp = {
              state: rand.normal(r, [s.b, ...lead, s.N]),
              x: rand.normal(r, [s.b, ...lead]),
              delta: rand.normal(r, [s.b, ...lead], 0.5),
              A: rand.uniform(r, [...lead, s.N], -2, -0.1),
              B: rand.normal(r, s.multi ? [s.b, s.G, s.N] : [s.b, s.N]),
              C: rand.normal(r, s.multi ? [s.b, s.G, s.N] : [s.b, s.N]),
              D: s.opt ? rand.normal(r, lead) : undefined,
              z: s.opt ? rand.normal(r, [s.b, ...lead]) : undefined,
              deltaBias: s.opt ? rand.uniform(r, lead, -3, -1) : undefined,
              deltaSoftplus: true,
            };
            const want = selectiveStateUpdate(inp);
            const got = await ops.selectiveStateUpdate(inp);
            expectClose(got.out, want.out, tol, 'out');
            expectClose(got.state, want.state, tol, 'state');
            // A, D and dt_bias as a model's weights: the GPU.js backends run both passes as one fused plan
            for (const t of [inp.A, inp.D, inp.deltaBias]) if (t) markImmutable(t.data);
            const fused = await ops.selectiveStateUpdate(inp);
            expect(Array.from(fused.out.data), 'fused out').toEqual(Array.from(got.out.data));
            expect(Array.from(fused.state.data), 'fused state').toEqual(Array.from(got.state.data));
          },
        ),
        { numRuns: 20 },
      );
    },
  );

  run('causal conv1d and its update (shift and circular) = reference (numRuns 20)', async () => {
    const ops = await getOps(name);
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          b: dim(2),
          d: dim(5),
          L: dim(30),
          W: fc.integer({ min: 1, max: 5 }),
          extra: fc.integer({ min: 0, max: 4 }),
          steps: dim(4),
        }),
        fc.record({ bias: fc.boolean(), init: fc.boolean(), silu: fc.boolean(), circular: fc.boolean() }),
        fc.integer(),
        async (s, o, seed) => {
          const r = new Rng(seed);
          const weight = rand.normal(r, [s.d, s.W]);
          const bias = o.bias ? rand.normal(r, [s.d]) : undefined;
          const activation = o.silu ? ('silu' as const) : null;
          const c = {
            x: rand.normal(r, [s.b, s.d, s.L]),
            weight,
            bias,
            activation,
            initialStates: o.init ? rand.normal(r, [s.b, s.d, s.W - 1]) : undefined,
          };
          const want = causalConv1d(c);
          const got = await ops.causalConv1d(c);
          expectClose(got.out, want.out, tol, 'out');
          expectClose(got.finalStates, want.finalStates, tol, 'final_states');
          const S = Math.max(1, s.W - 1 + s.extra);
          if (S < s.W - 1) return;
          const u = {
            x: rand.normal(r, [s.b, s.d, s.steps]),
            convState: rand.normal(r, [s.b, s.d, S]),
            weight,
            bias,
            activation,
            cacheSeqlens: o.circular ? Array.from({ length: s.b }, () => r.int(0, 3 * S)) : undefined,
          };
          const wu = causalConv1dUpdate(u);
          const gu = await ops.causalConv1dUpdate(u);
          expectClose(gu.out, wu.out, tol, 'update out');
          expectClose(gu.convState, wu.convState, tol, 'conv_state');
        },
      ),
      { numRuns: 20 },
    );
  });

  run('SSD chunked kernel = sequential reference; ssd_minimal kernel = reference (numRuns 20)', async () => {
    const ops = await getOps(name);
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          b: dim(2),
          L: dim(30),
          G: dim(2),
          hpg: dim(2),
          P: dim(4),
          N: dim(5),
          chunk: dim(8),
          opt: fc.boolean(),
          h0: fc.boolean(),
        }),
        fc.integer(),
        async (s, seed) => {
          const r = new Rng(seed);
          const H = s.G * s.hpg;
          const inp = {
            x: rand.normal(r, [s.b, s.L, H, s.P]),
            delta: rand.normal(r, [s.b, s.L, H], 0.5),
            A: rand.uniform(r, [H], -2, -0.1),
            B: rand.normal(r, [s.b, s.L, s.G, s.N]),
            C: rand.normal(r, [s.b, s.L, s.G, s.N]),
            D: s.opt ? rand.normal(r, [H]) : undefined,
            z: s.opt ? rand.normal(r, [s.b, s.L, H, s.P]) : undefined,
            deltaBias: s.opt ? rand.uniform(r, [H], -3, -1) : undefined,
            deltaSoftplus: true,
            initialState: s.h0 ? rand.normal(r, [s.b, H, s.P, s.N]) : undefined,
          };
          const want = ssdSequential(inp);
          const got = await ops.ssdChunkScan(inp, s.chunk);
          expectClose(got.out, want.out, tol, 'out');
          expectClose(got.finalState, want.finalState, tol, 'final_state');
          const X = rand.normal(r, [s.b, s.L, H, s.P]);
          const A = rand.uniform(r, [s.b, s.L, H], -1, -0.01);
          const Bm = rand.normal(r, [s.b, s.L, H, s.N]);
          const Cm = rand.normal(r, [s.b, s.L, H, s.N]);
          const init = s.h0 ? rand.normal(r, [s.b, 1, H, s.P, s.N]) : undefined;
          const wm = ssdMinimalDiscrete(X, A, Bm, Cm, s.chunk, init);
          const gm = await ops.ssdMinimalDiscrete(X, A, Bm, Cm, s.chunk, init);
          expectClose(gm.Y, wm.Y, tol, 'Y');
          expectClose(gm.finalState, wm.finalState, tol, 'ssd_minimal final_state');
        },
      ),
      { numRuns: 20 },
    );
  });

  run('multi-step verify kernel, upstream and grouped B/C layouts = reference (numRuns 20)', async () => {
    const ops = await getOps(name);
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          b: dim(2),
          G: dim(3),
          per: dim(4),
          N: dim(17),
          K: dim(8),
          r: fc.nat(8),
          opt: fc.boolean(),
          grouped: fc.boolean(),
        }),
        fc.integer(),
        async (s, seed) => {
          const r = new Rng(seed);
          const rec = Math.min(s.r, s.K);
          const K1 = s.K + 1;
          const d = s.G * s.per;
          const bc = (rows: number) => (s.grouped ? [s.b, rows, s.G, s.N] : [s.b, rows, s.N]);
          const inp = {
            hI: rand.normal(r, [s.b, d, s.N]),
            xCache: rand.normal(r, [s.b, K1, d]),
            deltaCache: rand.normal(r, [s.b, K1, d], 0.5),
            BCache: rand.normal(r, bc(K1)),
            recomputeSteps: rec,
            x: rand.normal(r, [s.b, s.K, d]),
            delta: rand.normal(r, [s.b, s.K, d], 0.5),
            B: rand.normal(r, bc(s.K)),
            C: rand.normal(r, bc(s.K)),
            z: s.opt ? rand.normal(r, [s.b, s.K, d]) : undefined,
            A: rand.uniform(r, [d, s.N], -2, -0.1),
            D: s.opt ? rand.normal(r, [d]) : undefined,
            deltaBias: s.opt ? rand.uniform(r, [d], -3, -1) : undefined,
            deltaSoftplus: true,
          };
          const want = multistep(inp);
          const got = await ops.multistep(inp);
          expectClose(got.out, want.out, tol, 'out');
          expectClose(got.hJ, want.hJ, tol, 'h_j');
          expectClose(got.hK, want.hK, tol, 'h_k');
        },
      ),
      { numRuns: 20 },
    );
  });

  run('gated RMSNorm, gate before and after = reference (numRuns 15)', async () => {
    const ops = await getOps(name);
    await fc.assert(
      fc.asyncProperty(
        dim(6),
        dim(4),
        dim(8),
        fc.boolean(),
        fc.boolean(),
        fc.integer(),
        async (rows, groups, gs, before, hasZ, seed) => {
          const r = new Rng(seed);
          const d = groups * gs;
          const x = rand.normal(r, [rows, d]);
          const w = rand.normal(r, [d]);
          const z = hasZ ? rand.normal(r, [rows, d]) : undefined;
          const o = { eps: 1e-5, groupSize: gs, normBeforeGate: before };
          expectClose(await ops.gatedRmsnorm(x, w, z, o), gatedRmsnorm(x, w, z, o), tol);
        },
      ),
      { numRuns: 15 },
    );
  });

  run('long sequences (L = 1500..2100): scan, SSD, conv, linear attention = reference (numRuns 2)', async () => {
    const ops = await getOps(name);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1500, max: 2100 }), fc.integer(), async (L, seed) => {
        const r = new Rng(seed);
        const D = 4;
        const N = 16;
        const inp = {
          u: rand.normal(r, [1, D, L]),
          delta: rand.normal(r, [1, D, L], 0.5),
          A: rand.uniform(r, [D, N], -1, -0.01),
          B: rand.normal(r, [1, N, L]),
          C: rand.normal(r, [1, N, L]),
          D: rand.normal(r, [D]),
          deltaBias: rand.uniform(r, [D], -4, -2),
          deltaSoftplus: true,
        };
        const want = selectiveScan(inp);
        const got = await ops.selectiveScan(inp);
        expectClose(got.out, want.out, tol, 'scan out');
        expectClose(got.lastState, want.lastState, tol, 'scan last_state');
        const s = {
          x: rand.normal(r, [1, L, 2, 3]),
          delta: rand.normal(r, [1, L, 2], 0.5),
          A: rand.uniform(r, [2], -1, -0.1),
          B: rand.normal(r, [1, L, 1, 8]),
          C: rand.normal(r, [1, L, 1, 8]),
          deltaBias: rand.uniform(r, [2], -4, -2),
          deltaSoftplus: true,
        };
        const ws = ssdSequential(s);
        const gs = await ops.ssdChunkScan(s, 64);
        expectClose(gs.out, ws.out, tol, 'ssd out');
        const c = { x: rand.normal(r, [1, 3, L]), weight: rand.normal(r, [3, 4]), activation: 'silu' as const };
        expectClose((await ops.causalConv1d(c)).out, causalConv1d(c).out, tol, 'conv out');
        const q = rand.normal(r, [1, 1, L, 4]);
        const k = rand.normal(r, [1, 1, L, 4]);
        const v = rand.normal(r, [1, 1, L, 2]);
        const g = rand.uniform(r, [1, 1, L], 0.9, 1);
        expectClose(
          await ops.linearAttention(q, k, v, g),
          linearAttentionParallel(q, k, v, g),
          tol,
          'linear attention',
        );
      }),
      { numRuns: 2 },
    );
  });
});

describe('webgpu keeps weights resident (uploaded once, bound in place of a copy at every call)', () => {
  const webgpu = KERNEL_BACKENDS.find((b) => b.name === 'webgpu')!;
  const run = webgpu.available ? it : it.skip;
  const spec = { vocab: 61, hidden: 32, intermediate: 48, layers: 2, heads: 4, kvHeads: 2 };

  run(
    `a hybrid's forward gives the same logits bits with weights resident as with every weight copied per call; a second forward uploads nothing (${webgpu.title})`,
    async () => {
      const ops = await getOps('webgpu');
      const rt = await getRuntime('webgpu');
      const m = convert(randomLlama(spec, 3), { variant: 'mamba2', attentionFraction: 0.5, seed: 1 });
      const prompt = [[1, 2, 3, 4, 5]];
      const was = rt.residentWeights;
      try {
        rt.residentWeights = false;
        const before = rt.uploads;
        const copied = await forward(ops, m, prompt, newCache(m, 1));
        expect(rt.uploads, 'no upload while residency is off').toBe(before);
        rt.residentWeights = true;
        const resident = await forward(ops, m, prompt, newCache(m, 1));
        const uploaded = rt.uploads - before;
        expect(uploaded, 'the projections were uploaded').toBeGreaterThanOrEqual(2 * spec.layers);
        expect(Array.from(resident.data)).toEqual(Array.from(copied.data));
        const again = await forward(ops, m, prompt, newCache(m, 1));
        expect(rt.uploads - before, 'the second forward binds the same buffers').toBe(uploaded);
        expect(Array.from(again.data)).toEqual(Array.from(copied.data));
      } finally {
        rt.residentWeights = was;
      }
    },
  );

  run(
    `a weight changed in place and marked changed is uploaded again: the product uses its new values, the old buffer is freed (float32 and float64 weights) (${webgpu.title})`,
    async () => {
      const ops = await getOps('webgpu');
      const rt = await getRuntime('webgpu');
      const r = new Rng(5);
      for (const dtype of ['float32', 'float64'] as const) {
        const x = rand.normal(r, [3, 7]);
        const W = rand.normal(r, [5, 7]);
        const w = dtype === 'float32' ? new Tensor(Float32Array.from(W.data), W.shape) : W;
        markImmutable(w.data);
        expectClose(await ops.linear(x, w), linear(x, w), FLOAT32_TOL, `${dtype} weight before`);
        for (let i = 0; i < w.size; i++) w.data[i] = -2 * w.data[i] + 1;
        const held = rt.residentElements;
        markChanged(w.data);
        expectClose(await ops.linear(x, w), linear(x, w), FLOAT32_TOL, `${dtype} weight after the change`);
        expect(rt.residentElements, `${dtype}: the changed weight's old device buffer is freed`).toBe(held);
      }
    },
  );
});

/**
 * Σ|terms| of the selective scan's outputs (expectCloseToTerms): with e = exp(Δ_t A) > 0 the state's terms are
 * |h|_t = e |h|_{t−1} + |Δ_t B_t u_t| (|h|_0 = |h_0|), and y_t's are (Σ_n |C_t| |h|_t + |D u_t|)·|silu(z_t)|.
 * Layouts as lib/ref/selective_scan.ts: u, delta, z (b, D, L); B, C (b, N, L) 'time', (b, G, N, L) 'grouped',
 * (D, N) 'invariant'.
 */
function scanAbsTerms(
  inp: SelectiveScanInputs,
  s: { b: number; groups: number; perGroup: number; L: number; N: number },
  o: { bl: string; cl: string },
): { out: Float64Array; state: Float64Array } {
  const D = s.groups * s.perGroup;
  const { L, N } = s;
  const proj = (t: Tensor, kind: string, b: number, d: number, n: number, k: number) =>
    kind === 'time'
      ? t.data[(b * N + n) * L + k]
      : kind === 'grouped'
        ? t.data[((b * s.groups + Math.floor(d / s.perGroup)) * N + n) * L + k]
        : t.data[d * N + n];
  const out = new Float64Array(s.b * D * L); // (b, D, L)
  const state = new Float64Array(s.b * D * N); // (b, D, N)
  for (let b = 0; b < s.b; b++)
    for (let d = 0; d < D; d++) {
      const h = Float64Array.from({ length: N }, (_, n) => Math.abs(inp.initialState?.data[(b * D + d) * N + n] ?? 0)); // (N)
      for (let k = 0; k < L; k++) {
        const i = (b * D + d) * L + k;
        const raw = inp.delta.data[i] + (inp.deltaBias?.data[d] ?? 0);
        const dt = inp.deltaSoftplus ? Math.log1p(Math.exp(raw)) : raw;
        let y = 0;
        for (let n = 0; n < N; n++) {
          h[n] =
            Math.exp(dt * inp.A.data[d * N + n]) * h[n] + Math.abs(dt * proj(inp.B, o.bl, b, d, n, k) * inp.u.data[i]);
          y += Math.abs(proj(inp.C, o.cl, b, d, n, k)) * h[n];
        }
        if (inp.D) y += Math.abs(inp.D.data[d] * inp.u.data[i]);
        if (inp.z) y *= Math.abs(inp.z.data[i] / (1 + Math.exp(-inp.z.data[i])));
        out[i] = y;
      }
      for (let n = 0; n < N; n++) state[(b * D + d) * N + n] = h[n];
    }
  return { out, state };
}
