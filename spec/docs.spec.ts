/**
 * Every file the docs and the sources point at exists: relative links in the Markdown pages (README.md,
 * docs/*.md, golden/FORMAT.md, …), repository paths written in backticks there, and repository paths named
 * in source comments (a lib/, bench/ or docs/ path with its extension). A path counts when it starts with one of the
 * repository's top-level folders and names a file by its extension (or a folder by a trailing /);
 * A `../shared/…` path is always reported: a user's clone has no shared folder beside it, so the docs point at
 * the repository's own copies (docs/PAPER.md, docs/GPUJS.md, golden/FORMAT.md).
 * Build outputs (docs/site/) are not files the repository holds.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, sourceFiles } from './imports.js';
import { execFileSync } from 'node:child_process';

const TOP = [
  'lib',
  'kernels',
  'spec',
  'bench',
  'docs',
  'scripts',
  'examples',
  'web',
  'asm',
  'golden',
  'models',
  'configs',
  'bin',
];
const EXT = /\.(ts|mjs|js|md|json|py|sh|safetensors|wasm|png|svg|html|txt)$/;
const PATH = new RegExp(`(?<![\\w./-])((?:${TOP.join('|')})/[\\w./-]*[\\w/])`, 'g');
/** A path into the shared folder beside a developer's checkout, which a user's clone does not have. */
const SHARED = /\.\.\/shared\/[\w./-]+/g;

const markdown = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '--', '*.md'], {
  cwd: ROOT,
  encoding: 'utf8',
})
  .split('\n')
  .filter((f) => f && !f.startsWith('node_modules/') && !f.startsWith('bench/results/') && existsSync(join(ROOT, f)));

/** Does a path named in the repository exist? Globs and placeholders (`*`, `<`, `N`) are not paths. */
function exists(p: string, from: string): boolean {
  if (/[*<>{}]|\bNAME\b/.test(p) || p.startsWith('docs/site')) return true;
  return existsSync(normalize(join(from, p)));
}

const looksLikePath = (p: string) => EXT.test(p) || p.endsWith('/');

describe('docs: every path they name exists', () => {
  it('relative links and backticked paths in the Markdown pages', () => {
    const missing: string[] = [];
    for (const f of markdown) {
      const text = readFileSync(join(ROOT, f), 'utf8');
      for (const m of text.matchAll(/\]\(([^)\s#]+)(?:#[^)]*)?\)/g)) {
        const link = m[1] ?? '';
        if (/^[a-z]+:/i.test(link) || link.startsWith('#')) continue;
        if (!existsSync(normalize(join(ROOT, dirname(f), link)))) missing.push(`${f}: link ${link}`);
      }
      for (const m of text.matchAll(SHARED)) missing.push(`${f}: ${m[0]} (no shared folder in a user's clone)`);
      for (const m of text.matchAll(/`([^`\n]+)`/g))
        for (const p of (m[1] ?? '').matchAll(PATH)) {
          const path = p[1] ?? '';
          if (looksLikePath(path) && !exists(path, ROOT)) missing.push(`${f}: \`${path}\``);
        }
    }
    expect(missing).toEqual([]);
  });

  it('repository paths named in source comments', () => {
    const missing: string[] = [];
    for (const f of sourceFiles()) {
      const text = readFileSync(join(ROOT, f), 'utf8');
      const comments = text.match(/\/\*[\s\S]*?\*\/|\/\/[^\n]*/g) ?? [];
      for (const c of comments) {
        if (f !== 'spec/docs.spec.ts')
          for (const m of c.matchAll(SHARED)) missing.push(`${f}: ${m[0]} (no shared folder in a user's clone)`);
        for (const p of c.matchAll(PATH)) {
          const path = p[1] ?? '';
          if (looksLikePath(path) && !exists(path, ROOT)) missing.push(`${f}: ${path}`);
        }
      }
    }
    expect(missing).toEqual([]);
  });

  it('catches what it is for: a made-up path is reported', () => {
    expect(exists('lib/no_such_file.ts', ROOT)).toBe(false);
    expect(exists('lib/tensor.ts', ROOT)).toBe(true);
  });
});
