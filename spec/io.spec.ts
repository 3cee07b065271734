/**
 * safetensors I/O and the seeded generator: round trips are bit-exact; malformed files (truncated,
 * overlapping, lying header, huge header, bad JSON) raise SafetensorsError, fuzzed with fast-check.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { readdirSync, writeFileSync } from 'node:fs';
import { tmpFolder } from './tmp.js';
import { join } from 'node:path';
import { SafetensorsError } from '../lib/errors.js';
import {
  getTensor,
  parseSafetensors,
  readSafetensors,
  serializeSafetensors,
  writeSafetensors,
} from '../lib/io/safetensors.js';
import { Rng, Tensor } from './helpers.js';

function withHeader(header: unknown, dataBytes: number): Uint8Array {
  const h = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + h.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  return out;
}

describe('safetensors', () => {
  it('write → read is bit-exact for F64 and F32 (numRuns 30)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }), { minLength: 1, maxLength: 4 }),
        fc.integer(),
        (shapes, seed) => {
          const r = new Rng(seed);
          const ts: Record<string, Tensor> = {};
          shapes.forEach((s, i) => (ts[`t${i}`] = Tensor.normal(r, s, 0, 1, i % 2 ? 'float32' : 'float64')));
          const f = parseSafetensors(serializeSafetensors(ts, { note: 'x' }));
          expect(f.metadata.note).toBe('x');
          for (const [k, t] of Object.entries(ts)) {
            const back = getTensor(f, k);
            expect(back.shape).toEqual(t.shape);
            expect(Array.from(back.data)).toEqual(Array.from(t.data));
          }
        },
      ),
      { numRuns: 30 },
    );
  });

  it('writes and reads back F16, BF16 (rounded like numpy/torch), I64, I32, U8 (numRuns 30)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: -60000, max: 60000, noNaN: true }), { minLength: 1, maxLength: 20 }),
        fc.array(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), { minLength: 1, maxLength: 10 }),
        (fl, ints) => {
          const t = Tensor.from(fl, [fl.length]);
          const it = Tensor.from(ints, [ints.length]);
          const u8 = Tensor.from(
            ints.map((v) => Math.abs(v) % 256),
            [ints.length],
          );
          const bytes = serializeSafetensors(
            { h: t, b: t, i: it, j: it, u: u8 },
            undefined,
            (n) => ({ h: 'F16', b: 'BF16', i: 'I64', j: 'I32', u: 'U8' })[n] as 'F16',
          );
          const f = parseSafetensors(bytes);
          const h = getTensor(f, 'h').data;
          const b = getTensor(f, 'b').data;
          fl.forEach((v, k) => {
            // half: 11 significant bits → relative error ≤ 2^-11 (normal range); bf16: 8 bits → ≤ 2^-8
            expect(Math.abs(h[k] - v)).toBeLessThanOrEqual(Math.max(Math.abs(v) * 2 ** -11, 2 ** -25));
            expect(Math.abs(b[k] - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -8 + 1e-40);
          });
          expect(Array.from(getTensor(f, 'i').data)).toEqual(ints);
          expect(Array.from(getTensor(f, 'j').data)).toEqual(ints);
          expect(Array.from(getTensor(f, 'u').data)).toEqual(Array.from(u8.data));
        },
      ),
      { numRuns: 30 },
    );
    // exact known encodings: 1.0, -2.0, 65504 (max half), 1/3 rounds to 0x3555 in half and 0x3eab in bf16
    const known = serializeSafetensors({ h: Tensor.from([1, -2, 65504, 1 / 3], [4]) }, undefined, 'F16');
    expect(Array.from(getTensor(parseSafetensors(known), 'h').data)).toEqual([1, -2, 65504, 0.333251953125]);
    expect(() => serializeSafetensors({ u: Tensor.from([256], [1]) }, undefined, 'U8')).toThrow(
      /not representable as U8/,
    );
  });

  it('decodes F16, BF16, I64, I32, U8', () => {
    const hdr = {
      h: { dtype: 'F16', shape: [2], data_offsets: [0, 4] },
      b: { dtype: 'BF16', shape: [1], data_offsets: [4, 6] },
      i: { dtype: 'I64', shape: [1], data_offsets: [6, 14] },
      j: { dtype: 'I32', shape: [1], data_offsets: [14, 18] },
      u: { dtype: 'U8', shape: [1], data_offsets: [18, 19] },
    };
    const bytes = withHeader(hdr, 19);
    const base = bytes.length - 19;
    const dv = new DataView(bytes.buffer);
    dv.setUint16(base, 0x3c00, true); // 1.0
    dv.setUint16(base + 2, 0xc000, true); // -2.0
    dv.setUint16(base + 4, 0x3fc0, true); // bf16 1.5
    dv.setBigInt64(base + 6, -5n, true);
    dv.setInt32(base + 14, 123456, true);
    dv.setUint8(base + 18, 200);
    const f = parseSafetensors(bytes);
    expect(Array.from(getTensor(f, 'h').data)).toEqual([1, -2]);
    expect(getTensor(f, 'b').data[0]).toBe(1.5);
    expect(getTensor(f, 'i').data[0]).toBe(-5);
    expect(getTensor(f, 'j').data[0]).toBe(123456);
    expect(getTensor(f, 'u').data[0]).toBe(200);
  });

  it('rejects malformed files with a SafetensorsError that says what is wrong', () => {
    const t = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
    const ok = withHeader(t, 8);
    expect(() => parseSafetensors(ok.subarray(0, ok.length - 1))).toThrow(/run past the data.*truncated/);
    expect(() => parseSafetensors(ok.subarray(0, 5))).toThrow(SafetensorsError);
    const huge = new Uint8Array(16);
    new DataView(huge.buffer).setBigUint64(0, 1n << 40n, true);
    expect(() => parseSafetensors(huge)).toThrow(/exceeds the cap/);
    const lying = new Uint8Array(16);
    new DataView(lying.buffer).setBigUint64(0, 100n, true);
    expect(() => parseSafetensors(lying)).toThrow(/runs past the end of the file/);
    expect(() => parseSafetensors(withHeader({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8))).toThrow(
      /8 bytes for F32 \[3\], expected 12/,
    );
    expect(() =>
      parseSafetensors(
        withHeader(
          {
            a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
            b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] },
          },
          8,
        ),
      ),
    ).toThrow(/overlap/);
    expect(() => parseSafetensors(withHeader({ a: { dtype: 'Q4', shape: [1], data_offsets: [0, 1] } }, 1))).toThrow(
      /unknown dtype/,
    );
    expect(() => parseSafetensors(withHeader([1, 2], 0))).toThrow(/not a JSON object/);
    const bad = withHeader(t, 8);
    bad[9] = 0x7b; // corrupt the JSON
    bad[10] = 0x7b;
    expect(() => parseSafetensors(bad)).toThrow(/header: not valid JSON/);
  });

  it('fuzz: random bytes and random headers never crash with anything but SafetensorsError (numRuns 300)', () => {
    const entry = fc.record({
      dtype: fc.constantFrom('F64', 'F32', 'F16', 'I8', 'XX', 3),
      shape: fc.oneof(fc.array(fc.integer({ min: -2, max: 5 }), { maxLength: 3 }), fc.constant('x')),
      data_offsets: fc.oneof(
        fc.tuple(fc.integer({ min: -4, max: 64 }), fc.integer({ min: -4, max: 64 })),
        fc.constant(null),
      ),
    });
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 64 }),
          fc
            .tuple(fc.dictionary(fc.string({ maxLength: 4 }), entry, { maxKeys: 4 }), fc.nat(64))
            .map(([h, n]) => withHeader(h, n)),
        ),
        (bytes) => {
          try {
            const f = parseSafetensors(bytes);
            for (const k of f.tensors.keys()) getTensor(f, k);
          } catch (e) {
            expect(e).toBeInstanceOf(SafetensorsError);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('writes atomically: no temporary file is left beside the result', () => {
    const dir = tmpFolder('st');
    writeSafetensors(join(dir, 'a.safetensors'), { x: Tensor.from([1, 2, 3], [3]) });
    expect(readdirSync(dir)).toEqual(['a.safetensors']);
    expect(Array.from(getTensor(readSafetensors(join(dir, 'a.safetensors')), 'x').data)).toEqual([1, 2, 3]);
    writeFileSync(join(dir, 'b.safetensors'), 'garbage');
    expect(() => readSafetensors(join(dir, 'b.safetensors'))).toThrow(SafetensorsError);
    expect(() => readSafetensors(join(dir, 'missing.safetensors'))).toThrow(/cannot read \(ENOENT\)/);
  });
});

describe('seeded generator', () => {
  it('same seed, same stream; different seeds differ (numRuns 50)', () => {
    fc.assert(
      fc.property(fc.integer(), (seed) => {
        const a = new Rng(seed);
        const b = new Rng(seed);
        const c = new Rng(seed + 1);
        const xs = Array.from({ length: 8 }, () => a.normal());
        expect(Array.from({ length: 8 }, () => b.normal())).toEqual(xs);
        expect(Array.from({ length: 8 }, () => c.normal())).not.toEqual(xs);
      }),
      { numRuns: 50 },
    );
  });
  it('uniform in [0,1) and normal(0,1) have the right moments (n = 200000, 6-sigma bounds)', () => {
    const r = new Rng(123);
    const n = 200000;
    let su = 0,
      sn = 0,
      sn2 = 0,
      mn = 1,
      mx = 0;
    for (let i = 0; i < n; i++) {
      const u = r.next();
      su += u;
      mn = Math.min(mn, u);
      mx = Math.max(mx, u);
      const z = r.normal();
      sn += z;
      sn2 += z * z;
    }
    expect(mn).toBeGreaterThanOrEqual(0);
    expect(mx).toBeLessThan(1);
    expect(Math.abs(su / n - 0.5)).toBeLessThan(6 * Math.sqrt(1 / 12 / n));
    expect(Math.abs(sn / n)).toBeLessThan(6 / Math.sqrt(n));
    expect(Math.abs(sn2 / n - 1)).toBeLessThan(6 * Math.sqrt(2 / n));
  });
});
