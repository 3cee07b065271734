/**
 * `npm run paper`'s page and options (scripts/paper.ts, scripts/paper_page.ts); its writes under a full disk, kills
 * and a second run are swept in spec/sweep.spec.ts.
 *
 * The shipped docs/results.md is what renderPage makes of the shipped docs/results/results.json alone, and ends with
 * that file's sha-256 (computed here); the plots in docs/results/ are renderSvgs' of it. A bad option exits 2 before
 * any work, naming the option, what it accepts and what it got.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EXIT } from '../lib/cli/exit.js';
import { paper } from '../scripts/paper.js';
import { recordedSha, renderPage, renderSvgs, type PaperResults } from '../scripts/paper_page.js';
import { tmpFolder } from './tmp.js';

const DOCS = join(import.meta.dirname, '..', 'docs');

describe('npm run paper: the page and its options', () => {
  it('docs/results.md and its plots are rendered from docs/results/results.json alone, and the page carries its sha-256', () => {
    const json = readFileSync(join(DOCS, 'results', 'results.json'));
    const sha = createHash('sha256').update(json).digest('hex');
    const page = readFileSync(join(DOCS, 'results.md'), 'utf8');
    expect(recordedSha(page)).toBe(sha);
    expect(page.trimEnd().split('\n').at(-1)).toContain(sha);
    const R = JSON.parse(json.toString('utf8')) as PaperResults;
    expect(renderPage(R, sha)).toBe(page);
    for (const [name, svg] of Object.entries(renderSvgs(R)))
      expect(svg, name).toBe(readFileSync(join(DOCS, 'results', name), 'utf8'));
  });

  it('a bad option exits 2 before any work, naming it, what it accepts and what it got', async () => {
    const out = tmpFolder('paperopts');
    for (const [args, expected] of [
      [['--scale', 'small'], /--scale.*one of tiny, toy.*small/],
      [['--scale', 'tiny', '--eval-tokens', 'lots'], /--eval-tokens.*integer.*lots/],
      [['--scale', 'tiny', '--steps', '3'], /--steps/],
    ] as const) {
      let log = '';
      const code = await paper([...args, '--out', out], (l) => void (log += l + '\n'));
      expect(code, log).toBe(EXIT.usage);
      expect(log).toMatch(expected);
      expect(readdirSync(out), 'nothing written').toEqual([]);
    }
    expect(
      readdirSync(dirname(out)).filter((e) => e.startsWith(`.${basename(out)}.`)),
      'no lock',
    ).toEqual([]);
  });
});
