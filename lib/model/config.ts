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
import { ArgumentError, MilError } from '../errors.js';
import type { RopeScaling } from '../ref/rope.js';

export class ConfigError extends MilError {
  constructor(readonly file: string, readonly problem: string) {
    super('E_CONFIG', `${file}: ${problem}`);
  }
}

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

function num(o: Record<string, unknown>, k: string, file: string, dflt?: number): number {
  const v = o[k] ?? dflt;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(file, `'${k}' must be a number, got ${JSON.stringify(o[k])}`);
  return v;
}
function int(o: Record<string, unknown>, k: string, file: string, dflt?: number): number {
  const v = num(o, k, file, dflt);
  if (!Number.isInteger(v) || v < 0) throw new ConfigError(file, `'${k}' must be a non-negative integer, got ${v}`);
  return v;
}

export function parseLlamaConfig(raw: Record<string, unknown>, file = 'config.json'): LlamaConfig {
  const hidden = int(raw, 'hidden_size', file);
  const heads = int(raw, 'num_attention_heads', file);
  const kv = int(raw, 'num_key_value_heads', file, heads);
  if (heads === 0 || kv === 0 || heads % kv !== 0) throw new ConfigError(file, `num_attention_heads (${heads}) must be a positive multiple of num_key_value_heads (${kv})`);
  const headDim = raw.head_dim == null ? hidden / heads : int(raw, 'head_dim', file);
  if (!Number.isInteger(headDim) || headDim % 2) throw new ConfigError(file, `head_dim must be an even integer, got ${headDim}`);
  const rp = (raw.rope_parameters ?? null) as Record<string, unknown> | null;
  const rs = (raw.rope_scaling ?? null) as Record<string, unknown> | null;
  const theta = rp?.rope_theta ?? raw.rope_theta ?? 10000;
  if (typeof theta !== 'number') throw new ConfigError(file, `rope_theta must be a number`);
  const sc = rp ?? rs ?? {};
  const type = (sc.rope_type ?? sc.type ?? 'default') as string;
  if (type !== 'default' && type !== 'llama3') throw new ConfigError(file, `rope type '${type}' is not supported (default, llama3)`);
  const ropeScaling: RopeScaling =
    type === 'llama3'
      ? {
          ropeType: 'llama3',
          factor: num(sc, 'factor', file),
          lowFreqFactor: num(sc, 'low_freq_factor', file, 1),
          highFreqFactor: num(sc, 'high_freq_factor', file, 4),
          originalMaxPositionEmbeddings: int(sc, 'original_max_position_embeddings', file, 8192),
        }
      : { ropeType: 'default' };
  const eos = raw.eos_token_id;
  return {
    vocabSize: int(raw, 'vocab_size', file),
    hiddenSize: hidden,
    intermediateSize: int(raw, 'intermediate_size', file),
    numLayers: int(raw, 'num_hidden_layers', file),
    numHeads: heads,
    numKvHeads: kv,
    headDim,
    rmsNormEps: num(raw, 'rms_norm_eps', file, 1e-6),
    ropeTheta: theta,
    ropeScaling,
    tieWordEmbeddings: raw.tie_word_embeddings === true,
    bosTokenId: typeof raw.bos_token_id === 'number' ? raw.bos_token_id : null,
    eosTokenId: Array.isArray(eos) ? eos.filter((e): e is number => typeof e === 'number') : typeof eos === 'number' ? [eos] : [],
    maxPositionEmbeddings: int(raw, 'max_position_embeddings', file, 4096),
    raw,
  };
}

export function parseMambaConfig(raw: Record<string, unknown>, variant: MambaVariant, file = 'mamba_config.json', semantics: 'upstream' | 'clean' = 'upstream'): MambaConfig {
  const ssm = (raw.ssm_cfg ?? {}) as Record<string, unknown>;
  const dModel = int(raw, 'd_model', file);
  const expand = num(ssm, 'expand', file, variant === 'mamba1' ? 2 : 2);
  const dInner = raw.d_inner == null ? Math.round(expand * dModel) : int(raw, 'd_inner', file);
  const dXb = int(raw, 'd_xb', file);
  const dState = int(ssm, 'd_state', file, variant === 'mamba1' ? 16 : 128);
  const attnLayers = raw.attn_layers ?? [];
  if (!Array.isArray(attnLayers) || !attnLayers.every((v) => Number.isInteger(v) && v >= 0)) throw new ConfigError(file, `'attn_layers' must be a list of layer indices`);
  const nLayer = int(raw, 'n_layer', file);
  for (const l of attnLayers as number[]) if (l >= nLayer) throw new ConfigError(file, `attn_layers entry ${l} is not a layer (n_layer = ${nLayer})`);
  if (dState === 0 || dXb % dState !== 0 || dInner % dState !== 0) throw new ConfigError(file, `d_xb (${dXb}) and d_inner (${dInner}) must be multiples of d_state (${dState})`);
  if (dInner % dXb !== 0) throw new ConfigError(file, `d_inner (${dInner}) must be a multiple of d_xb (${dXb})`);
  const sem = semantics;
  if (sem !== 'upstream' && sem !== 'clean') throw new ConfigError(file, `semantics must be 'upstream' or 'clean', got ${JSON.stringify(sem)}`);
  return {
    variant,
    dModel,
    dInner,
    dXb,
    dState,
    dConv: int(ssm, 'd_conv', file, 4),
    nLayer,
    attnLayers: [...(attnLayers as number[])].sort((a, b) => a - b),
    intermediateSize: int(raw, 'intermediate_size', file),
    rmsNormEps: num(raw, 'rms_norm_eps', file, 1e-5),
    nHeads: dInner / dState,
    dtRank: raw.dt_rank == null ? Math.ceil(dModel / 16) : int(raw, 'dt_rank', file),
    semantics: sem,
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
