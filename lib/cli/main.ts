/**
 * `mil` — the command line of mamba-in-llama.
 *
 *   mil demo [--backend NAME] [--out DIR]                  the main job: golden check, convert, generate
 *   mil golden verify DIR [--backend NAME|all] [--json]     check a mil-golden/1 folder
 *   mil golden emit --op OP --seed S [shape options] --out DIR [--name CASE]
 *   mil convert --teacher DIR (--attention F | --attn-layers 1,3) --variant mamba1|mamba2 --out DIR [--seed S] [--semantics upstream|clean]
 *   mil generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3) --max-new-tokens N
 *                [--temperature T --top-k K --top-p P --seed S] [--backend NAME] [--json]
 *   mil backends                                           which backends run here, and why not
 *
 * Exit status: 0 on success, 1 when a golden case failed, 2 on bad usage or input.
 */
import { MilError } from '../errors.js';
import { BACKENDS, backendStatus, isBackendName, type BackendName } from '../ops.js';
import { formatResult, verifyGolden, type VerifyReport } from '../golden/verify.js';
import { emitGolden, emitModel } from '../golden/emit.js';
import { GOLDEN_OPS, type ShapeOptions } from '../golden/ops.js';
import { getOps } from '../ops.js';
import { loadModel } from '../model/load.js';
import { convert, saveModel } from '../model/convert.js';
import { generate } from '../model/generate.js';
import { parseIds, tokenizerFor } from '../model/tokenizer.js';
import { demo } from './demo.js';
import { ModelDrafter, speculativeGenerate, truncateLayers } from '../decode/speculative.js';
import { join } from 'node:path';

const USAGE = `usage:
  mil demo [--backend NAME] [--out DIR]
  mil golden verify DIR [--backend ${BACKENDS.join('|')}|all] [--json]
  mil golden emit --op ${Object.keys(GOLDEN_OPS).join('|')} --seed S --out DIR
                  [--batch B --dim D --len L --state N --groups G --heads H --headdim P
                   --width W --chunk C --steps S --recompute R --name CASE]
                  speculative: [--variant mamba1|mamba2 --vocab V --heads H -k K --len PROMPT --steps NEW]
  mil golden emit --op model --variant llama|mamba1|mamba2 --seed S --out DIR [--vocab V --dim D --heads H --groups KV --headdim P --len L]
  mil convert --teacher DIR (--attention F | --attn-layers 1,3) --variant mamba1|mamba2 --out DIR
              [--seed S] [--semantics upstream|clean]
  mil generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3) --max-new-tokens N
               [--temperature T --top-k K --top-p P --seed S] [--backend NAME] [--json]
               [--speculative --draft DIR [--draft-layers N] -k K [--scheme lazy|per-position]]
  mil backends`;

class UsageError extends Error {}

function parseFlags(argv: string[]): { pos: string[]; flags: Record<string, string | true> } {
  const pos: string[] = [];
  const flags: Record<string, string | true> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-k') {
      flags.k = argv[++i] ?? true;
      continue;
    }
    if (a.startsWith('--')) {
      const [k, v] = a.slice(2).split('=', 2) as [string, string | undefined];
      if (v !== undefined) flags[k] = v;
      else if (i + 1 < argv.length && !argv[i + 1]!.startsWith('--') && k !== 'json') flags[k] = argv[++i]!;
      else flags[k] = true;
    } else pos.push(a);
  }
  return { pos, flags };
}

function intFlag(flags: Record<string, string | true>, k: string): number | undefined {
  const v = flags[k];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v === true || !Number.isInteger(n) || n <= 0) throw new UsageError(`--${k} must be a positive integer, got ${v === true ? 'nothing' : `'${v}'`}`);
  return n;
}

async function cmdVerify(pos: string[], flags: Record<string, string | true>): Promise<number> {
  const dir = pos[0];
  if (!dir) throw new UsageError('golden verify needs a folder');
  const b = flags.backend ?? 'reference';
  if (b === true) throw new UsageError('--backend needs a name');
  const json = flags.json === true;
  let names: BackendName[];
  const skipped: Array<{ backend: string; reason: string }> = [];
  if (b === 'all') {
    names = [];
    for (const s of await backendStatus()) {
      if (s.available) names.push(s.name);
      else skipped.push({ backend: s.name, reason: s.reason ?? '' });
    }
  } else {
    if (!isBackendName(b)) throw new UsageError(`unknown backend '${b}': expected one of ${BACKENDS.join(', ')}, or all`);
    names = [b];
  }
  const reports: VerifyReport[] = [];
  for (const name of names) {
    if (!json) console.log(`# ${dir} on backend '${name}' (tolerance ${name === 'reference' ? '1e-9' : '1e-4'} relative)`);
    const r = await verifyGolden(dir, name, json ? undefined : (c) => console.log(formatResult(c)));
    reports.push(r);
    if (!json) console.log(`${name}: ${r.passed} passed, ${r.failed} failed, ${r.unsupported} unsupported`);
  }
  for (const s of skipped) if (!json) console.log(`# backend '${s.backend}' not available here: ${s.reason}`);
  const passed = reports.reduce((s, r) => s + r.passed, 0);
  const failed = reports.reduce((s, r) => s + r.failed, 0);
  const unsupported = reports.reduce((s, r) => s + r.unsupported, 0);
  if (json) console.log(JSON.stringify({ dir, reports, skipped, passed, failed, unsupported }, (_k, v) => (v === Infinity ? 'Infinity' : v)));
  else console.log(`${passed} passed, ${failed} failed, ${unsupported} unsupported`);
  return failed > 0 ? 1 : 0;
}

async function cmdEmit(flags: Record<string, string | true>): Promise<number> {
  const op = flags.op;
  const out = flags.out;
  if (typeof op !== 'string') throw new UsageError('golden emit needs --op');
  if (typeof out !== 'string') throw new UsageError('golden emit needs --out DIR');
  const seedRaw = flags.seed ?? '0';
  const seed = Number(seedRaw);
  if (seedRaw === true || !Number.isInteger(seed)) throw new UsageError(`--seed must be an integer`);
  const shapes: ShapeOptions = {};
  for (const k of ['batch', 'dim', 'len', 'state', 'groups', 'heads', 'headdim', 'width', 'chunk', 'steps', 'vocab', 'k'] as const) shapes[k] = intFlag(flags, k);
  const variant = strFlag(flags, 'variant');
  if (variant !== undefined) shapes.variant = variant;
  if (flags.recompute !== undefined) {
    const r = Number(flags.recompute);
    if (flags.recompute === true || !Number.isInteger(r) || r < 0) throw new UsageError('--recompute must be a non-negative integer');
    shapes.recompute = r;
  }
  if (op === 'model') {
    const dir = await emitModel(shapes.variant ?? 'mamba2', seed, shapes, out, typeof flags.name === 'string' ? flags.name : undefined);
    console.log(`wrote model case ${dir} (checkpoint, golden.safetensors, golden.json)`);
    return 0;
  }
  const c = await emitGolden(op, seed, shapes, out, typeof flags.name === 'string' ? flags.name : undefined);
  const list = (xs: string[]) => (xs.length > 12 ? `${xs.slice(0, 6).join(', ')}, … (${xs.length} in all)` : xs.join(', '));
  console.log(`wrote case '${c.name}' (${c.op}) to ${out}: inputs ${list(c.inputs)}; outputs ${list(c.outputs)}`);
  return 0;
}

function strFlag(flags: Record<string, string | true>, k: string): string | undefined {
  const v = flags[k];
  if (v === true) throw new UsageError(`--${k} needs a value`);
  return v;
}
function numFlag(flags: Record<string, string | true>, k: string): number | undefined {
  const v = strFlag(flags, k);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UsageError(`--${k} must be a number, got '${v}'`);
  return n;
}

async function cmdConvert(flags: Record<string, string | true>): Promise<number> {
  const teacher = strFlag(flags, 'teacher');
  const out = strFlag(flags, 'out');
  const variant = strFlag(flags, 'variant') ?? 'mamba2';
  if (!teacher || !out) throw new UsageError('convert needs --teacher DIR and --out DIR');
  if (variant !== 'mamba1' && variant !== 'mamba2') throw new UsageError(`--variant must be mamba1 or mamba2, got '${variant}'`);
  const semantics = strFlag(flags, 'semantics');
  if (semantics !== undefined && semantics !== 'upstream' && semantics !== 'clean') throw new UsageError(`--semantics must be upstream or clean`);
  const layersFlag = strFlag(flags, 'attn-layers');
  const attnLayers = layersFlag === undefined ? undefined : layersFlag === '' ? [] : layersFlag.split(',').map(Number);
  const t0 = performance.now();
  console.error(`loading teacher ${teacher} …`);
  const t = loadModel(teacher);
  console.error(`converting ${t.llama.numLayers} layers (Algorithm 1, ${variant}) …`);
  const m = convert(t, { variant, attnLayers, attentionFraction: numFlag(flags, 'attention') ?? 0.5, seed: numFlag(flags, 'seed') ?? 0, semantics });
  console.error(`writing ${out} …`);
  saveModel(out, m);
  const kept = m.mamba!.attnLayers;
  console.log(`wrote ${out}: ${variant} hybrid, attention kept in layers [${kept.join(', ')}] (${kept.length}/${m.llama.numLayers}), semantics ${m.mamba!.semantics}, ${((performance.now() - t0) / 1000).toFixed(2)} s`);
  return 0;
}

async function cmdGenerate(flags: Record<string, string | true>): Promise<number> {
  const dir = strFlag(flags, 'model');
  if (!dir) throw new UsageError('generate needs --model DIR');
  const json = flags.json === true;
  const m = loadModel(dir);
  const tok = tokenizerFor(m.llama.vocabSize);
  const text = strFlag(flags, 'prompt');
  const idsFlag = strFlag(flags, 'prompt-ids');
  let prompt: number[];
  if (idsFlag !== undefined) prompt = parseIds(idsFlag, m.llama.vocabSize);
  else if (text !== undefined) {
    if (!tok) throw new UsageError(`this model has no tokenizer (vocabulary ${m.llama.vocabSize} < 256 for byte-level text): use --prompt-ids`);
    prompt = tok.encode(text);
  } else throw new UsageError('generate needs --prompt TEXT or --prompt-ids 1,2,3');
  const maxNew = numFlag(flags, 'max-new-tokens') ?? 32;
  const backend = strFlag(flags, 'backend') ?? 'reference';
  const ops = await getOps(backend);
  const stream = (id: number) => {
    if (!json) process.stdout.write(tok ? tok.decode([id]) : `${id} `);
  };
  // when comparing with speculative decoding, both paths are measured warm (kernels compiled, JIT done)
  if (flags.speculative) await generate(ops, m, prompt, { maxNewTokens: Math.min(2, maxNew), eos: [] });
  const r = await generate(ops, m, prompt, {
    maxNewTokens: maxNew,
    temperature: numFlag(flags, 'temperature') ?? 0,
    topK: numFlag(flags, 'top-k'),
    topP: numFlag(flags, 'top-p'),
    seed: numFlag(flags, 'seed') ?? 0,
    onToken: stream,
  });
  const timing = { prefill: r.prefill, decode: r.decode };
  const base = { backend, prompt, tokens: r.tokens, ...(tok ? { text: tok.decode(r.tokens) } : {}), stoppedBy: r.stoppedBy, ...timing };
  if (!flags.speculative) {
    if (json) console.log(JSON.stringify(base));
    else
      console.log(
        `\n[${backend}] ${r.tokens.length} tokens (stopped by ${r.stoppedBy}); prefill ${r.prefill.tokens} tokens in ${r.prefill.ms.toFixed(1)} ms = ${r.prefill.tokensPerS.toFixed(1)} tok/s; decode ${r.decode.tokens} tokens in ${r.decode.ms.toFixed(1)} ms = ${r.decode.tokensPerS.toFixed(1)} tok/s`,
      );
    return 0;
  }
  // speculative decoding of the same prompt, measured in the same run against the plain decode above
  const draftDir = strFlag(flags, 'draft');
  if (!draftDir) throw new UsageError('--speculative needs --draft DIR');
  const K = numFlag(flags, 'k') ?? 4;
  if (!Number.isInteger(K) || K < 1) throw new UsageError(`-k must be a positive integer, got ${K}`);
  const scheme = strFlag(flags, 'scheme') ?? 'lazy';
  if (scheme !== 'lazy' && scheme !== 'per-position') throw new UsageError(`--scheme must be lazy or per-position`);
  let draftModel = loadModel(draftDir);
  const dl = numFlag(flags, 'draft-layers');
  if (dl !== undefined) draftModel = truncateLayers(draftModel, dl);
  if (draftModel.llama.vocabSize !== m.llama.vocabSize) throw new UsageError(`draft vocabulary ${draftModel.llama.vocabSize} differs from the target's ${m.llama.vocabSize}`);
  if (!json) process.stdout.write(`\n[speculative K=${K}, ${scheme}] `);
  const sOpts = { K, maxNewTokens: maxNew, temperature: numFlag(flags, 'temperature') ?? 0, topK: numFlag(flags, 'top-k'), topP: numFlag(flags, 'top-p'), seed: numFlag(flags, 'seed') ?? 0, scheme: scheme as 'lazy' | 'per-position' };
  await speculativeGenerate(ops, m, new ModelDrafter(ops, draftModel, K + 1, sOpts.scheme), prompt, { ...sOpts, maxNewTokens: Math.min(2, maxNew) }); // warm-up
  const s = await speculativeGenerate(ops, m, new ModelDrafter(ops, draftModel, K + 1, sOpts.scheme), prompt, { ...sOpts, onToken: stream });
  const plainMs = r.prefill.ms + r.decode.ms;
  const specMs = s.prefillMs + s.decodeMs;
  const spec = {
    K,
    scheme,
    speculativeTokens: s.tokens,
    sameAsPlain: s.tokens.length === r.tokens.length && s.tokens.every((t, i) => t === r.tokens[i]),
    rounds: s.rounds.length,
    tokensPerVerify: s.tokensPerVerify,
    acceptedPerRound: s.rounds.map((x) => x.accepted),
    acceptanceRate: s.acceptanceRate,
    speculativeTokensPerS: (s.tokens.length * 1000) / specMs,
    plainTokensPerS: (r.tokens.length * 1000) / plainMs,
    speedup: plainMs / specMs,
  };
  if (json) console.log(JSON.stringify({ ...base, ...spec }));
  else
    console.log(
      `\n[speculative] ${s.rounds.length} verify steps, ${spec.tokensPerVerify.toFixed(2)} tokens per verify step, acceptance ${(100 * spec.acceptanceRate).toFixed(1)}% (accepted per round: ${spec.acceptedPerRound.join(' ')})\n` +
        `[speculative] ${spec.speculativeTokensPerS.toFixed(1)} tok/s vs plain ${spec.plainTokensPerS.toFixed(1)} tok/s (prefill + decode, same prompt, same run): speedup ×${spec.speedup.toFixed(2)}; output ${spec.sameAsPlain ? 'identical to' : 'differs from'} plain decoding`,
    );
  return 0;
}

async function cmdBackends(): Promise<number> {
  for (const s of await backendStatus()) console.log(`${s.name.padEnd(16)} ${s.available ? 'available' : `not available: ${s.reason}`}`);
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const { pos, flags } = parseFlags(argv);
  try {
    if (pos[0] === 'golden' && pos[1] === 'verify') return await cmdVerify(pos.slice(2), flags);
    if (pos[0] === 'golden' && pos[1] === 'emit') return await cmdEmit(flags);
    if (pos[0] === 'backends') return await cmdBackends();
    if (pos[0] === 'convert') return await cmdConvert(flags);
    if (pos[0] === 'demo') {
      const root = join(import.meta.dirname, '..', '..');
      return await demo(root, strFlag(flags, 'out') ?? join(root, 'runs', 'demo'), strFlag(flags, 'backend'));
    }
    if (pos[0] === 'generate') return await cmdGenerate(flags);
    if (pos.length === 0 || flags.help) {
      console.log(USAGE);
      return pos.length === 0 && !flags.help ? 2 : 0;
    }
    throw new UsageError(`unknown command '${pos.join(' ')}'`);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`mil: ${e.message}\n${USAGE}`);
      return 2;
    }
    if (e instanceof MilError) {
      console.error(`mil: ${e.name}: ${e.message}`);
      return 2;
    }
    throw e;
  }
}
