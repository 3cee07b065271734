#!/usr/bin/env node
// An example port for `mil conform` (docs/conform.md), in plain JavaScript with no dependency, in both protocols:
//   files  `port.mjs DIR`: reads DIR/case.json and DIR/case.safetensors (and DIR/model/ for `model`), computes
//          the op, writes DIR/out.safetensors; exits 77 ("unsupported", the reason on stderr) for what it does not do.
//   lines  `port.mjs --lines`: answers one JSON request per stdin line with one JSON reply per stdout line,
//          tensors as base64 float64 little-endian; {id, unsupported: why} for what it does not do.
// Every op the harness draws: the forward kernels (kernels.mjs), the backward ops (grads.mjs), and the whole
// model and speculative sampling (model.mjs).
//   npx mil conform --op selective_scan --port "node examples/ports/js/port.mjs" [--protocol lines]
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { GRADS } from './grads.mjs';
import { KERNELS } from './kernels.mjs';
import { modelOp, speculative } from './model.mjs';

/** The outputs of one case ({name: {shape, data}}), or throws an error with `unsupported` set. */
function run(op, I, a, modelDir) {
  const OPS = {
    ...KERNELS,
    ...GRADS,
    speculative,
    model: (I) =>
      modelOp(I, () => {
        const json = (f) =>
          existsSync(join(modelDir, f)) ? JSON.parse(readFileSync(join(modelDir, f), 'utf8')) : undefined;
        return {
          config: json('config.json'),
          mambaConfig: json('mamba_config.json'),
          mil: json('mil_config.json'),
          weights: readSafetensors(join(modelDir, 'model.safetensors')),
        };
      }),
  };
  if (!OPS[op])
    throw Object.assign(new Error(`op ${op} is not implemented by this example port`), { unsupported: true });
  return OPS[op](I, a);
}

if (process.argv[2] === '--lines') {
  const decode = (t) => {
    const b = Buffer.from(t.data_b64, 'base64');
    return { shape: t.shape, data: new Float64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length)) };
  };
  const encode = (t) => ({
    shape: t.shape,
    dtype: 'F64',
    data_b64: Buffer.from(Float64Array.from(t.data).buffer).toString('base64'),
  });
  for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    const q = JSON.parse(line);
    let reply;
    try {
      const I = Object.fromEntries(Object.entries(q.inputs).map(([k, t]) => [k, decode(t)]));
      const out = run(q.op, I, q.options, q.model_dir);
      reply = { id: q.id, outputs: Object.fromEntries(Object.entries(out).map(([k, t]) => [k, encode(t)])) };
    } catch (e) {
      reply = e.unsupported ? { id: q.id, unsupported: e.message } : { id: q.id, error: String(e.stack ?? e) };
    }
    process.stdout.write(JSON.stringify(reply) + '\n');
  }
} else {
  const dir = process.argv[2];
  const c = JSON.parse(readFileSync(join(dir, 'case.json'), 'utf8'));
  let out;
  try {
    out = run(c.op, readSafetensors(join(dir, 'case.safetensors')), c.attrs, join(dir, 'model'));
  } catch (e) {
    if (!e.unsupported) throw e;
    console.error(e.message);
    process.exit(77);
  }
  writeSafetensors(join(dir, 'out.safetensors'), out);
}

// ---- safetensors: an 8-byte little-endian header length, a JSON header, then the data
function readSafetensors(path) {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const out = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (t.dtype !== 'F64') throw new Error(`${name}: dtype ${t.dtype}, this port reads F64`);
    const [s, e] = t.data_offsets;
    const bytes = buf.subarray(8 + n + s, 8 + n + e);
    out[name] = {
      shape: t.shape,
      data: new Float64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length)),
    };
  }
  return out;
}
function writeSafetensors(path, tensors) {
  const header = {};
  let off = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: 'F64', shape: t.shape, data_offsets: [off, off + t.data.length * 8] };
    off += t.data.length * 8;
  }
  let h = Buffer.from(JSON.stringify(header));
  h = Buffer.concat([h, Buffer.alloc((8 - (h.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  writeFileSync(
    path,
    Buffer.concat([
      len,
      h,
      ...Object.values(tensors).map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)),
    ]),
  );
}
