#!/usr/bin/env node
// An example port for `mil conform` (docs/conform.md), in plain JavaScript with no dependency: it reads
// DIR/case.json and DIR/case.safetensors (and DIR/model/ for `model`), computes the op, writes
// DIR/out.safetensors, and exits 77 ("unsupported", the reason on stderr) for what it does not implement.
// Every op the harness draws: the forward kernels (kernels.mjs), the backward ops (grads.mjs), and the whole
// model and speculative sampling (model.mjs).
//   npx mil conform --op selective_scan --port "node examples/ports/js/port.mjs"
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GRADS } from './grads.mjs';
import { KERNELS } from './kernels.mjs';
import { modelOp, speculative } from './model.mjs';

const dir = process.argv[2];
const c = JSON.parse(readFileSync(join(dir, 'case.json'), 'utf8'));
const I = readSafetensors(join(dir, 'case.safetensors'));
const a = c.attrs;

const OPS = {
  ...KERNELS,
  ...GRADS,
  speculative,
  model: (I) =>
    modelOp(I, () => {
      const json = (f) =>
        existsSync(join(dir, 'model', f)) ? JSON.parse(readFileSync(join(dir, 'model', f), 'utf8')) : undefined;
      return {
        config: json('config.json'),
        mambaConfig: json('mamba_config.json'),
        mil: json('mil_config.json'),
        weights: readSafetensors(join(dir, 'model', 'model.safetensors')),
      };
    }),
};

const unsupported = (why) => {
  console.error(why);
  process.exit(77);
};
if (!OPS[c.op]) unsupported(`op ${c.op} is not implemented by this example port`);
let out;
try {
  out = OPS[c.op](I, a);
} catch (e) {
  if (e.unsupported) unsupported(e.message);
  throw e;
}
writeSafetensors(join(dir, 'out.safetensors'), out);

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
