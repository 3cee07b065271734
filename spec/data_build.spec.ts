/**
 * `mil data build` (lib/data/build.ts) on a generated fixture: a fake install root holding two sources (the
 * Python docs' reST and the Devil's Dictionary's dictd files, made here) and a two-text Brown folder; no real
 * package is needed. Checked: the extractors on markup samples, strict UTF-8 against TextDecoder (an
 * independent decoder), exact and near-duplicate paragraphs, the split by document (deterministic, disjoint,
 * near its fractions), a planted Brown sentence dropped and reported, the id files round-tripping to the
 * tokenizer's encoding of the kept text, the same bytes from the same seed, a file that is not UTF-8 refused
 * naming the file and byte offset (exit 2), a missing package named with its install command (exit 6), and
 * training commands reading the folder. About 10 s on 2 cores.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HeldOutIndex, Deduper, cleanDocs, partOf, type ParagraphStats } from '../lib/data/build.js';
import { taggedText, dictEntryText, firstInvalidUtf8, htmlText, podText, rstText } from '../lib/data/extract.js';
import { decodeIds, encodeIds, readManifest, readPart } from '../lib/data/ids.js';
import { REAL_WRITER_FS, setWriterFsForTesting } from '../lib/io/writer.js';
import { BpeTokenizer } from '../lib/text/bpe.js';
import { Rng } from '../lib/rng.js';
import { runMil, snapshot } from './cli.js';
import { tmpFolder } from './tmp.js';
import { writeDictd } from './dictd.js';

describe('extractors', () => {
  it('HTML: scripts, navigation, <pre> and tables dropped, blocks are paragraphs, entities decoded', () => {
    const html = `<html><head><title>T</title><script>var x = 1;</script></head><body>
      <div class="related" role="navigation"><a href="#">next</a> <div>inner nav</div></div>
      <h1>Heaps&nbsp;and queues</h1><p>A heap is a <em>binary</em> tree &amp; more&#x2014;or&#8230;</p>
      <pre>for x in y: pass</pre><table><tr><td>1</td></tr></table><p>Second<br>line.</p>
      <div class="footer">© 2023</div></body></html>`;
    expect(htmlText(html)).toBe('Heaps and queues\n\nA heap is a binary tree & more—or…\n\nSecond\n\nline.');
  });

  it('reST: underlines, comments, code directives and literal blocks dropped, roles reduced, descriptions kept', () => {
    const rst = [
      'Title',
      '=====',
      '',
      '.. _label:',
      '',
      'See :func:`heapq.heappush` and ``list`` or `the docs <https://x.org>`_ for **more**::',
      '',
      '    code = 1',
      '    more = 2',
      '',
      '.. code-block:: python',
      '',
      '   print(1)',
      '',
      '.. function:: push(heap, item)',
      '   :noindex:',
      '',
      '   Push the value *item* onto the heap.',
      '',
      '.. note:: Keep this.',
      '',
      '* a list item',
      '* another',
    ].join('\n');
    expect(rstText(rst)).toBe(
      'Title\n\nSee heapq.heappush and list or the docs for more:\n\nPush the value item onto the heap.\n\nKeep this.\n\na list item\n\nanother',
    );
  });

  it('POD: formatting codes reduced, verbatim paragraphs and =begin blocks dropped', () => {
    const pod = `=head1 NAME

perlfoo - B<bold> I<it> C<< $a <=> $b >> L<perlop/"Shift"> L<text|perlre> E<lt>x E<gt> L<https://perl.org>

    my $code = 1;

=begin html

<b>no</b>

=end html

=over

=item * first item

Body text.

=cut

sub not_pod {}`;
    expect(podText(pod)).toBe(
      'NAME\n\nperlfoo - bold it $a <=> $b perlop Shift text <x > https://perl.org\n\nfirst item\n\nBody text.',
    );
  });

  it('dictionary entries: GCIDE pronunciation and source marks, WordNet synonym lists removed', () => {
    const gcide =
      'Abdomen \\Ab*do"men\\, n. [L. abdomen.]\n   1. (Anat.) The belly.\n   [1913 Webster]\n\n   2. The (l[=e]k) leak; [ae]ther.';
    expect(dictEntryText(gcide)).toBe('Abdomen, n. [L. abdomen.] 1. (Anat.) The belly.\n\n2. The leak; æther.');
    expect(dictEntryText('  n 1: a gloss; "an example" [syn: {a},\n  {b}]')).toBe('n 1: a gloss; "an example"');
  });

  it('Brown: tags removed, one paragraph per sentence line', () => {
    expect(taggedText("\n\n\tThe/at jury/nn said/vbd ``/`` no/at ''/'' ./.\n\n\tIt/pps ran/vbd ./.\n")).toBe(
      'The jury said “no” .\n\nIt ran.'.replace(' .', '.'),
    );
  });

  it('firstInvalidUtf8 agrees with a fatal TextDecoder on random bytes, and the prefix before it decodes', () => {
    const strict = new TextDecoder('utf-8', { fatal: true });
    const valid = (b: Uint8Array) => {
      try {
        strict.decode(b);
        return true;
      } catch {
        return false;
      }
    };
    // bytes biased towards UTF-8 lead and continuation bytes and the edges of their ranges (overlong forms,
    // surrogates, past U+10FFFF), so both outcomes and every rule are common
    const edge = fc.constantFrom(
      0xc0,
      0xc1,
      0xc2,
      0xdf,
      0xe0,
      0xed,
      0xef,
      0xf0,
      0xf4,
      0xf5,
      0x80,
      0x8f,
      0x90,
      0x9f,
      0xa0,
      0xbf,
    );
    const byte = fc.oneof(fc.integer({ min: 0x20, max: 0x7e }), fc.integer({ min: 0x80, max: 0xff }), edge, edge);
    fc.assert(
      fc.property(fc.array(byte, { maxLength: 24 }), (xs) => {
        const b = Uint8Array.from(xs);
        const bad = firstInvalidUtf8(b);
        expect(bad < 0).toBe(valid(b));
        if (bad >= 0) expect(valid(b.subarray(0, bad))).toBe(true);
      }),
      { numRuns: 1500, seed: 25 },
    );
    expect(firstInvalidUtf8(new TextEncoder().encode('naïve — 𝄞'))).toBe(-1);
    for (const [bytes, at] of [
      [[0x41, 0xed, 0xa0, 0x80], 1], // a surrogate
      [[0xc0, 0x80], 0], // overlong
      [[0xe0, 0x9f, 0xbf], 0], // overlong
      [[0xf4, 0x90, 0x80, 0x80], 0], // past U+10FFFF
      [[0x41, 0xe2, 0x82], 1], // cut short
    ] as const)
      expect(firstInvalidUtf8(Uint8Array.from(bytes))).toBe(at);
  });
});

/** Paragraphs of random words (seeded), distinct from each other. */
function prose(rng: Rng, paragraphs: number, words = 24): string {
  const syll = ['ka', 'lo', 'mi', 'ter', 'an', 'sel', 'dor', 'vi', 'pu', 'ren', 'ost', 'el'];
  const out: string[] = [];
  for (let p = 0; p < paragraphs; p++) {
    const ws: string[] = [];
    for (let i = 0; i < words; i++) ws.push(syll[rng.int(0, 11)] + syll[rng.int(0, 11)] + syll[rng.int(0, 11)]);
    out.push(ws.join(' ') + '.');
  }
  return out.join('\n\n');
}

describe('dedup, split, Brown index', () => {
  const words = (p: string) => {
    const ws = p.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
    // the same hashing the build uses is internal; Deduper takes any 32-bit word hashes
    return Uint32Array.from(ws, (w) =>
      [...w].reduce((h, c) => Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0, 2166136261),
    );
  };

  it('exact: the same words in another case and punctuation; near: one word of 40 changed; else new', () => {
    const rng = new Rng(1);
    const a = prose(rng, 1, 40);
    const b = prose(rng, 1, 40);
    const d = new Deduper();
    expect(d.check(words(a))).toBe('new');
    expect(d.check(words(a.toUpperCase().replaceAll(' ', ', ')))).toBe('exact');
    const ws = a.split(' ');
    ws[20] = 'zzzchanged';
    expect(d.check(words(ws.join(' ')))).toBe('near');
    expect(d.check(words(b))).toBe('new');
    const half = a.split(' ').slice(0, 20).join(' ') + ' ' + b.split(' ').slice(20).join(' ');
    expect(d.check(words(half))).toBe('new'); // Jaccard ≈ 0.3: not a near duplicate
  });

  it('partOf: deterministic, by id and seed only, near its fractions', () => {
    const ids = Array.from({ length: 8000 }, (_, i) => `src/doc${i}`);
    const parts = ids.map((id) => partOf(id, 7, 0.1));
    expect(ids.map((id) => partOf(id, 7, 0.1))).toEqual(parts);
    const count = (p: string) => parts.filter((x) => x === p).length / ids.length;
    expect(count('validation')).toBeGreaterThan(0.04);
    expect(count('validation')).toBeLessThan(0.06);
    expect(count('test')).toBeGreaterThan(0.04);
    expect(count('test')).toBeLessThan(0.06);
    const other = ids.map((id) => partOf(id, 8, 0.1));
    expect(other.filter((p, i) => p !== parts[i]).length).toBeGreaterThan(400);
  });

  it('cleanDocs drops junk and a paragraph that holds a Brown sentence, and reports the Brown text', () => {
    const rng = new Rng(2);
    const brown = new HeldOutIndex([
      { id: 'brown/ca01', text: prose(rng, 3, 30) },
      { id: 'brown/cb01', text: prose(rng, 3, 30) },
    ]);
    const planted = brown.docs[1].text.split('\n\n')[1];
    const docs = [
      { id: 'x/1', text: prose(rng, 4) + '\n\nAs quoted: ' + planted + ' end.' },
      { id: 'x/2', text: prose(rng, 4) + '\n\n| 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 |\n\n--- ** ---' },
    ];
    const stats = new Map<string, ParagraphStats>();
    const clean = cleanDocs(docs, brown, stats);
    expect(stats.get('x')).toMatchObject({ read: 11, brown: 1, junk: 2, kept: 8 });
    expect(clean.map((d) => d.text).join('\n')).not.toContain(planted.slice(0, 60));
    expect(brown.overlap().docs.map((d) => d.id)).toEqual(['brown/cb01']);
  });
});

describe('mil data build on a fixture', () => {
  afterEach(() => setWriterFsForTesting());
  // made while the file is collected, so they live for the whole file (tmp.ts), not for the first test
  const root = tmpFolder('data-root');
  const brownDir = tmpFolder('data-brown');
  const base = join(tmpFolder('data-out'), 'corpus');
  const rng = new Rng(25);
  const planted = prose(new Rng(99), 1, 30);
  const pythonDocs = Array.from({ length: 24 }, (_, i) => ({
    name: `doc${String(i).padStart(2, '0')}.rst.txt`,
    text: `Title ${i}\n========\n\n${prose(rng, 6)}${i === 3 ? `\n\n${planted}` : ''}${i === 5 ? `\n\n${prose(new Rng(1000), 1)}` : ''}${i === 6 ? `\n\n${prose(new Rng(1000), 1)}` : ''}\n`,
  }));
  /** A fake install root: dpkg status, the Python docs' reST sources, the Devil's Dictionary. */
  function makeRoot(dir: string, o: { python?: boolean } = {}): string {
    const status = [
      'Package: dict-devil\nStatus: install ok installed\nVersion: 1.0-test',
      ...(o.python === false ? [] : ['Package: python3.11-doc\nStatus: install ok installed\nVersion: 3.11-test']),
    ];
    mkdirSync(join(dir, 'var/lib/dpkg'), { recursive: true });
    writeFileSync(join(dir, 'var/lib/dpkg/status'), status.join('\n\n') + '\n');
    const src = join(dir, 'usr/share/doc/python3.11/html/_sources');
    mkdirSync(src, { recursive: true });
    for (const d of pythonDocs) writeFileSync(join(src, d.name), d.text);
    const entries = Array.from(
      { length: 30 },
      (_, i) => `Word${i}\n   ${prose(rng, 1, 16).replace(/(.{60}) /g, '$1\n   ')}\n`,
    );
    writeDictd(dir, 'devil', entries, (i) => `word${i}`);
    return dir;
  }

  const build = (out: string, extra: string[] = [], r = root) =>
    runMil([
      'data',
      'build',
      '--out',
      out,
      '--root',
      r,
      '--exclude',
      brownDir,
      '--sources',
      'devil,python',
      '--vocab',
      '300',
      '--heldout',
      '0.3',
      '--shard-tokens',
      '2000',
      '--quiet',
      ...extra,
    ]);

  beforeAll(async () => {
    makeRoot(root);
    const tagged = (t: string) =>
      t
        .split('\n\n')
        .map(
          (p) =>
            '\t' +
            p
              .split(' ')
              .map((w) => `${w}/nn`)
              .join(' '),
        )
        .join('\n\n');
    writeFileSync(join(brownDir, 'ca01'), tagged(prose(new Rng(98), 3, 30)));
    writeFileSync(join(brownDir, 'cb01'), tagged(planted));
    const r = await build(base);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
  }, 60_000); // the first command loads lib/cli/main.ts and all it imports

  it('writes the manifest, tokenizer and shards; figures add up; the planted Brown paragraph is dropped', () => {
    const m = readManifest(base);
    const files = readdirSync(base).filter((f) => f.endsWith('.u16.gz'));
    expect(files.sort()).toEqual(
      [...m.parts.train.shards, ...m.parts.validation.shards, ...m.parts.test.shards].map((s) => s.file).sort(),
    );
    expect(m.parts.train.shards.length).toBeGreaterThan(1); // --shard-tokens 2000
    const docs = m.parts.train.docs + m.parts.validation.docs + m.parts.test.docs;
    expect(docs).toBe(24 + 1); // 24 reST files, 30 dictionary entries in one block
    expect(m.parts.validation.docs + m.parts.test.docs).toBeGreaterThan(0);
    const brown = m.brown as {
      paragraphsDropped: number;
      sharedAfterFilter: number;
      sharedBeforeFilter: { top: Array<{ id: string }> };
    };
    expect(brown.paragraphsDropped).toBe(1);
    expect(brown.sharedBeforeFilter.top[0].id).toBe('excluded/cb01');
    expect(brown.sharedAfterFilter).toBe(0);
    const dedup = m.dedup as { paragraphs: ParagraphStats };
    expect(dedup.paragraphs.exact).toBe(1); // doc05's and doc06's shared paragraph
  });

  it('the id files round-trip: the parts decode to the kept documents, each in exactly one part', () => {
    const m = readManifest(base);
    const tok = BpeTokenizer.load(join(base, 'tokenizer.json'));
    expect(tok.vocabSize).toBe(m.tokenizer.vocabSize);
    const texts: string[] = [];
    for (const p of ['train', 'validation', 'test'] as const) {
      const ids = readPart(base, p);
      expect(ids.length).toBe(m.parts[p].tokens);
      const docs = tok.decode(ids).split('<|endoftext|>');
      expect(docs.pop()).toBe('');
      expect(docs.length).toBe(m.parts[p].docs);
      texts.push(...docs);
    }
    for (const d of pythonDocs.filter((d) => d.name !== 'doc06.rst.txt')) {
      const first = d.text.split('\n\n')[1]; // its first prose paragraph
      expect(texts.filter((t) => t.includes(first)).length, d.name).toBe(1);
    }
    expect(texts.join('\n')).not.toContain(planted.slice(0, 60));
    const ids = Uint16Array.from({ length: 5000 }, (_, i) => (i * 7919) % 65536);
    expect([...decodeIds(encodeIds(ids).gz, 'x').ids]).toEqual([...ids]);
  });

  it('a shard that differs from the manifest, or holds an id outside the vocabulary, is refused naming it', () => {
    const m = readManifest(base);
    const copy = join(tmpFolder('data-bad'), 'c');
    mkdirSync(copy);
    for (const f of readdirSync(base)) writeFileSync(join(copy, f), readFileSync(join(base, f)));
    const s = m.parts.validation.shards[0];
    writeFileSync(join(copy, s.file), encodeIds(Uint16Array.from({ length: s.tokens }, () => 1)).gz);
    expect(() => readPart(copy, 'validation')).toThrow(`${join(copy, s.file)}: sha-256 of its ids`);
    // ids out of the vocabulary, the manifest made to agree with the shard
    const V = m.tokenizer.vocabSize;
    const { raw, gz } = encodeIds(Uint16Array.from({ length: s.tokens }, (_, i) => (i === 7 ? V : 1)));
    writeFileSync(join(copy, s.file), gz);
    const j = JSON.parse(readFileSync(join(copy, 'manifest.json'), 'utf8')) as typeof m;
    j.parts.validation.shards[0].sha256 = createHash('sha256').update(raw).digest('hex');
    writeFileSync(join(copy, 'manifest.json'), JSON.stringify(j));
    expect(() => readPart(copy, 'validation')).toThrow(
      `${join(copy, s.file)}: token id ${V} at index 7 is not below the vocabulary ${V}`,
    );
  });

  it('the same seed gives the same bytes; another seed another split', async () => {
    const again = join(tmpFolder('data-again'), 'corpus');
    expect((await build(again)).code).toBe(0);
    const a = snapshot(base);
    const b = snapshot(again);
    delete a['.mil-output.json'];
    delete b['.mil-output.json'];
    const strip = (x: Record<string, string>) =>
      Object.fromEntries(Object.entries(x).filter(([k]) => k !== 'manifest.json'));
    expect(strip(b)).toEqual(strip(a));
    const mj = (d: string) => JSON.parse(readFileSync(join(d, 'manifest.json'), 'utf8')) as { command: string };
    expect({ ...mj(again), command: '' }).toEqual({ ...mj(base), command: '' });
    const other = join(tmpFolder('data-seed'), 'corpus');
    expect((await build(other, ['--seed', '5'])).code).toBe(0);
    expect(readManifest(other).parts.test.shards[0].sha256).not.toBe(readManifest(base).parts.test.shards[0].sha256);
  });

  it('a file that is not UTF-8 is refused naming the file and the byte offset (exit 2), nothing written', async () => {
    const r2 = makeRoot(tmpFolder('data-root-bad'));
    const bad = join(r2, 'usr/share/doc/python3.11/html/_sources/doc07.rst.txt');
    const text = Buffer.from('Title\n=====\n\nCaf');
    writeFileSync(bad, Buffer.concat([text, Buffer.from([0xe9, 0x20, 0x6f, 0x6b, 0x0a])]));
    const out = join(tmpFolder('data-out-bad'), 'corpus');
    const r = await build(out, [], r2);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`${bad}: not UTF-8 text: byte offset ${text.length} (0xe9)`);
    expect(existsSync(out)).toBe(false);
  });

  it('a missing package is named with its install command (exit 6) before any work', async () => {
    const r3 = makeRoot(tmpFolder('data-root-missing'), { python: false });
    const out = join(tmpFolder('data-out-missing'), 'corpus');
    const r = await build(out, [], r3);
    expect(r.code).toBe(6);
    expect(r.err).toContain(
      "corpus source 'python' needs the package python3.11-doc (Debian) (not installed): install it with 'apt-get install python3.11-doc'",
    );
    expect(existsSync(out)).toBe(false);
    // no held-out texts to keep out: refused before any work (the corpus must never hold evaluation text)
    const open = await runMil(['data', 'build', '--out', out, '--root', r3]);
    expect(open.code).toBe(2);
    expect(open.err).toContain('data build needs --exclude DIR');
    expect(existsSync(out)).toBe(false);
    const gone = await build(out, [], join(r3, 'nothing-here'));
    expect(gone.code).toBe(2);
    expect(gone.err).toContain(
      `argument '--root': expected a folder below which packages are installed, got '${join(r3, 'nothing-here')}'`,
    );
  });

  it('a disk that fills up mid-write: exit 6, the earlier build kept byte for byte, nothing left beside it', async () => {
    const before = snapshot(base);
    // bytes: the first file written (tokenizer.json, about as large as the earlier build's) and a part of the shards fit
    let free = statSync(join(base, 'tokenizer.json')).size + 1500;
    setWriterFsForTesting({
      ...REAL_WRITER_FS,
      writeSync: (fd, b, o, l) => {
        const n = Math.min(l, free); // a short write of what fits, then ENOSPC
        if (n <= 0) throw Object.assign(new Error('no space left (injected)'), { code: 'ENOSPC' });
        free -= n;
        return REAL_WRITER_FS.writeSync(fd, b, o, n);
      },
    });
    const r = await build(base, ['--seed', '3']);
    expect(r.code).toBe(6);
    expect(r.err).toMatch(/ENOSPC/);
    expect(snapshot(base)).toEqual(before);
    expect(readdirSync(join(base, '..')).filter((e) => e.includes('.mil-'))).toEqual([]);
  });

  it('mil train and eval read the built folder; another tokenizer is refused naming both', async () => {
    const model = join(tmpFolder('data-train'), 'm');
    const t = await runMil(
      `train --config tiny --data ${base} --out ${model} --steps 1 --len 16 --eval-tokens 64 --quiet`.split(' '),
    );
    expect(t.err).toBe('');
    expect(t.code).toBe(0);
    const e = await runMil(`eval --model ${model} --data ${base} --split validation --len 16 --json`.split(' '));
    expect(e.code).toBe(0);
    expect(JSON.parse(e.out)).toMatchObject({ split: 'validation' });
    const shipped = join(import.meta.dirname, '..', 'models', 'tokenizer.json');
    const bad = await runMil([
      ...`train --config tiny --data ${base} --out ${model}2 --steps 1 --tokenizer`.split(' '),
      shipped,
    ]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain(`--data ${base} holds token ids of its own tokenizer`);
  });
});
