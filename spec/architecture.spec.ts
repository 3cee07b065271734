/**
 * The dependency direction (docs/architecture.md), checked on the sources as they are: no module imports
 * itself back through others (no cycles); the folders form a graph with no back-edges, and the picture in
 * docs/architecture.md draws exactly the library's part of it; nothing outside spec/ imports spec/; lib/
 * reaches the GPU.js kernels only through the ops layer (lib/ops*.ts); lib/ never imports the folders that
 * use it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, boxOf, cycles, importsOf, sourceFiles } from './imports.js';

const files = sourceFiles();
const graph = new Map(files.map((f) => [f, importsOf(f)]));
const edges = (keep: (box: string) => boolean) => {
  const e = new Set<string>();
  for (const [f, deps] of graph)
    for (const d of deps) {
      const a = boxOf(f);
      const b = boxOf(d);
      if (a !== b && keep(a) && keep(b)) e.add(`${a} --> ${b}`);
    }
  return e;
};
const inLibrary = (box: string) => box.startsWith('lib/') || box === 'kernels';

/** The picture's edges: `a --> b` lines of docs/architecture.md's mermaid block, ids as boxOf names them. */
function drawnEdges(): Set<string> {
  const md = readFileSync(join(ROOT, 'docs/architecture.md'), 'utf8');
  const block = /```mermaid\n([\s\S]*?)```/.exec(md)?.[1] ?? '';
  const name = (id: string) => (id === 'kernels' ? 'kernels' : `lib/${id}`);
  const out = new Set<string>();
  for (const m of block.matchAll(/^\s*(\w+)\s*-->\s*(\w+)\s*$/gm))
    out.add(`${name(m[1] ?? '')} --> ${name(m[2] ?? '')}`);
  return out;
}

describe('architecture: the import graph', () => {
  it('reads every source file and resolves every relative import to a file that exists', () => {
    expect(files.length).toBeGreaterThan(100);
    const missing = [...graph].flatMap(([f, deps]) =>
      deps.filter((d) => !graph.has(d) && !d.startsWith('node_modules')).map((d) => `${f} -> ${d}`),
    );
    expect(missing).toEqual([]);
  });

  it('has no cycles between modules', () => {
    expect(cycles(graph)).toEqual([]);
  });

  it('has no back-edges between folders: the folder graph is acyclic', () => {
    const g = new Map<string, string[]>();
    for (const e of edges(() => true)) {
      const [a, b] = e.split(' --> ') as [string, string];
      g.set(a, [...(g.get(a) ?? []), b]);
    }
    expect(cycles(g)).toEqual([]);
  });

  it("docs/architecture.md's picture draws exactly the library's folder graph", () => {
    expect([...drawnEdges()].sort()).toEqual([...edges(inLibrary)].sort());
  });

  it('nothing outside spec/ imports spec/; lib/ imports kernels/ only from the ops layer and never bench, scripts, examples, web', () => {
    const bad: string[] = [];
    for (const [f, deps] of graph)
      for (const d of deps) {
        const from = boxOf(f);
        const to = boxOf(d);
        if (to === 'spec' && from !== 'spec') bad.push(`${f} -> ${d}`);
        if (from.startsWith('lib/') && to === 'kernels' && from !== 'lib/ops') bad.push(`${f} -> ${d}`);
        if (from.startsWith('lib/') && !inLibrary(to)) bad.push(`${f} -> ${d}`);
      }
    expect(bad).toEqual([]);
  });

  it('catches what it is for: a cycle and a back-edge planted in a copy of the graph', () => {
    const g = new Map(graph);
    g.set('lib/tensor.ts', [...(g.get('lib/tensor.ts') ?? []), 'lib/model/hybrid.ts']);
    expect(cycles(g).length).toBeGreaterThan(0);
  });
});
