/**
 * `mil` — the command line of mamba-in-llama.
 *
 *   mil demo [--backend NAME] [--out DIR]                  the main job: golden check, convert, generate
 *   mil golden verify DIR [--backend NAME|all] [--allow-unsupported] [--json]
 *   mil golden emit --op OP --seed S [shape options] --out DIR [--name CASE]   (OP: a forward or *_grad op, or model [--train])
 *   mil convert --teacher DIR (--attention F | --attn-layers 1,3) --variant mamba1|mamba2 --out DIR [--seed S] [--semantics upstream|clean]
 *               [--dtype bf16|f16|f32] [--max-shard-size 5GB]   (streamed layer by layer: convertFolder)
 *   mil generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3) --max-new-tokens N
 *                [--temperature T --top-k K --top-p P --seed S] [--repetition-penalty R] [--backend NAME] [--json]
 *                [--chat [--system TEXT] [--chat-template FILE]]   (--prompt as one user turn of the chat template)
 *   mil chat --model DIR [--system TEXT] [options of generate]   a conversation, turns from stdin (chat_cmd.ts)
 *                (generate and demo: the fastest backend here unless --backend names one: wasm-simd on CPUs)
 *   mil backends                                           which backends run here, and why not
 *   mil tokenizer train | train | distill | eval            training (lib/cli/train_cmds.ts)
 *   mil data build --out DIR [--seed S]                     the #25 training corpus as token ids (lib/cli/data_cmd.ts)
 *   mil passkey --model DIR[,DIR…] [--out DIR]              the passkey long-context test, heat-map (passkey_cmd.ts)
 *
 * Every option is typed and range-checked, and every option of a command is validated — including
 * conflicts between options, the output path and the backend — before the command does any work
 * (lib/cli/args.ts). Exit status: EXIT and exitCodeFor in lib/cli/exit.ts (0 ok, 1 a check failed, 2 bad usage or
 * input, 3 a training run diverged, 4 the output locked by another run, 5 conform checked nothing, 6 I/O or
 * environment, 7 internal error, 130/143 interrupted).
 */
import { join } from 'node:path';
import { MilError } from '../errors.js';
import { BACKENDS, backendStatus, defaultBackend, getOps, type BackendName } from '../ops.js';
import { formatResult, verifyGolden, type VerifyReport } from '../golden/verify.js';
import { EMIT_LIMITS, checkEmitShapes, emitGolden, emitModel } from '../golden/emit.js';
import { GOLDEN_OPS, type ShapeOptions } from '../golden/ops.js';
import { loadModel } from '../model/load.js';
import { convertFolder, tokenizerFiles } from '../model/convert.js';
import { lookup } from '../checked.js';
import { checkLength, generate } from '../model/generate.js';
import { folderTokenizer } from '../model/tokenizer.js';
import { demo } from './demo.js';
import { ModelDrafter, speculativeGenerate } from '../decode/speculative.js';
import { truncateLayers } from '../decode/drafts.js';
import { checkOutput } from '../io/writer.js';
import { releaseRunLocks } from '../io/run_lock.js';
import { checkPaths, optionPaths } from '../io/paths.js';
import { UsageError, parseCommand, suggest, type OptSpec, type Parsed } from './args.js';
import { cmdConform } from './conform_cmd.js';
import { EXIT, EXIT_HELP, exitCodeFor } from './exit.js';
import { CHECKPOINT_OPTIONS, DTYPES, INIT_OPTIONS, INIT_USAGE, cmdInit, maxShardBytes } from './init_cmd.js';
import { TOKENIZE_OPTIONS, TOKENIZE_USAGE, cmdTokenize } from './tokenize_cmd.js';
import {
  DATA_OPTIONS,
  DATA_USAGE,
  INSTRUCT_OPTIONS,
  INSTRUCT_USAGE,
  RETRIEVAL_OPTIONS,
  RETRIEVAL_USAGE,
  cmdDataRetrieval,
  cmdDataBuild,
  cmdDataInstruct,
} from './data_cmd.js';
import { PASSKEY_OPTIONS, PASSKEY_USAGE, cmdPasskey } from './passkey_cmd.js';
import {
  CHAT_OPTIONS,
  CHAT_TEMPLATE_OPTIONS,
  CHAT_USAGE,
  SAMPLING_OPTIONS,
  chatModel,
  chatTemplate,
  cmdChat,
  samplingValues,
} from './chat_cmd.js';
import { encodePlain, decodeShown } from '../model/chat.js';
import { renderChat, type ChatMessage } from '../text/chat_template.js';
import { TextStream } from '../text/stream.js';
import { CONFORM_OPS } from '../conform/cases.js';
import { PROTOCOLS } from '../conform/harness.js';
import { packageRoot } from '../package_root.js';
import {
  TRAIN_COMMANDS,
  SHIPPED_TOKENIZER,
  TRAIN_USAGE,
  cmdDistill,
  cmdDpo,
  cmdEval,
  cmdSft,
  cmdTokenizerTrain,
  cmdTrain,
  setInvocation,
} from './train_cmds.js';

export { EXIT, exitCodeFor };

const MAX_SEED = Number.MAX_SAFE_INTEGER;
const seedOpt: OptSpec = { kind: 'int', min: 0, max: MAX_SEED, help: 'seed of the generator (0 … 2^53 − 1)' };
const backendOpt: OptSpec = { kind: 'enum', choices: BACKENDS };

const COMMANDS = {
  demo: {
    options: { backend: backendOpt, out: { kind: 'string' } } as Record<string, OptSpec>,
    positionals: [0, 0] as [number, number],
  },
  'golden verify': {
    options: {
      backend: { kind: 'enum', choices: [...BACKENDS, 'all'] },
      json: { kind: 'switch' },
      'allow-unsupported': { kind: 'switch' },
    } as Record<string, OptSpec>,
    positionals: [1, 1] as [number, number],
  },
  'golden emit': {
    options: {
      op: { kind: 'enum', choices: [...Object.keys(GOLDEN_OPS), 'model'] },
      seed: seedOpt,
      out: { kind: 'string' },
      name: {
        kind: 'string',
        pattern: /^[A-Za-z0-9][A-Za-z0-9_.-]*$/,
        patternHelp: 'a case name of letters, digits, _ . -',
      },
      variant: { kind: 'enum', choices: ['llama', 'mamba1', 'mamba2'] },
      train: { kind: 'switch' },
      force: { kind: 'switch' },
      ...Object.fromEntries(
        Object.entries(EMIT_LIMITS).map(([k, [lo, hi]]) => [
          k,
          { kind: 'int', min: lo, max: hi, ...(k === 'k' ? { short: 'k' } : {}) },
        ]),
      ),
    } as Record<string, OptSpec>,
    positionals: [0, 0] as [number, number],
  },
  convert: {
    options: {
      teacher: { kind: 'string' },
      out: { kind: 'string' },
      variant: { kind: 'enum', choices: ['mamba1', 'mamba2'] },
      attention: { kind: 'number', min: 0, max: 1 },
      'attn-layers': { kind: 'ints', min: 0, max: 4095, allowEmpty: true },
      seed: seedOpt,
      semantics: { kind: 'enum', choices: ['upstream', 'clean'] },
      ...CHECKPOINT_OPTIONS,
      force: { kind: 'switch' },
    } as Record<string, OptSpec>,
    positionals: [0, 0] as [number, number],
  },
  generate: {
    options: {
      model: { kind: 'string' },
      prompt: { kind: 'string' },
      'prompt-ids': { kind: 'ints', min: 0, max: 2 ** 31 - 1 },
      'max-new-tokens': { kind: 'int', min: 1, max: 1 << 20 },
      ...SAMPLING_OPTIONS,
      chat: { kind: 'switch' },
      ...CHAT_TEMPLATE_OPTIONS,
      backend: backendOpt,
      json: { kind: 'switch' },
      speculative: { kind: 'switch' },
      draft: { kind: 'string' },
      'draft-layers': { kind: 'int', min: 1, max: 4096 },
      k: { kind: 'int', min: 1, max: 64, short: 'k' },
      scheme: { kind: 'enum', choices: ['lazy', 'per-position'] },
    } as Record<string, OptSpec>,
    positionals: [0, 0] as [number, number],
  },
  backends: { options: {} as Record<string, OptSpec>, positionals: [0, 0] as [number, number] },
  init: { options: INIT_OPTIONS, positionals: [0, 0] as [number, number] },
  tokenize: { options: TOKENIZE_OPTIONS, positionals: [0, 0] as [number, number] },
  chat: { options: CHAT_OPTIONS, positionals: [0, 0] as [number, number] },
  ...TRAIN_COMMANDS,
  'data build': { options: DATA_OPTIONS, positionals: [0, 0] as [number, number] },
  'data instruct': { options: INSTRUCT_OPTIONS, positionals: [0, 0] as [number, number] },
  'data retrieval': { options: RETRIEVAL_OPTIONS, positionals: [0, 0] as [number, number] },
  passkey: { options: PASSKEY_OPTIONS, positionals: [0, 0] as [number, number] },
  conform: {
    options: {
      op: { kind: 'enum', choices: CONFORM_OPS },
      port: { kind: 'string' },
      runs: { kind: 'int', min: 1, max: 1_000_000 },
      seed: seedOpt,
      rtol: { kind: 'number', min: 0, max: 1e6, help: 'allclose: |got − want| ≤ atol + rtol·|want|' },
      atol: { kind: 'number', min: 0, max: 1e300, help: 'allclose: |got − want| ≤ atol + rtol·|want|' },
      timeout: { kind: 'int', min: 1, max: 3_600_000, help: 'per case, milliseconds' },
      protocol: { kind: 'enum', choices: PROTOCOLS },
      save: { kind: 'string' },
      replay: { kind: 'string' },
      json: { kind: 'switch' },
      'fail-fast': { kind: 'switch' },
      force: { kind: 'switch' },
    } as Record<string, OptSpec>,
    positionals: [0, 0] as [number, number],
  },
};
type CommandName = keyof typeof COMMANDS;

const USAGE = `usage:
  mil demo [--backend NAME] [--out DIR]
  mil golden verify DIR [--backend ${BACKENDS.join('|')}|all] [--allow-unsupported] [--json]
  mil golden emit --op ${Object.keys(GOLDEN_OPS).join('|')} --seed S --out DIR
                  [--batch B --dim D --len L --state N --groups G --heads H --headdim P
                   --width W --chunk C --steps S --recompute R --name CASE --force]
                  speculative: [--variant mamba1|mamba2 --vocab V --heads H -k K --len PROMPT --steps NEW]
  mil golden emit --op model --variant llama|mamba1|mamba2 --seed S --out DIR [--vocab V --dim D --heads H --groups KV --headdim P --len L] [--train]
  mil convert --teacher DIR (--attention F | --attn-layers 1,3) --variant mamba1|mamba2 --out DIR
              [--seed S] [--semantics upstream|clean] [--dtype bf16|f16|f32] [--max-shard-size 5GB] [--force]
              (streamed layer by layer; written in the teacher's dtype unless --dtype)
  mil generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [--max-new-tokens N]
               [--temperature T [--top-k K] [--top-p P] [--seed S]] [--repetition-penalty R] [--backend NAME] [--json]
               [--speculative --draft DIR [--draft-layers N] [-k K] [--scheme lazy|per-position]]
               [--chat [--system TEXT] [--chat-template FILE] [--date-string S]]   (--prompt as a chat's user turn)
               (generate, demo: the fastest backend here unless --backend names one — wasm-simd on CPUs;
                --backend reference for float64)
  mil backends
${INIT_USAGE}
${TOKENIZE_USAGE}
${CHAT_USAGE}
${TRAIN_USAGE}
${DATA_USAGE}
${INSTRUCT_USAGE}
${RETRIEVAL_USAGE}
${PASSKEY_USAGE}
  mil conform --op OP --port "CMD" [--protocol files|lines] [--runs N] [--seed S] [--rtol R] [--atol A]
              [--timeout MS] [--save DIR [--force]] [--fail-fast] [--json]
  mil conform --replay DIR --port "CMD" [--protocol files|lines] [--rtol R] [--atol A] [--timeout MS] [--json]
              OP: ${CONFORM_OPS.join('|')}   (protocol: docs/conform.md)
${EXIT_HELP}`;

type V = Parsed['values'];
const str = (v: V, k: string) => v[k] as string | undefined;
const num = (v: V, k: string) => v[k] as number | undefined;
const need = (v: V, k: string, cmd: string): string => {
  const x = str(v, k);
  if (x === undefined) throw new UsageError(`${cmd} needs --${k}`);
  return x;
};
const only = (v: V, k: string, needs: string, cmd: string, ok: boolean) => {
  if (v[k] !== undefined && !ok) throw new UsageError(`${cmd}: --${k} is only valid with ${needs}`);
};

/**
 * The backend must run here: checked before any work (exit 6 with the reason where it cannot). Absent: the
 * fastest here (`defaultBackend`: wasm-simd on CPUs; the float64 reference only when asked).
 */
async function checkBackend(name: string | undefined): Promise<BackendName> {
  const b = (name ?? defaultBackend()) as BackendName;
  await getOps(b);
  return b;
}

async function cmdVerify(p: Parsed): Promise<number> {
  const dir = p.positionals[0];
  const v = p.values;
  const b = str(v, 'backend') ?? 'reference';
  const json = v.json === true;
  const allowUnsupported = v['allow-unsupported'] === true;
  let names: BackendName[];
  const skipped: Array<{ backend: string; reason: string }> = [];
  if (b === 'all') {
    names = [];
    for (const s of await backendStatus()) {
      if (s.available) names.push(s.name);
      else skipped.push({ backend: s.name, reason: s.reason ?? '' });
    }
  } else names = [await checkBackend(b)];
  const reports: VerifyReport[] = [];
  for (const name of names) {
    if (!json)
      console.log(`# ${dir} on backend '${name}' (tolerance ${name === 'reference' ? '1e-9' : '1e-4'} relative)`);
    const r = await verifyGolden(dir, name, json ? undefined : (c) => console.log(formatResult(c)));
    reports.push(r);
    if (!json) console.log(`${name}: ${r.passed} passed, ${r.failed} failed, ${r.unsupported} unsupported`);
  }
  for (const s of skipped) if (!json) console.log(`# backend '${s.backend}' not available here: ${s.reason}`);
  const passed = reports.reduce((s, r) => s + r.passed, 0);
  const failed = reports.reduce((s, r) => s + r.failed, 0);
  const unsupported = reports.reduce((s, r) => s + r.unsupported, 0);
  const ok = failed === 0 && passed > 0 && (unsupported === 0 || allowUnsupported);
  if (json)
    console.log(
      JSON.stringify({ dir, reports, skipped, passed, failed, unsupported, ok }, (_k, x) =>
        x === Infinity ? 'Infinity' : x,
      ),
    );
  else {
    console.log(`${passed} passed, ${failed} failed, ${unsupported} unsupported`);
    if (unsupported > 0 && !allowUnsupported)
      console.error(
        `mil: ${unsupported} case(s) could not be checked: failing (pass --allow-unsupported to accept that)`,
      );
    if (passed === 0 && failed === 0 && unsupported === 0) console.error('mil: nothing was checked');
  }
  return ok ? EXIT.ok : EXIT.checkFailed;
}

async function cmdEmit(p: Parsed): Promise<number> {
  const v = p.values;
  const op = need(v, 'op', 'golden emit');
  const out = need(v, 'out', 'golden emit');
  const seed = num(v, 'seed') ?? 0;
  const shapes: ShapeOptions = {};
  for (const k of Object.keys(EMIT_LIMITS))
    if (v[k] !== undefined) (shapes as Record<string, number>)[k] = v[k] as number;
  const variant = str(v, 'variant');
  if (variant !== undefined) shapes.variant = variant;
  if (op !== 'model' && op !== 'speculative')
    only(v, 'variant', '--op model or --op speculative', 'golden emit', false);
  only(v, 'train', '--op model', 'golden emit', op === 'model');
  if (op === 'speculative' && variant === 'llama')
    throw new UsageError('golden emit --op speculative: --variant must be mamba1 or mamba2 (the target)');
  checkEmitShapes(op, shapes);
  const name = str(v, 'name');
  if (op === 'model') {
    const dir = join(out, 'models', name ?? `${variant ?? 'mamba2'}_s${seed}`);
    const teacherDir =
      v.train === true && variant !== 'llama'
        ? [{ option: 'out', path: `${dir}-teacher`, derived: 'its teacher' }]
        : [];
    checkPaths({
      command: 'golden emit',
      inputs: [],
      outputs: [{ option: 'out', path: dir }, ...teacherDir],
      force: v.force === true,
      mark: false,
    });
    await emitModel(variant ?? 'mamba2', seed, shapes, out, name, { train: v.train === true });
    console.log(
      `wrote model case ${dir} (checkpoint, golden.safetensors, golden.json${v.train ? ', train.json, train.safetensors' : ''})${v.train && variant !== 'llama' ? ` and its teacher ${dir}-teacher` : ''}`,
    );
    return EXIT.ok;
  }
  checkPaths({
    command: 'golden emit',
    inputs: [],
    outputs: [{ option: 'out', path: out }],
    force: v.force === true,
    mark: false,
  });
  const c = await emitGolden(op, seed, shapes, out, name);
  const list = (xs: string[]) =>
    xs.length > 12 ? `${xs.slice(0, 6).join(', ')}, … (${xs.length} in all)` : xs.join(', ');
  console.log(`wrote case '${c.name}' (${c.op}) to ${out}: inputs ${list(c.inputs)}; outputs ${list(c.outputs)}`);
  return EXIT.ok;
}

async function cmdConvert(p: Parsed): Promise<number> {
  const v = p.values;
  const teacher = need(v, 'teacher', 'convert');
  const out = need(v, 'out', 'convert');
  const variant = (str(v, 'variant') ?? 'mamba2') as 'mamba1' | 'mamba2';
  const semantics = str(v, 'semantics') as 'upstream' | 'clean' | undefined;
  if (semantics === 'clean' && variant !== 'mamba1')
    throw new UsageError('convert: --semantics clean applies to --variant mamba1 only (Mamba-2 has one semantics)');
  if (v.attention !== undefined && v['attn-layers'] !== undefined)
    throw new UsageError('convert: give --attention or --attn-layers, not both');
  const attnLayers = v['attn-layers'] as number[] | undefined;
  const shardBytes = maxShardBytes(str(v, 'max-shard-size'));
  const dtypeName = str(v, 'dtype');
  checkPaths({
    command: 'convert',
    inputs: optionPaths(v, ['teacher']),
    outputs: [{ option: 'out', path: out }],
    force: v.force === true,
  });
  const t0 = performance.now();
  console.error(`writing ${out}: ${teacher} converted layer by layer as it is written (Algorithm 1, ${variant}) …`);
  const tokFiles = tokenizerFiles(teacher); // the hybrid reads text as its teacher does
  const r = convertFolder(teacher, out, {
    variant,
    attnLayers,
    attentionFraction: num(v, 'attention') ?? 0.5,
    seed: num(v, 'seed') ?? 0,
    semantics,
    dtype: dtypeName === undefined ? undefined : lookup(DTYPES, dtypeName),
    shardBytes,
    extra: tokFiles,
    option: 'out',
    inputs: [{ option: 'teacher', path: teacher }],
  });
  if (r.dropped.length)
    console.error(
      `note: the replaced layers' attention biases are dropped, as upstream's bias-free Mamba projections do (${r.dropped.length} tensors, e.g. ${r.dropped[0]})`,
    );
  const kept = r.mamba.attnLayers;
  console.log(
    `wrote ${out}: ${variant} hybrid (${r.dtype}, ${r.shards} safetensors file(s))${tokFiles.length ? ` with the teacher's ${tokFiles.map(([f]) => f).join(' and ')}` : ''}, attention kept in layers [${kept.join(', ')}] (${kept.length}/${r.mamba.nLayer}), semantics ${r.mamba.semantics}, ${((performance.now() - t0) / 1000).toFixed(2)} s`,
  );
  return EXIT.ok;
}

async function cmdGenerate(p: Parsed): Promise<number> {
  const v = p.values;
  const cmd = 'generate';
  const dir = need(v, 'model', cmd);
  const json = v.json === true;
  const spec = v.speculative === true;
  for (const k of ['draft', 'draft-layers', 'k', 'scheme']) only(v, k, '--speculative', cmd, spec);
  if (spec && v.draft === undefined) throw new UsageError('generate --speculative needs --draft DIR');
  const chat = v.chat === true;
  for (const k of Object.keys(CHAT_TEMPLATE_OPTIONS)) only(v, k, '--chat', cmd, chat);
  if (chat && spec) throw new UsageError('generate: --chat and --speculative do not go together (use plain decoding)');
  if (chat && v['prompt-ids'] !== undefined)
    throw new UsageError('generate --chat takes --prompt TEXT (the user turn)');
  only(v, 'repetition-penalty', 'plain decoding (not --speculative)', cmd, !spec);
  if (v.prompt !== undefined && v['prompt-ids'] !== undefined)
    throw new UsageError('generate: give --prompt or --prompt-ids, not both');
  if (v.prompt === undefined && v['prompt-ids'] === undefined)
    throw new UsageError('generate needs --prompt TEXT or --prompt-ids 1,2,3');
  const { repetitionPenalty, ...sampling } = samplingValues(v, cmd);
  const maxNew = num(v, 'max-new-tokens') ?? 32;
  const backend = await checkBackend(str(v, 'backend'));
  const ops = await getOps(backend);
  // --chat: the user turn rendered through the template before any model work (a template that raises: exit 2)
  let chatText: string | undefined;
  let template: ReturnType<typeof chatTemplate>['template'] | undefined;
  if (chat) {
    const t = chatTemplate(v);
    const messages: ChatMessage[] = [{ role: 'user', content: str(v, 'prompt')! }];
    if (v.system !== undefined) messages.unshift({ role: 'system', content: str(v, 'system')! });
    chatText = renderChat(t.template, messages, { ...t.render, addGenerationPrompt: true });
    template = t.template;
  }
  const setup = template ? chatModel(v, backend, template) : undefined;
  const m = setup?.m ?? loadModel(dir, { backend });
  const tok = setup?.tok ?? folderTokenizer(dir, m.llama.vocabSize, SHIPPED_TOKENIZER, (line) => console.error(line));
  let prompt: number[];
  const ids = v['prompt-ids'] as number[] | undefined;
  if (setup) {
    prompt = encodePlain(setup.tok, chatText!);
  } else if (ids !== undefined) {
    const bad = ids.find((i) => i >= m.llama.vocabSize);
    if (bad !== undefined)
      throw new UsageError(`--prompt-ids: id ${bad} is not a token of this model (vocabulary ${m.llama.vocabSize})`);
    prompt = ids;
  } else {
    if (!tok)
      throw new UsageError(
        `this model has no tokenizer (vocabulary ${m.llama.vocabSize} < 256 for byte-level text): use --prompt-ids`,
      );
    prompt = tok.encode(str(v, 'prompt')!);
    if (prompt.length === 0) throw new UsageError('--prompt is empty');
  }
  try {
    checkLength(m, prompt.length, maxNew);
  } catch {
    throw new UsageError(
      `--max-new-tokens ${maxNew}: the prompt (${prompt.length} tokens) plus new tokens must fit max_position_embeddings ${m.llama.maxPositionEmbeddings}`,
    );
  }
  const K = num(v, 'k') ?? 4;
  const scheme = (str(v, 'scheme') ?? 'lazy') as 'lazy' | 'per-position';
  let draftModel = spec ? loadModel(str(v, 'draft')!, { backend }) : undefined;
  if (draftModel) {
    const dl = num(v, 'draft-layers');
    if (dl !== undefined) {
      if (dl > draftModel.llama.numLayers)
        throw new UsageError(`--draft-layers ${dl}: the draft has ${draftModel.llama.numLayers} layers`);
      draftModel = truncateLayers(draftModel, dl);
    }
    if (draftModel.llama.vocabSize !== m.llama.vocabSize)
      throw new UsageError(
        `--draft: vocabulary ${draftModel.llama.vocabSize} differs from the target's ${m.llama.vocabSize}`,
      );
    if (prompt.length + maxNew + K > draftModel.llama.maxPositionEmbeddings)
      throw new UsageError(
        `--draft: its max_position_embeddings ${draftModel.llama.maxPositionEmbeddings} is shorter than prompt + new tokens + K`,
      );
  }
  // printed as decoded, never half a character (lib/text/stream.ts); a chat's stop token is not printed
  const stop = setup ? new Set(setup.stop) : undefined;
  const streamer = () => {
    const text =
      tok &&
      new TextStream(
        (xs) => (setup ? decodeShown(tok, xs) : tok.decode(xs)),
        (s) => process.stdout.write(s),
      );
    return {
      onToken: (id: number) => {
        if (json || stop?.has(id)) return;
        if (text) text.push(id);
        else process.stdout.write(`${id} `);
      },
      end: () => {
        if (!json) text?.end();
      },
    };
  };
  // when comparing with speculative decoding, both paths are measured warm (kernels compiled, JIT done)
  if (spec) await generate(ops, m, prompt, { maxNewTokens: Math.min(2, maxNew), eos: [] });
  const plainStream = streamer();
  const r = await generate(ops, m, prompt, {
    maxNewTokens: maxNew,
    ...sampling,
    repetitionPenalty,
    eos: setup?.stop,
    onToken: plainStream.onToken,
  });
  plainStream.end();
  const timing = { prefill: r.prefill, decode: r.decode, ...(r.setupMs !== undefined ? { setupMs: r.setupMs } : {}) };
  const base = {
    backend,
    path: r.path,
    ...(r.fallback !== undefined ? { fallback: r.fallback } : {}),
    prompt,
    tokens: r.tokens,
    ...(tok
      ? {
          text: stop
            ? decodeShown(
                tok,
                r.tokens.filter((t) => !stop.has(t)),
              )
            : tok.decode(r.tokens),
        }
      : {}),
    stoppedBy: r.stoppedBy,
    ...timing,
  };
  if (!draftModel) {
    if (json) console.log(JSON.stringify(base));
    else
      console.log(
        `\n[${r.path}${r.fallback !== undefined ? `: ${r.fallback}` : ''}] ${r.tokens.length} tokens (stopped by ${r.stoppedBy}); prefill ${r.prefill.tokens} tokens in ${r.prefill.ms.toFixed(1)} ms = ${r.prefill.tokensPerS.toFixed(1)} tok/s; decode ${r.decode.tokens} tokens in ${r.decode.ms.toFixed(1)} ms = ${r.decode.tokensPerS.toFixed(1)} tok/s`,
      );
    return EXIT.ok;
  }
  // speculative decoding of the same prompt, measured in the same run against the plain decode above
  if (!json) process.stdout.write(`\n[${backend}, speculative K=${K}, ${scheme}] `);
  const sOpts = { K, maxNewTokens: maxNew, ...sampling, scheme };
  await speculativeGenerate(ops, m, new ModelDrafter(ops, draftModel, K + 1, scheme), prompt, {
    ...sOpts,
    maxNewTokens: Math.min(2, maxNew),
  }); // warm-up
  const specStream = streamer();
  const s = await speculativeGenerate(ops, m, new ModelDrafter(ops, draftModel, K + 1, scheme), prompt, {
    ...sOpts,
    onToken: specStream.onToken,
  });
  specStream.end();
  const plainMs = r.prefill.ms + r.decode.ms;
  const specMs = s.prefillMs + s.decodeMs;
  const res = {
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
  if (json) console.log(JSON.stringify({ ...base, ...res }));
  else
    console.log(
      `\n[speculative] ${s.rounds.length} verify steps, ${res.tokensPerVerify.toFixed(2)} tokens per verify step, acceptance ${(100 * res.acceptanceRate).toFixed(1)}% (accepted per round: ${res.acceptedPerRound.join(' ')})\n` +
        `[speculative] ${res.speculativeTokensPerS.toFixed(1)} tok/s vs plain ${res.plainTokensPerS.toFixed(1)} tok/s (prefill + decode, same prompt, same run): speedup ×${res.speedup.toFixed(2)}; output ${res.sameAsPlain ? 'identical to' : 'differs from'} plain decoding`,
    );
  return EXIT.ok;
}

async function cmdBackends(): Promise<number> {
  for (const s of await backendStatus())
    console.log(`${s.name.padEnd(16)} ${s.available ? 'available' : `not available: ${s.reason}`}`);
  return EXIT.ok;
}

async function cmdDemo(p: Parsed): Promise<number> {
  const root = packageRoot();
  // runs/demo under the working folder: in an installed package the package root is inside node_modules
  const out = str(p.values, 'out') ?? join(process.cwd(), 'runs', 'demo');
  const backend = await checkBackend(str(p.values, 'backend'));
  checkOutput(join(out, 'hybrid-mamba2-50-undistilled'), 'folder', {
    option: 'out',
    inputs: [
      { option: 'golden', path: join(root, 'golden') },
      { option: 'models', path: join(root, 'models') },
    ],
  });
  return demo(root, out, backend);
}

export async function main(argv: string[]): Promise<number> {
  try {
    const [a, b] = argv;
    if (a === undefined || a === 'help' || a === '--help' || a === '-h') {
      console.log(USAGE);
      return a === undefined ? EXIT.usage : EXIT.ok;
    }
    let name: CommandName;
    let rest: string[];
    if (a === 'golden') {
      if (b !== 'verify' && b !== 'emit')
        throw new UsageError(`golden needs 'verify' or 'emit'${b ? `, got '${b}'` : ''}`);
      name = `golden ${b}`;
      rest = argv.slice(2);
    } else if (a === 'tokenizer') {
      if (b !== 'train') throw new UsageError(`tokenizer needs 'train'${b ? `, got '${b}'` : ''}`);
      name = 'tokenizer train';
      rest = argv.slice(2);
    } else if (a === 'data') {
      if (b !== 'build' && b !== 'instruct' && b !== 'retrieval')
        throw new UsageError(`data needs 'build', 'instruct' or 'retrieval'${b ? `, got '${b}'` : ''}`);
      name = `data ${b}`;
      rest = argv.slice(2);
    } else if (a in COMMANDS && !a.includes(' ')) {
      name = a as CommandName;
      rest = argv.slice(1);
    } else {
      const s = suggest(a, [...Object.keys(COMMANDS).filter((c) => !c.includes(' ')), 'golden', 'tokenizer', 'data']);
      throw new UsageError(`unknown command '${a}'${s ? ` (did you mean '${s}'?)` : ''}`);
    }
    if (rest.includes('--help')) {
      console.log(USAGE);
      return EXIT.ok;
    }
    const spec = COMMANDS[name];
    setInvocation(argv);
    const parsed = parseCommand(`mil ${name}`, rest, spec.options, spec.positionals);
    switch (name) {
      case 'demo':
        return await cmdDemo(parsed);
      case 'golden verify':
        return await cmdVerify(parsed);
      case 'golden emit':
        return await cmdEmit(parsed);
      case 'convert':
        return await cmdConvert(parsed);
      case 'generate':
        return await cmdGenerate(parsed);
      case 'backends':
        return await cmdBackends();
      case 'init':
        return await cmdInit(parsed);
      case 'tokenize':
        return await cmdTokenize(parsed);
      case 'chat':
        return await cmdChat(parsed);
      case 'tokenizer train':
        return await cmdTokenizerTrain(parsed);
      case 'train':
        return await cmdTrain(parsed);
      case 'distill':
        return await cmdDistill(parsed);
      case 'eval':
        return await cmdEval(parsed);
      case 'conform':
        return await cmdConform(parsed);
      case 'sft':
        return await cmdSft(parsed);
      case 'dpo':
        return await cmdDpo(parsed);
      case 'passkey':
        return await cmdPasskey(parsed);
      case 'data build':
        return await cmdDataBuild(parsed, ['mil', ...argv].join(' '));
      case 'data instruct':
        return await cmdDataInstruct(parsed, ['mil', ...argv].join(' '));
      case 'data retrieval':
        return await cmdDataRetrieval(parsed, ['mil', ...argv].join(' '));
    }
  } catch (e) {
    const code = exitCodeFor(e);
    if (e instanceof UsageError) console.error(`mil: ${e.message}\n${USAGE}`);
    else if (e instanceof MilError) console.error(`mil: ${e.name}: ${e.message}`);
    else console.error(`mil: internal error (please report it):\n${(e as Error)?.stack ?? String(e)}`);
    return code;
  } finally {
    releaseRunLocks();
  }
}
