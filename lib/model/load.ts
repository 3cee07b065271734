/**
 * Load a model folder: a Hugging Face Llama (`config.json` + weights) or a MambaInLlama hybrid
 * (`config.json` of the base Llama + `mamba_config.json` + weights with `model.layers.<i>.mamba.*`).
 * Every config is validated and every weight a layer needs is checked for presence and shape here, so a
 * malformed folder fails at load time with a typed error naming the file or the weight.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ShapeError } from '../errors.js';
import { ConfigError, parseLlamaConfig, parseMambaConfig, type LlamaConfig, type MambaConfig, type MambaVariant } from './config.js';
import { layerKinds, type HybridModel } from './hybrid.js';
import { readCheckpoint, type WeightStore } from './weights.js';

function readJson(path: string): Record<string, unknown> {
  let j: unknown;
  try {
    j = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ConfigError(path, `cannot read or parse (${(e as Error).message.split('\n')[0]})`);
  }
  if (typeof j !== 'object' || j === null || Array.isArray(j)) throw new ConfigError(path, 'not a JSON object');
  return j as Record<string, unknown>;
}

export function loadModel(dir: string): HybridModel {
  const llama = parseLlamaConfig(readJson(join(dir, 'config.json')), join(dir, 'config.json'));
  const weights = readCheckpoint(dir);
  let mamba: MambaConfig | undefined;
  const mc = join(dir, 'mamba_config.json');
  if (existsSync(mc)) {
    const raw = readJson(mc);
    const extraPath = join(dir, 'mil_config.json');
    const extra = existsSync(extraPath) ? readJson(extraPath) : {};
    const variant: MambaVariant =
      extra.variant === 'mamba1' || extra.variant === 'mamba2'
        ? extra.variant
        : weights.names().some((n) => n.endsWith('.mamba.in_proj.weight'))
          ? 'mamba2'
          : 'mamba1';
    const semantics = extra.semantics ?? 'upstream';
    if (semantics !== 'upstream' && semantics !== 'clean') throw new ConfigError(extraPath, `'semantics' must be 'upstream' or 'clean'`);
    mamba = parseMambaConfig(raw, variant, mc, semantics);
    if (mamba.nLayer !== llama.numLayers) throw new ConfigError(mc, `n_layer ${mamba.nLayer} differs from config.json num_hidden_layers ${llama.numLayers}`);
    if (mamba.dModel !== llama.hiddenSize) throw new ConfigError(mc, `d_model ${mamba.dModel} differs from hidden_size ${llama.hiddenSize}`);
  }
  const m: HybridModel = { llama, mamba, weights };
  checkWeights(m);
  return m;
}

/** Every weight the forward pass reads, with its expected shape. */
export function expectedWeights(m: HybridModel): Record<string, number[]> {
  const c: LlamaConfig = m.llama;
  const D = c.hiddenSize;
  const e: Record<string, number[]> = { 'model.embed_tokens.weight': [c.vocabSize, D], 'model.norm.weight': [D] };
  if (!c.tieWordEmbeddings || m.weights.has('lm_head.weight')) e['lm_head.weight'] = [c.vocabSize, D];
  layerKinds(m).forEach((kind, i) => {
    const p = `model.layers.${i}`;
    e[`${p}.input_layernorm.weight`] = [D];
    e[`${p}.post_attention_layernorm.weight`] = [D];
    e[`${p}.mlp.gate_proj.weight`] = [c.intermediateSize, D];
    e[`${p}.mlp.up_proj.weight`] = [c.intermediateSize, D];
    e[`${p}.mlp.down_proj.weight`] = [D, c.intermediateSize];
    if (kind === 'attention') {
      e[`${p}.self_attn.q_proj.weight`] = [c.numHeads * c.headDim, D];
      e[`${p}.self_attn.k_proj.weight`] = [c.numKvHeads * c.headDim, D];
      e[`${p}.self_attn.v_proj.weight`] = [c.numKvHeads * c.headDim, D];
      e[`${p}.self_attn.o_proj.weight`] = [D, c.numHeads * c.headDim];
      return;
    }
    const mc = m.mamba!;
    const q = `${p}.mamba`;
    const { dInner: I, dXb: X, dState: N, dConv: W } = mc;
    if (kind === 'mamba1') {
      Object.assign(e, {
        [`${q}.in_proj_x.weight`]: [X, D],
        [`${q}.in_proj_z.weight`]: [I, D],
        [`${q}.B_proj.weight`]: [X, D],
        [`${q}.C_proj.weight`]: [I, D],
        [`${q}.dt_proj_down.weight`]: [mc.dtRank, D],
        [`${q}.dt_proj.weight`]: [I, mc.dtRank],
        [`${q}.dt_proj.bias`]: [I],
        [`${q}.conv1d.weight`]: [I, 1, W],
        [`${q}.A_log`]: [I, N],
        [`${q}.D`]: [I],
        [`${q}.out_proj.weight`]: [D, I],
      });
    } else {
      const H = mc.nHeads;
      Object.assign(e, {
        [`${q}.in_proj.weight`]: [2 * I + 2 * X + H, D],
        [`${q}.conv1d.weight`]: [I + 2 * X, 1, W],
        [`${q}.dt_bias`]: [H],
        [`${q}.A_log`]: [H],
        [`${q}.D`]: [H],
        [`${q}.norm.weight`]: [I],
        [`${q}.out_proj.weight`]: [D, I],
      });
    }
  });
  return e;
}

export function checkWeights(m: HybridModel): void {
  const W: WeightStore = m.weights;
  for (const [name, shape] of Object.entries(expectedWeights(m))) {
    const t = W.get(name); // throws SafetensorsError 'missing weight'
    if (t.rank !== shape.length || t.shape.some((d, i) => d !== shape[i])) throw new ShapeError(name, `[${shape.join(', ')}]`, t.shape);
  }
}
