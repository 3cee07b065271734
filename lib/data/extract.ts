/**
 * Plain text out of the markup the corpus sources ship (lib/data/sources.ts), one function per format. Each
 * returns paragraphs separated by a blank line; code (HTML `<pre>`, reST literal blocks, POD verbatim
 * paragraphs), tables and navigation are dropped, because the corpus is meant to be English prose.
 *
 *   htmlText     HTML → text: <head>, <script>, <style>, <pre>, <table>, <nav> and the navigation blocks of
 *                Sphinx / DocBook pages (class related, sphinxsidebar, navheader, navfooter, toc, …) dropped
 *                with everything inside; block elements end a paragraph; entities decoded
 *   rstText      reStructuredText (Sphinx sources, the Linux kernel's Documentation/): section underlines,
 *                comments, directives other than admonitions, literal blocks (after `::`) and grid tables
 *                dropped; inline roles, ``literals``, *emphasis* and `links <url>`_ reduced to their text
 *   podText      Perl's POD: =head/=item text kept, verbatim (indented) paragraphs dropped, formatting codes
 *                B<…> I<…> C<…> L<text|link> E<lt> … reduced to their text
 *   dictdEntries the entries of a dictd dictionary (`NAME.index` + `NAME.dict.dz`, a gzip file): the index
 *                names each entry's byte offset and length in base 64; entries are returned in file order
 *   dictEntryText one entry as prose: GCIDE's pronunciation `\Ab*do"men\`, source marks `[1913 Webster]`
 *                and WordNet's `[syn: {a}, {b}]` lists removed, wrapped lines joined
 *   taggedText   word/tag tagged text (`The/at Fulton/np-tl …`, the held-out texts' format) → plain words, one paragraph per line
 *   normalizeText NFC, line ends, spaces; paragraphs trimmed, joined by one blank line
 *   utf8Text     strict UTF-8 decoding: a file that is not UTF-8 is a CorpusError naming the file and the byte
 *                offset of the first bad byte (firstInvalidUtf8)
 */
import { gunzipSync } from 'node:zlib';
import { CorpusError } from './corpus.js';

/** Byte offset of the first byte that is not part of a well-formed UTF-8 sequence, or −1 when all are. */
export function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    let n: number;
    let min: number;
    if (c >= 0xc2 && c <= 0xdf) [n, min] = [1, 0x80];
    else if (c >= 0xe0 && c <= 0xef) [n, min] = [2, 0x800];
    else if (c >= 0xf0 && c <= 0xf4) [n, min] = [3, 0x10000];
    else return i;
    let cp = c & (0x3f >> n);
    for (let k = 1; k <= n; k++) {
      const x = b[i + k];
      if (x === undefined || (x & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (x & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += n + 1;
  }
  return -1;
}

/** The text of a file's bytes, refusing anything that is not UTF-8 (see the file comment). */
export function utf8Text(bytes: Uint8Array, file: string): string {
  const bad = firstInvalidUtf8(bytes);
  if (bad >= 0)
    throw new CorpusError(
      file,
      `not UTF-8 text: byte offset ${bad} (0x${bytes[bad].toString(16).padStart(2, '0')}) starts no valid UTF-8 sequence`,
    );
  return new TextDecoder('utf-8').decode(bytes);
}

const CP1252 = new TextDecoder('windows-1252');

/**
 * UTF-8 text where the few bytes that start no valid sequence are read as Windows-1252 (a curly quote 0x92
 * left in an otherwise UTF-8 file): `repaired` gets the offset of each such byte, so the build reports them.
 */
function utf8TextRepairingCp1252(bytes: Uint8Array, repaired: (offset: number) => void): string {
  const parts: string[] = [];
  let at = 0;
  for (;;) {
    const bad = firstInvalidUtf8(bytes.subarray(at));
    if (bad < 0) break;
    parts.push(
      new TextDecoder('utf-8').decode(bytes.subarray(at, at + bad)),
      CP1252.decode(bytes.subarray(at + bad, at + bad + 1)),
    );
    repaired(at + bad);
    at += bad + 1;
  }
  parts.push(new TextDecoder('utf-8').decode(bytes.subarray(at)));
  return parts.join('');
}

/** NFC, `\n` line ends, no control characters, runs of spaces collapsed, paragraphs split on blank lines. */
function normalizeText(text: string): string {
  return paragraphs(text).join('\n\n');
}

/** The paragraphs of a text, each on one line: NFC, whitespace collapsed, empty ones dropped. */
export function paragraphs(text: string): string[] {
  return (
    text
      .normalize('NFC')
      .replace(/\r\n?/g, '\n')
      // eslint-disable-next-line no-control-regex -- control characters are what this line removes
      .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\u00ad\ufeff]/g, '')
      .split(/\n[ \t\u00a0]*\n/)
      .map((p) => p.replace(/[\s\u00a0\u2000-\u200b\u2028\u2029\u3000]+/g, ' ').trim())
      .filter((p) => p !== '')
  );
}

const NAMED: Record<string, string> = {
  amp: '&',
  lt: '<',
  gt: '>',
  quot: '"',
  apos: "'",
  nbsp: ' ',
  mdash: '—',
  ndash: '–',
  hellip: '…',
  lsquo: '‘',
  rsquo: '’',
  ldquo: '“',
  rdquo: '”',
  laquo: '«',
  raquo: '»',
  copy: '©',
  reg: '®',
  trade: '™',
  para: '¶',
  sect: '§',
  middot: '·',
  bull: '•',
  times: '×',
  minus: '−',
  deg: '°',
  rarr: '→',
  larr: '←',
  shy: '',
  zwnj: '',
  zwj: '',
};

/** Decode HTML character references (named ones from a short list; numeric ones all). */
function decodeEntities(s: string): string {
  return s.replace(/&(#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z]+);/g, (m, e: string) => {
    if (e[0] === '#') {
      const cp = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return cp > 0 && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff) ? String.fromCodePoint(cp) : '';
    }
    return NAMED[e] ?? m;
  });
}

/** Elements dropped with their content. */
const SKIP_TAGS = new Set(['head', 'script', 'style', 'pre', 'table', 'nav', 'noscript', 'svg', 'math', 'button']);
/** Blocks (by class or id) of documentation pages that are navigation, not text. */
const SKIP_CLASS =
  /\b(related|sphinxsidebar|sphinxsidebarwrapper|navheader|navfooter|footer|header|toc|breadcrumbs?|nav|headerlink|highlight|docs-sidebar|mobile-nav)\b/;
/** Elements that end a paragraph. */
const BLOCK_TAGS = new Set([
  'p',
  'div',
  'br',
  'li',
  'ul',
  'ol',
  'dl',
  'dt',
  'dd',
  'h1',
  'h2',
  'h3',
  'h4',
  'h5',
  'h6',
  'section',
  'article',
  'blockquote',
  'tr',
  'td',
  'th',
  'hr',
  'body',
  'title',
  'figure',
  'figcaption',
  'caption',
  'address',
  'main',
  'aside',
  'footer',
  'header',
]);
const VOID_TAGS = new Set([
  'br',
  'hr',
  'img',
  'meta',
  'link',
  'input',
  'area',
  'base',
  'col',
  'embed',
  'source',
  'wbr',
]);

/** HTML → paragraphs of text (see the file comment). */
export function htmlText(html: string): string {
  const out: string[] = [];
  let skip: { tag: string; depth: number } | undefined;
  let last = 0;
  const TAG =
    /<!--[\s\S]*?-->|<!\[CDATA\[[\s\S]*?\]\]>|<![^>]*>|<\?[^>]*>|<(\/?)([A-Za-z][A-Za-z0-9-]*)((?:[^>"']|"[^"]*"|'[^']*')*)>/g;
  for (const m of html.matchAll(TAG)) {
    if (!skip) out.push(html.slice(last, m.index));
    last = m.index + m[0].length;
    const name = m[2]?.toLowerCase();
    if (name === undefined) continue; // comment, doctype, CDATA
    const closing = m[1] === '/';
    const selfClosing = /\/\s*$/.test(m[3]) || VOID_TAGS.has(name);
    if (skip) {
      if (name === skip.tag && !selfClosing) skip.depth += closing ? -1 : 1;
      if (skip.depth === 0) skip = undefined;
      continue;
    }
    if (!closing && !selfClosing) {
      const cls = /\b(?:class|id|role)\s*=\s*("([^"]*)"|'([^']*)'|([^\s>]+))/gi;
      let navigation = false;
      for (const a of m[3].matchAll(cls))
        if (SKIP_CLASS.test((a[2] ?? a[3] ?? a[4] ?? '').toLowerCase())) navigation = true;
      if (SKIP_TAGS.has(name) || (navigation && name !== 'body' && name !== 'html')) {
        skip = { tag: name, depth: 1 };
        out.push('\n\n');
        continue;
      }
    }
    if (BLOCK_TAGS.has(name)) out.push('\n\n');
  }
  if (!skip) out.push(html.slice(last));
  return normalizeText(decodeEntities(out.join('')));
}

const UNDERLINE = /^([=\-~^"'`#*+_:.])\1{2,}\s*$/;
const ADMONITION =
  /^(note|warning|tip|hint|important|caution|attention|danger|error|seealso|versionadded|versionchanged|deprecated|admonition)$/;
/** Directives whose body is code, a table, an image or markup: dropped whole. */
const DROP_DIRECTIVE =
  /^(code|code-block|sourcecode|literalinclude|highlight|productionlist|toctree|image|figure|math|doctest|testcode|testsetup|testcleanup|testoutput|list-table|csv-table|table|raw|graphviz|kernel-doc|kernel-include|kernel-feat|kernel-abi|include|index|tabularcolumns|c:namespace|c:namespace-push|c:namespace-pop|program|audit-event|audit-event-table|availability|module|currentmodule|moduleauthor|sectionauthor|contents|sectnum|ifconfig|flat-table|ditaa|kernel-figure|kernel-render|wy-table-responsive|literal|parsed-literal|ss-table|maintainers-include|sidebar|rst-class|default-domain|digraph)$/;

/** Inline reST markup reduced to its text. */
function rstInline(s: string): string {
  return s
    .replace(/:[A-Za-z:+-]+:`([^`<]*?)\s*(<[^`>]*>)?`/g, (_m, t: string) => t.replace(/^[~!.]/, '')) // :role:`text <target>`
    .replace(/`([^`<]+?)\s*<[^`>]+>`__?/g, '$1') // `text <url>`_
    .replace(/``([^`]+)``/g, '$1')
    .replace(/`([^`]+)`_{0,2}/g, '$1')
    .replace(/\*\*([^*]+)\*\*/g, '$1')
    .replace(/(^|[\s(])\*([^*\s][^*]*)\*/g, '$1$2')
    .replace(/\|([A-Za-z0-9_ -]+)\|/g, '$1')
    .replace(/\[#?[A-Za-z0-9_-]*\]_/g, '')
    .replace(/\\(.)/g, '$1');
}

/** reStructuredText → paragraphs of text (see the file comment). */
export function rstText(rst: string): string {
  const lines = rst.replace(/\r\n?/g, '\n').replace(/\t/g, '        ').split('\n');
  const out: string[] = [];
  const indent = (l: string) => l.length - l.trimStart().length;
  let i = 0;
  // skip the block indented deeper than `base` that starts after line i (blank lines inside it included)
  const skipBlock = (base: number) => {
    while (i < lines.length && (lines[i].trim() === '' || indent(lines[i]) > base)) i++;
  };
  while (i < lines.length) {
    const line = lines[i];
    const t = line.trim();
    if (t === '') {
      out.push('');
      i++;
      continue;
    }
    if (UNDERLINE.test(t)) {
      out.push('');
      i++;
      continue;
    }
    if (/^\+[-=+]+\+$/.test(t) || /^(=+\s+)+=+$/.test(t)) {
      // a grid or simple table: drop lines until a blank line
      while (i < lines.length && lines[i].trim() !== '') i++;
      continue;
    }
    const directive = /^\.\.\s+([A-Za-z0-9_:-]+)::(.*)$/.exec(t);
    if (directive) {
      const base = indent(line);
      i++;
      if (DROP_DIRECTIVE.test(directive[1].toLowerCase())) {
        skipBlock(base);
        out.push('');
        continue;
      }
      // an admonition (note, warning, …) or a description (function, class, …): its body is text, kept;
      // the directive line and its options (":opt: value") dropped, an admonition's first line kept
      if (ADMONITION.test(directive[1].toLowerCase()) && directive[2].trim() !== '')
        out.push(rstInline(directive[2].trim()));
      out.push('');
      while (i < lines.length && /^\s+:[A-Za-z-]+:/.test(lines[i])) i++;
      continue;
    }
    if (/^\.\.(\s|$)/.test(t)) {
      // a comment, a target (.. _x:) or a substitution: the line and its indented continuation
      const base = indent(line);
      i++;
      skipBlock(base);
      out.push('');
      continue;
    }
    if (/^:[A-Za-z][A-Za-z0-9 _-]*:(\s|$)/.test(t) && (out.length === 0 || out[out.length - 1] === '')) {
      i++; // a field list line (":Author: …", ":Copyright: …") at a paragraph start
      continue;
    }
    if (/^(>>>|\$ |# |\.\.\. )/.test(t)) {
      // an interactive session or shell prompt: drop to the next blank line
      while (i < lines.length && lines[i].trim() !== '') i++;
      continue;
    }
    i++;
    if (t.endsWith('::')) {
      // a paragraph line that introduces a literal block: "text::" → "text:", then the block is dropped
      const kept = t === '::' ? '' : t.replace(/\s*::$/, t.endsWith(' ::') ? '' : ':');
      if (kept) out.push(rstInline(kept));
      out.push('');
      const base = indent(line);
      while (i < lines.length && lines[i].trim() === '') i++;
      if (i < lines.length && indent(lines[i]) > base) skipBlock(base);
      continue;
    }
    out.push(rstInline(t.replace(/^([-*+•]|\d+[.)]|#\.)\s+/, '')));
    if (/^([-*+•]|\d+[.)]|#\.)\s+/.test(t)) out.push(''); // a list item is a paragraph of its own
  }
  return normalizeText(out.join('\n'));
}

/** POD formatting codes reduced to their text (innermost first, so nesting works). */
const LT = '\ue000'; // < and > inside codes, kept apart from the codes' own brackets until the end
const GT = '\ue001';
function podInline(s: string): string {
  const E: Record<string, string> = { lt: '<', gt: '>', verbar: '|', sol: '/', quot: '"', amp: '&', apos: "'" };
  let prev = '';
  s = s.replace(
    /([A-Z])<<+\s+([\s\S]*?)\s+>>+/g,
    (_m, c: string, t: string) => `${c}<${t.replace(/[<>]/g, (x) => (x === '<' ? LT : GT))}>`,
  );
  while (prev !== s) {
    prev = s;
    s = s.replace(/([A-Z])<([^<>]*)>/g, (_m, c: string, t: string) => {
      if (c === 'E')
        return (
          { lt: LT, gt: GT }[t] ??
          E[t] ??
          (/^0?x[0-9a-f]+$/i.test(t)
            ? String.fromCodePoint(parseInt(t.replace(/^0?x/i, ''), 16))
            : /^\d+$/.test(t)
              ? String.fromCodePoint(Number(t))
              : '')
        );
      if (c === 'X' || c === 'Z') return '';
      if (c === 'L') {
        const bar = t.indexOf('|');
        if (bar >= 0) return t.slice(0, bar);
        if (/^[a-z]+:\/\//i.test(t)) return t; // a URL
        return t
          .replace(/^"(.*)"$/, '$1')
          .replace(/\/"?([^"]*)"?$/, (_x, sec: string) => ` ${sec}`)
          .trim();
      }
      return t;
    });
  }
  return s.replaceAll(LT, '<').replaceAll(GT, '>');
}

/** Perl POD → paragraphs of text (see the file comment). */
export function podText(pod: string): string {
  const out: string[] = [];
  let inPod = /^=[a-zA-Z]/.test(pod);
  let skipBegin = false;
  for (const para of pod.replace(/\r\n?/g, '\n').split(/\n[ \t]*\n/)) {
    if (para.trim() === '') continue;
    const cmd = /^=([a-zA-Z0-9]+)\s*([\s\S]*)$/.exec(para);
    if (cmd) {
      inPod = cmd[1] !== 'cut';
      const [name, rest] = [cmd[1], cmd[2].trim()];
      if (name === 'begin') skipBegin = true;
      else if (name === 'end') skipBegin = false;
      else if (/^(head\d|item)$/.test(name) && rest !== '' && !skipBegin) {
        const text = rest
          .replace(/^[*]\s*$/, '')
          .replace(/^\*\s+/, '')
          .replace(/^\d+\.?\s*$/, '');
        if (text) out.push(podInline(text));
      }
      continue;
    }
    if (!inPod || skipBegin) continue;
    if (/^[ \t]/.test(para)) continue; // verbatim: code
    out.push(podInline(para));
  }
  return normalizeText(out.join('\n\n'));
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
function b64Number(s: string, where: string): number {
  let n = 0;
  for (const ch of s) {
    const d = B64.indexOf(ch);
    if (d < 0) throw new CorpusError(where, `'${s}' is not a dictd base-64 number`);
    n = n * 64 + d;
  }
  return n;
}

/** The entries of a dictd dictionary in file order: `index` the .index text, `dict` the .dict.dz bytes. */
export function dictdEntries(
  index: string,
  dictGz: Uint8Array,
  names: { index: string; dict: string },
  /** given: bytes outside UTF-8 are read as Windows-1252 and reported (offset in the gunzipped file); else refused */
  repaired?: (offset: number) => void,
): Array<{ head: string; text: string }> {
  const bytes = gunzipSync(dictGz);
  const seen = new Map<number, { head: string; offset: number; length: number }>();
  index.split('\n').forEach((line, i) => {
    if (line === '') return;
    const f = line.split('\t');
    if (f.length < 3) throw new CorpusError(`${names.index}:${i + 1}`, 'expected HEADWORD<TAB>OFFSET<TAB>LENGTH');
    const offset = b64Number(f[1], `${names.index}:${i + 1}`);
    const length = b64Number(f[2], `${names.index}:${i + 1}`);
    if (offset + length > bytes.length)
      throw new CorpusError(
        `${names.index}:${i + 1}`,
        `entry ends at byte ${offset + length}, past the dictionary's ${bytes.length}`,
      );
    if (f[0].startsWith('00-database') || f[0].startsWith('00database')) return; // the dictionary's own header
    if (!seen.has(offset)) seen.set(offset, { head: f[0], offset, length });
  });
  return [...seen.values()]
    .sort((a, b) => a.offset - b.offset)
    .map((e) => {
      const b = bytes.subarray(e.offset, e.offset + e.length);
      if (repaired) return { head: e.head, text: utf8TextRepairingCp1252(b, (k) => repaired(e.offset + k)) };
      const bad = firstInvalidUtf8(b);
      if (bad >= 0)
        throw new CorpusError(
          `${names.dict} (gunzipped)`,
          `not UTF-8 text: byte offset ${e.offset + bad} (0x${b[bad].toString(16).padStart(2, '0')}, in entry '${e.head}') starts no valid UTF-8 sequence`,
        );
      return { head: e.head, text: new TextDecoder('utf-8').decode(b) };
    });
}

/** One dictionary entry as prose (see the file comment). */
export function dictEntryText(entry: string): string {
  const t = entry
    .replace(/\\[^\\\n]{1,80}\\/g, '') // GCIDE pronunciation \Ab*do"men\
    .replace(
      /\[(1913 Webster|PJC|Webster 1913 Suppl\.|WordNet 1\.5|Century Dict\.|RILEY|Chambers 1728|source: [^\]]*)\]/g,
      '',
    )
    .replace(/\[(syn|ant|also|see also)\s*:[^\]]*\]/gs, '') // WordNet's word lists
    .replace(/\s\((?:[^()\s]*\[[^\]\s]{1,5}\][^()\s]*[\s,;]*)+\)/g, '') // GCIDE pronunciation (l[=e]k)
    .replace(/\[(ae|AE|oe|OE)\]/g, (_m, l: string) => ({ ae: 'æ', AE: 'Æ', oe: 'œ', OE: 'Œ' })[l] ?? l)
    .replace(/\[([=^~.]?)([a-zA-Z])(um|cr|sl|bre|ced)?\]/g, (_m, _k: string, c: string) => c) // other letter codes: the letter
    .replace(/\{([^{}]*)\}/g, '$1') // cross-references {word}
    .replace(/<\/?[A-Za-z][^>]*>/g, '');
  // a paragraph is a blank-line-separated block; wrapped lines inside it are joined
  return normalizeText(
    t
      .split(/\n[ \t]*\n/)
      .map((p) => p.replace(/\n[ \t]*/g, ' ').replace(/ +([,.;])/g, '$1'))
      .join('\n\n'),
  );
}

/** Word/tag tagged text (the held-out texts' format) → plain text, one paragraph per non-empty line. */
export function taggedText(tagged: string): string {
  return normalizeText(
    tagged
      .split('\n')
      .map((line) =>
        line
          .trim()
          .split(/\s+/)
          .filter((w) => w !== '')
          .map((w) => {
            const slash = w.lastIndexOf('/');
            return slash > 0 ? w.slice(0, slash) : w;
          })
          .join(' ')
          .replace(/ ([.,;:!?')])/g, '$1')
          .replace(/`` ?/g, '“')
          .replace(/ ?''/g, '”'),
      )
      .join('\n\n'),
  );
}
