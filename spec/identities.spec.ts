/**
 * The identities that tie the kernels together, checked on every backend (float64 reference with
 * FLOAT64_TOL, GPU.js backends with FLOAT32_TOL), fast-check with the number of runs in each test:
 *  - selective scan = the same steps taken one state update at a time
 *  - splitting a sequence anywhere and carrying last_state / conv final_states / SSD final state = whole sequence
 *  - chunked SSD = sequential SSD = SSD written as a selective scan
 *  - linear attention parallel = recurrent = selective scan with Ā = 1 (A = 0), Δ = 1, no D, no z
 *  - multistep(h_i, r, s) = r state updates, then s state updates with outputs
 *  - conv1d = conv1d_update applied one token at a time (shift and circular buffers)
 *  - grouped-query attention = full attention with repeated K/V
 */
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { getOps, type Ops } from '../lib/ops.js';
import { ssdChunked, ssdSequential, ssdDiscreteChunked } from '../lib/ref/ssd.js';
import { linearAttentionParallel, linearAttentionRecurrent } from '../lib/ref/linear_attention.js';
import { causalAttention, repeatKv } from '../lib/ref/attention.js';
import { softplus, inverseSoftplus } from '../lib/ref/activations.js';
import { applyRope, ropeInvFreq } from '../lib/ref/rope.js';
import { ALL_BACKENDS, FLOAT64_TOL, Rng, Tensor, expectClose, rand, tolFor } from './helpers.js';

const dim = (max: number) => fc.integer({ min: 1, max });

/** Slice along axis `ax` and name the piece. */
const cut = (t: Tensor, ax: number, a: number, b: number) => t.slice(ax, a, b).named(t.name);

describe.each(ALL_BACKENDS)('identities on $title', ({ name, available }) => {
  const run = available ? it : it.skip;
  const tol = tolFor(name);
  let ops: Ops;
  const get = async () => (ops ??= await getOps(name));

  run('selective scan = repeated state updates (numRuns 12)', async () => {
    const o = await get();
    await fc.assert(
      fc.asyncProperty(fc.record({ b: dim(2), d: dim(5), L: dim(12), N: dim(6) }), fc.integer(), async (s, seed) => {
        const r = new Rng(seed);
        const inp = {
          u: rand.normal(r, [s.b, s.d, s.L]),
          delta: rand.normal(r, [s.b, s.d, s.L], 0.5),
          A: rand.uniform(r, [s.d, s.N], -2, -0.1),
          B: rand.normal(r, [s.b, s.N, s.L]),
          C: rand.normal(r, [s.b, s.N, s.L]),
          D: rand.normal(r, [s.d]),
          z: rand.normal(r, [s.b, s.d, s.L]),
          deltaBias: rand.uniform(r, [s.d], -2, 0),
          deltaSoftplus: true,
          initialState: rand.normal(r, [s.b, s.d, s.N]),
        };
        const whole = await o.selectiveScan(inp);
        let state = inp.initialState;
        const outs: Tensor[] = [];
        for (let t = 0; t < s.L; t++) {
          const at = (x: Tensor) => cut(x, 2, t, t + 1).reshape(x.shape.slice(0, 2));
          const step = await o.selectiveStateUpdate({
            state,
            x: at(inp.u),
            delta: at(inp.delta),
            A: inp.A,
            B: at(inp.B),
            C: at(inp.C),
            D: inp.D,
            z: at(inp.z),
            deltaBias: inp.deltaBias,
            deltaSoftplus: true,
          });
          state = step.state.astype('float64').named('state');
          outs.push(step.out.reshape([s.b, s.d, 1]));
        }
        expectClose(Tensor.concat(outs, 2), whole.out, tol, 'out');
        expectClose(state, whole.lastState, tol, 'last_state');
      }),
      { numRuns: 12 },
    );
  });

  run(
    'split anywhere + carried last_state / conv final_states / SSD final state = whole sequence (numRuns 15)',
    async () => {
      const o = await get();
      await fc.assert(
        fc.asyncProperty(
          fc.record({ d: dim(4), L: fc.integer({ min: 2, max: 30 }), N: dim(5), W: fc.integer({ min: 1, max: 4 }) }),
          fc.integer(),
          fc.double({ min: 0, max: 1, noNaN: true }),
          async (s, seed, frac) => {
            const r = new Rng(seed);
            const k = Math.max(1, Math.min(s.L - 1, Math.round(frac * s.L)));
            // Mamba-1 scan
            const inp = {
              u: rand.normal(r, [1, s.d, s.L]),
              delta: rand.normal(r, [1, s.d, s.L], 0.5),
              A: rand.uniform(r, [s.d, s.N], -2, -0.1),
              B: rand.normal(r, [1, 2, s.N, s.L]),
              C: rand.normal(r, [1, s.N, s.L]),
              z: rand.normal(r, [1, s.d, s.L]),
              deltaSoftplus: true,
            };
            if (s.d % 2) inp.B = rand.normal(r, [1, 1, s.N, s.L]);
            const whole = await o.selectiveScan(inp);
            const part = (a: number, b: number) => ({
              ...inp,
              u: cut(inp.u, 2, a, b),
              delta: cut(inp.delta, 2, a, b),
              B: cut(inp.B, 3, a, b),
              C: cut(inp.C, 2, a, b),
              z: cut(inp.z, 2, a, b),
            });
            const first = await o.selectiveScan(part(0, k));
            const second = await o.selectiveScan({
              ...part(k, s.L),
              initialState: first.lastState.astype('float64').named('initialState'),
            });
            expectClose(
              Tensor.concat([first.out.astype('float64'), second.out.astype('float64')], 2),
              whole.out.astype('float64'),
              tol,
              'scan out',
            );
            expectClose(second.lastState, whole.lastState, tol, 'scan last_state');
            // conv1d
            const c = {
              x: rand.normal(r, [1, s.d, s.L]),
              weight: rand.normal(r, [s.d, s.W]),
              bias: rand.normal(r, [s.d]),
              activation: 'silu' as const,
            };
            const cw = await o.causalConv1d(c);
            const c1 = await o.causalConv1d({ ...c, x: cut(c.x, 2, 0, k) });
            const c2 = await o.causalConv1d({
              ...c,
              x: cut(c.x, 2, k, s.L),
              initialStates: c1.finalStates.astype('float64').named('initialStates'),
            });
            expectClose(
              Tensor.concat([c1.out.astype('float64'), c2.out.astype('float64')], 2),
              cw.out.astype('float64'),
              tol,
              'conv out',
            );
            expectClose(c2.finalStates, cw.finalStates, tol, 'conv final_states');
            // SSD
            const x = rand.normal(r, [1, s.L, 2, s.d]);
            const ssd = {
              x,
              delta: rand.normal(r, [1, s.L, 2], 0.5),
              A: rand.uniform(r, [2], -2, -0.1),
              B: rand.normal(r, [1, s.L, 1, s.N]),
              C: rand.normal(r, [1, s.L, 1, s.N]),
              D: rand.normal(r, [2]),
              deltaSoftplus: true,
            };
            const sw = await o.ssdChunkScan(ssd, 4);
            const sp = (a: number, b: number) => ({
              ...ssd,
              x: cut(ssd.x, 1, a, b),
              delta: cut(ssd.delta, 1, a, b),
              B: cut(ssd.B, 1, a, b),
              C: cut(ssd.C, 1, a, b),
            });
            const s1 = await o.ssdChunkScan(sp(0, k), 4);
            const s2 = await o.ssdChunkScan(
              { ...sp(k, s.L), initialState: s1.finalState.astype('float64').named('initialState') },
              3,
            );
            expectClose(
              Tensor.concat([s1.out.astype('float64'), s2.out.astype('float64')], 1),
              sw.out.astype('float64'),
              tol,
              'ssd out',
            );
            expectClose(s2.finalState, sw.finalState, tol, 'ssd final_state');
          },
        ),
        { numRuns: 15 },
      );
    },
  );

  run('SSD as a selective scan = chunked SSD of this backend (numRuns 12)', async () => {
    const o = await get();
    await fc.assert(
      fc.asyncProperty(
        fc.record({ L: dim(20), G: dim(2), hpg: dim(2), P: dim(3), N: dim(4), chunk: dim(7) }),
        fc.integer(),
        async (s, seed) => {
          const r = new Rng(seed);
          const H = s.G * s.hpg;
          const inp = {
            x: rand.normal(r, [1, s.L, H, s.P]),
            delta: rand.normal(r, [1, s.L, H], 0.5),
            A: rand.uniform(r, [H], -2, -0.1),
            B: rand.normal(r, [1, s.L, s.G, s.N]),
            C: rand.normal(r, [1, s.L, s.G, s.N]),
            D: rand.normal(r, [H]),
            z: rand.normal(r, [1, s.L, H, s.P]),
            deltaBias: rand.uniform(r, [H], -2, 0),
            deltaSoftplus: true,
          };
          const ssd = await o.ssdChunkScan(inp, s.chunk);
          // channels (h, p) → dim = H·P; Δ, A, D per head repeated over p; B/C grouped (batch, G, N, L)
          const dimN = H * s.P;
          const u = inp.x.reshape([1, s.L, dimN]).transpose([0, 2, 1]);
          const delta = Tensor.from(
            Array.from(
              { length: dimN * s.L },
              (_, i) => inp.delta.data[(i % s.L) * H + Math.floor(Math.floor(i / s.L) / s.P)],
            ),
            [1, dimN, s.L],
          );
          const scan = await o.selectiveScan({
            u,
            delta,
            A: Tensor.from(
              Array.from({ length: dimN * s.N }, (_, i) => inp.A.data[Math.floor(Math.floor(i / s.N) / s.P)]),
              [dimN, s.N],
            ),
            B: inp.B.transpose([0, 2, 3, 1]),
            C: inp.C.transpose([0, 2, 3, 1]),
            D: Tensor.from(
              Array.from({ length: dimN }, (_, i) => inp.D.data[Math.floor(i / s.P)]),
              [dimN],
            ),
            z: inp.z.reshape([1, s.L, dimN]).transpose([0, 2, 1]),
            deltaBias: Tensor.from(
              Array.from({ length: dimN }, (_, i) => inp.deltaBias.data[Math.floor(i / s.P)]),
              [dimN],
            ),
            deltaSoftplus: true,
          });
          expectClose(scan.out.transpose([0, 2, 1]).reshape([1, s.L, H, s.P]), ssd.out, tol, 'out');
          expectClose(scan.lastState.reshape([1, H, s.P, s.N]), ssd.finalState, tol, 'state');
        },
      ),
      { numRuns: 12 },
    );
  });

  run('linear attention parallel = selective scan with Ā = 1, Δ = 1, no D, no z (numRuns 12)', async () => {
    const o = await get();
    await fc.assert(
      fc.asyncProperty(fc.record({ L: dim(16), dk: dim(5), dv: dim(4) }), fc.integer(), async (s, seed) => {
        const r = new Rng(seed);
        const q = rand.normal(r, [1, 1, s.L, s.dk]);
        const k = rand.normal(r, [1, 1, s.L, s.dk]);
        const v = rand.normal(r, [1, 1, s.L, s.dv]);
        const la = await o.linearAttention(q, k, v);
        const scan = await o.selectiveScan({
          u: v.reshape([1, s.L, s.dv]).transpose([0, 2, 1]),
          delta: Tensor.full([1, s.dv, s.L], 1),
          A: Tensor.zeros([s.dv, s.dk]),
          B: k.reshape([1, s.L, s.dk]).transpose([0, 2, 1]),
          C: q.reshape([1, s.L, s.dk]).transpose([0, 2, 1]),
        });
        expectClose(scan.out.transpose([0, 2, 1]).reshape([1, 1, s.L, s.dv]), la, tol, 'linear attention');
      }),
      { numRuns: 12 },
    );
  });

  run('multistep(h_i, r, s) = r state updates, then s state updates with outputs (numRuns 15)', async () => {
    const o = await get();
    await fc.assert(
      fc.asyncProperty(fc.record({ d: dim(6), N: dim(8), K: dim(8), r: fc.nat(8) }), fc.integer(), async (s, seed) => {
        const r = new Rng(seed);
        const rec = Math.min(s.r, s.K);
        const K1 = s.K + 1;
        const inp = {
          hI: rand.normal(r, [1, s.d, s.N]),
          xCache: rand.normal(r, [1, K1, s.d]),
          deltaCache: rand.normal(r, [1, K1, s.d], 0.5),
          BCache: rand.normal(r, [1, K1, s.N]),
          recomputeSteps: rec,
          x: rand.normal(r, [1, s.K, s.d]),
          delta: rand.normal(r, [1, s.K, s.d], 0.5),
          B: rand.normal(r, [1, s.K, s.N]),
          C: rand.normal(r, [1, s.K, s.N]),
          z: rand.normal(r, [1, s.K, s.d]),
          A: rand.uniform(r, [s.d, s.N], -2, -0.1),
          D: rand.normal(r, [s.d]),
          deltaBias: rand.uniform(r, [s.d], -3, -1),
          deltaSoftplus: true,
        };
        const ms = await o.multistep(inp);
        const row = (t: Tensor, i: number) => cut(t, 1, i, i + 1).reshape([1, t.shape[2]]);
        let state = inp.hI;
        for (let t = 0; t < rec; t++) {
          const st = await o.selectiveStateUpdate({
            state,
            x: row(inp.xCache, t),
            delta: row(inp.deltaCache, t),
            A: inp.A,
            B: row(inp.BCache, t),
            C: row(inp.BCache, t),
            deltaBias: inp.deltaBias,
            deltaSoftplus: true,
          });
          state = st.state.astype('float64').named('state');
        }
        expectClose(ms.hJ, state, tol, 'h_j');
        const outs: Tensor[] = [];
        for (let t = 0; t < s.K; t++) {
          const st = await o.selectiveStateUpdate({
            state,
            x: row(inp.x, t),
            delta: row(inp.delta, t),
            A: inp.A,
            B: row(inp.B, t),
            C: row(inp.C, t),
            D: inp.D,
            z: row(inp.z, t),
            deltaBias: inp.deltaBias,
            deltaSoftplus: true,
          });
          state = st.state.astype('float64').named('state');
          outs.push(st.out.astype('float64').reshape([1, 1, s.d]));
        }
        expectClose(ms.hK, state, tol, 'h_k');
        expectClose(ms.out.astype('float64'), Tensor.concat(outs, 1), tol, 'out');
      }),
      { numRuns: 15 },
    );
  });

  run('conv1d = conv1d_update one token at a time, shift and circular buffers (numRuns 12)', async () => {
    const o = await get();
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          d: dim(4),
          L: dim(12),
          W: fc.integer({ min: 2, max: 4 }),
          extra: fc.nat(3),
          circular: fc.boolean(),
        }),
        fc.integer(),
        async (s, seed) => {
          const r = new Rng(seed);
          const c = {
            x: rand.normal(r, [1, s.d, s.L]),
            weight: rand.normal(r, [s.d, s.W]),
            bias: rand.normal(r, [s.d]),
            activation: 'silu' as const,
          };
          const whole = await o.causalConv1d(c);
          const S = s.W - 1 + (s.circular ? s.extra : 0);
          let convState = Tensor.zeros([1, s.d, S]).named('convState');
          const outs: Tensor[] = [];
          for (let t = 0; t < s.L; t++) {
            const step = await o.causalConv1dUpdate({
              ...c,
              x: cut(c.x, 2, t, t + 1),
              convState,
              cacheSeqlens: s.circular ? [t] : undefined,
            });
            convState = step.convState.astype('float64').named('convState');
            outs.push(step.out.astype('float64'));
          }
          expectClose(Tensor.concat(outs, 2), whole.out.astype('float64'), tol, 'out');
        },
      ),
      { numRuns: 12 },
    );
  });
});

describe('float64 reference identities', () => {
  it('chunked SSD = sequential SSD, any chunk size (numRuns 30)', () => {
    fc.assert(
      fc.property(
        fc.record({ b: dim(2), L: dim(25), G: dim(2), hpg: dim(2), P: dim(3), N: dim(4), chunk: dim(30) }),
        fc.integer(),
        (s, seed) => {
          const r = new Rng(seed);
          const H = s.G * s.hpg;
          const inp = {
            x: rand.normal(r, [s.b, s.L, H, s.P]),
            delta: rand.normal(r, [s.b, s.L, H]),
            A: rand.uniform(r, [H], -2, -0.1),
            B: rand.normal(r, [s.b, s.L, s.G, s.N]),
            C: rand.normal(r, [s.b, s.L, s.G, s.N]),
            D: rand.normal(r, [H]),
            z: rand.normal(r, [s.b, s.L, H, s.P]),
            deltaSoftplus: true,
            initialState: rand.normal(r, [s.b, H, s.P, s.N]),
          };
          const a = ssdSequential(inp);
          const b = ssdChunked(inp, s.chunk);
          expectClose(b.out, a.out, FLOAT64_TOL, 'out');
          expectClose(b.finalState, a.finalState, FLOAT64_TOL, 'final_state');
        },
      ),
      { numRuns: 30 },
    );
  });

  it('linear attention parallel = recurrent, with decay (numRuns 30)', () => {
    fc.assert(
      fc.property(fc.record({ b: dim(2), h: dim(2), L: dim(15), dk: dim(4), dv: dim(4) }), fc.integer(), (s, seed) => {
        const r = new Rng(seed);
        const q = rand.normal(r, [s.b, s.h, s.L, s.dk]);
        const k = rand.normal(r, [s.b, s.h, s.L, s.dk]);
        const v = rand.normal(r, [s.b, s.h, s.L, s.dv]);
        const g = rand.uniform(r, [s.b, s.h, s.L], 0, 1);
        expectClose(linearAttentionRecurrent(q, k, v, g).out, linearAttentionParallel(q, k, v, g), FLOAT64_TOL);
      }),
      { numRuns: 30 },
    );
  });

  it('linear attention is the SSD core with a = log g (numRuns 20)', () => {
    fc.assert(
      fc.property(fc.record({ L: dim(15), dk: dim(4), dv: dim(4), chunk: dim(6) }), fc.integer(), (s, seed) => {
        const r = new Rng(seed);
        const q = rand.normal(r, [1, 1, s.L, s.dk]);
        const k = rand.normal(r, [1, 1, s.L, s.dk]);
        const v = rand.normal(r, [1, 1, s.L, s.dv]);
        const g = rand.uniform(r, [1, 1, s.L], 0.2, 1);
        const { Y } = ssdDiscreteChunked(
          v.reshape([1, s.L, 1, s.dv]),
          g.map(Math.log).reshape([1, s.L, 1]),
          k.reshape([1, s.L, 1, s.dk]),
          q.reshape([1, s.L, 1, s.dk]),
          s.chunk,
        );
        expectClose(Y.reshape([1, 1, s.L, s.dv]), linearAttentionParallel(q, k, v, g), FLOAT64_TOL);
      }),
      { numRuns: 20 },
    );
  });

  it('grouped-query attention = full attention with repeated K/V (numRuns 30)', () => {
    fc.assert(
      fc.property(
        fc.record({ b: dim(2), kv: dim(3), rep: dim(3), Lq: dim(6), past: fc.nat(5), d: dim(5), dv: dim(4) }),
        fc.integer(),
        (s, seed) => {
          const r = new Rng(seed);
          const Lk = s.Lq + s.past;
          const q = rand.normal(r, [s.b, s.kv * s.rep, s.Lq, s.d]);
          const k = rand.normal(r, [s.b, s.kv, Lk, s.d]);
          const v = rand.normal(r, [s.b, s.kv, Lk, s.dv]);
          expectClose(
            causalAttention(q, k, v),
            causalAttention(q, repeatKv(k, s.rep), repeatKv(v, s.rep)),
            FLOAT64_TOL,
          );
        },
      ),
      { numRuns: 30 },
    );
  });

  it('softplus is stable and inverse_softplus inverts it (numRuns 200)', () => {
    fc.assert(
      fc.property(fc.double({ min: 1e-4, max: 30, noNaN: true }), (y) => {
        const x = inverseSoftplus(y);
        const err = Math.abs(softplus(x) - y);
        // below torch's threshold (x ≤ 20) the round trip is exact to rounding; above it softplus(x) = x
        // by definition (as upstream), which differs from log(1 + e^x) by log1p(e^{-x}) < e^{-20}
        if (x <= 20) expect(err / y).toBeLessThan(1e-12);
        else expect(err).toBeLessThanOrEqual(Math.log1p(Math.exp(-20)) * (1 + 1e-9));
      }),
      { numRuns: 200 },
    );
    expect(softplus(1000)).toBe(1000);
    expect(softplus(-1000)).toBe(0);
    // log1p(x) = x − x²/2 + x³/3 − …, x = e^{−30}: two terms are exact to ~1e-40 relative
    const x = Math.exp(-30);
    expect(Math.abs(softplus(-30) - (x - (x * x) / 2)) / x).toBeLessThan(1e-15);
  });

  it('RoPE preserves each rotated pair’s norm and is the identity at position 0; llama3 scaling keeps high frequencies (numRuns 30)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.integer(), (half, seed) => {
        const r = new Rng(seed);
        const d = 2 * half;
        const x = rand.normal(r, [1, 2, 3, d]);
        const inv = ropeInvFreq(d, 10000);
        const y = applyRope(x, [0, 5, 1000], inv);
        for (let i = 0; i < d; i++) expect(y.at(0, 1, 0, i)).toBeCloseTo(x.at(0, 1, 0, i), 14);
        for (let t = 0; t < 3; t++)
          for (let i = 0; i < half; i++) {
            const n0 = x.at(0, 0, t, i) ** 2 + x.at(0, 0, t, i + half) ** 2;
            const n1 = y.at(0, 0, t, i) ** 2 + y.at(0, 0, t, i + half) ** 2;
            expect(Math.abs(n1 - n0)).toBeLessThan(1e-12 * (1 + n0));
          }
      }),
      { numRuns: 30 },
    );
    const plain = ropeInvFreq(128, 500000);
    const l3 = ropeInvFreq(128, 500000, {
      ropeType: 'llama3',
      factor: 8,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    });
    expect(l3[0]).toBe(plain[0]); // wavelength 2π < 2048: unchanged
    expect(l3[63]).toBeCloseTo(plain[63] / 8, 20); // longest wavelength: divided by factor
  });
});

describe('tensor layer', () => {
  it('transpose = the element-by-element definition out[i_0 … i_r] = in[i at perm⁻¹] on random shapes and permutations, kept trailing axes and last-two-axes swaps included (numRuns 200)', () => {
    fc.assert(
      fc.property(
        fc
          .array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 5 })
          .chain((shape) =>
            fc.tuple(
              fc.constant(shape),
              fc.shuffledSubarray([...shape.keys()], { minLength: shape.length, maxLength: shape.length }),
              fc.integer(),
            ),
          ),
        ([shape, perm, seed]) => {
          const t = rand.normal(new Rng(seed), shape);
          const got = t.transpose(perm);
          expect(got.shape).toEqual(perm.map((a) => shape[a]));
          // independent: walk every input index, place it at its permuted position with Tensor.offset
          const idx = new Array<number>(shape.length).fill(0);
          for (let n = 0; n < t.size; n++) {
            expect(got.data[got.offset(...perm.map((a) => idx[a]))]).toBe(t.data[n]);
            for (let a = shape.length - 1; a >= 0; a--) {
              if (++idx[a] < shape[a]) break;
              idx[a] = 0;
            }
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
