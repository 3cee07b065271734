/**
 * `mil convert` streamed (lib/model/convert.ts convertFolder): the teacher read from its (sharded) checkpoint
 * one weight at a time, the hybrid written layer by layer into shards. Its result must be the in-memory path's:
 * convert(loadModel(teacher)) serialised by modelFiles with the same dtype and shard size gives the same bytes
 * in every safetensors file and the index, the same mamba_config.json and mil_config.json; config.json is the
 * teacher's with torch_dtype set to the written dtype. Checked on random tiny Llamas (fast-check: shapes, tied
 * or not, attention biases, stored as F32/BF16/F16, sharded or not, either variant, Algorithm 1 or random
 * init, any kept layers, written in the teacher's dtype or another, any shard size). Bad input: exit 2
 * before anything is written; a full disk mid-shard: exit 6, nothing left. The real-size case (a 2-layer
 * Llama-3.2-1B-shaped bf16 model, peak RSS in a child process) is in spec/realsize.spec.ts.
 * Cost, measured on 2 shared cores: ~6 s.
 */
import { describe, expect, it, afterEach } from 'vitest';
import fc from 'fast-check';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpFolder } from './tmp.js';
import { withAttentionBias } from './helpers.js';
import { runMil } from './cli.js';
import { randomLlama } from '../lib/model/random.js';
import { convert, convertFolder, modelFiles, saveModel, type ConvertOptions } from '../lib/model/convert.js';
import { loadModel } from '../lib/model/load.js';
import { REAL_WRITER_FS, setWriterFsForTesting, type WriteData } from '../lib/io/writer.js';
import type { WriteDType } from '../lib/io/safetensors.js';

const quiet = async (argv: string[]) => (await runMil(argv)).code;

/** The bytes of a file the writer would write. */
function bytesOf(data: WriteData): Buffer {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (data instanceof Uint8Array) return Buffer.from(data);
  return Buffer.concat([...data]);
}

afterEach(() => setWriterFsForTesting());

const TORCH: Record<WriteDType, string> = {
  BF16: 'bfloat16',
  F16: 'float16',
  F32: 'float32',
  F64: 'float64',
  I64: '',
  I32: '',
  U8: '',
};

describe('mil convert streamed: the bytes of the in-memory conversion', () => {
  it('random tiny teachers, any sharding and dtype, both variants, both inits: the same files as convert → modelFiles', () => {
    const root = tmpFolder('cstream');
    let run = 0;
    fc.assert(
      fc.property(
        fc.record({
          hidden: fc.constantFrom(32, 64),
          heads: fc.constantFrom(2, 4),
          kvDiv: fc.constantFrom(1, 2),
          layers: fc.integer({ min: 1, max: 5 }),
          tie: fc.boolean(),
          bias: fc.boolean(),
          stored: fc.constantFrom<WriteDType>('F32', 'BF16', 'F16'),
          teacherShard: fc.constantFrom(undefined, 3000, 20000),
          variant: fc.constantFrom<'mamba1' | 'mamba2'>('mamba1', 'mamba2'),
          fraction: fc.constantFrom(0, 0.25, 0.5, 1),
          init: fc.constantFrom<'attention' | 'random'>('attention', 'random'),
          dtype: fc.constantFrom<WriteDType | undefined>(undefined, 'F32', 'BF16', 'F16'),
          shard: fc.constantFrom(undefined, 2000, 9000),
          seed: fc.integer({ min: 0, max: 1000 }),
        }),
        (r) => {
          const dir = join(root, String(run++));
          const plain = randomLlama(
            {
              vocab: 48,
              hidden: r.hidden,
              intermediate: 40,
              layers: r.layers,
              heads: r.heads,
              kvHeads: r.heads / r.kvDiv,
              tie: r.tie,
            },
            r.seed,
          );
          const t = r.bias ? withAttentionBias(plain, r.seed + 1) : plain;
          saveModel(join(dir, 'teacher'), t, { dtype: r.stored, shardBytes: r.teacherShard });
          const o: ConvertOptions = { variant: r.variant, attentionFraction: r.fraction, init: r.init, seed: r.seed };
          const res = convertFolder(join(dir, 'teacher'), join(dir, 'out'), {
            ...o,
            dtype: r.dtype,
            shardBytes: r.shard,
          });
          const dtype = r.dtype ?? r.stored;
          expect(res.dtype).toBe(dtype);
          const want = modelFiles(convert(loadModel(join(dir, 'teacher')), o), { dtype, shardBytes: r.shard });
          const got = readdirSync(join(dir, 'out')).filter((f) => !f.startsWith('.'));
          expect(got.sort()).toEqual(want.map(([f]) => f).sort());
          for (const [f, data] of want) {
            const disk = readFileSync(join(dir, 'out', f));
            if (f === 'config.json')
              expect(JSON.parse(disk.toString())).toEqual({
                ...JSON.parse(bytesOf(data).toString()),
                torch_dtype: TORCH[dtype],
              });
            else expect(Buffer.compare(disk, bytesOf(data)), f).toBe(0);
          }
          expect(res.shards).toBe(want.filter(([f]) => f.endsWith('.safetensors')).length);
          expect(loadModel(join(dir, 'out')).mamba?.variant).toBe(r.variant);
          rmSync(dir, { recursive: true, force: true });
        },
      ),
      { numRuns: 16 },
    );
  });
});

describe('mil convert: bad input before any work (exit 2), a full disk mid-shard (exit 6), nothing left', () => {
  const teacherDir = (root: string) => {
    const dir = join(root, 'teacher');
    const t = randomLlama({ vocab: 48, hidden: 32, intermediate: 40, layers: 4, heads: 4, kvHeads: 2 }, 3);
    saveModel(dir, t, { dtype: 'BF16', shardBytes: 4000 });
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, torch_dtype: 'bfloat16' }));
    return dir;
  };
  const convertTo = (teacher: string, out: string, ...more: string[]) =>
    quiet(['convert', '--teacher', teacher, '--out', out, '--variant', 'mamba2', ...more]);

  it('a shard missing from the index, a dtype the config does not declare, a hybrid teacher, bad options', async () => {
    const root = tmpFolder('cstream');
    const teacher = teacherDir(root);
    const out = join(root, 'out');
    expect(await convertTo(teacher, out, '--max-shard-size', '10KB')).toBe(0);
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).torch_dtype).toBe('bfloat16');
    expect(readdirSync(out).filter((f) => f.endsWith('.safetensors')).length).toBeGreaterThan(1);
    rmSync(out, { recursive: true });
    const shards = readdirSync(teacher).filter((f) => f.endsWith('.safetensors'));
    for (const bad of [
      ['--max-shard-size', 'lots'],
      ['--max-shard-size', '0'],
      ['--dtype', 'f64'],
      ['--attn-layers', '7'],
    ])
      expect(await convertTo(teacher, out, ...bad), bad.join(' ')).toBe(2);
    expect(await quiet(['convert', '--teacher', out, '--out', join(root, 'x')])).toBe(2); // no such teacher
    // a hybrid as the teacher
    const hybrid = join(root, 'hybrid');
    expect(await convertTo(teacher, hybrid)).toBe(0);
    expect(await convertTo(hybrid, out)).toBe(2);
    // config.json declares another dtype than the weights'
    const cfgPath = join(teacher, 'config.json');
    const cfg = readFileSync(cfgPath, 'utf8');
    writeFileSync(cfgPath, JSON.stringify({ ...JSON.parse(cfg), torch_dtype: 'float32' }));
    expect(await convertTo(teacher, out)).toBe(2);
    writeFileSync(cfgPath, cfg);
    // a shard the index names is missing
    rmSync(join(teacher, shards[1]));
    expect(await convertTo(teacher, out)).toBe(2);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(root).sort()).toEqual(['hybrid', 'teacher']);
  });

  it('a NaN in a teacher weight copied as it is (stored bits checked): NonFiniteError, exit 2, nothing left', async () => {
    const root = tmpFolder('cstream');
    const teacher = teacherDir(root);
    const index = JSON.parse(readFileSync(join(teacher, 'model.safetensors.index.json'), 'utf8'));
    const name = 'model.layers.2.mlp.up_proj.weight'; // copied as it is, never decoded when the dtype is kept
    const shard = join(teacher, index.weight_map[name]);
    const bytes = readFileSync(shard);
    const n = Number(bytes.readBigUInt64LE(0));
    const at = 8 + n + JSON.parse(bytes.subarray(8, 8 + n).toString())[name].data_offsets[0] + 2 * 5;
    bytes.writeUInt16LE(0x7fc0, at); // its value 5: a bf16 NaN
    writeFileSync(shard, bytes);
    const out = join(root, 'out');
    const r = await runMil(['convert', '--teacher', teacher, '--out', out, '--dtype', 'bf16']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(
      /NonFiniteError: tensor 'model.layers.2.mlp.up_proj.weight': non-finite value NaN at flat index 5/,
    );
    expect(readdirSync(root)).toEqual(['teacher']);
  });

  it('a write that fails mid-shard (ENOSPC): exit 6, no output and no temporary left', async () => {
    const root = tmpFolder('cstream');
    const teacher = teacherDir(root);
    const out = join(root, 'out');
    let writes = 0;
    setWriterFsForTesting({
      ...REAL_WRITER_FS,
      writeSync: (fd, b, o, l) => {
        if (++writes === 6) throw Object.assign(new Error('injected ENOSPC'), { code: 'ENOSPC' });
        return REAL_WRITER_FS.writeSync(fd, b, o, l);
      },
    });
    expect(await convertTo(teacher, out, '--max-shard-size', '10KB')).toBe(6);
    expect(writes).toBe(6);
    expect(readdirSync(root)).toEqual(['teacher']);
  });
});
