/**
 * Run-wide check: the suite leaves the system temp folder as it found it.
 *
 * Every test file and every process a test starts (the `mil` CLI, workers) gets TMPDIR pointing at one
 * fresh folder of this run, `<tmp>/mil-suite-XXXXXX` (the test files are forked after this setup, so they
 * inherit it). At the end that folder must be empty — whatever a test made there it had to remove; only the
 * tsx loader's own compile cache may stay — and is then removed. Anything left fails the run (vitest only reports errors thrown here, so the exit code is set
 * by hand). Other processes using the temp folder at the same time cannot disturb the check. A run killed by
 * SIGINT, SIGTERM or SIGHUP removes the folder on its way out; one killed by SIGKILL (or a machine stopped) cannot,
 * so each folder records the pid of the run that made it (`.owner`) and the next run removes the folders whose run
 * is gone (`sweepStale`).
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isAlive } from '../lib/io/writer.js';

let root = '';
/** the file in a run's folder that names the process of the run (vitest's main process) */
const OWNER = '.owner';

/**
 * Remove the suite folders in `dir` (`mil-suite-*`) whose `.owner` names a process that no longer exists: runs
 * killed where no handler runs. A folder without `.owner` is left alone (its run cannot be told). Returns the
 * names removed.
 */
export function sweepStale(dir: string): string[] {
  const removed: string[] = [];
  for (const e of readdirSync(dir)) {
    if (!e.startsWith('mil-suite-')) continue;
    let pid: number;
    try {
      pid = Number(readFileSync(join(dir, e, OWNER), 'utf8'));
    } catch {
      continue;
    }
    if (!Number.isInteger(pid) || pid <= 0 || isAlive(pid)) continue;
    rmSync(join(dir, e), { recursive: true, force: true });
    removed.push(e);
  }
  return removed;
}

export function setup(): void {
  sweepStale(tmpdir());
  root = mkdtempSync(join(tmpdir(), 'mil-suite-'));
  writeFileSync(join(root, OWNER), String(process.pid));
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
  const left = readdirSync(root).filter((e) => !TOOL_CACHE.test(e) && e !== OWNER);
  rmSync(root, { recursive: true, force: true });
  if (left.length > 0) {
    console.error(
      `FAIL: the test suite left ${left.length} entr${left.length === 1 ? 'y' : 'ies'} in the temp folder: ${left.slice(0, 10).join(', ')}`,
    );
    process.exitCode = 1;
  }
}
