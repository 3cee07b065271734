/**
 * The instruction and preference sets of issue #25 item 3, built from the corpus's dictionary (GCIDE, 38% of it):
 *
 *   SFT  `Question: What does "w" mean?\nAnswer: d(w)`            one document per headword w
 *   DPO  prompt `Question: What does "w" mean?\nAnswer:`, chosen ` d(w)`, rejected ` d(w′)`
 *
 * d(w) the first sentence of w's first sense (definitionOf: the entry as prose, its headword, part of speech,
 * etymology `[…]`, field label `(Bot.)`, sense number and `--Author.` citations dropped); w′ another headword of the
 * same part, drawn with a seeded generator (never w, never a word with the same definition). An entry belongs to the
 * part of the corpus document that holds it (`gcide/NNNNN`, ENTRIES_PER_DOC entries a document; build.ts partOf
 * with the corpus's seed and held-out fraction), so a question about a held-out entry is never trained on. Entries
 * kept: a single alphabetic headword of 3+ letters and a definition of 3 to 40 words; the first entry of a
 * headword only. Deterministic from the entries and the seeds.
 */
import { existsSync, readFileSync } from 'node:fs';
import { Rng } from '../rng.js';
import { CorpusError } from './corpus.js';
import { dictEntryText } from './extract.js';
import { partOf } from './build.js';
import { ENTRIES_PER_DOC } from './sources.js';
import { CORPUS_PARTS, type CorpusPart } from './ids.js';

export interface Preference {
  prompt: string;
  chosen: string;
  rejected: string;
}

export interface InstructionSets {
  /** SFT documents ({ id, text }) per corpus part */
  sft: Record<CorpusPart, Array<{ id: string; text: string }>>;
  /** DPO preferences per corpus part */
  dpo: Record<CorpusPart, Preference[]>;
}

const question = (w: string) => `Question: What does "${w}" mean?\nAnswer:`;

/** The word and first-sentence definition of one dictionary entry (raw dictd text), or undefined where unusable. */
export function definitionOf(raw: string): { word: string; definition: string } | undefined {
  const first = dictEntryText(raw).split('\n\n')[0].trim();
  const m = /^([A-Za-z]{3,}),\s+([a-z]+\.\s*)+/.exec(first);
  if (!m) return undefined;
  let d = first.slice(m[0].length);
  for (let prev = ''; prev !== d;) {
    prev = d;
    d = d
      .replace(/^\[[^\]]*\]\s*/, '') // etymology
      .replace(/^\([A-Z][^)]{0,30}\)\s*/, '') // field label (Bot.)
      .replace(/^\d+\.\s*/, ''); // sense number
  }
  d = d.replace(/\s*--[A-Z][^.]*\.?/g, '').replace(/\s*\[[^\]]*\]/g, '');
  const end = /[.;](\s|$)/.exec(d);
  d = (end ? d.slice(0, end.index) : d).trim();
  if (d === '' || /^\(|[?\][]/.test(d)) return undefined;
  const words = d.split(/\s+/).length;
  if (words < 3 || words > 40) return undefined;
  return { word: m[1].toLowerCase(), definition: d[0].toUpperCase() + d.slice(1) + '.' };
}

/**
 * The SFT and DPO sets of the dictionary's `entries` (dictd order, as lib/data/extract.ts dictdEntries returns
 * them), split as the corpus built with `seed` and `heldOut` split them; rejected answers drawn with `pairSeed`.
 */
export function instructionSets(
  entries: ReadonlyArray<{ text: string }>,
  o: { source: string; seed: number; heldOut: number; pairSeed: number },
): InstructionSets {
  const seen = new Set<string>();
  const byPart: Record<CorpusPart, Array<{ word: string; definition: string }>> = {
    train: [],
    validation: [],
    test: [],
  };
  entries.forEach((e, i) => {
    const d = definitionOf(e.text);
    if (!d || seen.has(d.word)) return;
    seen.add(d.word);
    const doc = `${o.source}/${String(Math.floor(i / ENTRIES_PER_DOC)).padStart(5, '0')}`;
    byPart[partOf(doc, o.seed, o.heldOut)].push(d);
  });
  const rng = new Rng(o.pairSeed);
  const sets: InstructionSets = {
    sft: { train: [], validation: [], test: [] },
    dpo: { train: [], validation: [], test: [] },
  };
  for (const part of CORPUS_PARTS) {
    const ds = byPart[part];
    sets.sft[part] = ds.map((d) => ({ id: `${o.source}/${d.word}`, text: `${question(d.word)} ${d.definition}` }));
    if (ds.length < 2) continue;
    for (const d of ds) {
      let other = ds[rng.int(0, ds.length - 1)];
      for (let k = 0; k < 8 && other.definition === d.definition; k++) other = ds[rng.int(0, ds.length - 1)];
      if (other.definition === d.definition) continue;
      sets.dpo[part].push({ prompt: question(d.word), chosen: ` ${d.definition}`, rejected: ` ${other.definition}` });
    }
  }
  return sets;
}

/**
 * The first `n` preferences of a dpo*.jsonl file (one { prompt, chosen, rejected } per line); a line that is not
 * one is a CorpusError naming the file and line, a file with fewer than `n`, too.
 */
export function readPreferences(file: string, n: number): Preference[] {
  if (!existsSync(file)) throw new CorpusError(file, 'no such file (make the folder with mil data instruct)');
  const out: Preference[] = [];
  const lines = readFileSync(file, 'utf8').split('\n');
  for (let i = 0; i < lines.length && out.length < n; i++) {
    if (lines[i].trim() === '') continue;
    let o: unknown;
    try {
      o = JSON.parse(lines[i]);
    } catch {
      o = undefined;
    }
    const q = o as Preference | undefined;
    if (!q || typeof q.prompt !== 'string' || typeof q.chosen !== 'string' || typeof q.rejected !== 'string')
      throw new CorpusError(file, `line ${i + 1} is not a JSON object with string prompt, chosen and rejected`);
    out.push({ prompt: q.prompt, chosen: q.chosen, rejected: q.rejected });
  }
  if (out.length < n) throw new CorpusError(file, `${out.length} preferences, fewer than the ${n} asked for (--pairs)`);
  return out;
}
