/**
 * Run-wide check: the suite leaves the system temp folder as it found it. Entries named `mil-*` (this
 * project's prefix) that appear during the run and are still there at the end fail the run.
 */
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';

const ours = () => new Set(readdirSync(tmpdir()).filter((e) => e.startsWith('mil-')));
let before = new Set<string>();

export function setup(): void {
  before = ours();
}

export function teardown(): void {
  const left = [...ours()].filter((e) => !before.has(e));
  if (left.length > 0) {
    // vitest reports an error thrown here but still exits 0: set the exit code ourselves
    console.error(`FAIL: the test suite left ${left.length} folder(s) in ${tmpdir()}: ${left.slice(0, 10).join(', ')}`);
    process.exitCode = 1;
  }
}
