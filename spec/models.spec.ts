/**
 * Models: the Llama teacher, Algorithm 1 conversion and hybrid inference with caches.
 * fast-check properties (numRuns in each title), on the float64 reference (FLOAT64_TOL) and on webasm
 * (FLOAT32_TOL, fewer runs):
 *  - prefill of any prefix (in one or two pieces), then decode of the rest = one full forward, at every
 *    position, for Llama, Mamba-1 (upstream and clean) and Mamba-2 hybrids at every attention fraction
 *  - keeping every layer as attention reproduces the teacher exactly
 *  - a Mamba-2 layer converted from attention with A = 0, Δ = 1, identity conv, no gate/norm and D = 0 is
 *    exactly the teacher's linear attention (softmax removed, no RoPE): PAPER.md §1
 *  - save → load is bit-exact (single file and sharded)
 */
import { tmpFolder } from './tmp.js';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { rmSync, writeFileSync, readdirSync } from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { getOps, type Ops } from '../lib/ops.js';
import { randomLlama } from '../lib/model/random.js';
import { convert, saveModel } from '../lib/model/convert.js';
import { relError } from '../lib/tensor.js';
import { portLogits, portModelOf } from './example_port.js';
import { forward, kvTensors, newCache, prefill, type HybridModel, type ModelCache } from '../lib/model/hybrid.js';
import { WeightStore } from '../lib/model/weights.js';
import { loadModel } from '../lib/model/load.js';
import { PackedWeight } from '../lib/simd/packed_weight.js';
import { attentionLayersFor, parseLlamaConfig, ConfigError } from '../lib/model/config.js';
import { generate, samplingDistribution, sampleToken } from '../lib/model/generate.js';
import { linearAttentionParallel } from '../lib/ref/linear_attention.js';
import { repeatKv } from '../lib/ref/attention.js';
import { rmsnorm } from '../lib/ref/norm.js';
import { silu, inverseSoftplus } from '../lib/ref/activations.js';
import { linear } from '../lib/ref/linear.js';
import { SafetensorsError, ShapeError } from '../lib/errors.js';
import { FLOAT32_TOL, FLOAT64_TOL, Rng, Tensor, expectClose } from './helpers.js';
import { lookup } from '../lib/checked.js';

const SPEC = { vocab: 37, hidden: 32, intermediate: 48, layers: 4, heads: 4, kvHeads: 2, headDim: 16 };
const teacher = (seed: number) => randomLlama(SPEC, seed);
type Variant = 'llama' | 'mamba1' | 'mamba1-clean' | 'mamba2';
function build(variant: Variant, frac: number, seed: number): HybridModel {
  const t = teacher(seed);
  if (variant === 'llama') return t;
  return convert(t, {
    variant: variant === 'mamba2' ? 'mamba2' : 'mamba1',
    attentionFraction: frac,
    seed: seed + 1,
    semantics: variant === 'mamba1-clean' ? 'clean' : 'upstream',
  });
}
const tmp = () => tmpFolder('model');

/** Logits of one full forward vs prefill(0..a) + prefill(a..k) + decode(k..L), row by row. */
async function incrementalMatchesFull(ops: Ops, m: HybridModel, ids: number[], a: number, k: number, tol: number) {
  const full = await forward(ops, m, [ids], newCache(m, 1));
  const V = m.llama.vocabSize;
  const cache = newCache(m, 1);
  const parts: Tensor[] = [];
  if (a > 0) parts.push(await forward(ops, m, [ids.slice(0, a)], cache));
  if (k > a) parts.push(await forward(ops, m, [ids.slice(a, k)], cache));
  for (let t = k; t < ids.length; t++) parts.push(await forward(ops, m, [[ids[t]]], cache));
  const inc = Tensor.concat(
    parts.map((p) => p.astype('float64')),
    1,
  );
  expect(cache.length).toBe(ids.length);
  expectClose(inc, full.astype('float64').reshape([1, ids.length, V]), tol, 'logits');
  // a prompt's prefill as generate runs it: the head on the last position only (lastOnly), = the full one's last row
  const last = await forward(ops, m, [ids], newCache(m, 1), { lastOnly: true }); // (1, 1, V)
  expect(last.shape).toEqual([1, 1, V]);
  expect(relError(last.data, full.data.subarray((ids.length - 1) * V))).toBeLessThanOrEqual(tol);
  // prefill in pieces of 3 positions (generate's: 512): the same last row, the cache as full (the decode after it)
  const pc = newCache(m, 1);
  const pre = await prefill(ops, m, ids.slice(0, -1), pc, 3); // (1, 1, V)
  const want = full.data.subarray((ids.length - 2) * V, (ids.length - 1) * V); // after ids[0 … L−2]
  expect(relError(pre.data.subarray(pre.data.length - V), want), 'prefill in pieces').toBeLessThanOrEqual(tol);
  expect(pc.length).toBe(ids.length - 1);
  const next = await forward(ops, m, [[ids[ids.length - 1]]], pc); // (1, 1, V)
  expect(relError(next.data, full.data.subarray((ids.length - 1) * V)), 'decode after it').toBeLessThanOrEqual(tol);
}

const cases: Array<[string, Ops | null, number, number]> = [
  ['reference', null, FLOAT64_TOL, 10],
  ['webasm', null, FLOAT32_TOL, 3],
];

// the KV cache grows by a quarter (lib/model/mixers/attention.ts writeKv): 64 → 128 → 160 → 200 positions here,
// each growth keeping what was written; the short prompts above never pass the first 64
it('a KV cache grown three times (a 30-token prefill, then 170 tokens one at a time) = the full forward', async () => {
  const ops = await getOps('reference');
  const m = build('mamba2', 0.5, 7);
  const r = new Rng(7);
  const ids = Array.from({ length: 200 }, () => r.int(0, SPEC.vocab - 1));
  await incrementalMatchesFull(ops, m, ids, 30, 30, FLOAT64_TOL);
});

describe.each(cases)('incremental = full forward on %s', (backend, _o, tol, runs) => {
  for (const variant of ['llama', 'mamba1', 'mamba1-clean', 'mamba2'] as const) {
    it(`${variant}: any prefix prefilled in ≤ 2 pieces, then decode, every attention fraction (numRuns ${runs})`, async () => {
      const ops = await getOps(backend);
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(0, 0.25, 0.5, 1),
          fc.integer({ min: 2, max: 11 }),
          fc.nat(),
          fc.nat(),
          fc.integer({ min: 0, max: 1000 }),
          async (frac, L, x, y, seed) => {
            const m = build(variant, frac, seed);
            const r = new Rng(seed);
            const ids = Array.from({ length: L }, () => r.int(0, SPEC.vocab - 1));
            const k = 1 + (x % (L - 1)); // prefill at least one token, decode at least one
            const a = y % (k + 1);
            await incrementalMatchesFull(ops, m, ids, a, k, tol);
          },
        ),
        { numRuns: runs },
      );
    });
  }
});

/** A tensor's bytes, to compare two results bit for bit. */
const bits = (t: Tensor) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);

/**
 * The prompt [1 … 5] into two caches of m, then `steps` calls of that many tokens each through the fused step and
 * through the generic forward (`fused: false`), their logits compared bit for bit; `before(n)` runs before call n
 * (a weight replaced mid-decode). The two caches, for the caller to compare.
 */
async function fusedAgainstGeneric(
  ops: Ops,
  m: HybridModel,
  steps: number[],
  seed: number,
  before: (n: number) => void,
): Promise<{ fused: ModelCache; plain: ModelCache }> {
  const fused = newCache(m, 1);
  const plain = newCache(m, 1);
  await forward(ops, m, [[1, 2, 3, 4, 5]], fused);
  await forward(ops, m, [[1, 2, 3, 4, 5]], plain);
  for (const [n, L] of steps.entries()) {
    before(n);
    const ids = Array.from({ length: L }, (_, t) => (7 * n + 3 * t + seed) % m.llama.vocabSize);
    const a = await forward(ops, m, [ids], fused);
    const b = await forward(ops, m, [ids], plain, { fused: false });
    expect(a.shape).toEqual(b.shape);
    expect(Buffer.compare(bits(a), bits(b))).toBe(0);
  }
  return { fused, plain };
}

describe('Algorithm 1 conversion', () => {
  it('the paper’s attention schedule: 50% → odd layers, 25% → 3, 7, …, 31, 12.5% → 7, 15, 23, 31, 0% → none', () => {
    expect(attentionLayersFor(0.5, 32)).toEqual(Array.from({ length: 16 }, (_, i) => 2 * i + 1));
    expect(attentionLayersFor(0.25, 32)).toEqual([3, 7, 11, 15, 19, 23, 27, 31]);
    expect(attentionLayersFor(0.125, 32)).toEqual([7, 15, 23, 31]);
    expect(attentionLayersFor(0, 32)).toEqual([]);
    expect(attentionLayersFor(0.5, 4)).toEqual([1, 3]); // the golden hybrid's attn_layers
  });

  it('keeping every layer as attention reproduces the teacher exactly, also as the independent example port reads the saved hybrid (numRuns 5)', async () => {
    const ops = await getOps('reference');
    // the example port (examples/ports/js, written apart from lib/) reading a model's files: config.json,
    // mamba_config.json (attn_layers) and mil_config.json as saved, the weights as float64
    const port = (m: HybridModel, ids: number[]) => Array.from(portLogits(portModelOf(m), ids));
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<'mamba1' | 'mamba2'>('mamba1', 'mamba2'),
        fc.integer({ min: 0, max: 1000 }),
        async (variant, seed) => {
          const t = teacher(seed);
          const h = convert(t, { variant, attentionFraction: 1, seed });
          const ids = [[3, 1, 4, 1, 5, 9, 2, 6]];
          const a = await forward(ops, t, ids, newCache(t, 1));
          const b = await forward(ops, h, ids, newCache(h, 1));
          expect(Array.from(b.data)).toEqual(Array.from(a.data));
          // independent: the saved hybrid, read by the port, is the teacher as the port reads it, bit for bit, and
          // both agree with this library's teacher to float64 rounding
          const viaPort = port(h, ids[0]);
          expect(viaPort).toEqual(port(t, ids[0]));
          expect(relError(Float64Array.from(viaPort), Float64Array.from(a.data))).toBeLessThanOrEqual(1e-12);
        },
      ),
      { numRuns: 5 },
    );
  });

  it('copies v/k/q/o into x/B/C/out_proj and keeps MLPs and norms (Mamba-1 and Mamba-2 layouts)', () => {
    const t = teacher(5);
    const W = t.weights;
    const m1 = convert(t, { variant: 'mamba1', attnLayers: [1], seed: 1 });
    const same = (a: Tensor, b: Tensor) => expect(Array.from(a.data)).toEqual(Array.from(b.data));
    same(m1.weights.get('model.layers.0.mamba.in_proj_x.weight'), W.get('model.layers.0.self_attn.v_proj.weight'));
    same(m1.weights.get('model.layers.0.mamba.B_proj.weight'), W.get('model.layers.0.self_attn.k_proj.weight'));
    same(m1.weights.get('model.layers.0.mamba.C_proj.weight'), W.get('model.layers.0.self_attn.q_proj.weight'));
    same(m1.weights.get('model.layers.0.mamba.out_proj.weight'), W.get('model.layers.0.self_attn.o_proj.weight'));
    same(m1.weights.get('model.layers.0.mlp.up_proj.weight'), W.get('model.layers.0.mlp.up_proj.weight'));
    expect(m1.weights.has('model.layers.0.self_attn.q_proj.weight')).toBe(false);
    expect(m1.weights.has('model.layers.1.self_attn.q_proj.weight')).toBe(true);
    // dt bias: softplus(bias) in [1e-3, 1e-1]; A_log = log(1..16); D = 1
    const bias = m1.weights.get('model.layers.0.mamba.dt_proj.bias');
    for (const b of bias.data) {
      expect(Math.log1p(Math.exp(b))).toBeGreaterThanOrEqual(0.999e-3);
      expect(Math.log1p(Math.exp(b))).toBeLessThanOrEqual(0.1001);
    }
    expect(
      Array.from(m1.weights.get('model.layers.2.mamba.A_log').data.subarray(0, 16)).map((v) => Math.round(Math.exp(v))),
    ).toEqual(Array.from({ length: 16 }, (_, i) => i + 1));
    const m2 = convert(t, { variant: 'mamba2', attnLayers: [], seed: 1 });
    const inp = m2.weights.get('model.layers.3.mamba.in_proj.weight');
    const I = 64,
      X = 32;
    same(inp.slice(0, I, I + X), W.get('model.layers.3.self_attn.v_proj.weight'));
    same(inp.slice(0, I + X, I + 2 * X), W.get('model.layers.3.self_attn.k_proj.weight'));
    same(inp.slice(0, I + 2 * X, 2 * I + 2 * X), W.get('model.layers.3.self_attn.q_proj.weight'));
    const A = Array.from(m2.weights.get('model.layers.3.mamba.A_log').data).map(Math.exp);
    for (const a of A) expect(a >= 1 && a <= 16).toBe(true);
    // same seed, same conversion
    const again = convert(t, { variant: 'mamba2', attnLayers: [], seed: 1 });
    same(again.weights.get('model.layers.3.mamba.in_proj.weight'), inp);
  });

  it('PAPER §1: Mamba-2 from attention with A = 0, Δ = 1, identity conv, no gate, D = 0 = the teacher’s linear attention (numRuns 5)', async () => {
    const ops = await getOps('reference');
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 1, max: 9 }), async (seed, L) => {
        const t = teacher(seed);
        const m = convert(t, { variant: 'mamba2', attnLayers: [], seed });
        const W = m.weights.tensors;
        const H = SPEC.heads,
          I = 64,
          X = 32;
        for (let i = 0; i < SPEC.layers; i++) {
          const q = `model.layers.${i}.mamba`;
          W.set(`${q}.A_log`, Tensor.full([H], -Infinity)); // A = −exp(−∞) = 0
          W.set(`${q}.dt_bias`, Tensor.full([H], inverseSoftplus(1))); // Δ = softplus(0 + b) = 1
          const inp = lookup(W, `${q}.in_proj.weight`).clone();
          inp.data.fill(0, (2 * I + 2 * X) * SPEC.hidden); // dt rows = 0
          W.set(`${q}.in_proj.weight`, inp);
          const conv = Tensor.zeros([I + 2 * X, 1, 4]);
          for (let c = 0; c < I + 2 * X; c++) conv.data[c * 4 + 3] = 1; // identity
          W.set(`${q}.conv1d.weight`, conv);
          W.set(`${q}.conv1d.bias`, Tensor.zeros([I + 2 * X]));
          W.set(`${q}.D`, Tensor.zeros([H]));
        }
        m.ablation = { convActivation: false, gatedNorm: false };
        const r = new Rng(seed);
        const ids = Array.from({ length: L }, () => r.int(0, SPEC.vocab - 1));
        const got = await forward(ops, m, [ids], newCache(m, 1));
        // independent: the teacher with softmax attention replaced by linear attention (no RoPE, no scale)
        const TW = t.weights;
        const h = Tensor.zeros([1, L, SPEC.hidden]);
        ids.forEach((id, k) =>
          h.data.set(TW.get('model.embed_tokens.weight').data.subarray(id * 32, id * 32 + 32), k * 32),
        );
        for (let i = 0; i < SPEC.layers; i++) {
          const p = `model.layers.${i}`;
          const x = rmsnorm(h, TW.get(`${p}.input_layernorm.weight`), 1e-5);
          const heads = (w: string, n: number) =>
            linear(x, TW.get(`${p}.self_attn.${w}_proj.weight`))
              .reshape([1, L, n, 16])
              .transpose([0, 2, 1, 3]);
          const y = linearAttentionParallel(heads('q', H), repeatKv(heads('k', 2), 2), repeatKv(heads('v', 2), 2));
          const o = linear(y.transpose([0, 2, 1, 3]).reshape([1, L, 64]), TW.get(`${p}.self_attn.o_proj.weight`));
          for (let j = 0; j < h.size; j++) h.data[j] += o.data[j];
          const x2 = rmsnorm(h, TW.get(`${p}.post_attention_layernorm.weight`), 1e-5);
          const g = linear(x2, TW.get(`${p}.mlp.gate_proj.weight`));
          const u = linear(x2, TW.get(`${p}.mlp.up_proj.weight`));
          const d = linear(
            g.zip(u, (a, b) => silu(a) * b),
            TW.get(`${p}.mlp.down_proj.weight`),
          );
          for (let j = 0; j < h.size; j++) h.data[j] += d.data[j];
        }
        const want = linear(rmsnorm(h, TW.get('model.norm.weight'), 1e-5), TW.get('lm_head.weight'));
        expectClose(got, want, FLOAT64_TOL, 'logits');
      }),
      { numRuns: 5 },
    );
  });
});

describe('checkpoints', () => {
  it('save → load is bit-exact, single file and sharded, teacher and both hybrids (numRuns 4)', async () => {
    const ops = await getOps('reference');
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<Variant>('llama', 'mamba1-clean', 'mamba2'),
        fc.boolean(),
        fc.integer({ min: 0, max: 1000 }),
        async (variant, sharded, seed) => {
          const m = build(variant, 0.5, seed);
          const dir = tmp();
          saveModel(dir, m, { shardBytes: sharded ? 20000 : undefined });
          expect(readdirSync(dir).some((f) => f.endsWith('.index.json'))).toBe(sharded);
          expect(readdirSync(dir).some((f) => f.endsWith('.tmp'))).toBe(false);
          const back = loadModel(dir);
          expect(back.mamba?.variant).toBe(m.mamba?.variant);
          expect(back.mamba?.semantics).toBe(m.mamba?.semantics);
          expect(back.weights.names().sort()).toEqual(m.weights.names().sort());
          for (const n of m.weights.names())
            expect(Array.from(back.weights.get(n).data)).toEqual(Array.from(m.weights.get(n).data));
          const ids = [[1, 2, 3, 4]];
          const a = await forward(ops, m, ids, newCache(m, 1));
          const b = await forward(ops, back, ids, newCache(back, 1));
          expect(Array.from(b.data)).toEqual(Array.from(a.data));
          rmSync(dir, { recursive: true });
        },
      ),
      { numRuns: 4 },
    );
  });

  it('config.json: rope_parameters and rope_theta spellings agree; llama3 scaling; explicit head_dim; tied embeddings', async () => {
    const ops = await getOps('reference');
    const a = randomLlama({ ...SPEC, ropeTheta: 5000 }, 3);
    const b = randomLlama({ ...SPEC, ropeTheta: 5000, ropeParameters: true }, 3);
    expect(b.llama.ropeTheta).toBe(5000);
    const ids = [[5, 6, 7]];
    expect(Array.from((await forward(ops, b, ids, newCache(b, 1))).data)).toEqual(
      Array.from((await forward(ops, a, ids, newCache(a, 1))).data),
    );
    const l3 = parseLlamaConfig({
      ...a.llama.raw,
      rope_scaling: {
        rope_type: 'llama3',
        factor: 8,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 8192,
      },
    });
    expect(l3.ropeScaling).toEqual({
      ropeType: 'llama3',
      factor: 8,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    });
    const l3b = parseLlamaConfig({
      ...a.llama.raw,
      rope_theta: undefined,
      rope_parameters: { rope_theta: 500000, rope_type: 'llama3', factor: 32 },
    });
    expect([l3b.ropeTheta, l3b.ropeScaling.ropeType, l3b.ropeScaling.factor]).toEqual([500000, 'llama3', 32]);
    expect(a.llama.headDim).toBe(16); // ≠ hidden / heads = 8
    expect(parseLlamaConfig({ ...a.llama.raw, head_dim: undefined }).headDim).toBe(8);
    const tied = randomLlama({ ...SPEC, tie: true }, 4);
    expect(tied.weights.has('lm_head.weight')).toBe(false);
    const dir = tmp();
    saveModel(dir, tied);
    const tb = loadModel(dir);
    expect(Array.from((await forward(ops, tb, ids, newCache(tb, 1))).data)).toEqual(
      Array.from((await forward(ops, tied, ids, newCache(tied, 1))).data),
    );
    expect(() => parseLlamaConfig({ ...a.llama.raw, num_key_value_heads: 3 })).toThrow(ConfigError);
    expect(() => parseLlamaConfig({ ...a.llama.raw, rope_scaling: { rope_type: 'yarn', factor: 2 } })).toThrow(
      /'rope_scaling.rope_type' is "yarn": expected one of "default", "llama3"/,
    );
  });

  it('a malformed model folder fails at load with a typed error naming the file or the weight', () => {
    const m = build('mamba1', 0.5, 9);
    const dir = tmp();
    saveModel(dir, m);
    m.weights.tensors.delete('model.layers.0.mamba.D');
    const d2 = tmp();
    saveModel(d2, m);
    expect(() => loadModel(d2)).toThrow(SafetensorsError);
    expect(() => loadModel(d2)).toThrow(/missing weight 'model.layers.0.mamba.D'/);
    m.weights.tensors.set('model.layers.0.mamba.D', Tensor.zeros([5]));
    saveModel(d2, m);
    expect(() => loadModel(d2)).toThrow(ShapeError);
    writeFileSync(join(dir, 'mamba_config.json'), '{"d_model": 32, "n_layer": 4');
    expect(() => loadModel(dir)).toThrow(ConfigError);
    writeFileSync(join(dir, 'mamba_config.json'), JSON.stringify({ ...m.mamba!.raw, attn_layers: [1, 9] }));
    expect(() => loadModel(dir)).toThrow(/attn_layers entry 9 is not a layer/);
  });
});

describe('generation', () => {
  it('greedy generate on wasm-simd from a prompt of 1–3 tokens (the fused prefill gives every position its logits) and of more = the argmax of a fresh whole-sequence forward at each step', async () => {
    const ops = await getOps('wasm-simd');
    const m = convert(randomLlama({ vocab: 61, hidden: 32, intermediate: 40, layers: 2, heads: 4, kvHeads: 2 }, 5), {
      variant: 'mamba2',
      attnLayers: [1],
      seed: 2,
    });
    for (const prompt of [[7], [7, 3], [7, 3, 9], [7, 3, 9, 1, 4]]) {
      const got = await generate(ops, m, prompt, { maxNewTokens: 5, eos: [] });
      const seq = [...prompt];
      for (let t = 0; t < 5; t++) {
        // no cache carried over: the whole sequence through the generic forward, its last position's argmax
        const logits = await forward(ops, m, [seq], newCache(m, 1), { fused: false }); // (1, l, V)
        const last = Array.from(logits.data.subarray((seq.length - 1) * 61, seq.length * 61));
        seq.push(last.indexOf(Math.max(...last)));
      }
      expect(got.tokens).toEqual(seq.slice(prompt.length));
    }
  });

  it('greedy = argmax; temperature sampling is seeded; top-k 1 = greedy; top-p keeps the smallest prefix with the mass (numRuns 20)', async () => {
    const ops = await getOps('reference');
    const m = build('mamba2', 0.5, 11);
    const g = await generate(ops, m, [1, 2, 3], { maxNewTokens: 6, eos: [] });
    const s1 = await generate(ops, m, [1, 2, 3], { maxNewTokens: 6, temperature: 1.3, seed: 5, eos: [] });
    const s2 = await generate(ops, m, [1, 2, 3], { maxNewTokens: 6, temperature: 1.3, seed: 5, eos: [] });
    const k1 = await generate(ops, m, [1, 2, 3], { maxNewTokens: 6, temperature: 0.7, topK: 1, seed: 9, eos: [] });
    expect(s1.tokens).toEqual(s2.tokens);
    expect(k1.tokens).toEqual(g.tokens);
    const stop = await generate(ops, m, [1, 2, 3], { maxNewTokens: 6, eos: [g.tokens[2]] });
    expect(stop.tokens).toEqual(g.tokens.slice(0, 3));
    expect(stop.stoppedBy).toBe('eos');
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: -5, max: 5, noNaN: true }), { minLength: 2, maxLength: 12 }),
        fc.double({ min: 0.05, max: 1, noNaN: true }),
        (logits, topP) => {
          const full = samplingDistribution(logits, { temperature: 1 })!;
          const p = samplingDistribution(logits, { temperature: 1, topP })!;
          const kept = [...p.keys()].filter((i) => p[i] > 0);
          const mass = kept.reduce((s, i) => s + full[i], 0);
          expect(mass).toBeGreaterThanOrEqual(topP - 1e-12);
          const minKept = Math.min(...kept.map((i) => full[i]));
          expect(mass - minKept).toBeLessThan(topP + 1e-12); // dropping the least likely kept id falls short
          expect(sampleToken(logits, { temperature: 0 }, new Rng(1))).toBe(logits.indexOf(Math.max(...logits)));
        },
      ),
      { numRuns: 20 },
    );
  });

  it('the fused Llama step (lib/model/fused_step.ts) = the generic forward on wasm-simd, bit for bit: logits and KV caches, 1–3 tokens a call, GQA, tied embeddings, attention biases, widths across the 256 block; a replaced weight tensor is picked up (numRuns 12)', async () => {
    const ops = await getOps('wasm-simd');
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          hidden: fc.constantFrom(16, 32, 48, 272),
          layers: fc.integer({ min: 1, max: 2 }),
          kvHeads: fc.constantFrom(1, 2, 4),
          tie: fc.boolean(),
          bias: fc.boolean(),
          steps: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 2, maxLength: 5 }),
          seed: fc.nat(1000),
        }),
        async (s) => {
          const base = randomLlama(
            {
              vocab: 61,
              hidden: s.hidden,
              intermediate: 40,
              layers: s.layers,
              heads: 4,
              kvHeads: s.kvHeads,
              tie: s.tie,
            },
            s.seed,
          );
          const r = new Rng(s.seed + 1);
          const tensors = new Map(base.weights.tensors);
          if (s.bias)
            for (let i = 0; i < s.layers; i++)
              for (const [p, n] of [
                ['q', s.hidden],
                ['k', s.kvHeads * (s.hidden / 4)],
                ['v', s.kvHeads * (s.hidden / 4)],
                ['o', s.hidden],
              ] as const)
                tensors.set(`model.layers.${i}.self_attn.${p}_proj.bias`, Tensor.normal(r, [n], 0, 0.5));
          const m: HybridModel = { llama: { ...base.llama, attentionBias: s.bias }, weights: new WeightStore(tensors) };
          const { fused, plain } = await fusedAgainstGeneric(ops, m, s.steps, s.seed, (n) => {
            if (n === 1) tensors.set('model.norm.weight', Tensor.normal(r, [s.hidden], 1, 0.1)); // replaced mid-decode
          });
          for (const [i, lc] of fused.layers.entries()) {
            const pl = plain.layers[i];
            if (lc.kind !== 'attention' || pl.kind !== 'attention')
              throw new Error('a Llama has attention layers only');
            const kv = (c: typeof lc) => kvTensors(c, fused.length, 1, s.kvHeads, s.hidden / 4);
            expect(Buffer.compare(bits(kv(lc).k), bits(kv(pl).k))).toBe(0);
            expect(Buffer.compare(bits(kv(lc).v), bits(kv(pl).v))).toBe(0);
          }
        },
      ),
      { numRuns: 12 },
    );
  });

  it('the fused step of a hybrid (lib/model/fused_step.ts; mixers/mamba1.ts mamba1Step, mamba2.ts mamba2Step) = the generic forward on wasm-simd, bit for bit: logits, conv windows, SSM states and KV caches, 1–3 tokens a call, any mix of attention and Mamba layers, Mamba-1 (upstream and clean) and Mamba-2, random Mamba weights and biases, both ablations; a replaced weight tensor is picked up (numRuns 16)', async () => {
    const ops = await getOps('wasm-simd');
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          hidden: fc.constantFrom(16, 32, 48),
          layers: fc.integer({ min: 1, max: 3 }),
          kvHeads: fc.constantFrom(1, 2, 4),
          attn: fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }),
          variant: fc.constantFrom('mamba1', 'mamba1-clean', 'mamba2'),
          dState: fc.constantFrom(2, 4),
          bias: fc.boolean(),
          convActivation: fc.boolean(),
          gatedNorm: fc.boolean(),
          steps: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 2, maxLength: 5 }),
          seed: fc.nat(1000),
        }),
        async (s) => {
          const base = randomLlama(
            { vocab: 61, hidden: s.hidden, intermediate: 40, layers: s.layers, heads: 4, kvHeads: s.kvHeads },
            s.seed,
          );
          const attnLayers = [...Array(s.layers).keys()].filter((i) => s.attn[i]);
          const conv = convert(base, {
            variant: s.variant === 'mamba2' ? 'mamba2' : 'mamba1',
            semantics: s.variant === 'mamba1-clean' ? 'clean' : undefined,
            dState: s.variant === 'mamba2' ? undefined : s.dState,
            attnLayers,
            seed: s.seed,
          });
          const r = new Rng(s.seed + 1);
          // every Mamba parameter random (the conversion's A, Δ bias, D, conv and norm are too regular to catch a
          // swapped index), and the optional biases where drawn
          const tensors = new Map(conv.weights.tensors);
          for (const [name, t] of tensors)
            if (name.includes('.mamba.'))
              tensors.set(name, Tensor.normal(r, t.shape, name.endsWith('A_log') ? -0.5 : 0, 0.5));
          const convDim = (i: number) => lookup(tensors, `model.layers.${i}.mamba.conv1d.weight`).shape[0];
          if (s.bias)
            for (let i = 0; i < s.layers; i++)
              if (!attnLayers.includes(i)) {
                tensors.set(`model.layers.${i}.mamba.conv1d.bias`, Tensor.normal(r, [convDim(i)], 0, 0.5));
                const inProj = `model.layers.${i}.mamba.in_proj.weight`; // Mamba-2's only
                if (tensors.has(inProj))
                  tensors.set(
                    `model.layers.${i}.mamba.in_proj.bias`,
                    Tensor.normal(r, [lookup(tensors, inProj).shape[0]], 0, 0.5),
                  );
              }
          const m: HybridModel = {
            ...conv,
            weights: new WeightStore(tensors),
            ablation: { convActivation: s.convActivation, gatedNorm: s.gatedNorm },
          };
          const mambaAt = [...Array(s.layers).keys()].find((i) => !attnLayers.includes(i));
          const { fused, plain } = await fusedAgainstGeneric(ops, m, s.steps, s.seed, (n) => {
            if (n !== 1 || mambaAt === undefined) return;
            // replaced mid-decode: a Mamba layer's output projection and its per-head A_log
            const o = `model.layers.${mambaAt}.mamba.out_proj.weight`;
            tensors.set(o, Tensor.normal(r, lookup(tensors, o).shape, 0, 0.5));
            const a = `model.layers.${mambaAt}.mamba.A_log`;
            tensors.set(a, Tensor.normal(r, lookup(tensors, a).shape, -0.5, 0.5));
          });
          for (const [i, lc] of fused.layers.entries()) {
            const pl = plain.layers[i];
            if (lc.kind === 'attention' && pl.kind === 'attention') {
              const kv = (c: typeof lc) => kvTensors(c, fused.length, 1, s.kvHeads, s.hidden / 4);
              expect(Buffer.compare(bits(kv(lc).k), bits(kv(pl).k))).toBe(0);
              expect(Buffer.compare(bits(kv(lc).v), bits(kv(pl).v))).toBe(0);
            } else if (lc.kind !== 'attention' && pl.kind === lc.kind) {
              expect(lc.conv.shape).toEqual(pl.conv.shape);
              expect(lc.ssm.shape).toEqual(pl.ssm.shape);
              expect(Buffer.compare(bits(lc.conv.astype('float32')), bits(pl.conv.astype('float32')))).toBe(0);
              expect(Buffer.compare(bits(lc.ssm.astype('float32')), bits(pl.ssm.astype('float32')))).toBe(0);
            } else throw new Error(`layer ${i}: ${lc.kind} and ${pl.kind}`);
          }
        },
      ),
      { numRuns: 16 },
    );
  });

  it('the fused step on a bf16 checkpoint loaded as bf16 panels (lib/simd/packed_weight.ts) = the generic forward on wasm-simd, bit for bit, Llama and Mamba-1 hybrid (their products of one x as one hand-off: SimdGemm.linearMany)', async () => {
    const ops = await getOps('wasm-simd');
    const t = randomLlama(
      { vocab: 300, hidden: 128, intermediate: 352, layers: 2, heads: 4, kvHeads: 2, headDim: 32 },
      3,
    );
    for (const [i, m] of [t, convert(t, { variant: 'mamba1', attentionFraction: 0.5, seed: 1 })].entries()) {
      const dir = join(tmp(), `bf16-${i}`);
      saveModel(dir, m, { dtype: 'BF16' });
      const ms = loadModel(dir, { backend: 'wasm-simd' });
      expect(ms.weights.get('model.layers.0.mlp.gate_proj.weight')).toBeInstanceOf(PackedWeight);
      await fusedAgainstGeneric(ops, ms, [1, 2, 3, 1], 5, () => {});
    }
  });

  it('mil convert then mil generate --json on the result', () => {
    const mil = join(import.meta.dirname, '..', 'bin', 'mil.js');
    const dir = tmp();
    const out = execFileSync(
      'node',
      [
        mil,
        'convert',
        '--teacher',
        join(import.meta.dirname, '..', 'golden', 'models', 'llama_tiny'),
        '--attention',
        '0.5',
        '--variant',
        'mamba2',
        '--out',
        dir,
        '--seed',
        '1',
      ],
      { encoding: 'utf8' },
    );
    expect(out).toMatch(/attention kept in layers \[1, 3\]/);
    const j = JSON.parse(
      execFileSync(
        'node',
        [mil, 'generate', '--model', dir, '--prompt-ids', '1,2,3', '--max-new-tokens', '5', '--json'],
        { encoding: 'utf8' },
      ),
    );
    expect(j.tokens).toHaveLength(5);
    expect(j.decode.tokens).toBe(4);
    expect(j.prefill.tokensPerS).toBeGreaterThan(0);
    const bad = spawnSync('node', [mil, 'generate', '--model', dir, '--prompt', 'hi'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/no tokenizer/);
  });
});
