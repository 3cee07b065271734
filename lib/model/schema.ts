/**
 * Declarative schemas for the JSON files this project reads (Hugging Face Llama `config.json`,
 * MambaInLlama `mamba_config.json`, this project's `mil_config.json`). Each key has a spec; a value outside
 * it — or a key the schema does not know — is a ConfigError naming the file, the key, the value and what is
 * supported. Keys known not to change a forward pass (dtype, transformers_version, …) are listed as `ignored`
 * so that a real checkpoint's config passes, while anything unknown is refused rather than silently skipped.
 */
import { MilError } from '../errors.js';
import { lookup } from '../checked.js';

export class ConfigError extends MilError {
  constructor(
    readonly file: string,
    readonly problem: string,
  ) {
    super('E_CONFIG', `${file}: ${problem}`);
  }
}

type FieldSpec =
  | { type: 'int'; min?: number; max?: number; nullable?: boolean; required?: boolean; note?: string }
  | { type: 'number'; min?: number; max?: number; above?: number; required?: boolean; note?: string }
  | { type: 'bool'; only?: boolean; required?: boolean; note?: string }
  | { type: 'string'; oneOf?: readonly string[]; required?: boolean; note?: string }
  | { type: 'int-or-ints'; min?: number; max?: number; nullable?: boolean; required?: boolean; note?: string }
  | { type: 'ints'; min?: number; max?: number; distinct?: boolean; required?: boolean; note?: string }
  | { type: 'strings'; oneOf?: readonly string[]; note?: string }
  | { type: 'object'; schema: Schema; nullable?: boolean; required?: boolean; note?: string }
  | { type: 'ignored' };

export type Schema = Record<string, FieldSpec>;

const show = (v: unknown) => JSON.stringify(v) ?? String(v);

function checkInt(v: unknown, min = -Infinity, max = Infinity): string | null {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) return 'an integer';
  if (v < min || v > max) return `an integer in [${min}, ${max}]`;
  return null;
}

/** Check `obj` against `schema`; throws ConfigError at the first violation. */
export function checkObject(obj: Record<string, unknown>, schema: Schema, file: string, prefix = ''): void {
  const fail = (key: string, expected: string) => {
    throw new ConfigError(file, `'${prefix}${key}' is ${show(obj[key])}: expected ${expected}`);
  };
  for (const key of Object.keys(obj)) {
    if (!(key in schema)) {
      const known = Object.keys(schema).filter((k) => lookup(schema, k).type !== 'ignored');
      throw new ConfigError(
        file,
        `unknown key '${prefix}${key}' (value ${show(obj[key])}): this implementation does not know what it changes; supported keys: ${known.join(', ')}`,
      );
    }
  }
  for (const [key, spec] of Object.entries(schema)) {
    const v = obj[key];
    if (spec.type === 'ignored') continue;
    if (v === undefined) {
      if ('required' in spec && spec.required) throw new ConfigError(file, `'${prefix}${key}' is missing`);
      continue;
    }
    const note = 'note' in spec && spec.note ? ` (${spec.note})` : '';
    switch (spec.type) {
      case 'int': {
        if (v === null && spec.nullable) break;
        const e = checkInt(v, spec.min, spec.max);
        if (e) fail(key, e + note);
        break;
      }
      case 'number':
        if (typeof v !== 'number' || !Number.isFinite(v)) fail(key, 'a finite number' + note);
        else if (
          (spec.min !== undefined && v < spec.min) ||
          (spec.max !== undefined && v > spec.max) ||
          (spec.above !== undefined && !(v > spec.above))
        )
          fail(
            key,
            `a number ${spec.above !== undefined ? `> ${spec.above}` : `in [${spec.min ?? '-inf'}, ${spec.max ?? 'inf'}]`}${note}`,
          );
        break;
      case 'bool':
        if (typeof v !== 'boolean') fail(key, 'true or false' + note);
        else if (spec.only !== undefined && v !== spec.only)
          fail(key, `${spec.only}: ${!spec.only} is not supported${note}`);
        break;
      case 'string':
        if (typeof v !== 'string') fail(key, 'a string' + note);
        else if (spec.oneOf && !spec.oneOf.includes(v)) fail(key, `one of ${spec.oneOf.map(show).join(', ')}${note}`);
        break;
      case 'int-or-ints': {
        if (v === null && spec.nullable) break;
        const xs = Array.isArray(v) ? v : [v];
        if (Array.isArray(v) && v.length === 0) fail(key, 'an integer or a non-empty list of integers' + note);
        for (const x of xs)
          if (checkInt(x, spec.min, spec.max))
            fail(key, `an integer or a list of integers, each in [${spec.min ?? '-inf'}, ${spec.max ?? 'inf'}]${note}`);
        break;
      }
      case 'ints': {
        if (!Array.isArray(v)) fail(key, 'a list of integers' + note);
        const xs = v as unknown[];
        for (const x of xs)
          if (checkInt(x, spec.min, spec.max))
            fail(key, `a list of integers, each in [${spec.min ?? '-inf'}, ${spec.max ?? 'inf'}]${note}`);
        if (spec.distinct && new Set(xs).size !== xs.length) fail(key, 'a list without repeated entries' + note);
        break;
      }
      case 'strings':
        if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) fail(key, 'a list of strings' + note);
        else if (spec.oneOf)
          for (const x of v)
            if (!spec.oneOf.includes(x)) fail(key, `a list of ${spec.oneOf.map(show).join(', ')}${note}`);
        break;
      case 'object':
        if (v === null && spec.nullable) break;
        if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(key, 'an object' + note);
        checkObject(v as Record<string, unknown>, spec.schema, file, `${prefix}${key}.`);
        break;
    }
  }
}

/** Keys of Hugging Face's PretrainedConfig that do not change a forward pass. */
export const PRETRAINED_CONFIG_IGNORED: readonly string[] = [
  '_name_or_path',
  'architectures',
  'auto_map',
  'dtype',
  'torch_dtype',
  'transformers_version',
  'use_cache',
  'initializer_range',
  'pad_token_id',
  'output_attentions',
  'output_hidden_states',
  'return_dict',
  'is_encoder_decoder',
  'is_decoder',
  'add_cross_attention',
  'tie_encoder_decoder',
  'chunk_size_feed_forward',
  'id2label',
  'label2id',
  'problem_type',
  'tokenizer_class',
  'prefix',
  'sep_token_id',
  'decoder_start_token_id',
  'task_specific_params',
  'finetuning_task',
  'max_length',
  'min_length',
  'do_sample',
  'early_stopping',
  'num_beams',
  'num_beam_groups',
  'diversity_penalty',
  'temperature',
  'top_k',
  'top_p',
  'typical_p',
  'repetition_penalty',
  'length_penalty',
  'no_repeat_ngram_size',
  'encoder_no_repeat_ngram_size',
  'bad_words_ids',
  'num_return_sequences',
  'output_scores',
  'return_dict_in_generate',
  'forced_bos_token_id',
  'forced_eos_token_id',
  'remove_invalid_values',
  'exponential_decay_length_penalty',
  'suppress_tokens',
  'begin_suppress_tokens',
  'torchscript',
  'pruned_heads',
  'tf_legacy_loss',
  'use_bfloat16',
  'cross_attention_hidden_size',
  'attention_dropout',
];

export function ignoring(keys: readonly string[]): Schema {
  return Object.fromEntries(keys.map((k) => [k, { type: 'ignored' } as const]));
}
