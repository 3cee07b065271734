/**
 * Temporary folders for tests: every folder made here is removed after the test that made it (afterEach),
 * or after the file for folders made at module level (afterAll). spec/global-setup.ts checks that a run
 * leaves the system temp folder as it found it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, expect } from 'vitest';

const perTest: string[] = [];
const perFile: string[] = [];
const remove = (xs: string[]) => {
  for (const d of xs.splice(0)) rmSync(d, { recursive: true, force: true });
};
afterEach(() => remove(perTest));
afterAll(() => remove(perFile));

/** A fresh folder `<tmp>/mil-<prefix>-XXXXXX`, removed when the current test (or file) ends. */
export function tmpFolder(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), `mil-${prefix}-`));
  (expect.getState().currentTestName === undefined ? perFile : perTest).push(d);
  return d;
}
