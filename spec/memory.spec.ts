/**
 * Issue #27, defect 4: the memory of a training step is computed from the options before anything is
 * allocated (lib/train/memory.ts), and --tokens keeps to the cap on steps that --steps has.
 *
 *   - the wasm-simd bound holds: one real loss-and-gradient step on a fresh SimdGemm (its own memory) grows
 *     the memory to at most `stepMemory(…).wasm`, and the bound is within 4× of it (not vacuous);
 *   - train, distill, sft and dpo refuse a batch × length past the limit with exit 2 naming the options,
 *     the bytes needed and the limit, before tokenizing anything — not an internal Memory.grow RangeError;
 *   - --tokens working out to more than MAX_STEPS steps is refused like --steps would be.
 * ~4 s on 2 cores (the measured steps); the refusals run in this process and take milliseconds.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { EXIT } from '../lib/cli/main.js';
import { MAX_STEPS } from '../lib/cli/train_cmds.js';
import { convert, saveModel } from '../lib/model/convert.js';
import { randomLlama } from '../lib/model/random.js';
import type { HybridModel } from '../lib/model/hybrid.js';
import { SimdGemm } from '../lib/simd/gemm.js';
import { wasmSimdMaxBytes } from '../lib/simd/limits.js';
import { checkStepMemory, stepMemory } from '../lib/train/memory.js';
import { lossAndGrads, simdEngine, trainForward } from '../lib/train/model.js';
import { ArgumentError } from '../lib/errors.js';
import { tmpFolder } from './tmp.js';
import { runMil } from './cli.js';

afterEach(() => vi.restoreAllMocks());

const llama = (vocab: number, hidden = 32, layers = 2) =>
  randomLlama(
    { vocab, hidden, intermediate: 2 * hidden, layers, heads: 4, kvHeads: 2, maxPositions: 512, init: 'train' },
    7,
  );

/** The bytes a fresh wasm-simd memory grows to over one loss-and-gradient step (and the teacher's forward). */
function measured(m: HybridModel, batch: number, len: number, teacher?: HybridModel): number {
  const g = SimdGemm.load(1);
  const engine = simdEngine(g);
  const ids = Array.from({ length: batch }, (_, b) =>
    Array.from({ length: len }, (_, t) => (b * 31 + t * 7) % m.llama.vocabSize),
  );
  const teacherLogits = teacher ? trainForward(teacher, ids, () => false, engine).logits : undefined;
  lossAndGrads(m, ids, {
    engine,
    trainable: () => true,
    objective: teacher ? 'distill' : 'lm',
    teacherLogits,
  });
  return g.buffer.byteLength;
}

describe('defect 4: memory needed, from the options', () => {
  it('the wasm-simd bound holds against real steps and is within 4× of them (Llama, Mamba-1 and Mamba-2 students with a teacher)', () => {
    const t = llama(512);
    const cases: Array<[string, HybridModel, number, number, HybridModel | undefined]> = [
      ['llama b2 l16', llama(512), 2, 16, undefined],
      ['llama b2 l96', llama(2048), 2, 96, undefined],
      ['mamba2 student b2 l64', convert(t, { variant: 'mamba2', attentionFraction: 0.5, seed: 1 }), 2, 64, t],
      ['mamba1 student b3 l32', convert(t, { variant: 'mamba1', attentionFraction: 0, seed: 1 }), 3, 32, t],
    ];
    for (const [name, m, batch, len, teacher] of cases) {
      const got = measured(m, batch, len, teacher);
      const bound = stepMemory(teacher ? [m, teacher] : [m], batch, len, teacher !== undefined).wasm;
      expect(got, `${name}: grew to ${got} bytes, bound ${bound}`).toBeLessThanOrEqual(bound);
      expect(bound, `${name}: bound ${bound} vs ${got} measured`).toBeLessThanOrEqual(4 * got);
    }
  });

  it('checkStepMemory names the options, the bytes and the limit, and the largest batch that fits', () => {
    const m = llama(2048, 128, 4);
    const err = (() => {
      try {
        checkStepMemory([m], { batch: 4096, seqLen: 64 });
      } catch (e) {
        return e as ArgumentError;
      }
    })();
    expect(err).toBeInstanceOf(ArgumentError);
    expect(err!.message).toMatch(/--batch × --len/);
    // the limit is the module's real maximum here: 4 GiB on Node ≥ 16 (lib/simd/limits.ts), as lib/simd/gemm.ts makes it
    const limit = wasmSimdMaxBytes();
    expect(limit).toBe(2 ** 32);
    expect(err!.message).toMatch(/wasm-simd memory limit of 4\.00 GiB/);
    expect(err!.message).toMatch(/--batch 4096 × --len 64 = 262144 tokens per step, needing [\d.]+ GiB/);
    const most = Number(/--batch (\d+) at most/.exec(err!.message)![1]);
    expect(stepMemory([m], most, 64).wasm).toBeLessThanOrEqual(limit);
    expect(stepMemory([m], most + 1, 64).wasm).toBeGreaterThan(limit);
    // the float64 engine has no wasm limit, but the activations must fit the machine
    expect(() => checkStepMemory([m], { batch: 256, seqLen: 64, engine: 'float64' }, 2 ** 32)).not.toThrow();
    expect(() => checkStepMemory([m], { batch: 1024, seqLen: 64, engine: 'float64' }, 2 ** 30)).toThrow(
      /this machine's 1\.00 GiB of memory.*activations kept for the backward pass/s,
    );
  });

  it('a step between 2 and 4 GiB is planned against the real 4 GiB module limit, not the old 2 GiB', () => {
    const m = llama(2048, 128, 4);
    let b = 1; // the smallest batch whose step needs more than 2 GiB
    while (stepMemory([m], b, 64).wasm <= 2 ** 31) b *= 2;
    const need = stepMemory([m], b, 64).wasm;
    expect(need).toBeGreaterThan(2 ** 31);
    expect(need).toBeLessThanOrEqual(2 ** 32);
    expect(checkStepMemory([m], { batch: b, seqLen: 64 }).wasm).toBe(need);
    // an engine that allows only 2 GiB (wasmSimdMaxPages' fallback) refuses the same step, naming its limit
    expect(() => checkStepMemory([m], { batch: b, seqLen: 64, wasmLimit: 2 ** 31 })).toThrow(
      /wasm-simd memory limit of 2\.00 GiB/,
    );
  });

  it('train, distill, sft and dpo refuse a too-large batch × length with exit 2 before any work; --tokens past the step cap is refused', async () => {
    const parent = tmpFolder('mem');
    const data = join(parent, 'd.jsonl');
    writeFileSync(data, JSON.stringify({ text: 'a few words' }) + '\n');
    const tdir = join(parent, 'teacher');
    saveModel(tdir, llama(2048, 32, 2));
    const runs: Array<[string, string[]]> = [
      ['train', ['train', '--config', 'tiny', '--batch', '4096', '--len', '64']],
      ['distill', ['distill', '--teacher', tdir, '--batch', '4096', '--len', '256']],
      ['sft', ['sft', '--model', tdir, '--batch', '4096', '--len', '256']],
      ['dpo', ['dpo', '--model', tdir, '--batch', '4096', '--prompt-len', '128', '--cont-len', '128']],
    ];
    for (const [name, args] of runs) {
      const r = await runMil([...args, '--data', data, '--steps', '1', '--out', join(parent, `out-${name}`)]);
      expect(r.code, `${name}: ${r.err}`).toBe(EXIT.usage);
      expect(r.err, name).toMatch(/--batch × --len': expected a step that fits the wasm-simd memory limit/);
      expect(r.err, name).toMatch(/needing [\d.]+ GiB of wasm-simd memory/);
      expect(r.err, name).not.toMatch(/RangeError|internal error/);
    }
    const r = await runMil([
      'train',
      '--config',
      'tiny',
      '--data',
      data,
      '--tokens',
      '1000000000000',
      '--batch',
      '1',
      '--len',
      '2',
      '--out',
      join(parent, 'out-t'),
    ]);
    expect(r.code, r.err).toBe(EXIT.usage);
    expect(r.err).toMatch(new RegExp(`--tokens 1000000000000: 500000000000 steps .* more than the ${MAX_STEPS} steps`));
  });
});
