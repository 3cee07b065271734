/**
 * The kill sweep's hook (spec/sweep.spec.ts): every system call of the one writer (lib/io/writer.ts) is a
 * numbered step. Preloaded into a `mil` child process (`node --import tsx --import ./spec/kill_hook.ts
 * bin/mil.js …`) with MIL_SWEEP_KILL_AT=N, the child kills itself with SIGKILL just before its writer's Nth
 * system call: a kill at an exact, reproducible point of a write, not somewhere in the minutes of compute
 * around it. Imported without that variable, it only exports `steppingFs` (how the sweep counts the steps).
 */
import { REAL_WRITER_FS, setWriterFsForTesting, type WriterFs } from '../lib/io/writer.js';

/** The real writer system calls, each calling `onStep()` first. */
export function steppingFs(onStep: () => void): WriterFs {
  const wrapped = Object.entries(REAL_WRITER_FS).map(([name, f]: [string, (...a: unknown[]) => unknown]) => [
    name,
    (...a: unknown[]) => (onStep(), f(...a)),
  ]);
  return Object.fromEntries(wrapped) as WriterFs;
}

const killAt = Number(process.env.MIL_SWEEP_KILL_AT);
if (killAt > 0) {
  let step = 0;
  setWriterFsForTesting(steppingFs(() => void (++step === killAt && process.kill(process.pid, 'SIGKILL'))));
}
