/**
 * Training jobs and distillation (lib/train/job.ts, lib/train/dpo.ts, lib/cli/train_cmds.ts), on tiny
 * configs and a small text folder:
 *  - `mil train` twice with one seed gives byte-identical models; steps lower the loss; an interrupted job
 *    resumes from its checkpoint to the same weights as an uninterrupted one;
 *  - `mil distill` changes exactly the Mamba parameters (MLPs, norms, embeddings, kept attention: bit-equal
 *    to the teacher); a stepwise stage starts from the previous stage's weights; --drop-instead keeps the
 *    chosen layers, renumbered;
 *  - the DPO loss and its gradient against their closed forms and central differences;
 *  - the perplexity of a uniform model is the vocabulary size; bad input exits 2 before any work.
 */
import { readFileSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { main } from '../lib/cli/main.js';
import { stageModel, tokenStream, SHIPPED_TOKENIZER } from '../lib/cli/train_cmds.js';
import { loadModel } from '../lib/model/load.js';
import { convert, dropLayers, silenceAttention } from '../lib/model/convert.js';
import { forward, newCache } from '../lib/model/hybrid.js';
import { getOps } from '../lib/ops.js';
import { randomLlama } from '../lib/model/random.js';
import { BpeTokenizer } from '../lib/text/bpe.js';
import { evaluate, evaluateOn, forwardFlops, runJob } from '../lib/train/job.js';
import { logSoftmax } from '../lib/ref/layers.js';
import { dpoLoss, dpoLossAndGrads, preferenceAccuracy, preferencePairs, referenceLogps } from '../lib/train/dpo.js';
import { FLOAT64_ENGINE } from '../lib/train/model.js';
import { Tensor } from '../lib/tensor.js';
import { Rng } from '../lib/rng.js';
import type { TrainerOptions } from '../lib/train/trainer.js';
import type { HybridModel } from '../lib/model/hybrid.js';
import { tmpFolder } from './tmp.js';
import { lastOf, lookup } from '../lib/checked.js';

const tok = BpeTokenizer.load(SHIPPED_TOKENIZER);

/** A small corpus folder: a few hundred words of text in 6 documents (4 train, 1 validation, 1 test). */
function corpus(): string {
  const d = join(tmpFolder('corpus'), 'txt');
  mkdirSync(d);
  const words = 'the union is strong and the people of the states have made it so by their work and their law'.split(
    ' ',
  );
  const r = new Rng(3);
  for (let i = 0; i < 6; i++)
    writeFileSync(
      join(d, `doc${i}.txt`),
      Array.from({ length: 400 }, () => words[r.int(0, words.length - 1)]).join(' ') + '.',
    );
  return d;
}

async function mil(...args: string[]): Promise<number> {
  const log = vi.spyOn(console, 'log').mockImplementation(() => {});
  const err = vi.spyOn(console, 'error').mockImplementation(() => {});
  try {
    return await main(args);
  } finally {
    log.mockRestore();
    err.mockRestore();
  }
}

const tiny = [
  '--config',
  'tiny',
  '--len',
  '32',
  '--batch',
  '2',
  '--eval-tokens',
  '256',
  '--engine',
  'float64',
  '--quiet',
];

describe('mil train', () => {
  it('the same seed gives byte-identical weights; the loss falls; the record holds the command and every step', async () => {
    const data = corpus();
    const d = tmpFolder('train');
    expect(await mil('train', ...tiny, '--data', data, '--steps', '12', '--out', join(d, 'a'))).toBe(0);
    expect(await mil('train', ...tiny, '--data', data, '--steps', '12', '--out', join(d, 'b'))).toBe(0);
    expect(
      readFileSync(join(d, 'a', 'model.safetensors')).equals(readFileSync(join(d, 'b', 'model.safetensors'))),
    ).toBe(true);
    expect(await mil('train', ...tiny, '--data', data, '--steps', '12', '--seed', '1', '--out', join(d, 'c'))).toBe(0);
    expect(
      readFileSync(join(d, 'a', 'model.safetensors')).equals(readFileSync(join(d, 'c', 'model.safetensors'))),
    ).toBe(false);
    const rec = JSON.parse(readFileSync(join(d, 'a', 'training.json'), 'utf8'));
    expect(rec.command).toMatch(/^mil train --config tiny .*--steps 12/);
    expect(rec.history.length).toBe(12);
    const losses = rec.history.map((h: { loss: number }) => h.loss);
    expect(losses.slice(-3).reduce((a: number, b: number) => a + b) / 3).toBeLessThan(
      losses.slice(0, 3).reduce((a: number, b: number) => a + b) / 3 - 0.3,
    );
    expect(existsSync(join(d, 'a', 'loss.svg')) && existsSync(join(d, 'a', 'tokenizer.json'))).toBe(true);
    expect(existsSync(join(d, 'a.checkpoint'))).toBe(false);
  });
  it("--teacher trains a from-scratch student on the teacher's logits: KL falls, the record names the teacher", async () => {
    const data = corpus();
    const d = tmpFolder('train-kd');
    expect(await mil('train', ...tiny, '--data', data, '--steps', '12', '--out', join(d, 't'))).toBe(0);
    const kd = [
      'train',
      ...tiny,
      '--data',
      data,
      '--steps',
      '12',
      '--teacher',
      join(d, 't'),
      '--kl-weight',
      '1',
      '--ce-weight',
      '0',
    ];
    expect(await mil(...kd, '--out', join(d, 's'))).toBe(0);
    const rec = JSON.parse(readFileSync(join(d, 's', 'training.json'), 'utf8'));
    expect(rec.teacher).toBe(join(d, 't'));
    expect(rec.options).toMatchObject({ objective: 'distill', klWeight: 1, ceWeight: 0, train: 'all', clip: 1 });
    const kl = rec.history.map((h: { kl: number; loss: number }) => {
      expect(h.loss).toBe(h.kl); // ce-weight 0: the loss is the KL alone
      return h.kl;
    });
    expect(kl.slice(-3).reduce((a: number, b: number) => a + b) / 3).toBeLessThan(
      0.8 * (kl.slice(0, 3).reduce((a: number, b: number) => a + b) / 3),
    );
    expect(await mil('train', ...tiny, '--data', data, '--kl-weight', '1', '--out', join(d, 'x'))).toBe(2); // no --teacher
    expect(await mil('train', ...tiny, '--data', data, '--teacher', join(d, 'nope'), '--out', join(d, 'x'))).toBe(2);
    const teacherBytes = readFileSync(join(d, 't', 'model.safetensors'));
    expect(await mil(...kd, '--out', join(d, 't'))).toBe(2); // writing over the teacher it reads
    expect(readFileSync(join(d, 't', 'model.safetensors')).equals(teacherBytes)).toBe(true);
    expect(existsSync(join(d, 'x'))).toBe(false);
  });
  it('a job stopped after a checkpoint resumes from it to the same weights, bit for bit', async () => {
    const d = tmpFolder('resume');
    const stream = tokenStream(
      [{ id: 'x', text: 'we the people, in order to form a more perfect union, establish justice. '.repeat(30) }],
      tok,
    );
    const model = randomLlama(
      {
        vocab: tok.vocabSize,
        hidden: 16,
        intermediate: 32,
        layers: 1,
        heads: 2,
        kvHeads: 1,
        maxPositions: 64,
        init: 'train',
      },
      4,
    );
    const trainer: TrainerOptions = {
      objective: 'lm',
      optimizer: { kind: 'adamw', lr: 1e-2, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.1 },
      clip: 1,
      totalSteps: 6,
      warmupSteps: 1,
      batch: 2,
      seqLen: 16,
      seed: 9,
      train: 'all',
    };
    const job = (out: string, log: (l: string) => void) =>
      runJob({
        out,
        model,
        trainer,
        tokens: stream,
        valTokens: stream,
        tokenizer: tok,
        evalEvery: 2,
        evalTokens: 64,
        saveEvery: 2,
        dtype: 'F32',
        record: {},
        log,
      });
    await job(join(d, 'whole'), () => {});
    let steps = 0;
    await expect(
      job(join(d, 'cut'), (l) => {
        if (l.startsWith('step') && ++steps === 3) throw new Error('killed');
      }),
    ).rejects.toThrow('killed');
    expect(existsSync(join(d, 'cut.checkpoint', 'trainer.json'))).toBe(true);
    const lines: string[] = [];
    const r = await job(join(d, 'cut'), (l) => lines.push(l));
    expect(r.resumedFrom).toBeGreaterThan(0);
    expect(lines[0]).toMatch(/resuming from .*cut\.checkpoint at step [1-5]/);
    expect(
      readFileSync(join(d, 'cut', 'model.safetensors')).equals(readFileSync(join(d, 'whole', 'model.safetensors'))),
    ).toBe(true);
  });
});

describe('mil distill', () => {
  it('stage 1 trains exactly the Mamba parameters: everything else is bit-equal to the teacher', async () => {
    const data = corpus();
    const d = tmpFolder('distill');
    expect(await mil('train', ...tiny, '--data', data, '--steps', '4', '--out', join(d, 't'))).toBe(0);
    for (const variant of ['mamba1', 'mamba2']) {
      const out = join(d, variant);
      expect(
        await mil(
          'distill',
          '--teacher',
          join(d, 't'),
          '--attention',
          '0.5',
          '--variant',
          variant,
          '--data',
          data,
          '--steps',
          '3',
          '--len',
          '32',
          '--batch',
          '2',
          '--eval-tokens',
          '128',
          '--engine',
          'float64',
          '--dtype',
          'F32',
          '--quiet',
          '--out',
          out,
        ),
      ).toBe(0);
      const t = loadModel(join(d, 't'));
      const s = loadModel(out);
      const start = convert(t, { variant: variant as 'mamba1', attnLayers: [1], seed: 0 });
      let changed = 0;
      for (const n of s.weights.names()) {
        const same = s.weights.get(n).data.every((x, i) => x === start.weights.get(n).data[i]);
        if (n.includes('mamba')) changed += same ? 0 : 1;
        else expect(same, n).toBe(true);
      }
      expect(changed).toBeGreaterThan(5);
      const rec = JSON.parse(readFileSync(join(out, 'training.json'), 'utf8'));
      expect(rec.history[0].kl).toBeGreaterThan(0);
    }
  });
  it('a stepwise stage starts from the previous stage: its Mamba layers as trained, the newly replaced ones from the attention', () => {
    const t = randomLlama({ vocab: 40, hidden: 16, intermediate: 32, layers: 4, heads: 2, kvHeads: 1 }, 2);
    const s1 = convert(t, { variant: 'mamba2', attnLayers: [1, 3], seed: 0 });
    for (const n of s1.weights.names())
      if (n.includes('mamba'))
        s1.weights.tensors.set(
          n,
          s1.weights.get(n).map((x) => x + 0.5),
        ); // "trained"
    const s2 = stageModel(t, s1, [3], { variant: 'mamba2', seed: 0, init: 'attention' });
    const fresh = convert(t, { variant: 'mamba2', attnLayers: [3], seed: 0 });
    const eq = (a: Tensor, b: Tensor) => a.data.every((x, i) => x === b.data[i]);
    expect(
      eq(s2.weights.get('model.layers.0.mamba.in_proj.weight'), s1.weights.get('model.layers.0.mamba.in_proj.weight')),
    ).toBe(true);
    expect(eq(s2.weights.get('model.layers.2.mamba.A_log'), s1.weights.get('model.layers.2.mamba.A_log'))).toBe(true);
    expect(
      eq(
        s2.weights.get('model.layers.1.mamba.in_proj.weight'),
        fresh.weights.get('model.layers.1.mamba.in_proj.weight'),
      ),
    ).toBe(true);
    expect(
      eq(
        s2.weights.get('model.layers.3.self_attn.q_proj.weight'),
        t.weights.get('model.layers.3.self_attn.q_proj.weight'),
      ),
    ).toBe(true);
  });
  it('--drop-instead keeps the attention layers’ blocks, renumbered; --init random draws x, B, C, out fresh', () => {
    const t = randomLlama({ vocab: 40, hidden: 16, intermediate: 32, layers: 4, heads: 2, kvHeads: 1 }, 2);
    const d = dropLayers(t, [3, 1]);
    expect(d.llama.numLayers).toBe(2);
    expect(d.weights.get('model.layers.1.mlp.up_proj.weight').data).toEqual(
      t.weights.get('model.layers.3.mlp.up_proj.weight').data,
    );
    expect(d.weights.has('model.layers.2.mlp.up_proj.weight')).toBe(false);
    const a = convert(t, { variant: 'mamba1', attnLayers: [], seed: 0, dState: 8 });
    const r = convert(t, { variant: 'mamba1', attnLayers: [], seed: 0, dState: 8, init: 'random' });
    expect(a.weights.get('model.layers.0.mamba.C_proj.weight').data).toEqual(
      t.weights.get('model.layers.0.self_attn.q_proj.weight').data,
    );
    expect(r.weights.get('model.layers.0.mamba.C_proj.weight').data).not.toEqual(
      t.weights.get('model.layers.0.self_attn.q_proj.weight').data,
    );
  });
  it('silenceAttention: a silenced layer mixes no positions; kept layers are bit-equal to the teacher', async () => {
    // With every attention silenced, the logits at a position depend on that token alone (no mixing across
    // positions, and RoPE only ever acts inside attention): position 2 of [a, b, c] = position 0 of [c].
    const ref = await getOps('reference');
    const t = randomLlama({ vocab: 40, hidden: 16, intermediate: 32, layers: 3, heads: 2, kvHeads: 1 }, 5);
    const at = async (m: HybridModel, ids: number[], pos: number) => {
      const y = await forward(ref, m, [ids], newCache(m, 1));
      return Array.from(y.data.subarray(pos * 40, (pos + 1) * 40));
    };
    const none = silenceAttention(t, []);
    expect(await at(none, [7, 3, 11], 2)).toEqual(await at(none, [11], 0));
    expect(await at(t, [7, 3, 11], 2)).not.toEqual(await at(t, [11], 0)); // the teacher itself mixes
    const one = silenceAttention(t, [1]);
    expect(await at(one, [7, 3, 11], 2)).not.toEqual(await at(one, [11], 0));
    expect(one.weights.get('model.layers.1.self_attn.o_proj.weight').data).toEqual(
      t.weights.get('model.layers.1.self_attn.o_proj.weight').data,
    );
    expect(one.weights.get('model.layers.0.self_attn.o_proj.weight').data.every((x) => x === 0)).toBe(true);
    expect(one.weights.get('model.layers.2.mlp.up_proj.weight').data).toEqual(
      t.weights.get('model.layers.2.mlp.up_proj.weight').data,
    );
    expect(() => silenceAttention(t, [3])).toThrow(/keep/);
  });
  it("--stepwise splits --tokens evenly over the stages; with --per-stage each stage has all of them (the paper's schedule)", async () => {
    const d = tmpFolder('per-stage');
    const data = corpus();
    const t = join(d, 't');
    expect(await mil('train', ...tiny, '--data', data, '--steps', '1', '--out', t)).toBe(0);
    // a step is 2 × 32 tokens: 256 tokens are 4 steps, over two stages 2 each, or 4 each with --per-stage
    const common = ['--teacher', t, '--data', data, '--len', '32', '--batch', '2', '--engine', 'float64', '--quiet'];
    const steps = (dir: string) =>
      (JSON.parse(readFileSync(join(dir, 'training.json'), 'utf8')) as { options: { totalSteps: number } }).options
        .totalSteps;
    const perStage = (dir: string) =>
      (JSON.parse(readFileSync(join(dir, 'training.json'), 'utf8')) as { perStage?: boolean }).perStage;
    const split = join(d, 'split');
    expect(await mil('distill', ...common, '--stepwise', '0.5,0', '--tokens', '256', '--out', split)).toBe(0);
    expect([steps(`${split}.stage1`), steps(split)]).toEqual([2, 2]);
    expect(perStage(split)).toBeUndefined();
    const full = join(d, 'full');
    expect(
      await mil('distill', ...common, '--stepwise', '0.5,0', '--tokens', '256', '--per-stage', '--out', full),
    ).toBe(0);
    expect([steps(`${full}.stage1`), steps(full)]).toEqual([4, 4]);
    expect([perStage(`${full}.stage1`), perStage(full)]).toEqual([true, true]);
    // one conversion has no stages to give it to
    expect(await mil('distill', ...common, '--attention', '0.5', '--per-stage', '--out', join(d, 'x'))).toBe(2);
    expect(existsSync(join(d, 'x'))).toBe(false);
  });
  it('bad input exits 2 before any work', async () => {
    const d = tmpFolder('bad');
    const t = join(d, 't');
    expect(await mil('train', ...tiny, '--data', corpus(), '--steps', '1', '--out', t)).toBe(0);
    expect(await mil('distill', '--teacher', t, '--stepwise', '0.25,0.5', '--out', join(d, 'x'))).toBe(2);
    expect(await mil('distill', '--teacher', t, '--stepwise', '0.5', '--attention', '0.5', '--out', join(d, 'x'))).toBe(
      2,
    );
    expect(await mil('distill', '--teacher', t, '--drop-instead', '--init', 'random', '--out', join(d, 'x'))).toBe(2);
    expect(await mil('distill', '--teacher', t, '--attention', '1.5', '--out', join(d, 'x'))).toBe(2);
    expect(await mil('train', '--config', 'tiny', '--len', '999', '--out', join(d, 'x'))).toBe(2);
    expect(await mil('train', '--config', 'huge', '--out', join(d, 'x'))).toBe(2);
    expect(await mil('eval', '--model', join(d, 'nope'))).toBe(2);
    expect(existsSync(join(d, 'x'))).toBe(false);
  });
});

describe('DPO', () => {
  it('policy = reference: ℓ = log 2 and ∂ℓ/∂log π = ∓β/(2n); the closed form for a general margin', () => {
    const r = dpoLoss([1, 2, 3, 4], [1, 2, 3, 4], 0.1);
    expect(r.loss).toBeCloseTo(Math.LN2, 14);
    expect(r.dlogp).toEqual([-0.1 / 4, -0.1 / 4, 0.1 / 4, 0.1 / 4]);
    const g = dpoLoss([-3, -10], [-5, -9], 0.5); // Δ = (−3+5) − (−10+9) = 3
    expect(g.loss).toBeCloseTo(Math.log(1 + Math.exp(-1.5)), 14);
    expect(g.dlogp[0]).toBeCloseTo(-0.5 / (1 + Math.exp(1.5)), 14);
  });
  it('∂ℓ/∂(every parameter) = central differences (float64 engine)', () => {
    const m = randomLlama({ vocab: 30, hidden: 8, intermediate: 16, layers: 1, heads: 2, kvHeads: 1 }, 6);
    const ref = randomLlama({ vocab: 30, hidden: 8, intermediate: 16, layers: 1, heads: 2, kvHeads: 1 }, 7);
    const stream = Array.from({ length: 200 }, (_, i) => (i * 7) % 30);
    const pairs = preferencePairs(stream, 3, 4, 3, 1);
    const refLp = referenceLogps(ref, pairs, FLOAT64_ENGINE);
    const f64 = asFloat64(m);
    const g = dpoLossAndGrads(f64, pairs, refLp, 0.7, () => true, FLOAT64_ENGINE);
    const r = new Rng(2);
    for (const n of f64.weights.names()) {
      const w = f64.weights.get(n).data as Float64Array;
      for (let k = 0; k < 3; k++) {
        const i = r.int(0, w.length - 1);
        const h = 1e-5;
        const x = w[i];
        w[i] = x + h;
        const up = dpoLossAndGrads(f64, pairs, refLp, 0.7, () => false, FLOAT64_ENGINE).loss;
        w[i] = x - h;
        const dn = dpoLossAndGrads(f64, pairs, refLp, 0.7, () => false, FLOAT64_ENGINE).loss;
        w[i] = x;
        const fd = (up - dn) / (2 * h);
        expect(Math.abs(lookup(g.grads, n)[i] - fd), `${n}[${i}]`).toBeLessThan(1e-7 + 1e-5 * Math.abs(fd));
      }
    }
  });
  it('preference accuracy: the reference against itself has no margin (0); alone, the share of pairs whose chosen continuation it finds likelier, counted independently', () => {
    const ref = randomLlama({ vocab: 30, hidden: 8, intermediate: 16, layers: 1, heads: 2, kvHeads: 1 }, 3);
    const pairs = preferencePairs(
      Array.from({ length: 300 }, (_, i) => (i * 11) % 30),
      10,
      4,
      3,
      2,
    );
    expect(preferenceAccuracy(ref, pairs, 4, FLOAT64_ENGINE, ref)).toBe(0);
    const wins = pairs.filter((p) => {
      const lp = referenceLogps(ref, [p], FLOAT64_ENGINE); // one pair at a time: [chosen, rejected]
      return lp[0] > lp[1];
    }).length;
    expect(preferenceAccuracy(ref, pairs, 4, FLOAT64_ENGINE)).toBe(wins / pairs.length);
  });
  it('pairs: the chosen continuation follows the prompt in the stream, the rejected one comes from elsewhere', () => {
    const stream = Array.from({ length: 500 }, (_, i) => i);
    for (const p of preferencePairs(stream, 20, 5, 4, 3)) {
      expect(p.chosen[0]).toBe(lastOf(p.prompt) + 1);
      expect(p.rejected[0]).not.toBe(p.chosen[0]);
    }
  });
});

describe('eval', () => {
  it('a uniform model (zero lm_head) has perplexity = vocabulary size, bits per byte = log2(V)·tokens/bytes', () => {
    const m = randomLlama({ vocab: tok.vocabSize, hidden: 8, intermediate: 16, layers: 1, heads: 2, kvHeads: 1 }, 1);
    m.weights.tensors.set('lm_head.weight', Tensor.zeros([tok.vocabSize, 8], 'float64', 'lm_head.weight'));
    const stream = tokenStream(
      [{ id: 'a', text: 'Fellow-Citizens of the Senate and House of Representatives. '.repeat(8) }],
      tok,
    );
    const r = evaluate(m, stream, { seqLen: 16, tokenizer: tok });
    expect(r.ppl).toBeCloseTo(tok.vocabSize, 9);
    let bytes = 0;
    for (let w = 0; w < Math.floor(stream.length / 16); w++)
      for (let t = 1; t < 16; t++) bytes += tok.bytes[stream[w * 16 + t]].length;
    expect(r.bitsPerByte).toBeCloseTo((Math.log2(tok.vocabSize) * r.tokens) / bytes, 12);
  });
  it('mean NLL = −log softmax(reference forward logits)[next token] averaged over the windows, on the float64 training forward (1e-12) and on the wasm-simd forward in batches of 3 windows (float32: 1e-5); a Llama and a Mamba-2 hybrid', async () => {
    const llama = randomLlama({ vocab: 64, hidden: 16, intermediate: 32, layers: 2, heads: 2, kvHeads: 1 }, 3);
    const hybrid = convert(llama, { variant: 'mamba2', attentionFraction: 0.5, seed: 2 });
    const r = new Rng(5);
    const stream = Array.from({ length: 7 * 12 + 5 }, () => r.int(0, 63)); // 7 windows of 12, 5 tokens left over
    const ref = await getOps('reference');
    for (const m of [llama, hybrid]) {
      let nll = 0;
      let n = 0;
      for (let w = 0; w < 7; w++) {
        const ids = stream.slice(w * 12, (w + 1) * 12);
        const lp = logSoftmax(Float64Array.from((await forward(ref, m, [ids], newCache(m, 1))).data), 12, 64); // (l, V)
        for (let t = 0; t < 11; t++, n++) nll -= lp[t * 64 + ids[t + 1]];
      }
      const exact = evaluate(m, stream, { seqLen: 12, engine: FLOAT64_ENGINE });
      expect(exact.tokens).toBe(n);
      expect(Math.abs(exact.nll - nll / n)).toBeLessThan(1e-12 * (nll / n));
      const fast = await evaluateOn(await getOps('wasm-simd'), m, stream, { seqLen: 12, batch: 3 });
      expect(fast.tokens).toBe(n);
      expect(Math.abs(fast.nll - nll / n)).toBeLessThan(1e-5 * (nll / n));
      expect(fast.gflops).toBeCloseTo((7 * forwardFlops(m, 1, 12)) / fast.seconds / 1e9, 6);
    }
  });
  it('mil eval on wasm-simd (float32 attention: ops.attention32; float32 rows: ops.rows32) = the reference forward within 1e-5 of the mean NLL, on every shipped and golden model (2 windows of 48 random ids; measured 4e-10 to 2e-8)', async () => {
    const root = join(import.meta.dirname, '..');
    const dirs = [
      ...['draft-small', 'hybrid-mamba1-50', 'hybrid-mamba2-0', 'hybrid-mamba2-50', 'teacher-small'].map((n) =>
        join(root, 'models', n),
      ),
      ...['llama_tiny', 'hybrid_mamba1', 'hybrid_mamba2'].map((n) => join(root, 'golden', 'models', n)),
    ];
    const [ref, simd] = [await getOps('reference'), await getOps('wasm-simd')];
    for (const dir of dirs) {
      const m = loadModel(dir);
      const r = new Rng(28);
      const stream = Array.from({ length: 2 * 48 }, () => r.int(0, m.llama.vocabSize - 1));
      const want = await evaluateOn(ref, m, stream, { seqLen: 48, batch: 2 });
      const got = await evaluateOn(simd, m, stream, { seqLen: 48, batch: 2 });
      expect(got.tokens, dir).toBe(want.tokens);
      expect(Math.abs(got.nll - want.nll) / want.nll, dir).toBeLessThan(1e-5);
    }
  });
});

function asFloat64(m: HybridModel): HybridModel {
  for (const n of m.weights.names()) m.weights.tensors.set(n, m.weights.get(n).astype('float64').named(n));
  return m;
}
