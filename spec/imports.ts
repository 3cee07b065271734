/**
 * The repository's import graph, read from the sources (spec/architecture.spec.ts checks it against
 * docs/architecture.md). A module's imports are its relative `import … from`, `export … from`, `import '…'`
 * and `import('…')` specifiers; `import type` lines are left out (they vanish at run time). `x.js` resolves to
 * `x.ts` where that is the file.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';

export const ROOT = join(import.meta.dirname, '..');

/** The tracked and untracked-not-ignored source files (relative paths). */
export function sourceFiles(): string[] {
  const out = execFileSync(
    'git',
    ['ls-files', '--cached', '--others', '--exclude-standard', '--', '*.ts', '*.mjs', '*.js'],
    { cwd: ROOT, encoding: 'utf8' },
  );
  // a file with a merge conflict is listed once per stage: each name once
  return [...new Set(out.split('\n'))]
    .filter((f) => f && !f.startsWith('asm/build/') && existsSync(join(ROOT, f)))
    .sort();
}

const SPEC =
  /(?:^|\n)\s*(?:import|export)\s+(type\s+)?(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;

/** The relative modules `file` imports at run time, resolved to repository paths. */
export function importsOf(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const deps = new Set<string>();
  for (const m of text.matchAll(SPEC)) {
    if (m[1]) continue; // import type / export type
    const spec = m[2] ?? m[3];
    if (!spec || !spec.startsWith('.')) continue;
    const p0 = normalize(join(dirname(file), spec));
    const candidates = [p0, p0.replace(/\.js$/, '.ts'), `${p0}.ts`]; // AssemblyScript (asm/) imports name no extension
    const p = candidates.find((c) => existsSync(join(ROOT, c)) && !statSync(join(ROOT, c)).isDirectory()) ?? p0;
    deps.add(p);
  }
  return [...deps].sort();
}

/** Strongly connected components of more than one module (or a module importing itself): the cycles. */
export function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) ?? 0, low.get(w) ?? 0));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v) ?? 0, idx.get(w) ?? 0));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string | undefined;
      do {
        w = stack.pop();
        if (w === undefined) break;
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(comp.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return out;
}

/**
 * The box a module belongs to in docs/architecture.md's picture: lib/'s core files, each lib/ folder, the
 * ops layer (lib/ops*.ts, the backends a user calls), kernels/, and the top-level folders that use them.
 */
export function boxOf(file: string): string {
  const parts = file.split('/');
  const top = parts[0] ?? file;
  if (top !== 'lib') return parts.length === 1 ? 'root' : top;
  if (file === 'lib/index.ts') return 'lib/index'; // the package's main entry: above core and ops
  if (parts.length === 2) return /^ops/.test(parts[1] ?? '') ? 'lib/ops' : 'lib/core';
  return `lib/${parts[1]}`;
}
