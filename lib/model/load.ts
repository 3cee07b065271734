/**
 * Load a model folder: a Hugging Face Llama (`config.json` + weights) or a MambaInLlama hybrid
 * (`config.json` of the base Llama + `mamba_config.json` + weights with `model.layers.<i>.mamba.*`).
 * Every config is validated and every weight a layer needs is checked for presence and shape here, so a
 * malformed folder fails at load time with a typed error naming the file or the weight.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ShapeError } from '../errors.js';
import { readJsonObject } from '../io/json.js';
import { recoverInterruptedSwap } from '../io/writer.js';
import { ConfigError, MIL_SCHEMA, parseLlamaConfig, parseMambaConfig, type LlamaConfig, type MambaConfig, type MambaVariant } from './config.js';
import { checkObject } from './schema.js';
import { layerKinds, type HybridModel } from './hybrid.js';
import { readCheckpoint, type WeightStore } from './weights.js';

const readJson = (path: string) => readJsonObject(path, (p) => new ConfigError(path, p));

/**
 * Load a model folder. Order: configs (schema-checked), then the checkpoint (every weight finite), then
 * the checkpoint against the configs (layer count, every expected weight present with its shape, nothing
 * unexpected) — all before any compute. A folder whose write was killed mid-swap is restored first
 * (lib/io/writer.ts).
 */
export function loadModel(dir: string): HybridModel {
  recoverInterruptedSwap(dir);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ConfigError(dir, 'not a model folder (no such folder)');
  const mc = join(dir, 'mamba_config.json');
  const extraPath = join(dir, 'mil_config.json');
  return modelFromParts({
    dir,
    config: readJson(join(dir, 'config.json')),
    mambaConfig: existsSync(mc) ? readJson(mc) : undefined,
    milConfig: existsSync(extraPath) ? readJson(extraPath) : undefined,
    weights: readCheckpoint(dir),
  });
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
    const byWeights: MambaVariant = weights.names().some((n) => n.endsWith('.mamba.in_proj.weight')) ? 'mamba2' : 'mamba1';
    const variant = (extra?.variant as MambaVariant | undefined) ?? byWeights;
    const semantics = (extra?.semantics as 'upstream' | 'clean' | undefined) ?? 'upstream';
    mamba = parseMambaConfig(rawMamba, variant, mc, semantics);
    if (mamba.nLayer !== llama.numLayers) throw new ConfigError(mc, `n_layer ${mamba.nLayer} differs from config.json num_hidden_layers ${llama.numLayers}`);
    if (mamba.dModel !== llama.hiddenSize) throw new ConfigError(mc, `d_model ${mamba.dModel} differs from hidden_size ${llama.hiddenSize}`);
    if (mamba.intermediateSize !== llama.intermediateSize)
      throw new ConfigError(mc, `intermediate_size ${mamba.intermediateSize} differs from config.json's ${llama.intermediateSize}`);
    if (rawMamba.vocab_size != null && rawMamba.vocab_size !== llama.vocabSize)
      throw new ConfigError(mc, `vocab_size ${rawMamba.vocab_size} differs from config.json's ${llama.vocabSize}`);
    if (extra?.variant !== undefined && mamba.attnLayers.length < llama.numLayers && extra.variant !== byWeights)
      throw new ConfigError(extraPath, `variant '${extra.variant}' but the checkpoint holds ${byWeights} weights`);
  }
  const m: HybridModel = { llama, mamba, weights };
  checkWeights(m);
  return m;
}

/** Every weight the forward pass reads, with its expected shape. */
export function expectedWeights(m: HybridModel): Record<string, number[]> {
  const c: LlamaConfig = m.llama;
  const dModel = c.hiddenSize;
  const e: Record<string, number[]> = { 'model.embed_tokens.weight': [c.vocabSize, dModel], 'model.norm.weight': [dModel] };
  if (!c.tieWordEmbeddings || m.weights.has('lm_head.weight')) e['lm_head.weight'] = [c.vocabSize, dModel];
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
export function optionalWeights(m: HybridModel): Record<string, number[]> {
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
export function checkWeights(m: HybridModel): void {
  const W: WeightStore = m.weights;
  const src = W.source;
  let maxLayer = -1;
  for (const n of W.names()) {
    const k = /^model\.layers\.(\d+)\./.exec(n);
    if (k) maxLayer = Math.max(maxLayer, Number(k[1]));
  }
  if (maxLayer + 1 !== m.llama.numLayers)
    throw new ConfigError(
      src,
      `the checkpoint holds ${maxLayer + 1} layers (model.layers.0 … ${maxLayer}) but config.json has num_hidden_layers ${m.llama.numLayers}`,
    );
  const expected = expectedWeights(m);
  const optional = optionalWeights(m);
  for (const [name, shape] of Object.entries(expected)) {
    const t = W.get(name); // throws SafetensorsError 'missing weight'
    if (t.rank !== shape.length || t.shape.some((d, i) => d !== shape[i])) throw new ShapeError(name, `[${shape.join(', ')}]`, t.shape);
  }
  for (const [name, shape] of Object.entries(optional)) {
    if (!W.has(name)) continue;
    const t = W.get(name);
    if (t.rank !== shape.length || t.shape.some((d, i) => d !== shape[i])) throw new ShapeError(name, `[${shape.join(', ')}]`, t.shape);
  }
  const unexpected = W.names().filter((n) => !(n in expected) && !(n in optional) && !IGNORABLE.test(n));
  if (unexpected.length > 0) {
    const bias = unexpected.some((n) => n.includes('.self_attn.') && n.endsWith('.bias'));
    throw new ConfigError(
      src,
      `${unexpected.length} weight(s) in the checkpoint that the configured model does not read: ${unexpected.slice(0, 5).join(', ')}${unexpected.length > 5 ? ', …' : ''}` +
        (bias ? " (attention biases need 'attention_bias': true in config.json)" : ''),
    );
  }
}
