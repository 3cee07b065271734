/**
 * The one writer: every file and folder this project produces goes through here.
 *
 * Promise: a target is either its previous version or the complete new one — never truncated, never a
 * mix of both, never a temporary left behind — whatever fails (a full disk, a short write, a kill).
 *
 *   writeFolder(target, build):
 *     1. lock      `<parent>/.<name>.mil-lock` (O_EXCL, holds our pid); a second live writer gets
 *                  OutputLockedError; a lock whose process is gone is stale and taken over
 *     2. recover   a swap interrupted between its two renames is undone (`.<name>.mil-old-*` → target);
 *                  stale `.<name>.mil-tmp-*` / `.<name>.mil-old-*` folders of killed runs are removed
 *     3. stage     build() writes into a fresh `<parent>/.<name>.mil-tmp-<pid>-<rand>/` (with
 *                  `keepExisting`, the target's files are hard-linked in first and replaced, never
 *                  written through); every write loops until all bytes are written (a write that makes
 *                  no progress or fails — ENOSPC — is an IoError), then each file and folder is fsynced
 *     4. swap      rename(target → .old), rename(tmp → target), fsync the parent, remove .old; if the
 *                  second rename fails the first is undone
 *   writeFile(target, data): the same for one file (stage a temporary file, fsync, one rename).
 *   writeSet(members): files and folders as one set: all staged (a full disk changes nothing), then all swapped.
 *
 * `loadModel` calls `recoverInterruptedSwap` too, so a folder killed mid-swap loads (as its old version).
 * Every failure of the file system is an IoError naming the path and the system call (CLI exit 6).
 * `inputs` lists the paths a command reads: writing over (or into) one is refused before any work.
 * A folder that lib/io/paths.ts's checkPaths registered for the running command gets OUTPUT_MARKER
 * (`.mil-output.json`, {"writtenBy": "mil CMD"}): how a later run recognises its own earlier output.
 */
import * as realFs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { ArgumentError, MilError } from '../errors.js';

/** A file-system operation failed; `syscall` and `errno` say which and why. */
export class IoError extends MilError {
  constructor(
    readonly path: string,
    readonly syscall: string,
    readonly errno: string,
    detail = '',
  ) {
    super('E_IO', `${path}: ${syscall} failed (${errno})${detail ? `: ${detail}` : ''}`);
  }
}

/** Another live process is writing the same target. */
export class OutputLockedError extends MilError {
  constructor(
    readonly path: string,
    readonly holder: string,
  ) {
    super(
      'E_LOCKED',
      `${path} is being written by another process (${holder}); wait for it or remove the stale lock file`,
    );
  }
}

/** The system calls the writer makes; replaced in tests to inject faults at every step. */
export interface WriterFs {
  openSync(path: string, flags: string, mode?: number): number;
  writeSync(fd: number, buf: Uint8Array, offset: number, length: number): number;
  fsyncSync(fd: number): void;
  closeSync(fd: number): void;
  renameSync(from: string, to: string): void;
  mkdirSync(path: string): void;
  linkSync(existing: string, link: string): void;
}

/** The real system calls (what tests wrap to inject faults). */
export const REAL_WRITER_FS: WriterFs = {
  openSync: (p, f, m) => realFs.openSync(p, f, m),
  writeSync: (fd, b, o, l) => realFs.writeSync(fd, b, o, l),
  fsyncSync: (fd) => realFs.fsyncSync(fd),
  closeSync: (fd) => realFs.closeSync(fd),
  renameSync: (a, b) => realFs.renameSync(a, b),
  mkdirSync: (p) => realFs.mkdirSync(p),
  linkSync: (a, b) => realFs.linkSync(a, b),
};
let fs: WriterFs = REAL_WRITER_FS;

/** Tests only: route the writer's system calls through `shim` (undefined restores the real ones). */
export function setWriterFsForTesting(shim?: WriterFs): void {
  fs = shim ?? REAL_WRITER_FS;
}

/** What build() writes with: paths are relative to the folder being built. */
export interface FolderStage {
  /** the temporary folder being built (read it freely; write only through writeFile) */
  readonly dir: string;
  writeFile(rel: string, data: WriteData): void;
}

/** Bytes to write: one buffer, a string (UTF-8), or chunks written in order (no 2 GiB buffer needed). */
export type WriteData = Uint8Array | string | Iterable<Uint8Array>;

export interface WriteOptions {
  /** paths this command reads, with the option that named each: writing over or into one is refused */
  inputs?: Array<{ option: string; path: string }>;
  /** writeFolder: start from the target's current files (hard links), replacing those build() writes */
  keepExisting?: boolean;
  /** the option that named the target, for error messages (default 'output') */
  option?: string;
}

const CHUNK = 1 << 30; // at most 1 GiB per write(2): node's writeSync takes < 2 GiB per call

function errno(e: unknown): string {
  return (e as NodeJS.ErrnoException)?.code ?? (e as Error)?.message ?? String(e);
}

function wrap<T>(path: string, syscall: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof MilError) throw e;
    throw new IoError(path, syscall, errno(e));
  }
}

/** A lock is live while its pid runs — or, unreadable or empty, while it is under 10 s old (being created). */
function lockIsLive(lock: string): { live: boolean; pid: number } {
  let text = '';
  let age = Infinity;
  try {
    age = Date.now() - realFs.statSync(lock).mtimeMs;
    text = realFs.readFileSync(lock, 'utf8');
  } catch {
    return { live: false, pid: NaN };
  }
  const pid = Number(text.split(' ')[0]);
  if (!text.trim()) return { live: age < 10_000, pid }; // locks are linked in whole; an empty one is foreign
  return { live: isAlive(pid), pid };
}

/** Whether process `pid` exists (a positive integer; EPERM: it does, another user's). */
export function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return errno(e) === 'EPERM';
  }
}

/** Refuse a target that is, contains or lies inside one of the command's inputs. */
function checkInputs(target: string, o: WriteOptions): void {
  const real = (p: string) => {
    try {
      return realFs.realpathSync(p);
    } catch {
      return resolve(p);
    }
  };
  const t = real(target);
  for (const inp of o.inputs ?? []) {
    const i = real(inp.path);
    if (t === i || t.startsWith(i + sep) || i.startsWith(t + sep)) {
      throw new ArgumentError(
        `--${o.option ?? 'out'}`,
        `a path apart from --${inp.option} (${inp.path}), which this command reads`,
        target,
      );
    }
  }
}

/** mkdir -p that stops at the first failure with an IoError (never loops on /proc and the like). */
function mkdirp(dir: string): void {
  let st: realFs.Stats | undefined;
  try {
    st = realFs.statSync(dir);
  } catch (e) {
    if (errno(e) !== 'ENOENT') throw new IoError(dir, 'stat', errno(e));
  }
  if (st) {
    if (!st.isDirectory()) throw new IoError(dir, 'mkdir', 'ENOTDIR', 'exists and is not a folder');
    return;
  }
  const parent = dirname(dir);
  if (parent !== dir) mkdirp(parent);
  wrap(dir, 'mkdir', () => {
    try {
      fs.mkdirSync(dir);
    } catch (e) {
      if (errno(e) !== 'EEXIST') throw e;
    }
  });
}

function writeAll(fd: number, path: string, data: WriteData): void {
  const chunks: Iterable<Uint8Array> =
    typeof data === 'string' ? [Buffer.from(data, 'utf8')] : data instanceof Uint8Array ? [data] : data;
  for (const chunk of chunks) {
    let off = 0;
    while (off < chunk.length) {
      const len = Math.min(CHUNK, chunk.length - off);
      const n = wrap(path, 'write', () => fs.writeSync(fd, chunk, off, len));
      if (!(n > 0)) throw new IoError(path, 'write', 'EIO', `wrote ${n} of ${len} bytes: no progress`);
      off += n;
    }
  }
}

/** Create `path` (which must not exist), write all of `data`, fsync, close. */
function writeNewFile(path: string, data: WriteData): void {
  const fd = wrap(path, 'open', () => fs.openSync(path, 'wx', 0o644));
  try {
    writeAll(fd, path, data);
    wrap(path, 'fsync', () => fs.fsyncSync(fd));
  } catch (e) {
    try {
      fs.closeSync(fd);
    } catch {
      /* the write already failed */
    }
    throw e;
  }
  wrap(path, 'close', () => fs.closeSync(fd));
}

function fsyncDir(dir: string): void {
  const fd = wrap(dir, 'open', () => fs.openSync(dir, 'r'));
  try {
    wrap(dir, 'fsync', () => fs.fsyncSync(fd));
  } finally {
    try {
      fs.closeSync(fd);
    } catch {
      /* nothing to recover */
    }
  }
}

function removeQuietly(path: string): void {
  try {
    realFs.rmSync(path, { recursive: true, force: true });
  } catch {
    /* best effort: the next writer of this target removes it */
  }
}

const LOCK = (parent: string, name: string) => join(parent, `.${name}.mil-lock`);
const TMP_PREFIX = (name: string) => `.${name}.mil-tmp-`;
const OLD_PREFIX = (name: string) => `.${name}.mil-old-`;

/** The file by which a folder says which command wrote it (lib/io/paths.ts reads it). */
export const OUTPUT_MARKER = '.mil-output.json';
/** Folder targets of the running command (set by checkPaths) → its name: writeFolder marks them. */
const marked = new Map<string, string>();

/** lib/io/paths.ts: the folders the running command will write, which writeFolder marks as written by it. */
export function markOutputs(targets: string[], command: string): void {
  marked.clear();
  for (const t of targets) marked.set(resolve(t), command);
}

/** Targets this process holds the lock of (recoverInterruptedSwap never removes those). */
const writing = new Set<string>();

/**
 * Take the lock file `lock` for `target` (the writer's per-write lock, and lib/io/run_lock.ts's run lock):
 * `<pid> <ISO time>[ <holder>]`, written under a temporary name, then hard-linked into place — link(2) fails
 * if the lock exists, and the lock never exists without its content (a kill leaves at most a stale temporary).
 * A live holder: OutputLockedError naming its pid, its `holder` text and the lock file. A stale one (its
 * process is gone): removed, `onStale` told, and taken. Returns the release.
 */
export function takeLock(
  lock: string,
  target: string,
  o: { holder?: string; onStale?: (pid: number, holder: string) => void } = {},
): () => void {
  const parent = dirname(lock);
  const staging = join(parent, `${TMP_PREFIX(basename(target))}${process.pid}-${randomBytes(4).toString('hex')}-lock`);
  try {
    writeNewFile(staging, `${process.pid} ${new Date().toISOString()}${o.holder ? ` ${o.holder}` : ''}\n`);
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        fs.linkSync(staging, lock);
      } catch (e) {
        if (errno(e) !== 'EEXIST')
          throw new IoError(lock, 'link', errno(e), `cannot create the lock file for ${target}`);
        const { live, pid } = lockIsLive(lock);
        const holder = holderOf(lock);
        const who = `${pid === process.pid ? 'this process already writes it' : `pid ${Number.isNaN(pid) ? '?' : pid}`}${holder ? `: ${holder}` : ''}`;
        if (live) throw new OutputLockedError(target, `${who}, lock file ${lock}`);
        o.onStale?.(pid, holder);
        removeQuietly(lock); // stale: its holder was killed
        continue;
      }
      return () => removeQuietly(lock);
    }
    throw new OutputLockedError(target, `lock file ${lock} keeps changing hands`);
  } finally {
    removeQuietly(staging);
  }
}

/** The holder text recorded in a lock file after its pid and time ('' if none or unreadable). */
function holderOf(lock: string): string {
  try {
    return realFs.readFileSync(lock, 'utf8').trim().split(' ').slice(2).join(' ');
  } catch {
    return '';
  }
}

function acquireLock(target: string): () => void {
  const release = takeLock(LOCK(dirname(target), basename(target)), target);
  writing.add(target);
  return () => {
    writing.delete(target);
    release();
  };
}

/**
 * Undo a swap interrupted between its two renames (the target moved aside, the new one not yet in
 * place), and remove leftovers of killed writers. Safe to call any time: it acts only when no live
 * writer holds the target's lock. Returns what it did, for messages.
 */
export function recoverInterruptedSwap(target: string): { restored: boolean; removed: string[] } {
  const parent = dirname(resolve(target));
  const name = basename(resolve(target));
  const out = { restored: false, removed: [] as string[] };
  let entries: string[];
  try {
    entries = realFs.readdirSync(parent);
  } catch {
    return out;
  }
  const lock = LOCK(parent, name);
  const hasLock = entries.includes(basename(lock));
  // temporaries and backups carry their writer's pid: only those of processes that are gone are stale
  const pidOf = (e: string) => Number(e.slice(TMP_PREFIX(name).length).split('-')[0]); // TMP_ and OLD_PREFIX have one length
  const ours = entries.filter(
    (e) =>
      (e.startsWith(TMP_PREFIX(name)) || e.startsWith(OLD_PREFIX(name))) &&
      !(isAlive(pidOf(e)) && pidOf(e) !== process.pid),
  );
  if (ours.length === 0 && !hasLock) return out;
  const mine = writing.has(resolve(parent, name)); // called by our own writer, under its lock
  if (hasLock && !mine && lockIsLive(lock).live) return out; // a live writer: its temporaries are not stale
  const olds = ours.filter((e) => e.startsWith(OLD_PREFIX(name))).sort();
  if (!realFs.existsSync(join(parent, name)) && olds.length > 0) {
    try {
      realFs.renameSync(join(parent, olds[olds.length - 1]), join(parent, name));
      out.restored = true;
    } catch {
      /* leave it for the next writer */
    }
  }
  for (const e of ours) {
    const p = join(parent, e);
    if (realFs.existsSync(p)) {
      removeQuietly(p);
      out.removed.push(p);
    }
  }
  if (hasLock && !mine) {
    removeQuietly(lock); // stale: its writer is gone
    out.removed.push(lock);
  }
  return out;
}

function linkTree(from: string, to: string): void {
  for (const ent of realFs.readdirSync(from, { withFileTypes: true })) {
    const a = join(from, ent.name);
    const b = join(to, ent.name);
    if (ent.isDirectory()) {
      wrap(b, 'mkdir', () => fs.mkdirSync(b));
      linkTree(a, b);
    } else if (ent.isFile()) {
      wrap(b, 'link', () => fs.linkSync(a, b));
    }
  }
}

function fsyncTree(dir: string): void {
  for (const ent of realFs.readdirSync(dir, { withFileTypes: true }))
    if (ent.isDirectory()) fsyncTree(join(dir, ent.name));
  fsyncDir(dir);
}

function stagePath(root: string, rel: string): string {
  const p = resolve(root, rel);
  if (!p.startsWith(root + sep)) throw new ArgumentError('file name', `a path inside the output folder`, rel);
  return p;
}

/**
 * The frame both writers share: refuse inputs, create the parent, take the lock, clear what killed writers
 * left, run `body` with a fresh temporary path beside the target, and — whatever happens — remove that
 * temporary (after a successful swap it no longer exists) and release the lock.
 */
function staged(target: string, o: WriteOptions, body: (target: string, tmp: string) => void): void {
  target = resolve(target);
  checkInputs(target, o);
  const parent = dirname(target);
  mkdirp(parent);
  const unlock = acquireLock(target);
  const tmp = join(parent, `${TMP_PREFIX(basename(target))}${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    recoverInterruptedSwap(target); // our lock is held, so every leftover is stale
    body(target, tmp);
    fsyncDir(parent);
  } finally {
    removeQuietly(tmp);
    unlock();
  }
}

/** Stage a folder's new version in `tmp` (fsynced); returns whether the target exists (the swap moves it aside). */
function stageFolder(
  target: string,
  tmp: string,
  build: (stage: FolderStage) => void,
  keepExisting?: boolean,
): boolean {
  const st = realFs.existsSync(target) ? realFs.statSync(target) : undefined;
  if (st && !st.isDirectory()) throw new IoError(target, 'mkdir', 'ENOTDIR', 'exists and is not a folder');
  wrap(tmp, 'mkdir', () => fs.mkdirSync(tmp));
  if (st && keepExisting) linkTree(target, tmp);
  build({
    dir: tmp,
    writeFile: (rel, data) => {
      const p = stagePath(tmp, rel);
      mkdirp(dirname(p));
      if (realFs.existsSync(p)) realFs.unlinkSync(p); // a hard link to the old version: replace, never write through
      writeNewFile(p, data);
    },
  });
  const by = marked.get(target);
  if (by !== undefined) {
    const p = join(tmp, OUTPUT_MARKER);
    if (realFs.existsSync(p)) realFs.unlinkSync(p); // linked in by keepExisting: replace, never write through
    writeNewFile(p, JSON.stringify({ writtenBy: `mil ${by}` }) + '\n');
  }
  fsyncTree(tmp);
  return st !== undefined;
}

/** Put a staged folder in place: rename(target → .old), rename(tmp → target), remove .old (the first undone if the second fails). */
function swapFolder(target: string, tmp: string, exists: boolean): void {
  if (!exists) return wrap(target, 'rename', () => fs.renameSync(tmp, target));
  const old = join(dirname(target), `${OLD_PREFIX(basename(target))}${process.pid}-${randomBytes(4).toString('hex')}`);
  wrap(target, 'rename', () => fs.renameSync(target, old));
  try {
    wrap(target, 'rename', () => fs.renameSync(tmp, target));
  } catch (e) {
    try {
      fs.renameSync(old, target);
    } catch {
      /* recoverInterruptedSwap restores it at the next open or write */
    }
    throw e;
  }
  removeQuietly(old);
}

/** Stage a file's new content in `tmp` (fsynced), refusing a target that is not a regular file. */
function stageFile(target: string, tmp: string, data: WriteData): void {
  if (realFs.existsSync(target) && !realFs.statSync(target).isFile())
    throw new IoError(target, 'rename', 'EISDIR', 'exists and is not a regular file');
  writeNewFile(tmp, data);
}

/** Write a whole folder: the target ends up as its old version or the complete new one. */
export function writeFolder(target: string, build: (stage: FolderStage) => void, o: WriteOptions = {}): void {
  staged(target, o, (target, tmp) => swapFolder(target, tmp, stageFolder(target, tmp, build, o.keepExisting)));
}

/** Write one file: the target ends up as its old content or the complete new one. */
export function writeFile(target: string, data: WriteData, o: WriteOptions = {}): void {
  staged(target, o, (target, tmp) => {
    stageFile(target, tmp, data);
    wrap(target, 'rename', () => fs.renameSync(tmp, target));
  });
}

/** A member of a set written together (writeSet): a file's bytes, or a folder's build (keepExisting as writeFolder's). */
type SetMember =
  { target: string; data: WriteData } | { target: string; build: (stage: FolderStage) => void; keepExisting?: boolean };

/**
 * Write several targets as one set: every member is staged in full first (each under its own lock, as writeFile
 * and writeFolder stage), so a failure while staging — a full disk — leaves every target as it was; then the
 * members are swapped in the order given, the parent fsynced after each. A kill between two swaps leaves the
 * members before it new and those after it old, each whole: a set whose members must agree says so in its last
 * member (e.g. a hash of the first) and repairs itself on the next run (scripts/paper.ts does).
 */
export function writeSet(members: SetMember[], o: WriteOptions = {}): void {
  const swaps: Array<() => void> = [];
  const stageFrom = (i: number): void => {
    if (i === members.length) {
      for (const swap of swaps) swap();
      return;
    }
    const m = members[i];
    staged(m.target, o, (target, tmp) => {
      if ('data' in m) {
        stageFile(target, tmp, m.data);
        swaps.push(() => (wrap(target, 'rename', () => fs.renameSync(tmp, target)), fsyncDir(dirname(target))));
      } else {
        const exists = stageFolder(target, tmp, m.build, m.keepExisting);
        swaps.push(() => (swapFolder(target, tmp, exists), fsyncDir(dirname(target))));
      }
      stageFrom(i + 1);
    });
  };
  stageFrom(0);
}

/**
 * Check, without writing anything, that `target` can be written as a folder (or a file): not one of the
 * command's inputs, not an existing thing of the other kind, its nearest existing ancestor a writable
 * folder, and no live writer holding its lock. Commands call this before doing any work.
 */
export function checkOutput(target: string, kind: 'folder' | 'file', o: WriteOptions = {}): void {
  target = resolve(target);
  checkInputs(target, o);
  let st: realFs.Stats | undefined;
  try {
    st = realFs.statSync(target);
  } catch {
    /* does not exist yet */
  }
  if (st && kind === 'folder' && !st.isDirectory())
    throw new IoError(target, 'mkdir', 'ENOTDIR', 'exists and is not a folder');
  if (st && kind === 'file' && !st.isFile())
    throw new IoError(target, 'open', 'EISDIR', 'exists and is not a regular file');
  let dir = dirname(target);
  for (;;) {
    let ds: realFs.Stats | undefined;
    try {
      ds = realFs.statSync(dir);
    } catch (e) {
      if (errno(e) !== 'ENOENT') throw new IoError(dir, 'stat', errno(e));
    }
    if (ds) {
      if (!ds.isDirectory())
        throw new IoError(dir, 'mkdir', 'ENOTDIR', `cannot create ${target}: a path component is not a folder`);
      try {
        realFs.accessSync(dir, realFs.constants.W_OK | realFs.constants.X_OK);
      } catch (e) {
        throw new IoError(dir, 'access', errno(e), `cannot create ${target} here`);
      }
      break;
    }
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  const lock = LOCK(dirname(target), basename(target));
  if (realFs.existsSync(lock)) {
    const { live, pid } = lockIsLive(lock);
    if (live && pid !== process.pid) throw new OutputLockedError(target, `pid ${pid}, lock file ${lock}`);
  } else if (dir === dirname(target)) {
    // the folder exists: prove a file can be created in it (access() says yes on /proc and the like)
    const probe = join(dir, `.${basename(target)}.mil-probe-${process.pid}`);
    try {
      realFs.closeSync(realFs.openSync(probe, 'wx'));
    } catch (e) {
      throw new IoError(dir, 'open', errno(e), `cannot create ${target} here`);
    }
    removeQuietly(probe);
  }
}
