/**
 * Byte-level BPE (GPT-2's scheme), trained here, saved and loaded as a Hugging Face `tokenizer.json`.
 *
 *   pre-tokenize  text is cut by GPT-2's pattern (contractions, ` ?letters`, ` ?digits`, ` ?other`,
 *                 whitespace) — the ByteLevel pre-tokenizer of the `tokenizers` library with use_regex;
 *                 each piece becomes its UTF-8 bytes, and byte b is token id b (0–255), so every byte string
 *                 has a tokenization and this tokenizer extends lib/model/tokenizer.ts's byte one
 *   train         repeatedly merge the most frequent adjacent pair of symbols inside pieces (counted over the
 *                 corpus with piece frequencies; ties broken by the smaller pair of ids), each merge a new id
 *                 256, 257, …, until the vocabulary is full; the last id is the special `<|endoftext|>`,
 *                 which separates documents in a token stream
 *   encode        per piece, repeatedly merge the adjacent pair of lowest merge rank (what `tokenizers`' BPE
 *                 model does); `<|endoftext|>` in the text is the special token
 *   decode        ids → bytes → UTF-8 (invalid sequences become U+FFFD, as in `tokenizers`)
 *
 * The file: `model.vocab` maps the byte-level string of each token (bytes shown through GPT-2's
 * bytes_to_unicode table, so a space is `Ġ`) to its id, `model.merges` lists merges in rank order as
 * "left right"; checked in spec/text.spec.ts against @huggingface/tokenizers, an independent reader.
 */
import { ArgumentError, MilError } from '../errors.js';
import { readJsonObject } from '../io/json.js';
import { lookup } from '../checked.js';

export const END_OF_TEXT = '<|endoftext|>';

/** GPT-2's pre-tokenizer pattern. */
const PIECE = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** GPT-2's bytes_to_unicode: printable bytes map to themselves, the others to U+0100 + n. */
export const BYTE_TO_CHAR: string[] = (() => {
  const keep = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const out: string[] = [];
  let n = 0;
  for (let b = 0; b < 256; b++) out.push(String.fromCodePoint(keep(b) ? b : 256 + n++));
  return out;
})();

/** A tokenizer.json that is not one this reader understands: names the field. */
export class TokenizerFileError extends MilError {
  constructor(
    readonly path: string,
    readonly problem: string,
  ) {
    super('E_TOKENIZER', `${path}: ${problem}`);
  }
}

export class BpeTokenizer {
  /** token id → its bytes */
  readonly bytes: Uint8Array[];
  readonly endOfText: number;
  private readonly rank = new Map<number, number>(); // pair key → merge rank
  private readonly cache = new Map<string, number[]>();

  /** merges[r] = [left id, right id], producing id 256 + r; the vocabulary is 256 + merges + 1 (`<|endoftext|>`). */
  constructor(readonly merges: ReadonlyArray<readonly [number, number]>) {
    this.bytes = Array.from({ length: 256 }, (_, b) => Uint8Array.of(b));
    merges.forEach(([a, b], r) => {
      if (!(a < 256 + r && b < 256 + r))
        throw new ArgumentError('merges', `merge ${r} to use ids below ${256 + r}`, [a, b]);
      const m = new Uint8Array(this.bytes[a].length + this.bytes[b].length);
      m.set(this.bytes[a]);
      m.set(this.bytes[b], this.bytes[a].length);
      this.bytes.push(m);
      this.rank.set(a * 65536 + b, r);
    });
    this.endOfText = this.bytes.length;
    this.bytes.push(new TextEncoder().encode(END_OF_TEXT));
  }

  get vocabSize(): number {
    return this.bytes.length;
  }

  /** Token ids of a text (`<|endoftext|>` in it is the special token). */
  encode(text: string): number[] {
    const out: number[] = [];
    text.split(END_OF_TEXT).forEach((part, i) => {
      if (i > 0) out.push(this.endOfText);
      for (const m of part.matchAll(PIECE)) for (const id of this.encodePiece(m[0])) out.push(id);
    });
    return out;
  }

  private encodePiece(piece: string): number[] {
    const hit = this.cache.get(piece);
    if (hit) return hit;
    const ids = [...new TextEncoder().encode(piece)];
    for (;;) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < ids.length; i++) {
        const r = this.rank.get(ids[i] * 65536 + ids[i + 1]);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          best = i;
        }
      }
      if (best < 0) break;
      const [a, b] = this.merges[bestRank];
      const merged: number[] = [];
      for (let i = 0; i < ids.length; i++) {
        if (i + 1 < ids.length && ids[i] === a && ids[i + 1] === b) {
          merged.push(256 + bestRank);
          i++;
        } else merged.push(ids[i]);
      }
      ids.splice(0, ids.length, ...merged);
    }
    if (this.cache.size < 1 << 20) this.cache.set(piece, ids);
    return ids;
  }

  /** The bytes of a sequence of ids. */
  decodeBytes(ids: readonly number[]): Uint8Array {
    const parts = ids.map((id) => {
      const b = this.bytes[id];
      if (!b) throw new ArgumentError('ids', `token ids in [0, ${this.vocabSize})`, id);
      return b;
    });
    const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  decode(ids: readonly number[]): string {
    return new TextDecoder('utf-8', { fatal: false }).decode(this.decodeBytes(ids));
  }

  /** The byte-level string of a token, as in tokenizer.json's vocab. */
  tokenString(id: number): string {
    if (id === this.endOfText) return END_OF_TEXT;
    return [...this.bytes[id]].map((b) => BYTE_TO_CHAR[b]).join('');
  }

  /** Hugging Face tokenizer.json. */
  toJson(): string {
    const vocab: Record<string, number> = {};
    for (let id = 0; id < this.endOfText; id++) vocab[this.tokenString(id)] = id;
    const doc = {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [
        {
          id: this.endOfText,
          content: END_OF_TEXT,
          single_word: false,
          lstrip: false,
          rstrip: false,
          normalized: false,
          special: true,
        },
      ],
      normalizer: null,
      pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      post_processor: null,
      decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: false,
        vocab,
        merges: this.merges.map(([a, b]) => `${this.tokenString(a)} ${this.tokenString(b)}`),
      },
    };
    return JSON.stringify(doc, null, 1) + '\n';
  }

  /** Read a tokenizer.json written by `toJson` (or any byte-level BPE laid out the same way). */
  static load(path: string): BpeTokenizer {
    return BpeTokenizer.fromObject(
      readJsonObject(path, (p) => new TokenizerFileError(path, p)),
      path,
    );
  }

  /** The same from a parsed tokenizer.json (`path` names it in errors; the browser page fetches the file). */
  static fromObject(j: Record<string, unknown>, path: string): BpeTokenizer {
    const fail = (p: string) => new TokenizerFileError(path, p);
    const model = j.model as { type?: unknown; vocab?: Record<string, unknown>; merges?: unknown[] } | undefined;
    if (!model || model.type !== 'BPE') throw fail(`model.type is ${JSON.stringify(model?.type)}, expected "BPE"`);
    if ((j.pre_tokenizer as { type?: unknown } | null)?.type !== 'ByteLevel')
      throw fail('pre_tokenizer.type is not "ByteLevel": only byte-level BPE is supported');
    if (!model.vocab || !Array.isArray(model.merges)) throw fail('model.vocab or model.merges missing');
    for (let b = 0; b < 256; b++) {
      if (model.vocab[BYTE_TO_CHAR[b]] !== b)
        throw fail(`model.vocab["${BYTE_TO_CHAR[b]}"] must be ${b} (byte ${b}); this reader needs byte b at id b`);
    }
    const ids = new Map<string, number>(Object.entries(model.vocab).map(([s, i]) => [s, Number(i)]));
    const merges = model.merges.map((m, r) => {
      const [a, b] = Array.isArray(m) ? m : String(m).split(' ');
      const ia = ids.get(String(a));
      const ib = ids.get(String(b));
      if (ia === undefined || ib === undefined || ids.get(`${a}${b}`) !== 256 + r)
        throw fail(`merge ${r} (${JSON.stringify(m)}) must join two known tokens into id ${256 + r}`);
      return [ia, ib] as const;
    });
    const tok = new BpeTokenizer(merges);
    const eot = (j.added_tokens as Array<{ id?: unknown; content?: unknown }> | undefined)?.find(
      (t) => t.content === END_OF_TEXT,
    );
    if (!eot || eot.id !== tok.endOfText) throw fail(`added_tokens must hold ${END_OF_TEXT} with id ${tok.endOfText}`);
    if (ids.size !== tok.endOfText)
      throw fail(
        `model.vocab has ${ids.size} entries, expected ${tok.endOfText} (256 bytes + ${merges.length} merges)`,
      );
    return tok;
  }
}

export interface TrainBpeOptions {
  /** total vocabulary, bytes and `<|endoftext|>` included */
  vocabSize: number;
  /** called after each merge */
  onMerge?: (done: number, total: number) => void;
}

/** Learn merges from texts (see the file comment). Deterministic: no randomness, ties by pair ids. */
export function trainBpe(texts: Iterable<string>, o: TrainBpeOptions): BpeTokenizer {
  if (!Number.isInteger(o.vocabSize) || o.vocabSize < 257 || o.vocabSize > 65535)
    throw new ArgumentError('--vocab', 'an integer in [257, 65535]', o.vocabSize);
  const freq = new Map<string, number>();
  for (const t of texts)
    for (const m of t.replaceAll(END_OF_TEXT, '').matchAll(PIECE)) freq.set(m[0], (freq.get(m[0]) ?? 0) + 1);
  const enc = new TextEncoder();
  const words: number[][] = [];
  const counts: number[] = [];
  for (const [w, c] of freq) {
    words.push([...enc.encode(w)]);
    counts.push(c);
  }
  const pairCount = new Map<number, number>();
  const where = new Map<number, Set<number>>(); // pair → words that (may) hold it
  const addPairs = (wi: number, sign: number) => {
    const w = words[wi];
    for (let i = 0; i + 1 < w.length; i++) {
      const k = w[i] * 65536 + w[i + 1];
      pairCount.set(k, (pairCount.get(k) ?? 0) + sign * counts[wi]);
      if (sign > 0) (where.get(k) ?? lookup(where.set(k, new Set()), k)).add(wi);
    }
  };
  words.forEach((_, wi) => addPairs(wi, 1));
  const merges: Array<[number, number]> = [];
  const total = o.vocabSize - 257;
  while (merges.length < total) {
    let best = -1;
    let bestCount = 0;
    for (const [k, c] of pairCount)
      if (c > bestCount || (c === bestCount && c > 0 && k < best)) {
        best = k;
        bestCount = c;
      }
    if (best < 0 || bestCount < 1) break; // nothing left to merge: a smaller vocabulary
    const a = Math.floor(best / 65536);
    const b = best % 65536;
    const id = 256 + merges.length;
    merges.push([a, b]);
    for (const wi of where.get(best) ?? []) {
      const w = words[wi];
      addPairs(wi, -1);
      const next: number[] = [];
      for (let i = 0; i < w.length; i++) {
        if (i + 1 < w.length && w[i] === a && w[i + 1] === b) {
          next.push(id);
          i++;
        } else next.push(w[i]);
      }
      words[wi] = next;
      addPairs(wi, 1);
    }
    where.delete(best);
    pairCount.delete(best);
    o.onMerge?.(merges.length, total);
  }
  return new BpeTokenizer(merges);
}
