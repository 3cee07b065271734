/**
 * The passkey (needle) test of long context (issue #25 item 4; Mohtashami & Jaggi 2023, the test the paper's
 * long-context section cites): a random number hidden in filler text, and the model asked for it.
 *
 *   prompt(L, d, key) = INTRO · filler[0 .. ⌊d·F⌉) · NEEDLE(key) · filler[⌊d·F⌉ .. F) · QUESTION,   |prompt| = L
 *
 * L the prompt's length in tokens (1×, 2×, 4×, 8× the training context), d ∈ [0, 1] the needle's depth (0: right
 * after the intro, 1: right before the question), F = L − |INTRO| − |NEEDLE| − |QUESTION| the filler tokens: a run
 * of the held-out split's token stream from a seeded offset. A trial is correct when the greedy continuation,
 * decoded, starts (after spaces) with exactly the key's digits. accuracy(L, d) = correct / trials per cell.
 *
 * Trials are drawn once from the seed (passkeyTrials: for each length, depth and trial in that order, a key of
 * KEY_DIGITS digits and a filler offset), independent of the model, so every model answers the same prompts.
 * The model is a function (`Answerer`: prompt ids, tokens to generate → generated ids), so any decoder runs it.
 */
import { ArgumentError } from '../errors.js';
import { Rng } from '../rng.js';

/** Digits of a pass key (10000 … 99999). */
const KEY_DIGITS = 5;
const INTRO = 'There is a pass key hidden inside a lot of irrelevant text. Find it and remember it.\n';
const needle = (key: string) => `\nThe pass key is ${key}. Remember it. ${key} is the pass key.\n`;
const QUESTION = '\nWhat is the pass key? The pass key is';

/** What the test needs of a tokenizer. */
export interface PasskeyTokenizer {
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
}

/** The model under test: the ids it generates greedily after `prompt`, at most `maxNewTokens` of them. */
export type Answerer = (prompt: number[], maxNewTokens: number) => Promise<number[]>;

export interface PasskeyGrid {
  /** prompt lengths in tokens */
  lengths: number[];
  /** needle depths in [0, 1] */
  depths: number[];
  trials: number;
  seed: number;
}

export interface PasskeyTrial {
  length: number;
  depth: number;
  key: string;
  prompt: number[];
  /** where the needle starts in the prompt (token index) */
  needleAt: number;
}

export interface PasskeyCell {
  length: number;
  depth: number;
  correct: number;
  trials: number;
  accuracy: number;
}

/**
 * The trials of `grid`, lengths outer, depths inner, trials innermost; each prompt exactly `length` tokens.
 * `filler` is the token stream the filler is cut from: at least the longest filler plus one token long.
 */
export function passkeyTrials(tok: PasskeyTokenizer, filler: readonly number[], grid: PasskeyGrid): PasskeyTrial[] {
  const intro = tok.encode(INTRO);
  const question = tok.encode(QUESTION);
  const rng = new Rng(grid.seed);
  const out: PasskeyTrial[] = [];
  for (const d of grid.depths)
    if (!(d >= 0 && d <= 1)) throw new ArgumentError('--depths', 'fractions in [0, 1]', String(d));
  for (const length of grid.lengths) {
    for (const depth of grid.depths)
      for (let t = 0; t < grid.trials; t++) {
        const key = String(rng.int(10 ** (KEY_DIGITS - 1), 10 ** KEY_DIGITS - 1));
        const nd = tok.encode(needle(key));
        const F = length - intro.length - nd.length - question.length;
        if (F < 0)
          throw new ArgumentError(
            'prompt length (--context × --multiples)',
            `at least ${intro.length + nd.length + question.length} tokens (the intro, needle and question)`,
            String(length),
          );
        if (filler.length < F + 1)
          throw new ArgumentError('filler', `a token stream of at least ${F + 1} tokens`, filler.length);
        const offset = rng.int(0, filler.length - F);
        const cut = Math.round(depth * F);
        const prompt = [
          ...intro,
          ...filler.slice(offset, offset + cut),
          ...nd,
          ...filler.slice(offset + cut, offset + F),
          ...question,
        ];
        out.push({ length, depth, key, prompt, needleAt: intro.length + cut });
      }
  }
  return out;
}

/** A continuation's answer is right: its text, leading spaces dropped, starts with the key and no further digit. */
function isCorrect(text: string, key: string): boolean {
  const m = /^\s*(\d+)/.exec(text);
  return m !== null && m[1] === key;
}

/**
 * Accuracy per (length, depth) cell of `answer` over `trials` (passkeyTrials), cells in the trials' order.
 * Each answer may run to the key's token count plus one more (a tokenizer may split " 12345" unevenly).
 */
export async function passkeyAccuracy(
  tok: PasskeyTokenizer,
  trials: readonly PasskeyTrial[],
  answer: Answerer,
  onTrial?: (done: number, total: number) => void,
): Promise<PasskeyCell[]> {
  const cells = new Map<string, PasskeyCell>();
  let done = 0;
  for (const t of trials) {
    const k = `${t.length}|${t.depth}`;
    let c = cells.get(k);
    if (!c) cells.set(k, (c = { length: t.length, depth: t.depth, correct: 0, trials: 0, accuracy: 0 }));
    const ids = await answer(t.prompt, tok.encode(` ${t.key}`).length + 1);
    c.trials++;
    if (isCorrect(tok.decode(ids), t.key)) c.correct++;
    c.accuracy = c.correct / c.trials;
    onTrial?.(++done, trials.length);
  }
  return [...cells.values()];
}
