/**
 * Crash points of the single-file writer (`writeFile` in lib/io/writer.ts; issue #27, defect 11): the file
 * twin of the folder writer's fault-injection tests in spec/writer.spec.ts.
 *
 * Promise checked: after a crash at any moment of `writeFile(target, new)` over `target` holding `old`, the
 * target is the complete old content or the complete new one, and once the next writer (or reader) has run
 * `recoverInterruptedSwap`, nothing is left beside it.
 *
 * One write is recorded through a shim of the writer's system calls (setWriterFsForTesting). Before every
 * call k = 1 … N, and after the last, two crash states of the target's folder are taken:
 *   kill       the real folder as it is at that moment (a SIGKILL loses nothing the kernel already has);
 *   power cut  what a disk keeps when the machine stops there, modelled the way POSIX allows: a file's
 *              bytes survive only up to its last fsync(fd), and a name created, renamed or removed in the
 *              folder survives only once the folder itself was fsynced (the initial state counts as synced).
 * Each state is rebuilt in a fresh folder with the writer's pid replaced by one of a process that is gone (the
 * machine rebooted, the killed writer is dead), recovered, and checked. Two real kills of a child process
 * (spec/writer_kill_child.ts) at chosen calls confirm the recorded kill states.
 *
 * Mutations that fail this file: skipping writeNewFile's fsync (a power cut after the rename leaves an empty
 * target); writing the target in place instead of through a temporary + rename (a kill mid-write leaves it
 * truncated). Cost: ~3.5 s on 2 cores, most of it the two child processes (~1.6 s each).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  REAL_WRITER_FS,
  recoverInterruptedSwap,
  setWriterFsForTesting,
  writeFile,
  type WriterFs,
} from '../lib/io/writer.js';
import { tmpFolder } from './tmp.js';
import { lookup } from '../lib/checked.js';

afterEach(() => setWriterFsForTesting());

/** A folder's regular files and their bytes. */
type FolderState = Map<string, Buffer>;

const OLD = Buffer.from('old content, complete\n'.repeat(300));
/** The new content, given in four chunks so the write takes four write(2) calls. */
const NEW_CHUNKS = [0, 1, 2, 3].map((i) => Buffer.from(`new chunk ${i} `.repeat(250)));
const NEW = Buffer.concat(NEW_CHUNKS);

function readState(dir: string): FolderState {
  const s: FolderState = new Map();
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isFile()) s.set(e, readFileSync(p));
  }
  return s;
}

/** A pid no process has (a writer that a crash killed). */
function deadPid(): number {
  for (let pid = 4_194_000; pid > 1000; pid--) {
    try {
      process.kill(pid, 0);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ESRCH') return pid;
    }
  }
  throw new Error('no free pid');
}

/**
 * Record one writeFile through a shim that keeps, beside the real files, a model of what a disk has made
 * durable: per inode the bytes at its last fsync, per folder the names at its last fsync.
 */
function recordWrite(parent: string, target: string): { kill: FolderState[]; power: FolderState[]; calls: string[] } {
  interface Inode {
    vol: Buffer; // what the page cache holds
    dur: Buffer; // what survives a power cut: the bytes at the last fsync
  }
  const names = new Map<string, Inode>(); // the folder's current names
  for (const [n, b] of readState(parent)) names.set(n, { vol: b, dur: b });
  let durNames = new Map(names); // the names at the folder's last fsync
  const fds = new Map<number, Inode | 'dir'>();
  const kill: FolderState[] = [];
  const power: FolderState[] = [];
  const calls: string[] = [];
  const r = REAL_WRITER_FS;
  const inParent = (p: string) => {
    expect(join(parent, basename(p)), `the writer touched ${p} outside ${parent}`).toBe(p);
    return basename(p);
  };
  const before = (call: string) => {
    // names removed with rm (the writer's cleanup, outside the shim) leave the current names too
    const real = new Set(readdirSync(parent));
    for (const n of [...names.keys()]) if (!real.has(n)) names.delete(n);
    kill.push(readState(parent));
    power.push(new Map([...durNames].map(([n, i]) => [n, i.dur])));
    calls.push(call);
  };
  const shim: WriterFs = {
    openSync: (p, f, m) => {
      before(`open ${basename(p)} ${f}`);
      const fd = r.openSync(p, f, m);
      if (p === parent) fds.set(fd, 'dir');
      else {
        const n = inParent(p);
        let ino = names.get(n);
        if (!ino || f.includes('x')) names.set(n, (ino = { vol: Buffer.alloc(0), dur: Buffer.alloc(0) }));
        else if (f.includes('w')) ino.vol = Buffer.alloc(0); // truncated in place
        fds.set(fd, ino);
      }
      return fd;
    },
    writeSync: (fd, b, o, l) => {
      before(`write ${l} bytes`);
      const n = r.writeSync(fd, b, o, l);
      const ino = fds.get(fd);
      if (ino && ino !== 'dir') ino.vol = Buffer.concat([ino.vol, b.subarray(o, o + n)]);
      return n;
    },
    fsyncSync: (fd) => {
      before(`fsync ${fds.get(fd) === 'dir' ? 'folder' : 'file'}`);
      r.fsyncSync(fd);
      const ino = fds.get(fd);
      if (ino === 'dir') durNames = new Map(names);
      else if (ino) ino.dur = ino.vol;
    },
    closeSync: (fd) => {
      before('close');
      r.closeSync(fd);
      fds.delete(fd);
    },
    renameSync: (a, b) => {
      before(`rename ${basename(a)} → ${basename(b)}`);
      r.renameSync(a, b);
      names.set(inParent(b), lookup(names, inParent(a)));
      names.delete(inParent(a));
    },
    mkdirSync: (p) => {
      before(`mkdir ${basename(p)}`);
      r.mkdirSync(p);
    },
    linkSync: (a, b) => {
      before(`link ${basename(a)} → ${basename(b)}`);
      r.linkSync(a, b);
      names.set(inParent(b), lookup(names, inParent(a)));
    },
  };
  setWriterFsForTesting(shim);
  try {
    writeFile(target, NEW_CHUNKS);
  } finally {
    setWriterFsForTesting();
  }
  before('(returned)');
  return { kill, power, calls };
}

/** Rebuild `state` in a fresh folder as a rebooted machine sees it (the writer's pid gone), recover, check. */
function checkCrashState(state: FolderState, name: string, label: string, dead: number): 'old' | 'new' {
  const dir = tmpFolder('crash');
  const mine = String(process.pid);
  for (const [n, b] of state) {
    const text = b.toString('utf8');
    const fixed = n.includes('.mil-lock') ? Buffer.from(text.replace(mine, String(dead))) : b;
    writeFileSync(join(dir, n.replace(`-${mine}-`, `-${dead}-`)), fixed);
  }
  const got = readState(dir).get(name);
  const kind = got?.equals(OLD) ? 'old' : got?.equals(NEW) ? 'new' : undefined;
  expect(kind, `${label}: the target is ${got ? `${got.length} bytes, neither old nor new` : 'missing'}`).toBeDefined();
  recoverInterruptedSwap(join(dir, name));
  expect(readdirSync(dir), `${label}: left beside the target after recovery`).toEqual([name]);
  expect(readFileSync(join(dir, name)).equals(kind === 'old' ? OLD : NEW), `${label}: recovery changed it`).toBe(true);
  return kind!;
}

describe('single-file writer: a crash at every step leaves the old or the new file', () => {
  it('kill and power cut before each system call of writeFile (and after it returns)', () => {
    const parent = tmpFolder('wf');
    const target = join(parent, 'tokenizer.json');
    writeFileSync(target, OLD);
    const { kill, power, calls } = recordWrite(parent, target);
    expect(readFileSync(target).equals(NEW)).toBe(true);
    expect(readdirSync(parent)).toEqual(['tokenizer.json']);
    expect(calls.filter((c) => c.startsWith('write')).length).toBeGreaterThanOrEqual(5); // lock + 4 chunks
    const dead = deadPid();
    const seen = { kill: { old: 0, new: 0 }, power: { old: 0, new: 0 } };
    for (const [k, call] of calls.entries()) {
      seen.kill[checkCrashState(kill[k], 'tokenizer.json', `kill before call ${k + 1} (${call})`, dead)]++;
      seen.power[checkCrashState(power[k], 'tokenizer.json', `power cut before call ${k + 1} (${call})`, dead)]++;
    }
    // both outcomes occur, and the power cut keeps the old file for longer (until the folder's fsync)
    expect(seen.kill.old).toBeGreaterThan(10);
    expect(seen.kill.new).toBeGreaterThan(0);
    expect(seen.power.new).toBeGreaterThan(0);
    expect(seen.power.old).toBeGreaterThan(seen.kill.old);
    // the model drops unsynced bytes: some kill state holds a partly written temporary no power state has
    const partial = (s: FolderState) =>
      [...s].some(([n, b]) => n.includes('.mil-tmp-') && b.length > 0 && b.length < NEW.length);
    expect(kill.some(partial)).toBe(true);
    expect(power.some(partial)).toBe(false);
  });

  it('a first write (no old file): a crash leaves no file or the complete new one', () => {
    const parent = tmpFolder('wf');
    const target = join(parent, 'out.json');
    const { kill, power, calls } = recordWrite(parent, target);
    const dead = deadPid();
    for (const [k, call] of calls.entries())
      for (const [what, s] of [
        ['kill', kill[k]],
        ['power cut', power[k]],
      ] as const) {
        const label = `${what} before call ${k + 1} (${call})`;
        if (!s.has('out.json')) {
          const dir = tmpFolder('crash');
          for (const [n, b] of s) writeFileSync(join(dir, n.replace(`-${process.pid}-`, `-${dead}-`)), b);
          for (const n of readdirSync(dir)) if (n.endsWith('.mil-lock')) writeFileSync(join(dir, n), `${dead} x\n`);
          recoverInterruptedSwap(join(dir, 'out.json'));
          expect(readdirSync(dir), label).toEqual([]);
        } else expect(s?.get('out.json')?.equals(NEW), label).toBe(true);
      }
  });

  it('real kills of a child process mid-data and after the rename, before the folder fsync: old or new, nothing left after the next write', () => {
    const parent = tmpFolder('wfkill');
    const target = join(parent, 't.bin');
    const child = join(import.meta.dirname, 'writer_kill_child.ts');
    const data = (i: number) => Buffer.from(`version ${i} `.repeat(3000));
    writeFileSync(target, data(0));
    // before the n-th call of that name: the 2nd data chunk (write 1 is the lock's); the folder's fsync (after the rename)
    for (const [i, when] of ['writeSync 3', 'fsyncSync 3'].entries()) {
      const r = spawnSync('node', ['--import', 'tsx', child, target, when, String(i + 1)], { encoding: 'utf8' });
      expect(r.signal, `${when}: ${r.stderr}`).toBe('SIGKILL');
      const now = readFileSync(target);
      const ok = [0, 1, 2, 3].some((v) => now.equals(data(v)));
      expect(ok, `killed at ${when}: the target is ${now.length} bytes, no complete version`).toBe(true);
      expect(readdirSync(parent).length, `killed at ${when}: its temporary and lock are still there`).toBeGreaterThan(
        1,
      );
      recoverInterruptedSwap(target);
      expect(readdirSync(parent), `killed at ${when}: after recovery`).toEqual(['t.bin']);
      writeFile(target, data(0));
    }
  });
});
