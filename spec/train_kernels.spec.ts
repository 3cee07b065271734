/**
 * The GPU training kernels (kernels/train_layers.ts, train_attention.ts, train_loss.ts, adamw.ts) against their
 * float64 references (lib/ref/layers.ts, rope.ts, attention.ts; lib/train/optim.ts), on GPU.js's cpu backend and
 * on webgpu — here Dawn's CPU adapter (lavapipe) — on random shapes (fast-check, numRuns in the titles). The
 * inputs are float32 values and the references run on those same values in float64, so what is measured is the
 * kernels' own float32 arithmetic: relative error (‖got − want‖/‖want‖, lib/tensor.ts relError) ≤ FLOAT32_TOL
 * = 1e-4 (measured here ≤ ~1e-6; sums over ≤ 64 terms). webasm is left out to keep CI time down (its
 * float32 is covered by the other kernels' specs: the same sources).
 * Mutations tried (each failed these tests): the RMSNorm dX's ε r² term dropped; the dk and dv kernel summing t > j
 * instead of t ≥ j; the AdamW kernel's bias correction of v left out.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { embedding, linear, rmsnorm, swiglu, crossEntropy, klDivergence } from '../lib/ref/layers.js';
import { applyRope, applyRopeBackward, ropeInvFreq, ropeTable } from '../lib/ref/rope.js';
import { causalAttention, causalAttentionBackward } from '../lib/ref/attention.js';
import { adamStep, clipGradNorm, newAdamState, type AdamOptions } from '../lib/train/optim.js';
import { getRuntime, type GpuRuntime, type KernelBackendName } from '../kernels/runtime.js';
import {
  addKernel,
  embeddingDwKernel,
  embeddingIndex,
  embeddingKernel,
  linearDbKernel,
  linearDwKernel,
  linearDxKernel,
  linearKernel,
  rmsnormDwKernels,
  rmsnormDxKernel,
  rmsnormRowSumsKernel,
  rmsnormKernel,
  ropeKernel,
  rstdKernel,
  runTrainKernel,
  swigluBackKernel,
  swigluKernel,
  type TrainKernel,
} from '../kernels/train_layers.js';
import {
  attnDeltaKernel,
  attnDsKernel,
  attnLseKernel,
  attnProbKernel,
  attnProducts,
  type AttnShape,
} from '../kernels/train_attention.js';
import { ResidentChain, type ChainBuffer } from '../kernels/resident_chain.js';
import { webgpuIt } from './gpu_helpers.js';
import { lossGradKernel, lossRowsKernel, lossSumKernel, lseKernels, type LossShape } from '../kernels/train_loss.js';
import { NORM_PARTS, adamHyper, adamKernel, gradNormKernel, sumSquaresKernels } from '../kernels/adamw.js';
import { relError, Tensor } from '../lib/tensor.js';
import { FLOAT32_TOL, KERNEL_BACKENDS, Rng } from './helpers.js';

type F = Float64Array;
const dim = (max: number) => fc.integer({ min: 1, max });

/** n float32-representable normal values (as float64). */
function normal(r: Rng, n: number, std = 1): F {
  return Float64Array.from({ length: n }, () => Math.fround(r.normal(0, std)));
}
const f32 = (a: ArrayLike<number>) => Float32Array.from(a);

function close(got: ArrayLike<number>, want: ArrayLike<number>, what: string, tol = FLOAT32_TOL): void {
  expect(got.length, `${what} length`).toBe(want.length);
  const e = relError(got, want);
  expect(e, `${what}: relative error ${e}`).toBeLessThanOrEqual(tol);
}

const BACKENDS = KERNEL_BACKENDS.filter((b) => b.name === 'cpu' || b.name === 'webgpu');

describe.each(BACKENDS)('training kernels on $title', ({ name, available }) => {
  const run = available ? it : it.skip;
  let rt: GpuRuntime;
  const k = async (kernel: TrainKernel, args: ArrayLike<number>[]) => {
    rt ??= await getRuntime(name as KernelBackendName);
    return runTrainKernel(rt, kernel, args.map(f32));
  }; /** kernels run in order, each reading the one before */
  const kseq = async (kernels: readonly TrainKernel[], x: ArrayLike<number>) => {
    let y: ArrayLike<number> = x;
    for (const kk of kernels) y = await k(kk, [y]);
    return y as Float32Array;
  };

  run('linear forward (bias, residual), dX over 1–3 pairs, dW, db = lib/ref/layers.ts linear (numRuns 4)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({ N: dim(7), I: dim(9), O: dim(8), pairs: fc.integer({ min: 1, max: 3 }) }),
        fc.boolean(),
        fc.boolean(),
        fc.integer(),
        async ({ N, I, O, pairs }, bias, res, seed) => {
          const r = new Rng(seed);
          const x = normal(r, N * I);
          const W = normal(r, O * I);
          const b = normal(r, O);
          const rr = normal(r, N * O);
          const want = linear.forward(x, W, bias ? b : undefined, N, I, O).map((v, i) => v + (res ? rr[i] : 0));
          const args = [x, W, ...(bias ? [b] : []), ...(res ? [rr] : [])];
          close(await k(linearKernel(N, I, O, bias, res), args), want, 'y');
          const Os = Array.from({ length: pairs }, (_, p) => O + p);
          const ps = Os.map((o) => ({ dy: normal(r, N * o), W: normal(r, o * I), o }));
          const dx = new Float64Array(N * I);
          for (const p of ps) linear.backward(p.dy, x, p.W, N, I, p.o).dx.forEach((v, i) => (dx[i] += v));
          close(
            await k(
              linearDxKernel(N, I, Os),
              ps.flatMap((p) => [p.dy, p.W]),
            ),
            dx,
            'dx',
          );
          const g = linear.backward(ps[0].dy, x, ps[0].W, N, I, O);
          close(await k(linearDwKernel(N, I, O), [ps[0].dy, x]), g.dW, 'dW');
          close(await k(linearDbKernel(N, O), [ps[0].dy]), g.db, 'db');
        },
      ),
      { numRuns: 4 },
    );
  });

  run('RMSNorm rstd, y, dX (+ residual; row sums in S parts), dw = lib/ref/layers.ts rmsnorm (numRuns 4)', async () => {
    await fc.assert(
      fc.asyncProperty(dim(6), dim(12), fc.boolean(), fc.integer(), dim(12), async (N, d, res, seed, parts) => {
        const r = new Rng(seed);
        const eps = 1e-5;
        const x = normal(r, N * d, 2);
        const w = normal(r, d);
        const dy = normal(r, N * d);
        const rr = normal(r, N * d);
        const f = rmsnorm.forward(x, w, N, d, eps);
        const rstd = await k(rstdKernel(N, d, eps), [x]);
        close(rstd, f.rstd, 'rstd');
        close(await k(rmsnormKernel(N, d), [x, rstd, w]), f.y, 'y');
        const g = rmsnorm.backward(dy, x, w, f.rstd, N, d);
        // S parts per row's sums: any 1 ≤ S ≤ d (several values per thread), or the default
        const S = parts <= d ? parts : undefined;
        const sums = await k(rmsnormRowSumsKernel(N, d, S), [dy, x, rstd, w]);
        const args = [dy, x, rstd, w, sums, ...(res ? [rr] : [])];
        close(await k(rmsnormDxKernel(N, d, eps, res, S), args), res ? g.dx.map((v, i) => v + rr[i]) : g.dx, 'dx');
        const [dwParts, dwFold] = rmsnormDwKernels(N, d, parts <= N ? parts : undefined); // chunks of rows likewise
        close(await k(dwFold, [await k(dwParts, [dy, x, rstd])]), g.dw, 'dw');
      }),
      // d = 1 (the empty j-sum), and d = 40 in S = 5 parts over N = 9 rows in 5 chunks (several values per thread)
      {
        numRuns: 4,
        examples: [
          [3, 1, false, 7, 1],
          [9, 40, false, 3, 5],
        ],
      },
    );
  });

  run('SwiGLU a, dg, du and the add = lib/ref/layers.ts swiglu (numRuns 4)', async () => {
    await fc.assert(
      fc.asyncProperty(dim(40), fc.integer(), async (n, seed) => {
        const r = new Rng(seed);
        const [g, u, da] = [normal(r, n, 2), normal(r, n), normal(r, n)];
        close(await k(swigluKernel(n), [g, u]), swiglu.forward(g, u), 'a');
        const b = swiglu.backward(da, g, u);
        close(await k(swigluBackKernel(n, 'dg'), [da, g, u]), b.dg, 'dg');
        close(await k(swigluBackKernel(n, 'du'), [da, g]), b.du, 'du');
        close(
          await k(addKernel(n), [g, u]),
          g.map((v, i) => v + u[i]),
          'add',
        );
      }),
      { numRuns: 4 },
    );
  });

  run('RoPE forward and backward on rows = lib/ref/rope.ts on heads (numRuns 3)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({ b: dim(2), L: dim(6), heads: dim(3), half: dim(4) }),
        fc.integer(),
        async ({ b, L, heads, half }, seed) => {
          const r = new Rng(seed);
          const hd = 2 * half;
          const inv = ropeInvFreq(hd, 10000);
          const x = normal(r, b * L * heads * hd); // rows (b·l, heads·hd)
          const toHeads = (t: F) => new Tensor(t, [b, L, heads, hd]).transpose([0, 2, 1, 3]); // (b, heads, l, hd)
          const toRows = (t: Tensor) => t.transpose([0, 2, 1, 3]).data; // (b·l, heads·hd)
          const pos = Array.from({ length: L }, (_, t) => t);
          const table = ropeTable(L, inv);
          const N = b * L;
          close(await k(ropeKernel(N, L, heads, hd, 1), [x, table]), toRows(applyRope(toHeads(x), pos, inv)), 'rope');
          close(
            await k(ropeKernel(N, L, heads, hd, -1), [x, table]),
            toRows(applyRopeBackward(toHeads(x), pos, inv)),
            'rope back',
          );
        },
      ),
      { numRuns: 3 },
    );
  });

  run(
    'embedding forward and its deterministic scatter-add (+ a tied head) = lib/ref/layers.ts (numRuns 3)',
    async () => {
      await fc.assert(
        fc.asyncProperty(dim(12), dim(6), dim(5), fc.boolean(), fc.integer(), async (N, V, d, tied, seed) => {
          const r = new Rng(seed);
          const ids = Array.from({ length: N }, () => r.int(0, V - 1));
          const E = normal(r, V * d);
          const dh = normal(r, N * d);
          const head = normal(r, V * d);
          close(await k(embeddingKernel(N, d), [Float64Array.from(ids), E]), embedding.forward(ids, E, V, d), 'h');
          const { order, start } = embeddingIndex(ids, V);
          const want = embedding.backward(dh, ids, V, d).map((v, i) => v + (tied ? head[i] : 0));
          close(await k(embeddingDwKernel(N, V, d, tied), [dh, order, start, ...(tied ? [head] : [])]), want, 'dE');
        }),
        { numRuns: 3 },
      );
    },
  );

  run(
    'cross-entropy (+ KL, or weighted per row as DPO uses it) fused with ∂ℓ/∂logits = lib/ref/layers.ts as lossAndGrads composes it (numRuns 6)',
    async () => {
      await fc.assert(
        fc.asyncProperty(
          dim(3),
          fc.integer({ min: 2, max: 5 }),
          dim(9),
          fc.constantFrom('ce', 'kl', 'weighted'),
          fc.integer(),
          fc.integer({ min: 1, max: 4 }),
          async (b, L, V, mode, seed, slices) => {
            const kl = mode === 'kl';
            const weighted = mode === 'weighted';
            const r = new Rng(seed);
            const N = b * L;
            const z = normal(r, N * V, 2);
            const zt = normal(r, N * V, 2);
            const tgt = Array.from({ length: N }, (_, n) => (n % L === L - 1 ? -1 : r.int(0, V - 1)));
            const s: LossShape = {
              N,
              V,
              ceWeight: 0.7,
              ceRows: b * (L - 1),
              kl: kl ? { weight: 1.3, batch: b } : undefined,
              rowWeights: weighted,
            };
            const w = normal(r, N); // (N) a weight per row, in place of ce_w/N_ce (lib/train/dpo.ts trainDpoGpu)
            // the reference: CE over the rows that have a target, KL over every row (lib/train/model.ts lossAndGrads)
            const rows = tgt.flatMap((t, n) => (t >= 0 ? [n] : []));
            const sub = new Float64Array(rows.length * V);
            rows.forEach((n, i) => sub.set(z.subarray(n * V, (n + 1) * V), i * V));
            const targets = rows.map((n) => tgt[n]);
            const dz = new Float64Array(N * V);
            // crossEntropy.backward is the mean's gradient, (softmax − onehot) / rows: × rows × w_n when weighted
            crossEntropy.backward(sub, targets, rows.length, V).forEach((g, i) => {
              const n = rows[Math.floor(i / V)];
              dz[n * V + (i % V)] = weighted ? w[n] * rows.length * g : 0.7 * g;
            });
            if (kl) klDivergence.backward(z, zt, N, V, b).forEach((g, i) => (dz[i] += 1.3 * g));
            // λ over P slices of each row then combined (P = 1: one kernel); the default P and a random one
            const lse = await kseq(lseKernels(N, V), z);
            const lset = await kseq(lseKernels(N, V, slices), zt);
            const args = [z, lse, Float64Array.from(tgt), ...(kl ? [zt, lset] : [])];
            close(await k(lossGradKernel(s), [...args, ...(weighted ? [w] : [])]), dz, 'dlogits');
            const sums = await k(lossSumKernel(s), [await k(lossRowsKernel(s), args)]);
            close([sums[0]], [crossEntropy.forward(sub, targets, rows.length, V)], 'ce');
            if (kl) close([sums[1]], [klDivergence.forward(z, zt, N, V, b)], 'kl');
          },
        ),
        // the weighted and KL kernels every run, beside the random draws
        {
          numRuns: 6,
          examples: [
            [2, 3, 5, 'weighted', 1, 2],
            [2, 4, 7, 'kl', 2, 1],
          ],
        },
      );
    },
  );

  run(
    'clip + Adam/AdamW over 3 steps = lib/train/optim.ts; a non-finite gradient changes nothing (numRuns 3)',
    async () => {
      await fc.assert(
        fc.asyncProperty(
          // one parameter of 300 values: over NORM_PARTS · perThread for perThread 2 and 3, so the sums run in
          // levels (perThread 2: 300 → 192 → 128 → 64 parts, three kernels; 3: 300 → 128 → 64, two)
          fc.array(dim(70), { minLength: 0, maxLength: 2 }).map((a) => [...a, 300]),
          fc.constantFrom<'adam' | 'adamw'>('adam', 'adamw'),
          fc.constantFrom(0, 0.5, 100),
          fc.integer(),
          fc.constantFrom(32, 2, 3), // values per thread: 2 and 3 take the levels on these small sizes
          async (sizes, kind, clip, seed, perThread) => {
            const r = new Rng(seed);
            const o: AdamOptions = { lr: 0.01, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.1, kind };
            const names = sizes.map((_, i) => `p${i}`);
            const ref = new Map(names.map((n, i) => [n, normal(r, sizes[i])]));
            let p: Float32Array[] = names.map((n) => f32(ref.get(n)!));
            let m: Float32Array[] = sizes.map((n) => new Float32Array(n));
            let v: Float32Array[] = sizes.map((n) => new Float32Array(n));
            const st = newAdamState();
            for (let t = 1; t <= 3; t++) {
              const grads = new Map(names.map((n, i) => [n, normal(r, sizes[i])]));
              const g = names.map((n) => f32(grads.get(n)!));
              const parts = new Float32Array(NORM_PARTS * sizes.length);
              for (const [i, gi] of g.entries())
                parts.set(await kseq(sumSquaresKernels(sizes[i], perThread), gi), i * NORM_PARTS);
              const norm = await k(gradNormKernel(parts.length, clip), [parts]);
              const wantNorm = clip
                ? clipGradNorm(grads, clip)
                : Math.sqrt(g.reduce((s, a) => s + a.reduce((x, y) => x + y * y, 0), 0));
              close([norm[0]], [wantNorm], 'norm');
              expect(norm[2]).toBe(1);
              adamStep(ref, grads, st, o, o.lr);
              const hyper = adamHyper(o, t, o.lr);
              const next = async (which: 'm' | 'v' | 'p') =>
                Promise.all(sizes.map((n, i) => k(adamKernel(n, o, which), [g[i], p[i], m[i], v[i], norm, hyper])));
              [m, v, p] = [await next('m'), await next('v'), await next('p')];
              names.forEach((n, i) => {
                close(m[i], st.m.get(n)!, `m ${n}`);
                close(v[i], st.v.get(n)!, `v ${n}`);
                close(p[i], ref.get(n)!, `p ${n}`);
              });
            }
            // a NaN in a gradient: ok = 0 and every kernel returns its input
            const bad = f32(normal(r, sizes[0]));
            bad[0] = NaN;
            const parts = await kseq(sumSquaresKernels(sizes[0], perThread), bad);
            const norm = await k(gradNormKernel(NORM_PARTS, clip), [parts]);
            expect(norm[2]).toBe(0);
            const hyper = adamHyper(o, 4, o.lr);
            for (const which of ['m', 'v', 'p'] as const) {
              const got = await k(adamKernel(sizes[0], o, which), [bad, p[0], m[0], v[0], norm, hyper]);
              expect(Array.from(got)).toEqual(Array.from(which === 'm' ? m[0] : which === 'v' ? v[0] : p[0]));
            }
          },
        ),
        { numRuns: 3 },
      );
    },
  );
});

/**
 * Attention's products are WGSL (kernels/tiled_matmul.ts batchedMatmul: webgpu only), so the whole chain —
 * scores, lse, P, y; D, dP, dS, dq, dk, dv — runs in a resident chain as the training step records it. Lengths
 * cross the 128 × 64 tile (the causal skips: tiles above the diagonal, k past the tile's last row or before its
 * first); the scores and dP buffers start as NaN, so a value above the diagonal that anything read would show.
 */
describe('causal GQA attention in a resident chain (webgpu)', () => {
  let chain: ResidentChain | undefined;
  let program = 0;
  webgpuIt('y, then dq, dk, dv = lib/ref/attention.ts (numRuns 5)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          batch: dim(2),
          L: fc.oneof(dim(7), fc.integer({ min: 60, max: 140 })),
          Hkv: dim(2),
          groups: dim(3),
          hd: dim(9),
        }),
        fc.integer(),
        async ({ batch, L, Hkv, groups, hd }, seed) => {
          chain ??= await ResidentChain.create();
          const c = chain;
          const r = new Rng(seed);
          const s: AttnShape = { batch, L, H: Hkv * groups, Hkv, hd };
          const N = batch * L;
          const q = normal(r, N * s.H * hd); // rows (N, H·hd)
          const kk = normal(r, N * Hkv * hd); // rows (N, H_kv·hd)
          const v = normal(r, N * Hkv * hd);
          const dy = normal(r, N * s.H * hd);
          const mm = attnProducts(s);
          const b = (name: string, x: F) => c.buffer(name, x.length, f32(x));
          const nan = (name: string, n: number) => c.buffer(name, n, new Float32Array(n).fill(NaN));
          const [qb, kb, vb, dyb] = [b('q', q), b('k', kk), b('v', v), b('dy', dy)];
          const out = (name: string, n: number) => c.buffer(name, n);
          c.record(`attention ${program++}`);
          const sc = nan('S', mm.scores.size);
          await c.wgsl('scores', mm.scores, [qb, kb], sc);
          const gk = async (label: string, kern: TrainKernel, args: ChainBuffer[]) => {
            const o = out(label, kern.size);
            await c.kernel(label, kern.key, kern.source, kern.constants, args, o);
            return o;
          };
          const lse = await gk('lse', attnLseKernel(s), [sc]);
          const P = await gk('P', attnProbKernel(s), [sc, lse]);
          const y = out('y', mm.y.size);
          await c.wgsl('y', mm.y, [P, vb], y);
          const D = await gk('D', attnDeltaKernel(s), [dyb, y]);
          const dP = nan('dP', mm.dP.size);
          await c.wgsl('dP', mm.dP, [dyb, vb], dP);
          const dS = await gk('dS', attnDsKernel(s), [P, dP, D]);
          const grads = await Promise.all(
            (['dq', 'dk', 'dv'] as const).map(async (g) => {
              const o = out(g, mm[g].size);
              await c.wgsl(g, mm[g], g === 'dq' ? [dS, kb] : g === 'dk' ? [dS, qb] : [P, dyb], o);
              return o;
            }),
          );
          const [yg, dq, dk, dv] = await c.run(
            { pos: 0 },
            [y, ...grads].map((from) => ({ from })),
            `attention ${program - 1}`,
          );
          const heads = (t: F, h: number) => new Tensor(t, [batch, L, h, hd]).transpose([0, 2, 1, 3]);
          const rows = (t: Tensor) => t.transpose([0, 2, 1, 3]).data;
          const [qh, kh, vh] = [heads(q, s.H), heads(kk, Hkv), heads(v, Hkv)];
          close(yg, rows(causalAttention(qh, kh, vh)), 'y');
          const want = causalAttentionBackward(qh, kh, vh, heads(dy, s.H));
          close(dq, rows(want.dq), 'dq');
          close(dk, rows(want.dk), 'dk');
          close(dv, rows(want.dv), 'dv');
        },
      ),
      // two row tiles and three column tiles of 128 × 64, kv heads serving 3 heads each
      { numRuns: 5, examples: [[{ batch: 2, L: 131, Hkv: 2, groups: 3, hd: 9 }, 5]] },
    );
    chain?.destroy();
  });
});
