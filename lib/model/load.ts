/**
 * Load a model folder: a Hugging Face Llama (`config.json` + weights) or a MambaInLlama hybrid
 * (`config.json` of the base Llama + `mamba_config.json` + weights with `model.layers.<i>.mamba.*`).
 * Every config is validated and every weight a layer needs is checked for presence and shape here, so a
 * malformed folder fails at load time with a typed error naming the file or the weight.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { freemem } from 'node:os';
import { MilError, SafetensorsError, ShapeError } from '../errors.js';
import { readJsonObject } from '../io/json.js';
import { recoverInterruptedSwap } from '../io/writer.js';
import {
  ConfigError,
  MIL_SCHEMA,
  parseLlamaConfig,
  parseMambaConfig,
  type LlamaConfig,
  type MambaConfig,
  type MambaVariant,
} from './config.js';
import { checkObject } from './schema.js';
import { layerKinds, type HybridModel } from './hybrid.js';
import { WeightStore, packsAsBf16, planCheckpoint, readCheckpoint, type CheckpointPlan } from './weights.js';
import { sizeOf } from '../tensor.js';
import { packedColumns, wasmSimdMaxBytes } from '../simd/limits.js';
import { SimdGemm } from '../simd/gemm.js';

const readJson = (path: string) => readJsonObject(path, (p) => new ConfigError(path, p));

/** What loadModel checks the checkpoint's memory need against. */
export interface LoadOptions {
  /**
   * the backend the model will run on: 'wasm-simd' adds its module's memory limit (wasmSimdMaxBytes, 4 GiB where
   * the engine allows it), and packs a BF16 checkpoint's matrices into that module as bf16 panels while reading
   * them (lib/simd/packed_weight.ts: they are then read through that backend only)
   */
  backend?: string;
  /**
   * on wasm-simd, BF16 matrices as bf16 panels (default: yes, unless the environment sets MIL_SIMD_BF16=0); false
   * keeps float32 arrays, packed as float32 panels at first use (as for F32/F16 checkpoints: the comparison)
   */
  bf16Panels?: boolean;
  /** bytes the weights may take in memory (default: the machine's free memory, os.freemem()) */
  memoryLimit?: number;
}

/**
 * Load a model folder. Order: configs (schema-checked), then the checkpoint's headers (planCheckpoint: every
 * shard present, each weight's dtype the one config.json's torch_dtype declares, tokenizer.json's vocabulary
 * the config's, the memory the weights need within the machine's and the backend's — all before any weight
 * is read), then the weights (every one finite), then the checkpoint against the configs (layer count,
 * every expected weight present with its shape, nothing unexpected) — all before any compute. A folder
 * whose write was killed mid-swap is restored first (lib/io/writer.ts).
 */
export function loadModel(dir: string, o: LoadOptions = {}): HybridModel {
  const { config, plan } = planModel(dir);
  const bf16 = o.backend === 'wasm-simd' && (o.bf16Panels ?? process.env.MIL_SIMD_BF16 !== '0');
  checkMemory(plan, o, bf16);
  const mc = join(dir, 'mamba_config.json');
  const extraPath = join(dir, 'mil_config.json');
  return modelFromParts({
    dir,
    config,
    mambaConfig: existsSync(mc) ? readJson(mc) : undefined,
    milConfig: existsSync(extraPath) ? readJson(extraPath) : undefined,
    weights: readCheckpoint(dir, plan, bf16 ? SimdGemm.shared() : undefined),
  });
}

/**
 * A model folder known from its config.json and its checkpoint's headers, no weight read: the checks of
 * loadModel that come before reading (a folder, a valid config, every shard present, each weight's dtype the
 * declared one, tokenizer.json's vocabulary the config's). `mil convert` streams from this plan.
 */
export function planModel(dir: string): { config: Record<string, unknown>; llama: LlamaConfig; plan: CheckpointPlan } {
  recoverInterruptedSwap(dir);
  if (!existsSync(dir)) throw new ConfigError(dir, 'not a model folder (no such folder)');
  if (!statSync(dir).isDirectory())
    throw new ConfigError(
      dir,
      `not a model folder: it is a file (a model is a folder holding config.json and model.safetensors${dir.endsWith('.safetensors') ? '; give the folder that holds this file' : ''})`,
    );
  const config = readJson(join(dir, 'config.json'));
  const llama = parseLlamaConfig(config, join(dir, 'config.json'));
  const plan = planCheckpoint(dir);
  checkDtypes(plan, config, join(dir, 'config.json'));
  checkTokenizerVocab(join(dir, 'tokenizer.json'), llama.vocabSize);
  return { config, llama, plan };
}

const TORCH_DTYPES: Record<string, string> = { bfloat16: 'BF16', float16: 'F16', float32: 'F32', float64: 'F64' };
const FLOAT_DTYPES = new Set(['BF16', 'F16', 'F32', 'F64']);

/**
 * config.json's `torch_dtype` (or the newer `dtype`), where given, is the dtype of every floating weight:
 * a weight stored otherwise is a ConfigError naming it, before any weight is read.
 */
function checkDtypes(plan: CheckpointPlan, config: Record<string, unknown>, file: string): void {
  const key = config.torch_dtype != null ? 'torch_dtype' : config.dtype != null ? 'dtype' : null;
  if (key === null) return;
  const want = TORCH_DTYPES[config[key] as string];
  if (!want)
    throw new ConfigError(
      file,
      `'${key}' is ${JSON.stringify(config[key])}: expected one of ${Object.keys(TORCH_DTYPES).join(', ')}`,
    );
  for (const [name, w] of plan.weights)
    if (FLOAT_DTYPES.has(w.info.dtype) && w.info.dtype !== want)
      throw new ConfigError(
        file,
        `weight '${name}' is stored as ${w.info.dtype} in ${w.header.path}, but '${key}' is ${JSON.stringify(config[key])} (${want})`,
      );
}

/**
 * A tokenizer.json beside the weights must have config.json's vocab_size tokens (its model's vocabulary and
 * its added tokens: the highest id + 1); checked from the JSON before any weight is read.
 */
function checkTokenizerVocab(path: string, vocabSize: number): void {
  if (!existsSync(path)) return;
  const j = readJsonObject(path, (p) => new ConfigError(path, p));
  const model = j.model as { vocab?: unknown } | undefined;
  let top = -1;
  const vocab = model?.vocab;
  if (vocab && typeof vocab === 'object' && !Array.isArray(vocab))
    for (const id of Object.values(vocab)) if (typeof id === 'number') top = Math.max(top, id);
  if (Array.isArray(vocab)) top = vocab.length - 1; // Unigram: [[piece, score], …]
  if (Array.isArray(j.added_tokens))
    for (const t of j.added_tokens as Array<{ id?: unknown }>) if (typeof t?.id === 'number') top = Math.max(top, t.id);
  if (top + 1 !== vocabSize)
    throw new ConfigError(
      path,
      `${top + 1} tokens (the highest id + 1, added tokens included) but config.json has vocab_size ${vocabSize}`,
    );
}

/** Too little memory for a checkpoint, found from its headers before reading it. */
export class MemoryError extends MilError {
  constructor(
    readonly dir: string,
    readonly needBytes: number,
    readonly limitBytes: number,
    readonly limit: string,
  ) {
    super('E_MEMORY', `${dir}: the weights need ${gib(needBytes)} in memory, over ${limit} of ${gib(limitBytes)}`);
  }
}

const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB (${b} bytes)`;

/**
 * The checkpoint's weights must fit the memory limit and, on wasm-simd, the module's memory (MemoryError).
 * `bf16`: the BF16 matrices go into the module as bf16 panels (2 bytes a weight, rows padded to a 32-column
 * panel group) instead of float32 arrays (4 bytes) — counted so in both.
 */
function checkMemory(plan: CheckpointPlan, o: LoadOptions, bf16: boolean): void {
  const wasm = o.backend === 'wasm-simd' ? wasmSimdModuleBytes(plan, bf16) : { bytes: 0, packedJsBytes: 0 };
  // the packed matrices leave the JavaScript heap (their float32 arrays are never made) for the module memory
  const need = plan.residentBytes - wasm.packedJsBytes + (bf16 ? wasm.bytes : 0);
  const limit = o.memoryLimit ?? freemem();
  if (need > limit)
    throw new MemoryError(
      plan.dir,
      need,
      limit,
      o.memoryLimit === undefined ? "the machine's free memory" : 'the memory limit',
    );
  if (o.backend === 'wasm-simd' && wasm.bytes > wasmSimdMaxBytes())
    throw new MemoryError(
      plan.dir,
      wasm.bytes,
      wasmSimdMaxBytes(),
      `the wasm-simd backend's module memory (${bf16 ? 'bf16 panels for the BF16 matrices, float32 for the rest' : 'float32 panels'}; use --backend reference)`,
    );
}

/**
 * The wasm-simd module memory a checkpoint's weights take (lib/simd/gemm.ts): the bf16 panels (`bf16`: the
 * `packsAsBf16` matrices, packed at load, largest first, each staged as its 2·N·K bytes above the panels packed
 * before it — the peak over that sequence), then every other weight as float32 panels (4 bytes a weight, rows
 * padded to a panel group: packedColumns) plus the float32 staging of the largest while it is packed. `packedJsBytes`: the float32 bytes the
 * bf16-packed matrices would have taken in the JavaScript heap.
 */
function wasmSimdModuleBytes(plan: CheckpointPlan, bf16: boolean): { bytes: number; packedJsBytes: number } {
  const packed: number[][] = [];
  let f32 = 0;
  let largest = 0;
  for (const [name, w] of plan.weights) {
    const shape = w.info.shape;
    if (bf16 && packsAsBf16(name, w.info)) packed.push(shape);
    else {
      const rows = shape.length > 1 ? packedColumns(shape[0]) * sizeOf(shape.slice(1)) : packedColumns(sizeOf(shape));
      f32 += 4 * rows;
      largest = Math.max(largest, 4 * sizeOf(shape));
    }
  }
  packed.sort((a, b) => sizeOf(b) - sizeOf(a));
  let top = 0;
  let peak = 0;
  for (const [N, K] of packed) {
    peak = Math.max(peak, top + 2 * packedColumns(N) * K + 2 * N * K);
    top += 2 * packedColumns(N) * K;
  }
  return {
    bytes: Math.max(peak, top + f32 + largest),
    packedJsBytes: packed.reduce((s, sh) => s + 4 * sizeOf(sh), 0),
  };
}

/**
 * A model from its parts already read (the three configs and the checkpoint), with every check of
 * `loadModel`; `dir` only names the files in errors. The browser page (web/) builds models this way from
 * fetched files.
 */
export function modelFromParts(p: {
  dir: string;
  config: Record<string, unknown>;
  mambaConfig?: Record<string, unknown>;
  milConfig?: Record<string, unknown>;
  weights: WeightStore;
}): HybridModel {
  const { dir, weights } = p;
  const llama = parseLlamaConfig(p.config, `${dir}/config.json`);
  const mc = `${dir}/mamba_config.json`; // plain paths: this runs in browsers too
  const extraPath = `${dir}/mil_config.json`;
  const rawMamba = p.mambaConfig;
  const extra = p.milConfig;
  if (extra) checkObject(extra, MIL_SCHEMA, extraPath);
  if (extra && !rawMamba) throw new ConfigError(extraPath, 'present without mamba_config.json');
  let mamba: MambaConfig | undefined;
  if (rawMamba) {
    const byWeights: MambaVariant = weights.names().some((n) => n.endsWith('.mamba.in_proj.weight'))
      ? 'mamba2'
      : 'mamba1';
    const variant = (extra?.variant as MambaVariant | undefined) ?? byWeights;
    const semantics = (extra?.semantics as 'upstream' | 'clean' | undefined) ?? 'upstream';
    mamba = parseMambaConfig(rawMamba, variant, mc, semantics);
    if (mamba.nLayer !== llama.numLayers)
      throw new ConfigError(
        mc,
        `n_layer ${mamba.nLayer} differs from config.json num_hidden_layers ${llama.numLayers}`,
      );
    if (mamba.dModel !== llama.hiddenSize)
      throw new ConfigError(mc, `d_model ${mamba.dModel} differs from hidden_size ${llama.hiddenSize}`);
    if (mamba.intermediateSize !== llama.intermediateSize)
      throw new ConfigError(
        mc,
        `intermediate_size ${mamba.intermediateSize} differs from config.json's ${llama.intermediateSize}`,
      );
    if (rawMamba.vocab_size != null && rawMamba.vocab_size !== llama.vocabSize)
      throw new ConfigError(mc, `vocab_size ${rawMamba.vocab_size} differs from config.json's ${llama.vocabSize}`);
    if (extra?.variant !== undefined && mamba.attnLayers.length < llama.numLayers && extra.variant !== byWeights)
      throw new ConfigError(extraPath, `variant '${extra.variant}' but the checkpoint holds ${byWeights} weights`);
  }
  const m: HybridModel = { llama, mamba, weights };
  checkWeights(m);
  return m;
}

/** Every weight the forward pass reads, with its expected shape (`lmHead`: the checkpoint has lm_head.weight). */
export function expectedWeights(m: HybridModel, lmHead = m.weights.has('lm_head.weight')): Record<string, number[]> {
  const c: LlamaConfig = m.llama;
  const dModel = c.hiddenSize;
  const e: Record<string, number[]> = {
    'model.embed_tokens.weight': [c.vocabSize, dModel],
    'model.norm.weight': [dModel],
  };
  if (!c.tieWordEmbeddings || lmHead) e['lm_head.weight'] = [c.vocabSize, dModel];
  layerKinds(m).forEach((kind, i) => {
    const p = `model.layers.${i}`;
    e[`${p}.input_layernorm.weight`] = [dModel];
    e[`${p}.post_attention_layernorm.weight`] = [dModel];
    e[`${p}.mlp.gate_proj.weight`] = [c.intermediateSize, dModel];
    e[`${p}.mlp.up_proj.weight`] = [c.intermediateSize, dModel];
    e[`${p}.mlp.down_proj.weight`] = [dModel, c.intermediateSize];
    if (kind === 'attention') {
      e[`${p}.self_attn.q_proj.weight`] = [c.numHeads * c.headDim, dModel];
      e[`${p}.self_attn.k_proj.weight`] = [c.numKvHeads * c.headDim, dModel];
      e[`${p}.self_attn.v_proj.weight`] = [c.numKvHeads * c.headDim, dModel];
      e[`${p}.self_attn.o_proj.weight`] = [dModel, c.numHeads * c.headDim];
      if (c.attentionBias) {
        e[`${p}.self_attn.q_proj.bias`] = [c.numHeads * c.headDim];
        e[`${p}.self_attn.k_proj.bias`] = [c.numKvHeads * c.headDim];
        e[`${p}.self_attn.v_proj.bias`] = [c.numKvHeads * c.headDim];
        e[`${p}.self_attn.o_proj.bias`] = [dModel];
      }
      return;
    }
    const mc = m.mamba!;
    const q = `${p}.mamba`;
    const { dInner: I, dXb: X, dState: N, dConv: W } = mc;
    if (kind === 'mamba1') {
      Object.assign(e, {
        [`${q}.in_proj_x.weight`]: [X, dModel],
        [`${q}.in_proj_z.weight`]: [I, dModel],
        [`${q}.B_proj.weight`]: [X, dModel],
        [`${q}.C_proj.weight`]: [I, dModel],
        [`${q}.dt_proj_down.weight`]: [mc.dtRank, dModel],
        [`${q}.dt_proj.weight`]: [I, mc.dtRank],
        [`${q}.dt_proj.bias`]: [I],
        [`${q}.conv1d.weight`]: [I, 1, W],
        [`${q}.A_log`]: [I, N],
        [`${q}.D`]: [I],
        [`${q}.out_proj.weight`]: [dModel, I],
      });
    } else {
      const H = mc.nHeads;
      Object.assign(e, {
        [`${q}.in_proj.weight`]: [2 * I + 2 * X + H, dModel],
        [`${q}.conv1d.weight`]: [I + 2 * X, 1, W],
        [`${q}.dt_bias`]: [H],
        [`${q}.A_log`]: [H],
        [`${q}.D`]: [H],
        [`${q}.norm.weight`]: [I],
        [`${q}.out_proj.weight`]: [dModel, I],
      });
    }
  });
  return e;
}

/** Weights the forward reads when present (upstream's conv_bias / bias options), with their shapes. */
function optionalWeights(m: HybridModel): Record<string, number[]> {
  const e: Record<string, number[]> = {};
  if (!m.mamba) return e;
  const { dInner: I, dXb: X, nHeads: H } = m.mamba;
  layerKinds(m).forEach((kind, i) => {
    const q = `model.layers.${i}.mamba`;
    if (kind === 'mamba1') e[`${q}.conv1d.bias`] = [I];
    if (kind === 'mamba2') {
      e[`${q}.conv1d.bias`] = [I + 2 * X];
      e[`${q}.in_proj.bias`] = [2 * I + 2 * X + H];
    }
  });
  return e;
}

/** Weights that old checkpoints carry but no forward reads (recomputed buffers). */
const IGNORABLE = /^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/;

/**
 * Cross-check the checkpoint against the configs: the layer count first (cheap, before any per-layer
 * work), then every expected weight present with its shape, then nothing unexpected (a weight the forward
 * would silently ignore — a layer beyond num_hidden_layers, a bias the config does not declare).
 */
function checkWeights(m: HybridModel): void {
  const W: WeightStore = m.weights;
  checkShapes(m, W.names(), (n) => (W.has(n) ? W.get(n).shape : undefined), W.source);
}

/**
 * checkWeights for a plain Llama known from its headers alone (planModel): every weight the forward reads
 * present with its shape, nothing unexpected — before any weight is read.
 */
export function checkPlannedLlama(llama: LlamaConfig, plan: CheckpointPlan): void {
  const names = [...plan.weights.keys()];
  const m: HybridModel = { llama, weights: new WeightStore(new Map(), plan.dir) };
  const lmHead = plan.weights.has('lm_head.weight');
  checkShapes(m, names, (n) => plan.weights.get(n)?.info.shape, plan.dir, lmHead);
}

function checkShapes(
  m: HybridModel,
  names: string[],
  shapeOf: (name: string) => readonly number[] | undefined,
  src: string,
  lmHead?: boolean,
): void {
  let maxLayer = -1;
  for (const n of names) {
    const k = /^model\.layers\.(\d+)\./.exec(n);
    if (k) maxLayer = Math.max(maxLayer, Number(k[1]));
  }
  if (maxLayer + 1 !== m.llama.numLayers)
    throw new ConfigError(
      src,
      `the checkpoint holds ${maxLayer + 1} layers (model.layers.0 … ${maxLayer}) but config.json has num_hidden_layers ${m.llama.numLayers}`,
    );
  const expected = expectedWeights(m, lmHead);
  const optional = optionalWeights(m);
  const check = (name: string, shape: number[], got: readonly number[]) => {
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i]))
      throw new ShapeError(name, `[${shape.join(', ')}]`, [...got]);
  };
  for (const [name, shape] of Object.entries(expected)) {
    const got = shapeOf(name); // the stored shape, checked against `shape`
    if (!got) throw new SafetensorsError(src, `missing weight '${name}'`);
    check(name, shape, got);
  }
  for (const [name, shape] of Object.entries(optional)) {
    const got = shapeOf(name);
    if (got) check(name, shape, got);
  }
  const unexpected = names.filter((n) => !(n in expected) && !(n in optional) && !IGNORABLE.test(n));
  if (unexpected.length > 0) {
    const bias = unexpected.some((n) => n.includes('.self_attn.') && n.endsWith('.bias'));
    throw new ConfigError(
      src,
      `${unexpected.length} weight(s) in the checkpoint that the configured model does not read: ${unexpected.slice(0, 5).join(', ')}${unexpected.length > 5 ? ', …' : ''}` +
        (bias ? " (attention biases need 'attention_bias': true in config.json)" : ''),
    );
  }
}
