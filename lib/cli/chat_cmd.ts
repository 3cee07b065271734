/**
 * `mil chat --model DIR [--system TEXT] [--chat-template FILE] [--max-new-tokens N] [sampling] [--backend NAME] [--json]`
 *
 * A conversation through the model folder's chat template (lib/text/chat_template.ts), the caches kept
 * across turns (lib/model/chat.ts). User turns are read from stdin one line each (so turns can be piped in);
 * `/exit` or the end of input ends the conversation; empty lines are skipped. Each reply is printed as it is
 * decoded (never half a character) and ends with a newline; with --json one JSON object a turn instead
 * ({ text, tokens, stoppedBy, prefilled, reused, prefill, decode }). Notes (backend, timing) go to stderr.
 *
 * Decoding is greedy unless --temperature > 0 (then --top-k, --top-p and --seed apply), as `mil generate`:
 * reproducible by default. generation_config.json's sampling settings (Llama-3 Instruct: temperature 0.6,
 * top_p 0.9) are not applied silently — give them as options; its eos_token_id list is read, as a stop
 * list (chatStopIds). --repetition-penalty θ (default 1) is transformers' penalty over the whole
 * conversation. A folder without a chat template exits 2 naming tokenizer_config.json and the key
 * chat_template; --chat-template FILE gives one (a Jinja file, or a .json file with a chat_template key).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { readJsonObject } from '../io/json.js';
import { BACKENDS, defaultBackend, getOps, type BackendName } from '../ops.js';
import { ChatSession, chatStopIds, type ChatOptions } from '../model/chat.js';
import { loadModel } from '../model/load.js';
import { modelTokenizer, type Tokenizer } from '../model/tokenizer.js';
import { loadChatTemplate, type ChatTemplate } from '../text/chat_template.js';
import type { HybridModel } from '../model/hybrid.js';
import { UsageError, type OptSpec, type Parsed } from './args.js';

/** The sampling options of `mil generate` and `mil chat`. */
export const SAMPLING_OPTIONS: Record<string, OptSpec> = {
  temperature: { kind: 'number', min: 0, max: 1000 },
  'top-k': { kind: 'int', min: 1, max: 1 << 22 },
  'top-p': { kind: 'number', min: Number.MIN_VALUE, max: 1 },
  'repetition-penalty': { kind: 'number', min: Number.MIN_VALUE, max: 1000, help: 'θ > 0; 1 = none' },
  seed: { kind: 'int', min: 0, max: Number.MAX_SAFE_INTEGER, help: 'seed of the generator (0 … 2^53 − 1)' },
};

/** The chat options `mil generate --chat` shares. */
export const CHAT_TEMPLATE_OPTIONS: Record<string, OptSpec> = {
  system: { kind: 'string', help: 'a system message' },
  'chat-template': { kind: 'string', help: 'a Jinja file, or a .json file with a chat_template key' },
  'date-string': { kind: 'string', help: "the template variable date_string (Llama-3.1/3.2's 'Today Date')" },
};

export const CHAT_OPTIONS: Record<string, OptSpec> = {
  model: { kind: 'string' },
  'max-new-tokens': { kind: 'int', min: 1, max: 1 << 20 },
  ...SAMPLING_OPTIONS,
  ...CHAT_TEMPLATE_OPTIONS,
  backend: { kind: 'enum', choices: BACKENDS },
  json: { kind: 'switch' },
};

export const CHAT_USAGE = `  mil chat --model DIR [--system TEXT] [--chat-template FILE] [--date-string S] [--max-new-tokens N]
           [--temperature T [--top-k K] [--top-p P] [--seed S]] [--repetition-penalty R] [--backend NAME] [--json]
           (user turns from stdin, one a line; /exit or end of input ends)`;

type V = Parsed['values'];

/** The sampling values, strictly: top-k, top-p and seed only with --temperature > 0. */
export function samplingValues(v: V, cmd: string) {
  const temperature = (v.temperature as number | undefined) ?? 0;
  for (const k of ['top-k', 'top-p', 'seed'])
    if (v[k] !== undefined && !(temperature > 0))
      throw new UsageError(`${cmd}: --${k} is only valid with --temperature > 0 (greedy decoding draws nothing)`);
  return {
    temperature,
    topK: v['top-k'] as number | undefined,
    topP: v['top-p'] as number | undefined,
    seed: (v.seed as number | undefined) ?? 0,
    repetitionPenalty: v['repetition-penalty'] as number | undefined,
  };
}

/** generation_config.json's eos_token_id (a number or a list), if the folder has one. */
function generationEos(dir: string): number[] {
  const p = join(dir, 'generation_config.json');
  if (!existsSync(p)) return [];
  const e = readJsonObject(p).eos_token_id;
  const ids = Array.isArray(e) ? e : e === undefined || e === null ? [] : [e];
  if (!ids.every((i) => Number.isInteger(i) && (i as number) >= 0))
    throw new UsageError(`${p}: eos_token_id must be a token id or a list of them, got ${JSON.stringify(e)}`);
  return ids as number[];
}

/** The folder's chat template (or --chat-template's) and the render options: cheap, checked first. */
export function chatTemplate(v: V): { template: ChatTemplate; render: NonNullable<ChatOptions['render']> } {
  const template = loadChatTemplate(v.model as string, v['chat-template'] as string | undefined);
  const dateString = v['date-string'] as string | undefined;
  return { template, render: dateString === undefined ? {} : { variables: { date_string: dateString } } };
}

/** The model, tokenizer and stop ids of a chat. */
export function chatModel(
  v: V,
  backend: BackendName,
  template: ChatTemplate,
): { m: HybridModel; tok: Tokenizer; stop: number[] } {
  const dir = v.model as string;
  const m = loadModel(dir, { backend });
  const tok = modelTokenizer(dir, m.llama.vocabSize);
  if (!tok) throw new UsageError(`chat: ${dir} has no tokenizer.json (vocabulary ${m.llama.vocabSize} < 256)`);
  return { m, tok, stop: chatStopIds(m, tok, template, generationEos(dir)) };
}

export async function cmdChat(
  p: Parsed,
  io: { input: NodeJS.ReadableStream; write: (s: string) => void } = {
    input: process.stdin,
    write: (s) => process.stdout.write(s),
  },
): Promise<number> {
  const v = p.values;
  if (v.model === undefined) throw new UsageError('chat needs --model DIR');
  const sampling = samplingValues(v, 'chat');
  const backend = ((v.backend as string | undefined) ?? defaultBackend()) as BackendName;
  const ops = await getOps(backend);
  const { template, render } = chatTemplate(v);
  const s = chatModel(v, backend, template);
  const json = v.json === true;
  const session = new ChatSession(ops, s.m, s.tok, template, {
    ...sampling,
    maxNewTokens: (v['max-new-tokens'] as number | undefined) ?? 256,
    stop: s.stop,
    system: v.system as string | undefined,
    render,
  });
  console.error(`[chat on ${backend}; template ${template.path}; stop ids ${s.stop.join(',')}; /exit ends]`);
  const lines = createInterface({ input: io.input, crlfDelay: Infinity, terminal: false });
  // a person at a terminal gets a prompt on stderr; piped turns keep stdout and stderr to the replies and notes
  const ask = () => {
    if ((io.input as { isTTY?: boolean }).isTTY === true) process.stderr.write('> ');
  };
  ask();
  for await (const line of lines) {
    if (line.trim() === '/exit') break;
    if (line.trim() === '') {
      ask();
      continue;
    }
    const r = await session.turn(line, json ? undefined : io.write);
    if (json) io.write(`${JSON.stringify(r)}\n`);
    else {
      io.write('\n');
      console.error(
        `[${r.tokens.length} tokens, stopped by ${r.stoppedBy}; prefilled ${r.prefilled.length} new tokens${r.reused ? '' : ' (the whole conversation again)'} at ${r.prefill.tokensPerS.toFixed(1)} tok/s; decode ${r.decode.tokensPerS.toFixed(1)} tok/s; ${session.history.length} tokens in the cache]`,
      );
    }
    ask();
  }
  lines.close();
  return 0;
}
