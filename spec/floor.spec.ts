/**
 * Issue #25 item 2: `mil eval --silence F1,F2,…`, the silenced-attention floor. For each fraction F of attention
 * kept, the teacher with the attention of every layer distillation converts (all but attentionLayersFor(F, L))
 * silenced — o_proj zeroed — measured as `mil eval` measures the teacher. Checked against an independent silencing
 * written here (o_proj zeroed by hand in the layers named literally), on a 4-layer random Llama, float64 engine.
 *
 * Commands run in this process on a tiny model; ~1 s on 2 cores.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { EXIT } from '../lib/cli/main.js';
import { convert, saveModel } from '../lib/model/convert.js';
import { loadModel } from '../lib/model/load.js';
import { randomLlama } from '../lib/model/random.js';
import { BpeTokenizer, trainBpe } from '../lib/text/bpe.js';
import { tokenStream } from '../lib/cli/train_cmds.js';
import { corpusPart } from '../lib/data/corpus.js';
import { evaluate } from '../lib/train/job.js';
import { FLOAT64_ENGINE } from '../lib/train/model.js';
import { Tensor } from '../lib/tensor.js';
import type { HybridModel } from '../lib/model/hybrid.js';
import { tmpFolder } from './tmp.js';
import { runMil } from './cli.js';
import { lastOf } from '../lib/checked.js';

afterEach(() => vi.restoreAllMocks());

const TEXT = 'the state of the union is strong and the people of the states have made it so';

interface Floor {
  teacher: { nll: number; ppl: number; tokens: number };
  floor: Array<{ kept: number; attnLayers: number[]; nll: number; ppl: number; ratio: number }>;
  verdict: string | null;
}

/** A 4-layer teacher with its own tokenizer and a corpus of TEXT, in a fresh folder. */
function fixture() {
  const parent = tmpFolder('floor');
  const tok = trainBpe(
    Array.from({ length: 10 }, (_, i) => `${TEXT} ${i}`),
    { vocabSize: 300 },
  );
  const teacher = join(parent, 'teacher');
  const m = randomLlama(
    { vocab: tok.vocabSize, hidden: 16, intermediate: 32, layers: 4, heads: 2, kvHeads: 1, maxPositions: 64 },
    7,
  );
  // attention made to matter: a larger o_proj than the initialiser's, so silencing it moves the perplexity
  for (const n of m.weights.names())
    if (n.endsWith('o_proj.weight')) m.weights.tensors.set(n, m.weights.get(n).scale(8).named(n));
  saveModel(teacher, m, { extra: [['tokenizer.json', tok.toJson()]] });
  const data = join(parent, 'd.jsonl');
  writeFileSync(data, Array.from({ length: 4 }, (_, i) => JSON.stringify({ text: `${TEXT} ${i}` })).join('\n') + '\n');
  return { parent, teacher, data, tok: BpeTokenizer.load(join(teacher, 'tokenizer.json')) };
}

const floorArgs = (teacher: string, data: string, silence: string) => [
  'eval',
  '--model',
  teacher,
  '--data',
  data,
  '--split',
  'train',
  '--engine',
  'float64',
  '--len',
  '16',
  '--silence',
  silence,
  '--json',
];

/** The teacher with o_proj zeroed in `silenced` (written here, independently of silenceAttention). */
function zeroed(m: HybridModel, silenced: number[]): HybridModel {
  for (const l of silenced) {
    const n = `model.layers.${l}.self_attn.o_proj.weight`;
    const w = m.weights.get(n); // (d, d)
    m.weights.tensors.set(n, Tensor.zeros(w.shape, 'float64', n));
  }
  return m;
}

describe('mil eval --silence: the silenced-attention floor', () => {
  it('100% kept equals the teacher; 50% and 0% equal the teacher with o_proj zeroed in layers {0, 2} and {0, 1, 2, 3}', async () => {
    const { parent, teacher, data, tok } = fixture();
    const out = join(parent, 'floor.json');
    const r = await runMil([...floorArgs(teacher, data, '1,0.5,0'), '--out', out]);
    expect(r.code, r.err).toBe(EXIT.ok);
    const f = JSON.parse(lastOf(r.out.trim().split('\n'))) as Floor;
    expect(JSON.parse(readFileSync(out, 'utf8'))).toMatchObject({ floor: f.floor, teacher: f.teacher });
    expect(f.floor.map((x) => x.kept)).toEqual([1, 0.5, 0]);
    expect(f.floor.map((x) => x.attnLayers)).toEqual([[0, 1, 2, 3], [1, 3], []]);
    expect(f.floor[0].nll).toBe(f.teacher.nll);
    const tokens = tokenStream(corpusPart(data, 'train'), tok); // the documents `mil eval --split train` reads
    const want = (silenced: number[]) =>
      evaluate(zeroed(loadModel(teacher), silenced), tokens, { seqLen: 16, engine: FLOAT64_ENGINE, tokenizer: tok });
    expect(Math.abs(want([]).nll - f.teacher.nll)).toBeLessThan(1e-12);
    for (const [i, silenced] of [
      [1, [0, 2]],
      [2, [0, 1, 2, 3]],
    ] as Array<[number, number[]]>) {
      const w = want(silenced);
      expect(Math.abs(w.nll - f.floor[i].nll)).toBeLessThan(1e-12);
      expect(f.floor[i].ratio).toBeCloseTo(w.ppl / f.teacher.ppl, 12);
      expect(Math.abs(f.floor[i].nll - f.teacher.nll)).toBeGreaterThan(1e-3); // silencing changed something
    }
    expect(f.verdict).toMatch(/silencing half the attention costs/);
  });
  it('a hybrid --model is refused (exit 2) naming it; a bad --silence list is refused naming the option', async () => {
    const { parent, teacher, data } = fixture();
    const hybrid = join(parent, 'hybrid');
    saveModel(hybrid, convert(loadModel(teacher), { variant: 'mamba2', attentionFraction: 0.5, seed: 1 }), {
      extra: [['tokenizer.json', readFileSync(join(teacher, 'tokenizer.json'))]],
    });
    const h = await runMil(floorArgs(hybrid, data, '0.5'));
    expect(h.code).toBe(EXIT.usage);
    expect(h.err).toMatch(/--silence needs a plain Llama.*hybrid/);
    const b = await runMil(floorArgs(teacher, data, '0.5,2'));
    expect(b.code).toBe(EXIT.usage);
    expect(b.err).toMatch(/--silence/);
  });
});
