/**
 * Algorithm 2's VERIFY in one GPU submission (lib/model/gpu_decode.ts `verify`, the window program) and the
 * window prefill, on the webgpu backend — here Dawn's CPU adapter, so the shapes are tiny.
 *
 * Against the CPU reference's Algorithm 2 step (lib/decode/speculative.ts on the float64 reference ops:
 * prefillSpec, verify, acceptGreedy, rollbackCache, foldCache), on random Llamas and 50% Mamba-2 / Mamba-1
 * hybrids (fast-check) with drafts that are the target's greedy continuation corrupted at a random place:
 *   - the K + 1 rows of logits agree at |gpu − ref| ≤ TOL_ABS + TOL_REL·|ref| (float32 vs float64; the same
 *     tolerances as spec/gpu_decode.spec.ts, whose header says how they were measured);
 *   - the accepted count and the next token are the reference's (whenever each deciding row's top two logits
 *     are further apart than twice the tolerance);
 *   - the caches end as if exactly the accepted tokens had been decoded: length, KV rows, and each Mamba
 *     layer's conv window and SSM state equal the reference's folded ones (lib/decode/speculative.ts
 *     effectiveStates);
 *   - the verify costs exactly one queue.submit and one mapAsync; the prompt before it (a window prefill) one each.
 * Mutations, each failing here: a layer's MLP down-projection, a KV write, a Mamba state commit or a conv
 * window commit left out of the window program.
 */
import fc from 'fast-check';
import { describe, expect, vi } from 'vitest';
import { lookup, present } from '../lib/checked.js';
import {
  acceptGreedy,
  effectiveStates,
  foldCache,
  GPU_SPECULATIVE_PATH,
  ModelDrafter,
  prefillSpec,
  rollbackCache,
  speculativeGenerate,
  verify,
} from '../lib/decode/speculative.js';
import { argmax, drawFrom, generate, samplingDistribution, type SamplingOptions } from '../lib/model/generate.js';
import { GpuDecoder } from '../lib/model/gpu_decode.js';
import type { HybridModel, ModelCache } from '../lib/model/hybrid.js';
import { getOps } from '../lib/ops.js';
import { Rng } from '../lib/rng.js';
import {
  buildModel,
  counted,
  excess,
  gpuLayoutKv,
  modelArb,
  MUTATION_MODEL,
  reference,
  refChoice,
  TOL_ABS,
  webgpuIt as run,
} from './gpu_helpers.js';

interface RefVerify {
  rows: Float64Array[];
  accepted: number;
  next: number;
  /** every deciding row's choice is clear (float32 may legitimately differ otherwise) */
  clear: boolean;
  cache: ModelCache;
}

/** The CPU reference's Algorithm 2 step: prompt but its last token prefilled, then VERIFY([last, drafts]). */
async function referenceVerify(m: HybridModel, prompt: number[], drafts: number[]): Promise<RefVerify> {
  const ops = await getOps('reference');
  const { cache } = await prefillSpec(ops, m, prompt.slice(0, -1), drafts.length + 1, 'lazy');
  const j = cache.length;
  const rows = await verify(ops, m, cache, prompt[prompt.length - 1], drafts);
  const a = acceptGreedy(drafts, rows);
  rollbackCache(cache, j + 1 + a.accepted);
  foldCache(cache);
  const clear = rows.slice(0, a.accepted + 1).every((r) => refChoice(r).clear);
  return { rows, accepted: a.accepted, next: a.emitted[a.emitted.length - 1], clear, cache };
}

/** The worst excess of the GPU's caches and states over the reference's (first `T` positions of each KV cache). */
async function cacheExcess(dec: GpuDecoder, m: HybridModel, ref: ModelCache): Promise<number> {
  const T = ref.length;
  const states = effectiveStates(m, ref);
  let worst = 0;
  for (let i = 0; i < m.llama.numLayers; i++) {
    const g = await dec.readLayer(i);
    const lc = ref.layers[i];
    if (g.kind === 'attention' && lc.kind === 'attention') {
      const { k, v } = gpuLayoutKv(m, lc, T);
      worst = Math.max(worst, excess(g.k.subarray(0, k.length), k), excess(g.v.subarray(0, v.length), v));
    } else if (g.kind !== 'attention') {
      const s = lookup(states, i);
      worst = Math.max(worst, excess(g.conv, s.conv.data), excess(g.ssm, s.ssm.data));
    } else throw new Error(`layer ${i}: ${g.kind} on the GPU, ${lc.kind} in the reference`);
  }
  return worst;
}

/** Drafts: the target's greedy continuation (K tokens) with the token at `wrongAt` (if < K) replaced. */
async function draftsFor(m: HybridModel, prompt: number[], K: number, wrongAt: number, shift: number) {
  const g = await generate(await getOps('reference'), m, prompt, { maxNewTokens: K, eos: [] });
  const V = m.llama.vocabSize;
  return g.tokens.map((t, i) => (i === wrongAt ? (t + 1 + (shift % (V - 1))) % V : t));
}

describe('Algorithm 2 VERIFY in one GPU submission (webgpu)', () => {
  for (const [variant, runs] of [
    ['llama', 1],
    ['mamba2', 2],
    ['mamba1', 1],
    ['mamba1-clean', 1],
  ] as const)
    run(
      `random ${variant} models: the reference step's logits, accepted count, next token and caches; one submit and one readback (numRuns ${runs})`,
      async () => {
        await fc.assert(
          fc.asyncProperty(
            modelArb(variant),
            fc.array(fc.nat(1000), { minLength: 1, maxLength: 4 }),
            fc.integer({ min: 1, max: 4 }),
            fc.nat(5),
            fc.nat(1000),
            async (spec, rawPrompt, K, wrongAt, shift) => {
              const m = buildModel(spec);
              const prompt = rawPrompt.map((x) => x % spec.vocab);
              const drafts = await draftsFor(m, prompt, K, wrongAt, shift);
              const ref = await referenceVerify(m, prompt, drafts);
              const dec = await GpuDecoder.create(m, { capacity: 12, prefillWidth: 2 });
              try {
                if (prompt.length > 1) {
                  const p = await counted(dec.chain.device, () => dec.prefill(prompt.slice(0, -1)));
                  expect([p.submits, p.maps], 'a prefill: one submit, one readback').toEqual([1, 1]);
                }
                const r = await counted(dec.chain.device, () =>
                  dec.verify(prompt[prompt.length - 1], drafts, { logits: true }),
                );
                expect([r.submits, r.maps], 'a verify: one submit, one readback').toEqual([1, 1]);
                const rows = present(r.value.logits, 'logits');
                expect(rows.length).toBe(K + 1);
                rows.forEach((row, t) =>
                  expect(excess(row, ref.rows[t]), `logits row ${t}`).toBeLessThanOrEqual(TOL_ABS),
                );
                if (!ref.clear) return; // a near-tie: float32 may accept one more or one fewer
                expect(r.value.accepted, 'accepted drafts').toBe(ref.accepted);
                expect(r.value.next, 'the correction or bonus token').toBe(ref.next);
                expect(dec.length).toBe(ref.cache.length);
                expect(await cacheExcess(dec, m, ref.cache), 'caches and states').toBeLessThanOrEqual(TOL_ABS);
              } finally {
                dec.destroy();
              }
            },
          ),
          { numRuns: runs },
        );
      },
    );

  run(`a layer's kernel, a KV write or a state/conv commit left out of the window fails`, async () => {
    const m = buildModel(MUTATION_MODEL);
    const prompt = [3, 9, 14];
    const drafts = await draftsFor(m, prompt, 3, 2, 0); // two accepted, the third rejected
    const ref = await referenceVerify(m, prompt, drafts);
    expect(ref.clear && ref.accepted === 2).toBe(true);
    const attn = present(m.mamba, 'mamba config').attnLayers[0];
    const mamba = attn === 0 ? 1 : 0;
    const dec = await GpuDecoder.create(m, { capacity: 8, prefillWidth: 2 });
    try {
      const worst = async (p: number[], ds: number[]) => {
        dec.reset();
        await dec.prefill(p.slice(0, -1));
        const r = await dec.verify(p[2], ds, { logits: true });
        let w = await cacheExcess(dec, m, ref.cache);
        present(r.logits, 'logits').forEach((row, t) => (w = Math.max(w, excess(row, ref.rows[t]))));
        return w;
      };
      expect(await worst(prompt, drafts), 'the whole window').toBeLessThanOrEqual(TOL_ABS);
      for (const mut of [
        'layer1.down',
        `layer${attn}.k_write`,
        `layer${mamba}.ssm_step`,
        `layer${mamba}.conv_shift`,
        `layer${mamba}.ssm_out`,
      ]) {
        const label = `w4.${mut}`;
        expect(dec.chain.labelsOf('window4'), label).toContain(label);
        // the whole window on other tokens first: a left-out kernel's output must not hold this run's values
        dec.chain.omit.clear();
        await worst([7, 1, 30], [2, 2, 2]);
        dec.chain.omit.add(label);
        expect(await worst(prompt, drafts), `without ${label}`).toBeGreaterThan(TOL_ABS);
      }
    } finally {
      dec.destroy();
    }
  });

  run(`the window's WGSL reductions (Mamba-2's y included) and its GPU.js kernels: the same verify`, async () => {
    const m = buildModel(MUTATION_MODEL);
    const prompt = [3, 9, 14];
    const drafts = await draftsFor(m, prompt, 3, 2, 0);
    const ref = await referenceVerify(m, prompt, drafts);
    const mamba = present(m.mamba, 'mamba config').attnLayers[0] === 0 ? 1 : 0;
    const results = [];
    for (const reductions of ['wgsl', 'gpujs'] as const) {
      const dec = await GpuDecoder.create(m, { capacity: 8, prefillWidth: 2, reductions });
      try {
        await dec.prefill(prompt.slice(0, -1));
        const r = await dec.verify(prompt[2], drafts, { logits: true });
        expect(dec.chain.labelsOf('window4')).toContain(`w4.layer${mamba}.ssm_out`);
        present(r.logits, 'logits').forEach((row, t) =>
          expect(excess(row, ref.rows[t]), `${reductions}: logits row ${t}`).toBeLessThanOrEqual(TOL_ABS),
        );
        results.push([r.accepted, r.next]);
      } finally {
        dec.destroy();
      }
    }
    expect(results[0], 'wgsl, gpujs').toEqual(results[1]);
    expect(results[0], 'the reference').toEqual([ref.accepted, ref.next]);
  });

  run(`speculative decoding on webgpu: target and draft as GPU decoders, plain greedy decoding's tokens`, async () => {
    const spec = { vocab: 30, hd: 4, kvHeads: 1, group: 2, intermediate: 16, layers: 3, tie: false } as const;
    const target = buildModel({ ...spec, variant: 'mamba2', seed: 3 });
    const prompt = [4, 17, 9];
    const n = 9;
    const ref = await reference(target, prompt, n - 1); // plain greedy on the float64 reference
    const want = ref.ids.slice(prompt.length);
    want.push(refChoice(ref.logits[ref.logits.length - 1]).id);
    const clear = ref.logits.slice(prompt.length - 1).findIndex((l) => !refChoice(l).clear);
    const upTo = clear < 0 ? n : clear + 1; // the tokens up to (and including) the first close call
    const gpu = await getOps('webgpu');
    // drafts: the target itself (every draft accepted: the bonus path), a random 1-layer Llama (most rejected)
    // and a random Mamba-2 hybrid (rejections rewind its states); the target's decoder is kept between the calls
    const built = vi.spyOn(GpuDecoder, 'create');
    for (const [name, draft] of [
      ['the target itself', target],
      ['a 1-layer Llama', buildModel({ ...spec, layers: 1, variant: 'llama', seed: 11 })],
      ['a Mamba-2 hybrid', buildModel({ ...spec, layers: 2, variant: 'mamba2', seed: 12 })],
    ] as const) {
      const r = await speculativeGenerate(gpu, target, new ModelDrafter(gpu, draft, 4, 'lazy'), prompt, {
        K: 3,
        maxNewTokens: n,
        eos: [],
      });
      expect(r.path, name).toBe(GPU_SPECULATIVE_PATH);
      expect(r.tokens.slice(0, upTo), name).toEqual(want.slice(0, upTo));
      expect(r.tokens.length, name).toBe(n);
      if (draft === target) expect(r.acceptanceRate, name).toBe(1);
      else expect(r.acceptanceRate, `${name}: some drafts rejected`).toBeLessThan(1);
    }
    // the target's (kept), the self-draft's (its own: the target's is in use), then only each new draft's
    expect(built).toHaveBeenCalledTimes(4);
    built.mockRestore();
  });

  run(
    `steps(first, n): n greedy steps in one submission = n calls of step() (ids, states, the next logits)`,
    async () => {
      for (const variant of ['llama', 'mamba2', 'mamba1'] as const) {
        const m = buildModel({ ...MUTATION_MODEL, variant, vocab: 30, kvHeads: 1, intermediate: 16, seed: 21 });
        const dec = await GpuDecoder.create(m, { capacity: 16, prefillWidth: 2 });
        try {
          // one by one: the ids, then the logits after them
          await dec.prefill([5, 6, 7]);
          const one: number[] = [];
          let id = 8;
          for (let i = 0; i < 5; i++) one.push((id = (await dec.step(id)).token));
          const after = (await dec.step(id, { logits: true })).logits!;
          // the same in one submission
          dec.reset();
          await dec.prefill([5, 6, 7]);
          const submits = dec.chain.counters.submits;
          const ids = await dec.steps(8, 5);
          expect(dec.chain.counters.submits - submits, variant).toBe(1);
          expect(ids, variant).toEqual(one);
          expect(dec.length, variant).toBe(8);
          expect(Array.from((await dec.step(ids[4], { logits: true })).logits!), variant).toEqual(Array.from(after));
        } finally {
          dec.destroy();
        }
      }
    },
  );

  run(`mark() and rewind() put a Mamba hybrid's states and length back (what a rejected draft needs)`, async () => {
    const m = buildModel({ ...MUTATION_MODEL, vocab: 30, kvHeads: 1, intermediate: 16, seed: 8 });
    const dec = await GpuDecoder.create(m, { capacity: 12, prefillWidth: 2 });
    try {
      await dec.prefill([5, 6, 7]);
      const want = (await dec.step(8, { logits: true })).logits!;
      dec.reset();
      await dec.prefill([5, 6, 7]);
      await dec.mark();
      await dec.step(1);
      await dec.step(2);
      await dec.rewind();
      expect(dec.length).toBe(3);
      expect(Array.from((await dec.step(8, { logits: true })).logits!)).toEqual(Array.from(want));
    } finally {
      dec.destroy();
    }
  });

  run(`sampling on the GPU draws the CPU sampler's token from the same float32 logits and uniform`, async () => {
    const m = buildModel({ ...MUTATION_MODEL, vocab: 90, kvHeads: 1, intermediate: 16, seed: 4 });
    const dec = await GpuDecoder.create(m, { capacity: 40 });
    const rng = new Rng(5);
    const settings: SamplingOptions[] = [
      { temperature: 0.7 },
      { temperature: 1, topK: 5 },
      { temperature: 1.3, topP: 0.8 },
      { temperature: 0.9, topK: 12, topP: 0.6 },
      { temperature: 2, topK: 1 },
    ];
    let compared = 0;
    try {
      let id = 3;
      for (let t = 0; t < 30; t++) {
        const o = settings[t % settings.length];
        const u = rng.next();
        const r = await dec.step(id, {
          logits: true,
          sample: { u, temperature: present(o.temperature, 'temperature'), topK: o.topK, topP: o.topP },
        });
        const p = present(samplingDistribution(Float64Array.from(present(r.logits, 'logits')), o), 'distribution'); // (V) the CPU sampler's, float64
        const want = drawFrom(p, u);
        // a draw within 1e-4 of a boundary (of the cumulative sum, or of the top-p cut) may go either way in float32
        let c = 0;
        let near = false;
        for (let i = 0; i < p.length; i++) {
          c += p[i];
          if (p[i] > 0 && Math.abs(c - u) < 1e-4) near = true;
        }
        const sorted = Array.from(present(r.logits, 'logits'))
          .map((l) => Math.exp((l - Math.max(...present(r.logits, 'logits'))) / present(o.temperature, 'temperature')))
          .sort((a, b) => b - a);
        const z = sorted.reduce((a, b) => a + b, 0);
        let mass = 0;
        for (const x of sorted) if (o.topP !== undefined && Math.abs((mass += x / z) - o.topP) < 1e-4) near = true;
        if (!near) {
          compared++;
          expect(r.token, `draw ${t} (${JSON.stringify(o)}, u ${u})`).toBe(want);
        }
        id = want;
      }
      expect(compared, 'draws compared').toBeGreaterThanOrEqual(25);
      // greedy is the argmax still
      const g = await dec.step(id, { logits: true });
      expect(g.token).toBe(argmax(present(g.logits, 'logits')));
    } finally {
      dec.destroy();
    }
  });
});
