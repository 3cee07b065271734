/**
 * `import … from 'mamba-in-llama/models'`: Llama teachers and MambaInLlama hybrids — configs, checkpoints,
 * Algorithm 1 (PAPER.md §3: x ← W^V, B ← W^K, C ← W^Q, out ← W^O copied from a teacher's attention layer into
 * a Mamba layer), the cached hybrid forward (prefill, then one token per decode step) and generation.
 *
 *   const model = loadModel('node_modules/mamba-in-llama/models/hybrid-mamba2-50');
 *   const logits = await forward(ops, model, [[1, 5, 9]], newCache(model, 1)); // (batch, L, vocab)
 *
 * @module
 */

/** Read a Hugging Face Llama or MambaInLlama folder (checked for every weight's presence and shape). */
export { loadModel, MemoryError, type LoadOptions } from './load.js';
/** The model, its caches and the forward over token ids through them. */
export {
  forward,
  newCache,
  type HybridModel,
  type ModelCache,
  type AttentionCache,
  type Mamba1Cache,
  type Mamba2Cache,
} from './hybrid.js';
/** One layer's cache: attention's KV entries, or a Mamba layer's conv and SSM state. */
export type { LayerCache } from './mixers/block.js';
export type { MambaStateStore, SsmSteps } from './state_store.js';
/** A model's weights by their checkpoint names (float32 as read, float64 where a reference widens). */
export type { WeightStore } from './weights.js';
/** Llama 3's rope scaling (`rope_scaling` in config.json). */
export type { RopeScaling } from '../ref/rope.js';
/** The tokenizers `loadTokenizer` returns: this project's byte-level BPE and Hugging Face's tokenizer.json. */
export type { BpeTokenizer } from '../text/bpe.js';
export type { HfTokenizer } from '../text/hf_tokenizer.js';
/** What `saveModel` writes through the one writer (lib/io/writer.ts) and the dtypes it may store. */
export type { WriteData, WriteOptions } from '../io/writer.js';
export type { WriteDType } from '../io/safetensors.js';
/** The config files: Llama's `config.json` and MambaInLlama's `mamba_config.json`, parsed and checked. */
export {
  parseLlamaConfig,
  parseMambaConfig,
  attentionLayersFor,
  type LlamaConfig,
  type MambaConfig,
  type MambaVariant,
} from './config.js';
/** A config key or value this library refuses, by name. */
export { ConfigError } from './schema.js';
/** Algorithm 1: a teacher into a hybrid; writing a model folder; the layer-dropping ablation. */
export { convert, saveModel, dropLayers, type ConvertOptions, type SaveOptions } from './convert.js';
/** Greedy and sampled generation with caches, and the sampling rules (temperature, top-k, top-p). */
export {
  generate,
  sampleToken,
  argmax,
  type GenerateOptions,
  type GenerateResult,
  type SamplingOptions,
} from './generate.js';
/** A random Llama of any small shape (tests, conformance). */
export { randomLlama, type RandomLlamaSpec } from './random.js';
/** Tokenizers: a folder's `tokenizer.json` (BPE or Hugging Face), the byte-level fallback, `--prompt-ids`. */
export { loadTokenizer, modelTokenizer, byteTokenizer, parseIds, type Tokenizer } from './tokenizer.js';
