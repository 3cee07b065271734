/**
 * The run lock: one training run per output. A command that writes OUT over a long run (train, distill,
 * sft, dpo) takes `<parent>/.<name>.mil-run-lock` before it loads anything, and holds it until it returns;
 * a second run with the same OUT fails at once with OutputLockedError (exit 4) naming the holder's pid,
 * its command line and the lock file — not after its own training, as the writer's per-write lock alone did.
 *
 *   content   `<pid> <ISO time> <command line>\n`, taken as the writer takes its own lock (lib/io/writer.ts
 *             `takeLock`: a temporary hard-linked into place; a lock never exists half-written)
 *   stale     a lock whose pid is not running (the run was killed) is taken over, with a note on stderr
 *   release   `releaseRunLocks()` (main calls it when the command returns, whatever happened); a killed
 *             process leaves a stale lock, which the next run takes over
 *
 * The writer's own lock (`.<name>.mil-lock`, lib/io/writer.ts) is a different file: a run holding its run
 * lock still writes OUT and OUT.checkpoint through the writer.
 */
import * as fs from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { takeLock } from './writer.js';

/** The run lock file of `out`. */
const runLockPath = (out: string) => join(dirname(resolve(out)), `.${basename(resolve(out))}.mil-run-lock`);

/** The releases of the run locks this process holds. */
const held = new Map<string, () => void>();

/**
 * Take the run lock of `out` for this process (`command`: the command line, recorded for the message a second
 * run gets). Throws OutputLockedError if a live process holds it; `note` gets the line about a stale lock taken over.
 * The lock file is the writer's (`takeLock`): written whole, then linked into place.
 */
export function lockRun(out: string, command: string, note: (line: string) => void = console.error): void {
  held.set(runLockPath(out), takeRunLock(out, command, note));
}

/**
 * `lockRun` for a caller that releases the lock itself (scripts/paper.ts, whose in-process `mil` commands end
 * with `releaseRunLocks`): the release is returned, not kept in this process's list.
 */
export function takeRunLock(out: string, command: string, note: (line: string) => void = console.error): () => void {
  const lock = runLockPath(out);
  fs.mkdirSync(dirname(lock), { recursive: true });
  return takeLock(lock, resolve(out), {
    holder: command.replace(/\s+/g, ' '),
    onStale: (pid, holder) =>
      note(
        `note: taking over the stale run lock ${lock} (pid ${Number.isNaN(pid) ? '?' : pid} is not running${holder ? `; it was ${holder}` : ''})`,
      ),
  });
}

/** Release every run lock this process holds (main calls it when a command returns or throws). */
export function releaseRunLocks(): void {
  for (const release of held.values()) release();
  held.clear();
}
