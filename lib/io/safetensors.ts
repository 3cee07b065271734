/**
 * safetensors reader and writer (https://github.com/huggingface/safetensors format):
 *
 *   [u64 little-endian header length n][n bytes of JSON header][data bytes]
 *   header: { "<name>": { "dtype": "F32", "shape": [..], "data_offsets": [begin, end] }, "__metadata__": {..} }
 *
 * Every file is treated as hostile: the header length must fit the file and a size cap, the JSON must
 * parse into the expected form, each tensor's byte range must lie inside the data, have length
 * sizeof(dtype)·Π shape, and the ranges must tile the data exactly (no overlap, gap or trailing bytes);
 * no key may appear twice. Violations raise SafetensorsError naming the file. Writes go through the one
 * writer (lib/io/writer.ts), streamed in bounded pieces.
 */
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { InputFileError, fileKind, parseJsonStrict, readRegularFile } from './json.js';
import { writeFile } from './writer.js';
import { NonFiniteError, SafetensorsError } from '../errors.js';
import { Tensor, sizeOf } from '../tensor.js';
import { lookup } from '../checked.js';

const MAX_HEADER_BYTES = 100 * 1024 * 1024;

const DTYPE_SIZE: Record<string, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export interface TensorInfo {
  dtype: string;
  shape: number[];
  begin: number; // absolute byte offset in the file
  end: number;
}

export interface SafetensorsFile {
  path: string;
  metadata: Record<string, string>;
  tensors: Map<string, TensorInfo>;
  bytes: Uint8Array;
}

/** A safetensors file's validated header: where each tensor lies (absolute offsets), not its bytes. */
export interface SafetensorsHeader {
  path: string;
  metadata: Record<string, string>;
  tensors: Map<string, TensorInfo>;
}

/** Parse and validate a safetensors buffer (no tensor is decoded yet). */
export function parseSafetensors(bytes: Uint8Array, path = '<buffer>'): SafetensorsFile {
  return { ...parseSafetensorsHeader(bytes, bytes.length, path), bytes };
}

/**
 * Parse and validate the header of a safetensors file of `fileBytes` bytes from its first bytes `prefix`
 * (at least the 8-byte length and the header): every check of parseSafetensors, without the data.
 */
function parseSafetensorsHeader(prefix: Uint8Array, fileBytes: number, path = '<buffer>'): SafetensorsHeader {
  const fail = (why: string): never => {
    throw new SafetensorsError(path, why);
  };
  if (fileBytes < 8) fail(`file is ${fileBytes} bytes, shorter than the 8-byte header length`);
  const view = new DataView(prefix.buffer, prefix.byteOffset, prefix.byteLength);
  const n64 = view.getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER_BYTES)) fail(`header length ${n64} exceeds the cap of ${MAX_HEADER_BYTES} bytes`);
  const n = Number(n64);
  if (8 + n > fileBytes) fail(`header length ${n} runs past the end of the file (${fileBytes} bytes): truncated?`);
  const header = parseJsonStrict(
    decodeUtf8(prefix.subarray(8, 8 + n), fail),
    path,
    (p) => new SafetensorsError(path, `header: ${p}`),
  );
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('header is not a JSON object');
  const dataStart = 8 + n;
  const dataLen = fileBytes - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  const ranges: Array<[number, number, string]> = [];
  for (const [name, v] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('__metadata__ is not an object');
      metadata = v as Record<string, string>;
      continue;
    }
    const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== 'object' || e === null) fail(`tensor '${name}': entry is not an object`);
    if (typeof e.dtype !== 'string' || !(e.dtype in DTYPE_SIZE))
      fail(`tensor '${name}': unknown dtype ${JSON.stringify(e.dtype)}`);
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      fail(`tensor '${name}': shape ${JSON.stringify(e.shape)} is not a list of non-negative integers`);
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isSafeInteger(d) && d >= 0))
      fail(`tensor '${name}': data_offsets ${JSON.stringify(off)} is not [begin, end]`);
    const [b, en] = off as [number, number];
    const shape = e.shape as number[];
    const want = sizeOf(shape) * lookup(DTYPE_SIZE, e.dtype as string);
    if (en < b) fail(`tensor '${name}': data_offsets [${b}, ${en}] end before begin`);
    if (en > dataLen)
      fail(`tensor '${name}': data_offsets [${b}, ${en}] run past the data (${dataLen} bytes): truncated?`);
    if (en - b !== want)
      fail(`tensor '${name}': ${en - b} bytes for ${e.dtype} [${shape.join(', ')}], expected ${want}`);
    ranges.push([b, en, name]);
    tensors.set(name, { dtype: e.dtype as string, shape, begin: dataStart + b, end: dataStart + en });
  }
  // The data must be tiled exactly, as the reference implementation requires: sorted by offset, each tensor
  // starting where the previous ended, the last ending at the end of the file. Overlaps (two names for
  // the same bytes), gaps and trailing bytes (data covered by no tensor) are all rejected.
  ranges.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  let pos = 0;
  let prev = '';
  for (const [b, e, nm] of ranges) {
    if (b < pos) fail(`tensors '${prev}' and '${nm}' overlap (the latter spans [${b}, ${e}))`);
    if (b > pos) fail(`bytes [${pos}, ${b}) of the data belong to no tensor (gap before '${nm}')`);
    pos = e;
    prev = nm;
  }
  if (pos !== dataLen)
    fail(
      `bytes [${pos}, ${dataLen}) at the end of the data belong to no tensor (trailing bytes, or a header that lies)`,
    );
  return { path, metadata, tensors };
}

/** The largest file read whole (node's Buffer limit); larger checkpoints must be sharded. */
const MAX_FILE_BYTES = 2 ** 31 - 1;

/**
 * Read and validate a safetensors file. Refused before reading it whole: anything but a regular file
 * (a FIFO, a device, a folder), files over MAX_FILE_BYTES, and files whose size differs from what their
 * header describes.
 */
export function readSafetensors(path: string): SafetensorsFile {
  let bytes: Uint8Array;
  try {
    bytes = readRegularFile(path, MAX_FILE_BYTES);
  } catch (e) {
    if (e instanceof InputFileError) throw new SafetensorsError(path, e.problem);
    throw e;
  }
  return parseSafetensors(bytes, path);
}

function decodeUtf8(b: Uint8Array, fail: (why: string) => never): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(b);
  } catch {
    return fail('header is not valid UTF-8');
  }
}

/**
 * The validated header of a safetensors file on disk, read without its data (8 bytes, then the header):
 * what a checkpoint needs in memory is known before any weight is read. Refused like readSafetensors:
 * anything but a regular file, and headers that do not describe the file's size exactly.
 */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new SafetensorsError(path, `cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (!st.isFile()) throw new SafetensorsError(path, `not a regular file (${fileKind(st)})`);
  return withFile(path, (fd) => {
    const len = new Uint8Array(8);
    readExactly(fd, path, len, 0);
    const n = Number(new DataView(len.buffer).getBigUint64(0, true));
    if (st.size < 8 || n > MAX_HEADER_BYTES || 8 + n > st.size) return parseSafetensorsHeader(len, st.size, path); // throws the reason
    const prefix = new Uint8Array(8 + n);
    readExactly(fd, path, prefix, 0);
    return parseSafetensorsHeader(prefix, st.size, path);
  });
}

/** Run `f` with the file open for reading (closed after). */
export function withFile<T>(path: string, f: (fd: number) => T): T {
  const fd = openForReading(path);
  try {
    return f(fd);
  } finally {
    closeSync(fd);
  }
}

/** Open a file for reading (a SafetensorsError naming it when it cannot be). */
function openForReading(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (e) {
    throw new SafetensorsError(path, `cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/** Fill `buf` from the file at byte `pos` (in pieces under node's 2 GiB per read). */
function readExactly(fd: number, path: string, buf: Uint8Array, pos: number): void {
  for (let done = 0; done < buf.length;) {
    const got = readSync(fd, buf, done, Math.min(buf.length - done, 1 << 30), pos + done);
    if (got === 0) throw new SafetensorsError(path, `file ended at byte ${pos + done} (truncated while being read?)`);
    done += got;
  }
}

/**
 * Read one tensor of an open file straight from its byte range (no buffer of the whole file), decoded as
 * `decodeTensor` does.
 */
export function readTensorAt(fd: number, h: SafetensorsHeader, name: string, into: TensorInto = 'float64'): Tensor {
  const info = h.tensors.get(name);
  if (!info) throw new SafetensorsError(h.path, `missing tensor '${name}'`);
  const buf = new Uint8Array(info.end - info.begin);
  readExactly(fd, h.path, buf, info.begin);
  return decodeTensor(buf, info, name, h.path, into);
}

/**
 * Copy one tensor's stored bytes, as they are (no decoding), from an open file into `into` (exactly the tensor's
 * byte length): a caller that keeps the stored dtype (bf16 panels, lib/simd/gemm.ts) reads straight into place.
 */
export function readRawAt(fd: number, h: SafetensorsHeader, name: string, into: Uint8Array): void {
  const info = h.tensors.get(name);
  if (!info) throw new SafetensorsError(h.path, `missing tensor '${name}'`);
  if (into.length !== info.end - info.begin)
    throw new SafetensorsError(h.path, `tensor '${name}': ${info.end - info.begin} bytes, read into ${into.length}`);
  readExactly(fd, h.path, into, info.begin);
}

/**
 * 'float64': every dtype widened to float64. 'compact': F32, F16 and BF16 to float32 (exact: each is a
 * subset of float32), the others (F64, integers) to float64 — what a checkpoint keeps in memory.
 */
export type TensorInto = 'float64' | 'compact';

/** Decode one tensor to float64, or compactly (see TensorInto); integers are converted exactly up to 2^53. */
export function getTensor(f: SafetensorsFile, name: string, into: TensorInto = 'float64'): Tensor {
  const info = f.tensors.get(name);
  if (!info) throw new SafetensorsError(f.path, `missing tensor '${name}'`);
  const buf = new Uint8Array(info.end - info.begin); // aligned copy (Buffer.slice would be a view)
  buf.set(f.bytes.subarray(info.begin, info.end));
  return decodeTensor(buf, info, name, f.path, into);
}

/** Decode the bytes `buf` (a fresh, aligned buffer of exactly the tensor) of tensor `name`. */
function decodeTensor(buf: Uint8Array, info: TensorInfo, name: string, path: string, into: TensorInto): Tensor {
  const n = sizeOf(info.shape);
  const dv = new DataView(buf.buffer);
  const compact = into === 'compact' && (info.dtype === 'F32' || info.dtype === 'F16' || info.dtype === 'BF16');
  if (compact && info.dtype === 'F32') return new Tensor(new Float32Array(buf.buffer, 0, n), info.shape, name);
  if (compact && info.dtype === 'BF16') {
    // bf16 is the high half of a float32: shift each 16-bit word up (exact)
    const out = new Float32Array(n);
    const bits = new Uint32Array(out.buffer);
    const src = new Uint16Array(buf.buffer, 0, n);
    for (let i = 0; i < n; i++) bits[i] = src[i] << 16;
    return new Tensor(out, info.shape, name);
  }
  const out = compact ? new Float32Array(n) : new Float64Array(n);
  switch (info.dtype) {
    case 'F64':
      out.set(new Float64Array(buf.buffer, 0, n));
      break;
    case 'F32':
      out.set(new Float32Array(buf.buffer, 0, n));
      break;
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = halfToFloat(dv.getUint16(2 * i, true));
      break;
    case 'BF16':
      for (let i = 0; i < n; i++) {
        out[i] = bf16ToFloat(dv.getUint16(2 * i, true));
      }
      break;
    case 'I64':
      for (let i = 0; i < n; i++) out[i] = Number(dv.getBigInt64(8 * i, true));
      break;
    case 'I32':
      for (let i = 0; i < n; i++) out[i] = dv.getInt32(4 * i, true);
      break;
    case 'I16':
      for (let i = 0; i < n; i++) out[i] = dv.getInt16(2 * i, true);
      break;
    case 'I8':
      for (let i = 0; i < n; i++) out[i] = dv.getInt8(i);
      break;
    case 'U8':
    case 'BOOL':
      for (let i = 0; i < n; i++) out[i] = dv.getUint8(i);
      break;
    default:
      throw new SafetensorsError(path, `tensor '${name}': unsupported dtype ${info.dtype}`);
  }
  return new Tensor(out, info.shape, name);
}

/** Bytes per element of each safetensors dtype. */
export function dtypeBytes(dtype: string): number {
  return DTYPE_SIZE[dtype] ?? 8;
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

function bf16ToFloat(b: number): number {
  const f = new Float32Array(1);
  new Uint32Array(f.buffer)[0] = b << 16;
  return f[0];
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export type WriteDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'U8';

/** float → IEEE half (round to nearest even; overflow → ±Inf). */
function floatToHalf(v: number): number {
  const f = new Float32Array([v]);
  const x = new Uint32Array(f.buffer)[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}

/** float → bfloat16 (round to nearest even). */
function floatToBf16(v: number): number {
  const f = new Float32Array([v]);
  const x = new Uint32Array(f.buffer)[0];
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return (x >>> 16) | 0x40;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

function encode(t: Tensor, dt: WriteDType, name: string, from: number, to: number): Uint8Array {
  const n = to - from;
  const out = new Uint8Array(n * lookup(DTYPE_SIZE, dt));
  const dv = new DataView(out.buffer);
  const intCheck = (v: number, lo: number, hi: number, i: number) => {
    if (!Number.isInteger(v) || v < lo || v > hi)
      throw new SafetensorsError('<write>', `tensor '${name}': value ${v} at ${i} is not representable as ${dt}`);
  };
  if (dt === 'F32' && LITTLE_ENDIAN) {
    new Float32Array(out.buffer).set(t.data.subarray(from, to)); // rounds float64 to nearest, as setFloat32
    return out;
  }
  if (dt === 'BF16' && LITTLE_ENDIAN) {
    // round to nearest even on the float32 bits, NaN kept quiet: floatToBf16 without its per-value allocations
    const bits = new Uint32Array(Float32Array.from(t.data.subarray(from, to)).buffer);
    const h = new Uint16Array(out.buffer);
    for (let i = 0; i < n; i++) {
      const x = bits[i];
      h[i] =
        (x & 0x7f800000) === 0x7f800000 && x & 0x7fffff
          ? (x >>> 16) | 0x40
          : ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
    }
    return out;
  }
  for (let i = 0; i < n; i++) {
    const v = t.data[from + i];
    switch (dt) {
      case 'F64':
        dv.setFloat64(8 * i, v, true);
        break;
      case 'F32':
        dv.setFloat32(4 * i, v, true);
        break;
      case 'F16':
        dv.setUint16(2 * i, floatToHalf(v), true);
        break;
      case 'BF16':
        dv.setUint16(2 * i, floatToBf16(v), true);
        break;
      case 'I64':
        intCheck(v, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, from + i);
        dv.setBigInt64(8 * i, BigInt(v), true);
        break;
      case 'I32':
        intCheck(v, -2147483648, 2147483647, from + i);
        dv.setInt32(4 * i, v, true);
        break;
      case 'U8':
        intCheck(v, 0, 255, from + i);
        dv.setUint8(i, v);
        break;
    }
  }
  return out;
}

/**
 * Serialise tensors with optional string metadata, as a header and one chunk per tensor (in bounded pieces),
 * so a file of any size is written without one buffer holding it all. `dtype`: one for all tensors, or a
 * function per name; default F64 for float64 tensors and F32 for float32 ones. Integer dtypes require
 * integer values in range. The data is contiguous and in header order (what the reader requires).
 */
export function safetensorsChunks(
  tensors: Record<string, TensorSource>,
  metadata?: Record<string, string>,
  dtype?: WriteDType | ((name: string, t: Tensor) => WriteDType),
): { bytes: number; chunks: Iterable<Uint8Array> } {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let off = 0;
  const entries = Object.entries(tensors);
  const dts: WriteDType[] = [];
  for (const [name, t] of entries) {
    const dt: WriteDType =
      typeof dtype === 'function'
        ? dtype(name, materialize(t))
        : (dtype ?? (t instanceof Tensor && t.dtype === 'float32' ? 'F32' : t instanceof Tensor ? 'F64' : 'F32'));
    dts.push(dt);
    const len = t.size * lookup(DTYPE_SIZE, dt);
    header[name] = { dtype: dt, shape: [...t.shape], data_offsets: [off, off + len] };
    off += len;
  }
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8 !== 0) json += ' '; // align the data to 8 bytes
  const hb = new TextEncoder().encode(json);
  const head = new Uint8Array(8 + hb.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(hb.length), true);
  head.set(hb, 8);
  function* chunks(): Generator<Uint8Array> {
    yield head;
    for (let i = 0; i < entries.length; i++) {
      const [name, src] = entries[i];
      if (!(src instanceof Tensor) && src.pieces) {
        let n = 0;
        for (const piece of src.pieces(dts[i])) {
          n += piece.length;
          yield piece;
        }
        if (n !== src.size * lookup(DTYPE_SIZE, dts[i]))
          throw new SafetensorsError('<write>', `tensor '${name}': ${n} bytes written, announced ${src.size} values`);
        continue;
      }
      const t = materialize(src); // a lazy tensor is made here, one at a time, and dropped after
      for (let s = 0; s < t.size; s += ENCODE_PIECE)
        yield encode(t, dts[i], name, s, Math.min(t.size, s + ENCODE_PIECE));
    }
  }
  return { bytes: head.length + off, chunks: { [Symbol.iterator]: chunks } };
}

/**
 * A tensor to write: one in memory, or a lazy one made only when its bytes are written (so a checkpoint
 * larger than memory is written one tensor at a time). `make` must give the same shape.
 */
export type TensorSource = Tensor | LazyTensor;
export interface LazyTensor {
  shape: readonly number[];
  size: number;
  make: () => Tensor;
  /**
   * where given, the tensor's bytes as `dtype` in pieces, written without making the tensor whole; a piece is
   * valid until the next is asked for (its buffer is reused)
   */
  pieces?: (dtype: WriteDType) => Iterable<Uint8Array>;
}

/**
 * Tensor `name` of a file on disk as a LazyTensor: written, its bytes are copied from the file in pieces of
 * at most ENCODE_PIECE elements — as they are when the written dtype is the stored one (decoding then
 * encoding gives the same bytes), re-encoded otherwise — each piece checked finite (NonFiniteError, as a
 * checkpoint's load does). The memory it needs is one piece, whatever the tensor's size.
 */
export function storedTensor(h: SafetensorsHeader, name: string): LazyTensor {
  const found = h.tensors.get(name);
  if (!found) throw new SafetensorsError(h.path, `missing tensor '${name}'`);
  const info: TensorInfo = found;
  const size = sizeOf(info.shape);
  const per = lookup(DTYPE_SIZE, info.dtype);
  function* pieces(dtype: WriteDType): Generator<Uint8Array> {
    const fd = openForReading(h.path);
    const buf = new Uint8Array(Math.min(size, ENCODE_PIECE) * per); // one buffer for every piece (no garbage per piece)
    try {
      for (let s = 0; s < size; s += ENCODE_PIECE) {
        const m = Math.min(size - s, ENCODE_PIECE);
        const piece = buf.subarray(0, m * per);
        readExactly(fd, h.path, piece, info.begin + s * per);
        const same = dtype === info.dtype;
        const t = same && !hasNonFinite(piece, info.dtype, m) ? undefined : decodePiece(piece, m); // (m)
        if (t)
          for (let i = 0; i < m; i++) if (!Number.isFinite(t.data[i])) throw new NonFiniteError(name, s + i, t.data[i]);
        yield t ? encode(t, dtype, name, 0, m) : piece;
      }
    } finally {
      closeSync(fd);
    }
  }
  const decodePiece = (piece: Uint8Array, m: number) =>
    decodeTensor(piece.slice(), { ...info, shape: [m] }, name, h.path, 'compact');
  return {
    shape: info.shape,
    size,
    make: () => withFile(h.path, (fd) => readTensorAt(fd, h, name, 'compact')),
    pieces,
  };
}

/** Whether the first `m` values of float dtype `dtype` in `b` hold a NaN or ±Inf (an all-ones exponent). */
function hasNonFinite(b: Uint8Array, dtype: string, m: number): boolean {
  if (dtype === 'BF16' || dtype === 'F16') {
    const w = new Uint16Array(b.buffer, b.byteOffset, m);
    const e = dtype === 'BF16' ? 0x7f80 : 0x7c00;
    for (let i = 0; i < m; i++) if ((w[i] & e) === e) return true;
  } else if (dtype === 'F32') {
    const w = new Uint32Array(b.buffer, b.byteOffset, m);
    for (let i = 0; i < m; i++) if ((w[i] & 0x7f800000) === 0x7f800000) return true;
  } else if (dtype === 'F64') {
    const w = new Float64Array(b.buffer, b.byteOffset, m);
    for (let i = 0; i < m; i++) if (!Number.isFinite(w[i])) return true;
  }
  return false;
}

function materialize(t: TensorSource): Tensor {
  if (t instanceof Tensor) return t;
  const m = t.make();
  if (m.size !== t.size)
    throw new SafetensorsError('<write>', `lazy tensor '${m.name}' made ${m.size} elements, announced ${t.size}`);
  return m;
}

const ENCODE_PIECE = 1 << 22; // elements per encoded piece (≤ 32 MiB)

/** The whole file as one buffer (for small files and tests; writers stream `safetensorsChunks`). */
export function serializeSafetensors(
  tensors: Record<string, Tensor>,
  metadata?: Record<string, string>,
  dtype?: WriteDType | ((name: string, t: Tensor) => WriteDType),
): Uint8Array {
  const { bytes, chunks } = safetensorsChunks(tensors, metadata, dtype);
  const out = new Uint8Array(bytes);
  let pos = 0;
  for (const c of chunks) {
    out.set(c, pos);
    pos += c.length;
  }
  return out;
}

/** Write a safetensors file through the one writer (lib/io/writer.ts): complete, or the old file kept. */
export function writeSafetensors(
  path: string,
  tensors: Record<string, Tensor>,
  metadata?: Record<string, string>,
  dtype?: WriteDType | ((name: string, t: Tensor) => WriteDType),
): void {
  writeFile(path, safetensorsChunks(tensors, metadata, dtype).chunks);
}
