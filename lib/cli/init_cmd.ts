/**
 * `mil init --config config.json --out DIR [--dtype bf16|f16|f32] [--seed S] [--max-shard-size SIZE]
 *           [--layers N] [--mamba-config mamba_config.json [--variant mamba1|mamba2]]`:
 * a seeded random checkpoint of a Llama (or, with --mamba-config, a hybrid) config, sharded as Hugging
 * Face's save_pretrained (default max shard "5GB"), written through the one writer (lib/io/writer.ts): the
 * folder is complete or absent. `--layers N` keeps the config's other dimensions with N layers (a reduced
 * real-shape model for tests). config.json is written with `torch_dtype` set to the written dtype.
 * Every option and both configs are checked before any weight is made (exit 2).
 */
import { ConfigError, parseLlamaConfig, parseMambaConfig, type MambaVariant } from '../model/config.js';
import { HF_MAX_SHARD_BYTES, checkpointFiles } from '../model/weights.js';
import { TORCH_DTYPE, parseSize, randomCheckpoint, type WriteDType } from '../model/init.js';
import { readJsonObject } from '../io/json.js';
import { writeFolder } from '../io/writer.js';
import { checkPaths, optionPaths } from '../io/paths.js';
import { UsageError, type OptSpec, type Parsed } from './args.js';
import { lookup } from '../checked.js';

/** The options of a command that writes a checkpoint (init, convert): its dtype and its shard size. */
export const CHECKPOINT_OPTIONS: Record<string, OptSpec> = {
  dtype: { kind: 'enum', choices: ['bf16', 'f16', 'f32'] },
  'max-shard-size': { kind: 'string', help: "Hugging Face's max_shard_size: 5GB, 500MB, 2GiB or bytes" },
};

/** --max-shard-size in bytes (Hugging Face's syntax; absent: its default "5GB"); a bad size is a UsageError. */
export function maxShardBytes(sizeText: string | undefined): number {
  const shardBytes = sizeText === undefined ? HF_MAX_SHARD_BYTES : parseSize(sizeText);
  if (shardBytes === null)
    throw new UsageError(`--max-shard-size: expected a size like 5GB, 500MB, 2GiB or a byte count, got '${sizeText}'`);
  return shardBytes;
}

export const INIT_OPTIONS: Record<string, OptSpec> = {
  config: { kind: 'string' },
  out: { kind: 'string' },
  seed: { kind: 'int', min: 0, max: Number.MAX_SAFE_INTEGER },
  ...CHECKPOINT_OPTIONS,
  layers: { kind: 'int', min: 1, max: 4096 },
  'mamba-config': { kind: 'string' },
  variant: { kind: 'enum', choices: ['mamba1', 'mamba2'] },
  force: { kind: 'switch', help: 'replace an existing --out folder that mil init did not write' },
};

export const INIT_USAGE = `  mil init --config config.json --out DIR [--dtype bf16|f16|f32] [--seed S] [--max-shard-size 5GB] [--layers N]
           [--mamba-config mamba_config.json [--variant mamba1|mamba2]] [--force]`;

/** --dtype's names of the written dtypes. */
export const DTYPES: Record<string, WriteDType> = { bf16: 'BF16', f16: 'F16', f32: 'F32' };

export async function cmdInit(p: Parsed): Promise<number> {
  const v = p.values;
  const configPath = v.config as string | undefined;
  const out = v.out as string | undefined;
  if (!configPath || !out) throw new UsageError('init needs --config config.json and --out DIR');
  const mambaPath = v['mamba-config'] as string | undefined;
  if (v.variant !== undefined && !mambaPath) throw new UsageError('init: --variant is only valid with --mamba-config');
  const dtype = lookup(DTYPES, (v.dtype as string | undefined) ?? 'bf16');
  const seed = (v.seed as number | undefined) ?? 0;
  const shardBytes = maxShardBytes(v['max-shard-size'] as string | undefined);
  const readJson = (path: string) => readJsonObject(path, (q) => new ConfigError(path, q));
  const raw: Record<string, unknown> = { ...readJson(configPath), torch_dtype: TORCH_DTYPE[dtype] };
  delete raw.dtype; // the newer spelling of torch_dtype: one key, the written dtype
  const layers = v.layers as number | undefined;
  if (layers !== undefined) raw.num_hidden_layers = layers;
  const llama = parseLlamaConfig(raw, configPath);
  let mambaRaw: Record<string, unknown> | undefined;
  const variant = ((v.variant as string | undefined) ?? 'mamba2') as MambaVariant;
  let mamba;
  if (mambaPath) {
    mambaRaw = readJson(mambaPath);
    if (layers !== undefined)
      mambaRaw = {
        ...mambaRaw,
        n_layer: layers,
        attn_layers: ((mambaRaw.attn_layers ?? []) as number[]).filter((l) => l < layers),
      };
    mamba = parseMambaConfig(mambaRaw, variant, mambaPath);
    if (mamba.nLayer !== llama.numLayers)
      throw new ConfigError(mambaPath, `n_layer ${mamba.nLayer} differs from num_hidden_layers ${llama.numLayers}`);
    if (mamba.dModel !== llama.hiddenSize)
      throw new ConfigError(mambaPath, `d_model ${mamba.dModel} differs from hidden_size ${llama.hiddenSize}`);
  }
  checkPaths({
    command: 'init',
    inputs: optionPaths(v, ['config', 'mamba-config']),
    outputs: [{ option: 'out', path: out }],
    force: v.force === true,
  });
  const weights = randomCheckpoint({ llama, mamba }, seed);
  const files = checkpointFiles(weights, { dtype, shardBytes, order: 'given' });
  const t0 = performance.now();
  writeFolder(
    out,
    (stage) => {
      stage.writeFile('config.json', JSON.stringify(raw, null, 2) + '\n');
      if (mambaRaw) {
        stage.writeFile('mamba_config.json', JSON.stringify(mambaRaw, null, 2) + '\n');
        stage.writeFile('mil_config.json', JSON.stringify({ variant }, null, 2) + '\n');
      }
      for (const [rel, data] of files) stage.writeFile(rel, data);
    },
    { option: 'out', inputs: [{ option: 'config', path: configPath }] },
  );
  const params = Object.values(weights).reduce((s, t) => s + t.size, 0);
  const shards = files.filter(([f]) => f.endsWith('.safetensors')).length;
  console.log(
    `wrote ${out}: ${params} parameters (${dtype}, ${(params * (dtype === 'F32' ? 4 : 2)) / 1e9} GB in ${shards} file(s)), seed ${seed}; ` +
      `${((params * 4) / 2 ** 30).toFixed(2)} GiB as float32 in memory once loaded; ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  return 0;
}
