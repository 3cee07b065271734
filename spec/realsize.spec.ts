/**
 * Real shapes (issue 24): a 2-layer model at Llama-3.2-1B's other dimensions (vocab 128256, d 2048, GQA
 * 32/8, head_dim 64, llama3 rope scaling, tied embeddings), made by `mil init --layers 2` in bf16, loaded
 * compactly (float32, never a float64 copy) and run on the backends here; its logits are checked against an
 * independent float64 forward written below from the Llama equations (HF modeling_llama), reading the bf16
 * bytes of the file itself — it shares no code with the project's loader or forward:
 *
 *   h₀ = E[ids];  per layer:  x = rms(h)·w₁;  q, k, v = x Wqᵀ, x Wkᵀ, x Wvᵀ;  q, k ← rope_llama3(q, k)
 *   a = softmax(q kᵀ/√64 + causal) v  (head j reads kv head ⌊j/4⌋);  h += a Woᵀ
 *   h += (silu(rms(h)·w₂ Wgᵀ) ⊙ rms(h)·w₂ Wuᵀ) Wdᵀ;   logits = (rms(h)·w_f) Eᵀ   (tied)
 *
 * Tolerance: the float64 reference backend within 1e-9 of the scale of the logits (max error over max |logit|;
 * measured 0). wasm-simd, its BF16 matrices loaded as bf16 panels in the module (lib/simd/packed_weight.ts;
 * 0.77 GB where float32 panels took 2.4 GiB with the staged head, over the old 2 GiB limit), within TOL_F32 of
 * that scale: its weights are the file's values exactly (bf16 → float32 is exact), so what differs is float32
 * arithmetic — the activations rounded to float32 between ops and the products' sums (K ≤ 8192) accumulated in
 * float32, each within about √K·2⁻²⁴ ≈ 5e-6 of its scale for random signs, through 2 layers and the head.
 * A model that truly cannot fit (Llama-3.2-3B-shaped, 6.4 GB of bf16 panels over 4 GiB) is refused from its
 * headers alone (a sparse file: nothing is read). The other cases: bad input named before any work (exit 2).
 * Cost, measured on 2 shared cores: 64 s for the file (init 11 s; the rest the two forwards), peak RSS 2.2 GB
 * (the 769 MB file read whole by the check, 1.4 GiB of float32 weights) before the wasm-simd case; with it,
 * 2.7 GB peak RSS (+0.77 GB of panels and the staging), and the case itself (load into bf16 panels, both
 * forwards) took 7.1 s at load average ~5 (the test 137 s then; 111 s and 699 s at load average 17), 2026-12-04.
 * The speculative case (its own wasm-simd load, plain + two speculative decodes of 6 tokens): ~15 s on top of the
 * shared checkpoint (the speculative part 7.7 s at load ~8, 2026-12-04). The tiny cases: 3 s. The checkpoint is made once and loaded once for the file; the streamed `mil convert` of it (a child process: its peak RSS) and the byte comparison with
 * the in-memory conversion add 97 s measured under a load average of 17 on the 2 cores (the child used ~8 s of CPU);
 * the hybrid is checked by planModel, not loaded (spec/convert_stream.spec.ts loads streamed output).
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  copyFileSync,
  existsSync,
  fstatSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { tmpFolder } from './tmp.js';
import { main } from '../lib/cli/main.js';
import { loadModel, planModel, MemoryError } from '../lib/model/load.js';
import { forward, newCache, type HybridModel } from '../lib/model/hybrid.js';
import { getOps, backendStatus } from '../lib/ops.js';
import { ConfigError, parseLlamaConfig } from '../lib/model/config.js';
import { DTypeError, NonFiniteError, SafetensorsError } from '../lib/errors.js';
import { PackedWeight } from '../lib/simd/packed_weight.js';
import { lastOf, lookup } from '../lib/checked.js';
import { generate } from '../lib/model/generate.js';
import { OracleDrafter, truncateLayers } from '../lib/decode/drafts.js';
import { ModelDrafter, speculativeGenerate } from '../lib/decode/speculative.js';
import { convert, modelFiles } from '../lib/model/convert.js';

const CONFIG = 'configs/llama-3.2-1b.json';
/**
 * wasm-simd's logits against the float64 forward, over max |logit|: about √K·2⁻²⁴ ≈ 5e-6 for K = 8192 (see the
 * header); measured 1.0e-7 for both paths (2026-12-04)
 */
const TOL_F32 = 1e-5;
const quiet = async (argv: string[]) => {
  const log = console.log;
  const err = console.error;
  console.log = () => {};
  console.error = () => {};
  try {
    return await main(argv);
  } finally {
    console.log = log;
    console.error = err;
  }
};

// ---------------------------------------------------------------- an independent float64 Llama forward

/** The tensors of one safetensors file, as bf16 words (no project code: the format is 10 lines). */
function bf16File(path: string): { get(name: string): { shape: number[]; words: Uint16Array } } {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  return {
    get(name) {
      const e = lookup(header, name);
      expect(e.dtype).toBe('BF16');
      const [b, en] = e.data_offsets;
      const bytes = new Uint8Array(en - b);
      bytes.set(buf.subarray(8 + n + b, 8 + n + en));
      return { shape: e.shape, words: new Uint16Array(bytes.buffer) };
    },
  };
}

const scratchF = new Float32Array(1);
const scratchU = new Uint32Array(scratchF.buffer);
/** A bf16 word as its value: the high half of a float32. */
const bf16 = (w: number) => {
  scratchU[0] = w << 16;
  return scratchF[0];
};
const widen = (t: { words: Uint16Array }) => Float64Array.from(t.words, bf16);

/** y[t][o] = Σ_i x[t][i]·W[o][i] over W: (out, in). */
function matvecs(x: Float64Array[], W: Float64Array, out: number): Float64Array[] {
  const nin = x[0].length;
  return x.map((xt) => {
    const y = new Float64Array(out);
    for (let o = 0; o < out; o++) {
      let s = 0;
      for (let i = 0; i < nin; i++) s += xt[i] * W[o * nin + i];
      y[o] = s;
    }
    return y;
  });
}

const rms = (x: Float64Array, w: Float64Array, eps: number) => {
  let ss = 0;
  for (const v of x) ss += v * v;
  const r = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * r * w[i]);
};

/** transformers' _compute_llama3_parameters, from its published formula. */
function llama3InvFreq(
  dim: number,
  base: number,
  s: { factor: number; low_freq_factor: number; high_freq_factor: number; original_max_position_embeddings: number },
) {
  const out: number[] = [];
  const lowWave = s.original_max_position_embeddings / s.low_freq_factor;
  const highWave = s.original_max_position_embeddings / s.high_freq_factor;
  for (let i = 0; i < dim; i += 2) {
    const f = 1 / base ** (i / dim);
    const wave = (2 * Math.PI) / f;
    if (wave < highWave) out.push(f);
    else if (wave > lowWave) out.push(f / s.factor);
    else {
      const smooth =
        (s.original_max_position_embeddings / wave - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      out.push((1 - smooth) * (f / s.factor) + smooth * f);
    }
  }
  return out;
}

function independentLogits(dir: string, ids: number[]): Float64Array[] {
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  const f = bf16File(join(dir, 'model.safetensors'));
  const D: number = cfg.hidden_size;
  const H: number = cfg.num_attention_heads;
  const Hkv: number = cfg.num_key_value_heads;
  const hd: number = cfg.head_dim;
  const I: number = cfg.intermediate_size;
  const eps: number = cfg.rms_norm_eps;
  const inv = llama3InvFreq(hd, cfg.rope_theta, cfg.rope_scaling);
  const E = f.get('model.embed_tokens.weight').words;
  const T = ids.length;
  let h = ids.map((id) => Float64Array.from(E.subarray(id * D, (id + 1) * D), bf16));
  const rope = (v: Float64Array, heads: number, pos: number) => {
    for (let j = 0; j < heads; j++)
      for (let i = 0; i < hd / 2; i++) {
        const a = pos * inv[i];
        const [x1, x2] = [v[j * hd + i], v[j * hd + i + hd / 2]];
        v[j * hd + i] = x1 * Math.cos(a) - x2 * Math.sin(a);
        v[j * hd + i + hd / 2] = x2 * Math.cos(a) + x1 * Math.sin(a);
      }
  };
  for (let l = 0; l < cfg.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    const w = (n: string) => widen(f.get(p + n));
    const x = h.map((ht) => rms(ht, w('input_layernorm.weight'), eps));
    const q = matvecs(x, w('self_attn.q_proj.weight'), H * hd);
    const k = matvecs(x, w('self_attn.k_proj.weight'), Hkv * hd);
    const v = matvecs(x, w('self_attn.v_proj.weight'), Hkv * hd);
    q.forEach((qt, t) => rope(qt, H, t));
    k.forEach((kt, t) => rope(kt, Hkv, t));
    const att = ids.map(() => new Float64Array(H * hd));
    for (let t = 0; t < T; t++)
      for (let j = 0; j < H; j++) {
        const g = Math.floor(j / (H / Hkv));
        const s = Array.from({ length: t + 1 }, (_, u) => {
          let d = 0;
          for (let i = 0; i < hd; i++) d += q[t][j * hd + i] * k[u][g * hd + i];
          return d / Math.sqrt(hd);
        });
        const m = Math.max(...s);
        const e = s.map((z) => Math.exp(z - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let u = 0; u <= t; u++) for (let i = 0; i < hd; i++) att[t][j * hd + i] += (e[u] / z) * v[u][g * hd + i];
      }
    const o = matvecs(att, w('self_attn.o_proj.weight'), D);
    h = h.map((ht, t) => ht.map((a, i) => a + o[t][i]));
    const x2 = h.map((ht) => rms(ht, w('post_attention_layernorm.weight'), eps));
    const gate = matvecs(x2, w('mlp.gate_proj.weight'), I);
    const up = matvecs(x2, w('mlp.up_proj.weight'), I);
    const act = gate.map((gt, t) => gt.map((a, i) => (a / (1 + Math.exp(-a))) * up[t][i]));
    const down = matvecs(act, w('mlp.down_proj.weight'), D);
    h = h.map((ht, t) => ht.map((a, i) => a + down[t][i]));
  }
  const hn = h.map((ht) => rms(ht, widen(f.get('model.norm.weight')), eps));
  // tied head: one embedding row at a time, widened from bf16 (never the whole matrix as float64)
  const V: number = cfg.vocab_size;
  const logits = ids.map(() => new Float64Array(V));
  const row = new Float64Array(D);
  for (let r = 0; r < V; r++) {
    for (let i = 0; i < D; i++) row[i] = bf16(E[r * D + i]);
    for (let t = 0; t < T; t++) {
      let s = 0;
      for (let i = 0; i < D; i++) s += hn[t][i] * row[i];
      logits[t][r] = s;
    }
  }
  return logits;
}

/** max |a − b| over max |b|: the error on the scale of the logits. */
function scaledError(a: ArrayLike<number>, b: Float64Array[]): number {
  const V = b[0].length;
  let err = 0;
  let scale = 0;
  b.forEach((bt, t) =>
    bt.forEach((y, r) => {
      err = Math.max(err, Math.abs(a[t * V + r] - y));
      scale = Math.max(scale, Math.abs(y));
    }),
  );
  return err / scale;
}

/** The 2-layer Llama-3.2-1B-shaped bf16 checkpoint, made once for this file by `mil init` (removed after it). */
const FIXTURE = tmpFolder('realsize');
let made: Promise<string> | undefined;
const l2 = (): Promise<string> =>
  (made ??= (async () => {
    const dir = join(FIXTURE, 'l2');
    expect(await quiet(['init', '--config', CONFIG, '--out', dir, '--layers', '2', '--seed', '7'])).toBe(0);
    return dir;
  })());
/** It loaded (1.43 GiB of float32), once for this file. */
let loaded: HybridModel | undefined;
const l2Model = async (): Promise<HybridModel> => (loaded ??= loadModel(await l2()));

describe('real shapes: a 2-layer Llama-3.2-1B-shaped bf16 checkpoint from mil init', () => {
  it('loads compactly and gives the logits of an independent float64 forward (reference backend: 1e-9 of the scale of the logits; wasm-simd on bf16 panels: TOL_F32, batched and fused decode)', async () => {
    const dir = await l2();
    expect(readdirSync(dir).sort()).toEqual(['.mil-output.json', 'config.json', 'model.safetensors']); // the marker: lib/io/paths.ts
    const ids = [128000, 791, 8415, 128255]; // BOS, text, the last id
    const want = independentLogits(dir, ids);
    const m = await l2Model();
    expect(m.weights.get('model.embed_tokens.weight').dtype).toBe('float32'); // no float64 copy
    expect(m.llama.ropeScaling.ropeType).toBe('llama3');
    const errors: Record<string, number> = {};
    // wasm-simd: the matrices as bf16 panels in the module, no float32 copy (the tied head IS the embedding)
    const t0 = performance.now();
    const ms = loadModel(dir, { backend: 'wasm-simd' });
    const E = ms.weights.get('model.embed_tokens.weight');
    expect(E).toBeInstanceOf(PackedWeight);
    expect(E.shape).toEqual([128256, 2048]);
    expect(() => E.data).toThrow(DTypeError);
    expect(ms.weights.get('model.norm.weight').dtype).toBe('float32'); // vectors stay arrays
    const simd = await getOps('wasm-simd');
    const batched = await forward(simd, ms, [ids], newCache(ms, 1), { fused: false }); // 4 rows: the 4×8 kernels
    errors['wasm-simd batched'] = scaledError(batched.data, want);
    // the fused decode step (lib/model/fused_step.ts: 1 row, the few-row kernels), the prompt then one token
    const cache = newCache(ms, 1);
    await forward(simd, ms, [ids.slice(0, 3)], cache);
    const step = await forward(simd, ms, [ids.slice(3)], cache);
    errors['wasm-simd fused step'] = scaledError(step.data, want.slice(3));
    console.log(`realsize wasm-simd: load (bf16 panels) and both forwards ${(performance.now() - t0).toFixed(0)} ms`);
    for (const s of await backendStatus()) {
      if (!s.available || s.name !== 'reference') continue;
      const ops = await getOps(s.name);
      const got = await forward(ops, m, [ids], newCache(m, 1), { fused: false });
      expect(got.shape).toEqual([1, ids.length, 128256]);
      errors[s.name] = scaledError(got.data, want);
    }
    console.log('realsize logits, max error / max |logit|:', errors);
    expect(errors.reference).toBeLessThan(1e-9);
    expect(errors['wasm-simd batched']).toBeLessThan(TOL_F32);
    expect(errors['wasm-simd fused step']).toBeLessThan(TOL_F32);
  }, 600_000);

  // speculative decoding at this shape on wasm-simd (issue 24): the draft is the target's own first layer
  // (truncateLayers: the same tensors, so target + draft take the target's memory), greedy output identical to
  // plain decoding; bench/realsize.ts measures it at 16 layers
  it("speculative decoding on wasm-simd with the model's own first layer as the draft (sharing its tensors), and with a draft half wrong, gives plain greedy decoding's tokens", async () => {
    const ms = loadModel(await l2(), { backend: 'wasm-simd' });
    const draft = truncateLayers(ms, 1);
    const panelsOf = (m: HybridModel) => (m.weights.get('model.embed_tokens.weight') as PackedWeight).panels;
    expect(panelsOf(draft) === panelsOf(ms)).toBe(true); // the same bf16 panels in the module, not a copy
    const ops = await getOps('wasm-simd');
    const prompt = [128000, 791, 8415, 374, 264, 1296];
    const t0 = performance.now();
    const plain = await generate(ops, ms, prompt, { maxNewTokens: 6, eos: [] });
    const spec = await speculativeGenerate(ops, ms, new ModelDrafter(ops, draft, 4, 'lazy'), prompt, {
      K: 3,
      maxNewTokens: 6,
      eos: [],
    });
    console.log(
      `realsize speculative: ${spec.rounds.length} rounds, acceptance ${spec.acceptanceRate.toFixed(2)}, ${(performance.now() - t0).toFixed(0)} ms`,
    );
    expect(plain.tokens).toHaveLength(6);
    expect(spec.tokens).toEqual(plain.tokens);
    // the related draft agrees with the target here (random weights: the embedding dominates the residual
    // stream), so rejections are exercised by a draft replaying plain decoding's tokens, half of them wrong
    const wrong = await speculativeGenerate(
      ops,
      ms,
      new OracleDrafter(plain.tokens, prompt.length, ms.llama.vocabSize, 0.5, 3),
      prompt,
      { K: 3, maxNewTokens: 6, eos: [] },
    );
    expect(wrong.rounds.some((r) => r.accepted < r.proposed)).toBe(true);
    expect(wrong.tokens).toEqual(plain.tokens);
  }, 600_000);

  it('a model that cannot fit the wasm-simd module even in bf16 (Llama-3.2-3B-shaped) is refused from its headers before any read, naming the bytes and the limit', () => {
    const dir = tmpFolder('realsize3b');
    const cfg = JSON.parse(readFileSync('configs/llama-3.2-3b.json', 'utf8'));
    copyFileSync('configs/llama-3.2-3b.json', join(dir, 'config.json'));
    // every weight of the config, its shape from the Llama equations (independent of lib/model/load.ts)
    const { hidden_size: D, intermediate_size: F, vocab_size: V, head_dim: hd } = cfg;
    const [H, Hkv] = [cfg.num_attention_heads, cfg.num_key_value_heads];
    const shapes: Record<string, number[]> = { 'model.embed_tokens.weight': [V, D], 'model.norm.weight': [D] };
    for (let l = 0; l < cfg.num_hidden_layers; l++)
      Object.assign(shapes, {
        [`model.layers.${l}.input_layernorm.weight`]: [D],
        [`model.layers.${l}.post_attention_layernorm.weight`]: [D],
        [`model.layers.${l}.self_attn.q_proj.weight`]: [H * hd, D],
        [`model.layers.${l}.self_attn.k_proj.weight`]: [Hkv * hd, D],
        [`model.layers.${l}.self_attn.v_proj.weight`]: [Hkv * hd, D],
        [`model.layers.${l}.self_attn.o_proj.weight`]: [D, H * hd],
        [`model.layers.${l}.mlp.gate_proj.weight`]: [F, D],
        [`model.layers.${l}.mlp.up_proj.weight`]: [F, D],
        [`model.layers.${l}.mlp.down_proj.weight`]: [D, F],
      });
    // a sparse safetensors file: the header, then holes of the data's size (no disk used, nothing read)
    let at = 0;
    const header: Record<string, unknown> = {};
    let bf16Bytes = 0;
    for (const [n, sh] of Object.entries(shapes)) {
      const bytes = 2 * sh.reduce((a, b) => a * b, 1);
      header[n] = { dtype: 'BF16', shape: sh, data_offsets: [at, at + bytes] };
      at += bytes;
      if (sh.length === 2) bf16Bytes += bytes;
    }
    const json = Buffer.from(JSON.stringify(header));
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(json.length));
    const file = join(dir, 'model.safetensors');
    writeFileSync(file, Buffer.concat([prefix, json]));
    truncateSync(file, 8 + json.length + at);
    let err: MemoryError | undefined;
    try {
      loadModel(dir, { backend: 'wasm-simd', memoryLimit: 2 ** 50 });
    } catch (e) {
      err = e as MemoryError;
    }
    expect(err).toBeInstanceOf(MemoryError);
    expect(err!.message).toMatch(/wasm-simd backend's module memory \(bf16 panels/);
    expect(err!.limitBytes).toBe(2 ** 32);
    // counted at 2 bytes a weight (every row count here is a multiple of 8), plus at most the embedding's staging
    expect(err!.needBytes).toBeGreaterThanOrEqual(bf16Bytes);
    expect(err!.needBytes).toBeLessThanOrEqual(bf16Bytes + 2 * V * D + 2 * D * (2 * cfg.num_hidden_layers + 1) * 8);
    expect(bf16Bytes).toBeGreaterThan(2 ** 32);
  });

  // mil convert streamed (lib/model/convert.ts convertFolder): its peak RSS, in a child process, within
  //   160 MiB (node, tsx and the modules: ~90 MB measured) + 3 × one Mamba-2 layer's weights as float64
  // (in_proj, out_proj, conv: what a converted layer holds while it is written), whatever the vocabulary or
  // the depth — here 160 MiB + 3 × 118 MB = 522 MB, where a conversion holding the teacher (1.43 GiB as float32)
  // could not fit; the bound (the teacher's 769 MB + two layers) follows. Measured 362 MB, 3 shards.
  it('mil convert streams it into 200MB shards in bf16: peak RSS within 160 MiB + 3 Mamba layers as float64, the bytes of the in-memory conversion, and the hybrid loads', async () => {
    const dir = await l2();
    const out = join(FIXTURE, 'hybrid');
    const opts = ['--variant', 'mamba2', '--attention', '0.5', '--seed', '3', '--max-shard-size', '200MB'];
    const child = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        join(import.meta.dirname, 'main_child.ts'),
        'convert',
        '--teacher',
        dir,
        '--out',
        out,
        ...opts,
      ],
      { encoding: 'utf8' },
    );
    const r = JSON.parse(lastOf(child.stdout.trim().split('\n'))) as { rc: number; maxRSS: number };
    expect(r.rc, child.stderr).toBe(0);
    const c = parseLlamaConfig(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')), 'config');
    const [D, I, X, H] = [c.hiddenSize, c.numHeads * c.headDim, c.numKvHeads * c.headDim, c.numHeads];
    const mambaLayer = 8 * ((2 * I + 2 * X + H) * D + D * I + (I + 2 * X) * 5); // bytes as float64
    const teacherBytes = statSync(join(dir, 'model.safetensors')).size;
    console.log(
      `streamed convert: peak RSS ${(r.maxRSS / 1e6).toFixed(0)} MB (teacher ${(teacherBytes / 1e6).toFixed(0)} MB, a Mamba layer as float64 ${(mambaLayer / 1e6).toFixed(0)} MB)`,
    );
    expect(r.maxRSS).toBeLessThan(160 * 2 ** 20 + 3 * mambaLayer);
    const shards = readdirSync(out).filter((f) => f.endsWith('.safetensors'));
    expect(shards.length).toBe(3);
    {
      // the in-memory conversion of the loaded teacher, serialised in bf16 at the same shard size: the same bytes
      const h = convert(await l2Model(), { variant: 'mamba2', attentionFraction: 0.5, seed: 3 });
      for (const [f, data] of modelFiles(h, { dtype: 'BF16', shardBytes: 200e6 })) {
        if (f === 'config.json') continue; // the teacher's, with torch_dtype: checked in spec/convert_stream.spec.ts
        const fd = openSync(join(out, f), 'r');
        let pos = 0;
        for (const chunk of typeof data === 'string' ? [Buffer.from(data)] : (data as Iterable<Uint8Array>)) {
          const disk = Buffer.alloc(chunk.length);
          expect(readSync(fd, disk, 0, chunk.length, pos)).toBe(chunk.length);
          expect(Buffer.compare(disk, chunk), `${f} at ${pos}`).toBe(0);
          pos += chunk.length;
        }
        expect(fstatSync(fd).size).toBe(pos);
        closeSync(fd);
      }
    }
    // it loads: every check of loadModel before reading (the full load of streamed output: convert_stream.spec)
    const { plan } = planModel(out);
    expect(plan.weights.get('model.layers.0.mamba.in_proj.weight')?.info.shape).toEqual([2 * I + 2 * X + H, D]);
    const index = JSON.parse(readFileSync(join(out, 'model.safetensors.index.json'), 'utf8'));
    expect(index.metadata.total_size).toBe(plan.storedBytes);
  }, 300_000);
});

describe('mil init and the load-time checks (tiny configs)', () => {
  const tiny = (dir: string, extra: Record<string, unknown> = {}) => {
    const cfg = {
      ...JSON.parse(readFileSync(CONFIG, 'utf8')),
      vocab_size: 300,
      hidden_size: 64,
      intermediate_size: 96,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 16,
      bos_token_id: 1,
      eos_token_id: 2,
      ...extra,
    };
    const p = join(dir, 'tiny.json');
    writeFileSync(p, JSON.stringify(cfg));
    return p;
  };

  it('shards as save_pretrained past --max-shard-size, deterministic from the seed, and loads lazily shard by shard', async () => {
    const root = tmpFolder('init');
    const cfg = tiny(root);
    const a = join(root, 'a');
    const b = join(root, 'b');
    expect(
      await quiet(['init', '--config', cfg, '--out', a, '--layers', '3', '--seed', '5', '--max-shard-size', '60KB']),
    ).toBe(0);
    expect(await quiet(['init', '--config', cfg, '--out', b, '--layers', '3', '--seed', '5'])).toBe(0);
    const shards = readdirSync(a).filter((f) => f.endsWith('.safetensors'));
    expect(shards.length).toBeGreaterThan(1);
    shards.forEach((f, i) =>
      expect(f).toBe(
        `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`,
      ),
    );
    const index = JSON.parse(readFileSync(join(a, 'model.safetensors.index.json'), 'utf8'));
    const ma = loadModel(a);
    const mb = loadModel(b);
    const total = ma.weights.names().reduce((s, n) => s + 2 * ma.weights.get(n).size, 0);
    expect(index.metadata.total_size).toBe(total); // bf16: 2 bytes a value
    for (const n of mb.weights.names()) expect(ma.weights.get(n).data).toEqual(mb.weights.get(n).data); // same seed, other sharding
    const c = join(root, 'c');
    expect(await quiet(['init', '--config', cfg, '--out', c, '--layers', '3', '--seed', '6'])).toBe(0);
    expect(loadModel(c).weights.get('model.layers.0.mlp.up_proj.weight').data).not.toEqual(
      mb.weights.get('model.layers.0.mlp.up_proj.weight').data,
    );
    // a shard missing from the index: named before any weight is read
    rmSync(join(a, shards[1]));
    expect(() => loadModel(a)).toThrow(SafetensorsError);
    expect(() => loadModel(a)).toThrow(new RegExp(`shard '${shards[1]}'.*missing`));
    expect(await quiet(['generate', '--model', a, '--prompt-ids', '1'])).toBe(2);
  });

  it('refuses before reading weights: a dtype the config does not declare, a tokenizer of another vocabulary, too little memory (exit 2)', async () => {
    const root = tmpFolder('init');
    const dir = join(root, 'm');
    expect(await quiet(['init', '--config', tiny(root), '--out', dir, '--layers', '1', '--dtype', 'f32'])).toBe(0);
    expect(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')).torch_dtype).toBe('float32');
    const m = loadModel(dir);
    expect(() => loadModel(dir, { memoryLimit: 1000 })).toThrow(MemoryError);
    const need = m.weights.names().reduce((s, n) => s + 4 * m.weights.get(n).size, 0);
    expect(() => loadModel(dir, { memoryLimit: need })).not.toThrow();
    expect(() => loadModel(dir, { memoryLimit: need - 1 })).toThrow(/over the memory limit/);
    const cfgPath = join(dir, 'config.json');
    const cfg = JSON.parse(readFileSync(cfgPath, 'utf8'));
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, torch_dtype: 'bfloat16' }));
    expect(() => loadModel(dir)).toThrow(ConfigError);
    expect(() => loadModel(dir)).toThrow(/stored as F32.*'torch_dtype' is "bfloat16"/);
    writeFileSync(cfgPath, JSON.stringify(cfg));
    const vocab = Object.fromEntries(Array.from({ length: 290 }, (_, i) => [`t${i}`, i]));
    writeFileSync(
      join(dir, 'tokenizer.json'),
      JSON.stringify({ model: { type: 'BPE', vocab, merges: [] }, added_tokens: [{ id: 299, content: '<s>' }] }),
    );
    expect(() => loadModel(dir)).not.toThrow(); // 290 + an added token at 299: 300 tokens
    writeFileSync(
      join(dir, 'tokenizer.json'),
      JSON.stringify({ model: { type: 'BPE', vocab, merges: [] }, added_tokens: [{ id: 300, content: '<s>' }] }),
    );
    expect(() => loadModel(dir)).toThrow(/301 tokens .* vocab_size 300/);
    expect(await quiet(['generate', '--model', dir, '--prompt-ids', '1'])).toBe(2);
    expect(existsSync(join(dir, 'model.safetensors'))).toBe(true);
  });

  it('wasm-simd takes a BF16 checkpoint as bf16 panels: logits bit-identical to float32 panels of the same weights (bf16Panels: false, MIL_SIMD_BF16=0), batched and fused; a NaN word named at load; F32 stays arrays', async () => {
    const root = tmpFolder('init');
    const dir = join(root, 'm');
    expect(await quiet(['init', '--config', tiny(root), '--out', dir, '--layers', '2', '--seed', '3'])).toBe(0);
    const a = loadModel(dir, { backend: 'wasm-simd' });
    const b = loadModel(dir, { backend: 'wasm-simd', bf16Panels: false });
    process.env.MIL_SIMD_BF16 = '0';
    try {
      expect(loadModel(dir, { backend: 'wasm-simd' }).weights.get('model.embed_tokens.weight')).not.toBeInstanceOf(
        PackedWeight,
      );
    } finally {
      delete process.env.MIL_SIMD_BF16;
    }
    for (const n of ['model.embed_tokens.weight', 'model.layers.1.mlp.down_proj.weight'])
      expect([a.weights.get(n) instanceof PackedWeight, b.weights.get(n) instanceof PackedWeight]).toEqual([
        true,
        false,
      ]);
    expect(a.weights.names()).toEqual(b.weights.names()); // the checkpoint's order either way
    const ops = await getOps('wasm-simd');
    const ids = [1, 5, 7, 299, 3];
    for (const fused of [false, true]) {
      const ya = await forward(ops, a, [ids], newCache(a, 1), { fused });
      const yb = await forward(ops, b, [ids], newCache(b, 1), { fused });
      expect(Array.from(ya.data), `fused ${fused}`).toEqual(Array.from(yb.data));
    }
    const c1 = newCache(a, 1);
    await forward(ops, a, [ids.slice(0, 2)], c1);
    const c2 = newCache(b, 1);
    await forward(ops, b, [ids.slice(0, 2)], c2);
    expect(Array.from((await forward(ops, a, [[9]], c1)).data)).toEqual(
      Array.from((await forward(ops, b, [[9]], c2)).data),
    ); // the fused one-token step
    // a NaN in a matrix's bf16 words: named with its index when packed
    const file = join(dir, 'model.safetensors');
    const buf = readFileSync(file);
    const n = Number(buf.readBigUInt64LE(0));
    const e = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'))['model.layers.1.mlp.up_proj.weight'];
    buf.writeUInt16LE(0x7fc0, 8 + n + e.data_offsets[0] + 2 * 5);
    writeFileSync(file, buf);
    expect(() => loadModel(dir, { backend: 'wasm-simd' })).toThrow(NonFiniteError);
    expect(() => loadModel(dir, { backend: 'wasm-simd' })).toThrow(/up_proj.weight'.*NaN at flat index 5/);
    const f = join(root, 'f32');
    expect(await quiet(['init', '--config', tiny(root), '--out', f, '--layers', '1', '--dtype', 'f32'])).toBe(0);
    expect(loadModel(f, { backend: 'wasm-simd' }).weights.get('model.embed_tokens.weight').dtype).toBe('float32');
    expect(loadModel(f, { backend: 'wasm-simd' }).weights.get('model.embed_tokens.weight')).not.toBeInstanceOf(
      PackedWeight,
    );
  });

  it('init: bad options and configs exit 2 and write nothing; the shipped configs parse', async () => {
    const root = tmpFolder('init');
    const out = join(root, 'x');
    expect(await quiet(['init', '--config', tiny(root), '--out', out, '--max-shard-size', 'lots'])).toBe(2);
    expect(
      await quiet(['init', '--config', tiny(root, { rope_scaling: { rope_type: 'yarn', factor: 4 } }), '--out', out]),
    ).toBe(2);
    expect(await quiet(['init', '--config', tiny(root), '--out', out, '--variant', 'mamba2'])).toBe(2);
    expect(existsSync(out)).toBe(false);
    const dims = (f: string) => {
      const c = parseLlamaConfig(JSON.parse(readFileSync(`configs/${f}.json`, 'utf8')), f);
      return [
        c.vocabSize,
        c.hiddenSize,
        c.intermediateSize,
        c.numLayers,
        c.numHeads,
        c.numKvHeads,
        c.headDim,
        c.tieWordEmbeddings,
        c.ropeTheta,
        c.ropeScaling.ropeType,
      ];
    };
    expect(dims('llama-3.2-1b')).toEqual([128256, 2048, 8192, 16, 32, 8, 64, true, 500000, 'llama3']);
    expect(dims('llama-3.2-3b')).toEqual([128256, 3072, 8192, 28, 24, 8, 128, true, 500000, 'llama3']);
    expect(dims('tinyllama-1.1b')).toEqual([32000, 2048, 5632, 22, 32, 4, 64, false, 10000, 'default']);
    for (const f of ['llama-3.2-1b', 'tinyllama-1.1b']) {
      const d = join(root, f);
      expect(
        await quiet(['init', '--config', tiny(root, pick(`configs/${f}.json`)), '--out', d, '--layers', '1']),
      ).toBe(0);
      expect(loadModel(d).weights.has('lm_head.weight')).toBe(f === 'tinyllama-1.1b'); // tied: no lm_head written
    }
  });
});

/** The dimension-free fields of a shipped config (its rope, tie, dtype, ids) on the tiny shape. */
function pick(path: string): Record<string, unknown> {
  const c = JSON.parse(readFileSync(path, 'utf8'));
  return {
    rope_scaling: c.rope_scaling,
    rope_theta: c.rope_theta,
    tie_word_embeddings: c.tie_word_embeddings,
    torch_dtype: c.torch_dtype,
  };
}
