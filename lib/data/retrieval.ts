/**
 * A retrieval curriculum (issue #25 item 4): documents that teach a model to copy a number from its context, so
 * that the passkey test (lib/decode/passkey.ts) measures how far a model, and the hybrids distilled from it, carry
 * retrieval past the training length — not whether the teacher ever learned to retrieve (the corpus's dictionary
 * entries and manuals hold no such pattern: the teacher-20m answers 0 of 24 passkey trials).
 *
 *   retrieval document i:  intro_t · filler[a .. a+c) · needle_t(key) · filler[a+c .. a+F) · question_t · " key."
 *   repeat document i:     filler[e .. e+⌊L/2⌋) · "\n" · filler[e .. e+⌊L/2⌋)
 *   prose document i:      filler[b .. b+L)
 *
 * with, drawn from the seed for each i in order: L ∈ [minLength, context] the retrieval document's length in
 * filler-and-template tokens, a template t, a key of 4–6 digits, a depth d ∈ [0, 1) (c = ⌊d·F⌉ filler tokens
 * before the needle, F = L − the template's tokens), and the offsets a, e, b into the filler.
 *
 * The repeat documents teach the mechanism retrieval needs, copying from the context (an "induction" pattern): the
 * second half of each is its first half again, so every token of it is a copy, where a retrieval document has only
 * its key's few tokens to copy. The corpus's teacher copies nothing, not even a sentence repeated verbatim.
 *
 * What keeps the passkey test honest after training on this:
 * - The templates never use the test's wording: no "pass key" (its intro, needle and question are held out), so a
 *   right answer is a copy from the context, not a memorised phrase (`TEMPLATES`; spec/retrieval.spec.ts checks it).
 * - The filler comes from the corpus's training split; the test cuts its filler from the test split.
 * - Every retrieval document is followed by a repeat and a prose document of about the same length, so a third of
 *   the tokens trained on stay the corpus's prose (and the repeats' first halves are prose too).
 * Documents are text (decoded from the filler's ids; a consumer re-tokenizes them), one JSON object a line as
 * lib/data/corpus.ts loads them: `mil sft --data DIR/retrieval.jsonl` trains on them, split by document.
 */
import { ArgumentError } from '../errors.js';
import { Rng } from '../rng.js';
import type { PasskeyTokenizer } from '../decode/passkey.js';

/** One wording of the task: what it calls the number, and its intro, needle and question. */
interface Template {
  intro: string;
  needle: (key: string) => string;
  question: string;
}

/** The training wordings: none is the passkey test's ("pass key"), which stays held out. */
export const TEMPLATES: readonly Template[] = [
  {
    intro: 'A secret number is written somewhere in the text below. Find it.\n',
    needle: (k) => `\nThe secret number is ${k}. Keep it in mind: ${k}.\n`,
    question: '\nWhat is the secret number? The secret number is',
  },
  {
    intro: 'Somewhere in this text there is a code. Read on and remember it.\n',
    needle: (k) => `\nThe code is ${k}. Remember the code ${k}.\n`,
    question: '\nWhat was the code? The code is',
  },
  {
    intro: 'The following notes contain one magic number among much else.\n',
    needle: (k) => `\nThe magic number is ${k}. ${k} is the magic number.\n`,
    question: '\nRecall the magic number. The magic number is',
  },
  {
    intro: 'Read the text and look out for the access code.\n',
    needle: (k) => `\nAccess code: ${k}. The access code is ${k}.\n`,
    question: '\nWhich access code was given? The access code is',
  },
  {
    intro: 'Your ticket number appears once in what follows.\n',
    needle: (k) => `\nYour ticket number is ${k}. Do not lose ticket ${k}.\n`,
    question: '\nWhat is your ticket number? Your ticket number is',
  },
];

export interface RetrievalOptions {
  /** retrieval documents (each followed by a repeat and a prose one) */
  docs: number;
  /** the longest retrieval document in tokens: the training context */
  context: number;
  /** the shortest */
  minLength: number;
  seed: number;
}

export interface RetrievalDoc {
  id: string;
  text: string;
}

/**
 * The curriculum's documents: retrieval, repeat and prose in turn (3 · docs of them). `filler` is a token stream of the
 * corpus's training split, at least context + 1 tokens long. Bad options throw an ArgumentError naming them.
 */
export function retrievalDocs(tok: PasskeyTokenizer, filler: readonly number[], o: RetrievalOptions): RetrievalDoc[] {
  if (!(Number.isInteger(o.docs) && o.docs >= 1)) throw new ArgumentError('--docs', 'a whole number ≥ 1', o.docs);
  const overhead = Math.max(
    ...TEMPLATES.map((t) => tok.encode(t.intro + t.needle('123456') + t.question + ' 123456.').length),
  );
  if (!(Number.isInteger(o.minLength) && o.minLength >= overhead + 8))
    throw new ArgumentError(
      '--min-length',
      `a whole number ≥ ${overhead + 8} (the longest template and 8 filler tokens)`,
      o.minLength,
    );
  if (!(Number.isInteger(o.context) && o.context >= o.minLength))
    throw new ArgumentError('--context', `a whole number ≥ --min-length (${o.minLength})`, o.context);
  if (filler.length < o.context + 1)
    throw new ArgumentError(
      'filler',
      `a token stream of at least ${o.context + 1} tokens (the training split)`,
      filler.length,
    );
  const rng = new Rng(o.seed);
  const text = (a: number, b: number) => tok.decode(filler.slice(a, b));
  const out: RetrievalDoc[] = [];
  for (let i = 0; i < o.docs; i++) {
    const L = rng.int(o.minLength, o.context);
    const t = TEMPLATES[rng.int(0, TEMPLATES.length - 1)];
    const digits = rng.int(4, 6);
    const key = String(rng.int(10 ** (digits - 1), 10 ** digits - 1));
    const depth = rng.uniform();
    const F = L - tok.encode(t.intro + t.needle(key) + t.question + ` ${key}.`).length;
    const a = rng.int(0, filler.length - F - 1);
    const c = Math.round(depth * F);
    out.push({
      id: `retrieval/${i}`,
      text: t.intro + text(a, a + c) + t.needle(key) + text(a + c, a + F) + t.question + ` ${key}.`,
    });
    const half = Math.floor(L / 2);
    const e = rng.int(0, filler.length - half - 1);
    const span = text(e, e + half);
    out.push({ id: `repeat/${i}`, text: `${span}\n${span}` });
    const b = rng.int(0, filler.length - L - 1);
    out.push({ id: `prose/${i}`, text: text(b, b + L) });
  }
  return out;
}
