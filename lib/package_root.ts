/**
 * The package's root folder, where its run-time files live (`models/`, `golden/`, `asm/*.wasm`, `configs/`):
 * found from this module's own place, so that it is the same whether the TypeScript sources run (a checkout:
 * `lib/package_root.ts`, root one folder up) or the compiled build does (an installed package:
 * `dist/lib/package_root.js`, root two folders up). A function, not a constant: a browser bundle of the
 * modules that import it never calls it.
 */
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

export function packageRoot(): string {
  const here = fileURLToPath(import.meta.url);
  return here.endsWith('.ts') ? join(dirname(here), '..') : join(dirname(here), '..', '..');
}
