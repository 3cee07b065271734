/**
 * Where the training corpus of `mil data build` comes from: English text that Debian packages install, each
 * package read from its installed files (nothing is downloaded). docs/data.md has the table of sources with
 * their licences and figures; this list is the machine's copy of it.
 *
 *   source     a name (`gcide`, `python`, …), the Debian package that installs it, its licence, the files it
 *              reads (below `root`, `/` unless a test gives a fake one), the extractor (lib/data/extract.ts)
 *              and how files become documents: one document per file, or for a dictionary one per block of
 *              ENTRIES_PER_DOC consecutive entries (a held-out split by document then holds out whole blocks)
 *   package    its version is read from dpkg's status file; a package that is not installed (or whose files
 *              are gone) is a MissingSourceError naming it and the command that installs it (exit 6)
 *   documents  ids are `SOURCE/PATH` (the path under the source's folder, without its extension) or
 *              `SOURCE/NNNNN` for a dictionary's block; files are read in sorted order, so the list is the same
 *              on every machine with the same package versions
 *
 * The held-out evaluation texts (`--exclude`) are read here too, but only to keep them out of the corpus
 * (lib/data/build.ts): held-out evaluation text, never training text.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { ArgumentError, MilError } from '../errors.js';
import type { Doc } from './corpus.js';
import { taggedText, dictEntryText, dictdEntries, htmlText, podText, rstText, utf8Text } from './extract.js';

/** A source's package is not installed here (or its files are missing): names it and how to install it. */
export class MissingSourceError extends MilError {
  constructor(
    readonly source: string,
    readonly pkg: string,
    readonly install: string,
    readonly detail: string,
  ) {
    super(
      'E_MISSING_SOURCE',
      `corpus source '${source}' needs the package ${pkg} (${detail}): install it with '${install}'`,
    );
  }
}

/** Consecutive dictionary entries per document. */
export const ENTRIES_PER_DOC = 400;

export interface Source {
  name: string;
  /** the Debian package that installs it */
  pkg: string;
  licence: string;
  /** what the text is, in a few words */
  content: string;
  /** its documents, read from the installed files below `root` */
  read(root: string, onFile?: (file: string, bytes: number) => void): Doc[];
  /** bytes outside UTF-8 that this source reads as Windows-1252 (GCIDE has a few): 'file@offset', set by read */
  repaired?: string[];
}

/** Files below `dir` (recursive) whose path matches `keep`, sorted; paths relative to `dir`. */
function walk(dir: string, keep: (rel: string) => boolean): string[] {
  const out: string[] = [];
  const go = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) go(p);
      else if (e.isFile() && keep(relative(dir, p))) out.push(relative(dir, p));
    }
  };
  go(dir);
  return out.sort();
}

/** The bytes of a file, gunzipped when its name ends in .gz. */
function fileBytes(path: string): Uint8Array {
  const b = readFileSync(path);
  return path.endsWith('.gz') ? gunzipSync(b) : b;
}

/** A source of one document per file under `dir` (relative to root), files chosen by `keep`. */
function filesSource(
  s: Omit<Source, 'read'>,
  dir: string,
  keep: (rel: string) => boolean,
  extract: (text: string, file: string) => string,
): Source {
  return {
    ...s,
    read(root, onFile) {
      const base = join(root, dir);
      if (!existsSync(base) || !statSync(base).isDirectory()) throw missing(s, `${base} is missing`);
      const files = walk(base, keep);
      if (files.length === 0) throw missing(s, `no files to read in ${base}`);
      return files.map((rel) => {
        const path = join(base, rel);
        const bytes = fileBytes(path);
        onFile?.(path, bytes.length);
        const id = `${s.name}/${rel.replace(/(\.(rst|txt|html?|pod))*(\.gz)?$/, '')}`;
        return { id, text: extract(utf8Text(bytes, path.endsWith('.gz') ? `${path} (after gunzip)` : path), path) };
      });
    },
  };
}

/** A dictd dictionary: one document per ENTRIES_PER_DOC entries. */
/**
 * The entries of the installed dictd dictionary `dict` of source `s` (below `root`), in file order; `repaired`: the
 * 'file@offset' of bytes read as Windows-1252 where `o.cp1252` allows them (else such a byte is refused).
 */
export function readDict(
  root: string,
  s: Omit<Source, 'read'>,
  dict: string,
  o: { cp1252?: boolean } = {},
  onFile?: (file: string, bytes: number) => void,
): { entries: Array<{ head: string; text: string }>; repaired: string[] } {
  const repaired: string[] = [];
  const index = join(root, 'usr/share/dictd', `${dict}.index`);
  const data = join(root, 'usr/share/dictd', `${dict}.dict.dz`);
  for (const f of [index, data]) if (!existsSync(f)) throw missing(s, `${f} is missing`);
  const gz = readFileSync(data);
  onFile?.(data, gz.length);
  const entries = dictdEntries(
    utf8Text(readFileSync(index), index),
    gz,
    { index, dict: data },
    o.cp1252 ? (k) => repaired.push(`${data}@${k}`) : undefined,
  );
  return { entries, repaired };
}

function dictSource(
  s: Omit<Source, 'read'>,
  dict: string,
  entryText: (t: string) => string,
  o: { cp1252?: boolean } = {},
): Source {
  return {
    ...s,
    read(root, onFile) {
      const { entries, repaired } = readDict(root, s, dict, o, onFile);
      if (o.cp1252) this.repaired = repaired;
      const docs: Doc[] = [];
      for (let i = 0; i < entries.length; i += ENTRIES_PER_DOC) {
        const text = entries
          .slice(i, i + ENTRIES_PER_DOC)
          .map((e) => entryText(e.text))
          .filter((t) => t !== '')
          .join('\n\n');
        docs.push({ id: `${s.name}/${String(i / ENTRIES_PER_DOC).padStart(5, '0')}`, text });
      }
      return docs;
    },
  };
}

function missing(s: Omit<Source, 'read'>, detail: string): MissingSourceError {
  return new MissingSourceError(s.name, `${s.pkg} (Debian)`, `apt-get install ${s.pkg}`, detail);
}

/** WordNet's entries: the headword line dropped, each sense ("n 1: …", "2: …") a paragraph of its own. */
function wordnetEntry(t: string): string {
  const body = t.replace(/^[^\n]*\n/, '\n');
  return dictEntryText(body.replace(/\n\s+(?:(?:n|v|adj|adv)\s+\d*|\d+)\s*:\s/g, '\n\n'));
}

/** The Python, Linux, Perl, … documentation and the dictionaries, in the order they are read. */
export const SOURCES: readonly Source[] = [
  dictSource(
    {
      name: 'gcide',
      pkg: 'dict-gcide',
      licence: 'GPL-2+ (GCIDE; its Webster 1913 text is public domain)',
      content: "GNU Collaborative International Dictionary of English: definitions, etymologies, authors' quotations",
    },
    'gcide',
    dictEntryText,
    { cp1252: true }, // 0.48.5 has a few Windows-1252 bytes (curly quotes) in otherwise UTF-8 entries
  ),
  dictSource(
    {
      name: 'wordnet',
      pkg: 'dict-wn',
      licence: 'WordNet 3.0 licence (permissive, BSD-like)',
      content: 'WordNet 3.0 glosses and example sentences, one paragraph per sense',
    },
    'wn',
    wordnetEntry,
  ),
  dictSource(
    {
      name: 'foldoc',
      pkg: 'dict-foldoc',
      licence: 'GFDL-1.1+ (no invariant sections)',
      content: 'Free On-line Dictionary of Computing: encyclopedic entries',
    },
    'foldoc',
    dictEntryText,
  ),
  dictSource(
    { name: 'jargon', pkg: 'dict-jargon', licence: 'public domain', content: 'The Jargon File 4.4.7' },
    'jargon',
    dictEntryText,
  ),
  dictSource(
    {
      name: 'devil',
      pkg: 'dict-devil',
      licence: 'public domain (1911)',
      content: "Ambrose Bierce, The Devil's Dictionary",
    },
    'devil',
    dictEntryText,
  ),
  filesSource(
    {
      name: 'python',
      pkg: 'python3.11-doc',
      licence: 'PSF-2.0',
      content: 'Python 3.11 documentation (tutorial, library, reference, HOWTOs), its reST sources',
    },
    'usr/share/doc/python3.11/html/_sources',
    (rel) => rel.endsWith('.txt'),
    rstText,
  ),
  filesSource(
    {
      name: 'linux',
      pkg: 'linux-doc-6.1',
      licence: 'GPL-2.0',
      content: "The Linux 6.1 kernel's Documentation/ (reST; translations left out)",
    },
    'usr/share/doc/linux-doc-6.1/Documentation',
    (rel) => rel.endsWith('.rst.gz') && !rel.startsWith('translations/'),
    rstText,
  ),
  filesSource(
    {
      name: 'perl',
      pkg: 'perl-doc',
      licence: 'GPL-1+ or Artistic',
      content: 'Perl 5.36 manual pages (perlfaq, perlop, perlre, …), POD',
    },
    'usr/share/perl/5.36.0/pod',
    (rel) => rel.endsWith('.pod'),
    podText,
  ),
  filesSource(
    {
      name: 'postgresql',
      pkg: 'postgresql-doc-15',
      licence: 'PostgreSQL (BSD-like)',
      content: 'PostgreSQL 15 manual, HTML',
    },
    'usr/share/doc/postgresql-doc-15/html',
    (rel) => rel.endsWith('.html'),
    htmlText,
  ),
  filesSource(
    {
      name: 'django',
      pkg: 'python-django-doc',
      licence: 'BSD-3-Clause',
      content: 'Django 3.2 documentation and release notes, HTML',
    },
    'usr/share/doc/python-django-doc/html',
    (rel) => rel.endsWith('.html') && !/^_|(^|\/)(genindex|py-modindex|search)\.html$/.test(rel),
    htmlText,
  ),
  filesSource(
    { name: 'sqlite', pkg: 'sqlite3-doc', licence: 'public domain', content: 'SQLite 3.40 documentation, HTML' },
    'usr/share/doc/sqlite3',
    (rel) => rel.endsWith('.html'),
    htmlText,
  ),
  filesSource(
    { name: 'git', pkg: 'git-doc', licence: 'GPL-2.0', content: 'Git 2.39 manual pages and guides, HTML' },
    'usr/share/doc/git-doc',
    (rel) => rel.endsWith('.html'),
    htmlText,
  ),
  filesSource(
    {
      name: 'debian-handbook',
      pkg: 'debian-handbook',
      licence: 'GPL-2.0+ or CC-BY-SA-3.0',
      content: "The Debian Administrator's Handbook (English), HTML",
    },
    'usr/share/doc/debian-handbook/html/en-US',
    (rel) => rel.endsWith('.html'),
    htmlText,
  ),
  filesSource(
    {
      name: 'debian-reference',
      pkg: 'debian-reference-en',
      licence: 'GPL-2+',
      content: 'Debian Reference (English), HTML',
    },
    'usr/share/debian-reference',
    (rel) => rel.endsWith('.en.html'),
    htmlText,
  ),
];

/** Installed versions of Debian packages, from dpkg's status file below `root`. */
export function installedVersions(root: string): Map<string, string> {
  if (!(existsSync(root) && statSync(root).isDirectory()))
    throw new ArgumentError('--root', 'a folder below which packages are installed', root);
  const status = join(root, 'var/lib/dpkg/status');
  const out = new Map<string, string>();
  if (!existsSync(status)) return out;
  for (const stanza of readFileSync(status, 'utf8').split(/\n\n+/)) {
    const pkg = /^Package: (.+)$/m.exec(stanza)?.[1];
    const st = /^Status: (.+)$/m.exec(stanza)?.[1];
    const ver = /^Version: (.+)$/m.exec(stanza)?.[1];
    if (pkg && ver && st?.endsWith(' installed')) out.set(pkg.trim(), ver.trim());
  }
  return out;
}

/** The version of a source's package, or MissingSourceError when dpkg does not list it as installed. */
export function sourceVersion(s: Source, versions: Map<string, string>): string {
  const v = versions.get(s.pkg);
  if (v === undefined) throw missing(s, 'not installed');
  return v;
}

/**
 * The held-out evaluation texts no training paragraph may overlap (`--exclude DIR`: a folder of word/tag
 * tagged texts named like ca01 …; docs/data.md names the set this project holds out), as documents
 * `excluded/ca01` …. They are read only to keep them out of the corpus.
 */
export function excludedDocs(dir: string): { docs: Doc[]; version: string } {
  if (!(existsSync(dir) && statSync(dir).isDirectory()))
    throw new ArgumentError('--exclude', 'a folder of held-out tagged texts (ca01 …)', dir);
  const files = readdirSync(dir)
    .filter((f) => /^c[a-r]\d\d$/.test(f))
    .sort();
  if (files.length === 0) throw new ArgumentError('--exclude', 'a folder holding texts named ca01 … cr09', dir);
  return {
    docs: files.map((f) => ({
      id: `excluded/${f}`,
      text: taggedText(utf8Text(readFileSync(join(dir, f)), join(dir, f))),
    })),
    version: 'folder',
  };
}
