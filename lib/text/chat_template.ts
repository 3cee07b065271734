/**
 * Chat templates: a model folder's Jinja `chat_template`, rendered as transformers' `apply_chat_template`
 * renders it, through @huggingface/jinja (the Jinja implementation transformers.js uses: the same
 * `trim_blocks` and `lstrip_blocks` settings as transformers' sandboxed environment).
 *
 *   prompt = template.render({ messages, add_generation_prompt, bos_token, eos_token, unk_token, pad_token,
 *                              raise_exception, strftime_now, ...variables })
 *
 * - messages: [{ role: 'system' | 'user' | 'assistant', content }]; `tools` and `documents` are absent
 *   (a template's `tools is defined` is false, so Llama-3.1/3.2 templates take their no-tools branch).
 * - the special tokens are tokenizer_config.json's (a string, or an AddedToken object's `content`), as
 *   transformers passes its special_tokens_map.
 * - strftime_now(format): the local time (Python's datetime.now().strftime), with English month and day
 *   names; Llama-3.2's template writes "Today Date: " + strftime_now("%d %b %Y") unless `date_string` is
 *   given — the variable Llama-3.1's template reads, with "26 Jul 2024" as its own default.
 * - raise_exception(message): a ChatTemplateError naming the file, the key and the message.
 *
 * Where the template comes from, first found: an explicit file (`--chat-template FILE`: a Jinja file, or a
 * .json file with a `chat_template` key); the folder's `chat_template.jinja` (transformers ≥ 4.50 saves it
 * there); the folder's tokenizer_config.json key `chat_template` (a string, or a list of
 * { name, template } of which "default" is taken). None: a ChatTemplateError naming the file and the key.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Environment, Interpreter, Template } from '@huggingface/jinja';
import { MilError } from '../errors.js';
import { readJsonObject, readRegularFile } from '../io/json.js';

/** A chat template missing, unparsable, or raising on a conversation: names the file and the key. */
export class ChatTemplateError extends MilError {
  constructor(
    readonly path: string,
    readonly key: string,
    readonly problem: string,
  ) {
    super('E_CHAT_TEMPLATE', `${path}${key ? ` (key '${key}')` : ''}: ${problem}`);
  }
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface ChatTemplate {
  /** the file the template was read from, and its key there ('' for a Jinja file) */
  path: string;
  key: string;
  source: string;
  /** tokenizer_config.json's special tokens, by name (bos_token, eos_token, unk_token, pad_token) */
  specialTokens: Record<string, string>;
}

const MAX_TEMPLATE_BYTES = 1 << 20;
const SPECIAL_KEYS = ['bos_token', 'eos_token', 'unk_token', 'pad_token'] as const;

/** The content of a special-token entry: a string, or an AddedToken object { content }. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string')
    return (v as { content: string }).content;
  return undefined;
}

function templateOf(v: unknown, path: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    const d = v.find((t) => (t as { name?: unknown })?.name === 'default') as { template?: unknown } | undefined;
    if (typeof d?.template === 'string') return d.template;
    throw new ChatTemplateError(path, 'chat_template', 'a list of named templates without a "default" one');
  }
  throw new ChatTemplateError(path, 'chat_template', `a string expected, got ${typeof v}`);
}

const readText = (path: string) =>
  new TextDecoder('utf-8', { fatal: false }).decode(readRegularFile(path, MAX_TEMPLATE_BYTES));

/**
 * The chat template of a model folder (or `file`, which wins), with tokenizer_config.json's special tokens.
 * Parsed once here, so a template that does not parse fails before any model work.
 */
export function loadChatTemplate(dir: string, file?: string): ChatTemplate {
  const configPath = join(dir, 'tokenizer_config.json');
  const config = existsSync(configPath) ? readJsonObject(configPath) : {};
  const specialTokens: Record<string, string> = {};
  for (const k of SPECIAL_KEYS) {
    const c = tokenContent(config[k]);
    if (c !== undefined) specialTokens[k] = c;
  }
  let t: Omit<ChatTemplate, 'specialTokens'> | undefined;
  if (file !== undefined) {
    if (file.endsWith('.json')) {
      const source = templateOf(readJsonObject(file).chat_template, file);
      if (source === undefined) throw new ChatTemplateError(file, 'chat_template', 'no chat template in this file');
      t = { path: file, key: 'chat_template', source };
    } else t = { path: file, key: '', source: readText(file) };
  } else if (existsSync(join(dir, 'chat_template.jinja'))) {
    t = { path: join(dir, 'chat_template.jinja'), key: '', source: readText(join(dir, 'chat_template.jinja')) };
  } else {
    const source = templateOf(config.chat_template, configPath);
    if (source !== undefined) t = { path: configPath, key: 'chat_template', source };
  }
  if (t === undefined)
    throw new ChatTemplateError(
      configPath,
      'chat_template',
      `no chat template (${existsSync(configPath) ? 'the key is absent' : 'the file is absent'}, and no chat_template.jinja): give one with --chat-template FILE`,
    );
  parse(t.path, t.key, t.source);
  return { ...t, specialTokens };
}

function parse(path: string, key: string, source: string): Template {
  try {
    return new Template(source);
  } catch (e) {
    throw new ChatTemplateError(path, key, `the template does not parse: ${(e as Error).message}`);
  }
}

const MONTHS = 'January February March April May June July August September October November December'.split(' ');
const DAYS = 'Sunday Monday Tuesday Wednesday Thursday Friday Saturday'.split(' ');

/** Python's `date.strftime` for the directives chat templates use (%d %m %Y %y %b %B %a %A %H %M %S %j %%). */
function strftime(d: Date, format: string): string {
  const p2 = (n: number) => String(n).padStart(2, '0');
  const dayOfYear =
    Math.round((+new Date(d.getFullYear(), d.getMonth(), d.getDate()) - +new Date(d.getFullYear(), 0, 1)) / 864e5) + 1;
  return format.replace(/%[dmYybBaAHMSj%]/g, (t) => {
    switch (t[1]) {
      case 'd':
        return p2(d.getDate());
      case 'm':
        return p2(d.getMonth() + 1);
      case 'Y':
        return String(d.getFullYear());
      case 'y':
        return p2(d.getFullYear() % 100);
      case 'b':
        return MONTHS[d.getMonth()].slice(0, 3);
      case 'B':
        return MONTHS[d.getMonth()];
      case 'a':
        return DAYS[d.getDay()].slice(0, 3);
      case 'A':
        return DAYS[d.getDay()];
      case 'H':
        return p2(d.getHours());
      case 'M':
        return p2(d.getMinutes());
      case 'S':
        return p2(d.getSeconds());
      case 'j':
        return String(dayOfYear).padStart(3, '0');
      default:
        return '%';
    }
  });
}

class RaisedByTemplate extends Error {}

export interface RenderOptions {
  addGenerationPrompt: boolean;
  /** the clock strftime_now reads (default: now) */
  now?: Date;
  /** more template variables, as apply_chat_template's keyword arguments (e.g. date_string) */
  variables?: Record<string, unknown>;
}

/** Python's range(stop) / range(start, stop[, step]), a Jinja global. */
function range(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) [start, stop] = [0, start];
  if (step === 0) throw new Error('range() arg 3 must not be zero');
  const out: number[] = [];
  for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
  return out;
}

/**
 * The conversation rendered by the template (a string; tokenize it without adding special tokens).
 * Rendered in an environment of our own rather than Template.render's, whose raise_exception throws a plain
 * Error indistinguishable from a failing template, and whose strftime_now reads the clock and the locale.
 */
export function renderChat(t: ChatTemplate, messages: readonly ChatMessage[], o: RenderOptions): string {
  const template = parse(t.path, t.key, t.source);
  const now = o.now ?? new Date();
  const env = new Environment();
  const globals: Record<string, unknown> = {
    true: true,
    false: false,
    none: null,
    True: true,
    False: false,
    None: null,
    range,
    raise_exception: (message: unknown) => {
      throw new RaisedByTemplate(String(message));
    },
    strftime_now: (format: unknown) => strftime(now, String(format)),
    ...t.specialTokens,
    ...o.variables,
    messages: messages.map((m) => ({ role: m.role, content: m.content })),
    add_generation_prompt: o.addGenerationPrompt,
  };
  try {
    for (const [k, v] of Object.entries(globals)) env.set(k, v);
    return (new Interpreter(env).run(template.parsed) as { value: string }).value;
  } catch (e) {
    if (e instanceof RaisedByTemplate) throw new ChatTemplateError(t.path, t.key, `the template raised: ${e.message}`);
    throw new ChatTemplateError(t.path, t.key, `the template failed on this conversation: ${(e as Error).message}`);
  }
}
