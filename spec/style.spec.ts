/**
 * The model and training code reads like mamba-minimal and llm.c (issue #22): every tensor-valued local of
 * lib/model/ and lib/train/ — a Tensor or a typed array of values — carries a shape comment on its line (or on
 * the comment line just above it), e.g. `const y = ops.linear(x, W); // (b, l, d_in)`; and each file that
 * states a model's math opens with a legend of its symbols in the paper's names ("Symbols: …").
 *
 * And the whole tree keeps few non-null assertions (`x!`): under 150 (issue #22 asked for under 300).
 *
 * The check uses the TypeScript checker (the declared or inferred type of each local), so a local is caught
 * whatever expression makes it.
 */
import { readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { ROOT } from './imports.js';

/** Types that hold tensor values: the project's Tensor, its typed-array buffers and their aliases. */
const TENSOR_TYPE = /^(Tensor\b|\[Tensor\b|Float64Array|Float32Array|FloatArray\b|F\b)/;

/** `file:line: text` for each tensor-valued local of `files` without a shape comment. */
function unannotated(files: string[]): { checked: number; missing: string[] } {
  const cfg = ts.getParsedCommandLineOfConfigFile(
    join(ROOT, 'tsconfig.json'),
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: () => undefined,
    },
  );
  if (!cfg) throw new Error('tsconfig.json did not parse');
  const program = ts.createProgram(files, { ...cfg.options, noEmit: true });
  const checker = program.getTypeChecker();
  const missing: string[] = [];
  let checked = 0;
  for (const f of files) {
    const sf = program.getSourceFile(f);
    if (!sf) throw new Error(`${f}: not in the program`);
    const lines = sf.getFullText().split('\n');
    const visit = (n: ts.Node): void => {
      if (ts.isVariableDeclaration(n) && n.initializer) {
        const type = checker.typeToString(checker.getTypeAtLocation(n.name));
        if (TENSOR_TYPE.test(type)) {
          checked++;
          const first = sf.getLineAndCharacterOfPosition(n.getStart(sf)).line;
          const last = sf.getLineAndCharacterOfPosition(n.getEnd()).line;
          const own = lines.slice(first, last + 1).join('\n');
          const above = lines[first - 1] ?? '';
          if (!/\/\/.*\(/.test(own) && !/^\s*\/\/.*\(/.test(above))
            missing.push(`${relative(ROOT, f)}:${first + 1}: ${(lines[first] ?? '').trim()}`);
        }
      }
      ts.forEachChild(n, visit);
    };
    visit(sf);
  }
  return { checked, missing };
}

const inFolder = (dir: string) =>
  ts.sys
    .readDirectory(join(ROOT, dir), ['.ts'], undefined, undefined)
    .filter((f) => !f.endsWith('.d.ts'))
    .sort();

/** The non-null assertions (`x!`) in every file tsconfig.json compiles. */
function nonNullAssertions(): number {
  const cfg = ts.getParsedCommandLineOfConfigFile(
    join(ROOT, 'tsconfig.json'),
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: () => undefined,
    },
  );
  if (!cfg) throw new Error('tsconfig.json did not parse');
  let n = 0;
  for (const f of cfg.fileNames) {
    const sf = ts.createSourceFile(f, readFileSync(f, 'utf8'), ts.ScriptTarget.Latest, true);
    const visit = (node: ts.Node): void => {
      if (ts.isNonNullExpression(node)) n++;
      ts.forEachChild(node, visit);
    };
    visit(sf);
  }
  return n;
}

describe('style of the model and training code', () => {
  it('non-null assertions stay few: index reads need none, maps and records use lib/checked.ts lookup', () => {
    // 1,267 before issue #22's pass, 123 after it; the rest assert optional fields a caller has just checked
    expect(nonNullAssertions()).toBeLessThanOrEqual(150);
  });

  it('every tensor-valued local in lib/model and lib/train has a shape comment', () => {
    const { checked, missing } = unannotated([...inFolder('lib/model'), ...inFolder('lib/train')]);
    expect(checked).toBeGreaterThan(100); // the check saw the code it is about
    expect(missing).toEqual([]);
  }, 60_000);

  it("each file stating a model's math opens with a legend of its symbols", () => {
    const files = [
      'lib/model/hybrid.ts',
      'lib/model/fused_step.ts',
      'lib/model/state_store.ts',
      'lib/model/convert.ts',
      'lib/model/generate.ts',
      ...inFolder('lib/model/mixers')
        .map((f) => relative(ROOT, f))
        .filter((f) => !f.endsWith('tape.ts')),
      'lib/train/model.ts',
      'lib/train/dpo.ts',
      'lib/train/optim.ts',
    ];
    const without = files.filter((f) => {
      const header = /^\/\*\*([\s\S]*?)\*\//.exec(readFileSync(join(ROOT, f), 'utf8'))?.[1] ?? '';
      return !/Symbols\b/.test(header);
    });
    expect(without).toEqual([]);
  });
});
