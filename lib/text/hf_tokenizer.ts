/**
 * Hugging Face tokenizer.json of the Llama families, read as the `tokenizers` library runs it.
 *
 * encode(text) = post_processor( ⋃_{segments s of text split on the added tokens} added id(s) or
 *                model.BPE( pre_tokenizer( normalizer(s) ) ) )
 * decode(ids)  = decoder( id → token string, special tokens skipped when asked ).
 *
 * Components read (every other `type` is refused with UnsupportedComponentError, naming the component and
 * its type, never silently replaced by a different encoding):
 * - normalizer: Prepend (non-empty segments only), Replace (String or Regex), Sequence, NFC, NFD, NFKC, NFKD.
 * - pre_tokenizer: Split (the file's own regex or string; Isolated, Removed, MergedWithPrevious,
 *   MergedWithNext; invert), ByteLevel (GPT-2's bytes_to_unicode, its own regex when use_regex,
 *   add_prefix_space), Metaspace (replacement, prepend_scheme always/first/never, split), Sequence.
 * - model: BPE with merges as "a b" strings or [a, b] pairs; byte_fallback (`<0xHH>` tokens for a character
 *   outside the vocabulary), unk_token and fuse_unk, ignore_merges (a whole word in the vocabulary is one
 *   token). Merges apply lowest rank first, leftmost first among equal ranks (a heap over a linked list:
 *   O(n log n) in the word's length, since Llama-2 files have no pre-tokenizer and a word is a whole segment).
 * - added_tokens: matched leftmost-longest in the raw text and never split (lstrip/rstrip/single_word and
 *   normalized added tokens with a normalizer are refused).
 * - post_processor: TemplateProcessing (single sequence: its special tokens around A), ByteLevel (ids
 *   unchanged), Sequence.
 * - decoder: ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace, Sequence.
 *
 * Regexes are the file's, compiled as JavaScript `u` regexes: `(?i:…)` groups (which Node 20 lacks) are
 * rewritten with case classes; `\s` keeps JavaScript's meaning (U+FEFF is space, U+0085 is not), as in
 * @huggingface/tokenizers, the reference this reader is tested against (spec/hf_tokenizer.spec.ts); Rust's
 * `tokenizers` takes Unicode White_Space, which differs on exactly those two characters.
 */
import { MilError } from '../errors.js';
import { readJsonObject } from '../io/json.js';
import { BYTE_TO_CHAR, TokenizerFileError } from './bpe.js';
import { lookup } from '../checked.js';

/** A tokenizer.json component (normalizer, pre_tokenizer, model, post_processor, decoder) this reader lacks. */
export class UnsupportedComponentError extends MilError {
  constructor(
    readonly path: string,
    readonly component: string,
    readonly type: string,
    detail = '',
  ) {
    super(
      'E_TOKENIZER_COMPONENT',
      `${path}: ${component} of type ${JSON.stringify(type)} is not implemented${detail ? ` (${detail})` : ''}`,
    );
  }
}

type Json = Record<string, unknown>;
type Norm = (s: string, first: boolean) => string;
type PreTok = (pieces: string[], first: boolean) => string[];
type Dec = (tokens: string[]) => string[];

const CHAR_TO_BYTE = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));
const utf8 = new TextEncoder();
/** SentencePiece's space: U+2581 '▁' */
const META = '\u2581';

/** Whether some merge joins a left token not ending in '▁' to a right token starting with '▁'. */
function mergesCross(merges: readonly unknown[]): boolean {
  for (const mm of merges) {
    const [a, b] = Array.isArray(mm) ? (mm as string[]).map(String) : String(mm).split(' ');
    if (b !== undefined && a !== undefined && b.startsWith(META) && !a.endsWith(META)) return true;
  }
  return false;
}
const GPT2_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Rewrite `(?i:…)` groups for engines without regex modifiers: ASCII letters outside classes → [xX]. */
export function expandCaseGroups(re: string): string {
  let out = '';
  for (let i = 0; i < re.length;) {
    if (!re.startsWith('(?i:', i)) {
      out += re[i++];
      continue;
    }
    out += '(?:';
    i += 4;
    let depth = 1;
    let inClass = false;
    while (i < re.length && depth > 0) {
      const c = re[i];
      if (c === '\\') {
        out += re.slice(i, i + 2);
        i += 2;
        continue;
      }
      if (inClass) inClass = c !== ']';
      else if (c === '[') inClass = true;
      else if (c === '(') depth++;
      else if (c === ')') depth--;
      out += !inClass && /[a-zA-Z]/.test(c) ? `[${c.toLowerCase()}${c.toUpperCase()}]` : c;
      i++;
    }
  }
  return out;
}

export class HfTokenizer {
  private readonly vocab = new Map<string, number>();
  private readonly idToToken: string[] = [];
  private readonly special = new Set<number>();
  private readonly addedRe: RegExp | null;
  private readonly addedIds = new Map<string, number>();
  private readonly mergeRank = new Map<number, number>(); // a * 2^21 + b → rank
  private readonly mergeResult = new Map<number, number>(); // a * 2^21 + b → merged id
  private readonly cache = new Map<string, number[]>();
  private readonly normalize: Norm | null;
  private readonly preTokenize: PreTok | null;
  private readonly decoder: Dec | null;
  private readonly bos: { before: number[]; after: number[] };
  private readonly byteFallback: boolean;
  private readonly ignoreMerges: boolean;
  private readonly unk: number | null;
  private readonly fuseUnk: boolean;
  private readonly byteIds: Array<number | undefined>;
  /** '▁' where a pre-token may be cut before each '▁' that follows another character (see `word`), or null */
  private readonly cutBefore: string | null;

  constructor(
    j: Json,
    readonly path: string,
  ) {
    const unsupported = (component: string, type: unknown, detail?: string) =>
      new UnsupportedComponentError(path, component, String(type), detail);
    const fail = (p: string) => new TokenizerFileError(path, p);
    const m = j.model as Json | undefined;
    if (!m || m.type !== 'BPE') throw unsupported('model', m?.type);
    if (m.continuing_subword_prefix != null) throw unsupported('model', 'BPE', 'continuing_subword_prefix');
    if (m.end_of_word_suffix != null) throw unsupported('model', 'BPE', 'end_of_word_suffix');
    if (m.dropout != null && m.dropout !== 0) throw unsupported('model', 'BPE', 'dropout');
    if (!m.vocab || typeof m.vocab !== 'object' || !Array.isArray(m.merges))
      throw fail('model.vocab or model.merges missing');
    for (const [s, id] of Object.entries(m.vocab as Json)) {
      if (!Number.isInteger(id)) throw fail(`model.vocab[${JSON.stringify(s)}] is not an integer id`);
      this.vocab.set(s, id as number);
      this.idToToken[id as number] = s;
    }
    (m.merges as unknown[]).forEach((mm, r) => {
      const [a, b] = Array.isArray(mm) ? (mm as string[]) : String(mm).split(' ');
      const ia = this.vocab.get(String(a));
      const ib = this.vocab.get(String(b));
      const ic = this.vocab.get(`${a}${b}`);
      if (ia === undefined || ib === undefined || ic === undefined)
        throw fail(`merge ${r} (${JSON.stringify(mm)}) joins tokens missing from model.vocab`);
      const key = ia * 2 ** 21 + ib;
      if (!this.mergeRank.has(key)) {
        this.mergeRank.set(key, r);
        this.mergeResult.set(key, ic);
      }
    });
    this.byteFallback = m.byte_fallback === true;
    this.ignoreMerges = m.ignore_merges === true;
    this.fuseUnk = m.fuse_unk === true;
    this.unk = m.unk_token == null ? null : (this.vocab.get(String(m.unk_token)) ?? null);
    if (m.unk_token != null && this.unk === null)
      throw fail(`model.unk_token ${JSON.stringify(m.unk_token)} is not in model.vocab`);
    this.byteIds = Array.from({ length: 256 }, (_, b) =>
      this.vocab.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`),
    );
    this.cutBefore = this.ignoreMerges || !this.vocab.has(META) || mergesCross(m.merges as unknown[]) ? null : META;

    const added = (j.added_tokens ?? []) as Json[];
    if (!Array.isArray(added)) throw fail('added_tokens is not an array');
    for (const t of added) {
      const content = String(t.content);
      if (!Number.isInteger(t.id)) throw fail(`added token ${JSON.stringify(content)} has no integer id`);
      if (t.lstrip || t.rstrip || t.single_word)
        throw unsupported('added_tokens', content, 'lstrip, rstrip or single_word');
      if (t.normalized && j.normalizer)
        throw unsupported('added_tokens', content, 'normalized added token with a normalizer');
      this.addedIds.set(content, t.id as number);
      this.idToToken[t.id as number] = content;
      if (t.special) this.special.add(t.id as number);
    }
    const contents = [...this.addedIds.keys()].sort((a, b) => b.length - a.length);
    this.addedRe = contents.length ? new RegExp(contents.map(escapeRe).join('|'), 'gu') : null;

    this.normalize = j.normalizer ? this.buildNormalizer(j.normalizer as Json, unsupported) : null;
    this.preTokenize = j.pre_tokenizer ? this.buildPreTokenizer(j.pre_tokenizer as Json, unsupported) : null;
    this.decoder = j.decoder ? this.buildDecoder(j.decoder as Json, unsupported) : null;
    this.bos = { before: [], after: [] };
    if (j.post_processor) this.buildPostProcessor(j.post_processor as Json, unsupported, fail);
  }

  static load(path: string): HfTokenizer {
    return new HfTokenizer(
      readJsonObject(path, (p) => new TokenizerFileError(path, p)),
      path,
    );
  }

  /** Highest id + 1, added tokens included (what config.json's vocab_size must be). */
  get vocabSize(): number {
    return this.idToToken.length;
  }

  /** The token string of an id (added tokens included), or undefined. */
  token(id: number): string | undefined {
    return this.idToToken[id];
  }

  /** The ids of `text`; `addSpecialTokens` (default true) applies the post-processor's template (BOS). */
  encode(text: string, addSpecialTokens = true): number[] {
    const ids: number[] = [];
    let last = 0;
    const plain = (s: string, first: boolean) => {
      if (!s) return;
      const n = this.normalize ? this.normalize(s, first) : s;
      if (!n) return;
      const pieces = this.preTokenize ? this.preTokenize([n], first) : [n];
      for (const p of pieces) if (p) ids.push(...this.word(p));
    };
    if (this.addedRe) {
      this.addedRe.lastIndex = 0;
      for (const mt of text.matchAll(this.addedRe)) {
        plain(text.slice(last, mt.index), last === 0);
        ids.push(lookup(this.addedIds, mt[0]));
        last = mt.index + mt[0].length;
      }
    }
    plain(text.slice(last), last === 0);
    return addSpecialTokens ? [...this.bos.before, ...ids, ...this.bos.after] : ids;
  }

  /** The text of `ids` through the file's decoder; `skipSpecialTokens` drops the special added tokens. */
  decode(ids: readonly number[], skipSpecialTokens = false): string {
    const tokens: string[] = [];
    for (const id of ids) {
      const t = this.idToToken[id];
      if (t === undefined)
        throw new TokenizerFileError(this.path, `token id ${id} is not in the vocabulary (size ${this.vocabSize})`);
      if (!(skipSpecialTokens && this.special.has(id))) tokens.push(t);
    }
    return this.decoder ? this.decoder(tokens).join('') : tokens.join(' ');
  }

  /**
   * BPE of one pre-token. Where `cutBefore` is set (Llama-2's files: no pre-tokenizer, so a whole line is one
   * pre-token), it is merged piece by piece, each piece starting at a '▁' that follows another character:
   * the symbol left of such a cut ends in that character (or is a `<0xHH>`/unk token) and the one right of it
   * is '▁', and no merge of the file joins a token not ending in '▁' to one starting with it (checked at load,
   * `mergesCross`), so no merge ever crosses the cut and the ids equal the whole pre-token's — while the
   * pieces are short words the cache holds (Llama-2 file, bench/results/tokenizer.md: 0.50 → 3.57 MB/s).
   */
  private word(w: string): number[] {
    if (this.cutBefore === null || w.length < 2) return this.piece(w);
    const out: number[] = [];
    let from = 0;
    for (let i = 1; i < w.length; i++)
      if (w[i] === this.cutBefore && w[i - 1] !== this.cutBefore) {
        for (const id of this.piece(w.slice(from, i))) out.push(id);
        from = i;
      }
    for (const id of this.piece(w.slice(from))) out.push(id);
    return out;
  }

  /** BPE of one piece of a pre-token (cached for short pieces). */
  private piece(w: string): number[] {
    const hit = this.cache.get(w);
    if (hit) return hit;
    const whole = this.ignoreMerges ? this.vocab.get(w) : undefined;
    const out = whole !== undefined ? [whole] : this.merge(w);
    if (w.length < 100) {
      if (this.cache.size > 100_000) this.cache.clear();
      this.cache.set(w, out);
    }
    return out;
  }

  private merge(w: string): number[] {
    // initial symbols: one per character, or its UTF-8 bytes' <0xHH> tokens, or unk
    const sym: number[] = [];
    let lastUnk = false;
    for (const ch of w) {
      const id = this.vocab.get(ch);
      if (id !== undefined) {
        sym.push(id);
        lastUnk = false;
        continue;
      }
      const bytes = this.byteFallback ? [...utf8.encode(ch)].map((b) => this.byteIds[b]) : [];
      if (bytes.length && bytes.every((b) => b !== undefined)) {
        sym.push(...bytes);
        lastUnk = false;
      } else if (this.unk !== null) {
        if (!(this.fuseUnk && lastUnk)) sym.push(this.unk);
        lastUnk = true;
      }
    }
    const n = sym.length;
    if (n < 2) return sym;
    const next = Int32Array.from({ length: n }, (_, i) => (i + 1 < n ? i + 1 : -1));
    const prev = Int32Array.from({ length: n }, (_, i) => i - 1);
    // min-heap of [rank, position, left id, right id]
    const heap: number[][] = [];
    const less = (a: number[], b: number[]) => a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);
    const push = (e: number[]) => {
      heap.push(e);
      for (let i = heap.length - 1; i > 0;) {
        const p = (i - 1) >> 1;
        if (!less(heap[i], heap[p])) break;
        [heap[i], heap[p]] = [heap[p], heap[i]];
        i = p;
      }
    };
    const pop = () => {
      const top = heap[0];
      const end = heap.pop()!;
      if (heap.length) {
        heap[0] = end;
        for (let i = 0; ;) {
          const l = 2 * i + 1;
          const r = l + 1;
          let s = i;
          if (l < heap.length && less(heap[l], heap[s])) s = l;
          if (r < heap.length && less(heap[r], heap[s])) s = r;
          if (s === i) break;
          [heap[i], heap[s]] = [heap[s], heap[i]];
          i = s;
        }
      }
      return top;
    };
    const consider = (i: number) => {
      const j = next[i];
      if (i < 0 || j < 0) return;
      const r = this.mergeRank.get(sym[i] * 2 ** 21 + sym[j]);
      if (r !== undefined) push([r, i, sym[i], sym[j]]);
    };
    for (let i = 0; i + 1 < n; i++) consider(i);
    while (heap.length) {
      const [, i, a, b] = pop() as [number, number, number, number];
      const j = next[i];
      if (sym[i] !== a || j < 0 || sym[j] !== b) continue; // stale entry
      sym[i] = lookup(this.mergeResult, a * 2 ** 21 + b);
      sym[j] = -1;
      next[i] = next[j];
      if (next[j] >= 0) prev[next[j]] = i;
      consider(prev[i]);
      consider(i);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) out.push(sym[i]);
    return out;
  }

  private buildNormalizer(n: Json, unsupported: (c: string, t: unknown, d?: string) => Error): Norm {
    switch (n.type) {
      case 'Sequence': {
        const parts = ((n.normalizers ?? []) as Json[]).map((x) => this.buildNormalizer(x, unsupported));
        return (s, first) => parts.reduce((acc, f) => f(acc, first), s);
      }
      case 'Prepend': {
        const p = String(n.prepend);
        return (s) => (s ? p + s : s);
      }
      case 'Replace': {
        const re = patternRe(n.pattern, unsupported, 'normalizer');
        const content = String(n.content);
        return (s) => s.replace(re, () => content);
      }
      case 'NFC':
      case 'NFD':
      case 'NFKC':
      case 'NFKD': {
        const form = n.type;
        return (s) => s.normalize(form);
      }
      default:
        throw unsupported('normalizer', n.type);
    }
  }

  private buildPreTokenizer(p: Json, unsupported: (c: string, t: unknown, d?: string) => Error): PreTok {
    const each =
      (f: (s: string, first: boolean) => string[]): PreTok =>
      (pieces, first) =>
        pieces.flatMap((s, k) => f(s, first && k === 0));
    switch (p.type) {
      case 'Sequence': {
        const parts = ((p.pretokenizers ?? []) as Json[]).map((x) => this.buildPreTokenizer(x, unsupported));
        return (pieces, first) => parts.reduce((acc, f) => f(acc, first), pieces);
      }
      case 'Split': {
        const re = patternRe(p.pattern, unsupported, 'pre_tokenizer Split');
        const behavior = String(p.behavior);
        if (!['Isolated', 'Removed', 'MergedWithPrevious', 'MergedWithNext'].includes(behavior))
          throw unsupported('pre_tokenizer', 'Split', `behavior ${behavior}`);
        return each((s) => splitBy(s, re, behavior, p.invert === true));
      }
      case 'ByteLevel': {
        const re = p.use_regex === false ? null : new RegExp(GPT2_PATTERN, 'gu');
        const prefix = p.add_prefix_space === true;
        return each((s) => {
          const t = prefix && !s.startsWith(' ') ? ' ' + s : s;
          const parts = re ? splitBy(t, re, 'Isolated', false) : [t];
          return parts.map((x) => Array.from(utf8.encode(x), (b) => BYTE_TO_CHAR[b]).join(''));
        });
      }
      case 'Metaspace': {
        const rep = String(p.replacement ?? '▁');
        const scheme = String(p.prepend_scheme ?? (p.add_prefix_space === false ? 'never' : 'always'));
        if (!['always', 'first', 'never'].includes(scheme))
          throw unsupported('pre_tokenizer', 'Metaspace', `prepend_scheme ${scheme}`);
        const split = p.split !== false;
        const re = new RegExp(escapeRe(rep), 'gu');
        return each((s, first) => {
          let t = s.replaceAll(' ', rep);
          if (!t.startsWith(rep) && (scheme === 'always' || (scheme === 'first' && first))) t = rep + t;
          return split ? splitBy(t, re, 'MergedWithNext', false) : [t];
        });
      }
      default:
        throw unsupported('pre_tokenizer', p.type);
    }
  }

  private buildPostProcessor(
    p: Json,
    unsupported: (c: string, t: unknown, d?: string) => Error,
    fail: (p: string) => Error,
  ): void {
    switch (p.type) {
      case 'Sequence':
        for (const x of (p.processors ?? []) as Json[]) this.buildPostProcessor(x, unsupported, fail);
        return;
      case 'ByteLevel':
        return; // offsets only
      case 'TemplateProcessing': {
        const specials = (p.special_tokens ?? {}) as Record<string, { ids?: number[] }>;
        let seenA = false;
        for (const item of (p.single ?? []) as Json[]) {
          if (item.Sequence) {
            seenA = true;
            continue;
          }
          const st = item.SpecialToken as { id?: string } | undefined;
          const ids = st && specials[String(st.id)]?.ids;
          if (!ids)
            throw fail(
              `post_processor.single names special token ${JSON.stringify(st?.id)} missing from special_tokens`,
            );
          (seenA ? this.bos.after : this.bos.before).push(...ids);
        }
        return;
      }
      default:
        throw unsupported('post_processor', p.type);
    }
  }

  private buildDecoder(d: Json, unsupported: (c: string, t: unknown, d?: string) => Error): Dec {
    switch (d.type) {
      case 'Sequence': {
        const parts = ((d.decoders ?? []) as Json[]).map((x) => this.buildDecoder(x, unsupported));
        return (t) => parts.reduce((acc, f) => f(acc), t);
      }
      case 'ByteLevel':
        return (tokens) => {
          const bytes: number[] = [];
          for (const t of tokens) {
            const bs: number[] = [];
            let ok = true;
            for (const c of t) {
              const b = CHAR_TO_BYTE.get(c);
              if (b === undefined) {
                ok = false;
                break;
              }
              bs.push(b);
            }
            bytes.push(...(ok ? bs : utf8.encode(t)));
          }
          return [new TextDecoder().decode(Uint8Array.from(bytes))];
        };
      case 'ByteFallback':
        return (tokens) => {
          const out: string[] = [];
          let pending: number[] = [];
          const flush = () => {
            if (!pending.length) return;
            try {
              out.push(new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(pending)));
            } catch {
              out.push('\uFFFD'.repeat(pending.length));
            }
            pending = [];
          };
          for (const t of tokens) {
            const m = /^<0x([0-9A-F]{2})>$/.exec(t);
            if (m) pending.push(parseInt(m[1], 16));
            else {
              flush();
              out.push(t);
            }
          }
          flush();
          return out;
        };
      case 'Fuse':
        return (tokens) => [tokens.join('')];
      case 'Strip': {
        const c = String(d.content);
        const start = Number(d.start ?? 0);
        const stop = Number(d.stop ?? 0);
        return (tokens) =>
          tokens.map((t) => {
            let s = t;
            for (let k = 0; k < start && s.startsWith(c); k++) s = s.slice(c.length);
            for (let k = 0; k < stop && s.endsWith(c); k++) s = s.slice(0, s.length - c.length);
            return s;
          });
      }
      case 'Replace': {
        const re = patternRe(d.pattern, unsupported, 'decoder');
        const content = String(d.content);
        return (tokens) => tokens.map((t) => t.replace(re, () => content));
      }
      case 'Metaspace': {
        const rep = String(d.replacement ?? '▁');
        const strip = String(d.prepend_scheme ?? (d.add_prefix_space === false ? 'never' : 'always')) !== 'never';
        return (tokens) =>
          tokens.map((t, k) => {
            const s = t.replaceAll(rep, ' ');
            return strip && k === 0 && s.startsWith(' ') ? s.slice(1) : s;
          });
      }
      default:
        throw unsupported('decoder', d.type);
    }
  }
}

/** A tokenizer.json pattern ({String} or {Regex}) as a global Unicode RegExp. */
function patternRe(pattern: unknown, unsupported: (c: string, t: unknown, d?: string) => Error, where: string): RegExp {
  const p = (pattern ?? {}) as { String?: string; Regex?: string };
  if (typeof p.String === 'string') return new RegExp(escapeRe(p.String), 'gu');
  if (typeof p.Regex === 'string') {
    try {
      return new RegExp(expandCaseGroups(p.Regex), 'gu');
    } catch (e) {
      throw unsupported(where, 'Regex', `${JSON.stringify(p.Regex)} does not compile: ${(e as Error).message}`);
    }
  }
  throw unsupported(where, 'pattern', JSON.stringify(pattern));
}

/** Split `s` on the matches of `re` (global) with a tokenizers SplitDelimiterBehavior; empty pieces dropped. */
function splitBy(s: string, re: RegExp, behavior: string, invert: boolean): string[] {
  const spans: Array<[string, boolean]> = []; // [piece, is delimiter]
  let last = 0;
  re.lastIndex = 0;
  for (const m of s.matchAll(re)) {
    if (m[0] === '') continue;
    if (m.index > last) spans.push([s.slice(last, m.index), invert]);
    spans.push([m[0], !invert]);
    last = m.index + m[0].length;
  }
  if (last < s.length) spans.push([s.slice(last), invert]);
  const out: string[] = [];
  let carry = ''; // a delimiter waiting for the next piece (MergedWithNext)
  let prevDelim = true; // the last piece pushed was a delimiter (nothing to merge into)
  for (const [piece, delim] of spans) {
    if (!delim) {
      out.push(carry + piece);
      carry = '';
      prevDelim = false;
    } else if (behavior === 'Isolated') out.push(piece);
    else if (behavior === 'MergedWithPrevious') {
      if (!prevDelim) out[out.length - 1] += piece;
      else out.push(piece);
      prevDelim = true;
    } else if (behavior === 'MergedWithNext') {
      if (carry) out.push(carry);
      carry = piece;
    }
    // Removed: dropped
  }
  if (carry) out.push(carry);
  return out;
}
