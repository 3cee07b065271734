/**
 * The onnxruntime-node peer (its CPU execution provider, MLAS kernels) of the product and decode benches:
 * graphs written here as ONNX protobuf with onnx-proto. session.run is async, so a time measured through it
 * includes the promise round trip its callers pay.
 *
 *   ortMatMul          y = x·w, one MatMul node (bench/gemv.ts), one intra-op thread
 *   ortLlamaDecoder    a plain Llama decoding with its KV cache (bench/models.ts), on 1 or more threads
 */
import ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import type { HybridModel } from '../../lib/model/hybrid.js';
import { attentionNames, attentionRope } from '../../lib/model/mixers/attention.js';
import { blockNames, lmHeadName } from '../../lib/model/mixers/block.js';
import { mlpNames } from '../../lib/model/mixers/mlp.js';
import { argmax } from '../../lib/model/generate.js';

const { onnx } = onnxProto;
const FLOAT = 1; // onnx.TensorProto.DataType.FLOAT
const INT64 = 7; // onnx.TensorProto.DataType.INT64
const ATTR_INT = 2; // onnx.AttributeProto.AttributeType.INT
const ATTR_INTS = 7; // onnx.AttributeProto.AttributeType.INTS

/** A graph input or output: its name, element type and dims (a string: a dimension named, of any size). */
const io = (name: string, dims: Array<number | string>, elemType = FLOAT) => ({
  name,
  type: {
    tensorType: {
      elemType,
      shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
    },
  },
});

const bytesOf = (a: Float32Array | BigInt64Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** An onnxruntime session computing y = x·w for x (M×K) and the constant w (K×N) — one MatMul node. */
export async function ortMatMul(M: number, K: number, N: number, wt: Float32Array): Promise<ort.InferenceSession> {
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    producerName: 'mamba-in-llama bench/gemv.ts',
    graph: {
      name: 'gemv',
      input: [io('x', [M, K])],
      output: [io('y', [M, N])],
      initializer: [{ name: 'w', dims: [K, N], dataType: FLOAT, rawData: bytesOf(wt) }],
      node: [{ opType: 'MatMul', input: ['x', 'w'], output: ['y'] }],
    },
  });
  return ort.InferenceSession.create(onnx.ModelProto.encode(model).finish(), {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
  });
}

/** Greedy decoding on an onnxruntime session; `prompt` fed one token per step (untimed), then `newTokens` steps timed. */
interface OrtDecoder {
  decode(prompt: number[], newTokens: number): Promise<{ tokens: number[]; msPerToken: number }>;
}

/**
 * A plain Llama (every layer attention, no biases) as onnxruntime runs a decoder exported with its KV cache:
 * `input_ids` (1) and its position `pos` (1) in, with every layer's `past.i.key`, `past.i.value`
 * (H_kv, T, hd); the logits (1, V) and `present.i.key`, `present.i.value` (H_kv, T+1, hd) out — the
 * past_key_values graph of an HF export, built here node by node from ONNX primitives:
 *
 *   h = Gather(embed, id)                                                 (1, d)
 *   per layer:  n = h / √(mean(h²) + ε) · w₁        RMSNorm: Pow, ReduceMean, Add, Sqrt, Div, Mul (which ORT's
 *                                                   optimizer fuses into SimplifiedLayerNormalization)
 *               q, k, v = n·W_qᵀ, n·W_kᵀ, n·W_vᵀ     MatMul on the transposed weights, as an export has them
 *               q, k ← x·cos θ + rotate_half(x)·sin θ   θ = pos·inv (hd/2, twice), rotate_half(x) = [−x₂, x₁]
 *               K, V = Concat(past, k), Concat(past, v)  → present
 *               h += softmax(q·Kᵀ/√hd)·V · W_oᵀ      query head j reads kv head ⌊j/(H/H_kv)⌋
 *               h += (silu(n₂·W_gateᵀ) ⊙ n₂·W_upᵀ)·W_downᵀ    n₂ = rmsnorm(h)·w₂
 *   logits = rmsnorm(h)·w · W_headᵀ
 *
 * float32 throughout (ours computes norms and RoPE in float64, so greedy tokens are compared, not bits).
 */
export async function ortLlamaDecoder(m: HybridModel, threads: number): Promise<OrtDecoder> {
  const c = m.llama;
  if (m.mamba || c.attentionBias) throw new Error('ortLlamaDecoder: a plain Llama without biases');
  const { hiddenSize: d, numHeads: H, numKvHeads: Hkv, headDim: hd, vocabSize: V } = c;
  const init: Array<{ name: string; dims: number[]; dataType: number; rawData: Uint8Array }> = [];
  const nodes: Array<{ opType: string; input: string[]; output: string[]; attribute: object[] }> = [];
  const f32 = (name: string, dims: number[], a: ArrayLike<number>) => {
    init.push({ name, dims, dataType: FLOAT, rawData: bytesOf(Float32Array.from(a)) });
    return name;
  };
  const i64 = (name: string, a: number[]) => {
    init.push({ name, dims: [a.length], dataType: INT64, rawData: bytesOf(BigInt64Array.from(a.map(BigInt))) });
    return name;
  };
  const weight = (name: string) => m.weights.get(name).data;
  /** W (N×K) as the (K×N) initializer a MatMul takes. */
  const weightT = (name: string) => {
    const w = weight(name);
    const [N, K] = m.weights.get(name).shape as [number, number];
    const t = new Float32Array(K * N); // (K, N)
    for (let o = 0; o < N; o++) for (let k = 0; k < K; k++) t[k * N + o] = w[o * K + k];
    return f32(name, [K, N], t);
  };
  let count = 0;
  /** A node; its output named after it, or `out`. */
  const op = (opType: string, input: string[], attrs: Record<string, number | number[]> = {}, out?: string) => {
    const output = out ?? `${opType}_${count++}`;
    const attribute = Object.entries(attrs).map(([name, v]) =>
      Array.isArray(v) ? { name, type: ATTR_INTS, ints: v } : { name, type: ATTR_INT, i: v },
    );
    nodes.push({ opType, input, output: [output], attribute });
    return output;
  };
  const two = f32('two', [], [2]);
  const eps = f32('eps', [], [c.rmsNormEps]);
  const rms = (x: string, w: string) => {
    const ms = op('ReduceMean', [op('Pow', [x, two])], { axes: [-1] }); // (1, 1)
    return op('Mul', [op('Div', [x, op('Sqrt', [op('Add', [ms, eps])])]), f32(w, [d], weight(w))]);
  };
  const ang = op('Mul', ['pos', f32('rope_inv', [hd / 2], attentionRope(c, 0, 1).inv)]); // (hd/2)
  const cos = op('Concat', [op('Cos', [ang]), op('Cos', [ang])], { axis: 0 }); // (hd)
  const sin = op('Concat', [op('Sin', [ang]), op('Sin', [ang])], { axis: 0 }); // (hd)
  const [s0, sMid, sEnd, ax1] = [i64('s0', [0]), i64('s_mid', [hd / 2]), i64('s_end', [hd]), i64('ax1', [1])];
  const rope = (x: string) => {
    const x1 = op('Slice', [x, s0, sMid, ax1]);
    const x2 = op('Slice', [x, sMid, sEnd, ax1]);
    const rot = op('Concat', [op('Neg', [x2]), x1], { axis: 1 });
    return op('Add', [op('Mul', [x, cos]), op('Mul', [rot, sin])]);
  };
  const shQ = i64('sh_q', [H, hd]);
  const shK = i64('sh_k', [Hkv, hd]);
  const shK3 = i64('sh_k3', [Hkv, 1, hd]);
  const shG = i64('sh_g', [Hkv, H / Hkv, hd]);
  const shRow = i64('sh_row', [1, H * hd]);
  const scale = f32('scale', [], [1 / Math.sqrt(hd)]);
  const inputs = [io('input_ids', [1], INT64), io('pos', [1])];
  const outputs = [io('logits', [1, V])];
  let h = op('Gather', [f32('embed', [V, d], weight('model.embed_tokens.weight')), 'input_ids'], { axis: 0 }); // (1, d)
  for (let i = 0; i < c.numLayers; i++) {
    const { prefix: p, norm1, norm2 } = blockNames(i);
    const a = attentionNames(c, p);
    const f = mlpNames(p);
    const x = rms(h, norm1); // (1, d)
    const q = rope(op('Reshape', [op('MatMul', [x, weightT(a.q.weight)]), shQ])); // (H, hd)
    const k = op('Reshape', [rope(op('Reshape', [op('MatMul', [x, weightT(a.k.weight)]), shK])), shK3]); // (H_kv, 1, hd)
    const v = op('Reshape', [op('MatMul', [x, weightT(a.v.weight)]), shK3]); // (H_kv, 1, hd)
    const [pk, pv] = [`present.${i}.key`, `present.${i}.value`];
    op('Concat', [`past.${i}.key`, k], { axis: 1 }, pk); // (H_kv, T+1, hd)
    op('Concat', [`past.${i}.value`, v], { axis: 1 }, pv); // (H_kv, T+1, hd)
    inputs.push(io(`past.${i}.key`, [Hkv, 'T', hd]), io(`past.${i}.value`, [Hkv, 'T', hd]));
    outputs.push(io(pk, [Hkv, 'T1', hd]), io(pv, [Hkv, 'T1', hd]));
    const kT = op('Transpose', [pk], { perm: [0, 2, 1] }); // (H_kv, hd, T+1)
    const s = op('Mul', [op('MatMul', [op('Reshape', [q, shG]), kT]), scale]); // (H_kv, H/H_kv, T+1)
    const att = op('Reshape', [op('MatMul', [op('Softmax', [s], { axis: -1 }), pv]), shRow]); // (1, H·hd)
    h = op('Add', [h, op('MatMul', [att, weightT(a.o.weight)])]); // (1, d)
    const x2 = rms(h, norm2); // (1, d)
    const gate = op('MatMul', [x2, weightT(f.gate)]); // (1, F)
    const up = op('MatMul', [x2, weightT(f.up)]); // (1, F)
    const act = op('Mul', [op('Mul', [gate, op('Sigmoid', [gate])]), up]); // (1, F)
    h = op('Add', [h, op('MatMul', [act, weightT(f.down)])]); // (1, d)
  }
  op('MatMul', [rms(h, 'model.norm.weight'), weightT(lmHeadName(m))], {}, 'logits'); // (1, V)
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    producerName: 'mamba-in-llama bench/models.ts',
    graph: { name: 'llama_decode', input: inputs, output: outputs, initializer: init, node: nodes },
  });
  const session = await ort.InferenceSession.create(onnx.ModelProto.encode(model).finish(), {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
  return {
    async decode(prompt, newTokens) {
      const feeds: Record<string, ort.Tensor> = {};
      for (let i = 0; i < c.numLayers; i++)
        for (const kv of ['key', 'value'])
          feeds[`past.${i}.${kv}`] = new ort.Tensor('float32', new Float32Array(0), [Hkv, 0, hd]);
      /** One token at position pos; the greedy next. */
      const step = async (id: number, pos: number): Promise<number> => {
        feeds.input_ids = new ort.Tensor('int64', BigInt64Array.of(BigInt(id)), [1]);
        feeds.pos = new ort.Tensor('float32', Float32Array.of(pos), [1]);
        const out = await session.run(feeds);
        for (let i = 0; i < c.numLayers; i++)
          for (const kv of ['key', 'value']) feeds[`past.${i}.${kv}`] = out[`present.${i}.${kv}`];
        return argmax(out.logits.data as Float32Array);
      };
      let next = 0;
      for (const [pos, id] of prompt.entries()) next = await step(id, pos);
      const tokens: number[] = [];
      const t0 = performance.now();
      for (let k = 0; k < newTokens; k++) {
        tokens.push(next);
        next = await step(next, prompt.length + k);
      }
      return { tokens, msPerToken: (performance.now() - t0) / newTokens };
    },
  };
}
