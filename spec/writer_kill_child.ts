/**
 * Child of spec/writer_crash.spec.ts: `node --import tsx writer_kill_child.ts TARGET "CALL N" VERSION` writes
 * `version VERSION ` × 3000 to TARGET with writeFile (in three chunks) and kills itself with SIGKILL just
 * before the N-th call of the writer's system call CALL (e.g. "renameSync 1") — a real kill at a known step.
 */
import { REAL_WRITER_FS, setWriterFsForTesting, writeFile, type WriterFs } from '../lib/io/writer.js';

const [target, when, version] = process.argv.slice(2) as [string, string, string];
const [call, nth] = when.split(' ') as [keyof WriterFs, string];
let seen = 0;
const shim = Object.fromEntries(
  Object.entries(REAL_WRITER_FS).map(([name, f]) => [
    name,
    (...a: unknown[]) => {
      if (name === call && ++seen === Number(nth)) process.kill(process.pid, 'SIGKILL');
      return (f as (...x: unknown[]) => unknown)(...a);
    },
  ]),
) as unknown as WriterFs;
setWriterFsForTesting(shim);
const data = Buffer.from(`version ${version} `.repeat(3000));
writeFile(target, [data.subarray(0, 10000), data.subarray(10000, 20000), data.subarray(20000)]);
