/**
 * Seeded random Llama teachers, for tests and benchmarks (no hub access here): a config.json-shaped
 * object and weights drawn from the seeded generator — projections N(0, 1/√fan_in), norms 1 + N(0, 0.1),
 * embeddings N(0, 1). Values are rounded to float32 so they save and load bit-exactly.
 */
import { Rng } from '../rng.js';
import { Tensor } from '../tensor.js';
import { parseLlamaConfig } from './config.js';
import type { HybridModel } from './hybrid.js';
import { WeightStore } from './weights.js';

export interface RandomLlamaSpec {
  vocab: number;
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim?: number;
  tie?: boolean;
  ropeTheta?: number;
  /** write the newer `rope_parameters` key instead of top-level `rope_theta` */
  ropeParameters?: boolean;
  /** max_position_embeddings (default 4096) */
  maxPositions?: number;
  /**
   * 'test' (default): projections N(0, 1/√fan_in), norms 1 + N(0, 0.1), embeddings N(0, 1) — lively values
   * for checks; 'train': a starting point for training from scratch (transformers' LlamaPreTrainedModel:
   * every matrix N(0, 0.02), norms 1), with the residual projections o_proj and down_proj scaled by
   * 1/√(2·layers) as in GPT-2, so the residual stream does not grow with depth
   */
  init?: 'test' | 'train';
  /**
   * float32 weights drawn straight into Float32Arrays (no intermediate arrays: a 1B-parameter model fits in
   * memory and is drawn in seconds; the values differ from the default's)
   */
  float32?: boolean;
}

export function randomLlama(spec: RandomLlamaSpec, seed: number): HybridModel {
  const r = new Rng(seed);
  const hd = spec.headDim ?? spec.hidden / spec.heads;
  const theta = spec.ropeTheta ?? 10000;
  const raw: Record<string, unknown> = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: spec.vocab,
    hidden_size: spec.hidden,
    intermediate_size: spec.intermediate,
    num_hidden_layers: spec.layers,
    num_attention_heads: spec.heads,
    num_key_value_heads: spec.kvHeads,
    head_dim: hd,
    rms_norm_eps: 1e-5,
    max_position_embeddings: spec.maxPositions ?? 4096,
    tie_word_embeddings: spec.tie ?? false,
    bos_token_id: 1,
    eos_token_id: 2,
    hidden_act: 'silu',
    ...(spec.ropeParameters ? { rope_parameters: { rope_theta: theta, rope_type: 'default' } } : { rope_theta: theta }),
  };
  const llama = parseLlamaConfig(raw, 'random config');
  const w = new Map<string, Tensor>();
  const train = spec.init === 'train';
  const residual = train ? 0.02 / Math.sqrt(2 * spec.layers) : undefined;
  const draw = (shape: number[], f: () => number) => {
    const n = shape.reduce((a, b) => a * b, 1);
    if (!spec.float32) return Tensor.from(Array.from({ length: n }, f), shape);
    const a = new Float32Array(n); // (shape)
    for (let i = 0; i < n; i++) a[i] = f();
    return new Tensor(a, shape);
  };
  const mat = (rows: number, cols: number, std = train ? 0.02 : 1 / Math.sqrt(cols)) =>
    draw([rows, cols], () => Math.fround(r.normal(0, std)));
  const norm = (n: number) => draw([n], () => (train ? 1 : Math.fround(1 + r.normal(0, 0.1))));
  const dModel = spec.hidden;
  w.set('model.embed_tokens.weight', mat(spec.vocab, dModel, train ? 0.02 : 1));
  for (let i = 0; i < spec.layers; i++) {
    const p = `model.layers.${i}`;
    w.set(`${p}.input_layernorm.weight`, norm(dModel));
    w.set(`${p}.post_attention_layernorm.weight`, norm(dModel));
    w.set(`${p}.self_attn.q_proj.weight`, mat(spec.heads * hd, dModel));
    w.set(`${p}.self_attn.k_proj.weight`, mat(spec.kvHeads * hd, dModel));
    w.set(`${p}.self_attn.v_proj.weight`, mat(spec.kvHeads * hd, dModel));
    w.set(`${p}.self_attn.o_proj.weight`, mat(dModel, spec.heads * hd, residual));
    w.set(`${p}.mlp.gate_proj.weight`, mat(spec.intermediate, dModel));
    w.set(`${p}.mlp.up_proj.weight`, mat(spec.intermediate, dModel));
    w.set(`${p}.mlp.down_proj.weight`, mat(dModel, spec.intermediate, residual));
  }
  w.set('model.norm.weight', norm(dModel));
  if (!spec.tie) w.set('lm_head.weight', mat(spec.vocab, dModel));
  return { llama, weights: new WeightStore(w, 'random') };
}
