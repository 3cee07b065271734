/**
 * Algorithm 1 (PAPER.md §2): turn a trained Llama into a hybrid whose replaced attention layers become
 * Mamba layers initialised from the attention weights. For each replaced layer:
 *   x ← W^V,  B ← W^K,  C ← W^Q,  out_proj ← W^O;  MLP and both norms copied (kept)
 * and the fresh parameters are initialised as upstream does (mamba/ and mamba2/hybrid_mamba_layer.py,
 * with PyTorch's default nn.Linear / nn.Conv1d init U(±1/√fan_in) where upstream leaves it):
 *   Δ bias     = inverse_softplus(dt), dt = exp(U[log 1e-3, log 1e-1]) floored at 1e-4
 *   Mamba-1    d_inner = heads·head_dim, d_xb = kv_heads·head_dim, d_state 16; A_log = log(1..16) per channel;
 *              D = 1; dt_proj_down (D → ⌈D/16⌉, no bias) U(±1/√D); dt_proj weight U(±rank^−½);
 *              in_proj_z U(±1/√D); conv1d (k = 4, depthwise) weight and bias U(±½)
 *   Mamba-2    heads = ngroups = attention heads, headdim = d_state = head_dim; in_proj rows
 *              [z | x ← V | B ← K | C ← Q | dt], the z and dt rows U(±1/√D); A = U(1, 16) per head (A_log = log A);
 *              D = 1 per head; conv1d over [x, B, C] U(±½); gated-norm weight 1
 * Every random draw comes from the seeded generator, and fresh values are rounded to float32 (what is
 * saved), so convert → save → load gives back exactly the converted model.
 * Kept attention layers: `attnLayers`, or a fraction mapped to the paper's schedule (50% → odd layers, …);
 * they keep every attention tensor, biases included. A replaced layer's q/k/v/o biases (attention_bias:
 * true) are dropped, as upstream's bias-free Mamba projections do; convertFolder lists them.
 * The teacher's tokenizer files (`tokenizerFiles`: tokenizer.json, tokenizer_config.json) are copied into
 * the converted folder, so the hybrid reads text exactly as its teacher did.
 *
 * Symbols: D = hidden_size (d) · W^Q (n·hd, D), W^K, W^V (n_kv·hd, D), W^O (D, n·hd) the attention's projections ·
 * n, n_kv heads and key/value heads of width hd · d_inner = n·hd, d_xb = n_kv·hd · N = d_state · Δ the step size,
 * A = −exp(A_log) · U(a, b) a uniform draw.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ArgumentError } from '../errors.js';
import { inverseSoftplus } from '../ref/activations.js';
import { Rng } from '../rng.js';
import { Tensor, sizeOf } from '../tensor.js';
import { writeFolder, type WriteData, type WriteOptions } from '../io/writer.js';
import { storedTensor, type TensorSource, type WriteDType } from '../io/safetensors.js';
import {
  attentionLayersFor,
  parseLlamaConfig,
  parseMambaConfig,
  type LlamaConfig,
  type MambaConfig,
  type MambaVariant,
} from './config.js';
import { layerKinds, type HybridModel } from './hybrid.js';
import type { LayerKind } from './mixers/block.js';
import { checkPlannedLlama, planModel } from './load.js';
import { TORCH_DTYPE } from './init.js';
import { HF_MAX_SHARD_BYTES, WeightStore, checkpointFiles, readPlannedWeight, type CheckpointPlan } from './weights.js';
import { lookup } from '../checked.js';

export interface ConvertOptions {
  variant: MambaVariant;
  /** layers that keep attention; or use attentionFraction */
  attnLayers?: number[];
  attentionFraction?: number;
  seed: number;
  /** Mamba-1 only: 'upstream' (default: what the released code computes) or 'clean' (the paper's). */
  semantics?: 'upstream' | 'clean';
  /** Mamba-1 state size (default 16) */
  dState?: number;
  /**
   * 'attention' (default, Algorithm 1): x, B, C and out_proj from v, k, q and o_proj; 'random': the same
   * matrices drawn fresh, U(±1/√fan_in) like the other new weights — the ablation of Tables 7/8
   */
  init?: 'attention' | 'random';
}

const f32 = Math.fround;

function uniform(rng: Rng, shape: number[], bound: number, name: string): Tensor {
  return Tensor.from(
    Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => f32(rng.uniform(-bound, bound))),
    shape,
    'float64',
    name,
  );
}

/** inverse-softplus Δ bias, dt log-uniform in [1e-3, 1e-1] floored at 1e-4 (upstream's dt init). */
function deltaBias(rng: Rng, n: number): Tensor {
  return Tensor.from(
    Array.from({ length: n }, () => {
      const dt = Math.max(1e-4, Math.exp(rng.uniform(Math.log(1e-3), Math.log(1e-1))));
      return f32(inverseSoftplus(dt));
    }),
    [n],
  );
}

export function convert(teacher: HybridModel, o: ConvertOptions): HybridModel {
  if (teacher.mamba) throw new ArgumentError('teacher', 'a plain Llama (no mamba_config.json)', 'a hybrid');
  const mamba = hybridConfig(teacher.llama, o);
  const T = teacher.weights;
  const out = new Map<string, Tensor>();
  const rng = new Rng(o.seed);
  const model: HybridModel = { llama: teacher.llama, mamba, weights: new WeightStore(out, 'converted') };
  for (const name of T.names()) if (!name.includes('.self_attn.')) out.set(name, T.get(name));
  const source: TeacherSource = { names: () => T.names(), get: (n) => T.get(n) };
  layerKinds(model).forEach((kind, i) => {
    for (const [n, t] of convertLayer(source, kind, i, mamba, rng, o)) out.set(n, t);
  });
  return model;
}

/** What Algorithm 1 reads of a teacher: its weights' names, and one weight at a time (in memory or from disk). */
interface TeacherSource {
  names(): string[];
  get(name: string): Tensor;
}

/** The hybrid's mamba_config of a conversion of Llama `c` (its options checked: layer indices, variant). */
function hybridConfig(c: LlamaConfig, o: ConvertOptions): MambaConfig {
  const attnLayers = o.attnLayers ?? attentionLayersFor(o.attentionFraction ?? 0.5, c.numLayers);
  for (const l of attnLayers)
    if (!Number.isInteger(l) || l < 0 || l >= c.numLayers)
      throw new ArgumentError('attnLayers', `layer indices in [0, ${c.numLayers})`, attnLayers);
  if (new Set(attnLayers).size !== attnLayers.length)
    throw new ArgumentError('attnLayers', 'distinct layer indices', attnLayers);
  if (o.variant !== 'mamba1' && o.variant !== 'mamba2')
    throw new ArgumentError('variant', "'mamba1' or 'mamba2'", o.variant);
  const dModel = c.hiddenSize;
  const dInner = c.numHeads * c.headDim;
  const dXb = c.numKvHeads * c.headDim;
  const dState = o.variant === 'mamba1' ? (o.dState ?? 16) : c.headDim;
  const raw: Record<string, unknown> = {
    d_model: dModel,
    ssm_cfg:
      o.variant === 'mamba1' ? { expand: 1, d_state: dState } : { expand: 1, ngroups: c.numHeads, d_state: c.headDim },
    rms_norm_eps: c.rmsNormEps,
    vocab_size: c.vocabSize,
    d_inner: dInner,
    d_xb: dXb,
    intermediate_size: c.intermediateSize,
    hidden_act: 'silu',
    n_layer: c.numLayers,
    attn_layers: [...attnLayers].sort((a, b) => a - b),
  };
  return parseMambaConfig(
    raw,
    o.variant,
    'converted mamba_config',
    o.variant === 'mamba1' ? (o.semantics ?? 'upstream') : 'upstream',
  );
}

/**
 * Layer `i`'s weights in the hybrid, other than its MLP and norms (copied as they are): a kept layer's
 * attention tensors, or the Mamba layer of Algorithm 1 — its fresh parameters drawn from `rng` in a fixed
 * order, so a conversion that starts each layer from the generator state the previous layers left gives the
 * same weights, whatever order the layers are made in.
 */
function convertLayer(
  T: TeacherSource,
  kind: LayerKind,
  i: number,
  mamba: MambaConfig,
  rng: Rng,
  o: ConvertOptions,
): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  const p = `model.layers.${i}`;
  const { dModel, dInner, dXb, dState } = mamba;
  const att = (w: string) => {
    const t = T.get(`${p}.self_attn.${w}_proj.weight`); // (n·hd, d) for q, (n_kv·hd, d) for k and v
    return o.init === 'random' ? uniform(rng, [...t.shape], 1 / Math.sqrt(t.shape[1]), `${w} (random init)`) : t;
  };
  if (kind === 'attention') {
    // a kept layer keeps every attention tensor, biases included (attention_bias: true)
    for (const n of T.names()) if (n.startsWith(`${p}.self_attn.`)) out.set(n, T.get(n));
    return out;
  }
  const q = `${p}.mamba`;
  if (kind === 'mamba1') {
    const R = mamba.dtRank;
    out.set(`${q}.in_proj_x.weight`, att('v'));
    out.set(`${q}.B_proj.weight`, att('k'));
    out.set(`${q}.C_proj.weight`, att('q'));
    out.set(`${q}.out_proj.weight`, att('o'));
    out.set(`${q}.in_proj_z.weight`, uniform(rng, [dInner, dModel], 1 / Math.sqrt(dModel), 'in_proj_z'));
    out.set(`${q}.dt_proj_down.weight`, uniform(rng, [R, dModel], 1 / Math.sqrt(dModel), 'dt_proj_down'));
    out.set(`${q}.dt_proj.weight`, uniform(rng, [dInner, R], R ** -0.5, 'dt_proj'));
    out.set(`${q}.dt_proj.bias`, deltaBias(rng, dInner));
    out.set(`${q}.conv1d.weight`, uniform(rng, [dInner, 1, mamba.dConv], 1 / Math.sqrt(mamba.dConv), 'conv1d'));
    out.set(`${q}.conv1d.bias`, uniform(rng, [dInner], 1 / Math.sqrt(mamba.dConv), 'conv1d.bias'));
    out.set(
      `${q}.A_log`,
      Tensor.from(
        Array.from({ length: dInner * dState }, (_, k) => f32(Math.log((k % dState) + 1))),
        [dInner, dState],
      ),
    );
    out.set(`${q}.D`, Tensor.full([dInner], 1));
  } else {
    const H = mamba.nHeads;
    const z = uniform(rng, [dInner, dModel], 1 / Math.sqrt(dModel), 'z rows'); // (d_in, d)
    const dtRows = uniform(rng, [H, dModel], 1 / Math.sqrt(dModel), 'dt rows'); // (H, d)
    out.set(
      `${q}.in_proj.weight`,
      Tensor.concat(
        [z, att('v'), att('k'), att('q'), dtRows].map((t) => t.astype('float64')),
        0,
      ).named('in_proj'),
    ); // teacher weights are read as float32
    out.set(`${q}.out_proj.weight`, att('o'));
    const convDim = dInner + 2 * dXb;
    out.set(`${q}.conv1d.weight`, uniform(rng, [convDim, 1, mamba.dConv], 1 / Math.sqrt(mamba.dConv), 'conv1d'));
    out.set(`${q}.conv1d.bias`, uniform(rng, [convDim], 1 / Math.sqrt(mamba.dConv), 'conv1d.bias'));
    out.set(`${q}.dt_bias`, deltaBias(rng, H));
    out.set(
      `${q}.A_log`,
      Tensor.from(
        Array.from({ length: H }, () => f32(Math.log(rng.uniform(1, 16)))),
        [H],
      ),
    );
    out.set(`${q}.D`, Tensor.full([H], 1));
    out.set(`${q}.norm.weight`, Tensor.full([dInner], 1));
  }
  return out;
}

/** Teacher tensors that a conversion left out: the q/k/v/o biases of replaced layers (see above). */
function leftOut(teacherNames: string[], kept: (name: string) => boolean): string[] {
  return teacherNames.filter((n) => n.includes('.self_attn.') && n.endsWith('.bias') && !kept(n));
}

/**
 * The files of a model folder: config.json (the base Llama's, unchanged), and for a hybrid
 * mamba_config.json in MambaInLlama's format plus `mil_config.json` ({ variant, semantics }: this
 * project's keys, which the upstream loader never reads — its MambaConfig dataclass would reject unknown
 * keys), and the weights (float32; sharded above `shardBytes`).
 */
export function modelFiles(
  m: HybridModel,
  opts: { shardBytes?: number; dtype?: WriteDType } = {},
): Array<[string, WriteData]> {
  const tensors: Record<string, Tensor> = {};
  for (const n of m.weights.names()) tensors[n] = m.weights.get(n);
  return folderFiles(m.llama.raw, m.mamba, tensors, opts);
}

/** modelFiles from the parts: config.json's content, the Mamba config, the tensors (in memory or lazy). */
function folderFiles(
  config: Record<string, unknown>,
  mamba: MambaConfig | undefined,
  tensors: Record<string, TensorSource>,
  opts: { shardBytes?: number; dtype?: WriteDType },
): Array<[string, WriteData]> {
  const files = checkpointFiles(tensors, { dtype: opts.dtype ?? 'F32', shardBytes: opts.shardBytes });
  if (mamba) {
    files.push(['mamba_config.json', JSON.stringify(mamba.raw, null, 4) + '\n']);
    files.push([
      'mil_config.json',
      JSON.stringify({ variant: mamba.variant, semantics: mamba.semantics }, null, 1) + '\n',
    ]);
  }
  files.push(['config.json', JSON.stringify(config, null, 2) + '\n']);
  return files;
}

/** saveModel's options: shard size, the dtype written, extra files, and the writer's options. */
export type SaveOptions = {
  shardBytes?: number;
  dtype?: WriteDType;
  extra?: Array<[string, WriteData]>;
} & WriteOptions;

/**
 * Write a model folder through the one writer: the folder is replaced as a whole (a previous model there
 * stays intact until the new one is complete), `extra` files are written beside the model's.
 */
export function saveModel(dir: string, m: HybridModel, opts: SaveOptions = {}): void {
  writeFiles(dir, modelFiles(m, opts), opts);
}

function writeFiles(dir: string, files: Array<[string, WriteData]>, opts: SaveOptions): void {
  writeFolder(
    dir,
    (stage) => {
      for (const [rel, data] of [...files, ...(opts.extra ?? [])]) stage.writeFile(rel, data);
    },
    opts,
  );
}

/**
 * `mil convert`: Algorithm 1 from a teacher folder on disk to a hybrid folder, streamed. Everything is
 * checked from the configs and the checkpoint's headers first (planModel and checkPlannedLlama: a missing
 * shard, a dtype the config does not declare, a missing or misshapen weight — before any weight is read,
 * before anything is written). Then the hybrid's files are written through the one writer (the folder
 * appears whole or not at all), sharded as save_pretrained past `shardBytes` (default HF_MAX_SHARD_BYTES), in
 * the teacher's dtype unless `dtype` says otherwise, with the same tensors in the same order as
 * convert → saveModel — the same bytes for the same dtype and shard size. Memory: the teacher is never held;
 * a weight copied as it is (embedding, MLP, norms, kept attention) goes from its shard to the output in pieces
 * (storedTensor), a converted layer is made when its first tensor is written and dropped at the next layer —
 * one layer's tensors in memory, as float64, whatever the model's size. Each Mamba layer starts from the
 * generator state the previous layers left, found by a first pass that draws every layer's fresh values once
 * (on zero stand-ins for the teacher's matrices, nothing read) and keeps the state at each layer's start.
 */
export function convertFolder(
  teacherDir: string,
  outDir: string,
  o: ConvertOptions & SaveOptions,
): { mamba: MambaConfig; dtype: WriteDType; shards: number; dropped: string[] } {
  const { llama, plan } = planModel(teacherDir);
  if (existsSync(join(teacherDir, 'mamba_config.json')))
    throw new ArgumentError('teacher', 'a plain Llama (no mamba_config.json)', 'a hybrid');
  checkPlannedLlama(llama, plan);
  const mamba = hybridConfig(llama, o);
  const dtype = o.dtype ?? storedDtype(plan);
  const names = [...plan.weights.keys()];
  const stored = (n: string) => storedTensor(lookup(plan.weights, n).header, n);
  const kinds = layerKinds({ llama, mamba, weights: new WeightStore(new Map(), teacherDir) });
  // pass 1: the generator state at each layer's start, and the names and shapes each layer makes
  const zeros: TeacherSource = {
    names: () => names,
    get: (n) =>
      new Tensor(new Float32Array(sizeOf(lookup(plan.weights, n).info.shape)), lookup(plan.weights, n).info.shape, n),
  };
  const rng = new Rng(o.seed);
  const starts = kinds.map((kind, i) => {
    const state = rng.state();
    const shapes = new Map([...convertLayer(zeros, kind, i, mamba, rng, o)].map(([n, t]) => [n, t.shape]));
    return { state, shapes };
  });
  // pass 2, as the files are written: each tensor made when its bytes are
  const disk: TeacherSource = { names: () => names, get: (n) => readPlannedWeight(plan, n) };
  let made: { layer: number; tensors: Map<string, Tensor> } | undefined;
  const layerTensor = (i: number, n: string): Tensor => {
    if (made?.layer !== i) {
      made = undefined; // the previous layer's tensors go before this one's are made
      made = { layer: i, tensors: convertLayer(disk, kinds[i], i, mamba, Rng.fromState(starts[i].state), o) };
    }
    return lookup(made.tensors, n);
  };
  const tensors: Record<string, TensorSource> = {};
  for (const n of names) if (!n.includes('.self_attn.')) tensors[n] = stored(n);
  starts.forEach(({ shapes }, i) => {
    for (const [n, shape] of shapes)
      tensors[n] = plan.weights.has(n) ? stored(n) : { shape, size: sizeOf(shape), make: () => layerTensor(i, n) };
  });
  const config: Record<string, unknown> = { ...llama.raw, torch_dtype: TORCH_DTYPE[dtype] };
  delete config.dtype; // the newer spelling of torch_dtype: one key, the written dtype
  const files = folderFiles(config, mamba, tensors, { dtype, shardBytes: o.shardBytes ?? HF_MAX_SHARD_BYTES });
  writeFiles(outDir, files, o);
  return {
    mamba,
    dtype,
    shards: files.filter(([f]) => f.endsWith('.safetensors')).length,
    dropped: leftOut(names, (n) => n in tensors),
  };
}

/** The one floating dtype a checkpoint's weights are stored in ('F32' where they mix dtypes). */
function storedDtype(plan: CheckpointPlan): WriteDType {
  const floats = new Set([...plan.weights.values()].map((w) => w.info.dtype).filter((d) => FLOATS.includes(d)));
  const [only] = floats;
  return floats.size === 1 ? (only as WriteDType) : 'F32';
}
const FLOATS = ['F64', 'F32', 'F16', 'BF16'];

/** The files of a model folder that say how its text is tokenized: they travel with converted weights. */
const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json'] as const;

/** `dir`'s tokenizer files that exist, as [name, bytes] for saveModel's `extra`. */
export function tokenizerFiles(dir: string): Array<[string, WriteData]> {
  return TOKENIZER_FILES.filter((f) => existsSync(join(dir, f))).map((f) => [f, readFileSync(join(dir, f))]);
}

/**
 * The Table 9 ablation: the teacher with every layer not in `keep` removed (attention and MLP), the rest
 * renumbered 0, 1, … — a shallower Llama, where Algorithm 1 would have put Mamba layers.
 */
export function dropLayers(teacher: HybridModel, keep: number[]): HybridModel {
  if (teacher.mamba) throw new ArgumentError('teacher', 'a plain Llama (no mamba_config.json)', 'a hybrid');
  const sorted = [...keep].sort((a, b) => a - b);
  const out = new Map<string, Tensor>();
  for (const n of teacher.weights.names()) {
    const m = /^model\.layers\.(\d+)\.(.*)$/.exec(n);
    if (!m) out.set(n, teacher.weights.get(n));
    else if (sorted.includes(Number(m[1])))
      out.set(`model.layers.${sorted.indexOf(Number(m[1]))}.${m[2]}`, teacher.weights.get(n));
  }
  const raw = { ...teacher.llama.raw, num_hidden_layers: sorted.length };
  return {
    llama: parseLlamaConfig(raw, 'dropped-layer config'),
    weights: new WeightStore(out, `${teacher.weights.source} (layers ${sorted.join(', ')} kept)`),
  };
}

/**
 * The floor a converted layer has to beat: the teacher with the attention of every layer not in `keep`
 * silenced (o_proj, and its bias where there is one, set to zero, so the layer adds nothing to the residual
 * stream), its MLP and norms kept, nothing trained. A Mamba layer that learned only to output zero would give
 * this model, so a distilled hybrid worse than it has lost more than its attention held. Used by
 * scripts/paper.ts to bound the Tables 7/8 gap at this scale.
 */
export function silenceAttention(teacher: HybridModel, keep: number[]): HybridModel {
  if (teacher.mamba) throw new ArgumentError('teacher', 'a plain Llama (no mamba_config.json)', 'a hybrid');
  for (const k of keep)
    if (!Number.isInteger(k) || k < 0 || k >= teacher.llama.numLayers)
      throw new ArgumentError('keep', `layer indices in [0, ${teacher.llama.numLayers - 1}]`, String(k));
  const out = new Map<string, Tensor>();
  for (const n of teacher.weights.names()) {
    const m = /^model\.layers\.(\d+)\.self_attn\.o_proj\.(weight|bias)$/.exec(n);
    const w = teacher.weights.get(n); // (the weight's own shape)
    out.set(n, m && !keep.includes(Number(m[1])) ? new Tensor(new Float64Array(w.data.length), w.shape, n) : w);
  }
  const silenced = teacher.llama.numLayers - new Set(keep).size;
  return {
    llama: teacher.llama,
    weights: new WeightStore(out, `${teacher.weights.source} (attention silenced in ${silenced} layers)`),
  };
}
