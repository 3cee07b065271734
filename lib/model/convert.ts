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
 * true) are dropped, as upstream's bias-free Mamba projections do; `droppedBiases` lists them.
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
import { Tensor } from '../tensor.js';
import { writeFolder, type WriteData, type WriteOptions } from '../io/writer.js';
import type { WriteDType } from '../io/safetensors.js';
import { attentionLayersFor, parseLlamaConfig, parseMambaConfig, type MambaVariant } from './config.js';
import { layerKinds, type HybridModel } from './hybrid.js';
import { WeightStore, checkpointFiles } from './weights.js';

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
  const c = teacher.llama;
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
  const mamba = parseMambaConfig(
    raw,
    o.variant,
    'converted mamba_config',
    o.variant === 'mamba1' ? (o.semantics ?? 'upstream') : 'upstream',
  );
  const T = teacher.weights;
  const out = new Map<string, Tensor>();
  const rng = new Rng(o.seed);
  const model: HybridModel = { llama: c, mamba, weights: new WeightStore(out, 'converted') };
  for (const name of T.names()) if (!name.includes('.self_attn.')) out.set(name, T.get(name));
  layerKinds(model).forEach((kind, i) => {
    const p = `model.layers.${i}`;
    const att = (w: string) => {
      const t = T.get(`${p}.self_attn.${w}_proj.weight`); // (n·hd, d) for q, (n_kv·hd, d) for k and v
      return o.init === 'random' ? uniform(rng, [...t.shape], 1 / Math.sqrt(t.shape[1]), `${w} (random init)`) : t;
    };
    if (kind === 'attention') {
      // a kept layer keeps every attention tensor, biases included (attention_bias: true)
      for (const n of T.names()) if (n.startsWith(`${p}.self_attn.`)) out.set(n, T.get(n));
      return;
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
  });
  return model;
}

/** Teacher tensors that a conversion left out: the q/k/v/o biases of replaced layers (see above). */
export function droppedBiases(teacher: HybridModel, hybrid: HybridModel): string[] {
  return teacher.weights
    .names()
    .filter((n) => n.includes('.self_attn.') && n.endsWith('.bias') && !hybrid.weights.has(n));
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
  const files = checkpointFiles(tensors, { dtype: opts.dtype ?? 'F32', shardBytes: opts.shardBytes });
  if (m.mamba) {
    files.push(['mamba_config.json', JSON.stringify(m.mamba.raw, null, 4) + '\n']);
    files.push([
      'mil_config.json',
      JSON.stringify({ variant: m.mamba.variant, semantics: m.mamba.semantics }, null, 1) + '\n',
    ]);
  }
  files.push(['config.json', JSON.stringify(m.llama.raw, null, 2) + '\n']);
  return files;
}

/**
 * Write a model folder through the one writer: the folder is replaced as a whole (a previous model there
 * stays intact until the new one is complete), `extra` files are written beside the model's.
 */
export function saveModel(
  dir: string,
  m: HybridModel,
  opts: { shardBytes?: number; dtype?: WriteDType; extra?: Array<[string, WriteData]> } & WriteOptions = {},
): void {
  writeFolder(
    dir,
    (stage) => {
      for (const [rel, data] of [...modelFiles(m, opts), ...(opts.extra ?? [])]) stage.writeFile(rel, data);
    },
    opts,
  );
}

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
