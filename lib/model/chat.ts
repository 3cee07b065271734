/**
 * Chat: a conversation with a model through its chat template, the KV/conv/SSM caches kept across turns.
 *
 * Turn 1 prefills tokens(render(messages, add_generation_prompt = true)) — the rendered text tokenized
 * without adding special tokens, as apply_chat_template does (the template writes bos_token itself).
 * The reply is decoded until a stop id (chatStopIds) or max_new_tokens; the stop id is not part of the reply.
 *
 * Turn n > 1 prefills only what is new. The cache holds the previous prompt P (the text of the last
 * render with the generation prompt) followed by the model's own reply ids r (all but the last sampled one:
 * generate never feeds its last token). The conversation is rendered again with a sentinel S in place of the
 * last reply's content and the new user message appended:
 *   render(…, assistant: S, user: u, add_generation_prompt = true) = B · S · A
 * When B = P · w (w whitespace: the space or newline a template puts before the content, which the model's
 * own reply tokens stand for), turn n prefills [r_last if the reply was cut by max_new_tokens] ++ tokens(A):
 * the template's end of turn (e.g. <|eot_id|>, or ` </s>`), the next header and the user's message — the
 * sampled stop token is replaced by what the template writes. Otherwise (a template that renders the past
 * differently once the conversation grows) the cache is dropped and the whole conversation, re-rendered and
 * re-tokenized, is prefilled (`reused: false` in the turn's result).
 */
import { ArgumentError } from '../errors.js';
import type { Ops } from '../ops.js';
import { Rng } from '../rng.js';
import { type ChatMessage, type ChatTemplate, renderChat, type RenderOptions } from '../text/chat_template.js';
import { HfTokenizer } from '../text/hf_tokenizer.js';
import { TextStream } from '../text/stream.js';
import { generate, type SamplingOptions } from './generate.js';
import { newCache, type HybridModel, type ModelCache } from './hybrid.js';
import type { Tokenizer } from './tokenizer.js';
import { lastOf } from '../checked.js';

/** Ids of text without the post-processor's special tokens (BOS): the template writes its own. */
export function encodePlain(tok: Tokenizer, text: string): number[] {
  return tok instanceof HfTokenizer ? tok.encode(text, false) : tok.encode(text);
}

/** Text of ids for display: special tokens (BOS, headers) left out where the tokenizer knows them. */
export function decodeShown(tok: Tokenizer, ids: number[]): string {
  return tok instanceof HfTokenizer ? tok.decode(ids, true) : tok.decode(ids);
}

/** End-of-turn tokens that stop a reply when the tokenizer has them as one token. */
const END_OF_TURN_TOKENS = ['<|eot_id|>', '<|eom_id|>', '<|end_of_text|>', '</s>'];

/**
 * The ids that end a reply: config.json's eos_token_id (one or a list), generation_config.json's (passed
 * in: `generationEos`), tokenizer_config.json's eos_token, and the END_OF_TURN_TOKENS the tokenizer has as
 * a single token. Sorted, no repeats.
 */
export function chatStopIds(
  m: HybridModel,
  tok: Tokenizer,
  template: ChatTemplate,
  generationEos: readonly number[] = [],
): number[] {
  const ids = new Set<number>([...m.llama.eosTokenId, ...generationEos]);
  for (const s of [template.specialTokens.eos_token, ...END_OF_TURN_TOKENS]) {
    if (s === undefined) continue;
    const e = encodePlain(tok, s);
    if (e.length === 1 && tok.decode(e) === s) ids.add(e[0]);
  }
  return [...ids].filter((i) => i < m.llama.vocabSize).sort((a, b) => a - b);
}

export interface ChatOptions extends SamplingOptions {
  maxNewTokens: number;
  stop: readonly number[];
  seed?: number;
  repetitionPenalty?: number;
  system?: string;
  /** template variables and clock (render options other than add_generation_prompt) */
  render?: Omit<RenderOptions, 'addGenerationPrompt'>;
}

export interface TurnResult {
  /** the reply as shown (special tokens left out) and its ids (the stop id not included) */
  text: string;
  tokens: number[];
  stoppedBy: 'eos' | 'length';
  /** the ids this turn fed to the model before generating */
  prefilled: number[];
  /** whether the cache of the earlier turns was kept (false: the whole conversation was prefilled again) */
  reused: boolean;
  prefill: { tokens: number; ms: number; tokensPerS: number };
  decode: { tokens: number; ms: number; tokensPerS: number };
}

/** A unique marker for the last reply's content (never in a user's line: they are read line by line). */
const SENTINEL = '\u0000mil-reply\u0000';

export class ChatSession {
  /** the conversation so far (system message first, if any) */
  readonly messages: ChatMessage[] = [];
  /** the ids the cache holds, in order */
  readonly history: number[] = [];
  private cache: ModelCache;
  /** the last reply's final sampled id when max_new_tokens cut it (sampled, not fed yet) */
  private pending: number[] = [];
  /** the text of the last prompt rendered with the generation prompt */
  private prompt = '';
  private readonly rng: Rng;
  /** one clock for the whole conversation: a template's date (strftime_now) must not change between turns */
  private readonly now = new Date();

  constructor(
    private readonly ops: Ops,
    private readonly m: HybridModel,
    private readonly tok: Tokenizer,
    private readonly template: ChatTemplate,
    private readonly o: ChatOptions,
  ) {
    if (o.system !== undefined) this.messages.push({ role: 'system', content: o.system });
    this.cache = newCache(m, 1);
    this.rng = new Rng(o.seed ?? 0);
  }

  private render(messages: ChatMessage[]): string {
    return renderChat(this.template, messages, { now: this.now, ...this.o.render, addGenerationPrompt: true });
  }

  /** The ids the next turn would prefill for `user`, and whether the cache is kept. */
  private plan(user: string): { ids: number[]; reused: boolean; prompt: string } {
    const next: ChatMessage[] = [...this.messages, { role: 'user', content: user }];
    const prompt = this.render(next);
    const last = this.messages[this.messages.length - 1];
    if (this.history.length === 0 || last?.role !== 'assistant')
      return { ids: encodePlain(this.tok, prompt), reused: this.history.length === 0, prompt };
    const marked = this.render([...this.messages.slice(0, -1), { role: 'assistant', content: SENTINEL }, lastOf(next)]);
    const at = marked.indexOf(SENTINEL);
    const before = marked.slice(0, at);
    if (
      at >= 0 &&
      marked.lastIndexOf(SENTINEL) === at &&
      before.startsWith(this.prompt) &&
      before.slice(this.prompt.length).trim() === ''
    )
      return {
        ids: [...this.pending, ...encodePlain(this.tok, marked.slice(at + SENTINEL.length))],
        reused: true,
        prompt,
      };
    return { ids: encodePlain(this.tok, prompt), reused: false, prompt };
  }

  /** One turn: the user's message in, the model's reply out (streamed through `onText` as it is decoded). */
  async turn(user: string, onText?: (text: string) => void): Promise<TurnResult> {
    const plan = this.plan(user);
    if (!plan.reused) {
      this.cache = newCache(this.m, 1);
      this.history.length = 0;
    }
    const room = this.m.llama.maxPositionEmbeddings - this.cache.length - plan.ids.length;
    if (room < 1)
      throw new ArgumentError(
        'conversation',
        `at most max_position_embeddings = ${this.m.llama.maxPositionEmbeddings} tokens with room for a reply`,
        this.cache.length + plan.ids.length,
      );
    const context = [...this.history];
    this.history.push(...plan.ids);
    const stream = onText ? new TextStream((ids) => decodeShown(this.tok, ids), onText) : undefined;
    const stop = new Set(this.o.stop);
    const r = await generate(this.ops, this.m, plan.ids, {
      ...this.o,
      maxNewTokens: Math.min(this.o.maxNewTokens, room),
      eos: [...stop],
      cache: this.cache,
      rng: this.rng,
      context,
      onToken: (id) => {
        if (!stop.has(id)) stream?.push(id);
      },
    });
    stream?.end();
    const reply = r.stoppedBy === 'eos' ? r.tokens.slice(0, -1) : r.tokens;
    this.history.push(...r.tokens.slice(0, -1));
    this.pending = r.stoppedBy === 'length' ? r.tokens.slice(-1) : [];
    const text = decodeShown(this.tok, reply);
    this.messages.push({ role: 'user', content: user }, { role: 'assistant', content: text });
    this.prompt = plan.prompt;
    return {
      text,
      tokens: reply,
      stoppedBy: r.stoppedBy,
      prefilled: plan.ids,
      reused: plan.reused,
      prefill: r.prefill,
      decode: r.decode,
    };
  }
}
