/**
 * Structured fuzzing of the safetensors reader: valid files mutated the ways hostile or broken files differ
 * from good ones (duplicate keys, gaps, trailing bytes, overlaps, lying offsets, truncation, bad dtypes or
 * shapes, random byte flips). The reader must either return a file whose every tensor decodes to the size
 * its header promises, or throw SafetensorsError — nothing else. Shared by the suite (a few thousand cases)
 * and bench/fuzz-safetensors.ts (10^5 cases, counts of each outcome printed).
 */
import { getTensor, parseSafetensors, serializeSafetensors } from './safetensors.js';
import { SafetensorsError } from '../errors.js';
import { Rng } from '../rng.js';
import { Tensor } from '../tensor.js';
import { lookup } from '../checked.js';

const MUTATIONS = [
  'none',
  'duplicate-key',
  'gap',
  'trailing-bytes',
  'overlap',
  'offset-past-end',
  'truncate',
  'bad-dtype',
  'bad-shape',
  'flip-bytes',
  'header-length',
] as const;
type Mutation = (typeof MUTATIONS)[number];

function header(bytes: Uint8Array): {
  json: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  data: Uint8Array;
} {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return { json: JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))), data: bytes.subarray(8 + n) };
}

function assemble(headerText: string, data: Uint8Array): Uint8Array {
  const hb = new TextEncoder().encode(headerText);
  const out = new Uint8Array(8 + hb.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  out.set(data, 8 + hb.length);
  return out;
}

/** A random valid file, then one mutation. Returns the bytes and whether the mutation must be rejected. */
function fuzzCase(r: Rng, m: Mutation): { bytes: Uint8Array; mustReject: boolean } {
  const tensors: Record<string, Tensor> = {};
  const count = r.int(1, 4);
  for (let i = 0; i < count; i++) {
    const shape = Array.from({ length: r.int(0, 3) }, () => r.int(1, 4));
    tensors[`t${i}`] = Tensor.normal(r, shape, 0, 1);
  }
  const good = serializeSafetensors(tensors, { format: 'pt' }, r.next() < 0.5 ? 'F32' : 'F64');
  const { json, data } = header(good);
  const names = Object.keys(json).filter((k) => k !== '__metadata__');
  const pick = () => names[r.int(0, names.length - 1)];
  switch (m) {
    case 'none':
      return { bytes: good, mustReject: false };
    case 'duplicate-key': {
      // the same key twice: JSON.parse keeps the last one; a swapped duplicate would change the weights
      const a = pick();
      const text = JSON.stringify(json);
      const dup = text.replace(/^\{/, `{"${a}":${JSON.stringify(json[a])},`);
      return { bytes: assemble(dup, data), mustReject: true };
    }
    case 'gap': {
      const extra = r.int(1, 16);
      const shifted = Object.fromEntries(
        Object.entries(json).map(([k, v]) => [
          k,
          k === '__metadata__' ? v : { ...v, data_offsets: [v.data_offsets[0] + extra, v.data_offsets[1] + extra] },
        ]),
      );
      return {
        bytes: assemble(JSON.stringify(shifted), new Uint8Array([...new Uint8Array(extra), ...data])),
        mustReject: true,
      };
    }
    case 'trailing-bytes':
      return {
        bytes: new Uint8Array([...good, ...new Uint8Array(r.int(1, 64)).map(() => r.int(0, 255))]),
        mustReject: true,
      };
    case 'overlap': {
      const big = names.map((k) => lookup(json, k)).filter((v) => v.data_offsets[1] - v.data_offsets[0] >= 8);
      if (names.length < 2 || big.length === 0) return { bytes: good, mustReject: false };
      const copy = structuredClone(json);
      const [a, b] = [names[0], names[1]];
      lookup(copy, b).data_offsets = [...lookup(copy, a).data_offsets];
      lookup(copy, b).shape = [...lookup(copy, a).shape];
      lookup(copy, b).dtype = lookup(copy, a).dtype;
      return { bytes: assemble(JSON.stringify(copy), data), mustReject: true };
    }
    case 'offset-past-end': {
      const copy = structuredClone(json);
      const a = pick();
      lookup(copy, a).data_offsets = [
        lookup(copy, a).data_offsets[0] + data.length + 8,
        lookup(copy, a).data_offsets[1] + data.length + 8,
      ];
      return { bytes: assemble(JSON.stringify(copy), data), mustReject: true };
    }
    case 'truncate':
      return { bytes: good.subarray(0, r.int(0, good.length - 1)), mustReject: true };
    case 'bad-dtype': {
      const copy = structuredClone(json);
      lookup(copy, pick()).dtype = ['F8', 'f32', 'C64', '', 'FLOAT'][r.int(0, 4)];
      return { bytes: assemble(JSON.stringify(copy), data), mustReject: true };
    }
    case 'bad-shape': {
      const copy = structuredClone(json);
      const a = pick();
      lookup(copy, a).shape = [...lookup(copy, a).shape, r.int(2, 5)];
      return { bytes: assemble(JSON.stringify(copy), data), mustReject: true };
    }
    case 'flip-bytes': {
      const b = good.slice();
      for (let i = 0, n = r.int(1, 8); i < n; i++) b[r.int(0, b.length - 1)] = r.int(0, 255);
      return { bytes: b, mustReject: false }; // may or may not still be valid
    }
    case 'header-length': {
      const b = good.slice();
      new DataView(b.buffer).setBigUint64(0, BigInt(r.int(0, 2 ** 31)), true);
      return { bytes: b, mustReject: false };
    }
  }
}

export type Outcome = 'accepted' | 'rejected' | 'WRONG-accepted' | 'CRASH';

/** Run the reader on one case: accepted files must decode completely; anything thrown must be typed. */
function runCase(bytes: Uint8Array, mustReject: boolean): { outcome: Outcome; detail?: string } {
  try {
    const f = parseSafetensors(bytes, 'fuzz');
    for (const name of f.tensors.keys()) {
      const t = getTensor(f, name);
      if (t.size !== lookup(f.tensors, name).shape.reduce((a, b) => a * b, 1))
        return { outcome: 'CRASH', detail: `tensor ${name} decoded to the wrong size` };
    }
    return mustReject ? { outcome: 'WRONG-accepted' } : { outcome: 'accepted' };
  } catch (e) {
    if (e instanceof SafetensorsError) return { outcome: 'rejected', detail: e.message };
    return { outcome: 'CRASH', detail: String((e as Error)?.stack ?? e) };
  }
}

/** Fuzz `n` cases from `seed`: counts per mutation and outcome, and the first problem found. */
export function fuzz(n: number, seed: number): { counts: Record<string, Record<Outcome, number>>; problems: string[] } {
  const r = new Rng(seed);
  const counts: Record<string, Record<Outcome, number>> = {};
  const problems: string[] = [];
  for (let i = 0; i < n; i++) {
    const m = MUTATIONS[i % MUTATIONS.length];
    const { bytes, mustReject } = fuzzCase(r, m);
    const { outcome, detail } = runCase(bytes, mustReject);
    counts[m] ??= { accepted: 0, rejected: 0, 'WRONG-accepted': 0, CRASH: 0 };
    counts[m][outcome]++;
    if ((outcome === 'CRASH' || outcome === 'WRONG-accepted') && problems.length < 5)
      problems.push(`case ${i} (${m}): ${outcome} ${detail ?? ''}`);
  }
  return { counts, problems };
}
