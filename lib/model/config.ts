/**
 * Model configurations.
 *
 * LlamaConfig reads a Hugging Face Llama `config.json` in both spellings: the older top-level
 * `rope_theta` + `rope_scaling`, and the newer `rope_parameters` ({ rope_theta, rope_type, factor, … });
 * `head_dim` defaults to hidden_size / num_attention_heads; `tie_word_embeddings` shares lm_head with
 * the embedding; llama3 rope scaling is supported (lib/ref/rope.ts).
 *
 * MambaConfig reads MambaInLlama's `mamba_config.json` (mamba/ and mamba2/hybrid_mamba_config.py):
 * d_model, d_inner, d_xb, ssm_cfg (expand, d_state, ngroups, d_conv, …), n_layer, attn_layers (the layers
 * that keep attention), intermediate_size, rms_norm_eps. The variant (Mamba-1 or Mamba-2) is not in that
 * file upstream; it is read from this project's `mil_config.json` if present, else from the weight names
 * (in_proj_x → Mamba-1, in_proj → Mamba-2).
 */
import { ArgumentError } from '../errors.js';
import type { RopeScaling } from '../ref/rope.js';
import { ConfigError, PRETRAINED_CONFIG_IGNORED, checkObject, ignoring, type Schema } from './schema.js';

export { ConfigError };

/** Limits that keep a hostile config from allocating without bound before its checkpoint is read. */
const CONFIG_LIMITS = { layers: 4096, width: 1 << 17, vocab: 1 << 22, positions: 1 << 24 } as const;

const ROPE_SCHEMA: Schema = {
  rope_type: { type: 'string', oneOf: ['default', 'llama3'], note: 'other rope types are not implemented' },
  type: { type: 'string', oneOf: ['default', 'llama3'], note: 'other rope types are not implemented' },
  rope_theta: { type: 'number', above: 0 },
  factor: { type: 'number', above: 0 },
  low_freq_factor: { type: 'number', above: 0 },
  high_freq_factor: { type: 'number', above: 0 },
  original_max_position_embeddings: { type: 'int', min: 1 },
};

/** Hugging Face LlamaConfig: every key it defines, with what this implementation supports. */
const LLAMA_SCHEMA: Schema = {
  ...ignoring(PRETRAINED_CONFIG_IGNORED),
  model_type: { type: 'string', oneOf: ['llama'], note: 'only Llama teachers are implemented' },
  vocab_size: { type: 'int', min: 1, max: CONFIG_LIMITS.vocab, required: true },
  hidden_size: { type: 'int', min: 1, max: CONFIG_LIMITS.width, required: true },
  intermediate_size: { type: 'int', min: 1, max: CONFIG_LIMITS.width, required: true },
  num_hidden_layers: { type: 'int', min: 1, max: CONFIG_LIMITS.layers, required: true },
  num_attention_heads: { type: 'int', min: 1, max: CONFIG_LIMITS.width, required: true },
  num_key_value_heads: { type: 'int', min: 1, max: CONFIG_LIMITS.width },
  head_dim: { type: 'int', min: 2, max: CONFIG_LIMITS.width },
  hidden_act: { type: 'string', oneOf: ['silu'], note: 'the SwiGLU MLP of Llama' },
  max_position_embeddings: { type: 'int', min: 1, max: CONFIG_LIMITS.positions },
  rms_norm_eps: { type: 'number', above: 0 },
  rope_theta: { type: 'number', above: 0 },
  rope_scaling: { type: 'object', schema: ROPE_SCHEMA, nullable: true },
  rope_parameters: { type: 'object', schema: ROPE_SCHEMA, nullable: true },
  attention_bias: { type: 'bool', note: 'true: q/k/v/o biases must be in the checkpoint' },
  mlp_bias: { type: 'bool', only: false, note: 'MLP biases are not implemented' },
  pretraining_tp: { type: 'int', min: 1, note: 'tensor-parallel slicing; the same math' },
  tie_word_embeddings: { type: 'bool' },
  bos_token_id: { type: 'int', min: 0, nullable: true },
  eos_token_id: { type: 'int-or-ints', min: 0, nullable: true },
};

/** MambaInLlama's MambaConfig dataclass (mamba/ and mamba2/hybrid_mamba_config.py) and its ssm_cfg. */
const MAMBA_SCHEMA: Schema = {
  d_model: { type: 'int', min: 1, max: CONFIG_LIMITS.width, required: true },
  d_inner: { type: 'int', min: 1, max: CONFIG_LIMITS.width },
  d_xb: { type: 'int', min: 1, max: CONFIG_LIMITS.width, required: true },
  n_layer: { type: 'int', min: 1, max: CONFIG_LIMITS.layers, required: true },
  attn_layers: { type: 'ints', min: 0, distinct: true },
  intermediate_size: { type: 'int', min: 1, max: CONFIG_LIMITS.width, required: true },
  rms_norm_eps: { type: 'number', above: 0 },
  vocab_size: { type: 'int', min: 1, max: CONFIG_LIMITS.vocab, nullable: true },
  hidden_act: { type: 'string', oneOf: ['silu'] },
  dt_rank: { type: 'int', min: 1, max: CONFIG_LIMITS.width },
  ssm_cfg: {
    type: 'object',
    schema: {
      expand: { type: 'number', above: 0 },
      d_state: { type: 'int', min: 1, max: 4096 },
      ngroups: { type: 'int', min: 1 },
      d_conv: { type: 'int', min: 1, max: 64 },
      headdim: { type: 'int', min: 1 },
      conv_bias: { type: 'bool' },
      bias: { type: 'bool' },
      chunk_size: { type: 'int', min: 1 },
      activation: { type: 'string', oneOf: ['silu', 'swish'] },
      rmsnorm: { type: 'bool', only: true },
      norm_before_gate: { type: 'bool', only: false, note: 'the gate is applied before the norm' },
      ...ignoring([
        'dt_min',
        'dt_max',
        'dt_init',
        'dt_scale',
        'dt_init_floor',
        'use_fast_path',
        'use_mem_eff_path',
        'layer_idx',
        'A_init_range',
        'D_has_hdim',
      ]),
    },
  },
};

/** This project's mil_config.json. */
export const MIL_SCHEMA: Schema = {
  variant: { type: 'string', oneOf: ['mamba1', 'mamba2'] },
  semantics: { type: 'string', oneOf: ['upstream', 'clean'], note: "'clean' applies to Mamba-1 only" },
};

export interface LlamaConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  tieWordEmbeddings: boolean;
  /** q/k/v/o projections carry biases (HF `attention_bias`) */
  attentionBias: boolean;
  bosTokenId: number | null;
  eosTokenId: number[];
  maxPositionEmbeddings: number;
  /** the raw JSON, written back unchanged by convert */
  raw: Record<string, unknown>;
}

export type MambaVariant = 'mamba1' | 'mamba2';

export interface MambaConfig {
  variant: MambaVariant;
  dModel: number;
  dInner: number;
  dXb: number;
  dState: number;
  dConv: number;
  nLayer: number;
  attnLayers: number[];
  intermediateSize: number;
  rmsNormEps: number;
  /** Mamba-2: heads = ngroups = d_inner / d_state, headdim = d_state */
  nHeads: number;
  /** Mamba-1: rank of the Δ projection, ceil(d_model / 16) upstream */
  dtRank: number;
  /**
   * 'upstream' (default for checkpoints read from disk): the released code's semantics — Mamba-1's dt_proj
   * bias applied twice and x/B repeated in d_state-wide pieces. 'clean': the paper's — bias once, exact
   * grouped-query pairing. Stored in `mil_config.json` beside mamba_config.json (upstream never reads it).
   */
  semantics: 'upstream' | 'clean';
  raw: Record<string, unknown>;
}

const n = (o: Record<string, unknown>, k: string, dflt: number): number => (o[k] == null ? dflt : (o[k] as number));

export function parseLlamaConfig(raw: Record<string, unknown>, file = 'config.json'): LlamaConfig {
  checkObject(raw, LLAMA_SCHEMA, file);
  const hidden = raw.hidden_size as number;
  const heads = raw.num_attention_heads as number;
  const kv = n(raw, 'num_key_value_heads', heads);
  if (heads % kv !== 0)
    throw new ConfigError(
      file,
      `num_attention_heads (${heads}) must be a positive multiple of num_key_value_heads (${kv})`,
    );
  const headDim = raw.head_dim == null ? hidden / heads : (raw.head_dim as number);
  if (!Number.isInteger(headDim) || headDim % 2)
    throw new ConfigError(
      file,
      `head_dim must be an even integer, got ${headDim}${raw.head_dim == null ? ' (hidden_size / num_attention_heads)' : ''}`,
    );
  if (raw.rope_parameters != null && raw.rope_scaling != null)
    throw new ConfigError(file, "both 'rope_parameters' and 'rope_scaling' are set: give one");
  const rp = (raw.rope_parameters ?? null) as Record<string, unknown> | null;
  const rs = (raw.rope_scaling ?? null) as Record<string, unknown> | null;
  const theta = (rp?.rope_theta ?? raw.rope_theta ?? 10000) as number;
  const sc = rp ?? rs ?? {};
  const type = (sc.rope_type ?? sc.type ?? 'default') as string;
  if (type === 'llama3' && sc.factor == null) throw new ConfigError(file, "llama3 rope scaling needs 'factor'");
  const ropeScaling: RopeScaling =
    type === 'llama3'
      ? {
          ropeType: 'llama3',
          factor: sc.factor as number,
          lowFreqFactor: n(sc, 'low_freq_factor', 1),
          highFreqFactor: n(sc, 'high_freq_factor', 4),
          originalMaxPositionEmbeddings: n(sc, 'original_max_position_embeddings', 8192),
        }
      : { ropeType: 'default' };
  const vocab = raw.vocab_size as number;
  const eos =
    raw.eos_token_id == null
      ? []
      : Array.isArray(raw.eos_token_id)
        ? (raw.eos_token_id as number[])
        : [raw.eos_token_id as number];
  for (const e of eos)
    if (e >= vocab) throw new ConfigError(file, `'eos_token_id' ${e} is not a token (vocab_size ${vocab})`);
  const bos = raw.bos_token_id == null ? null : (raw.bos_token_id as number);
  if (bos !== null && bos >= vocab)
    throw new ConfigError(file, `'bos_token_id' ${bos} is not a token (vocab_size ${vocab})`);
  return {
    vocabSize: vocab,
    hiddenSize: hidden,
    intermediateSize: raw.intermediate_size as number,
    numLayers: raw.num_hidden_layers as number,
    numHeads: heads,
    numKvHeads: kv,
    headDim,
    rmsNormEps: n(raw, 'rms_norm_eps', 1e-6),
    ropeTheta: theta,
    ropeScaling,
    tieWordEmbeddings: raw.tie_word_embeddings === true,
    attentionBias: raw.attention_bias === true,
    bosTokenId: bos,
    eosTokenId: eos,
    maxPositionEmbeddings: n(raw, 'max_position_embeddings', 4096),
    raw,
  };
}

export function parseMambaConfig(
  raw: Record<string, unknown>,
  variant: MambaVariant,
  file = 'mamba_config.json',
  semantics: 'upstream' | 'clean' = 'upstream',
): MambaConfig {
  checkObject(raw, MAMBA_SCHEMA, file);
  if (variant !== 'mamba1' && variant !== 'mamba2')
    throw new ConfigError(file, `variant must be 'mamba1' or 'mamba2', got ${JSON.stringify(variant)}`);
  if (semantics !== 'upstream' && semantics !== 'clean')
    throw new ConfigError(file, `semantics must be 'upstream' or 'clean', got ${JSON.stringify(semantics)}`);
  if (variant === 'mamba2' && semantics === 'clean')
    throw new ConfigError(file, "semantics 'clean' applies to Mamba-1 only (Mamba-2 has one upstream semantics)");
  const ssm = (raw.ssm_cfg ?? {}) as Record<string, unknown>;
  const dModel = raw.d_model as number;
  const expand = n(ssm, 'expand', 2);
  const dInner = raw.d_inner == null ? Math.round(expand * dModel) : (raw.d_inner as number);
  const dXb = raw.d_xb as number;
  const dState = n(ssm, 'd_state', variant === 'mamba1' ? 16 : 128);
  const nLayer = raw.n_layer as number;
  const attnLayers = (raw.attn_layers ?? []) as number[];
  for (const l of attnLayers)
    if (l >= nLayer) throw new ConfigError(file, `attn_layers entry ${l} is not a layer (n_layer = ${nLayer})`);
  if (dXb % dState !== 0 || dInner % dState !== 0)
    throw new ConfigError(file, `d_xb (${dXb}) and d_inner (${dInner}) must be multiples of d_state (${dState})`);
  if (dInner % dXb !== 0) throw new ConfigError(file, `d_inner (${dInner}) must be a multiple of d_xb (${dXb})`);
  if (variant === 'mamba2') {
    const H = dInner / dState;
    if (ssm.ngroups != null && ssm.ngroups !== H)
      throw new ConfigError(
        file,
        `ssm_cfg.ngroups is ${ssm.ngroups}: the hybrid Mamba-2 layer has ngroups = heads = d_inner / d_state = ${H}`,
      );
    if (ssm.headdim != null && ssm.headdim !== dState)
      throw new ConfigError(
        file,
        `ssm_cfg.headdim is ${ssm.headdim}: the hybrid Mamba-2 layer has headdim = d_state = ${dState}`,
      );
  }
  return {
    variant,
    dModel,
    dInner,
    dXb,
    dState,
    dConv: n(ssm, 'd_conv', 4),
    nLayer,
    attnLayers: [...attnLayers].sort((a, b) => a - b),
    intermediateSize: raw.intermediate_size as number,
    rmsNormEps: n(raw, 'rms_norm_eps', 1e-5),
    nHeads: dInner / dState,
    dtRank: raw.dt_rank == null ? Math.ceil(dModel / 16) : (raw.dt_rank as number),
    semantics,
    raw,
  };
}

/** The paper's schedule of kept attention layers (PAPER.md §2) for a fraction of `nLayers`. */
export function attentionLayersFor(fraction: number, nLayers: number): number[] {
  if (!(fraction >= 0 && fraction <= 1)) throw new ArgumentError('attention fraction', 'a number in [0, 1]', fraction);
  const keep = Math.round(fraction * nLayers);
  if (keep === 0) return [];
  if (keep >= nLayers) return [...Array(nLayers).keys()];
  // every (n/keep)-th layer, ending at the last: 50% → odd layers, 25% of 32 → 3, 7, …, 31
  const stride = nLayers / keep;
  const out: number[] = [];
  for (let i = 1; i <= keep; i++) out.push(Math.round(i * stride) - 1);
  return out;
}
