/**
 * The run lock: one training run per output. A command that writes OUT over a long run (train, distill,
 * sft, dpo) takes `<parent>/.<name>.mil-run-lock` before it loads anything, and holds it until it returns;
 * a second run with the same OUT fails at once with OutputLockedError (exit 4) naming the holder's pid,
 * its command line and the lock file — not after its own training, as the writer's per-write lock alone did.
 *
 *   content   `<pid> <ISO time> <command line>\n`, written to a temporary `.<name>.mil-tmp-<pid>-…` and
 *             hard-linked into place (link(2) fails if the lock exists; a lock never exists half-written)
 *   stale     a lock whose pid is not running (the run was killed) is taken over, with a note on stderr
 *   release   `releaseRunLocks()` (main calls it when the command returns, whatever happened); a killed
 *             process leaves a stale lock, which the next run takes over
 *
 * The writer's own lock (`.<name>.mil-lock`, lib/io/writer.ts) is a different file: a run holding its run
 * lock still writes OUT and OUT.checkpoint through the writer.
 */
import * as fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join, resolve } from 'node:path';
import { IoError, OutputLockedError, lockIsLive } from './writer.js';

/** The run lock file of `out`. */
const runLockPath = (out: string) => join(dirname(resolve(out)), `.${basename(resolve(out))}.mil-run-lock`);

const held = new Set<string>();

/**
 * Take the run lock of `out` for this process (`command`: the command line, recorded for the message a second
 * run gets). Throws OutputLockedError if a live process holds it; `note` gets the line about a stale lock taken over.
 */
export function lockRun(out: string, command: string, note: (line: string) => void = console.error): void {
  const lock = runLockPath(out);
  const parent = dirname(lock);
  fs.mkdirSync(parent, { recursive: true });
  const staging = join(
    parent,
    `.${basename(resolve(out))}.mil-tmp-${process.pid}-${randomBytes(4).toString('hex')}-runlock`,
  );
  try {
    fs.writeFileSync(staging, `${process.pid} ${new Date().toISOString()} ${command.replace(/\s+/g, ' ')}\n`);
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        fs.linkSync(staging, lock);
        held.add(lock);
        return;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? String(e);
        if (code !== 'EEXIST') throw new IoError(lock, 'link', code, `cannot create the run lock for ${out}`);
      }
      const { live, pid } = lockIsLive(lock);
      const holder = holderOf(lock);
      if (live)
        throw new OutputLockedError(
          resolve(out),
          `${pid === process.pid ? 'this process' : `pid ${Number.isNaN(pid) ? '?' : pid}`}${holder ? `: ${holder}` : ''}, lock file ${lock}`,
        );
      note(
        `note: taking over the stale run lock ${lock} (pid ${Number.isNaN(pid) ? '?' : pid} is not running${holder ? `; it was ${holder}` : ''})`,
      );
      fs.rmSync(lock, { force: true });
    }
    throw new OutputLockedError(resolve(out), `run lock ${lock} keeps changing hands`);
  } finally {
    fs.rmSync(staging, { force: true });
  }
}

/** The command line recorded in a lock file ('' if unreadable). */
function holderOf(lock: string): string {
  try {
    return fs.readFileSync(lock, 'utf8').trim().split(' ').slice(2).join(' ');
  } catch {
    return '';
  }
}

/** Release every run lock this process holds (main calls it when a command returns or throws). */
export function releaseRunLocks(): void {
  for (const lock of held) fs.rmSync(lock, { force: true });
  held.clear();
}
