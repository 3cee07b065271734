/**
 * Bad input gets a clear, typed error before any work: checkpoints (fuzzed, non-regular files, NaN weights,
 * layer counts), configs (every unsupported value names its key), bounds (positions, emitted sizes), the
 * golden oracle (never passes what it did not check), and the CLI (table-driven: every command with unknown,
 * empty, out-of-range and conflicting options gets exit 2 and a message naming the option, and writes nothing).
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { ArgumentError, NonFiniteError } from '../lib/errors.js';
import { readSafetensors, serializeSafetensors } from '../lib/io/safetensors.js';
import { ConfigError, parseLlamaConfig } from '../lib/model/config.js';
import { convert, saveModel } from '../lib/model/convert.js';
import { forward, newCache } from '../lib/model/hybrid.js';
import { loadModel } from '../lib/model/load.js';
import { randomLlama } from '../lib/model/random.js';
import { generate, samplingDistribution } from '../lib/model/generate.js';
import { getOps } from '../lib/ops.js';
import { Rng } from '../lib/rng.js';
import { Tensor, assertFinite, relError } from '../lib/tensor.js';
import { emitGolden } from '../lib/golden/emit.js';
import { verifyGolden } from '../lib/golden/verify.js';
import { main } from '../lib/cli/main.js';
import { markChanged } from '../lib/weight_registry.js';
import { fuzz } from '../lib/io/safetensors_fuzz.js';
import { tmpFolder } from './tmp.js';
import { lookup } from '../lib/checked.js';

const ROOT = join(import.meta.dirname, '..');
const GOLDEN = join(ROOT, 'golden');
const TINY = join(GOLDEN, 'models', 'llama_tiny');
const MIL = join(ROOT, 'bin', 'mil.js');
const ref = await getOps('reference');
const teacher = randomLlama({ vocab: 300, hidden: 32, intermediate: 64, layers: 2, heads: 4, kvHeads: 2 }, 4);

/** A copy of the tiny teacher with config.json changed by `edit`. */
function withConfig(edit: (c: Record<string, unknown>) => void): string {
  const d = join(tmpFolder('cfg'), 'm');
  cpSync(TINY, d, { recursive: true });
  const c = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
  edit(c);
  writeFileSync(join(d, 'config.json'), JSON.stringify(c));
  return d;
}

describe('relError (every tolerance check of the suite goes through it)', () => {
  it('two numbers instead of arrays are a TypeError, not 0 (a comparison of nothing)', () => {
    expect(() => relError(1 as unknown as number[], 2 as unknown as number[])).toThrow(TypeError);
    expect(relError([1, 2], [1, 2.5])).toBeGreaterThan(0.1);
    expect(relError([1], [1, 2])).toBe(Infinity);
  });
});

describe('checkpoint reader', () => {
  it('fuzz: 3300 mutated files (duplicate keys, gaps, trailing bytes, overlaps, lying offsets, truncation, bad dtypes/shapes, byte flips) — every one accepted whole or rejected with SafetensorsError', () => {
    const { counts, problems } = fuzz(3300, 7);
    expect(problems).toEqual([]);
    for (const m of [
      'duplicate-key',
      'gap',
      'trailing-bytes',
      'offset-past-end',
      'truncate',
      'bad-dtype',
      'bad-shape',
    ]) {
      expect(lookup(counts, m).rejected, m).toBe(300);
    }
    expect(counts.none.accepted).toBe(300);
  });

  it('a duplicate key that swaps two tensors is refused, naming the key', () => {
    const good = serializeSafetensors({ a: Tensor.from([1, 2], [2]), b: Tensor.from([3, 4], [2]) }, undefined, 'F64');
    const n = Number(new DataView(good.buffer).getBigUint64(0, true));
    const h = new TextDecoder()
      .decode(good.subarray(8, 8 + n))
      .replace('{', '{"b":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},');
    const hb = new TextEncoder().encode(h);
    const bad = new Uint8Array([...new Uint8Array(8), ...hb, ...good.subarray(8 + n)]);
    new DataView(bad.buffer).setBigUint64(0, BigInt(hb.length), true);
    const dir = tmpFolder('dup');
    writeFileSync(join(dir, 'x.safetensors'), bad);
    expect(() => readSafetensors(join(dir, 'x.safetensors'))).toThrow(/header: key 'b' appears twice/);
  });

  it('non-regular files are refused before reading: a FIFO, a link to /dev/zero, a folder', () => {
    const dir = tmpFolder('nonreg');
    const fifo = join(dir, 'fifo.safetensors');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    expect(() => readSafetensors(fifo)).toThrow(/not a regular file \(a FIFO\)/);
    symlinkSync('/dev/zero', join(dir, 'zero.safetensors'));
    expect(() => readSafetensors(join(dir, 'zero.safetensors'))).toThrow(/not a regular file \(a character device\)/);
    expect(() => readSafetensors(dir)).toThrow(/not a regular file \(a folder\)/);
    // as a model's weights, through the CLI: exit 2, no hang
    const m = join(dir, 'model');
    cpSync(TINY, m, { recursive: true });
    spawnSync('rm', [join(m, 'model.safetensors')]);
    spawnSync('mkfifo', [join(m, 'model.safetensors')]);
    const r = spawnSync('node', [MIL, 'generate', '--model', m, '--prompt-ids', '1,2'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/model.safetensors: not a regular file \(a FIFO\)/);
  });

  it('a file given where a model folder is expected is named as a file, not as a missing folder (exit 2)', () => {
    const dir = tmpFolder('notfolder');
    const file = join(dir, 'model.safetensors');
    cpSync(join(TINY, 'model.safetensors'), file);
    const r = spawnSync('node', [MIL, 'generate', '--model', file, '--prompt-ids', '1,2'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/not a model folder: it is a file .*give the folder that holds this file/);
    expect(r.stderr).not.toMatch(/no such folder/);
    const missing = spawnSync('node', [MIL, 'generate', '--model', join(dir, 'nope'), '--prompt-ids', '1,2'], {
      encoding: 'utf8',
    });
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/no such folder/);
  });

  it('NaN/Inf weights are refused at load with the full weight name; convert never copies them', () => {
    const t = randomLlama({ vocab: 64, hidden: 16, intermediate: 32, layers: 2, heads: 2, kvHeads: 1 }, 1);
    lookup(t.weights.tensors, 'model.layers.1.mlp.up_proj.weight').data[5] = NaN;
    const d = join(tmpFolder('nan'), 'm');
    saveModel(d, t);
    expect(() => loadModel(d)).toThrow(NonFiniteError);
    expect(() => loadModel(d)).toThrow(
      /tensor 'model.layers.1.mlp.up_proj.weight': non-finite value NaN at flat index 5/,
    );
  });

  it('the checkpoint is cross-checked against the config: fewer or more layers, undeclared biases, stray tensors', () => {
    expect(() => loadModel(withConfig((c) => (c.num_hidden_layers = 3)))).toThrow(
      /holds 4 layers .* num_hidden_layers 3/,
    );
    expect(() => loadModel(withConfig((c) => (c.num_hidden_layers = 5)))).toThrow(
      /holds 4 layers .* num_hidden_layers 5/,
    );
    expect(() => loadModel(withConfig((c) => (c.num_hidden_layers = 1e9)))).toThrow(
      /'num_hidden_layers' is 1000000000: expected an integer in \[1, 4096\]/,
    );
    expect(() => loadModel(withConfig((c) => (c.attention_bias = true)))).toThrow(
      /missing weight 'model.layers.0.self_attn.q_proj.bias'/,
    );
    const t = randomLlama({ vocab: 64, hidden: 16, intermediate: 32, layers: 2, heads: 2, kvHeads: 1 }, 2);
    t.weights.tensors.set('model.layers.0.self_attn.q_proj.bias', Tensor.zeros([16]));
    const d = join(tmpFolder('bias'), 'm');
    saveModel(d, t);
    expect(() => loadModel(d)).toThrow(/do(es)? not read: model.layers.0.self_attn.q_proj.bias .*attention_bias/);
  });
});

describe('configs: every unsupported value is an error naming the key, the value and what is supported', () => {
  const cases: Array<[string, (c: Record<string, unknown>) => void, RegExp]> = [
    ['hidden_act gelu', (c) => (c.hidden_act = 'gelu'), /'hidden_act' is "gelu": expected one of "silu"/],
    ['model_type gpt2', (c) => (c.model_type = 'gpt2'), /'model_type' is "gpt2": expected one of "llama"/],
    [
      'a string tie_word_embeddings',
      (c) => (c.tie_word_embeddings = 'true'),
      /'tie_word_embeddings' is "true": expected true or false/,
    ],
    [
      'a string eos_token_id',
      (c) => (c.eos_token_id = '2'),
      /'eos_token_id' is "2": expected an integer or a list of integers/,
    ],
    ['an out-of-vocabulary eos', (c) => (c.eos_token_id = 101), /'eos_token_id' 101 is not a token \(vocab_size 101\)/],
    ['mlp_bias true', (c) => (c.mlp_bias = true), /'mlp_bias' is true: expected false: true is not supported/],
    ['an unknown key', (c) => (c.sliding_window = 4096), /unknown key 'sliding_window'/],
    [
      'yarn rope',
      (c) => (c.rope_parameters = { rope_type: 'yarn', rope_theta: 1e4, factor: 2 }),
      /'rope_parameters.rope_type' is "yarn"/,
    ],
    ['a fractional layer count', (c) => (c.num_hidden_layers = 4.5), /'num_hidden_layers' is 4.5: expected an integer/],
    ['a negative eps', (c) => (c.rms_norm_eps = -1), /'rms_norm_eps' is -1: expected a number > 0/],
  ];
  for (const [what, edit, msg] of cases) {
    it(what, () => {
      const d = withConfig(edit);
      expect(() => loadModel(d)).toThrow(ConfigError);
      expect(() => loadModel(d)).toThrow(msg);
    });
  }
  it('a duplicated key in config.json is refused', () => {
    const d = withConfig(() => {});
    writeFileSync(
      join(d, 'config.json'),
      readFileSync(join(d, 'config.json'), 'utf8').replace('{', '{"vocab_size": 7,'),
    );
    expect(() => loadModel(d)).toThrow(/key 'vocab_size' appears twice/);
  });
  it('mamba_config.json and mil_config.json: duplicate attn_layers, variant mamba3, clean semantics on Mamba-2, unknown keys', () => {
    const hy = convert(teacher, { variant: 'mamba2', attentionFraction: 0.5, seed: 0 });
    const base = join(tmpFolder('hy'), 'h');
    saveModel(base, hy);
    const edit = (file: string, f: (j: Record<string, unknown>) => void) => {
      const d = join(tmpFolder('hy'), 'h');
      cpSync(base, d, { recursive: true });
      const j = JSON.parse(readFileSync(join(d, file), 'utf8'));
      f(j);
      writeFileSync(join(d, file), JSON.stringify(j));
      return d;
    };
    expect(() => loadModel(edit('mamba_config.json', (j) => (j.attn_layers = [1, 1])))).toThrow(
      /'attn_layers' is \[1,1\]: expected a list without repeated entries/,
    );
    expect(() => loadModel(edit('mil_config.json', (j) => (j.variant = 'mamba3')))).toThrow(
      /'variant' is "mamba3": expected one of "mamba1", "mamba2"/,
    );
    expect(() => loadModel(edit('mil_config.json', (j) => (j.semantics = 'clean')))).toThrow(
      /semantics 'clean' applies to Mamba-1 only/,
    );
    expect(() => loadModel(edit('mil_config.json', (j) => (j.variant = 'mamba1')))).toThrow(
      /variant 'mamba1' but the checkpoint holds mamba2 weights/,
    );
    expect(() => loadModel(edit('mamba_config.json', (j) => (j.fancy = 1)))).toThrow(/unknown key 'fancy'/);
    expect(() => loadModel(edit('mamba_config.json', (j) => (j.intermediate_size = 7)))).toThrow(
      /intermediate_size 7 differs/,
    );
  });
  it('convert keeps the attention biases of kept layers: a teacher with q/k/v/o biases and every layer kept reproduces the teacher', async () => {
    const raw = { ...teacher.llama.raw, attention_bias: true };
    const w = new Map(teacher.weights.tensors);
    const r = new Rng(3);
    for (let i = 0; i < 2; i++)
      for (const [p, n] of [
        ['q', 32],
        ['k', 16],
        ['v', 16],
        ['o', 32],
      ] as const)
        w.set(`model.layers.${i}.self_attn.${p}_proj.bias`, Tensor.normal(r, [n], 0, 0.5));
    const tb = {
      llama: parseLlamaConfig(raw),
      weights: new (teacher.weights.constructor as typeof import('../lib/model/weights.js').WeightStore)(w),
    };
    const d = join(tmpFolder('tb'), 'm');
    saveModel(d, tb);
    const loaded = loadModel(d);
    const h = convert(loaded, { variant: 'mamba2', attnLayers: [0, 1], seed: 0 });
    const ids = [[5, 9, 2, 77, 1]];
    const want = await forward(ref, loaded, ids, newCache(loaded, 1));
    const got = await forward(ref, h, ids, newCache(h, 1));
    expect(Array.from(got.data)).toEqual(Array.from(want.data));
    const plain = await forward(
      ref,
      { ...loaded, llama: parseLlamaConfig(teacher.llama.raw), weights: teacher.weights },
      ids,
      newCache(loaded, 1),
    );
    expect(Array.from(plain.data)).not.toEqual(Array.from(want.data)); // the biases matter (o_proj included)
  });
});

describe('bounds and numerics', () => {
  it('positions beyond max_position_embeddings are refused before any work (generate, forward)', async () => {
    const m = loadModel(TINY); // max_position_embeddings 512
    await expect(generate(ref, m, [1, 2, 3], { maxNewTokens: 1e9 })).rejects.toThrow(
      /argument 'maxNewTokens': expected at most max_position_embeddings − prompt length = 512 − 3 = 509/,
    );
    const cache = newCache(m, 1);
    await expect(forward(ref, m, [Array(513).fill(1)], cache)).rejects.toThrow(ArgumentError);
  });
  it('a weight read once is not rescanned for NaN; changed in place and declared changed (a training step), it is checked again', () => {
    const m = randomLlama({ vocab: 16, hidden: 8, intermediate: 8, layers: 1, heads: 2, kvHeads: 1 }, 1);
    const name = 'model.layers.0.mlp.up_proj.weight';
    const w = m.weights.get(name); // checked once: known finite from here on
    w.data[3] = NaN;
    expect(() => assertFinite(w)).not.toThrow(); // the contract: weights are immutable once read …
    markChanged(w.data); // … unless a change is declared, as the trainer does after every step
    expect(() => assertFinite(m.weights.get(name))).toThrow(
      /tensor 'model.layers.0.mlp.up_proj.weight': non-finite value NaN at flat index 3/,
    );
  });
  it('assertFinite names the first NaN or ±Inf at any position of float32 and float64 data of any length, and passes finite extremes (numRuns 300)', () => {
    const finite = fc.constantFrom(
      0,
      -0,
      1,
      -1,
      5e-324,
      -5e-324,
      1.4e-45,
      3.4e38,
      -3.4e38,
      Number.MAX_VALUE,
      -Number.MAX_VALUE,
    );
    fc.assert(
      fc.property(
        fc.array(finite, { maxLength: 23 }),
        fc.array(fc.constantFrom(NaN, Infinity, -Infinity), { maxLength: 3 }),
        fc.integer(),
        fc.boolean(),
        (vals, bad, seed, f64) => {
          const data = f64 ? Float64Array.from(vals) : Float32Array.from(vals);
          const r = new Rng(seed);
          const at = bad.map(() => Math.floor(r.uniform() * data.length)).filter((i) => i < data.length);
          at.forEach((i, k) => (data[i] = bad[k]));
          const first = data.findIndex((v) => !Number.isFinite(v));
          const t = new Tensor(data, [data.length], 'probe');
          if (first < 0) expect(() => assertFinite(t)).not.toThrow();
          else
            expect(() => assertFinite(t)).toThrow(
              new RegExp(`tensor 'probe': non-finite value ${data[first]} at flat index ${first}$`),
            );
        },
      ),
      { numRuns: 300 },
    );
  });
  it('a tiny temperature samples the argmax, never NaN', () => {
    const p = samplingDistribution([0.1, 3, -2, 2.999], { temperature: 1e-320 })!;
    expect(Array.from(p)).toEqual([0, 1, 0, 0]);
  });
  it('seeds are not truncated to 32 bits: 2^32 + 7 and 7 give different streams; seeds below 2^32 keep their streams', () => {
    expect(new Rng(2 ** 32 + 7).nextU32()).not.toBe(new Rng(7).nextU32());
    expect(new Rng(2 ** 40).nextU32()).not.toBe(new Rng(0).nextU32());
    expect(() => new Rng(1.5)).toThrow(ArgumentError);
  });
  it('golden emit: shape options are bounded before anything is generated', async () => {
    const out = tmpFolder('emit');
    await expect(emitGolden('selective_scan', 0, { dim: 100_000_000 }, out)).rejects.toThrow(
      /argument '--dim': expected an integer in \[1, 16384\]/,
    );
    await expect(emitGolden('selective_scan', 0, { dim: 16384, len: 65536 }, out)).rejects.toThrow(
      /argument 'shape options': expected a case of at most/,
    );
    expect(readdirSync(out)).toEqual([]);
  });
});

describe('golden verify never passes what it did not check', () => {
  it('a case with no outputs fails; an unknown op is unsupported; an empty folder fails; a missing folder is an ArgumentError', async () => {
    const dir = tmpFolder('gv');
    await emitGolden('causal_conv1d', 1, { dim: 4, len: 5 }, dir);
    const j = JSON.parse(readFileSync(join(dir, 'kernels.json'), 'utf8'));
    j.cases.push(
      { ...j.cases[0], name: 'no_outputs', outputs: [] },
      { ...j.cases[0], name: 'mystery', op: 'mystery_op' },
    );
    writeFileSync(join(dir, 'kernels.json'), JSON.stringify(j));
    const r = await verifyGolden(dir, 'reference');
    expect(r.results.map((c) => [c.name, c.status])).toEqual([
      ['causal_conv1d_s1', 'pass'],
      ['no_outputs', 'fail'],
      ['mystery', 'unsupported'],
    ]);
    expect(r.results[1].reason).toMatch(/lists no outputs/);
    const empty = tmpFolder('gv');
    expect((await verifyGolden(empty, 'reference')).failed).toBe(1);
    await expect(verifyGolden(join(empty, 'nope'), 'reference')).rejects.toThrow(ArgumentError);
  });
  it('grads.json cases and models/*/train.json are always reported (checked, failed or unsupported), never silently skipped', async () => {
    const dir = tmpFolder('gv');
    await emitGolden('gated_rmsnorm', 1, { dim: 8, len: 3 }, dir);
    const j = JSON.parse(readFileSync(join(dir, 'kernels.json'), 'utf8'));
    writeFileSync(join(dir, 'grads.json'), JSON.stringify({ ...j, cases: [{ ...j.cases[0], op: 'mystery_grad' }] }));
    cpSync(join(dir, 'kernels.safetensors'), join(dir, 'grads.safetensors'));
    cpSync(TINY, join(dir, 'models', 'tiny'), { recursive: true });
    writeFileSync(join(dir, 'models', 'tiny', 'train.json'), '{}');
    const r = await verifyGolden(dir, 'reference');
    expect(r.results.map((c) => [c.name, c.status])).toEqual([
      ['gated_rmsnorm_s1', 'pass'],
      ['gated_rmsnorm_s1', 'unsupported'],
      ['models/tiny', 'pass'],
      ['models/tiny/train', 'fail'],
    ]);
    expect(r.results[3].reason).toMatch(/'objective' must be "lm" or "distill"/);
    const w = await verifyGolden(dir, 'webasm');
    expect(w.results[3].status).toBe('unsupported');
  });
  it('a model case with an empty greedy continuation fails', async () => {
    const dir = tmpFolder('gv');
    cpSync(TINY, join(dir, 'models', 'llama_tiny'), { recursive: true });
    const g = readSafetensors(join(dir, 'models', 'llama_tiny', 'golden.safetensors'));
    const { getTensor } = await import('../lib/io/safetensors.js');
    const ts: Record<string, Tensor> = {};
    for (const k of g.tensors.keys()) ts[k] = getTensor(g, k);
    ts.greedy = Tensor.zeros([1, 0]);
    writeFileSync(join(dir, 'models', 'llama_tiny', 'golden.safetensors'), serializeSafetensors(ts, undefined, 'F64'));
    const r = await verifyGolden(dir, 'reference');
    expect(r.results[0].status).toBe('fail');
    expect(r.results[0].reason).toMatch(/'greedy' is empty/);
  });
  it('CLI: unsupported cases exit 1 unless --allow-unsupported; a missing folder exits 2; a bad kernels.json exits 1 with the reason', async () => {
    const dir = tmpFolder('gv');
    await emitGolden('causal_conv1d', 1, { dim: 4, len: 5 }, dir);
    const j = JSON.parse(readFileSync(join(dir, 'kernels.json'), 'utf8'));
    j.cases.push({ ...j.cases[0], name: 'mystery', op: 'mystery_op' });
    writeFileSync(join(dir, 'kernels.json'), JSON.stringify(j));
    expect((await run(['golden', 'verify', dir])).code).toBe(1);
    expect((await run(['golden', 'verify', dir, '--allow-unsupported'])).code).toBe(0);
    const missing = await run(['golden', 'verify', join(dir, 'nope')]);
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/argument 'golden folder': expected an existing folder/);
    writeFileSync(join(dir, 'kernels.json'), '{"schema": "mil-golden/1", "schema": "x", "cases": []}');
    const dup = await run(['golden', 'verify', dir]);
    expect(dup.code).toBe(1);
    expect(dup.out).toMatch(/key 'schema' appears twice/);
  });
});

// ------------------------------------------------------------------ the CLI, in process

let out: string[] = [];
let err: string[] = [];
beforeEach(() => {
  out = [];
  err = [];
  vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
  vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void err.push(a.join(' ')));
  vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => (out.push(String(s)), true));
});
afterEach(() => vi.restoreAllMocks());

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  out = [];
  err = [];
  const code = await main(argv);
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('CLI: every command refuses bad options with exit 2, naming the option, before any output is written', () => {
  const OUT = '<out>'; // replaced by a fresh path per case; it must not exist afterwards
  const table: Array<[string, string[], RegExp]> = [
    // unknown and misspelt options, with suggestions
    [
      'generate misspelt',
      ['generate', '--model', TINY, '--prompt-ids', '1', '--max-new-token', '3'],
      /unknown option '--max-new-token' \(did you mean '--max-new-tokens'\?\)/,
    ],
    [
      'generate temprature',
      ['generate', '--model', TINY, '--prompt-ids', '1', '--temprature', '5'],
      /unknown option '--temprature' \(did you mean '--temperature'\?\)/,
    ],
    [
      'convert unknown',
      ['convert', '--teacher', TINY, '--out', OUT, '--atention', '0.5'],
      /unknown option '--atention' \(did you mean '--attention'\?\)/,
    ],
    [
      'emit unknown',
      ['golden', 'emit', '--op', 'multistep', '--out', OUT, '--dims', '4'],
      /unknown option '--dims' \(did you mean '--dim'\?\)/,
    ],
    [
      'verify unknown',
      ['golden', 'verify', GOLDEN, '--backends', 'all'],
      /unknown option '--backends' \(did you mean '--backend'\?\)/,
    ],
    ['demo unknown', ['demo', '--out', OUT, '--fast'], /unknown option '--fast'/],
    ['backends unknown', ['backends', '--all'], /unknown option '--all'/],
    ['unknown command', ['genrate'], /unknown command 'genrate' \(did you mean 'generate'\?\)/],
    // empty values
    [
      'empty seed',
      ['convert', '--teacher', TINY, '--out', OUT, '--seed', ''],
      /--seed needs a value, got an empty string/,
    ],
    [
      'empty inline',
      ['generate', '--model', TINY, '--prompt-ids', '1', '--max-new-tokens='],
      /--max-new-tokens needs a value/,
    ],
    ['missing value', ['convert', '--teacher', TINY, '--out'], /--out needs a value/],
    // out of range or malformed
    [
      'seed beyond 2^53',
      ['convert', '--teacher', TINY, '--out', OUT, '--seed', '9007199254740993'],
      /--seed must be an integer in \[0, 9007199254740991\]/,
    ],
    ['seed float', ['convert', '--teacher', TINY, '--out', OUT, '--seed', '1.5'], /--seed must be an integer/],
    [
      'max-new-tokens 1e9',
      ['generate', '--model', TINY, '--prompt-ids', '1', '--max-new-tokens', '1e9'],
      /--max-new-tokens must be an integer in \[1, 1048576\], got '1e9'/,
    ],
    [
      'max-new-tokens 0',
      ['generate', '--model', TINY, '--prompt-ids', '1', '--max-new-tokens', '0'],
      /--max-new-tokens must be an integer in \[1, 1048576\], got 0/,
    ],
    [
      'max-new-tokens past the model',
      ['generate', '--model', TINY, '--prompt-ids', '1', '--max-new-tokens', '600'],
      /--max-new-tokens 600: the prompt \(1 tokens\) plus new tokens must fit max_position_embeddings 512/,
    ],
    [
      'attention 1.5',
      ['convert', '--teacher', TINY, '--out', OUT, '--attention', '1.5'],
      /--attention must be a number in \[0, 1\], got 1.5/,
    ],
    [
      'attn-layers 1,,3',
      ['convert', '--teacher', TINY, '--out', OUT, '--attn-layers', '1,,3'],
      /--attn-layers must be comma-separated integers .* \(entry ''\)/,
    ],
    [
      'attn-layers duplicate',
      ['convert', '--teacher', TINY, '--out', OUT, '--attn-layers', '1,1'],
      /argument 'attnLayers': expected distinct layer indices/,
    ],
    [
      'attn-layers past the model',
      ['convert', '--teacher', TINY, '--out', OUT, '--attn-layers', '1,9'],
      /argument 'attnLayers': expected layer indices in \[0, 4\)/,
    ],
    [
      'temperature negative',
      ['generate', '--model', TINY, '--prompt-ids', '1', '--temperature', '-1'],
      /--temperature must be a number in \[0, 1000\], got -1/,
    ],
    [
      'prompt id out of vocab',
      ['generate', '--model', TINY, '--prompt-ids', '1,500'],
      /--prompt-ids: id 500 is not a token of this model \(vocabulary 101\)/,
    ],
    [
      'k zero',
      ['generate', '--model', TINY, '--prompt-ids', '1', '--speculative', '--draft', TINY, '-k', '0'],
      /--k must be an integer in \[1, 64\], got 0/,
    ],
    [
      'backend foo (demo)',
      ['demo', '--out', OUT, '--backend', 'foo'],
      /--backend must be one of reference, wasm-simd, cpu, webasm, webasm-threaded, webgl2, webgpu, got 'foo'/,
    ],
    [
      'variant mamba3',
      ['convert', '--teacher', TINY, '--out', OUT, '--variant', 'mamba3'],
      /--variant must be one of mamba1, mamba2, got 'mamba3' \(did you mean 'mamba1'\?\)/,
    ],
    [
      'emit dim 1e8',
      ['golden', 'emit', '--op', 'selective_scan', '--out', OUT, '--dim', '100000000'],
      /--dim must be an integer in \[1, 16384\], got 100000000/,
    ],
    ['emit op', ['golden', 'emit', '--op', 'scan', '--out', OUT], /--op must be one of .*got 'scan'/],
    [
      'emit name with a slash',
      ['golden', 'emit', '--op', 'multistep', '--out', OUT, '--name', '../x'],
      /--name must be a case name of letters, digits/,
    ],
    // switches and positionals
    [
      'speculative no',
      ['generate', '--model', TINY, '--prompt-ids', '1', '--speculative', 'no'],
      /unexpected argument 'no'/,
    ],
    ['json=yes', ['golden', 'verify', GOLDEN, '--json=yes'], /--json takes no value, got 'yes'/],
    ['twice', ['convert', '--teacher', TINY, '--out', OUT, '--seed', '1', '--seed', '2'], /--seed given twice/],
    ['verify without folder', ['golden', 'verify'], /needs 1 argument, got 0/],
    // conflicts and options that only apply with others
    [
      'attention and attn-layers',
      ['convert', '--teacher', TINY, '--out', OUT, '--attention', '0.5', '--attn-layers', '1'],
      /give --attention or --attn-layers, not both/,
    ],
    [
      'clean on mamba2',
      ['convert', '--teacher', TINY, '--out', OUT, '--variant', 'mamba2', '--semantics', 'clean'],
      /--semantics clean applies to --variant mamba1 only/,
    ],
    [
      'out = teacher',
      ['convert', '--teacher', TINY, '--out', TINY],
      /argument '--out': expected a path apart from --teacher/,
    ],
    [
      'prompt and prompt-ids',
      ['generate', '--model', TINY, '--prompt', 'hi', '--prompt-ids', '1'],
      /give --prompt or --prompt-ids, not both/,
    ],
    [
      'k without speculative',
      ['generate', '--model', TINY, '--prompt-ids', '1', '-k', '4'],
      /--k is only valid with --speculative/,
    ],
    [
      'draft without speculative',
      ['generate', '--model', TINY, '--prompt-ids', '1', '--draft', TINY],
      /--draft is only valid with --speculative/,
    ],
    [
      'speculative without draft',
      ['generate', '--model', TINY, '--prompt-ids', '1', '--speculative'],
      /--speculative needs --draft DIR/,
    ],
    [
      'scheme bad',
      ['generate', '--model', TINY, '--prompt-ids', '1', '--speculative', '--draft', TINY, '--scheme', 'eager'],
      /--scheme must be one of lazy, per-position/,
    ],
    [
      'top-k under greedy',
      ['generate', '--model', TINY, '--prompt-ids', '1', '--top-k', '5'],
      /--top-k is only valid with --temperature > 0/,
    ],
    [
      'draft-layers past the draft',
      ['generate', '--model', TINY, '--prompt-ids', '1', '--speculative', '--draft', TINY, '--draft-layers', '9'],
      /--draft-layers 9: the draft has 4 layers/,
    ],
    [
      'variant with a kernel op',
      ['golden', 'emit', '--op', 'multistep', '--out', OUT, '--variant', 'mamba1'],
      /--variant is only valid with --op model or --op speculative/,
    ],
    ['missing --out', ['convert', '--teacher', TINY], /convert needs --out/],
    [
      'train with a kernel op',
      ['golden', 'emit', '--op', 'multistep', '--out', OUT, '--train'],
      /--train is only valid with --op model/,
    ],
  ];
  for (const [what, argv, msg] of table) {
    it(what, async () => {
      const target = join(tmpFolder('cli'), 'out');
      const r = await run(argv.map((a) => (a === OUT ? target : a)));
      expect(r.code, r.err).toBe(2);
      expect(r.err).toMatch(msg);
      expect(r.out).toBe(''); // nothing generated, nothing printed as a result
      expect(existsSync(target)).toBe(false);
      expect(existsSync(join(TINY, 'model.safetensors'))).toBe(true);
    });
  }
  it('exit codes are documented in the usage text', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(0);
    expect(r.out.replaceAll('\n', ' ')).toContain(
      'exit status: 0 success, 1 a check failed, 2 bad usage or input, 3 a training run diverged, ' +
        '4 the output is locked by another run, 5 mil conform checked nothing, 6 an I/O or environment failure, ' +
        '7 an internal error, 130 interrupted (SIGINT), 143 terminated (SIGTERM)',
    );
  });
});
