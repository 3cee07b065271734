/**
 * Run-wide check: the suite leaves the system temp folder as it found it.
 *
 * Every test file and every process a test starts (the `mil` CLI, workers) gets TMPDIR pointing at one
 * fresh folder of this run, `<tmp>/mil-suite-XXXXXX` (the test files are forked after this setup, so they
 * inherit it). At the end that folder must be empty — whatever a test made there it had to remove; only the
 * tsx loader's own compile cache may stay — and is then removed. Anything left fails the run (vitest only reports errors thrown here, so the exit code is set
 * by hand). Other processes using the temp folder at the same time cannot disturb the check. A run killed by
 * SIGINT, SIGTERM or SIGHUP removes the folder on its way out.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let root = '';

export function setup(): void {
  root = mkdtempSync(join(tmpdir(), 'mil-suite-'));
  process.env.TMPDIR = root;
  // a run stopped from outside (Ctrl-C, `timeout`, CI cancelling) skips teardown: remove the folder then too
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const)
    process.once(sig, () => {
      rmSync(root, { recursive: true, force: true });
      process.kill(process.pid, sig); // then die of the signal as before (once: this handler is gone)
    });
}

/** tsx's compile cache (`tsx-<user>`), made on purpose by the loader of the `mil` subprocesses; removed with the folder. */
const TOOL_CACHE = /^tsx-/;

export function teardown(): void {
  const left = readdirSync(root).filter((e) => !TOOL_CACHE.test(e));
  rmSync(root, { recursive: true, force: true });
  if (left.length > 0) {
    console.error(
      `FAIL: the test suite left ${left.length} entr${left.length === 1 ? 'y' : 'ies'} in the temp folder: ${left.slice(0, 10).join(', ')}`,
    );
    process.exitCode = 1;
  }
}
